//! What `copy` and `verify` share with rsync's command line, so its users' habits work: filter
//! rules in command-line order (`--include`, `--exclude`, `--exclude-from`, `--include-from`;
//! the first matching rule decides), `--stats`, and rsync's exit codes (`--rsync-exit-codes`).

use std::path::Path;

use clap::ArgMatches;

use super::exit;
use crate::sync::SyncReport;
use crate::sync::engine::Counts;
use crate::tree::exclude;

/// The filter rules of `copy` and `verify`, as rsync takes them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Leave out paths matching PATTERN (rsync style: `dir/`, `*.tmp`, `/anchored`; a `+ `
    /// prefix makes it an include). Rules apply in command-line order, first match wins.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Keep paths matching PATTERN even when a later rule excludes them (rsync's `--include`:
    /// `--include '*.php' --exclude '*'`).
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Read exclude rules from FILE (`-` for stdin), one per line; blank lines and lines
    /// starting with `#` or `;` are skipped, `+ PATTERN` lines include.
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<String>,
    /// Read include rules from FILE (`-` for stdin), one per line; `- PATTERN` lines exclude.
    #[arg(long, value_name = "FILE")]
    pub include_from: Vec<String>,
    /// The rules in the order they were typed (filled by `Cli::try_parse_ordered`).
    #[arg(skip)]
    pub ordered: Vec<Filter>,
}

/// One filter option as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Exclude(String),
    Include(String),
    ExcludeFrom(String),
    IncludeFrom(String),
}

impl FilterArgs {
    /// Records the order the filter options were typed in, from clap's indices.
    pub fn order(&mut self, matches: &ArgMatches) {
        let mut typed: Vec<(usize, Filter)> = Vec::new();
        type Make = fn(String) -> Filter;
        let kinds: [(&str, Make); 4] = [
            ("exclude", Filter::Exclude),
            ("include", Filter::Include),
            ("exclude_from", Filter::ExcludeFrom),
            ("include_from", Filter::IncludeFrom),
        ];
        for (id, make) in kinds {
            if let (Some(indices), Some(values)) =
                (matches.indices_of(id), matches.get_many::<String>(id))
            {
                typed.extend(indices.zip(values.map(|v| make(v.clone()))));
            }
        }
        typed.sort_by_key(|(i, _)| *i);
        self.ordered = typed.into_iter().map(|(_, f)| f).collect();
    }

    /// The options in their typed order (when the command line was parsed without it, as
    /// listed: excludes, includes, then the files).
    fn typed(&self) -> Vec<Filter> {
        if !self.ordered.is_empty() {
            return self.ordered.clone();
        }
        let mut out: Vec<Filter> = self.exclude.iter().cloned().map(Filter::Exclude).collect();
        out.extend(self.include.iter().cloned().map(Filter::Include));
        out.extend(self.exclude_from.iter().cloned().map(Filter::ExcludeFrom));
        out.extend(self.include_from.iter().cloned().map(Filter::IncludeFrom));
        out
    }

    /// The rules for the engine, in order (`+ PATTERN` for includes), files read.
    ///
    /// # Errors
    /// A rules file that cannot be read, named.
    pub fn rules(&self) -> Result<Vec<String>, String> {
        let read = |file: &str| -> Result<String, String> {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(Path::new(file))
            };
            text.map_err(|e| format!("cannot read the rules file `{file}`: {e}"))
        };
        let mut out = Vec::new();
        for f in self.typed() {
            match f {
                Filter::Exclude(p) => out.push(p),
                Filter::Include(p) => out.push(exclude::include(&p)),
                Filter::ExcludeFrom(file) => out.extend(exclude::rules_from(&read(&file)?, false)),
                Filter::IncludeFrom(file) => out.extend(exclude::rules_from(&read(&file)?, true)),
            }
        }
        // Compiled once here, so a bad pattern is invalid input before anything connects.
        crate::tree::ExcludeSet::new(&out)?;
        Ok(out)
    }
}

/// How a `copy` or a `verify` ended, for its exit code: ours, or rsync's with
/// `--rsync-exit-codes` (the table in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Everything copied (or identical).
    Done,
    /// Bad arguments: a location, overlapping trees, a rules file.
    Usage,
    /// The source does not exist.
    SourceMissing,
    /// Finished, but some paths failed (or, for `verify`, differ).
    Partial,
    /// `--delete` would remove more than 30 % of the target's files.
    DeleteShare,
    /// Another copy holds the target's lock.
    TargetLocked,
    /// A host could not be reached (ssh failed).
    Unreachable,
    /// The far side failed or spoke nonsense.
    Protocol,
}

impl Ending {
    /// Our exit code (0 ok, 1 failures, 2 invalid input, 3 refused as unsafe).
    pub fn ours(self) -> u8 {
        match self {
            Ending::Done => exit::OK,
            Ending::Usage | Ending::SourceMissing => exit::INVALID,
            Ending::Partial | Ending::Unreachable | Ending::Protocol => exit::FAILURES,
            Ending::DeleteShare | Ending::TargetLocked => exit::UNSAFE,
        }
    }

    /// rsync's exit code for the same ending (rsync(1), EXIT VALUES).
    pub fn rsync(self) -> u8 {
        match self {
            Ending::Done => 0,
            // Syntax or usage error.
            Ending::Usage => 1,
            // rsync reports a missing source as a partial transfer.
            Ending::SourceMissing | Ending::Partial => 23,
            // The --max-delete limit stopped deletions.
            Ending::DeleteShare => 25,
            // Error starting client-server protocol: the session could not start.
            Ending::TargetLocked => 5,
            // ssh failed.
            Ending::Unreachable => 255,
            // Error in rsync protocol data stream.
            Ending::Protocol => 12,
        }
    }

    pub fn code(self, rsync: bool) -> u8 {
        if rsync { self.rsync() } else { self.ours() }
    }
}

/// `1,234,567`, as rsync prints its statistics.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `(reg: 3, dir: 2, link: 1)`, the types rsync lists after a count.
fn by_type(c: &Counts) -> String {
    let parts: Vec<String> = [
        ("reg", c.files),
        ("dir", c.dirs),
        ("link", c.symlinks),
        ("dev", c.devices),
        ("special", c.specials),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k}: {}", thousands(*n)))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// rsync's `--stats` block for a copy. Without ssh on either side no protocol bytes exist, and
/// the file data moved stands for what was sent.
pub fn stats(r: &SyncReport, elapsed: std::time::Duration, dry_run: bool) -> String {
    use crate::report::files::ActionKind;
    let moved = |a: ActionKind| {
        matches!(
            a,
            ActionKind::Send | ActionKind::Delta | ActionKind::CopyLocal
        )
    };
    let items = if dry_run { &r.itemized } else { &r.done };
    let (transferred, transferred_bytes) = items
        .iter()
        .filter(|i| moved(i.action))
        .fold((0u64, 0u64), |(n, b), i| (n + 1, b + i.size));
    let deleted: u64 = if dry_run {
        r.itemized
            .iter()
            .filter(|i| i.action == ActionKind::Delete)
            .count() as u64
    } else {
        r.deleted
    };
    let (sent, received) = if r.wire_sent + r.wire_received > 0 {
        (r.wire_sent, r.wire_received)
    } else {
        (r.bytes_sent, 0)
    };
    let secs = elapsed.as_secs_f64().max(0.001);
    let speedup = r.source_bytes as f64 / (sent + received).max(1) as f64;
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!(
        "Number of files: {}{}",
        thousands(r.listed.total()),
        by_type(&r.listed)
    ));
    line(format!(
        "Number of created files: {}{}",
        thousands(r.created.total()),
        by_type(&r.created)
    ));
    line(format!("Number of deleted files: {}", thousands(deleted)));
    line(format!(
        "Number of regular files transferred: {}",
        thousands(transferred)
    ));
    line(format!(
        "Total file size: {} bytes",
        thousands(r.source_bytes)
    ));
    line(format!(
        "Total transferred file size: {} bytes",
        thousands(transferred_bytes)
    ));
    line(format!("Literal data: {} bytes", thousands(r.bytes_sent)));
    line(format!(
        "Matched data: {} bytes",
        thousands(r.bytes_matched)
    ));
    line(format!(
        "Files verified (BLAKE3 on both ends): {}",
        thousands(r.verified)
    ));
    line(format!("Total bytes sent: {}", thousands(sent)));
    line(format!("Total bytes received: {}", thousands(received)));
    line(String::new());
    line(format!(
        "sent {} bytes  received {} bytes  {} bytes/sec",
        thousands(sent),
        thousands(received),
        format_rate((sent + received) as f64 / secs),
    ));
    line(format!(
        "total size is {}  speedup is {speedup:.2}{}",
        thousands(r.source_bytes),
        if dry_run { " (DRY RUN)" } else { "" }
    ));
    s
}

/// `1,036.00`, as rsync prints a rate.
fn format_rate(rate: f64) -> String {
    let whole = rate.trunc() as u64;
    let cents = ((rate - rate.trunc()) * 100.0).round() as u64;
    format!("{}.{:02}", thousands(whole), cents.min(99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_rsync_prints_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(format_rate(1036.0), "1,036.00");
        assert_eq!(format_rate(2.5), "2.50");
    }

    #[test]
    fn endings_map_to_rsync_codes() {
        assert_eq!(Ending::Partial.code(true), 23);
        assert_eq!(Ending::Partial.code(false), 1);
        assert_eq!(Ending::Unreachable.code(true), 255);
        assert_eq!(Ending::DeleteShare.code(true), 25);
        assert_eq!(Ending::DeleteShare.code(false), 3);
        assert_eq!(Ending::Usage.code(true), 1);
        assert_eq!(Ending::Usage.code(false), 2);
    }

    #[test]
    fn filters_keep_the_typed_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules");
        std::fs::write(&file, "# keep logs out\n*.log\n").unwrap();
        let f = FilterArgs {
            ordered: vec![
                Filter::Include("keep.log".into()),
                Filter::ExcludeFrom(file.display().to_string()),
                Filter::Exclude("cache/".into()),
            ],
            ..FilterArgs::default()
        };
        assert_eq!(f.rules().unwrap(), vec!["+ keep.log", "*.log", "cache/"]);
        let missing = FilterArgs {
            exclude_from: vec!["/nonexistent/rules".into()],
            ..FilterArgs::default()
        };
        assert!(missing.rules().unwrap_err().contains("/nonexistent/rules"));
    }
}
