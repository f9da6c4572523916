//! The command line: clap definitions (doc comments are the help text) and one file per verb.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` for data on stdout that ends quietly when the reader is gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::printer::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub mod agent;
pub mod completions;
pub mod confirm;
pub mod copy;
pub mod cutover;
pub mod db;
pub mod demo;
pub mod diagnostics;
pub mod dns;
pub mod endpoint;
pub mod interrupt;
pub mod inventory;
pub mod mail;
pub mod man;
pub mod migration;
pub mod plan;
pub mod printer;
pub mod progress;
pub mod report;
pub mod resume;
pub mod rollback;
pub mod rsync;
pub mod run;
pub mod run_log;
pub mod schema;
pub mod status;
pub mod sync;
pub mod validate;
pub mod verify;
pub mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::report::Format;

/// What `--version` prints after the name: the crate version, the commit built (`+dirty` when
/// tracked files differed from it; `unknown` without git) and the build date (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TRANSHUMANCE_COMMIT"),
    ", built ",
    env!("TRANSHUMANCE_BUILD_DATE"),
    ")"
);

/// Move a web-hosting platform (sites, databases, mail, DNS) to a new datacenter, with a dry
/// run, verification and rollback.
#[derive(Debug, Parser)]
#[command(name = "transhumance", version = VERSION, about, max_term_width = 100)]
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
    /// Do not ask before acting: `cutover`, `rollback`, `run`, `dns switch` and `dns rollback`
    /// show what they will do and ask on a terminal, and refuse without one unless given this.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
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
        /// List every file action of each site in the JSON report (not only its deletes).
        #[arg(long)]
        itemize: bool,
        /// Exit 0 when nothing is left to do, 2 when changes are pending, 1 on any error
        /// (Terraform's `-detailed-exitcode`; invalid input is 1 then too).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the reviewed plan to FILE (Terraform's `-out`): the plan file's checksum, the
        /// journal's state, the sites and the DNS changes with the values read; `cutover PLAN
        /// --plan FILE` applies exactly that or refuses. Not saved when a risk is an error.
        #[arg(long = "out", value_name = "FILE")]
        save: Option<PathBuf>,
    },
    /// List every unit the plan expands to (its `sites:` rules and its `inventory:` source:
    /// sites with owners, databases, mail boxes, zones) for review; changes nothing.
    Inventory {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Export as YAML (`--json` for JSON).
        #[arg(long)]
        yaml: bool,
    },
    /// Print the plan's JSON Schema (draft-07), for editor completion.
    Schema,
    /// Print the completion script for SHELL, such as
    /// `transhumance completions bash > /etc/bash_completion.d/transhumance`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `transhumance(1)`, or `transhumance-VERB(1)` for one command;
    /// `--out-dir` writes them all. Read it with `transhumance man | man -l -`.
    Man {
        /// The command whose page to print, such as `cutover` (all commands are listed on the
        /// main page).
        verb: Option<String>,
        /// Write every page (`transhumance.1`, `transhumance-VERB.1`, ...) into this directory.
        #[arg(long, value_name = "DIR", conflicts_with = "verb")]
        out_dir: Option<PathBuf>,
    },
    /// Run the whole lifecycle on a small old and new datacenter built in a temp dir (no
    /// server, no network): dry run, pre-syncs, TTLs, cutover with probes, one site failing its
    /// probe before the switch (never switched), and the HTML report.
    Demo,
    /// Pre-sync sites and their databases while the old side still serves (repeatable).
    Sync {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Only these sites (repeatable).
        #[arg(long = "only", value_name = "SITE")]
        only: Vec<String>,
        #[command(flatten)]
        safety: Safety,
        /// Overwrite this site even though it may be live on the new side (`site:NAME`,
        /// repeatable; journaled).
        #[arg(long = "allow-live", value_name = "site:NAME")]
        allow_live: Vec<crate::unit::UnitId>,
    },
    /// Cut sites over: freeze, final sync, verify, probes through the new address, DNS switch,
    /// probes through DNS; a site failing before its switch is unfrozen and marked failed, one
    /// failing after it is rolled back (or paused) alone.
    Cutover {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Only batch N (1-based) of `cutover.batch` sites.
        #[arg(long, value_name = "N", conflicts_with = "only")]
        batch: Option<usize>,
        /// Only these sites (repeatable).
        #[arg(long = "only", value_name = "SITE")]
        only: Vec<String>,
        /// Apply exactly the plan reviewed and saved by `plan --out FILE`: refused (exit 3,
        /// check `plan-changed`) when the plan's files, the journal, the sites or the DNS
        /// values read changed since.
        #[arg(long = "plan", value_name = "FILE")]
        saved: Option<PathBuf>,
        #[command(flatten)]
        safety: Safety,
    },
    /// Put sites back on the old side: DNS restored exactly, sources unfrozen.
    Rollback {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Only these sites (repeatable).
        #[arg(long = "only", value_name = "SITE")]
        only: Vec<String>,
    },
    /// Where every site is: counts per state, failures with reasons, throughput.
    Status {
        /// The plan file (YAML).
        plan: PathBuf,
    },
    /// Finish what an interrupted run left (from the journal).
    Resume {
        /// The plan file (YAML).
        plan: PathBuf,
    },
    /// One of several controllers sharing a move (the journal in PostgreSQL, plan key
    /// `state:`): takes sites from the plan's work queue (created by the first worker, joined
    /// by the others) until every step is done, then exits 0, or 1 when a site it worked on
    /// failed. A killed worker's sites are taken over by the others once its lease expires.
    Worker {
        /// The plan file (YAML).
        plan: PathBuf,
        /// What the workers do: `sync`, `cutover` (default) or `run` (pre-sync, lower TTLs,
        /// wait, cutover, restore TTLs); every worker of a queue gives the same.
        #[arg(long, value_enum, default_value = "cutover")]
        verb: crate::lifecycle::migrate::WorkerVerb,
        /// Only batch N (1-based) of `cutover.batch` sites.
        #[arg(long, value_name = "N", conflicts_with = "only")]
        batch: Option<usize>,
        /// Only these sites (repeatable).
        #[arg(long = "only", value_name = "SITE")]
        only: Vec<String>,
        #[command(flatten)]
        safety: Safety,
    },
    /// Every phase in order: pre-sync, lower TTLs, wait, cutover, report.
    Run {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Wait for the old TTLs up to this long, such as `10m`; a longer wait stops the run.
        #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::plan::units::parse_duration)]
        max_wait: std::time::Duration,
        #[command(flatten)]
        safety: Safety,
    },
    /// The migration report: per-site timelines, bytes, verification, DNS changes, probes.
    Report {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Report format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write the report to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Databases of a plan: `sync` (dump, stream, restore, verify) or `verify` (table by table).
    Db {
        /// The step to run.
        #[arg(value_enum)]
        step: db::Step,
        /// The plan file (YAML).
        plan: PathBuf,
        /// Only these databases (repeatable).
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// Overwrite this database even though it may be live on the new side (its site, or
        /// any site for a database no site names, may have switched); journaled (repeatable).
        #[arg(long = "allow-live", value_name = "db:NAME")]
        allow_live: Vec<crate::unit::UnitId>,
    },
    /// Mail of a plan: `sync` (before the cutover, re-runnable), `sweep` (late mail after the
    /// cutover, adds only) or `verify` (folder by folder).
    Mail {
        /// The step to run.
        #[arg(value_enum)]
        step: mail::Step,
        /// The plan file (YAML).
        plan: PathBuf,
        /// With `sync` of Maildir trees: also remove target messages the source no longer has
        /// (refused above 30 % of the target's files). IMAP moves never remove anything.
        #[arg(long)]
        delete: bool,
        /// Sync this unit (`mail:N`) as asked even though it may be live on the new side
        /// (journaled); without it a live unit is swept, and `--delete` on it is refused
        /// (repeatable).
        #[arg(long = "allow-live", value_name = "UNIT")]
        allow_live: Vec<crate::unit::UnitId>,
    },
    /// DNS steps of a cutover: plan, lower-ttl, switch, verify, rollback, restore-ttl.
    Dns {
        /// The step to run.
        #[arg(value_enum)]
        step: dns::Step,
        /// The plan file (YAML).
        plan: PathBuf,
        /// Only these zones (repeatable).
        #[arg(long = "zone")]
        zones: Vec<String>,
        /// Only these names, such as `www.example.org` or `www` (repeatable).
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        #[command(flatten)]
        safety: Safety,
        /// Apply only if the plan still has this checksum (printed by `dns plan`).
        #[arg(long, value_name = "CHECKSUM")]
        plan_checksum: Option<String>,
        /// Format of `dns plan` (text, markdown or json).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Copy the contents of SRC into DST (each a local path or `[user@]host[:port]:/path`),
    /// verified by BLAKE3 on both ends.
    Copy {
        /// Source directory.
        src: String,
        /// Target directory (created when missing).
        dst: String,
        /// The ssh command line to use, as rsync's `-e` (e.g. `ssh -i KEY -o UserKnownHostsFile=F`).
        #[arg(short = 'e', long = "rsh")]
        rsh: Option<String>,
        /// Remove target files the source does not have (refused above 30 % without --force).
        #[arg(long)]
        delete: bool,
        /// Compare content (BLAKE3 on both sides) instead of size and modification time.
        #[arg(short = 'c', long)]
        checksum: bool,
        /// Show what would change (itemized) and change nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Files moved in parallel.
        #[arg(short = 'j', long, default_value_t = 4)]
        jobs: usize,
        #[command(flatten)]
        filters: rsync::FilterArgs,
        /// Allow --delete to remove more than 30 % of the target's files.
        #[arg(long)]
        force: bool,
        /// Compress file data on the wire with zstd (already-compressed formats are sent as they are).
        #[arg(short = 'z', long)]
        compress: bool,
        /// Limit file data to RATE, as rsync's `--bwlimit`: a bare number is KiB/s (`5000`);
        /// suffixes `K`, `M`, `G` (1024) or `KB`, `MB`, `GB` (1000), `/s` optional
        /// (`50MiB/s`); `0` is no limit.
        #[arg(long, value_name = "RATE", value_parser = crate::plan::units::parse_bwlimit)]
        bwlimit: Option<u64>,
        /// Recreate block and character device nodes (as root), as rsync's `--devices`.
        /// Without it each device node is refused: not created, reported, exit 1. FIFOs are
        /// always recreated (rsync's `--specials`); sockets are never copied.
        #[arg(long)]
        devices: bool,
        /// Keep POSIX ACLs, access and default (rsync's `-A`).
        #[arg(short = 'A', long)]
        acls: bool,
        /// Keep extended attributes (rsync's `-X`): `user.*`, and `security.*` (file
        /// capabilities) and `trusted.*` when the target runs as root.
        #[arg(short = 'X', long)]
        xattrs: bool,
        /// List each change with rsync's 11-letter code saying why it is made (`>f+++++++++`
        /// new file, `>f.st......` size and time differ, `*deleting`); twice (`-ii`), the
        /// entries left as they are too.
        #[arg(short = 'i', long = "itemize-changes", action = clap::ArgAction::Count)]
        itemize: u8,
        /// Print rsync's transfer statistics at the end (files, sizes, bytes sent and
        /// received, speedup).
        #[arg(long)]
        stats: bool,
        /// Show progress: bars on a terminal, else one line per file written (on stderr).
        #[arg(long)]
        progress: bool,
        /// Keep partially written files for the next run (always so: they wait in the target's
        /// temp directory, never under their final name, and the next run resumes from them).
        #[arg(long)]
        partial: bool,
        /// Same as `--partial --progress`.
        #[arg(short = 'P')]
        partial_progress: bool,
        /// Exit with rsync's codes instead of ours (23 partial transfer, 255 ssh failed, ...;
        /// see the README's table), for scripts written around rsync.
        #[arg(long)]
        rsync_exit_codes: bool,
    },
    /// Re-read both sides and list every difference: `verify SRC DST`, or `verify PLAN` for
    /// every site of a plan. Exit 1 when anything differs.
    Verify {
        /// A plan file, or the source of a pair.
        first: String,
        /// The target of a pair.
        second: Option<String>,
        /// The ssh command line to use, as rsync's `-e`.
        #[arg(short = 'e', long = "rsh")]
        rsh: Option<String>,
        #[command(flatten)]
        filters: rsync::FilterArgs,
        /// Files hashed in parallel.
        #[arg(short = 'j', long, default_value_t = 4)]
        jobs: usize,
        /// Expect device nodes at the target (a `copy --devices`); without it each device
        /// node of the source is reported as refused (pairs only: a plan says it per site).
        #[arg(long)]
        devices: bool,
        /// Compare POSIX ACLs too (a `copy -A`; pairs only: a plan says it per site).
        #[arg(short = 'A', long)]
        acls: bool,
        /// Compare extended attributes too (a `copy -X`; pairs only).
        #[arg(short = 'X', long)]
        xattrs: bool,
        /// Exit with rsync's codes instead of ours (23 when anything differs, 255 when ssh
        /// failed, ...; see the README's table).
        #[arg(long)]
        rsync_exit_codes: bool,
    },
    /// Serve the remote side of the ssh transport on stdin/stdout (started by transhumance itself).
    #[command(hide = true)]
    Agent {
        /// Speak the framed protocol on stdin/stdout.
        #[arg(long)]
        stdio: bool,
        /// Serve only writes beneath this root (repeatable): the command a move's restricted
        /// key forces at a target host (the direct data path).
        #[arg(long, value_name = "ROOT")]
        confine: Vec<std::path::PathBuf>,
        /// With `--confine`: the private directory of the move's streams (database restores).
        #[arg(long, value_name = "DIR")]
        streams: Option<std::path::PathBuf>,
    },
    /// Forward stale resolvers' visitors of confirmed sites to their new address (started on
    /// an old host by transhumance itself, detached; exits when its last route expires).
    #[command(hide = true)]
    Forward {
        /// The forwarder's directory: `config.json`, `routes.json`, the PID file.
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// The safety-check overrides of a command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Safety {
    /// Let this named safety check through, printed and journaled (repeatable): ttl-not-expired,
    /// zone-share, nameserver-address, plan-changed, delete-share, live-unit, unresolved-ids.
    #[arg(long = "allow", value_name = "CHECK")]
    pub allow: Vec<crate::check::Check>,
    /// Let every safety check through; each one it lets through is still printed and journaled.
    #[arg(long)]
    pub force: bool,
}

impl Safety {
    pub fn allowed(&self) -> crate::check::Allowed {
        crate::check::Allowed::new(self.allow.iter().copied(), self.force)
    }
}

/// Exit codes, stable for scripts.
pub mod exit {
    pub const OK: u8 = 0;
    /// Finished, but something failed (or the dry run found errors).
    pub const FAILURES: u8 = 1;
    /// The input is invalid (plan, arguments).
    pub const INVALID: u8 = 2;
    /// Refused by a safety check (see `--allow CHECK`).
    pub const UNSAFE: u8 = 3;
    /// Another run holds the plan's lock (its holder is named); nothing was done.
    pub const LOCKED: u8 = 4;
}

impl Cli {
    /// Parses `args` as `Cli::try_parse_from` does, and also keeps the order in which
    /// `copy`'s and `verify`'s filter rules were typed (rsync's rule: the first match decides).
    ///
    /// # Errors
    /// A usage error, `--help` or `--version` (clap's, to print).
    pub fn try_parse_ordered<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let Some((_, sub)) = matches.subcommand()
            && let Command::Copy { filters, .. } | Command::Verify { filters, .. } =
                &mut cli.command
        {
            filters.order(sub);
        }
        Ok(cli)
    }
}

impl Command {
    /// The verbs typed (`cutover`, `db sync`), never the other arguments: what the plan's lock
    /// records of its holder and what the run's log is named after.
    pub fn verbs(&self) -> String {
        use clap::ValueEnum;
        fn step(s: &impl ValueEnum) -> String {
            s.to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        }
        let (verb, step) = match self {
            Command::Validate { .. } => ("validate", None),
            Command::Plan { .. } => ("plan", None),
            Command::Inventory { .. } => ("inventory", None),
            Command::Schema => ("schema", None),
            Command::Completions { .. } => ("completions", None),
            Command::Man { .. } => ("man", None),
            Command::Demo => ("demo", None),
            Command::Sync { .. } => ("sync", None),
            Command::Cutover { .. } => ("cutover", None),
            Command::Rollback { .. } => ("rollback", None),
            Command::Status { .. } => ("status", None),
            Command::Resume { .. } => ("resume", None),
            Command::Run { .. } => ("run", None),
            Command::Worker { verb, .. } => ("worker", Some(step(verb))),
            Command::Report { .. } => ("report", None),
            Command::Db { step: s, .. } => ("db", Some(step(s))),
            Command::Mail { step: s, .. } => ("mail", Some(step(s))),
            Command::Dns { step: s, .. } => ("dns", Some(step(s))),
            Command::Copy { .. } => ("copy", None),
            Command::Verify { .. } => ("verify", None),
            Command::Agent { .. } => ("agent", None),
            Command::Forward { .. } => ("forward", None),
        };
        match step {
            Some(s) => format!("{verb} {s}"),
            None => verb.to_string(),
        }
    }

    /// Whether a run of this command changes the world under a plan (and so gets a log file
    /// in its state directory). `copy` changes a target too, but has no plan to keep a log by.
    pub fn changes_world(&self) -> bool {
        match self {
            Command::Sync { .. }
            | Command::Cutover { .. }
            | Command::Rollback { .. }
            | Command::Resume { .. }
            | Command::Worker { .. }
            | Command::Run { .. } => true,
            Command::Db { step, .. } => *step == db::Step::Sync,
            Command::Mail { step, .. } => *step != mail::Step::Verify,
            Command::Dns { step, .. } => !matches!(step, dns::Step::Plan | dns::Step::Verify),
            _ => false,
        }
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let verbs = cli.command.verbs();
    crate::journal::set_command(&verbs);
    if cli.command.changes_world() {
        run_log::expect(&verbs);
    }
    let verbose = cli.verbose;
    let code = dispatch(cli);
    run_log::finish(code);
    if verbose && let Some(log) = run_log::path() {
        eprintln!("log: {}", log.display());
    }
    code
}

fn dispatch(cli: Cli) -> u8 {
    let printer = printer::Printer::new(&cli);
    match cli.command {
        Command::Validate { plan, offline } => validate::run(&plan, offline, &printer),
        Command::Plan {
            plan,
            format,
            output,
            itemize,
            detailed_exitcode,
            save,
        } => plan::run(
            &plan,
            plan::Options {
                format,
                output: output.as_deref(),
                itemize,
                detailed_exitcode,
                save: save.as_deref(),
            },
            &printer,
        ),
        Command::Inventory { plan, yaml } => inventory::run(&plan, yaml, &printer),
        Command::Schema => schema::run(),
        Command::Completions { shell } => completions::run(shell),
        Command::Man { verb, out_dir } => man::run(verb.as_deref(), out_dir.as_deref(), &printer),
        Command::Demo => demo::run(&printer),
        Command::Sync {
            plan,
            only,
            safety,
            allow_live,
        } => sync::run(&plan, &only, safety.allowed(), allow_live, &printer),
        Command::Cutover {
            plan,
            batch,
            only,
            saved,
            safety,
        } => cutover::run(
            &plan,
            cutover::Options {
                batch,
                only: &only,
                saved: saved.as_deref(),
                allowed: safety.allowed(),
            },
            &printer,
        ),
        Command::Rollback { plan, only } => rollback::run(&plan, &only, &printer),
        Command::Status { plan } => status::run(&plan, &printer),
        Command::Resume { plan } => resume::run(&plan, &printer),
        Command::Run {
            plan,
            max_wait,
            safety,
        } => run::run(&plan, max_wait, safety.allowed(), &printer),
        Command::Worker {
            plan,
            verb,
            batch,
            only,
            safety,
        } => worker::run(
            &plan,
            worker::Options {
                verb,
                batch,
                only: &only,
                allowed: safety.allowed(),
            },
            &printer,
        ),
        Command::Report {
            plan,
            format,
            output,
        } => report::run(&plan, format, output.as_deref(), &printer),
        Command::Db {
            step,
            plan,
            only,
            allow_live,
        } => db::run(step, &plan, &only, &allow_live, &printer),
        Command::Mail {
            step,
            plan,
            delete,
            allow_live,
        } => mail::run(step, &plan, delete, allow_live, &printer),
        Command::Dns {
            step,
            plan,
            zones,
            safety,
            plan_checksum,
            format,
            only,
        } => dns::run(
            dns::DnsArgs {
                step,
                plan: &plan,
                zones: &zones,
                only: &only,
                allowed: safety.allowed(),
                reviewed: plan_checksum.as_deref(),
                format,
            },
            &printer,
        ),
        Command::Copy {
            src,
            dst,
            rsh,
            delete,
            checksum,
            dry_run,
            jobs,
            filters,
            force,
            compress,
            bwlimit,
            devices,
            acls,
            xattrs,
            itemize,
            stats,
            progress,
            partial: _,
            partial_progress,
            rsync_exit_codes,
        } => copy::run(
            copy::CopyArgs {
                src,
                dst,
                rsh,
                filters,
                options: crate::sync::SyncOptions {
                    delete,
                    checksum,
                    dry_run,
                    jobs: jobs.max(1),
                    exclude: Vec::new(),
                    force,
                    compress,
                    // `--bwlimit 0` is no limit, as rsync's.
                    bwlimit: bwlimit.filter(|b| *b > 0),
                    devices,
                    relink: None,
                    xattrs,
                    acls,
                    itemize: match itemize {
                        0 => crate::sync::Itemize::Off,
                        1 => crate::sync::Itemize::Changes,
                        _ => crate::sync::Itemize::All,
                    },
                    manifest: None,
                },
                stats,
                progress: progress || partial_progress,
                rsync_exit_codes,
            },
            &printer,
        ),
        Command::Verify {
            first,
            second,
            rsh,
            filters,
            jobs,
            devices,
            acls,
            xattrs,
            rsync_exit_codes,
        } => verify::run(
            verify::VerifyArgs {
                first: &first,
                second: second.as_deref(),
                rsh: rsh.as_deref(),
                filters: &filters,
                options: crate::sync::SyncOptions {
                    jobs: jobs.max(1),
                    devices,
                    acls,
                    xattrs,
                    ..crate::sync::SyncOptions::default()
                },
                rsync_exit_codes,
            },
            &printer,
        ),
        Command::Agent {
            stdio,
            confine,
            streams,
        } => agent::run(stdio, confine, streams, &printer),
        Command::Forward { dir } => agent::forward(&dir, &printer),
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
