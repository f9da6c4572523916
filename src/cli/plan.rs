//! `transhumance plan PLAN`: the dry run, rendered as text, Markdown, JSON or HTML; with
//! `--detailed-exitcode`, whether anything is left to do, as Terraform's exit codes say it; with
//! `--out FILE`, the reviewed plan saved for `cutover --plan FILE` (Terraform's `-out`).

use std::path::Path;

use super::exit;
use super::printer::Printer;
use super::progress::{Bars, JsonLines};
use crate::event::{Observer, Silent};
use crate::lifecycle::dry_run::reviewed;
use crate::lifecycle::saved_plan::SavedPlan;
use crate::lifecycle::{Connections, default_agent_binary};
use crate::report::{self, Format};

/// `--detailed-exitcode`: changes are pending (Terraform's 2; invalid input is 1 then).
pub const CHANGES_PENDING: u8 = 2;

/// The options of `plan`.
pub struct Options<'a> {
    pub format: Format,
    pub output: Option<&'a Path>,
    pub itemize: bool,
    pub detailed_exitcode: bool,
    /// `--out FILE`: save the reviewed plan there.
    pub save: Option<&'a Path>,
}

pub fn run(path: &Path, options: Options<'_>, printer: &Printer) -> u8 {
    match dry_run(path, &options, printer) {
        Ok(false) => exit::OK,
        Ok(true) if options.detailed_exitcode => CHANGES_PENDING,
        Ok(true) => exit::OK,
        // Every failure is 1 with the flag: 2 means changes pending there.
        Err(_) if options.detailed_exitcode => exit::FAILURES,
        Err(code) => code,
    }
}

/// Runs the dry run and prints its report: whether changes are pending, or the exit code of
/// what went wrong.
fn dry_run(path: &Path, options: &Options<'_>, printer: &Printer) -> Result<bool, u8> {
    let loaded = super::validate::load_or_report(path, printer)?;
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let observer: Box<dyn Observer> = if printer.progress {
        Box::new(Bars::new())
    } else if printer.json && printer.verbose {
        Box::new(JsonLines::default())
    } else {
        Box::new(Silent)
    };
    let reviewed = reviewed(&loaded, &connections, observer.as_ref(), options.itemize);
    observer.finish();
    let report = &reviewed.report;
    let format = if printer.json {
        Format::Json
    } else {
        options.format
    };
    let width = options
        .output
        .is_none()
        .then(super::printer::text_width)
        .flatten();
    let rendered = report::render_width(report, format, width);
    match options.output {
        Some(file) => {
            if let Err(e) = std::fs::write(file, rendered) {
                printer.error(format!(
                    "cannot write the report to `{}`: {e}",
                    file.display()
                ));
                return Err(exit::FAILURES);
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
        if let Some(file) = options.save {
            printer.error(format!(
                "the plan was not saved to `{}`: a cutover would not go through it",
                file.display()
            ));
        }
        return Err(exit::FAILURES);
    }
    if let Some(file) = options.save {
        // The journal as the plan was computed on it, read without the lock (as `status`).
        let journal = match crate::lifecycle::ledger::read(&loaded.plan) {
            Ok(j) => j,
            Err(e) => {
                printer.error(format!("the plan was not saved: {e}"));
                return Err(exit::FAILURES);
            }
        };
        let saved = SavedPlan::capture(&loaded, &reviewed, &journal);
        if let Err(e) = saved.write(file) {
            printer.error(format!(
                "cannot write the saved plan to `{}`: {e}",
                file.display()
            ));
            return Err(exit::FAILURES);
        }
        printer.status(format!(
            "reviewed plan saved to {} (checksum {}, {} site(s), {} DNS change(s)): apply exactly it with `transhumance cutover {} --plan {}`",
            file.display(),
            saved.checksum,
            saved.sites.len(),
            saved.dns.len(),
            path.display(),
            file.display()
        ));
    }
    let pending = report.pending();
    if options.detailed_exitcode {
        if pending.any() {
            printer.status(format!("changes pending: {}", pending.summary()));
        } else {
            printer.status("no changes pending");
        }
    }
    Ok(pending.any())
}
