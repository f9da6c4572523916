//! One integration test binary (faster to build than many), with one shared harness of real servers.
mod chaos;
mod checks;
mod cli;
mod copy;
mod courier;
mod db;
mod dns;
mod dns_tsig;
mod dry_run;
mod harness;
mod harness_selftest;
mod layers;
mod lifecycle;
mod mail;
mod plan_agrees;
mod recovery;
mod vhffs;
