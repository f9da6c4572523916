//! What a DNS rollback would do, read before it acts (the confirmation question shows it): the
//! same trails of our changes and the same decision as `cutover::rollback`, against what the
//! provider serves now. Nothing is changed.

use serde::Serialize;

use super::cutover::{self, Change, CutoverError, Revert};
use super::provider::{DnsEvent, RrKey};
use crate::plan::DnsSpec;

/// What a rollback would do now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackPreview {
    /// RRsets it would put back: from what the server serves now to the state before our
    /// first change.
    pub changes: Vec<Change>,
    /// RRsets it would leave alone (changed by someone since ours, or unreadable), with why.
    pub left_alone: Vec<(RrKey, String)>,
}

/// Per RRset we changed (in `zones` and `names`, all when empty), what a rollback would do with
/// it now.
///
/// # Errors
/// The provider cannot be set up (a secret that cannot be read).
pub fn rollback(
    spec: &DnsSpec,
    history: &[DnsEvent],
    zones: &[String],
    names: &[String],
    restore_ttl_only: bool,
) -> Result<RollbackPreview, CutoverError> {
    let client = cutover::provider(spec)?;
    let mut out = RollbackPreview::default();
    for (key, trail) in cutover::trails(history) {
        if (!zones.is_empty() && !zones.contains(&key.zone))
            || (!names.is_empty() && !names.contains(&key.name))
        {
            continue;
        }
        match client
            .read(&key)
            .map(|current| cutover::decide_revert(&trail, &current, restore_ttl_only))
        {
            Ok(Revert::Done) => {}
            Ok(Revert::Put { current, target }) => out.changes.push(Change {
                key,
                from: current,
                to: target,
            }),
            Ok(Revert::LeftAlone { current }) => out.left_alone.push((
                key,
                format!(
                    "changed by someone since our change (now TTL {} {}): left alone",
                    current.ttl,
                    current.values.join(" ")
                ),
            )),
            Err(e) => out
                .left_alone
                .push((key, format!("cannot be read now: {e}"))),
        }
    }
    Ok(out)
}
