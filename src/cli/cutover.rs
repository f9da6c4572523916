//! `transhumance cutover PLAN [--batch N | --only SITE…] [--plan FILE]`: freeze, final sync,
//! verify, switch DNS and probe, site by site; a failing site is rolled back (or paused) alone.
//! On a terminal it shows the sites and DNS records it will change and asks first; Ctrl-C stops
//! it between steps. With `--plan FILE` it applies exactly the plan reviewed by `plan --out`.

use std::path::Path;

use super::exit;
use super::migration::{ask_before_cutover, failed, finish_interruptible, session};
use super::printer::Printer;
use super::{confirm, interrupt};
use crate::lifecycle::migrate::{LifecycleError, Migration, Selection};
use crate::lifecycle::saved_plan::SavedPlan;

/// What the command line asks of a cutover.
pub struct Options<'a> {
    pub batch: Option<usize>,
    pub only: &'a [String],
    /// `--plan FILE`: the reviewed plan to hold to.
    pub saved: Option<&'a Path>,
    pub allowed: crate::check::Allowed,
}

pub fn run(plan: &Path, options: Options<'_>, printer: &Printer) -> u8 {
    let Options {
        batch,
        only,
        saved,
        allowed,
    } = options;
    if let Err(code) = confirm::can_ask("the cutover", printer) {
        return code;
    }
    let saved = match saved.map(SavedPlan::read).transpose() {
        Ok(s) => s,
        Err(e) => {
            printer.error(e);
            return exit::INVALID;
        }
    };
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let selection = match (batch, only.is_empty()) {
        (Some(n), _) => Selection::Batch(n),
        (None, false) => Selection::Only(only.to_vec()),
        (None, true) => Selection::All,
    };
    let m = match Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        allowed.clone(),
    ) {
        Ok(m) => m.interruptible(&interrupt::STOP),
        Err(e) => return failed(&e, printer),
    };
    // Before anything else reads or journals: the world must still be the one reviewed.
    if let Some(saved) = &saved {
        match m.hold_to(saved, &selection) {
            Ok(()) => {}
            Err(e) => {
                let code = failed(&e, printer);
                if matches!(e, LifecycleError::Refused(_)) {
                    printer.notice(format!(
                        "hint: the reviewed plan no longer holds: compute and review it again with `transhumance plan {} --out FILE`",
                        plan.display()
                    ));
                }
                return code;
            }
        }
    }
    // A cutover its checks refuse has nothing to confirm: it refuses (and journals why) at once.
    let refused = match m.cutover_refused(&selection) {
        Ok(r) => r,
        Err(e) => return failed(&e, printer),
    };
    if !printer.yes
        && !refused
        && let Err(code) = ask_before_cutover(
            &m,
            &selection,
            "cutover (freeze, final sync, verify, probe, then switch)",
            "the cutover",
            printer,
        )
    {
        return code;
    }
    interrupt::install();
    match m.cutover(&selection) {
        Ok(outcomes) => finish_interruptible("cutover", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
