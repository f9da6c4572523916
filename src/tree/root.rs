//! Every write under a target root, resolved beneath it without following any symlink.
//!
//! Paths come from a peer and are never trusted: each is checked (no `..`, no absolute, no NUL)
//! and resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a symlink planted in
//! the target cannot redirect a write outside the root. Files are written under a temp name in
//! the root's own temp directory (`TEMP_DIR`) and renamed into place: temp names are unique per
//! writer and short whatever the final name, user files never look like ours, and a commit
//! renames only the inode its writer wrote.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::kernel_copy::{self, Copied};
use super::stamp::{Stamp, Watched};
use super::xattr::{Handle, Wanted};

/// Metadata applied to what we create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
}

/// The directory, at the top of a target root, where files are written before their rename.
/// Only this exact root-level name is ours: any other name, even `.x.th-partial`, is user data.
/// A file left in it by a writer that died is a partial file and serves as a delta basis next
/// time; leftovers nobody needs are removed at the end of a run, and so is the empty directory.
pub const TEMP_DIR: &str = ".transhumance-tmp";

/// Whether `rel` (relative to a root) is our temp directory or something inside it.
pub fn is_temp(rel: &[u8]) -> bool {
    let t = TEMP_DIR.as_bytes();
    rel.starts_with(t) && (rel.len() == t.len() || rel[t.len()] == b'/')
}

/// Names the temp files of `rel`: 16 hex digits of its BLAKE3, so that a temp name
/// (`<key>-<pid>-<n>`, under 50 bytes) fits whatever the length of the name it stands for.
pub fn temp_key(rel: &[u8]) -> String {
    blake3::hash(rel).to_hex()[..16].to_string()
}

/// The key of an entry of a listing that is a temp file (`TEMP_DIR/<key>-<pid>-<n>`).
pub fn key_of_temp(rel: &[u8]) -> Option<&[u8]> {
    let name = rel.strip_prefix(TEMP_DIR.as_bytes())?.strip_prefix(b"/")?;
    parse_temp_name(name).map(|(key, _)| key)
}

/// Splits a temp name into its key and the pid of its writer.
fn parse_temp_name(name: &[u8]) -> Option<(&[u8], i32)> {
    let mut parts = name.splitn(3, |b| *b == b'-');
    let key = parts.next()?;
    let pid = std::str::from_utf8(parts.next()?).ok()?;
    let n = parts.next()?;
    if key.len() != 16 || !key.iter().all(u8::is_ascii_hexdigit) || n.is_empty() {
        return None;
    }
    Some((key, i32::from_str_radix(pid, 16).ok()?))
}

/// Writers in this process, numbered: with the pid, a temp name no other writer uses.
static NEXT_TEMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A temp name of our own for a file whose key is `key`.
fn fresh_temp_name(key: &str) -> CString {
    let n = NEXT_TEMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    CString::new(format!("{key}-{:x}-{n:x}", std::process::id())).expect("no NUL")
}

/// Whether the writer `pid` is gone (its files are leftovers, no longer written to). Our own
/// pid is alive: temp files of this process belong to writers still at work.
fn writer_is_gone(pid: i32) -> bool {
    if pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) != 0 && *libc::__errno_location() == libc::ESRCH }
}

/// Leftover temp files of writers that are gone, by key.
type Leftovers = std::collections::HashMap<Vec<u8>, Vec<CString>>;

/// The kernel's `struct open_how` (libc marks its own non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// A directory every operation stays beneath.
#[derive(Debug)]
pub struct SafeRoot {
    fd: OwnedFd,
    path: PathBuf,
    /// Whether to set owners (only root may).
    pub set_owner: bool,
    /// The parent directories resolved lately, most recent first: files arrive grouped by
    /// directory, so most reads and writes skip the path walk, each worker in its own
    /// directory (one slot shared by parallel workers made every file resolve its parent).
    recent_parents: std::sync::Mutex<std::collections::VecDeque<(Vec<u8>, DirFd)>>,
    /// `TEMP_DIR`, created by the first write.
    temp_dir: std::sync::Mutex<Option<DirFd>>,
    /// Temp files of writers that are gone, listed once at the first write.
    leftovers: std::sync::Mutex<Option<Leftovers>>,
    /// The root directory's lock, once taken (released when this process ends).
    lock: std::sync::Mutex<Option<OwnedFd>>,
    /// The device of the file system holding the root (what `syncfs` flushes).
    dev: u64,
}

type DirFd = std::sync::Arc<OwnedFd>;

/// Parent directories kept open per root: a few per worker.
const PARENTS_KEPT: usize = 16;

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| invalid("path contains a NUL byte"))
}

/// The device of the file system `fd` is on.
fn device_of(fd: &OwnedFd) -> io::Result<u64> {
    // SAFETY: an all-zero stat is a valid value for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a live pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_dev)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Checks a relative path from a peer: non-empty, relative, no `.`/`..`/empty components, no NUL.
///
/// # Errors
/// `InvalidInput` naming what is wrong.
pub fn check_rel(rel: &[u8]) -> io::Result<&Path> {
    if rel.is_empty() {
        return Err(invalid("empty path"));
    }
    if rel[0] == b'/' {
        return Err(invalid(format!(
            "absolute path `{}` from the peer",
            String::from_utf8_lossy(rel)
        )));
    }
    if rel.contains(&0) {
        return Err(invalid("path contains a NUL byte"));
    }
    for component in rel.split(|b| *b == b'/') {
        if component.is_empty() || component == b"." || component == b".." {
            return Err(invalid(format!(
                "unsafe path `{}` from the peer",
                String::from_utf8_lossy(rel)
            )));
        }
    }
    Ok(Path::new(OsStr::from_bytes(rel)))
}

/// Splits `rel` into its parent (maybe empty) and last component.
fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

impl SafeRoot {
    /// Opens `path` as a root; with `create`, creates it (and its parents) first.
    ///
    /// # Errors
    /// The directory cannot be created or opened.
    pub fn open(path: &Path, create: bool) -> io::Result<SafeRoot> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: valid NUL-terminated path; the fd is owned right after.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: the fd was just opened and is owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let dev = device_of(&fd)?;
        Ok(SafeRoot {
            fd,
            path: path.to_path_buf(),
            // SAFETY: geteuid has no preconditions.
            set_owner: unsafe { libc::geteuid() } == 0,
            recent_parents: std::sync::Mutex::new(std::collections::VecDeque::new()),
            temp_dir: std::sync::Mutex::new(None),
            leftovers: std::sync::Mutex::new(None),
            lock: std::sync::Mutex::new(None),
            dev,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the directory `rel` beneath this root (resolved as every peer path is: no `..`,
    /// no symlink on the way) as a root of its own: an agent confined to this root serves it.
    ///
    /// # Errors
    /// An unsafe path, a symlink on the way, or no such directory.
    pub fn open_under(&self, rel: &[u8]) -> io::Result<SafeRoot> {
        check_rel(rel)?;
        let fd = self.open_beneath(rel, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let dev = device_of(&fd)?;
        Ok(SafeRoot {
            fd,
            path: self.path.join(OsStr::from_bytes(rel)),
            set_owner: self.set_owner,
            recent_parents: std::sync::Mutex::new(std::collections::VecDeque::new()),
            temp_dir: std::sync::Mutex::new(None),
            leftovers: std::sync::Mutex::new(None),
            lock: std::sync::Mutex::new(None),
            dev,
        })
    }

    /// Opens `rel` beneath the root without following any symlink on the way.
    fn open_beneath(
        &self,
        rel: &[u8],
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<OwnedFd> {
        let c = if rel.is_empty() {
            CString::new(".").expect("no NUL")
        } else {
            cstr(rel)?
        };
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: if flags & libc::O_CREAT != 0 {
                u64::from(mode)
            } else {
                0
            },
            resolve: libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 with a valid dirfd, path and open_how of the right size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EXDEV) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "`{}` goes through a symlink or out of the target root: refused",
                        String::from_utf8_lossy(rel)
                    ),
                ));
            }
            return Err(e);
        }
        // SAFETY: a fresh fd returned by the kernel.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    /// The parent directory of `rel` (opened beneath the root) and the last component.
    fn parent(&self, rel: &[u8]) -> io::Result<(DirFd, CString)> {
        check_rel(rel)?;
        let (dir, name) = split(rel);
        let recent = || {
            self.recent_parents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if let Some((_, fd)) = recent().iter().find(|(path, _)| path.as_slice() == dir) {
            return Ok((fd.clone(), cstr(name)?));
        }
        // Resolved without the lock: other workers go on meanwhile.
        let fd =
            std::sync::Arc::new(self.open_beneath(dir, libc::O_PATH | libc::O_DIRECTORY, 0)?);
        let mut kept = recent();
        kept.push_front((dir.to_vec(), fd.clone()));
        kept.truncate(PARENTS_KEPT);
        Ok((fd, cstr(name)?))
    }

    /// Forgets the cached parent (a directory was removed or replaced).
    fn forget_parent(&self) {
        self.recent_parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Opens a regular file for reading (a symlink at `rel` is refused).
    ///
    /// # Errors
    /// Missing file, unsafe path, or a symlink.
    pub fn open_read(&self, rel: &[u8]) -> io::Result<File> {
        self.open_read_watched(rel).map(Watched::into_file)
    }

    /// As `open_read`, watched for changes from the stamp the open itself took (one `fstat`).
    ///
    /// # Errors
    /// As `open_read`.
    pub fn open_read_watched(&self, rel: &[u8]) -> io::Result<Watched> {
        // The parent was resolved beneath the root; the last component is opened without
        // following a symlink, so the whole path stays safe.
        let (dir, name) = self.parent(rel)?;
        let opened = open_regular_stamped(&dir, &name).map(|(f, st)| Watched::with_stamp(f, st));
        opened.map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("`{}` is a symlink: refused", String::from_utf8_lossy(rel)),
                )
            } else {
                e
            }
        })
    }

    /// The temp directory, created (mode 0700) by the first write; the root's mtime is kept as
    /// it was, since the directory is ours, not the source's.
    ///
    /// # Errors
    /// Something other than a directory (a symlink, a file) stands under `TEMP_DIR`.
    fn temp_dir(&self) -> io::Result<DirFd> {
        let mut cached = self.temp_dir.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = cached.as_ref() {
            return Ok(d.clone());
        }
        let name = cstr(TEMP_DIR.as_bytes())?;
        self.keeping_root_mtime(|| {
            // SAFETY: valid dirfd and name.
            if unsafe { libc::mkdirat(self.fd.as_raw_fd(), name.as_ptr(), 0o700) } == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                Ok(false)
            } else {
                Err(e)
            }
        })?;
        // Opened beneath the root without following links: a symlink planted there is refused.
        let fd = std::sync::Arc::new(self.open_beneath(
            TEMP_DIR.as_bytes(),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?);
        *cached = Some(fd.clone());
        Ok(fd)
    }

    /// Runs `op` (which returns whether it changed the root directory) and puts the root's mtime
    /// back when it did.
    fn keeping_root_mtime(&self, op: impl FnOnce() -> io::Result<bool>) -> io::Result<bool> {
        let root = self.open_beneath(b"", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and stat buffer.
        check(unsafe { libc::fstat(root.as_raw_fd(), &mut st) })?;
        let changed = op()?;
        if changed {
            let times = [
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                libc::timespec {
                    tv_sec: st.st_mtime,
                    tv_nsec: st.st_mtime_nsec,
                },
            ];
            // Best effort: only the root's owner may set its times, and a writer that is not
            // its owner still writes (the engine sets the root's metadata at the end anyway).
            // SAFETY: valid fd and two timespecs.
            unsafe { libc::futimens(root.as_raw_fd(), times.as_ptr()) };
        }
        Ok(changed)
    }

    /// Runs `f` on the leftovers, listing `TEMP_DIR` the first time (without creating it).
    fn with_leftovers<R>(&self, f: impl FnOnce(&mut Leftovers) -> R) -> R {
        let mut guard = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
        let map = guard.get_or_insert_with(|| {
            let mut map = Leftovers::new();
            if let Ok(dir) =
                self.open_beneath(TEMP_DIR.as_bytes(), libc::O_RDONLY | libc::O_DIRECTORY, 0)
            {
                for name in list_dir(&dir).unwrap_or_default() {
                    if let Some((key, pid)) = parse_temp_name(name.as_bytes())
                        && writer_is_gone(pid)
                    {
                        map.entry(key.to_vec()).or_default().push(name.clone());
                    }
                }
            }
            map
        });
        f(map)
    }

    /// The leftover of `rel` a delta starts from: the biggest (then first by name), so the
    /// signature and the write that follows it pick the same one, even in other processes.
    fn best_leftover(&self, rel: &[u8]) -> Option<(DirFd, CString)> {
        let names = self.with_leftovers(|m| m.get(temp_key(rel).as_bytes()).cloned())?;
        let dir = std::sync::Arc::new(
            self.open_beneath(TEMP_DIR.as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0)
                .ok()?,
        );
        let best = names
            .into_iter()
            .filter_map(|n| {
                let st = fstatat(&dir, &n).ok()?;
                (st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some((st.st_size, n))
            })
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))?;
        Some((dir, best.1))
    }

    /// Opens the partial file an interrupted run left for `rel` (a delta basis).
    ///
    /// # Errors
    /// `NotFound` when there is none.
    pub fn open_partial(&self, rel: &[u8]) -> io::Result<File> {
        check_rel(rel)?;
        let (dir, name) = self.best_leftover(rel).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no partial file of an interrupted run",
            )
        })?;
        open_regular(&dir, &name)
    }

    /// Starts writing `rel`: a temp file of this writer's own in `TEMP_DIR`, renamed into place
    /// by `TempFile::commit`. With `reuse_partial`, a partial file an interrupted run left is
    /// claimed (renamed to a name of ours, so no other writer takes it too) and returned as a
    /// basis; other leftovers of `rel` are removed, since this write supersedes them.
    ///
    /// # Errors
    /// Unsafe path, missing parent directory, or I/O errors.
    pub fn create_temp(
        &self,
        rel: &[u8],
        reuse_partial: bool,
    ) -> io::Result<(TempFile, Option<File>)> {
        let (dir, name) = self.parent(rel)?;
        let tmp = self.temp_dir()?;
        let key = temp_key(rel);
        let mut basis = None;
        let mut basis_name = None;
        if reuse_partial && let Some((_, best)) = self.best_leftover(rel) {
            let claimed = fresh_temp_name(&key);
            // SAFETY: valid dirfd and names.
            if unsafe {
                libc::renameat(
                    tmp.as_raw_fd(),
                    best.as_ptr(),
                    tmp.as_raw_fd(),
                    claimed.as_ptr(),
                )
            } == 0
            {
                basis = open_regular(&tmp, &claimed).ok();
                basis_name = Some(claimed);
            }
        }
        let stale = self.with_leftovers(|m| m.remove(key.as_bytes()).unwrap_or_default());
        for old in stale {
            // SAFETY: valid dirfd and name (the one claimed above is gone from there already).
            unsafe { libc::unlinkat(tmp.as_raw_fd(), old.as_ptr(), 0) };
        }
        let temp = fresh_temp_name(&key);
        let file = openat_file(
            &tmp,
            &temp,
            // Readable too: a kernel-side copy is hashed where it landed.
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )?;
        Ok((
            TempFile {
                tmp,
                temp,
                dir,
                name,
                file,
                basis_name,
                trailing_hole: false,
            },
            basis,
        ))
    }

    /// Writes a whole file whose content is in hand (a small file of a batch), checked against
    /// `expected` (BLAKE3) first. It is made unnamed (`O_TMPFILE`) in its own directory, so the
    /// file system places its inode near its siblings (a temp directory shared by every file
    /// made ext4's inode allocator search, ~30 % of the agent on 200,000 small files), given
    /// its metadata, then linked under its name: nothing of it is visible before it is
    /// complete, and a crash leaves no temp file anywhere (an unnamed inode goes with its
    /// descriptor). A name already taken (a file to replace) gets the finished file through a
    /// temp name of ours in `TEMP_DIR` and a rename, as any other write; so does every file
    /// where `O_TMPFILE` or `/proc` is missing.
    ///
    /// # Errors
    /// `InvalidData` when `data` is not the sender's content; unsafe path, I/O errors.
    pub fn write_whole(
        &self,
        rel: &[u8],
        data: &[u8],
        meta: &Meta,
        xattrs: Option<&Wanted>,
        expected: &[u8; 32],
    ) -> io::Result<()> {
        if blake3::hash(data).as_bytes() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "BLAKE3 of the written file differs from the sender's: not renamed into place",
            ));
        }
        let (dir, name) = self.parent(rel)?;
        let unnamed = if unnamed_files_link() {
            openat_file(&dir, c".", libc::O_TMPFILE | libc::O_WRONLY, 0o600)
        } else {
            Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        };
        let mut file = match unnamed {
            Ok(f) => f,
            // The file system (or this kernel) cannot make unnamed files: the temp directory.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                ) =>
            {
                let (mut temp, _) = self.create_temp(rel, false)?;
                temp.write_data(data)?;
                return temp.commit_with(meta, self.set_owner, xattrs);
            }
            Err(e) => return Err(e),
        };
        if write_sparse(&mut file, data)? {
            file.set_len(data.len() as u64)?;
        }
        apply_meta_fd(&file, meta, self.set_owner, xattrs)?;
        let unnamed = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
        let link_to = |to_dir: &OwnedFd, to: &CStr| {
            // SAFETY: valid paths and dirfd; AT_SYMLINK_FOLLOW resolves the /proc link to our
            // inode, and linkat never replaces an existing name.
            check(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    unnamed.as_ptr(),
                    to_dir.as_raw_fd(),
                    to.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })
        };
        match link_to(&dir, &name) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        // The name is taken: the finished file gets a temp name of ours, then replaces it.
        let tmp = self.temp_dir()?;
        let temp = fresh_temp_name(&temp_key(rel));
        link_to(&tmp, &temp).map_err(|e| {
            if e.raw_os_error() == Some(libc::EXDEV) {
                another_file_system()
            } else {
                e
            }
        })?;
        rename_into_place(&tmp, &temp, &dir, &name)
    }

    /// Takes the root's lock, held until this process ends (whatever the way it ends): one
    /// writer per target root for runs outside a plan (a plan's runs hold the plan's lock).
    ///
    /// # Errors
    /// `WouldBlock` when another process holds it.
    pub fn lock(&self) -> io::Result<()> {
        let mut held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(());
        }
        let fd = self.open_beneath(b"", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        // SAFETY: valid fd.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another run is writing into this target (it holds the target's lock)",
                ));
            }
            return Err(e);
        }
        *held = Some(fd);
        Ok(())
    }

    /// Creates a directory (parents must exist); an existing directory is fine.
    ///
    /// # Errors
    /// Unsafe path, or something else than a directory stands there.
    pub fn mkdir(&self, rel: &[u8], mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        // SAFETY: valid dirfd and name.
        if unsafe {
            libc::mkdirat(
                dir.as_raw_fd(),
                name.as_ptr(),
                (mode & 0o7777) as libc::mode_t,
            )
        } == 0
        {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            let st = fstatat(&dir, &name)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Ok(());
            }
            // A file or symlink where a directory belongs: replace it, never write through it.
            self.remove(rel)?;
            return self.mkdir(rel, mode);
        }
        Err(e)
    }

    /// Creates (or replaces) a symlink; its target is stored as given and never followed.
    ///
    /// # Errors
    /// Unsafe path or I/O errors.
    pub fn symlink(&self, rel: &[u8], target: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let (tmp_dir, tmp) = (self.temp_dir()?, fresh_temp_name(&temp_key(rel)));
        let t = cstr(target)?;
        // SAFETY: valid dirfd and names.
        check(unsafe { libc::symlinkat(t.as_ptr(), tmp_dir.as_raw_fd(), tmp.as_ptr()) })?;
        rename_into_place(&tmp_dir, &tmp, &dir, &name)
    }

    /// Hard-links `existing` to `rel`, both beneath the root.
    ///
    /// # Errors
    /// Unsafe paths or I/O errors.
    pub fn hardlink(&self, existing: &[u8], rel: &[u8]) -> io::Result<()> {
        let (src_dir, src_name) = self.parent(existing)?;
        let (dir, name) = self.parent(rel)?;
        let (tmp_dir, tmp) = (self.temp_dir()?, fresh_temp_name(&temp_key(rel)));
        // SAFETY: valid dirfds and names; flags 0 never follows a symlink at `existing`.
        check(unsafe {
            libc::linkat(
                src_dir.as_raw_fd(),
                src_name.as_ptr(),
                tmp_dir.as_raw_fd(),
                tmp.as_ptr(),
                0,
            )
        })?;
        let renamed = rename_into_place(&tmp_dir, &tmp, &dir, &name);
        // Renaming a link onto another link of the same inode does nothing: the temp name stays.
        // SAFETY: valid dirfd and name.
        unsafe { libc::unlinkat(tmp_dir.as_raw_fd(), tmp.as_ptr(), 0) };
        renamed
    }

    /// Creates a fifo or device node.
    ///
    /// # Errors
    /// Unsafe path, or not permitted (devices need root).
    pub fn mknod(&self, rel: &[u8], mode: u32, rdev: u64) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let (tmp_dir, tmp) = (self.temp_dir()?, fresh_temp_name(&temp_key(rel)));
        // SAFETY: valid dirfd and name.
        check(unsafe {
            libc::mknodat(
                tmp_dir.as_raw_fd(),
                tmp.as_ptr(),
                mode as libc::mode_t,
                rdev as libc::dev_t,
            )
        })?;
        rename_into_place(&tmp_dir, &tmp, &dir, &name)
    }

    /// Applies owner, permissions and mtime to `rel` without following a symlink there.
    ///
    /// # Errors
    /// Unsafe path or I/O errors.
    pub fn set_meta(&self, rel: &[u8], meta: &Meta, is_symlink: bool) -> io::Result<()> {
        self.set_meta_with(rel, meta, is_symlink, None)
    }

    /// As `set_meta`, also making the entry's extended attributes and ACLs `xattrs` (on files
    /// and directories; a symlink keeps its own).
    ///
    /// # Errors
    /// As `set_meta`, or an attribute that cannot be set.
    pub fn set_meta_with(
        &self,
        rel: &[u8],
        meta: &Meta,
        is_symlink: bool,
        xattrs: Option<&Wanted>,
    ) -> io::Result<()> {
        let (dir, name) = if rel.is_empty() {
            (
                std::sync::Arc::new(self.open_beneath(b"", libc::O_PATH | libc::O_DIRECTORY, 0)?),
                CString::new(".").expect("no NUL"),
            )
        } else {
            self.parent(rel)?
        };
        apply_meta(&dir, &name, meta, is_symlink, self.set_owner, xattrs)
    }

    /// Removes a file, symlink, or a directory with everything under it.
    ///
    /// # Errors
    /// Unsafe path or I/O errors.
    pub fn remove(&self, rel: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        self.forget_parent();
        remove_at(&dir, &name)
    }

    /// Copies a file already under the root to another place under it (a rename detected at the
    /// source becomes a local copy instead of a transfer).
    ///
    /// # Errors
    /// Unsafe paths or I/O errors.
    pub fn local_copy(
        &self,
        from: &[u8],
        to: &[u8],
        meta: &Meta,
        expected: &[u8; 32],
        xattrs: Option<&Wanted>,
    ) -> io::Result<blake3::Hash> {
        let mut src = self.open_read(from)?;
        let (mut temp, _) = self.create_temp(to, false)?;
        let len = src.metadata()?.len();
        // The kernel copies the data extents (holes stay holes, no pass through user space);
        // what landed is then hashed from the page cache, as strict as hashing what was read.
        let hash = if kernel_copy::copy_extents(&src, &temp.file, len)? == Copied::Done {
            temp.file.set_len(len)?;
            kernel_copy::hash_range(&temp.file, len)?
        } else {
            // A kernel copy refused midway leaves both positions moved (its extent walk seeks).
            temp.file.set_len(0)?;
            temp.file.seek(SeekFrom::Start(0))?;
            src.seek(SeekFrom::Start(0))?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = io::Read::read(&mut src, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                temp.write_data(&buf[..n])?;
            }
            hasher.finalize()
        };
        // Only the content the source has may land under the final name.
        if hash.as_bytes() != expected {
            temp.discard();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "content differs from the source's (BLAKE3): not copied",
            ));
        }
        temp.commit_with(meta, self.set_owner, xattrs)?;
        Ok(hash)
    }

    /// Renames a file beneath the root to a name that must not exist yet (`renameat2` with
    /// `RENAME_NOREPLACE`): a Maildir flag change applied at the target without sending the
    /// message again, and never over another file. Neither name is followed if it is a symlink.
    ///
    /// # Errors
    /// Unsafe paths, `from` is not a regular file, `to` exists (`AlreadyExists`), or I/O errors.
    pub fn rename_new(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let (src_dir, src_name) = self.parent(from)?;
        let st = fstatat(&src_dir, &src_name)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(invalid(format!(
                "`{}` is not a regular file: not renamed",
                String::from_utf8_lossy(from)
            )));
        }
        let (dir, name) = self.parent(to)?;
        // SAFETY: valid dirfds and NUL-terminated names; renameat2 never follows a final symlink.
        check(unsafe {
            libc::renameat2(
                src_dir.as_raw_fd(),
                src_name.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        })
        .map(|_| ())
    }

    /// Says a call that writes beneath this root is about to run (before any of its effects),
    /// so the run's flush covers it even if this process dies first (`unsynced`).
    pub fn mark_written(&self) {
        crate::tree::unsynced::mark(self.dev, self.fd.as_fd());
    }

    /// Flushes the file system holding the root: durability paid once per run, not per file,
    /// and not at all when no writer of ours may have left anything unflushed there (a run
    /// that changed nothing). Every call that writes has returned before this one is made.
    ///
    /// # Errors
    /// I/O errors from `syncfs`.
    pub fn sync(&self) -> io::Result<()> {
        self.clean_temp_dir()?;
        let fd = self.open_beneath(b"", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        crate::tree::unsynced::sync(self.dev, fd.as_fd()).map(|_| ())
    }

    /// At the end of a run: leftovers no write of this run claimed are stale (their file is
    /// complete at the target or gone from the source) and go; so does `TEMP_DIR` once empty,
    /// the root's mtime kept. Partial files of this run's failed writes stay for the next run.
    fn clean_temp_dir(&self) -> io::Result<()> {
        let stale: Vec<CString> = self.with_leftovers(|m| m.drain().flat_map(|(_, v)| v).collect());
        let Ok(tmp) = self.open_beneath(TEMP_DIR.as_bytes(), libc::O_PATH | libc::O_DIRECTORY, 0)
        else {
            return Ok(());
        };
        for old in stale {
            // SAFETY: valid dirfd and name.
            unsafe { libc::unlinkat(tmp.as_raw_fd(), old.as_ptr(), 0) };
        }
        let name = cstr(TEMP_DIR.as_bytes())?;
        let mut cached = self.temp_dir.lock().unwrap_or_else(|p| p.into_inner());
        let removed = self.keeping_root_mtime(|| {
            // SAFETY: valid dirfd and name; AT_REMOVEDIR removes only an empty directory.
            Ok(
                unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) }
                    == 0,
            )
        })?;
        if removed {
            *cached = None;
        }
        Ok(())
    }
}

/// A file being written under a temp name; dropped without `commit`, it stays as a partial
/// file for the next run to use as a basis.
pub struct TempFile {
    /// `TEMP_DIR` and the temp name (this writer's alone) in it.
    tmp: DirFd,
    temp: CString,
    /// Where the file goes.
    dir: DirFd,
    name: CString,
    file: File,
    basis_name: Option<CString>,
    /// The file ends in a hole: its length must be set at the end.
    trailing_hole: bool,
}

impl TempFile {
    /// Writes `data`, leaving holes where whole 4 KiB blocks are zero (sparse files stay sparse).
    ///
    /// # Errors
    /// I/O errors, such as a full disk.
    pub fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        if !data.is_empty() {
            self.trailing_hole = write_sparse(&mut self.file, data)?;
        }
        Ok(())
    }

    /// Sets the final length (trailing holes), metadata, and renames the file into place, but
    /// only if the temp name still holds the inode this writer wrote: a file someone else put
    /// there (or a name someone removed) fails as a conflict, and no bytes but ours land.
    ///
    /// # Errors
    /// I/O errors; `AlreadyExists` for a conflict.
    pub fn commit(self, meta: &Meta, set_owner: bool) -> io::Result<()> {
        self.commit_with(meta, set_owner, None)
    }

    /// As `commit`, with the extended attributes and ACLs `xattrs` set on the temp file first:
    /// the file appears under its name with all of them, or not at all.
    ///
    /// # Errors
    /// As `commit`, or an attribute that cannot be set.
    pub fn commit_with(
        self,
        meta: &Meta,
        set_owner: bool,
        xattrs: Option<&Wanted>,
    ) -> io::Result<()> {
        if self.trailing_hole {
            let len = self.file.stream_position_len()?;
            self.file.set_len(len)?;
        }
        apply_meta_fd(&self.file, meta, set_owner, xattrs)?;
        let mut ours: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and stat buffer.
        check(unsafe { libc::fstat(self.file.as_raw_fd(), &mut ours) })?;
        let same = fstatat(&self.tmp, &self.temp)
            .is_ok_and(|st| (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino));
        if !same {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "conflict: another writer replaced or removed our temp file; not renamed into place",
            ));
        }
        rename_into_place(&self.tmp, &self.temp, &self.dir, &self.name)?;
        if let Some(b) = &self.basis_name {
            // SAFETY: valid dirfd and name.
            unsafe { libc::unlinkat(self.tmp.as_raw_fd(), b.as_ptr(), 0) };
        }
        Ok(())
    }

    /// Gives up: removes the temp file (used when the data turned out wrong, not on a crash).
    pub fn discard(self) {
        // SAFETY: valid dirfd and names.
        unsafe { libc::unlinkat(self.tmp.as_raw_fd(), self.temp.as_ptr(), 0) };
        if let Some(b) = &self.basis_name {
            // SAFETY: as above.
            unsafe { libc::unlinkat(self.tmp.as_raw_fd(), b.as_ptr(), 0) };
        }
    }
}

/// Writes `data` at the file's position, leaving holes where whole 4 KiB blocks are zero
/// (sparse files stay sparse); whether it ended in a hole (the length is then set at the end).
fn write_sparse(file: &mut File, data: &[u8]) -> io::Result<bool> {
    const BLOCK: usize = 4096;
    // Runs of data go out in one write; whole zero blocks become a seek (a hole).
    let mut trailing_hole = false;
    let mut start = 0;
    let mut run_start = 0;
    while start < data.len() {
        let end = (start + BLOCK).min(data.len());
        let chunk = &data[start..end];
        if chunk.len() == BLOCK && chunk.iter().all(|b| *b == 0) {
            if run_start < start {
                file.write_all(&data[run_start..start])?;
            }
            file.seek(SeekFrom::Current(BLOCK as i64))?;
            trailing_hole = true;
            run_start = end;
        }
        start = end;
    }
    if run_start < data.len() {
        file.write_all(&data[run_start..])?;
        trailing_hole = false;
    }
    Ok(trailing_hole)
}

trait StreamLen {
    fn stream_position_len(&self) -> io::Result<u64>;
}

impl StreamLen for File {
    fn stream_position_len(&self) -> io::Result<u64> {
        let mut f = self;
        f.stream_position()
    }
}

fn openat_file(
    dir: &OwnedFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<File> {
    // SAFETY: valid dirfd and name; the fd is owned right after.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens a regular file for reading, never blocking on a fifo or opening a device: the open is
/// non-blocking and the type checked on the fd.
fn open_regular(dir: &OwnedFd, name: &CStr) -> io::Result<File> {
    open_regular_stamped(dir, name).map(|(f, _)| f)
}

/// As `open_regular`, with the file's stamp from the same `fstat`.
fn open_regular_stamped(dir: &OwnedFd, name: &CStr) -> io::Result<(File, Stamp)> {
    let f = openat_file(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{}` is not a regular file: refused",
                name.to_string_lossy()
            ),
        ));
    }
    // O_NONBLOCK stays: it changes nothing for a regular file (and saves two fcntl calls a
    // file, which showed in hashing 20,000 small files).
    let stamp = Stamp::of_metadata(&meta);
    Ok((f, stamp))
}

fn fstatat(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dirfd, name and stat buffer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// Renames `tmp` (in `tmp_dir`) to `name` (in `dir`); on failure the temp entry is removed.
fn rename_into_place(tmp_dir: &OwnedFd, tmp: &CStr, dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    // rename never follows a symlink standing at `name`: it replaces the link itself. An empty
    // directory standing there is removed first; a non-empty one is never deleted as a side
    // effect (that is `--delete`'s decision, with its safety check).
    let rename = || {
        // SAFETY: valid dirfds and names.
        unsafe {
            libc::renameat(
                tmp_dir.as_raw_fd(),
                tmp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
            )
        }
    };
    let drop_temp = || {
        // SAFETY: valid dirfd and name.
        unsafe { libc::unlinkat(tmp_dir.as_raw_fd(), tmp.as_ptr(), 0) };
    };
    if rename() == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if matches!(
        e.raw_os_error(),
        Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
    ) {
        // SAFETY: valid dirfd and name; AT_REMOVEDIR removes only an empty directory.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            let why = io::Error::last_os_error();
            drop_temp();
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!(
                    "a directory that is not empty stands where the source has a file ({why}): left alone; remove it, or use --delete"
                ),
            ));
        }
        return check(rename()).map(|_| ()).inspect_err(|_| drop_temp());
    }
    drop_temp();
    if e.raw_os_error() == Some(libc::EXDEV) {
        return Err(another_file_system());
    }
    Err(e)
}

fn another_file_system() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "its directory is on another file system than the target root (a mount point inside the target): files are written in `{TEMP_DIR}` at the root and cannot be renamed across file systems"
        ),
    )
}

/// Whether an unnamed (`O_TMPFILE`) file can be given a name: through `/proc/self/fd`, which
/// a chroot or a container may lack.
fn unnamed_files_link() -> bool {
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// The names in a directory, `.` and `..` left out.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // SAFETY: dup of a valid fd.
    let dup = check(unsafe { libc::dup(dir.as_raw_fd()) })?;
    // SAFETY: fdopendir takes ownership of `dup`.
    let d = unsafe { libc::fdopendir(dup) };
    if d.is_null() {
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: `d` is a valid DIR stream until closedir.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let n = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    // SAFETY: closes the stream and `dup`.
    unsafe { libc::closedir(d) };
    Ok(out)
}

fn remove_at(dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid dirfd and name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) {
        return Err(e);
    }
    // A directory: empty it through an fd opened without following links, then remove it.
    let sub = File::from(openat_owned(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )?);
    let sub_fd: OwnedFd = sub.into();
    let names = list_dir(&sub_fd)?;
    for n in names {
        remove_at(&sub_fd, &n)?;
    }
    // SAFETY: valid dirfd and name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) }).map(|_| ())
}

fn openat_owned(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid dirfd and name.
    let fd =
        check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn timespec(ns: i128) -> libc::timespec {
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as libc::c_long,
    }
}

fn apply_meta(
    dir: &OwnedFd,
    name: &CStr,
    meta: &Meta,
    is_symlink: bool,
    set_owner: bool,
    xattrs: Option<&Wanted>,
) -> io::Result<()> {
    // Pin the entry itself (O_PATH, never following a link), then change it through that fd:
    // an entry swapped for a symlink after the check cannot redirect a chmod outside the root.
    // SAFETY: valid dirfd and name; the fd is owned right after.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and stat buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    let is_link_now = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    if is_link_now != is_symlink {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "`{}` changed type under us (a symlink appeared or went): refused",
                name.to_string_lossy()
            ),
        ));
    }
    let empty = c"";
    if set_owner {
        // SAFETY: valid fd; AT_EMPTY_PATH acts on the fd itself (the link, for a symlink).
        check(unsafe {
            libc::fchownat(
                fd.as_raw_fd(),
                empty.as_ptr(),
                meta.uid,
                meta.gid,
                libc::AT_EMPTY_PATH,
            )
        })?;
    }
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        timespec(meta.mtime_ns),
    ];
    if is_symlink {
        // SAFETY: valid dirfd, name and two timespecs; the link itself, never its target.
        return check(unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(|_| ());
    }
    // /proc/self/fd/N names the pinned inode: chmod and times reach it and nothing else.
    let proc_path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    if let Some(wanted) = xattrs {
        // Before the chmod: setting an ACL rewrites the group bits, the mode then puts them back.
        Handle::Pinned(&proc_path).apply(wanted, set_owner)?;
    }
    // SAFETY: valid path.
    check(unsafe { libc::chmod(proc_path.as_ptr(), (meta.mode & 0o7777) as libc::mode_t) })?;
    // SAFETY: valid path and two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, proc_path.as_ptr(), times.as_ptr(), 0) })
        .map(|_| ())
}

fn apply_meta_fd(
    file: &File,
    meta: &Meta,
    set_owner: bool,
    xattrs: Option<&Wanted>,
) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // A file we just created is ours already: skip the call when nothing would change.
    if set_owner && (meta.uid != uid || meta.gid != gid) {
        // SAFETY: valid fd.
        check(unsafe { libc::fchown(fd, meta.uid, meta.gid) })?;
    }
    if let Some(wanted) = xattrs {
        // After chown (it clears file capabilities), before chmod (an ACL rewrites group bits).
        Handle::Fd(fd).apply(wanted, set_owner)?;
    }
    // After chown: changing the owner clears setuid bits, so the mode comes second.
    // SAFETY: valid fd.
    check(unsafe { libc::fchmod(fd, (meta.mode & 0o7777) as libc::mode_t) })?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        timespec(meta.mtime_ns),
    ];
    // SAFETY: valid fd and two timespecs.
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime_ns: 1_600_000_000_123_456_789,
        }
    }

    #[test]
    fn peer_paths_are_checked() {
        for bad in [
            &b"/etc/passwd"[..],
            b"a/../../x",
            b"..",
            b"a//b",
            b"./a",
            b"",
            b"a\0b",
        ] {
            assert!(check_rel(bad).is_err(), "{bad:?}");
        }
        assert!(check_rel(b"a/b c/\xff").is_ok());
    }

    #[test]
    fn writes_never_go_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("evil")).unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let err = root
            .create_temp(b"evil/owned", false)
            .err()
            .expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(root.mkdir(b"evil/sub", 0o755).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn temp_then_rename_with_metadata_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        root.mkdir(b"d", 0o750).unwrap();
        let (mut t, basis) = root.create_temp(b"d/f", false).unwrap();
        assert!(basis.is_none());
        t.write_data(&[0u8; 1 << 20]).unwrap();
        t.write_data(b"tail").unwrap();
        assert!(
            !dir.path().join("d/f").exists(),
            "no partial file under the final name"
        );
        t.commit(&meta(0o640), false).unwrap();
        let m = std::fs::metadata(dir.path().join("d/f")).unwrap();
        assert_eq!(
            (m.len(), m.mode() & 0o7777, m.mtime_nsec()),
            ((1 << 20) + 4, 0o640, 123_456_789)
        );
        assert!(
            m.blocks() * 512 < 64 * 1024,
            "zeros became holes: {} blocks",
            m.blocks()
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("d")).unwrap().count(),
            1,
            "no temp left"
        );
    }

    /// A POSIX ACL as the kernel stores it: version 2, then (tag, perm, id) entries.
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend(tag.to_le_bytes());
            v.extend(perm.to_le_bytes());
            v.extend(id.to_le_bytes());
        }
        v
    }

    #[test]
    fn acls_and_xattrs_land_with_the_file_and_are_made_exact() {
        use crate::tree::xattr::{ACL_ACCESS, ACL_DEFAULT, Keep, Xattr, read_path};
        const ANY: u32 = u32::MAX;
        let x = |name: &[u8], value: &[u8]| Xattr {
            name: name.to_vec(),
            value: value.to_vec(),
        };
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        root.mkdir(b"d", 0o755).unwrap();
        // user rw-, user 1000 rw-, group r--, mask rw-, other r--: mode 0664.
        let access = acl(&[
            (0x01, 6, ANY),
            (0x02, 6, 1000),
            (0x04, 4, ANY),
            (0x10, 6, ANY),
            (0x20, 4, ANY),
        ]);
        let wanted = Wanted {
            keep: Keep::ALL,
            list: vec![x(ACL_ACCESS, &access), x(b"user.origin", b"old-web")],
        };
        let (mut t, _) = root.create_temp(b"d/f", false).unwrap();
        t.write_data(b"shared").unwrap();
        match t.commit_with(&meta(0o664), false, Some(&wanted)) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
            r => r.unwrap(),
        }
        let f = dir.path().join("d/f");
        assert_eq!(read_path(&f, Keep::ALL).unwrap(), wanted.list);
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o664);
        // A default ACL on a directory, then one the source no longer has: removed.
        let default = acl(&[
            (0x01, 7, ANY),
            (0x04, 5, ANY),
            (0x08, 5, 100),
            (0x10, 5, ANY),
            (0x20, 5, ANY),
        ]);
        let on_dir = Wanted {
            keep: Keep::ALL,
            list: vec![x(ACL_DEFAULT, &default)],
        };
        let dir_meta = meta(0o040755);
        root.set_meta_with(b"d", &dir_meta, false, Some(&on_dir))
            .unwrap();
        assert_eq!(
            read_path(&dir.path().join("d"), Keep::ALL).unwrap(),
            on_dir.list
        );
        let none = Wanted {
            keep: Keep::ALL,
            list: Vec::new(),
        };
        root.set_meta_with(b"d/f", &meta(0o644), false, Some(&none))
            .unwrap();
        assert!(read_path(&f, Keep::ALL).unwrap().is_empty());
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o644);
    }

    /// A pid no process has: a child that ran and was reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    }

    /// The temp files in the root's temp directory.
    fn temps(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(TEMP_DIR))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// What a writer that died leaves: its temp file under its (dead) pid.
    fn leave_partial(root: &Path, rel: &[u8], content: &[u8]) {
        std::fs::create_dir_all(root.join(TEMP_DIR)).unwrap();
        let name = format!("{}-{:x}-0", temp_key(rel), dead_pid());
        std::fs::write(root.join(TEMP_DIR).join(name), content).unwrap();
    }

    #[test]
    fn an_interrupted_write_leaves_a_partial_that_becomes_the_next_basis() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let (mut t, _) = root.create_temp(b"big", true).unwrap();
        t.write_data(b"first half").unwrap();
        drop(t);
        assert!(!dir.path().join("big").exists());
        assert_eq!(temps(dir.path()).len(), 1, "the temp file stays");
        // The writer died: its file is a leftover for the next run, which starts from it.
        let ours = temps(dir.path()).remove(0);
        let theirs = format!("{}-{:x}-0", temp_key(b"big"), dead_pid());
        std::fs::rename(
            dir.path().join(TEMP_DIR).join(ours),
            dir.path().join(TEMP_DIR).join(theirs),
        )
        .unwrap();
        let next = SafeRoot::open(dir.path(), false).unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut next.open_partial(b"big").unwrap(), &mut text).unwrap();
        assert_eq!(text, "first half", "the signature's basis");
        let (t, basis) = next.create_temp(b"big", true).unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut basis.expect("partial reused"), &mut text).unwrap();
        assert_eq!(text, "first half");
        t.commit(&meta(0o644), false).unwrap();
        let mtime = std::fs::metadata(dir.path()).unwrap().mtime_nsec();
        next.sync().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("big")],
            "temp dir removed"
        );
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().mtime_nsec(),
            mtime,
            "the root's mtime is not ours to change"
        );
    }

    #[test]
    fn stale_leftovers_are_removed_and_live_writers_temps_are_not() {
        let dir = tempfile::tempdir().unwrap();
        leave_partial(dir.path(), b"gone-from-source", b"old");
        leave_partial(dir.path(), b"rewritten", b"old");
        let root = SafeRoot::open(dir.path(), false).unwrap();
        // Another writer, alive (this process, another root handle), is at work.
        let other = SafeRoot::open(dir.path(), false).unwrap();
        let (mut busy, _) = other.create_temp(b"busy", false).unwrap();
        busy.write_data(b"in progress").unwrap();
        let (t, basis) = root.create_temp(b"rewritten", false).unwrap();
        assert!(basis.is_none());
        t.commit(&meta(0o644), false).unwrap();
        assert_eq!(temps(dir.path()).len(), 2, "{:?}", temps(dir.path()));
        root.sync().unwrap();
        assert_eq!(
            temps(dir.path()).len(),
            1,
            "only the live writer's temp stays"
        );
        busy.commit(&meta(0o644), false).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("busy")).unwrap(),
            b"in progress"
        );
    }

    #[test]
    fn two_writers_of_one_path_each_commit_only_their_own_bytes() {
        // Issue 12: a second writer (a run on the same tree, an agent still draining frames)
        // took over the first one's temp name, and the first one's commit put the second
        // one's unfinished bytes under the final name.
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let (mut first, _) = root.create_temp(b"page.html", true).unwrap();
        first.write_data(b"first writer, complete").unwrap();
        let (mut second, _) = root.create_temp(b"page.html", true).unwrap();
        second.write_data(b"second wri").unwrap();
        first.commit(&meta(0o644), false).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("page.html")).unwrap(),
            b"first writer, complete"
        );
        second.write_data(b"ter, complete too").unwrap();
        second.commit(&meta(0o644), false).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("page.html")).unwrap(),
            b"second writer, complete too"
        );
    }

    #[test]
    fn a_commit_whose_temp_name_was_taken_over_fails_as_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let (mut t, _) = root.create_temp(b"f", false).unwrap();
        t.write_data(b"ours").unwrap();
        let ours = dir.path().join(TEMP_DIR).join(&temps(dir.path())[0]);
        std::fs::write(dir.path().join("intruder"), b"someone else's half").unwrap();
        std::fs::rename(dir.path().join("intruder"), &ours).unwrap();
        let err = t.commit(&meta(0o644), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(!dir.path().join("f").exists(), "nothing renamed into place");
        // And a temp name someone removed fails the same way.
        let (t, _) = root.create_temp(b"g", false).unwrap();
        for name in temps(dir.path()) {
            std::fs::remove_file(dir.path().join(TEMP_DIR).join(name)).unwrap();
        }
        assert!(t.commit(&meta(0o644), false).is_err());
        assert!(!dir.path().join("g").exists());
    }

    #[test]
    fn user_files_named_like_temp_files_are_left_alone() {
        // Issue 12: `.x.th-partial` was taken for our partial of `x`, unlinked and replaced.
        let dir = tempfile::tempdir().unwrap();
        for name in [".x.th-partial", ".x.th-partial.basis", ".x.th-tmp-1"] {
            std::fs::write(dir.path().join(name), b"user data").unwrap();
        }
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let (mut t, basis) = root.create_temp(b"x", true).unwrap();
        assert!(basis.is_none(), "a user file is no basis");
        t.write_data(b"x").unwrap();
        t.commit(&meta(0o644), false).unwrap();
        root.symlink(b"x", b"target").unwrap();
        root.sync().unwrap();
        for name in [".x.th-partial", ".x.th-partial.basis", ".x.th-tmp-1"] {
            assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"user data");
        }
    }

    #[test]
    fn names_of_255_bytes_are_written() {
        // Issue 12: `.{name}.th-partial` went over NAME_MAX for names over 243 bytes.
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let name = |c: char| c.to_string().repeat(255);
        let (mut t, _) = root.create_temp(name('f').as_bytes(), true).unwrap();
        t.write_data(b"long").unwrap();
        t.commit(&meta(0o644), false).unwrap();
        root.symlink(name('s').as_bytes(), b"x").unwrap();
        root.hardlink(name('f').as_bytes(), name('h').as_bytes())
            .unwrap();
        root.mknod(name('p').as_bytes(), libc::S_IFIFO | 0o600, 0)
            .unwrap();
        root.local_copy(
            name('f').as_bytes(),
            name('c').as_bytes(),
            &meta(0o644),
            blake3::hash(b"long").as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join(name('c'))).unwrap(), b"long");
        assert_eq!(std::fs::read(dir.path().join(name('h'))).unwrap(), b"long");
        assert!(
            std::fs::symlink_metadata(dir.path().join(name('s')))
                .unwrap()
                .is_symlink()
        );
        assert!(dir.path().join(name('p')).exists());
        assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
        assert!(
            TEMP_DIR.len() + 1 + fresh_temp_name(&temp_key(b"x")).as_bytes().len() < 80,
            "temp names stay short"
        );
    }

    /// A 9 MiB file with data at 0, 4 MiB and its last byte, holes between.
    fn sparse_source(dir: &Path) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(dir.join("sparse")).unwrap();
        f.set_len(9 << 20).unwrap();
        f.write_all_at(&[7u8; 5000], 0).unwrap();
        f.write_all_at(&[9u8; 70_000], 4 << 20).unwrap();
        f.write_all_at(b"z", (9 << 20) - 1).unwrap();
        std::fs::read(dir.join("sparse")).unwrap()
    }

    fn copy_sparse(refused: bool) {
        let dir = tempfile::tempdir().unwrap();
        let content = sparse_source(dir.path());
        let root = SafeRoot::open(dir.path(), false).unwrap();
        kernel_copy::REFUSED.with(|r| r.set(refused));
        let hash = root
            .local_copy(
                b"sparse",
                b"copy",
                &meta(0o644),
                blake3::hash(&content).as_bytes(),
                None,
            )
            .unwrap();
        kernel_copy::REFUSED.with(|r| r.set(false));
        assert_eq!(hash, blake3::hash(&content));
        assert_eq!(std::fs::read(dir.path().join("copy")).unwrap(), content);
        let blocks = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().blocks();
        assert!(
            blocks("copy") <= blocks("sparse") + 16,
            "holes kept: {} blocks copied from {}",
            blocks("copy"),
            blocks("sparse")
        );
        assert!(blocks("copy") < (9 << 20) / 512 / 4, "{}", blocks("copy"));
        assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
    }

    #[test]
    fn a_local_copy_of_a_sparse_file_keeps_its_holes() {
        copy_sparse(false);
    }

    #[test]
    fn a_local_copy_without_copy_file_range_copies_through_user_space() {
        copy_sparse(true);
    }

    #[test]
    fn a_local_copy_of_a_changed_source_is_refused() {
        for refused in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let content = sparse_source(dir.path());
            {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.path().join("sparse"))
                    .unwrap();
                f.write_all_at(b"changed", 6 << 20).unwrap();
            }
            let root = SafeRoot::open(dir.path(), false).unwrap();
            kernel_copy::REFUSED.with(|r| r.set(refused));
            let err = root
                .local_copy(
                    b"sparse",
                    b"copy",
                    &meta(0o644),
                    blake3::hash(&content).as_bytes(),
                    None,
                )
                .unwrap_err();
            kernel_copy::REFUSED.with(|r| r.set(false));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(!dir.path().join("copy").exists());
            assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
        }
    }

    #[test]
    fn the_lock_admits_one_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = SafeRoot::open(dir.path(), false).unwrap();
        let second = SafeRoot::open(dir.path(), false).unwrap();
        first.lock().unwrap();
        first.lock().unwrap();
        let err = second.lock().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        drop(first);
        second.lock().unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_temp_dir_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(TEMP_DIR)).unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        assert!(root.create_temp(b"f", false).is_err());
        assert!(root.symlink(b"l", b"x").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn metadata_never_reaches_through_a_swapped_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("shadow");
        std::fs::write(&secret, b"x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("d")).unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        assert!(root.set_meta(b"d", &meta(0o777), false).is_err());
        assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_planted_fifo_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TEMP_DIR)).unwrap();
        let leftover = format!("{TEMP_DIR}/{}-{:x}-0", temp_key(b"g"), dead_pid());
        for name in ["f", leftover.as_str()] {
            let c = CString::new(dir.path().join(name).as_os_str().as_bytes()).unwrap();
            // SAFETY: valid path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        let root = SafeRoot::open(dir.path(), false).unwrap();
        assert!(root.open_read(b"f").is_err());
        assert!(root.open_partial(b"g").is_err());
        let (mut t, basis) = root.create_temp(b"g", true).unwrap();
        assert!(basis.is_none());
        t.write_data(b"ok").unwrap();
        t.commit(&meta(0o644), false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"ok");
    }

    #[test]
    fn symlinks_hardlinks_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        root.symlink(b"l", b"/etc/passwd").unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join("l")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            root.open_read(b"l").is_err(),
            "reading through a link is refused"
        );
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        root.hardlink(b"a", b"b").unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("b")).unwrap().nlink(), 2);
        std::fs::create_dir_all(dir.path().join("t/u/v")).unwrap();
        std::fs::write(dir.path().join("t/u/v/w"), b"x").unwrap();
        root.remove(b"t").unwrap();
        assert!(!dir.path().join("t").exists());
    }

    #[test]
    fn a_whole_file_lands_complete_with_its_metadata_and_never_under_a_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        root.mkdir(b"d", 0o755).unwrap();
        let mut data = vec![0u8; 3 * 4096];
        data.extend_from_slice(b"tail");
        let hash = *blake3::hash(&data).as_bytes();
        root.write_whole(b"d/new", &data, &meta(0o640), None, &hash)
            .unwrap();
        let m = std::fs::metadata(dir.path().join("d/new")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("d/new")).unwrap(), data);
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.mtime_nsec(), 123_456_789);
        assert!(
            m.blocks() * 512 < data.len() as u64,
            "zero blocks stay holes"
        );
        // A file of this name, then a symlink there: replaced, the link itself (not its target).
        std::fs::write(dir.path().join("d/old"), b"before").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d/link")).unwrap();
        for name in [&b"d/old"[..], b"d/link"] {
            let h = *blake3::hash(b"after").as_bytes();
            root.write_whole(name, b"after", &meta(0o644), None, &h)
                .unwrap();
        }
        assert_eq!(std::fs::read(dir.path().join("d/old")).unwrap(), b"after");
        assert!(
            std::fs::symlink_metadata(dir.path().join("d/link"))
                .unwrap()
                .is_file()
        );
        assert_eq!(std::fs::read(outside.path()).unwrap(), b"");
        // Content that is not the sender's is never written.
        let err = root
            .write_whole(b"d/bad", b"garbled", &meta(0o644), None, &hash)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!dir.path().join("d/bad").exists());
        // A directory with content in the way is left alone; an empty one is replaced.
        std::fs::create_dir_all(dir.path().join("d/full/x")).unwrap();
        std::fs::create_dir(dir.path().join("d/empty")).unwrap();
        let h = *blake3::hash(b"f").as_bytes();
        let err = root
            .write_whole(b"d/full", b"f", &meta(0o644), None, &h)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::DirectoryNotEmpty, "{err}");
        assert!(dir.path().join("d/full/x").is_dir());
        root.write_whole(b"d/empty", b"f", &meta(0o644), None, &h)
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("d/empty")).unwrap(), b"f");
        // No temp name anywhere: the directory holds the files, the temp directory nothing.
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["empty", "full", "link", "new", "old"]);
        assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
    }

    #[test]
    fn a_whole_file_never_goes_through_a_symlinked_directory() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("evil")).unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let h = *blake3::hash(b"x").as_bytes();
        let err = root
            .write_whole(b"evil/owned", b"x", &meta(0o644), None, &h)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
