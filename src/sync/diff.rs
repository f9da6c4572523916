//! Compares two listings path by path: what to write, link, copy or leave at the target
//! (`plan::decide` adds deletions and the safety refusal on top).

use std::collections::{BTreeMap, HashMap};

use super::plan::{FileJob, Special, SyncPlan};
use crate::transport::protocol::Basis;
use crate::tree::root::{Meta, key_of_temp, temp_key};
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
    fn same(&self, path: &[u8]) -> bool {
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
pub fn plan(
    source_root: Option<Meta>,
    source: &[Entry],
    target: &[Entry],
    owners: bool,
    special: &dyn Fn(&Entry) -> Special,
    checksum: Option<ContentDiffers>,
    attrs: AttrLists,
) -> SyncPlan {
    let mut p = SyncPlan::default();
    // Files and directories: their attributes count (symlinks and nodes keep their own).
    let same_meta = |a: &Entry, b: &Entry, owners: bool| {
        same_basic_meta(a, b, owners) && (a.kind == EntryKind::Symlink || attrs.same(&a.path))
    };
    let job = |s: &Entry, basis: Basis, replaces: bool| FileJob {
        xattrs: attrs.wanted(&s.path),
        ..job_without_xattrs(s, basis, replaces)
    };
    let target_by_path: HashMap<&[u8], &Entry> = target
        .iter()
        .filter(|e| !is_internal(&e.path))
        .map(|e| (e.path.as_slice(), e))
        .collect();
    // Partial files left by interrupted runs, by the key of the path they were written for.
    let partials: std::collections::HashSet<&[u8]> = target
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| key_of_temp(&e.path))
        .collect();
    p.target_files = target_by_path
        .values()
        .filter(|e| e.kind != EntryKind::Dir)
        .count() as u64;
    let source_paths: std::collections::HashSet<&[u8]> =
        source.iter().map(|e| e.path.as_slice()).collect();
    // Rename candidates: target files the source does not have, by size and mtime.
    let mut extra_by_key: HashMap<(u64, i128), Vec<&[u8]>> = HashMap::new();
    for e in target.iter().filter(|e| {
        e.kind == EntryKind::File
            && !is_internal(&e.path)
            && !source_paths.contains(e.path.as_slice())
    }) {
        extra_by_key
            .entry((e.size, e.mtime_ns))
            .or_default()
            .push(&e.path);
    }
    // Hard-link groups: the first path of an inode is sent, the others link to it.
    let mut leaders: HashMap<(u64, u64), &Entry> = HashMap::new();
    let mut rewritten: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    for s in source.iter().filter(|e| !is_internal(&e.path)) {
        let t = target_by_path.get(s.path.as_slice()).copied();
        match s.kind {
            EntryKind::Dir => {
                if !matches!(t, Some(t) if t.kind == EntryKind::Dir) {
                    p.mkdirs.push((s.path.clone(), s.meta()));
                }
                if !matches!(t, Some(t) if t.kind == EntryKind::Dir && same_meta(s, t, owners)) {
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
                } else if !same_meta(s, t.expect("same"), owners) {
                    p.metas.push((s.path.clone(), s.meta(), true));
                }
            }
            EntryKind::File => {
                p.source_files += 1;
                p.source_bytes += s.size;
                if s.nlink > 1 {
                    if let Some(leader) = leaders.get(&(s.dev, s.ino)) {
                        let linked = matches!((t, target_by_path.get(leader.path.as_slice())), (Some(t), Some(l)) if t.kind == EntryKind::File && t.ino == l.ino && t.dev == l.dev);
                        // A leader written anew gets a new inode: its links must be made again.
                        let leader_rewritten = rewritten.contains(&(s.dev, s.ino));
                        if !linked || leader_rewritten {
                            p.hardlinks
                                .push((leader.path.clone(), s.path.clone(), s.size));
                        } else {
                            p.unchanged_files += 1;
                        }
                        continue;
                    }
                    leaders.insert((s.dev, s.ino), s);
                }
                match t {
                    Some(t) if t.kind == EntryKind::File && t.size == s.size => {
                        // Quick check by default; content hashes of both sides with `--checksum`.
                        let content_differs = match checksum {
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
                        } else if !same_meta(s, t, owners) {
                            p.metas.push((s.path.clone(), s.meta(), false));
                        } else {
                            p.unchanged_files += 1;
                        }
                    }
                    Some(t) if t.kind == EntryKind::File && t.size >= DELTA_MIN => {
                        p.files.push(job(s, Basis::Final, true))
                    }
                    _ => {
                        let key = temp_key(&s.path);
                        let basis = if partials.contains(key.as_bytes()) && t.is_none() {
                            Basis::Partial
                        } else {
                            Basis::None
                        };
                        let mut j = job(s, basis, t.is_some());
                        if t.is_none()
                            && s.size > 0
                            && let Some(candidates) = extra_by_key.get(&(s.size, s.mtime_ns))
                        {
                            j.copy_from = candidates.first().map(|c| c.to_vec());
                        }
                        p.files.push(j);
                    }
                }
                if s.nlink > 1 && p.files.last().is_some_and(|f| f.path == s.path) {
                    rewritten.insert((s.dev, s.ino));
                }
            }
            // What becomes of it is `plan::special`'s decision, not this walk's.
            EntryKind::Other => match special(s) {
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
    // A refused path holds nothing of the source at the target: whatever is there (a device
    // an earlier run made) is extra.
    let refused: std::collections::HashSet<&[u8]> =
        p.refused.iter().map(|(r, _)| r.as_slice()).collect();
    for t in target.iter().filter(|e| !is_internal(&e.path)) {
        let path = t.path.as_slice();
        if !source_paths.contains(path) || refused.contains(path) {
            p.extra.push(t.path.clone());
        }
    }
    // Writing into a directory changes its mtime: every parent of something we write or delete
    // gets its metadata again, the root included (its mode and owner matter for a docroot).
    let dir_meta: HashMap<&[u8], Meta> = source
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| (e.path.as_slice(), e.meta()))
        .collect();
    let mut touched: std::collections::HashSet<Vec<u8>> =
        p.dir_metas.iter().map(|(d, _)| d.clone()).collect();
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
        if let Some(m) = dir_meta.get(parent.as_slice()) {
            p.dir_metas.push((parent, *m));
        }
    }
    if let Some(root) = source_root {
        p.dir_metas.push((Vec::new(), root));
    }
    // Deepest first, so a directory is empty (or gone) before its parent is touched.
    p.dir_metas.sort_by(|a, b| b.0.cmp(&a.0));
    p
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
mod tests {
    use super::*;
    use crate::sync::plan::ActionKind;

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
            f("same", 10, 1),
            f("changed", 100_000, 7),
            f("small", 11, 3),
            f("old-name", 50, 9),
            f("gone", 1, 1),
        ];
        let p = plan(None, &src, &dst, false, &none, None, AttrLists::none());
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
        assert_eq!(p.extra, vec![b"old-name".to_vec(), b"gone".to_vec()]);
    }

    #[test]
    fn a_leftover_partial_is_found_by_the_key_of_its_path() {
        let src = vec![f("video.mp4", 100_000, 1), f("other", 100_000, 1)];
        let key = crate::tree::root::temp_key(b"video.mp4");
        let dst = vec![f(&format!(".transhumance-tmp/{key}-7b-0"), 40_000, 1)];
        let p = plan(None, &src, &dst, false, &none, None, AttrLists::none());
        let bases: Vec<_> = p.files.iter().map(|j| (j.path.clone(), j.basis)).collect();
        assert_eq!(
            bases,
            vec![
                (b"video.mp4".to_vec(), Basis::Partial),
                (b"other".to_vec(), Basis::None)
            ]
        );
        assert!(
            p.extra.is_empty(),
            "our temp files are not extra: {:?}",
            p.extra
        );
        // A source that holds such a directory (a tree that was once a target) does not send it.
        let p = plan(None, &dst, &[], false, &none, None, AttrLists::none());
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
        let p = plan(None, &src, &dst, false, &none, None, attrs);
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
        let p = plan(
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
        let p = plan(None, &src, &dst, false, &none, None, AttrLists::none());
        assert!(p.metas.is_empty() && p.files[0].xattrs.is_none());
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
