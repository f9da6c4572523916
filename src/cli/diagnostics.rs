//! Renders plan issues with the offending line, through miette.

use miette::{LabeledSpan, MietteDiagnostic, NamedSource, Report};

use crate::plan::{Issue, Severity, SourceFile};

/// One issue as a miette report: `file:line:col`, the line itself, what was expected, a hint.
pub fn render(issue: &Issue, source: &SourceFile) -> String {
    let mut diag =
        MietteDiagnostic::new(issue.message.clone()).with_severity(match issue.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        });
    if issue.loc.is_known() {
        let len = issue
            .loc
            .len
            .max(1)
            .min(source.text.len().saturating_sub(issue.loc.offset).max(1));
        let label = if issue.path.is_empty() {
            "here".to_string()
        } else {
            issue.path.clone()
        };
        diag = diag.with_label(LabeledSpan::at(
            issue.loc.offset..issue.loc.offset + len,
            label,
        ));
    }
    if let Some(help) = &issue.help {
        diag = diag.with_help(help.clone());
    }
    let place = if issue.loc.is_known() {
        format!("{}:{}:{}", source.name, issue.loc.line, issue.loc.column)
    } else {
        source.name.clone()
    };
    let kind = if issue.severity == Severity::Error {
        "error"
    } else {
        "warning"
    };
    let report = Report::new(diag)
        .with_source_code(NamedSource::new(source.name.clone(), source.text.clone()));
    // The first line carries the place plainly, for terminals without colour and for grep.
    format!("{place}: {kind}: {}\n{report:?}", issue.message)
}
