//! In-kernel copies between two open files (`copy_file_range`) that keep the source's holes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// What a kernel copy came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// The data extents of `0..len` are in the destination (its length is not set here).
    Done,
    /// This kernel or file system cannot copy between these files: copy through user space.
    Unsupported,
}

#[cfg(test)]
thread_local! {
    /// Tests force the user-space path on their own thread.
    pub static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Copies the data extents of `src`'s first `len` bytes to the same offsets of `dst`, walking
/// them with `SEEK_DATA`/`SEEK_HOLE` so holes stay holes (a plain `copy_file_range` fills them).
///
/// # Errors
/// I/O errors other than the ones that mean "not supported here".
pub fn copy_extents(src: &File, dst: &File, len: u64) -> io::Result<Copied> {
    let mut pos = 0u64;
    while pos < len {
        let Some((start, end)) = next_extent(src, pos, len)? else {
            break;
        };
        let mut off_in = to_off(start)?;
        let mut off_out = off_in;
        let end = to_off(end)?;
        while off_in < end {
            // Refused after the extent walk has seeked, as a kernel without the call would.
            #[cfg(test)]
            if REFUSED.with(std::cell::Cell::get) {
                return Ok(Copied::Unsupported);
            }
            let want = usize::try_from(end - off_in)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            // SAFETY: valid fds; the offsets are ours, so neither file position moves.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(
                        libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EBADF,
                    ) => Ok(Copied::Unsupported),
                    _ => Err(err),
                };
            }
            if n == 0 {
                // The source got shorter: what was copied is checked by its hash.
                return Ok(Copied::Done);
            }
        }
        pos = u64::try_from(end).unwrap_or(len);
    }
    Ok(Copied::Done)
}

/// The next data extent at or after `pos`, clipped to `len`; `None` when only a hole is left.
/// A file system without `SEEK_DATA` has one extent: the whole rest.
fn next_extent(src: &File, pos: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    let fd = src.as_raw_fd();
    // SAFETY: valid fd; lseek only moves this descriptor's position, which we do not use.
    let data = unsafe { libc::lseek(fd, to_off(pos)?, libc::SEEK_DATA) };
    if data < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            Some(libc::EINVAL | libc::EOPNOTSUPP) => Ok(Some((pos, len))),
            _ => Err(err),
        };
    }
    let data = u64::try_from(data).unwrap_or(len);
    if data >= len {
        return Ok(None);
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(fd, to_off(data)?, libc::SEEK_HOLE) };
    let hole = if hole < 0 {
        len
    } else {
        u64::try_from(hole).unwrap_or(len).min(len)
    };
    Ok(Some((data, hole)))
}

fn to_off(n: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// BLAKE3 of `file`'s first `len` bytes, read by offset (the file position is left alone).
///
/// # Errors
/// I/O errors.
pub fn hash_range(file: &File, len: u64) -> io::Result<blake3::Hash> {
    use std::os::unix::fs::FileExt;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    while pos < len {
        let want = usize::try_from(len - pos)
            .unwrap_or(buf.len())
            .min(buf.len());
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn extents_are_copied_and_holes_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let src = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("s"))
            .unwrap();
        src.set_len(8 << 20).unwrap();
        src.write_all_at(&[3u8; 10_000], 2 << 20).unwrap();
        let dst = File::create(dir.path().join("d")).unwrap();
        assert_eq!(copy_extents(&src, &dst, 8 << 20).unwrap(), Copied::Done);
        dst.set_len(8 << 20).unwrap();
        let want = std::fs::read(dir.path().join("s")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("d")).unwrap(), want);
        assert!(dst.metadata().unwrap().blocks() <= src.metadata().unwrap().blocks() + 16);
        assert_eq!(hash_range(&src, 8 << 20).unwrap(), blake3::hash(&want));
    }
}
