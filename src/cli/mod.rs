//! The command line: clap definitions (doc comments are the help text) and one file per verb.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod agent;
pub mod diagnostics;
pub mod plan;
pub mod printer;
pub mod progress;
pub mod schema;
pub mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::report::Format;

/// Move a web-hosting platform (sites, databases, mail, DNS) to a new datacenter, with a dry
/// run, verification and rollback.
#[derive(Debug, Parser)]
#[command(name = "transhumance", version, about, max_term_width = 100)]
pub struct Cli {
    /// Machine-readable output: JSON on stdout, JSON lines for progress.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more about what happens.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan: syntax, structure, references, and the inventory its globs expand to.
    Validate {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Check the file only: do not connect to hosts to expand site globs.
        #[arg(long)]
        offline: bool,
    },
    /// Dry run: discover every unit read-only and report what a migration would do.
    Plan {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Report format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write the report to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the plan's JSON Schema (draft-07), for editor completion.
    Schema,
    /// Serve the remote side of the ssh transport on stdin/stdout (started by transhumance itself).
    #[command(hide = true)]
    Agent {
        /// Speak the framed protocol on stdin/stdout.
        #[arg(long)]
        stdio: bool,
    },
}

/// Exit codes, stable for scripts.
pub mod exit {
    pub const OK: u8 = 0;
    /// Finished, but something failed (or the dry run found errors).
    pub const FAILURES: u8 = 1;
    /// The input is invalid (plan, arguments).
    pub const INVALID: u8 = 2;
    /// Refused as unsafe without `--force`.
    pub const UNSAFE: u8 = 3;
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let printer = printer::Printer::new(&cli);
    match cli.command {
        Command::Validate { plan, offline } => validate::run(&plan, offline, &printer),
        Command::Plan {
            plan,
            format,
            output,
        } => plan::run(&plan, format, output.as_deref(), &printer),
        Command::Schema => schema::run(),
        Command::Agent { stdio } => agent::run(stdio, &printer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
