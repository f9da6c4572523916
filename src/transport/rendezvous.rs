//! Streams between two agents on one host, met through a Unix socket named by a random token:
//! the controller's own agent runs a command (a database restore, with its secrets) reading
//! from the socket, and the confined agent a peer logged in to writes what the peer sends into
//! it. The confined agent can feed a command it was given a token for, and run none.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ExecOutput;
use super::protocol::{Outcome, Reply};

/// How long a command waits for its stream to arrive.
const ARRIVAL: Duration = Duration::from_secs(120);

/// A command waiting for (or reading) its stream.
#[derive(Default)]
struct Waiting {
    cancelled: AtomicBool,
    /// The stream once it came, so a cancel can end the read.
    stream: Mutex<Option<UnixStream>>,
}

/// A stream this agent writes into for a peer.
struct Outgoing {
    stream: UnixStream,
    bytes: u64,
    error: Option<String>,
}

/// The streams of one agent, both ends.
#[derive(Default)]
pub struct Rendezvous {
    waiting: Mutex<HashMap<u64, Arc<Waiting>>>,
    outgoing: Mutex<HashMap<u64, Outgoing>>,
}

/// 128 random bits, in hex.
fn token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `len` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err("no randomness for a stream token".into());
    }
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

fn valid_token(t: &str) -> bool {
    t.len() == 32
        && t.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Checks that `dir` is a directory of ours that nobody else may enter.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != me || m.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: not a private directory of this user: refused for streams",
            dir.display()
        ));
    }
    Ok(())
}

/// Makes the private directory of a move's streams (mode 0700); one already there must be ours.
///
/// # Errors
/// It cannot be made, or one not ours is in the way.
pub fn make_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    private_dir(dir)
}

/// Removes a move's stream directory (and the sockets a crash left in it).
pub fn remove_dir(dir: &Path) {
    if private_dir(dir).is_ok() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Rendezvous {
    /// Runs `req` with its stdin read from a socket in `dir` that a peer connects to; `reply`
    /// first gets the token, the returned reply is the command's end.
    ///
    /// # Errors
    /// The socket cannot be made, or the command cannot start.
    pub fn receive(
        &self,
        id: u64,
        req: &super::ExecRequest,
        dir: &Path,
        reply: &mut dyn FnMut(Reply),
    ) -> Result<Reply, String> {
        private_dir(dir)?;
        let token = token()?;
        let path = dir.join(&token);
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let waiting = Arc::new(Waiting::default());
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, waiting.clone());
        let result = self.serve(&listener, &path, &waiting, &token, req, reply);
        let _ = std::fs::remove_file(&path);
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        result
    }

    fn serve(
        &self,
        listener: &UnixListener,
        path: &PathBuf,
        waiting: &Waiting,
        token: &str,
        req: &super::ExecRequest,
        reply: &mut dyn FnMut(Reply),
    ) -> Result<Reply, String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        reply(Reply::Rendezvous(token.to_string()));
        let start = Instant::now();
        let stream = loop {
            if waiting.cancelled.load(Ordering::SeqCst) {
                return Ok(ended(None, "cancelled before the stream came".into()));
            }
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() > ARRIVAL {
                        return Ok(ended(
                            None,
                            format!("no stream came within {} s", ARRIVAL.as_secs()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        };
        let _ = std::fs::remove_file(path);
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        *waiting.stream.lock().unwrap_or_else(|p| p.into_inner()) = stream.try_clone().ok();
        if waiting.cancelled.load(Ordering::SeqCst) {
            return Ok(ended(None, "cancelled".into()));
        }
        let mut child = super::server::command(req)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run `{}`: {e}", req.program))?;
        // Its stdout is drained (and dropped) so the tool never blocks on a full pipe.
        drop(super::server::tail_of(child.stdout.take().expect("piped")));
        let stderr = super::server::tail_of(child.stderr.take().expect("piped"));
        let mut stdin = child.stdin.take().expect("piped");
        let mut stream = stream;
        let mut buf = vec![0u8; 256 * 1024];
        let mut broken = None;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = stdin.write_all(&buf[..n]) {
                        broken = Some(format!("the command stopped reading its input: {e}"));
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    broken = Some(format!("the stream broke: {e}"));
                    break;
                }
            }
        }
        let cancelled = waiting.cancelled.load(Ordering::SeqCst);
        if cancelled {
            // A stream that broke off is no whole input: the command must not finish on it.
            let _ = child.kill();
        }
        drop(stdin);
        let status = child.wait().map_err(|e| e.to_string())?;
        let mut stderr = stderr.join().unwrap_or_default();
        if cancelled {
            stderr.extend_from_slice(b"\n(cancelled: the stream broke off)");
        }
        if let Some(b) = broken {
            stderr.extend_from_slice(format!("\n({b})").as_bytes());
        }
        Ok(Reply::Exec(ExecOutput {
            code: if cancelled { None } else { status.code() },
            stdout: Vec::new(),
            stderr,
        }))
    }

    /// Cancels the command of call `id` waiting for (or reading) its stream; `false` when
    /// no such command is waiting.
    pub fn cancel(&self, id: u64) -> bool {
        let Some(w) = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
        else {
            return false;
        };
        w.cancelled.store(true, Ordering::SeqCst);
        if let Some(s) = w.stream.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        true
    }

    /// Connects call `id` to the stream `token` of `dir` (the confined agent's own).
    ///
    /// # Errors
    /// No stream directory here, a malformed token, or nobody waiting on it.
    pub fn connect(&self, id: u64, dir: Option<&Path>, token: &str) -> Result<(), String> {
        let dir = dir.ok_or("this agent serves no streams")?;
        if !valid_token(token) {
            return Err("malformed stream token: refused".into());
        }
        let stream = UnixStream::connect(dir.join(token))
            .map_err(|e| format!("stream {token}: nobody waits on it ({e})"))?;
        self.outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Outgoing {
                    stream,
                    bytes: 0,
                    error: None,
                },
            );
        Ok(())
    }

    /// Writes `data` into the outgoing stream of call `id`; `false` when it has none.
    pub fn feed(&self, id: u64, data: &[u8]) -> bool {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(o) = outgoing.get_mut(&id) else {
            return false;
        };
        if o.error.is_none() {
            match o.stream.write_all(data) {
                Ok(()) => o.bytes += data.len() as u64,
                Err(e) => o.error = Some(format!("the receiving command stopped reading: {e}")),
            }
        }
        true
    }

    /// Marks the outgoing stream of call `id` as failed (a chunk that was refused).
    pub fn fail(&self, id: u64, why: String) -> bool {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(o) = outgoing.get_mut(&id) else {
            return false;
        };
        o.error.get_or_insert(why);
        let _ = o.stream.shutdown(std::net::Shutdown::Both);
        true
    }

    /// Closes the outgoing stream of call `id`: its end reply, `None` when it has none.
    pub fn end(&self, id: u64) -> Option<Result<Reply, String>> {
        let o = self
            .outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)?;
        let _ = o.stream.shutdown(std::net::Shutdown::Write);
        Some(match o.error {
            None => Ok(Reply::Done(Outcome {
                hash: None,
                len: o.bytes,
            })),
            Some(e) => Err(e),
        })
    }
}

fn ended(code: Option<i32>, why: String) -> Reply {
    Reply::Exec(ExecOutput {
        code,
        stdout: Vec::new(),
        stderr: why.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_checked() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert!(valid_token(&a) && valid_token(&b) && a != b);
        for bad in [
            "../x",
            "",
            "ABCDEF0123456789abcdef0123456789",
            &"a".repeat(33),
        ] {
            assert!(!valid_token(bad), "{bad}");
        }
    }

    #[test]
    fn a_command_reads_what_a_peer_writes_through_the_rendezvous() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("streams");
        make_dir(&dir).unwrap();
        let out = base.path().join("out");
        let there = Arc::new(Rendezvous::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let req = super::super::ExecRequest::new(
            "sh",
            ["-c".to_string(), format!("cat > {}", out.display())],
        );
        let (d, t) = (dir.clone(), there.clone());
        let restore = std::thread::spawn(move || {
            t.receive(1, &req, &d, &mut |r| {
                let _ = tx.send(r);
            })
        });
        let Ok(Reply::Rendezvous(token)) = rx.recv() else {
            panic!("no token")
        };
        let here = Rendezvous::default();
        assert!(
            here.connect(9, Some(&dir), "0".repeat(32).as_str())
                .is_err()
        );
        here.connect(9, Some(&dir), &token).unwrap();
        assert!(here.feed(9, b"hello "));
        assert!(here.feed(9, b"world"));
        let Some(Ok(Reply::Done(o))) = here.end(9) else {
            panic!("no end")
        };
        assert_eq!(o.len, 11);
        let Ok(Reply::Exec(e)) = restore.join().unwrap() else {
            panic!("no exit")
        };
        assert_eq!(e.code, Some(0));
        assert_eq!(std::fs::read(&out).unwrap(), b"hello world");
    }

    #[test]
    fn a_cancelled_wait_ends_without_running_the_command() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("streams");
        make_dir(&dir).unwrap();
        let there = Arc::new(Rendezvous::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let t = there.clone();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || {
            let req = super::super::ExecRequest::new("false", Vec::<String>::new());
            t.receive(3, &req, &d, &mut |r| {
                let _ = tx.send(r);
            })
        });
        assert!(matches!(rx.recv(), Ok(Reply::Rendezvous(_))));
        assert!(there.cancel(3));
        let Ok(Reply::Exec(e)) = waiter.join().unwrap() else {
            panic!("no end")
        };
        assert_eq!(e.code, None);
        assert!(String::from_utf8_lossy(&e.stderr).contains("cancelled"));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "socket removed"
        );
    }
}
