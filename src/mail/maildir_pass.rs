//! One Maildir pass between two trees: renames at the target for messages whose flags or
//! `new/`→`cur/` place changed, then the file engine for what is really new; or a sweep after
//! the cutover that only adds messages the target lacks.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::courier_pass::{Conversion, CourierDirs, Done};
use super::maildir::{self, FolderCheck, Rename};
use crate::event::{Event, Observer};
use crate::plan::raw::MailConvert;
use crate::sync::engine::{SyncReport, sync_listed, wire_bytes_of};
use crate::sync::side::Side;
use crate::sync::{Endpoint, SyncError, SyncOptions};
use crate::transport::protocol::{Call, Reply};
use crate::tree::{EntryKind, ScanSummary};

/// Which pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Before the cutover: the target follows the source (renames, new messages, the
    /// `dovecot-uidlist` so UIDs survive); with `delete`, messages expunged at the source go.
    Sync { delete: bool },
    /// After the cutover: only messages whose unique part the target lacks; nothing at the
    /// target is renamed, overwritten or deleted.
    Sweep,
}

/// What a pass did to one mailbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxPass {
    pub mailbox: String,
    pub messages: u64,
    /// Messages renamed at the target (flag changes, `new/` → `cur/`), nothing sent.
    pub renamed: u64,
    /// Message files sent.
    pub copied: u64,
    /// Message files removed at the target (`--delete`: expunged at the source).
    pub deleted: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// What the pass chose not to do, and why (a folder gone at the target, UIDs kept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a pass did to a whole tree.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub mailboxes: Vec<MailboxPass>,
    pub renamed: u64,
    pub files: SyncReport,
    /// The delivered record could not be written (the next sweep may copy too much).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// The mailbox a path belongs to, among `mailboxes`: read from a message's own path, else the
/// longest mailbox that is a prefix of it.
fn owner<'a>(path: &str, mailboxes: &'a [String]) -> Option<&'a String> {
    if let Some((folder, _)) = maildir::message_key(path.as_bytes()) {
        let (mailbox, _) = maildir::mailbox_of(&String::from_utf8_lossy(folder));
        if let Ok(i) = mailboxes.binary_search(&mailbox) {
            return Some(&mailboxes[i]);
        }
    }
    mailboxes
        .iter()
        .filter(|m| {
            m.is_empty()
                || path
                    .strip_prefix(m.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|m| m.len())
}

/// Where the record of messages delivered from `src` to `dst` is kept under `state_dir`: one
/// file per pair of trees, so reordering the plan's rules does not mix them up.
pub fn delivered_file(state_dir: &Path, src: &Endpoint, dst: &Endpoint) -> PathBuf {
    let pair = format!(
        "{}\0{}\0{}\0{}",
        src.transport.host(),
        src.root.display(),
        dst.transport.host(),
        dst.root.display()
    );
    let id = blake3::hash(pair.as_bytes()).to_hex();
    state_dir
        .join("mail")
        .join(format!("maildir-{}.delivered", &id[..16]))
}

/// The messages (`folder/unique`) recorded as delivered; none when there is no record yet.
///
/// # Errors
/// The record exists but cannot be read.
pub fn read_delivered(path: &Path) -> Result<HashSet<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// Writes the record whole (temp file, fsync, rename), sorted.
fn write_delivered(path: &Path, keys: &HashSet<Vec<u8>>) -> Result<(), String> {
    use std::io::Write;
    let why = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(why)?;
    }
    let mut sorted: Vec<&Vec<u8>> = keys.iter().filter(|k| !k.contains(&b'\n')).collect();
    sorted.sort();
    let tmp = path.with_extension("delivered.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(why)?);
    for k in sorted {
        out.write_all(k)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(why)?;
    }
    let f = out.into_inner().map_err(|e| why(e.into_error()))?;
    f.sync_all().map_err(why)?;
    std::fs::rename(&tmp, path).map_err(why)
}

/// Runs one pass of `src` onto `dst`. With `delivered` (a record file, see `delivered_file`),
/// a pass records every message it put at the target and a sweep skips messages recorded
/// before, so a message the user deleted at the target after the cutover is not swept back.
///
/// With `convert: courier-to-dovecot`, Courier's files become Dovecot's at the target as the
/// messages are written (`courier_pass`); unset, they are copied as they are and each mailbox
/// holding some says so.
///
/// # Errors
/// The source is missing, a host cannot be reached, `--delete` would remove too much, or the
/// record cannot be read. Single files that fail are in the report, by mailbox. Trees that
/// match `exclude` (relative to the roots: what an inventory leaves out) are not touched.
// Each argument is an independent choice of the caller (rule, step, record, inventory).
#[allow(clippy::too_many_arguments)]
pub fn run(
    src: &Endpoint,
    dst: &Endpoint,
    pass: Pass,
    convert: Option<MailConvert>,
    jobs: usize,
    delivered: Option<&Path>,
    exclude: &[String],
    observer: &dyn Observer,
) -> Result<PassReport, SyncError> {
    let mut known = match delivered {
        Some(p) => read_delivered(p).map_err(SyncError::Unsafe)?,
        None => HashSet::new(),
    };
    let opts = SyncOptions {
        delete: matches!(pass, Pass::Sync { delete: true }),
        jobs,
        exclude: maildir::excludes()
            .into_iter()
            .chain(exclude.iter().cloned())
            .collect(),
        ..SyncOptions::default()
    };
    let wire_before = wire_bytes_of(src) + wire_bytes_of(dst);
    observer.on_event(&Event::PhaseStarted {
        phase: "scan".into(),
        total: 0,
    });
    let (source, target) = std::thread::scope(|s| {
        let t = s.spawn(|| dst.transport.scan(&dst.root, &opts.exclude));
        let source = src.transport.scan(&src.root, &opts.exclude);
        (source, t.join().expect("scan thread"))
    });
    let (source, target) = (source?, target?);
    observer.on_event(&Event::PhaseFinished {
        phase: "scan".into(),
    });
    if !source.exists {
        return Err(SyncError::SourceMissing(format!(
            "{}:{}",
            src.transport.host(),
            src.root.display()
        )));
    }
    let dirs = CourierDirs::of(&source);
    let converting = convert == Some(MailConvert::CourierToDovecot) && !dirs.is_empty();
    // Read before the listings lose Courier's files; a sweep only leaves them out.
    let mut conv = match pass {
        Pass::Sync { .. } if converting => Some(Conversion::read(src, dst, &source, &target)?),
        _ => None,
    };
    let (source, mut target) = if converting {
        (dirs.strip(&source), dirs.strip(&target))
    } else {
        (source, target)
    };
    let mut report = PassReport::default();
    let boxes = maildir::mailboxes(&source);
    // Sorted (`mailboxes` comes from a sorted map): `owner` searches it.
    let names: Vec<String> = boxes.iter().map(|b| b.path.clone()).collect();
    let mut by_box: BTreeMap<String, MailboxPass> = boxes
        .iter()
        .map(|b| {
            (
                b.path.clone(),
                MailboxPass {
                    mailbox: b.path.clone(),
                    messages: b.messages,
                    ..Default::default()
                },
            )
        })
        .collect();
    // Notes of the conversion are about a folder directory: its mailbox is found directly.
    let note = |by_box: &mut BTreeMap<String, MailboxPass>, folder: &str, what: String| {
        if let Some(m) = by_box.get_mut(&maildir::mailbox_of(folder).0) {
            m.notes.push(what);
        }
    };
    if convert.is_none() {
        let unconverted: std::collections::BTreeSet<String> = dirs
            .uiddb
            .iter()
            .map(|d| maildir::mailbox_of(&show(d)).0)
            .collect();
        for mailbox in unconverted {
            note(
                &mut by_box,
                &mailbox,
                "Courier-IMAP files copied as they are (`convert` not set on the rule): a Dovecot target numbers these messages anew; `convert: courier-to-dovecot` keeps their UIDs, `convert: none` says the target is Courier".to_string(),
            );
        }
    }
    let fail = |by_box: &mut BTreeMap<String, MailboxPass>, path: &str, what: String| {
        if let Some(m) = owner(path, &names).and_then(|n| by_box.get_mut(n)) {
            m.failures.push(what);
        }
    };
    if let Some(c) = &conv {
        for (path, what) in &c.notes {
            note(&mut by_box, path, what.clone());
        }
    }
    let mut seen_folders = maildir::folders(&source);
    let mut renamed_before = Vec::new();
    let listing = match pass {
        Pass::Sync { delete } if target.exists => {
            // With a conversion, target names carry keyword letters: renames compare the
            // target with the source named as at the target.
            let wanted = match &mut conv {
                Some(c) => {
                    for (path, why) in c.write_keywords_before(dst, &target)? {
                        fail(&mut by_box, &path, format!("{path}: {why}"));
                    }
                    maildir::renames(&c.wanted(&source).entries, &target.entries)
                }
                None => maildir::renames(&source.entries, &target.entries),
            };
            let done = apply_renames(dst, &wanted, &names, &mut by_box)?;
            report.renamed = done.len() as u64;
            maildir::apply_renames(&mut target, &done);
            renamed_before = done;
            let mut listing = source;
            let seen = conv.as_ref().map(|c| c.engine_view(&target));
            keep_target_uids(
                src,
                dst,
                &mut listing,
                seen.as_ref().unwrap_or(&target),
                delete,
                &names,
                &mut by_box,
            )?;
            listing
        }
        Pass::Sync { .. } => source,
        Pass::Sweep => {
            let sweep = maildir::sweep_listing(&source, &target, &known);
            for (folder, messages) in &sweep.gone_at_target {
                seen_folders.remove(folder);
                let folder = show(folder);
                if let Some(m) = owner(&folder, &names).and_then(|n| by_box.get_mut(n)) {
                    m.notes.push(format!(
                        "folder `{folder}` is gone at the target (deleted or renamed there): not recreated, {messages} message(s) of the source there not swept"
                    ));
                }
            }
            sweep.listing
        }
    };
    // The target as the file engine sees it: converted names shown as the source's.
    let seen = conv.as_ref().map(|c| c.engine_view(&target));
    let seen = seen.as_ref().unwrap_or(&target);
    let planned = new_messages(&listing, seen);
    let doomed = if opts.delete {
        doomed_messages(&listing, seen)
    } else {
        Vec::new()
    };
    report.files = sync_listed(src, dst, &opts, observer, &listing, seen, wire_before)?;
    if !opts.dry_run {
        touch_changed_folders(dst, &doomed, &planned, &listing, &target)?;
    }
    let failed: HashSet<&str> = report
        .files
        .errors
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    if let Some(c) = &conv {
        use crate::sync::plan::ActionKind;
        let sent: HashSet<Vec<u8>> = report
            .files
            .done
            .iter()
            .filter(|i| {
                matches!(
                    i.action,
                    ActionKind::Send | ActionKind::Delta | ActionKind::CopyLocal
                )
            })
            .map(|i| i.path.as_bytes().to_vec())
            .collect();
        let failed: HashSet<Vec<u8>> = failed.iter().map(|p| p.as_bytes().to_vec()).collect();
        let finished = c.finish(
            dst,
            &Done {
                listing: &listing,
                target: &target,
                sent: &sent,
                failed: &failed,
                delete: opts.delete,
                renamed_before: &renamed_before,
            },
        )?;
        for (path, why) in finished.failures {
            fail(&mut by_box, &path, format!("{path}: {why}"));
        }
        for (path, what) in finished.notes {
            note(&mut by_box, &path, what);
        }
    }
    if let Some(path) = delivered {
        known.extend(
            listing
                .entries
                .iter()
                .filter(|e| e.kind == EntryKind::File && !failed.contains(show(&e.path).as_str()))
                .filter_map(|e| maildir::delivered_key(&e.path)),
        );
        // The folders this pass saw (all the source's but those gone at the target), so a
        // later sweep knows one missing at the target was there before.
        known.extend(seen_folders.iter().map(|f| maildir::folder_key(f)));
        if let Err(e) = write_delivered(path, &known) {
            report.record_error = Some(e);
        }
    }
    for p in &doomed {
        if let Some(m) = owner(p, &names).and_then(|n| by_box.get_mut(n))
            && !failed.contains(p.as_str())
        {
            m.deleted += 1;
        }
    }
    for p in &planned {
        if let Some(m) = owner(p, &names).and_then(|n| by_box.get_mut(n))
            && !failed.contains(p.as_str())
        {
            m.copied += 1;
        }
    }
    for e in &report.files.errors {
        if let Some(m) = owner(&e.path, &names).and_then(|n| by_box.get_mut(n)) {
            m.failures.push(format!("{}: {}", e.path, e.error));
        }
    }
    report.mailboxes = by_box.into_values().collect();
    Ok(report)
}

/// What a sync pass would do to one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailboxPlan {
    pub mailbox: String,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Source messages already at the target (same folder and unique part), renamed or not.
    pub present: u64,
    /// Renames at the target (flag changes, `new/` → `cur/`).
    pub renames: u64,
    /// Message files to send.
    pub to_copy: u64,
}

/// What a sync pass of `source` onto `target` would do, mailbox by mailbox, from the same
/// matching `run` applies (renames by folder and unique part, then the files still missing);
/// nothing is changed. The dry run shows these figures.
pub fn plan_sync(source: &ScanSummary, target: &ScanSummary) -> Vec<MailboxPlan> {
    let boxes = maildir::mailboxes(source);
    let names: Vec<String> = boxes.iter().map(|b| b.path.clone()).collect();
    let mut by_box: BTreeMap<String, MailboxPlan> = boxes
        .into_iter()
        .map(|b| {
            (
                b.path.clone(),
                MailboxPlan {
                    mailbox: b.path,
                    folders: b.folders,
                    messages: b.messages,
                    bytes: b.bytes,
                    ..Default::default()
                },
            )
        })
        .collect();
    let mut target = target.clone();
    if target.exists {
        let renames = maildir::renames(&source.entries, &target.entries);
        for (_, to) in &renames {
            if let Some(m) = owner(&show(to), &names).and_then(|n| by_box.get_mut(n)) {
                m.renames += 1;
            }
        }
        maildir::apply_renames(&mut target, &renames);
    } else {
        target.entries.clear();
    }
    for p in new_messages(source, &target) {
        if let Some(m) = owner(&p, &names).and_then(|n| by_box.get_mut(n)) {
            m.to_copy += 1;
        }
    }
    by_box
        .into_values()
        .map(|mut m| {
            m.present = m.messages.saturating_sub(m.to_copy);
            m
        })
        .collect()
}

/// Message files of `listing` absent at `target` (what the engine will send).
fn new_messages(listing: &ScanSummary, target: &ScanSummary) -> Vec<String> {
    let at_target: HashSet<&[u8]> = target.entries.iter().map(|e| e.path.as_slice()).collect();
    listing
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && !at_target.contains(e.path.as_slice()))
        .filter(|e| maildir::message_key(&e.path).is_some())
        .map(|e| show(&e.path))
        .collect()
}

/// Message files at `target` that `listing` lacks (what `--delete` removes there).
fn doomed_messages(listing: &ScanSummary, target: &ScanSummary) -> Vec<String> {
    let wanted: HashSet<&[u8]> = listing.entries.iter().map(|e| e.path.as_slice()).collect();
    target
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && !wanted.contains(e.path.as_slice()))
        .filter(|e| maildir::message_key(&e.path).is_some())
        .map(|e| show(&e.path))
        .collect()
}

/// The whole content of small files (`dovecot-uidlist`s) of one end, all asked at once; a
/// file that cannot be read is `None`.
pub(super) fn read_small(
    end: &Endpoint,
    paths: &[Vec<u8>],
) -> Result<Vec<Option<Vec<u8>>>, SyncError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let side = Side::open(end, false)?;
    let (ch, root) = side.pick(0);
    let pending: Vec<_> = paths
        .iter()
        .map(|p| {
            ch.call(Call::ReadFile {
                root: *root,
                path: p.clone(),
                compress: false,
            })
        })
        .collect();
    let mut out = Vec::with_capacity(paths.len());
    for p in pending {
        let Ok(p) = p else {
            out.push(None);
            continue;
        };
        let mut bytes = Vec::new();
        let mut whole = false;
        for reply in p.replies.iter() {
            match reply {
                Reply::Data(d) => bytes.extend_from_slice(&d),
                Reply::DataZstd { data, len } => {
                    match crate::transport::protocol::decompress(&data, len) {
                        Ok(d) => bytes.extend_from_slice(&d),
                        Err(_) => break,
                    }
                }
                Reply::Done(_) => {
                    whole = true;
                    break;
                }
                _ => break,
            }
        }
        out.push(whole.then_some(bytes));
    }
    if let Some(e) = side.lost() {
        return Err(SyncError::Transport(e));
    }
    Ok(out)
}

/// Where a folder's `dovecot-uidlist` differs at both ends and the target's gave UIDs the
/// source's does not (mail delivered at the target, or a message expunged only there), the
/// target's list stays: copying the source's over it would give a message of the target
/// another UID, and that UID to another message, under the same UIDVALIDITY. Messages new
/// from the source then get UIDs from the target.
fn keep_target_uids(
    src: &Endpoint,
    dst: &Endpoint,
    listing: &mut ScanSummary,
    target: &ScanSummary,
    delete: bool,
    names: &[String],
    by_box: &mut BTreeMap<String, MailboxPass>,
) -> Result<(), SyncError> {
    let at_target: std::collections::HashMap<&[u8], &crate::tree::Entry> = target
        .entries
        .iter()
        .map(|e| (e.path.as_slice(), e))
        .collect();
    let changed: Vec<usize> = listing
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EntryKind::File && is_uidlist(&e.path))
        .filter(|(_, e)| {
            at_target
                .get(e.path.as_slice())
                .is_some_and(|t| t.size != e.size || t.mtime_ns != e.mtime_ns)
        })
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let paths: Vec<Vec<u8>> = changed
        .iter()
        .map(|i| listing.entries[*i].path.clone())
        .collect();
    let (theirs, ours) = std::thread::scope(|s| {
        let t = s.spawn(|| read_small(dst, &paths));
        (read_small(src, &paths), t.join().expect("read thread"))
    });
    let (theirs, ours) = (theirs?, ours?);
    let source_keys: HashSet<(&[u8], &[u8])> = listing
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| maildir::message_key(&e.path))
        .collect();
    let mut kept = Vec::new();
    for ((i, s), t) in changed.into_iter().zip(theirs).zip(ours) {
        let path = &listing.entries[i].path;
        let folder = folder_of_uidlist(path);
        let keep = match (
            s.as_deref().and_then(maildir::Uidlist::parse),
            t.as_deref().and_then(maildir::Uidlist::parse),
        ) {
            (Some(s), Some(t)) => {
                let leaving = |u: &str| delete && !source_keys.contains(&(folder, u.as_bytes()));
                !t.extended_by(&s, &leaving)
            }
            // The target's cannot be read as a list: nothing it says can be kept anyway.
            (Some(_), None) => false,
            // The source's cannot be read: keep what the target has.
            (None, _) => true,
        };
        if keep {
            let folder_name = show(folder);
            if let Some(m) = owner(&show(path), names).and_then(|n| by_box.get_mut(n)) {
                m.notes.push(format!(
                    "folder `{folder_name}`: the target gave UIDs the source's list does not have; its `dovecot-uidlist` is kept (no UID changes there), messages new from the source get UIDs from the target"
                ));
            }
            if let Some(t) = at_target.get(path.as_slice()) {
                kept.push((i, (*t).clone()));
            }
        }
    }
    for (i, t) in kept {
        listing.entries[i] = t;
    }
    Ok(())
}

/// `u/Maildir/.Sent/dovecot-uidlist` → `u/Maildir/.Sent`; `dovecot-uidlist` → ``.
fn folder_of_uidlist(path: &[u8]) -> &[u8] {
    path[..path.len() - UIDLIST.len()]
        .strip_suffix(b"/")
        .unwrap_or(&[])
}

const UIDLIST: &[u8] = b"dovecot-uidlist";

fn is_uidlist(path: &[u8]) -> bool {
    path == UIDLIST || (path.ends_with(UIDLIST) && path[path.len() - UIDLIST.len() - 1] == b'/')
}

/// Renames at the target, all in flight at once; the ones that worked.
fn apply_renames(
    dst: &Endpoint,
    wanted: &[Rename],
    names: &[String],
    by_box: &mut BTreeMap<String, MailboxPass>,
) -> Result<Vec<Rename>, SyncError> {
    let mut done = Vec::new();
    for ((from, to), outcome) in wanted.iter().zip(rename_all(dst, wanted)?) {
        let m = owner(&show(to), names).and_then(|n| by_box.get_mut(n));
        match outcome {
            Ok(()) => {
                if let Some(m) = m {
                    m.renamed += 1;
                }
                done.push((from.clone(), to.clone()));
            }
            Err(e) => {
                // The message is then sent under its new name by the file engine.
                if let Some(m) = m {
                    m.failures
                        .push(format!("rename {} → {}: {e}", show(from), show(to)));
                }
            }
        }
    }
    Ok(done)
}

/// Renames at `dst` (never over an existing file), all in flight at once; each one's outcome.
///
/// # Errors
/// The target cannot be reached.
pub(super) fn rename_all(
    dst: &Endpoint,
    renames: &[Rename],
) -> Result<Vec<Result<(), String>>, SyncError> {
    if renames.is_empty() {
        return Ok(Vec::new());
    }
    let side = Side::open(dst, false)?;
    let (ch, root) = side.pick(0);
    let host = ch.host().to_string();
    let pending: Vec<_> = renames
        .iter()
        .map(|(from, to)| {
            ch.call(Call::Rename {
                root: *root,
                from: from.clone(),
                path: to.clone(),
            })
        })
        .collect();
    let out = pending
        .into_iter()
        .map(|p| {
            p.and_then(|p| p.wait(&host))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .collect();
    if let Some(e) = side.lost() {
        return Err(SyncError::Transport(e));
    }
    Ok(out)
}

/// Compares both trees folder by folder (unique parts and sizes), by mailbox, leaving out the
/// trees that match `exclude`. With `convert: courier-to-dovecot`, Courier's folders are
/// compared as converted: message names with their keyword letters, Courier's UIDs and
/// UIDVALIDITY with the target's `dovecot-uidlist`, subscriptions and keywords with the
/// target's files.
///
/// # Errors
/// A host cannot be reached, or the source is missing.
pub fn verify(
    src: &Endpoint,
    dst: &Endpoint,
    convert: Option<MailConvert>,
    exclude: &[String],
) -> Result<BTreeMap<String, Vec<FolderCheck>>, SyncError> {
    let exclude: Vec<String> = maildir::excludes()
        .into_iter()
        .chain(exclude.iter().cloned())
        .collect();
    let (source, target) = std::thread::scope(|s| {
        let t = s.spawn(|| dst.transport.scan(&dst.root, &exclude));
        let source = src.transport.scan(&src.root, &exclude);
        (source, t.join().expect("scan thread"))
    });
    let (raw_source, raw_target) = (source?, target?);
    if !raw_source.exists {
        return Err(SyncError::SourceMissing(format!(
            "{}:{}",
            src.transport.host(),
            src.root.display()
        )));
    }
    let dirs = CourierDirs::of(&raw_source);
    let converting = convert == Some(MailConvert::CourierToDovecot) && !dirs.is_empty();
    let (source, target) = if converting {
        (dirs.strip(&raw_source), dirs.strip(&raw_target))
    } else {
        (raw_source.clone(), raw_target.clone())
    };
    let paths: Vec<Vec<u8>> = source
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && is_uidlist(&e.path))
        .map(|e| e.path.clone())
        .collect();
    let at_target: HashSet<&[u8]> = target
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.path.as_slice())
        .collect();
    let both: Vec<Vec<u8>> = paths
        .into_iter()
        .filter(|p| at_target.contains(p.as_slice()))
        .collect();
    let (theirs, ours) = std::thread::scope(|s| {
        let t = s.spawn(|| read_small(dst, &both));
        (read_small(src, &both), t.join().expect("read thread"))
    });
    let (theirs, ours) = (theirs?, ours?);
    let uidlists: maildir::Uidlists = both
        .iter()
        .zip(theirs.into_iter().zip(ours))
        .map(|(p, (s, t))| {
            let folder = folder_of_uidlist(p).to_vec();
            (
                folder,
                (
                    s.as_deref().and_then(maildir::Uidlist::parse),
                    t.as_deref().and_then(maildir::Uidlist::parse),
                ),
            )
        })
        .collect();
    if converting {
        return super::courier_pass::verify(src, dst, &raw_source, &raw_target, uidlists);
    }
    Ok(maildir::compare(
        &source.entries,
        &target.entries,
        &uidlists,
    ))
}

/// The listings a sync pass compares (`plan_sync`), from scans of both ends made with
/// `maildir::excludes()`: with `convert: courier-to-dovecot`, the source named as at the target
/// and both without Courier's files and the Dovecot files they become.
///
/// # Errors
/// A host cannot be reached while Courier's files are read.
pub fn planned_listings(
    src: &Endpoint,
    dst: &Endpoint,
    source: ScanSummary,
    target: ScanSummary,
    convert: Option<MailConvert>,
) -> Result<(ScanSummary, ScanSummary), SyncError> {
    let dirs = CourierDirs::of(&source);
    if convert != Some(MailConvert::CourierToDovecot) || dirs.is_empty() {
        return Ok((source, target));
    }
    let conv = Conversion::read(src, dst, &source, &target)?;
    Ok((conv.wanted(&dirs.strip(&source)), dirs.strip(&target)))
}

/// The engine gives directories the source's mtime; Dovecot rescans a folder's `cur/` or `new/`
/// only when its mtime moved since it indexed it, so a message this pass removed or added in the
/// second the source changed would go unseen there. Those directories get the time of our change.
fn touch_changed_folders(
    dst: &Endpoint,
    doomed: &[String],
    planned: &[String],
    listing: &ScanSummary,
    target: &ScanSummary,
) -> Result<(), SyncError> {
    let dirs: std::collections::BTreeSet<&[u8]> = doomed
        .iter()
        .chain(planned)
        .filter_map(|p| {
            let p = p.as_bytes();
            let cut = p.iter().rposition(|b| *b == b'/')?;
            let dir = &p[..cut];
            let name = dir.rsplit(|b| *b == b'/').next()?;
            (name == b"cur" || name == b"new").then_some(dir)
        })
        .collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let metas: std::collections::HashMap<&[u8], &crate::tree::Entry> = target
        .entries
        .iter()
        .chain(&listing.entries)
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| (e.path.as_slice(), e))
        .collect();
    let touch: Vec<(Vec<u8>, crate::tree::root::Meta)> = dirs
        .into_iter()
        .filter_map(|d| {
            metas
                .get(d)
                .map(|e| (d.to_vec(), super::courier_pass::meta_now(e)))
        })
        .collect();
    // A directory whose time cannot be set is not a lost message: Dovecot finds it later.
    let _ = super::courier_pass::touch_dirs(dst, &touch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_belong_to_their_mailbox() {
        let boxes = vec![
            "example.org/al".to_string(),
            "example.org/alice/Maildir".to_string(),
        ];
        assert_eq!(
            owner("example.org/alice/Maildir/.Sent/cur/1.M1.h:2,S", &boxes),
            Some(&boxes[1])
        );
        assert_eq!(
            owner("example.org/alice/Maildir/dovecot-uidlist", &boxes),
            Some(&boxes[1])
        );
        assert_eq!(owner("example.org/al/cur/2.M2.h", &boxes), Some(&boxes[0]));
        assert_eq!(owner("example.org/alpha/x", &boxes), None);
    }
}
