//! The far side of the ssh transport: decode a call, serve it locally, answer. Nothing more.

use std::io::{self, BufReader, BufWriter, Read, Write};

use super::protocol::{PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use super::server::Server;

/// Serves calls from `input` until `Bye` or end of stream.
///
/// # Errors
/// Broken streams or undecodable frames.
pub fn serve(input: impl Read, output: impl Write) -> io::Result<()> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let mut output = BufWriter::with_capacity(256 * 1024, output);
    let server = Server::default();
    while let Some(request) = read_frame::<Request>(&mut input)? {
        match request {
            Request::Hello { .. } => {
                write_frame(
                    &mut output,
                    &Response::Hello {
                        protocol: PROTOCOL_VERSION,
                        version: env!("CARGO_PKG_VERSION").into(),
                    },
                )?;
                output.flush()?;
            }
            Request::Call { id, call } => {
                let mut failed = None;
                let mut replied = false;
                server.handle(id, call, &mut |reply| {
                    replied = true;
                    if failed.is_none()
                        && let Err(e) = write_frame(&mut output, &Response::Reply { id, reply })
                    {
                        failed = Some(e);
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                // Flush when nothing more is waiting, so replies are not held back.
                if replied && input.buffer().is_empty() {
                    output.flush()?;
                }
            }
            Request::Bye => break,
        }
    }
    output.flush()
}
