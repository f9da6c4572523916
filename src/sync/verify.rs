//! Re-reads both trees and lists every difference: the independent check after a copy.

use std::collections::HashMap;

use serde::Serialize;

use super::engine::{Endpoint, SyncError, SyncOptions};
use super::plan::{Special, special};
use crate::event::{Event, Observer};
use crate::tree::{Entry, EntryKind};

/// Differences between a source and a target tree.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Files whose BLAKE3 was computed on both sides.
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub different: Vec<String>,
    pub errors: Vec<String>,
    /// Entries of the source a sync refuses to copy (device nodes without `devices`), with
    /// why: the target is not a copy of the source while they are there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.refused.is_empty()
            && self.extra.is_empty()
            && self.different.is_empty()
            && self.errors.is_empty()
    }
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Compares `src` and `dst` entry by entry, hashing every file on both sides, with the
/// options of the sync that made the copy (`exclude`, `devices`, `jobs`): special files are
/// judged by the sync's own decision (`plan::special`).
///
/// # Errors
/// A side cannot be reached or the source does not exist.
pub fn verify(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
) -> Result<VerifyReport, SyncError> {
    let (exclude, keep) = (&opts.exclude, opts.keep());
    observer.on_event(&Event::PhaseStarted {
        phase: "verify".into(),
        total: 0,
    });
    // Both trees listed and hashed where they are, at once: one round trip per side.
    let (source, target) = std::thread::scope(|s| {
        let t = s.spawn(|| dst.transport.scan_digested(&dst.root, exclude, keep));
        let source = src.transport.scan_digested(&src.root, exclude, keep);
        (source, t.join().expect("scan thread"))
    });
    compare(src, dst, opts, observer, source?, target?)
}

/// As `verify`, with the source listed and hashed already (`scan_digested`), such as a local
/// source hashed while the connection to the target was being made.
///
/// # Errors
/// As `verify`.
pub fn verify_with_source(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
    source: crate::tree::ScanSummary,
) -> Result<VerifyReport, SyncError> {
    observer.on_event(&Event::PhaseStarted {
        phase: "verify".into(),
        total: 0,
    });
    let target = dst
        .transport
        .scan_digested(&dst.root, &opts.exclude, opts.keep())?;
    compare(src, dst, opts, observer, source, target)
}

/// Compares two digested listings entry by entry.
fn compare(
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOptions,
    observer: &dyn Observer,
    mut source: crate::tree::ScanSummary,
    target: crate::tree::ScanSummary,
) -> Result<VerifyReport, SyncError> {
    let keep = opts.keep();
    super::plan::relinked(&mut source, opts);
    if !source.exists {
        return Err(SyncError::SourceMissing(format!(
            "{}:{}",
            src.transport.host(),
            src.root.display()
        )));
    }
    let mut report = VerifyReport::default();
    let by_path: HashMap<&[u8], (usize, &Entry)> = target
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !super::diff::is_internal(&e.path))
        .map(|(i, e)| (e.path.as_slice(), (i, e)))
        .collect();
    let unreadable = |side: &crate::tree::ScanSummary, host: &str, path: &[u8]| {
        let why = side
            .errors
            .iter()
            .find(|(p, _)| p.as_slice() == path)
            .map_or("no hash in the listing", |(_, e)| e.as_str());
        format!("{host}: {}: {why}", show(path))
    };
    let root = super::plan::running_as_root();
    for (si, s) in source
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !super::diff::is_internal(&e.path))
    {
        if s.kind == EntryKind::Other {
            match special(s, opts.devices, root) {
                Special::Create => {}
                // Not copied by design: nothing to expect at the target.
                Special::Skip(_) => continue,
                Special::Refuse(why) => {
                    report.refused.push(format!("{}: {why}", show(&s.path)));
                    continue;
                }
            }
        }
        if let Some((_, t)) = by_path.get(s.path.as_slice())
            && t.kind == s.kind
            && matches!(s.kind, EntryKind::File | EntryKind::Dir)
            && !crate::tree::xattr::same(
                source.xattrs_of(&s.path),
                target.xattrs_of(&t.path),
                keep,
                target.listed_as_root,
            )
        {
            report
                .different
                .push(format!("{} (ACLs or extended attributes)", show(&s.path)));
        }
        match by_path.get(s.path.as_slice()) {
            None => report.missing.push(show(&s.path)),
            Some((_, t)) if t.kind != s.kind => {
                report.different.push(format!("{} (type)", show(&s.path)))
            }
            Some((_, t)) if s.kind == EntryKind::Symlink && t.link_target != s.link_target => {
                report
                    .different
                    .push(format!("{} (link target)", show(&s.path)))
            }
            Some((_, t)) if s.kind == EntryKind::File && t.size != s.size => {
                report.different.push(format!("{} (size)", show(&s.path)))
            }
            Some((ti, _)) if s.kind == EntryKind::File => {
                let x = source.digests.get(si).copied().flatten();
                let y = target.digests.get(*ti).copied().flatten();
                match (x, y) {
                    (Some(x), Some(y)) => {
                        report.files_hashed += 1;
                        report.bytes_hashed += s.size;
                        if x != y {
                            report
                                .different
                                .push(format!("{} (content)", show(&s.path)));
                        }
                    }
                    (None, _) => {
                        report
                            .errors
                            .push(unreadable(&source, src.transport.host(), &s.path))
                    }
                    (_, None) => {
                        report
                            .errors
                            .push(unreadable(&target, dst.transport.host(), &s.path))
                    }
                }
            }
            Some((_, t))
                if s.kind == EntryKind::Other
                    && (t.mode & libc::S_IFMT != s.mode & libc::S_IFMT || t.rdev != s.rdev) =>
            {
                report
                    .different
                    .push(format!("{} (node type or device number)", show(&s.path)))
            }
            Some(_) => {}
        }
    }
    if !crate::tree::xattr::same(
        source.xattrs_of(b""),
        target.xattrs_of(b""),
        keep,
        target.listed_as_root,
    ) {
        report
            .different
            .push(". (ACLs or extended attributes)".into());
    }
    let src_paths: std::collections::HashSet<&[u8]> =
        source.entries.iter().map(|e| e.path.as_slice()).collect();
    report.extra = by_path
        .keys()
        .filter(|p| !src_paths.contains(*p))
        .map(|p| show(p))
        .collect();
    report.extra.sort();
    report.different.sort();
    observer.on_event(&Event::PhaseFinished {
        phase: "verify".into(),
    });
    // A clean verification is what a manifest hint may come from; a failed one leaves none.
    if report.is_clean() {
        let _ = super::manifest::save(dst, opts, &target);
    } else {
        super::manifest::forget(opts);
    }
    Ok(report)
}
