//! `transhumance verify SRC DST` (two trees) or `verify PLAN` (every site of a plan).

use std::path::Path;

use super::endpoint::{Location, connect, parse_location};
use super::printer::Printer;
use super::rsync::{Ending, FilterArgs};
use crate::event::Silent;
use crate::lifecycle::dry_run::site_sync_options;
use crate::lifecycle::{Connections, default_agent_binary, expand_sites};
use crate::sync::verify::{VerifyReport, verify, verify_with_source};
use crate::sync::{Endpoint, SyncOptions};

/// Options of `verify`, from the command line.
pub struct VerifyArgs<'a> {
    pub first: &'a str,
    pub second: Option<&'a str>,
    pub rsh: Option<&'a str>,
    /// Filter rules for a pair (a plan's sites use their own).
    pub filters: &'a FilterArgs,
    pub options: SyncOptions,
    /// `--rsync-exit-codes`.
    pub rsync_exit_codes: bool,
}

pub fn run(args: VerifyArgs<'_>, printer: &Printer) -> u8 {
    let rsync = args.rsync_exit_codes;
    check(args, printer).code(rsync)
}

fn check(args: VerifyArgs<'_>, printer: &Printer) -> Ending {
    let (first, rsh) = (args.first, args.rsh);
    let mut db_clean = true;
    let pairs: Vec<(String, Endpoint, Endpoint, SyncOptions)> = match args.second {
        Some(dst) => {
            let (s, d) = match (parse_location(first), parse_location(dst)) {
                (Ok(s), Ok(d)) => (s, d),
                (Err(e), _) | (_, Err(e)) => {
                    printer.error(e);
                    return Ending::Usage;
                }
            };
            let options = match args.filters.rules() {
                Ok(exclude) => SyncOptions {
                    exclude,
                    ..args.options.clone()
                },
                Err(e) => {
                    printer.error(e);
                    return Ending::Usage;
                }
            };
            // A local source is hashed while the ssh connection to the target is made.
            let (hashed, connected) = std::thread::scope(|scope| {
                let connecting =
                    scope.spawn(|| connect(&s, rsh).and_then(|s| connect(&d, rsh).map(|d| (s, d))));
                let hashed = match (&s, &d) {
                    (Location::Local(_), Location::Remote(..)) => {
                        connect(&s, None).ok().and_then(|e| {
                            e.transport
                                .scan_digested(&e.root, &options.exclude, options.keep())
                                .ok()
                        })
                    }
                    _ => None,
                };
                (hashed, connecting.join().expect("connect thread"))
            });
            match connected {
                Ok((s, d)) => {
                    if let Some(source) = hashed {
                        let name = format!("{first} -> {dst}");
                        return report_all(
                            vec![(name, verify_with_source(&s, &d, &options, &Silent, source))],
                            true,
                            printer,
                        );
                    }
                    vec![(format!("{first} -> {dst}"), s, d, options)]
                }
                Err(e) => {
                    printer.error(e.to_string());
                    return Ending::Unreachable;
                }
            }
        }
        None => {
            let loaded = match super::validate::load_or_report(Path::new(first), printer) {
                Ok(l) => l,
                Err(_) => return Ending::Usage,
            };
            let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
            let inventory = expand_sites(&loaded, &connections);
            let plan = inventory.restricted(&loaded.plan);
            let mut pairs = Vec::new();
            for site in inventory.sites {
                match (
                    connections.get(&site.source_host),
                    connections.get(&site.target_host),
                ) {
                    (Ok(s), Ok(d)) => pairs.push((
                        site.name.clone(),
                        Endpoint {
                            transport: s,
                            root: site.source_path.clone(),
                        },
                        Endpoint {
                            transport: d,
                            root: site.target_path.clone(),
                        },
                        // Judged with the options its sync runs with (freeze files, devices).
                        SyncOptions {
                            jobs: args.options.jobs,
                            ..site_sync_options(&loaded.plan, &site, false)
                        },
                    )),
                    (Err(e), _) | (_, Err(e)) => {
                        printer.error(format!("site `{}`: {e}", site.name));
                        return Ending::Unreachable;
                    }
                }
            }
            if !plan.databases.is_empty() {
                let results = crate::lifecycle::databases::run(
                    &plan,
                    &connections,
                    &[],
                    crate::lifecycle::databases::Mode::Verify,
                    &crate::event::Silent,
                );
                super::db::print(&results, printer);
                if !results
                    .iter()
                    .all(crate::lifecycle::databases::DbResult::clean)
                {
                    db_clean = false;
                }
            }
            if !plan.mail.is_empty() {
                let results = crate::lifecycle::mail::run(
                    &plan,
                    &connections,
                    crate::lifecycle::mail::MailStep::Verify,
                    &|_| None,
                    &crate::event::Silent,
                );
                super::mail::print(&results, printer);
                if !results
                    .iter()
                    .all(crate::lifecycle::mail::RuleResult::clean)
                {
                    db_clean = false;
                }
            }
            pairs
        }
    };
    let results = pairs
        .into_iter()
        .map(|(name, s, d, opts)| (name, verify(&s, &d, &opts, &Silent)))
        .collect();
    report_all(results, db_clean, printer)
}

/// Prints each pair's verdict; `Done` when every one (and `clean_so_far`) is clean.
fn report_all(
    results: Vec<(String, Result<VerifyReport, crate::sync::SyncError>)>,
    clean_so_far: bool,
    printer: &Printer,
) -> Ending {
    let mut all_clean = clean_so_far;
    let mut reports = Vec::new();
    for (name, result) in results {
        match result {
            Ok(r) => {
                all_clean &= r.is_clean();
                reports.push((name, r));
            }
            Err(e) => {
                printer.error(format!("{name}: {e}"));
                all_clean = false;
            }
        }
    }
    if printer.json {
        let v: Vec<_> = reports
            .iter()
            .map(|(n, r)| serde_json::json!({ "unit": n, "clean": r.is_clean(), "report": r }))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        for (name, r) in &reports {
            print_one(name, r);
        }
    }
    if all_clean {
        Ending::Done
    } else {
        Ending::Partial
    }
}

fn print_one(name: &str, r: &VerifyReport) {
    for (what, list) in [
        ("refused", &r.refused),
        ("missing", &r.missing),
        ("extra", &r.extra),
        ("different", &r.different),
        ("error", &r.errors),
    ] {
        for p in list {
            outln!("{what:<9} {name}: {p}");
        }
    }
    let verdict = if r.is_clean() {
        "identical"
    } else {
        "DIFFERENT"
    };
    outln!(
        "{name}: {verdict}: {} files hashed on both sides ({})",
        r.files_hashed,
        crate::plan::units::human_bytes(r.bytes_hashed)
    );
}
