//! One account moved from an IMAP server to another: folders (names translated between
//! namespaces and hierarchy separators), messages with flags and internal dates, subscriptions.
//! Re-runs append only what the target lacks, recognized as imapsync does (Message-ID, size,
//! date), so a message is never appended twice. The source is only ever read (`EXAMINE`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::imap::{Append, ImapSession, MessageSummary};
use super::maildir::FolderCheck;
use crate::plan::ImapServer;
use crate::plan::secret::Secret;

/// Bodies fetched and appended per batch (bytes), so memory stays bounded per connection.
const BATCH_BYTES: u64 = 8 << 20;
const BATCH_MESSAGES: usize = 200;

/// What to do with an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapStep {
    /// Folders, missing messages, flags of messages already there, subscriptions.
    Sync,
    /// Missing messages only: nothing at the target is changed (after the cutover).
    Sweep,
    /// Compare both ends folder by folder; change nothing.
    Verify,
    /// What `Sync` would do, counted by the same matching (`copied` and `flags_updated` are
    /// what it would copy and update); change nothing.
    Plan,
}

/// An account at both ends, passwords resolved.
pub struct Account<'a> {
    pub from: &'a ImapServer,
    pub to: &'a ImapServer,
    pub source_user: &'a str,
    pub source_password: &'a Secret,
    pub target_user: &'a str,
    pub target_password: &'a Secret,
}

/// What happened to one account.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountReport {
    pub folders: u64,
    pub messages: u64,
    /// Appended to the target in this run.
    pub copied: u64,
    /// Already at the target (recognized by Message-ID, size and date).
    pub present: u64,
    pub flags_updated: u64,
    pub bytes: u64,
    /// Folders or messages that could not be moved, with the reason; the rest went on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Verification, folder by folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<FolderCheck>,
    /// What the run chose not to do, and why (a folder gone at the target).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How one folder's messages at the source meet the target's. Messages are recognized by
/// (Message-ID, size, date); those that cannot be told apart are matched as a multiset, pairs
/// with the same flags first, so a re-run never moves flags between look-alike messages.
#[derive(Debug, Clone, Default)]
pub struct FolderMatch<'a> {
    /// Source messages already at the target.
    pub present: Vec<&'a MessageSummary>,
    /// Source messages the target lacks, in source UID order.
    pub missing: Vec<&'a MessageSummary>,
    /// (target UID, the source's flags) for messages at both ends whose flags differ.
    pub flag_changes: Vec<(u32, Vec<String>)>,
}

/// Matches a folder's messages at both ends: the one function the engine and the dry run use.
pub fn match_folder<'a>(
    source: &'a [MessageSummary],
    target: &[MessageSummary],
) -> FolderMatch<'a> {
    type Groups<'m> = HashMap<(String, u64, i64), Vec<&'m MessageSummary>>;
    let group = |list: &'a [MessageSummary]| -> Groups<'a> {
        let mut g: Groups<'a> = HashMap::new();
        for m in list {
            g.entry(identity(m)).or_default().push(m);
        }
        g
    };
    let sources = group(source);
    let mut targets: Groups<'_> = HashMap::new();
    for t in target {
        targets.entry(identity(t)).or_default().push(t);
    }
    let mut out = FolderMatch::default();
    for (key, group) in sources {
        let mut free: Vec<&MessageSummary> = targets.remove(&key).unwrap_or_default();
        free.sort_by_key(|m| m.uid);
        let mut unmatched = Vec::new();
        // Same flags first: such a pair needs nothing, whichever look-alike it is.
        for s in group {
            let flags = sorted(&s.flags);
            match free.iter().position(|t| sorted(&t.flags) == flags) {
                Some(i) => {
                    free.remove(i);
                    out.present.push(s);
                }
                None => unmatched.push(s),
            }
        }
        // The rest pair up in UID order; their flag sets differ from every free one's, so
        // setting them never swaps flags between look-alikes.
        let mut free = free.into_iter();
        for s in unmatched {
            match free.next() {
                Some(t) => {
                    out.present.push(s);
                    out.flag_changes.push((t.uid, s.flags.clone()));
                }
                None => out.missing.push(s),
            }
        }
    }
    out.present.sort_by_key(|m| m.uid);
    out.missing.sort_by_key(|m| m.uid);
    out.flag_changes.sort_by_key(|c| c.0);
    out
}

/// A folder name from the source's namespace into the target's: `INBOX.Archive.2024` with
/// prefix `INBOX.` and separator `.` becomes `Archive/2024` with prefix `` and separator `/`.
///
/// # Errors
/// A name part holds the target's separator, so the target cannot name it the same way.
pub fn translate(
    name: &str,
    from: &(String, Option<char>),
    to: &(String, Option<char>),
) -> Result<String, String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    let rest = name.strip_prefix(from.0.as_str()).unwrap_or(name);
    let parts: Vec<&str> = match from.1 {
        Some(sep) => rest.split(sep).collect(),
        None => vec![rest],
    };
    if let Some(sep) = to.1
        && Some(sep) != from.1
        && let Some(p) = parts.iter().find(|p| p.contains(sep))
    {
        return Err(format!(
            "`{p}` holds `{sep}`, the target's hierarchy separator"
        ));
    }
    let joined = match to.1 {
        Some(sep) => parts.join(&sep.to_string()),
        None if parts.len() == 1 => parts[0].to_string(),
        None => return Err("the target has no hierarchy (no separator)".into()),
    };
    Ok(format!("{}{joined}", to.0))
}

/// Identity of a message across servers, as imapsync compares them.
fn identity(m: &MessageSummary) -> (String, u64, i64) {
    (
        m.message_id.clone().unwrap_or_default(),
        m.size,
        m.date_epoch,
    )
}

/// Identity for verification: (Message-ID, size).
fn verify_id(m: &MessageSummary) -> String {
    format!(
        "{} ({} bytes)",
        m.message_id.as_deref().unwrap_or("<no Message-ID>"),
        m.size
    )
}

fn sorted(flags: &[String]) -> Vec<String> {
    let mut f: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .map(|f| f.to_ascii_lowercase())
        .collect();
    f.sort();
    f
}

/// Where the record of messages delivered to an account is kept under `state_dir`.
pub fn delivered_file(state_dir: &std::path::Path, account: &Account<'_>) -> std::path::PathBuf {
    let key = format!(
        "{}:{}\0{}\0{}:{}\0{}",
        account.from.host,
        account.from.port,
        account.source_user,
        account.to.host,
        account.to.port,
        account.target_user
    );
    let id = blake3::hash(key.as_bytes()).to_hex();
    state_dir
        .join("mail")
        .join(format!("imap-{}.delivered", &id[..16]))
}

/// The record line of a folder a run saw: its source name and a tab.
fn folder_record(folder: &str) -> String {
    format!("{folder}\t")
}

/// A delivered message: source folder, Message-ID, size and date.
fn delivered_key(folder: &str, id: &str, m: &MessageSummary) -> String {
    format!("{folder}\t{id}\t{}\t{}", m.size, m.date_epoch)
}

/// Moves (or verifies) one account. With `delivered` (a record file, see `delivered_file`),
/// every message known to be at the target is recorded, and a sweep skips recorded ones: a
/// message the user deleted at the target after the cutover is not appended again.
///
/// # Errors
/// A login fails, a connection drops or the record cannot be read or written: the account as
/// a whole, with the reason. Folders and messages that fail are in `failures` instead.
pub fn run(
    account: &Account<'_>,
    step: ImapStep,
    delivered: Option<&std::path::Path>,
) -> Result<AccountReport, String> {
    let mut known: HashSet<String> = match delivered {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        },
        None => HashSet::new(),
    };
    let before = known.len();
    let mut src = ImapSession::login(account.from, account.source_user, account.source_password)
        .map_err(|e| format!("source: {e}"))?;
    let mut dst = ImapSession::login(account.to, account.target_user, account.target_password)
        .map_err(|e| format!("target: {e}"))?;
    let mut report = AccountReport::default();
    let result = move_folders(&mut src, &mut dst, step, &mut known, &mut report);
    src.logout();
    dst.logout();
    if let Some(path) = delivered
        && known.len() != before
    {
        write_record(path, &known)?;
    }
    result.map(|()| report)
}

/// Writes a record whole (temp file, fsync, rename), sorted.
fn write_record(path: &std::path::Path, keys: &HashSet<String>) -> Result<(), String> {
    use std::io::Write;
    let why = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(why)?;
    }
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let tmp = path.with_extension("delivered.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(why)?;
    let mut text = String::new();
    for k in sorted {
        text.push_str(k);
        text.push('\n');
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(why)?;
    std::fs::rename(&tmp, path).map_err(why)
}

fn move_folders(
    src: &mut ImapSession,
    dst: &mut ImapSession,
    step: ImapStep,
    known: &mut HashSet<String>,
    report: &mut AccountReport,
) -> Result<(), String> {
    let from_ns = src
        .namespace()
        .map_err(|e| format!("source: NAMESPACE: {e}"))?;
    let to_ns = dst
        .namespace()
        .map_err(|e| format!("target: NAMESPACE: {e}"))?;
    // Other users' and shared folders are not this account's: they are never copied into it.
    let foreign = src
        .other_namespaces()
        .map_err(|e| format!("source: NAMESPACE: {e}"))?;
    let own = |name: &str| !foreign.iter().any(|p| name.starts_with(p.as_str()));
    let folders: Vec<_> = src
        .list(false)
        .map_err(|e| format!("source: LIST: {e}"))?
        .into_iter()
        .filter(|f| own(&f.name))
        .collect();
    let target_existing: Vec<String> = dst
        .list(false)
        .map_err(|e| format!("target: LIST: {e}"))?
        .into_iter()
        .map(|e| e.name)
        .collect();
    // Folders an earlier run saw: one of them missing at the target was deleted or renamed
    // there by its user.
    let seen: HashSet<String> = known
        .iter()
        .filter_map(|k| k.split_once('\t').map(|(f, _)| f.to_string()))
        .collect();
    for folder in folders.iter().filter(|f| f.selectable()) {
        report.folders += 1;
        let name = match translate(&folder.name, &from_ns, &to_ns) {
            Ok(n) => n,
            Err(e) => {
                report.failures.push(format!(
                    "folder `{}`: cannot be named at the target: {e}",
                    folder.name
                ));
                continue;
            }
        };
        let exists = target_existing.contains(&name) || name.eq_ignore_ascii_case("INBOX");
        if step == ImapStep::Sweep && !exists && seen.contains(folder.name.as_str()) {
            report.notes.push(format!(
                "folder `{}` is gone at the target (deleted or renamed there): `{name}` not recreated, nothing swept into it",
                folder.name
            ));
            continue;
        }
        let changes = !matches!(step, ImapStep::Verify | ImapStep::Plan);
        if changes
            && !exists
            && let Err(e) = dst.create(&name)
        {
            report.failures.push(format!(
                "folder `{}`: the target refused to create `{name}`: {e}",
                folder.name
            ));
            continue;
        }
        let outcome = if step == ImapStep::Verify {
            verify_folder(src, dst, &folder.name, &name, exists, report)
        } else {
            move_folder(src, dst, (&folder.name, &name, exists), step, known, report)
        };
        match outcome {
            Ok(FolderEnd::Done) => {}
            Ok(FolderEnd::QuotaFull) => break,
            // A folder one server refuses to open or list: the others go on, as long as both
            // connections still answer.
            Err(e) if src.alive() && dst.alive() => report.failures.push(e),
            Err(e) => return Err(e),
        }
    }
    if step == ImapStep::Sync {
        let subscribed = src.list(true).map_err(|e| format!("source: LSUB: {e}"))?;
        for s in subscribed.into_iter().filter(|s| own(&s.name)) {
            let Ok(name) = translate(&s.name, &from_ns, &to_ns) else {
                continue;
            };
            if let Err(e) = dst.subscribe(&name) {
                report.failures.push(format!(
                    "subscription `{}`: refused by the target: {e}",
                    s.name
                ));
            }
        }
    }
    Ok(())
}

/// Compares one folder at both ends by (Message-ID, size).
fn verify_folder(
    src: &mut ImapSession,
    dst: &mut ImapSession,
    source_name: &str,
    target_name: &str,
    exists: bool,
    report: &mut AccountReport,
) -> Result<FolderEnd, String> {
    let source = summaries(src, source_name, true).map_err(|e| format!("source: {e}"))?;
    report.messages += source.len() as u64;
    let target = if exists {
        summaries(dst, target_name, true).map_err(|e| format!("target: {e}"))?
    } else {
        Vec::new()
    };
    let s: Vec<String> = source.iter().map(verify_id).collect();
    let t: Vec<String> = target.iter().map(verify_id).collect();
    let mut check = FolderCheck::compare(source_name, &s, &t);
    check.differ = composition_differences(&source, &target);
    report.checks.push(check);
    Ok(FolderEnd::Done)
}

/// What messages at both ends differ in besides presence: flags and INTERNALDATE, compared
/// as multisets among the messages of one (Message-ID, size), so look-alikes never count as
/// different when their flags are only held by the other twin.
fn composition_differences(source: &[MessageSummary], target: &[MessageSummary]) -> Vec<String> {
    type Twins<'m> = std::collections::BTreeMap<String, Vec<&'m MessageSummary>>;
    fn group(list: &[MessageSummary]) -> Twins<'_> {
        let mut g = Twins::new();
        for m in list {
            g.entry(verify_id(m)).or_default().push(m);
        }
        g
    }
    let (s, t) = (group(source), group(target));
    let mut out = Vec::new();
    for (id, a) in &s {
        let Some(b) = t.get(id) else {
            continue;
        };
        if a.len() != b.len() {
            // Reported as missing or duplicated already.
            continue;
        }
        let flags = |l: &[&MessageSummary]| {
            let mut f: Vec<String> = l.iter().map(|m| show_flags(&sorted(&m.flags))).collect();
            f.sort();
            f
        };
        let (fa, fb) = (flags(a), flags(b));
        if fa != fb {
            out.push(format!(
                "flags {id}: source {}, target {}",
                fa.join(" | "),
                fb.join(" | ")
            ));
        }
        let dates = |l: &[&MessageSummary]| {
            let mut d: Vec<i64> = l.iter().map(|m| m.date_epoch).collect();
            d.sort_unstable();
            d
        };
        if dates(a) != dates(b) {
            let shown = |l: &[&MessageSummary]| {
                let mut d: Vec<&str> = l.iter().map(|m| m.internal_date.as_str()).collect();
                d.sort_unstable();
                d.join(" | ")
            };
            out.push(format!(
                "INTERNALDATE {id}: source {}, target {}",
                shown(a),
                shown(b)
            ));
        }
    }
    out
}

fn show_flags(flags: &[String]) -> String {
    if flags.is_empty() {
        "(none)".into()
    } else {
        flags.join(" ")
    }
}

enum FolderEnd {
    Done,
    /// The target's quota is full: the rest of the account cannot go either.
    QuotaFull,
}

fn summaries(
    session: &mut ImapSession,
    folder: &str,
    with_message_id: bool,
) -> Result<Vec<MessageSummary>, String> {
    let count = session
        .open(folder, false)
        .map_err(|e| format!("folder `{folder}`: {e}"))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    session
        .summaries(with_message_id)
        .map_err(|e| format!("folder `{folder}`: FETCH: {e}"))
}

fn move_folder(
    src: &mut ImapSession,
    dst: &mut ImapSession,
    (source_name, target_name, exists): (&str, &str, bool),
    step: ImapStep,
    known: &mut HashSet<String>,
    report: &mut AccountReport,
) -> Result<FolderEnd, String> {
    let target_count = if exists || step != ImapStep::Plan {
        dst.open(target_name, false)
            .map_err(|e| format!("target: folder `{target_name}`: {e}"))?
    } else {
        0
    };
    let target = if target_count == 0 {
        Vec::new()
    } else {
        dst.summaries(true)
            .map_err(|e| format!("target: folder `{target_name}`: FETCH: {e}"))?
    };
    // Into an empty folder everything goes: no Message-ID to read from each source message
    // (a sweep still reads them, to recognize what it delivered before).
    let with_ids = target_count > 0 || step == ImapStep::Sweep;
    let source = summaries(src, source_name, with_ids).map_err(|e| format!("source: {e}"))?;
    report.messages += source.len() as u64;
    // Multiset match: a message twice at the source is wanted twice at the target.
    let FolderMatch {
        present,
        mut missing,
        flag_changes,
    } = match_folder(&source, &target);
    report.present += present.len() as u64;
    for s in &present {
        known.insert(delivered_key(
            source_name,
            s.message_id.as_deref().unwrap_or_default(),
            s,
        ));
    }
    known.insert(folder_record(source_name));
    if step == ImapStep::Sweep {
        // Delivered before and gone from the target since: the user deleted it there.
        missing.retain(|m| {
            !known.contains(&delivered_key(
                source_name,
                m.message_id.as_deref().unwrap_or_default(),
                m,
            ))
        });
    }
    if step == ImapStep::Plan {
        report.flags_updated += flag_changes.len() as u64;
        report.copied += missing.len() as u64;
        report.bytes += missing.iter().map(|m| m.size).sum::<u64>();
        return Ok(FolderEnd::Done);
    }
    if step == ImapStep::Sync && !flag_changes.is_empty() {
        match dst
            .open(target_name, true)
            .and_then(|_| dst.set_flags(&flag_changes))
        {
            Ok(()) => report.flags_updated += flag_changes.len() as u64,
            Err(e) => report.failures.push(format!(
                "folder `{source_name}`: flags refused by the target: {e}"
            )),
        }
    }
    // Appends go faster into a folder no session of ours has open (no view to update).
    dst.close_folder()
        .map_err(|e| format!("target: folder `{target_name}`: {e}"))?;
    let batches = batches(&missing);
    // The source reads the next batch while the target stores this one.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<HashMap<u32, Vec<u8>>, String>>(1);
        let reader = &mut *src;
        let wanted = &batches;
        scope.spawn(move || {
            for batch in wanted {
                let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
                // The source folder is still the one open (EXAMINE) on `reader`.
                let got = reader
                    .bodies(&uids)
                    .map(|b| b.into_iter().collect())
                    .map_err(|e| format!("source: folder `{source_name}`: FETCH: {e}"));
                let failed = got.is_err();
                if tx.send(got).is_err() || failed {
                    break;
                }
            }
        });
        let mut left = missing.len() as u64;
        for (batch, bodies) in batches.iter().zip(rx) {
            let bodies = bodies?;
            left -= batch.len() as u64;
            let present: Vec<&MessageSummary> = batch
                .iter()
                .copied()
                .filter(|m| bodies.contains_key(&m.uid))
                .collect();
            let appends: Vec<Append<'_>> = present
                .iter()
                .map(|m| Append {
                    flags: &m.flags,
                    internal_date: &m.internal_date,
                    body: &bodies[&m.uid],
                })
                .collect();
            let results = dst
                .append_many(target_name, &appends)
                .map_err(|e| format!("target: folder `{target_name}`: APPEND: {e}"))?;
            let mut quota_full = None;
            let mut not_copied = 0;
            for (m, r) in present.iter().zip(results) {
                match r {
                    Ok(()) => {
                        report.copied += 1;
                        report.bytes += m.size;
                        let id = m.message_id.clone().or_else(|| {
                            super::imap::header_value(header_of(&bodies[&m.uid]), "message-id")
                        });
                        known.insert(delivered_key(
                            source_name,
                            id.as_deref().unwrap_or_default(),
                            m,
                        ));
                    }
                    Err(e) if e.to_ascii_uppercase().contains("[OVERQUOTA]") => {
                        not_copied += 1;
                        quota_full.get_or_insert(e);
                    }
                    Err(e) => {
                        // Read from the message itself when the listing did not ask for it.
                        let id = m.message_id.clone().or_else(|| {
                            super::imap::header_value(header_of(&bodies[&m.uid]), "message-id")
                        });
                        report.failures.push(format!(
                            "folder `{source_name}`: message UID {} ({}, {} bytes): {e}",
                            m.uid,
                            id.as_deref().unwrap_or("no Message-ID"),
                            m.size
                        ))
                    }
                }
            }
            if let Some(e) = quota_full {
                report.failures.push(format!(
                    "folder `{source_name}`: the target's quota is full ({e}): {} message(s) of this folder not copied, later folders skipped; run again once there is room",
                    not_copied + left
                ));
                return Ok(FolderEnd::QuotaFull);
            }
        }
        Ok(FolderEnd::Done)
    })
}

/// The header block of a raw message (up to the first empty line).
fn header_of(message: &[u8]) -> &[u8] {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| message.windows(2).position(|w| w == b"\n\n"))
        .map_or(message, |end| &message[..end + 2])
}

/// Missing messages in batches of at most `BATCH_MESSAGES` and about `BATCH_BYTES`.
fn batches<'a>(missing: &[&'a MessageSummary]) -> Vec<Vec<&'a MessageSummary>> {
    let mut out: Vec<Vec<&MessageSummary>> = Vec::new();
    let mut bytes = 0;
    for m in missing {
        match out.last_mut() {
            Some(b) if b.len() < BATCH_MESSAGES && bytes + m.size <= BATCH_BYTES => {
                bytes += m.size;
                b.push(m);
            }
            _ => {
                bytes = m.size;
                out.push(vec![m]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_cross_namespaces() {
        let dovecot = (String::new(), Some('.'));
        let courier = ("INBOX.".to_string(), Some('.'));
        let slash = (String::new(), Some('/'));
        assert_eq!(translate("INBOX", &courier, &slash).unwrap(), "INBOX");
        assert_eq!(
            translate("INBOX.Archive.2024", &courier, &slash).unwrap(),
            "Archive/2024"
        );
        assert_eq!(
            translate("Archive/2024", &slash, &courier).unwrap(),
            "INBOX.Archive.2024"
        );
        assert_eq!(translate("Sent", &dovecot, &dovecot).unwrap(), "Sent");
        let e = translate("Projects/v1.2", &slash, &dovecot).unwrap_err();
        assert!(e.contains("`v1.2`"), "{e}");
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let m = |uid, size| MessageSummary {
            uid,
            flags: Vec::new(),
            internal_date: String::new(),
            date_epoch: 0,
            size,
            message_id: None,
        };
        let list: Vec<MessageSummary> = (1..=5)
            .map(|i| m(i, BATCH_BYTES / 2))
            .chain((6..=6 + BATCH_MESSAGES as u32).map(|i| m(i, 10)))
            .collect();
        let refs: Vec<&MessageSummary> = list.iter().collect();
        let sizes: Vec<usize> = batches(&refs).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, BATCH_MESSAGES, 2]);
        let big = [m(1, BATCH_BYTES * 3)];
        assert_eq!(
            batches(&[&big[0]]).len(),
            1,
            "a message over the batch size goes alone"
        );
    }

    #[test]
    fn flags_compare_without_recent_or_case() {
        assert_eq!(
            sorted(&["\\Seen".into(), "\\Recent".into(), "$Label1".into()]),
            sorted(&["$label1".into(), "\\SEEN".into()])
        );
    }

    #[test]
    fn look_alike_messages_keep_their_flags_when_the_flag_multisets_agree() {
        let m = |uid, flags: &[&str]| MessageSummary {
            uid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internal_date: String::new(),
            date_epoch: 7,
            size: 10,
            message_id: Some("<twin@x>".into()),
        };
        // Same Message-ID, size and date: one read, one flagged, at both ends in other orders.
        let source = [m(1, &["\\Seen"]), m(2, &["\\Flagged"])];
        let target = [m(8, &["\\Flagged"]), m(9, &["\\Seen"])];
        let matched = match_folder(&source, &target);
        assert_eq!(matched.present.len(), 2);
        assert!(matched.missing.is_empty());
        assert!(
            matched.flag_changes.is_empty(),
            "{:?}",
            matched.flag_changes
        );
        // A real change goes to the look-alike whose flags are not the source's already.
        let source = [m(1, &["\\Seen"]), m(2, &["\\Seen", "\\Answered"])];
        let matched = match_folder(&source, &target);
        assert_eq!(
            matched.flag_changes,
            vec![(8, vec!["\\Seen".to_string(), "\\Answered".to_string()])]
        );
        // One more at the source than at the target: missing once.
        let source = [m(1, &["\\Seen"]), m(2, &["\\Flagged"]), m(3, &[])];
        let matched = match_folder(&source, &target);
        assert_eq!(
            matched.missing.iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![3]
        );
        assert!(matched.flag_changes.is_empty());
    }
}
