//! `transhumance status PLAN`: where every site is at a glance, read from the journal without
//! waiting for a running command.

use std::path::Path;

use super::exit;
use super::migration::{failed, session};
use super::printer::Printer;
use crate::lifecycle::migrate::report;
use crate::report::Format;
use crate::report::lifecycle::{write_report, write_text};

pub fn run(plan: &Path, printer: &Printer) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match report(&s.loaded, &s.connections) {
        Ok(r) => {
            if printer.json {
                super::printer::out_streamed(|out| write_report(&r, Format::Json, None, out));
            } else {
                let width = super::printer::text_width();
                super::printer::out_streamed(|out| write_text(&r, false, width, out));
            }
            exit::OK
        }
        Err(e) => failed(&e, printer),
    }
}
