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
    /// Not listed: read from the target's manifest (`sync::manifest`), never sent.
    #[serde(skip)]
    pub from_manifest: bool,
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

    /// Adds the next part of a streamed listing (`scan_streamed`): its entries, errors,
    /// attributes and flags after this listing's.
    pub fn append(&mut self, part: ScanSummary) {
        self.entries.extend(part.entries);
        self.errors.extend(part.errors);
        self.xattrs.extend(part.xattrs);
        self.flagged.extend(part.flagged);
    }

    /// The whole listing from its parts (appended in order) and the rest `scan_streamed`
    /// returns, which holds the root's own fields.
    pub fn joined(parts: ScanSummary, mut rest: ScanSummary) -> ScanSummary {
        let tail = ScanSummary {
            entries: std::mem::take(&mut rest.entries),
            errors: std::mem::take(&mut rest.errors),
            xattrs: std::mem::take(&mut rest.xattrs),
            flagged: std::mem::take(&mut rest.flagged),
            ..ScanSummary::default()
        };
        let mut whole = ScanSummary {
            entries: parts.entries,
            errors: parts.errors,
            xattrs: parts.xattrs,
            flagged: parts.flagged,
            ..rest
        };
        whole.append(tail);
        whole
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
    /// `lstat` semantics of `name` in the directory `dir` (or of a whole path with
    /// `AT_FDCWD`): a symlink is described, never followed. Only the fields a listing reads
    /// are asked for (no atime, ctime, btime or blocks).
    fn at(dir: libc::c_int, name: &CStr) -> std::io::Result<Stat> {
        const NEEDED: u32 = libc::STATX_TYPE
            | libc::STATX_MODE
            | libc::STATX_NLINK
            | libc::STATX_UID
            | libc::STATX_GID
            | libc::STATX_MTIME
            | libc::STATX_INO
            | libc::STATX_SIZE;
        // SAFETY: an all-zero statx is a valid value to be filled.
        let mut sx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: valid NUL-terminated name, a directory descriptor we hold (or AT_FDCWD) and
        // a writable statx buffer.
        let rc = unsafe {
            libc::statx(
                dir,
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT,
                NEEDED,
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

    fn kind(&self) -> EntryKind {
        match self.mode & libc::S_IFMT {
            libc::S_IFREG => EntryKind::File,
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFLNK => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

/// The order a listing comes in: by path, component by component (a directory, then what
/// it holds, then its next sibling: `a`, `a/b`, `a.b`). Byte order with `/` below every other
/// byte, which names never hold.
pub fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let rank = |c: u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
    a.iter().map(|c| rank(*c)).cmp(b.iter().map(|c| rank(*c)))
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
    scan_streamed(root, exclude, keep, usize::MAX, &mut |_| {})
}

/// As `scan_with`, handing the listing out in parts as the walk goes (`part` entries each,
/// in `walk_order`; each part's errors, attributes and flags with it, and `listed_as_root`,
/// which a pairing needs before the end); what is left, with the root's own fields, is
/// returned. The parts and the rest, appended in order, are `scan_with`.
///
/// # Errors
/// As `scan`.
pub fn scan_streamed(
    root: &Path,
    exclude: &[String],
    keep: xattr::Keep,
    part: usize,
    on_part: &mut dyn FnMut(ScanSummary),
) -> Result<ScanSummary, String> {
    let exclude = ExcludeSet::new(exclude)?;
    let mut summary = ScanSummary {
        // SAFETY: geteuid has no preconditions.
        listed_as_root: unsafe { libc::geteuid() } == 0,
        ..ScanSummary::default()
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
    let Ok(c_root) = CString::new(root.as_os_str().as_bytes()) else {
        summary
            .errors
            .push((Vec::new(), "the root's name holds a NUL byte".into()));
        return Ok(summary);
    };
    let mut walk = Walk {
        root: c_root.as_bytes(),
        exclude: &exclude,
        keep,
        summary,
        part,
        on_part,
    };
    walk.attributes(&c_root, b"");
    match open_dir(libc::AT_FDCWD, &c_root) {
        Ok(fd) => walk.dir(fd, &mut Vec::new(), 0),
        Err(e) => walk.error(b"", e),
    }
    Ok(walk.summary)
}

/// Directories nested deeper than this are listed without keeping their parents open (by
/// whole paths), so a deep tree cannot run the process out of descriptors.
const OPEN_DEPTH: usize = 64;

/// `getdents64`'s buffer: a site's directory comes in one call (plus the one that says the
/// end), where libc's `readdir` reads 32 KiB at a time.
const DENTS_BUFFER: usize = 256 * 1024;

fn open_dir(dir: libc::c_int, name: &CStr) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: valid descriptor (or AT_FDCWD) and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The names in a directory (without `.` and `..`), sorted as bytes, with the type the
/// directory entry gives (`DT_UNKNOWN` on file systems that do not say).
fn read_names(fd: &std::os::fd::OwnedFd) -> std::io::Result<Vec<(CString, u8)>> {
    use std::os::fd::AsRawFd;
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|b| {
        let mut buf = b.borrow_mut();
        buf.resize(DENTS_BUFFER, 0);
        let mut names = Vec::new();
        loop {
            // SAFETY: a directory descriptor we hold and a writable buffer of its length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
            let n = usize::try_from(n).unwrap_or(0).min(buf.len());
            let mut at = 0;
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name (NUL-ended).
            while at + 19 < n {
                let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
                if reclen < 20 || at + reclen > n {
                    break;
                }
                let d_type = buf[at + 18];
                let name = &buf[at + 19..at + reclen];
                let len = name.iter().position(|c| *c == 0).unwrap_or(name.len());
                let name = &name[..len];
                if name != b"."
                    && name != b".."
                    && let Ok(c) = CString::new(name)
                {
                    names.push((c, d_type));
                }
                at += reclen;
            }
        }
        names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(names)
    })
}

/// One walk's state: where entries go, and when a part is handed out.
struct Walk<'a> {
    root: &'a [u8],
    exclude: &'a ExcludeSet,
    keep: xattr::Keep,
    summary: ScanSummary,
    part: usize,
    on_part: &'a mut dyn FnMut(ScanSummary),
}

impl Walk<'_> {
    fn full_path(&self, rel: &[u8]) -> CString {
        let mut p = Vec::with_capacity(self.root.len() + 1 + rel.len());
        p.extend_from_slice(self.root);
        if !rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel);
        }
        // Names from getdents hold no NUL.
        CString::new(p).unwrap_or_default()
    }

    fn attributes(&mut self, path: &CStr, rel: &[u8]) {
        if !self.keep.any() {
            return;
        }
        match xattr::Handle::Path(path).read(self.keep) {
            Ok(list) if list.is_empty() => {}
            Ok(list) => {
                self.summary.xattrs.insert(rel.to_vec(), list);
            }
            Err(e) => self
                .summary
                .errors
                .push((rel.to_vec(), format!("extended attributes: {e}"))),
        }
    }

    fn error(&mut self, rel: &[u8], e: impl std::fmt::Display) {
        self.summary.errors.push((rel.to_vec(), e.to_string()));
    }

    /// Hands out a part when the entries reach its size.
    fn maybe_part(&mut self) {
        if self.summary.entries.len() < self.part {
            return;
        }
        let part = ScanSummary {
            entries: std::mem::take(&mut self.summary.entries),
            errors: std::mem::take(&mut self.summary.errors),
            xattrs: std::mem::take(&mut self.summary.xattrs),
            flagged: std::mem::take(&mut self.summary.flagged),
            listed_as_root: self.summary.listed_as_root,
            ..ScanSummary::default()
        };
        (self.on_part)(part);
    }

    /// Lists the directory open as `fd` (at `rel`), depth first, in `walk_order`.
    fn dir(&mut self, fd: std::os::fd::OwnedFd, rel: &mut Vec<u8>, depth: usize) {
        use std::os::fd::AsRawFd;
        let names = match read_names(&fd) {
            Ok(n) => n,
            Err(e) => return self.error(rel, e),
        };
        // Deep down, names are resolved from the root so this level's descriptor can go.
        let held = (depth < OPEN_DEPTH).then_some(fd);
        let dir = held.as_ref().map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
        for (name, d_type) in names {
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(dir, held.is_some(), &name, d_type, rel, depth);
            rel.truncate(len);
        }
    }

    /// Lists one name of a directory (`dir`, or by its whole path when `held` is false), and
    /// what it holds when it is a directory.
    fn entry(
        &mut self,
        dir: libc::c_int,
        held: bool,
        name: &CStr,
        d_type: u8,
        rel: &mut Vec<u8>,
        depth: usize,
    ) {
        let full = (!held || self.keep.any()).then(|| self.full_path(rel));
        let (at, at_name) = match (&full, held) {
            (Some(f), false) => (libc::AT_FDCWD, f.as_c_str()),
            _ => (dir, name),
        };
        if !self.exclude.is_empty() {
            let is_dir = match d_type {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => Stat::at(at, at_name).is_ok_and(|s| s.kind() == EntryKind::Dir),
                _ => false,
            };
            if self
                .exclude
                .is_excluded(Path::new(std::ffi::OsStr::from_bytes(rel)), is_dir)
            {
                return;
            }
        }
        let meta = match Stat::at(at, at_name) {
            Ok(st) => st,
            // No statx here: std's way, for its result or its error.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let path = self.full_path(rel);
                match std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(path.as_bytes())) {
                    Ok(m) => Stat::from_metadata(&m),
                    Err(e) => return self.error(rel, e),
                }
            }
            Err(e) => return self.error(rel, e),
        };
        let kind = meta.kind();
        if meta.flags != 0 {
            self.summary.flagged.push((rel.clone(), meta.flags));
        }
        if matches!(kind, EntryKind::File | EntryKind::Dir)
            && let Some(f) = &full
        {
            self.attributes(f, rel);
        }
        let link_target = if kind == EntryKind::Symlink {
            read_link_at(at, at_name)
        } else {
            None
        };
        self.summary.entries.push(Entry {
            path: rel.clone(),
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
            link_target,
        });
        self.maybe_part();
        if kind == EntryKind::Dir {
            match open_dir(at, at_name) {
                Ok(sub) => self.dir(sub, rel, depth + 1),
                Err(e) => self.error(rel, e),
            }
        }
    }
}

/// A symlink's target, as stored (never followed).
fn read_link_at(dir: libc::c_int, name: &CStr) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid descriptor (or AT_FDCWD), NUL-terminated name, writable buffer.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(usize::try_from(n).ok()?);
    Some(buf)
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

    #[test]
    fn walk_order_puts_a_directory_before_its_siblings_that_sort_after_a_slash() {
        let mut paths: Vec<&[u8]> = vec![b"a.b", b"a/b", b"a", b"a/b/c", b"a-", b"a0", b"b"];
        paths.sort_by(|x, y| walk_order(x, y));
        assert_eq!(
            paths,
            [&b"a"[..], b"a/b", b"a/b/c", b"a-", b"a.b", b"a0", b"b"]
        );
        assert_eq!(walk_order(b"a", b"a"), std::cmp::Ordering::Equal);
    }

    #[test]
    fn parts_appended_are_the_whole_listing_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["a", "a/b", "a.b", "a-c", "z/y/x"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (i, f) in ["a/f", "a/b/g", "a.b/h", "a-c/i", "a0", "z/y/x/j", "z/k"]
            .iter()
            .enumerate()
        {
            std::fs::write(root.join(f), vec![b'x'; i]).unwrap();
        }
        std::os::unix::fs::symlink("../a0", root.join("a/l")).unwrap();
        let whole = scan(root, &[]).unwrap();
        for part in [1, 2, 3, 5] {
            let mut parts = Vec::new();
            let rest = scan_streamed(root, &[], xattr::Keep::NONE, part, &mut |p| {
                assert_eq!(p.entries.len(), part);
                parts.push(p);
            })
            .unwrap();
            let mut entries: Vec<Entry> = parts.into_iter().flat_map(|p| p.entries).collect();
            entries.extend(rest.entries);
            assert_eq!(entries, whole.entries, "parts of {part}");
            assert!(rest.exists && rest.root_meta == whole.root_meta);
        }
        let paths: Vec<&[u8]> = whole.entries.iter().map(|e| e.path.as_slice()).collect();
        assert!(
            paths
                .windows(2)
                .all(|w| walk_order(w[0], w[1]) == std::cmp::Ordering::Less)
        );
        assert_eq!(&paths[..5], [&b"a"[..], b"a/b", b"a/b/g", b"a/f", b"a/l"]);
        let link = whole.entries.iter().find(|e| e.path == b"a/l").unwrap();
        assert_eq!(link.link_target.as_deref(), Some(&b"../a0"[..]));
        assert_eq!(link.kind, EntryKind::Symlink);
        assert_eq!(whole.total_bytes(), 21);
    }

    #[test]
    fn a_deep_tree_is_listed_without_holding_a_descriptor_per_level() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        for _ in 0..(OPEN_DEPTH + 10) {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"deep").unwrap();
        let s = scan(dir.path(), &["/d/d/d/skipped".into()]).unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.entries.len(), OPEN_DEPTH + 11);
        assert_eq!(s.entries.last().unwrap().size, 4);
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
