//! `transhumance run PLAN`: every phase in order (pre-sync, TTL lowering, cutover of every
//! batch, report), stopping where the plan says to wait. A run that will cut over asks once, up
//! front, on a terminal (the sites and the DNS records that will switch); Ctrl-C during its
//! cutover stops it between steps.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::exit;
use super::migration::{ask_before_cutover, failed, finish, finish_interruptible, session};
use super::printer::Printer;
use super::{confirm, interrupt};
use crate::lifecycle::migrate::{Migration, Selection, report};
use crate::plan::units::human_duration;
use crate::report::Format;

pub fn run(
    plan: &Path,
    max_wait: Duration,
    allowed: crate::check::Allowed,
    printer: &Printer,
) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // A cutover planned later: this run only pre-syncs, nothing to confirm.
    let cuts_over = s
        .loaded
        .plan
        .cutover
        .at
        .is_none_or(|at| at <= SystemTime::now());
    if cuts_over && let Err(code) = confirm::can_ask("the run (it cuts over)", printer) {
        return code;
    }
    let m = match Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        allowed.clone(),
    ) {
        Ok(m) => m.interruptible(&interrupt::STOP),
        Err(e) => return failed(&e, printer),
    };
    // Every secret of the whole run (the TTLs and the switch need the DNS key), read before
    // the pre-sync moves anything.
    if cuts_over
        && let Err(e) = m.check_secrets(&crate::lifecycle::secrets::Needs::all(&s.loaded.plan))
    {
        return failed(&e, printer);
    }
    // Asked once, before the pre-sync: the operator need not stay for the TTL wait.
    if cuts_over
        && !printer.yes
        && let Err(code) = ask_before_cutover(
            &m,
            &Selection::All,
            "run (pre-sync, lower TTLs, wait, then cut over)",
            "the run",
            printer,
        )
    {
        return code;
    }
    printer.status("== pre-sync");
    let synced = match m.sync(&[]) {
        Ok(o) => o,
        Err(e) => return failed(&e, printer),
    };
    if finish("pre-sync", &synced, printer) != exit::OK {
        printer.error("some sites did not pre-sync: fix them, then run again (nothing was frozen)");
        return exit::FAILURES;
    }
    if let Some(at) = s.loaded.plan.cutover.at
        && let Ok(left) = at.duration_since(SystemTime::now())
    {
        printer.status(format!(
            "the cutover is planned at {} ({} from now): pre-sync done, run again then",
            humantime::format_rfc3339_seconds(at),
            human_duration(left)
        ));
        return exit::OK;
    }
    printer.status("== DNS: lower TTLs");
    let wait = match m.lower_ttl() {
        Ok(w) => Duration::from_secs(w),
        Err(e) => return failed(&e, printer),
    };
    if wait > max_wait && !allowed.all {
        printer.status(format!(
            "resolvers may cache the old TTLs for {} more: run `transhumance run` again then (or raise --max-wait)",
            human_duration(wait)
        ));
        return exit::OK;
    }
    if !wait.is_zero() {
        printer.status(format!(
            "waiting {} for the old TTLs to expire",
            human_duration(wait)
        ));
        std::thread::sleep(wait + Duration::from_secs(1));
    }
    printer.status("== cutover");
    interrupt::install();
    let code = match m.cutover(&Selection::All) {
        Ok(o) => finish_interruptible("cutover", &o, printer),
        Err(e) => return failed(&e, printer),
    };
    if interrupt::STOP.signal().is_some() {
        // Stopped by the operator: no TTL restore, no report run; `status` tells the rest.
        return code;
    }
    if code == exit::OK || m.any_confirmed() {
        printer.status("== DNS: original TTLs back on the confirmed sites' records");
        match m.restore_ttl() {
            Ok(o) => {
                for (k, why) in o.failed.iter().chain(&o.skipped) {
                    printer.error(format!(
                        "TTL of {} {} not restored: {why} (run `dns restore-ttl` once sorted out)",
                        k.name, k.rtype
                    ));
                }
                printer.status(format!("{} RRset(s) back to their TTL", o.applied.len()));
            }
            Err(e) => printer.error(format!("{e} (run `dns restore-ttl` later)")),
        }
    }
    drop(m);
    let html = s.loaded.plan.state_dir.join("report.html");
    if let Ok(r) = report(&s.loaded, &s.connections) {
        match super::report::write_file(&r, Format::Html, None, &html) {
            Ok(()) => printer.status(format!("report: {}", html.display())),
            Err(e) => printer.error(format!("cannot write `{}`: {e}", html.display())),
        }
    }
    code
}
