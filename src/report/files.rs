//! The file engine's plan as reports carry it: the action vocabulary, per-path actions, totals
//! (`sync::plan` builds these values; the dry run and `copy --dry-run` render them).

use serde::Serialize;

/// What happens to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Mkdir,
    /// Whole content sent.
    Send,
    /// Only the differences sent, against the target's old copy or a partial file.
    Delta,
    /// Content found elsewhere at the target (a rename): copied there, nothing sent.
    CopyLocal,
    Symlink,
    Hardlink,
    Mknod,
    /// Only owner, permissions or time change.
    Meta,
    Delete,
    /// Left alone: the engine cannot recreate it here (the reason is in the plan).
    Skip,
    /// Not created, and an error of the run: a device node without `--devices` /
    /// `devices: keep` (the reason is in the plan).
    Refuse,
}

/// One action of a plan, as the dry run shows it and the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedAction {
    pub path: String,
    pub action: ActionKind,
    /// Bytes of the entry (for a delete: bytes removed at the target).
    pub size: u64,
    /// Bytes expected on the wire: whole files in full, deltas at most their size; nothing
    /// for local copies, links, metadata and deletes.
    pub send: u64,
    /// The path replaces one at the target (an update rather than a creation).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaces: bool,
    /// Where the content comes from at the target: the leader of a hard link, the old name of
    /// a renamed file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Non-directory entries a delete removes (the path and everything under it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Why a path is skipped or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Sums of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanTotals {
    pub source_files: u64,
    pub source_bytes: u64,
    /// Files written at the target that were not there (any way: sent, copied, linked).
    pub new_files: u64,
    /// Files whose content is rewritten at the target.
    pub changed_files: u64,
    pub unchanged_files: u64,
    pub metadata_only: u64,
    /// Files whose content crosses the wire (whole or by delta), and the bytes at most.
    pub files_to_send: u64,
    pub bytes_to_send: u64,
    pub delta_files: u64,
    pub local_copies: u64,
    pub hardlinks: u64,
    pub dirs_to_create: u64,
    pub symlinks: u64,
    pub nodes: u64,
    /// Entries at the target the source lacks (files, links, nodes; not directories).
    pub extra_files: u64,
    pub extra_bytes: u64,
    /// What the plan removes at the target (non-directory entries).
    pub delete_files: u64,
    pub delete_bytes: u64,
    pub skipped: u64,
    /// Entries not created because they are refused (device nodes): errors of the run.
    pub refused: u64,
}

/// A plan as a report keeps it: totals, refusal, and its actions (every one, or only the
/// deletes and skips, which a review must see path by path; a big tree's every path would
/// swamp the report and the memory of a dry run over thousands of sites).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub totals: PlanTotals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Whether `actions` holds every action (itemized) or only deletes, skips and refusals.
    pub itemized: bool,
    pub actions: Vec<PlannedAction>,
}
