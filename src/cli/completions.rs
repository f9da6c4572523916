//! `transhumance completions SHELL`: the shell completion script, generated from the clap
//! definitions (so it never drifts from the commands).

use clap::CommandFactory;

use super::exit;

pub fn run(shell: clap_complete::Shell) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "transhumance", &mut script);
    super::printer::out(&String::from_utf8_lossy(&script));
    exit::OK
}

/// The command line without its hidden commands (the agent, which transhumance starts itself):
/// clap_complete offers hidden subcommands too (clap-rs/clap#1335) and clap cannot remove one,
/// so the root is assembled again from the definitions' own arguments and visible commands.
fn visible_command() -> clap::Command {
    let full = super::Cli::command();
    let mut root = clap::Command::new("transhumance");
    if let Some(about) = full.get_about() {
        root = root.about(about.clone());
    }
    for arg in full.get_arguments() {
        root = root.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        root = root.subcommand(sub.clone());
    }
    root.version(super::VERSION)
}
