//! The far side of the ssh transport: decode a call, serve it locally, answer. Nothing more.

use std::io::{self, BufReader, BufWriter, Read, Write};

use std::sync::{Arc, Mutex};

use super::protocol::{Call, PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use super::server::Server;

/// The first bytes the agent writes, before any frame: lets the controller tell the agent
/// from a login banner on stdout.
pub const MAGIC: &[u8; 8] = b"THAGENT\n";

/// Serves calls from `input` until `Bye` or end of stream.
///
/// # Errors
/// Broken streams or undecodable frames.
pub fn serve(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> io::Result<()> {
    serve_with(input, output, Server::default())
}

/// As `serve`, with the calls answered by `server` (a confined one, for a move's restricted key).
///
/// # Errors
/// As `serve`.
pub fn serve_with(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
    server: Server,
) -> io::Result<()> {
    let served = serve_calls(input, output, server);
    // Writes this agent made that no flush of its own followed (another stream's agent ran
    // the run's flush, or the controller went away) are made durable before it ends.
    crate::tree::unsynced::flush_all();
    served
}

fn serve_calls(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
    server: Server,
) -> io::Result<()> {
    grow_pipe(0);
    grow_pipe(1);
    let mut output = output;
    output.write_all(MAGIC)?;
    output.flush()?;
    // Frames are read and decoded on their own thread, so the next one arrives while a write
    // is being done: the stream never waits for the disk.
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Request>>(16);
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = queued.clone();
    std::thread::spawn(move || {
        let mut input = BufReader::with_capacity(1 << 20, input);
        loop {
            match read_frame::<Request>(&mut input) {
                Ok(Some(r)) => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if tx.send(Ok(r)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    let output = Arc::new(Mutex::new(BufWriter::with_capacity(256 * 1024, output)));
    let server = Arc::new(server);
    while let Ok(request) = rx.recv() {
        let request = request?;
        queued.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        match request {
            // A confined agent (a move's restricted key) answers only the calls it serves;
            // the check comes before any dispatch, so no path around it exists.
            Request::Call { id, call }
                if server.confine().is_some_and(|c| c.admit(&call).is_err()) =>
            {
                let why = server
                    .confine()
                    .and_then(|c| c.admit(&call).err())
                    .unwrap_or_default();
                let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
                write_frame(
                    &mut *output,
                    &Response::Reply {
                        id,
                        reply: super::protocol::Reply::Error(why),
                    },
                )?;
                output.flush()?;
            }
            Request::Hello { .. } => {
                let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
                write_frame(
                    &mut *output,
                    &Response::Hello {
                        protocol: PROTOCOL_VERSION,
                        version: env!("CARGO_PKG_VERSION").into(),
                    },
                )?;
                output.flush()?;
            }
            Request::Call {
                id,
                call:
                    call @ (Call::Exec(_)
                    | Call::ExecRead(_)
                    | Call::ExecReadZstd(_)
                    | Call::PeerProbe { .. }
                    | Call::PeerOpen(_)
                    | Call::PeerRoot { .. }
                    | Call::PeerCloseRoot { .. }
                    | Call::PushFile(_)
                    | Call::ExecPush { .. }
                    | Call::ExecFromStream { .. }),
            } => {
                // A command may run for minutes (a database query, a dump), a push waits for
                // its peer: each runs on its own thread, so other calls and the calls queued
                // behind it go on meanwhile.
                // Its output frames interleave with other replies, each whole under the lock.
                let (server, output) = (server.clone(), output.clone());
                std::thread::spawn(move || {
                    server.handle(id, call, &mut |reply| {
                        let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
                        // A broken stream is seen by the main loop on its next write.
                        if write_frame(&mut *out, &Response::Reply { id, reply }).is_ok() {
                            let _ = out.flush();
                        }
                    });
                });
            }
            Request::Call {
                id,
                call: call @ (Call::ExecSession(_) | Call::ExecSessionMerged(_)),
            } => {
                // Started here, so the input frames behind it find it; pumped on its own thread.
                let started = match &call {
                    Call::ExecSessionMerged(req) => server.session_start(id, req, true),
                    Call::ExecSession(req) => server.session_start(id, req, false),
                    _ => unreachable!("matched above"),
                };
                let output = output.clone();
                let mut send = move |reply| {
                    let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
                    if write_frame(&mut *out, &Response::Reply { id, reply }).is_ok() {
                        let _ = out.flush();
                    }
                };
                match started {
                    Ok(run) => {
                        std::thread::spawn(move || run.pump(&mut send));
                    }
                    Err(e) => send(super::protocol::Reply::Error(e)),
                }
            }
            Request::Call { id, call } => {
                let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
                let mut failed = None;
                let mut replied = false;
                server.handle(id, call, &mut |reply| {
                    replied = true;
                    if failed.is_none()
                        && let Err(e) = write_frame(&mut *output, &Response::Reply { id, reply })
                    {
                        failed = Some(e);
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                // Flush when nothing more is waiting, so replies are not held back.
                if replied && queued.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    output.flush()?;
                }
            }
            Request::Bye => break,
        }
    }
    output.lock().unwrap_or_else(|p| p.into_inner()).flush()
}

/// Raises a pipe's buffer to 1 MiB (the default limit) so ssh moves data in fewer, larger steps.
pub fn grow_pipe(fd: i32) {
    // SAFETY: fcntl on a descriptor we own; failure (not a pipe, no permission) is harmless.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20) };
}
