//! `transhumance rollback PLAN [--only SITE…]`: DNS back to its exact state before our switch
//! and the sources unfrozen, from the journal. On a terminal it shows the sites and the records
//! it will put back and asks first.

use std::path::Path;

use super::confirm;
use super::migration::{failed, finish, session};
use super::printer::Printer;
use crate::lifecycle::migrate::Migration;

pub fn run(plan: &Path, only: &[String], printer: &Printer) -> u8 {
    if let Err(code) = confirm::can_ask("the rollback", printer) {
        return code;
    }
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let m = match Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        crate::check::Allowed::none(),
    ) {
        Ok(m) => m,
        Err(e) => return failed(&e, printer),
    };
    if !printer.yes {
        let preview = match m.preview_rollback(only) {
            Ok(p) => p,
            Err(e) => return failed(&e, printer),
        };
        let summary = confirm::render(
            "rollback (DNS as before our first change, then unfreeze)",
            "DNS records that will be put back",
            &preview,
        );
        if let Err(code) = confirm::ask("the rollback", &summary, preview.is_empty(), printer) {
            return code;
        }
    }
    match m.rollback(only) {
        Ok(outcomes) => finish("rollback", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
