//! `transhumance status PLAN`: where every site is at a glance, read from the journal without
//! waiting for a running command.

use std::path::Path;

use super::exit;
use super::migration::{failed, session};
use super::printer::Printer;
use crate::lifecycle::migrate::report;
use crate::report::lifecycle::text;

pub fn run(plan: &Path, printer: &Printer) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match report(&s.loaded, &s.connections) {
        Ok(r) => {
            if printer.json {
                outln!("{}", serde_json::to_string_pretty(&r).expect("json"));
            } else {
                super::printer::out(&text(&r, false, super::printer::text_width()));
            }
            exit::OK
        }
        Err(e) => failed(&e, printer),
    }
}
