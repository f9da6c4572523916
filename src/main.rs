//! Command-line entry point: parse, run, exit with a stable code.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match transhumance::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap's own codes: 0 for --help/--version, 2 for usage errors, as ours.
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    ExitCode::from(transhumance::cli::run(cli))
}
