//! `transhumance resume PLAN`: finishes what an interrupted run left, from the journal.

use std::path::Path;

use super::migration::{failed, finish, session};
use super::printer::Printer;
use crate::lifecycle::migrate::Migration;

pub fn run(plan: &Path, printer: &Printer) -> u8 {
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
    .and_then(|m| m.resume());
    match result {
        Ok(outcomes) => finish("resume", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
