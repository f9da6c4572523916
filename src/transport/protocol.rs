//! The agent's wire format: length-prefixed postcard frames, one request then one response.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{ExecOutput, ExecRequest, FsSpace};
use crate::tree::ScanSummary;

/// Bumped whenever a message changes shape; both ends must agree.
pub const PROTOCOL_VERSION: u32 = 1;

/// Refuse frames above this size: a corrupt length must not make us allocate gigabytes.
const MAX_FRAME: u32 = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Hello { protocol: u32 },
    GlobDirs { pattern: String },
    Scan { root: PathBuf, exclude: Vec<String> },
    Space { path: PathBuf },
    Exec(ExecRequest),
    Bye,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Hello {
        protocol: u32,
        version: String,
    },
    Dirs(Vec<PathBuf>),
    Scan(ScanSummary),
    Space(FsSpace),
    Exec(ExecOutput),
    /// The request failed on the far side; the message names the path.
    Error(String),
}

/// Writes one frame.
///
/// # Errors
/// I/O errors of the stream.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let bytes =
        postcard::to_stdvec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
///
/// # Errors
/// I/O errors, a frame over the size limit, or bytes that do not decode.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &Request::GlobDirs {
                pattern: "/var/www/*".into(),
            },
        )
        .unwrap();
        write_frame(&mut buf, &Request::Bye).unwrap();
        let mut r = &buf[..];
        assert!(
            matches!(read_frame::<Request>(&mut r).unwrap(), Some(Request::GlobDirs { pattern }) if pattern == "/var/www/*")
        );
        assert!(matches!(
            read_frame::<Request>(&mut r).unwrap(),
            Some(Request::Bye)
        ));
        assert!(read_frame::<Request>(&mut r).unwrap().is_none());
    }

    #[test]
    fn huge_lengths_are_refused() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame::<Request>(&mut r).is_err());
    }
}
