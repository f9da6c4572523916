//! rsync's `--itemize-changes`: per entry a sync changes, the 11-character code that says what
//! happens to it and why (`>f+++++++++` a new file, `>f.st......` size and time differ,
//! `.d..t......` a directory's time, `cL+++++++++` a new symlink, `*deleting`), read from the
//! two listings and the plan the sync carries out, so it never disagrees with what is done.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::diff::is_internal;
use super::plan::SyncPlan;
use crate::tree::root::Meta;
use crate::tree::{Entry, EntryKind, ScanSummary};

/// One itemized line: rsync's `%i` and the path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `YXcstpoguax` (update type, file type, then one letter per attribute: checksum, size,
    /// time, permissions, owner, group, then access time, ACL and xattrs which we never
    /// change), `+` for each attribute of a new entry, spaces for an entry left as it is; or
    /// `*deleting`.
    pub code: String,
    /// The path; directories end with `/`, the root is `./`.
    pub path: String,
    /// `-> TARGET` for a symlink, `=> LEADER` for a hard link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Change {
    /// rsync's line: the code, a space, the path and its detail.
    pub fn line(&self) -> String {
        let mut s = format!("{:<11} {}", self.code, self.path);
        if let Some(d) = &self.detail {
            s.push(' ');
            s.push_str(d);
        }
        s
    }
}

/// What rsync would compare of one entry against the target's.
#[derive(Clone, Copy)]
struct Compared {
    checksum: bool,
    perms: bool,
    owners: bool,
}

/// The nine attribute letters of an entry the target already has.
fn attributes(s: &Meta, t: &Entry, size_differs: bool, content: bool, how: &Compared) -> String {
    let flag = |on: bool, c: char| if on { c } else { '.' };
    [
        flag(content && how.checksum, 'c'),
        flag(size_differs, 's'),
        flag(s.mtime_ns != t.mtime_ns, 't'),
        flag(how.perms && s.mode & 0o7777 != t.mode & 0o7777, 'p'),
        flag(how.owners && s.uid != t.uid, 'o'),
        flag(how.owners && s.gid != t.gid, 'g'),
        '.',
        '.',
        '.',
    ]
    .iter()
    .collect()
}

const NEW: &str = "+++++++++";
const SAME: &str = "         ";

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn file_type(e: &Entry) -> char {
    match e.kind {
        EntryKind::File => 'f',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'L',
        EntryKind::Other => match e.mode & libc::S_IFMT {
            libc::S_IFCHR | libc::S_IFBLK => 'D',
            _ => 'S',
        },
    }
}

/// Every change of `plan` (made from `source` and `target`) as rsync itemizes it: deletions
/// first (deepest first), then the root and every source entry in listing order. `owners`: the
/// sync keeps owners (it runs as root); `checksum`: files were compared by content. With
/// `unchanged` (rsync's `-ii`), entries left as they are get a line too.
pub fn changes(
    plan: &SyncPlan,
    source: &ScanSummary,
    target: &ScanSummary,
    owners: bool,
    checksum: bool,
    unchanged: bool,
) -> Vec<Change> {
    let at_target: HashMap<&[u8], &Entry> = target
        .entries
        .iter()
        .filter(|e| !is_internal(&e.path))
        .map(|e| (e.path.as_slice(), e))
        .collect();
    let jobs: HashMap<&[u8], bool> = plan
        .files
        .iter()
        .map(|f| (f.path.as_slice(), f.copy_from.is_some()))
        .collect();
    let links: HashMap<&[u8], &[u8]> = plan
        .hardlinks
        .iter()
        .map(|(leader, p, _)| (p.as_slice(), leader.as_slice()))
        .collect();
    let symlinks: HashSet<&[u8]> = plan.symlinks.iter().map(|s| s.0.as_slice()).collect();
    let nodes: HashSet<&[u8]> = plan.nodes.iter().map(|n| n.0.as_slice()).collect();
    let metas: HashSet<&[u8]> = plan.metas.iter().map(|m| m.0.as_slice()).collect();
    let left_out: HashSet<&[u8]> = plan
        .refused
        .iter()
        .chain(&plan.skipped)
        .map(|(p, _)| p.as_slice())
        .collect();
    let how = Compared {
        checksum,
        perms: true,
        owners,
    };
    let mut out = Vec::new();

    if !plan.deletes.is_empty() {
        // Every entry the deletes take, as rsync names each one it removes.
        let roots: HashSet<&[u8]> = plan.deletes.iter().map(|d| d.path.as_slice()).collect();
        let under_a_root = |p: &[u8]| {
            let mut cut = p;
            loop {
                if roots.contains(cut) {
                    return true;
                }
                match cut.iter().rposition(|b| *b == b'/') {
                    Some(i) => cut = &cut[..i],
                    None => return false,
                }
            }
        };
        let mut doomed: Vec<&Vec<u8>> = plan.extra.iter().filter(|p| under_a_root(p)).collect();
        doomed.sort_by(|a, b| b.cmp(a));
        for p in doomed {
            let dir = at_target
                .get(p.as_slice())
                .is_some_and(|e| e.kind == EntryKind::Dir);
            out.push(Change {
                code: "*deleting".into(),
                path: format!("{}{}", show(p), if dir { "/" } else { "" }),
                detail: None,
            });
        }
    }

    if let Some(root) = source.root_meta {
        let code = match (target.exists, target.root_meta) {
            (true, Some(t)) => {
                let t = Entry {
                    path: Vec::new(),
                    kind: EntryKind::Dir,
                    size: 0,
                    mtime_ns: t.mtime_ns,
                    mode: t.mode,
                    uid: t.uid,
                    gid: t.gid,
                    nlink: 1,
                    dev: 0,
                    ino: 0,
                    rdev: 0,
                    link_target: None,
                };
                let attrs = attributes(&root, &t, false, false, &how);
                (attrs != ".........").then(|| format!(".d{attrs}"))
            }
            _ => Some(format!("cd{NEW}")),
        };
        if let Some(code) = code.or_else(|| unchanged.then(|| format!(".d{SAME}"))) {
            out.push(Change {
                code,
                path: "./".into(),
                detail: None,
            });
        }
    }

    for s in source.entries.iter().filter(|e| !is_internal(&e.path)) {
        let path = s.path.as_slice();
        if left_out.contains(path) {
            continue;
        }
        let t = at_target.get(path).copied();
        let x = file_type(s);
        let same_kind = t.filter(|t| t.kind == s.kind);
        let meta = s.meta();
        let mut detail = None;
        let code = match s.kind {
            EntryKind::Dir => match same_kind {
                None => Some(format!("cd{NEW}")),
                Some(t) => {
                    let attrs = attributes(&meta, t, false, false, &how);
                    (attrs != ".........").then(|| format!(".d{attrs}"))
                }
            },
            EntryKind::Symlink => {
                detail = Some(format!(
                    "-> {}",
                    show(s.link_target.as_deref().unwrap_or_default())
                ));
                let symlink_attrs = |t: &Entry, changed: bool| {
                    let no_perms = Compared {
                        perms: false,
                        ..how
                    };
                    let mut a = attributes(&meta, t, false, false, &no_perms);
                    if changed {
                        a.replace_range(0..1, "c");
                    }
                    a
                };
                match (symlinks.contains(path), same_kind) {
                    (true, Some(t)) => Some(format!("cL{}", symlink_attrs(t, true))),
                    (true, None) => Some(format!("cL{NEW}")),
                    (false, Some(t)) if metas.contains(path) => {
                        Some(format!(".L{}", symlink_attrs(t, false)))
                    }
                    _ => None,
                }
            }
            EntryKind::File => {
                if let Some(leader) = links.get(path) {
                    detail = Some(format!("=> {}", show(leader)));
                    Some(match same_kind {
                        None => format!("hf{NEW}"),
                        Some(t) => {
                            format!("hf{}", attributes(&meta, t, t.size != s.size, false, &how))
                        }
                    })
                } else if let Some(local) = jobs.get(path) {
                    let y = if *local { 'c' } else { '>' };
                    Some(match same_kind {
                        None => format!("{y}f{NEW}"),
                        Some(t) => {
                            let same_size = t.size == s.size;
                            format!("{y}f{}", attributes(&meta, t, !same_size, same_size, &how))
                        }
                    })
                } else if let (true, Some(t)) = (metas.contains(path), same_kind) {
                    Some(format!(".f{}", attributes(&meta, t, false, false, &how)))
                } else {
                    None
                }
            }
            EntryKind::Other => nodes.contains(path).then(|| format!("c{x}{NEW}")),
        };
        let code = match code {
            Some(c) => c,
            None if unchanged => format!(".{x}{SAME}"),
            None => continue,
        };
        let slash = if s.kind == EntryKind::Dir { "/" } else { "" };
        out.push(Change {
            code,
            path: format!("{}{slash}", show(path)),
            detail,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::SyncOptions;
    use crate::sync::plan::decide;

    fn entry(path: &str, kind: EntryKind, size: u64, mtime: i128, mode: u32) -> Entry {
        let type_bits = match kind {
            EntryKind::File => libc::S_IFREG,
            EntryKind::Dir => libc::S_IFDIR,
            EntryKind::Symlink => libc::S_IFLNK,
            EntryKind::Other => libc::S_IFIFO,
        };
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mtime_ns: mtime,
            mode: type_bits | mode,
            uid: 1000,
            gid: 1000,
            nlink: 1,
            dev: 1,
            ino: path.len() as u64 + size,
            rdev: 0,
            link_target: (kind == EntryKind::Symlink).then(|| b"index.html".to_vec()),
        }
    }

    fn listing(entries: Vec<Entry>) -> ScanSummary {
        ScanSummary {
            exists: true,
            entries,
            errors: Vec::new(),
            root_meta: Some(Meta {
                mode: 0o755,
                uid: 1000,
                gid: 1000,
                mtime_ns: 5,
            }),
            ..ScanSummary::default()
        }
    }

    fn codes(source: &ScanSummary, target: &ScanSummary, unchanged: bool) -> Vec<String> {
        let opts = SyncOptions {
            delete: true,
            force: true,
            ..SyncOptions::default()
        };
        let plan = decide(source, target, &opts, None);
        changes(&plan, source, target, false, false, unchanged)
            .iter()
            .map(Change::line)
            .collect()
    }

    #[test]
    fn each_change_says_why_as_rsync() {
        use EntryKind::*;
        let source = listing(vec![
            entry("blog", Dir, 0, 20, 0o755),
            entry("blog/new.html", File, 10, 7, 0o644),
            entry("grown.txt", File, 200, 9, 0o644),
            entry("index.html", File, 5, 7, 0o644),
            entry("link", Symlink, 0, 7, 0o777),
            entry("mode.txt", File, 3, 7, 0o600),
            entry("same.txt", File, 3, 7, 0o644),
            entry("touched.txt", File, 3, 8, 0o644),
        ]);
        let target = listing(vec![
            entry("blog", Dir, 0, 10, 0o755),
            entry("gone", Dir, 0, 7, 0o755),
            entry("gone/old.txt", File, 1, 7, 0o644),
            entry("grown.txt", File, 100, 7, 0o644),
            entry("mode.txt", File, 3, 7, 0o644),
            entry("same.txt", File, 3, 7, 0o644),
            entry("touched.txt", File, 3, 7, 0o644),
        ]);
        assert_eq!(
            codes(&source, &target, false),
            vec![
                "*deleting   gone/old.txt",
                "*deleting   gone/",
                ".d..t...... blog/",
                ">f+++++++++ blog/new.html",
                ">f.st...... grown.txt",
                ">f+++++++++ index.html",
                "cL+++++++++ link -> index.html",
                ".f...p..... mode.txt",
                ">f..t...... touched.txt",
            ]
        );
        // `-ii`: what is left as it is gets a line too.
        let all = codes(&source, &target, true);
        assert!(all.contains(&".f          same.txt".to_string()), "{all:?}");
        assert!(all.contains(&".d          ./".to_string()), "{all:?}");
    }

    #[test]
    fn a_new_target_is_created_whole() {
        use EntryKind::*;
        let source = listing(vec![
            entry("d", Dir, 0, 1, 0o755),
            entry("d/f", File, 1, 1, 0o644),
            entry("fifo", Other, 0, 1, 0o644),
        ]);
        let target = ScanSummary::default();
        assert_eq!(
            codes(&source, &target, false),
            vec![
                "cd+++++++++ ./",
                "cd+++++++++ d/",
                ">f+++++++++ d/f",
                "cS+++++++++ fifo"
            ]
        );
    }
}
