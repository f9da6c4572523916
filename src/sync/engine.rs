//! Runs a sync plan: directories, then files through parallel workers with many in flight,
//! then links, metadata and deletions. Every written file is verified by BLAKE3 on both ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::plan::{self, ActionKind, FileJob, PlannedAction, SyncPlan};
use super::side::Side;
use crate::event::{Event, Observer};
use crate::transport::channel::Pending;
use crate::transport::protocol::{Basis, Call, Outcome, Reply};
use crate::transport::{Transport, TransportError};
use crate::tree::delta::{self, DeltaOp};

mod direct;

const CHUNK: usize = 256 * 1024;

/// One side of a sync: a host and a directory on it.
#[derive(Clone)]
pub struct Endpoint {
    pub transport: Arc<dyn Transport>,
    pub root: PathBuf,
}

/// How a sync behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub delete: bool,
    pub checksum: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub exclude: Vec<String>,
    /// Allows `--delete` to remove more than 30 % of the target's files.
    pub force: bool,
    /// Compress file data on the wire with zstd (skipping already-compressed formats).
    pub compress: bool,
    /// Bytes per second of file data at most.
    pub bwlimit: Option<u64>,
    /// Recreate block and character device nodes (rsync's `--devices`); without it each is
    /// refused: not created, and reported as an error of the run.
    pub devices: bool,
    /// Symlinks into the source's data directory point into the target's (`Relink`): the
    /// source listing is read as rewritten, so plans, writes and verification agree.
    pub relink: Option<crate::plan::Relink>,
    /// Keep extended attributes (rsync's `-X`): `user.*`, and `security.*` (file
    /// capabilities) and `trusted.*` where the target runs as root.
    pub xattrs: bool,
    /// Keep POSIX ACLs, access and default (rsync's `-A`).
    pub acls: bool,
    /// List each change with rsync's itemize code (`SyncReport::changes`).
    pub itemize: Itemize,
    /// The target's manifest (`sync::manifest`): read instead of listing the target when
    /// the hint says so, written by a clean verification.
    pub manifest: Option<super::manifest::Hint>,
}

impl SyncOptions {
    /// The extended attributes and ACLs listed, compared and copied.
    pub fn keep(&self) -> crate::tree::xattr::Keep {
        crate::tree::xattr::Keep {
            xattrs: self.xattrs,
            acls: self.acls,
        }
    }
}

/// Which entries `SyncReport::changes` lists (rsync's `-i` and `-ii`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Itemize {
    #[default]
    Off,
    /// Every entry the sync changes, with why.
    Changes,
    /// Every entry, those left as they are included.
    All,
}

/// Entries by type, as rsync's `--stats` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub devices: u64,
    pub specials: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.files + self.dirs + self.symlinks + self.devices + self.specials
    }

    pub(crate) fn add(&mut self, e: &crate::tree::Entry) {
        use crate::tree::EntryKind;
        match e.kind {
            EntryKind::File => self.files += 1,
            EntryKind::Dir => self.dirs += 1,
            EntryKind::Symlink => self.symlinks += 1,
            EntryKind::Other if matches!(e.mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) => {
                self.devices += 1
            }
            EntryKind::Other => self.specials += 1,
        }
    }
}

/// Protocol bytes through ssh so far, each way (both 0 when both sides are local).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireBytes {
    pub sent: u64,
    pub received: u64,
}

impl std::ops::Add for WireBytes {
    type Output = WireBytes;
    fn add(self, o: WireBytes) -> WireBytes {
        WireBytes {
            sent: self.sent + o.sent,
            received: self.received + o.received,
        }
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            delete: false,
            checksum: false,
            dry_run: false,
            jobs: 4,
            exclude: Vec::new(),
            force: false,
            compress: false,
            bwlimit: None,
            devices: false,
            relink: None,
            xattrs: false,
            acls: false,
            itemize: Itemize::Off,
            manifest: None,
        }
    }
}

/// One path that failed; the run went on with the others.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: String,
    pub error: String,
}

/// One itemized action: planned (dry run) or done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub action: ActionKind,
    pub path: String,
    pub size: u64,
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// The target was not listed: its manifest from the last clean verification stood in
    /// (`SyncOptions::manifest`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub target_from_manifest: bool,
    pub source_files: u64,
    pub source_bytes: u64,
    pub files_sent: u64,
    pub files_delta: u64,
    pub files_copied_locally: u64,
    /// File content that crossed the transport (whole files and delta literals).
    pub bytes_sent: u64,
    /// Bytes rebuilt at the target from blocks it already had.
    pub bytes_matched: u64,
    /// Protocol bytes through ssh, both directions (0 when both sides are local).
    pub wire_bytes: u64,
    /// Of `wire_bytes`, those this process wrote, and those it read.
    pub wire_sent: u64,
    pub wire_received: u64,
    /// The source's entries by type, its root directory included (rsync's "Number of files").
    pub listed: Counts,
    /// Entries the plan creates at the target, by type.
    pub created: Counts,
    pub dirs_created: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub nodes: u64,
    pub metadata_updates: u64,
    pub deleted: u64,
    /// Files whose BLAKE3 was computed on both ends and matched.
    pub verified: u64,
    pub errors: Vec<FileError>,
    pub skipped: Vec<FileError>,
    /// Source entries whose `security.*`/`trusted.*` attributes were not copied (the target
    /// does not run as root): left out as rsync does, and said.
    #[serde(skip_serializing_if = "is_zero")]
    pub xattrs_left_out: u64,
    /// What a copy could not carry, path by path (immutable and append-only flags).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FileError>,
    /// A safety refusal the operator let through (`--allow delete-share`, `--force`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub itemized: Vec<Item>,
    /// With `itemize`: each change with rsync's code (why it is made); failed paths left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<super::itemize::Change>,
    /// Every action that succeeded, path by path, in no particular order (for callers that
    /// compare with the plan; not serialized, a big tree would swamp the report).
    #[serde(skip)]
    pub done: Vec<Item>,
}

impl From<PlannedAction> for Item {
    fn from(a: PlannedAction) -> Item {
        Item {
            action: a.action,
            path: a.path,
            size: a.size,
        }
    }
}

/// Why a sync could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("source `{0}` does not exist")]
    SourceMissing(String),
    #[error("refused: {0}")]
    Unsafe(String),
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Syncs `src` onto `dst`.
///
/// # Errors
/// The source is missing, a host cannot be reached, or `--delete` would remove too much.
/// Failures of single files are in the report's `errors`, and the run goes on.
pub fn sync(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
) -> Result<SyncReport, SyncError> {
    // Counted from before the scan: file lists are wire cost too, as in rsync's statistics.
    let wire_before = wire_bytes_of(src) + wire_bytes_of(dst);
    observer.on_event(&Event::PhaseStarted {
        phase: "scan".into(),
        total: 0,
    });
    // Planned while the listings arrive, unless something needs them whole.
    if plan::streamable(opts) {
        let paired = plan::plan_streamed(src, dst, opts, None)?;
        observer.on_event(&Event::PhaseFinished {
            phase: "scan".into(),
        });
        return sync_paired(src, dst, opts, observer, paired, wire_before);
    }
    let (source, target) = plan::scan_both(src, dst, opts)?;
    observer.on_event(&Event::PhaseFinished {
        phase: "scan".into(),
    });
    sync_listed(src, dst, opts, observer, &source, &target, wire_before)
}

/// As `sync`, with the source listed already (`plan::scan_source`), such as a local source
/// listed while the target's connection was being made.
///
/// # Errors
/// As `sync`.
pub fn sync_with_source(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
    source: crate::tree::ScanSummary,
) -> Result<SyncReport, SyncError> {
    let wire_before = wire_bytes_of(src) + wire_bytes_of(dst);
    observer.on_event(&Event::PhaseStarted {
        phase: "scan".into(),
        total: 0,
    });
    if plan::streamable(opts) {
        let paired = plan::plan_streamed(src, dst, opts, Some(source))?;
        observer.on_event(&Event::PhaseFinished {
            phase: "scan".into(),
        });
        return sync_paired(src, dst, opts, observer, paired, wire_before);
    }
    let target = plan::scan_target(dst, opts)?;
    observer.on_event(&Event::PhaseFinished {
        phase: "scan".into(),
    });
    sync_listed(src, dst, opts, observer, &source, &target, wire_before)
}

/// As `sync_listed`, from a plan made as the listings arrived (`plan::plan_streamed`).
fn sync_paired(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
    paired: plan::Paired,
    wire_before: WireBytes,
) -> Result<SyncReport, SyncError> {
    let (mut report, src_side, dst_side) =
        open_sides(src, dst, opts, &paired.source, &paired.target)?;
    report.listed = paired.listed;
    run(
        &paired.plan,
        src_side,
        dst_side,
        opts,
        observer,
        report,
        wire_before,
    )
}

/// A listed sync's first steps: the source must exist; its unreadable entries are errors of
/// the run; both sides opened (the target only when it exists or is written).
fn open_sides(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    source: &crate::tree::ScanSummary,
    target: &crate::tree::ScanSummary,
) -> Result<(SyncReport, Side, Option<Side>), SyncError> {
    if !source.exists {
        return Err(source_missing(src));
    }
    let mut report = SyncReport {
        target_from_manifest: target.from_manifest,
        ..SyncReport::default()
    };
    for (p, e) in &source.errors {
        report.errors.push(FileError {
            path: show(p),
            error: e.clone(),
        });
    }
    let src_side = Side::open(src, false)?;
    let dst_side = if opts.dry_run && !target.exists {
        None
    } else {
        Some(Side::open(dst, !opts.dry_run)?)
    };
    Ok((report, src_side, dst_side))
}

/// Protocol bytes through the first stream of an endpoint so far (0 when local).
pub fn wire_bytes_of(e: &Endpoint) -> WireBytes {
    e.transport
        .channel(0)
        .map(|c| {
            let (sent, received) = c.wire_bytes();
            WireBytes { sent, received }
        })
        .unwrap_or_default()
}

/// Syncs `src` onto `dst` from listings the caller already has (scanned with `opts.exclude`,
/// and `opts.keep()`: attributes kept but not listed would be removed at the target),
/// such as a Maildir pass that renamed messages at the target first and updated `target`.
/// `wire_before` is `wire_bytes_of` both ends before those listings were made.
///
/// # Errors
/// As `sync`.
pub fn sync_listed(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
    source: &crate::tree::ScanSummary,
    target: &crate::tree::ScanSummary,
    wire_before: WireBytes,
) -> Result<SyncReport, SyncError> {
    let (mut report, src_side, dst_side) = open_sides(src, dst, opts, source, target)?;
    // In checksum mode, same-size files are hashed on both sides (in parallel) before planning.
    let differing: Option<std::collections::HashSet<Vec<u8>>> = match (&dst_side, opts.checksum) {
        (Some(dst_side), true) => Some(checksum_differences(
            &source.entries,
            &target.entries,
            &src_side,
            dst_side,
            &mut report.errors,
        )),
        _ => None,
    };
    let differs = |p: &[u8]| differing.as_ref().is_some_and(|d| d.contains(p));
    let plan = plan::decide(
        source,
        target,
        opts,
        if opts.checksum { Some(&differs) } else { None },
    );
    let changes = match opts.itemize {
        Itemize::Off => Vec::new(),
        how => super::itemize::changes(
            &plan,
            source,
            target,
            plan::running_as_root(),
            opts.checksum,
            how == Itemize::All,
        ),
    };
    for e in source
        .entries
        .iter()
        .filter(|e| !super::diff::is_internal(&e.path))
    {
        report.listed.add(e);
    }
    if source.root_meta.is_some() {
        report.listed.dirs += 1;
    }
    let mut report = run(
        &plan,
        src_side,
        dst_side,
        opts,
        observer,
        report,
        wire_before,
    )?;
    let failed: std::collections::HashSet<&str> =
        report.errors.iter().map(|e| e.path.as_str()).collect();
    let changes: Vec<_> = changes
        .into_iter()
        .filter(|c| !failed.contains(c.path.trim_end_matches('/')))
        .collect();
    report.changes = changes;
    Ok(report)
}

/// The source root named with its host, as a refusal to sync from it.
pub(crate) fn source_missing(src: &Endpoint) -> SyncError {
    SyncError::SourceMissing(format!("{}:{}", src.transport.host(), src.root.display()))
}

/// Carries out a plan made earlier by `plan::plan` (the dry run's own value).
///
/// # Errors
/// A host cannot be reached, or the plan is refused (`refusal`).
pub fn apply(
    plan: &SyncPlan,
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
) -> Result<SyncReport, SyncError> {
    let wire_before = wire_bytes_of(src) + wire_bytes_of(dst);
    let src_side = Side::open(src, false)?;
    let dst_side = if opts.dry_run {
        None
    } else {
        Some(Side::open(dst, true)?)
    };
    run(
        plan,
        src_side,
        dst_side,
        opts,
        observer,
        SyncReport::default(),
        wire_before,
    )
}

/// Reports a plan (dry run) or carries it out on opened sides.
fn run(
    plan: &SyncPlan,
    mut src_side: Side,
    dst_side: Option<Side>,
    opts: &SyncOptions,
    observer: &dyn Observer,
    mut report: SyncReport,
    wire_before: WireBytes,
) -> Result<SyncReport, SyncError> {
    report.source_files = plan.source_files;
    report.source_bytes = plan.source_bytes;
    for (p, why) in &plan.skipped {
        report.skipped.push(FileError {
            path: show(p),
            error: why.clone(),
        });
    }
    // Refused entries fail the run (exit 1, the site fails) while the rest is still copied.
    for (p, why) in &plan.refused {
        report.errors.push(FileError {
            path: show(p),
            error: why.clone(),
        });
    }
    report.xattrs_left_out = plan.xattrs_left_out;
    for (p, why) in &plan.flagged {
        report.warnings.push(FileError {
            path: show(p),
            error: why.clone(),
        });
    }
    if let Some(why) = &plan.refusal {
        return Err(SyncError::Unsafe(why.clone()));
    }
    report.overridden = plan.overridden.clone();
    report.created = Counts {
        files: plan.files.iter().filter(|f| !f.replaces).count() as u64
            + plan.hardlinks.len() as u64,
        dirs: plan.mkdirs.len() as u64,
        symlinks: plan.symlinks.len() as u64,
        ..Counts::default()
    };
    for (_, meta, _) in &plan.nodes {
        if matches!(meta.mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) {
            report.created.devices += 1;
        } else {
            report.created.specials += 1;
        }
    }
    if opts.dry_run {
        report.itemized = plan
            .actions()
            .into_iter()
            .filter(|a| !matches!(a.action, ActionKind::Skip | ActionKind::Refuse))
            .map(Item::from)
            .collect();
        return Ok(report);
    }
    let mut dst_side = dst_side.expect("opened when not a dry run");
    // More streams only when there are files to move in parallel.
    let streams = default_streams()
        .min(opts.jobs)
        .min(plan.files.len())
        .max(1);
    src_side.grow(streams)?;
    dst_side.grow(streams)?;
    let direct = direct::Link::open(&src_side, &dst_side, &mut report)?;
    execute(
        plan,
        &src_side,
        &dst_side,
        opts,
        observer,
        &mut report,
        direct,
    );
    // A dropped connection fails the run as a whole, so the caller can reconnect and run again
    // (what was written stays; partial files become delta bases).
    if let Some(e) = src_side.lost().or_else(|| dst_side.lost()) {
        return Err(SyncError::Transport(e));
    }
    let (ch, root) = dst_side.pick(0);
    let _ = ch.call_wait(Call::Sync { root: *root });
    let wire = src_side.wire_bytes() + dst_side.wire_bytes();
    report.wire_sent = wire.sent - wire_before.sent;
    report.wire_received = wire.received - wire_before.received;
    report.wire_bytes = report.wire_sent + report.wire_received;
    Ok(report)
}

/// Same-size files hashed on both sides at once; the paths whose content differs.
pub(super) fn checksum_differences(
    source: &[crate::tree::Entry],
    target: &[crate::tree::Entry],
    src: &Side,
    dst: &Side,
    errors: &mut Vec<FileError>,
) -> std::collections::HashSet<Vec<u8>> {
    let by_path: std::collections::HashMap<&[u8], &crate::tree::Entry> =
        target.iter().map(|e| (e.path.as_slice(), e)).collect();
    let candidates: Vec<Vec<u8>> = source
        .iter()
        .filter(|s| {
            s.kind == crate::tree::EntryKind::File
                && by_path
                    .get(s.path.as_slice())
                    .is_some_and(|t| t.kind == crate::tree::EntryKind::File && t.size == s.size)
        })
        .map(|s| s.path.clone())
        .collect();
    let (a, b) = std::thread::scope(|s| {
        let t = s.spawn(|| dst.hash_all(&candidates));
        (src.hash_all(&candidates), t.join().expect("hash thread"))
    });
    let mut differ = std::collections::HashSet::new();
    for ((path, x), y) in candidates.iter().zip(a).zip(b) {
        match (x, y) {
            (Ok(x), Ok(y)) if x == y => {}
            (Ok(_), Ok(_)) => {
                differ.insert(path.clone());
            }
            (Err(e), _) | (_, Err(e)) => errors.push(FileError {
                path: show(path),
                error: e,
            }),
        }
    }
    differ
}

/// Calls in flight, each with its path and the bytes it concerns.
type Calls = Vec<(Vec<u8>, u64, Result<Pending, TransportError>)>;

/// Waits for many calls in parallel, collects their failures and records what was done as
/// `action` (when it is an action of the plan).
fn wait_all(calls: Calls, host: &str, report: &mut SyncReport, action: Option<ActionKind>) -> u64 {
    let mut ok = 0;
    for (path, size, pending) in calls {
        match pending.and_then(|p| p.wait(host)) {
            Ok(_) => {
                ok += 1;
                if let Some(action) = action {
                    report.done.push(Item {
                        action,
                        path: show(&path),
                        size,
                    });
                }
            }
            Err(e) => report.errors.push(FileError {
                path: show(&path),
                error: e.to_string(),
            }),
        }
    }
    ok
}

/// Keeps file data under a rate shared by every worker.
struct Limiter {
    rate: u64,
    start: std::time::Instant,
    sent: AtomicU64,
}

impl Limiter {
    fn take(&self, n: usize) {
        let total = self.sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let due = std::time::Duration::from_secs_f64(total as f64 / self.rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

struct Shared<'a> {
    limiter: Option<Limiter>,
    compress: bool,
    errors: Mutex<Vec<FileError>>,
    sent: AtomicU64,
    delta: AtomicU64,
    local: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_matched: AtomicU64,
    verified: AtomicU64,
    done: Mutex<Vec<Item>>,
    observer: &'a dyn Observer,
    /// Files go host to host (the source's agent pushes them to the target's).
    direct: Option<direct::Link>,
}

impl Shared<'_> {
    fn did(&self, action: ActionKind, path: &[u8], size: u64) {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Item {
                action,
                path: show(path),
                size,
            });
    }

    fn fail(&self, path: &[u8], error: String) {
        self.observer.on_event(&Event::UnitFailed {
            phase: "files".into(),
            unit: show(path),
            error: error.clone(),
        });
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FileError {
                path: show(path),
                error,
            });
    }
}

/// A write waiting for the receiver's verdict.
struct Completion {
    path: Vec<u8>,
    size: u64,
    action: ActionKind,
    pending: Pending,
    host: String,
    /// A batch of small files (`WriteSmall`): their paths and sizes, one verdict each, in
    /// order; `path` and `size` are then unused.
    batch: Option<Vec<(Vec<u8>, u64)>>,
}

impl Shared<'_> {
    /// One file written and verified by the receiver.
    fn landed(&self, action: ActionKind, path: &[u8], size: u64) {
        self.verified.fetch_add(1, Ordering::Relaxed);
        self.did(action, path, size);
        self.observer.on_event(&Event::UnitDone {
            phase: "files".into(),
            unit: show(path),
        });
    }

    /// The receiver's verdicts on a batch: each file lands or fails on its own.
    fn batch_verdict(&self, files: &[(Vec<u8>, u64)], verdict: Result<Reply, TransportError>) {
        match verdict {
            Ok(Reply::Written(results)) if results.len() == files.len() => {
                for ((path, size), r) in files.iter().zip(results) {
                    match r {
                        Ok(_) => self.landed(ActionKind::Send, path, *size),
                        Err(e) => self.fail(path, e),
                    }
                }
            }
            Ok(r) => {
                for (path, _) in files {
                    self.fail(path, format!("unexpected {r:?}"));
                }
            }
            Err(e) => {
                for (path, _) in files {
                    self.fail(path, e.to_string());
                }
            }
        }
    }
}

fn execute(
    plan: &SyncPlan,
    src: &Side,
    dst: &Side,
    opts: &SyncOptions,
    observer: &dyn Observer,
    report: &mut SyncReport,
    direct: Option<direct::Link>,
) {
    let (ch, root) = dst.pick(0);
    let host = ch.host().to_string();
    // Directories first, in path order (parents before children), all in flight at once.
    let calls = plan
        .mkdirs
        .iter()
        .map(|(p, meta)| {
            (
                p.clone(),
                0,
                ch.call(Call::Mkdir {
                    root: *root,
                    path: p.clone(),
                    meta: *meta,
                }),
            )
        })
        .collect();
    report.dirs_created = wait_all(calls, &host, report, Some(ActionKind::Mkdir));
    // With --delete, what stands under a path the source now holds as a file, a link or a node
    // goes before the writes: the directory there can be replaced only once empty (one pass,
    // as rsync; deleted last, it made the write fail and wait for the next run).
    let (early, late) = plan.deletes_in_the_way();
    let remove = |deletes: &[&super::plan::Delete]| -> Vec<_> {
        deletes
            .iter()
            .map(|d| {
                (
                    d.path.clone(),
                    d.bytes,
                    ch.call(Call::Remove {
                        root: *root,
                        path: d.path.clone(),
                    }),
                )
            })
            .collect()
    };
    report.deleted = wait_all(remove(&early), &host, report, Some(ActionKind::Delete));

    let shared = Shared {
        limiter: opts.bwlimit.map(|rate| Limiter {
            rate,
            start: std::time::Instant::now(),
            sent: AtomicU64::new(0),
        }),
        compress: opts.compress,
        errors: Mutex::new(Vec::new()),
        sent: AtomicU64::new(0),
        delta: AtomicU64::new(0),
        local: AtomicU64::new(0),
        bytes_sent: AtomicU64::new(0),
        bytes_matched: AtomicU64::new(0),
        verified: AtomicU64::new(0),
        done: Mutex::new(Vec::new()),
        observer,
        direct,
    };
    observer.on_event(&Event::PhaseStarted {
        phase: "files".into(),
        total: plan.files.len() as u64,
    });
    observer.on_event(&Event::BytesTotal {
        phase: "files".into(),
        bytes: plan.files.iter().map(|f| f.size).sum(),
    });
    // Pushed directly, a delta's signature is asked by the source's agent itself.
    let signatures = match &shared.direct {
        Some(_) => vec![None; plan.files.len()],
        None => prefetch_signatures(&plan.files, dst),
    };
    let workers = match &shared.direct {
        Some(_) => direct::WORKERS.max(opts.jobs),
        None => opts.jobs.max(1),
    };
    // Small whole files read here go in batches, one call for many (no delta basis, no
    // local copy, not pushed host to host).
    let batchable: Vec<bool> = plan
        .files
        .iter()
        .zip(&signatures)
        .map(|(f, sig)| {
            src.local.is_some()
                && shared.direct.is_none()
                && f.copy_from.is_none()
                && sig.is_none()
                && f.size <= SMALL_FILE
        })
        .collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::sync_channel::<Completion>(1024);
        let shared = &shared;
        // The collector takes the receivers' verdicts while workers keep sending.
        s.spawn(move || {
            for c in done_rx {
                if let Some(files) = &c.batch {
                    shared.batch_verdict(files, c.pending.wait(&c.host));
                    continue;
                }
                match c.pending.wait(&c.host) {
                    Ok(Reply::Done(_)) => shared.landed(c.action, &c.path, c.size),
                    Ok(r) => shared.fail(&c.path, format!("unexpected {r:?}")),
                    Err(e) => shared.fail(&c.path, e.to_string()),
                }
            }
        });
        for w in 0..workers {
            let (next, done_tx, signatures) = (&next, done_tx.clone(), &signatures);
            let batchable = &batchable;
            s.spawn(move || {
                while let Some(run) = next_jobs(next, &plan.files, batchable) {
                    if batchable[run.start] {
                        send_small(&plan.files[run], src, dst, w, shared, &done_tx);
                        continue;
                    }
                    let (i, job) = (run.start, &plan.files[run.start]);
                    shared.observer.on_event(&Event::UnitStarted {
                        phase: "files".into(),
                        unit: show(&job.path),
                        bytes: job.size,
                    });
                    if let Err(e) =
                        transfer(job, signatures[i].as_ref(), src, dst, w, shared, &done_tx)
                    {
                        shared.fail(&job.path, e);
                    }
                }
            });
        }
    });
    observer.on_event(&Event::PhaseFinished {
        phase: "files".into(),
    });
    report.files_sent = shared.sent.load(Ordering::Relaxed);
    report.files_delta = shared.delta.load(Ordering::Relaxed);
    report.files_copied_locally = shared.local.load(Ordering::Relaxed);
    report.bytes_sent = shared.bytes_sent.load(Ordering::Relaxed);
    report.bytes_matched = shared.bytes_matched.load(Ordering::Relaxed);
    report.verified = shared.verified.load(Ordering::Relaxed);
    report
        .done
        .extend(shared.done.into_inner().unwrap_or_else(|p| p.into_inner()));
    report.errors.extend(
        shared
            .errors
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    );

    let r = *root;
    let calls = plan
        .symlinks
        .iter()
        .map(|(p, t, m)| {
            (
                p.clone(),
                0,
                ch.call(Call::Symlink {
                    root: r,
                    path: p.clone(),
                    target: t.clone(),
                    meta: *m,
                }),
            )
        })
        .collect();
    report.symlinks = wait_all(calls, &host, report, Some(ActionKind::Symlink));
    let calls = plan
        .nodes
        .iter()
        .map(|(p, m, rdev)| {
            (
                p.clone(),
                0,
                ch.call(Call::Mknod {
                    root: r,
                    path: p.clone(),
                    meta: *m,
                    rdev: *rdev,
                }),
            )
        })
        .collect();
    report.nodes = wait_all(calls, &host, report, Some(ActionKind::Mknod));
    let calls = plan
        .hardlinks
        .iter()
        .map(|(e, p, size)| {
            (
                p.clone(),
                *size,
                ch.call(Call::Hardlink {
                    root: r,
                    existing: e.clone(),
                    path: p.clone(),
                }),
            )
        })
        .collect();
    report.hardlinks = wait_all(calls, &host, report, Some(ActionKind::Hardlink));
    let calls = plan
        .metas
        .iter()
        .map(|(p, m, l)| {
            (
                p.clone(),
                0,
                ch.call(Call::SetMeta {
                    root: r,
                    path: p.clone(),
                    meta: *m,
                    is_symlink: *l,
                    xattrs: if *l { None } else { plan.wanted_xattrs(p) },
                }),
            )
        })
        .collect();
    report.metadata_updates = wait_all(calls, &host, report, Some(ActionKind::Meta));
    report.deleted += wait_all(remove(&late), &host, report, Some(ActionKind::Delete));
    let calls = plan
        .dir_metas
        .iter()
        .map(|(p, m)| {
            (
                p.clone(),
                0,
                ch.call(Call::SetMeta {
                    root: r,
                    path: p.clone(),
                    meta: *m,
                    is_symlink: false,
                    xattrs: plan.wanted_xattrs(p),
                }),
            )
        })
        .collect();
    wait_all(calls, &host, report, None);
}

/// Streams per remote side: each costs a core of cipher at both ends, so half the cores (up to
/// four); measured on 2 cores, a second stream made big files slower, not faster.
fn default_streams() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4))
}

/// Files up to this size may go in a batch (`WriteSmall`).
const SMALL_FILE: u64 = 128 * 1024;
/// A batch holds at most this many files...
const BATCH_FILES: usize = 64;
/// ...and this many bytes (planned sizes; what is read is capped at `MAX_CHUNK`, the most a
/// compressed batch may inflate to at the receiver).
const BATCH_BYTES: u64 = 1 << 20;

/// The next jobs for a worker: one, or a run of consecutive batchable ones.
fn next_jobs(
    next: &AtomicUsize,
    files: &[FileJob],
    batchable: &[bool],
) -> Option<std::ops::Range<usize>> {
    let mut start = next.load(Ordering::Acquire);
    loop {
        if start >= files.len() {
            return None;
        }
        let end = batch_end(start, |i| files.get(i).map(|f| (batchable[i], f.size)));
        match next.compare_exchange(start, end, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(start..end),
            Err(now) => start = now,
        }
    }
}

/// Where the run starting at `start` ends: past one job, or past the batchable jobs that follow
/// it within `BATCH_FILES` and `BATCH_BYTES`. `job(i)` is (batchable, size), `None` past the end.
fn batch_end(start: usize, job: impl Fn(usize) -> Option<(bool, u64)>) -> usize {
    let Some((true, mut bytes)) = job(start) else {
        return start + 1;
    };
    let mut end = start + 1;
    while end - start < BATCH_FILES
        && let Some((true, size)) = job(end)
        && bytes + size <= BATCH_BYTES
    {
        bytes += size;
        end += 1;
    }
    end
}

/// Small whole files read from the local source and sent in `WriteSmall` calls: one frame and
/// one reply for many files instead of three frames per file. Each file is still read under
/// watch (read again when it changed, as a single file is), checked by BLAKE3 and put in place
/// on its own at the receiver, and fails alone.
fn send_small(
    jobs: &[FileJob],
    src: &Side,
    dst: &Side,
    worker: usize,
    shared: &Shared,
    done: &mpsc::SyncSender<Completion>,
) {
    use crate::transport::protocol::{MAX_CHUNK, SmallFile};
    let Some(root) = &src.local else {
        unreachable!("batches are read from a local source")
    };
    let (dch, droot) = dst.pick(worker);
    let mut files: Vec<SmallFile> = Vec::with_capacity(jobs.len());
    let mut data = Vec::new();
    let flush = |files: &mut Vec<SmallFile>, data: &mut Vec<u8>| {
        if files.is_empty() {
            return;
        }
        let (files, data) = (std::mem::take(files), std::mem::take(data));
        let names: Vec<(Vec<u8>, u64)> = files
            .iter()
            .map(|f| (f.path.clone(), u64::from(f.len)))
            .collect();
        let (data, zstd_len) = match shared.compress && dst.is_remote() {
            true => {
                let packed = crate::transport::protocol::compress(&data);
                if packed.len() < data.len() {
                    let len = data.len() as u32;
                    (packed, Some(len))
                } else {
                    (data, None)
                }
            }
            false => (data, None),
        };
        if let Some(l) = &shared.limiter {
            l.take(data.len());
        }
        shared
            .bytes_sent
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let call = Call::WriteSmall {
            root: *droot,
            files,
            data,
            zstd_len,
        };
        let sent = dch
            .call(call)
            .map_err(|e| e.to_string())
            .and_then(|pending| {
                done.send(Completion {
                    path: Vec::new(),
                    size: 0,
                    action: ActionKind::Send,
                    pending,
                    host: dch.host().into(),
                    batch: Some(names.clone()),
                })
                .map_err(|_| "collector gone".to_string())
            });
        if let Err(e) = sent {
            for (path, _) in &names {
                shared.fail(path, e.clone());
            }
        }
    };
    for job in jobs {
        shared.observer.on_event(&Event::UnitStarted {
            phase: "files".into(),
            unit: show(&job.path),
            bytes: job.size,
        });
        let covered = Covered::new(job.size, shared.observer);
        let content = match read_small(root, job, &covered) {
            Ok(Some(content)) => content,
            // Grown past a batch since it was listed: it goes on its own.
            Ok(None) => {
                if let Err(e) = transfer(job, None, src, dst, worker, shared, done) {
                    shared.fail(&job.path, e);
                }
                continue;
            }
            Err(e) => {
                shared.fail(&job.path, e);
                continue;
            }
        };
        if data.len() + content.len() > MAX_CHUNK as usize {
            flush(&mut files, &mut data);
        }
        files.push(SmallFile {
            path: job.path.clone(),
            meta: job.meta,
            xattrs: job.xattrs.clone(),
            len: content.len() as u32,
            hash: *blake3::hash(&content).as_bytes(),
        });
        data.extend_from_slice(&content);
        shared.sent.fetch_add(1, Ordering::Relaxed);
        covered.complete();
    }
    flush(&mut files, &mut data);
}

/// Reads a small file whole, again when it changed while it was read (`READ_ATTEMPTS` times);
/// `None` when it has grown past what a batch takes.
fn read_small(
    root: &crate::tree::root::SafeRoot,
    job: &FileJob,
    covered: &Covered,
) -> Result<Option<Vec<u8>>, String> {
    let what = |e: std::io::Error| format!("{}: {e}", show(&job.path));
    let mut last = String::new();
    for _ in 0..READ_ATTEMPTS {
        covered.restart();
        let f = root.open_read(&job.path).map_err(what)?;
        let mut chunks = crate::transport::server::Chunks::new(f).map_err(what)?;
        if chunks.left() > crate::transport::protocol::MAX_CHUNK as u64 / 2 {
            return Ok(None);
        }
        let mut content = Vec::new();
        let changed = loop {
            match chunks.next_chunk() {
                Ok(Some(buf)) => {
                    covered.add(buf.len() as u64);
                    content.extend_from_slice(&buf);
                }
                Ok(None) => break None,
                Err(e) if crate::tree::stamp::is_changed(&e) => break Some(what(e)),
                Err(e) => return Err(what(e)),
            }
        };
        match changed {
            None if content.len() as u64 <= crate::transport::protocol::MAX_CHUNK as u64 / 2 => {
                return Ok(Some(content));
            }
            None => return Ok(None),
            Some(why) => last = why,
        }
    }
    Err(format!(
        "{last}; read {READ_ATTEMPTS} times, changing each time: not copied (copy it again once it is quiet)"
    ))
}

/// Signatures of every delta basis, asked in batches all in flight at once: a delta then waits
/// for no round trip of its own. `None` where there is no usable basis (the file goes whole).
fn prefetch_signatures(files: &[FileJob], dst: &Side) -> Vec<Option<delta::Signature>> {
    use crate::transport::protocol::SigRequest;
    const BATCH: usize = 64;
    let wanted: Vec<usize> = (0..files.len())
        .filter(|i| files[*i].basis != Basis::None && files[*i].copy_from.is_none())
        .collect();
    let calls: Vec<(&[usize], Result<Pending, TransportError>)> = wanted
        .chunks(BATCH)
        .enumerate()
        .map(|(n, idx)| {
            let (ch, root) = dst.pick(n);
            let items = idx
                .iter()
                .map(|i| SigRequest {
                    path: files[*i].path.clone(),
                    basis: files[*i].basis,
                    block_len: delta::block_len_for(files[*i].size),
                })
                .collect();
            (idx, ch.call(Call::Signatures { root: *root, items }))
        })
        .collect();
    let mut out: Vec<Option<delta::Signature>> = vec![None; files.len()];
    for (idx, pending) in calls {
        let host = dst.pick(0).0.host().to_string();
        if let Ok(Reply::Sigs(sigs)) = pending.and_then(|p| p.wait(&host)) {
            for (i, sig) in idx.iter().zip(sigs) {
                out[*i] = sig.ok();
            }
        }
    }
    out
}

/// Moves one file; the receiver's verdict goes to the collector.
fn transfer(
    job: &FileJob,
    signature: Option<&delta::Signature>,
    src: &Side,
    dst: &Side,
    worker: usize,
    shared: &Shared,
    done: &mpsc::SyncSender<Completion>,
) -> Result<(), String> {
    let (dch, droot) = dst.pick(worker);
    if let Some(from) = &job.copy_from {
        // A source that cannot be hashed quietly (it is changing) goes the way of a send, which
        // reads it again or reports it; so does a copy whose content turns out different.
        if let Ok(source_hash) = src.hash_one(worker, &job.path) {
            let copied = dch.call_wait(Call::LocalCopy {
                root: *droot,
                from: from.clone(),
                path: job.path.clone(),
                meta: job.meta,
                hash: source_hash,
                xattrs: job.xattrs.clone(),
            });
            if let Ok(Reply::Done(Outcome { hash: Some(h), .. })) = copied
                && h == source_hash
            {
                shared.local.fetch_add(1, Ordering::Relaxed);
                shared.verified.fetch_add(1, Ordering::Relaxed);
                shared.did(ActionKind::CopyLocal, &job.path, job.size);
                Covered::new(job.size, shared.observer).complete();
                shared.observer.on_event(&Event::UnitDone {
                    phase: "files".into(),
                    unit: show(&job.path),
                });
                return Ok(());
            }
        }
        return transfer(
            &FileJob {
                copy_from: None,
                ..job.clone()
            },
            signature,
            src,
            dst,
            worker,
            shared,
            done,
        );
    }
    if let Some(link) = &shared.direct {
        return direct::push(link, job, worker, shared);
    }
    let block_len = delta::block_len_for(job.size);
    let mut signature = signature;
    let covered = Covered::new(job.size, shared.observer);
    for attempt in 1..=READ_ATTEMPTS {
        covered.restart();
        let basis = if signature.is_some() {
            job.basis
        } else {
            Basis::None
        };
        let pending = dch
            .call(Call::WriteBegin {
                root: *droot,
                path: job.path.clone(),
                meta: job.meta,
                basis,
                block_len,
                xattrs: job.xattrs.clone(),
            })
            .map_err(|e| e.to_string())?;
        let id = pending.id;
        let send = |call: Call| dch.follow(id, call).map_err(|e| e.to_string());
        let streamed = match signature {
            Some(sig) => stream_delta(job, src, worker, sig, &send, shared, &covered),
            None => stream_whole(job, src, worker, &send, shared, dst.is_remote(), &covered),
        };
        match streamed {
            Ok(Streamed::Complete(hash)) => {
                send(Call::WriteEnd { hash })?;
                covered.complete();
                if signature.is_some() {
                    shared.delta.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                return done
                    .send(Completion {
                        path: job.path.clone(),
                        size: job.size,
                        action: if signature.is_some() {
                            ActionKind::Delta
                        } else {
                            ActionKind::Send
                        },
                        pending,
                        host: dch.host().into(),
                        batch: None,
                    })
                    .map_err(|_| "collector gone".to_string());
            }
            Ok(Streamed::Changed(why)) => {
                // What was sent is no version of the file: the receiver drops it.
                let _ = send(Call::WriteEnd { hash: [0u8; 32] });
                let _ = pending.wait(dch.host());
                if attempt == READ_ATTEMPTS {
                    return Err(format!(
                        "{why}; read {READ_ATTEMPTS} times, changing each time: not copied (copy it again once it is quiet)"
                    ));
                }
                // The dropped write took the partial file it started from with it.
                if job.basis == Basis::Partial {
                    signature = None;
                }
            }
            Err(e) => {
                // An impossible hash makes the receiver drop what it got instead of keeping it.
                let _ = send(Call::WriteEnd { hash: [0u8; 32] });
                let _ = pending.wait(dch.host());
                return Err(e);
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Reads of a source file that keeps changing before it is reported instead of copied.
const READ_ATTEMPTS: u32 = 3;

/// How much of one file's source was streamed, told as `BytesDone` as it grows. A retry reads
/// again from the start and tells nothing until it passes what an earlier read reached, and
/// what is told stops at the planned size: a file counts its size once, however it is read.
struct Covered<'a> {
    size: u64,
    read: std::cell::Cell<u64>,
    told: std::cell::Cell<u64>,
    observer: &'a dyn Observer,
}

impl<'a> Covered<'a> {
    fn new(size: u64, observer: &'a dyn Observer) -> Self {
        Covered {
            size,
            read: 0.into(),
            told: 0.into(),
            observer,
        }
    }

    /// `n` more bytes of the source were read (sent, or matched at the target).
    fn add(&self, n: u64) {
        let read = self.read.get().saturating_add(n);
        self.read.set(read);
        self.tell(read.min(self.size));
    }

    fn restart(&self) {
        self.read.set(0);
    }

    /// All of it is read: the rest of the planned size is told.
    fn complete(&self) {
        self.tell(self.size);
    }

    fn tell(&self, upto: u64) {
        let told = self.told.get();
        if upto > told {
            self.told.set(upto);
            self.observer.on_event(&Event::BytesDone {
                phase: "files".into(),
                bytes: upto - told,
            });
        }
    }
}

/// A source read, counted as it goes.
struct CountedRead<'a, R> {
    inner: R,
    covered: &'a Covered<'a>,
}

impl<R: std::io::Read> std::io::Read for CountedRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.covered.add(n as u64);
        Ok(n)
    }
}

/// Source bytes one delta operation stands for (a last short block counts whole: `Covered`
/// stops at the file's size).
fn op_len(op: &DeltaOp, block_len: u32) -> u64 {
    match op {
        DeltaOp::Literal(d) => d.len() as u64,
        DeltaOp::Copy { count, .. } => u64::from(*count) * u64::from(block_len),
    }
}

/// How reading the source for one write ended.
enum Streamed {
    /// All of it was sent; the BLAKE3 of what was read.
    Complete([u8; 32]),
    /// The file changed while it was read: what was sent is no version of it.
    Changed(String),
}

fn stream_whole(
    job: &FileJob,
    src: &Side,
    worker: usize,
    send: &dyn Fn(Call) -> Result<(), String>,
    shared: &Shared,
    dst_remote: bool,
    covered: &Covered,
) -> Result<Streamed, String> {
    let compress = shared.compress && !crate::transport::protocol::precompressed(&job.path);
    let wire = |n: usize| {
        if let Some(l) = &shared.limiter {
            l.take(n);
        }
        shared.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    };
    if let Some(root) = &src.local {
        let f = root
            .open_read(&job.path)
            .map_err(|e| format!("{}: {e}", show(&job.path)))?;
        let mut chunks = crate::transport::server::Chunks::new(f)
            .map_err(|e| format!("{}: {e}", show(&job.path)))?;
        let mut hasher = blake3::Hasher::new();
        loop {
            let buf = match chunks.next_chunk() {
                Ok(Some(buf)) => buf,
                Ok(None) => break,
                Err(e) if crate::tree::stamp::is_changed(&e) => {
                    return Ok(Streamed::Changed(format!("{}: {e}", show(&job.path))));
                }
                Err(e) => return Err(format!("{}: {e}", show(&job.path))),
            };
            let n = buf.len();
            covered.add(n as u64);
            hasher.update(&buf);
            if compress && dst_remote {
                let data = crate::transport::protocol::compress(&buf);
                wire(data.len());
                send(Call::WriteDataZstd {
                    data,
                    len: n as u32,
                })?;
            } else {
                wire(n);
                send(Call::WriteData { data: buf })?;
            }
        }
        return Ok(Streamed::Complete(*hasher.finalize().as_bytes()));
    }
    let (sch, sroot) = src.pick(worker);
    let pending = sch
        .call(Call::ReadFile {
            root: *sroot,
            path: job.path.clone(),
            compress,
        })
        .map_err(|e| e.to_string())?;
    for reply in pending.replies.iter() {
        match reply {
            Reply::Data(data) => {
                wire(data.len());
                covered.add(data.len() as u64);
                send(Call::WriteData { data })?;
            }
            Reply::DataZstd { data, len } => {
                wire(data.len());
                covered.add(u64::from(len));
                if dst_remote {
                    send(Call::WriteDataZstd { data, len })?;
                } else {
                    let raw = crate::transport::protocol::decompress(&data, len)
                        .map_err(|e| format!("{}: {e}", show(&job.path)))?;
                    send(Call::WriteData { data: raw })?;
                }
            }
            Reply::Done(Outcome { hash: Some(h), .. }) => return Ok(Streamed::Complete(h)),
            Reply::Changed(why) => return Ok(Streamed::Changed(why)),
            Reply::Error(e) => return Err(e),
            r => return Err(format!("unexpected {r:?}")),
        }
    }
    Err(format!("{}: connection lost while reading", sch.host()))
}

fn stream_delta(
    job: &FileJob,
    src: &Side,
    worker: usize,
    sig: &delta::Signature,
    send: &dyn Fn(Call) -> Result<(), String>,
    shared: &Shared,
    covered: &Covered,
) -> Result<Streamed, String> {
    let count = |ops: &[DeltaOp]| {
        for op in ops {
            match op {
                DeltaOp::Literal(d) => {
                    shared
                        .bytes_sent
                        .fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                DeltaOp::Copy { count, .. } => {
                    shared.bytes_matched.fetch_add(
                        u64::from(*count) * u64::from(sig.block_len),
                        Ordering::Relaxed,
                    );
                }
            }
        }
    };
    if let Some(root) = &src.local {
        let f = root
            .open_read(&job.path)
            .and_then(crate::tree::stamp::Watched::new)
            .map_err(|e| format!("{}: {e}", show(&job.path)))?;
        let mut batch = Vec::new();
        let mut literal = 0usize;
        let mut send_err = None;
        // Counted as read: a run of matching blocks is one operation, sent when it ends.
        let f = CountedRead { inner: f, covered };
        let stats = delta::diff(std::io::BufReader::with_capacity(CHUNK, f), sig, |op| {
            if let DeltaOp::Literal(d) = &op {
                literal += d.len();
            }
            batch.push(op);
            if literal >= CHUNK || batch.len() >= 4096 {
                let ops = std::mem::take(&mut batch);
                count(&ops);
                literal = 0;
                if let Err(e) = send(Call::WriteDelta { ops }) {
                    send_err = Some(e);
                    return Err(std::io::Error::other("transport failed"));
                }
            }
            Ok(())
        });
        if let Some(e) = send_err {
            return Err(e);
        }
        let stats = match stats {
            Ok(stats) => stats,
            Err(e) if crate::tree::stamp::is_changed(&e) => {
                return Ok(Streamed::Changed(format!("{}: {e}", show(&job.path))));
            }
            Err(e) => return Err(format!("{}: {e}", show(&job.path))),
        };
        if !batch.is_empty() {
            count(&batch);
            send(Call::WriteDelta { ops: batch })?;
        }
        return Ok(Streamed::Complete(*stats.hash.as_bytes()));
    }
    let (sch, sroot) = src.pick(worker);
    let pending = sch
        .call(Call::Delta {
            root: *sroot,
            path: job.path.clone(),
            signature: sig.clone(),
        })
        .map_err(|e| e.to_string())?;
    for reply in pending.replies.iter() {
        match reply {
            Reply::DeltaOps(ops) => {
                count(&ops);
                covered.add(ops.iter().map(|op| op_len(op, sig.block_len)).sum());
                send(Call::WriteDelta { ops })?;
            }
            Reply::Done(Outcome { hash: Some(h), .. }) => return Ok(Streamed::Complete(h)),
            Reply::Changed(why) => return Ok(Streamed::Changed(why)),
            Reply::Error(e) => return Err(e),
            r => return Err(format!("unexpected {r:?}")),
        }
    }
    Err(format!("{}: connection lost while reading", sch.host()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_take_consecutive_small_files_within_their_limits() {
        // (batchable, size) per job.
        let jobs = |v: Vec<(bool, u64)>| move |i: usize| v.get(i).copied();
        let small = (true, 1000);
        assert_eq!(batch_end(0, jobs(vec![small; 10])), 10);
        assert_eq!(batch_end(0, jobs(vec![small; 200])), BATCH_FILES);
        assert_eq!(batch_end(64, jobs(vec![small; 200])), 128);
        // One that may not be batched ends the run, and alone is a run of one.
        let mixed = vec![small, small, (false, 10), small];
        assert_eq!(batch_end(0, jobs(mixed.clone())), 2);
        assert_eq!(batch_end(2, jobs(mixed.clone())), 3);
        assert_eq!(batch_end(3, jobs(mixed)), 4);
        // Bytes: the file that would pass the limit starts the next batch.
        let big = (true, SMALL_FILE);
        assert_eq!(
            batch_end(0, jobs(vec![big; 20])),
            (BATCH_BYTES / SMALL_FILE) as usize
        );
    }
}
