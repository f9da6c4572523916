//! Local file primitives with no knowledge of networks: scanning a tree under a root.
pub mod delta;
pub mod digest;
pub mod exclude;
pub mod kernel_copy;
pub mod root;
pub mod scan;
pub mod stamp;
pub mod unsynced;
pub mod xattr;

pub use exclude::ExcludeSet;
pub use scan::{Entry, EntryKind, ScanSummary, scan, scan_digested, scan_with};
