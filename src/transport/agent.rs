//! The far side of the ssh transport: decode a request, serve it locally, answer. Nothing more.

use std::io::{self, BufReader, BufWriter, Read, Write};

use super::protocol::{PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use super::{LocalTransport, Transport, TransportError};

/// Serves requests from `input` until `Bye` or end of stream.
///
/// # Errors
/// Broken streams or undecodable frames.
pub fn serve(input: impl Read, output: impl Write) -> io::Result<()> {
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let local = LocalTransport::new("agent");
    while let Some(request) = read_frame::<Request>(&mut input)? {
        let response = match request {
            Request::Hello { .. } => Response::Hello {
                protocol: PROTOCOL_VERSION,
                version: env!("CARGO_PKG_VERSION").into(),
            },
            Request::GlobDirs { pattern } => local
                .glob_dirs(&pattern)
                .map(Response::Dirs)
                .unwrap_or_else(failure),
            Request::Scan { root, exclude } => local
                .scan(&root, &exclude)
                .map(Response::Scan)
                .unwrap_or_else(failure),
            Request::Space { path } => local
                .space(&path)
                .map(Response::Space)
                .unwrap_or_else(failure),
            Request::Exec(req) => local.exec(&req).map(Response::Exec).unwrap_or_else(failure),
            Request::Bye => break,
        };
        write_frame(&mut output, &response)?;
    }
    Ok(())
}

/// The message of a local failure without the local host name: the controller adds its own.
fn failure(e: TransportError) -> Response {
    Response::Error(match e {
        TransportError::Path { path, message, .. } => format!("{path}: {message}"),
        TransportError::Connect { message, .. } | TransportError::Protocol { message, .. } => {
            message
        }
    })
}
