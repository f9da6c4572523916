//! Every write under a target root, resolved beneath it without following any symlink.
//!
//! Paths come from a peer and are never trusted: each is checked (no `..`, no absolute, no NUL)
//! and resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a symlink planted in
//! the target cannot redirect a write outside the root. Files are written to a temp name in
//! their directory and renamed into place.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Metadata applied to what we create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
}

/// Suffix of the temp file a transfer writes before its rename; a leftover one is a partial
/// file from an interrupted run and serves as a delta basis next time.
pub const PARTIAL_SUFFIX: &str = ".th-partial";

/// The kernel's `struct open_how` (libc marks its own non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// The partial file of `path`: `.name.th-partial` in the same directory.
pub fn partial_name(path: &[u8]) -> Vec<u8> {
    let (dir, name) = match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&path[..0], path),
    };
    let mut p = dir.to_vec();
    p.push(b'.');
    p.extend_from_slice(name);
    p.extend_from_slice(PARTIAL_SUFFIX.as_bytes());
    p
}

/// A directory every operation stays beneath.
#[derive(Debug)]
pub struct SafeRoot {
    fd: OwnedFd,
    path: PathBuf,
    /// Whether to set owners (only root may).
    pub set_owner: bool,
    /// The last parent directory resolved: files arrive grouped by directory, so most writes
    /// skip the path walk.
    last_parent: std::sync::Mutex<Option<(Vec<u8>, std::sync::Arc<OwnedFd>)>>,
}

type DirFd = std::sync::Arc<OwnedFd>;

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| invalid("path contains a NUL byte"))
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
        Ok(SafeRoot {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
            // SAFETY: geteuid has no preconditions.
            set_owner: unsafe { libc::geteuid() } == 0,
            last_parent: std::sync::Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        let mut last = self.last_parent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((path, fd)) = last.as_ref()
            && path.as_slice() == dir
        {
            return Ok((fd.clone(), cstr(name)?));
        }
        let fd =
            std::sync::Arc::new(self.open_beneath(dir, libc::O_PATH | libc::O_DIRECTORY, 0)?);
        *last = Some((dir.to_vec(), fd.clone()));
        Ok((fd, cstr(name)?))
    }

    /// Forgets the cached parent (a directory was removed or replaced).
    fn forget_parent(&self) {
        *self.last_parent.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Opens a regular file for reading (a symlink at `rel` is refused).
    ///
    /// # Errors
    /// Missing file, unsafe path, or a symlink.
    pub fn open_read(&self, rel: &[u8]) -> io::Result<File> {
        // The parent was resolved beneath the root; the last component is opened without
        // following a symlink, so the whole path stays safe.
        let (dir, name) = self.parent(rel)?;
        open_regular(&dir, &name).map_err(|e| {
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

    /// Starts writing `rel`: a temp file beside it, renamed into place by `TempFile::commit`.
    /// A partial file left by an interrupted run is moved aside and returned as a basis.
    ///
    /// # Errors
    /// Unsafe path, missing parent directory, or I/O errors.
    pub fn create_temp(
        &self,
        rel: &[u8],
        reuse_partial: bool,
    ) -> io::Result<(TempFile, Option<File>)> {
        let (dir, name) = self.parent(rel)?;
        let mut partial = name.as_bytes().to_vec();
        partial.insert(0, b'.');
        partial.extend_from_slice(PARTIAL_SUFFIX.as_bytes());
        let partial = cstr(&partial)?;
        // A leftover partial becomes a basis: move it aside so the new write can start fresh.
        let mut basis_name = partial.as_bytes().to_vec();
        basis_name.extend_from_slice(b".basis");
        let basis_name = cstr(&basis_name)?;
        // SAFETY: valid dirfd and names.
        let moved = reuse_partial
            && unsafe {
                libc::renameat(
                    dir.as_raw_fd(),
                    partial.as_ptr(),
                    dir.as_raw_fd(),
                    basis_name.as_ptr(),
                )
            } == 0;
        let basis = if moved {
            open_regular(&dir, &basis_name).ok()
        } else {
            None
        };
        // A fresh file of our own: whatever stood under the temp name (a planted fifo, a hard
        // link to something else) is unlinked first, never opened or truncated through.
        // SAFETY: valid dirfd and name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), partial.as_ptr(), 0) };
        let file = openat_file(
            &dir,
            &partial,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )?;
        Ok((
            TempFile {
                dir,
                temp: partial,
                name,
                file,
                basis_name: moved.then_some(basis_name),
                trailing_hole: false,
            },
            basis,
        ))
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
        let tmp = temp_name(&name);
        let t = cstr(target)?;
        // SAFETY: valid dirfd and names.
        check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), tmp.as_ptr()) })?;
        rename_into_place(&dir, &tmp, &name)
    }

    /// Hard-links `existing` to `rel`, both beneath the root.
    ///
    /// # Errors
    /// Unsafe paths or I/O errors.
    pub fn hardlink(&self, existing: &[u8], rel: &[u8]) -> io::Result<()> {
        let (src_dir, src_name) = self.parent(existing)?;
        let (dir, name) = self.parent(rel)?;
        let tmp = temp_name(&name);
        // SAFETY: valid dirfds and names; flags 0 never follows a symlink at `existing`.
        check(unsafe {
            libc::linkat(
                src_dir.as_raw_fd(),
                src_name.as_ptr(),
                dir.as_raw_fd(),
                tmp.as_ptr(),
                0,
            )
        })?;
        rename_into_place(&dir, &tmp, &name)
    }

    /// Creates a fifo or device node.
    ///
    /// # Errors
    /// Unsafe path, or not permitted (devices need root).
    pub fn mknod(&self, rel: &[u8], mode: u32, rdev: u64) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let tmp = temp_name(&name);
        // SAFETY: valid dirfd and name.
        check(unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                mode as libc::mode_t,
                rdev as libc::dev_t,
            )
        })?;
        rename_into_place(&dir, &tmp, &name)
    }

    /// Applies owner, permissions and mtime to `rel` without following a symlink there.
    ///
    /// # Errors
    /// Unsafe path or I/O errors.
    pub fn set_meta(&self, rel: &[u8], meta: &Meta, is_symlink: bool) -> io::Result<()> {
        let (dir, name) = if rel.is_empty() {
            (
                std::sync::Arc::new(self.open_beneath(b"", libc::O_PATH | libc::O_DIRECTORY, 0)?),
                CString::new(".").expect("no NUL"),
            )
        } else {
            self.parent(rel)?
        };
        apply_meta(&dir, &name, meta, is_symlink, self.set_owner)
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
    ) -> io::Result<blake3::Hash> {
        let mut src = self.open_read(from)?;
        let (mut temp, _) = self.create_temp(to, false)?;
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
        let hash = hasher.finalize();
        // Only the content the source has may land under the final name.
        if hash.as_bytes() != expected {
            temp.discard();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "content differs from the source's (BLAKE3): not copied",
            ));
        }
        temp.commit(meta, self.set_owner)?;
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

    /// Flushes the file system holding the root: durability paid once per run, not per file.
    ///
    /// # Errors
    /// I/O errors from `syncfs`.
    pub fn sync(&self) -> io::Result<()> {
        let fd = self.open_beneath(b"", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        // SAFETY: valid fd.
        check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(|_| ())
    }
}

/// A file being written under a temp name; dropped without `commit`, it stays as a partial
/// file for the next run to use as a basis.
pub struct TempFile {
    dir: DirFd,
    temp: CString,
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
        const BLOCK: usize = 4096;
        // Runs of data go out in one write; whole zero blocks become a seek (a hole).
        let mut start = 0;
        let mut run_start = 0;
        while start < data.len() {
            let end = (start + BLOCK).min(data.len());
            let chunk = &data[start..end];
            if chunk.len() == BLOCK && chunk.iter().all(|b| *b == 0) {
                if run_start < start {
                    self.file.write_all(&data[run_start..start])?;
                }
                self.file.seek(SeekFrom::Current(BLOCK as i64))?;
                self.trailing_hole = true;
                run_start = end;
            }
            start = end;
        }
        if run_start < data.len() {
            self.file.write_all(&data[run_start..])?;
            self.trailing_hole = false;
        }
        Ok(())
    }

    /// Sets the final length (trailing holes), metadata, and renames the file into place.
    ///
    /// # Errors
    /// I/O errors.
    pub fn commit(self, meta: &Meta, set_owner: bool) -> io::Result<()> {
        if self.trailing_hole {
            let len = self.file.stream_position_len()?;
            self.file.set_len(len)?;
        }
        apply_meta_fd(&self.file, meta, set_owner)?;
        rename_into_place(&self.dir, &self.temp, &self.name)?;
        if let Some(b) = &self.basis_name {
            // SAFETY: valid dirfd and name.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), b.as_ptr(), 0) };
        }
        Ok(())
    }

    /// Gives up: removes the temp file (used when the data turned out wrong, not on a crash).
    pub fn discard(self) {
        // SAFETY: valid dirfd and names.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.temp.as_ptr(), 0) };
        if let Some(b) = &self.basis_name {
            // SAFETY: as above.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), b.as_ptr(), 0) };
        }
    }
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

fn temp_name(name: &CStr) -> CString {
    let mut t = b".".to_vec();
    t.extend_from_slice(name.to_bytes());
    t.extend_from_slice(format!(".th-tmp-{}", std::process::id()).as_bytes());
    CString::new(t).expect("no NUL in a checked name")
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
/// non-blocking, the type checked on the fd, then the fd made blocking again.
fn open_regular(dir: &OwnedFd, name: &CStr) -> io::Result<File> {
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
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(f)
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

fn rename_into_place(dir: &OwnedFd, tmp: &CStr, name: &CStr) -> io::Result<()> {
    // rename never follows a symlink standing at `name`: it replaces the link itself. An empty
    // directory standing there is removed first; a non-empty one is never deleted as a side
    // effect (that is `--delete`'s decision, with its safety check).
    // SAFETY: valid dirfd and names.
    if unsafe {
        libc::renameat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
        )
    } == 0
    {
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
            // SAFETY: valid dirfd and name.
            unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!(
                    "a directory that is not empty stands where the source has a file ({why}): left alone; remove it, or use --delete"
                ),
            ));
        }
        // SAFETY: as above.
        check(unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
            )
        })?;
        return Ok(());
    }
    // SAFETY: valid dirfd and name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    Err(e)
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
    let names: Vec<CString> = {
        let dup = check(unsafe { libc::dup(sub_fd.as_raw_fd()) })?;
        // SAFETY: fdopendir takes ownership of `dup`.
        let d = unsafe { libc::fdopendir(dup) };
        if d.is_null() {
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
        out
    };
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
    // SAFETY: valid path.
    check(unsafe { libc::chmod(proc_path.as_ptr(), (meta.mode & 0o7777) as libc::mode_t) })?;
    // SAFETY: valid path and two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, proc_path.as_ptr(), times.as_ptr(), 0) })
        .map(|_| ())
}

fn apply_meta_fd(file: &File, meta: &Meta, set_owner: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // A file we just created is ours already: skip the call when nothing would change.
    if set_owner && (meta.uid != uid || meta.gid != gid) {
        // SAFETY: valid fd.
        check(unsafe { libc::fchown(fd, meta.uid, meta.gid) })?;
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

    #[test]
    fn an_interrupted_write_leaves_a_partial_that_becomes_the_next_basis() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path(), false).unwrap();
        let (mut t, _) = root.create_temp(b"big", true).unwrap();
        t.write_data(b"first half").unwrap();
        drop(t); // the process died here
        assert!(!dir.path().join("big").exists());
        let (t, basis) = root.create_temp(b"big", true).unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut basis.expect("partial reused"), &mut text).unwrap();
        assert_eq!(text, "first half");
        t.commit(&meta(0o644), false).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("big")]);
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
        for name in ["f", ".g.th-partial"] {
            let c = CString::new(dir.path().join(name).as_os_str().as_bytes()).unwrap();
            // SAFETY: valid path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        let root = SafeRoot::open(dir.path(), false).unwrap();
        assert!(root.open_read(b"f").is_err());
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
}
