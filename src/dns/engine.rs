//! DNS as a unit of work: plan a zone's switch for some names, apply it by compare-and-swap
//! through the caller's change log, verify every authoritative server.

use serde::Serialize;

use super::cutover::{self, CutoverError, Outcome, ZonePlan};
use super::provider::{DnsError, DnsLog};
use crate::plan::DnsSpec;
use crate::unit::{UnitError, UnitOfWork};

/// A zone's RRsets owned by some names (a site's domains), or the whole zone when empty.
#[derive(Debug, Clone)]
pub struct DnsUnit {
    pub zone: String,
    pub names: Vec<String>,
}

/// What every authoritative server serves for a unit, against what it should.
#[derive(Debug, Clone, Serialize)]
pub struct DnsCheck {
    pub ok: bool,
    /// Verified lines when ok, else every RRset still wrong, per server.
    pub lines: Vec<String>,
}

/// The plan's DNS section, driving its provider.
pub struct DnsEngine<'a> {
    pub spec: &'a DnsSpec,
    /// The checks the operator let through (journaled by the caller).
    pub allowed: crate::check::Allowed,
}

impl From<CutoverError> for UnitError {
    fn from(e: CutoverError) -> UnitError {
        match e {
            CutoverError::Dns(d) => UnitError::from(d),
            CutoverError::Log(u) => u,
            CutoverError::Refused(r) => UnitError::unsafe_(r.to_string()),
            CutoverError::NotSupported(m) => UnitError::invalid(m),
        }
    }
}

impl From<DnsError> for UnitError {
    fn from(e: DnsError) -> UnitError {
        let message = e.to_string();
        match e {
            DnsError::Unreachable { server, .. } => UnitError::unreachable(message).on_host(server),
            DnsError::Changed { server, .. } => UnitError::conflict(message).on_host(server),
            DnsError::TsigRejected { server, .. }
            | DnsError::ApiKeyRejected { server, .. }
            | DnsError::Refused { server, .. }
            | DnsError::TransferRefused { server, .. }
            | DnsError::NotAuthoritative { server, .. } => {
                UnitError::invalid(message).on_host(server)
            }
            DnsError::Failed { server, .. } | DnsError::Query { server, .. } => {
                UnitError::io(message).on_host(server)
            }
            DnsError::Invalid(_) => UnitError::invalid(message),
        }
    }
}

impl UnitOfWork for DnsEngine<'_> {
    type Unit = DnsUnit;
    type Plan = ZonePlan;
    type Report = Outcome;
    type Check = DnsCheck;
    type Log = dyn DnsLog;

    fn plan(&self, unit: &DnsUnit) -> Result<ZonePlan, UnitError> {
        let plan = cutover::plan_zone(self.spec, &unit.zone)?;
        if unit.names.is_empty() {
            return Ok(plan);
        }
        Ok(cutover::restrict(std::slice::from_ref(&plan), &unit.names)
            .into_iter()
            .next()
            .unwrap_or(ZonePlan {
                // Nothing left to switch for these names: what was switched stays to verify.
                settled: plan
                    .settled
                    .into_iter()
                    .filter(|(k, _)| unit.names.contains(&k.name))
                    .collect(),
                zone: plan.zone,
                rrsets: plan.rrsets,
                ..ZonePlan::default()
            }))
    }

    fn apply(
        &self,
        plan: &ZonePlan,
        _observer: &dyn crate::event::Observer,
        log: &dyn DnsLog,
    ) -> Result<Outcome, UnitError> {
        Ok(cutover::switch(
            self.spec,
            std::slice::from_ref(plan),
            log,
            &self.allowed,
        )?)
    }

    fn verify(&self, unit: &DnsUnit) -> Result<DnsCheck, UnitError> {
        // What every server should serve once switched: the targets of what is left to switch,
        // and what was switched before as the primary serves it now.
        let plan = self.plan(unit)?;
        let expected: Vec<_> = plan
            .changes
            .into_iter()
            .map(|c| (c.key, c.to))
            .chain(plan.settled)
            .collect();
        Ok(
            match cutover::verify(self.spec, &expected, self.spec.verify_timeout) {
                Ok(lines) => DnsCheck { ok: true, lines },
                Err(lines) => DnsCheck { ok: false, lines },
            },
        )
    }
}
