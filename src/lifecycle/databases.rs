//! Every database of a plan: selected by the rules' names and patterns, moved in parallel,
//! then verified table by table. A database that may be live on the new side is never
//! overwritten: the caller's gate decides, database by database, before anything is written.

use std::sync::Mutex;

use serde::Serialize;

use super::Connections;
use super::guard::{Guarded, Live};
use super::state::SiteState;
use crate::db::discover::{list_databases, selected};
use crate::db::transfer::{Endpoint, Moved, Options, transfer_observed};
use crate::db::verify::{
    DEFAULT_CHUNK_ROWS, FactDiff, SessionPool, Side, Skipped, Snapshot, TableCheck, VerifyOptions,
    verify_in,
};
use crate::event::{Event, Observer};
use crate::plan::{DatabaseRule, Plan};
use crate::unit::{ErrorKind, UnitError, UnitId};

/// A database left alone at the target because it may be live there (users may have written
/// to it since the switch): nothing was dropped, copied or compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveSkip {
    /// The site whose DNS may have moved, and its state.
    pub site: String,
    pub state: SiteState,
    /// Why, in words (a site's state, or a DNS name switched outside any site).
    pub because: String,
    /// The refusal in full, naming the database and the override.
    pub message: String,
}

/// Decides, database by database, whether the copy at the target may be replaced.
pub trait LiveGate: Sync {
    /// `Ok(None)`: write it; `Ok(Some(skip))`: leave it alone, it may be live.
    ///
    /// # Errors
    /// The decision could not be made safely (an override that could not be journaled): the
    /// database must not be written either.
    fn admit(&self, database: &str) -> Result<Option<LiveSkip>, UnitError>;
}

/// The lifecycle's gate: where every site stands now, no overrides.
impl LiveGate for Live {
    fn admit(&self, database: &str) -> Result<Option<LiveSkip>, UnitError> {
        let unit = UnitId::Database(database.to_string());
        Ok(self.check(&unit, &[]).err().map(|refusal| LiveSkip {
            site: refusal.because.site.clone(),
            state: refusal.because.state,
            because: refusal.because.to_string(),
            message: refusal.to_string(),
        }))
    }
}

/// The gate of a verb outside the lifecycle (`db sync`): overrides named in `--allow-live`
/// are journaled before the database is written.
impl LiveGate for Mutex<Guarded> {
    fn admit(&self, database: &str) -> Result<Option<LiveSkip>, UnitError> {
        let unit = UnitId::Database(database.to_string());
        let mut guard = self.lock().unwrap_or_else(|p| p.into_inner());
        let Some(because) = guard.live().why(&unit) else {
            return Ok(None);
        };
        match guard.check(&unit) {
            Ok(()) => Ok(None),
            Err(e) if e.kind == ErrorKind::Unsafe => Ok(Some(LiveSkip {
                because: because.to_string(),
                site: because.site,
                state: because.state,
                message: e.message,
            })),
            Err(e) => Err(e),
        }
    }
}

/// What a run does to each database.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// Compare both ends, write nothing.
    Verify,
    /// Copy (each database the gate admits), then verify.
    Copy(&'a dyn LiveGate),
}

/// One database's outcome in a plan run.
#[derive(Debug, Clone, Serialize)]
pub struct DbResult {
    pub rule: usize,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Moved>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCheck>,
    /// Catalog facts that differ (owners, privileges, settings, roles, grants).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<FactDiff>,
    /// Catalog facts compared.
    #[serde(skip_serializing_if = "is_zero")]
    pub properties_compared: usize,
    /// What verification left out, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (`authentication`, `unreachable`, `missing`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<crate::unit::ErrorKind>,
    /// Left alone because it may be live at the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveSkip>,
}

impl DbResult {
    /// Database `name` of rule `rule`, nothing done to it yet.
    pub fn nothing_yet(rule: usize, name: &str) -> DbResult {
        DbResult {
            rule,
            name: name.to_string(),
            moved: None,
            tables: Vec::new(),
            properties: Vec::new(),
            properties_compared: 0,
            skipped: Vec::new(),
            error: None,
            error_kind: None,
            live: None,
        }
    }

    /// Whether the database is identical at both ends (when it was verified); one left alone
    /// because it may be live is clean too (callers that must refuse look at `live`).
    pub fn clean(&self) -> bool {
        self.error.is_none()
            && self.tables.iter().all(|t| t.status == "same")
            && self.properties.is_empty()
    }

    /// What differs, in a few words: the tables, then the count of catalog facts.
    pub fn differences(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tables
            .iter()
            .filter(|t| t.status != "same")
            .map(|t| t.table.clone())
            .collect();
        if !self.properties.is_empty() {
            out.push(format!(
                "{} (owners, privileges, settings, grants)",
                crate::report::plural(
                    self.properties.len() as u64,
                    "catalog fact",
                    "catalog facts"
                )
            ));
        }
        out
    }

    /// What a clean verification covered, in a few words (journaled with the unit).
    pub fn verified(&self) -> String {
        let mut s = format!(
            "{} and {} verified",
            crate::report::plural(self.tables.len() as u64, "table", "tables"),
            crate::report::plural(
                self.properties_compared as u64,
                "catalog fact",
                "catalog facts"
            )
        );
        if !self.skipped.is_empty() {
            let names: Vec<&str> = self.skipped.iter().map(|k| k.object.as_str()).collect();
            s.push_str(&format!("; skipped: {}", names.join(", ")));
        }
        s
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Whether `rule` moves database `name`: its `names` and `exclude`, and never a database the
/// inventory left out (`DatabaseRule::left_out`). Every selection of a database goes through
/// here, so the review and the move agree.
pub fn selects(rule: &DatabaseRule, name: &str) -> bool {
    !rule.left_out.contains(name) && selected(name, &rule.names, &rule.exclude)
}

/// The rule that moves database `db`: the first whose names select it, among the rules of its
/// engine when the inventory knows the engine (a panel does).
pub fn rule_for<'p>(plan: &'p Plan, db: &crate::plan::SiteDatabase) -> Option<&'p DatabaseRule> {
    plan.databases
        .iter()
        .find(|r| db.fits(r.engine) && selects(r, &db.name))
}

/// The VHFFS panel's own database, when a `databases:` rule moves it: that rule and the name.
/// It describes every other object, so it moves last (see `Migration`).
pub fn panel_database(plan: &Plan) -> Option<(&DatabaseRule, String)> {
    let Some(crate::plan::InventorySource::Vhffs(v)) = &plan.inventory else {
        return None;
    };
    let p = &v.panel;
    plan.databases
        .iter()
        .find(|r| {
            r.engine == crate::plan::raw::DbEngine::Postgres
                && r.from.host == p.host
                && r.from.socket == p.socket
                && r.from.address == p.address
                && r.from.port == p.port
                && selects(r, &v.database)
        })
        .map(|r| (r, v.database.clone()))
}

/// The databases a rule selects on its source server.
///
/// # Errors
/// The source server cannot be listed.
pub fn names(
    rule: &DatabaseRule,
    connections: &Connections,
    only: &[String],
) -> Result<Vec<String>, String> {
    let t = connections
        .get(&rule.from.host)
        .map_err(|e| e.to_string())?;
    Ok(list_databases(t.as_ref(), rule.engine, &rule.from)?
        .into_iter()
        .map(|d| d.name)
        .filter(|n| selects(rule, n) && (only.is_empty() || only.contains(n)))
        .collect())
}

/// Moves (under `Mode::Copy`) and verifies every selected database, `plan.defaults.jobs` at a
/// time.
pub fn run(
    plan: &Plan,
    connections: &Connections,
    only: &[String],
    mode: Mode<'_>,
    observer: &dyn Observer,
) -> Vec<DbResult> {
    let mut work: Vec<(&DatabaseRule, String)> = Vec::new();
    let mut results = Vec::new();
    for rule in &plan.databases {
        match names(rule, connections, only) {
            Ok(list) => work.extend(list.into_iter().map(|n| (rule, n))),
            Err(e) => results.push(DbResult {
                rule: rule.index,
                name: format!("databases[{}]", rule.index),
                moved: None,
                tables: Vec::new(),
                properties: Vec::new(),
                properties_compared: 0,
                skipped: Vec::new(),
                error_kind: Some(crate::db::failure_kind(&e)),
                error: Some(e),
                live: None,
            }),
        }
    }
    let phase = match mode {
        Mode::Copy(_) => "databases",
        Mode::Verify => "verify databases",
    };
    observer.on_event(&Event::PhaseStarted {
        phase: phase.into(),
        total: work.len() as u64,
    });
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = Mutex::new(results);
    // Verification clients kept for the whole run: one per server and worker.
    let pool = SessionPool::new();
    std::thread::scope(|s| {
        for _ in 0..plan.defaults.jobs.max(1) {
            s.spawn(|| {
                while let Some((rule, name)) =
                    work.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let r =
                        moved(&pool, plan, rule, name, connections, mode, observer).classified();
                    match &r.error {
                        Some(e) => observer.on_event(&Event::UnitFailed {
                            phase: phase.into(),
                            unit: name.clone(),
                            error: e.clone(),
                        }),
                        None => observer.on_event(&Event::UnitDone {
                            phase: phase.into(),
                            unit: name.clone(),
                        }),
                    }
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    });
    observer.on_event(&Event::PhaseFinished {
        phase: phase.into(),
    });
    let mut results = out.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| (a.rule, &a.name).cmp(&(b.rule, &b.name)));
    results
}

impl DbResult {
    /// Sorts `error` into its kind, read once from the client's message.
    fn classified(mut self) -> DbResult {
        self.error_kind = self.error.as_deref().map(crate::db::failure_kind);
        self
    }
}

/// Moves (under `Mode::Copy`, when the gate admits it) and verifies one database. One the gate
/// holds back is neither written nor compared: its result carries `live`. A move whose
/// connection dropped under it (a transport reports itself lost) is done again on fresh
/// connections, with the backoff of `connections`: a copy of ours is replaced by the next one.
/// `observer` hears of the dump's bytes as they stream.
pub fn one(
    plan: &Plan,
    rule: &DatabaseRule,
    name: &str,
    connections: &Connections,
    mode: Mode<'_>,
    observer: &dyn Observer,
) -> DbResult {
    moved(
        &SessionPool::new(),
        plan,
        rule,
        name,
        connections,
        mode,
        observer,
    )
    .classified()
}

/// As `one`, verifying on the clients of `pool`; its error not yet sorted by kind.
fn moved(
    pool: &SessionPool,
    plan: &Plan,
    rule: &DatabaseRule,
    name: &str,
    connections: &Connections,
    mode: Mode<'_>,
    observer: &dyn Observer,
) -> DbResult {
    let mut r = DbResult::nothing_yet(rule.index, name);
    if let Mode::Copy(gate) = mode {
        match gate.admit(name) {
            Ok(None) => {}
            Ok(Some(skip)) => {
                r.live = Some(skip);
                return r;
            }
            Err(e) => {
                r.error = Some(e.to_string());
                return r;
            }
        }
    }
    let backoff = connections.backoff();
    let mut wait = backoff.base;
    for tries_left in (0..backoff.attempts.max(1)).rev() {
        let (result, dropped) = attempt(
            pool,
            plan,
            rule,
            name,
            connections,
            mode,
            r.clone(),
            observer,
        );
        if !(dropped && tries_left > 0) {
            return result;
        }
        // Clients on the lost connection are gone; none may stay connected to the database
        // about to be written again.
        pool.clear();
        std::thread::sleep(wait);
        wait = wait.saturating_mul(2);
    }
    unreachable!("the last try returns")
}

/// One try of `one`: its result, and whether it failed because a connection dropped.
#[allow(clippy::too_many_arguments)]
fn attempt(
    pool: &SessionPool,
    plan: &Plan,
    rule: &DatabaseRule,
    name: &str,
    connections: &Connections,
    mode: Mode<'_>,
    mut r: DbResult,
    observer: &dyn Observer,
) -> (DbResult, bool) {
    let (from, to) = match (
        connections.get(&rule.from.host),
        connections.get(&rule.to.host),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            r.error = Some(e.to_string());
            return (r, false);
        }
    };
    let dropped = || from.lost().is_some() || to.lost().is_some();
    if let Mode::Copy(_) = mode {
        match transfer_observed(
            rule.engine,
            &Endpoint {
                transport: from.as_ref(),
                server: &rule.from,
            },
            &Endpoint {
                transport: to.as_ref(),
                server: &rule.to,
            },
            name,
            &Options {
                conflict: rule.conflict,
                plan: &plan.name,
                min_free_space: rule.min_free_space,
                split_tables_above: rule.split_tables_above,
                jobs: plan.defaults.jobs.max(1),
                connected_clients: rule.connected_clients,
                connected_clients_timeout: rule.connected_clients_timeout,
                replicate: rule.mode == crate::plan::raw::DbMode::Replicate,
                pg_slot: (rule.mode == crate::plan::raw::DbMode::Replicate
                    && rule.engine == crate::plan::raw::DbEngine::Postgres)
                    .then(|| crate::db::pg_replication::name(&plan.name, &rule.from, name)),
            },
            observer,
        ) {
            Ok(m) => {
                let skipped = m.outcome == "skipped";
                r.moved = Some(m);
                if skipped {
                    return (r, false);
                }
            }
            Err(e) => {
                r.error = Some(e);
                return (r, dropped());
            }
        }
    }
    if let Err(e) = compare_into(pool, rule, name, (from.as_ref(), to.as_ref()), true, &mut r) {
        r.error = Some(e);
        return (r, dropped());
    }
    (r, false)
}

/// Compares `rule`'s database `name` between its source and target (`sides`) in the sessions
/// of `pool`, rows or catalogs only, into `r`.
fn compare_into(
    pool: &SessionPool,
    rule: &DatabaseRule,
    name: &str,
    (from, to): (
        &dyn crate::transport::Transport,
        &dyn crate::transport::Transport,
    ),
    rows: bool,
    r: &mut DbResult,
) -> Result<(), String> {
    let v = verify_in(
        pool,
        rule.engine,
        &Side {
            transport: from,
            server: &rule.from,
            database: name,
        },
        &Side {
            transport: to,
            server: &rule.to,
            database: name,
        },
        &VerifyOptions {
            chunk_rows: DEFAULT_CHUNK_ROWS,
            schemas: rule.schemas.clone(),
            rows,
        },
    )?;
    r.tables = v.tables;
    r.properties = v.properties;
    r.properties_compared = v.properties_compared;
    r.skipped = v.skipped;
    Ok(())
}

/// Holds a snapshot of database `name` at the target of `rule`, for `compare_held`: taken
/// once the target applied the source's last position and before any write can reach it
/// there.
///
/// # Errors
/// The target is unreachable or could not hold a transaction open.
pub fn hold(
    rule: &DatabaseRule,
    name: &str,
    connections: &Connections,
) -> Result<Snapshot, String> {
    let to = connections.get(&rule.to.host).map_err(|e| e.to_string())?;
    Snapshot::take(to.as_ref(), rule.engine, &rule.to, name)
}

/// Compares database `name`: the source as it is now (frozen), the target as `snapshot` saw
/// it, whatever was written there since. `rows: false`: the catalogs only (tables, columns,
/// keys, catalog facts), in time independent of the rows.
pub fn compare_held(
    rule: &DatabaseRule,
    name: &str,
    connections: &Connections,
    snapshot: &Snapshot,
    rows: bool,
) -> DbResult {
    let mut r = DbResult::nothing_yet(rule.index, name);
    let (from, to) = match (
        connections.get(&rule.from.host),
        connections.get(&rule.to.host),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            r.error = Some(e.to_string());
            return r.classified();
        }
    };
    let pool = SessionPool::within(snapshot);
    if let Err(e) = compare_into(
        &pool,
        rule,
        name,
        (from.as_ref(), to.as_ref()),
        rows,
        &mut r,
    ) {
        r.error = Some(e);
    }
    r.classified()
}
