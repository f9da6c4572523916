//! What the lifecycle commands share: opening a plan's migration, printing site outcomes, and
//! mapping results to exit codes.

use std::path::Path;

use super::exit;
use super::printer::Printer;
use super::progress::{Bars, JsonLines, Plain};
use crate::event::Observer;
use crate::journal::JournalError;
use crate::lifecycle::migrate::{
    LifecycleError, Migration, Selection, SiteOutcome, StopSummary, signal_name,
};
use crate::lifecycle::{Connections, default_agent_binary};
use crate::plan::Loaded;

/// The plan, its hosts and the observer, ready for `Migration::open`.
pub struct Session {
    pub loaded: Loaded,
    pub connections: Connections,
    pub observer: Box<dyn Observer>,
}

/// Loads the plan (reporting its problems) and prepares its connections.
pub fn session(plan: &Path, printer: &Printer) -> Result<Session, u8> {
    let loaded = super::validate::load_or_report(plan, printer)?;
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let observer: Box<dyn Observer> = if printer.progress {
        Box::new(Bars::new())
    } else if printer.json && printer.verbose {
        Box::new(JsonLines::default())
    } else {
        Box::new(Plain)
    };
    Ok(Session {
        loaded,
        connections,
        observer: Box::new(super::run_log::Logged(observer)),
    })
}

/// Shows the sites and DNS records a cutover of `selection` will change (the very zone plans it
/// will apply, read once and kept by the migration) under `title`, and asks for `action`.
///
/// # Errors
/// The exit code: declined, or the preview could not be computed (its reason printed).
pub fn ask_before_cutover(
    m: &Migration<'_>,
    selection: &Selection,
    title: &str,
    action: &str,
    printer: &Printer,
) -> Result<(), u8> {
    let preview = m
        .preview_cutover(selection)
        .map_err(|e| failed(&e, printer))?;
    let summary = super::confirm::render(title, "DNS records that will switch", &preview);
    super::confirm::ask(action, &summary, preview.is_empty(), printer)
}

/// The exit code of a command that could not run, with its reason printed.
pub fn failed(e: &LifecycleError, printer: &Printer) -> u8 {
    printer.error(e.to_string());
    match e {
        LifecycleError::Journal(JournalError::Locked { .. } | JournalError::Busy(_)) => {
            exit::LOCKED
        }
        LifecycleError::Journal(JournalError::Invalid(_)) | LifecycleError::Invalid(_) => {
            exit::INVALID
        }
        LifecycleError::Refused(_) => exit::UNSAFE,
        LifecycleError::Journal(_) | LifecycleError::Unreachable(_) => exit::FAILURES,
    }
}

/// The exit code of a command whose journal could not be opened: its own for a lock another
/// run holds, 1 otherwise.
pub fn journal_failed(e: &JournalError) -> u8 {
    match e {
        JournalError::Locked { .. } | JournalError::Busy(_) => exit::LOCKED,
        JournalError::Invalid(_) => exit::INVALID,
        _ => exit::FAILURES,
    }
}

/// Prints what happened to each site; exit 1 when any site did not end where it should.
pub fn finish(verb: &str, outcomes: &[SiteOutcome], printer: &Printer) -> u8 {
    if printer.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "command": verb, "sites": outcomes })
            )
            .expect("json")
        );
    } else {
        for o in outcomes {
            outln!(
                "{:<13} {}{}",
                o.state.label(),
                o.site,
                o.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
    }
    let bad = outcomes.iter().filter(|o| !o.ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| o.error == Some(crate::unit::ErrorKind::Unsafe))
        .count();
    if outcomes.is_empty() {
        printer.status(format!("{verb}: nothing to do"));
    } else {
        let sites = crate::report::plural(outcomes.len() as u64, "site", "sites");
        printer.status(if bad == 0 {
            format!("{verb}: {sites}, all ok")
        } else {
            format!("{verb}: {sites}, {} ok, {bad} not ok", outcomes.len() - bad)
        });
    }
    if refused > 0 {
        printer.error(format!(
            "{verb}: {} refused as unsafe (may be live on the new side)",
            crate::report::plural(refused as u64, "site", "sites")
        ));
        exit::UNSAFE
    } else if bad == 0 {
        exit::OK
    } else {
        exit::FAILURES
    }
}

/// As `finish`, for a command the operator may have stopped (Ctrl-C): then exit 1, and the last
/// line says what the stop left.
pub fn finish_interruptible(verb: &str, outcomes: &[SiteOutcome], printer: &Printer) -> u8 {
    let code = finish(verb, outcomes, printer);
    let Some(signal) = super::interrupt::STOP.signal() else {
        return code;
    };
    let s = StopSummary::of(outcomes);
    let mut line = format!(
        "interrupted: {} unfrozen and marked failed, {} finished",
        crate::report::plural(s.undone as u64, "site", "sites"),
        s.finished
    );
    if s.not_started > 0 {
        line.push_str(&format!(", {} not started", s.not_started));
    }
    if s.still_frozen > 0 {
        line.push_str(&format!(
            "; {} marked failed but still frozen (their unfreeze failed, see above)",
            s.still_frozen
        ));
    }
    line.push_str(&format!(" ({})", signal_name(signal)));
    printer.notice(line);
    exit::FAILURES
}
