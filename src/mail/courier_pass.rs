//! The Maildir pass's side of `convert: courier-to-dovecot`: finds Courier's files in the
//! source's listing, reads them and the target's Dovecot files through the transports, names
//! each message as it will be at the target (keyword letters), and writes `dovecot-keywords`,
//! `dovecot-uidlist` and `subscriptions` at the target once the messages are in place. The
//! source is only read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::courier::{self, CourierKeywords, DovecotKeywords, KeywordFile, TargetMessage, UidList};
use super::maildir::{self, FolderCheck, Rename};
use super::maildir_pass::{read_small, rename_all};
use crate::sync::side::Side;
use crate::sync::{Endpoint, SyncError};
use crate::transport::protocol::{Basis, Call, Reply};
use crate::tree::root::Meta;
use crate::tree::{Entry, EntryKind, ScanSummary};

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// `dir/name`, or `name` at the root.
fn join(dir: &[u8], name: &str) -> Vec<u8> {
    if dir.is_empty() {
        name.as_bytes().to_vec()
    } else {
        [dir, b"/", name.as_bytes()].concat()
    }
}

/// The directory part of a path (`` at the root) and its last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

/// Where a listing has Courier's files: folders with a `courierimapuiddb` or a
/// `courierimapkeywords/`, and mailbox roots with a `courierimapsubscribed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourierDirs {
    pub uiddb: BTreeSet<Vec<u8>>,
    pub keywords: BTreeSet<Vec<u8>>,
    pub subscribed: BTreeSet<Vec<u8>>,
}

impl CourierDirs {
    pub fn of(listing: &ScanSummary) -> CourierDirs {
        let mut dirs = CourierDirs::default();
        for e in &listing.entries {
            let (dir, name) = split(&e.path);
            match (e.kind, name) {
                (EntryKind::File, n) if n == courier::UIDDB.as_bytes() => {
                    dirs.uiddb.insert(dir.to_vec());
                }
                (EntryKind::File, n) if n == courier::SUBSCRIBED.as_bytes() => {
                    dirs.subscribed.insert(dir.to_vec());
                }
                (EntryKind::Dir, n) if n == courier::KEYWORDS_DIR.as_bytes() => {
                    dirs.keywords.insert(dir.to_vec());
                }
                _ => {}
            }
        }
        dirs
    }

    pub fn is_empty(&self) -> bool {
        self.uiddb.is_empty() && self.keywords.is_empty() && self.subscribed.is_empty()
    }

    /// Folders whose messages take their Dovecot names and files from Courier's.
    fn folders(&self) -> BTreeSet<&Vec<u8>> {
        self.uiddb.iter().chain(&self.keywords).collect()
    }

    /// Whether `path` is one of Courier's files (anywhere), or a Dovecot file that a Courier
    /// file of the same directory takes the place of.
    fn replaced(&self, path: &[u8]) -> bool {
        let (dir, name) = split(path);
        let kw = courier::KEYWORDS_DIR.as_bytes();
        if name == courier::UIDDB.as_bytes()
            || name == courier::SUBSCRIBED.as_bytes()
            || name == kw
            || split(dir).1 == kw
        {
            return true;
        }
        let in_folder = self.uiddb.contains(dir) || self.keywords.contains(dir);
        (in_folder
            && (name == courier::DOVECOT_UIDLIST.as_bytes()
                || name == courier::DOVECOT_KEYWORDS.as_bytes()))
            || (name == courier::DOVECOT_SUBSCRIPTIONS.as_bytes() && self.subscribed.contains(dir))
    }

    /// The listing without Courier's files and the Dovecot files they become: the file engine
    /// neither copies nor deletes them (at either end), the conversion writes them.
    pub fn strip(&self, listing: &ScanSummary) -> ScanSummary {
        ScanSummary {
            entries: listing
                .entries
                .iter()
                .filter(|e| !self.replaced(&e.path))
                .cloned()
                .collect(),
            ..listing.clone()
        }
    }
}

/// A file the conversion writes at the target.
#[derive(Debug, Clone)]
struct Generated {
    path: Vec<u8>,
    bytes: Vec<u8>,
    meta: Meta,
}

/// What one folder's conversion knows once its files are read.
#[derive(Debug, Clone, Default)]
struct Folder {
    /// Courier's list and the metadata the target's `dovecot-uidlist` takes from it.
    uiddb: Option<(UidList, Meta)>,
    /// The target's `dovecot-uidlist`, when it has a readable one.
    target_uidlist: Option<UidList>,
    /// `dovecot-keywords` to write (changed or new), and whether it was written already.
    keywords: Option<Generated>,
    keywords_written: bool,
}

/// Everything a pass needs to convert Courier's files, read once.
#[derive(Debug, Clone, Default)]
pub struct Conversion {
    pub dirs: CourierDirs,
    folders: BTreeMap<Vec<u8>, Folder>,
    subscriptions: Vec<Generated>,
    /// Source message path → its path at the target, where the names differ.
    names: HashMap<Vec<u8>, Vec<u8>>,
    /// (folder directory, why): what could not be carried.
    pub notes: Vec<(String, String)>,
}

/// Metadata for a file written now in place of `from` (owner and mode kept, mtime now, so
/// Dovecot sees the change).
pub(super) fn meta_now(from: &Entry) -> Meta {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    Meta {
        mtime_ns: now,
        ..from.meta()
    }
}

impl Conversion {
    /// Reads Courier's files from `source` (a listing of `src`) and the Dovecot files of the
    /// same folders from `target` (a listing of `dst`), and decides every name and file the
    /// target gets.
    ///
    /// # Errors
    /// A host cannot be reached. A file that cannot be read or parsed is a note: its folder is
    /// copied without what that file says.
    pub fn read(
        src: &Endpoint,
        dst: &Endpoint,
        source: &ScanSummary,
        target: &ScanSummary,
    ) -> Result<Conversion, SyncError> {
        let dirs = CourierDirs::of(source);
        let mut conv = Conversion {
            dirs: dirs.clone(),
            ..Default::default()
        };
        if dirs.is_empty() {
            return Ok(conv);
        }
        let by_path: HashMap<&[u8], &Entry> = source
            .entries
            .iter()
            .map(|e| (e.path.as_slice(), e))
            .collect();
        let at_target: HashSet<&[u8]> = target
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.path.as_slice())
            .collect();
        // Source files: uid lists, keyword directories' files, subscriptions.
        let kw = courier::KEYWORDS_DIR.as_bytes();
        let mut wanted: Vec<Vec<u8>> = Vec::new();
        for d in &dirs.uiddb {
            wanted.push(join(d, courier::UIDDB));
        }
        for d in &dirs.subscribed {
            wanted.push(join(d, courier::SUBSCRIBED));
        }
        let mut keyword_files: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
        // Message files of Courier's folders, by folder (one walk over the listing).
        let mut messages: HashMap<&[u8], Vec<&Entry>> = HashMap::new();
        for e in source.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let (dir, name) = split(&e.path);
            let (folder, last) = split(dir);
            if last == kw && dirs.keywords.contains(folder) {
                keyword_files
                    .entry(folder.to_vec())
                    .or_default()
                    .push(show(name));
                wanted.push(e.path.clone());
            } else if let Some((f, _)) = maildir::message_key(&e.path)
                && (dirs.uiddb.contains(f) || dirs.keywords.contains(f))
            {
                messages.entry(f).or_default().push(e);
            }
        }
        // Target files: the Dovecot files of the same folders, where there are some.
        let mut theirs: Vec<Vec<u8>> = Vec::new();
        for f in dirs.folders() {
            for name in [courier::DOVECOT_UIDLIST, courier::DOVECOT_KEYWORDS] {
                let p = join(f, name);
                if at_target.contains(p.as_slice()) {
                    theirs.push(p);
                }
            }
        }
        for d in &dirs.subscribed {
            let p = join(d, courier::DOVECOT_SUBSCRIPTIONS);
            if at_target.contains(p.as_slice()) {
                theirs.push(p);
            }
        }
        let (ours, other) = std::thread::scope(|s| {
            let t = s.spawn(|| read_small(dst, &theirs));
            (read_small(src, &wanted), t.join().expect("read thread"))
        });
        let read: HashMap<Vec<u8>, Option<Vec<u8>>> = wanted.into_iter().zip(ours?).collect();
        let read_target: HashMap<Vec<u8>, Option<Vec<u8>>> =
            theirs.into_iter().zip(other?).collect();
        let target_file = |p: &[u8]| read_target.get(p).cloned().flatten();

        for f in dirs.folders() {
            let mut folder = Folder::default();
            if dirs.uiddb.contains(f) {
                let p = join(f, courier::UIDDB);
                match read.get(&p).cloned().flatten().map(|b| UidList::parse(&b)) {
                    Some(Ok(list)) => {
                        folder.uiddb = Some((list, meta_now(by_path[p.as_slice()])));
                    }
                    Some(Err(why)) => conv.notes.push((
                        show(f),
                        format!("`{}` cannot be read as Courier writes it ({why}): Dovecot numbers this folder anew", show(&p)),
                    )),
                    None => conv.notes.push((
                        show(f),
                        format!("`{}` could not be read: Dovecot numbers this folder anew", show(&p)),
                    )),
                }
                folder.target_uidlist = target_file(&join(f, courier::DOVECOT_UIDLIST))
                    .and_then(|b| UidList::parse(&b).ok());
            }
            // Keywords: Courier's, placed in the target's `dovecot-keywords` (letters kept).
            let existing = target_file(&join(f, courier::DOVECOT_KEYWORDS))
                .map(|b| DovecotKeywords::parse(&b))
                .unwrap_or_default();
            let mut keywords = CourierKeywords::default();
            if let Some(files) = keyword_files.get_mut(f) {
                let mut list = None;
                let mut updates = Vec::new();
                for name in files.iter() {
                    let p = join(&join(f, courier::KEYWORDS_DIR), name);
                    let Some(content) = read.get(&p).cloned().flatten() else {
                        // Courier removes update files as it merges them into `:list`.
                        continue;
                    };
                    match courier::keyword_file(name) {
                        KeywordFile::List => list = Some(content),
                        KeywordFile::Update { .. } => updates.push((name.clone(), content)),
                        KeywordFile::Other => {}
                    }
                }
                keywords = CourierKeywords::read(list.as_deref(), &updates);
            }
            let (letters, left) = existing.with(&keywords.order);
            if !left.is_empty() {
                conv.notes.push((
                    show(f),
                    format!(
                        "folder `{}`: keyword(s) {} not carried: Dovecot keeps {} keywords per folder in Maildir file names",
                        show(f),
                        left.join(", "),
                        courier::MAX_KEYWORDS
                    ),
                ));
            }
            if letters != existing {
                let from = [join(f, courier::KEYWORDS_DIR), join(f, courier::UIDDB)]
                    .into_iter()
                    .find_map(|p| by_path.get(p.as_slice()).copied());
                if let Some(from) = from {
                    folder.keywords = Some(Generated {
                        path: join(f, courier::DOVECOT_KEYWORDS),
                        bytes: letters.render(),
                        meta: Meta {
                            mode: from.meta().mode & 0o666,
                            ..meta_now(from)
                        },
                    });
                }
            }
            // Names at the target: keyword letters in `cur/` (Courier sets keywords on messages
            // it moved there; `courier-dovecot-migrate.pl` converts `cur/` only).
            let mut in_new = 0;
            for e in messages.get(f.as_slice()).map_or(&[][..], Vec::as_slice) {
                let Some((_, unique)) = maildir::message_key(&e.path) else {
                    continue;
                };
                let (dir, name) = split(&e.path);
                let set = keywords.by_message.get(&show(unique));
                if split(dir).1 != b"cur" {
                    in_new += usize::from(set.is_some());
                    continue;
                }
                let letters = set.map(|s| letters.letters(s)).unwrap_or_default();
                let name = show(name);
                let renamed = courier::with_keyword_letters(&name, &letters);
                if renamed != name {
                    conv.names.insert(e.path.clone(), join(dir, &renamed));
                }
            }
            if in_new > 0 {
                conv.notes.push((
                    show(f),
                    format!(
                        "folder `{}`: {in_new} message(s) still in `new/` have Courier keywords: not carried (Courier and Dovecot keep keywords on messages in `cur/`)",
                        show(f)
                    ),
                ));
            }
            conv.folders.insert(f.clone(), folder);
        }
        for d in &dirs.subscribed {
            let p = join(d, courier::SUBSCRIBED);
            let Some(bytes) = read.get(&p).cloned().flatten() else {
                conv.notes.push((
                    show(d),
                    format!(
                        "`{}` could not be read: subscriptions not carried",
                        show(&p)
                    ),
                ));
                continue;
            };
            let converted = courier::subscriptions(&bytes);
            let dovecot = join(d, courier::DOVECOT_SUBSCRIPTIONS);
            let current = target_file(&dovecot).map(|b| courier::subscribed_names(&b));
            if current.as_ref() != Some(&courier::subscribed_names(&converted)) {
                conv.subscriptions.push(Generated {
                    path: dovecot,
                    bytes: converted,
                    meta: meta_now(by_path[p.as_slice()]),
                });
            }
        }
        Ok(conv)
    }

    /// The stripped source listing with every message under the name it gets at the target:
    /// what the renames at the target and the dry run compare the target with.
    pub fn wanted(&self, stripped: &ScanSummary) -> ScanSummary {
        let mut out = stripped.clone();
        for e in &mut out.entries {
            if let Some(to) = self.names.get(&e.path) {
                e.path = to.clone();
            }
        }
        out
    }

    /// The target's listing as the file engine must see it: a message already there under its
    /// target name is shown under its source name, so the engine neither sends nor deletes it.
    pub fn engine_view(&self, target: &ScanSummary) -> ScanSummary {
        let present: HashSet<&[u8]> = target.entries.iter().map(|e| e.path.as_slice()).collect();
        let back: HashMap<&[u8], &[u8]> = self
            .names
            .iter()
            .filter(|(from, _)| !present.contains(from.as_slice()))
            .map(|(from, to)| (to.as_slice(), from.as_slice()))
            .collect();
        let mut out = target.clone();
        for e in &mut out.entries {
            if let Some(from) = back.get(e.path.as_slice()) {
                e.path = from.to_vec();
            }
        }
        out
    }

    /// Writes the `dovecot-keywords` of folders that exist at the target already, before any
    /// message there is renamed to carry their letters.
    ///
    /// # Errors
    /// The target cannot be reached. A file that cannot be written is in the list returned.
    pub fn write_keywords_before(
        &mut self,
        dst: &Endpoint,
        target: &ScanSummary,
    ) -> Result<Vec<(String, String)>, SyncError> {
        let dirs: HashSet<&[u8]> = target
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.path.as_slice())
            .collect();
        let mut files = Vec::new();
        for (f, folder) in &mut self.folders {
            let exists = if f.is_empty() {
                target.exists
            } else {
                dirs.contains(f.as_slice())
            };
            if let Some(g) = &folder.keywords
                && exists
            {
                files.push(g.clone());
                folder.keywords_written = true;
            }
        }
        write_files(dst, &files)
    }

    /// After the file engine: renames the messages it sent under their source names to their
    /// target names, then writes the folders' `dovecot-keywords` left to write, their
    /// `dovecot-uidlist` and the mailboxes' `subscriptions`, and marks the `cur/` directories
    /// renamed in (before the engine and here) as changed now, so a Dovecot that indexed them
    /// looks again.
    ///
    /// # Errors
    /// The target cannot be reached. Single failures are in the outcome.
    pub fn finish(&self, dst: &Endpoint, pass: &Done<'_>) -> Result<Finished, SyncError> {
        let Done {
            listing,
            target,
            sent,
            failed,
            delete,
            renamed_before,
        } = *pass;
        let mut out = Finished::default();
        if self.dirs.is_empty() {
            return Ok(out);
        }
        let mut files: Vec<Generated> = self
            .folders
            .values()
            .filter(|f| !f.keywords_written)
            .filter_map(|f| f.keywords.clone())
            .collect();
        out.failures.extend(write_files(dst, &files)?);
        let renames: Vec<Rename> = self
            .names
            .iter()
            .filter(|(from, _)| sent.contains(*from))
            .map(|(from, to)| (from.clone(), to.clone()))
            .collect();
        let outcome = rename_all(dst, &renames)?;
        let mut not_renamed: HashSet<&[u8]> = HashSet::new();
        for ((from, to), r) in renames.iter().zip(&outcome) {
            if let Err(e) = r {
                not_renamed.insert(from);
                out.failures.push((
                    show(to),
                    format!("rename {} → {}: {e}", show(from), show(to)),
                ));
            }
        }
        // Every message at the target once this pass is done, by folder, under its name there.
        let mut at_target: BTreeMap<&[u8], Vec<TargetMessage>> = BTreeMap::new();
        let mut from_source: HashSet<(&[u8], &[u8])> = HashSet::new();
        for e in listing.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let Some(key) = maildir::message_key(&e.path) else {
                continue;
            };
            from_source.insert(key);
            if failed.contains(&e.path) {
                continue;
            }
            let path = match self.names.get(&e.path) {
                Some(to) if !not_renamed.contains(e.path.as_slice()) => to,
                _ => &e.path,
            };
            at_target.entry(key.0).or_default().push(TargetMessage {
                name: show(split(path).1),
            });
        }
        if !delete {
            for e in target.entries.iter().filter(|e| e.kind == EntryKind::File) {
                if let Some(key) = maildir::message_key(&e.path)
                    && !from_source.contains(&key)
                {
                    at_target.entry(key.0).or_default().push(TargetMessage {
                        name: show(split(&e.path).1),
                    });
                }
            }
        }
        files.clear();
        for (f, folder) in &self.folders {
            let Some((courier_list, meta)) = &folder.uiddb else {
                continue;
            };
            let messages = at_target.get(f.as_slice()).map_or(&[][..], Vec::as_slice);
            let c = courier::convert_uids(courier_list, messages, folder.target_uidlist.as_ref());
            if let Some(old) = c.replaced_validity {
                out.notes.push((
                    show(f),
                    format!(
                        "folder `{}`: the target's UIDVALIDITY {old} is replaced by Courier's {} (clients of the target, if any, resynchronize)",
                        show(f),
                        c.list.validity
                    ),
                ));
            }
            if !c.changed.is_empty() {
                out.notes.push((
                    show(f),
                    format!(
                        "folder `{}`: {} UID(s) at the target follow Courier's now, as the source's clients know them: {}",
                        show(f),
                        c.changed.len(),
                        c.changed.join(", ")
                    ),
                ));
            }
            if folder
                .target_uidlist
                .as_ref()
                .is_none_or(|t| !t.same_as(&c.list))
            {
                files.push(Generated {
                    path: join(f, courier::DOVECOT_UIDLIST),
                    bytes: c.list.render_v3(),
                    meta: Meta {
                        mode: meta.mode & 0o666,
                        ..*meta
                    },
                });
            }
        }
        files.extend(self.subscriptions.iter().cloned());
        out.failures.extend(write_files(dst, &files)?);
        // `cur/` directories renamed in: their mtime now, whatever the engine set.
        let mut curs: BTreeSet<&[u8]> = BTreeSet::new();
        for (_, to) in renames.iter().chain(renamed_before) {
            let (dir, _) = split(to);
            if split(dir).1 == b"cur" && self.folders.contains_key(split(dir).0) {
                curs.insert(dir);
            }
        }
        let metas: HashMap<&[u8], &Entry> = target
            .entries
            .iter()
            .chain(&listing.entries)
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| (e.path.as_slice(), e))
            .collect();
        let touch: Vec<(Vec<u8>, Meta)> = curs
            .into_iter()
            .filter_map(|d| metas.get(d).map(|e| (d.to_vec(), meta_now(e))))
            .collect();
        out.failures.extend(touch_dirs(dst, &touch)?);
        Ok(out)
    }

    /// Verification: the stripped source listing named as at the target, the UID lists to
    /// compare (Courier's with the target's `dovecot-uidlist`), and what differs in
    /// subscriptions and keywords, by folder directory.
    pub fn checks(
        &self,
        target_lists: &HashMap<Vec<u8>, maildir::Uidlist>,
    ) -> (maildir::Uidlists, Vec<(Vec<u8>, String)>) {
        let mut lists = maildir::Uidlists::new();
        for (f, folder) in &self.folders {
            if let Some((c, _)) = &folder.uiddb {
                lists.insert(
                    f.clone(),
                    (Some(c.to_uidlist()), target_lists.get(f).cloned()),
                );
            }
        }
        let mut differ = Vec::new();
        for g in &self.subscriptions {
            differ.push((
                split(&g.path).0.to_vec(),
                format!(
                    "subscriptions: Courier's {}, target's differ",
                    courier::subscribed_names(&g.bytes)
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for (f, folder) in &self.folders {
            if folder.keywords.is_some() {
                differ.push((
                    f.clone(),
                    "dovecot-keywords: the target lacks keywords Courier has".to_string(),
                ));
            }
        }
        for (path, note) in &self.notes {
            differ.push((path.as_bytes().to_vec(), note.clone()));
        }
        (lists, differ)
    }
}

/// What the pass did before `finish`, as `finish` needs it.
pub struct Done<'a> {
    /// The stripped source listing the file engine copied from.
    pub listing: &'a ScanSummary,
    /// The target's listing after the renames made before the engine (names at the target).
    pub target: &'a ScanSummary,
    /// Source paths the engine wrote, and those it failed on.
    pub sent: &'a HashSet<Vec<u8>>,
    pub failed: &'a HashSet<Vec<u8>>,
    /// Target messages the source lacks were removed (`--delete`).
    pub delete: bool,
    /// Renames made at the target before the engine.
    pub renamed_before: &'a [Rename],
}

/// What `finish` did.
#[derive(Debug, Default)]
pub struct Finished {
    /// (path, why) of what failed.
    pub failures: Vec<(String, String)>,
    /// (path, note) of what the conversion changed at the target that a client may notice.
    pub notes: Vec<(String, String)>,
}

/// Writes whole small files at `dst`, each under a temp name renamed into place once its
/// BLAKE3 checks (the file engine's own write); (path, why) of each that failed.
fn write_files(dst: &Endpoint, files: &[Generated]) -> Result<Vec<(String, String)>, SyncError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let side = Side::open(dst, true)?;
    let (ch, root) = side.pick(0);
    let host = ch.host().to_string();
    let mut pending = Vec::new();
    for g in files {
        let started = ch.call(Call::WriteBegin {
            root: *root,
            path: g.path.clone(),
            meta: g.meta,
            basis: Basis::None,
            block_len: crate::tree::delta::block_len_for(g.bytes.len() as u64),
            xattrs: None,
        });
        let started = started.and_then(|p| {
            ch.follow(
                p.id,
                Call::WriteData {
                    data: g.bytes.clone(),
                },
            )?;
            ch.follow(
                p.id,
                Call::WriteEnd {
                    hash: *blake3::hash(&g.bytes).as_bytes(),
                },
            )?;
            Ok(p)
        });
        pending.push((g, started));
    }
    let mut failures = Vec::new();
    for (g, p) in pending {
        match p.and_then(|p| p.wait(&host)) {
            Ok(Reply::Done(_)) => {}
            Ok(r) => failures.push((show(&g.path), format!("unexpected {r:?}"))),
            Err(e) => failures.push((show(&g.path), e.to_string())),
        }
    }
    let _ = ch.call_wait(Call::Sync { root: *root });
    if let Some(e) = side.lost() {
        return Err(SyncError::Transport(e));
    }
    Ok(failures)
}

/// Sets directories' metadata at `dst`; (path, why) of each that failed.
pub(super) fn touch_dirs(
    dst: &Endpoint,
    dirs: &[(Vec<u8>, Meta)],
) -> Result<Vec<(String, String)>, SyncError> {
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let side = Side::open(dst, false)?;
    let (ch, root) = side.pick(0);
    let host = ch.host().to_string();
    let pending: Vec<_> = dirs
        .iter()
        .map(|(p, meta)| {
            ch.call(Call::SetMeta {
                root: *root,
                path: p.clone(),
                meta: *meta,
                is_symlink: false,
                xattrs: None,
            })
        })
        .collect();
    let out = dirs
        .iter()
        .zip(pending)
        .filter_map(|((p, _), r)| {
            r.and_then(|r| r.wait(&host))
                .err()
                .map(|e| (show(p), e.to_string()))
        })
        .collect();
    if let Some(e) = side.lost() {
        return Err(SyncError::Transport(e));
    }
    Ok(out)
}

/// Verification of a converted tree: reads what the conversion reads, then compares the source
/// named as at the target with the target, Courier's UIDs with the target's `dovecot-uidlist`,
/// and Courier's subscriptions and keywords with the target's files.
///
/// # Errors
/// A host cannot be reached.
pub fn verify(
    src: &Endpoint,
    dst: &Endpoint,
    source: &ScanSummary,
    target: &ScanSummary,
    other_lists: maildir::Uidlists,
) -> Result<BTreeMap<String, Vec<FolderCheck>>, SyncError> {
    let conv = Conversion::read(src, dst, source, target)?;
    let wanted = conv.wanted(&conv.dirs.strip(source));
    let stripped_target = conv.dirs.strip(target);
    let files: HashSet<&[u8]> = target
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.path.as_slice())
        .collect();
    let paths: Vec<Vec<u8>> = conv
        .folders
        .iter()
        .filter(|(_, f)| f.uiddb.is_some())
        .map(|(f, _)| join(f, courier::DOVECOT_UIDLIST))
        .filter(|p| files.contains(p.as_slice()))
        .collect();
    let read = read_small(dst, &paths)?;
    let target_lists: HashMap<Vec<u8>, maildir::Uidlist> = paths
        .iter()
        .zip(read)
        .filter_map(|(p, b)| {
            let list = maildir::Uidlist::parse(&b?)?;
            Some((split(p).0.to_vec(), list))
        })
        .collect();
    let (mut lists, differ) = conv.checks(&target_lists);
    for (k, v) in other_lists {
        lists.entry(k).or_insert(v);
    }
    let mut out = maildir::compare(&wanted.entries, &stripped_target.entries, &lists);
    for (dir, what) in differ {
        let (mailbox, folder) = maildir::mailbox_of(&show(&dir));
        let checks = out.entry(mailbox).or_default();
        match checks.iter_mut().find(|c| c.folder == folder) {
            Some(c) => c.differ.push(what),
            None => checks.push(FolderCheck {
                folder,
                differ: vec![what],
                ..Default::default()
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size: 1,
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

    #[test]
    fn courier_files_and_the_dovecot_files_they_become_are_left_to_the_conversion() {
        let listing = ScanSummary {
            exists: true,
            entries: vec![
                entry("u/Maildir", EntryKind::Dir),
                entry("u/Maildir/courierimapuiddb", EntryKind::File),
                entry("u/Maildir/courierimapsubscribed", EntryKind::File),
                entry("u/Maildir/subscriptions", EntryKind::File),
                entry("u/Maildir/dovecot-uidlist", EntryKind::File),
                entry("u/Maildir/courierimapkeywords", EntryKind::Dir),
                entry("u/Maildir/courierimapkeywords/:list", EntryKind::File),
                entry("u/Maildir/cur/1.M1.h:2,S", EntryKind::File),
                entry("u/Maildir/courierpop3dsizelist", EntryKind::File),
                entry("u/Maildir/.Sent/dovecot-uidlist", EntryKind::File),
                entry("u/Maildir/.Sent/dovecot-keywords", EntryKind::File),
                entry("u/Maildir/.Sent/cur/2.M2.h:2,S", EntryKind::File),
            ],
            ..Default::default()
        };
        let dirs = CourierDirs::of(&listing);
        assert_eq!(dirs.uiddb, [b"u/Maildir".to_vec()].into());
        assert_eq!(dirs.keywords, [b"u/Maildir".to_vec()].into());
        assert_eq!(dirs.subscribed, [b"u/Maildir".to_vec()].into());
        let kept: Vec<String> = dirs
            .strip(&listing)
            .entries
            .iter()
            .map(|e| show(&e.path))
            .collect();
        assert_eq!(
            kept,
            vec![
                "u/Maildir",
                "u/Maildir/cur/1.M1.h:2,S",
                "u/Maildir/courierpop3dsizelist",
                // `.Sent` has no Courier file: a Dovecot folder, copied as it is.
                "u/Maildir/.Sent/dovecot-uidlist",
                "u/Maildir/.Sent/dovecot-keywords",
                "u/Maildir/.Sent/cur/2.M2.h:2,S",
            ]
        );
    }

    #[test]
    fn the_engine_sees_renamed_messages_under_their_source_names() {
        let conv = Conversion {
            names: [(
                b"u/Maildir/cur/1.M1.h:2,S".to_vec(),
                b"u/Maildir/cur/1.M1.h:2,Sa".to_vec(),
            )]
            .into(),
            ..Default::default()
        };
        let source = ScanSummary {
            exists: true,
            entries: vec![entry("u/Maildir/cur/1.M1.h:2,S", EntryKind::File)],
            ..Default::default()
        };
        assert_eq!(
            conv.wanted(&source).entries[0].path,
            b"u/Maildir/cur/1.M1.h:2,Sa"
        );
        let target = ScanSummary {
            exists: true,
            entries: vec![entry("u/Maildir/cur/1.M1.h:2,Sa", EntryKind::File)],
            ..Default::default()
        };
        assert_eq!(
            conv.engine_view(&target).entries[0].path,
            b"u/Maildir/cur/1.M1.h:2,S"
        );
    }
}
