//! `transhumance man [VERB] [--out-dir DIR]`: man pages in roff, generated from the clap
//! definitions: `transhumance(1)` lists every command, `transhumance-VERB(1)` details one.

use std::path::Path;

use clap::CommandFactory;

use super::exit;
use super::printer::Printer;

pub fn run(verb: Option<&str>, out_dir: Option<&Path>, printer: &Printer) -> u8 {
    let mut top = super::Cli::command().disable_help_subcommand(true);
    // Built once so that subcommands know their full names (`transhumance-sync`).
    top.build();
    if let Some(dir) = out_dir {
        return match write_all(&top, dir) {
            Ok(n) => {
                printer.status(format!("{n} man page(s) written to {}", dir.display()));
                exit::OK
            }
            Err(e) => {
                printer.error(format!(
                    "cannot write man pages to `{}`: {e}",
                    dir.display()
                ));
                exit::FAILURES
            }
        };
    }
    let page = match verb {
        None => top,
        Some(v) => match top
            .get_subcommands()
            .find(|c| !c.is_hide_set() && c.get_name() == v)
        {
            Some(c) => c.clone(),
            None => {
                printer.error(format!(
                    "`{v}` is not a command (commands: {})",
                    visible(&top).collect::<Vec<_>>().join(", ")
                ));
                return exit::INVALID;
            }
        },
    };
    let mut roff = Vec::new();
    man(page)
        .render(&mut roff)
        .expect("rendering into memory cannot fail");
    super::printer::out(&String::from_utf8_lossy(&roff));
    exit::OK
}

/// The names of the commands a user may type (the agent is started by transhumance itself).
fn visible(top: &clap::Command) -> impl Iterator<Item = &str> {
    top.get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(clap::Command::get_name)
}

fn man(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .date(env!("TRANSHUMANCE_BUILD_DATE"))
        .source(format!("transhumance {}", env!("CARGO_PKG_VERSION")))
        .manual("transhumance manual")
}

/// Writes the main page and one per visible command; returns how many.
fn write_all(top: &clap::Command, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut n = 0;
    for cmd in std::iter::once(top).chain(top.get_subcommands().filter(|c| !c.is_hide_set())) {
        man(cmd.clone()).generate_to(dir)?;
        n += 1;
    }
    Ok(n)
}
