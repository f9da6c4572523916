//! `transhumance plan PLAN`: the dry run, rendered as text, Markdown, JSON or HTML.

use std::path::Path;

use super::exit;
use super::printer::Printer;
use super::progress::{Bars, JsonLines};
use crate::event::{Observer, Silent};
use crate::lifecycle::dry_run::dry_run_with;
use crate::lifecycle::{Connections, default_agent_binary};
use crate::report::{self, Format};

pub fn run(
    path: &Path,
    format: Format,
    output: Option<&Path>,
    itemize: bool,
    printer: &Printer,
) -> u8 {
    let loaded = match super::validate::load_or_report(path, printer) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let observer: Box<dyn Observer> = if printer.progress {
        Box::new(Bars::new())
    } else if printer.json && printer.verbose {
        Box::new(JsonLines)
    } else {
        Box::new(Silent)
    };
    let report = dry_run_with(&loaded, &connections, observer.as_ref(), itemize);
    let format = if printer.json { Format::Json } else { format };
    let rendered = report::render(&report, format);
    match output {
        Some(file) => {
            if let Err(e) = std::fs::write(file, rendered) {
                printer.error(format!(
                    "cannot write the report to `{}`: {e}",
                    file.display()
                ));
                return exit::FAILURES;
            }
            printer.status(format!("report written to {}", file.display()));
        }
        None => super::printer::out(&rendered),
    }
    if report.totals.errors > 0 {
        printer.status(format!(
            "{} risk(s) would make the migration fail",
            report.totals.errors
        ));
        exit::FAILURES
    } else {
        exit::OK
    }
}
