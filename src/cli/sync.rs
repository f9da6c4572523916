//! `transhumance sync PLAN [--only SITE…]`: pre-sync sites and their databases, repeatable
//! while the old side still serves.

use std::path::Path;

use super::migration::{failed, finish, session};
use super::printer::Printer;
use crate::lifecycle::migrate::Migration;

pub fn run(
    plan: &Path,
    only: &[String],
    allowed: crate::check::Allowed,
    allow_live: Vec<crate::unit::UnitId>,
    printer: &Printer,
) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = Migration::open(
        &s.loaded,
        &s.connections,
        s.observer.as_ref(),
        allowed.clone(),
    )
    .and_then(|m| m.allow_live(allow_live).sync(only));
    match result {
        Ok(outcomes) => finish("sync", &outcomes, printer),
        Err(e) => failed(&e, printer),
    }
}
