//! `transhumance dns plan|lower-ttl|switch|verify|rollback|restore-ttl PLAN`.

use std::path::Path;
use std::time::Duration;

use super::exit;
use super::printer::Printer;
use crate::check::{Check, Finding, Refused, Verdict};
use crate::dns::cutover::{self, CutoverError, Outcome, ZonePlan};
use crate::lifecycle::ledger::{self, Ledger};

/// The DNS steps of a cutover, in the order they are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// Show the changes per zone (current value → wanted value), read from the servers.
    Plan,
    /// Lower the TTL of every RRset that will switch; records when the switch becomes safe.
    LowerTtl,
    /// Switch every RRset by compare-and-swap (refused before the old TTL has expired).
    Switch,
    /// Poll every authoritative server until it serves the new values.
    Verify,
    /// Put back the exact previous values and TTLs of what still holds ours.
    Rollback,
    /// Put the original TTLs back after the soak period (values stay).
    RestoreTtl,
}

/// The options of one `dns` command.
pub struct DnsArgs<'a> {
    pub step: Step,
    pub plan: &'a Path,
    pub zones: &'a [String],
    pub only: &'a [String],
    /// The safety checks let through (`--allow`, `--force`).
    pub allowed: crate::check::Allowed,
    /// The checksum of the reviewed plan (`--plan-checksum`).
    pub reviewed: Option<&'a str>,
    pub format: crate::report::Format,
}

pub fn run(args: DnsArgs<'_>, printer: &Printer) -> u8 {
    let DnsArgs {
        step,
        plan: plan_path,
        zones,
        only,
        allowed,
        reviewed,
        format,
    } = args;
    let asks = match step {
        Step::Switch => Some("the DNS switch"),
        Step::Rollback => Some("the DNS rollback"),
        _ => None,
    };
    if let Some(what) = asks
        && let Err(code) = super::confirm::can_ask(what, printer)
    {
        return code;
    }
    let loaded = match super::validate::load_or_report(plan_path, printer) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(spec) = loaded.plan.dns.clone() else {
        printer.error(format!(
            "{}: the plan has no `dns` section",
            loaded.source.name
        ));
        return exit::INVALID;
    };
    let selected: Vec<String> = if zones.is_empty() {
        spec.zones.clone()
    } else {
        for z in zones {
            if !spec
                .zones
                .iter()
                .any(|s| s == &crate::plan::validate::normalize_zone(z))
            {
                printer.error(format!(
                    "zone `{z}` is not in the plan (zones: {})",
                    spec.zones.join(", ")
                ));
                return exit::INVALID;
            }
        }
        zones
            .iter()
            .map(|z| crate::plan::validate::normalize_zone(z))
            .collect()
    };
    // A plan with sites switches their names only, as `cutover` does: names of no site (an MX
    // host sharing the old address) are left alone unless named with `--only`.
    let site_names = || -> Result<Option<Vec<String>>, CutoverError> {
        if !only.is_empty()
            || (loaded.plan.site_rules.is_empty() && loaded.plan.inventory.is_none())
        {
            return Ok(None);
        }
        let connections = crate::lifecycle::Connections::new(
            &loaded.plan.hosts,
            crate::lifecycle::default_agent_binary(),
        );
        let inventory = crate::lifecycle::inventory::expand_sites(&loaded, &connections);
        if let Some(i) = inventory.unreachable.first() {
            return Err(CutoverError::NotSupported(format!(
                "expanding the sites (their names are what switches): {}",
                i.message
            )));
        }
        Ok(Some(
            inventory
                .sites
                .iter()
                .flat_map(|s| s.domains.iter().map(|d| crate::dns::query::fqdn(d)))
                .collect(),
        ))
    };
    let plans = || -> Result<Vec<ZonePlan>, CutoverError> {
        let mut plans: Vec<ZonePlan> = cutover::plan_zones(&spec, &selected)
            .into_iter()
            .collect::<Result<_, _>>()?;
        if let Some(names) = site_names()? {
            let left: usize = plans
                .iter()
                .flat_map(|p| &p.changes)
                .filter(|c| !names.contains(&c.key.name))
                .count();
            if left > 0 {
                printer.status(format!(
                    "{left} RRset(s) of names no site of the plan has are left alone (name them with --only to include them)"
                ));
            }
            for p in &mut plans {
                p.changes.retain(|c| names.contains(&c.key.name));
            }
        }
        if !only.is_empty() {
            // `--only www.example.org`: just these names (relative to their zone or absolute).
            for p in &mut plans {
                let zone = p.zone.clone();
                p.changes.retain(|c| {
                    only.iter().any(|o| {
                        crate::dns::query::fqdn(o) == c.key.name
                            || format!("{}.{}.", o.trim_end_matches('.'), zone) == c.key.name
                    })
                });
            }
        }
        Ok(plans)
    };
    // Every check of this command on exactly the plans it would apply: `plan-changed` against
    // the reviewed checksum, then the switch's own.
    let findings = |plans: &[ZonePlan], ledger: Option<&Ledger>| -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(expected) = reviewed {
            let now = cutover::checksum(plans);
            if now != expected {
                out.push(Finding::new(
                    Check::PlanChanged,
                    "the DNS plan",
                    format!(
                        "checksum {now} now, {expected} when reviewed: run `dns plan` again and review it"
                    ),
                ));
            }
        }
        let history = match ledger {
            Some(l) => crate::dns::provider::DnsLog::history(l, &cutover::names_of(plans)),
            None => ledger::read(&loaded.plan)
                .map(|e| ledger::dns_events(&e))
                .unwrap_or_default(),
        };
        out.extend(cutover::checks(
            &spec,
            plans,
            &history,
            crate::journal::now(),
        ));
        out
    };
    // The change log's error type has no room for the lock's holder: remembered here.
    let locked = std::cell::Cell::new(false);
    let log_error = |e: crate::journal::JournalError| {
        locked.set(locked.get() || matches!(e, crate::journal::JournalError::Locked { .. }));
        CutoverError::Log(crate::unit::UnitError::io(e.to_string()))
    };
    // The plan's journal, with this command journaled as a run (command line, user, overrides).
    let journal = |name: &str| -> Result<(Ledger, u64), CutoverError> {
        let ledger = Ledger::for_plan(&loaded.plan).map_err(log_error)?;
        let overrides = allowed.journaled();
        let run = ledger
            .start_run(ledger::RunCommand::Dns { step: name.into() }, overrides)
            .map_err(log_error)?;
        Ok((ledger, run))
    };
    let end = |(ledger, run): (Ledger, u64), o: &Outcome| -> Result<(), CutoverError> {
        ledger.end_run(run, o.failed.is_empty()).map_err(log_error)
    };
    let result: Result<u8, CutoverError> = (|| match step {
        Step::Plan => {
            // A transfer may succeed unsigned: the key is checked by itself, so a wrong secret
            // fails here and not at `lower-ttl`.
            if let Err(e @ crate::dns::provider::DnsError::TsigRejected { .. }) =
                crate::dns::tsig::check_plan_key(&spec)
            {
                return Err(e.into());
            }
            let plans = plans()?;
            let format = if printer.json {
                crate::report::Format::Json
            } else {
                format
            };
            let verdict = allowed.judge(findings(&plans, None));
            match format {
                // One document: the checksum and the checks' refusals are fields of it.
                crate::report::Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "checksum": cutover::checksum(&plans),
                        "zones": plans,
                        "refused": verdict.refused,
                    }))
                    .expect("json")
                ),
                crate::report::Format::Markdown | crate::report::Format::Html => {
                    for p in &plans {
                        outln!(
                            "## Zone `{}`\n\n{} RRsets, {} to change.\n",
                            p.zone,
                            p.rrsets,
                            p.changes.len()
                        );
                        outln!(
                            "| name | type | TTL | now | after the switch |\n|---|---|---|---|---|"
                        );
                        for c in &p.changes {
                            outln!(
                                "| `{}` | {} | {} → {} | {} | {} |",
                                c.key.name,
                                c.key.rtype,
                                c.from.ttl,
                                c.to.ttl,
                                c.from.values.join(" "),
                                c.to.values.join(" ")
                            );
                        }
                        for n in &p.unverified_servers {
                            outln!("\n*Not verified:* name server {n}");
                        }
                        for r in &p.txt_risks {
                            outln!("\n*Risk:* `{}` {r}", r.name);
                        }
                        outln!("");
                    }
                }
                crate::report::Format::Text => {
                    for p in &plans {
                        outln!(
                            "zone {} ({} RRsets, {} to change)",
                            p.zone,
                            p.rrsets,
                            p.changes.len()
                        );
                        for c in &p.changes {
                            outln!(
                                "  ~ {} {} ttl {} -> {}: {} -> {}",
                                c.key.name,
                                c.key.rtype,
                                c.from.ttl,
                                c.to.ttl,
                                c.from.values.join(" "),
                                c.to.values.join(" ")
                            );
                        }
                        for n in &p.unverified_servers {
                            outln!("  ? name server not verified: {n}");
                        }
                        for r in &p.txt_risks {
                            outln!("  ! {} {r}", r.name);
                        }
                    }
                }
            }
            if format != crate::report::Format::Json {
                outln!(
                    "plan checksum: {} (apply exactly this plan with --plan-checksum)",
                    cutover::checksum(&plans)
                );
            }
            print_verdict(&verdict, format != crate::report::Format::Json);
            // A TTL still high is a wait before the switch, not a fault of the plan.
            Ok(
                if verdict
                    .refused
                    .iter()
                    .any(|f| f.check != Check::TtlNotExpired)
                {
                    exit::UNSAFE
                } else {
                    exit::OK
                },
            )
        }
        Step::LowerTtl => {
            let plans = plans()?;
            let j = journal("lower-ttl")?;
            let o = cutover::lower_ttl(&spec, &plans, &j.0)?;
            end(j, &o)?;
            Ok(report(&o, false, printer))
        }
        Step::Switch => {
            let plans = plans()?;
            // The question shows the very plans the switch applies.
            let changes: Vec<cutover::Change> =
                plans.iter().flat_map(|p| p.changes.clone()).collect();
            let summary = super::confirm::render_dns(
                &format!(
                    "dns switch: DNS records that will switch in zone(s) {}",
                    selected.join(", ")
                ),
                &changes,
                &[],
            );
            // A switch its checks will refuse asks nothing: the refusal below says why.
            let refused = !allowed.judge(findings(&plans, None)).ok();
            if let Err(code) = super::confirm::ask(
                "the DNS switch",
                &summary,
                changes.is_empty() || refused,
                printer,
            ) {
                return Ok(code);
            }
            let j = journal("switch")?;
            let verdict = allowed.judge(findings(&plans, Some(&j.0)));
            j.0.record_verdict("dns switch", &verdict)
                .map_err(log_error)?;
            print_verdict(&verdict, false);
            if !verdict.ok() {
                j.0.end_run(j.1, false).map_err(log_error)?;
                return Err(Refused(verdict.refused).into());
            }
            let o = cutover::switch(&spec, &plans, &j.0, &allowed)?;
            end(j, &o)?;
            Ok(report(&o, false, printer))
        }
        Step::Verify => {
            // What the last switch set, from the journal; before any switch, what the plan wants.
            let entries = ledger::read(&loaded.plan)
                .map_err(|e| CutoverError::Log(crate::unit::UnitError::io(e.to_string())))?;
            let mut expected = cutover::switched(&ledger::dns_events(&entries), &selected);
            if expected.is_empty() {
                expected = plans()?
                    .into_iter()
                    .flat_map(|p| p.changes)
                    .map(|c| (c.key, c.to))
                    .collect();
            }
            match cutover::verify(
                &spec,
                &expected,
                spec.verify_timeout.max(Duration::from_secs(1)),
            ) {
                Ok(lines) => {
                    for l in lines {
                        outln!("verified {l}");
                    }
                    Ok(exit::OK)
                }
                Err(wrong) => {
                    for w in wrong {
                        outln!("not yet   {w}");
                    }
                    Ok(exit::FAILURES)
                }
            }
        }
        Step::Rollback | Step::RestoreTtl => {
            let name = if step == Step::RestoreTtl {
                "restore-ttl"
            } else {
                "rollback"
            };
            if step == Step::Rollback && !printer.yes {
                // What the rollback will decide, from the same journal and the servers now.
                let history = ledger::read(&loaded.plan)
                    .map(|e| ledger::dns_events(&e))
                    .map_err(log_error)?;
                let p = crate::dns::preview::rollback(&spec, &history, &selected, &[], false)?;
                let summary = super::confirm::render_dns(
                    &format!(
                        "dns rollback: DNS records put back as before our first change in zone(s) {}",
                        selected.join(", ")
                    ),
                    &p.changes,
                    &p.left_alone,
                );
                let empty = p.changes.is_empty() && p.left_alone.is_empty();
                if let Err(code) = super::confirm::ask("the DNS rollback", &summary, empty, printer)
                {
                    return Ok(code);
                }
            }
            let j = journal(name)?;
            let o = cutover::rollback(&spec, &j.0, &selected, &[], step == Step::RestoreTtl)?;
            end(j, &o)?;
            // A record left alone is not back: the operator must look at it.
            Ok(report(&o, true, printer))
        }
    })();
    match result {
        Ok(code) => code,
        Err(CutoverError::Refused(r)) => {
            printer.error(r.to_string());
            exit::UNSAFE
        }
        Err(CutoverError::NotSupported(m)) => {
            printer.error(m);
            exit::INVALID
        }
        Err(e) => {
            printer.error(e.to_string());
            if locked.get() {
                exit::LOCKED
            } else {
                exit::FAILURES
            }
        }
    }
}

/// The checks' findings: refusals (on stdout with the plan, as part of it) and overrides
/// (always, on stderr).
fn print_verdict(verdict: &Verdict, with_refusals: bool) {
    if with_refusals {
        for f in &verdict.refused {
            if f.check == Check::TtlNotExpired {
                outln!("  ~ not yet: {f}");
            } else {
                outln!("  ! refused: {f} (to go on anyway: --allow {})", f.check);
            }
        }
    }
    for o in &verdict.overridden {
        super::run_log::record("notice", &format!("warning: {o}"));
        eprintln!("warning: {o}");
    }
}

fn report(o: &Outcome, left_alone_fails: bool, printer: &Printer) -> u8 {
    if printer.json {
        outln!("{}", serde_json::to_string_pretty(o).expect("json"));
    } else {
        for k in &o.applied {
            outln!("changed   {} {}", k.name, k.rtype);
        }
        for k in &o.already {
            outln!(
                "already   {} {} (as before our first change)",
                k.name,
                k.rtype
            );
        }
        for (k, why) in &o.skipped {
            outln!("left      {} {}: {why}", k.name, k.rtype);
        }
        for k in &o.compensated {
            outln!(
                "undone    {} {} (a later change of this run failed)",
                k.name,
                k.rtype
            );
        }
        for (k, why) in &o.failed {
            outln!("FAILED    {} {}: {why}", k.name, k.rtype);
        }
        if let Some(s) = o.safe_after {
            let wait = s.saturating_sub(crate::journal::now());
            outln!("switch safe in {wait} s (when resolvers have dropped the old TTL)");
        }
    }
    let left_alone = left_alone_fails && !o.skipped.is_empty();
    if o.failed.is_empty() && !left_alone {
        exit::OK
    } else {
        exit::FAILURES
    }
}
