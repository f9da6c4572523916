//! Syncing one tree onto another over transports: a plan (diff of the listings), then its
//! application through pipelines, then verification.
pub mod diff;
pub mod engine;
pub mod itemize;
pub mod manifest;
pub mod plan;
pub mod side;
pub mod unit;
pub mod verify;

pub use engine::{
    Endpoint, Itemize, SyncError, SyncOptions, SyncReport, apply, sync, sync_with_source,
};
pub use plan::{PlannedAction, SyncPlan, plan};
