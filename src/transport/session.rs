//! A long-lived command on a host, fed lines and read back as it answers (a database client
//! holding a snapshot open while the dump streams use it), and the agent streams leased to
//! the dumps so one slow restore never holds up another.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use super::channel::{Channel, Pending};
use super::protocol::{Call, Reply};
use super::{ExecOutput, ExecRequest, Transport, TransportError};

/// Agent streams in use per host, stream 0 (queries, files) excepted.
static LEASED: Mutex<BTreeMap<String, BTreeSet<usize>>> = Mutex::new(BTreeMap::new());

/// One agent stream of a host held for one dump or session, given back on drop.
pub struct StreamLease {
    host: String,
    pub index: usize,
}

impl StreamLease {
    /// The lowest stream of `host` nobody holds (1 and up): concurrent dumps each get theirs.
    pub fn take(host: &str) -> StreamLease {
        let mut leased = LEASED.lock().unwrap_or_else(|p| p.into_inner());
        let taken = leased.entry(host.to_string()).or_default();
        let index = (1..).find(|i| !taken.contains(i)).unwrap_or(1);
        taken.insert(index);
        StreamLease {
            host: host.to_string(),
            index,
        }
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        let mut leased = LEASED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(taken) = leased.get_mut(&self.host) {
            taken.remove(&self.index);
        }
    }
}

enum Inner {
    Local {
        child: Child,
        stdin: Option<ChildStdin>,
        /// Output chunks, read on a thread of their own so a long input never waits for us
        /// to read what the command already printed.
        output: Receiver<Vec<u8>>,
        buffered: Vec<u8>,
        /// `None` when stderr is merged into the output.
        stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    },
    Remote {
        channel: Arc<dyn Channel>,
        pending: Pending,
        /// Output received and not yet read as lines.
        buffered: Vec<u8>,
        /// The command's end, once its final reply came.
        ended: Option<ExecOutput>,
        open: bool,
        _lease: StreamLease,
    },
}

/// A command running on a host with its input and output open to us.
pub struct Session {
    host: String,
    inner: Inner,
}

impl Session {
    /// Starts `req` on `host` with its stdin and stdout kept open.
    ///
    /// # Errors
    /// The host cannot be reached or the command cannot start.
    pub fn open(host: &dyn Transport, req: &ExecRequest) -> Result<Session, TransportError> {
        Session::start(host, req, false)
    }

    /// As `open`, with the command's stderr written into its stdout (one pipe): its errors
    /// come back in-band, between the lines they follow.
    ///
    /// # Errors
    /// As `open`.
    pub fn open_merged(host: &dyn Transport, req: &ExecRequest) -> Result<Session, TransportError> {
        Session::start(host, req, true)
    }

    fn start(
        host: &dyn Transport,
        req: &ExecRequest,
        merged: bool,
    ) -> Result<Session, TransportError> {
        let name = host.host().to_string();
        let cannot = |e: std::io::Error| TransportError::Remote {
            host: name.clone(),
            message: format!("cannot run `{}`: {e}", req.program),
        };
        let inner = if host.is_local() {
            let mut c = std::process::Command::new(&req.program);
            super::own_process_group(&mut c)
                .args(&req.args)
                .envs(req.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped());
            let (mut child, reader): (Child, Box<dyn Read + Send>) = if merged {
                let (reader, writer) = std::io::pipe().map_err(&cannot)?;
                c.stdout(writer.try_clone().map_err(&cannot)?)
                    .stderr(writer);
                let child = c.spawn().map_err(&cannot)?;
                // Our copies of the write end go, so the output ends when the command does.
                drop(c);
                (child, Box::new(reader))
            } else {
                let mut child = c
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(&cannot)?;
                let out = child.stdout.take().expect("piped");
                (child, Box::new(out))
            };
            let stderr = child.stderr.take().map(|mut err| {
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    let _ = err.read_to_end(&mut v);
                    v
                })
            });
            Inner::Local {
                stdin: child.stdin.take(),
                output: pump(reader),
                buffered: Vec::new(),
                child,
                stderr,
            }
        } else {
            let lease = StreamLease::take(&name);
            let channel = host.channel(lease.index)?;
            let call = if merged {
                Call::ExecSessionMerged(req.clone())
            } else {
                Call::ExecSession(req.clone())
            };
            let pending = channel.call(call)?;
            Inner::Remote {
                channel,
                pending,
                buffered: Vec::new(),
                ended: None,
                open: true,
                _lease: lease,
            }
        };
        Ok(Session { host: name, inner })
    }

    /// Sends `text` to the command's input.
    ///
    /// # Errors
    /// The command stopped reading, or the host is gone.
    pub fn send(&mut self, text: &str) -> Result<(), TransportError> {
        let host = self.host.clone();
        match &mut self.inner {
            Inner::Local { stdin, .. } => stdin
                .as_mut()
                .ok_or_else(|| gone(&host, "its input is closed"))?
                .write_all(text.as_bytes())
                .and_then(|()| stdin.as_mut().map_or(Ok(()), Write::flush))
                .map_err(|e| gone(&host, &e.to_string())),
            Inner::Remote {
                channel, pending, ..
            } => channel.follow(
                pending.id,
                Call::ExecStdin {
                    data: text.as_bytes().to_vec(),
                },
            ),
        }
    }

    /// The next line of output, without its newline; `None` once the command has exited.
    ///
    /// # Errors
    /// The host is gone.
    pub fn read_line(&mut self) -> Result<Option<String>, TransportError> {
        let host = self.host.clone();
        match &mut self.inner {
            Inner::Local {
                output, buffered, ..
            } => loop {
                if let Some(line) = take_line(buffered) {
                    return Ok(Some(line));
                }
                match output.recv() {
                    Ok(d) => buffered.extend_from_slice(&d),
                    // The command's output ended: a last line without its newline counts.
                    Err(_) if buffered.is_empty() => return Ok(None),
                    Err(_) => {
                        let last = String::from_utf8_lossy(buffered).into_owned();
                        buffered.clear();
                        return Ok(Some(last));
                    }
                }
            },
            Inner::Remote {
                pending,
                buffered,
                ended,
                ..
            } => loop {
                if let Some(line) = take_line(buffered) {
                    return Ok(Some(line));
                }
                if ended.is_some() {
                    return Ok(None);
                }
                match pending.replies.recv() {
                    Ok(Reply::Data(d)) => buffered.extend_from_slice(&d),
                    Ok(Reply::Exec(o)) => *ended = Some(o),
                    Ok(Reply::Error(e)) => {
                        return Err(TransportError::Remote { host, message: e });
                    }
                    Ok(r) => {
                        return Err(TransportError::Protocol {
                            host,
                            message: format!("unexpected {r:?}"),
                        });
                    }
                    Err(_) => return Err(gone(&host, "connection lost during the session")),
                }
            },
        }
    }

    /// Closes the command's input and waits for it to exit.
    ///
    /// # Errors
    /// The host is gone.
    pub fn close(mut self) -> Result<ExecOutput, TransportError> {
        let host = self.host.clone();
        match &mut self.inner {
            Inner::Local {
                child,
                stdin,
                stderr,
                ..
            } => {
                drop(stdin.take());
                let status = child.wait().map_err(|e| gone(&host, &e.to_string()))?;
                Ok(ExecOutput {
                    code: status.code(),
                    stdout: Vec::new(),
                    stderr: stderr
                        .take()
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default(),
                })
            }
            Inner::Remote {
                channel,
                pending,
                ended,
                open,
                ..
            } => {
                if *open {
                    *open = false;
                    channel.follow(pending.id, Call::ExecStdinEnd)?;
                }
                loop {
                    if let Some(o) = ended.take() {
                        return Ok(o);
                    }
                    match pending.replies.recv() {
                        Ok(Reply::Exec(o)) => return Ok(o),
                        Ok(Reply::Error(e)) => {
                            return Err(TransportError::Remote { host, message: e });
                        }
                        Ok(_) => {}
                        Err(_) => return Err(gone(&host, "connection lost during the session")),
                    }
                }
            }
        }
    }
}

impl Drop for Session {
    /// A session dropped on an error path still ends: its command sees its input close.
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Local { stdin, child, .. } => {
                drop(stdin.take());
                let _ = child.wait();
            }
            Inner::Remote {
                channel,
                pending,
                open,
                ..
            } => {
                if *open {
                    *open = false;
                    let _ = channel.follow(pending.id, Call::ExecStdinEnd);
                }
            }
        }
    }
}

/// Reads `from` on a thread of its own, chunk by chunk, until it ends.
fn pump(mut from: Box<dyn Read + Send>) -> Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The first whole line of `buffered`, without its newline, taken out of it.
fn take_line(buffered: &mut Vec<u8>) -> Option<String> {
    let at = buffered.iter().position(|b| *b == b'\n')?;
    let line: Vec<u8> = buffered.drain(..=at).collect();
    Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned())
}

fn gone(host: &str, why: &str) -> TransportError {
    TransportError::Remote {
        host: host.into(),
        message: format!("the session command stopped: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_take_the_lowest_free_stream_and_give_it_back() {
        let host = "lease-test-host";
        let a = StreamLease::take(host);
        let b = StreamLease::take(host);
        assert_eq!((a.index, b.index), (1, 2));
        drop(a);
        let c = StreamLease::take(host);
        assert_eq!(c.index, 1);
        assert_eq!(StreamLease::take("another-host").index, 1);
    }

    #[test]
    fn a_local_session_answers_line_by_line_and_ends() {
        let local = super::super::LocalTransport::new("local");
        let mut s = Session::open(&local, &ExecRequest::new("cat", Vec::<String>::new())).unwrap();
        s.send("one\ntwo\n").unwrap();
        assert_eq!(s.read_line().unwrap().as_deref(), Some("one"));
        assert_eq!(s.read_line().unwrap().as_deref(), Some("two"));
        assert!(s.close().unwrap().success());
    }

    #[test]
    fn a_merged_session_reads_errors_between_the_lines_they_follow() {
        let local = super::super::LocalTransport::new("local");
        let script = "while read l; do echo \"out $l\"; echo \"err $l\" >&2; done";
        let req = ExecRequest::new("sh", vec!["-c".to_string(), script.to_string()]);
        let mut s = Session::open_merged(&local, &req).unwrap();
        s.send("a\nb\n").unwrap();
        let lines: Vec<String> = (0..4).map(|_| s.read_line().unwrap().unwrap()).collect();
        assert_eq!(lines, ["out a", "err a", "out b", "err b"]);
        s.send("c\n").unwrap();
        assert_eq!(s.read_line().unwrap().as_deref(), Some("out c"));
        let end = s.close().unwrap();
        assert!(end.success() && end.stderr.is_empty());
    }
}
