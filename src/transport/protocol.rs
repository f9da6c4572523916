//! The agent's wire format: length-prefixed postcard frames.
//!
//! Byte fields use `serde_bytes`: a plain `Vec<u8>` goes through serde one byte at a time.
//! Every call carries an id and the replies carry it back, so the controller can keep many
//! calls in flight on one stream (no round trip per file). Replies to one call arrive in order:
//! zero or more `Data`/`DeltaOps`/`ScanPart` chunks, then exactly one terminal reply.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{ExecOutput, ExecRequest, FsSpace};
use crate::tree::ScanSummary;
use crate::tree::delta::{DeltaOp, Signature};
use crate::tree::root::Meta;
use crate::tree::xattr;

/// Bumped whenever a message changes shape; both ends must agree.
pub const PROTOCOL_VERSION: u32 = 15;

/// Refuse frames above this size; below it, a frame's buffer grows with the bytes that
/// arrive, never with the length announced (`read_frame`).
pub const MAX_FRAME: u32 = 1 << 30;
/// A frame's buffer starts this big at most, then grows as its bytes arrive.
const FRAME_READ_STEP: usize = 1 << 20;

/// Compressed data from a peer may inflate to this many times the bytes received (real
/// listings inflate 6-41x, measured at level 3: 41x for a tree with the same ACL on every
/// entry; a zstd bomb, thousands of times)...
pub const MAX_INFLATION: u64 = 128;
/// ...plus this much, whatever was received: the biggest chunk a sender makes (256 KiB, of
/// zeros, compresses to a few bytes and must pass).
pub const INFLATION_SLACK: u64 = 256 * 1024;
/// A listing never inflates past this, however big its compressed form.
pub const MAX_LISTING: u64 = 2 << 30;

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
    /// Many small files written whole in one call: each checked against its BLAKE3, given its
    /// metadata and put in place on its own (`SafeRoot::write_whole`), answered by one
    /// `Written` with a result per file, in order (one file failing fails only itself).
    WriteSmall {
        root: RootId,
        files: Vec<SmallFile>,
        /// The files' contents one after the other (zstd-compressed when `zstd_len` is set:
        /// the size once decompressed).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        zstd_len: Option<u32>,
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
    /// `ExecRead` whose stdout chunks come back as `DataZstd`: a dump crossing hosts.
    ExecReadZstd(ExecRequest),
    /// `ExecStdin` compressed with zstd; `len` is the size once decompressed.
    ExecStdinZstd {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        len: u32,
    },
    /// Starts a long-lived command fed by `ExecStdin` frames whose stdout streams back as
    /// `Data` while it runs, then `Exec` when it exits; `ExecStdinEnd` only closes its stdin.
    /// A database client holding a snapshot open for the dumps that use it.
    ExecSession(ExecRequest),
    /// `ExecSession` with the command's stderr written into its stdout (one pipe): a
    /// verification client's errors come back between the rows they follow.
    ExecSessionMerged(ExecRequest),
    /// As `Scan`, each file hashed too (`ScanSummary::digests`), answered by `Scan`.
    ScanDigested {
        root: PathBuf,
        exclude: Vec<String>,
        keep: xattr::Keep,
    },
    /// The address this host reaches a peer host from: `Probed`. With `banner`, connects to
    /// the peer's sshd and reads its banner, without logging in (the dry run's reachability
    /// check); without, only asks the routing table (no packet sent).
    PeerProbe {
        address: String,
        port: u16,
        banner: bool,
    },
    /// Opens this agent's own ssh connection to a peer host's agent with a key made for the
    /// move (or finds the one already open for the same spec): `Opened` with a peer handle.
    PeerOpen(Box<PeerSpec>),
    /// Opens an existing `root` at the peer (beneath the roots it is confined to): `Opened`
    /// with the peer's handle of it.
    PeerRoot {
        peer: PeerId,
        root: PathBuf,
    },
    /// Releases a root opened by `PeerRoot`.
    PeerCloseRoot {
        peer: PeerId,
        root: RootId,
    },
    /// Sends a file of a root here to a root at the peer, whole or as a delta against the
    /// peer's basis: answered by `Pushed` (the peer verified it before its rename) or
    /// `Changed`. The bytes go host to host; the caller sees only the verdict.
    PushFile(Box<Push>),
    /// Runs a command here and streams its stdout to the rendezvous `token` a command at the
    /// peer's host reads from (`ExecFromStream`): `ExecPushed`.
    ExecPush {
        req: ExecRequest,
        peer: PeerId,
        token: String,
    },
    /// Starts a command whose stdin comes from a peer through a rendezvous socket in `dir`:
    /// answered by `Rendezvous` with the token, then `Exec` once it exits. `ExecStdinEnd`
    /// cancels it (a stream that never came, or broke: the command is killed).
    ExecFromStream {
        req: ExecRequest,
        dir: PathBuf,
    },
    /// (A confined agent.) Connects to the rendezvous `token`; `ExecStdin`/`ExecStdinZstd`
    /// frames follow, `ExecStdinEnd` closes it: `Done` with the bytes passed on.
    StreamTo {
        token: String,
    },
    /// Lets a peer in: adds an authorized_keys line for `grant` (atomic rewrite) and makes
    /// its rendezvous directory. `Done`.
    AuthorizePeer(Box<PeerGrant>),
    /// Removes every authorized_keys line of `file` whose comment starts with `marker`, and
    /// the rendezvous directory `streams` when given: `Done` with `len` the lines removed.
    RevokePeer {
        file: String,
        marker: String,
        streams: Option<PathBuf>,
    },
}

/// A peer agent's handle at the agent that opened it.
pub type PeerId = u32;

/// How an agent reaches a peer host's agent over ssh, with credentials made for one move.
#[derive(Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// The plan's name of the peer host (for messages).
    pub host: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The private key (OpenSSH format): written to a private temp file only while ssh logs
    /// in, never on a command line, never logged.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The peer's host keys as known_hosts lines for `PEER_HOST_ALIAS`.
    pub known_hosts: Vec<String>,
}

/// The name a peer's host keys are pinned under, whatever address reaches it.
pub const PEER_HOST_ALIAS: &str = "transhumance-peer";

impl std::fmt::Debug for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSpec")
            .field("host", &self.host)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// An authorized_keys line for a peer: the key, restricted to our agent confined to `confine`
/// and `streams`, from the peer's address only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerGrant {
    /// The authorized_keys file (`~/` is the agent's home).
    pub file: String,
    /// `ssh-ed25519 AAAA...`.
    pub public_key: String,
    /// The address the peer comes from (`from=`).
    pub from: String,
    pub confine: Vec<PathBuf>,
    /// The rendezvous directory of the move's streams (made here, mode 0700).
    pub streams: PathBuf,
    /// The line's comment: names the move, so cleanup finds it.
    pub marker: String,
}

/// One file pushed to a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Push {
    pub root: RootId,
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub peer: PeerId,
    pub peer_root: RootId,
    pub meta: Meta,
    /// The basis wanted at the peer (its signature is asked there); `None`: the whole file.
    pub basis: Basis,
    pub block_len: u32,
    pub xattrs: Option<xattr::Wanted>,
    /// Send chunks compressed with zstd.
    pub compress: bool,
}

/// The peer's verdict on a pushed file, and what crossed between the hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub hash: [u8; 32],
    pub len: u64,
    /// Went as a delta against the peer's basis.
    pub delta: bool,
    /// File bytes sent (whole data, or delta literals).
    pub sent: u64,
    /// Bytes the peer rebuilt from its basis.
    pub matched: u64,
}

/// One signature wanted by `Signatures`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigRequest {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub basis: Basis,
    pub block_len: u32,
}

/// One file of a `WriteSmall`: its content is `len` bytes of the call's data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmallFile {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub meta: Meta,
    /// Set on the file before it gets its name (`None`: left as created).
    pub xattrs: Option<xattr::Wanted>,
    pub len: u32,
    /// BLAKE3 of the content as the sender read it.
    pub hash: [u8; 32],
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
    /// To `Scan`, the end of the listing (the root's own fields and the last entries).
    Scan(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `Scan`: a part of the listing as the walk goes (`SCAN_PART` entries, in
    /// `tree::scan::walk_order`, with their errors, attributes and flags, and the lister's
    /// `listed_as_root`), packed as `Scan`; the controller pairs it while the agent walks on.
    ScanPart(#[serde(with = "serde_bytes")] Vec<u8>),
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
    /// `WriteSmall`: per file, in order, what was written or why it failed.
    Written(Vec<Result<Outcome, String>>),
    /// The call failed on the far side; the message names the path.
    Error(String),
    /// `ReadFile` or `Delta`: the source file changed while it was read, so what was sent is
    /// not one version of it (the write must be dropped; reading again may succeed).
    Changed(String),
    /// `Lock`: another process holds the root's lock.
    Locked(String),
    /// `PeerProbe`: the peer's ssh banner, and the address this host reached it from.
    Probed {
        banner: String,
        local: String,
    },
    /// `PushFile`: done and verified at the peer.
    Pushed(Pushed),
    /// `ExecFromStream`: the token a peer connects with; the call goes on.
    Rendezvous(String),
    /// `ExecPush`: how the command ended, the bytes the peer took, and why the peer's side
    /// failed when it did.
    ExecPushed {
        output: ExecOutput,
        bytes: u64,
        peer_error: Option<String>,
    },
}

impl Reply {
    /// Whether this reply ends its call.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Reply::Data(_)
                | Reply::DataZstd { .. }
                | Reply::DeltaOps(_)
                | Reply::Rendezvous(_)
                | Reply::ScanPart(_)
        )
    }
}

/// The most a compressed chunk may claim to inflate to (refuses decompression bombs).
pub const MAX_CHUNK: u32 = 1 << 20;

/// The most `received` compressed bytes from a peer may inflate to: proportional to what came
/// (`MAX_INFLATION`x plus `INFLATION_SLACK`), and never past `cap`.
pub fn inflation_bound(received: usize, cap: u64) -> u64 {
    (received as u64)
        .saturating_mul(MAX_INFLATION)
        .saturating_add(INFLATION_SLACK)
        .min(cap)
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Compresses a chunk for the wire (fast level: the link is the bottleneck, not the CPU).
pub fn compress(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).unwrap_or_else(|_| data.to_vec())
}

/// Decompresses a chunk from a peer, refusing one that claims more than `MAX_CHUNK`.
///
/// # Errors
/// A corrupt chunk, or one whose size is not what it claimed.
pub fn decompress(data: &[u8], len: u32) -> io::Result<Vec<u8>> {
    let bound = inflation_bound(data.len(), u64::from(MAX_CHUNK));
    if u64::from(len) > bound {
        return Err(refused(format!(
            "a compressed chunk of {} bytes claims {len} once decompressed, over the bound of {bound}: refused",
            data.len()
        )));
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

/// Entries per `Reply::ScanPart`: small enough that the controller's work starts early,
/// big enough that zstd still finds the repeats of a listing.
pub const SCAN_PART: usize = 4096;

/// Packs a listing for the wire.
pub fn pack_scan(scan: &ScanSummary) -> Vec<u8> {
    let raw = postcard::to_stdvec(scan).unwrap_or_default();
    zstd::bulk::compress(&raw, 3).unwrap_or(raw)
}

/// Unpacks a listing from a peer, refusing one that would inflate past `inflation_bound` of
/// its compressed size (and `MAX_LISTING`): memory follows what was received.
///
/// # Errors
/// Corrupt data, or data that inflates past the bound.
pub fn unpack_scan(data: &[u8]) -> io::Result<ScanSummary> {
    unpack_scan_within(data, MAX_LISTING)
}

/// As `unpack_scan`, within `cap` bytes once inflated (what is left of `MAX_LISTING` when
/// parts came before).
///
/// # Errors
/// As `unpack_scan`.
pub fn unpack_scan_within(data: &[u8], cap: u64) -> io::Result<ScanSummary> {
    let raw = inflate(data, cap, "listing")?;
    postcard::from_bytes(&raw).map_err(|e| refused(format!("listing: {e}")))
}

/// Decompresses one zstd frame from a peer into at most `inflation_bound(data.len(), cap)`
/// bytes: a frame that claims more is refused before anything is allocated, and one that
/// claims less (or nothing) than it holds fails as soon as its output passes the buffer (one
/// shot into a buffer of the bound: no window grows with what the frame header asks).
///
/// # Errors
/// Corrupt data, or data that inflates past the bound.
pub fn inflate(data: &[u8], cap: u64, what: &str) -> io::Result<Vec<u8>> {
    let bound = inflation_bound(data.len(), cap);
    let claimed = zstd::zstd_safe::get_frame_content_size(data)
        .map_err(|_| refused(format!("{what}: not a zstd frame")))?;
    if let Some(n) = claimed
        && n > bound
    {
        return Err(refused(format!(
            "{what} of {} compressed bytes claims {n} bytes once decompressed, over the bound of {bound} ({MAX_INFLATION}x what was received plus {INFLATION_SLACK}, at most {cap}): refused",
            data.len()
        )));
    }
    let capacity = usize::try_from(claimed.unwrap_or(bound).min(bound))
        .map_err(|_| refused(format!("{what}: too big for this machine")))?;
    zstd::bulk::decompress(data, capacity).map_err(|e| {
        refused(format!(
            "{what} of {} compressed bytes does not decompress within {capacity} bytes (the bound is {MAX_INFLATION}x what was received plus {INFLATION_SLACK}, at most {cap}): {e}; refused",
            data.len()
        ))
    })
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
        return Err(refused(format!(
            "a frame of {len} bytes announced, over the limit of {MAX_FRAME}: refused"
        )));
    }
    let buf = read_announced(r, len as usize)?;
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads the `len` bytes a peer announced, the buffer growing only as they arrive: a length
/// alone (4 bytes) never buys more than `FRAME_READ_STEP` of memory.
fn read_announced(r: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len.min(FRAME_READ_STEP));
    let got = r.take(len as u64).read_to_end(&mut buf)?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the stream ended {got} bytes into a frame of {len}"),
        ));
    }
    Ok(buf)
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

    #[test]
    fn the_inflation_bound_follows_what_was_received_up_to_the_cap() {
        assert_eq!(inflation_bound(0, MAX_LISTING), INFLATION_SLACK);
        assert_eq!(
            inflation_bound(1000, MAX_LISTING),
            1000 * MAX_INFLATION + INFLATION_SLACK
        );
        assert_eq!(inflation_bound(1 << 30, MAX_LISTING), MAX_LISTING);
        assert_eq!(inflation_bound(usize::MAX, 7), 7, "no overflow");
        // The issue's reply: 53 KiB may not become 2 GiB, only a few MiB.
        assert!(inflation_bound(53 << 10, MAX_LISTING) < 8 << 20);
    }

    #[test]
    fn a_frame_announced_but_not_sent_costs_what_was_sent() {
        // 512 MiB announced, 10 bytes sent: an error, not a 512 MiB buffer.
        let mut stream = (512u32 << 20).to_le_bytes().to_vec();
        stream.extend([0u8; 10]);
        let err = read_frame::<Request>(&mut &stream[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let over = (MAX_FRAME + 1).to_le_bytes();
        let err = read_frame::<Request>(&mut &over[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn chunks_inflate_within_their_bound() {
        // A chunk of zeros, as a sparse file sends it: tiny, and it must pass.
        let zeros = vec![0u8; 256 * 1024];
        let packed = compress(&zeros);
        assert!(packed.len() < 100, "{}", packed.len());
        assert_eq!(decompress(&packed, zeros.len() as u32).unwrap(), zeros);
        // A few bytes that claim a whole MiB: refused before anything is allocated.
        let err = decompress(&compress(b"x"), MAX_CHUNK).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("over the bound"), "{err}");
    }

    /// A zstd frame header claiming `size` bytes of content, with nothing behind it.
    fn header_claiming(size: u64) -> Vec<u8> {
        let mut h = 0xFD2F_B528u32.to_le_bytes().to_vec();
        h.push(0xE0); // 8-byte content size, single segment
        h.extend(size.to_le_bytes());
        h
    }

    /// `frames` zstd frames of 1 MiB of zeros each, back to back: a few dozen bytes apiece.
    fn bomb(frames: usize) -> Vec<u8> {
        let one = zstd::bulk::compress(&vec![0u8; 1 << 20], 19).unwrap();
        one.repeat(frames)
    }

    #[test]
    fn listings_are_unpacked_within_their_bound_and_bombs_refused() {
        let listing = ScanSummary {
            exists: true,
            entries: (0..2000)
                .map(|i| crate::tree::Entry {
                    path: format!("site/wp-content/uploads/{i:06}.jpg").into_bytes(),
                    kind: crate::tree::EntryKind::File,
                    size: 100,
                    mtime_ns: 1_700_000_000_000_000_000,
                    mode: 0o100644,
                    uid: 33,
                    gid: 33,
                    nlink: 1,
                    dev: 1,
                    ino: i,
                    rdev: 0,
                    link_target: None,
                })
                .collect(),
            ..ScanSummary::default()
        };
        let packed = pack_scan(&listing);
        assert_eq!(unpack_scan(&packed).unwrap().entries, listing.entries);
        // A header that claims 2 GiB.
        let err = unpack_scan(&header_claiming(2 << 30)).unwrap_err();
        assert!(err.to_string().contains("claims 2147483648 bytes"), "{err}");
        // Frames that each claim little and together make 2 GiB (about 80 KiB of them).
        let bomb = bomb(2048);
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        let err = unpack_scan(&bomb).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("does not decompress within"),
            "{err}"
        );
        assert!(unpack_scan(b"not zstd").is_err());
    }
}
