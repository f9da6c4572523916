//! Re-reads both trees and lists every difference: the independent check after a copy.

use std::collections::HashMap;

use serde::Serialize;

use super::engine::{Endpoint, SyncError, SyncOptions};
use super::plan::{Special, special};
use super::side::Side;
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
    let (exclude, jobs) = (&opts.exclude, opts.jobs.max(1));
    let keep = opts.keep();
    let mut source = src.transport.scan_with(&src.root, exclude, keep)?;
    super::plan::relinked(&mut source, opts);
    if !source.exists {
        return Err(SyncError::SourceMissing(format!(
            "{}:{}",
            src.transport.host(),
            src.root.display()
        )));
    }
    let target = dst.transport.scan_with(&dst.root, exclude, keep)?;
    let mut report = VerifyReport::default();
    let by_path: HashMap<&[u8], &Entry> = target
        .entries
        .iter()
        .filter(|e| !super::diff::is_internal(&e.path))
        .map(|e| (e.path.as_slice(), e))
        .collect();
    let mut to_hash = Vec::new();
    let root = super::plan::running_as_root();
    for s in source
        .entries
        .iter()
        .filter(|e| !super::diff::is_internal(&e.path))
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
        if let Some(t) = by_path.get(s.path.as_slice())
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
            Some(t) if t.kind != s.kind => {
                report.different.push(format!("{} (type)", show(&s.path)))
            }
            Some(t) if s.kind == EntryKind::Symlink && t.link_target != s.link_target => report
                .different
                .push(format!("{} (link target)", show(&s.path))),
            Some(t) if s.kind == EntryKind::File && t.size != s.size => {
                report.different.push(format!("{} (size)", show(&s.path)))
            }
            Some(_) if s.kind == EntryKind::File => to_hash.push(s.path.as_slice()),
            Some(t)
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
    let (mut a, mut b) = (Side::open(src, false)?, Side::open(dst, false)?);
    let streams = jobs.clamp(1, 4).min(to_hash.len().div_ceil(256).max(1));
    a.grow(streams)?;
    b.grow(streams)?;
    observer.on_event(&Event::PhaseStarted {
        phase: "verify".into(),
        total: to_hash.len() as u64,
    });
    let paths: Vec<Vec<u8>> = to_hash.iter().map(|p| p.to_vec()).collect();
    let (x, y) = std::thread::scope(|s| {
        let t = s.spawn(|| b.hash_all(&paths));
        (a.hash_all(&paths), t.join().expect("hash thread"))
    });
    for ((path, x), y) in paths.iter().zip(x).zip(y) {
        match (x, y) {
            (Ok((hx, len)), Ok((hy, _))) => {
                report.files_hashed += 1;
                report.bytes_hashed += len;
                if hx != hy {
                    report.different.push(format!("{} (content)", show(path)));
                }
            }
            (Err(e), _) | (_, Err(e)) => report.errors.push(e),
        }
    }
    report.different.sort();
    observer.on_event(&Event::PhaseFinished {
        phase: "verify".into(),
    });
    Ok(report)
}
