//! The BLAKE3 of a file's content, read once and checked not to have changed meanwhile: the
//! hash copies, verifications and `--checksum` agree on, computed the same way everywhere.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;

use super::stamp::Watched;

/// Reads of a big file go in buffers of this size, hashed on every core (`update_rayon`).
const BIG_READ: usize = 1 << 20;

/// Files at least this big are hashed with the tree's parallelism inside the file: below it
/// the split costs more than it brings (BLAKE3's own advice is 128 KiB).
const PARALLEL_FROM: u64 = 4 << 20;

thread_local! {
    /// One read buffer per thread, reused file after file: hashing 20,000 small files must not
    /// allocate (and zero) 20,000 buffers.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// BLAKE3 and length of an open file's content, read to its end.
///
/// # Errors
/// Read errors, and a file that changed while it was read (`stamp::is_changed`).
pub fn digest(file: File) -> io::Result<([u8; 32], u64)> {
    digest_watched(Watched::new(file)?)
}

/// As `digest`, for a file opened with its stamp (`SafeRoot::open_read_watched`).
///
/// # Errors
/// As `digest`.
pub fn digest_watched(mut file: Watched) -> io::Result<([u8; 32], u64)> {
    let size = file.before().size;
    if size >= PARALLEL_FROM {
        // SAFETY: a valid fd; advice only (a failure changes nothing).
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    }
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    BUFFER.with_borrow_mut(|buf| -> io::Result<()> {
        // One byte more than the size, so the end shows without another read.
        let want = if size >= PARALLEL_FROM {
            BIG_READ
        } else {
            (size as usize + 1).min(BIG_READ)
        };
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let buf = &mut buf[..want];
        loop {
            let n = match file.read(buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if size >= PARALLEL_FROM {
                hasher.update_rayon(&buf[..n]);
            } else {
                hasher.update(&buf[..n]);
            }
            len += n as u64;
        }
    })?;
    Ok((*hasher.finalize().as_bytes(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_blake3_of_the_content_small_and_big() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 1, 4095, 70_000, (PARALLEL_FROM as usize) + 12_345] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let p = dir.path().join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let (h, len) = digest(File::open(&p).unwrap()).unwrap();
            assert_eq!(len, size as u64);
            assert_eq!(h, *blake3::hash(&data).as_bytes(), "size {size}");
        }
    }
}
