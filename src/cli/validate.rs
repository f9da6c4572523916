//! `transhumance validate PLAN`: every problem of a plan at once, with its place in the file.

use std::path::Path;

use super::exit;
use super::printer::Printer;
use crate::lifecycle::{Connections, default_agent_binary, expand_sites};
use crate::plan::{self, Issue, PlanError, SourceFile};

/// Loads a plan and prints its problems; the exit code when it is invalid.
pub fn load_or_report(path: &Path, printer: &Printer) -> Result<plan::Loaded, u8> {
    match plan::load(path) {
        Ok(l) => {
            keep_until_exit(std::sync::Arc::clone(&l.tree));
            // The state directory is known from here: a command that changes the world
            // starts its run log.
            if let Some(warning) = super::run_log::start(&l) {
                printer.status(warning);
            }
            Ok(l)
        }
        Err(e @ PlanError::Read { .. }) => {
            if printer.json {
                outln!(
                    "{}",
                    serde_json::json!({ "valid": false, "error": e.to_string() })
                );
            }
            printer.error(e.to_string());
            Err(exit::INVALID)
        }
        Err(PlanError::Invalid {
            source_file,
            issues,
        }) => {
            report_issues(&source_file, &issues, printer, false);
            Err(exit::INVALID)
        }
    }
}

/// Holds the plan's YAML tree until the process ends, which frees it at once: freed node by
/// node when a command is done with it, the million nodes of a 50,000-site plan cost a
/// fifth of a second. Only the CLI does this; a command runs once per process.
fn keep_until_exit(tree: std::sync::Arc<plan::node::Node>) {
    static KEPT: std::sync::Mutex<Vec<std::sync::Arc<plan::node::Node>>> =
        std::sync::Mutex::new(Vec::new());
    if let Ok(mut kept) = KEPT.lock() {
        kept.push(tree);
    }
}

fn report_issues(source: &SourceFile, issues: &[Issue], printer: &Printer, valid: bool) {
    if printer.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "valid": valid, "file": source.name, "issues": issues })
            )
            .expect("json")
        );
        return;
    }
    let shown = issues.iter().filter(|i| i.is_error() || !printer.quiet);
    eprint!("{}", super::diagnostics::render_all(shown, source));
    let errors = issues.iter().filter(|i| i.is_error()).count() as u64;
    if errors > 0 {
        printer.error(format!(
            "{}: {}, {}",
            source.name,
            crate::report::plural(errors, "error", "errors"),
            crate::report::plural(issues.len() as u64 - errors, "warning", "warnings")
        ));
    }
}

/// The plan's TSIG key checked with a signed SOA query to its primary: a rejected key (or a
/// secret that cannot be read) is an error now rather than at `lower-ttl`; an unreachable
/// server is a warning, as unreachable hosts are.
fn tsig_issue(loaded: &plan::Loaded) -> Option<Issue> {
    use crate::dns::provider::DnsError;
    let dns = loaded.plan.dns.as_ref()?;
    let at = plan::NodePath::root()
        .key("dns")
        .key("provider")
        .key("tsig");
    let result = crate::dns::tsig::check_plan_key(dns);
    let loc = || loaded.tree.locate(&at);
    match result {
        // Like the plan's other secrets, one not set yet is needed only when the plan runs.
        Ok(crate::dns::tsig::KeyCheck::SecretUnavailable(why)) => Some(Issue::warning(
            loc(),
            &at,
            format!("{why} (needed when the plan runs; the key is not checked)"),
        )),
        Ok(_) => None,
        Err(e @ (DnsError::TsigRejected { .. } | DnsError::Invalid(_))) => Some(
            Issue::error(loc(), &at, e.to_string())
                .with_code("tsig_rejected")
                .with_help("the key's name, algorithm and secret must be those of the server's `key` statement"),
        ),
        Err(e) => Some(
            Issue::warning(loc(), &at, format!("the TSIG key could not be checked: {e}"))
                .with_code("unreachable"),
        ),
    }
}

/// With `-v`, how long each step took (on a large plan, where the time went).
fn print_phases(loaded: &plan::Loaded, expanded: Option<std::time::Duration>, printer: &Printer) {
    if !printer.verbose || printer.json {
        return;
    }
    let phases = loaded
        .phases
        .iter()
        .copied()
        .chain(expanded.map(|d| ("site expansion and checks", d)))
        .map(|(name, d)| format!("{name} {:.3} s", d.as_secs_f64()))
        .collect::<Vec<_>>();
    printer.status(format!("phases: {}", phases.join(", ")));
}

pub fn run(path: &Path, offline: bool, printer: &Printer) -> u8 {
    let loaded = match load_or_report(path, printer) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if offline {
        report_issues(&loaded.source, &loaded.warnings, printer, true);
        print_phases(&loaded, None, printer);
        if !printer.quiet && !printer.json {
            outln!(
                "{}: valid plan `{}` (offline: globs not expanded)",
                loaded.source.name,
                loaded.plan.name
            );
        }
        return exit::OK;
    }
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let started = std::time::Instant::now();
    let inventory = expand_sites(&loaded, &connections);
    let expanded = started.elapsed();
    let mut issues = loaded.warnings.clone();
    issues.extend(inventory.issues);
    issues.extend(inventory.unreachable.into_iter().map(|mut i| {
        i.severity = plan::Severity::Warning;
        i
    }));
    issues.extend(tsig_issue(&loaded));
    plan::diagnostic::sort_issues(&mut issues);
    let valid = !issues.iter().any(Issue::is_error);
    report_issues(&loaded.source, &issues, printer, valid);
    print_phases(&loaded, Some(expanded), printer);
    if !valid {
        return exit::INVALID;
    }
    if !printer.json && !printer.quiet {
        // The verdict is what `validate` was asked for: data, on stdout.
        let p = &loaded.plan;
        let n = |n: usize, one: &str, many: &str| crate::report::plural(n as u64, one, many);
        outln!(
            "{}: valid plan `{}`: {} from {}{}, {}, {}, {}",
            loaded.source.name,
            p.name,
            n(inventory.sites.len(), "site", "sites"),
            n(p.site_rules.len(), "rule", "rules"),
            if p.inventory.is_some() {
                " and the inventory"
            } else {
                ""
            },
            n(p.databases.len(), "database rule", "database rules"),
            n(p.mail.len(), "mail rule", "mail rules"),
            n(
                p.dns.as_ref().map_or(0, |d| d.zones.len()),
                "DNS zone",
                "DNS zones"
            )
        );
    }
    exit::OK
}
