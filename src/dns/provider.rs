//! Where DNS changes are made: one trait, one implementation per kind of server.

use std::net::SocketAddr;

use super::rfc2136::{DnsError, Swap};
use crate::journal::{RrKey, RrState};

/// A place that changes a zone's RRsets by compare-and-swap.
pub trait Provider: Send + Sync {
    /// How errors and reports name it (a server address or an API URL).
    fn label(&self) -> String;

    /// The authoritative server to read the zone from (AXFR and queries).
    fn read_server(&self) -> SocketAddr;

    /// The RRset as the provider holds it now.
    ///
    /// # Errors
    /// The provider does not answer.
    fn read(&self, key: &RrKey) -> Result<RrState, String> {
        super::cutover::read_rrset(self.read_server(), key)
    }

    /// Every record of a zone when the provider holds them itself (zone files); `None` means
    /// read them from the authoritative server by zone transfer.
    fn list(&self, _zone: &str) -> Option<Result<Vec<super::query::Rr>, DnsError>> {
        None
    }

    /// Every record of several zones in one go (by zone name), when the provider can: tens of
    /// thousands of zones then cost a few round trips, not one each. Absent zones are missing.
    #[allow(clippy::type_complexity)]
    fn list_many(
        &self,
        _zones: &[String],
    ) -> Option<Result<std::collections::BTreeMap<String, Vec<super::query::Rr>>, DnsError>> {
        None
    }

    /// Swaps every RRset of `swaps` (all of one zone) from its current to its new state, all or
    /// none; `Changed` when one no longer holds its expected values.
    ///
    /// # Errors
    /// As `Rfc2136::swap_all`.
    fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError>;
}

impl Provider for super::rfc2136::Rfc2136 {
    fn label(&self) -> String {
        self.server().to_string()
    }

    fn read_server(&self) -> SocketAddr {
        self.server()
    }

    fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError> {
        super::rfc2136::Rfc2136::swap_all(self, zone, swaps)
    }
}
