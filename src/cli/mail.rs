//! `transhumance mail sync|sweep|verify PLAN`: the plan's Maildir trees and IMAP accounts.

use std::path::Path;

use super::exit;
use super::printer::Printer;
use super::progress::Bars;
use crate::event::{Observer, Silent};
use crate::lifecycle::guard::Guarded;
use crate::lifecycle::mail::{MailStep, RuleResult, run as run_mail};
use crate::lifecycle::{Connections, default_agent_binary, expand_sites};
use crate::plan::units::human_bytes;
use crate::unit::UnitId;

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

pub fn run(
    step: Step,
    plan_path: &Path,
    delete: bool,
    allow_live: Vec<UnitId>,
    printer: &Printer,
) -> u8 {
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
    let needs = crate::lifecycle::secrets::Needs {
        databases: Vec::new(),
        mail: true,
        dns: false,
    };
    if let Some(why) = crate::lifecycle::secrets::refusal(&loaded.plan, &needs) {
        printer.error(why);
        return exit::INVALID;
    }
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    // Writing verbs hold the plan's run lock and ask the journal which units may be live;
    // with an inventory, what it leaves out is excluded from the trees (`restricted`).
    let inventory = (step != Step::Verify || loaded.plan.inventory.is_some())
        .then(|| expand_sites(&loaded, &connections));
    let plan = inventory
        .as_ref()
        .map_or_else(|| loaded.plan.clone(), |i| i.restricted(&loaded.plan));
    let mut guard = if step == Step::Verify {
        None
    } else {
        let sites = inventory.map(|i| i.sites).unwrap_or_default();
        match Guarded::open(&plan, &sites, allow_live.clone(), "mail") {
            Ok(g) => Some(g),
            Err(e) => {
                printer.error(format!("{e}"));
                return super::migration::journal_failed(&e);
            }
        }
    };
    // A live unit the operator named is run as asked; the override is journaled first.
    let mut allowed = Vec::new();
    if let Some(g) = guard.as_mut()
        && step == Step::Sync
    {
        for unit in &allow_live {
            if g.live().why(unit).is_none() {
                continue;
            }
            if let Err(e) = g.check(unit) {
                printer.error(format!("{e}"));
                return e.kind.exit_code();
            }
            allowed.push(unit.clone());
        }
    }
    let live = |index: usize| {
        let unit = UnitId::Mail(index);
        guard
            .as_ref()
            .and_then(|g| g.live().why(&unit))
            .filter(|_| !allowed.contains(&unit))
            .map(|because| because.to_string())
    };
    let observer: Box<dyn Observer> = Box::new(super::run_log::Logged(if printer.progress {
        Box::new(Bars::new())
    } else {
        Box::new(Silent)
    }));
    let step = match step {
        Step::Sync => MailStep::Sync { delete },
        Step::Sweep => MailStep::Sweep,
        Step::Verify => MailStep::Verify,
    };
    let results = run_mail(&plan, &connections, step, &live, observer.as_ref());
    drop(observer);
    drop(guard);
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
            let what = if r.unsafe_refusal {
                "REFUSED"
            } else {
                "FAILED"
            };
            outln!("{what:<9} {unit}: {e}");
        }
        for n in &r.notes {
            outln!("note      {unit}: {n}");
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
            for n in &m.notes {
                outln!("note      {name}: {n}");
            }
            if m.folders.is_empty() {
                let what = if m.layout == "maildir" {
                    "renamed"
                } else {
                    "flags updated"
                };
                // Deletions are always counted, so none goes unseen.
                let present = if m.layout == "imap" {
                    format!(", {} already there", m.present)
                } else {
                    format!(", deleted {}", m.deleted)
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
                    ("differs", &f.differ),
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
