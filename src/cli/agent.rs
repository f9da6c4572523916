//! `transhumance agent --stdio`: the far side of the ssh transport.

use super::exit;
use super::printer::Printer;

/// Serves the agent; with `confine` or `streams`, only what a move's restricted key may do.
pub fn run(
    stdio: bool,
    confine: Vec<std::path::PathBuf>,
    streams: Option<std::path::PathBuf>,
    printer: &Printer,
) -> u8 {
    use crate::transport::server::Server;
    if !stdio {
        printer.error(
            "the agent only speaks over `--stdio`; it is started by transhumance through ssh",
        );
        return exit::INVALID;
    }
    let server = if confine.is_empty() && streams.is_none() {
        Server::default()
    } else {
        Server::confined(crate::transport::confine::Confine {
            roots: confine,
            streams,
        })
    };
    match crate::transport::agent::serve_with(std::io::stdin(), std::io::stdout(), server) {
        Ok(()) => exit::OK,
        Err(e) => {
            printer.error(format!("agent: {e}"));
            exit::FAILURES
        }
    }
}

/// Runs the stale-resolver forwarder of `dir` until its last route expires.
pub fn forward(dir: &std::path::Path, printer: &Printer) -> u8 {
    match crate::transport::forward::run(dir) {
        Ok(()) => exit::OK,
        Err(e) => {
            printer.error(format!("forward: {}: {e}", dir.display()));
            exit::FAILURES
        }
    }
}
