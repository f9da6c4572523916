//! Compares two listings path by path: what to write, link, copy or leave at the target
//! (`plan::decide` adds deletions and the safety refusal on top).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::plan::{FileJob, Special, SyncPlan};
use crate::transport::protocol::Basis;
use crate::tree::root::{Meta, key_of_temp, temp_key};
use crate::tree::scan::walk_order;
use crate::tree::xattr::{self, Keep, Wanted, Xattr};
use crate::tree::{Entry, EntryKind};

/// Files this large or larger, already at the target, move as a delta (rsync deltas every
/// file; below a few blocks the signature costs more than it saves).
pub const DELTA_MIN: u64 = 4 * 1024;

/// Our own temp directory at the top of a root (with the partial files in it): never user
/// data, never compared, never copied. Any other name is user data, whatever it looks like.
pub fn is_internal(path: &[u8]) -> bool {
    crate::tree::root::is_temp(path)
}

fn same_basic_meta(a: &Entry, b: &Entry, owners: bool) -> bool {
    a.mode & 0o7777 == b.mode & 0o7777
        && a.mtime_ns == b.mtime_ns
        && (!owners || (a.uid == b.uid && a.gid == b.gid))
}

static NO_XATTRS: BTreeMap<Vec<u8>, Vec<Xattr>> = BTreeMap::new();

/// The extended attributes and ACLs both listings carry, and what of them a sync keeps.
#[derive(Clone, Copy)]
pub struct AttrLists<'a> {
    pub keep: Keep,
    /// Whether the target's writer is root (it then sets `security.*` and `trusted.*`).
    pub root: bool,
    pub source: &'a BTreeMap<Vec<u8>, Vec<Xattr>>,
    pub target: &'a BTreeMap<Vec<u8>, Vec<Xattr>>,
}

impl AttrLists<'_> {
    /// Attributes left out of the comparison and the copy.
    pub fn none() -> AttrLists<'static> {
        AttrLists {
            keep: Keep::NONE,
            root: false,
            source: &NO_XATTRS,
            target: &NO_XATTRS,
        }
    }

    /// Whether `path` has the same kept attributes on both sides.
    pub fn same(&self, path: &[u8]) -> bool {
        fn of<'m>(m: &'m BTreeMap<Vec<u8>, Vec<Xattr>>, path: &[u8]) -> &'m [Xattr] {
            m.get(path).map_or(&[], Vec::as_slice)
        }
        !self.keep.any()
            || xattr::same(
                of(self.source, path),
                of(self.target, path),
                self.keep,
                self.root,
            )
    }

    /// What the target's copy of `path` must have (`None` when attributes are not kept).
    pub fn wanted(&self, path: &[u8]) -> Option<Wanted> {
        Wanted::of(self.keep, self.source, path)
    }
}

/// Answers whether a path's content differs between the sides (both hashed).
pub type ContentDiffers<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Plans the sync of `source` onto `target`. With `checksum`, it answers whether same-size
/// files differ in content (the caller hashed both sides); otherwise size and mtime decide.
/// A file or directory whose kept attributes (`attrs`) differ gets its metadata again.
/// The listings are paired as the merge-join `Pairing` does (a listing not in `walk_order`,
/// as tests write them, is put in it first). Also returns the size of each `extra` entry
/// that is not a directory, in `extra`'s order.
pub fn plan(
    source_root: Option<Meta>,
    source: &[Entry],
    target: &[Entry],
    owners: bool,
    special: &dyn Fn(&Entry) -> Special,
    checksum: Option<ContentDiffers>,
    attrs: AttrLists,
) -> (SyncPlan, Vec<Option<u64>>) {
    fn in_walk_order(list: &[Entry]) -> Vec<&Entry> {
        let mut refs: Vec<&Entry> = list.iter().collect();
        if !refs.is_sorted_by(|a, b| walk_order(&a.path, &b.path) != Ordering::Greater) {
            refs.sort_by(|a, b| walk_order(&a.path, &b.path));
        }
        refs
    }
    let (source, target) = (in_walk_order(source), in_walk_order(target));
    let mut pairing = Pairing::new(owners, special, checksum, attrs.keep);
    pairing.target_as_root(attrs.root);
    pairing.attributes(Side::Source, attrs.source.clone());
    pairing.attributes(Side::Target, attrs.target.clone());
    let (mut i, mut j) = (0, 0);
    while i < source.len() || j < target.len() {
        let order = match (source.get(i), target.get(j)) {
            (Some(s), Some(t)) => walk_order(&s.path, &t.path),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                pairing.pair(Some(source[i]), None);
                i += 1;
            }
            Ordering::Greater => {
                pairing.pair(None, Some(target[j]));
                j += 1;
            }
            Ordering::Equal => {
                pairing.pair(Some(source[i]), Some(target[j]));
                i += 1;
                j += 1;
            }
        }
    }
    pairing.finish(source_root)
}

/// A listing's part that breaks `walk_order` (or repeats a path): the pairing refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfOrder {
    pub side: Side,
    pub path: Vec<u8>,
    pub after: Vec<u8>,
}

/// Which listing an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} listing out of order: `{}` after `{}`",
            match self.side {
                Side::Source => "source",
                Side::Target => "target",
            },
            String::from_utf8_lossy(&self.path),
            String::from_utf8_lossy(&self.after)
        )
    }
}

/// A file's identity: (device, inode).
type Inode = (u64, u64);

/// One side's entries received but not yet paired, and where its stream stands.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Entry>,
    last: Option<Vec<u8>>,
    ended: bool,
}

/// The kept attributes of both listings as far as they have come (each part brings those of
/// its entries), each dropped once its path is paired.
struct Attributes {
    keep: Keep,
    /// Whether the target's writer is root: known from the target's first part (or its end),
    /// and needed before anything is paired when attributes are kept.
    root: Option<bool>,
    source: BTreeMap<Vec<u8>, Vec<Xattr>>,
    target: BTreeMap<Vec<u8>, Vec<Xattr>>,
}

impl Attributes {
    fn lists(&self) -> AttrLists<'_> {
        AttrLists {
            keep: self.keep,
            root: self.root.unwrap_or(false),
            source: &self.source,
            target: &self.target,
        }
    }
}

/// The comparison as a merge-join of the two walk-ordered listings: each path is decided as
/// soon as both sides have passed it, so it can run while the listings arrive (`push`), and
/// what it holds is the entries one side is ahead by, plus small side indexes (directories'
/// metadata, hard-link leaders, rename candidates, partial files) for what only the end of
/// the listings can settle (a rename's source or a partial file may come later in the walk).
pub struct Pairing<'a> {
    owners: bool,
    special: &'a dyn Fn(&Entry) -> Special,
    checksum: Option<ContentDiffers<'a>>,
    attrs: Attributes,
    p: SyncPlan,
    extra_sizes: Vec<Option<u64>>,
    /// Rename candidates: the first target file the source lacks, by size and mtime.
    first_extra_by_key: HashMap<(u64, i128), Vec<u8>>,
    /// Partial files left by interrupted runs, by the key of the path they were written for.
    partials: HashSet<Vec<u8>>,
    /// Hard-link groups: the first path of an inode is sent, the others link to it. With the
    /// identity of the target's entry at the leader's path.
    leaders: HashMap<Inode, (Vec<u8>, Option<Inode>)>,
    rewritten: HashSet<Inode>,
    dir_meta: HashMap<Vec<u8>, Meta>,
    source: Queue,
    target: Queue,
}

impl<'a> Pairing<'a> {
    /// A pairing keeping the attributes `keep` covers, which come with the parts
    /// (`attributes`); with any kept, it waits for `target_as_root` before pairing.
    pub fn new(
        owners: bool,
        special: &'a dyn Fn(&Entry) -> Special,
        checksum: Option<ContentDiffers<'a>>,
        keep: Keep,
    ) -> Pairing<'a> {
        Pairing {
            owners,
            special,
            checksum,
            attrs: Attributes {
                keep,
                root: None,
                source: BTreeMap::new(),
                target: BTreeMap::new(),
            },
            p: SyncPlan::default(),
            extra_sizes: Vec::new(),
            first_extra_by_key: HashMap::new(),
            partials: HashSet::new(),
            leaders: HashMap::new(),
            rewritten: HashSet::new(),
            dir_meta: HashMap::new(),
            source: Queue::default(),
            target: Queue::default(),
        }
    }

    /// Takes the kept attributes of one side's next part: given before its entries (`push`).
    pub fn attributes(&mut self, side: Side, listed: BTreeMap<Vec<u8>, Vec<Xattr>>) {
        if !self.attrs.keep.any() {
            return;
        }
        match side {
            Side::Source => self.attrs.source.extend(listed),
            Side::Target => self.attrs.target.extend(listed),
        }
    }

    /// Says whether the target's writer is root (which attributes it may set), as its
    /// listing does; the pairing decides nothing with attributes before it knows.
    pub fn target_as_root(&mut self, root: bool) {
        self.attrs.root = Some(root);
        self.drain();
    }

    /// Takes the next part of one side's listing (`last`: no more after it) and decides
    /// every path both sides have now passed.
    ///
    /// # Errors
    /// The part breaks `walk_order`, or comes after the side's last.
    pub fn push(&mut self, side: Side, part: Vec<Entry>, last: bool) -> Result<(), OutOfOrder> {
        let queue = match side {
            Side::Source => &mut self.source,
            Side::Target => &mut self.target,
        };
        for e in part {
            let after = match (&queue.last, queue.ended) {
                (_, true) => Some(b"(the end)".to_vec()),
                (Some(l), _) if walk_order(l, &e.path) != Ordering::Less => Some(l.clone()),
                _ => None,
            };
            if let Some(after) = after {
                return Err(OutOfOrder {
                    side,
                    path: e.path,
                    after,
                });
            }
            queue.last = Some(e.path.clone());
            queue.waiting.push_back(e);
        }
        queue.ended |= last;
        self.drain();
        Ok(())
    }

    /// Entries received and not yet paired (the pairing's bound).
    pub fn waiting(&self) -> usize {
        self.source.waiting.len() + self.target.waiting.len()
    }

    fn drain(&mut self) {
        if self.attrs.keep.any() && self.attrs.root.is_none() {
            return;
        }
        loop {
            let order = match (self.source.waiting.front(), self.target.waiting.front()) {
                (Some(s), Some(t)) => walk_order(&s.path, &t.path),
                (Some(_), None) if self.target.ended => Ordering::Less,
                (None, Some(_)) if self.source.ended => Ordering::Greater,
                _ => return,
            };
            let s = (order != Ordering::Greater)
                .then(|| self.source.waiting.pop_front())
                .flatten();
            let t = (order != Ordering::Less)
                .then(|| self.target.waiting.pop_front())
                .flatten();
            self.pair(s.as_ref(), t.as_ref());
            if self.attrs.keep.any() {
                for (e, listed) in [(&s, &mut self.attrs.source), (&t, &mut self.attrs.target)] {
                    if let Some(e) = e {
                        listed.remove(&e.path);
                    }
                }
            }
        }
    }

    /// Decides one path: its source entry, its target entry, or both.
    fn pair(&mut self, s: Option<&Entry>, t: Option<&Entry>) {
        if let Some(t) = t
            && t.kind == EntryKind::File
            && let Some(key) = key_of_temp(&t.path)
        {
            self.partials.insert(key.to_vec());
        }
        if let Some(s) = s
            && s.kind == EntryKind::Dir
        {
            self.dir_meta.insert(s.path.clone(), s.meta());
        }
        let Some(path) = s.or(t).map(|e| e.path.as_slice()) else {
            return;
        };
        if is_internal(path) {
            return;
        }
        if let Some(t) = t
            && t.kind != EntryKind::Dir
        {
            self.p.target_files += 1;
        }
        if let Some(s) = s {
            self.source_entry(s, t);
        }
        let Some(t) = t else { return };
        // A refused path holds nothing of the source at the target: whatever is there (a
        // device an earlier run made) is extra.
        let refused = s.is_some_and(|s| self.p.refused.last().is_some_and(|r| r.0 == s.path));
        if s.is_none() || refused {
            self.p.extra.push(t.path.clone());
            self.extra_sizes
                .push((t.kind != EntryKind::Dir).then_some(t.size));
        }
        if s.is_none() && t.kind == EntryKind::File {
            self.first_extra_by_key
                .entry((t.size, t.mtime_ns))
                .or_insert_with(|| t.path.clone());
        }
    }

    fn source_entry(&mut self, s: &Entry, t: Option<&Entry>) {
        let owners = self.owners;
        let attrs = self.attrs.lists();
        // Files and directories: their attributes count (symlinks and nodes keep their own).
        let same_meta = |a: &Entry, b: &Entry| {
            same_basic_meta(a, b, owners) && (a.kind == EntryKind::Symlink || attrs.same(&a.path))
        };
        let job = |s: &Entry, basis: Basis, replaces: bool| FileJob {
            xattrs: attrs.wanted(&s.path),
            ..job_without_xattrs(s, basis, replaces)
        };
        let p = &mut self.p;
        match s.kind {
            EntryKind::Dir => {
                if !matches!(t, Some(t) if t.kind == EntryKind::Dir) {
                    p.mkdirs.push((s.path.clone(), s.meta()));
                }
                if !matches!(t, Some(t) if t.kind == EntryKind::Dir && same_meta(s, t)) {
                    p.dir_metas.push((s.path.clone(), s.meta()));
                }
            }
            EntryKind::Symlink => {
                let same = matches!(t, Some(t) if t.kind == EntryKind::Symlink && t.link_target == s.link_target);
                if !same {
                    p.symlinks.push((
                        s.path.clone(),
                        s.link_target.clone().unwrap_or_default(),
                        s.meta(),
                    ));
                } else if !same_meta(s, t.expect("same")) {
                    p.metas.push((s.path.clone(), s.meta(), true));
                }
            }
            EntryKind::File => {
                p.source_files += 1;
                p.source_bytes += s.size;
                if s.nlink > 1 {
                    if let Some((leader, leader_at_target)) = self.leaders.get(&(s.dev, s.ino)) {
                        let linked = matches!((t, leader_at_target), (Some(t), Some(l)) if t.kind == EntryKind::File && t.ino == l.1 && t.dev == l.0);
                        // A leader written anew gets a new inode: its links must be made again.
                        let leader_rewritten = self.rewritten.contains(&(s.dev, s.ino));
                        if !linked || leader_rewritten {
                            p.hardlinks.push((leader.clone(), s.path.clone(), s.size));
                        } else {
                            p.unchanged_files += 1;
                        }
                        return;
                    }
                    self.leaders
                        .insert((s.dev, s.ino), (s.path.clone(), t.map(|t| (t.dev, t.ino))));
                }
                match t {
                    Some(t) if t.kind == EntryKind::File && t.size == s.size => {
                        // Quick check by default; content hashes of both sides with `--checksum`.
                        let content_differs = match self.checksum {
                            Some(differs) => differs(&s.path),
                            None => t.mtime_ns != s.mtime_ns,
                        };
                        if content_differs {
                            p.files.push(job(
                                s,
                                if s.size >= DELTA_MIN {
                                    Basis::Final
                                } else {
                                    Basis::None
                                },
                                true,
                            ));
                        } else if !same_meta(s, t) {
                            p.metas.push((s.path.clone(), s.meta(), false));
                        } else {
                            p.unchanged_files += 1;
                        }
                    }
                    Some(t) if t.kind == EntryKind::File && t.size >= DELTA_MIN => {
                        p.files.push(job(s, Basis::Final, true))
                    }
                    // A new file: its partial basis and rename source are settled at the end
                    // (`finish`), when the whole target has been seen.
                    _ => p.files.push(job(s, Basis::None, t.is_some())),
                }
                if s.nlink > 1 && p.files.last().is_some_and(|f| f.path == s.path) {
                    self.rewritten.insert((s.dev, s.ino));
                }
            }
            // What becomes of it is `plan::special`'s decision, not this walk's.
            EntryKind::Other => match (self.special)(s) {
                Special::Skip(why) => p.skipped.push((s.path.clone(), why)),
                Special::Refuse(why) => p.refused.push((s.path.clone(), why)),
                Special::Create => {
                    let same = matches!(t, Some(t) if t.kind == EntryKind::Other && t.mode == s.mode && t.rdev == s.rdev);
                    if !same {
                        p.nodes.push((s.path.clone(), s.meta(), s.rdev));
                    }
                }
            },
        }
    }

    /// The plan, once both listings have been taken whole (what is still waiting is paired
    /// first), with the size of each non-directory `extra` entry in `extra`'s order.
    pub fn finish(mut self, source_root: Option<Meta>) -> (SyncPlan, Vec<Option<u64>>) {
        // A target that never said: as a listing without the field reads.
        self.attrs.root.get_or_insert(false);
        self.source.ended = true;
        self.target.ended = true;
        self.drain();
        let mut p = self.p;
        // New files (nothing at their path): a partial of theirs, and the same content
        // already at the target under a name the source lacks.
        for j in p.files.iter_mut().filter(|j| !j.replaces) {
            if self.partials.contains(temp_key(&j.path).as_bytes()) {
                j.basis = Basis::Partial;
            }
            if j.size > 0 {
                j.copy_from = self
                    .first_extra_by_key
                    .get(&(j.size, j.meta.mtime_ns))
                    .cloned();
            }
        }
        // Writing into a directory changes its mtime: every parent of something we write or
        // delete gets its metadata again, the root included (its mode and owner matter for a
        // docroot).
        let mut touched: HashSet<Vec<u8>> = p.dir_metas.iter().map(|(d, _)| d.clone()).collect();
        let written = p
            .files
            .iter()
            .map(|f| &f.path)
            .chain(p.symlinks.iter().map(|s| &s.0))
            .chain(p.nodes.iter().map(|n| &n.0))
            .chain(p.hardlinks.iter().map(|h| &h.1))
            .chain(p.extra.iter());
        let mut parents: Vec<Vec<u8>> = Vec::new();
        for path in written {
            let parent = path
                .iter()
                .rposition(|b| *b == b'/')
                .map_or(Vec::new(), |i| path[..i].to_vec());
            if touched.insert(parent.clone()) {
                parents.push(parent);
            }
        }
        for parent in parents {
            if let Some(m) = self.dir_meta.get(parent.as_slice()) {
                p.dir_metas.push((parent, *m));
            }
        }
        if let Some(root) = source_root {
            p.dir_metas.push((Vec::new(), root));
        }
        // Deepest first, so a directory is empty (or gone) before its parent is touched.
        p.dir_metas.sort_by(|a, b| b.0.cmp(&a.0));
        (p, self.extra_sizes)
    }
}

fn job_without_xattrs(s: &Entry, basis: Basis, replaces: bool) -> FileJob {
    FileJob {
        path: s.path.clone(),
        size: s.size,
        meta: s.meta(),
        basis,
        copy_from: None,
        replaces,
        xattrs: None,
    }
}

/// Paths to delete at the target: extra entries not inside an extra directory already listed,
/// deepest first.
pub fn deletions(extra: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut sorted: Vec<&Vec<u8>> = extra.iter().collect();
    sorted.sort();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for p in sorted {
        if let Some(last) = out.last()
            && p.len() > last.len()
            && p.starts_with(last)
            && p[last.len()] == b'/'
        {
            continue; // removed with its parent
        }
        out.push(p.clone());
    }
    out.reverse();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sync::plan::ActionKind;

    /// A listing's attributes by path.
    pub(crate) type Attrs = BTreeMap<Vec<u8>, Vec<Xattr>>;

    /// A small deterministic generator (splitmix64) for random listings.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// A number in `0..n`.
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        pub(crate) fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Two listings as a sync meets them, each in `walk_order` with its attributes: a source
    /// tree (directories, files, symlinks, FIFOs, hard links) and a target that is an older
    /// copy of it (changed, missing, extra and renamed entries, a kind changed, partial files
    /// of interrupted runs, links kept or broken), names chosen so that `walk_order` and
    /// byte order disagree (`a/b`, `a-`, `a.b`).
    pub(crate) fn random_sides(rng: &mut Rng) -> (Vec<Entry>, Attrs, Vec<Entry>, Attrs) {
        const NAMES: [&str; 6] = ["a", "a-", "a.b", "a0", "b", "index.html"];
        fn entry(path: Vec<u8>, kind: EntryKind, rng: &mut Rng, ino: u64) -> Entry {
            let mode = match kind {
                EntryKind::Dir => 0o040755,
                EntryKind::File => 0o100644,
                EntryKind::Symlink => 0o120777,
                EntryKind::Other => libc::S_IFIFO | 0o644,
            };
            Entry {
                path,
                kind,
                size: if kind == EntryKind::File {
                    rng.below(3) * 3000
                } else {
                    0
                },
                mtime_ns: i128::from(rng.below(3)),
                mode,
                uid: 0,
                gid: 0,
                nlink: 1,
                dev: 1,
                ino,
                rdev: 0,
                link_target: (kind == EntryKind::Symlink).then(|| b"../a".to_vec()),
            }
        }
        fn tree(rng: &mut Rng, prefix: &[u8], depth: u32, out: &mut Vec<Entry>) {
            for name in NAMES {
                if !rng.chance(55) {
                    continue;
                }
                let mut path = prefix.to_vec();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name.as_bytes());
                let kind = match rng.below(10) {
                    0..=2 if depth < 3 => EntryKind::Dir,
                    3 => EntryKind::Symlink,
                    4 if rng.chance(30) => EntryKind::Other,
                    _ => EntryKind::File,
                };
                let ino = out.len() as u64 + 1000;
                out.push(entry(path.clone(), kind, rng, ino));
                if kind == EntryKind::Dir {
                    tree(rng, &path, depth + 1, out);
                }
            }
        }
        let xattrs_of = |rng: &mut Rng, list: &[Entry]| {
            let mut m = BTreeMap::new();
            let name = [
                "user.mime",
                "security.capability",
                "system.posix_acl_access",
            ];
            for e in list {
                if matches!(e.kind, EntryKind::File | EntryKind::Dir) && rng.chance(25) {
                    let n = name[rng.below(3) as usize];
                    let v = format!("{}", rng.below(2));
                    m.insert(
                        e.path.clone(),
                        vec![Xattr {
                            name: n.into(),
                            value: v.into(),
                        }],
                    );
                }
            }
            if rng.chance(30) {
                m.insert(
                    Vec::new(),
                    vec![Xattr {
                        name: b"user.root".to_vec(),
                        value: b"1".to_vec(),
                    }],
                );
            }
            m
        };
        let mut src = Vec::new();
        tree(rng, b"", 0, &mut src);
        // Hard links: some files share the inode of an earlier one.
        let files: Vec<usize> = (0..src.len())
            .filter(|i| src[*i].kind == EntryKind::File)
            .collect();
        for pair in files.windows(2) {
            if rng.chance(25) {
                let (leader, (size, mtime, ino)) = (
                    pair[0],
                    (src[pair[0]].size, src[pair[0]].mtime_ns, src[pair[0]].ino),
                );
                for i in [leader, pair[1]] {
                    src[i].nlink = 2;
                    (src[i].size, src[i].mtime_ns, src[i].ino) = (size, mtime, ino);
                }
            }
        }
        let mut dst: Vec<Entry> = Vec::new();
        for e in &src {
            match rng.below(12) {
                // Missing at the target, or there under another name (a rename).
                0 => {}
                1 => {
                    let mut moved = e.clone();
                    moved.path.extend_from_slice(b".old");
                    dst.push(moved);
                }
                // Changed content, time or mode; a file where a directory is, or the reverse.
                2 => dst.push(Entry {
                    mtime_ns: e.mtime_ns + 7,
                    ..e.clone()
                }),
                3 => dst.push(Entry {
                    size: e.size + 1,
                    ..e.clone()
                }),
                4 => dst.push(Entry {
                    mode: e.mode ^ 0o022,
                    ..e.clone()
                }),
                5 => {
                    let kind = if e.kind == EntryKind::Dir {
                        EntryKind::File
                    } else {
                        EntryKind::Dir
                    };
                    dst.push(entry(e.path.clone(), kind, rng, e.ino + 500));
                }
                // A partial file left by an interrupted run, and nothing at the path.
                6 if e.kind == EntryKind::File => {
                    let key = crate::tree::root::temp_key(&e.path);
                    let name = format!("{}/{key}-7-0", crate::tree::root::TEMP_DIR);
                    dst.push(entry(name.into_bytes(), EntryKind::File, rng, e.ino + 900));
                }
                // The same; hard links at the target kept as one inode, or not.
                _ => dst.push(Entry {
                    ino: if e.nlink > 1 && rng.chance(30) {
                        e.ino + 10_000 + rng.below(1000)
                    } else {
                        e.ino
                    },
                    ..e.clone()
                }),
            }
        }
        // Extra entries only the target has.
        let mut extra = Vec::new();
        tree(rng, b"zz", 1, &mut extra);
        if !extra.is_empty() && rng.chance(50) {
            dst.push(entry(b"zz".to_vec(), EntryKind::Dir, rng, 1));
            dst.extend(extra);
        }
        let mut seen = HashSet::new();
        dst.retain(|e| seen.insert(e.path.clone()));
        for list in [&mut src, &mut dst] {
            list.sort_by(|a, b| walk_order(&a.path, &b.path));
        }
        let (sx, mut tx) = (xattrs_of(rng, &src), xattrs_of(rng, &dst));
        // Most attributes are the same at the target.
        for (p, l) in &sx {
            if rng.chance(60) && dst.iter().any(|e| &e.path == p) {
                tx.insert(p.clone(), l.clone());
            }
        }
        (src, sx, dst, tx)
    }

    /// `list` cut into parts of random sizes (some empty), each with its entries' attributes
    /// (the root's, `b""`, in the first part, as a walk lists them).
    pub(crate) fn random_parts(
        rng: &mut Rng,
        list: &[Entry],
        xattrs: &BTreeMap<Vec<u8>, Vec<Xattr>>,
    ) -> Vec<(Vec<Entry>, Attrs)> {
        let mut parts = Vec::new();
        let mut at = 0;
        loop {
            let end = (at + rng.below(6) as usize).min(list.len());
            let entries = list[at..end].to_vec();
            let mut attrs: Attrs = entries
                .iter()
                .filter_map(|e| xattrs.get(&e.path).map(|l| (e.path.clone(), l.clone())))
                .collect();
            if at == 0
                && let Some(root) = xattrs.get(&b""[..])
            {
                attrs.insert(Vec::new(), root.clone());
            }
            parts.push((entries, attrs));
            at = end;
            if at == list.len() && rng.chance(70) {
                return parts;
            }
        }
    }

    /// Issue 16: the pairing fed both listings in random parts, in random turns, decides as
    /// `plan` on the whole listings, attributes, hard links, renames and partials included.
    #[test]
    fn pairing_parts_as_they_come_decides_as_the_whole_listings() {
        let mut rng = Rng(16);
        let (mut covered, mut waited) = ([0u32; 7], 0);
        for round in 0..400 {
            let (src, sx, dst, tx) = random_sides(&mut rng);
            let keep = [Keep::NONE, Keep::ALL][rng.below(2) as usize];
            let root = rng.chance(50);
            let special = |e: &Entry| {
                if e.path.ends_with(b"b") {
                    Special::Skip("test".into())
                } else {
                    Special::Create
                }
            };
            let attrs = AttrLists {
                keep,
                root,
                source: &sx,
                target: &tx,
            };
            let whole = plan(None, &src, &dst, false, &special, None, attrs);
            let mut pairing = Pairing::new(false, &special, None, keep);
            let mut parts = [
                random_parts(&mut rng, &src, &sx).into_iter(),
                random_parts(&mut rng, &dst, &tx).into_iter(),
            ];
            let mut pending = [parts[0].len(), parts[1].len()];
            let mut most_waiting = 0;
            while pending.iter().any(|n| *n > 0) {
                let i = match (pending[0], pending[1]) {
                    (0, _) => 1,
                    (_, 0) => 0,
                    _ => rng.below(2) as usize,
                };
                let (entries, attrs) = parts[i].next().expect("pending");
                pending[i] -= 1;
                let side = [Side::Source, Side::Target][i];
                if side == Side::Target {
                    pairing.target_as_root(root);
                }
                pairing.attributes(side, attrs);
                pairing
                    .push(side, entries, pending[i] == 0)
                    .expect("in walk order");
                most_waiting = most_waiting.max(pairing.waiting());
            }
            let streamed = pairing.finish(None);
            assert_eq!(
                format!("{streamed:?}"),
                format!("{whole:?}"),
                "round {round}: {src:?}\n{dst:?}"
            );
            let p = &whole.0;
            for (seen, yes) in covered.iter_mut().zip([
                !p.hardlinks.is_empty(),
                p.files.iter().any(|j| j.copy_from.is_some()),
                p.files.iter().any(|j| j.basis == Basis::Partial),
                p.files.iter().any(|j| j.xattrs.is_some()),
                !p.metas.is_empty(),
                !p.extra.is_empty() && !p.skipped.is_empty(),
                p.unchanged_files > 0,
            ]) {
                *seen += u32::from(yes);
            }
            waited = waited.max(most_waiting);
        }
        // Every case the listings are made for did come up, often.
        assert!(covered.iter().all(|n| *n > 20), "{covered:?}");
        assert!(waited > 5, "{waited}");
    }

    /// These listings hold no special files.
    fn none(_: &Entry) -> Special {
        Special::Create
    }

    fn f(path: &str, size: u64, mtime: i128) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime_ns: mtime,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            nlink: 1,
            dev: 1,
            ino: mtime as u64,
            rdev: 0,
            link_target: None,
        }
    }

    #[test]
    fn quick_check_delta_and_renames() {
        let src = vec![
            f("same", 10, 1),
            f("changed", 100_000, 2),
            f("small", 10, 3),
            f("renamed", 50, 9),
        ];
        let dst = vec![
            f("changed", 100_000, 7),
            f("gone", 1, 1),
            f("old-name", 50, 9),
            f("same", 10, 1),
            f("small", 11, 3),
        ];
        let (p, _) = plan(None, &src, &dst, false, &none, None, AttrLists::none());
        let items: Vec<(ActionKind, String)> = p
            .actions()
            .into_iter()
            .map(|a| (a.action, a.path))
            .collect();
        assert_eq!(
            items,
            vec![
                (ActionKind::Delta, "changed".into()),
                (ActionKind::CopyLocal, "renamed".into()),
                (ActionKind::Send, "small".into())
            ]
        );
        assert_eq!(p.extra, vec![b"gone".to_vec(), b"old-name".to_vec()]);
    }

    #[test]
    fn a_leftover_partial_is_found_by_the_key_of_its_path() {
        let src = vec![f("other", 100_000, 1), f("video.mp4", 100_000, 1)];
        let key = crate::tree::root::temp_key(b"video.mp4");
        let dst = vec![f(&format!(".transhumance-tmp/{key}-7b-0"), 40_000, 1)];
        let (p, _) = plan(None, &src, &dst, false, &none, None, AttrLists::none());
        let bases: Vec<_> = p.files.iter().map(|j| (j.path.clone(), j.basis)).collect();
        assert_eq!(
            bases,
            vec![
                (b"other".to_vec(), Basis::None),
                (b"video.mp4".to_vec(), Basis::Partial)
            ]
        );
        assert!(
            p.extra.is_empty(),
            "our temp files are not extra: {:?}",
            p.extra
        );
        // A source that holds such a directory (a tree that was once a target) does not send it.
        let (p, _) = plan(None, &dst, &[], false, &none, None, AttrLists::none());
        assert!(p.files.is_empty());
    }

    #[test]
    fn checksum_mode_catches_same_size_and_time() {
        let src = vec![f("a", 10, 1)];
        let dst = vec![f("a", 10, 1)];
        assert!(
            plan(
                None,
                &src,
                &dst,
                false,
                &none,
                Some(&|_| false),
                AttrLists::none()
            )
            .0
            .files
            .is_empty()
        );
        assert_eq!(
            plan(
                None,
                &src,
                &dst,
                false,
                &none,
                Some(&|_| true),
                AttrLists::none()
            )
            .0
            .files
            .len(),
            1
        );
    }

    #[test]
    fn an_acl_or_xattr_change_alone_reapplies_metadata_and_sends_nothing() {
        let x = |name: &str, value: &str| Xattr {
            name: name.into(),
            value: value.into(),
        };
        let dir = |path: &str| Entry {
            kind: EntryKind::Dir,
            mode: 0o040755,
            ..f(path, 0, 1)
        };
        let src = vec![dir("d"), f("d/a", 10, 1), f("d/b", 10, 1), f("new", 5, 1)];
        let dst = vec![dir("d"), f("d/a", 10, 1), f("d/b", 10, 1)];
        let source: BTreeMap<Vec<u8>, Vec<Xattr>> = [
            (b"d".to_vec(), vec![x("system.posix_acl_default", "new")]),
            (b"d/a".to_vec(), vec![x("system.posix_acl_access", "new")]),
            (b"d/b".to_vec(), vec![x("security.capability", "cap")]),
            (b"new".to_vec(), vec![x("user.mime", "text/plain")]),
        ]
        .into();
        let target: BTreeMap<Vec<u8>, Vec<Xattr>> = [
            (b"d".to_vec(), vec![x("system.posix_acl_default", "old")]),
            (b"d/a".to_vec(), vec![x("system.posix_acl_access", "old")]),
        ]
        .into();
        let attrs = AttrLists {
            keep: Keep::ALL,
            root: false,
            source: &source,
            target: &target,
        };
        let (p, _) = plan(None, &src, &dst, false, &none, None, attrs);
        let metas: Vec<&[u8]> = p.metas.iter().map(|m| m.0.as_slice()).collect();
        assert_eq!(
            metas,
            [b"d/a"],
            "d/b's capability is not the target's to set"
        );
        assert!(p.dir_metas.iter().any(|d| d.0 == b"d"));
        let jobs: Vec<(&[u8], Option<Wanted>)> = p
            .files
            .iter()
            .map(|j| (j.path.as_slice(), j.xattrs.clone()))
            .collect();
        assert_eq!(
            jobs,
            [(
                &b"new"[..],
                Some(Wanted {
                    keep: Keep::ALL,
                    list: vec![x("user.mime", "text/plain")]
                })
            )],
            "only the new file is sent, with its attributes"
        );
        // As root, the capability counts; without keeping attributes, nothing does.
        let (p, _) = plan(
            None,
            &src,
            &dst,
            false,
            &none,
            None,
            AttrLists {
                root: true,
                ..attrs
            },
        );
        assert_eq!(p.metas.len(), 2);
        let (p, _) = plan(None, &src, &dst, false, &none, None, AttrLists::none());
        assert!(p.metas.is_empty() && p.files[0].xattrs.is_none());
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            mode: 0o040755,
            ..f(path, 0, 1)
        }
    }

    /// Both sides fed to a `Pairing` in parts of `sizes` (cycled), alternately.
    fn paired_in_parts(
        src: &[Entry],
        dst: &[Entry],
        sizes: &[usize],
    ) -> (SyncPlan, Vec<Option<u64>>, usize) {
        let mut pairing = Pairing::new(false, &none, None, Keep::NONE);
        let (mut i, mut j, mut k, mut most_waiting) = (0, 0, 0, 0);
        while i < src.len() || j < dst.len() {
            for (side, list, at) in [(Side::Source, src, &mut i), (Side::Target, dst, &mut j)] {
                let end = (*at + sizes[k % sizes.len()]).min(list.len());
                k += 1;
                pairing
                    .push(side, list[*at..end].to_vec(), end == list.len())
                    .expect("in order");
                *at = end;
                most_waiting = most_waiting.max(pairing.waiting());
            }
        }
        let (p, sizes) = pairing.finish(None);
        (p, sizes, most_waiting)
    }

    #[test]
    fn the_merge_join_pairs_by_walk_order_across_part_edges() {
        // Walk order: `a`, `a/b`, `a-`, `a.b`, `a0` (a directory before its `-`/`.` siblings).
        let src = vec![
            dir("a"),
            f("a/b", 10, 1),
            f("a/c", 10, 2),
            f("a-", 10, 3),
            f("a.b", 10, 4),
            f("d", 5, 5),
            dir("e"),
            f("e/y", 7, 6),
            f("only-src", 9, 7),
        ];
        let dst = vec![
            f("a", 3, 1),
            f("a.b", 10, 4),
            f("a0", 10, 2),
            dir("d"),
            f("d/x", 1, 1),
            f("e", 4, 1),
            f("only-dst", 2, 8),
        ];
        let (whole, whole_sizes) = plan(None, &src, &dst, false, &none, None, AttrLists::none());
        let show = |p: &[Vec<u8>]| {
            p.iter()
                .map(|x| String::from_utf8_lossy(x).into_owned())
                .collect::<Vec<_>>()
        };
        let files: Vec<(String, bool, Option<Vec<u8>>)> = whole
            .files
            .iter()
            .map(|j| {
                (
                    show(std::slice::from_ref(&j.path))[0].clone(),
                    j.replaces,
                    j.copy_from.clone(),
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                ("a/b".into(), false, None),
                // Same size and mtime as `a0`, which the source lacks: copied from it.
                ("a/c".into(), false, Some(b"a0".to_vec())),
                ("a-".into(), false, None),
                // A directory at the target where the source has a file, and the reverse.
                ("d".into(), true, None),
                ("e/y".into(), false, None),
                ("only-src".into(), false, None),
            ]
        );
        let mkdirs: Vec<Vec<u8>> = whole.mkdirs.iter().map(|m| m.0.clone()).collect();
        assert_eq!(show(&mkdirs), ["a", "e"]);
        assert_eq!(show(&whole.extra), ["a0", "d/x", "only-dst"]);
        assert_eq!(whole_sizes, [Some(10), Some(1), Some(2)]);
        assert_eq!((whole.unchanged_files, whole.target_files), (1, 6));
        // Any cut into parts, one side ahead of the other or not, decides the same.
        for sizes in [
            &[1][..],
            &[2],
            &[3, 1],
            &[1, 4],
            &[100],
            &[0, 2, 3],
            &[5, 0, 1],
        ] {
            let (p, s, most_waiting) = paired_in_parts(&src, &dst, sizes);
            assert_eq!(format!("{p:?}"), format!("{whole:?}"), "parts of {sizes:?}");
            assert_eq!(s, whole_sizes);
            // Parts of one size on both sides: what waits stays within about two parts.
            if let [size] = sizes {
                assert!(most_waiting <= 2 * size + 1, "{most_waiting} waiting");
            }
        }
    }

    #[test]
    fn a_side_alone_is_all_new_or_all_extra() {
        let list = vec![dir("a"), f("a/b", 1, 1), f("a.b", 2, 2)];
        let (p, _, _) = paired_in_parts(&list, &[], &[1]);
        assert_eq!(p.files.len(), 2);
        assert!(p.extra.is_empty());
        let (p, sizes, _) = paired_in_parts(&[], &list, &[2]);
        assert!(p.files.is_empty() && p.mkdirs.is_empty());
        assert_eq!(p.extra, [b"a".to_vec(), b"a/b".to_vec(), b"a.b".to_vec()]);
        assert_eq!(sizes, [None, Some(1), Some(2)]);
    }

    #[test]
    fn an_out_of_order_or_repeated_listing_is_refused() {
        let mut pairing = Pairing::new(false, &none, None, Keep::NONE);
        pairing
            .push(Side::Target, vec![f("a", 1, 1), f("a/b", 1, 1)], false)
            .expect("in order");
        // `a.b` sorts after `a/b`'s subtree: `a-` after it is out of order, across parts too.
        pairing
            .push(Side::Target, vec![f("a.b", 1, 1)], false)
            .expect("in order");
        let e = pairing
            .push(Side::Target, vec![f("a-", 1, 1)], false)
            .expect_err("out of order");
        assert_eq!((e.side, e.path.as_slice()), (Side::Target, &b"a-"[..]));
        assert!(e.to_string().contains("target listing out of order"));
        let mut pairing = Pairing::new(false, &none, None, Keep::NONE);
        let e = pairing
            .push(Side::Source, vec![f("x", 1, 1), f("x", 1, 1)], false)
            .expect_err("repeated");
        assert_eq!(e.after, b"x");
        let mut pairing = Pairing::new(false, &none, None, Keep::NONE);
        pairing
            .push(Side::Source, vec![f("x", 1, 1)], true)
            .expect("one");
        assert!(
            pairing
                .push(Side::Source, vec![f("y", 1, 1)], false)
                .is_err()
        );
    }

    #[test]
    fn deletions_skip_children_of_deleted_dirs() {
        let d = deletions(&[
            b"a".to_vec(),
            b"a/b".to_vec(),
            b"a/b/c".to_vec(),
            b"ab".to_vec(),
        ]);
        assert_eq!(d, vec![b"ab".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn only_our_root_level_temp_directory_is_internal() {
        assert!(
            is_internal(b".transhumance-tmp")
                && is_internal(b".transhumance-tmp/0123456789abcdef-1-0")
        );
        // Issue 12: user files named like temp files (ours, old or new) are user data.
        for user in [
            &b"dir/.x.th-partial"[..],
            b".x.th-partial",
            b".x.th-partial.basis",
            b".x.th-tmp-42",
            b"dir/.transhumance-tmp",
            b"dir/.transhumance-tmp/0123456789abcdef-1-0",
            b".transhumance-tmpx",
            b"0123456789abcdef-1-0",
        ] {
            assert!(!is_internal(user), "{}", String::from_utf8_lossy(user));
        }
    }
}
