//! `transhumance report PLAN [--format …] [-o FILE]`: the migration's full report, per-site
//! timelines, bytes, verification, DNS changes and probes.

use std::path::Path;

use super::exit;
use super::migration::{failed, session};
use super::printer::Printer;
use crate::lifecycle::migrate::report;
use crate::report::Format;
use crate::report::lifecycle::{MigrationReport, write_report};

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
            if let Err(e) = write_file(&r, format, width, file) {
                printer.error(format!("cannot write `{}`: {e}", file.display()));
                return exit::FAILURES;
            }
            printer.status(format!("report written to {}", file.display()));
        }
        None => super::printer::out_streamed(|out| write_report(&r, format, width, out)),
    }
    exit::OK
}

/// Writes `r` in `format` to `file` as it is rendered (never held whole as one string).
pub fn write_file(
    r: &MigrationReport,
    format: Format,
    width: Option<usize>,
    file: &Path,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    write_report(r, format, width, &mut out)?;
    std::io::Write::flush(&mut out)
}
