//! `transhumance cutover PLAN [--batch N | --only SITE…]`: freeze, final sync, verify, switch
//! DNS and probe, site by site; a failing site is rolled back (or paused) alone.

use std::path::Path;

use super::migration::{failed, finish, session};
use super::printer::Printer;
use crate::lifecycle::migrate::{Migration, Selection};

pub fn run(
    plan: &Path,
    batch: Option<usize>,
    only: &[String],
    allowed: crate::check::Allowed,
    printer: &Printer,
) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let selection = match (batch, only.is_empty()) {
        (Some(n), _) => Selection::Batch(n),
        (None, false) => Selection::Only(only.to_vec()),
        (None, true) => Selection::All,
    };
    let result = Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        allowed.clone(),
    )
    .and_then(|m| m.cutover(&selection));
    match result {
        Ok(outcomes) => finish("cutover", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
