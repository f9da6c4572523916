//! Several controllers on one move: each runs `transhumance worker`, and they share the plan's
//! work queue in the PostgreSQL journal. The queue holds the command's steps in the order one
//! controller would take them (per batch: each site's freeze, final sync and verification; the
//! units of no site; each site's switch and probes; mail swept after the switch), a step of a
//! later stage starting only once every step before it is done, wherever it ran. A step is
//! taken with its unit's lease; a controller that dies leaves its lease to expire, and the next
//! one to take the step goes on from what the journal and the real world say, as `resume` does.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DNS_UNIT, LifecycleError, Migration, PLATFORM, Selection, SiteOutcome};
use crate::event::Event;
use crate::journal::JournalError;
use crate::journal::postgres::{Leases, Next, QueueItem};
use crate::lifecycle::ledger::{RunCommand, Selected};
use crate::lifecycle::state::{ResumeStep, SiteState};
use crate::plan::Site;

/// What the workers of a queue do, as `sync`, `cutover` and `run` do on one controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WorkerVerb {
    /// Pre-sync every site, then the units of no site.
    Sync,
    /// Cut every selected site over, batch after batch.
    Cutover,
    /// Pre-sync, lower the TTLs and wait for them, cut over, restore the TTLs.
    Run,
}

/// What a worker did: its sites' outcomes, and why the queue stopped early when it did (a run
/// whose pre-sync failed, or whose cutover is planned later).
#[derive(Debug)]
pub struct Worked {
    pub outcomes: Vec<SiteOutcome>,
    pub stopped: Option<String>,
}

/// A queue's kind as stored: workers join only a queue of the same verb and selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Kind {
    verb: WorkerVerb,
    selection: Selected,
}

/// One step of a queue, from an item's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    SyncSite,
    SyncPlatform,
    LowerTtl,
    /// Freeze, final sync and verification of a site of batch N (0-based).
    Prepare(usize),
    /// The units of no site, once batch N is frozen.
    Platform(usize),
    /// The switch and probes of a site of batch N.
    GoLive(usize),
    /// Mail swept and the panel moved after batch N.
    After(usize),
    RestoreTtl,
}

/// The stages of a verb's queue: steps in order, each a stage number.
struct Stages {
    verb: WorkerVerb,
    batches: usize,
}

impl Stages {
    /// Where the cutover's stages start.
    fn cutover_base(&self) -> i32 {
        match self.verb {
            WorkerVerb::Cutover => 0,
            WorkerVerb::Run => 3,
            WorkerVerb::Sync => i32::MAX,
        }
    }

    fn stage(&self, step: Step) -> i32 {
        let base = self.cutover_base();
        match step {
            Step::SyncSite => 0,
            Step::SyncPlatform => 1,
            Step::LowerTtl => 2,
            Step::Prepare(b) => base + 4 * b as i32,
            Step::Platform(b) => base + 4 * b as i32 + 1,
            Step::GoLive(b) => base + 4 * b as i32 + 2,
            Step::After(b) => base + 4 * b as i32 + 3,
            Step::RestoreTtl => base + 4 * self.batches as i32,
        }
    }

    fn step(&self, stage: i32) -> Step {
        let base = self.cutover_base();
        if self.verb != WorkerVerb::Cutover && stage < base.min(3) {
            return match stage {
                0 => Step::SyncSite,
                1 => Step::SyncPlatform,
                _ => Step::LowerTtl,
            };
        }
        let at = stage - base;
        let batch = (at / 4) as usize;
        if batch >= self.batches {
            return Step::RestoreTtl;
        }
        match at % 4 {
            0 => Step::Prepare(batch),
            1 => Step::Platform(batch),
            2 => Step::GoLive(batch),
            _ => Step::After(batch),
        }
    }
}

fn platform_item(batch: usize) -> String {
    format!("{PLATFORM} batch {}", batch + 1)
}

fn after_item(batch: usize) -> String {
    format!("{PLATFORM} after batch {}", batch + 1)
}

impl Migration<'_> {
    /// Works on the plan's shared queue of `verb` over `selection` until every step is done:
    /// joins the queue other workers run, or creates it. Returns what this worker did to the
    /// sites it worked on.
    ///
    /// # Errors
    /// The journal is not shared (`state:` absent), a check refuses, another verb's queue is
    /// open, or the store fails.
    pub fn work(&self, verb: WorkerVerb, selection: &Selection) -> Result<Worked, LifecycleError> {
        let Some(leases) = self.ledger.leases() else {
            return Err(LifecycleError::Invalid(
                "`worker` shares the move with other controllers through a journal in PostgreSQL: add `state: { postgres: \"host=… dbname=… user=…\", password_env: … }` to the plan (with the file journal, run `sync`, `cutover` or `run`)".into(),
            ));
        };
        let batches = self.verb_batches(verb, selection)?;
        let all: Vec<&Site> = batches.concat();
        match verb {
            WorkerVerb::Sync => self.check_secrets(&crate::lifecycle::secrets::Needs {
                dns: false,
                ..crate::lifecycle::secrets::Needs::all(&self.plan)
            })?,
            WorkerVerb::Cutover => {
                self.check_secrets(&crate::lifecycle::secrets::Needs::all(&self.plan))?;
                self.check_dns_ready(&all)?;
                self.check_ids_resolve(&all)?;
            }
            // The TTLs are lowered by the run itself: each site's switch judges them.
            WorkerVerb::Run => {
                self.check_secrets(&crate::lifecycle::secrets::Needs::all(&self.plan))?;
                self.check_ids_resolve(&all)?;
            }
        }
        let kind = Kind {
            verb,
            selection: Selected::from(selection),
        };
        self.work_queue(leases, &kind, &batches)
    }

    /// Joins the plan's open queue, whatever its verb, as one more worker (`resume`); `None`
    /// when no queue is open.
    pub(super) fn join_open_queue(&self) -> Result<Option<Vec<SiteOutcome>>, LifecycleError> {
        let Some(leases) = self.ledger.leases() else {
            return Ok(None);
        };
        let Some(queue) = leases.open_queue()? else {
            return Ok(None);
        };
        let kind: Kind = serde_json::from_str(&queue.kind).map_err(|e| {
            LifecycleError::Invalid(format!("the open work queue `{}`: {e}", queue.kind))
        })?;
        let batches = self.verb_batches(kind.verb, &Selection::from(&kind.selection))?;
        self.work_queue(leases, &kind, &batches)
            .map(|w| Some(w.outcomes))
    }

    /// The sites a verb's queue takes, by batch (a pre-sync has one).
    fn verb_batches(
        &self,
        verb: WorkerVerb,
        selection: &Selection,
    ) -> Result<Vec<Vec<&Site>>, LifecycleError> {
        Ok(match (verb, selection) {
            (WorkerVerb::Sync, Selection::Only(names)) => vec![self.select(names)?],
            (WorkerVerb::Sync, _) => vec![self.select(&[])?],
            _ => self.selected_batches(selection)?,
        })
    }

    fn work_queue(
        &self,
        leases: &Leases,
        kind: &Kind,
        batches: &[Vec<&Site>],
    ) -> Result<Worked, LifecycleError> {
        let stages = Stages {
            verb: kind.verb,
            batches: batches.len(),
        };
        let items = self.queue_items(&stages, batches);
        let text = serde_json::to_string(kind).expect("kinds serialize");
        let queue = leases.join_or_create(&text, &items)?;
        if queue.created {
            let command = match kind.verb {
                WorkerVerb::Sync => RunCommand::Sync {
                    only: match &kind.selection {
                        Selected::Only(v) => v.clone(),
                        _ => Vec::new(),
                    },
                },
                WorkerVerb::Cutover => RunCommand::Cutover {
                    selection: kind.selection.clone(),
                },
                WorkerVerb::Run => RunCommand::Run,
            };
            let mut overrides = self
                .allowed_live
                .iter()
                .map(|u| format!("allow-live {u}"))
                .collect::<Vec<_>>();
            overrides.extend(self.checks.journaled());
            let run = self.ledger.start_run(command, overrides)?;
            leases.set_run(queue.id, run)?;
        }
        let sites: BTreeMap<&str, (usize, &Site)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, sites)| sites.iter().map(move |s| (s.name.as_str(), (b, *s))))
            .collect();
        // A cutover's worker keeps a site from its freeze to its switch (see `check_lightly`).
        if kind.verb != WorkerVerb::Sync {
            self.keeps_sites_to_switch
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let kept: Mutex<std::collections::BTreeSet<String>> = Mutex::default();
        let outcomes: Mutex<BTreeMap<String, SiteOutcome>> = Mutex::new(BTreeMap::new());
        let failure: Mutex<Option<JournalError>> = Mutex::new(None);
        // Often enough that a freed stage starts soon, rarely enough to cost the server little.
        let poll = (leases.lease() / 6).clamp(Duration::from_millis(100), Duration::from_secs(1));
        std::thread::scope(|scope| {
            for _ in 0..self.plan.defaults.jobs.max(1) {
                scope.spawn(|| {
                    loop {
                        if self.stopped()
                            || failure.lock().unwrap_or_else(|p| p.into_inner()).is_some()
                        {
                            return;
                        }
                        let next = match leases.next(queue.id) {
                            Ok(n) => n,
                            Err(e) => {
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                return;
                            }
                        };
                        match next {
                            Next::Done => return,
                            Next::Wait => std::thread::sleep(poll),
                            Next::Item { item, lease } => {
                                kept.lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .remove(&item.unit);
                                if let Err(e) = self.took(&lease) {
                                    // Not a step done: given back for another worker.
                                    let _ = leases.release(&item.unit);
                                    *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                                        Some(JournalError::Store {
                                            store: "journal".into(),
                                            message: format!("taking over `{}`: {e}", item.unit),
                                        });
                                    return;
                                }
                                let (next_stage, note, outcome) =
                                    self.work_item(leases, queue.id, &stages, &sites, &item);
                                // A step the operator's stop cut short goes back to the queue
                                // for the other workers, from where it must start again.
                                let redo = self
                                    .stopped()
                                    .then(|| self.redo_stage(&stages, &item, outcome.as_ref()))
                                    .flatten();
                                let (next_stage, note) = match redo {
                                    Some(stage) => (Some(stage), None),
                                    None => (next_stage, note),
                                };
                                let finished = match self.keep_to_switch(&stages, &item, next_stage)
                                {
                                    Some(stage) => {
                                        kept.lock()
                                            .unwrap_or_else(|p| p.into_inner())
                                            .insert(item.unit.clone());
                                        leases.finish_kept(queue.id, &item, stage)
                                    }
                                    None => {
                                        leases.finish(queue.id, &item, next_stage, note.as_deref())
                                    }
                                };
                                if let Some(mut o) = outcome {
                                    if let Err(e @ JournalError::LeaseLost { .. }) = &finished {
                                        o.detail = Some(e.to_string());
                                        o.error = Some(crate::unit::ErrorKind::Conflict);
                                    }
                                    outcomes
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .insert(o.site.clone(), o);
                                }
                                if let Err(e) = finished
                                    && !matches!(e, JournalError::LeaseLost { .. })
                                {
                                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        // Sites kept for a switch this worker will not do (it was stopped): their leases given
        // back, their switch left to another worker, which settles the rows they owe.
        for unit in kept.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.drop_snapshots_of(&unit);
            let _ = leases.release(&unit);
        }
        if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e.into());
        }
        let mut out: Vec<SiteOutcome> = outcomes
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_values()
            .collect();
        self.mark_interrupted(&mut out);
        // The worker that closes the queue ends its journaled run, for every site of it.
        if !self.stopped()
            && let Some(run) = leases.close(queue.id)?
            && let Some(run) = run
        {
            let ok = sites.keys().all(|s| {
                !matches!(
                    self.state_of(s),
                    SiteState::Failed | SiteState::RolledBack | SiteState::RollingBack
                )
            });
            self.ledger.end_run(run as u64, ok)?;
        }
        Ok(Worked {
            outcomes: out,
            stopped: leases.stopped(queue.id)?,
        })
    }

    /// The switch stage a site's freeze goes on to while this worker keeps its lease: when it
    /// holds snapshots for the rows of the site's databases (compared after the switch).
    /// Otherwise `None`, and a site that will not switch lets its snapshots go.
    fn keep_to_switch(
        &self,
        stages: &Stages,
        item: &QueueItem,
        next_stage: Option<i32>,
    ) -> Option<i32> {
        let Step::Prepare(b) = stages.step(item.stage) else {
            return None;
        };
        let go_live = stages.stage(Step::GoLive(b));
        if next_stage == Some(go_live) && self.holds_snapshots_of(&item.unit) {
            return Some(go_live);
        }
        self.drop_snapshots_of(&item.unit);
        None
    }

    /// Where a step the operator's stop cut short starts again (`None`: it was done): a site
    /// undone or not started by the stop goes back to its freeze; a step of no site skips its
    /// work once stopped, so it is done again whole.
    fn redo_stage(
        &self,
        stages: &Stages,
        item: &QueueItem,
        outcome: Option<&SiteOutcome>,
    ) -> Option<i32> {
        match stages.step(item.stage) {
            Step::Prepare(b) | Step::GoLive(b) => {
                let site = &outcome?.site;
                let cut = self
                    .interrupted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(site);
                cut.then(|| stages.stage(Step::Prepare(b)))
            }
            Step::Platform(_) | Step::After(_) => Some(item.stage),
            Step::SyncSite | Step::SyncPlatform | Step::LowerTtl | Step::RestoreTtl => None,
        }
    }

    /// The queue of a verb over its batches: (item, unit, stage), in the order one controller
    /// would take them.
    fn queue_items(&self, stages: &Stages, batches: &[Vec<&Site>]) -> Vec<(String, String, i32)> {
        let mut items = Vec::new();
        let site = |s: &Site, step| (s.name.clone(), s.name.clone(), stages.stage(step));
        let unit = |item: String, unit: &str, step| (item, unit.to_string(), stages.stage(step));
        let platform = self.has_platform_units();
        match stages.verb {
            WorkerVerb::Sync => {
                items.extend(
                    batches
                        .concat()
                        .into_iter()
                        .map(|s| site(s, Step::SyncSite)),
                );
                if platform && self.every_site_selected(batches) {
                    items.push(unit(
                        format!("{PLATFORM} pre-sync"),
                        PLATFORM,
                        Step::SyncPlatform,
                    ));
                }
            }
            WorkerVerb::Cutover | WorkerVerb::Run => {
                let run = stages.verb == WorkerVerb::Run;
                for (b, sites) in batches.iter().enumerate() {
                    let first = if run {
                        Step::SyncSite
                    } else {
                        Step::Prepare(b)
                    };
                    items.extend(sites.iter().map(|s| site(s, first)));
                    if platform {
                        items.push(unit(platform_item(b), PLATFORM, Step::Platform(b)));
                        items.push(unit(after_item(b), PLATFORM, Step::After(b)));
                    }
                }
                if run {
                    if platform {
                        items.push(unit(
                            format!("{PLATFORM} pre-sync"),
                            PLATFORM,
                            Step::SyncPlatform,
                        ));
                    }
                    items.push(unit(
                        format!("{DNS_UNIT} lower TTL"),
                        DNS_UNIT,
                        Step::LowerTtl,
                    ));
                    items.push(unit(
                        format!("{DNS_UNIT} restore TTL"),
                        DNS_UNIT,
                        Step::RestoreTtl,
                    ));
                }
            }
        }
        items
    }

    fn every_site_selected(&self, batches: &[Vec<&Site>]) -> bool {
        batches.iter().map(Vec::len).sum::<usize>() == self.sites.len()
    }

    /// Does one step of the queue: returns the item's next stage (`None`: done), the note it
    /// leaves for later steps, and the site's outcome when it is a site's step.
    fn work_item(
        &self,
        leases: &Leases,
        queue: i64,
        stages: &Stages,
        sites: &BTreeMap<&str, (usize, &Site)>,
        item: &QueueItem,
    ) -> (Option<i32>, Option<String>, Option<SiteOutcome>) {
        let step = stages.step(item.stage);
        let phase = format!("worker: {}", step_label(step));
        let site = sites.get(item.unit.as_str()).map(|(b, s)| (*b, *s));
        let result = match (step, site) {
            (Step::SyncSite, Some((b, site))) => {
                let o = self.sync_site(site, false);
                let next = (stages.verb == WorkerVerb::Run).then(|| stages.stage(Step::Prepare(b)));
                (next, None, Some(o))
            }
            (Step::Prepare(b), Some((_, site))) => {
                if let Some(o) = self.finish_rollback(site) {
                    (None, None, Some(o))
                } else {
                    let o = match self.checkpoint(site).and_then(|()| self.prepare(site)) {
                        Ok(()) => self.outcome(site, None),
                        Err(e) => self.stopped_at(site, e),
                    };
                    let ready = matches!(
                        self.state_of(&site.name),
                        SiteState::Verified
                            | SiteState::Switching
                            | SiteState::Switched
                            | SiteState::Paused
                    );
                    let next = (ready && !self.stopped()).then(|| stages.stage(Step::GoLive(b)));
                    (next, None, Some(o))
                }
            }
            (Step::GoLive(b), Some((_, site))) => {
                let o = if let Some(o) = self.finish_rollback(site) {
                    o
                } else if let Err(e) = self.checkpoint(site) {
                    self.outcome(site, Some(e))
                } else {
                    match leases.outcome(queue, &platform_item(b)) {
                        Ok(Some(e)) if !e.is_empty() => self.roll_back(
                            site,
                            &format!("a unit of no site failed its final sync: {e}"),
                        ),
                        Ok(_) => self.go_live(site),
                        Err(e) => self.outcome(site, Some(e.to_string())),
                    }
                };
                // The rows of its databases, compared in the snapshot of its freeze; and those
                // a dead worker left owed, compared as they are now.
                let label = format!("batch {}", b + 1);
                let mut o = [o];
                let after = self.verify_after_go_live_of(&label, |owner| owner == site.name);
                self.mark_after_go_live(&mut o, &after);
                let owed = self.settle_owed(&[site.name.as_str()], &label);
                self.mark_after_go_live(&mut o, &owed.failures);
                let [o] = o;
                (None, None, Some(o))
            }
            (Step::SyncPlatform, _) => {
                self.sync_platform();
                (None, None, None)
            }
            (Step::Platform(_), _) => {
                let failures = self.final_sync_platform();
                (
                    None,
                    Some(failures.first().cloned().unwrap_or_default()),
                    None,
                )
            }
            (Step::After(b), _) => {
                let confirmed = sites
                    .values()
                    .any(|(sb, s)| *sb == b && self.state_of(&s.name) == SiteState::Confirmed);
                if confirmed {
                    self.after_batch(&format!("batch {}", b + 1));
                }
                (None, None, None)
            }
            (Step::LowerTtl, _) => (
                None,
                Some(self.lower_ttl_step(leases, queue, stages, sites)),
                None,
            ),
            (Step::RestoreTtl, _) => {
                let note = match self.restore_ttl() {
                    Ok(o) => format!("{} RRset(s) back to their TTL", o.applied.len()),
                    Err(e) => e.to_string(),
                };
                (None, Some(note), None)
            }
            // A site's item whose site the plan no longer has: nothing to do.
            (_, None) => (None, Some("not a site of the plan".into()), None),
        };
        let event = match &result.2 {
            Some(o) if !o.ok() => Event::UnitFailed {
                phase,
                unit: item.item.clone(),
                error: o.detail.clone().unwrap_or_default(),
            },
            _ => Event::UnitDone {
                phase,
                unit: item.item.clone(),
            },
        };
        self.observer.on_event(&event);
        result
    }

    /// A site whose rollback a dead controller left half done is rolled back first, as
    /// `resume` does: `Some(outcome)` then.
    fn finish_rollback(&self, site: &Site) -> Option<SiteOutcome> {
        if self.state_of(&site.name).resume_step() != ResumeStep::FinishRollback {
            return None;
        }
        let reason = super::super::state::fold(&self.ledger.site_history(&site.name))
            .get(&site.name)
            .and_then(|s| s.timeline.last())
            .and_then(|s| s.detail.clone())
            .unwrap_or_else(|| super::ROLLBACK_ASKED.into());
        Some(self.roll_back(site, &reason))
    }

    /// The run's TTL step: stops the run when a pre-sync failed (nothing was frozen) or the
    /// cutover is planned later, else lowers the TTLs and holds every later step until
    /// resolvers forgot the old ones.
    fn lower_ttl_step(
        &self,
        leases: &Leases,
        queue: i64,
        stages: &Stages,
        sites: &BTreeMap<&str, (usize, &Site)>,
    ) -> String {
        let stage = stages.stage(Step::LowerTtl);
        let unsynced: Vec<&str> = sites
            .keys()
            .copied()
            .filter(|s| matches!(self.state_of(s), SiteState::Failed | SiteState::Syncing))
            .collect();
        let stop = |reason: String| {
            let _ = leases.drop_later_stages(queue, stage, &reason);
            reason
        };
        if !unsynced.is_empty() {
            return stop(format!(
                "{} did not pre-sync ({}): fix them, then start the workers again (nothing was frozen)",
                crate::report::plural(unsynced.len() as u64, "site", "sites"),
                unsynced.join(", ")
            ));
        }
        // A cutover planned later: the run only pre-syncs (as `run` does).
        if let Some(at) = self.plan.cutover.at
            && at > std::time::SystemTime::now()
        {
            return stop(format!(
                "the cutover is planned at {}: pre-sync done, start the workers again then",
                humantime::format_rfc3339_seconds(at)
            ));
        }
        match self.lower_ttl() {
            Ok(0) => "TTLs lowered, no wait".into(),
            Ok(wait) => {
                let wait = Duration::from_secs(wait + 1);
                match leases.hold_later_stages(queue, stage, wait) {
                    Ok(()) => format!(
                        "TTLs lowered: every worker waits {} for resolvers to forget the old ones",
                        crate::plan::units::human_duration(wait)
                    ),
                    Err(e) => stop(format!("holding the cutover for the TTL wait: {e}")),
                }
            }
            Err(e) => stop(format!("lowering TTLs: {e}")),
        }
    }
}

fn step_label(step: Step) -> String {
    match step {
        Step::SyncSite => "pre-sync".into(),
        Step::SyncPlatform => "pre-sync of the units of no site".into(),
        Step::LowerTtl => "lower TTLs".into(),
        Step::Prepare(b) => format!("batch {}: freeze, final sync, verify", b + 1),
        Step::Platform(b) => format!("batch {}: units of no site", b + 1),
        Step::GoLive(b) => format!("batch {}: switch and probe", b + 1),
        Step::After(b) => format!("batch {}: mail after the switch", b + 1),
        Step::RestoreTtl => "restore TTLs".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_steps_agree_for_every_verb() {
        for verb in [WorkerVerb::Sync, WorkerVerb::Cutover, WorkerVerb::Run] {
            let s = Stages { verb, batches: 3 };
            let mut steps = vec![Step::SyncSite, Step::SyncPlatform, Step::LowerTtl];
            if verb == WorkerVerb::Sync {
                steps.truncate(2);
            } else {
                if verb == WorkerVerb::Cutover {
                    steps.clear();
                }
                for b in 0..3 {
                    steps.extend([
                        Step::Prepare(b),
                        Step::Platform(b),
                        Step::GoLive(b),
                        Step::After(b),
                    ]);
                }
                steps.push(Step::RestoreTtl);
            }
            let numbers: Vec<i32> = steps.iter().map(|st| s.stage(*st)).collect();
            assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "{verb:?}: {numbers:?}"
            );
            for (st, n) in steps.iter().zip(&numbers) {
                assert_eq!(s.step(*n), *st, "{verb:?} stage {n}");
            }
        }
    }
}
