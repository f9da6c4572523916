//! `transhumance copy SRC DST`: the file engine for ad hoc use and benchmarks, with rsync's
//! habits (filter rules, `-i`, `--stats`, `-P`, `--bwlimit` in KiB/s, `--rsync-exit-codes`).

use std::time::{Duration, Instant};

use super::endpoint::{Location, connect, parse_location};
use super::printer::Printer;
use super::progress::{Bars, FileLines, JsonLines};
use super::rsync::{Ending, FilterArgs};
use crate::event::{Event, Observer, Silent};
use crate::plan::units::human_bytes;
use crate::sync::plan::scan_source;
use crate::sync::{Endpoint, Itemize, SyncError, SyncOptions, SyncReport, sync, sync_with_source};
use crate::transport::TransportError;
use crate::transport::protocol::{Call, Reply};

/// Options of `copy`, from the command line.
pub struct CopyArgs {
    pub src: String,
    pub dst: String,
    pub rsh: Option<String>,
    /// Filter rules as typed; they become `options.exclude`.
    pub filters: FilterArgs,
    pub options: SyncOptions,
    /// `--stats`: rsync's statistics at the end.
    pub stats: bool,
    /// `--progress` / `-P`: progress even without a terminal (a line per file).
    pub progress: bool,
    /// `--rsync-exit-codes`.
    pub rsync_exit_codes: bool,
}

/// Attempts after a dropped connection (the next run reuses what was already written).
const ATTEMPTS: u32 = 3;

pub fn run(args: CopyArgs, printer: &Printer) -> u8 {
    let rsync = args.rsync_exit_codes;
    copy(args, printer).code(rsync)
}

fn copy(mut args: CopyArgs, printer: &Printer) -> Ending {
    let (src, dst) = match (parse_location(&args.src), parse_location(&args.dst)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            printer.error(e);
            return Ending::Usage;
        }
    };
    if let Some(why) = overlap(&src, &dst) {
        printer.error(why);
        return Ending::Usage;
    }
    match args.filters.rules() {
        Ok(rules) => args.options.exclude = rules,
        Err(e) => {
            printer.error(e);
            return Ending::Usage;
        }
    }
    let observer: Box<dyn Observer> = if printer.progress {
        Box::new(Bars::new())
    } else if printer.json && printer.verbose {
        Box::new(JsonLines::default())
    } else if args.progress && !printer.json {
        Box::new(FileLines::default())
    } else {
        Box::new(Silent)
    };
    let started = Instant::now();
    let mut attempt = 0;
    let report = loop {
        attempt += 1;
        let mut locked = false;
        // A local source is listed while the ssh connection to the target is being made (the
        // handshake is most of a no-change run); never the target, listed only once locked.
        let (listed, connected) = std::thread::scope(|scope| {
            let connecting = scope.spawn(|| {
                connect(&src, args.rsh.as_deref())
                    .and_then(|s| connect(&dst, args.rsh.as_deref()).map(|d| (s, d)))
            });
            let listed = match (&src, &dst) {
                (Location::Local(_), Location::Remote(..)) => connect(&src, None)
                    .ok()
                    .filter(source_exists)
                    .and_then(|s| scan_source(&s, &args.options).ok()),
                _ => None,
            };
            (listed, connecting.join().expect("connect thread"))
        });
        let result = connected.map_err(SyncError::from).and_then(|(s, d)| {
            // The lock lives as long as `d`'s session: the whole sync, not a moment longer.
            if !args.options.dry_run && source_exists(&s) {
                lock_target(&d, &args.dst).inspect_err(|e| {
                    locked = matches!(e, SyncError::Unsafe(_));
                })?;
            }
            match listed {
                Some(source) => sync_with_source(&s, &d, &args.options, observer.as_ref(), source),
                None => sync(&s, &d, &args.options, observer.as_ref()),
            }
        });
        match result {
            Ok(r) => break r,
            // After a dropped connection, the agent of the lost session may still hold the
            // lock for a moment: a retry waits for it like for the connection.
            Err(e)
                if attempt < ATTEMPTS
                    && match &e {
                        SyncError::Transport(TransportError::Connect { .. }) => true,
                        SyncError::Unsafe(_) => locked && attempt > 1,
                        _ => false,
                    } =>
            {
                let wait = Duration::from_secs(1 << (attempt - 1));
                observer.on_event(&Event::Info {
                    message: format!("{e}; retrying in {}s", wait.as_secs()),
                });
                if !printer.progress {
                    printer.status(format!("{e}; retrying in {}s", wait.as_secs()));
                }
                std::thread::sleep(wait);
            }
            Err(e) => {
                observer.finish();
                printer.error(e.to_string());
                return match e {
                    SyncError::Unsafe(_) if locked => Ending::TargetLocked,
                    SyncError::Unsafe(_) => Ending::DeleteShare,
                    SyncError::SourceMissing(_) => Ending::SourceMissing,
                    SyncError::Transport(TransportError::Connect { .. }) => Ending::Unreachable,
                    SyncError::Transport(_) => Ending::Protocol,
                };
            }
        }
    };
    observer.finish();
    print_report(&report, &args, started.elapsed(), printer);
    if report.errors.is_empty() {
        Ending::Done
    } else {
        Ending::Partial
    }
}

fn print_report(r: &SyncReport, args: &CopyArgs, elapsed: Duration, printer: &Printer) {
    let dry_run = args.options.dry_run;
    if printer.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(r).expect("report serializes")
        );
        return;
    }
    if args.options.itemize != Itemize::Off {
        for c in &r.changes {
            outln!("{}", c.line());
        }
    } else if dry_run {
        for item in &r.itemized {
            let kind = serde_json::to_value(item.action)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            outln!(
                "{kind:<10} {}{}",
                item.path,
                if item.size > 0 {
                    format!(" ({})", human_bytes(item.size))
                } else {
                    String::new()
                }
            );
        }
    }
    if args.stats {
        if args.options.itemize != Itemize::Off || dry_run {
            outln!("");
        }
        super::printer::out(&super::rsync::stats(r, elapsed, dry_run));
    }
    for e in &r.skipped {
        printer.status(format!("skipped {}: {}", e.path, e.error));
    }
    for e in &r.warnings {
        printer.notice(format!("warning: {}: {}", e.path, e.error));
    }
    if r.xattrs_left_out > 0 {
        printer.status(format!(
            "{} entries keep their security.* or trusted.* attributes (file capabilities among them) at the source only: the target does not run as root",
            r.xattrs_left_out
        ));
    }
    for e in &r.errors {
        printer.error(format!("{}: {}", e.path, e.error));
    }
    if !dry_run {
        printer.status(format!(
            "{} files ({}) at the source: {} sent whole, {} by delta, {} copied at the target; {} on the wire, {} reused; {} verified (BLAKE3 on both ends); {} dirs created, {} links, {} deleted; {} error(s)",
            r.source_files,
            human_bytes(r.source_bytes),
            r.files_sent,
            r.files_delta,
            r.files_copied_locally,
            human_bytes(r.bytes_sent),
            human_bytes(r.bytes_matched),
            r.verified,
            r.dirs_created,
            r.symlinks + r.hardlinks,
            r.deleted,
            r.errors.len()
        ));
    }
}

/// Whether the source root can be opened (when it cannot, the sync says why before the target
/// is created, so the lock does not create it either).
fn source_exists(src: &Endpoint) -> bool {
    src.transport.channel(0).is_ok_and(|ch| {
        matches!(
            ch.call_wait(Call::OpenRoot {
                root: src.root.clone(),
                create: false,
            }),
            Ok(Reply::Opened(_))
        )
    })
}

/// Takes the target root's lock (created if missing) for the session of `dst`: a second `copy`
/// into the same target while one runs would be a second writer on every path, so it is
/// refused (exit 3: refused as unsafe, nothing done) instead of racing the first.
fn lock_target(dst: &Endpoint, spec: &str) -> Result<(), SyncError> {
    let ch = dst.transport.channel(0)?;
    let unexpected = |r: Reply| {
        SyncError::Transport(TransportError::Protocol {
            host: ch.host().into(),
            message: format!("unexpected {r:?}"),
        })
    };
    let root = match ch.call_wait(Call::OpenRoot {
        root: dst.root.clone(),
        create: true,
    })? {
        Reply::Opened(id) => id,
        r => return Err(unexpected(r)),
    };
    match ch.call_wait(Call::Lock { root })? {
        Reply::Done(_) => Ok(()),
        Reply::Locked(why) => Err(SyncError::Unsafe(format!(
            "target `{spec}`: {why}; wait for that run to finish, then copy again"
        ))),
        r => Err(unexpected(r)),
    }
}

/// Source and target on the same host, one inside the other: a copy would write into its own
/// source (or `--delete` remove it). Refused before anything starts.
fn overlap(src: &Location, dst: &Location) -> Option<String> {
    let absolute = |p: &std::path::Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        // Resolve what exists, so `a/../b` and symlinked parents compare as they really are.
        std::fs::canonicalize(&p).unwrap_or(p)
    };
    let (a, b) = match (src, dst) {
        (Location::Local(a), Location::Local(b)) => (absolute(a), absolute(b)),
        (Location::Remote(ta, a), Location::Remote(tb, b)) if ta == tb => (a.clone(), b.clone()),
        _ => return None,
    };
    crate::plan::validate::paths_overlap(&a, &b).then(|| {
        format!(
            "source `{}` and target `{}` overlap: a copy would write into its own source",
            a.display(),
            b.display()
        )
    })
}
