//! transhumance: move a web-hosting platform (sites, databases, mail, DNS) to a new datacenter.
pub mod check;
pub mod cli;
pub mod db;
pub mod demo;
pub mod dns;
pub mod event;
pub mod journal;
pub mod lifecycle;
pub mod mail;
pub mod panel;
pub mod plan;
pub mod progress;
pub mod report;
pub mod sync;
pub mod transport;
pub mod tree;
pub mod unit;
