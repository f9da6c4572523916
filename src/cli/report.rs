//! `transhumance report PLAN [--format …] [-o FILE]`: the migration's full report, per-site
//! timelines, bytes, verification, DNS changes and probes.

use std::path::Path;

use super::exit;
use super::migration::{failed, session};
use super::printer::Printer;
use crate::lifecycle::migrate::report;
use crate::report::Format;
use crate::report::lifecycle::write_report;

pub fn run(plan: &Path, format: Format, output: Option<&Path>, printer: &Printer) -> u8 {
    let s = match session(plan, printer) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = match report(&s.loaded, &s.connections) {
        Ok(r) => r,
        Err(e) => return failed(&e, printer),
    };
    let format = if printer.json { Format::Json } else { format };
    // Text for a terminal fits its width; written to a file, lines stay whole.
    let width = output.is_none().then(super::printer::text_width).flatten();
    match output {
        Some(file) => {
            let written = std::fs::File::create(file).and_then(|f| {
                let mut out = std::io::BufWriter::new(f);
                write_report(&r, format, width, &mut out)?;
                std::io::Write::flush(&mut out)
            });
            if let Err(e) = written {
                printer.error(format!("cannot write `{}`: {e}", file.display()));
                return exit::FAILURES;
            }
            printer.status(format!("report written to {}", file.display()));
        }
        None => super::printer::out_streamed(|out| write_report(&r, format, width, out)),
    }
    exit::OK
}
