//! `transhumance agent --stdio`: the far side of the ssh transport.

use super::exit;
use super::printer::Printer;

pub fn run(stdio: bool, printer: &Printer) -> u8 {
    if !stdio {
        printer.error(
            "the agent only speaks over `--stdio`; it is started by transhumance through ssh",
        );
        return exit::INVALID;
    }
    match crate::transport::agent::serve(std::io::stdin(), std::io::stdout()) {
        Ok(()) => exit::OK,
        Err(e) => {
            printer.error(format!("agent: {e}"));
            exit::FAILURES
        }
    }
}
