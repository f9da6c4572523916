//! The agent's wire format: length-prefixed postcard frames.
//!
//! Byte fields use `serde_bytes`: a plain `Vec<u8>` goes through serde one byte at a time.
//! Every call carries an id and the replies carry it back, so the controller can keep many
//! calls in flight on one stream (no round trip per file). Replies to one call arrive in order:
//! zero or more `Data`/`DeltaOps` chunks, then exactly one terminal reply.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{ExecOutput, ExecRequest, FsSpace};
use crate::tree::ScanSummary;
use crate::tree::delta::{DeltaOp, Signature};
use crate::tree::root::Meta;
use crate::tree::xattr;

/// Bumped whenever a message changes shape; both ends must agree.
pub const PROTOCOL_VERSION: u32 = 8;

/// Refuse frames above this size: a corrupt length must not make us allocate gigabytes.
const MAX_FRAME: u32 = 1 << 30;

/// Root handles are small numbers returned by `OpenRoot`, valid for one session.
pub type RootId = u32;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Hello { protocol: u32 },
    Call { id: u64, call: Call },
    Bye,
}

/// Which file a delta is computed against at the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Basis {
    /// No basis: the whole file comes as data.
    None,
    /// The file now at the final name.
    Final,
    /// The partial file an interrupted run left.
    Partial,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    GlobDirs {
        pattern: String,
    },
    Scan {
        root: PathBuf,
        exclude: Vec<String>,
        /// The extended attributes and ACLs to list with the entries.
        keep: xattr::Keep,
    },
    Space {
        path: PathBuf,
    },
    Exec(ExecRequest),
    /// Runs a command and streams its stdout as `Data`, then `Exec` with its exit code and
    /// stderr (stdout left empty): a database dump that never lands on disk.
    ExecRead(ExecRequest),
    /// Starts a command that reads the stream: its stdin comes as `ExecStdin` frames, then
    /// `ExecStdinEnd`, answered by `Exec` with its exit code and stderr.
    ExecWrite(ExecRequest),
    ExecStdin {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    ExecStdinEnd,
    /// Opens a root for the calls below; `create` makes the directory (target side).
    OpenRoot {
        root: PathBuf,
        create: bool,
    },
    /// Releases a root (its descriptors): a run over thousands of sites opens thousands.
    CloseRoot {
        root: RootId,
    },
    /// Streams a file's content as `Data`, then `Done` with its BLAKE3.
    ReadFile {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        /// Send chunks compressed with zstd (`DataZstd`).
        compress: bool,
    },
    /// BLAKE3 of a file, without sending it.
    HashFile {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// BLAKE3 of many files, hashed in parallel on the far side, answered in one `Hashes`.
    HashFiles {
        root: RootId,
        paths: Vec<Vec<u8>>,
    },
    /// Block signature of a basis at the receiver.
    Signature {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        basis: Basis,
        block_len: u32,
    },
    /// Many signatures in one call (computed in parallel), answered by one `Sigs`: a delta then
    /// costs no round trip of its own.
    Signatures {
        root: RootId,
        items: Vec<SigRequest>,
    },
    /// Streams the delta of a file against a signature as `DeltaOps`, then `Done`.
    Delta {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        signature: Signature,
    },
    /// Starts writing a file (temp name); no reply until `WriteEnd`.
    WriteBegin {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        meta: Meta,
        basis: Basis,
        block_len: u32,
        /// Set on the temp file before its rename (`None`: the temp file's own are kept).
        xattrs: Option<xattr::Wanted>,
    },
    WriteData {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `WriteData` compressed with zstd; `len` is the size once decompressed.
    WriteDataZstd {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        len: u32,
    },
    WriteDelta {
        ops: Vec<DeltaOp>,
    },
    /// Ends a write: the receiver compares its own BLAKE3 of what it wrote with `hash`, and
    /// renames into place only when they match.
    WriteEnd {
        hash: [u8; 32],
    },
    Mkdir {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        meta: Meta,
    },
    Symlink {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
        meta: Meta,
    },
    Hardlink {
        root: RootId,
        #[serde(with = "serde_bytes")]
        existing: Vec<u8>,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    Mknod {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        meta: Meta,
        rdev: u64,
    },
    SetMeta {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        meta: Meta,
        is_symlink: bool,
        /// Extended attributes and ACLs to make the entry's (`None`: left as they are).
        xattrs: Option<xattr::Wanted>,
    },
    Remove {
        root: RootId,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// Copies `from` to `path` at the target, renamed into place only if its BLAKE3 is `hash`.
    LocalCopy {
        root: RootId,
        #[serde(with = "serde_bytes")]
        from: Vec<u8>,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        meta: Meta,
        hash: [u8; 32],
        xattrs: Option<xattr::Wanted>,
    },
    /// Renames `from` to `path` at the target, refused when `path` exists (Maildir flag
    /// changes and `new/` to `cur/` moves, applied without sending the message).
    Rename {
        root: RootId,
        #[serde(with = "serde_bytes")]
        from: Vec<u8>,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// Flushes the root's file system once, at the end of a run (and removes the temp files
    /// nobody needs any more).
    Sync {
        root: RootId,
    },
    /// Takes the root's lock for the rest of the session: one `copy` per target root. Refused
    /// with `Locked` while another process holds it.
    Lock {
        root: RootId,
    },
}

/// One signature wanted by `Signatures`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigRequest {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub basis: Basis,
    pub block_len: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Hello { protocol: u32, version: String },
    Reply { id: u64, reply: Reply },
}

/// What a call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// BLAKE3 of the content read or written, when there was content.
    pub hash: Option<[u8; 32]>,
    pub len: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Dirs(Vec<PathBuf>),
    /// A `ScanSummary`, postcard then zstd: listings are most of a no-change run's traffic.
    Scan(#[serde(with = "serde_bytes")] Vec<u8>),
    /// One entry per path of `HashFiles`: (BLAKE3, length) or why it failed.
    Hashes(Vec<Result<([u8; 32], u64), String>>),
    Space(FsSpace),
    Exec(ExecOutput),
    Opened(RootId),
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `Data` compressed with zstd; `len` is the size once decompressed.
    DataZstd {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        len: u32,
    },
    DeltaOps(Vec<DeltaOp>),
    Sig(Signature),
    Sigs(Vec<Result<Signature, String>>),
    Done(Outcome),
    /// The call failed on the far side; the message names the path.
    Error(String),
    /// `ReadFile` or `Delta`: the source file changed while it was read, so what was sent is
    /// not one version of it (the write must be dropped; reading again may succeed).
    Changed(String),
    /// `Lock`: another process holds the root's lock.
    Locked(String),
}

impl Reply {
    /// Whether this reply ends its call.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Reply::Data(_) | Reply::DataZstd { .. } | Reply::DeltaOps(_)
        )
    }
}

/// The most a compressed chunk may claim to inflate to (refuses decompression bombs).
pub const MAX_CHUNK: u32 = 1 << 20;

/// Compresses a chunk for the wire (fast level: the link is the bottleneck, not the CPU).
pub fn compress(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).unwrap_or_else(|_| data.to_vec())
}

/// Decompresses a chunk from a peer, refusing one that claims more than `MAX_CHUNK`.
///
/// # Errors
/// A corrupt chunk, or one whose size is not what it claimed.
pub fn decompress(data: &[u8], len: u32) -> io::Result<Vec<u8>> {
    if len > MAX_CHUNK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "compressed chunk over the size limit",
        ));
    }
    let out = zstd::bulk::decompress(data, len as usize)?;
    if out.len() != len as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "compressed chunk of the wrong size",
        ));
    }
    Ok(out)
}

/// Names whose content is already compressed: sending them through zstd wastes CPU.
pub fn precompressed(path: &[u8]) -> bool {
    const EXT: &[&str] = &[
        "gz", "tgz", "bz2", "xz", "zst", "zip", "7z", "rar", "jpg", "jpeg", "png", "gif", "webp",
        "avif", "mp3", "mp4", "m4a", "mkv", "webm", "mov", "ogg", "pdf", "woff", "woff2", "br",
        "lz4", "jar", "docx", "xlsx", "odt",
    ];
    let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
    match name.iter().rposition(|b| *b == b'.') {
        Some(i) => EXT
            .iter()
            .any(|e| name[i + 1..].eq_ignore_ascii_case(e.as_bytes())),
        None => false,
    }
}

/// Packs a listing for the wire.
pub fn pack_scan(scan: &ScanSummary) -> Vec<u8> {
    let raw = postcard::to_stdvec(scan).unwrap_or_default();
    zstd::bulk::compress(&raw, 3).unwrap_or(raw)
}

/// Unpacks a listing from a peer, refusing one that inflates past 2 GiB.
///
/// # Errors
/// Corrupt or oversized data.
pub fn unpack_scan(data: &[u8]) -> io::Result<ScanSummary> {
    let mut raw = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(data)?;
    io::Read::read_to_end(&mut io::Read::take(decoder, 2 << 30), &mut raw)?;
    postcard::from_bytes(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
    w.write_all(&bytes)
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
            &Request::Call {
                id: 7,
                call: Call::GlobDirs {
                    pattern: "/var/www/*".into(),
                },
            },
        )
        .unwrap();
        write_frame(&mut buf, &Request::Bye).unwrap();
        let mut r = &buf[..];
        assert!(
            matches!(read_frame::<Request>(&mut r).unwrap(), Some(Request::Call { id: 7, call: Call::GlobDirs { pattern } }) if pattern == "/var/www/*")
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
