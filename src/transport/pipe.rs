//! A command on one host piped into a command on another (a database dump into its restore),
//! streamed through the transports: no temp file, memory bounded by the reply buffers.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::protocol::{Call, Reply};
use super::session::StreamLease;
use super::{ExecOutput, ExecRequest, Transport, TransportError};

const CHUNK: usize = 256 * 1024;

fn local_command(req: &ExecRequest) -> Command {
    let mut c = Command::new(&req.program);
    super::own_process_group(&mut c)
        .args(&req.args)
        .envs(req.env.iter().map(|(k, v)| (k, v)));
    c
}

/// Where the stream goes.
enum Sink {
    Local {
        child: std::process::Child,
        stdin: Option<std::process::ChildStdin>,
        stderr: std::thread::JoinHandle<Vec<u8>>,
    },
    Remote {
        channel: std::sync::Arc<dyn super::channel::Channel>,
        pending: super::channel::Pending,
        _lease: StreamLease,
    },
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

impl Sink {
    fn open(host: &dyn Transport, req: &ExecRequest) -> Result<Sink, TransportError> {
        if host.is_local() {
            let mut child = local_command(req)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| TransportError::Remote {
                    host: host.host().into(),
                    message: format!("cannot run `{}`: {e}", req.program),
                })?;
            let stderr = read_all(child.stderr.take().expect("piped"));
            return Ok(Sink::Local {
                stdin: child.stdin.take(),
                child,
                stderr,
            });
        }
        let lease = StreamLease::take(host.host());
        let channel = host.channel(lease.index)?;
        let pending = channel.call(Call::ExecWrite(req.clone()))?;
        Ok(Sink::Remote {
            channel,
            pending,
            _lease: lease,
        })
    }

    fn write(&mut self, data: Vec<u8>) -> Result<(), String> {
        match self {
            Sink::Local { stdin, .. } => stdin
                .as_mut()
                .ok_or("input closed")?
                .write_all(&data)
                .map_err(|e| format!("the receiving command stopped reading: {e}")),
            // Crossing hosts, the stream goes compressed (a dump's text shrinks several times).
            Sink::Remote {
                channel, pending, ..
            } => channel
                .follow(
                    pending.id,
                    Call::ExecStdinZstd {
                        len: data.len() as u32,
                        data: super::protocol::compress(&data),
                    },
                )
                .map_err(|e| e.to_string()),
        }
    }

    fn finish(self, host: &str) -> Result<ExecOutput, TransportError> {
        match self {
            Sink::Local {
                mut child,
                stdin,
                stderr,
            } => {
                drop(stdin);
                let status = child.wait().map_err(|e| TransportError::Remote {
                    host: host.into(),
                    message: e.to_string(),
                })?;
                Ok(ExecOutput {
                    code: status.code(),
                    stdout: Vec::new(),
                    stderr: stderr.join().unwrap_or_default(),
                })
            }
            Sink::Remote {
                channel, pending, ..
            } => {
                channel.follow(pending.id, Call::ExecStdinEnd)?;
                match pending.wait(host)? {
                    Reply::Exec(o) => Ok(o),
                    r => Err(TransportError::Protocol {
                        host: host.into(),
                        message: format!("unexpected {r:?}"),
                    }),
                }
            }
        }
    }
}

/// Runs `from_req` on `from` and feeds its output to `to_req` on `to`; returns both outcomes
/// (exit codes and stderr) and the bytes that went through, each chunk told to `moving` as it
/// passes.
///
/// # Errors
/// A host cannot be reached or a program cannot start; a command that fails is an `Ok` with its
/// exit code, for the caller to judge.
pub fn pipe(
    from: &dyn Transport,
    from_req: &ExecRequest,
    to: &dyn Transport,
    to_req: &ExecRequest,
    moving: &dyn Fn(u64),
) -> Result<(ExecOutput, ExecOutput, u64), TransportError> {
    pipe_watched(from, from_req, to, to_req, moving, None)
}

/// Who is shown a stream's chunks as they pass.
pub type Watch<'w> = &'w dyn Fn(&[u8]);

/// As `pipe`, showing every chunk to `watch` as it passes (a dump's replication position is
/// read from its head). A watched stream goes through this process, never the direct path.
///
/// # Errors
/// As `pipe`.
pub fn pipe_watched(
    from: &dyn Transport,
    from_req: &ExecRequest,
    to: &dyn Transport,
    to_req: &ExecRequest,
    moving: &dyn Fn(u64),
    watch: Option<Watch<'_>>,
) -> Result<(ExecOutput, ExecOutput, u64), TransportError> {
    if watch.is_none()
        && !from.is_local()
        && !to.is_local()
        && let Some(route) = from.direct_to(to.host())
        && let Some(done) = direct(from, from_req, to, to_req, &route)?
    {
        return Ok(done);
    }
    // Each remote end gets an agent stream of its own: a restore that stalls its stream (the
    // agent writes its input in order) holds up no other dump.
    let mut sink = Sink::open(to, to_req)?;
    let mut moved = 0u64;
    let mut broken: Option<String> = None;
    let source = if from.is_local() {
        let mut child = local_command(from_req)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TransportError::Remote {
                host: from.host().into(),
                message: format!("cannot run `{}`: {e}", from_req.program),
            })?;
        let stderr = read_all(child.stderr.take().expect("piped"));
        let mut out = child.stdout.take().expect("piped");
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = out.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.truncate(n);
            moved += n as u64;
            moving(n as u64);
            if let Some(w) = watch {
                w(&buf);
            }
            if broken.is_none()
                && let Err(e) = sink.write(buf)
            {
                broken = Some(e);
            }
        }
        let status = child.wait().map_err(|e| TransportError::Remote {
            host: from.host().into(),
            message: e.to_string(),
        })?;
        ExecOutput {
            code: status.code(),
            stdout: Vec::new(),
            stderr: stderr.join().unwrap_or_default(),
        }
    } else {
        let lease = StreamLease::take(from.host());
        let pending = from
            .channel(lease.index)?
            .call(Call::ExecReadZstd(from_req.clone()))?;
        let mut result = None;
        for reply in pending.replies.iter() {
            let reply = match reply {
                Reply::DataZstd { data, len } => match super::protocol::decompress(&data, len) {
                    Ok(plain) => Reply::Data(plain),
                    Err(e) => {
                        return Err(TransportError::Protocol {
                            host: from.host().into(),
                            message: format!("a compressed chunk of the dump was refused: {e}"),
                        });
                    }
                },
                r => r,
            };
            match reply {
                Reply::Data(data) => {
                    moved += data.len() as u64;
                    moving(data.len() as u64);
                    if let Some(w) = watch {
                        w(&data);
                    }
                    if broken.is_none()
                        && let Err(e) = sink.write(data)
                    {
                        broken = Some(e);
                    }
                }
                Reply::Exec(o) => {
                    result = Some(o);
                    break;
                }
                Reply::Error(e) => {
                    return Err(TransportError::Remote {
                        host: from.host().into(),
                        message: e,
                    });
                }
                r => {
                    return Err(TransportError::Protocol {
                        host: from.host().into(),
                        message: format!("unexpected {r:?}"),
                    });
                }
            }
        }
        result.ok_or_else(|| TransportError::Connect {
            host: from.host().into(),
            message: "connection lost during the stream".into(),
        })?
    };
    let mut target = sink.finish(to.host())?;
    if let Some(e) = broken {
        target.stderr.extend_from_slice(format!("\n{e}").as_bytes());
        if target.code == Some(0) {
            target.code = None;
        }
    }
    Ok((source, target, moved))
}

/// `pipe` over the run's direct path: the source's agent streams the command's output to the
/// target's host, where our own agent feeds it to `to_req` (with its secrets, which never
/// reach the peer); this process only starts both and reads how they ended. `Ok(None)` when
/// the path cannot be used and the plan allows the relay.
fn direct(
    from: &dyn Transport,
    from_req: &ExecRequest,
    to: &dyn Transport,
    to_req: &ExecRequest,
    route: &super::direct::Route,
) -> Result<Option<(ExecOutput, ExecOutput, u64)>, TransportError> {
    let src_lease = StreamLease::take(from.host());
    let src = from.channel(src_lease.index)?;
    // The source's agent logs in to the target first: nothing runs before the path is there.
    let peer = match src.call_wait(Call::PeerOpen(Box::new(route.spec.clone()))) {
        Ok(Reply::Opened(id)) => id,
        _ if !route.required => return Ok(None),
        Ok(r) => {
            return Err(TransportError::Protocol {
                host: from.host().into(),
                message: format!("unexpected {r:?}"),
            });
        }
        Err(e) => return Err(e),
    };
    let sink_lease = StreamLease::take(to.host());
    let sink_channel = to.channel(sink_lease.index)?;
    let sink = sink_channel.call(Call::ExecFromStream {
        req: to_req.clone(),
        dir: route.streams.clone(),
    })?;
    let lost = |host: &str| TransportError::Connect {
        host: host.into(),
        message: "connection lost during the stream".into(),
    };
    let token = match sink.replies.recv() {
        Ok(Reply::Rendezvous(t)) => t,
        Ok(Reply::Error(message)) => {
            return Err(TransportError::Remote {
                host: to.host().into(),
                message,
            });
        }
        Ok(r) => {
            return Err(TransportError::Protocol {
                host: to.host().into(),
                message: format!("unexpected {r:?}"),
            });
        }
        Err(_) => return Err(lost(to.host())),
    };
    // A stream that never came or broke off: the command at the target is killed, not left
    // to finish on part of its input.
    let cancel = || {
        let _ = sink_channel.follow(sink.id, Call::ExecStdinEnd);
    };
    let pushed = src.call_wait(Call::ExecPush {
        req: from_req.clone(),
        peer,
        token,
    });
    let (source, bytes, peer_error) = match pushed {
        Ok(Reply::ExecPushed {
            output,
            bytes,
            peer_error,
        }) => (output, bytes, peer_error),
        other => {
            cancel();
            let _ = sink.wait(to.host());
            return Err(match other {
                Err(e) => e,
                Ok(r) => TransportError::Protocol {
                    host: from.host().into(),
                    message: format!("unexpected {r:?}"),
                },
            });
        }
    };
    if peer_error.is_some() {
        cancel();
    }
    let mut target = match sink.wait(to.host())? {
        Reply::Exec(o) => o,
        r => {
            return Err(TransportError::Protocol {
                host: to.host().into(),
                message: format!("unexpected {r:?}"),
            });
        }
    };
    if let Some(e) = peer_error {
        target.stderr.extend_from_slice(format!("\n{e}").as_bytes());
        if target.code == Some(0) {
            target.code = None;
        }
    }
    Ok(Some((source, target, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LocalTransport;

    #[test]
    fn a_local_pipe_streams_and_reports_both_ends() {
        let here = LocalTransport::new("local");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy");
        let told = std::sync::Mutex::new(Vec::new());
        let (a, b, moved) = pipe(
            &here,
            &ExecRequest::new("sh", ["-c", "head -c 3000000 /dev/zero; echo done >&2"]),
            &here,
            &ExecRequest::new("sh", ["-c", &format!("cat > {}", out.display())]),
            &|n| told.lock().unwrap().push(n),
        )
        .unwrap();
        assert_eq!((a.code, b.code, moved), (Some(0), Some(0), 3_000_000));
        let told = told.into_inner().unwrap();
        assert!(told.len() > 1, "told as it streams: {told:?}");
        assert_eq!(told.iter().sum::<u64>(), 3_000_000);
        assert_eq!(String::from_utf8_lossy(&a.stderr).trim(), "done");
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 3_000_000);
    }
}
