//! The per-site state machine of a migration, and where every site stands, folded from the
//! journal (the only record: nothing else is trusted after a crash).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ledger::Entry;
use super::probe::ProbeResult;

/// Where a site is in its move. The order is the order of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    /// Known from the plan; nothing done yet.
    Discovered,
    /// A pre-sync started (intent).
    Syncing,
    /// Pre-synced at least once; the source still serves.
    PreSynced,
    /// The freeze command is about to run (intent).
    Freezing,
    /// The source is frozen: no more writes there.
    Frozen,
    /// The final delta is in (files and the site's units).
    FinalSynced,
    /// Both sides compared equal.
    Verified,
    /// The DNS switch is about to be sent (intent).
    Switching,
    /// DNS serves the new address.
    Switched,
    /// Probes passed: the move is done.
    Confirmed,
    /// A probe failed under `on_failure: pause`: waiting for a human.
    Paused,
    /// DNS is being put back and the source unfrozen (intent).
    RollingBack,
    /// Back on the old side (DNS restored, source unfrozen); the reason is kept.
    RolledBack,
    /// A step failed before anything visible changed; the source still serves.
    Failed,
}

impl SiteState {
    /// Every state, in the order of the lifecycle.
    pub const ALL: [SiteState; 14] = [
        SiteState::Discovered,
        SiteState::Syncing,
        SiteState::PreSynced,
        SiteState::Freezing,
        SiteState::Frozen,
        SiteState::FinalSynced,
        SiteState::Verified,
        SiteState::Switching,
        SiteState::Switched,
        SiteState::Confirmed,
        SiteState::Paused,
        SiteState::RollingBack,
        SiteState::RolledBack,
        SiteState::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SiteState::Discovered => "discovered",
            SiteState::Syncing => "syncing",
            SiteState::PreSynced => "pre-synced",
            SiteState::Freezing => "freezing",
            SiteState::Frozen => "frozen",
            SiteState::FinalSynced => "final-synced",
            SiteState::Verified => "verified",
            SiteState::Switching => "switching",
            SiteState::Switched => "switched",
            SiteState::Confirmed => "confirmed",
            SiteState::Paused => "paused",
            SiteState::RollingBack => "rolling-back",
            SiteState::RolledBack => "rolled-back",
            SiteState::Failed => "failed",
        }
    }

    /// Between a freeze and a verdict: a crash here leaves work for `resume`.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            SiteState::Freezing
                | SiteState::Frozen
                | SiteState::FinalSynced
                | SiteState::Verified
                | SiteState::Switching
                | SiteState::Switched
                | SiteState::RollingBack
        )
    }

    /// A command's last word on the site: nothing is left to finish for it.
    pub fn is_verdict(self) -> bool {
        matches!(
            self,
            SiteState::PreSynced
                | SiteState::Confirmed
                | SiteState::RolledBack
                | SiteState::Failed
                | SiteState::Paused
        )
    }

    /// DNS may point at the new side (a rollback must put it back).
    pub fn may_have_switched(self) -> bool {
        matches!(
            self,
            SiteState::Switching
                | SiteState::Switched
                | SiteState::Confirmed
                | SiteState::Paused
                | SiteState::RollingBack
        )
    }
}

/// A state change the lifecycle may not make (a bug, or a journal edited by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a site cannot go from {} to {}", from.label(), to.label())]
pub struct Illegal {
    pub from: SiteState,
    pub to: SiteState,
}

impl SiteState {
    /// The transition function: `to` if a site in `self` may go there, else why not. An intent
    /// state may be entered again (a crash left it, and the step runs again).
    ///
    /// # Errors
    /// The move skips a step that guards data (a switch before verification, a rollback's end
    /// without its intent).
    pub fn next(self, to: SiteState) -> Result<SiteState, Illegal> {
        use SiteState::*;
        let ok = match to {
            // A pre-sync only while the source serves and DNS never moved.
            Syncing => matches!(self, Discovered | Syncing | PreSynced | Failed | RolledBack),
            PreSynced => self == Syncing,
            Freezing => matches!(
                self,
                Discovered | PreSynced | Freezing | Failed | RolledBack
            ),
            Frozen => self == Freezing,
            FinalSynced => matches!(self, Frozen | Freezing),
            Verified => matches!(self, FinalSynced | Frozen | Verified),
            Switching => matches!(self, Verified | Switching),
            Switched => matches!(self, Verified | Switching),
            Confirmed => matches!(self, Switched | Confirmed | Paused),
            Paused => matches!(self, Switched | Switching | Paused | Confirmed),
            // Anything that may have frozen a source or moved DNS can be rolled back.
            RollingBack => self != Discovered || self.in_flight(),
            RolledBack => self == RollingBack,
            // A failure happens before DNS may have moved.
            Failed => !self.may_have_switched(),
            Discovered => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(Illegal { from: self, to })
        }
    }

    /// What `resume` does for a site left in this state by a crash.
    pub fn resume_step(self) -> ResumeStep {
        match self {
            SiteState::RollingBack => ResumeStep::FinishRollback,
            SiteState::Syncing => ResumeStep::RerunPreSync,
            s if s.in_flight() => ResumeStep::ContinueCutover,
            _ => ResumeStep::Nothing,
        }
    }
}

/// The work `resume` owes a site, decided from its state alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeStep {
    /// DNS back and the source unfrozen, read from the servers.
    FinishRollback,
    /// Freeze (again), final sync, verify, switch and probes from where it stopped.
    ContinueCutover,
    /// The interrupted pre-sync runs again.
    RerunPreSync,
    /// A verdict (or untouched): nothing for this site.
    Nothing,
}

/// One step of a site's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub at: u64,
    pub state: SiteState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

/// A unit of the site (database, mail) as the journal saw it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    pub unit: String,
    pub step: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Everything the journal says about one site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteStatus {
    pub state: SiteState,
    pub presyncs: u32,
    /// Why the site failed, was rolled back or paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub timeline: Vec<Step>,
    /// Bytes moved by every sync of the site.
    pub bytes: u64,
    /// Time the engines worked on the site, in milliseconds.
    pub millis: u64,
    pub probes: Vec<ProbeResult>,
    pub units: Vec<UnitStatus>,
}

impl Default for SiteStatus {
    fn default() -> Self {
        SiteStatus {
            state: SiteState::Discovered,
            presyncs: 0,
            reason: None,
            timeline: Vec::new(),
            bytes: 0,
            millis: 0,
            probes: Vec::new(),
            units: Vec::new(),
        }
    }
}

/// Every site the journal mentions, with its latest state.
pub fn fold(entries: &[Entry]) -> BTreeMap<String, SiteStatus> {
    let mut out: BTreeMap<String, SiteStatus> = BTreeMap::new();
    for e in entries {
        match e {
            Entry::Site {
                site,
                state,
                at,
                detail,
                bytes,
                millis,
            } => {
                let s = out.entry(site.clone()).or_default();
                if *state == SiteState::PreSynced {
                    s.presyncs += 1;
                }
                if matches!(*state, SiteState::Freezing | SiteState::Syncing) {
                    // A new attempt: the last one's probes and reason no longer describe it.
                    s.probes.clear();
                    s.reason = None;
                }
                if matches!(
                    *state,
                    SiteState::Failed
                        | SiteState::RolledBack
                        | SiteState::Paused
                        | SiteState::RollingBack
                ) {
                    s.reason = detail.clone();
                }
                s.state = *state;
                s.bytes += bytes.unwrap_or(0);
                s.millis += millis.unwrap_or(0);
                s.timeline.push(Step {
                    at: *at,
                    state: *state,
                    detail: detail.clone(),
                    bytes: *bytes,
                    millis: *millis,
                });
            }
            Entry::Probe { site, result, .. } => {
                out.entry(site.clone())
                    .or_default()
                    .probes
                    .push(result.clone());
            }
            Entry::Unit {
                site,
                unit,
                step,
                ok,
                detail,
                bytes,
                ..
            } => {
                let s = out.entry(site.clone()).or_default();
                s.units.retain(|u| u.unit != *unit);
                s.units.push(UnitStatus {
                    unit: unit.clone(),
                    step: step.clone(),
                    ok: *ok,
                    detail: detail.clone(),
                    bytes: *bytes,
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(site: &str, state: SiteState, detail: Option<&str>) -> Entry {
        Entry::Site {
            site: site.into(),
            state,
            at: 1,
            detail: detail.map(str::to_string),
            bytes: Some(10),
            millis: None,
        }
    }

    #[test]
    fn the_last_state_wins_and_reasons_follow_attempts() {
        let entries = vec![
            at("a", SiteState::Syncing, None),
            at("a", SiteState::PreSynced, None),
            at("a", SiteState::Syncing, None),
            at("a", SiteState::PreSynced, None),
            at("a", SiteState::Freezing, None),
            at("a", SiteState::RolledBack, Some("probe failed")),
            at("b", SiteState::Freezing, None),
        ];
        let f = fold(&entries);
        assert_eq!(f["a"].state, SiteState::RolledBack);
        assert_eq!(f["a"].presyncs, 2);
        assert_eq!(f["a"].reason.as_deref(), Some("probe failed"));
        assert_eq!(f["a"].bytes, 60);
        assert!(f["b"].state.in_flight());
        let mut again = entries.clone();
        again.push(at("a", SiteState::Freezing, None));
        assert_eq!(fold(&again)["a"].reason, None);
    }

    #[test]
    fn no_transition_skips_a_guard() {
        for from in SiteState::ALL {
            // DNS moves only after verification.
            if from.next(SiteState::Switching).is_ok() {
                assert!(matches!(from, SiteState::Verified | SiteState::Switching));
            }
            // Rolled back only through the rollback's intent.
            if from.next(SiteState::RolledBack).is_ok() {
                assert_eq!(from, SiteState::RollingBack);
            }
            // Once DNS may have moved, neither a pre-sync nor a plain failure: only a verdict
            // or a rollback.
            if from.may_have_switched() {
                assert!(from.next(SiteState::Syncing).is_err(), "{from:?}");
                assert!(from.next(SiteState::Failed).is_err(), "{from:?}");
                assert!(from.next(SiteState::Freezing).is_err(), "{from:?}");
                assert!(from.next(SiteState::RollingBack).is_ok(), "{from:?}");
            }
            // Every intent can be entered again after a crash left it.
            if matches!(
                from,
                SiteState::Syncing
                    | SiteState::Freezing
                    | SiteState::Switching
                    | SiteState::RollingBack
            ) {
                assert_eq!(from.next(from), Ok(from));
            }
        }
        let e = SiteState::PreSynced.next(SiteState::Switched).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a site cannot go from pre-synced to switched"
        );
    }

    #[test]
    fn resume_decisions_on_folded_journals() {
        let journal = |states: &[SiteState]| -> Vec<Entry> {
            states.iter().map(|s| at("a", *s, None)).collect()
        };
        let cases = [
            (vec![SiteState::Syncing], ResumeStep::RerunPreSync),
            (
                vec![SiteState::Syncing, SiteState::PreSynced],
                ResumeStep::Nothing,
            ),
            (
                vec![SiteState::PreSynced, SiteState::Freezing],
                ResumeStep::ContinueCutover,
            ),
            (
                vec![
                    SiteState::Freezing,
                    SiteState::Frozen,
                    SiteState::FinalSynced,
                ],
                ResumeStep::ContinueCutover,
            ),
            (
                vec![SiteState::Verified, SiteState::Switching],
                ResumeStep::ContinueCutover,
            ),
            (
                vec![SiteState::Switched, SiteState::RollingBack],
                ResumeStep::FinishRollback,
            ),
            (
                vec![SiteState::RollingBack, SiteState::RolledBack],
                ResumeStep::Nothing,
            ),
            (
                vec![SiteState::Switched, SiteState::Confirmed],
                ResumeStep::Nothing,
            ),
            (vec![SiteState::Paused], ResumeStep::Nothing),
        ];
        for (states, want) in cases {
            let folded = fold(&journal(&states));
            assert_eq!(folded["a"].state.resume_step(), want, "{states:?}");
        }
    }

    #[test]
    fn states_serialize_as_snake_case_in_the_journal() {
        let line = serde_json::to_string(&at("a", SiteState::FinalSynced, None)).unwrap();
        assert!(line.contains("\"state\":\"final_synced\""), "{line}");
        let back: Entry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, at("a", SiteState::FinalSynced, None));
    }
}
