//! The per-site state machine of a migration, and where every site stands, folded from the
//! journal (the only record: nothing else is trusted after a crash).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ledger::{AFTER_GO_LIVE, Entry, ROWS_OWED, VERIFY_STEP};
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
    /// `at` in milliseconds (from `at` alone in journals older than that figure).
    pub at_ms: u64,
    pub state: SiteState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
    /// The journaled run the step belongs to (none for entries written outside a run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
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

/// What the states alone do not tell: a run that stopped without its end, a resume, an
/// operator's override, a new attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// The run the site was in ended without a record (killed, crashed).
    Interrupted,
    /// `resume` took the site up.
    Resumed,
    /// A safety check or a live unit let through by the operator.
    Override,
    /// A new cutover attempt after an earlier one ended (failed, rolled back).
    Attempt,
}

/// A mark in a site's timeline, placed before step `before` (`timeline.len()`: after the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub at: u64,
    pub before: usize,
    pub kind: MarkKind,
    pub text: String,
}

/// One probe as journaled, with the cutover attempt it belongs to (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeAttempt {
    pub attempt: u32,
    pub at: u64,
    #[serde(flatten)]
    pub result: ProbeResult,
}

/// A time the source was frozen: from the `freezing` intent to the site's verdict (confirmed
/// on the new side, or unfrozen after a failure or a rollback); `to` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Frozen {
    pub from: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
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
    /// Every probe of every attempt, in journal order (a re-cutover hides none).
    pub probes: Vec<ProbeAttempt>,
    pub units: Vec<UnitStatus>,
    /// Cutover attempts (freezes that did not continue an interrupted one).
    pub attempts: u32,
    pub frozen: Vec<Frozen>,
    pub marks: Vec<Mark>,
    /// Units (`database NAME`) checked lightly in the site's last freeze whose rows were not
    /// compared since (see `rows_still_owed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows_owed: Vec<String>,
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
            attempts: 0,
            frozen: Vec::new(),
            marks: Vec::new(),
            rows_owed: Vec::new(),
        }
    }
}

impl SiteStatus {
    /// The units whose row comparison is still owed: checked lightly in the freeze, their
    /// rows left for after go-live, and neither compared after go-live nor in a later freeze
    /// since. A new freeze, a failure or a rollback makes them moot (the source served again,
    /// or the copy never went live); so does a rollback under way.
    pub fn rows_still_owed(&self) -> &[String] {
        if self.state == SiteState::RollingBack {
            &[]
        } else {
            &self.rows_owed
        }
    }

    /// Seconds the source was frozen over every attempt (freeze to confirmed, or to unfrozen),
    /// once no freeze lasts any more; `None` when it was never frozen or still is.
    pub fn downtime(&self) -> Option<u64> {
        if self.frozen.is_empty() {
            return None;
        }
        self.frozen
            .iter()
            .map(|f| f.to.map(|to| to.saturating_sub(f.from)))
            .sum()
    }

    /// Since when the source is frozen, while it is.
    pub fn frozen_since(&self) -> Option<u64> {
        self.frozen
            .last()
            .filter(|f| f.to.is_none())
            .map(|f| f.from)
    }

    fn mark(&mut self, at: u64, kind: MarkKind, text: String) {
        let before = self.timeline.len();
        self.marks.push(Mark {
            at,
            before,
            kind,
            text,
        });
    }
}

/// A journaled run, as marks name it.
#[derive(Debug, Clone)]
struct RunSeen {
    run: u64,
    label: String,
    user: String,
    /// Sites that had a step in it.
    sites: Vec<String>,
}

impl RunSeen {
    fn name(&self) -> String {
        format!("run {} (`{}` by {})", self.run, self.label, self.user)
    }
}

/// Every site the journal mentions, with its latest state, its timeline and the marks that
/// explain it (the one reader `status`, `report` and `resume` share).
pub fn fold(entries: &[Entry]) -> BTreeMap<String, SiteStatus> {
    let mut f = Fold::default();
    for e in entries {
        f.add(e);
    }
    f.finish()
}

/// `fold`, one entry at a time: readers of a journal too large to hold hand it the entries as
/// the store yields them.
#[derive(Default)]
pub struct Fold {
    out: BTreeMap<String, SiteStatus>,
    // Runs started and not ended, the latest last: a run that starts while others are open
    // finds them interrupted (one run per plan at a time holds the lock).
    open: Vec<RunSeen>,
    current: Option<u64>,
}

impl Fold {
    /// The statuses folded so far.
    pub fn finish(self) -> BTreeMap<String, SiteStatus> {
        self.out
    }

    /// Folds one more entry in.
    pub fn add(&mut self, e: &Entry) {
        let Fold {
            out,
            open,
            current: slot,
        } = self;
        let mut current = *slot;
        match e {
            Entry::Run {
                run,
                command,
                user,
                at,
                ..
            } => {
                for stopped in open.iter().filter(|r| Some(r.run) == current) {
                    for site in &stopped.sites {
                        let s = out.entry(site.clone()).or_default();
                        if s.state.in_flight() || s.state == SiteState::Syncing {
                            s.mark(
                                *at,
                                MarkKind::Interrupted,
                                format!(
                                    "{} stopped here without an end (killed or crashed)",
                                    stopped.name()
                                ),
                            );
                        }
                    }
                }
                open.push(RunSeen {
                    run: *run,
                    label: command.label(),
                    user: user.clone(),
                    sites: Vec::new(),
                });
                current = Some(*run);
            }
            Entry::RunEnd { run, .. } => {
                open.retain(|r| r.run != *run);
                if current == Some(*run) {
                    current = None;
                }
            }
            Entry::Site {
                site,
                state,
                at,
                detail,
                bytes,
                millis,
                at_ms,
            } => {
                let s = out.entry(site.clone()).or_default();
                let this_run = open.iter_mut().find(|r| Some(r.run) == current);
                if let Some(r) = this_run {
                    let previous = s.timeline.last().and_then(|t| t.run);
                    if previous != Some(r.run) && r.label == "resume" {
                        s.mark(*at, MarkKind::Resumed, format!("taken up by {}", r.name()));
                    }
                    if !r.sites.contains(site) {
                        r.sites.push(site.clone());
                    }
                }
                if *state == SiteState::PreSynced {
                    s.presyncs += 1;
                }
                if matches!(
                    *state,
                    SiteState::Freezing | SiteState::Failed | SiteState::RolledBack
                ) {
                    s.rows_owed.clear();
                }
                if matches!(*state, SiteState::Freezing | SiteState::Syncing) {
                    // A new attempt: the last one's reason no longer describes it.
                    s.reason = None;
                }
                if *state == SiteState::Freezing && s.frozen_since().is_none() {
                    s.attempts += 1;
                    if s.attempts > 1 {
                        s.mark(
                            *at,
                            MarkKind::Attempt,
                            format!(
                                "attempt {} (the one before ended {})",
                                s.attempts,
                                s.state.label()
                            ),
                        );
                    }
                    s.frozen.push(Frozen {
                        from: *at,
                        to: None,
                    });
                }
                if matches!(
                    *state,
                    SiteState::Confirmed | SiteState::Failed | SiteState::RolledBack
                ) && let Some(f) = s.frozen.last_mut().filter(|f| f.to.is_none())
                {
                    f.to = Some(*at);
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
                    at_ms: at_ms.unwrap_or(at * 1000),
                    state: *state,
                    detail: detail.clone(),
                    bytes: *bytes,
                    millis: *millis,
                    run: current,
                });
            }
            Entry::Probe { site, result, at } => {
                let s = out.entry(site.clone()).or_default();
                let attempt = s.attempts.max(1);
                s.probes.push(ProbeAttempt {
                    attempt,
                    at: *at,
                    result: result.clone(),
                });
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
                if step == ROWS_OWED {
                    if !s.rows_owed.contains(unit) {
                        s.rows_owed.push(unit.clone());
                    }
                } else if step == AFTER_GO_LIVE || step == VERIFY_STEP {
                    s.rows_owed.retain(|u| u != unit);
                }
                s.units.retain(|u| u.unit != *unit);
                s.units.push(UnitStatus {
                    unit: unit.clone(),
                    step: step.clone(),
                    ok: *ok,
                    detail: detail.clone(),
                    bytes: *bytes,
                });
            }
            Entry::Override {
                unit: crate::unit::UnitId::Site(site),
                because,
                command,
                at,
            } => out.entry(site.clone()).or_default().mark(
                *at,
                MarkKind::Override,
                format!(
                    "`--allow-live site:{site}` in `{command}`: overwritten at the target although {because}"
                ),
            ),
            Entry::Takeover {
                unit, by, from, at, ..
            } if !unit.starts_with('(') => out.entry(unit.clone()).or_default().mark(
                *at,
                MarkKind::Resumed,
                format!("taken over by {by} once the lease of {from} expired"),
            ),
            Entry::Check {
                finding,
                verdict,
                command,
                at,
            } if *verdict != super::ledger::CheckVerdict::Refused => {
                if let Some(site) = finding.subject.strip_prefix("site ") {
                    out.entry(site.to_string()).or_default().mark(
                        *at,
                        MarkKind::Override,
                        format!(
                            "[{}] let through by {} in `{command}`: {}",
                            finding.check,
                            verdict.flag(),
                            finding.reason
                        ),
                    );
                }
            }
            _ => {}
        }
        *slot = current;
    }
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
            at_ms: None,
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

    fn run(n: u64, command: super::super::ledger::RunCommand, at: u64) -> Entry {
        Entry::Run {
            run: n,
            command,
            argv: vec![],
            version: "0".into(),
            user: "ops".into(),
            overrides: vec![],
            at,
        }
    }

    fn step(site: &str, state: SiteState, at: u64) -> Entry {
        Entry::Site {
            site: site.into(),
            state,
            at,
            detail: None,
            bytes: None,
            millis: None,
            at_ms: None,
        }
    }

    fn probe(site: &str, ok: bool, at: u64) -> Entry {
        Entry::Probe {
            site: site.into(),
            result: ProbeResult {
                domain: site.into(),
                url: format!("http://{site}/"),
                ok,
                detail: if ok { "200" } else { "502" }.into(),
                round: super::super::probe::ProbeRound::BeforeSwitch,
            },
            at,
        }
    }

    /// A cutover killed after `freezing`, its resume, a failed probe, then a second cutover
    /// that goes through: each is marked, every probe kept, the downtime summed.
    #[test]
    fn interruptions_resumes_attempts_and_every_probe_are_kept() {
        use super::super::ledger::{RunCommand, Selected};
        use SiteState::*;
        let cutover = || RunCommand::Cutover {
            selection: Selected::All,
        };
        let entries = vec![
            run(1, cutover(), 100),
            step("a", Freezing, 100),
            // killed here: no run_end
            run(2, RunCommand::Resume, 130),
            step("a", Freezing, 130),
            step("a", Frozen, 131),
            step("a", FinalSynced, 132),
            step("a", Verified, 133),
            probe("a", false, 134),
            step("a", Failed, 135),
            Entry::RunEnd {
                run: 1,
                ok: true,
                at: 135,
            },
            Entry::RunEnd {
                run: 2,
                ok: false,
                at: 135,
            },
            run(3, cutover(), 200),
            step("a", Freezing, 200),
            step("a", Frozen, 201),
            step("a", FinalSynced, 202),
            step("a", Verified, 203),
            probe("a", true, 204),
            step("a", Switching, 205),
            step("a", Switched, 206),
            step("a", Confirmed, 210),
            Entry::RunEnd {
                run: 3,
                ok: true,
                at: 210,
            },
        ];
        let a = &fold(&entries)["a"];
        assert_eq!(a.state, Confirmed);
        assert_eq!(a.attempts, 2, "the resumed freeze is the same attempt");
        let kinds: Vec<(usize, MarkKind)> = a.marks.iter().map(|m| (m.before, m.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, MarkKind::Interrupted),
                (1, MarkKind::Resumed),
                (6, MarkKind::Attempt)
            ],
            "{:#?}",
            a.marks
        );
        assert_eq!(
            a.marks[0].text,
            "run 1 (`cutover` by ops) stopped here without an end (killed or crashed)"
        );
        assert_eq!(a.marks[1].text, "taken up by run 2 (`resume` by ops)");
        assert_eq!(
            a.probes
                .iter()
                .map(|p| (p.attempt, p.result.ok))
                .collect::<Vec<_>>(),
            vec![(1, false), (2, true)],
            "the first attempt's failed probe stays"
        );
        // Frozen 100 → 135 (failed, unfrozen), then 200 → 210 (confirmed).
        assert_eq!(a.downtime(), Some(45));
        assert_eq!(a.frozen_since(), None);
        let mut still = entries.clone();
        still.push(step("a", RollingBack, 300));
        assert_eq!(fold(&still)["a"].downtime(), Some(45), "no new freeze");
        let mut frozen = entries[..3].to_vec();
        frozen.truncate(2);
        assert_eq!(fold(&frozen)["a"].frozen_since(), Some(100));
        assert_eq!(fold(&frozen)["a"].downtime(), None);
    }

    #[test]
    fn overrides_of_a_site_are_marked_where_they_happened() {
        use crate::check::{Check, Finding};
        let entries = vec![
            step("a", SiteState::Syncing, 1),
            step("a", SiteState::PreSynced, 2),
            Entry::Check {
                finding: Finding::new(Check::DeleteShare, "site a", "40 % of the target"),
                verdict: super::super::ledger::CheckVerdict::Forced,
                command: "sync".into(),
                at: 3,
            },
            Entry::Override {
                unit: crate::unit::UnitId::Site("a".into()),
                because: "site a is switched".into(),
                command: "sync".into(),
                at: 4,
            },
        ];
        let a = &fold(&entries)["a"];
        assert_eq!(a.marks.len(), 2);
        assert!(
            a.marks
                .iter()
                .all(|m| m.before == 2 && m.kind == MarkKind::Override)
        );
        assert_eq!(
            a.marks[0].text,
            "[delete-share] let through by `--force` in `sync`: 40 % of the target"
        );
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

    fn unit(site: &str, db: &str, step: &str, ok: bool) -> Entry {
        Entry::Unit {
            site: site.into(),
            unit: format!("database {db}"),
            step: step.into(),
            ok,
            detail: None,
            bytes: None,
            at: 1,
        }
    }

    /// Issue 19: what the journal says is owed after a crash between the freeze's light check
    /// and the comparison after go-live, whatever else happened to the site.
    #[test]
    fn a_row_comparison_is_owed_until_compared_or_made_moot() {
        let owed = |entries: &[Entry]| fold(entries)["a"].rows_still_owed().to_vec();
        let light = [
            at("a", SiteState::Freezing, None),
            at("a", SiteState::Frozen, None),
            unit("a", "shop", ROWS_OWED, true),
            unit("a", "shop", "final sync (replicated)", true),
            unit("a", "blog", ROWS_OWED, true),
            unit("a", "blog", "final sync (replicated)", true),
            at("a", SiteState::FinalSynced, None),
            at("a", SiteState::Verified, None),
            at("a", SiteState::Switching, None),
            at("a", SiteState::Switched, None),
            at("a", SiteState::Confirmed, None),
        ];
        // Killed before the comparison: both owed, the site confirmed.
        assert_eq!(owed(&light), ["database shop", "database blog"]);
        // The comparison's entry settles it, whatever it found.
        let mut e = light.to_vec();
        e.push(unit("a", "shop", AFTER_GO_LIVE, false));
        assert_eq!(owed(&e), ["database blog"]);
        // Rows compared in a freeze settle it too (a resume that verified before the switch).
        e.push(unit("a", "blog", VERIFY_STEP, true));
        assert!(owed(&e).is_empty());
        // A new light check owes again; other steps (a live skip) settle nothing.
        e.push(unit("a", "shop", ROWS_OWED, true));
        e.push(unit("a", "shop", "final sync", true));
        assert_eq!(owed(&e), ["database shop"]);
        // A rollback under way: not owed (the source may serve again); once rolled back, moot.
        let mut back = light.to_vec();
        back.push(at("a", SiteState::RollingBack, None));
        assert!(owed(&back).is_empty());
        assert_eq!(fold(&back)["a"].rows_owed.len(), 2);
        back.push(at("a", SiteState::RolledBack, None));
        assert!(fold(&back)["a"].rows_owed.is_empty());
        // A failure before the switch, or the next attempt's freeze: moot as well.
        let mut failed = light[..8].to_vec();
        failed.push(at("a", SiteState::Failed, Some("probe before the switch")));
        assert!(owed(&failed).is_empty());
        let mut again = light[..8].to_vec();
        again.push(at("a", SiteState::RolledBack, None));
        again.push(at("a", SiteState::Freezing, None));
        assert!(owed(&again).is_empty());
        // Units of no site have no states: owed until compared.
        let platform = fold(&[unit("(platform)", "shared", ROWS_OWED, true)]);
        assert_eq!(
            platform["(platform)"].rows_still_owed(),
            ["database shared"]
        );
    }
}
