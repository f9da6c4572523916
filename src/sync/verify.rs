//! Re-reads both trees and lists every difference: the independent check after a copy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::engine::{Endpoint, SyncError};
use crate::event::{Event, Observer};
use crate::transport::channel::Channel;
use crate::transport::protocol::{Call, Outcome, Reply, RootId};
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
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.different.is_empty()
            && self.errors.is_empty()
    }
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

type Streams = Vec<(std::sync::Arc<dyn Channel>, RootId)>;

fn open(end: &Endpoint, n: usize) -> Result<Streams, SyncError> {
    let n = if end.transport.is_local() { 1 } else { n };
    (0..n)
        .map(|i| {
            let ch = end.transport.channel(i)?;
            match ch.call_wait(Call::OpenRoot {
                root: end.root.clone(),
                create: false,
            })? {
                Reply::Opened(id) => Ok((ch, id)),
                r => Err(SyncError::Transport(
                    crate::transport::TransportError::Protocol {
                        host: ch.host().into(),
                        message: format!("unexpected {r:?}"),
                    },
                )),
            }
        })
        .collect()
}

fn hash(
    side: &[(std::sync::Arc<dyn Channel>, RootId)],
    w: usize,
    path: &[u8],
) -> Result<([u8; 32], u64), String> {
    let (ch, root) = &side[w % side.len()];
    match ch.call_wait(Call::HashFile {
        root: *root,
        path: path.to_vec(),
    }) {
        Ok(Reply::Done(Outcome { hash: Some(h), len })) => Ok((h, len)),
        Ok(r) => Err(format!("unexpected {r:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Compares `src` and `dst` entry by entry, hashing every file on both sides.
///
/// # Errors
/// A side cannot be reached or the source does not exist.
pub fn verify(
    src: &Endpoint,
    dst: &Endpoint,
    exclude: &[String],
    jobs: usize,
    observer: &dyn Observer,
) -> Result<VerifyReport, SyncError> {
    let source = src.transport.scan(&src.root, exclude)?;
    if !source.exists {
        return Err(SyncError::SourceMissing(format!(
            "{}:{}",
            src.transport.host(),
            src.root.display()
        )));
    }
    let target = dst.transport.scan(&dst.root, exclude)?;
    let mut report = VerifyReport::default();
    let by_path: HashMap<&[u8], &Entry> = target
        .entries
        .iter()
        .filter(|e| !super::diff::is_internal(&e.path))
        .map(|e| (e.path.as_slice(), e))
        .collect();
    let mut to_hash = Vec::new();
    for s in &source.entries {
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
            Some(_) => {}
        }
    }
    let src_paths: std::collections::HashSet<&[u8]> =
        source.entries.iter().map(|e| e.path.as_slice()).collect();
    report.extra = by_path
        .keys()
        .filter(|p| !src_paths.contains(*p))
        .map(|p| show(p))
        .collect();
    report.extra.sort();
    let streams = jobs.clamp(1, 4);
    let (a, b) = (open(src, streams)?, open(dst, streams)?);
    observer.on_event(&Event::PhaseStarted {
        phase: "verify".into(),
        total: to_hash.len() as u64,
    });
    let next = AtomicUsize::new(0);
    let found = Mutex::new((Vec::new(), Vec::new(), 0u64, 0u64));
    std::thread::scope(|s| {
        for w in 0..jobs.max(1) {
            let (next, found, to_hash, a, b) = (&next, &found, &to_hash, &a, &b);
            s.spawn(move || {
                while let Some(path) = to_hash.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (x, y) = (hash(a, w, path), hash(b, w, path));
                    let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
                    match (x, y) {
                        (Ok((hx, len)), Ok((hy, _))) => {
                            f.2 += 1;
                            f.3 += len;
                            if hx != hy {
                                f.0.push(format!("{} (content)", show(path)));
                            }
                        }
                        (Err(e), _) | (_, Err(e)) => f.1.push(format!("{}: {e}", show(path))),
                    }
                    drop(f);
                    observer.on_event(&Event::UnitDone {
                        phase: "verify".into(),
                        unit: show(path),
                    });
                }
            });
        }
    });
    observer.on_event(&Event::PhaseFinished {
        phase: "verify".into(),
    });
    let (different, errors, files, bytes) = found.into_inner().unwrap_or_else(|p| p.into_inner());
    report.different.extend(different);
    report.different.sort();
    report.errors = errors;
    report.files_hashed = files;
    report.bytes_hashed = bytes;
    Ok(report)
}
