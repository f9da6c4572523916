//! `transhumance cutover PLAN [--batch N | --only SITE…]`: freeze, final sync, verify, switch
//! DNS and probe, site by site; a failing site is rolled back (or paused) alone. On a terminal it
//! shows the sites and DNS records it will change and asks first; Ctrl-C stops it between steps.

use std::path::Path;

use super::migration::{failed, finish_interruptible, session};
use super::printer::Printer;
use super::{confirm, interrupt};
use crate::lifecycle::migrate::{Migration, Selection};

pub fn run(
    plan: &Path,
    batch: Option<usize>,
    only: &[String],
    allowed: crate::check::Allowed,
    printer: &Printer,
) -> u8 {
    if let Err(code) = confirm::can_ask("the cutover", printer) {
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
    let m = match Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        allowed.clone(),
    ) {
        Ok(m) => m.interruptible(&interrupt::STOP),
        Err(e) => return failed(&e, printer),
    };
    // A cutover its checks refuse has nothing to confirm: it refuses (and journals why) at once.
    let refused = match m.cutover_refused(&selection) {
        Ok(r) => r,
        Err(e) => return failed(&e, printer),
    };
    if !printer.yes && !refused {
        // The very zone plans the cutover will apply (read once, kept by the migration).
        let preview = match m.preview_cutover(&selection) {
            Ok(p) => p,
            Err(e) => return failed(&e, printer),
        };
        let summary = confirm::render(
            "cutover (freeze, final sync, verify, probe, then switch)",
            "DNS records that will switch",
            &preview,
        );
        if let Err(code) = confirm::ask("the cutover", &summary, preview.is_empty(), printer) {
            return code;
        }
    }
    interrupt::install();
    match m.cutover(&selection) {
        Ok(outcomes) => finish_interruptible("cutover", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
