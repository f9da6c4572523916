//! `transhumance mail sync|sweep|verify PLAN`: the plan's Maildir trees and IMAP accounts.

use std::path::Path;

use super::exit;
use super::printer::Printer;
use super::progress::Bars;
use crate::event::{Observer, Silent};
use crate::lifecycle::mail::{MailStep, RuleResult, run as run_mail};
use crate::lifecycle::{Connections, default_agent_binary};
use crate::plan::units::human_bytes;

/// What to do with the plan's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// Before the cutover, as often as you like: flag changes become renames at the target,
    /// new messages are copied, UIDs kept (Maildir); missing messages appended and flags
    /// updated (IMAP).
    Sync,
    /// After the cutover: copy only messages the target lacks (late mail on the old server);
    /// nothing at the target is renamed, overwritten or deleted.
    Sweep,
    /// Compare both ends folder by folder: counts, missing, extra and duplicated messages.
    Verify,
}

pub fn run(step: Step, plan_path: &Path, delete: bool, printer: &Printer) -> u8 {
    let loaded = match super::validate::load_or_report(plan_path, printer) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if loaded.plan.mail.is_empty() {
        printer.error(format!(
            "{}: the plan has no `mail` section",
            loaded.source.name
        ));
        return exit::INVALID;
    }
    if delete && step != Step::Sync {
        printer.error("`--delete` goes with `mail sync` only");
        return exit::INVALID;
    }
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let observer: Box<dyn Observer> = if printer.progress {
        Box::new(Bars::new())
    } else {
        Box::new(Silent)
    };
    let step = match step {
        Step::Sync => MailStep::Sync { delete },
        Step::Sweep => MailStep::Sweep,
        Step::Verify => MailStep::Verify,
    };
    let results = run_mail(&loaded.plan, &connections, step, observer.as_ref());
    drop(observer);
    print(&results, printer);
    if results.iter().any(|r| r.invalid_input) {
        exit::INVALID
    } else if results.iter().any(|r| r.unsafe_refusal) {
        exit::UNSAFE
    } else if results.iter().all(RuleResult::clean) {
        exit::OK
    } else {
        exit::FAILURES
    }
}

/// Prints mail results (also used by `verify PLAN`).
pub fn print(results: &[RuleResult], printer: &Printer) {
    if printer.json {
        outln!("{}", serde_json::to_string_pretty(results).expect("json"));
        return;
    }
    for r in results {
        let unit = format!("mail[{}]", r.rule);
        if let Some(e) = &r.error {
            outln!("FAILED    {unit}: {e}");
        }
        for m in &r.mailboxes {
            let name = format!(
                "{unit} {}",
                if m.mailbox.is_empty() {
                    "."
                } else {
                    &m.mailbox
                }
            );
            if let Some(e) = &m.error {
                outln!("FAILED    {name}: {e}");
                continue;
            }
            for f in &m.failures {
                outln!("FAILED    {name}: {f}");
            }
            if m.folders.is_empty() {
                let what = if m.layout == "maildir" {
                    "renamed"
                } else {
                    "flags updated"
                };
                let present = if m.layout == "imap" {
                    format!(", {} already there", m.present)
                } else {
                    String::new()
                };
                outln!(
                    "{:<9} {name}: {} messages, {} copied, {} {what}{present}",
                    if m.failures.is_empty() {
                        "ok"
                    } else {
                        "partial"
                    },
                    m.messages,
                    m.copied,
                    m.renamed
                );
            }
            for f in &m.folders {
                for (what, list) in [
                    ("missing", &f.missing),
                    ("extra", &f.extra),
                    ("duplicate", &f.duplicated),
                ] {
                    for id in list {
                        outln!("{what:<9} {name} {}: {id}", f.folder);
                    }
                }
                outln!(
                    "{:<9} {name} {}: {} messages at the source, {} at the target",
                    if f.clean() { "same" } else { "DIFFERENT" },
                    f.folder,
                    f.source_messages,
                    f.target_messages
                );
            }
        }
        if r.layout == "maildir" && r.wire_bytes + r.bytes_sent > 0 {
            printer.status(format!(
                "{unit}: {} of message data sent, {} on the wire",
                human_bytes(r.bytes_sent),
                human_bytes(r.wire_bytes)
            ));
        }
    }
}
