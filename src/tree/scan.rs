//! Walks a tree without following symlinks and lists what is there, for diffs and dry runs.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ExcludeSet;

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of a tree, its path relative to the root as raw bytes (names are bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i128,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Links to the same inode; with `dev` and `ino`, groups hard links.
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// A symlink's target, as stored (never followed).
    #[serde(with = "serde_bytes")]
    pub link_target: Option<Vec<u8>>,
}

impl Entry {
    /// The metadata a copy of this entry should get.
    pub fn meta(&self) -> super::root::Meta {
        super::root::Meta {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: self.mtime_ns,
        }
    }
}

/// The entries of a tree plus what could not be read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanSummary {
    /// False when the root does not exist.
    pub exists: bool,
    pub entries: Vec<Entry>,
    /// Unreadable paths with the reason; the scan goes on past them.
    pub errors: Vec<(Vec<u8>, String)>,
    /// The root directory's own metadata (its mode and owner matter for a docroot).
    #[serde(default)]
    pub root_meta: Option<super::root::Meta>,
}

impl ScanSummary {
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files().map(|e| e.size).sum()
    }
}

/// Lists `root` recursively, sorted by path, leaving out `exclude`d entries.
///
/// # Errors
/// Only when the exclude patterns are invalid; unreadable entries land in `errors`.
pub fn scan(root: &Path, exclude: &[String]) -> Result<ScanSummary, String> {
    let exclude = ExcludeSet::new(exclude)?;
    let mut summary = ScanSummary::default();
    match std::fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => {
            summary.exists = true;
            summary.root_meta = Some(super::root::Meta {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            });
        }
        Ok(_) => {
            summary.errors.push((
                Vec::new(),
                format!("`{}` is not a directory", root.display()),
            ));
            return Ok(summary);
        }
        Err(_) => return Ok(summary),
    }
    let mut walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(item) = walker.next() {
        let entry = match item {
            Ok(e) => e,
            Err(err) => {
                let rel = err
                    .path()
                    .and_then(|p| p.strip_prefix(root).ok())
                    .map(|p| p.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default();
                summary.errors.push((rel, err.to_string()));
                continue;
            }
        };
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir stays under its root");
        let is_dir = entry.file_type().is_dir();
        if !exclude.is_empty() && exclude.is_excluded(rel, is_dir) {
            if is_dir {
                walker.skip_current_dir();
            }
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(err) => {
                summary
                    .errors
                    .push((rel.as_os_str().as_bytes().to_vec(), err.to_string()));
                continue;
            }
        };
        let ft = entry.file_type();
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        summary.entries.push(Entry {
            path: rel.as_os_str().as_bytes().to_vec(),
            kind,
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: meta.nlink(),
            dev: meta.dev(),
            ino: meta.ino(),
            rdev: meta.rdev(),
            link_target: if kind == EntryKind::Symlink {
                std::fs::read_link(entry.path())
                    .ok()
                    .map(|t| t.as_os_str().as_bytes().to_vec())
            } else {
                None
            },
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/cache")).unwrap();
        std::fs::write(root.join("a/f.txt"), b"hello").unwrap();
        std::fs::write(root.join("a/cache/big"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        let s = scan(root, &["cache/".into()]).unwrap();
        let paths: Vec<_> = s
            .entries
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.path).to_string(), e.kind))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("a".into(), EntryKind::Dir),
                ("a/f.txt".into(), EntryKind::File),
                ("escape".into(), EntryKind::Symlink)
            ]
        );
        assert_eq!(s.total_bytes(), 5);
        assert!(!scan(&root.join("missing"), &[]).unwrap().exists);
    }
}
