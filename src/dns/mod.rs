//! DNS: reading the truth from authoritative servers (queries without recursion, AXFR).
pub mod cutover;
pub mod engine;
pub mod powerdns;
pub mod preview;
pub mod provider;
pub mod query;
pub mod rfc2136;
pub mod tsig;
pub mod txt;
pub mod vhffs;
pub mod zonefile;
