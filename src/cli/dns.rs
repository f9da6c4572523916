//! `transhumance dns plan|lower-ttl|switch|verify|rollback|restore-ttl PLAN`.

use std::path::Path;
use std::time::Duration;

use super::exit;
use super::printer::Printer;
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
    pub force: bool,
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
        force,
        reviewed,
        format,
    } = args;
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
    let plans = || -> Result<Vec<ZonePlan>, CutoverError> {
        let mut plans: Vec<ZonePlan> = cutover::plan_zones(&spec, &selected)
            .into_iter()
            .collect::<Result<_, _>>()?;
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
        if let Some(expected) = reviewed {
            let now = cutover::checksum(&plans);
            if now != expected {
                return Err(CutoverError::Unsafe(format!(
                    "the plan changed since it was reviewed (checksum {now}, reviewed {expected}): run `dns plan` again"
                )));
            }
        }
        Ok(plans)
    };
    let log_error = |e: crate::journal::JournalError| {
        CutoverError::Log(crate::unit::UnitError::io(e.to_string()))
    };
    // The plan's journal, with this command journaled as a run (command line, user, overrides).
    let journal = |name: &str| -> Result<(Ledger, u64), CutoverError> {
        let ledger = Ledger::open(&loaded.plan.state_dir).map_err(log_error)?;
        let overrides = if force {
            vec!["force".to_string()]
        } else {
            Vec::new()
        };
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
            let plans = plans()?;
            let format = if printer.json {
                crate::report::Format::Json
            } else {
                format
            };
            match format {
                crate::report::Format::Json => {
                    outln!("{}", serde_json::to_string_pretty(&plans).expect("json"))
                }
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
                        for r in &p.unsafe_reasons {
                            outln!("\n**Refused without `--force`:** {r}");
                        }
                        for n in &p.unverified_servers {
                            outln!("\n*Not verified:* name server {n}");
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
                        for r in &p.unsafe_reasons {
                            outln!("  ! unsafe without --force: {r}");
                        }
                        for n in &p.unverified_servers {
                            outln!("  ? name server not verified: {n}");
                        }
                    }
                }
            }
            if !printer.json {
                outln!(
                    "plan checksum: {} (apply exactly this plan with --plan-checksum)",
                    cutover::checksum(&plans)
                );
            }
            let unsafe_plan = plans.iter().any(|p| !p.unsafe_reasons.is_empty());
            Ok(if unsafe_plan && !force {
                exit::UNSAFE
            } else {
                exit::OK
            })
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
            let j = journal("switch")?;
            let o = cutover::switch(&spec, &plans, &j.0, force)?;
            end(j, &o)?;
            Ok(report(&o, false, printer))
        }
        Step::Verify => {
            // What the last switch set, from the journal; before any switch, what the plan wants.
            let entries = ledger::read(&loaded.plan.state_dir)
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
            let j = journal(name)?;
            let o = cutover::rollback(&spec, &j.0, &selected, &[], step == Step::RestoreTtl)?;
            end(j, &o)?;
            // A record left alone is not back: the operator must look at it.
            Ok(report(&o, true, printer))
        }
    })();
    match result {
        Ok(code) => code,
        Err(CutoverError::Unsafe(m)) => {
            printer.error(format!("refused without --force: {m}"));
            exit::UNSAFE
        }
        Err(CutoverError::NotSupported(m)) => {
            printer.error(m);
            exit::INVALID
        }
        Err(e) => {
            printer.error(e.to_string());
            exit::FAILURES
        }
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
