//! A replicated database's row comparison moved out of the freeze: once the target applied
//! the source's last position and left replication, a snapshot of the target is held open
//! before any write can reach it there, the catalogs are compared in the freeze (time
//! independent of the rows), and after the switch the rows of the frozen source are compared
//! with that snapshot, so writes made at the target since never race the comparison. A
//! difference is reported with what to do; nothing live at the target is ever rewritten.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Migration, PLATFORM, SiteOutcome};
use crate::db::verify::Snapshot;
use crate::event::Event;
use crate::journal::now;
use crate::lifecycle::databases::{DbResult, compare_held, hold};
use crate::lifecycle::ledger::{AFTER_GO_LIVE, Entry, ROWS_OWED};
use crate::plan::DatabaseRule;
use crate::report::plural;

/// A database whose rows wait for `verify_after_go_live`, with the target's snapshot.
pub(super) struct HeldDb {
    owner: String,
    rule: usize,
    name: String,
    snapshot: Snapshot,
}

impl Migration<'_> {
    /// In the freeze, once `name` caught up and left replication: a snapshot of the target
    /// held for later and the catalogs compared in it (`Ok`, the result to judge); `Err(why)`
    /// when no snapshot can be held, and the caller compares every row now, as with `dump`.
    pub(super) fn check_lightly(
        &self,
        owner: &str,
        rule: &DatabaseRule,
        name: &str,
    ) -> Result<DbResult, String> {
        // With a shared journal another controller may run the switch, and the snapshot would
        // stay here: unless this is a worker's cutover, whose worker keeps a site's lease from
        // its freeze (`Step::Prepare`) to its switch (`Step::GoLive`, `Leases::finish_kept`).
        // The units of no site are switched by no worker in particular.
        if self.ledger.leases().is_some()
            && (owner == PLATFORM || !self.keeps_sites_to_switch.load(Ordering::Relaxed))
        {
            return Err("several controllers share the journal".into());
        }
        let snapshot = hold(rule, name, self.connections)
            .map_err(|e| format!("no snapshot could be held at the target: {e}"))?;
        let r = compare_held(rule, name, self.connections, &snapshot, false);
        if r.clean() {
            // Journaled before the site can switch: a crash from here on loses the snapshot,
            // and the next `resume` or cutover settles the comparison (`owed`).
            self.record(&Entry::Unit {
                site: owner.to_string(),
                unit: format!("database {name}"),
                step: ROWS_OWED.into(),
                ok: true,
                detail: Some(
                    "catalogs checked in the freeze; rows to compare after go-live in the target's snapshot this run holds".into(),
                ),
                bytes: None,
                at: now(),
            })?;
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(HeldDb {
                    owner: owner.to_string(),
                    rule: rule.index,
                    name: name.to_string(),
                    snapshot,
                });
        }
        Ok(r)
    }

    /// Whether a snapshot is held for a database of `owner`.
    pub(super) fn holds_snapshots_of(&self, owner: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|h| h.owner == owner)
    }

    /// Lets go of `owner`'s snapshots: its site will not switch in this process.
    pub(super) fn drop_snapshots_of(&self, owner: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|h| h.owner != owner);
    }

    /// Whether `name` of `owner` waits for its comparison after go-live (compared lightly in
    /// this freeze: verification does not read its rows again before the switch).
    pub(super) fn held_for_later(&self, owner: &str, name: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|h| h.owner == owner && h.name == name)
    }

    /// After a batch's switches: the rows of every held database that may now be live at the
    /// target, compared in its snapshot, `jobs` at a time; journaled per database. Returns
    /// the failures by owner (a site, or `PLATFORM`). A database whose site did not go live
    /// has nothing to compare against what users write (it is dropped with its snapshot).
    pub(super) fn verify_after_go_live(&self, label: &str) -> Vec<(String, String)> {
        self.verify_after_go_live_of(label, |_| true)
    }

    /// `verify_after_go_live` for the databases held for `owners` only (a worker's switch of
    /// one site); the others stay held.
    pub(super) fn verify_after_go_live_of(
        &self,
        label: &str,
        owners: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        let held: Vec<HeldDb> = {
            let mut all = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let (taken, kept) = std::mem::take(&mut *all)
                .into_iter()
                .partition(|h| owners(&h.owner));
            *all = kept;
            taken
        };
        let live = self.live();
        let work: Vec<HeldDb> = held
            .into_iter()
            .filter(|h| {
                live.why(&crate::unit::UnitId::Database(h.name.clone()))
                    .is_some()
            })
            .collect();
        if work.is_empty() {
            return Vec::new();
        }
        self.each_database(&format!("{label}: {AFTER_GO_LIVE}"), &work, |h| {
            self.compare_after_go_live(h)
        })
    }

    /// Runs `compare` on every database of `work`, `jobs` at a time, in one phase of the
    /// progress display. Returns the failures by owner (a site, or `PLATFORM`).
    pub(super) fn each_database<T: OwnedDb + Sync>(
        &self,
        phase: &str,
        work: &[T],
        compare: impl Fn(&T) -> Result<(), String> + Sync,
    ) -> Vec<(String, String)> {
        if work.is_empty() {
            return Vec::new();
        }
        self.observer.on_event(&Event::PhaseStarted {
            phase: phase.into(),
            total: work.len() as u64,
        });
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.plan.defaults.jobs.clamp(1, work.len()) {
                s.spawn(|| {
                    while let Some(h) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let failure = compare(h).err();
                        self.observer.on_event(&match &failure {
                            Some(e) => Event::UnitFailed {
                                phase: phase.into(),
                                unit: h.name().to_string(),
                                error: e.clone(),
                            },
                            None => Event::UnitDone {
                                phase: phase.into(),
                                unit: h.name().to_string(),
                            },
                        });
                        if let Some(e) = failure {
                            failures
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((h.owner().to_string(), e));
                        }
                    }
                });
            }
        });
        self.observer.on_event(&Event::PhaseFinished {
            phase: phase.into(),
        });
        failures.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// One held database: its rows compared, the result journaled.
    fn compare_after_go_live(&self, h: &HeldDb) -> Result<(), String> {
        let Some(rule) = self.plan.databases.iter().find(|r| r.index == h.rule) else {
            return Ok(());
        };
        let r = compare_held(rule, &h.name, self.connections, &h.snapshot, true);
        let ok = r.error.is_none() && r.tables.iter().all(|t| t.status == "same");
        let detail = if ok {
            format!(
                "{} compared row by row: the frozen source and the target as it was at the switch",
                plural(r.tables.len() as u64, "table", "tables")
            )
        } else {
            let what = match &r.error {
                Some(e) => format!("could not be compared: {e}"),
                None => format!(
                    "differ from the frozen source in the target's snapshot taken at the freeze: {}",
                    tables_that_differ(&r)
                ),
            };
            format!(
                "{what}. It may be live on the new side: nothing was overwritten there. Compare and repair those rows by hand, or send visitors back to the source with {} (writes made at the target since the switch stay there only)",
                rollback_hint(&h.owner)
            )
        };
        self.record_after_go_live(&h.owner, &h.name, ok, detail)
    }

    /// Journals the comparison after go-live of `owner`'s database `name`; a difference is
    /// also the `Err` the site's outcome shows.
    pub(super) fn record_after_go_live(
        &self,
        owner: &str,
        name: &str,
        ok: bool,
        detail: String,
    ) -> Result<(), String> {
        self.record(&Entry::Unit {
            site: owner.to_string(),
            unit: format!("database {name}"),
            step: AFTER_GO_LIVE.into(),
            ok,
            detail: Some(detail.clone()),
            bytes: None,
            at: now(),
        })?;
        if ok {
            Ok(())
        } else {
            Err(format!("database `{name}`: {detail}"))
        }
    }

    /// Puts the comparisons' failures on the outcomes of the sites they concern (a database
    /// of no site: on every site of the batch that went live), so the command exits 1.
    pub(super) fn mark_after_go_live(
        &self,
        outcomes: &mut [SiteOutcome],
        failures: &[(String, String)],
    ) {
        for o in outcomes.iter_mut() {
            let mine: Vec<&str> = failures
                .iter()
                .filter(|(owner, _)| {
                    *owner == o.site || (owner == PLATFORM && o.state.may_have_switched())
                })
                .map(|(_, e)| e.as_str())
                .collect();
            if mine.is_empty() {
                continue;
            }
            let text = format!("{AFTER_GO_LIVE}: {}", mine.join("; "));
            o.detail = Some(match o.detail.take() {
                Some(d) => format!("{d}; {text}"),
                None => text,
            });
            o.error.get_or_insert(crate::unit::ErrorKind::Mismatch);
        }
    }
}

/// How visitors of `owner` (a site, or `PLATFORM`) are sent back to the source.
pub(super) fn rollback_hint(owner: &str) -> String {
    if owner == PLATFORM {
        "`rollback` of the sites that use it".to_string()
    } else {
        format!("`transhumance rollback PLAN --only {owner}`")
    }
}

/// A database some comparison works on, and the site (or `PLATFORM`) it belongs to.
pub(super) trait OwnedDb {
    fn owner(&self) -> &str;
    fn name(&self) -> &str;
}

impl OwnedDb for HeldDb {
    fn owner(&self) -> &str {
        &self.owner
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// `(owner, database)`.
impl OwnedDb for (String, String) {
    fn owner(&self) -> &str {
        &self.0
    }
    fn name(&self) -> &str {
        &self.1
    }
}

/// The tables that differ, with their first differing key range.
fn tables_that_differ(r: &DbResult) -> String {
    r.tables
        .iter()
        .filter(|t| t.status != "same")
        .map(|t| match (t.differing_ranges.first(), &t.note) {
            (Some(k), _) => format!("{} ({}, {k})", t.table, t.status),
            (None, Some(n)) => format!("{} ({}: {n})", t.table, t.status),
            (None, None) => format!("{} ({})", t.table, t.status),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
