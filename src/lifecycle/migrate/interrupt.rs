//! An operator's stop (Ctrl-C, SIGTERM) during a cutover: the caller's signal handler raises a
//! flag, and the migration reads it between steps, so no site is left frozen by a half-done run.
//! A site not yet switched is reopened (its `unfreeze`) and marked failed; a site already in its
//! DNS switch finishes that step; no new site or batch starts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};

use serde::Serialize;

use super::{Migration, SiteOutcome};
use crate::lifecycle::state::SiteState;
use crate::plan::Site;

/// A stop request, raised from a signal handler (one atomic store: async-signal-safe) and read
/// by the migration between steps.
#[derive(Debug, Default)]
pub struct Interrupt {
    signal: AtomicI32,
}

impl Interrupt {
    pub const fn new() -> Interrupt {
        Interrupt {
            signal: AtomicI32::new(0),
        }
    }

    /// Records that `signal` asked to stop (the first one is kept).
    pub fn raise(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Why the run stopped, as the journal and the report say it.
    pub fn reason(&self) -> Option<String> {
        self.signal()
            .map(|s| format!("interrupted by the operator ({})", signal_name(s)))
    }
}

/// `SIGINT`, `SIGTERM`, or the number.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// What a stop did to a site the command had selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interrupted {
    /// It was between its freeze and its switch: unfrozen (the `unfreeze` command ran) and
    /// marked failed with the reason.
    Undone,
    /// As `Undone`, but the `unfreeze` command failed: the source may still be frozen.
    StillFrozen,
    /// The stop came before it was touched: left as it was.
    NotStarted,
}

impl Migration<'_> {
    /// Whether the operator asked this run to stop.
    pub(super) fn stopped(&self) -> bool {
        self.interrupt.is_some_and(|i| i.signal().is_some())
    }

    /// Between two steps of a site's cutover: when a stop was asked, a site not yet switched
    /// is unfrozen and marked failed (`Err` with the reason), one never touched is left alone
    /// (`Err` too: no further step), and one whose DNS switch may have started goes on (`Ok`)
    /// to finish that step.
    pub(super) fn checkpoint(&self, site: &Site) -> Result<(), String> {
        let Some(reason) = self.interrupt.and_then(Interrupt::reason) else {
            return Ok(());
        };
        let state = self.state_of(&site.name);
        if state.may_have_switched() {
            return Ok(());
        }
        if matches!(
            state,
            SiteState::Freezing | SiteState::Frozen | SiteState::FinalSynced | SiteState::Verified
        ) {
            // The existing path of a failure before the switch: reopen, then mark failed.
            let detail = match self.give_up(site, &reason) {
                Err(detail) => detail,
                Ok(()) => reason.clone(),
            };
            let how = if detail == reason {
                Interrupted::Undone
            } else {
                Interrupted::StillFrozen
            };
            self.note_interrupted(&site.name, how);
            return Err(detail);
        }
        self.note_interrupted(&site.name, Interrupted::NotStarted);
        Err(format!("not started: {reason}"))
    }

    /// The outcomes of sites a stop kept from starting at all (later batches).
    pub(super) fn not_started(&self, sites: &[&Site]) -> Vec<SiteOutcome> {
        let reason = self
            .interrupt
            .and_then(Interrupt::reason)
            .unwrap_or_default();
        sites
            .iter()
            .map(|site| {
                self.note_interrupted(&site.name, Interrupted::NotStarted);
                self.outcome(site, Some(format!("not started: {reason}")))
            })
            .collect()
    }

    fn note_interrupted(&self, site: &str, how: Interrupted) {
        self.interrupted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(site.to_string(), how);
    }

    /// Marks each outcome with what the stop did to its site.
    pub(super) fn mark_interrupted(&self, outcomes: &mut [SiteOutcome]) {
        let noted: BTreeMap<String, Interrupted> = self
            .interrupted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for o in outcomes {
            o.interrupted = noted.get(&o.site).copied();
        }
    }
}

/// What a stopped command did, for its last line: sites unfrozen and marked failed, sites the
/// stop left frozen (their `unfreeze` failed), sites that finished their step, sites not
/// started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StopSummary {
    pub undone: usize,
    pub still_frozen: usize,
    pub finished: usize,
    pub not_started: usize,
}

impl StopSummary {
    pub fn of(outcomes: &[SiteOutcome]) -> StopSummary {
        let mut s = StopSummary::default();
        for o in outcomes {
            match o.interrupted {
                Some(Interrupted::Undone) => s.undone += 1,
                Some(Interrupted::StillFrozen) => s.still_frozen += 1,
                Some(Interrupted::NotStarted) => s.not_started += 1,
                None => s.finished += 1,
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_is_kept_and_named() {
        let i = Interrupt::new();
        assert_eq!(i.reason(), None);
        i.raise(libc::SIGINT);
        i.raise(libc::SIGTERM);
        assert_eq!(
            i.reason().as_deref(),
            Some("interrupted by the operator (SIGINT)")
        );
    }
}
