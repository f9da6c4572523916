//! The agent's side of the direct data path: its own ssh connection to a peer host's agent
//! (with a key made for the move), and the calls that send file data and command output
//! there, so the bytes go host to host and the controller sees only verdicts.

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::mpsc::TryRecvError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::channel::{Channel, RemoteChannel};
use super::protocol::{
    Basis, Call, Outcome, PEER_HOST_ALIAS, PeerId, PeerSpec, Push, Pushed, Reply,
};
use super::server::Server;
use super::ssh::{SshCommand, start_session};
use super::{ExecOutput, ExecRequest};

/// Chunks of a command's output sent to a peer.
const CHUNK: usize = 256 * 1024;

/// An open connection to a peer host's (confined) agent.
pub struct Peer {
    pub channel: Arc<RemoteChannel>,
    child: Mutex<Child>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.channel.close();
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The peers one agent opened, by handle; a spec asked again gets the open one.
#[derive(Default)]
pub struct Peers {
    open: Mutex<Vec<([u8; 32], Arc<Peer>)>>,
}

impl Peers {
    /// The handle of a live connection for `spec`, opened now when there is none.
    ///
    /// # Errors
    /// ssh cannot log in or the peer's agent does not answer.
    pub fn open(&self, spec: &PeerSpec) -> Result<PeerId, String> {
        let digest = *blake3::hash(&postcard::to_stdvec(spec).unwrap_or_default()).as_bytes();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = open
            .iter()
            .position(|(d, p)| *d == digest && p.channel.lost().is_none())
        {
            return Ok(i as PeerId);
        }
        let peer = Arc::new(connect(spec)?);
        open.push((digest, peer));
        Ok((open.len() - 1) as PeerId)
    }

    /// # Errors
    /// An unknown handle.
    pub fn get(&self, id: PeerId) -> Result<Arc<Peer>, String> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id as usize)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| format!("unknown peer handle {id}"))
    }
}

/// The options of the peer's ssh: nothing from the host's ssh configuration or ssh-agent, no
/// forwarding of any kind, the peer's host key pinned.
fn peer_command(spec: &PeerSpec, key: &std::path::Path, known: &std::path::Path) -> SshCommand {
    let mut base: Vec<String> = ["ssh", "-F", "none", "-T", "-a", "-x", "-p"]
        .map(String::from)
        .to_vec();
    base.push(spec.port.to_string());
    base.extend(["-l".into(), spec.user.clone(), "-i".into()]);
    base.push(key.display().to_string());
    let options = [
        "IdentitiesOnly=yes".to_string(),
        "IdentityAgent=none".into(),
        "BatchMode=yes".into(),
        "StrictHostKeyChecking=yes".into(),
        format!("UserKnownHostsFile={}", known.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        format!("HostKeyAlias={PEER_HOST_ALIAS}"),
        "UpdateHostKeys=no".into(),
        "ControlMaster=no".into(),
        "ControlPath=none".into(),
        "ForwardAgent=no".into(),
        "ClearAllForwardings=yes".into(),
        "PermitLocalCommand=no".into(),
        "ConnectTimeout=15".into(),
        "ServerAliveInterval=15".into(),
    ];
    for o in options.into_iter().chain(super::ssh::fast_ciphers()) {
        base.extend(["-o".into(), o]);
    }
    SshCommand {
        base,
        destination: spec.address.clone(),
    }
}

/// Logs in to the peer with the move's key, written to a private temp file for as long as ssh
/// needs it (until the peer's agent answers), then removed.
fn connect(spec: &PeerSpec) -> Result<Peer, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::Builder::new()
        .prefix("th-peer-")
        .tempdir()
        .map_err(|e| format!("cannot make a private directory for the peer's key: {e}"))?;
    let key = dir.path().join("key");
    let known = dir.path().join("known_hosts");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .and_then(|mut f| f.write_all(&spec.key))
        .map_err(|e| format!("cannot write the peer's key: {e}"))?;
    let mut lines = spec.known_hosts.join("\n");
    lines.push('\n');
    std::fs::write(&known, lines).map_err(|e| format!("cannot write known_hosts: {e}"))?;
    let ssh = peer_command(spec, &key, &known);
    // The remote command is the one the peer's authorized_keys forces; ours is never run.
    let started = start_session(&spec.host, &ssh, "transhumance");
    drop(dir);
    match started {
        Ok(Some((child, channel))) => Ok(Peer {
            channel: Arc::new(channel),
            child: Mutex::new(child),
        }),
        Ok(None) => Err(format!("host `{}`: the peer's agent is missing", spec.host)),
        Err(e) => Err(e.to_string()),
    }
}

/// The address this host reaches `address:port` from (what the peer's `from=` must allow);
/// with `banner`, whether it answers as an ssh server, and its banner.
///
/// # Errors
/// No route, nothing answers, or what answers is no ssh server.
pub fn probe(address: &str, port: u16, banner: bool) -> Result<Reply, String> {
    use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
    let addrs: Vec<_> = (address, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{address}` here: {e}"))?
        .collect();
    if !banner {
        // A connected UDP socket takes its local address from the route: nothing is sent.
        let a = addrs
            .first()
            .ok_or_else(|| format!("`{address}` resolves to no address"))?;
        let any: std::net::SocketAddr = if a.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let local = UdpSocket::bind(any)
            .and_then(|s| s.connect(a).and_then(|()| s.local_addr()))
            .map_err(|e| format!("no route to {a}: {e}"))?;
        return Ok(Reply::Probed {
            banner: String::new(),
            local: local.ip().to_string(),
        });
    }
    let mut last = format!("`{address}` resolves to no address");
    for a in addrs {
        let mut stream = match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => {
                last = format!("cannot connect to {a}: {e}");
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut banner = Vec::new();
        let mut byte = [0u8; 1];
        while banner.len() < 255 && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
            if byte[0] == b'\n' {
                break;
            }
            banner.push(byte[0]);
        }
        let banner = String::from_utf8_lossy(&banner).trim().to_string();
        if !banner.starts_with("SSH-") {
            last = format!("{a} answers, but not as an ssh server (`{banner}`)");
            continue;
        }
        let local = stream
            .local_addr()
            .map(|l| l.ip().to_string())
            .map_err(|e| e.to_string())?;
        return Ok(Reply::Probed { banner, local });
    }
    Err(last)
}

/// Sends one file of a root here to a root at the peer and returns the peer's verdict.
///
/// # Errors
/// The file cannot be read, the peer refused or failed the write, or the peer is gone.
pub fn push(server: &Server, p: &Push) -> Result<Reply, String> {
    let peer = server.peers.get(p.peer)?;
    let ch = peer.channel.clone();
    let host = ch.host().to_string();
    let signature = match p.basis {
        Basis::None => None,
        basis => match ch.call_wait(Call::Signature {
            root: p.peer_root,
            path: p.path.clone(),
            basis,
            block_len: p.block_len,
        }) {
            Ok(Reply::Sig(s)) => Some(s),
            // No usable basis there (it went): the file goes whole.
            _ => None,
        },
    };
    let basis = if signature.is_some() {
        p.basis
    } else {
        Basis::None
    };
    let pending = ch
        .call(Call::WriteBegin {
            root: p.peer_root,
            path: p.path.clone(),
            meta: p.meta,
            basis,
            block_len: p.block_len,
            xattrs: p.xattrs.clone(),
        })
        .map_err(|e| e.to_string())?;
    let id = pending.id;
    let mut failed: Option<String> = None;
    let (mut sent, mut matched) = (0u64, 0u64);
    let mut forward = |call: Call| {
        if failed.is_none()
            && let Err(e) = ch.follow(id, call)
        {
            failed = Some(e.to_string());
        }
    };
    let read = match &signature {
        Some(sig) => server.delta(p.root, &p.path, sig, &mut |r| {
            if let Reply::DeltaOps(ops) = r {
                for op in &ops {
                    match op {
                        crate::tree::delta::DeltaOp::Literal(d) => sent += d.len() as u64,
                        crate::tree::delta::DeltaOp::Copy { count, .. } => {
                            matched += u64::from(*count) * u64::from(sig.block_len);
                        }
                    }
                }
                forward(Call::WriteDelta { ops });
            }
        }),
        None => server.read_file(p.root, &p.path, p.compress, &mut |r| match r {
            Reply::Data(data) => {
                sent += data.len() as u64;
                forward(Call::WriteData { data });
            }
            Reply::DataZstd { data, len } => {
                sent += data.len() as u64;
                forward(Call::WriteDataZstd { data, len });
            }
            _ => {}
        }),
    };
    // What was sent is dropped at the peer: an impossible hash makes it discard the write.
    let abandon = |pending: super::channel::Pending| {
        let _ = ch.follow(id, Call::WriteEnd { hash: [0u8; 32] });
        let _ = pending.wait(&host);
    };
    let hash = match read {
        Ok(Reply::Done(Outcome { hash: Some(h), .. })) => h,
        Ok(Reply::Changed(why)) => {
            abandon(pending);
            return Ok(Reply::Changed(why));
        }
        Ok(r) => {
            abandon(pending);
            return Err(format!("unexpected {r:?}"));
        }
        Err(e) => {
            abandon(pending);
            return Err(e);
        }
    };
    if let Some(e) = failed {
        abandon(pending);
        return Err(format!("peer `{host}`: {e}"));
    }
    ch.follow(id, Call::WriteEnd { hash })
        .map_err(|e| format!("peer `{host}`: {e}"))?;
    match pending.wait(&host) {
        Ok(Reply::Done(o)) => Ok(Reply::Pushed(Pushed {
            hash: o.hash.unwrap_or(hash),
            len: o.len,
            delta: signature.is_some(),
            sent,
            matched,
        })),
        Ok(r) => Err(format!("peer `{host}`: unexpected {r:?}")),
        Err(e) => Err(failure_text(e)),
    }
}

fn failure_text(e: super::TransportError) -> String {
    match e {
        super::TransportError::Remote { host, message } => format!("peer `{host}`: {message}"),
        e => e.to_string(),
    }
}

/// Runs `req` here and streams its stdout to the rendezvous `token` at the peer: how the
/// command ended, the bytes the peer took, and the peer's failure when there was one.
///
/// # Errors
/// The peer handle is unknown or the command cannot start.
pub fn exec_push(
    server: &Server,
    req: &ExecRequest,
    peer: PeerId,
    token: &str,
) -> Result<Reply, String> {
    let peer = server.peers.get(peer)?;
    let ch = peer.channel.clone();
    let host = ch.host().to_string();
    let pending = ch
        .call(Call::StreamTo {
            token: token.to_string(),
        })
        .map_err(failure_text)?;
    let id = pending.id;
    let mut child = super::server::command(req)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", req.program))?;
    let stderr = super::server::tail_of(child.stderr.take().expect("piped"));
    let mut out = child.stdout.take().expect("piped");
    let mut bytes = 0u64;
    let mut peer_error: Option<String> = None;
    let mut early: Option<Reply> = None;
    loop {
        // The peer may answer before the end only to say it failed.
        match pending.replies.try_recv() {
            Ok(r) => {
                peer_error = Some(match &r {
                    Reply::Error(e) => format!("peer `{host}`: {e}"),
                    r => format!("peer `{host}`: unexpected {r:?}"),
                });
                early = Some(r);
                break;
            }
            Err(TryRecvError::Disconnected) => {
                peer_error = Some(format!("peer `{host}`: connection lost"));
                break;
            }
            Err(TryRecvError::Empty) => {}
        }
        let mut buf = vec![0u8; CHUNK];
        let n = match super::server::read_full(&mut out, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                peer_error = Some(format!("`{}`: {e}", req.program));
                break;
            }
        };
        if n == 0 {
            break;
        }
        buf.truncate(n);
        bytes += n as u64;
        if let Err(e) = ch.follow(
            id,
            Call::ExecStdinZstd {
                len: n as u32,
                data: super::protocol::compress(&buf),
            },
        ) {
            peer_error = Some(failure_text(e));
            break;
        }
    }
    if peer_error.is_some() {
        // The stream broke: the command stops rather than run on into nothing.
        let _ = child.kill();
    }
    drop(out);
    let status = child.wait().map_err(|e| e.to_string())?;
    let output = ExecOutput {
        code: status.code(),
        stdout: Vec::new(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if early.is_none() && peer_error.is_none() {
        let ended = ch
            .follow(id, Call::ExecStdinEnd)
            .map_err(failure_text)
            .and_then(|()| pending.wait(&host).map_err(failure_text));
        match ended {
            Ok(Reply::Done(o)) if o.len == bytes => {}
            Ok(Reply::Done(o)) => {
                peer_error = Some(format!(
                    "peer `{host}`: passed on {} of {bytes} bytes",
                    o.len
                ));
            }
            Ok(r) => peer_error = Some(format!("peer `{host}`: unexpected {r:?}")),
            Err(e) => peer_error = Some(e),
        }
    }
    Ok(Reply::ExecPushed {
        output,
        bytes,
        peer_error,
    })
}
