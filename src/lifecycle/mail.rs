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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
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
    pub mailboxes: Vec<MailboxResult>,
}

impl RuleResult {
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.mailboxes.iter().all(MailboxResult::clean)
    }
}

/// Runs `step` over every mail rule.
pub fn run(
    plan: &Plan,
    connections: &Connections,
    step: MailStep,
    observer: &dyn Observer,
) -> Vec<RuleResult> {
    plan.mail
        .iter()
        .map(|rule| match rule {
            MailRule::Maildir {
                index,
                from_host,
                from_path,
                to_host,
                to_path,
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
                    Ok((src, dst)) => maildir(&mut r, &src, &dst, step, plan, observer),
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
        })
        .collect()
}

fn maildir(
    r: &mut RuleResult,
    src: &Endpoint,
    dst: &Endpoint,
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
            match maildir_pass::verify(src, dst) {
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
        plan.defaults.jobs.max(1),
        Some(&record),
        observer,
    ) {
        Ok(report) => {
            if let Some(e) = &report.record_error {
                r.error = Some(e.clone());
            }
            r.wire_bytes = report.files.wire_bytes;
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
                    failures: m.failures,
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
