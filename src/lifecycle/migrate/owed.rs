//! Row comparisons a crash left owed (issue 19). A replicated database's rows wait for the
//! comparison after go-live in a snapshot its run holds at the target (`deferred`); a run
//! killed before that comparison takes the snapshot with it. The journal says what is owed
//! (`ROWS_OWED` with neither `AFTER_GO_LIVE` nor a row comparison in a freeze since), and the
//! next `resume` or cutover of the site settles it from the servers: before the switch, the
//! rows compared in the freeze as any verification (no write can have reached the target);
//! after it, the frozen source compared with the target as it is now, where a difference may
//! be a write users made since go-live: reported with what tells the kinds apart, never
//! written over.

use std::collections::BTreeSet;

use super::{Migration, PLATFORM, SiteOutcome, Stop, replicate};
use crate::db::verify::TableCheck;
use crate::lifecycle::databases::{DbResult, Mode, one, rule_for, selects};
use crate::lifecycle::folded::DATABASES;
use crate::lifecycle::ledger::AFTER_GO_LIVE;
use crate::plan::{DatabaseRule, Site};
use crate::report::plural;
use crate::unit::UnitId;

/// What `settle_owed` did: the owners it compared databases of, and the failures by owner.
#[derive(Default)]
pub(super) struct Settled {
    pub owners: BTreeSet<String>,
    pub failures: Vec<(String, String)>,
}

/// Comparisons this process already tried to settle (one that could not run is not tried
/// twice by one command).
pub(super) type Tried = std::sync::Mutex<BTreeSet<(String, String)>>;

impl Migration<'_> {
    /// The units `owner` still owes a row comparison for, as the journal says.
    fn owed_of(&self, owner: &str) -> Vec<String> {
        crate::lifecycle::state::fold(&self.ledger.site_history(owner))
            .remove(owner)
            .map(|s| s.rows_still_owed().to_vec())
            .unwrap_or_default()
    }

    /// A site found verified by a run that stopped before its switch: the rows still owed
    /// are compared now, in the freeze, as a verification would (nothing can have been
    /// written at the target: it is not live), journaled as `verify`. `Err`: they differ or
    /// could not be compared, and the site must not switch.
    pub(super) fn compare_owed_in_freeze(&self, site: &Site) -> Stop {
        let owed = self.owed_of(&site.name);
        if owed.is_empty() {
            return Ok(());
        }
        let live = self.live();
        for db in &site.databases {
            let unit = format!("database {}", db.name);
            if !owed.contains(&unit)
                || self.held_for_later(&site.name, &db.name)
                || live.why(&UnitId::Database(db.name.clone())).is_some()
            {
                continue;
            }
            self.move_database(&site.name, db, true, false)?;
        }
        Ok(())
    }

    /// Every row comparison `owners` (sites, or `PLATFORM`) still owe for a database that
    /// may be live now, settled: the frozen source compared with the target as it is now,
    /// journaled as `AFTER_GO_LIVE`. Returns the owners worked on, and the failures by owner:
    /// differences (settled, reported), and comparisons that could not run (not journaled:
    /// still owed for the next command).
    pub(super) fn settle_owed(&self, owners: &[&str], label: &str) -> Settled {
        // Only `mode: replicate` owes comparisons: other plans read nothing more.
        if self.stopped() || !self.plan.databases.iter().any(replicate::replicates) {
            return Settled::default();
        }
        let owed: Vec<(String, String)> = owners
            .iter()
            .flat_map(|owner| {
                self.owed_of(owner).into_iter().filter_map(move |unit| {
                    let name = unit.strip_prefix("database ")?;
                    (!self.held_for_later(owner, name))
                        .then(|| (owner.to_string(), name.to_string()))
                })
            })
            .collect();
        if owed.is_empty() {
            return Settled::default();
        }
        let live = self.live();
        let work: Vec<(String, String)> = owed
            .into_iter()
            .filter(|(_, name)| live.why(&UnitId::Database(name.clone())).is_some())
            .filter(|key| {
                self.settle_tried
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone())
            })
            .collect();
        let failures = self.each_database(
            &format!("{label}: {AFTER_GO_LIVE} (snapshot lost)"),
            &work,
            |(owner, name)| {
                self.leased(owner, || self.settle_one(owner, name))
                    .and_then(|r| r)
            },
        );
        Settled {
            owners: work.into_iter().map(|(o, _)| o).collect(),
            failures,
        }
    }

    /// `resume`'s last step: every comparison still owed across the plan, settled. A site
    /// it concerns (for a database of no site, every site that may have switched) gets an
    /// outcome saying how it ended, failed when the rows differ, so the command exits 1.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub(super) fn settle_owed_everywhere(
        &self,
        out: &mut Vec<SiteOutcome>,
    ) -> Result<(), super::LifecycleError> {
        if !self.plan.databases.iter().any(replicate::replicates) {
            return Ok(());
        }
        // One read of the journal finds the owners that owe anything (of the plan as it is).
        let ours: BTreeSet<&str> = self.sites.iter().map(|s| s.name.as_str()).collect();
        let owing: Vec<String> = self
            .statuses()?
            .into_iter()
            .filter(|(owner, s)| {
                (owner == PLATFORM || ours.contains(owner.as_str()))
                    && !s.rows_still_owed().is_empty()
            })
            .map(|(owner, _)| owner)
            .collect();
        let owners: Vec<&str> = owing.iter().map(String::as_str).collect();
        let settled = self.settle_owed(&owners, "resume");
        let platform = settled.owners.contains(PLATFORM);
        for site in &self.sites {
            let concerned = settled.owners.contains(&site.name)
                || (platform && self.state_of(&site.name).may_have_switched());
            if concerned && !out.iter().any(|o| o.site == site.name) {
                // A failure says it all (`mark_after_go_live`); a clean settlement says so.
                let failed = settled.failures.iter().any(|(o, _)| *o == site.name);
                let note = (!failed)
                    .then(|| format!("{AFTER_GO_LIVE}: the rows a crash left owed compared equal"));
                out.push(self.outcome(site, note));
            }
        }
        self.mark_after_go_live(out, &settled.failures);
        Ok(())
    }

    /// The rule that moves `name` of `owner` in the plan as it is now.
    fn owed_rule(&self, owner: &str, name: &str) -> Option<&DatabaseRule> {
        if owner == PLATFORM {
            return self
                .plan
                .databases
                .iter()
                .find(|r| replicate::replicates(r) && selects(r, name));
        }
        let db = self
            .sites
            .iter()
            .find(|s| s.name == owner)?
            .databases
            .iter()
            .find(|d| d.name == name)?;
        rule_for(&self.plan, db)
    }

    /// One owed comparison: the frozen source and the target as it is now, row by row (both
    /// only read), journaled once it ran.
    fn settle_one(&self, owner: &str, name: &str) -> Result<(), String> {
        let Some(rule) = self.owed_rule(owner, name) else {
            return Err(format!(
                "database `{name}`: its rows are owed a comparison after go-live, and no rule of the plan moves it any more: compare it by hand"
            ));
        };
        let r = one(
            &self.plan,
            rule,
            name,
            self.connections,
            Mode::Verify,
            &self.engines.view(DATABASES, owner),
        );
        if let Some(e) = &r.error {
            return Err(format!(
                "database `{name}`: its rows, owed a comparison since a crash lost the snapshot of go-live, could not be compared: {e} (still owed: the next `resume` tries again)"
            ));
        }
        let ok = r.tables.iter().all(|t| t.status == "same");
        let detail = if ok {
            format!(
                "{} compared row by row after a crash lost the snapshot of go-live: the frozen source and the target as it is now are equal",
                plural(r.tables.len() as u64, "table", "tables")
            )
        } else {
            owed_differences(&r, owner)
        };
        self.record_after_go_live(owner, name, ok, detail)
    }
}

/// What a difference between the frozen source and the live target most likely is, read
/// from the rows each side holds per differing key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Likely {
    /// Fewer rows at the target somewhere (or the table gone): users at the new side rarely
    /// delete, so this is the strong signal.
    Missing,
    /// Rows the same in number, their contents differ: likely updates made at the new side.
    Changed,
    /// More rows at the target only: likely rows written at the new side.
    Added,
    /// A side could not hash the table.
    Unknown,
}

fn likely(t: &TableCheck) -> Likely {
    match t.status.as_str() {
        "missing" => return Likely::Missing,
        "extra" => return Likely::Added,
        "error" => return Likely::Unknown,
        _ => {}
    }
    let counts: Vec<(u64, u64)> = if t.differing_ranges.is_empty() {
        vec![(t.rows_source, t.rows_target)]
    } else {
        t.differing_ranges
            .iter()
            .map(|k| (k.rows_source, k.rows_target))
            .collect()
    };
    if counts.iter().any(|(s, d)| s > d) {
        Likely::Missing
    } else if counts.iter().any(|(s, d)| d > s) {
        Likely::Added
    } else {
        Likely::Changed
    }
}

/// The journal's words for owed rows that differ: which tables, their first key range, what
/// each most likely is, and what to do (nothing was written at the target).
fn owed_differences(r: &DbResult, owner: &str) -> String {
    let mut by: Vec<(Likely, String)> = r
        .tables
        .iter()
        .filter(|t| t.status != "same")
        .map(|t| {
            let what = match (t.differing_ranges.first(), &t.note) {
                (Some(k), _) => format!("{} ({}, {k})", t.table, t.status),
                (None, Some(n)) => format!("{} ({}: {n})", t.table, t.status),
                (None, None) => format!("{} ({})", t.table, t.status),
            };
            (likely(t), what)
        })
        .collect();
    by.sort();
    let group = |l: Likely| -> Vec<&str> {
        by.iter()
            .filter(|(k, _)| *k == l)
            .map(|(_, w)| w.as_str())
            .collect()
    };
    let mut parts = Vec::new();
    for (l, words) in [
        (
            Likely::Missing,
            "rows the frozen source holds are missing at the target (writes at the new side rarely delete: check these first, rows the move may have lost)",
        ),
        (
            Likely::Changed,
            "rows changed (likely updates made at the new side since go-live)",
        ),
        (
            Likely::Added,
            "rows only at the target (likely writes made at the new side since go-live)",
        ),
        (Likely::Unknown, "could not be compared"),
    ] {
        let tables = group(l);
        if !tables.is_empty() {
            parts.push(format!("{words}: {}", tables.join(", ")));
        }
    }
    let rollback = super::deferred::rollback_hint(owner);
    let mut found = parts.join("; ");
    if let Some(first) = found.get(..1).map(str::to_uppercase) {
        found.replace_range(..1, &first);
    }
    format!(
        "differ between the frozen source and the target as it is now; they may be writes made at the new side since go-live: the snapshot of go-live was lost in a crash. {found}. Nothing was overwritten at the target (it is live): compare those key ranges by hand, or send visitors back to the source with {rollback} (writes made at the target since the switch stay there only)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::verify::KeyRange;

    fn table(name: &str, status: &str, ranges: &[(u64, u64)]) -> TableCheck {
        TableCheck {
            table: name.into(),
            rows_source: 100,
            rows_target: 100,
            status: status.into(),
            differing_ranges: ranges
                .iter()
                .map(|(s, d)| KeyRange {
                    from: Some("10".into()),
                    before: Some("20".into()),
                    rows_source: *s,
                    rows_target: *d,
                })
                .collect(),
            key: vec!["id".into()],
            key_from: Some("primary key".into()),
            hashed_in_full: false,
            chunks: 1,
            note: None,
        }
    }

    #[test]
    fn a_row_missing_at_the_live_target_is_told_from_new_writes() {
        assert_eq!(
            likely(&table("a", "different", &[(10, 9)])),
            Likely::Missing
        );
        // One range lost a row, another gained some: the loss is what matters.
        assert_eq!(
            likely(&table("a", "different", &[(10, 12), (10, 9)])),
            Likely::Missing
        );
        assert_eq!(likely(&table("a", "different", &[(10, 11)])), Likely::Added);
        assert_eq!(
            likely(&table("a", "different", &[(10, 10)])),
            Likely::Changed
        );
        assert_eq!(likely(&table("a", "missing", &[])), Likely::Missing);
        assert_eq!(likely(&table("a", "extra", &[])), Likely::Added);
        assert_eq!(likely(&table("a", "error", &[])), Likely::Unknown);
        // Hashed in one piece (no key): the table's counts decide.
        let mut whole = table("a", "different", &[]);
        whole.rows_target = 99;
        assert_eq!(likely(&whole), Likely::Missing);
    }

    #[test]
    fn owed_differences_lead_with_the_strong_signal_and_the_lost_snapshot() {
        let mut r = DbResult::nothing_yet(0, "shop");
        r.tables = vec![
            table("orders", "different", &[(10, 11)]),
            table("same", "same", &[]),
            table("users", "different", &[(10, 9)]),
        ];
        let text = owed_differences(&r, "one");
        let missing = text.find("missing at the target").unwrap();
        let added = text.find("rows only at the target").unwrap();
        assert!(missing < added, "{text}");
        assert!(
            text.contains(
                "users (different, keys 10 to before 20 (10 rows at the source, 9 at the target))"
            ),
            "{text}"
        );
        assert!(text.contains("orders (different"), "{text}");
        assert!(!text.contains("same ("), "{text}");
        assert!(
            text.contains("may be writes made at the new side since go-live")
                && text.contains("snapshot of go-live was lost in a crash")
                && text.contains("rollback PLAN --only one")
                && text.contains("Nothing was overwritten"),
            "{text}"
        );
    }
}
