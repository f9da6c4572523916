//! Where DNS changes are made: one trait, one implementation per kind of server.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// An RRset's state: TTL and values (sorted, as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RrState {
    pub ttl: u32,
    pub values: Vec<String>,
}

/// Which RRset a change is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RrKey {
    pub zone: String,
    pub name: String,
    pub rtype: String,
}

/// What a DNS change was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsPhase {
    LowerTtl,
    Switch,
    Rollback,
    RestoreTtl,
}

/// Why a DNS change did not happen; each names the server (and key, zone or record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("cannot reach DNS server {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error(
        "TSIG key `{key}` rejected by {server} ({reason}): check the key name, algorithm and secret"
    )]
    TsigRejected {
        key: String,
        server: String,
        reason: String,
    },
    #[error("API key rejected by {server} ({reason})")]
    ApiKeyRejected { server: String, reason: String },
    #[error(
        "{name} {rtype} changed on {server} since it was read (someone else edited it): left alone"
    )]
    Changed {
        name: String,
        rtype: String,
        server: String,
    },
    #[error(
        "{server} REFUSED the update of zone {zone}: is the key allowed to update it (allow-update)?"
    )]
    Refused { zone: String, server: String },
    #[error("{server} is not authoritative for zone {zone}")]
    NotAuthoritative { zone: String, server: String },
    /// A zone transfer was refused; `hint` says how it was asked (signed or not) and what to check.
    #[error("{server} refused a zone transfer of {zone} ({hint})")]
    TransferRefused {
        zone: String,
        server: String,
        hint: String,
    },
    /// A query got an error code or an answer that does not decode.
    #[error("{server}: {message}")]
    Query { server: String, message: String },
    #[error("{server} answered {code} to the update of {name} {rtype}")]
    Failed {
        name: String,
        rtype: String,
        server: String,
        code: String,
    },
    #[error("invalid DNS data: {0}")]
    Invalid(String),
}

/// One RRset swap: owner name, type, the values expected now, the values wanted.
pub struct Swap<'a> {
    pub name: &'a str,
    pub rtype: &'a str,
    pub current: &'a RrState,
    pub new: &'a RrState,
}

/// What a DNS command records about a change, in the caller's change log. Serialized with
/// the journal's `kind` tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DnsEvent {
    /// About to change an RRset (TTL lowering, switch, restore or rollback alike). Without a
    /// later outcome the change may or may not have happened: only the server can tell.
    DnsIntent {
        key: RrKey,
        phase: DnsPhase,
        from: RrState,
        to: RrState,
        at: u64,
    },
    /// The change is on the server.
    DnsApplied {
        key: RrKey,
        phase: DnsPhase,
        at: u64,
    },
    /// The change was refused or failed; nothing changed.
    DnsFailed {
        key: RrKey,
        phase: DnsPhase,
        error: String,
        at: u64,
    },
    /// The TTL was lowered: the switch is safe once `safe_after` (unix seconds) has passed.
    DnsSafeAfter { zone: String, safe_after: u64 },
}

impl DnsEvent {
    /// The RRset the event is about (none for zone-wide events).
    pub fn key(&self) -> Option<&RrKey> {
        match self {
            DnsEvent::DnsIntent { key, .. }
            | DnsEvent::DnsApplied { key, .. }
            | DnsEvent::DnsFailed { key, .. } => Some(key),
            DnsEvent::DnsSafeAfter { .. } => None,
        }
    }
}

/// Where DNS commands record intents and outcomes: the caller's journal. An event is durable
/// when `record` returns, so an intent is always on disk before its change is sent.
pub trait DnsLog: Sync {
    /// # Errors
    /// The event could not be made durable: the change must not be made.
    fn record(&self, event: DnsEvent) -> Result<(), crate::unit::UnitError>;

    /// Every event recorded so far about RRsets named in `names` (every RRset when empty), and
    /// every zone-wide event, in order. Costs what those names hold, not the whole journal.
    fn history(&self, names: &[String]) -> Vec<DnsEvent>;
}

/// Seconds since the epoch, for change stamps.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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
        super::query::read_rrset(self.read_server(), key)
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

    fn read(&self, key: &RrKey) -> Result<RrState, String> {
        super::rfc2136::Rfc2136::read(self, key)
    }

    fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError> {
        super::rfc2136::Rfc2136::swap_all(self, zone, swaps)
    }
}
