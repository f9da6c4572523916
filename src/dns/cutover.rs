//! The DNS side of a cutover: plan the switch from what the servers say, lower TTLs ahead,
//! switch by compare-and-swap, verify every authoritative server, roll back exactly.
//!
//! Every change is journaled (fsynced) before it is sent and after it lands, so a crash at any
//! instant leaves a state `rollback` handles: it reads the servers and reverts only RRsets that
//! still hold our values.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::provider::{DnsError, DnsEvent, DnsLog, DnsPhase, Provider, RrKey, RrState, Swap, now};
use super::query::{self, Rr};
use super::rfc2136::Rfc2136;
use crate::check::{Allowed, Check, Finding, Override, Refused};
use crate::plan::{DnsProvider, DnsSpec};
use crate::unit::UnitError;

/// One RRset to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Change {
    pub key: RrKey,
    pub from: RrState,
    pub to: RrState,
}

/// What a zone would go through.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZonePlan {
    pub zone: String,
    /// RRsets in the zone (the base of the safety share).
    pub rrsets: usize,
    pub changes: Vec<Change>,
    /// The names the zone's NS set names (lowercase, absolute): their addresses are the
    /// delegation, which the `nameserver-address` check guards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameserver_names: Vec<String>,
    /// Name servers of the zone's NS set that `verify` will not check (not in `nameservers`).
    pub unverified_servers: Vec<String>,
    /// RRsets that already serve a new address of the plan (switched before): what `verify`
    /// expects of them on every server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<(RrKey, RrState)>,
    /// TXT records naming an old address of the switch (SPF): they keep naming it after.
    pub txt_risks: Vec<super::txt::TxtRisk>,
}

/// Why a DNS command stopped.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The change log (the caller's journal) could not record an intent or outcome.
    #[error(transparent)]
    Log(#[from] UnitError),
    /// A safety check refused, and was not allowed by name (`--allow`) or `--force`.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{0}")]
    NotSupported(String),
}

/// The provider the plan names, ready to change records.
///
/// # Errors
/// A provider this build cannot drive yet, or a secret that cannot be read.
pub fn provider(spec: &DnsSpec) -> Result<Box<dyn Provider>, CutoverError> {
    match &spec.provider {
        DnsProvider::Rfc2136 { server, tsig } => {
            let secret = match tsig {
                Some(t) => Some(t.secret.resolve().map_err(|e| {
                    CutoverError::NotSupported(format!("TSIG key `{}`: {e}", t.name))
                })?),
                None => None,
            };
            let key = tsig
                .as_ref()
                .zip(secret.as_ref())
                .map(|(t, s)| (t.name.as_str(), t.algorithm.as_str(), s.expose()));
            Ok(Box::new(Rfc2136::new(*server, key)?))
        }
        DnsProvider::PowerDns { api_url, api_key } => {
            let key = api_key
                .resolve()
                .map_err(|e| CutoverError::NotSupported(format!("PowerDNS API key: {e}")))?;
            Ok(Box::new(super::powerdns::PowerDnsApi::new(
                api_url,
                key,
                read_server(spec),
            )))
        }
        DnsProvider::ZoneFile { directory, reload } => {
            Ok(Box::new(super::zonefile::ZoneFiles::new(
                directory,
                reload.clone(),
                spec.nameservers.first().copied(),
            )))
        }
        DnsProvider::Vhffs {
            host,
            panel,
            database,
        } => {
            let hosts = std::iter::once((host.name.clone(), (**host).clone())).collect();
            let connections = crate::transport::Connections::new(
                &hosts,
                crate::transport::default_agent_binary(),
            );
            let transport = connections.get(&host.name).map_err(|e| {
                CutoverError::Dns(DnsError::Unreachable {
                    server: host.name.clone(),
                    message: e.to_string(),
                })
            })?;
            Ok(Box::new(super::vhffs::VhffsDns::new(
                transport,
                (**panel).clone(),
                database.clone(),
            )))
        }
    }
}

fn read_server(spec: &DnsSpec) -> std::net::SocketAddr {
    match &spec.provider {
        DnsProvider::Rfc2136 { server, .. } => *server,
        // Validation makes `powerdns` list its servers; zone files may have none (read locally).
        _ => spec
            .nameservers
            .first()
            .copied()
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 53))),
    }
}

/// Groups a zone transfer into RRsets: (name, type) → (ttl, sorted values).
fn rrsets(records: &[Rr]) -> BTreeMap<(String, String), RrState> {
    let mut out: BTreeMap<(String, String), RrState> = BTreeMap::new();
    for r in records {
        let e = out
            .entry((r.name.clone(), r.rtype.clone()))
            .or_insert(RrState {
                ttl: r.ttl,
                values: Vec::new(),
            });
        e.values.push(r.data.clone());
    }
    for s in out.values_mut() {
        s.values.sort();
    }
    out
}

/// Plans the switch of one zone from the primary's current data.
///
/// # Errors
/// The zone cannot be read (transfer refused, server down).
pub fn plan_zone(spec: &DnsSpec, zone: &str) -> Result<ZonePlan, CutoverError> {
    // Providers holding the records themselves are the truth the switch compares against.
    if let DnsProvider::ZoneFile { .. } | DnsProvider::Vhffs { .. } = &spec.provider {
        let records = provider(spec)?
            .list(zone)
            .expect("zone files and panel tables list their records")?;
        return Ok(plan_records(spec, zone, &records));
    }
    plan_zone_from(spec, zone, read_server(spec))
}

/// Plans the switch of every zone of `zones`, reading them all at once from providers that can
/// (the panel's tables), else one by one as `plan_zone`.
pub fn plan_zones(spec: &DnsSpec, zones: &[String]) -> Vec<Result<ZonePlan, CutoverError>> {
    if let DnsProvider::Vhffs { .. } = &spec.provider {
        let listed = provider(spec).map(|p| p.list_many(zones));
        match listed {
            Ok(Some(Ok(mut all))) => {
                return zones
                    .iter()
                    .map(|z| {
                        let zone = crate::plan::validate::normalize_zone(z);
                        match all.remove(&zone) {
                            Some(records) => Ok(plan_records(spec, z, &records)),
                            None => Err(CutoverError::Dns(DnsError::NotAuthoritative {
                                zone: z.clone(),
                                server: "the panel's vhffs_dns table".into(),
                            })),
                        }
                    })
                    .collect();
            }
            Ok(Some(Err(e))) => return zones.iter().map(|_| Err(e.clone().into())).collect(),
            Err(e) => {
                let message = e.to_string();
                return zones
                    .iter()
                    .map(|_| Err(CutoverError::NotSupported(message.clone())))
                    .collect();
            }
            Ok(None) => {}
        }
    }
    zones.iter().map(|z| plan_zone(spec, z)).collect()
}

/// Plans the switch of one zone from what `server` serves.
///
/// # Errors
/// The zone cannot be read (transfer refused, server down).
pub fn plan_zone_from(
    spec: &DnsSpec,
    zone: &str,
    server: std::net::SocketAddr,
) -> Result<ZonePlan, CutoverError> {
    // Signed with the plan's key when the server allows transfers only with it.
    let key = super::tsig::plan_key(spec)?;
    let auth = key
        .as_ref()
        .map_or(super::tsig::Auth::None, super::tsig::PlanKey::auth);
    let records = query::axfr(server, zone, Duration::from_secs(10), auth)?;
    Ok(plan_records(spec, zone, &records))
}

/// Plans the switch of one zone from its records.
fn plan_records(spec: &DnsSpec, zone: &str, records: &[Rr]) -> ZonePlan {
    let sets = rrsets(records);
    let switch: HashMap<IpAddr, IpAddr> = spec.switch.iter().copied().collect();
    let ns_targets: Vec<String> = sets
        .iter()
        .filter(|((_, t), _)| t == "NS")
        .flat_map(|(_, s)| s.values.iter().map(|v| v.to_ascii_lowercase()))
        .collect();
    let mut plan = ZonePlan {
        zone: zone.to_string(),
        rrsets: sets.len(),
        nameserver_names: {
            let mut n = ns_targets.clone();
            n.sort();
            n.dedup();
            n
        },
        txt_risks: super::txt::risks(
            sets.iter()
                .filter(|((_, t), _)| t == "TXT")
                .flat_map(|((n, _), s)| s.values.iter().map(move |v| (n.as_str(), v.as_str()))),
            &spec.switch,
        ),
        ..Default::default()
    };
    for ((name, rtype), state) in &sets {
        if rtype != "A" && rtype != "AAAA" {
            continue;
        }
        let mut values: Vec<String> = state
            .values
            .iter()
            .map(|v| {
                v.parse::<IpAddr>()
                    .ok()
                    .and_then(|ip| switch.get(&ip))
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| v.clone())
            })
            .collect();
        values.sort();
        values.dedup();
        if values == state.values {
            let new_addresses: Vec<String> = switch.values().map(ToString::to_string).collect();
            if state.values.iter().any(|v| new_addresses.contains(v)) {
                plan.settled.push((
                    RrKey {
                        zone: zone.to_string(),
                        name: name.clone(),
                        rtype: rtype.clone(),
                    },
                    state.clone(),
                ));
            }
            continue;
        }
        let ttl = spec.lower_ttl.map_or(state.ttl, |l| l.min(state.ttl));
        plan.changes.push(Change {
            key: RrKey {
                zone: zone.to_string(),
                name: name.clone(),
                rtype: rtype.clone(),
            },
            from: state.clone(),
            to: RrState { ttl, values },
        });
    }
    // The zone's own NS set: servers it names that the plan does not verify are worth a warning.
    let checked: Vec<IpAddr> = spec
        .nameservers
        .iter()
        .map(|s| s.ip())
        .chain(std::iter::once(read_server(spec).ip()))
        .collect();
    for ns in &ns_targets {
        let addresses: Vec<IpAddr> = ["A", "AAAA"]
            .iter()
            .filter_map(|t| sets.get(&(ns.clone(), t.to_string())))
            .flat_map(|s| s.values.iter().filter_map(|v| v.parse().ok()))
            .collect();
        if addresses.is_empty() {
            plan.unverified_servers.push(format!(
                "{ns} (outside the zone: list its address in `nameservers` to verify it)"
            ));
        } else if !addresses.iter().any(|a| checked.contains(a)) {
            plan.unverified_servers.push(format!(
                "{ns} ({})",
                addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    plan
}

/// A short digest of what the plans would switch (values and target TTLs, not the current
/// TTL, which `lower-ttl` changes): `switch --plan-checksum` applies only the plan reviewed.
pub fn checksum(plans: &[ZonePlan]) -> String {
    let mut h = blake3::Hasher::new();
    for p in plans {
        for c in &p.changes {
            let line = serde_json::json!([c.key, c.from.values, c.to.values, c.to.ttl]).to_string();
            h.update(line.as_bytes());
            h.update(b"\n");
        }
    }
    h.finalize().to_hex()[..16].to_string()
}

/// What a lower-TTL, switch, restore or rollback run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub applied: Vec<RrKey>,
    /// Left alone: someone changed them since (rollback), or nothing to do.
    pub skipped: Vec<(RrKey, String)>,
    /// Already in the state asked for (rollback: back to before our first change).
    pub already: Vec<RrKey>,
    pub failed: Vec<(RrKey, String)>,
    /// Changes undone because a later one of the same run failed.
    pub compensated: Vec<RrKey>,
    /// Unix time after which the switch is safe (after `lower-ttl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_after: Option<u64>,
    /// Checks that refused and were let through (`--allow`, `--force`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<Override>,
}

/// Whether a failed update certainly changed nothing: the server answered. A timeout or a
/// dropped connection after the update was sent leaves the outcome unknown.
fn certainly_unapplied(e: &DnsError) -> bool {
    !matches!(e, DnsError::Unreachable { .. })
}

/// Records the outcome of a change whose update came back with `result`; an unknown outcome
/// records nothing, so the intent stays open until someone reads the server.
fn record_outcome(
    log: &dyn DnsLog,
    key: &RrKey,
    phase: DnsPhase,
    result: &Result<(), DnsError>,
) -> Result<(), UnitError> {
    match result {
        Ok(()) => log.record(DnsEvent::DnsApplied {
            key: key.clone(),
            phase,
            at: now(),
        }),
        Err(e) if certainly_unapplied(e) => log.record(DnsEvent::DnsFailed {
            key: key.clone(),
            phase,
            error: e.to_string(),
            at: now(),
        }),
        Err(_) => Ok(()),
    }
}

fn apply(
    client: &dyn Provider,
    log: &dyn DnsLog,
    phase: DnsPhase,
    key: &RrKey,
    from: &RrState,
    to: &RrState,
) -> Result<Result<(), DnsError>, UnitError> {
    log.record(DnsEvent::DnsIntent {
        key: key.clone(),
        phase,
        from: from.clone(),
        to: to.clone(),
        at: now(),
    })?;
    let result = client.swap_all(
        &key.zone,
        &[Swap {
            name: &key.name,
            rtype: &key.rtype,
            current: from,
            new: to,
        }],
    );
    record_outcome(log, key, phase, &result)?;
    Ok(result)
}

/// One planned swap: which RRset, from what, to what.
type Item = (RrKey, RrState, RrState);

/// Applies the swaps of one zone in one atomic update; if one RRset changed meanwhile, falls
/// back to one update per RRset so the others still go and the changed one is named.
fn apply_zone(
    client: &dyn Provider,
    log: &dyn DnsLog,
    phase: DnsPhase,
    zone: &str,
    items: &[Item],
) -> Result<Vec<Result<(), DnsError>>, UnitError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    for (key, from, to) in items {
        log.record(DnsEvent::DnsIntent {
            key: key.clone(),
            phase,
            from: from.clone(),
            to: to.clone(),
            at: now(),
        })?;
    }
    let swaps: Vec<Swap<'_>> = items
        .iter()
        .map(|(k, f, t)| Swap {
            name: &k.name,
            rtype: &k.rtype,
            current: f,
            new: t,
        })
        .collect();
    let result = client.swap_all(zone, &swaps);
    match result {
        Err(DnsError::Changed { .. }) if items.len() > 1 => {
            // The whole update was refused by its prerequisites: nothing of it applied.
            for (key, _, _) in items {
                log.record(DnsEvent::DnsFailed {
                    key: key.clone(),
                    phase,
                    error: "the zone's update was refused; retried RRset by RRset".into(),
                    at: now(),
                })?;
            }
            items
                .iter()
                .map(|(k, f, t)| apply(client, log, phase, k, f, t))
                .collect()
        }
        result => {
            for (key, _, _) in items {
                record_outcome(log, key, phase, &result)?;
            }
            Ok(items.iter().map(|_| result.clone()).collect())
        }
    }
}

/// Lowers the TTL of every RRset that will switch, and records when the switch becomes safe.
///
/// # Errors
/// Journal or provider failures that stop the run; per-RRset failures are in the outcome.
pub fn lower_ttl(
    spec: &DnsSpec,
    plans: &[ZonePlan],
    log: &dyn DnsLog,
) -> Result<Outcome, CutoverError> {
    let client = provider(spec)?;
    let client = client.as_ref();
    let mut out = Outcome::default();
    for plan in plans {
        let mut items: Vec<Item> = Vec::new();
        for c in &plan.changes {
            if c.from.ttl <= c.to.ttl {
                out.skipped
                    .push((c.key.clone(), format!("TTL already {}", c.from.ttl)));
            } else {
                items.push((
                    c.key.clone(),
                    c.from.clone(),
                    RrState {
                        ttl: c.to.ttl,
                        values: c.from.values.clone(),
                    },
                ));
            }
        }
        let mut longest = 0u32;
        for ((key, from, _), result) in items.iter().zip(apply_zone(
            client,
            log,
            DnsPhase::LowerTtl,
            &plan.zone,
            &items,
        )?) {
            match result {
                Ok(()) => {
                    longest = longest.max(from.ttl);
                    out.applied.push(key.clone());
                }
                Err(e @ (DnsError::TsigRejected { .. } | DnsError::ApiKeyRejected { .. })) => {
                    return Err(e.into());
                }
                Err(e) => out.failed.push((key.clone(), e.to_string())),
            }
        }
        let safe_after = now() + u64::from(longest);
        log.record(DnsEvent::DnsSafeAfter {
            zone: plan.zone.clone(),
            safe_after,
        })?;
        out.safe_after = Some(
            out.safe_after
                .map_or(safe_after, |s: u64| s.max(safe_after)),
        );
    }
    Ok(out)
}

/// The plans cut down to the RRsets of `names` (absolute, with the final dot): what a command
/// of those names will change, and what its checks are evaluated on.
pub fn restrict(plans: &[ZonePlan], names: &[String]) -> Vec<ZonePlan> {
    plans
        .iter()
        .map(|p| ZonePlan {
            changes: p
                .changes
                .iter()
                .filter(|c| names.contains(&c.key.name))
                .cloned()
                .collect(),
            settled: p
                .settled
                .iter()
                .filter(|(k, _)| names.contains(&k.name))
                .cloned()
                .collect(),
            ..p.clone()
        })
        .filter(|p| !p.changes.is_empty())
        .collect()
}

/// Whether resolvers may still cache a TTL higher than the one an RRset will switch with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlReadiness {
    /// Nothing higher than the switch's TTL may be cached anywhere.
    Ready,
    /// The servers serve a higher TTL now (never lowered, or put back by a rollback).
    Served { ttl: u32 },
    /// Lowered by us; resolvers may keep the old TTL until `until` (unix seconds).
    Until { until: u64, ttl: u32 },
    /// A change of ours set a higher TTL at `at` and it is low now: someone else lowered it,
    /// at an unknown time.
    LoweredElsewhere { ttl: u32, at: u64 },
}

/// The readiness of one change, from the TTL served now (`change.from`, read just before) and
/// our past changes of that RRset (their times and TTLs). A high TTL served by the servers
/// always wins over an old journal entry: after a rollback put 3600 back, nothing is ready.
pub fn ttl_readiness(change: &Change, history: &[DnsEvent], now: u64) -> TtlReadiness {
    let target = change.to.ttl;
    if change.from.ttl > target {
        return TtlReadiness::Served {
            ttl: change.from.ttl,
        };
    }
    // Our changes of this RRset with when they landed (an open intent may have landed at once).
    let mut changes: Vec<(RrState, RrState, u64)> = Vec::new();
    for e in history {
        match e {
            DnsEvent::DnsIntent {
                key, from, to, at, ..
            } if *key == change.key => changes.push((from.clone(), to.clone(), *at)),
            DnsEvent::DnsApplied { key, at, .. } if *key == change.key => {
                if let Some(last) = changes.last_mut() {
                    last.2 = *at;
                }
            }
            DnsEvent::DnsFailed { key, .. } if *key == change.key => {
                changes.pop();
            }
            _ => {}
        }
    }
    let mut until = 0u64;
    let mut high_ttl = 0u32;
    let mut raised: Option<(u32, u64)> = None;
    for (from, to, at) in &changes {
        if from.ttl > target {
            // A high TTL was served until this change landed.
            if at + u64::from(from.ttl) > until {
                until = at + u64::from(from.ttl);
                high_ttl = from.ttl;
            }
            raised = None;
        }
        if to.ttl > target {
            raised = Some((to.ttl, *at));
        }
    }
    if let Some((ttl, at)) = raised {
        return TtlReadiness::LoweredElsewhere { ttl, at };
    }
    if until > now {
        TtlReadiness::Until {
            until,
            ttl: high_ttl,
        }
    } else {
        TtlReadiness::Ready
    }
}

/// Every safety check of a switch of exactly these plans (already cut to the selection), now:
/// `ttl-not-expired` per RRset, `nameserver-address` per RRset, `zone-share` per zone.
pub fn checks(spec: &DnsSpec, plans: &[ZonePlan], history: &[DnsEvent], now: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    for plan in plans {
        for c in &plan.changes {
            let subject = format!("{} {}", c.key.name, c.key.rtype);
            if plan
                .nameserver_names
                .contains(&c.key.name.to_ascii_lowercase())
            {
                out.push(Finding::new(
                    Check::NameserverAddress,
                    subject.clone(),
                    "is the address of a name server of the zone",
                ));
            }
            let why = match ttl_readiness(c, history, now) {
                TtlReadiness::Ready => continue,
                TtlReadiness::Served { ttl } => format!(
                    "served with TTL {ttl} now, the switch sets {}: lower it (`dns lower-ttl`) and wait {ttl} s",
                    c.to.ttl
                ),
                TtlReadiness::Until { until, ttl } => format!(
                    "resolvers may cache it with TTL {ttl} for {} s more (it was lowered less than {ttl} s ago)",
                    until - now
                ),
                TtlReadiness::LoweredElsewhere { ttl, at } => format!(
                    "a change of ours set TTL {ttl} at {}, and it was lowered since by someone else at a time we cannot know: wait {ttl} s after that change",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_secs(at)
                    )
                ),
            };
            out.push(Finding::new(Check::TtlNotExpired, subject, why));
        }
        let share = spec.zone_share;
        let changed = plan.changes.len() as f64 / plan.rrsets.max(1) as f64;
        if plan.rrsets >= share.min_rrsets && changed > share.max {
            out.push(Finding::new(
                Check::ZoneShare,
                format!("zone {}", plan.zone),
                format!(
                    "{} of its {} RRsets would change ({:.0} %, over the plan's {:.0} % for zones of {} RRsets or more)",
                    plan.changes.len(),
                    plan.rrsets,
                    changed * 100.0,
                    share.max * 100.0,
                    share.min_rrsets
                ),
            ));
        }
    }
    out
}

/// Seconds until no RRset of the plans may be cached with a higher TTL than its switch sets,
/// counting only RRsets already lowered (0 when all are ready).
pub fn seconds_until_safe(plans: &[ZonePlan], history: &[DnsEvent], now: u64) -> u64 {
    plans
        .iter()
        .flat_map(|p| &p.changes)
        .map(|c| match ttl_readiness(c, history, now) {
            TtlReadiness::Until { until, .. } => until - now,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The names a plan's changes touch.
pub fn names_of(plans: &[ZonePlan]) -> Vec<String> {
    let mut names: Vec<String> = plans
        .iter()
        .flat_map(|p| p.changes.iter().map(|c| c.key.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Switches every planned RRset by compare-and-swap. A failure undoes what this run applied.
///
/// # Errors
/// A check that refuses and is not in `allowed`, a rejected key, or journal failures.
pub fn switch(
    spec: &DnsSpec,
    plans: &[ZonePlan],
    log: &dyn DnsLog,
    allowed: &Allowed,
) -> Result<Outcome, CutoverError> {
    let verdict = allowed.judge(checks(spec, plans, &log.history(&names_of(plans)), now()));
    if !verdict.ok() {
        return Err(Refused(verdict.refused).into());
    }
    let client = provider(spec)?;
    let client = client.as_ref();
    let mut out = Outcome {
        overridden: verdict.overridden,
        ..Outcome::default()
    };
    let mut done: Vec<&Change> = Vec::new();
    for plan in plans {
        let mut items: Vec<Item> = Vec::new();
        let mut changes: Vec<&Change> = Vec::new();
        for c in &plan.changes {
            // The plan was read from the server just now; the update's prerequisite catches
            // anything that changed since.
            let current = c.from.clone();
            items.push((c.key.clone(), current, c.to.clone()));
            changes.push(c);
        }
        let results = apply_zone(client, log, DnsPhase::Switch, &plan.zone, &items)?;
        for (c, result) in changes.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    out.applied.push(c.key.clone());
                    done.push(c);
                }
                // A rejected key fails every change alike: nothing was applied with it.
                Err(e @ (DnsError::TsigRejected { .. } | DnsError::ApiKeyRejected { .. }))
                    if done.is_empty() =>
                {
                    return Err(e.into());
                }
                Err(e) => out.failed.push((c.key.clone(), e.to_string())),
            }
        }
        if !out.failed.is_empty() {
            break;
        }
    }
    if !out.failed.is_empty() {
        // Half a switch is worse than none: put back what this run changed.
        for c in done.iter().rev() {
            let now_state = client.read(&c.key).unwrap_or_else(|_| c.to.clone());
            let back = RrState {
                ttl: c.to.ttl,
                values: c.from.values.clone(),
            };
            if now_state.values == c.to.values
                && apply(client, log, DnsPhase::Rollback, &c.key, &now_state, &back)?.is_ok()
            {
                out.compensated.push(c.key.clone());
            }
        }
    }
    Ok(out)
}

/// Polls every authoritative server until each one serves the switched values.
///
/// # Errors
/// Returns the RRsets still wrong per server when the timeout passes.
pub fn verify(
    spec: &DnsSpec,
    expected: &[(RrKey, RrState)],
    timeout: Duration,
) -> Result<Vec<String>, Vec<String>> {
    // Without servers in the plan (zone files, panel tables), the provider's own copy is what can
    // be checked, and the report says so.
    let files = if spec.nameservers.is_empty() {
        provider(spec).ok()
    } else {
        None
    };
    // Servers that answer only signed questions are asked with the plan's key.
    let plan_key = super::tsig::plan_key(spec).ok().flatten();
    let auth = plan_key
        .as_ref()
        .map_or(super::tsig::Auth::None, super::tsig::PlanKey::auth);
    let deadline = Instant::now() + timeout;
    loop {
        let mut wrong = Vec::new();
        let mut serials = std::collections::BTreeSet::new();
        if let Some(p) = &files {
            for (key, want) in expected {
                match p.read(key) {
                    Ok(s) if s.values == want.values => {}
                    Ok(s) => wrong.push(format!(
                        "{}: {} {} holds {}, expected {}",
                        p.label(),
                        key.name,
                        key.rtype,
                        shown(&s.values),
                        shown(&want.values)
                    )),
                    Err(e) => wrong.push(e),
                }
            }
        }
        for server in &spec.nameservers {
            for (key, want) in expected {
                match query::read_rrset_with(*server, key, auth) {
                    Ok(s) if s.values == want.values => {}
                    Ok(s) => wrong.push(format!(
                        "{server}: {} {} serves {}, expected {}",
                        key.name,
                        key.rtype,
                        shown(&s.values),
                        shown(&want.values)
                    )),
                    Err(e) => wrong.push(format!("{server}: {e}")),
                }
            }
            for zone in expected
                .iter()
                .map(|(k, _)| &k.zone)
                .collect::<std::collections::BTreeSet<_>>()
            {
                match query::soa_serial_with(*server, zone, Duration::from_secs(3), auth) {
                    Ok(s) => {
                        serials.insert((zone.clone(), s));
                    }
                    Err(e) => wrong.push(e.to_string()),
                }
            }
        }
        for resolver in &spec.resolvers {
            for (key, want) in expected {
                let Ok(rt) = key.rtype.parse() else { continue };
                match query::resolve(*resolver, &key.name, rt, Duration::from_secs(3)) {
                    Ok(rrs) => {
                        let mut values: Vec<String> = rrs.iter().map(|r| r.data.clone()).collect();
                        values.sort();
                        if values != want.values {
                            wrong.push(format!("resolver {resolver}: {} {} gives {} (cached until its TTL runs out), expected {}", key.name, key.rtype, shown(&values), shown(&want.values)));
                        }
                    }
                    Err(e) => wrong.push(e),
                }
            }
        }
        // Every server of a zone must give the same SOA serial (secondaries caught up).
        let mut by_zone: BTreeMap<&String, usize> = BTreeMap::new();
        for (z, _) in &serials {
            *by_zone.entry(z).or_default() += 1;
        }
        for (z, n) in by_zone {
            if n > 1 {
                wrong.push(format!(
                    "zone {z}: the servers give {n} different SOA serials"
                ));
            }
        }
        if wrong.is_empty() {
            let source = match &files {
                Some(p) if matches!(spec.provider, DnsProvider::Vhffs { .. }) => format!(
                    "the panel's tables ({}; no server listed in the plan)",
                    p.label()
                ),
                Some(p) => format!(
                    "the zone files in {} (no server listed in the plan)",
                    p.label()
                ),
                None => format!(
                    "{} server(s), SOA serials equal{}",
                    spec.nameservers.len(),
                    if spec.resolvers.is_empty() {
                        String::new()
                    } else {
                        format!("; {} resolver(s)", spec.resolvers.len())
                    }
                ),
            };
            return Ok(vec![format!("{} RRset(s) on {source}", expected.len())]);
        }
        if Instant::now() >= deadline {
            return Err(wrong);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The RRsets whose last change of ours (applied, or sent without a known outcome) was a switch,
/// with the values that switch set.
pub fn switched(entries: &[DnsEvent], zones: &[String]) -> Vec<(RrKey, RrState)> {
    trails(entries)
        .into_iter()
        .filter(|(k, t)| {
            t.last.as_ref().is_some_and(|(_, p)| *p == DnsPhase::Switch)
                && (zones.is_empty() || zones.contains(&k.zone))
        })
        .filter_map(|(k, t)| t.last.map(|(s, _)| (k, s)))
        .collect()
}

/// What our changes did to one RRset, as far as the journal can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    /// The state before our first change.
    pub original: RrState,
    /// Every state a change of ours may have left on the server: applied ones, and intents whose
    /// outcome is unknown (a crash between the intent and its answer). Only the server tells.
    pub ours: Vec<RrState>,
    /// The last change that may have been applied, with its phase.
    pub last: Option<(RrState, DnsPhase)>,
}

/// Per RRset, the trail of our changes, from its events in order.
pub fn trails(entries: &[DnsEvent]) -> BTreeMap<RrKey, Trail> {
    #[derive(PartialEq)]
    enum Known {
        Open,
        Applied,
        Failed,
    }
    let mut changes: Changes = BTreeMap::new();
    type Changes = BTreeMap<RrKey, (RrState, Vec<(RrState, DnsPhase, Known)>)>;
    fn settle(changes: &mut Changes, key: &RrKey, phase: DnsPhase, known: Known) {
        if let Some((_, list)) = changes.get_mut(key)
            && let Some(c) = list
                .iter_mut()
                .rev()
                .find(|c| c.1 == phase && c.2 == Known::Open)
        {
            c.2 = known;
        }
    }
    for e in entries {
        match e {
            DnsEvent::DnsIntent {
                key,
                phase,
                from,
                to,
                ..
            } => {
                changes
                    .entry(key.clone())
                    .or_insert_with(|| (from.clone(), Vec::new()))
                    .1
                    .push((to.clone(), *phase, Known::Open));
            }
            DnsEvent::DnsApplied { key, phase, .. } => {
                settle(&mut changes, key, *phase, Known::Applied)
            }
            DnsEvent::DnsFailed { key, phase, .. } => {
                settle(&mut changes, key, *phase, Known::Failed)
            }
            DnsEvent::DnsSafeAfter { .. } => {}
        }
    }
    changes
        .into_iter()
        .map(|(key, (original, list))| {
            // An open change (no outcome) may have been applied: only the server can tell.
            let maybe: Vec<&(RrState, DnsPhase, Known)> =
                list.iter().filter(|c| c.2 != Known::Failed).collect();
            let mut ours: Vec<RrState> = Vec::new();
            for (s, _, _) in &maybe {
                if !ours.contains(s) {
                    ours.push(s.clone());
                }
            }
            let last = maybe.last().map(|(s, p, _)| (s.clone(), *p));
            (
                key,
                Trail {
                    original,
                    ours,
                    last,
                },
            )
        })
        .collect()
}

/// What a rollback must do to one RRset, decided from what the server serves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// Already back to its state before our first change.
    Done,
    /// Holds a state one of our changes may have left: put `target` back.
    Put { current: RrState, target: RrState },
    /// Someone else changed it since: left alone, named to the operator.
    LeftAlone { current: RrState },
}

/// The decision for one RRset: the server's current state against our trail. Never assumes an
/// intent was or was not applied; `current` is the server's answer.
pub fn decide_revert(trail: &Trail, current: &RrState, restore_ttl_only: bool) -> Revert {
    let target = if restore_ttl_only {
        RrState {
            ttl: trail.original.ttl,
            values: current.values.clone(),
        }
    } else {
        trail.original.clone()
    };
    if *current == target {
        return Revert::Done;
    }
    if trail.ours.contains(current) {
        Revert::Put {
            current: current.clone(),
            target,
        }
    } else {
        Revert::LeftAlone {
            current: current.clone(),
        }
    }
}

/// Whether every RRset of `names` we ever changed is served exactly as before our first change
/// (values and TTL), read from the provider now.
///
/// # Errors
/// The RRsets that are not, or could not be read, each with what the server gave.
pub fn restored(spec: &DnsSpec, log: &dyn DnsLog, names: &[String]) -> Result<(), Vec<String>> {
    let client = provider(spec).map_err(|e| vec![e.to_string()])?;
    let mut wrong = Vec::new();
    for (key, trail) in trails(&log.history(names)) {
        if !names.is_empty() && !names.contains(&key.name) {
            continue;
        }
        match client.read(&key) {
            Ok(now) if now == trail.original => {}
            Ok(now) => wrong.push(format!(
                "{} {} serves TTL {} {}, before it was TTL {} {}",
                key.name,
                key.rtype,
                now.ttl,
                shown(&now.values),
                trail.original.ttl,
                shown(&trail.original.values)
            )),
            Err(e) => wrong.push(format!("{} {}: {e}", key.name, key.rtype)),
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong) }
}

/// Puts every RRset we changed back to its exact state before our first change (values and
/// TTL) when the server holds a state of ours; others are left alone and listed.
///
/// # Errors
/// A rejected key or change-log failures.
pub fn rollback(
    spec: &DnsSpec,
    log: &dyn DnsLog,
    zones: &[String],
    names: &[String],
    restore_ttl_only: bool,
) -> Result<Outcome, CutoverError> {
    let client = provider(spec)?;
    let client = client.as_ref();
    let entries = log.history(names);
    let mut out = Outcome::default();
    let phase = if restore_ttl_only {
        DnsPhase::RestoreTtl
    } else {
        DnsPhase::Rollback
    };
    let mut by_zone: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for (key, trail) in trails(&entries) {
        if (!zones.is_empty() && !zones.contains(&key.zone))
            || (!names.is_empty() && !names.contains(&key.name))
        {
            continue;
        }
        let current = match client.read(&key) {
            Ok(c) => c,
            Err(e) => {
                out.failed.push((key, e));
                continue;
            }
        };
        match decide_revert(&trail, &current, restore_ttl_only) {
            Revert::Done => out.already.push(key),
            Revert::LeftAlone { current } => out.skipped.push((
                key,
                format!(
                    "changed by someone since our change (now TTL {} {}): left alone",
                    current.ttl,
                    shown(&current.values)
                ),
            )),
            Revert::Put { current, target } => by_zone
                .entry(key.zone.clone())
                .or_default()
                .push((key, current, target)),
        }
    }
    for (zone, items) in by_zone {
        for ((key, _, _), result) in items
            .iter()
            .zip(apply_zone(client, log, phase, &zone, &items)?)
        {
            match result {
                Ok(()) => out.applied.push(key.clone()),
                Err(e @ (DnsError::TsigRejected { .. } | DnsError::ApiKeyRejected { .. })) => {
                    return Err(e.into());
                }
                Err(e) => out.failed.push((key.clone(), e.to_string())),
            }
        }
    }
    Ok(out)
}

/// An RRset's values for people: `192.0.2.1 192.0.2.2`, or `nothing` (the name is gone).
fn shown(values: &[String]) -> String {
    if values.is_empty() {
        "nothing".into()
    } else {
        values.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RrKey {
        RrKey {
            zone: "example.test".into(),
            name: "www.example.test.".into(),
            rtype: "A".into(),
        }
    }

    fn st(ttl: u32, v: &str) -> RrState {
        RrState {
            ttl,
            values: vec![v.into()],
        }
    }

    fn intent(phase: DnsPhase, from: &RrState, to: &RrState) -> DnsEvent {
        DnsEvent::DnsIntent {
            key: key(),
            phase,
            from: from.clone(),
            to: to.clone(),
            at: 0,
        }
    }

    fn applied(phase: DnsPhase) -> DnsEvent {
        DnsEvent::DnsApplied {
            key: key(),
            phase,
            at: 0,
        }
    }

    /// The lifecycle of one RRset: lower the TTL, switch, restore the TTL on the new value,
    /// roll back. A crash may come between any intent and its outcome, with the server holding
    /// either side of that change; after every such crash, the rollback decision must bring the
    /// RRset back exactly to its original (values and TTL), never leave it or blame someone.
    #[test]
    fn a_crash_at_every_instant_is_rolled_back_to_the_exact_original() {
        let original = st(3600, "192.0.2.10");
        let lowered = st(60, "192.0.2.10");
        let switched = st(60, "198.51.100.10");
        let restored_ttl = st(3600, "198.51.100.10");
        let steps = [
            (DnsPhase::LowerTtl, &original, &lowered),
            (DnsPhase::Switch, &lowered, &switched),
            (DnsPhase::RestoreTtl, &switched, &restored_ttl),
            (DnsPhase::Rollback, &restored_ttl, &original),
        ];
        for crash_at in 0..steps.len() {
            let mut events = Vec::new();
            for (phase, from, to) in &steps[..crash_at] {
                events.push(intent(*phase, from, to));
                events.push(applied(*phase));
            }
            let (phase, from, to) = steps[crash_at];
            events.push(intent(phase, from, to));
            let trail = &trails(&events)[&key()];
            assert_eq!(trail.original, original);
            // The server may hold either side of the interrupted change.
            for server in [from, to] {
                match decide_revert(trail, server, false) {
                    Revert::Done => assert_eq!(server, &original, "crash at {crash_at}"),
                    Revert::Put { target, .. } => {
                        assert_eq!(target, original, "crash at {crash_at}")
                    }
                    Revert::LeftAlone { current } => {
                        panic!("crash at {crash_at}: {current:?} wrongly taken for someone else's")
                    }
                }
            }
        }
    }

    #[test]
    fn a_refused_change_is_not_ours_and_an_edit_by_someone_else_is_left_alone() {
        let original = st(3600, "192.0.2.10");
        let switched = st(3600, "198.51.100.10");
        let events = vec![
            intent(DnsPhase::Switch, &original, &switched),
            DnsEvent::DnsFailed {
                key: key(),
                phase: DnsPhase::Switch,
                error: "changed".into(),
                at: 0,
            },
        ];
        let trail = &trails(&events)[&key()];
        assert!(trail.ours.is_empty(), "{trail:?}");
        assert!(switched_is_empty(&events));
        // The server holds the new value though we know our change was refused: someone else's.
        assert!(matches!(
            decide_revert(trail, &switched, false),
            Revert::LeftAlone { .. }
        ));
        // A TTL-only edit after our switch is someone else's too.
        let events = vec![
            intent(DnsPhase::Switch, &original, &switched),
            applied(DnsPhase::Switch),
        ];
        let trail = &trails(&events)[&key()];
        assert!(matches!(
            decide_revert(trail, &st(300, "198.51.100.10"), false),
            Revert::LeftAlone { .. }
        ));
        assert_eq!(
            decide_revert(trail, &switched, false),
            Revert::Put {
                current: switched.clone(),
                target: original.clone()
            }
        );
    }

    fn at(mut e: DnsEvent, t: u64) -> DnsEvent {
        match &mut e {
            DnsEvent::DnsIntent { at, .. }
            | DnsEvent::DnsApplied { at, .. }
            | DnsEvent::DnsFailed { at, .. } => *at = t,
            DnsEvent::DnsSafeAfter { .. } => {}
        }
        e
    }

    fn change(served: &RrState) -> Change {
        Change {
            key: key(),
            from: served.clone(),
            to: st(60, "198.51.100.10"),
        }
    }

    /// Readiness follows what is served now and when our changes landed: an old "safe after"
    /// never outlives a rollback that put the high TTL back.
    #[test]
    fn ttl_readiness_comes_from_the_served_ttl_and_the_times_of_our_changes() {
        let original = st(3600, "192.0.2.10");
        let lowered = st(60, "192.0.2.10");
        let switched = st(60, "198.51.100.10");
        assert_eq!(
            ttl_readiness(&change(&original), &[], 0),
            TtlReadiness::Served { ttl: 3600 }
        );
        // A TTL never higher than the switch's (as far as we know): nothing to wait for.
        assert_eq!(
            ttl_readiness(&change(&lowered), &[], 0),
            TtlReadiness::Ready
        );
        let mut h = vec![
            at(intent(DnsPhase::LowerTtl, &original, &lowered), 1000),
            at(applied(DnsPhase::LowerTtl), 1001),
        ];
        assert_eq!(
            ttl_readiness(&change(&lowered), &h, 2000),
            TtlReadiness::Until {
                until: 4601,
                ttl: 3600
            }
        );
        assert_eq!(
            ttl_readiness(&change(&lowered), &h, 4601),
            TtlReadiness::Ready
        );
        // Switched, then rolled back: TTL 3600 is served again.
        h.push(at(intent(DnsPhase::Switch, &lowered, &switched), 5000));
        h.push(at(applied(DnsPhase::Switch), 5000));
        h.push(at(intent(DnsPhase::Rollback, &switched, &original), 6000));
        h.push(at(applied(DnsPhase::Rollback), 6000));
        assert_eq!(
            ttl_readiness(&change(&original), &h, 99_999),
            TtlReadiness::Served { ttl: 3600 }
        );
        // Low again, but not by us: since when is unknown.
        assert_eq!(
            ttl_readiness(&change(&lowered), &h, 99_999),
            TtlReadiness::LoweredElsewhere {
                ttl: 3600,
                at: 6000
            }
        );
        // Lowered again by us: the wait starts again from that change.
        h.push(at(intent(DnsPhase::LowerTtl, &original, &lowered), 7000));
        h.push(at(applied(DnsPhase::LowerTtl), 7000));
        assert_eq!(
            ttl_readiness(&change(&lowered), &h, 7001),
            TtlReadiness::Until {
                until: 10_600,
                ttl: 3600
            }
        );
        // A refused change changed nothing: it does not count.
        let refused = vec![
            at(intent(DnsPhase::LowerTtl, &original, &lowered), 1000),
            DnsEvent::DnsFailed {
                key: key(),
                phase: DnsPhase::LowerTtl,
                error: "refused".into(),
                at: 1000,
            },
        ];
        assert_eq!(
            ttl_readiness(&change(&lowered), &refused, 1001),
            TtlReadiness::Ready
        );
    }

    fn spec(max: f64, min_rrsets: usize) -> DnsSpec {
        DnsSpec {
            provider: DnsProvider::ZoneFile {
                directory: "/nonexistent".into(),
                reload: None,
            },
            zones: vec!["example.test".into()],
            nameservers: vec![],
            resolvers: vec![],
            switch: vec![],
            lower_ttl: None,
            verify_timeout: Duration::from_secs(1),
            zone_share: crate::plan::ZoneShare { max, min_rrsets },
        }
    }

    /// The share rule counts what is selected, from the plan's minimum zone size on.
    #[test]
    fn the_zone_share_check_counts_the_selection_from_the_minimum_size() {
        let rr = |name: &str| Change {
            key: RrKey {
                zone: "example.test".into(),
                name: name.into(),
                rtype: "A".into(),
            },
            from: st(60, "192.0.2.10"),
            to: st(60, "198.51.100.10"),
        };
        let plan = ZonePlan {
            zone: "example.test".into(),
            rrsets: 6,
            changes: vec![rr("example.test."), rr("www.example.test.")],
            ..ZonePlan::default()
        };
        let share = |s: &DnsSpec, p: &[ZonePlan]| {
            checks(s, p, &[], 0)
                .into_iter()
                .filter(|f| f.check == Check::ZoneShare)
                .count()
        };
        let all = std::slice::from_ref(&plan);
        assert_eq!(
            share(&spec(0.30, 10), all),
            0,
            "a small zone is not checked"
        );
        assert_eq!(share(&spec(0.30, 6), all), 1, "2 of 6 is over 30 %");
        assert_eq!(share(&spec(0.50, 6), all), 0);
        let one = restrict(all, &["www.example.test.".into()]);
        assert_eq!(share(&spec(0.30, 6), &one), 0, "1 of 6 selected");
    }

    fn switched_is_empty(events: &[DnsEvent]) -> bool {
        switched(events, &[]).is_empty()
    }
}
