//! `mode: replicate` in the lifecycle (MariaDB/MySQL): a full pre-sync removes the previous
//! connections, dumps (recording each snapshot's position), then sets one connection up per
//! source server from those snapshots; a cutover's final sync waits for the target to reach the
//! source's position once the site is frozen and takes its databases out of replication (the
//! last one out removes the connection and the account); a rollback does the same. Only a
//! connection the servers show running AND whose set-up the journal saw finish is trusted: any
//! other is removed and the database is dumped instead (its site is frozen by then).
//! PostgreSQL (`db::pg_replication`) has one replica per database instead: its pre-sync
//! removes what was left, makes the publication, and its dump creates the slot; the
//! subscription follows the restore; the cutover catches up, sets the sequences and removes it.

use std::time::Duration;

use super::Migration;
use crate::db::pg_replication::{self as pg, Replica};
use crate::db::replication::{self, BinlogPosition, Channel, Step, StepLog};
use crate::db::transfer::Endpoint;
use crate::journal::now;
use crate::lifecycle::ledger::Entry;
use crate::plan::DatabaseRule;
use crate::plan::raw::{DbEngine, DbMode};

/// How long a set-up or removal step may take before it fails (a cutover's wait for the
/// target to catch up is the rule's `replicate_wait`).
const WAIT: Duration = Duration::from_secs(300);

/// Whether `rule` moves its databases by replication.
pub(super) fn replicates(rule: &DatabaseRule) -> bool {
    rule.mode == DbMode::Replicate
}

/// Whether `rule` replicates by PostgreSQL logical replication (one replica per database).
pub(super) fn logical(rule: &DatabaseRule) -> bool {
    replicates(rule) && rule.engine == DbEngine::Postgres
}

impl Migration<'_> {
    /// The replication lock (one change to replication at a time) and both ends of `rule`.
    #[allow(clippy::type_complexity)]
    fn replication_ends(
        &self,
        rule: &DatabaseRule,
    ) -> Result<
        (
            std::sync::MutexGuard<'_, ()>,
            std::sync::Arc<dyn crate::transport::Transport>,
            std::sync::Arc<dyn crate::transport::Transport>,
        ),
        String,
    > {
        let one = self
            .replication_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let from = self
            .connections
            .get(&rule.from.host)
            .map_err(|e| e.to_string())?;
        let to = self
            .connections
            .get(&rule.to.host)
            .map_err(|e| e.to_string())?;
        Ok((one, from, to))
    }

    /// Runs `op` on the channel of `rule` (its source and target servers, over the run's
    /// connections).
    fn on_channel<T>(
        &self,
        rule: &DatabaseRule,
        op: impl FnOnce(&Channel<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        // Sites cut over in parallel share a connection: one change to it at a time.
        let (_one, from, to) = self.replication_ends(rule)?;
        let ch = Channel::new(
            &self.plan.name,
            Endpoint {
                transport: from.as_ref(),
                server: &rule.from,
            },
            Endpoint {
                transport: to.as_ref(),
                server: &rule.to,
            },
        );
        op(&ch)
    }

    /// Journals one step of the channel of `rule` (intent or outcome).
    fn journal_step_for(
        &self,
        rule: &DatabaseRule,
        step: &Step,
        done: bool,
        detail: &str,
    ) -> super::Stop {
        if done && *step == Step::ChannelCreated {
            fault_at("before:replication_set_up");
        }
        self.record(&Entry::Replication {
            channel: replication::names(&self.plan.name, &rule.from).0,
            host: rule.to.host.clone(),
            step: step.clone(),
            done,
            detail: (!detail.is_empty()).then(|| detail.to_string()),
            at: now(),
        })
    }

    /// The replicate rules, one per channel (rules sharing a source and a target share it).
    fn replicate_rules(&self) -> Vec<&DatabaseRule> {
        let mut out: Vec<&DatabaseRule> = Vec::new();
        for r in self
            .plan
            .databases
            .iter()
            .filter(|r| replicates(r) && !logical(r))
        {
            if !out.iter().any(|o| o.from == r.from && o.to == r.to) {
                out.push(r);
            }
        }
        out
    }

    /// Before a full pre-sync dumps again: every connection and account of the plan removed
    /// (a running connection would write into databases being replaced).
    pub(super) fn stop_replication(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for rule in self.replicate_rules() {
            let log = |s: &Step, d: bool, w: &str| self.journal_step_for(rule, s, d, w);
            if let Err(e) = self.on_channel(rule, |ch| replication::remove(ch, &log)) {
                failures.push(format!("databases[{}]: replication: {e}", rule.index));
            }
        }
        failures
    }

    /// Once a full pre-sync dumped: one connection per source server, from the positions of
    /// the snapshots this run took.
    pub(super) fn start_replication(&self) -> Vec<String> {
        let taken = std::mem::take(&mut *self.snapshots.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failures = Vec::new();
        for rule in self.replicate_rules() {
            let dbs: Vec<(String, BinlogPosition)> = taken
                .iter()
                .filter(|(i, _, _)| {
                    self.plan
                        .databases
                        .iter()
                        .any(|r| r.index == *i && r.from == rule.from && r.to == rule.to)
                })
                .map(|(_, n, p)| (n.clone(), p.clone()))
                .collect();
            if dbs.is_empty() {
                continue;
            }
            let log = |s: &Step, d: bool, w: &str| self.journal_step_for(rule, s, d, w);
            if let Err(e) = self.on_channel(rule, |ch| replication::set_up(ch, &dbs, &log, WAIT)) {
                failures.push(format!("databases[{}]: replication: {e}", rule.index));
            }
        }
        failures
    }

    /// Whether the servers of `rule` can replicate (checked once per run): when they cannot,
    /// the rule's databases are dumped as under `mode: dump`, and the journal says why.
    pub(super) fn replication_possible(&self, rule: &DatabaseRule) -> bool {
        if let Some(known) = self
            .replication_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rule.index)
        {
            return *known;
        }
        let problems = if logical(rule) {
            self.connections
                .get(&rule.from.host)
                .map_err(|e| e.to_string())
                .map(|from| {
                    let end = Endpoint {
                        transport: from.as_ref(),
                        server: &rule.from,
                    };
                    replication::pg_prerequisites(&end, &[]).0.problems
                })
                .unwrap_or_else(|e| vec![e])
        } else {
            self.on_channel(rule, |ch| Ok(replication::prerequisites(ch).problems))
                .unwrap_or_else(|e| vec![e])
        };
        let possible = problems.is_empty();
        if !possible {
            let _ = self.record(&Entry::Unit {
                site: super::PLATFORM.to_string(),
                unit: format!("databases[{}]", rule.index),
                step: "replication".into(),
                ok: true,
                detail: Some(format!(
                    "dumped instead of replicated: {}",
                    problems.join("; ")
                )),
                bytes: None,
                at: now(),
            });
        }
        self.replication_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rule.index, possible);
        possible
    }

    /// Whether the journal saw the set-up of `channel` finish after its last intent.
    fn set_up_journaled(&self, channel: &str) -> bool {
        let mut finished = false;
        for e in self
            .ledger
            .entries_of(&[super::super::ledger::Kind::Replication])
        {
            if let Entry::Replication {
                channel: c,
                step,
                done,
                ..
            } = &e
                && c == channel
            {
                match step {
                    Step::ChannelCreated => finished = *done,
                    Step::ChannelRemoved if *done => finished = false,
                    _ => {}
                }
            }
        }
        finished
    }

    /// `Ok(None)`: `name` is replicated by a trusted connection, caught up now (its site is
    /// frozen) and taken out of it; `Ok(Some(why))`: not replicated (anything left is removed
    /// from the connection), the caller dumps it.
    pub(super) fn replicated_final(
        &self,
        rule: &DatabaseRule,
        name: &str,
    ) -> Result<Option<String>, String> {
        if logical(rule) {
            return self.pg_replicated_final(rule, name);
        }
        let log = |s: &Step, d: bool, w: &str| self.journal_step_for(rule, s, d, w);
        self.on_channel(rule, |ch| {
            let s = replication::state(ch)?;
            let why = if !s.channel {
                Some("no replication connection at the target".to_string())
            } else if !self.set_up_journaled(&ch.name) {
                Some("the journal never saw its set-up finish".to_string())
            } else if let Some(e) = &s.error {
                Some(format!("replication stopped on an error: {e}"))
            } else if !(s.io_running && s.sql_running) {
                Some("replication is not running".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                if s.channel {
                    replication::remove(ch, &log)?;
                }
                return Ok(Some(why));
            }
            // A database the connection never took (its pre-sync failed): the others keep it.
            if !s.databases.iter().any(|d| d == name) {
                return Ok(Some("not in the replication filter".to_string()));
            }
            replication::catch_up(ch, rule.replicate_wait, &log)?;
            replication::detach(ch, name, &log)?;
            Ok(None)
        })
    }

    /// A rollback: the site's replicated databases leave the connection.
    pub(super) fn detach_replication(&self, rule: &DatabaseRule, name: &str) -> super::Stop {
        if logical(rule) {
            return self.on_replica(rule, name, |r, log| pg::remove(r, WAIT, log));
        }
        let log = |s: &Step, d: bool, w: &str| self.journal_step_for(rule, s, d, w);
        self.on_channel(rule, |ch| replication::detach(ch, name, &log))
    }

    /// A pre-sync of one database (not a full sync) while its connection runs: left to it.
    pub(super) fn replicating_now(&self, rule: &DatabaseRule, name: &str) -> bool {
        if logical(rule) {
            return self
                .on_replica(rule, name, |r, _| {
                    let s = pg::state(r)?;
                    Ok(s.subscription.as_deref() == Some(name)
                        && s.enabled
                        && s.slot
                        && self.set_up_journaled(&r.name))
                })
                .unwrap_or(false);
        }
        self.on_channel(rule, |ch| {
            let s = replication::state(ch)?;
            Ok(s.channel
                && s.error.is_none()
                && s.databases.iter().any(|d| d == name)
                && self.set_up_journaled(&ch.name))
        })
        .unwrap_or(false)
    }
}

impl Migration<'_> {
    /// Runs `op` on the replica of database `name` of `rule` (PostgreSQL), with the log that
    /// journals its steps.
    fn on_replica<T>(
        &self,
        rule: &DatabaseRule,
        name: &str,
        op: impl FnOnce(&Replica<'_>, StepLog<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        let (_one, from, to) = self.replication_ends(rule)?;
        let r = Replica::new(
            &self.plan.name,
            Endpoint {
                transport: from.as_ref(),
                server: &rule.from,
            },
            Endpoint {
                transport: to.as_ref(),
                server: &rule.to,
            },
            name,
        );
        let log = |s: &Step, d: bool, w: &str| self.journal_replica_step(rule, &r.name, s, d, w);
        op(&r, &log)
    }

    fn journal_replica_step(
        &self,
        rule: &DatabaseRule,
        replica: &str,
        step: &Step,
        done: bool,
        detail: &str,
    ) -> super::Stop {
        if done && *step == Step::SlotCreated {
            fault_at("before:replication_slot");
        }
        self.record(&Entry::Replication {
            channel: replica.to_string(),
            host: rule.to.host.clone(),
            step: step.clone(),
            done,
            detail: (!detail.is_empty()).then(|| detail.to_string()),
            at: now(),
        })
    }

    /// Before a pre-sync dumps database `name` of a PostgreSQL replicate rule: whatever an
    /// earlier run left of its replica is removed (a running subscription would write into the
    /// copy being replaced), then `Ok(None)`: its publication exists and the dump creates its
    /// slot (intent journaled); `Ok(Some(why))`: it is dumped without replication (a table
    /// without a replica identity, no room left in the source's slot budget).
    pub(super) fn pg_before_dump(
        &self,
        rule: &DatabaseRule,
        name: &str,
    ) -> Result<Option<String>, String> {
        self.on_replica(rule, name, |r, log| {
            pg::remove(r, WAIT, log)?;
            let (_, per_db) = replication::pg_prerequisites(&r.from, &[name.to_string()]);
            if let Some((_, tables)) = per_db.first()
                && !tables.is_empty()
            {
                return Ok(Some(format!(
                    "tables without a replica identity: {}",
                    tables.join(", ")
                )));
            }
            if let Err(why) = pg::room_for_one(&r.from) {
                return Ok(Some(why));
            }
            pg::publish(r, log)?;
            log(&Step::SlotCreated, false, &r.name)?;
            Ok(None)
        })
    }

    /// After that dump: when it copied, the slot's creation journaled and the subscription set
    /// up at the target; otherwise what was made for it is removed.
    pub(super) fn pg_after_dump(
        &self,
        rule: &DatabaseRule,
        name: &str,
        copied: bool,
    ) -> super::Stop {
        self.on_replica(rule, name, |r, log| {
            if !copied {
                return pg::remove(r, WAIT, log);
            }
            log(&Step::SlotCreated, true, &r.name)?;
            pg::subscribe(r, log)
        })
    }

    /// The cutover of database `name` (its site frozen): `Ok(None)` once a trusted
    /// subscription caught up, its sequences are set and the replica removed; `Ok(Some(why))`
    /// when it is not trusted (anything left is removed), the caller dumps it.
    fn pg_replicated_final(
        &self,
        rule: &DatabaseRule,
        name: &str,
    ) -> Result<Option<String>, String> {
        self.on_replica(rule, name, |r, log| {
            let s = pg::state(r)?;
            let why = if s.subscription.as_deref() != Some(name) {
                Some("no subscription at the target")
            } else if !self.set_up_journaled(&r.name) {
                Some("the journal never saw its set-up finish")
            } else if !s.enabled {
                Some("the subscription is disabled")
            } else if !s.slot {
                Some("its replication slot is gone from the source")
            } else {
                None
            };
            if let Some(why) = why {
                if s.anything() {
                    pg::remove(r, WAIT, log)?;
                }
                return Ok(Some(why.to_string()));
            }
            pg::catch_up(r, rule.replicate_wait, log)?;
            pg::copy_sequences(r, log)?;
            pg::remove(r, WAIT, log)?;
            Ok(None)
        })
    }
}

/// Crash tests: `TRANSHUMANCE_FAULT=before:replication_set_up` kills the process once the
/// connection exists at the target and before its outcome is journaled.
/// `before:replication_slot` once a PostgreSQL slot exists, before its outcome is journaled.
fn fault_at(point: &str) {
    if std::env::var("TRANSHUMANCE_FAULT").as_deref() == Ok(point) {
        // SAFETY: signalling our own process; SIGKILL cannot be caught, like `kill -9`.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
