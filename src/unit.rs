//! The vocabulary every engine shares: which unit of work, and what kind of failure (so retries
//! and exit codes come from a kind, never from message text).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One unit of work: a site's tree, a database, a mail rule's mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum UnitId {
    /// A site (its files, and what moves with it).
    Site(String),
    /// A database, by name.
    Database(String),
    /// The mailboxes of the plan's mail rule N (0-based, as in `mail[N]`).
    Mail(usize),
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitId::Site(s) => write!(f, "site:{s}"),
            UnitId::Database(d) => write!(f, "db:{d}"),
            UnitId::Mail(i) => write!(f, "mail:{i}"),
        }
    }
}

impl FromStr for UnitId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}`: a unit is `site:NAME`, `db:NAME` or `mail:N`");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "site" => Ok(UnitId::Site(name.into())),
            "db" => Ok(UnitId::Database(name.into())),
            "mail" => name.parse().map(UnitId::Mail).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl From<UnitId> for String {
    fn from(u: UnitId) -> String {
        u.to_string()
    }
}

impl TryFrom<String> for UnitId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What went wrong, as the caller must react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A host, server or service did not answer (or dropped the connection).
    Unreachable,
    /// A server answered and refused our credentials (a wrong password, an unknown account).
    Authentication,
    /// What we were asked to read does not exist (a database, a tool on a host).
    Missing,
    /// The plan or the arguments are wrong.
    Invalid,
    /// Refused by a safety check.
    Unsafe,
    /// Someone else changed the thing we were about to change.
    Conflict,
    /// Both sides were compared and differ.
    Mismatch,
    /// A local or remote I/O failure.
    Io,
}

/// Whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    Transient,
    Permanent,
}

impl ErrorKind {
    /// The retry class a kind has unless the error says otherwise.
    pub fn default_retry(self) -> Retry {
        match self {
            ErrorKind::Unreachable => Retry::Transient,
            _ => Retry::Permanent,
        }
    }

    /// The process exit code for a command that stopped on this kind: 2 invalid input,
    /// 3 refused as unsafe, 1 anything else.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Invalid => 2,
            ErrorKind::Unsafe => 3,
            _ => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Missing => "missing",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unsafe => "unsafe",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Io => "io",
        }
    }
}

/// A failure of one step of one unit, saying where (host, unit, step) and of what kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitError {
    pub kind: ErrorKind,
    pub retry: Retry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

impl UnitError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> UnitError {
        UnitError {
            kind,
            retry: kind.default_retry(),
            unit: None,
            host: None,
            step: None,
            message: message.into(),
        }
    }

    pub fn unreachable(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Unreachable, message)
    }
    pub fn authentication(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Authentication, message)
    }
    pub fn missing(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Missing, message)
    }
    pub fn invalid(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Invalid, message)
    }
    pub fn unsafe_(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Unsafe, message)
    }
    pub fn conflict(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Conflict, message)
    }
    pub fn mismatch(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Mismatch, message)
    }
    pub fn io(message: impl Into<String>) -> UnitError {
        UnitError::new(ErrorKind::Io, message)
    }

    pub fn transient(mut self) -> UnitError {
        self.retry = Retry::Transient;
        self
    }
    pub fn permanent(mut self) -> UnitError {
        self.retry = Retry::Permanent;
        self
    }
    pub fn on_host(mut self, host: impl Into<String>) -> UnitError {
        self.host.get_or_insert_with(|| host.into());
        self
    }
    pub fn of_unit(mut self, unit: UnitId) -> UnitError {
        self.unit.get_or_insert(unit);
        self
    }
    pub fn at_step(mut self, step: impl Into<String>) -> UnitError {
        self.step.get_or_insert_with(|| step.into());
        self
    }

    pub fn is_transient(&self) -> bool {
        self.retry == Retry::Transient
    }
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if let Some(u) = &self.unit {
            place.push(u.to_string());
        }
        if let Some(s) = &self.step {
            place.push(s.clone());
        }
        if let Some(h) = &self.host {
            place.push(format!("host `{h}`"));
        }
        if !place.is_empty() {
            write!(f, "{}: ", place.join(", "))?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

/// The contract every engine (files, databases, mail, DNS) offers on one unit: plan what would
/// change as a value (the dry run renders exactly this), apply that plan (intents and outcomes
/// to the change log the caller hands in), and verify what the unit is made of at both ends.
pub trait UnitOfWork {
    /// What names one unit (a site's tree, a database, a mailbox, a zone's RRsets).
    type Unit;
    /// What would be created, changed and deleted, with sizes, in a stable order.
    type Plan: Serialize;
    /// What applying did.
    type Report;
    /// What the unit is made of, compared at both ends, with typed statuses.
    type Check: Serialize;
    /// Where apply records intents and outcomes (the lifecycle's journal, behind a trait).
    type Log: ?Sized;

    /// # Errors
    /// The unit cannot be read (kind and retry class say whether to try again).
    fn plan(&self, unit: &Self::Unit) -> Result<Self::Plan, UnitError>;

    /// # Errors
    /// The plan could not be applied; what was applied is in the change log.
    fn apply(
        &self,
        plan: &Self::Plan,
        observer: &dyn crate::event::Observer,
        log: &Self::Log,
    ) -> Result<Self::Report, UnitError>;

    /// # Errors
    /// The unit cannot be read at one end.
    fn verify(&self, unit: &Self::Unit) -> Result<Self::Check, UnitError>;
}

/// Runs `step` until it succeeds, fails permanently, or `attempts` are spent, waiting
/// `base`, 2×`base`, 4×`base`… between tries (transient failures only).
///
/// # Errors
/// The last error.
pub fn retry<T>(
    attempts: u32,
    base: std::time::Duration,
    mut step: impl FnMut() -> Result<T, UnitError>,
) -> Result<T, UnitError> {
    let mut wait = base;
    let mut left = attempts.max(1);
    loop {
        match step() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && left > 1 => {
                left -= 1;
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_ids_round_trip_through_text() {
        for u in [
            UnitId::Site("a.example".into()),
            UnitId::Database("wp:1".into()),
            UnitId::Mail(2),
        ] {
            assert_eq!(u.to_string().parse::<UnitId>().unwrap(), u);
            let json = serde_json::to_string(&u).unwrap();
            assert_eq!(serde_json::from_str::<UnitId>(&json).unwrap(), u);
        }
        assert!("db:".parse::<UnitId>().is_err());
        assert!("mail:x".parse::<UnitId>().is_err());
        assert!("table:x".parse::<UnitId>().is_err());
    }

    #[test]
    fn exit_codes_and_retries_come_from_the_kind() {
        assert_eq!(UnitError::invalid("x").kind.exit_code(), 2);
        assert_eq!(UnitError::unsafe_("x").kind.exit_code(), 3);
        assert_eq!(UnitError::mismatch("x").kind.exit_code(), 1);
        assert!(UnitError::unreachable("x").is_transient());
        assert!(!UnitError::io("x").is_transient());
        let e = UnitError::io("disk full")
            .on_host("new")
            .of_unit(UnitId::Site("a".into()))
            .at_step("final sync");
        assert_eq!(e.to_string(), "site:a, final sync, host `new`: disk full");
    }

    #[test]
    fn transient_failures_are_retried_permanent_ones_are_not() {
        let mut calls = 0;
        let r = retry(4, std::time::Duration::ZERO, || {
            calls += 1;
            if calls < 3 {
                Err(UnitError::unreachable("ssh dropped"))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<(), _> = retry(4, std::time::Duration::ZERO, || {
            calls += 1;
            Err(UnitError::invalid("no such table"))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
