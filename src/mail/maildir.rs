//! Reads Maildir listings as mailboxes, folders and messages: which target files are renames
//! of source messages, what a sweep copies, and how both ends compare.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::tree::{Entry, EntryKind, ScanSummary};

/// One mailbox (a `Maildir` with its `.Folder` subfolders) found in a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Path of the mailbox relative to the tree's root.
    pub path: String,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Unique parts of message file names (before `:2,`), to match messages across renames.
    pub unique_names: Vec<String>,
}

/// The unique part of a Maildir file name: `1700000000.M1P2.host,S=123:2,RS` → `1700000000.M1P2.host,S=123`.
pub fn unique_part(file_name: &str) -> &str {
    file_name.split_once(":2,").map_or(file_name, |(u, _)| u)
}

/// Files Dovecot rebuilds by itself (indexes, caches, change logs, quota totals), locks, and
/// messages still being delivered (`tmp/`): never copied, never compared, never deleted.
pub const REBUILT_BY_SERVER: &[&str] = &[
    "dovecot.index*",
    "dovecot.list.index*",
    "dovecot.mailbox.log*",
    "*.lock",
    "maildirsize",
    "**/tmp/*",
];

/// The excludes of a Maildir pass, as the file engine takes them.
pub fn excludes() -> Vec<String> {
    REBUILT_BY_SERVER.iter().map(|s| s.to_string()).collect()
}

/// A message file's folder directory and unique part: `a/Maildir/.Sent/cur/1.M2.h,S=9:2,S` →
/// (`a/Maildir/.Sent`, `1.M2.h,S=9`). `None` for anything that is not a message file.
pub fn message_key(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let slash = path.iter().rposition(|b| *b == b'/')?;
    let (dir, name) = (&path[..slash], &path[slash + 1..]);
    if name.is_empty() || name[0] == b'.' {
        return None;
    }
    let (folder, sub) = match dir.iter().rposition(|b| *b == b'/') {
        Some(i) => (&dir[..i], &dir[i + 1..]),
        None => (&dir[..0], dir),
    };
    if sub != b"cur" && sub != b"new" {
        return None;
    }
    let unique = name
        .windows(3)
        .position(|w| w == b":2,")
        .map_or(name, |i| &name[..i]);
    Some((folder, unique))
}

/// The mailbox and folder name of a folder directory: `a/Maildir/.Sent` → (`a/Maildir`,
/// `.Sent`); `a/Maildir` → (`a/Maildir`, `INBOX`).
pub fn mailbox_of(folder_dir: &str) -> (String, String) {
    match folder_dir.rsplit_once('/') {
        Some((parent, last)) if last.starts_with('.') => (parent.to_string(), last.to_string()),
        None if folder_dir.starts_with('.') => (String::new(), folder_dir.to_string()),
        _ => (folder_dir.to_string(), "INBOX".to_string()),
    }
}

/// A rename at the target: (from, to), paths relative to the tree's root.
pub type Rename = (Vec<u8>, Vec<u8>);

/// Renames that bring the target's message names in line with the source's: a message whose
/// unique part sits in the same folder at the target under another name (other flags, or
/// `new/` instead of `cur/`) is renamed there instead of being sent again. (from, to) pairs.
pub fn renames(source: &[Entry], target: &[Entry]) -> Vec<Rename> {
    let source_paths: HashSet<&[u8]> = source.iter().map(|e| e.path.as_slice()).collect();
    let target_paths: HashSet<&[u8]> = target.iter().map(|e| e.path.as_slice()).collect();
    let mut stale: HashMap<(&[u8], &[u8]), Vec<&Entry>> = HashMap::new();
    for t in target
        .iter()
        .filter(|e| e.kind == EntryKind::File && !source_paths.contains(e.path.as_slice()))
    {
        if let Some(key) = message_key(&t.path) {
            stale.entry(key).or_default().push(t);
        }
    }
    let mut out = Vec::new();
    for s in source.iter().filter(|e| e.kind == EntryKind::File) {
        if target_paths.contains(s.path.as_slice()) {
            continue;
        }
        let Some(key) = message_key(&s.path) else {
            continue;
        };
        if let Some(candidates) = stale.get_mut(&key)
            && let Some(i) = candidates.iter().position(|t| t.size == s.size)
        {
            let t = candidates.swap_remove(i);
            out.push((t.path.clone(), s.path.clone()));
        }
    }
    out
}

/// The target's listing once `done` renames are applied, so the file engine sees the renamed
/// messages as already there.
pub fn apply_renames(target: &mut ScanSummary, done: &[Rename]) {
    let by_from: HashMap<&[u8], &[u8]> = done
        .iter()
        .map(|(f, t)| (f.as_slice(), t.as_slice()))
        .collect();
    for e in &mut target.entries {
        if let Some(to) = by_from.get(e.path.as_slice()) {
            e.path = to.to_vec();
        }
    }
}

/// A message's identity as one byte string, `folder/unique` (as kept in the delivered record).
pub fn delivered_key(path: &[u8]) -> Option<Vec<u8>> {
    message_key(path).map(|(folder, unique)| [folder, b"/", unique].concat())
}

/// The folders a record knows: the folder part of every `folder/unique` key, and the `folder/`
/// lines a pass writes for each folder it saw (so an empty folder is known too).
pub fn recorded_folders(delivered: &HashSet<Vec<u8>>) -> HashSet<&[u8]> {
    delivered
        .iter()
        .map(|k| match k.iter().rposition(|b| *b == b'/') {
            Some(i) => &k[..i],
            None => &k[..0],
        })
        .collect()
}

/// The record line of a folder seen by a pass: `folder/` (an empty unique part).
pub fn folder_key(folder: &[u8]) -> Vec<u8> {
    [folder, b"/"].concat()
}

/// The folder directories of a listing: every directory holding a `cur/` or a message.
pub fn folders(listing: &ScanSummary) -> std::collections::BTreeSet<Vec<u8>> {
    listing
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File => message_key(&e.path).map(|(f, _)| f.to_vec()),
            EntryKind::Dir if e.path.ends_with(b"/cur") || e.path == b"cur" => {
                Some(e.path[..e.path.len().saturating_sub(4)].to_vec())
            }
            _ => None,
        })
        .collect()
}

/// What a sweep copies, and the folders it leaves alone.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    pub listing: ScanSummary,
    /// Folders a previous pass put at the target and that are gone there now (the user deleted
    /// or renamed them): never recreated. (folder directory, messages of the source there that
    /// were not delivered before).
    pub gone_at_target: Vec<(Vec<u8>, u64)>,
}

/// What a sweep after the cutover copies: source messages whose unique part is in no file of
/// the same folder at the target and that were never `delivered` there before (a message the
/// user deleted at the target stays deleted), the directories they need, and small Maildir
/// files the target lacks; never `dovecot-uidlist` (the target's UIDs are its own by now).
/// Messages go only into folders that exist at the target or are new at the source since the
/// last pass: a folder the user deleted or renamed at the target is not recreated.
pub fn sweep_listing(
    source: &ScanSummary,
    target: &ScanSummary,
    delivered: &HashSet<Vec<u8>>,
) -> Sweep {
    let target_paths: HashSet<&[u8]> = target.entries.iter().map(|e| e.path.as_slice()).collect();
    let target_keys: HashSet<(&[u8], &[u8])> = target
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| message_key(&e.path))
        .collect();
    let seen = recorded_folders(delivered);
    let at_target = |folder: &[u8]| {
        if folder.is_empty() {
            target.exists
        } else {
            target_paths.contains(folder)
        }
    };
    let gone: Vec<Vec<u8>> = folders(source)
        .into_iter()
        .filter(|f| !at_target(f) && seen.contains(f.as_slice()))
        .collect();
    let under_gone = |path: &[u8]| {
        gone.iter().any(|g| {
            g.is_empty()
                || path == g.as_slice()
                || (path.starts_with(g) && path.get(g.len()) == Some(&b'/'))
        })
    };
    let mut gone_counts: BTreeMap<&[u8], u64> = gone.iter().map(|g| (g.as_slice(), 0)).collect();
    let entries = source
        .entries
        .iter()
        .filter(|e| !target_paths.contains(e.path.as_slice()))
        .filter(|e| match e.kind {
            EntryKind::Dir => true,
            EntryKind::File => match message_key(&e.path) {
                Some(key) => {
                    !target_keys.contains(&key)
                        && !delivered_key(&e.path).is_some_and(|k| delivered.contains(&k))
                }
                None => !e.path.ends_with(b"dovecot-uidlist"),
            },
            _ => false,
        })
        .filter(|e| {
            if !under_gone(&e.path) {
                return true;
            }
            if let Some((folder, _)) = message_key(&e.path)
                && let Some(n) = gone_counts.get_mut(folder)
            {
                *n += 1;
            }
            false
        })
        .cloned()
        .collect();
    let gone_at_target = gone_counts
        .into_iter()
        .map(|(f, n)| (f.to_vec(), n))
        .collect();
    Sweep {
        listing: ScanSummary {
            exists: source.exists,
            entries,
            errors: source.errors.clone(),
            ..ScanSummary::default()
        },
        gone_at_target,
    }
}

/// A folder's `dovecot-uidlist`: its UIDVALIDITY, the next UID it gives, and the UID of each
/// message it lists (by unique part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uidlist {
    pub validity: u64,
    pub next_uid: u64,
    pub uids: HashMap<String, u64>,
}

impl Uidlist {
    /// Reads versions 1, 2 and 3 of the format (`courier::UidList::parse`); `None` when the
    /// header cannot be read.
    pub fn parse(bytes: &[u8]) -> Option<Uidlist> {
        super::courier::UidList::parse(bytes)
            .ok()
            .map(|l| l.to_uidlist())
    }

    /// The next UID this list gives: its header's, or past its highest entry.
    pub fn next(&self) -> u64 {
        self.next_uid
            .max(self.uids.values().max().map_or(0, |m| m + 1))
    }

    /// Whether `newer` (the source's list) only extends this one (the target's), so copying it
    /// over changes no UID at the target: same UIDVALIDITY, no UID given here beyond `newer`'s
    /// next, and every message listed here with the same UID there, except messages this pass
    /// removes at the target (`leaving`).
    pub fn extended_by(&self, newer: &Uidlist, leaving: &dyn Fn(&str) -> bool) -> bool {
        self.validity == newer.validity
            && self.next() <= newer.next()
            && self.uids.iter().all(|(u, k)| {
                newer.uids.get(u) == Some(k) || (!newer.uids.contains_key(u) && leaving(u))
            })
    }
}

/// The flags of a message file name, sorted (`1.M1.h:2,SR` → `RS`; none in `new/`).
pub fn flags_of(path: &[u8]) -> String {
    let name = path
        .iter()
        .rposition(|b| *b == b'/')
        .map_or(path, |i| &path[i + 1..]);
    let info = name
        .windows(3)
        .position(|w| w == b":2,")
        .map_or(&b""[..], |i| &name[i + 3..]);
    let mut flags: Vec<char> = String::from_utf8_lossy(info).chars().collect();
    flags.sort_unstable();
    flags.into_iter().collect()
}

/// One folder compared at both ends by the unique parts of its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FolderCheck {
    pub folder: String,
    pub source_messages: u64,
    pub target_messages: u64,
    /// Messages of the source absent at the target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Messages at the target the source does not have.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// Messages more often at the target than at the source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicated: Vec<String>,
    /// Messages at both ends that differ in what they are made of: flags, dates, UIDs, and the
    /// folder's UIDVALIDITY.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differ: Vec<String>,
}

impl FolderCheck {
    pub fn clean(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.duplicated.is_empty()
            && self.differ.is_empty()
    }

    /// Compares two multisets of message identities of one folder.
    pub fn compare(folder: &str, source: &[String], target: &[String]) -> FolderCheck {
        let (s, t) = (multiset(source), multiset(target));
        let mut check = FolderCheck {
            folder: folder.to_string(),
            source_messages: source.len() as u64,
            target_messages: target.len() as u64,
            ..Default::default()
        };
        for (k, n) in &s {
            if !t.contains_key(k) {
                check.missing.push((*k).to_string());
            } else if t[k] < *n {
                check.missing.push(format!("{k} ({} of {n})", n - t[k]));
            }
        }
        for (k, n) in &t {
            match s.get(k) {
                None => check.extra.push((*k).to_string()),
                Some(m) if n > m => check.duplicated.push(format!("{k} ({n} times)")),
                Some(_) => {}
            }
        }
        check
    }
}

fn multiset(list: &[String]) -> BTreeMap<&str, u64> {
    let mut m: BTreeMap<&str, u64> = BTreeMap::new();
    for k in list {
        *m.entry(k.as_str()).or_default() += 1;
    }
    m
}

/// The `dovecot-uidlist` of each folder directory at both ends (source, target), where kept.
pub type Uidlists = HashMap<Vec<u8>, (Option<Uidlist>, Option<Uidlist>)>;

/// Compares the messages of every folder at both ends, by mailbox: presence (unique part and
/// size), then, for messages at both ends, their flags (the `:2,` info) and, where both ends
/// keep a `dovecot-uidlist`, their UIDs and the folder's UIDVALIDITY.
pub fn compare(
    source: &[Entry],
    target: &[Entry],
    uidlists: &Uidlists,
) -> BTreeMap<String, Vec<FolderCheck>> {
    #[derive(Default)]
    struct Sides {
        ids: [Vec<String>; 2],
        /// unique part → flags of each file with it.
        flags: [HashMap<String, Vec<String>>; 2],
    }
    let mut folders: BTreeMap<Vec<u8>, Sides> = BTreeMap::new();
    for (side, entries) in [(0, source), (1, target)] {
        for e in entries {
            let key = match e.kind {
                EntryKind::File => message_key(&e.path).map(|(f, u)| (f, Some(u))),
                EntryKind::Dir if e.path.ends_with(b"/cur") || e.path == b"cur" => {
                    Some((&e.path[..e.path.len().saturating_sub(4)], None))
                }
                _ => None,
            };
            let Some((folder, unique)) = key else {
                continue;
            };
            let lists = folders.entry(folder.to_vec()).or_default();
            if let Some(u) = unique {
                let u = String::from_utf8_lossy(u).into_owned();
                lists.ids[side].push(format!("{u} ({} bytes)", e.size));
                lists.flags[side]
                    .entry(u)
                    .or_default()
                    .push(flags_of(&e.path));
            }
        }
    }
    let mut out: BTreeMap<String, Vec<FolderCheck>> = BTreeMap::new();
    for (dir, sides) in folders {
        let (mailbox, folder) = mailbox_of(&String::from_utf8_lossy(&dir));
        let mut check = FolderCheck::compare(&folder, &sides.ids[0], &sides.ids[1]);
        let mut both: Vec<&String> = sides.flags[0]
            .keys()
            .filter(|u| sides.flags[1].contains_key(*u))
            .collect();
        both.sort();
        let shown = |f: &str| {
            if f.is_empty() {
                "(none)".to_string()
            } else {
                f.to_string()
            }
        };
        for u in &both {
            let (s, t) = (&sides.flags[0][*u], &sides.flags[1][*u]);
            if s.len() == 1 && t.len() == 1 && s[0] != t[0] {
                check.differ.push(format!(
                    "flags {u}: source {}, target {}",
                    shown(&s[0]),
                    shown(&t[0])
                ));
            }
        }
        if let Some((Some(s), Some(t))) = uidlists.get(&dir) {
            if s.validity != t.validity {
                check.differ.push(format!(
                    "UIDVALIDITY: source {}, target {}",
                    s.validity, t.validity
                ));
            } else {
                for u in &both {
                    if let (Some(a), Some(b)) = (s.uids.get(*u), t.uids.get(*u))
                        && a != b
                    {
                        check
                            .differ
                            .push(format!("UID {u}: source {a}, target {b}"));
                    }
                }
            }
        }
        out.entry(mailbox).or_default().push(check);
    }
    out
}

/// Groups a scanned tree into mailboxes. A message is a file in a `cur/` or `new/` directory;
/// its mailbox is the directory holding that `cur`/`new`, or its parent for `.Folder`s.
pub fn mailboxes(scan: &ScanSummary) -> Vec<MailboxStats> {
    let mut boxes: BTreeMap<String, (MailboxStats, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for e in &scan.entries {
        let path = String::from_utf8_lossy(&e.path);
        let parts: Vec<&str> = path.split('/').collect();
        let (is_message, folder_end) = match e.kind {
            // Message file names never start with a dot; `.keep` and the like are not mail.
            EntryKind::File
                if parts.len() >= 2
                    && matches!(parts[parts.len() - 2], "cur" | "new")
                    && !parts[parts.len() - 1].starts_with('.') =>
            {
                (true, parts.len() - 2)
            }
            EntryKind::Dir if matches!(parts.last(), Some(&"cur")) => (false, parts.len() - 1),
            _ => continue,
        };
        let folder = &parts[..folder_end];
        let (mailbox, folder_name) = match folder.last() {
            Some(f) if f.starts_with('.') => {
                (folder[..folder.len() - 1].join("/"), (*f).to_string())
            }
            _ => (folder.join("/"), "INBOX".to_string()),
        };
        let (stats, folders) = boxes.entry(mailbox.clone()).or_insert_with(|| {
            (
                MailboxStats {
                    path: mailbox,
                    ..Default::default()
                },
                Default::default(),
            )
        });
        folders.insert(folder_name);
        if is_message {
            stats.messages += 1;
            stats.bytes += e.size;
            stats
                .unique_names
                .push(unique_part(parts[parts.len() - 1]).to_string());
        }
    }
    boxes
        .into_values()
        .map(|(mut s, folders)| {
            s.folders = folders.len() as u64;
            s.unique_names.sort();
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            size,
            mtime_ns: 0,
            mode: 0o100600,
            uid: 0,
            gid: 0,
            nlink: 1,
            dev: 0,
            ino: 0,
            rdev: 0,
            link_target: None,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            ..file(path, 0)
        }
    }

    fn listing(entries: Vec<Entry>) -> ScanSummary {
        ScanSummary {
            exists: true,
            entries,
            ..Default::default()
        }
    }

    #[test]
    fn message_keys_are_folder_and_unique_part() {
        assert_eq!(
            message_key(b"a/Maildir/.Sent/cur/1.M2.h,S=9:2,RS"),
            Some((&b"a/Maildir/.Sent"[..], &b"1.M2.h,S=9"[..]))
        );
        assert_eq!(message_key(b"new/1.M2.h"), Some((&b""[..], &b"1.M2.h"[..])));
        assert_eq!(message_key(b"a/Maildir/dovecot-uidlist"), None);
        assert_eq!(message_key(b"a/Maildir/tmp/1.M2.h"), None);
        assert_eq!(message_key(b"a/Maildir/cur/.hidden"), None);
    }

    #[test]
    fn flag_changes_and_moves_to_cur_become_renames_in_the_same_folder() {
        let source = vec![
            file("u/Maildir/cur/1.M1.h,S=5:2,RS", 5),
            file("u/Maildir/cur/2.M2.h,S=3:2,S", 3),
            file("u/Maildir/.Sent/cur/3.M3.h,S=4:2,S", 4),
            file("u/Maildir/cur/4.M4.h,S=8:2,", 8),
        ];
        let target = vec![
            file("u/Maildir/cur/1.M1.h,S=5:2,S", 5),
            file("u/Maildir/new/2.M2.h,S=3", 3),
            // Same unique part in another folder: not this message.
            file("u/Maildir/cur/3.M3.h,S=4:2,S", 4),
            file("u/Maildir/cur/4.M4.h,S=8:2,", 8),
        ];
        let mut r = renames(&source, &target);
        r.sort();
        assert_eq!(
            r,
            vec![
                (
                    b"u/Maildir/cur/1.M1.h,S=5:2,S".to_vec(),
                    b"u/Maildir/cur/1.M1.h,S=5:2,RS".to_vec()
                ),
                (
                    b"u/Maildir/new/2.M2.h,S=3".to_vec(),
                    b"u/Maildir/cur/2.M2.h,S=3:2,S".to_vec()
                ),
            ]
        );
        let mut t = listing(target);
        apply_renames(&mut t, &r);
        assert!(
            t.entries
                .iter()
                .any(|e| e.path == b"u/Maildir/cur/2.M2.h,S=3:2,S")
        );
    }

    #[test]
    fn a_sweep_takes_only_messages_the_target_lacks_and_never_the_uidlist() {
        let source = listing(vec![
            dir("u/Maildir"),
            dir("u/Maildir/cur"),
            dir("u/Maildir/.Late"),
            dir("u/Maildir/.Late/cur"),
            file("u/Maildir/dovecot-uidlist", 40),
            file("u/Maildir/cur/1.M1.h:2,S", 5),
            file("u/Maildir/new/9.M9.h", 7),
            file("u/Maildir/.Late/maildirfolder", 0),
            file("u/Maildir/.Late/cur/8.M8.h:2,", 2),
        ]);
        let target = listing(vec![
            dir("u/Maildir"),
            dir("u/Maildir/cur"),
            file("u/Maildir/dovecot-uidlist", 90),
            // The user flagged it at the target after the cutover: present, untouched.
            file("u/Maildir/cur/1.M1.h:2,FS", 5),
        ]);
        let swept: Vec<String> = sweep_listing(&source, &target, &HashSet::new())
            .listing
            .entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(
            swept,
            vec![
                "u/Maildir/.Late",
                "u/Maildir/.Late/cur",
                "u/Maildir/new/9.M9.h",
                "u/Maildir/.Late/maildirfolder",
                "u/Maildir/.Late/cur/8.M8.h:2,",
            ]
        );
    }

    #[test]
    fn a_sweep_never_brings_back_what_it_delivered_before() {
        let source = listing(vec![
            file("u/Maildir/cur/1.M1.h:2,S", 5),
            file("u/Maildir/new/9.M9.h", 7),
        ]);
        // The user deleted message 1 at the target after the cutover.
        let target = listing(vec![dir("u/Maildir"), dir("u/Maildir/cur")]);
        let delivered: HashSet<Vec<u8>> =
            [delivered_key(b"u/Maildir/cur/1.M1.h:2,").unwrap()].into();
        let swept: Vec<Vec<u8>> = sweep_listing(&source, &target, &delivered)
            .listing
            .entries
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(swept, vec![b"u/Maildir/new/9.M9.h".to_vec()]);
    }

    #[test]
    fn comparison_names_missing_extra_and_duplicated_messages() {
        let source = vec![
            dir("u/Maildir/cur"),
            file("u/Maildir/cur/1.M1.h:2,S", 5),
            file("u/Maildir/cur/2.M2.h:2,S", 3),
        ];
        let target = vec![
            dir("u/Maildir/cur"),
            file("u/Maildir/cur/1.M1.h:2,RS", 5),
            file("u/Maildir/new/1.M1.h", 5),
            file("u/Maildir/cur/7.M7.h:2,", 1),
        ];
        let boxes = compare(&source, &target, &Uidlists::new());
        let inbox = &boxes["u/Maildir"][0];
        assert_eq!(inbox.folder, "INBOX");
        assert_eq!((inbox.source_messages, inbox.target_messages), (2, 3));
        assert_eq!(inbox.missing, vec!["2.M2.h (3 bytes)"]);
        assert_eq!(inbox.extra, vec!["7.M7.h (1 bytes)"]);
        assert_eq!(inbox.duplicated, vec!["1.M1.h (5 bytes) (2 times)"]);
        assert!(!inbox.clean());
    }

    #[test]
    fn groups_messages_by_mailbox_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "example.org/alice/Maildir/cur",
            "example.org/alice/Maildir/new",
            "example.org/alice/Maildir/tmp",
            "example.org/alice/Maildir/.Sent/cur",
            "example.org/bob/Maildir/cur",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(
            r.join("example.org/alice/Maildir/cur/1.M1.h,S=5:2,S"),
            b"hello",
        )
        .unwrap();
        std::fs::write(r.join("example.org/alice/Maildir/new/2.M2.h,S=3"), b"abc").unwrap();
        std::fs::write(
            r.join("example.org/alice/Maildir/.Sent/cur/3.M3.h:2,RS"),
            b"x",
        )
        .unwrap();
        std::fs::write(
            r.join("example.org/alice/Maildir/dovecot-uidlist"),
            b"3 V1 N4",
        )
        .unwrap();
        let boxes = mailboxes(&crate::tree::scan(r, &[]).unwrap());
        assert_eq!(boxes.len(), 2);
        assert_eq!(
            (
                boxes[0].path.as_str(),
                boxes[0].folders,
                boxes[0].messages,
                boxes[0].bytes
            ),
            ("example.org/alice/Maildir", 2, 3, 9)
        );
        assert_eq!(
            boxes[0].unique_names,
            vec!["1.M1.h,S=5", "2.M2.h,S=3", "3.M3.h"]
        );
        assert_eq!((boxes[1].messages, boxes[1].folders), (0, 1));
    }

    #[test]
    fn a_sweep_does_not_recreate_a_folder_gone_at_the_target_but_creates_a_new_one() {
        let source = listing(vec![
            dir("u/Maildir"),
            dir("u/Maildir/cur"),
            dir("u/Maildir/.Old"),
            dir("u/Maildir/.Old/cur"),
            file("u/Maildir/.Old/cur/1.M1.h:2,S", 5),
            file("u/Maildir/.Old/cur/2.M2.h:2,", 5),
            file("u/Maildir/.Old/dovecot-uidlist", 9),
            dir("u/Maildir/.Fresh"),
            dir("u/Maildir/.Fresh/cur"),
            file("u/Maildir/.Fresh/cur/3.M3.h:2,", 5),
        ]);
        // `.Old` was deleted (or renamed) at the target by its user after a pass saw it.
        let target = listing(vec![dir("u/Maildir"), dir("u/Maildir/cur")]);
        let delivered: HashSet<Vec<u8>> = [folder_key(b"u/Maildir/.Old")].into();
        let sweep = sweep_listing(&source, &target, &delivered);
        let swept: Vec<String> = sweep
            .listing
            .entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(
            swept,
            vec![
                "u/Maildir/.Fresh",
                "u/Maildir/.Fresh/cur",
                "u/Maildir/.Fresh/cur/3.M3.h:2,"
            ]
        );
        assert_eq!(sweep.gone_at_target, vec![(b"u/Maildir/.Old".to_vec(), 2)]);
    }

    #[test]
    fn uidlists_are_read_and_a_target_with_uids_of_its_own_is_not_extended() {
        let source = Uidlist::parse(
            b"3 V1700000000 N6 G0123\n1 :1.M1.h,S=5\n2 W300 :2.M2.h,S=3:2,S\n5 :5.M5.h\n",
        )
        .unwrap();
        assert_eq!((source.validity, source.next_uid), (1700000000, 6));
        assert_eq!(source.uids["2.M2.h,S=3"], 2);
        let old = Uidlist::parse(b"3 V1700000000 N3\n1 :1.M1.h,S=5\n2 :2.M2.h,S=3\n").unwrap();
        assert!(
            old.extended_by(&source, &|_| false),
            "a prefix of the source's"
        );
        // Mail delivered at the target took UID 3; the source never gave it.
        let own = Uidlist::parse(b"3 V1700000000 N4\n1 :1.M1.h,S=5\n3 :9.M9.t\n").unwrap();
        assert!(!own.extended_by(&source, &|_| false));
        // UID 5 at the source names another message than at the target.
        let other = Uidlist::parse(b"3 V1700000000 N6\n5 :7.M7.t\n").unwrap();
        assert!(!other.extended_by(&source, &|_| false));
        // Expunged at the source and removed by this pass at the target: nothing left to keep.
        let gone = Uidlist::parse(b"3 V1700000000 N5\n1 :1.M1.h,S=5\n4 :4.M4.h\n").unwrap();
        assert!(!gone.extended_by(&source, &|_| false));
        assert!(gone.extended_by(&source, &|u| u == "4.M4.h"));
        let v1 = Uidlist::parse(b"1 1700000000 3\n1 1.M1.h:2,S\n").unwrap();
        assert_eq!(v1.uids["1.M1.h"], 1);
    }

    #[test]
    fn comparison_names_differing_flags_and_uids() {
        let source = vec![
            dir("u/Maildir/cur"),
            file("u/Maildir/cur/1.M1.h:2,SR", 5),
            file("u/Maildir/cur/2.M2.h:2,S", 3),
        ];
        let target = vec![
            dir("u/Maildir/cur"),
            file("u/Maildir/cur/1.M1.h:2,RS", 5),
            file("u/Maildir/cur/2.M2.h:2,", 3),
        ];
        let lists: Uidlists = [(
            b"u/Maildir".to_vec(),
            (
                Uidlist::parse(b"3 V1 N3\n1 :1.M1.h\n2 :2.M2.h\n"),
                Uidlist::parse(b"3 V1 N4\n3 :1.M1.h\n2 :2.M2.h\n"),
            ),
        )]
        .into();
        let inbox = &compare(&source, &target, &lists)["u/Maildir"][0];
        assert_eq!(
            inbox.differ,
            vec![
                "flags 2.M2.h: source S, target (none)",
                "UID 1.M1.h: source 1, target 3"
            ]
        );
        assert!(!inbox.clean());
    }
}
