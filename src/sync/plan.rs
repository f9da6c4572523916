//! The file engine's plan: every decision a sync makes, as a value the dry run renders and
//! `apply` carries out, so that what is announced and what is done come from one place.

use std::collections::{BTreeMap, HashMap};

use serde::{Serialize, Serializer};

use super::diff::{self, ContentDiffers};
use super::engine::{Endpoint, SyncError, SyncOptions};
pub use crate::report::files::{ActionKind, PlanSummary, PlanTotals, PlannedAction};
use crate::transport::TransportError;
use crate::transport::protocol::Basis;
use crate::tree::root::Meta;
use crate::tree::xattr::{self, Keep, Wanted, Xattr};
use crate::tree::{Entry, EntryKind, ScanSummary};

/// One file to write at the target.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub path: Vec<u8>,
    pub size: u64,
    pub meta: Meta,
    pub basis: Basis,
    /// A target file with the same content, to copy locally instead of sending.
    pub copy_from: Option<Vec<u8>>,
    /// A file of that name is at the target already (an update, not a creation).
    pub replaces: bool,
    /// Extended attributes and ACLs set on it before its rename (when kept).
    pub xattrs: Option<crate::tree::xattr::Wanted>,
}

/// One path removed at the target, with what goes with it (a directory takes its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub path: Vec<u8>,
    /// Non-directory entries removed (the path itself and everything under it).
    pub files: u64,
    pub bytes: u64,
}

/// Everything a sync would do, in the order it must be done.
#[derive(Debug, Default, Clone)]
pub struct SyncPlan {
    pub mkdirs: Vec<(Vec<u8>, Meta)>,
    pub files: Vec<FileJob>,
    pub symlinks: Vec<(Vec<u8>, Vec<u8>, Meta)>,
    pub nodes: Vec<(Vec<u8>, Meta, u64)>,
    /// (existing leader, new link, size).
    pub hardlinks: Vec<(Vec<u8>, Vec<u8>, u64)>,
    pub metas: Vec<(Vec<u8>, Meta, bool)>,
    /// Filled only with `delete`; deepest first.
    pub deletes: Vec<Delete>,
    /// Directory metadata, applied last and deepest first (writing inside changes mtimes).
    pub dir_metas: Vec<(Vec<u8>, Meta)>,
    /// Entries at the target that the source lacks (our own temp files never count).
    pub extra: Vec<Vec<u8>>,
    /// Non-directory entries among `extra`, and their bytes.
    pub extra_files: u64,
    pub extra_bytes: u64,
    /// Target files (ignoring our own temp files), for the `--delete` safety ratio.
    pub target_files: u64,
    pub source_files: u64,
    pub source_bytes: u64,
    /// Source files already identical at the target (content and metadata).
    pub unchanged_files: u64,
    /// Entries the plan refuses to create (device nodes without `devices`), with the reason:
    /// errors of the run, and the target's entry at such a path is extra (deleted with
    /// `delete`), so no device is left behind there by an earlier run.
    pub refused: Vec<(Vec<u8>, String)>,
    /// Entries the plan cannot recreate (devices without root), with the reason.
    pub skipped: Vec<(Vec<u8>, String)>,
    /// Why a run of this plan is refused (`--delete` removing too much), when it is.
    pub refusal: Option<String>,
    /// The refusal the operator let through (`--allow delete-share`, `--force`), to be said.
    pub overridden: Option<String>,
    /// The extended attributes and ACLs kept, and the source's (files and directories that
    /// have any; `b""` is the root): what `SetMeta` makes a target entry's.
    pub keep: Keep,
    pub source_xattrs: BTreeMap<Vec<u8>, Vec<Xattr>>,
    /// Source entries whose `security.*` or `trusted.*` attributes (file capabilities among
    /// them) are not copied: the target does not run as root.
    pub xattrs_left_out: u64,
    /// Source entries with the immutable or append-only flag, which a copy does not carry:
    /// warnings naming each.
    pub flagged: Vec<(Vec<u8>, String)>,
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl SyncPlan {
    /// What the target's `path` must have of the kept attributes (`None`: not kept).
    pub fn wanted_xattrs(&self, path: &[u8]) -> Option<Wanted> {
        Wanted::of(self.keep, &self.source_xattrs, path)
    }

    /// Every action with its path, sorted by path (then by action): a stable order.
    pub fn actions(&self) -> Vec<PlannedAction> {
        let act = |path: &[u8], action, size, send| PlannedAction {
            path: show(path),
            action,
            size,
            send,
            replaces: false,
            from: None,
            files: None,
            note: None,
        };
        let mut out = Vec::new();
        out.extend(
            self.mkdirs
                .iter()
                .map(|(p, _)| act(p, ActionKind::Mkdir, 0, 0)),
        );
        for f in &self.files {
            let (kind, send) = if f.copy_from.is_some() {
                (ActionKind::CopyLocal, 0)
            } else if f.basis != Basis::None {
                (ActionKind::Delta, f.size)
            } else {
                (ActionKind::Send, f.size)
            };
            out.push(PlannedAction {
                replaces: f.replaces,
                from: f.copy_from.as_deref().map(show),
                ..act(&f.path, kind, f.size, send)
            });
        }
        out.extend(
            self.symlinks
                .iter()
                .map(|(p, _, _)| act(p, ActionKind::Symlink, 0, 0)),
        );
        out.extend(
            self.nodes
                .iter()
                .map(|(p, _, _)| act(p, ActionKind::Mknod, 0, 0)),
        );
        out.extend(self.hardlinks.iter().map(|(l, p, size)| PlannedAction {
            from: Some(show(l)),
            ..act(p, ActionKind::Hardlink, *size, 0)
        }));
        out.extend(
            self.metas
                .iter()
                .map(|(p, _, _)| act(p, ActionKind::Meta, 0, 0)),
        );
        out.extend(self.deletes.iter().map(|d| PlannedAction {
            files: Some(d.files),
            ..act(&d.path, ActionKind::Delete, d.bytes, 0)
        }));
        out.extend(self.skipped.iter().map(|(p, why)| PlannedAction {
            note: Some(why.clone()),
            ..act(p, ActionKind::Skip, 0, 0)
        }));
        out.extend(self.refused.iter().map(|(p, why)| PlannedAction {
            note: Some(why.clone()),
            ..act(p, ActionKind::Refuse, 0, 0)
        }));
        out.sort_by(|a, b| (&a.path, a.action).cmp(&(&b.path, b.action)));
        out
    }

    pub fn totals(&self) -> PlanTotals {
        let mut t = PlanTotals {
            source_files: self.source_files,
            source_bytes: self.source_bytes,
            unchanged_files: self.unchanged_files,
            metadata_only: self.metas.len() as u64,
            dirs_to_create: self.mkdirs.len() as u64,
            symlinks: self.symlinks.len() as u64,
            nodes: self.nodes.len() as u64,
            hardlinks: self.hardlinks.len() as u64,
            extra_files: self.extra_files,
            extra_bytes: self.extra_bytes,
            delete_files: self.deletes.iter().map(|d| d.files).sum(),
            delete_bytes: self.deletes.iter().map(|d| d.bytes).sum(),
            skipped: self.skipped.len() as u64,
            refused: self.refused.len() as u64,
            ..PlanTotals::default()
        };
        for f in &self.files {
            if f.replaces {
                t.changed_files += 1;
            } else {
                t.new_files += 1;
            }
            if f.copy_from.is_some() {
                t.local_copies += 1;
            } else {
                t.files_to_send += 1;
                t.bytes_to_send += f.size;
                if f.basis != Basis::None {
                    t.delta_files += 1;
                }
            }
        }
        t.new_files += self.hardlinks.len() as u64;
        t
    }
}

impl SyncPlan {
    pub fn summary(&self, itemized: bool) -> PlanSummary {
        let mut actions = self.actions();
        if !itemized {
            actions.retain(|a| {
                matches!(
                    a.action,
                    ActionKind::Delete | ActionKind::Skip | ActionKind::Refuse
                )
            });
        }
        PlanSummary {
            totals: self.totals(),
            refusal: self.refusal.clone(),
            itemized,
            actions,
        }
    }
}

/// A plan serializes as its itemized summary.
impl Serialize for SyncPlan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.summary(true).serialize(s)
    }
}

/// Whether this process may recreate device nodes and owners at a target.
pub(crate) fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What the engine does with an entry that is neither a file, a directory nor a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    /// Recreated at the target: a FIFO (as rsync's `--specials`), a device node with
    /// `devices` when this process may create one.
    Create,
    /// Left out, and not an error: a socket (meaningless on a copy), a device node this
    /// process cannot create (rsync skips those silently; we say so).
    Skip(String),
    /// Not created, and an error of the run: a device node without `devices`.
    Refuse(String),
}

/// `major:minor` of a device number (Linux's encoding, as `major(3)` and `minor(3)`).
pub fn device_numbers(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000);
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00);
    (major, minor)
}

/// The one decision on special files: the sync plan (`decide`) and verification both ask
/// here, so what is not copied is never then reported as missing, and a refusal stays one.
pub fn special(e: &Entry, devices: bool, can_mknod: bool) -> Special {
    let kind = e.mode & libc::S_IFMT;
    match kind {
        libc::S_IFIFO => Special::Create,
        libc::S_IFSOCK => {
            Special::Skip("sockets are not copied (the program that owns one recreates it)".into())
        }
        libc::S_IFCHR | libc::S_IFBLK => {
            let (major, minor) = device_numbers(e.rdev);
            let what = if kind == libc::S_IFCHR {
                "character"
            } else {
                "block"
            };
            if !devices {
                Special::Refuse(format!(
                    "{what} device {major}:{minor} refused: device nodes are not copied unless asked for (in a web root one is a hole on the new server); remove it at the source, or keep it with `devices: keep` in the plan (`--devices` for `copy`)"
                ))
            } else if !can_mknod {
                Special::Skip(format!(
                    "{what} device {major}:{minor}: device nodes are recreated only when running as root"
                ))
            } else {
                Special::Create
            }
        }
        _ => Special::Skip(format!("unknown file type (mode {:o})", e.mode)),
    }
}

/// Decides the whole sync of `source` onto `target` from their listings: the one place where
/// the engine and the dry run learn what will be sent, linked, copied, deleted or refused.
/// `differs` answers for same-size files with `--checksum` (both sides hashed by the caller).
pub fn decide(
    source: &ScanSummary,
    target: &ScanSummary,
    opts: &SyncOptions,
    differs: Option<ContentDiffers>,
) -> SyncPlan {
    let keep = opts.keep();
    let attrs = diff::AttrLists {
        keep,
        // The target's own lister says whether its writer may set root's namespaces.
        root: target.listed_as_root,
        source: &source.xattrs,
        target: &target.xattrs,
    };
    let (plan, extra_sizes) = diff::plan(
        source.root_meta,
        &source.entries,
        &target.entries,
        running_as_root(),
        &special_for(opts),
        differs,
        attrs,
    );
    let source_xattrs = if keep.any() {
        source.xattrs.clone()
    } else {
        BTreeMap::new()
    };
    settle(
        plan,
        &extra_sizes,
        Listed {
            source_xattrs,
            flagged: &source.flagged,
            source_root: source.root_meta,
            target_root: target.root_meta,
            target_root_xattrs: target.xattrs_of(b"").to_vec(),
            target_as_root: target.listed_as_root,
        },
        opts,
    )
}

/// The special-file decision (`special`) as a sync with `opts` asks it.
fn special_for(opts: &SyncOptions) -> impl Fn(&Entry) -> Special + '_ {
    let root = running_as_root();
    move |e| special(e, opts.devices, root)
}

/// What `settle` needs of the listings besides the pairing's plan.
struct Listed<'a> {
    /// The source's kept attributes, the root's (`b""`) included.
    source_xattrs: BTreeMap<Vec<u8>, Vec<Xattr>>,
    flagged: &'a [(Vec<u8>, u64)],
    source_root: Option<Meta>,
    target_root: Option<Meta>,
    /// The target root's own kept attributes.
    target_root_xattrs: Vec<Xattr>,
    target_as_root: bool,
}

/// What `decide` adds to the pairing's plan, whole listings or parts: the root's metadata
/// only when needed, the source's kept attributes, the flags a copy does not carry, the
/// extra entries' sizes, and with `delete` the deletions and the refusal to remove too much.
fn settle(
    mut plan: SyncPlan,
    extra_sizes: &[Option<u64>],
    listed: Listed,
    opts: &SyncOptions,
) -> SyncPlan {
    let keep = opts.keep();
    let target_roots = BTreeMap::from([(Vec::new(), listed.target_root_xattrs)]);
    let attrs = diff::AttrLists {
        keep,
        root: listed.target_as_root,
        source: &listed.source_xattrs,
        target: &target_roots,
    };
    if !root_meta_needed(
        &plan,
        listed.source_root,
        listed.target_root,
        running_as_root(),
        &attrs,
        opts.delete,
    ) {
        plan.dir_metas.retain(|(path, _)| !path.is_empty());
    }
    let (source_xattrs, flagged, target_as_root) =
        (listed.source_xattrs, listed.flagged, listed.target_as_root);
    if keep.any() {
        plan.keep = keep;
        if !target_as_root {
            plan.xattrs_left_out = source_xattrs
                .values()
                .filter(|l| xattr::root_only(l, keep) > 0)
                .count() as u64;
        }
        plan.source_xattrs = source_xattrs;
    }
    plan.flagged = flagged
        .iter()
        .map(|(p, flags)| {
            (
                p.clone(),
                format!(
                    "{}: the copy does not carry this flag (set it again at the target with chattr if it must stay)",
                    crate::tree::scan::describe_flags(*flags)
                ),
            )
        })
        .collect();
    // The sizes of `extra`'s entries, by index (`None`: a directory).
    for size in extra_sizes.iter().flatten() {
        plan.extra_files += 1;
        plan.extra_bytes += size;
    }
    if !opts.delete {
        return plan;
    }
    // Each delete carries what goes with it: every extra entry at or under its path.
    let doomed = diff::deletions(&plan.extra);
    let mut by_root: HashMap<&[u8], (u64, u64)> = HashMap::new();
    let roots: std::collections::HashSet<&[u8]> = doomed.iter().map(|d| d.as_slice()).collect();
    for (p, size) in plan.extra.iter().zip(extra_sizes) {
        let Some(size) = *size else { continue };
        let mut cut = p.as_slice();
        let owner = loop {
            if roots.contains(cut) {
                break Some(cut);
            }
            match cut.iter().rposition(|b| *b == b'/') {
                Some(i) => cut = &cut[..i],
                None => break None,
            }
        };
        if let Some(owner) = owner {
            let e = by_root.entry(owner).or_default();
            e.0 += 1;
            e.1 += size;
        }
    }
    plan.deletes = doomed
        .iter()
        .map(|d| {
            let (files, bytes) = by_root.get(d.as_slice()).copied().unwrap_or_default();
            Delete {
                path: d.clone(),
                files,
                bytes,
            }
        })
        .collect();
    if plan.target_files > 0 && plan.extra_files * 10 > plan.target_files * 3 {
        let why = format!(
            "[delete-share] --delete would remove {} of the {} files at the target (over 30 %): check the source path",
            plan.extra_files, plan.target_files
        );
        if opts.force {
            plan.overridden = Some(why);
        } else {
            plan.refusal = Some(format!(
                "{why} (to go on anyway: --allow delete-share, or --force for `copy`)"
            ));
        }
    }
    plan
}

impl SyncPlan {
    /// The deletes split in two: those under a path the sync writes as something other than a
    /// directory (a directory at the target stands there; it must be emptied first), and the
    /// others, made last as ever.
    pub fn deletes_in_the_way(&self) -> (Vec<&Delete>, Vec<&Delete>) {
        let replaced: std::collections::HashSet<&[u8]> = self
            .files
            .iter()
            .filter(|f| f.replaces)
            .map(|f| f.path.as_slice())
            .chain(self.symlinks.iter().map(|s| s.0.as_slice()))
            .chain(self.nodes.iter().map(|n| n.0.as_slice()))
            .chain(self.hardlinks.iter().map(|h| h.1.as_slice()))
            .collect();
        self.deletes.iter().partition(|d| {
            let mut cut = d.path.as_slice();
            while let Some(i) = cut.iter().rposition(|b| *b == b'/') {
                cut = &cut[..i];
                if replaced.contains(cut) {
                    return true;
                }
            }
            false
        })
    }
}

/// Whether the target root's own metadata is set again: it differs from the source's (or its
/// kept attributes do), or the sync writes or deletes anything (a write may move the root's
/// mtime, through its temp directory or a new entry). A sync that changes nothing then writes
/// nothing at all, and owes no flush of the file system (`tree::unsynced`).
fn root_meta_needed(
    plan: &SyncPlan,
    source: Option<Meta>,
    target: Option<Meta>,
    owners: bool,
    attrs: &diff::AttrLists,
    delete: bool,
) -> bool {
    let (Some(s), Some(t)) = (source, target) else {
        return true;
    };
    let differs = s.mode & 0o7777 != t.mode & 0o7777
        || s.mtime_ns != t.mtime_ns
        || (owners && (s.uid != t.uid || s.gid != t.gid))
        || !attrs.same(b"");
    let writes = !plan.mkdirs.is_empty()
        || !plan.files.is_empty()
        || !plan.symlinks.is_empty()
        || !plan.nodes.is_empty()
        || !plan.hardlinks.is_empty()
        || !plan.metas.is_empty()
        || plan.dir_metas.iter().any(|(path, _)| !path.is_empty())
        || (delete && !plan.extra.is_empty());
    differs || writes
}

/// Lists both sides (at once) with the options' excludes.
///
/// # Errors
/// A host cannot be reached or a root cannot be listed.
pub fn scan_both(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
) -> Result<(ScanSummary, ScanSummary), SyncError> {
    let (source, target) = std::thread::scope(|s| {
        let t = s.spawn(|| scan_target(dst, opts));
        (scan_source(src, opts), t.join().expect("scan thread"))
    });
    Ok((source?, target?))
}

/// The source's listing as a sync reads it (`opts.exclude`, `opts.keep()`, relinked).
///
/// # Errors
/// The source's host cannot be reached.
pub fn scan_source(src: &Endpoint, opts: &SyncOptions) -> Result<ScanSummary, SyncError> {
    let mut source = src
        .transport
        .scan_with(&src.root, &opts.exclude, opts.keep())?;
    relinked(&mut source, opts);
    Ok(source)
}

/// The target's listing as a sync reads it (its manifest instead, when `opts.manifest`
/// says so and there is one: `manifest::load`).
///
/// # Errors
/// The target's host cannot be reached.
pub fn scan_target(dst: &Endpoint, opts: &SyncOptions) -> Result<ScanSummary, SyncError> {
    if let Some(hinted) = super::manifest::load(dst, opts) {
        return Ok(hinted);
    }
    Ok(dst
        .transport
        .scan_with(&dst.root, &opts.exclude, opts.keep())?)
}

/// Rewrites the source's symlinks into the old data directory as the target must hold them
/// (`SyncOptions::relink`); the links are values, never followed on either side.
pub fn relinked(source: &mut ScanSummary, opts: &SyncOptions) {
    relink_entries(&mut source.entries, opts);
}

/// As `relinked`, for a part of the source's listing.
fn relink_entries(entries: &mut [Entry], opts: &SyncOptions) {
    let Some(relink) = &opts.relink else {
        return;
    };
    for e in entries {
        if e.kind == EntryKind::Symlink
            && let Some(t) = e.link_target.as_deref().and_then(|t| relink.rewrite(t))
        {
            e.link_target = Some(t);
        }
    }
}

/// Whether a sync with `opts` can be planned while its listings arrive (`plan_streamed`):
/// not when something needs both listings whole first (`--checksum` hashes both sides
/// before deciding, itemizing reads both, a manifest hint stands for the target's listing).
pub fn streamable(opts: &SyncOptions) -> bool {
    !opts.checksum
        && opts.itemize == super::engine::Itemize::Off
        && super::manifest::readable(opts).is_none()
}

/// A sync's plan made from both listings paired as they arrived (`plan_streamed`), and
/// what outlives their entries (dropped once paired).
#[derive(Debug)]
pub struct Paired {
    pub plan: SyncPlan,
    /// Each listing without its entries: the root's fields, errors, flags.
    pub source: ScanSummary,
    pub target: ScanSummary,
    /// The source's entries by type (rsync's `--stats` count), the root included.
    pub listed: super::engine::Counts,
}

/// Both listings fed part by part to one `Pairing`, and the rest of what `decide` needs
/// gathered on the way: fed the whole listings, it decides as `decide` does.
pub struct Streamed<'a> {
    opts: &'a SyncOptions,
    pairing: diff::Pairing<'a>,
    source: ScanSummary,
    target: ScanSummary,
    listed: super::engine::Counts,
}

impl<'a> Streamed<'a> {
    /// `special`: `special_for(opts)`, held by the caller.
    fn new(opts: &'a SyncOptions, special: &'a dyn Fn(&Entry) -> Special) -> Streamed<'a> {
        Streamed {
            opts,
            pairing: diff::Pairing::new(running_as_root(), special, None, opts.keep()),
            source: ScanSummary::default(),
            target: ScanSummary::default(),
            listed: super::engine::Counts::default(),
        }
    }

    /// Takes the next part of one side's listing (relinked already, for the source), or with
    /// `last` the rest, which holds the root's own fields.
    ///
    /// # Errors
    /// The part is out of `walk_order`.
    pub fn take(
        &mut self,
        side: diff::Side,
        mut part: ScanSummary,
        last: bool,
    ) -> Result<(), diff::OutOfOrder> {
        let facts = match side {
            diff::Side::Source => &mut self.source,
            diff::Side::Target => &mut self.target,
        };
        facts.errors.append(&mut part.errors);
        facts.flagged.append(&mut part.flagged);
        facts.listed_as_root = part.listed_as_root;
        if last {
            facts.exists = part.exists;
            facts.root_meta = part.root_meta;
        }
        let xattrs = std::mem::take(&mut part.xattrs);
        match side {
            diff::Side::Source => {
                for e in part.entries.iter().filter(|e| !diff::is_internal(&e.path)) {
                    self.listed.add(e);
                }
                if last && part.root_meta.is_some() {
                    self.listed.dirs += 1;
                }
                if self.opts.keep().any() {
                    self.source.xattrs.extend(xattrs.clone());
                }
            }
            diff::Side::Target => {
                // The root's own attributes: never paired, compared at the end (`settle`).
                if let Some(root) = xattrs.get(&b""[..]) {
                    self.target.xattrs.insert(Vec::new(), root.clone());
                }
                self.pairing.target_as_root(part.listed_as_root);
            }
        }
        self.pairing.attributes(side, xattrs);
        self.pairing.push(side, part.entries, last)
    }

    /// The plan, once both listings have ended, as `decide` makes it.
    pub fn finish(self) -> Paired {
        let (plan, extra_sizes) = self.pairing.finish(self.source.root_meta);
        let mut source = self.source;
        let plan = settle(
            plan,
            &extra_sizes,
            Listed {
                source_xattrs: std::mem::take(&mut source.xattrs),
                flagged: &source.flagged,
                source_root: source.root_meta,
                target_root: self.target.root_meta,
                target_root_xattrs: self.target.xattrs_of(b"").to_vec(),
                target_as_root: self.target.listed_as_root,
            },
            self.opts,
        );
        Paired {
            plan,
            source,
            target: self.target,
            listed: self.listed,
        }
    }
}

/// Parts in flight to the pairing. Both sides share one channel, and the pairing takes
/// whatever comes: a side is never held back for the other, since two listings of one host
/// share its stream, where a held-back call would hold up the other's replies behind it.
const PARTS_IN_FLIGHT: usize = 4;

/// One side's listing as it reaches the pairing: a part, then the rest (or why it failed).
enum Arrival {
    Part(ScanSummary),
    End(Result<ScanSummary, TransportError>),
}

/// Lists both sides at once (`source`: the source listed already), each on its own thread
/// handing its parts on as they come (`Transport::scan_parts`), and pairs them as they
/// arrive (`Streamed`): the plan `decide` would make, each entry dropped once paired.
/// For `streamable` options only (no manifest hint read here).
///
/// # Errors
/// As `scan_both` (the source's failure first), or a listing out of `walk_order`.
pub fn plan_streamed(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    source: Option<ScanSummary>,
) -> Result<Paired, SyncError> {
    use diff::Side;
    let special = special_for(opts);
    let mut streamed = Streamed::new(opts, &special);
    let mut failed: [Option<SyncError>; 2] = [None, None];
    let index = |side| usize::from(side == Side::Target);
    let out_of_order = |side, e: diff::OutOfOrder| {
        SyncError::Transport(TransportError::Protocol {
            host: [src, dst][index(side)].transport.host().into(),
            message: e.to_string(),
        })
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Side, Arrival)>(PARTS_IN_FLIGHT);
    std::thread::scope(|scope| {
        let list = |side: Side, end: &Endpoint| {
            let (tx, end) = (tx.clone(), end.clone());
            scope.spawn(move || {
                let relink = |part: &mut ScanSummary| {
                    if side == Side::Source {
                        relink_entries(&mut part.entries, opts);
                    }
                };
                let rest = end.transport.scan_parts(
                    &end.root,
                    &opts.exclude,
                    opts.keep(),
                    &mut |mut part| {
                        relink(&mut part);
                        tx.send((side, Arrival::Part(part)))
                            .map_err(|_| TransportError::Connect {
                                host: end.transport.host().into(),
                                message: "the listing was abandoned".into(),
                            })
                    },
                );
                let _ = tx.send((
                    side,
                    Arrival::End(rest.map(|mut r| {
                        relink(&mut r);
                        r
                    })),
                ));
            });
        };
        list(Side::Target, dst);
        match source {
            Some(listed) => {
                if let Err(e) = streamed.take(Side::Source, listed, true) {
                    failed[0] = Some(out_of_order(Side::Source, e));
                }
            }
            None => list(Side::Source, src),
        }
        drop(tx);
        // Until both listings end (after a failure, what is left is read and dropped).
        for (side, arrival) in &rx {
            let (part, last) = match arrival {
                Arrival::Part(part) => (part, false),
                Arrival::End(Ok(rest)) => (rest, true),
                Arrival::End(Err(e)) => {
                    failed[index(side)].get_or_insert(SyncError::Transport(e));
                    continue;
                }
            };
            if failed.iter().all(Option::is_none)
                && let Err(e) = streamed.take(side, part, last)
            {
                failed[index(side)] = Some(out_of_order(side, e));
            }
        }
    });
    let [source_failed, target_failed] = failed;
    if let Some(e) = source_failed.or(target_failed) {
        return Err(e);
    }
    Ok(streamed.finish())
}

/// What a sync of `src` onto `dst` with `opts` would do, changing nothing anywhere: both sides
/// listed once (and hashed with `--checksum`), then `decide`.
///
/// # Errors
/// The source is missing, or a host cannot be reached.
pub fn plan(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
) -> Result<(SyncPlan, ScanSummary), SyncError> {
    let (source, target) = scan_both(src, dst, opts)?;
    let plan = plan_listed(src, dst, opts, &source, &target)?;
    Ok((plan, source))
}

/// As `plan`, from listings the caller already has.
///
/// # Errors
/// As `plan`.
pub fn plan_listed(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    source: &ScanSummary,
    target: &ScanSummary,
) -> Result<SyncPlan, SyncError> {
    if !source.exists {
        return Err(super::engine::source_missing(src));
    }
    if !(opts.checksum && target.exists) {
        return Ok(decide(source, target, opts, None));
    }
    let src_side = super::side::Side::open(src, false)?;
    let dst_side = super::side::Side::open(dst, false)?;
    let mut ignored = Vec::new();
    let differing = super::engine::checksum_differences(
        &source.entries,
        &target.entries,
        &src_side,
        &dst_side,
        &mut ignored,
    );
    let differs = |p: &[u8]| differing.contains(p);
    Ok(decide(source, target, opts, Some(&differs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn entry(path: &str, kind: EntryKind, size: u64, mtime: i128) -> Entry {
        Entry {
            path: path.into(),
            kind,
            size,
            mtime_ns: mtime,
            mode: if kind == EntryKind::Dir {
                0o040755
            } else {
                0o100644
            },
            uid: 0,
            gid: 0,
            nlink: 1,
            dev: 1,
            ino: mtime as u64,
            rdev: 0,
            link_target: None,
        }
    }

    fn listing(entries: Vec<Entry>) -> ScanSummary {
        ScanSummary {
            exists: true,
            entries,
            ..ScanSummary::default()
        }
    }

    #[test]
    fn links_into_the_old_data_directory_are_planned_as_rewritten() {
        let link = |path: &str, to: &str| Entry {
            link_target: Some(to.as_bytes().to_vec()),
            ..entry(path, EntryKind::Symlink, 0, 1)
        };
        let mut source = listing(vec![
            link("etc", "/etc/passwd"),
            link("g000", "/data/groups/g/0/g000"),
            link("rel", "../data/x"),
        ]);
        // The target already holds the rewritten link: nothing to do for it.
        let target = listing(vec![link("g000", "/srv/data/groups/g/0/g000")]);
        let opts = SyncOptions {
            relink: Some(crate::plan::Relink {
                from: "/data".into(),
                to: "/srv/data".into(),
            }),
            ..mirror()
        };
        relinked(&mut source, &opts);
        let plan = decide(&source, &target, &opts, None);
        let links: Vec<(&[u8], &[u8])> = plan
            .symlinks
            .iter()
            .map(|(p, t, _)| (p.as_slice(), t.as_slice()))
            .collect();
        assert_eq!(
            links,
            [
                (b"etc".as_slice(), b"/etc/passwd".as_slice()),
                (b"rel".as_slice(), b"../data/x".as_slice())
            ]
        );
    }

    #[test]
    fn a_sync_that_changes_nothing_writes_nothing_not_even_the_roots_metadata() {
        let root = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns: 7,
        };
        let tree = || {
            let mut l = listing(vec![
                entry("d", EntryKind::Dir, 0, 1),
                entry("d/f", EntryKind::File, 5, 2),
            ]);
            l.root_meta = Some(root);
            l
        };
        let roots = |p: &SyncPlan| p.dir_metas.iter().filter(|(d, _)| d.is_empty()).count();
        let same = decide(&tree(), &tree(), &mirror(), None);
        assert!(same.dir_metas.is_empty() && same.files.is_empty());
        // The root's own metadata differs: it is set, and only it.
        let mut older = tree();
        older.root_meta = Some(Meta {
            mtime_ns: 6,
            ..root
        });
        let p = decide(&tree(), &older, &mirror(), None);
        assert_eq!((roots(&p), p.dir_metas.len()), (1, 1));
        // A file deep down changes: its directory and the root are set again, as before.
        let mut changed = tree();
        changed.entries[1].mtime_ns = 3;
        let p = decide(&tree(), &changed, &mirror(), None);
        assert_eq!(p.files.len(), 1);
        assert_eq!(roots(&p), 1);
    }

    /// A listing as a walk hands it out: parts (entries with their attributes, errors and
    /// flags, and who listed them), then the rest with the root's fields.
    fn in_parts(rng: &mut diff::tests::Rng, whole: &ScanSummary) -> Vec<(ScanSummary, bool)> {
        let cut = diff::tests::random_parts(rng, &whole.entries, &whole.xattrs);
        let n = cut.len();
        cut.into_iter()
            .enumerate()
            .map(|(i, (entries, xattrs))| {
                fn of<T: Clone>(list: &[(Vec<u8>, T)], entries: &[Entry]) -> Vec<(Vec<u8>, T)> {
                    list.iter()
                        .filter(|(p, _)| entries.iter().any(|e| &e.path == p))
                        .cloned()
                        .collect()
                }
                let last = i + 1 == n;
                let part = ScanSummary {
                    errors: of(&whole.errors, &entries),
                    flagged: of(&whole.flagged, &entries),
                    listed_as_root: whole.listed_as_root,
                    entries,
                    xattrs,
                    ..ScanSummary::default()
                };
                let part = if last {
                    ScanSummary {
                        exists: whole.exists,
                        root_meta: whole.root_meta,
                        ..part
                    }
                } else {
                    part
                };
                (part, last)
            })
            .collect()
    }

    /// Issue 16: a sync planned from parts of both listings as they arrive (in any turns) is
    /// the plan `decide` makes of the whole listings:
    /// deletions and their refusal, attributes left out, flags, counts.
    #[test]
    fn streamed_plans_are_decided_as_whole_listings() {
        let mut rng = diff::tests::Rng(1616);
        for round in 0..300 {
            let (src, sx, dst, tx) = diff::tests::random_sides(&mut rng);
            let meta = Meta {
                mode: 0o040755,
                uid: 0,
                gid: 0,
                mtime_ns: 5,
            };
            let flagged: Vec<(Vec<u8>, u64)> = src
                .iter()
                .filter(|_| rng.chance(5))
                .map(|e| (e.path.clone(), libc::STATX_ATTR_IMMUTABLE as u64))
                .collect();
            let errors: Vec<(Vec<u8>, String)> = src
                .iter()
                .filter(|_| rng.chance(5))
                .map(|e| (e.path.clone(), "unreadable".into()))
                .collect();
            let source = ScanSummary {
                exists: true,
                entries: src,
                errors,
                root_meta: Some(meta),
                xattrs: sx,
                flagged,
                listed_as_root: rng.chance(50),
                ..ScanSummary::default()
            };
            let target = ScanSummary {
                exists: rng.chance(90),
                entries: dst,
                // The root's own metadata as the source's, or older.
                root_meta: Some(Meta {
                    mtime_ns: 4 + i128::from(rng.chance(50)),
                    ..meta
                }),
                xattrs: tx,
                listed_as_root: rng.chance(50),
                ..ScanSummary::default()
            };
            let opts = SyncOptions {
                delete: rng.chance(60),
                force: rng.chance(50),
                xattrs: rng.chance(50),
                acls: rng.chance(50),
                devices: rng.chance(50),
                ..SyncOptions::default()
            };
            let whole = decide(&source, &target, &opts, None);
            let special = special_for(&opts);
            let mut streamed = Streamed::new(&opts, &special);
            let mut parts = [
                in_parts(&mut rng, &source).into_iter(),
                in_parts(&mut rng, &target).into_iter(),
            ];
            // In any turns, as two listing threads hand their parts on.
            let mut pending = [parts[0].len(), parts[1].len()];
            while pending.iter().any(|n| *n > 0) {
                let i = match pending {
                    [0, _] => 1,
                    [_, 0] => 0,
                    _ => rng.below(2) as usize,
                };
                let (part, last) = parts[i].next().expect("pending");
                pending[i] -= 1;
                let side = [diff::Side::Source, diff::Side::Target][i];
                streamed.take(side, part, last).expect("in walk order");
            }
            let paired = streamed.finish();
            assert_eq!(
                format!("{:?}", paired.plan),
                format!("{whole:?}"),
                "round {round}"
            );
            assert_eq!(paired.source.errors, source.errors);
            assert_eq!(paired.source.flagged, source.flagged);
            assert!(paired.source.exists && paired.target.exists == target.exists);
            let mut listed = super::super::engine::Counts::default();
            for e in source
                .entries
                .iter()
                .filter(|e| !diff::is_internal(&e.path))
            {
                listed.add(e);
            }
            listed.dirs += 1;
            assert_eq!(paired.listed, listed);
        }
    }

    fn mirror() -> SyncOptions {
        SyncOptions {
            delete: true,
            ..SyncOptions::default()
        }
    }

    #[test]
    fn deletes_carry_their_files_and_bytes_and_skip_our_temp_files() {
        let src = listing(vec![entry("keep", EntryKind::File, 5, 1)]);
        let dst = listing(vec![
            entry("keep", EntryKind::File, 5, 1),
            entry("old", EntryKind::Dir, 0, 2),
            entry("old/a", EntryKind::File, 10, 3),
            entry("old/b", EntryKind::File, 20, 4),
            entry("stale", EntryKind::File, 7, 5),
            entry(crate::tree::root::TEMP_DIR, EntryKind::Dir, 0, 6),
            entry(
                &format!(
                    "{}/{}-1-0",
                    crate::tree::root::TEMP_DIR,
                    crate::tree::root::temp_key(b"x")
                ),
                EntryKind::File,
                99,
                7,
            ),
        ]);
        let p = decide(
            &src,
            &dst,
            &SyncOptions {
                force: true,
                ..mirror()
            },
            None,
        );
        let deletes: Vec<(String, u64, u64)> = p
            .deletes
            .iter()
            .map(|d| (show(&d.path), d.files, d.bytes))
            .collect();
        assert_eq!(deletes, vec![("stale".into(), 1, 7), ("old".into(), 2, 30)]);
        let t = p.totals();
        assert_eq!((t.delete_files, t.delete_bytes), (3, 37));
        assert_eq!((t.extra_files, t.unchanged_files), (3, 1));
        // Without --force, removing 3 of 4 target files is refused by the plan itself.
        assert!(decide(&src, &dst, &mirror(), None).refusal.is_some());
    }

    #[test]
    fn nanoseconds_decide_and_renames_and_links_send_nothing() {
        let mut linked_a = entry("a", EntryKind::File, 100, 10);
        let mut linked_b = entry("b", EntryKind::File, 100, 10);
        linked_a.nlink = 2;
        linked_b.nlink = 2;
        let src = listing(vec![
            linked_a,
            linked_b,
            entry("renamed", EntryKind::File, 50, 20),
            entry("touched", EntryKind::File, 8, 5_000_000_001),
        ]);
        let dst = listing(vec![
            entry("old-name", EntryKind::File, 50, 20),
            entry("touched", EntryKind::File, 8, 5_000_000_000),
        ]);
        let p = decide(
            &src,
            &dst,
            &SyncOptions {
                force: true,
                ..mirror()
            },
            None,
        );
        let got: Vec<(String, ActionKind, u64)> = p
            .actions()
            .into_iter()
            .map(|a| (a.path, a.action, a.send))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), ActionKind::Send, 100),
                ("b".into(), ActionKind::Hardlink, 0),
                ("old-name".into(), ActionKind::Delete, 0),
                ("renamed".into(), ActionKind::CopyLocal, 0),
                ("touched".into(), ActionKind::Send, 8),
            ]
        );
        let t = p.totals();
        assert_eq!((t.files_to_send, t.bytes_to_send), (2, 108));
        assert_eq!((t.new_files, t.changed_files), (3, 1));
    }

    #[test]
    fn root_only_attributes_are_counted_and_flags_named_when_not_kept() {
        let cap = Xattr {
            name: b"security.capability".to_vec(),
            value: b"c".to_vec(),
        };
        let mut src = listing(vec![
            entry("ping", EntryKind::File, 5, 1),
            entry("log", EntryKind::File, 5, 1),
        ]);
        src.xattrs.insert(b"ping".to_vec(), vec![cap]);
        src.flagged
            .push((b"log".to_vec(), libc::STATX_ATTR_APPEND as u64));
        let dst = listing(vec![]);
        let keep = SyncOptions {
            xattrs: true,
            ..SyncOptions::default()
        };
        let p = decide(&src, &dst, &keep, None);
        assert_eq!(p.xattrs_left_out, 1, "the target does not run as root");
        assert_eq!(p.flagged.len(), 1);
        assert_eq!(p.flagged[0].0, b"log");
        assert!(
            p.flagged[0].1.starts_with("append-only"),
            "{}",
            p.flagged[0].1
        );
        let as_root = listing_as_root(vec![]);
        assert_eq!(decide(&src, &as_root, &keep, None).xattrs_left_out, 0);
        let p = decide(&src, &dst, &SyncOptions::default(), None);
        assert_eq!(
            p.xattrs_left_out, 0,
            "attributes not kept: nothing left out"
        );
        assert!(p.wanted_xattrs(b"ping").is_none());
    }

    fn listing_as_root(entries: Vec<Entry>) -> ScanSummary {
        ScanSummary {
            listed_as_root: true,
            ..listing(entries)
        }
    }

    fn node(path: &str, kind: u32, rdev: u64) -> Entry {
        Entry {
            mode: kind | 0o600,
            rdev,
            ..entry(path, EntryKind::Other, 0, 1)
        }
    }

    #[test]
    fn device_numbers_read_like_major_and_minor() {
        assert_eq!(device_numbers(libc::makedev(1, 1)), (1, 1));
        assert_eq!(device_numbers(libc::makedev(259, 70_000)), (259, 70_000));
        assert_eq!(
            device_numbers(libc::makedev(4095 + 1, 255 + 1)),
            (4096, 256)
        );
    }

    /// Issue 13: device nodes are refused unless asked for, whoever runs; FIFOs are kept,
    /// sockets left out; a kept device needs root.
    #[test]
    fn the_special_file_decision() {
        let mem = node("dev/mem", libc::S_IFCHR, libc::makedev(1, 1));
        let sda = node("sda", libc::S_IFBLK, libc::makedev(8, 0));
        for root in [false, true] {
            match special(&mem, false, root) {
                Special::Refuse(why) => {
                    assert!(why.starts_with("character device 1:1 refused"), "{why}");
                    assert!(why.contains("devices: keep") && why.contains("--devices"));
                }
                other => panic!("{other:?}"),
            }
            assert!(
                matches!(special(&sda, false, root), Special::Refuse(why) if why.starts_with("block device 8:0 refused"))
            );
            assert_eq!(
                special(&node("fifo", libc::S_IFIFO, 0), false, root),
                Special::Create
            );
            assert!(matches!(
                special(&node("sock", libc::S_IFSOCK, 0), true, root),
                Special::Skip(_)
            ));
        }
        assert_eq!(special(&mem, true, true), Special::Create);
        assert!(
            matches!(special(&mem, true, false), Special::Skip(why) if why.contains("only when running as root"))
        );
    }

    /// A refused device is neither created nor left at the target by an earlier run: there it
    /// is extra, and the mirror deletes it. With `devices`, it is recreated (as root).
    #[test]
    fn decide_refuses_devices_unless_kept() {
        let src = listing(vec![
            entry("index.html", EntryKind::File, 5, 1),
            node("mem", libc::S_IFCHR, libc::makedev(1, 1)),
            node("pipe", libc::S_IFIFO, 0),
        ]);
        let dst = listing(vec![
            entry("index.html", EntryKind::File, 5, 1),
            node("mem", libc::S_IFCHR, libc::makedev(1, 1)),
        ]);
        let p = decide(
            &src,
            &dst,
            &SyncOptions {
                force: true,
                ..mirror()
            },
            None,
        );
        let refused: Vec<String> = p.refused.iter().map(|(r, _)| show(r)).collect();
        assert_eq!(refused, vec!["mem"]);
        let got: Vec<(String, ActionKind)> = p
            .actions()
            .into_iter()
            .map(|a| (a.path, a.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("mem".into(), ActionKind::Delete),
                ("mem".into(), ActionKind::Refuse),
                ("pipe".into(), ActionKind::Mknod),
            ]
        );
        assert_eq!(p.totals().refused, 1);
        // The dry run's summary keeps the refusal path by path.
        assert!(
            p.summary(false)
                .actions
                .iter()
                .any(|a| a.action == ActionKind::Refuse && a.path == "mem")
        );
        let kept = decide(
            &src,
            &listing(vec![]),
            &SyncOptions {
                devices: true,
                ..mirror()
            },
            None,
        );
        assert!(kept.refused.is_empty());
        let nodes: Vec<String> = kept.nodes.iter().map(|(n, _, _)| show(n)).collect();
        if running_as_root() {
            assert_eq!(nodes, vec!["mem", "pipe"]);
        } else {
            assert_eq!(nodes, vec!["pipe"]);
            assert_eq!(kept.skipped.len(), 1);
        }
    }
}
