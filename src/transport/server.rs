//! Serves calls on this machine: the remote agent's loop and the local channel both use it.
//!
//! A thin layer over `tree/`: decode a call, do it under a `SafeRoot`, answer. It keeps only
//! the state a stream of calls needs (open roots, writes in progress).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, RwLock};

use super::protocol::{Basis, Call, Outcome, Reply, RootId, SmallFile};
use super::{LocalTransport, Transport, TransportError};
use crate::tree::delta::{self, DeltaOp};
use crate::tree::root::{Meta, SafeRoot, TempFile};
use crate::tree::xattr::Wanted;

const CHUNK: usize = 256 * 1024;
/// Literal bytes gathered before a batch of delta ops is sent.
const DELTA_BATCH: usize = 256 * 1024;

struct Write {
    root: Option<Arc<SafeRoot>>,
    temp: Option<TempFile>,
    basis: Option<(File, u64)>,
    block_len: u32,
    meta: Meta,
    /// Set on the temp file before its rename.
    xattrs: Option<Wanted>,
    hasher: blake3::Hasher,
    len: u64,
    error: Option<String>,
    path: Vec<u8>,
}

/// Roots and writes in progress for one stream of calls (or for the local channel).
#[derive(Default)]
pub struct Server {
    /// Open roots by handle; a closed one leaves its slot empty so handles stay stable.
    roots: RwLock<Vec<Option<Arc<SafeRoot>>>>,
    writes: Mutex<HashMap<u64, Arc<Mutex<Write>>>>,
    /// Commands fed by `ExecStdin` frames, by call id.
    feeds: Mutex<HashMap<u64, Feed>>,
    /// The stdin of long-lived commands (`ExecSession`), by call id.
    sessions: Mutex<HashMap<u64, std::process::ChildStdin>>,
    /// This agent's own connections to peer agents (the direct data path).
    pub(super) peers: super::peer::Peers,
    /// Streams between this host's agents (`ExecFromStream`, `StreamTo`).
    rendezvous: super::rendezvous::Rendezvous,
    /// Set when a move's restricted key started this agent: what it may do.
    confine: Option<super::confine::Confine>,
}

/// A long-lived command started by `ExecSession`: its output still to be pumped back.
pub struct SessionRun {
    child: std::process::Child,
    stdout: Box<dyn Read + Send>,
    /// `None` when stderr is merged into stdout.
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl SessionRun {
    /// Streams the command's stdout as `Data` as it comes, then `Exec` once it has exited.
    pub fn pump(mut self, reply: &mut dyn FnMut(Reply)) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply(Reply::Data(buf[..n].to_vec())),
            }
        }
        match self.child.wait() {
            Ok(status) => reply(Reply::Exec(crate::transport::ExecOutput {
                code: status.code(),
                stdout: Vec::new(),
                stderr: self
                    .stderr
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default(),
            })),
            Err(e) => reply(Reply::Error(e.to_string())),
        }
    }
}

/// A running command whose stdin we feed; its stderr is kept (the tail) for the final reply.
struct Feed {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    error: Option<String>,
}

/// The last 64 KiB a pipe gives (a failing tool's message is at its end).
pub(super) fn tail_of(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 65536 {
                kept.drain(..kept.len() - 65536);
            }
        }
        kept
    })
}

pub(super) fn command(req: &crate::transport::ExecRequest) -> std::process::Command {
    let mut cmd = std::process::Command::new(&req.program);
    super::own_process_group(&mut cmd)
        .args(&req.args)
        .envs(req.env.iter().map(|(k, v)| (k, v)));
    cmd
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn failure(e: TransportError) -> String {
    match e {
        TransportError::Path { path, message, .. } => format!("{path}: {message}"),
        TransportError::Connect { message, .. }
        | TransportError::Protocol { message, .. }
        | TransportError::Remote { message, .. } => message,
    }
}

impl Server {
    /// The server of an agent a move's restricted key started: only what `confine` admits.
    pub fn confined(confine: super::confine::Confine) -> Server {
        Server {
            confine: Some(confine),
            ..Server::default()
        }
    }

    pub fn confine(&self) -> Option<&super::confine::Confine> {
        self.confine.as_ref()
    }

    fn root(&self, id: RootId) -> Result<Arc<SafeRoot>, String> {
        self.roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id as usize)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("unknown root handle {id}"))
    }

    /// Handles one call, answering through `reply` (several times for streamed content).
    pub fn handle(&self, id: u64, call: Call, reply: &mut dyn FnMut(Reply)) {
        if let Some(c) = &self.confine
            && let Err(why) = c.admit(&call)
        {
            reply(Reply::Error(why));
            return;
        }
        if let Some(root) = written_root(&call)
            && let Ok(r) = self.root(root)
        {
            r.mark_written();
        }
        let local = LocalTransport::new("agent");
        let result: Result<Option<Reply>, String> =
            match call {
                Call::GlobDirs { pattern } => local
                    .glob_dirs(&pattern)
                    .map(|d| Some(Reply::Dirs(d)))
                    .map_err(failure),
                Call::Scan {
                    root,
                    exclude,
                    keep,
                } => crate::tree::scan::scan_streamed(
                    &root,
                    &exclude,
                    keep,
                    super::protocol::SCAN_PART,
                    &mut |part| reply(Reply::ScanPart(super::protocol::pack_scan(&part))),
                )
                .map(|s| Some(Reply::Scan(super::protocol::pack_scan(&s))))
                .map_err(|e| format!("{}: {e}", root.display())),
                Call::ScanDigested {
                    root,
                    exclude,
                    keep,
                } => local
                    .scan_digested(&root, &exclude, keep)
                    .map(|s| Some(Reply::Scan(super::protocol::pack_scan(&s))))
                    .map_err(failure),
                Call::Space { path } => local
                    .space(&path)
                    .map(|s| Some(Reply::Space(s)))
                    .map_err(failure),
                Call::ExecRead(req) => self.exec_read(&req, false, reply).map(Some),
                Call::ExecReadZstd(req) => self.exec_read(&req, true, reply).map(Some),
                Call::ExecSession(_) | Call::ExecSessionMerged(_) => {
                    Err("a session is served by the agent's loop".into())
                }
                Call::ExecStdinZstd { data, len } => {
                    match super::protocol::decompress(&data, len) {
                        Ok(plain) => self.feed(id, &plain),
                        Err(e) => {
                            let why = format!("a compressed chunk was refused: {e}");
                            if !self.rendezvous.fail(id, why.clone()) {
                                self.feed_failed(id, why);
                            }
                        }
                    }
                    Ok(None)
                }
                Call::ExecWrite(req) => {
                    self.exec_write(id, &req);
                    Ok(None)
                }
                Call::ExecStdin { data } => {
                    self.feed(id, &data);
                    Ok(None)
                }
                Call::ExecStdinEnd => {
                    if let Some(ended) = self.rendezvous.end(id) {
                        ended.map(Some)
                    } else if self.rendezvous.cancel(id) {
                        // The waiting command answers itself, once cancelled.
                        Ok(None)
                    } else if self
                        .sessions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id)
                        .is_some()
                    {
                        Ok(None)
                    } else {
                        self.exec_end(id).map(Some)
                    }
                }
                Call::Exec(req) => local
                    .exec(&req)
                    .map(|o| Some(Reply::Exec(o)))
                    .map_err(failure),
                Call::OpenRoot { root, create } => match &self.confine {
                    Some(c) => c.open_root(&root),
                    None => SafeRoot::open(&root, create)
                        .map_err(|e| format!("{}: {e}", root.display())),
                }
                .map(|r| {
                    let mut roots = self.roots.write().unwrap_or_else(|p| p.into_inner());
                    roots.push(Some(Arc::new(r)));
                    Some(Reply::Opened((roots.len() - 1) as RootId))
                }),
                Call::CloseRoot { root } => {
                    // Writes in progress keep their own reference; the descriptors go with the last.
                    if let Some(slot) = self
                        .roots
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(root as usize)
                    {
                        *slot = None;
                    }
                    Ok(Some(Reply::Done(Outcome::default())))
                }
                Call::ReadFile {
                    root,
                    path,
                    compress,
                } => self.read_file(root, &path, compress, reply).map(Some),
                Call::HashFile { root, path } => self.hash_file(root, &path).map(Some),
                Call::HashFiles { root, paths } => self
                    .root(root)
                    .map(|r| Some(Reply::Hashes(hash_many(&r, &paths)))),
                Call::Signature {
                    root,
                    path,
                    basis,
                    block_len,
                } => self
                    .signature(root, &path, basis, block_len)
                    .map(|s| Some(Reply::Sig(s))),
                Call::Signatures { root, items } => {
                    use rayon::prelude::*;
                    let sigs = items
                        .par_iter()
                        .map(|i| self.signature(root, &i.path, i.basis, i.block_len))
                        .collect();
                    Ok(Some(Reply::Sigs(sigs)))
                }
                Call::Delta {
                    root,
                    path,
                    signature,
                } => self.delta(root, &path, &signature, reply).map(Some),
                Call::WriteBegin {
                    root,
                    path,
                    meta,
                    basis,
                    block_len,
                    xattrs,
                } => {
                    self.write_begin(id, root, path, meta, basis, block_len, xattrs);
                    Ok(None)
                }
                Call::WriteData { data } => {
                    self.with_write(id, |w| w.data(&data));
                    Ok(None)
                }
                Call::WriteDataZstd { data, len } => {
                    self.with_write(id, |w| {
                        let raw = super::protocol::decompress(&data, len)
                            .map_err(|e| format!("{}: {e}", show(&w.path)))?;
                        w.data(&raw)
                    });
                    Ok(None)
                }
                Call::WriteDelta { ops } => {
                    self.with_write(id, |w| w.patch(&ops));
                    Ok(None)
                }
                Call::WriteEnd { hash } => self.write_end(id, hash).map(Some),
                Call::WriteSmall {
                    root,
                    files,
                    data,
                    zstd_len,
                } => self.write_small(root, &files, data, zstd_len).map(Some),
                Call::Mkdir { root, path, meta } => {
                    self.done(root, &path, |r| r.mkdir(&path, meta.mode | 0o700))
                }
                Call::Symlink {
                    root,
                    path,
                    target,
                    meta,
                } => self.done(root, &path, |r| {
                    r.symlink(&path, &target)
                        .and_then(|()| r.set_meta(&path, &meta, true))
                }),
                Call::Hardlink {
                    root,
                    existing,
                    path,
                } => self.done(root, &path, |r| r.hardlink(&existing, &path)),
                Call::Mknod {
                    root,
                    path,
                    meta,
                    rdev,
                } => self.done(root, &path, |r| {
                    r.mknod(&path, meta.mode, rdev)
                        .and_then(|()| r.set_meta(&path, &meta, false))
                }),
                Call::SetMeta {
                    root,
                    path,
                    meta,
                    is_symlink,
                    xattrs,
                } => self.done(root, &path, |r| {
                    r.set_meta_with(&path, &meta, is_symlink, xattrs.as_ref())
                }),
                Call::Remove { root, path } => self.done(root, &path, |r| r.remove(&path)),
                Call::LocalCopy {
                    root,
                    from,
                    path,
                    meta,
                    hash,
                    xattrs,
                } => self
                    .root(root)
                    .and_then(|r| {
                        r.local_copy(&from, &path, &meta, &hash, xattrs.as_ref())
                            .map_err(|e| format!("{}: {e}", show(&path)))
                    })
                    .map(|h| {
                        Some(Reply::Done(Outcome {
                            hash: Some(*h.as_bytes()),
                            len: 0,
                        }))
                    }),
                Call::Rename { root, from, path } => {
                    self.done(root, &path, |r| r.rename_new(&from, &path))
                }
                Call::Sync { root } => self
                    .root(root)
                    .and_then(|r| r.sync().map_err(|e| e.to_string()))
                    .map(|()| Some(Reply::Done(Outcome::default()))),
                Call::PeerProbe {
                    address,
                    port,
                    banner,
                } => super::peer::probe(&address, port, banner).map(Some),
                Call::PeerOpen(spec) => self
                    .peers
                    .open(&spec)
                    .map(|id| Some(Reply::Opened(id as RootId))),
                Call::PeerRoot { peer, root } => self.peers.get(peer).and_then(|p| {
                    let host = super::channel::Channel::host(p.channel.as_ref()).to_string();
                    super::channel::Channel::call_wait(
                        p.channel.as_ref(),
                        Call::OpenRoot {
                            root,
                            create: false,
                        },
                    )
                    .map(Some)
                    .map_err(|e| format!("peer `{host}`: {}", failure(e)))
                }),
                Call::PeerCloseRoot { peer, root } => self.peers.get(peer).map(|p| {
                    let _ = super::channel::Channel::call_wait(
                        p.channel.as_ref(),
                        Call::CloseRoot { root },
                    );
                    Some(Reply::Done(Outcome::default()))
                }),
                Call::PushFile(push) => super::peer::push(self, &push).map(Some),
                Call::ExecPush { req, peer, token } => {
                    super::peer::exec_push(self, &req, peer, &token).map(Some)
                }
                Call::ExecFromStream { req, dir } => {
                    self.rendezvous.receive(id, &req, &dir, reply).map(Some)
                }
                Call::StreamTo { token } => self
                    .rendezvous
                    .connect(
                        id,
                        self.confine.as_ref().and_then(|c| c.streams.as_deref()),
                        &token,
                    )
                    .map(|()| None),
                Call::AuthorizePeer(grant) => super::authorized::authorize(&grant)
                    .map(|()| Some(Reply::Done(Outcome::default()))),
                Call::RevokePeer {
                    file,
                    marker,
                    streams,
                } => super::authorized::revoke(&file, &marker, streams.as_deref())
                    .map(|n| Some(Reply::Done(Outcome { hash: None, len: n }))),
                Call::Lock { root } => self.root(root).and_then(|r| match r.lock() {
                    Ok(()) => Ok(Some(Reply::Done(Outcome::default()))),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        Ok(Some(Reply::Locked(e.to_string())))
                    }
                    Err(e) => Err(format!("{}: {e}", r.path().display())),
                }),
            };
        match result {
            Ok(Some(r)) => reply(r),
            Ok(None) => {}
            Err(e) => reply(Reply::Error(e)),
        }
    }

    /// Writes a chunk to the stdin of the command started by call `id` (a feed or a session).
    fn feed(&self, id: u64, data: &[u8]) {
        if self.rendezvous.feed(id, data) {
            return;
        }
        if let Some(stdin) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            // A session that stopped reading has exited: its pump reports how.
            let _ = std::io::Write::write_all(stdin, data);
            return;
        }
        if let Some(f) = self
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
            && f.error.is_none()
            && let Some(stdin) = f.stdin.as_mut()
            && let Err(e) = std::io::Write::write_all(stdin, data)
        {
            f.error = Some(format!("the command stopped reading its input: {e}"));
        }
    }

    /// Marks the feed of call `id` as failed: its input is closed, the end reports why.
    fn feed_failed(&self, id: u64, why: String) {
        if let Some(f) = self
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
            && f.error.is_none()
        {
            f.stdin = None;
            f.error = Some(why);
        }
    }

    /// Starts the long-lived command of `ExecSession` call `id`; its input is then fed by
    /// `ExecStdin` frames and its output pumped by the caller (on a thread of its own).
    ///
    /// # Errors
    /// The command cannot start.
    pub fn session_start(
        &self,
        id: u64,
        req: &crate::transport::ExecRequest,
        merged: bool,
    ) -> Result<SessionRun, String> {
        use std::process::Stdio;
        let cannot = |e: std::io::Error| format!("cannot run `{}`: {e}", req.program);
        let mut cmd = command(req);
        cmd.stdin(Stdio::piped());
        let (mut child, stdout, stderr): (_, Box<dyn Read + Send>, _) = if merged {
            let (reader, writer) = std::io::pipe().map_err(cannot)?;
            cmd.stdout(writer.try_clone().map_err(cannot)?)
                .stderr(writer);
            let child = cmd.spawn().map_err(cannot)?;
            // Our copies of the write end go, so the output ends when the command does.
            drop(cmd);
            (child, Box::new(reader), None)
        } else {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(cannot)?;
            let stderr = tail_of(child.stderr.take().expect("piped"));
            let stdout = child.stdout.take().expect("piped");
            (child, Box::new(stdout), Some(stderr))
        };
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, child.stdin.take().expect("piped"));
        Ok(SessionRun {
            child,
            stdout,
            stderr,
        })
    }

    fn exec_read(
        &self,
        req: &crate::transport::ExecRequest,
        zstd: bool,
        reply: &mut dyn FnMut(Reply),
    ) -> Result<Reply, String> {
        use std::process::Stdio;
        let mut child = command(req)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run `{}`: {e}", req.program))?;
        let stderr = tail_of(child.stderr.take().expect("piped"));
        let mut out = child.stdout.take().expect("piped");
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut out, &mut buf).map_err(|e| format!("`{}`: {e}", req.program))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if zstd {
                reply(Reply::DataZstd {
                    data: super::protocol::compress(&buf),
                    len: n as u32,
                });
            } else {
                reply(Reply::Data(buf));
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        Ok(Reply::Exec(crate::transport::ExecOutput {
            code: status.code(),
            stdout: Vec::new(),
            stderr: stderr.join().unwrap_or_default(),
        }))
    }

    fn exec_write(&self, id: u64, req: &crate::transport::ExecRequest) {
        use std::process::Stdio;
        let feed = match command(req)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(mut child) => {
                // Its stdout is drained (and dropped) so the tool never blocks on a full pipe.
                let stdout = tail_of(child.stdout.take().expect("piped"));
                drop(stdout);
                let stderr = tail_of(child.stderr.take().expect("piped"));
                Feed {
                    stdin: child.stdin.take(),
                    child,
                    stderr,
                    error: None,
                }
            }
            Err(e) => {
                let mut dummy = command(&crate::transport::ExecRequest::new(
                    "true",
                    Vec::<String>::new(),
                ))
                .spawn()
                .expect("`true` runs");
                let _ = dummy.wait();
                Feed {
                    child: dummy,
                    stdin: None,
                    stderr: std::thread::spawn(Vec::new),
                    error: Some(format!("cannot run `{}`: {e}", req.program)),
                }
            }
        };
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, feed);
    }

    fn exec_end(&self, id: u64) -> Result<Reply, String> {
        let mut feed = self
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .ok_or_else(|| format!("no command started for call {id}"))?;
        drop(feed.stdin.take());
        let status = feed.child.wait().map_err(|e| e.to_string())?;
        let stderr = feed.stderr.join().unwrap_or_default();
        let mut stderr = stderr;
        if let Some(e) = feed.error {
            // Its own message (why it stopped) comes first; ours says what it did to the stream.
            stderr.extend_from_slice(format!("\n({e})").as_bytes());
        }
        Ok(Reply::Exec(crate::transport::ExecOutput {
            code: status.code(),
            stdout: Vec::new(),
            stderr,
        }))
    }

    /// Runs a path operation under a root; its error names the path.
    fn done(
        &self,
        root: RootId,
        path: &[u8],
        op: impl FnOnce(&SafeRoot) -> std::io::Result<()>,
    ) -> Result<Option<Reply>, String> {
        let r = self.root(root)?;
        op(&r).map_err(|e| format!("{}: {e}", show(path)))?;
        Ok(Some(Reply::Done(Outcome::default())))
    }

    pub(super) fn read_file(
        &self,
        root: RootId,
        path: &[u8],
        compress: bool,
        reply: &mut dyn FnMut(Reply),
    ) -> Result<Reply, String> {
        let f = self
            .root(root)?
            .open_read(path)
            .map_err(|e| format!("{}: {e}", show(path)))?;
        let mut chunks = Chunks::new(f).map_err(|e| format!("{}: {e}", show(path)))?;
        let mut hasher = blake3::Hasher::new();
        let mut len = 0u64;
        loop {
            let buf = match chunks.next_chunk() {
                Ok(Some(buf)) => buf,
                Ok(None) => break,
                Err(e) if crate::tree::stamp::is_changed(&e) => {
                    return Ok(Reply::Changed(format!("{}: {e}", show(path))));
                }
                Err(e) => return Err(format!("{}: {e}", show(path))),
            };
            let n = buf.len();
            hasher.update(&buf);
            len += n as u64;
            if compress {
                reply(Reply::DataZstd {
                    data: super::protocol::compress(&buf),
                    len: n as u32,
                });
            } else {
                reply(Reply::Data(buf));
            }
        }
        Ok(Reply::Done(Outcome {
            hash: Some(*hasher.finalize().as_bytes()),
            len,
        }))
    }

    fn hash_file(&self, root: RootId, path: &[u8]) -> Result<Reply, String> {
        let f = self
            .root(root)?
            .open_read(path)
            .map_err(|e| format!("{}: {e}", show(path)))?;
        let (hash, len) = hash_reader(f).map_err(|e| format!("{}: {e}", show(path)))?;
        Ok(Reply::Done(Outcome {
            hash: Some(hash),
            len,
        }))
    }

    fn signature(
        &self,
        root: RootId,
        path: &[u8],
        basis: Basis,
        block_len: u32,
    ) -> Result<delta::Signature, String> {
        let r = self.root(root)?;
        let f = open_basis(&r, path, basis).map_err(|e| format!("{}: {e}", show(path)))?;
        delta::signature(std::io::BufReader::with_capacity(CHUNK, f), block_len)
            .map_err(|e| format!("{}: {e}", show(path)))
    }

    pub(super) fn delta(
        &self,
        root: RootId,
        path: &[u8],
        sig: &delta::Signature,
        reply: &mut dyn FnMut(Reply),
    ) -> Result<Reply, String> {
        let f = self
            .root(root)?
            .open_read(path)
            .map_err(|e| format!("{}: {e}", show(path)))?;
        let f = crate::tree::stamp::Watched::new(f).map_err(|e| format!("{}: {e}", show(path)))?;
        let mut batch: Vec<DeltaOp> = Vec::new();
        let mut literal = 0usize;
        let stats = delta::diff(f, sig, |op| {
            if let DeltaOp::Literal(d) = &op {
                literal += d.len();
            }
            batch.push(op);
            if literal >= DELTA_BATCH || batch.len() >= 4096 {
                reply(Reply::DeltaOps(std::mem::take(&mut batch)));
                literal = 0;
            }
            Ok(())
        });
        let stats = match stats {
            Ok(stats) => stats,
            Err(e) if crate::tree::stamp::is_changed(&e) => {
                return Ok(Reply::Changed(format!("{}: {e}", show(path))));
            }
            Err(e) => return Err(format!("{}: {e}", show(path))),
        };
        if !batch.is_empty() {
            reply(Reply::DeltaOps(batch));
        }
        Ok(Reply::Done(Outcome {
            hash: Some(*stats.hash.as_bytes()),
            len: stats.literal_bytes + stats.copied_bytes,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn write_begin(
        &self,
        id: u64,
        root: RootId,
        path: Vec<u8>,
        meta: Meta,
        basis: Basis,
        block_len: u32,
        xattrs: Option<Wanted>,
    ) {
        let mut w = Write {
            root: None,
            temp: None,
            basis: None,
            block_len,
            meta,
            xattrs,
            hasher: blake3::Hasher::new(),
            len: 0,
            error: None,
            path,
        };
        match self.root(root) {
            Err(e) => w.error = Some(e),
            Ok(r) => {
                w.root = Some(r.clone());
                let final_basis = if basis == Basis::Final {
                    r.open_read(&w.path).ok()
                } else {
                    None
                };
                match r.create_temp(&w.path, basis == Basis::Partial) {
                    Ok((temp, partial)) => {
                        w.temp = Some(temp);
                        let b = match basis {
                            Basis::Final => final_basis,
                            Basis::Partial => partial,
                            Basis::None => None,
                        };
                        w.basis = b.and_then(|f| f.metadata().ok().map(|m| (f, m.len())));
                        if basis != Basis::None && w.basis.is_none() {
                            w.error =
                                Some(format!("{}: the delta basis disappeared", show(&w.path)));
                        }
                    }
                    Err(e) => w.error = Some(format!("{}: {e}", show(&w.path))),
                }
            }
        }
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(Mutex::new(w)));
    }

    /// Writes a batch of small whole files, each on its own: a file that fails is reported in
    /// its slot and the others land. A batch whose data does not match its files is refused
    /// as a whole (it comes from a peer).
    fn write_small(
        &self,
        root: RootId,
        files: &[SmallFile],
        data: Vec<u8>,
        zstd_len: Option<u32>,
    ) -> Result<Reply, String> {
        let r = self.root(root)?;
        let data = match zstd_len {
            Some(len) => super::protocol::decompress(&data, len)
                .map_err(|e| format!("a compressed batch of files was refused: {e}"))?,
            None => data,
        };
        let total: u64 = files.iter().map(|f| u64::from(f.len)).sum();
        if total != data.len() as u64 {
            return Err(format!(
                "a batch of files announces {total} bytes and carries {}: refused",
                data.len()
            ));
        }
        let mut at = 0usize;
        let results = files
            .iter()
            .map(|f| {
                let content = &data[at..at + f.len as usize];
                at += f.len as usize;
                r.write_whole(&f.path, content, &f.meta, f.xattrs.as_ref(), &f.hash)
                    .map(|()| Outcome {
                        hash: Some(f.hash),
                        len: u64::from(f.len),
                    })
                    .map_err(|e| format!("{}: {e}", show(&f.path)))
            })
            .collect();
        Ok(Reply::Written(results))
    }

    fn with_write(&self, id: u64, f: impl FnOnce(&mut Write) -> Result<(), String>) {
        let w = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        if let Some(w) = w {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            if w.error.is_none()
                && let Err(e) = f(&mut w)
            {
                w.error = Some(e);
            }
        }
    }

    fn write_end(&self, id: u64, expected: [u8; 32]) -> Result<Reply, String> {
        let w = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .ok_or_else(|| format!("no write in progress for call {id}"))?;
        let mut w = Arc::try_unwrap(w)
            .map_err(|_| "write still in use".to_string())?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let temp = w.temp.take();
        if let Some(e) = w.error.take() {
            // A write that failed here (a full disk, most often) gives its space back; only a
            // run that dies leaves a partial file behind, as the next run's basis.
            if let Some(t) = temp {
                t.discard();
            }
            return Err(e);
        }
        let temp = temp.ok_or("no temp file")?;
        let hash = *w.hasher.finalize().as_bytes();
        if hash != expected {
            temp.discard();
            return Err(format!(
                "{}: BLAKE3 of the written file differs from the sender's: not renamed into place",
                show(&w.path)
            ));
        }
        temp.commit_with(
            &w.meta,
            w.root.as_ref().is_some_and(|r| r.set_owner),
            w.xattrs.as_ref(),
        )
        .map_err(|e| format!("{}: {e}", show(&w.path)))?;
        Ok(Reply::Done(Outcome {
            hash: Some(hash),
            len: w.len,
        }))
    }
}

impl Write {
    fn data(&mut self, data: &[u8]) -> Result<(), String> {
        let temp = self.temp.as_mut().ok_or("no temp file")?;
        temp.write_data(data)
            .map_err(|e| format!("{}: {e}", show(&self.path)))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    fn patch(&mut self, ops: &[DeltaOp]) -> Result<(), String> {
        for op in ops {
            match op {
                DeltaOp::Literal(d) if d.len() > crate::tree::delta::MAX_LITERAL_ACCEPT => {
                    return Err(format!(
                        "{}: delta literal over the size limit",
                        show(&self.path)
                    ));
                }
                DeltaOp::Literal(d) => self.data(d)?,
                DeltaOp::Copy { block, count } => {
                    let (mut basis, basis_len) =
                        self.basis.take().ok_or("a delta without a basis")?;
                    let copied = self.copy_blocks(&mut basis, basis_len, *block, *count);
                    self.basis = Some((basis, basis_len));
                    copied?;
                }
            }
        }
        Ok(())
    }
}

impl Write {
    /// Copies basis blocks into the new file; the range is checked, since ops come from a peer.
    fn copy_blocks(
        &mut self,
        basis: &mut File,
        basis_len: u64,
        block: u32,
        count: u32,
    ) -> Result<(), String> {
        // Ops come from the peer: every block they name must exist in the basis.
        let start = u64::from(block) * u64::from(self.block_len);
        if count == 0 || self.block_len == 0 || start >= basis_len {
            return Err(format!(
                "{}: delta refers to blocks outside the basis",
                show(&self.path)
            ));
        }
        let end = start
            .saturating_add(u64::from(count) * u64::from(self.block_len))
            .min(basis_len);
        basis
            .seek(SeekFrom::Start(start))
            .map_err(|e| e.to_string())?;
        let mut remaining = end - start;
        let mut buf = vec![0u8; CHUNK];
        while remaining > 0 {
            let want = remaining.min(CHUNK as u64) as usize;
            basis
                .read_exact(&mut buf[..want])
                .map_err(|e| format!("{}: basis: {e}", show(&self.path)))?;
            self.data(&buf[..want])?;
            remaining -= want as u64;
        }
        Ok(())
    }
}

fn open_basis(root: &SafeRoot, path: &[u8], basis: Basis) -> std::io::Result<File> {
    match basis {
        Basis::Partial => root.open_partial(path),
        _ => root.open_read(path),
    }
}

/// Hashes files in parallel (rayon), each result in the order of `paths`.
pub fn hash_many(root: &SafeRoot, paths: &[Vec<u8>]) -> Vec<Result<([u8; 32], u64), String>> {
    use rayon::prelude::*;
    paths
        .par_iter()
        .map(|p| {
            let f = root.open_read(p).map_err(|e| format!("{}: {e}", show(p)))?;
            hash_reader(f).map_err(|e| format!("{}: {e}", show(p)))
        })
        .collect()
}

/// Reads until `buf` is full or the end of the file.
pub(super) fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// BLAKE3 and length of a file's content (`tree::digest`).
///
/// # Errors
/// Read errors, and a file that changed while it was read.
pub fn hash_reader(file: File) -> std::io::Result<([u8; 32], u64)> {
    crate::tree::digest::digest(file)
}

/// Reads a file in chunks sized to what is left: a small file costs one buffer of its own
/// size, not a zeroed 256 KiB one (which made hashing 20,000 small files memset-bound).
pub struct Chunks {
    /// Checks at the end that the file did not change while it was read.
    file: crate::tree::stamp::Watched,
    left: u64,
    done: bool,
}

impl Chunks {
    /// # Errors
    /// The file's size cannot be read.
    pub fn new(file: File) -> std::io::Result<Chunks> {
        let file = crate::tree::stamp::Watched::new(file)?;
        Ok(Chunks {
            left: file.before().size,
            file,
            done: false,
        })
    }

    /// Bytes left to read, from the size the file had when it was opened.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// The next chunk, or `None` at the end.
    ///
    /// # Errors
    /// Read errors, and a file that changed while it was read (`stamp::is_changed`).
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        // One byte more than what is left, so the end shows without another read.
        let want = if self.left >= CHUNK as u64 {
            CHUNK
        } else {
            self.left as usize + 1
        };
        let mut buf = vec![0u8; want];
        let n = read_full(&mut self.file, &mut buf)?;
        if n < want {
            self.done = true;
        }
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        self.left = self.left.saturating_sub(n as u64);
        Ok(Some(buf))
    }
}

/// The root a call writes beneath, if it writes (its flush is then owed: `tree::unsynced`).
/// Every call is named, so a new one must say whether it writes.
fn written_root(call: &Call) -> Option<RootId> {
    match call {
        Call::WriteBegin { root, .. }
        | Call::WriteSmall { root, .. }
        | Call::Mkdir { root, .. }
        | Call::Symlink { root, .. }
        | Call::Hardlink { root, .. }
        | Call::Mknod { root, .. }
        | Call::SetMeta { root, .. }
        | Call::Remove { root, .. }
        | Call::LocalCopy { root, .. }
        | Call::Rename { root, .. } => Some(*root),
        // Reads, the continuation of a write begun above, and calls on no root of ours
        // (commands, peers, streams; a root created by `OpenRoot` is an empty directory).
        Call::GlobDirs { .. }
        | Call::Scan { .. }
        | Call::Space { .. }
        | Call::Exec(_)
        | Call::ExecRead(_)
        | Call::ExecWrite(_)
        | Call::ExecStdin { .. }
        | Call::ExecStdinEnd
        | Call::OpenRoot { .. }
        | Call::CloseRoot { .. }
        | Call::ReadFile { .. }
        | Call::HashFile { .. }
        | Call::HashFiles { .. }
        | Call::Signature { .. }
        | Call::Signatures { .. }
        | Call::Delta { .. }
        | Call::WriteData { .. }
        | Call::WriteDataZstd { .. }
        | Call::WriteDelta { .. }
        | Call::WriteEnd { .. }
        | Call::Sync { .. }
        | Call::Lock { .. }
        | Call::ExecReadZstd(_)
        | Call::ExecStdinZstd { .. }
        | Call::ExecSession(_)
        | Call::ExecSessionMerged(_)
        | Call::ScanDigested { .. }
        | Call::PeerProbe { .. }
        | Call::PeerOpen(_)
        | Call::PeerRoot { .. }
        | Call::PeerCloseRoot { .. }
        | Call::PushFile(_)
        | Call::ExecPush { .. }
        | Call::ExecFromStream { .. }
        | Call::StreamTo { .. }
        | Call::AuthorizePeer(_)
        | Call::RevokePeer { .. } => None,
    }
}
