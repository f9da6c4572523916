//! `transhumance db sync|verify PLAN`: the plan's databases, moved and verified table by table.

use std::path::Path;
use std::sync::Mutex;

use super::exit;
use super::printer::Printer;
use super::progress::Bars;
use crate::event::{Observer, Silent};
use crate::lifecycle::databases::{DbResult, Mode, run as run_databases};
use crate::lifecycle::guard::Guarded;
use crate::lifecycle::{Connections, default_agent_binary, expand_sites};
use crate::plan::units::human_bytes;
use crate::unit::UnitId;

/// What to do with the plan's databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// Dump, stream and restore every selected database (re-runnable), then verify it.
    /// A database that may be live on the new side is refused unless named in `--allow-live`.
    Sync,
    /// Compare every table of each database at both ends (rows and content, by key range).
    Verify,
}

pub fn run(
    step: Step,
    plan_path: &Path,
    only: &[String],
    allow_live: &[UnitId],
    printer: &Printer,
) -> u8 {
    let loaded = match super::validate::load_or_report(plan_path, printer) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if loaded.plan.databases.is_empty() {
        printer.error(format!(
            "{}: the plan has no `databases` section",
            loaded.source.name
        ));
        return exit::INVALID;
    }
    if let Some(u) = allow_live
        .iter()
        .find(|u| !matches!(u, UnitId::Database(_)))
    {
        printer.error(format!(
            "`--allow-live {u}`: `db` overrides databases only (`db:NAME`)"
        ));
        return exit::INVALID;
    }
    // The passwords of the rules that may select what is asked, read before anything moves.
    let needs = crate::lifecycle::secrets::Needs {
        databases: loaded
            .plan
            .databases
            .iter()
            .filter(|r| {
                only.is_empty()
                    || only
                        .iter()
                        .any(|n| crate::lifecycle::databases::selects(r, n))
            })
            .collect(),
        mail: false,
        dns: false,
    };
    if let Some(why) = crate::lifecycle::secrets::refusal(&loaded.plan, &needs) {
        printer.error(why);
        return exit::INVALID;
    }
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let observer: Box<dyn Observer> = Box::new(super::run_log::Logged(if printer.progress {
        Box::new(Bars::new())
    } else {
        Box::new(Silent)
    }));
    // What the inventory leaves out is selected by no rule (`Inventory::restricted`); a plan
    // without an inventory is expanded only by `sync`, which needs the sites' databases.
    let inventory = (step == Step::Sync || loaded.plan.inventory.is_some())
        .then(|| expand_sites(&loaded, &connections));
    let plan = inventory
        .as_ref()
        .map_or_else(|| loaded.plan.clone(), |i| i.restricted(&loaded.plan));
    let results = match step {
        Step::Verify => run_databases(&plan, &connections, only, Mode::Verify, observer.as_ref()),
        Step::Sync => {
            // Which site names which database: a database whose site could not be expanded
            // counts as one no site names, live as soon as any site may have switched.
            let inventory = inventory.unwrap_or_default();
            if let Some(i) = inventory.unreachable.first() {
                printer.status(format!(
                    "warning: {}: the databases of sites not expanded count as shared (live once any site may have switched)",
                    i.message
                ));
            }
            let sites = inventory.sites;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let guard = match Guarded::open(&plan, &sites, allow_live.to_vec(), &command) {
                Ok(g) => Mutex::new(g),
                Err(e) => {
                    printer.error(e.to_string());
                    return super::migration::journal_failed(&e);
                }
            };
            run_databases(
                &plan,
                &connections,
                only,
                Mode::Copy(&guard),
                observer.as_ref(),
            )
        }
    };
    observer.finish();
    print(&results, printer);
    if results.iter().any(|r| r.live.is_some()) {
        exit::UNSAFE
    } else if results.iter().all(DbResult::clean) {
        exit::OK
    } else {
        exit::FAILURES
    }
}

/// Prints database results (also used by `verify PLAN`).
pub fn print(results: &[DbResult], printer: &Printer) {
    if printer.json {
        outln!("{}", serde_json::to_string_pretty(results).expect("json"));
        return;
    }
    for r in results {
        if let Some(e) = &r.error {
            match r.error_kind {
                Some(kind) => outln!("FAILED    {} ({}): {e}", r.name, kind.label()),
                None => outln!("FAILED    {}: {e}", r.name),
            }
            continue;
        }
        if let Some(live) = &r.live {
            outln!("REFUSED   {}: {}", r.name, live.message);
            continue;
        }
        if let Some(m) = &r.moved {
            outln!(
                "{:<9} {} ({} streamed){}",
                m.outcome,
                r.name,
                human_bytes(m.bytes),
                m.note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            );
            for w in &m.warnings {
                outln!("warning   {}: {w}", r.name);
            }
        }
        for t in &r.tables {
            let full = if t.hashed_in_full {
                " (no primary key nor unique NOT NULL index: hashed in full)"
            } else {
                ""
            };
            let note = t
                .note
                .as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default();
            match t.status.as_str() {
                "same" => outln!(
                    "same      {}.{}: {} rows{full}",
                    r.name,
                    t.table,
                    t.rows_source
                ),
                _ => {
                    const SHOWN: usize = 10;
                    let mut ranges: Vec<String> = if t.chunks == 1 && !t.differing_ranges.is_empty()
                    {
                        vec!["in its only chunk (the whole table)".into()]
                    } else {
                        t.differing_ranges
                            .iter()
                            .take(SHOWN)
                            .map(|r| format!("in {r}"))
                            .collect()
                    };
                    if t.differing_ranges.len() > SHOWN {
                        ranges.push(format!(
                            "and {} more ranges",
                            t.differing_ranges.len() - SHOWN
                        ));
                    }
                    outln!(
                        "DIFFERENT {}.{}: {} rows at the source, {} at the target; {}{note}{full}",
                        r.name,
                        t.table,
                        t.rows_source,
                        t.rows_target,
                        if ranges.is_empty() {
                            t.status.clone()
                        } else {
                            ranges.join(", ")
                        }
                    );
                }
            }
        }
        for p in &r.properties {
            outln!(
                "DIFFERENT {}: {}: source {}, target {}",
                r.name,
                p.fact,
                p.source.as_deref().unwrap_or("(absent)"),
                p.target.as_deref().unwrap_or("(absent)")
            );
        }
        if r.properties_compared > 0 && r.properties.is_empty() {
            outln!(
                "same      {}: {} catalog facts (owners, privileges, settings, grants)",
                r.name,
                r.properties_compared
            );
        }
        for s in &r.skipped {
            outln!("skipped   {}: {}: {}", r.name, s.object, s.why);
        }
    }
}
