//! What the engine reports while it works: the `Event` enum and the `Observer` trait.
//!
//! The engine never prints. The CLI turns events into progress bars or JSON lines; tests
//! record them.

use std::sync::Mutex;

use serde::Serialize;

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase starts; `total` units are expected (0 when unknown).
    PhaseStarted { phase: String, total: u64 },
    /// A unit of a phase starts moving (the file in flight, a database being dumped); `bytes`
    /// it holds, 0 when unknown.
    UnitStarted {
        phase: String,
        unit: String,
        bytes: u64,
    },
    /// One unit of a phase is done.
    UnitDone { phase: String, unit: String },
    /// One unit failed; the run goes on with the others.
    UnitFailed {
        phase: String,
        unit: String,
        error: String,
    },
    /// A phase will move this many bytes in all, as known so far: it may come again, larger,
    /// when more work is announced (sites of a plan each announce their files).
    BytesTotal { phase: String, bytes: u64 },
    /// More bytes of a phase are done (an increment, sent as they stream: a big file reports
    /// chunk by chunk, before its `UnitDone`).
    BytesDone { phase: String, bytes: u64 },
    /// A phase ends.
    PhaseFinished { phase: String },
    /// A safety check refused and was let through by the operator (`--allow NAME`, `--force`):
    /// always shown.
    CheckOverridden {
        check: String,
        subject: String,
        reason: String,
        /// `--allow` or `--force`.
        by: String,
    },
    /// A note worth showing, such as a connection being made.
    Info { message: String },
}

/// Receives events; implementations must be cheap and thread-safe (work runs in parallel).
pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event);

    /// The run (or one step of it) is over: whatever is shown of it goes, so what is printed
    /// next stands alone (progress bars are cleared).
    fn finish(&self) {}
}

/// Ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn on_event(&self, _: &Event) {}
}

/// Keeps every event, for tests and for building reports after the fact.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
}

impl Observer for Recorder {
    fn on_event(&self, event: &Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
    }
}
