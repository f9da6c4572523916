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

use super::provider::Provider;
use super::query::{self, Rr};
use super::rfc2136::{DnsError, Rfc2136, Swap};
use crate::journal::{DnsPhase, Entry, Journal, JournalError, RrKey, RrState, now};
use crate::plan::{DnsProvider, DnsSpec};

/// Share of a zone's RRsets a plan may change without `--force`.
pub const MAX_SHARE: f64 = 0.30;

/// One RRset to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Why the plan is unsafe without `--force` (too large a share, a name server's address).
    pub unsafe_reasons: Vec<String>,
    /// Name servers of the zone's NS set that `verify` will not check (not in `nameservers`).
    pub unverified_servers: Vec<String>,
}

/// Why a DNS command stopped.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("refused without --force: {0}")]
    Unsafe(String),
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
            let connections = crate::lifecycle::Connections::new(
                &hosts,
                crate::lifecycle::default_agent_binary(),
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
    let records = query::axfr(server, zone, Duration::from_secs(10)).map_err(|message| {
        DnsError::Unreachable {
            server: server.to_string(),
            message,
        }
    })?;
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
            continue;
        }
        if ns_targets.contains(name) {
            plan.unsafe_reasons.push(format!(
                "{name} {rtype} is the address of a name server of the zone"
            ));
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
    let share = plan.changes.len() as f64 / plan.rrsets.max(1) as f64;
    if share > MAX_SHARE {
        plan.unsafe_reasons.push(format!(
            "{} of the zone's {} RRsets would change ({:.0} %, over {:.0} %)",
            plan.changes.len(),
            plan.rrsets,
            share * 100.0,
            MAX_SHARE * 100.0
        ));
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
    pub failed: Vec<(RrKey, String)>,
    /// Changes undone because a later one of the same run failed.
    pub compensated: Vec<RrKey>,
    /// Unix time after which the switch is safe (after `lower-ttl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_after: Option<u64>,
}

fn apply(
    client: &dyn Provider,
    journal: &mut Journal,
    phase: DnsPhase,
    key: &RrKey,
    from: &RrState,
    to: &RrState,
) -> Result<Result<(), DnsError>, JournalError> {
    journal.append(&Entry::DnsIntent {
        key: key.clone(),
        phase,
        from: from.clone(),
        to: to.clone(),
        at: now(),
    })?;
    match client.swap_all(
        &key.zone,
        &[Swap {
            name: &key.name,
            rtype: &key.rtype,
            current: from,
            new: to,
        }],
    ) {
        Ok(()) => {
            journal.append(&Entry::DnsApplied {
                key: key.clone(),
                phase,
                at: now(),
            })?;
            Ok(Ok(()))
        }
        Err(e) => {
            journal.append(&Entry::DnsFailed {
                key: key.clone(),
                phase,
                error: e.to_string(),
                at: now(),
            })?;
            Ok(Err(e))
        }
    }
}

/// One planned swap: which RRset, from what, to what.
type Item = (RrKey, RrState, RrState);

/// Applies the swaps of one zone in one atomic update; if one RRset changed meanwhile, falls
/// back to one update per RRset so the others still go and the changed one is named.
fn apply_zone(
    client: &dyn Provider,
    journal: &mut Journal,
    phase: DnsPhase,
    zone: &str,
    items: &[Item],
) -> Result<Vec<Result<(), DnsError>>, JournalError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    for (key, from, to) in items {
        journal.append(&Entry::DnsIntent {
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
    match client.swap_all(zone, &swaps) {
        Ok(()) => {
            for (key, _, _) in items {
                journal.append(&Entry::DnsApplied {
                    key: key.clone(),
                    phase,
                    at: now(),
                })?;
            }
            Ok(items.iter().map(|_| Ok(())).collect())
        }
        Err(DnsError::Changed { .. }) if items.len() > 1 => items
            .iter()
            .map(|(k, f, t)| apply(client, journal, phase, k, f, t))
            .collect(),
        Err(e) => {
            for (key, _, _) in items {
                journal.append(&Entry::DnsFailed {
                    key: key.clone(),
                    phase,
                    error: e.to_string(),
                    at: now(),
                })?;
            }
            Ok(items.iter().map(|_| Err(e.clone())).collect())
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
    journal: &mut Journal,
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
            journal,
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
        journal.append(&Entry::DnsSafeAfter {
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

/// The latest `safe_after` recorded for a zone.
fn safe_after(entries: &[Entry], zone: &str) -> Option<u64> {
    entries.iter().rev().find_map(|e| match e {
        Entry::DnsSafeAfter {
            zone: z,
            safe_after,
        } if z == zone => Some(*safe_after),
        _ => None,
    })
}

/// The plans cut down to the RRsets of `names` (absolute, with the final dot). The share check
/// belongs to the whole plan (one site's records are often most of its own zone), so only the
/// reasons about the names kept stay.
pub fn restrict(plans: &[ZonePlan], names: &[String]) -> Vec<ZonePlan> {
    plans
        .iter()
        .map(|p| {
            let changes: Vec<Change> = p
                .changes
                .iter()
                .filter(|c| names.contains(&c.key.name))
                .cloned()
                .collect();
            let unsafe_reasons: Vec<String> = p
                .unsafe_reasons
                .iter()
                .filter(|r| {
                    changes
                        .iter()
                        .any(|c| r.starts_with(&format!("{} ", c.key.name)))
                })
                .cloned()
                .collect();
            ZonePlan {
                zone: p.zone.clone(),
                rrsets: p.rrsets,
                changes,
                unsafe_reasons,
                unverified_servers: p.unverified_servers.clone(),
            }
        })
        .filter(|p| !p.changes.is_empty())
        .collect()
}

/// Whether the plans may switch now: no unsafe reason, and TTLs lowered long enough ago for
/// resolvers to have dropped the old ones. The reason when not.
///
/// # Errors
/// The first reason found, naming its zone.
pub fn ready_to_switch(plans: &[ZonePlan], entries: &[Entry]) -> Result<(), String> {
    let t = now();
    for plan in plans {
        if let Some(reason) = plan.unsafe_reasons.first() {
            return Err(format!("zone {}: {reason}", plan.zone));
        }
        let waiting = plan.changes.iter().any(|c| c.from.ttl > c.to.ttl);
        match safe_after(entries, &plan.zone) {
            Some(s) if s > t => {
                return Err(format!(
                    "zone {}: resolvers may still cache the old TTL for {} s (until the time `lower-ttl` recorded)",
                    plan.zone,
                    s - t
                ));
            }
            None if waiting => {
                return Err(format!(
                    "zone {}: TTLs were not lowered yet: run `dns lower-ttl` and wait the old TTL",
                    plan.zone
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Seconds until every zone's lowered TTL is safe (0 when already safe or never lowered).
pub fn seconds_until_safe(entries: &[Entry], zones: &[String]) -> u64 {
    let t = now();
    zones
        .iter()
        .filter_map(|z| safe_after(entries, z))
        .map(|s| s.saturating_sub(t))
        .max()
        .unwrap_or(0)
}

/// Switches every planned RRset by compare-and-swap. A failure undoes what this run applied.
///
/// # Errors
/// Too early after `lower-ttl` (unless `force`), an unsafe plan (unless `force`), a rejected
/// key, or journal failures.
pub fn switch(
    spec: &DnsSpec,
    plans: &[ZonePlan],
    journal: &mut Journal,
    force: bool,
) -> Result<Outcome, CutoverError> {
    if !force {
        ready_to_switch(plans, &journal.entries()?).map_err(CutoverError::Unsafe)?;
    }
    let client = provider(spec)?;
    let client = client.as_ref();
    let mut out = Outcome::default();
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
        let results = apply_zone(client, journal, DnsPhase::Switch, &plan.zone, &items)?;
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
                && apply(
                    client,
                    journal,
                    DnsPhase::Rollback,
                    &c.key,
                    &now_state,
                    &back,
                )?
                .is_ok()
            {
                out.compensated.push(c.key.clone());
            }
        }
    }
    Ok(out)
}

/// The RRset `key` as the server serves it now (empty values when absent).
///
/// # Errors
/// The server does not answer.
pub fn read_rrset(server: std::net::SocketAddr, key: &RrKey) -> Result<RrState, String> {
    let rt = key.rtype.parse().map_err(|e| format!("{e:?}"))?;
    let rrs = query::lookup(server, &key.name, rt, Duration::from_secs(3))?;
    let mut values: Vec<String> = rrs.iter().map(|r| r.data.clone()).collect();
    values.sort();
    Ok(RrState {
        ttl: rrs.first().map_or(0, |r| r.ttl),
        values,
    })
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
    let deadline = Instant::now() + timeout;
    loop {
        let mut wrong = Vec::new();
        let mut serials = std::collections::BTreeSet::new();
        if let Some(p) = &files {
            for (key, want) in expected {
                match p.read(key) {
                    Ok(s) if s.values == want.values => {}
                    Ok(s) => wrong.push(format!(
                        "{}: {} {} holds {:?}, expected {:?}",
                        p.label(),
                        key.name,
                        key.rtype,
                        s.values,
                        want.values
                    )),
                    Err(e) => wrong.push(e),
                }
            }
        }
        for server in &spec.nameservers {
            for (key, want) in expected {
                match read_rrset(*server, key) {
                    Ok(s) if s.values == want.values => {}
                    Ok(s) => wrong.push(format!(
                        "{server}: {} {} serves {:?}, expected {:?}",
                        key.name, key.rtype, s.values, want.values
                    )),
                    Err(e) => wrong.push(format!("{server}: {e}")),
                }
            }
            for zone in expected
                .iter()
                .map(|(k, _)| &k.zone)
                .collect::<std::collections::BTreeSet<_>>()
            {
                match query::soa_serial(*server, zone, Duration::from_secs(3)) {
                    Ok(s) => {
                        serials.insert((zone.clone(), s));
                    }
                    Err(e) => wrong.push(e),
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
                            wrong.push(format!("resolver {resolver}: {} {} gives {values:?} (cached until its TTL runs out), expected {:?}", key.name, key.rtype, want.values));
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

/// The RRsets our last applied switch set, with the values they should now serve.
pub fn switched(entries: &[Entry], zones: &[String]) -> Vec<(RrKey, RrState)> {
    history(entries)
        .into_iter()
        .filter(|(k, (_, _, phase))| {
            *phase == DnsPhase::Switch && (zones.is_empty() || zones.contains(&k.zone))
        })
        .map(|(k, (_, ours, _))| (k, ours))
        .collect()
}

/// Per RRset: the state before our first change, and the state after our last applied one.
fn history(entries: &[Entry]) -> BTreeMap<RrKey, (RrState, RrState, DnsPhase)> {
    let mut intents: HashMap<(RrKey, DnsPhase), (RrState, RrState)> = HashMap::new();
    let mut out: BTreeMap<RrKey, (RrState, RrState, DnsPhase)> = BTreeMap::new();
    for e in entries {
        match e {
            Entry::DnsIntent {
                key,
                phase,
                from,
                to,
                ..
            } => {
                intents.insert((key.clone(), *phase), (from.clone(), to.clone()));
                // A crash may come before the outcome line: count the intent as maybe applied.
                out.entry(key.clone())
                    .and_modify(|h| h.1 = to.clone())
                    .or_insert((from.clone(), to.clone(), *phase));
            }
            Entry::DnsApplied { key, phase, .. } => {
                if let (Some((_, to)), Some(h)) =
                    (intents.get(&(key.clone(), *phase)), out.get_mut(key))
                {
                    h.1 = to.clone();
                    h.2 = *phase;
                }
            }
            Entry::DnsFailed { key, phase, .. } => {
                if let (Some((from, _)), Some(h)) =
                    (intents.get(&(key.clone(), *phase)), out.get_mut(key))
                {
                    h.1 = from.clone();
                }
            }
            Entry::DnsSafeAfter { .. }
            | Entry::Site { .. }
            | Entry::Probe { .. }
            | Entry::Unit { .. }
            | Entry::Override { .. } => {}
        }
    }
    out
}

/// Puts every RRset we changed back to its exact state before our first change (values and
/// TTL), when the server still holds our last value; others are left alone and listed.
///
/// # Errors
/// A rejected key or journal failures.
pub fn rollback(
    spec: &DnsSpec,
    journal: &mut Journal,
    zones: &[String],
    names: &[String],
    restore_ttl_only: bool,
) -> Result<Outcome, CutoverError> {
    let client = provider(spec)?;
    let client = client.as_ref();
    let entries = journal.entries()?;
    let mut out = Outcome::default();
    let phase = if restore_ttl_only {
        DnsPhase::RestoreTtl
    } else {
        DnsPhase::Rollback
    };
    let mut by_zone: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for (key, (original, ours, _)) in history(&entries) {
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
        let target = if restore_ttl_only {
            RrState {
                ttl: original.ttl,
                values: current.values.clone(),
            }
        } else {
            original.clone()
        };
        if current == target {
            out.skipped.push((key, "already as before".into()));
            continue;
        }
        if current.values != ours.values {
            out.skipped.push((
                key.clone(),
                format!(
                    "changed by someone since our change (now {:?}): left alone",
                    current.values
                ),
            ));
            continue;
        }
        by_zone
            .entry(key.zone.clone())
            .or_default()
            .push((key, current, target));
    }
    for (zone, items) in by_zone {
        for ((key, _, _), result) in items
            .iter()
            .zip(apply_zone(client, journal, phase, &zone, &items)?)
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
