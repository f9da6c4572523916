//! `transhumance worker PLAN [--verb sync|cutover|run] [--batch N | --only SITE…]`: one of
//! several controllers sharing a move through the journal in PostgreSQL. It takes steps from
//! the plan's work queue until none is left; on a terminal it shows what the cutover will
//! change and asks first (as `cutover` does); Ctrl-C stops it between steps, leaving the rest to
//! the other workers.

use std::path::Path;

use super::migration::{ask_before_cutover, failed, finish_interruptible, session};
use super::printer::Printer;
use super::{confirm, interrupt};
use crate::lifecycle::migrate::{Migration, Selection, WorkerVerb};

/// What the command line asks of a worker.
pub struct Options<'a> {
    pub verb: WorkerVerb,
    pub batch: Option<usize>,
    pub only: &'a [String],
    pub allowed: crate::check::Allowed,
}

pub fn run(plan: &Path, options: Options<'_>, printer: &Printer) -> u8 {
    let Options {
        verb,
        batch,
        only,
        allowed,
    } = options;
    let cuts_over = verb != WorkerVerb::Sync;
    if cuts_over && let Err(code) = confirm::can_ask("the workers' cutover", printer) {
        return code;
    }
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let selection = match (batch, only.is_empty()) {
        (Some(n), _) => Selection::Batch(n),
        (None, false) => Selection::Only(only.to_vec()),
        (None, true) => Selection::All,
    };
    let m = match Migration::open(&s.loaded, &s.connections, s.observer.as_ref(), allowed) {
        Ok(m) => m.interruptible(&interrupt::STOP),
        Err(e) => return failed(&e, printer),
    };
    if cuts_over
        && !printer.yes
        && let Err(code) = ask_before_cutover(
            &m,
            &selection,
            "cutover shared by the workers (freeze, final sync, verify, probe, then switch)",
            "the cutover",
            printer,
        )
    {
        return code;
    }
    interrupt::install();
    let label = match verb {
        WorkerVerb::Sync => "worker sync",
        WorkerVerb::Cutover => "worker cutover",
        WorkerVerb::Run => "worker run",
    };
    match m.work(verb, &selection) {
        Ok(worked) => {
            let code = finish_interruptible(label, &worked.outcomes, printer);
            if let Some(why) = worked.stopped {
                printer.notice(format!(
                    "{label}: the workers stopped after the pre-sync: {why}"
                ));
            }
            code
        }
        Err(e) => failed(&e, printer),
    }
}
