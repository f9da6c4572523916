//! transhumance: move a web-hosting platform (sites, databases, mail, DNS) to a new datacenter.
pub mod plan;
