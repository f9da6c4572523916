//! Files sent host to host: when the run set up a direct path between two remote hosts, each
//! file is one `PushFile` call to the source's agent, which reads it (or its delta against
//! the target's basis) and writes it to the target's agent itself; this process sees only the
//! verdict. The target's checks are the file engine's own (peer paths checked, `openat2`
//! beneath the root, BLAKE3 compared before the rename).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{FileError, READ_ATTEMPTS, Shared, SyncError, SyncReport, show};
use crate::event::Event;
use crate::sync::plan::{ActionKind, FileJob};
use crate::sync::side::Side;
use crate::transport::TransportError;
use crate::transport::channel::Channel;
use crate::transport::protocol::{Call, PeerId, Push, Reply, RootId};
use crate::tree::delta;

/// Pushes in flight at once: each worker waits for its file's verdict from the far side, so
/// more of them than the relay's keep both hosts busy.
pub(super) const WORKERS: usize = 64;

/// The source's streams, each with its source root and the peer root it writes to.
pub(super) struct Link {
    streams: Vec<(Arc<dyn Channel>, RootId, PeerId, RootId)>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for (ch, _, peer, root) in &self.streams {
            let _ = ch.call_wait(Call::PeerCloseRoot {
                peer: *peer,
                root: *root,
            });
        }
    }
}

impl Link {
    /// The direct path from `src` to `dst` when the run set one up and both are remote. A path
    /// that cannot serve this root falls back to the relay (said in the report's warnings),
    /// unless the plan asked for `direct`.
    ///
    /// # Errors
    /// The plan asked for `direct` and the path cannot serve this sync.
    pub(super) fn open(
        src: &Side,
        dst: &Side,
        report: &mut SyncReport,
    ) -> Result<Option<Link>, SyncError> {
        if !src.is_remote() || !dst.is_remote() {
            return Ok(None);
        }
        let target = dst.endpoint().transport.host();
        let Some(route) = src.endpoint().transport.direct_to(target) else {
            return Ok(None);
        };
        match Link::connect(src, dst) {
            Ok(link) => Ok(Some(link)),
            Err(why) if route.required => Err(SyncError::Transport(TransportError::Connect {
                host: route.source.clone(),
                message: format!("direct path to `{target}`: {why}"),
            })),
            Err(why) => {
                report.warnings.push(FileError {
                    path: dst.endpoint().root.display().to_string(),
                    error: format!(
                        "direct path to `{target}` unusable here ({why}): relayed through the controller"
                    ),
                });
                Ok(None)
            }
        }
    }

    fn connect(src: &Side, dst: &Side) -> Result<Link, String> {
        let route = src
            .endpoint()
            .transport
            .direct_to(dst.endpoint().transport.host())
            .ok_or("no route")?;
        let mut streams = Vec::new();
        for (ch, root) in src.streams() {
            let peer = match ch.call_wait(Call::PeerOpen(Box::new(route.spec.clone()))) {
                Ok(Reply::Opened(id)) => id,
                Ok(r) => return Err(format!("unexpected {r:?}")),
                Err(e) => return Err(e.to_string()),
            };
            let peer_root = match ch.call_wait(Call::PeerRoot {
                peer,
                root: dst.endpoint().root.clone(),
            }) {
                Ok(Reply::Opened(id)) => id,
                Ok(r) => return Err(format!("unexpected {r:?}")),
                Err(e) => return Err(e.to_string()),
            };
            streams.push((ch.clone(), *root, peer, peer_root));
        }
        Ok(Link { streams })
    }
}

/// Pushes one file and records the far side's verdict; a file that changes while it is read
/// is read again, as on the relay.
pub(super) fn push(
    link: &Link,
    job: &FileJob,
    worker: usize,
    shared: &Shared,
) -> Result<(), String> {
    let (ch, root, peer, peer_root) = &link.streams[worker % link.streams.len()];
    let compress = shared.compress && !crate::transport::protocol::precompressed(&job.path);
    for attempt in 1..=READ_ATTEMPTS {
        let reply = ch.call_wait(Call::PushFile(Box::new(Push {
            root: *root,
            path: job.path.clone(),
            peer: *peer,
            peer_root: *peer_root,
            meta: job.meta,
            basis: job.basis,
            block_len: delta::block_len_for(job.size),
            xattrs: job.xattrs.clone(),
            compress,
        })));
        match reply {
            Ok(Reply::Pushed(p)) => {
                // The limit holds per file here: the bytes went past this process.
                if let Some(l) = &shared.limiter {
                    l.take(p.sent as usize);
                }
                let action = if p.delta {
                    shared.delta.fetch_add(1, Ordering::Relaxed);
                    ActionKind::Delta
                } else {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    ActionKind::Send
                };
                shared.bytes_sent.fetch_add(p.sent, Ordering::Relaxed);
                shared.bytes_matched.fetch_add(p.matched, Ordering::Relaxed);
                shared.verified.fetch_add(1, Ordering::Relaxed);
                shared.did(action, &job.path, job.size);
                shared.observer.on_event(&Event::UnitDone {
                    phase: "files".into(),
                    unit: show(&job.path),
                });
                shared.observer.on_event(&Event::BytesDone {
                    phase: "files".into(),
                    bytes: job.size,
                });
                return Ok(());
            }
            Ok(Reply::Changed(why)) if attempt == READ_ATTEMPTS => {
                return Err(format!(
                    "{why}; read {READ_ATTEMPTS} times, changing each time: not copied (copy it again once it is quiet)"
                ));
            }
            Ok(Reply::Changed(_)) => {}
            Ok(r) => return Err(format!("unexpected {r:?}")),
            Err(TransportError::Remote { message, .. }) => return Err(message),
            Err(e) => return Err(e.to_string()),
        }
    }
    unreachable!("the last attempt returns")
}
