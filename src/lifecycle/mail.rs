//! Every mail rule of a plan: Maildir trees through the file engine (renames first), IMAP
//! accounts in parallel under each rule's connection limit; sync, sweep or verify.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::Connections;
use super::dry_run::{ImapUser, read_users};
use crate::event::{Event, Observer};
use crate::mail::imap_move::{self, Account, ImapStep};
use crate::mail::maildir::FolderCheck;
use crate::mail::maildir_pass::{self, Pass};
use crate::plan::raw::MailConvert;
use crate::plan::{MailRule, Plan};
use crate::sync::{Endpoint, SyncError};

/// What to do with the plan's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStep {
    /// Before the cutover: the target follows the source (`delete`: expunged mail goes too).
    Sync { delete: bool },
    /// After the cutover: only messages the target lacks; nothing there is changed.
    Sweep,
    /// Compare both ends folder by folder.
    Verify,
}

/// One mailbox (a Maildir directory or an IMAP account) in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxResult {
    pub rule: usize,
    pub layout: &'static str,
    pub mailbox: String,
    pub messages: u64,
    pub copied: u64,
    /// Maildir: renamed at the target; IMAP: flags updated.
    pub renamed: u64,
    /// IMAP: already at the target.
    pub present: u64,
    /// Maildir: message files removed at the target (`--delete`).
    pub deleted: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// What the run chose not to do, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<FolderCheck>,
}

impl MailboxResult {
    /// No failure, and every verified folder identical.
    pub fn clean(&self) -> bool {
        self.error.is_none()
            && self.failures.is_empty()
            && self.folders.iter().all(FolderCheck::clean)
    }
}

/// A whole rule's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleResult {
    pub rule: usize,
    pub layout: &'static str,
    /// Maildir: protocol bytes through ssh (file lists, renames, data).
    pub wire_bytes: u64,
    /// Maildir: file content sent.
    pub bytes_sent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rule was refused as unsafe (a `--delete` over the safety ratio).
    #[serde(skip)]
    pub unsafe_refusal: bool,
    /// The rule's input is invalid (an unreadable or malformed users file).
    #[serde(skip)]
    pub invalid_input: bool,
    /// Maildir: files removed at the target (`--delete`).
    pub deleted: u64,
    /// How the rule was run differently from what was asked, and why (a live unit swept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub mailboxes: Vec<MailboxResult>,
}

impl RuleResult {
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.mailboxes.iter().all(MailboxResult::clean)
    }
}

/// The step a rule really runs when `live` says why its mailboxes may be serving users on the
/// new side: a sync becomes a sweep (adds only), a sync with deletions is refused; `Err` is the
/// refusal. Not live (or allowed by the operator, journaled by the caller): the step asked.
fn guarded_step(
    index: usize,
    step: MailStep,
    live: Option<String>,
) -> Result<(MailStep, Option<String>), String> {
    let unit = crate::unit::UnitId::Mail(index);
    match (step, live) {
        (MailStep::Sync { delete: true }, Some(why)) => Err(format!(
            "{unit} may be live on the new side ({why}): `sync --delete` refused, nothing was written there; `--allow-live {unit}` deletes anyway (journaled)"
        )),
        (MailStep::Sync { delete: false }, Some(why)) => Ok((
            MailStep::Sweep,
            Some(format!(
                "{unit} may be live on the new side ({why}): swept instead of synced, only messages the target lacks are added; nothing there is renamed, overwritten or deleted"
            )),
        )),
        (step, _) => Ok((step, None)),
    }
}

/// Runs `step` over every mail rule. `live(N)` says why rule N's mailboxes may be live on the
/// new side (`None`: they are not, or the operator allowed overwriting them and the caller
/// journaled it): a live rule is never synced with deletions nor renamed into, only swept.
pub fn run(
    plan: &Plan,
    connections: &Connections,
    step: MailStep,
    live: &dyn Fn(usize) -> Option<String>,
    observer: &dyn Observer,
) -> Vec<RuleResult> {
    plan.mail
        .iter()
        .map(|rule| {
            let index = match rule {
                MailRule::Maildir { index, .. } | MailRule::Imap { index, .. } => *index,
            };
            let live = if step == MailStep::Verify {
                None
            } else {
                live(index)
            };
            match guarded_step(index, step, live) {
                Ok((step, note)) => {
                    let mut r = run_rule(plan, connections, rule, step, observer);
                    r.notes.extend(note);
                    r
                }
                Err(refusal) => RuleResult {
                    rule: index,
                    layout: match rule {
                        MailRule::Maildir { .. } => "maildir",
                        MailRule::Imap { .. } => "imap",
                    },
                    error: Some(refusal),
                    unsafe_refusal: true,
                    ..Default::default()
                },
            }
        })
        .collect()
}

fn run_rule(
    plan: &Plan,
    connections: &Connections,
    rule: &MailRule,
    step: MailStep,
    observer: &dyn Observer,
) -> RuleResult {
    match rule {
        MailRule::Maildir {
            index,
            from_host,
            from_path,
            to_host,
            to_path,
            exclude,
            convert,
        } => {
            let mut r = RuleResult {
                rule: *index,
                layout: "maildir",
                ..Default::default()
            };
            let ends = connections.get(from_host).and_then(|s| {
                connections.get(to_host).map(|d| {
                    (
                        Endpoint {
                            transport: s,
                            root: from_path.clone(),
                        },
                        Endpoint {
                            transport: d,
                            root: to_path.clone(),
                        },
                    )
                })
            });
            match ends {
                Ok((src, dst)) => maildir(
                    &mut r,
                    (&src, &dst, exclude),
                    *convert,
                    step,
                    plan,
                    observer,
                ),
                Err(e) => r.error = Some(e.to_string()),
            }
            r
        }
        MailRule::Imap {
            index,
            from,
            to,
            users_file,
            max_connections,
        } => {
            let mut r = RuleResult {
                rule: *index,
                layout: "imap",
                ..Default::default()
            };
            match read_users(users_file) {
                Ok(users) => {
                    r.mailboxes = imap(
                        &ImapRule {
                            rule: *index,
                            from,
                            to,
                            max_connections: *max_connections,
                            state_dir: &plan.state_dir,
                        },
                        &users,
                        step,
                        observer,
                    )
                }
                Err(e) => {
                    r.invalid_input = true;
                    r.error = Some(e);
                }
            }
            r
        }
    }
}

fn maildir(
    r: &mut RuleResult,
    (src, dst, exclude): (&Endpoint, &Endpoint, &[String]),
    convert: Option<MailConvert>,
    step: MailStep,
    plan: &Plan,
    observer: &dyn Observer,
) {
    let fail = |r: &mut RuleResult, e: SyncError| {
        r.unsafe_refusal = matches!(e, SyncError::Unsafe(_));
        r.error = Some(format!(
            "{}:{} → {}:{}: {e}",
            src.transport.host(),
            src.root.display(),
            dst.transport.host(),
            dst.root.display()
        ));
    };
    let pass = match step {
        MailStep::Verify => {
            match maildir_pass::verify(src, dst, convert, exclude) {
                Ok(boxes) => {
                    r.mailboxes = boxes
                        .into_iter()
                        .map(|(mailbox, folders)| MailboxResult {
                            rule: r.rule,
                            layout: "maildir",
                            messages: folders.iter().map(|f| f.source_messages).sum(),
                            mailbox,
                            folders,
                            ..Default::default()
                        })
                        .collect()
                }
                Err(e) => fail(r, e),
            }
            return;
        }
        MailStep::Sync { delete } => Pass::Sync { delete },
        MailStep::Sweep => Pass::Sweep,
    };
    let record = maildir_pass::delivered_file(&plan.state_dir, src, dst);
    match maildir_pass::run(
        src,
        dst,
        pass,
        convert,
        plan.defaults.jobs.max(1),
        Some(&record),
        exclude,
        observer,
    ) {
        Ok(report) => {
            if let Some(e) = &report.record_error {
                r.error = Some(e.clone());
            }
            r.wire_bytes = report.files.wire_bytes;
            r.deleted = report.files.deleted;
            r.bytes_sent = report.files.bytes_sent;
            r.mailboxes = report
                .mailboxes
                .into_iter()
                .map(|m| MailboxResult {
                    rule: r.rule,
                    layout: "maildir",
                    mailbox: m.mailbox,
                    messages: m.messages,
                    copied: m.copied,
                    renamed: m.renamed,
                    deleted: m.deleted,
                    failures: m.failures,
                    notes: m.notes,
                    ..Default::default()
                })
                .collect();
            // Failures outside any mailbox (a tree-level file) still make the run fail.
            let placed: usize = r.mailboxes.iter().map(|m| m.failures.len()).sum();
            if report.files.errors.len() > placed {
                r.error = Some(
                    report
                        .files
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.path, e.error))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
        }
        Err(e) => fail(r, e),
    }
}

/// An IMAP rule as `imap` needs it.
struct ImapRule<'a> {
    rule: usize,
    from: &'a crate::plan::ImapServer,
    to: &'a crate::plan::ImapServer,
    max_connections: usize,
    state_dir: &'a std::path::Path,
}

fn imap(
    r: &ImapRule<'_>,
    users: &[ImapUser],
    step: MailStep,
    observer: &dyn Observer,
) -> Vec<MailboxResult> {
    let ImapRule {
        rule,
        from,
        to,
        max_connections,
        state_dir,
    } = *r;
    let phase = format!("mail[{rule}]");
    observer.on_event(&Event::PhaseStarted {
        phase: phase.clone(),
        total: users.len() as u64,
    });
    let imap_step = match step {
        MailStep::Sync { .. } => ImapStep::Sync,
        MailStep::Sweep => ImapStep::Sweep,
        MailStep::Verify => ImapStep::Verify,
    };
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    // One connection per server per worker: the rule's limit holds at both ends.
    std::thread::scope(|s| {
        for _ in 0..max_connections.max(1).min(users.len()) {
            s.spawn(|| {
                while let Some(u) = users.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut m = MailboxResult {
                        rule,
                        layout: "imap",
                        mailbox: u.source_user.clone(),
                        ..Default::default()
                    };
                    let passwords = u
                        .source_password
                        .resolve()
                        .and_then(|a| u.target_password.resolve().map(|b| (a, b)));
                    let outcome = passwords.and_then(|(sp, tp)| {
                        let account = Account {
                            from,
                            to,
                            source_user: &u.source_user,
                            source_password: &sp,
                            target_user: &u.target_user,
                            target_password: &tp,
                        };
                        let record = imap_move::delivered_file(state_dir, &account);
                        let record = (imap_step != ImapStep::Verify).then_some(record.as_path());
                        imap_move::run(&account, imap_step, record)
                    });
                    match outcome {
                        Ok(a) => {
                            m.messages = a.messages;
                            m.copied = a.copied;
                            m.renamed = a.flags_updated;
                            m.present = a.present;
                            m.failures = a.failures;
                            m.folders = a.checks;
                            m.notes = a.notes;
                        }
                        Err(e) => m.error = Some(e),
                    }
                    match (&m.error, m.failures.first()) {
                        (Some(e), _) | (None, Some(e)) => observer.on_event(&Event::UnitFailed {
                            phase: phase.clone(),
                            unit: m.mailbox.clone(),
                            error: e.clone(),
                        }),
                        (None, None) => observer.on_event(&Event::UnitDone {
                            phase: phase.clone(),
                            unit: m.mailbox.clone(),
                        }),
                    }
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(m);
                }
            });
        }
    });
    observer.on_event(&Event::PhaseFinished { phase });
    let mut results = out.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_rule_is_swept_and_never_synced_with_deletions() {
        let why = || Some("site `a` is confirmed".to_string());
        let refusal = guarded_step(2, MailStep::Sync { delete: true }, why()).unwrap_err();
        assert!(refusal.contains("mail:2 may be live"), "{refusal}");
        assert!(refusal.contains("--allow-live mail:2"), "{refusal}");
        let (step, note) = guarded_step(2, MailStep::Sync { delete: false }, why()).unwrap();
        assert_eq!(step, MailStep::Sweep);
        assert!(note.unwrap().contains("swept instead of synced"));
        assert_eq!(
            guarded_step(2, MailStep::Sweep, why()).unwrap(),
            (MailStep::Sweep, None)
        );
        assert_eq!(
            guarded_step(2, MailStep::Sync { delete: true }, None).unwrap(),
            (MailStep::Sync { delete: true }, None)
        );
    }
}
