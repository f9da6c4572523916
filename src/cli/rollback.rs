//! `transhumance rollback PLAN [--only SITE…]`: DNS back to its exact state before our switch
//! and the sources unfrozen, from the journal.

use std::path::Path;

use super::migration::{failed, finish, session};
use super::printer::Printer;
use crate::lifecycle::migrate::Migration;

pub fn run(plan: &Path, only: &[String], printer: &Printer) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        crate::check::Allowed::none(),
    )
    .and_then(|m| m.rollback(only));
    match result {
        Ok(outcomes) => finish("rollback", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
