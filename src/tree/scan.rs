//! Walks a tree without following symlinks and lists what is there, for diffs and dry runs.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ExcludeSet;
use super::xattr::{self, Xattr};

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
    /// Extended attributes and ACLs of files and directories that have any, by path (`b""` is
    /// the root), sorted by name; listed only when the scan is asked for them (`xattr::Keep`).
    #[serde(default)]
    pub xattrs: BTreeMap<Vec<u8>, Vec<Xattr>>,
    /// Entries with the immutable or append-only flag (`STATX_ATTR_*` bits): a copy does not
    /// carry them, so they are reported, never set.
    #[serde(default)]
    pub flagged: Vec<(Vec<u8>, u64)>,
    /// Whether the lister ran as root (it may set owners, `security.*` and `trusted.*`).
    #[serde(default)]
    pub listed_as_root: bool,
    /// With `scan_digested`: each entry's content BLAKE3, in the order of `entries` (`None`
    /// for all but files, and for a file that could not be read: its error is in `errors`).
    #[serde(default)]
    pub digests: Vec<Option<[u8; 32]>>,
}

impl ScanSummary {
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files().map(|e| e.size).sum()
    }

    /// The attributes listed for `path` (none when it has none, or they were not asked for).
    pub fn xattrs_of(&self, path: &[u8]) -> &[Xattr] {
        self.xattrs.get(path).map_or(&[], Vec::as_slice)
    }
}

/// The flags a copy cannot carry, as `flagged` records them.
pub const KEPT_FLAGS: u64 = (libc::STATX_ATTR_IMMUTABLE | libc::STATX_ATTR_APPEND) as u64;

/// Says which of `KEPT_FLAGS` an entry has, for a warning.
pub fn describe_flags(flags: u64) -> &'static str {
    let immutable = flags & libc::STATX_ATTR_IMMUTABLE as u64 != 0;
    let append = flags & libc::STATX_ATTR_APPEND as u64 != 0;
    match (immutable, append) {
        (true, true) => "immutable and append-only",
        (true, false) => "immutable",
        _ => "append-only",
    }
}

/// What a listing needs of one inode, from one `statx` (which also gives the immutable and
/// append-only flags, without opening the file for `FS_IOC_GETFLAGS`).
struct Stat {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i128,
    nlink: u64,
    dev: u64,
    ino: u64,
    rdev: u64,
    flags: u64,
}

impl Stat {
    /// `lstat` semantics: a symlink is described, never followed.
    fn of(c: &CStr) -> std::io::Result<Stat> {
        // SAFETY: an all-zero statx is a valid value to be filled.
        let mut sx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: valid NUL-terminated path and a writable statx buffer.
        let rc = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT,
                libc::STATX_BASIC_STATS,
                &mut sx,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Stat {
            mode: u32::from(sx.stx_mode),
            uid: sx.stx_uid,
            gid: sx.stx_gid,
            size: sx.stx_size,
            mtime_ns: i128::from(sx.stx_mtime.tv_sec) * 1_000_000_000
                + i128::from(sx.stx_mtime.tv_nsec),
            nlink: u64::from(sx.stx_nlink),
            dev: libc::makedev(sx.stx_dev_major, sx.stx_dev_minor),
            ino: sx.stx_ino,
            rdev: libc::makedev(sx.stx_rdev_major, sx.stx_rdev_minor),
            flags: sx.stx_attributes & sx.stx_attributes_mask & KEPT_FLAGS,
        })
    }

    /// From std's metadata (where `statx` is not available), flags unknown.
    fn from_metadata(m: &std::fs::Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            nlink: m.nlink(),
            dev: m.dev(),
            ino: m.ino(),
            rdev: m.rdev(),
            flags: 0,
        }
    }
}

/// Lists `root` recursively, sorted by path, leaving out `exclude`d entries.
///
/// # Errors
/// Only when the exclude patterns are invalid; unreadable entries land in `errors`.
pub fn scan(root: &Path, exclude: &[String]) -> Result<ScanSummary, String> {
    scan_with(root, exclude, xattr::Keep::NONE)
}

/// As `scan`, also listing the extended attributes and ACLs `keep` covers (of files and
/// directories: the kernel allows `user.*` on nothing else).
///
/// # Errors
/// As `scan`.
pub fn scan_with(
    root: &Path,
    exclude: &[String],
    keep: xattr::Keep,
) -> Result<ScanSummary, String> {
    let exclude = ExcludeSet::new(exclude)?;
    let mut summary = ScanSummary {
        // SAFETY: geteuid has no preconditions.
        listed_as_root: unsafe { libc::geteuid() } == 0,
        ..ScanSummary::default()
    };
    let read_xattrs = |summary: &mut ScanSummary, path: &CStr, rel: &[u8]| {
        if !keep.any() {
            return;
        }
        match xattr::Handle::Path(path).read(keep) {
            Ok(list) if list.is_empty() => {}
            Ok(list) => {
                summary.xattrs.insert(rel.to_vec(), list);
            }
            Err(e) => summary
                .errors
                .push((rel.to_vec(), format!("extended attributes: {e}"))),
        }
    };
    match std::fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => {
            summary.exists = true;
            summary.root_meta = Some(super::root::Meta {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            });
            if let Ok(c) = CString::new(root.as_os_str().as_bytes()) {
                read_xattrs(&mut summary, &c, b"");
            }
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
        // A path from the walk holds no NUL; one that did would go std's way below.
        let c_path = CString::new(entry.path().as_os_str().as_bytes()).unwrap_or_default();
        let meta = match Stat::of(&c_path) {
            Ok(st) => st,
            // No statx here (or the entry went): std's way, for its result or its error.
            Err(_) => match entry.metadata() {
                Ok(m) => Stat::from_metadata(&m),
                Err(err) => {
                    summary
                        .errors
                        .push((rel.as_os_str().as_bytes().to_vec(), err.to_string()));
                    continue;
                }
            },
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
        let rel = rel.as_os_str().as_bytes();
        if meta.flags != 0 {
            summary.flagged.push((rel.to_vec(), meta.flags));
        }
        if matches!(kind, EntryKind::File | EntryKind::Dir) {
            read_xattrs(&mut summary, &c_path, rel);
        }
        summary.entries.push(Entry {
            path: rel.to_vec(),
            kind,
            size: if kind == EntryKind::File {
                meta.size
            } else {
                0
            },
            mtime_ns: meta.mtime_ns,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            nlink: meta.nlink,
            dev: meta.dev,
            ino: meta.ino,
            rdev: meta.rdev,
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

/// As `scan_with`, also hashing every file (`ScanSummary::digests`) on every core, where the
/// tree is: a verification gets listing and hashes in one pass and one round trip. Files are
/// opened beneath the root (`SafeRoot`), never by following a path a link could redirect.
///
/// # Errors
/// As `scan`.
pub fn scan_digested(
    root: &Path,
    exclude: &[String],
    keep: xattr::Keep,
) -> Result<ScanSummary, String> {
    use rayon::prelude::*;
    let mut summary = scan_with(root, exclude, keep)?;
    if !summary.exists {
        return Ok(summary);
    }
    let safe = match super::root::SafeRoot::open(root, false) {
        Ok(r) => r,
        Err(e) => return Err(format!("`{}`: {e}", root.display())),
    };
    // In listing order: files of a directory go together, each worker keeps its parent open.
    let files: Vec<usize> = (0..summary.entries.len())
        .filter(|i| summary.entries[*i].kind == EntryKind::File)
        .collect();
    let hashed: Vec<(usize, Result<[u8; 32], String>)> = files
        .par_iter()
        .map(|i| {
            let path = &summary.entries[*i].path;
            let hash = safe
                .open_read_watched(path)
                .and_then(super::digest::digest_watched)
                .map(|(h, _)| h)
                .map_err(|e| e.to_string());
            (*i, hash)
        })
        .collect();
    summary.digests = vec![None; summary.entries.len()];
    for (i, hash) in hashed {
        match hash {
            Ok(h) => summary.digests[i] = Some(h),
            Err(e) => summary.errors.push((summary.entries[i].path.clone(), e)),
        }
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

    /// Sets or clears a file's immutable flag (`chattr +i`), as root.
    fn set_immutable(path: &Path, on: bool) -> bool {
        use std::os::fd::AsRawFd;
        const FS_IMMUTABLE_FL: libc::c_long = 0x10;
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        let mut flags: libc::c_long = 0;
        // SAFETY: valid fd and a long for the flags, as FS_IOC_GETFLAGS/SETFLAGS take.
        unsafe {
            if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
                return false;
            }
            flags = if on {
                flags | FS_IMMUTABLE_FL
            } else {
                flags & !FS_IMMUTABLE_FL
            };
            libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) == 0
        }
    }

    #[test]
    fn attributes_and_flags_are_listed_when_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", root.join("d/l")).unwrap();
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        for (p, v) in [
            (root.to_path_buf(), "r"),
            (root.join("d"), "d"),
            (root.join("d/f"), "f"),
        ] {
            // SAFETY: valid path, name and value.
            if unsafe {
                libc::lsetxattr(c(&p).as_ptr(), c"user.t".as_ptr(), v.as_ptr().cast(), 1, 0)
            } != 0
            {
                return; // no user xattrs on this file system
            }
        }
        let s = scan_with(root, &[], xattr::Keep::ALL).unwrap();
        let listed: Vec<(&[u8], &[u8])> = s
            .xattrs
            .iter()
            .map(|(p, l)| (p.as_slice(), l[0].value.as_slice()))
            .collect();
        assert_eq!(
            listed,
            [(&b""[..], &b"r"[..]), (b"d", b"d"), (b"d/f", b"f")]
        );
        assert!(
            scan(root, &[]).unwrap().xattrs.is_empty(),
            "only when asked"
        );
        if set_immutable(&root.join("d/f"), true) {
            let s = scan(root, &[]).unwrap();
            set_immutable(&root.join("d/f"), false);
            assert_eq!(s.flagged.len(), 1);
            assert_eq!(s.flagged[0].0, b"d/f");
            assert_eq!(describe_flags(s.flagged[0].1), "immutable");
        }
    }
}
