//! Syncing one tree onto another over transports: diff, then pipelines, then verification.
pub mod diff;
pub mod engine;
pub mod side;
pub mod verify;

pub use engine::{Endpoint, SyncError, SyncOptions, SyncReport, sync};
