//! Whether a source file changed while we read it: its inode's size, mtime and ctime (to the
//! nanosecond) before and after the read. A torn read must never be presented as a copy.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

/// What a change to a file's content moves: its size, mtime and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    /// The stamp of an open file (its inode, whatever happens to its name).
    ///
    /// # Errors
    /// `fstat` fails.
    pub fn of(file: &File) -> io::Result<Stamp> {
        Ok(Stamp::of_metadata(&file.metadata()?))
    }

    /// The stamp in metadata already read.
    pub fn of_metadata(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// The error a read ends with when the file changed under it; tell it with `is_changed`.
#[derive(Debug)]
pub struct ChangedWhileRead {
    pub before: Stamp,
    pub after: Stamp,
}

impl std::fmt::Display for ChangedWhileRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "changed while it was read (size {} -> {})",
            self.before.size, self.after.size
        )
    }
}

impl std::error::Error for ChangedWhileRead {}

/// Whether `e` says the file changed while it was read (a typed check, not the message text).
pub fn is_changed(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ChangedWhileRead>())
}

/// A file read to its end that checks, at the end, that its inode did not change since it was
/// opened: the end of the file is reported as an error when it did.
pub struct Watched {
    file: File,
    before: Stamp,
}

impl Watched {
    /// # Errors
    /// `fstat` fails.
    pub fn new(file: File) -> io::Result<Watched> {
        let before = Stamp::of(&file)?;
        Ok(Watched { file, before })
    }

    /// As `new`, from the stamp the caller took when it opened `file`.
    pub fn with_stamp(file: File, before: Stamp) -> Watched {
        Watched { file, before }
    }

    /// The file, unwatched.
    pub fn into_file(self) -> File {
        self.file
    }

    /// The stamp taken when reading started.
    pub fn before(&self) -> Stamp {
        self.before
    }
}

impl std::os::fd::AsRawFd for Watched {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let after = Stamp::of(&self.file)?;
            if after != self.before {
                return Err(io::Error::other(ChangedWhileRead {
                    before: self.before,
                    after,
                }));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_rewritten_during_the_read_ends_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut quiet = Watched::new(File::open(&path).unwrap()).unwrap();
        let mut all = Vec::new();
        quiet.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 10_000);

        // Truncated half-way through the read.
        let mut w = Watched::new(File::open(&path).unwrap()).unwrap();
        let mut buf = vec![0u8; 4096];
        w.read_exact(&mut buf).unwrap();
        std::fs::File::create(&path).unwrap();
        let err = w.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(is_changed(&err), "{err}");

        // Rewritten in place, same size.
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut w = Watched::new(File::open(&path).unwrap()).unwrap();
        w.read_exact(&mut buf).unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&[2u8; 10]).unwrap();
        drop(f);
        let err = w.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(is_changed(&err), "{err}");
        assert!(!is_changed(&io::Error::other("something else")));
    }
}
