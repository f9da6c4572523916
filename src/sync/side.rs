//! One side of a sync or a verify: its streams with the root opened on each, plus direct access
//! when the side is this machine.

use std::sync::Arc;

use super::engine::{Endpoint, SyncError};
use crate::transport::TransportError;
use crate::transport::channel::{Channel, Pending};
use crate::transport::protocol::{Call, Outcome, Reply, RootId};
use crate::transport::server::{hash_many, hash_reader};
use crate::tree::root::SafeRoot;

/// Paths per `HashFiles` call: big enough to amortize a round trip, small enough to overlap.
const HASH_BATCH: usize = 256;

/// A host and directory, ready for calls.
pub struct Side {
    end: Endpoint,
    create: bool,
    channels: Vec<(Arc<dyn Channel>, RootId)>,
    /// Set when the side is this machine: files are then read directly.
    pub local: Option<SafeRoot>,
}

pub type HashResult = Result<([u8; 32], u64), String>;

impl Drop for Side {
    fn drop(&mut self) {
        // The far side keeps a root until told: over thousands of sites the descriptors run out.
        for (ch, id) in &self.channels {
            let _ = ch.call_wait(Call::CloseRoot { root: *id });
        }
    }
}

impl Side {
    /// Opens one stream (more come with `grow`, only when there is work for them).
    ///
    /// # Errors
    /// The host cannot be reached or the root cannot be opened (or created).
    pub fn open(end: &Endpoint, create: bool) -> Result<Side, SyncError> {
        let mut side = Side {
            end: end.clone(),
            create,
            channels: Vec::new(),
            local: None,
        };
        side.grow(1)?;
        if end.transport.is_local() {
            side.local = SafeRoot::open(&end.root, false).ok();
        }
        Ok(side)
    }

    /// Opens streams up to `n` (a local side keeps one: it is served in-process).
    ///
    /// # Errors
    /// A new stream cannot be opened.
    pub fn grow(&mut self, n: usize) -> Result<(), SyncError> {
        let n = if self.end.transport.is_local() {
            1
        } else {
            n.max(1)
        };
        while self.channels.len() < n {
            let ch = self.end.transport.channel(self.channels.len())?;
            let id = match ch.call_wait(Call::OpenRoot {
                root: self.end.root.clone(),
                create: self.create,
            })? {
                Reply::Opened(id) => id,
                r => {
                    return Err(SyncError::Transport(TransportError::Protocol {
                        host: ch.host().into(),
                        message: format!("unexpected {r:?}"),
                    }));
                }
            };
            self.channels.push((ch, id));
        }
        Ok(())
    }

    /// The host and directory of this side.
    pub fn endpoint(&self) -> &Endpoint {
        &self.end
    }

    /// The streams opened so far, each with the root opened on it.
    pub fn streams(&self) -> &[(Arc<dyn Channel>, RootId)] {
        &self.channels
    }

    pub fn is_remote(&self) -> bool {
        self.local.is_none()
    }

    pub fn wire_bytes(&self) -> super::engine::WireBytes {
        self.channels
            .iter()
            .map(|(c, _)| {
                let (sent, received) = c.wire_bytes();
                super::engine::WireBytes { sent, received }
            })
            .fold(Default::default(), |a, b| a + b)
    }

    /// A connection error when any stream of this side is gone (a protocol error when its
    /// peer broke the protocol: a frame over the limit, bytes that do not decode).
    pub fn lost(&self) -> Option<TransportError> {
        self.channels.iter().find_map(|(c, _)| c.lost_as_error())
    }

    pub fn pick(&self, worker: usize) -> &(Arc<dyn Channel>, RootId) {
        &self.channels[worker % self.channels.len()]
    }

    /// Hashes one file.
    ///
    /// # Errors
    /// The file cannot be read, or the host is gone.
    pub fn hash_one(&self, worker: usize, path: &[u8]) -> Result<[u8; 32], String> {
        if let Some(root) = &self.local {
            let f = root
                .open_read(path)
                .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(path)))?;
            return hash_reader(f)
                .map(|(h, _)| h)
                .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(path)));
        }
        let (ch, root) = self.pick(worker);
        match ch.call_wait(Call::HashFile {
            root: *root,
            path: path.to_vec(),
        }) {
            Ok(Reply::Done(Outcome { hash: Some(h), .. })) => Ok(h),
            Ok(r) => Err(format!("unexpected {r:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Hashes many files, in parallel on the side itself, with every batch in flight at once.
    pub fn hash_all(&self, paths: &[Vec<u8>]) -> Vec<HashResult> {
        if let Some(root) = &self.local {
            return hash_many(root, paths);
        }
        let calls: Vec<(usize, Result<Pending, TransportError>)> = paths
            .chunks(HASH_BATCH)
            .enumerate()
            .map(|(i, batch)| {
                let (ch, root) = self.pick(i);
                (
                    batch.len(),
                    ch.call(Call::HashFiles {
                        root: *root,
                        paths: batch.to_vec(),
                    }),
                )
            })
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for (n, pending) in calls {
            match pending.and_then(|p| p.wait(self.end.transport.host())) {
                Ok(Reply::Hashes(h)) if h.len() == n => out.extend(h),
                Ok(r) => out.extend((0..n).map(|_| Err(format!("unexpected {r:?}")))),
                Err(e) => out.extend((0..n).map(|_| Err(e.to_string()))),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LocalTransport;

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    /// A run over thousands of sites opens thousands of roots on one transport: each must be
    /// released when its side is done, or descriptors run out (EMFILE at 10,000 sites).
    #[test]
    fn sides_release_their_roots_on_the_transport() {
        let dir = tempfile::tempdir().unwrap();
        let transport: Arc<dyn crate::transport::Transport> =
            Arc::new(LocalTransport::new("local"));
        let open = |i: usize| {
            let end = Endpoint {
                transport: transport.clone(),
                root: dir.path().join(format!("site{i}")),
            };
            Side::open(&end, true).unwrap()
        };
        drop(open(0));
        let before = open_fds();
        for i in 1..300 {
            drop(open(i));
        }
        // Other tests of this binary open files meanwhile: allow some slack, not 300 roots.
        assert!(
            open_fds() < before + 50,
            "{} descriptors before, {} after",
            before,
            open_fds()
        );
    }
}
