//! A stream of calls to one host with many in flight: replies are routed back by call id.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::TransportError;
use super::protocol::{Call, Reply, Request, Response, read_frame, write_frame};
use super::server::Server;

/// How many replies of one call may wait unread before the stream pauses (bounds memory).
const REPLY_BUFFER: usize = 64;

/// Why a stream to an agent is gone.
#[derive(Debug, Clone)]
struct Broken {
    message: String,
    /// The peer broke the protocol (a frame over the limit, bytes that do not decode): a
    /// protocol error, not a lost connection worth another try.
    protocol: bool,
}

type BrokenState = Arc<Mutex<Option<Broken>>>;

impl Broken {
    fn error(&self, host: &str) -> TransportError {
        if self.protocol {
            TransportError::Protocol {
                host: host.into(),
                message: self.message.clone(),
            }
        } else {
            TransportError::Connect {
                host: host.into(),
                message: format!("connection lost: {}", self.message),
            }
        }
    }
}

/// A call in flight: its id (for follow-up frames such as `WriteData`) and its replies.
pub struct Pending {
    pub id: u64,
    pub replies: Receiver<Reply>,
    /// Why the stream went, once it did (remote streams only).
    broken: Option<BrokenState>,
}

impl Pending {
    /// Waits for the terminal reply, dropping streamed chunks.
    ///
    /// # Errors
    /// The far side's error, or a lost connection.
    pub fn wait(self, host: &str) -> Result<Reply, TransportError> {
        self.wait_streaming(host, &mut |_| Ok(()))
    }

    /// Waits for the terminal reply, handing each streamed chunk to `chunk` as it arrives;
    /// an error of `chunk` ends the wait (the call's later replies are dropped).
    ///
    /// # Errors
    /// As `wait`, or `chunk`'s.
    pub fn wait_streaming(
        self,
        host: &str,
        chunk: &mut dyn FnMut(Reply) -> Result<(), TransportError>,
    ) -> Result<Reply, TransportError> {
        loop {
            match self.replies.recv() {
                Ok(Reply::Error(message)) => {
                    return Err(TransportError::Remote {
                        host: host.into(),
                        message,
                    });
                }
                Ok(r) if r.is_terminal() => return Ok(r),
                Ok(r) => chunk(r)?,
                Err(_) => {
                    let broken = self
                        .broken
                        .as_ref()
                        .and_then(|b| b.lock().unwrap_or_else(|e| e.into_inner()).clone());
                    return Err(match broken {
                        Some(b) if b.protocol => b.error(host),
                        _ => TransportError::Connect {
                            host: host.into(),
                            message: "connection lost while waiting for a reply".into(),
                        },
                    });
                }
            }
        }
    }
}

/// Calls to one host.
pub trait Channel: Send + Sync {
    fn host(&self) -> &str;

    /// Sends a call; replies arrive on the returned `Pending`.
    ///
    /// # Errors
    /// The connection is gone.
    fn call(&self, call: Call) -> Result<Pending, TransportError>;

    /// Sends a follow-up frame of call `id` (`WriteData`, `WriteDelta`, `WriteEnd`).
    ///
    /// # Errors
    /// The connection is gone.
    fn follow(&self, id: u64, call: Call) -> Result<(), TransportError>;

    /// Sends a call and waits for its terminal reply.
    ///
    /// # Errors
    /// As `call`, or the far side's error.
    fn call_wait(&self, call: Call) -> Result<Reply, TransportError> {
        self.call(call)?.wait(self.host())
    }

    /// Bytes written to and read from the wire so far (0 for in-process channels).
    fn wire_bytes(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Why the stream is gone, when it is (the connection dropped or the agent died).
    fn lost(&self) -> Option<String> {
        None
    }

    /// The error a gone stream means: a protocol error when the peer broke the protocol, a
    /// lost connection otherwise.
    fn lost_as_error(&self) -> Option<TransportError> {
        self.lost().map(|why| TransportError::Connect {
            host: self.host().into(),
            message: format!("connection lost: {why}"),
        })
    }
}

/// Counts what passes through, for wire-byte statistics.
struct Counted<T> {
    inner: T,
    count: Arc<AtomicU64>,
}

impl<T: Read> Read for Counted<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<T: Write> Write for Counted<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Calls served in this process, by the same code as the remote agent.
pub struct LocalChannel {
    host: String,
    server: Server,
    next: AtomicU64,
    /// Follow-up frames answer the `Pending` of their call.
    open: Mutex<HashMap<u64, std::sync::mpsc::Sender<Reply>>>,
}

impl LocalChannel {
    pub fn new(host: impl Into<String>) -> LocalChannel {
        LocalChannel {
            host: host.into(),
            server: Server::default(),
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Channel for LocalChannel {
    fn host(&self) -> &str {
        &self.host
    }

    fn call(&self, call: Call) -> Result<Pending, TransportError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Unbounded: the work runs right here, before anyone can read the replies.
        let (tx, rx) = std::sync::mpsc::channel();
        let keep_open = matches!(call, Call::WriteBegin { .. } | Call::ExecWrite(_));
        let mut deliver = |r: Reply| {
            let _ = tx.send(r);
        };
        self.server.handle(id, call, &mut deliver);
        if keep_open {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, tx);
        }
        Ok(Pending {
            id,
            replies: rx,
            broken: None,
        })
    }

    fn follow(&self, id: u64, call: Call) -> Result<(), TransportError> {
        let end = matches!(call, Call::WriteEnd { .. } | Call::ExecStdinEnd);
        let tx = if end {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id)
        } else {
            None
        };
        let mut deliver = |r: Reply| {
            if let Some(t) = &tx {
                let _ = t.send(r);
            }
        };
        self.server.handle(id, call, &mut deliver);
        Ok(())
    }
}

/// Calls over a byte stream to a remote agent (an ssh channel); a reader thread routes replies.
pub struct RemoteChannel {
    host: String,
    writer: Mutex<Box<dyn Write + Send>>,
    pending: Arc<Mutex<HashMap<u64, SyncSender<Reply>>>>,
    next: AtomicU64,
    broken: BrokenState,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl RemoteChannel {
    /// Takes over a stream already past the hello exchange.
    pub fn new(
        host: &str,
        input: Box<dyn Write + Send>,
        output: Box<dyn Read + Send>,
        stderr: Arc<Mutex<Vec<u8>>>,
    ) -> RemoteChannel {
        let pending: Arc<Mutex<HashMap<u64, SyncSender<Reply>>>> = Arc::default();
        let broken: BrokenState = Arc::default();
        let (p, b) = (pending.clone(), broken.clone());
        let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counter = received.clone();
        std::thread::spawn(move || {
            let mut output = BufReader::with_capacity(
                256 * 1024,
                Counted {
                    inner: output,
                    count: counter,
                },
            );
            let reason = loop {
                match read_frame::<Response>(&mut output) {
                    Ok(Some(Response::Reply { id, reply })) => {
                        let terminal = reply.is_terminal();
                        let tx = {
                            let mut map = p.lock().unwrap_or_else(|e| e.into_inner());
                            if terminal {
                                map.remove(&id)
                            } else {
                                map.get(&id).cloned()
                            }
                        };
                        if let Some(tx) = tx {
                            let _ = tx.send(reply);
                        }
                    }
                    Ok(Some(Response::Hello { .. })) => {}
                    Ok(None) => break ("the agent closed the stream".to_string(), false),
                    Err(e) => break (e.to_string(), e.kind() == std::io::ErrorKind::InvalidData),
                }
            };
            let (reason, protocol) = reason;
            let said = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner()))
                .trim()
                .to_string();
            let mut waiting = p.lock().unwrap_or_else(|e| e.into_inner());
            *b.lock().unwrap_or_else(|e| e.into_inner()) = Some(Broken {
                message: if said.is_empty() {
                    reason
                } else {
                    format!("{reason} (ssh: {said})")
                },
                protocol,
            });
            // Waking every waiter with a closed channel reports the loss to each call.
            waiting.clear();
        });
        let writer: Box<dyn Write + Send> = Box::new(BufWriter::with_capacity(
            256 * 1024,
            Counted {
                inner: input,
                count: sent.clone(),
            },
        ));
        RemoteChannel {
            host: host.into(),
            writer: Mutex::new(writer),
            pending,
            next: AtomicU64::new(1),
            broken,
            sent,
            received,
        }
    }

    fn lost_error(&self) -> TransportError {
        match self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(b) if b.protocol => b.error(&self.host),
            Some(b) => TransportError::Connect {
                host: self.host.clone(),
                message: b.message,
            },
            None => TransportError::Connect {
                host: self.host.clone(),
                message: "connection lost".into(),
            },
        }
    }

    fn send(&self, request: &Request, flush: bool) -> Result<(), TransportError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *w, request).map_err(|_| self.lost_error())?;
        if flush {
            w.flush().map_err(|_| self.lost_error())?;
        }
        Ok(())
    }

    /// Says goodbye so the agent exits cleanly.
    pub fn close(&self) {
        let _ = self.send(&Request::Bye, true);
    }
}

impl Channel for RemoteChannel {
    fn host(&self) -> &str {
        &self.host
    }

    fn call(&self, call: Call) -> Result<Pending, TransportError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(REPLY_BUFFER);
        {
            // Checked and registered under the one lock the reader takes to give up: a call is
            // either registered before the loss (and woken by it) or refused after.
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if self
                .broken
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
            {
                return Err(self.lost_error());
            }
            pending.insert(id, tx);
        }
        // A write start is followed by data frames at once: no need to flush yet.
        let flush = !matches!(call, Call::WriteBegin { .. });
        self.send(&Request::Call { id, call }, flush)?;
        Ok(Pending {
            id,
            replies: rx,
            broken: Some(self.broken.clone()),
        })
    }

    fn follow(&self, id: u64, call: Call) -> Result<(), TransportError> {
        // A command's input goes out at once: a session waits for its answer.
        let flush = matches!(
            call,
            Call::WriteEnd { .. }
                | Call::ExecStdinEnd
                | Call::ExecStdin { .. }
                | Call::ExecStdinZstd { .. }
        );
        self.send(&Request::Call { id, call }, flush)
    }

    fn lost(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| b.message.clone())
    }

    fn lost_as_error(&self) -> Option<TransportError> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| b.error(&self.host))
    }

    fn wire_bytes(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}
