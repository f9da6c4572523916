//! The journal folded into the migration report's model (`status`, `report`): the lifecycle
//! owns its entries, so it is the one that reads them; `report/` only renders.

use std::collections::{BTreeMap, HashMap};

use super::ledger::ROWS_OWED;
use super::state::{SiteState, SiteStatus, Step, UnitStatus};
use crate::dns::provider::DnsEvent;
use crate::plan::Site;
use crate::report::lifecycle::{
    CheckRow, DnsRow, Downtime, LoweredTtl, MarkRow, MigrationReport, ProbeRow, SiteRow,
    SiteWindow, StateView, StepRow, Tone, UnitRow,
};

/// How reports show a state.
pub fn view(s: SiteState) -> StateView {
    let tone = match s {
        SiteState::Confirmed => Tone::Good,
        SiteState::Failed | SiteState::RolledBack => Tone::Bad,
        SiteState::Paused => Tone::Waiting,
        s if s.in_flight() => Tone::InFlight,
        _ => Tone::Idle,
    };
    StateView {
        key: serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        label: s.label().to_string(),
        tone,
    }
}

fn step_row(s: Step) -> StepRow {
    StepRow {
        at: s.at,
        state: view(s.state),
        detail: s.detail,
        bytes: s.bytes,
        millis: s.millis,
        run: s.run,
    }
}

fn unit_row(u: UnitStatus) -> UnitRow {
    UnitRow {
        unit: u.unit,
        step: u.step,
        ok: u.ok,
        detail: u.detail,
        bytes: u.bytes,
    }
}

/// The databases whose row comparison `st` still owes (`SiteStatus::rows_still_owed`).
fn owed_databases(st: &SiteStatus) -> Vec<String> {
    st.rows_still_owed()
        .iter()
        .map(|u| u.strip_prefix("database ").unwrap_or(u).to_string())
        .collect()
}

/// The unit rows, each unit whose rows are still owed (when `owed` applies) shown so instead
/// of its last step: its rows were never compared since the freeze that checked it lightly.
fn with_owed(units: Vec<UnitStatus>, rows_owed: &[String], owed: bool) -> Vec<UnitRow> {
    units
        .into_iter()
        .map(|u| {
            if owed && rows_owed.contains(&u.unit) {
                UnitRow {
                    step: ROWS_OWED.into(),
                    ok: false,
                    detail: Some(format!(
                        "rows not compared since the freeze ({}; the snapshot of go-live lives in the run that froze the site: if that run stopped, `resume` compares the frozen source with the target as it is now)",
                        u.detail.as_deref().unwrap_or(&u.step)
                    )),
                    ..unit_row(u)
                }
            } else {
                unit_row(u)
            }
        })
        .collect()
}

/// Builds the report from the plan's sites (cut over `batch` at a time), their folded
/// statuses, their windows (`window::of_sites`) and the DNS events. Each site's status is
/// moved into its row, so the sites are held once, not twice.
pub fn build(
    plan: &str,
    sites: &[Site],
    batch: usize,
    mut statuses: BTreeMap<String, SiteStatus>,
    mut windows: BTreeMap<String, SiteWindow>,
    dns: &[DnsEvent],
    overrides: Vec<CheckRow>,
) -> MigrationReport {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut pre_bytes, mut pre_millis, mut pending_bytes) = (0u64, 0u64, 0u64);
    let mut dns_by_name = dns_rows(dns);
    let mut rows = Vec::new();
    // A database of no site is live once any site may have switched.
    let any_switched = statuses.values().any(|s| s.state.may_have_switched());
    for site in sites {
        let st = statuses.remove(&site.name).unwrap_or_default();
        let rows_owed = owed_databases(&st);
        let (downtime_secs, frozen_since) = (st.downtime(), st.frozen_since());
        *counts.entry(view(st.state).key).or_default() += 1;
        let mut last_presync = 0;
        for step in &st.timeline {
            if step.state == SiteState::PreSynced {
                pre_bytes += step.bytes.unwrap_or(0);
                pre_millis += step.millis.unwrap_or(0);
                last_presync = step.bytes.unwrap_or(0);
            }
        }
        if !matches!(st.state, SiteState::Confirmed) {
            pending_bytes += last_presync;
        }
        let mut marks: Vec<MarkRow> = st
            .marks
            .into_iter()
            .map(|m| MarkRow {
                at: m.at,
                before: m.before,
                kind: serde_json::to_value(m.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                text: m.text,
            })
            .collect();
        // Checks let through about one of the site's names (`www.example.org. A`), placed by
        // time in its timeline.
        for c in overrides.iter().filter(|c| {
            let name = c.subject.split(' ').next().unwrap_or("");
            site.domains
                .iter()
                .any(|d| crate::dns::query::fqdn(d) == name)
        }) {
            marks.push(MarkRow {
                at: c.at,
                before: st.timeline.iter().take_while(|t| t.at <= c.at).count(),
                kind: "override".into(),
                text: format!(
                    "[{}] {}: let through by {} in `{}`: {}",
                    c.check, c.subject, c.verdict, c.command, c.reason
                ),
            });
        }
        marks.sort_by_key(|m| m.before);
        rows.push(SiteRow {
            name: site.name.clone(),
            domains: site.domains.clone(),
            batch: rows.len() / batch.max(1) + 1,
            state: view(st.state),
            reason: st.reason,
            presyncs: st.presyncs,
            bytes: st.bytes,
            millis: st.millis,
            attempts: st.attempts,
            downtime_secs,
            frozen_since,
            window: windows.remove(&site.name),
            marks,
            timeline: st.timeline.into_iter().map(step_row).collect(),
            units: with_owed(st.units, &st.rows_owed, !rows_owed.is_empty()),
            rows_owed,
            dns: site
                .domains
                .iter()
                .flat_map(|d| {
                    dns_by_name
                        .remove(&crate::dns::query::fqdn(d))
                        .unwrap_or_default()
                })
                .collect(),
            probes: st
                .probes
                .into_iter()
                .map(|p| ProbeRow {
                    domain: p.result.domain,
                    url: p.result.url,
                    ok: p.result.ok,
                    detail: p.result.detail,
                    round: p.result.round.label().to_string(),
                    attempt: p.attempt,
                    at: p.at,
                })
                .collect(),
        });
    }
    let presync_rate = (pre_millis > 0).then(|| pre_bytes * 1000 / pre_millis);
    let downtime = Downtime::of_batches(&rows);
    MigrationReport {
        schema_version: 1,
        plan: plan.to_string(),
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        counts,
        presync_rate,
        final_sync_estimate_secs: presync_rate.filter(|r| *r > 0).map(|r| pending_bytes / r),
        sites: rows,
        platform: statuses
            .remove(super::migrate::PLATFORM)
            .map(|s| with_owed(s.units, &s.rows_owed, any_switched))
            .unwrap_or_default(),
        states: SiteState::ALL.iter().map(|s| view(*s)).collect(),
        lowered_ttls: crate::dns::cutover::trails(dns)
            .into_iter()
            .filter_map(|(key, trail)| {
                let (last, _) = trail.last?;
                (last.ttl < trail.original.ttl).then_some(LoweredTtl {
                    name: key.name,
                    rtype: key.rtype,
                    ttl: last.ttl,
                    original_ttl: trail.original.ttl,
                })
            })
            .collect(),
        overrides,
        downtime,
        leases: Vec::new(),
    }
}

/// The checks and live units the operator let through, from the journal's entries.
pub fn overrides(entries: &[super::ledger::Entry]) -> Vec<CheckRow> {
    entries.iter().filter_map(override_row).collect()
}

/// The row of an entry that let a check or a live unit through (`None` for any other).
pub fn override_row(e: &super::ledger::Entry) -> Option<CheckRow> {
    match e {
        super::ledger::Entry::Override {
            unit,
            because,
            command,
            at,
        } => Some(CheckRow {
            check: "live-unit".into(),
            subject: unit.to_string(),
            reason: format!("overwritten at the target although {because}"),
            verdict: "allowed".into(),
            command: command.clone(),
            at: *at,
        }),
        super::ledger::Entry::Check {
            finding,
            verdict,
            command,
            at,
        } if *verdict != super::ledger::CheckVerdict::Refused => Some(CheckRow {
            check: finding.check.to_string(),
            subject: finding.subject.clone(),
            reason: finding.reason.clone(),
            verdict: serde_json::to_value(verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            command: command.clone(),
            at: *at,
        }),
        _ => None,
    }
}

/// Every DNS change, grouped by owner name, in journal order (one pass over the events).
fn dns_rows(events: &[DnsEvent]) -> HashMap<String, Vec<DnsRow>> {
    let phase = |p: &crate::dns::provider::DnsPhase| {
        serde_json::to_value(p)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut rows: HashMap<String, Vec<DnsRow>> = HashMap::new();
    for e in events {
        match e {
            DnsEvent::DnsIntent {
                key,
                phase: p,
                from,
                to,
                at,
            } => rows.entry(key.name.clone()).or_default().push(DnsRow {
                name: key.name.clone(),
                rtype: key.rtype.clone(),
                phase: phase(p),
                from: from.values.clone(),
                to: to.values.clone(),
                ttl: to.ttl,
                from_ttl: from.ttl,
                result: "pending".into(),
                at: *at,
            }),
            DnsEvent::DnsApplied { key, phase: p, .. }
            | DnsEvent::DnsFailed { key, phase: p, .. } => {
                let result = if matches!(e, DnsEvent::DnsApplied { .. }) {
                    "applied"
                } else {
                    "failed"
                };
                let p = phase(p);
                if let Some(r) = rows.get_mut(&key.name).and_then(|list| {
                    list.iter_mut()
                        .rev()
                        .find(|r| r.rtype == key.rtype && r.phase == p && r.result == "pending")
                }) {
                    r.result = result.into();
                }
            }
            DnsEvent::DnsSafeAfter { .. } => {}
        }
    }
    rows
}
