//! DNS: reading the truth from authoritative servers (queries without recursion, AXFR).
pub mod query;
