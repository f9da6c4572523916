//! Every database of a plan: selected by the rules' names and patterns, moved in parallel,
//! then verified table by table.

use std::sync::Mutex;

use serde::Serialize;

use super::Connections;
use crate::db::discover::{list_databases, selected};
use crate::db::transfer::{Endpoint, Moved, Options, transfer};
use crate::db::verify::{Side, TableCheck, verify_database};
use crate::event::{Event, Observer};
use crate::plan::{DatabaseRule, Plan};

/// One database's outcome in a plan run.
#[derive(Debug, Clone, Serialize)]
pub struct DbResult {
    pub rule: usize,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Moved>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DbResult {
    /// Whether the database is identical at both ends (when it was verified).
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.tables.iter().all(|t| t.status == "same")
    }
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
        .filter(|n| {
            selected(n, &rule.names, &rule.exclude) && (only.is_empty() || only.contains(n))
        })
        .collect())
}

/// Moves (when `copy`) and verifies every selected database, `plan.defaults.jobs` at a time.
pub fn run(
    plan: &Plan,
    connections: &Connections,
    only: &[String],
    copy: bool,
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
                error: Some(e),
            }),
        }
    }
    let phase = if copy {
        "databases"
    } else {
        "verify databases"
    };
    observer.on_event(&Event::PhaseStarted {
        phase: phase.into(),
        total: work.len() as u64,
    });
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = Mutex::new(results);
    std::thread::scope(|s| {
        for _ in 0..plan.defaults.jobs.max(1) {
            s.spawn(|| {
                while let Some((rule, name)) =
                    work.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let r = one(plan, rule, name, connections, copy);
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

pub fn one(
    plan: &Plan,
    rule: &DatabaseRule,
    name: &str,
    connections: &Connections,
    copy: bool,
) -> DbResult {
    let mut r = DbResult {
        rule: rule.index,
        name: name.to_string(),
        moved: None,
        tables: Vec::new(),
        error: None,
    };
    let (from, to) = match (
        connections.get(&rule.from.host),
        connections.get(&rule.to.host),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    if copy {
        match transfer(
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
            },
        ) {
            Ok(m) => {
                let skipped = m.outcome == "skipped";
                r.moved = Some(m);
                if skipped {
                    return r;
                }
            }
            Err(e) => {
                r.error = Some(e);
                return r;
            }
        }
    }
    match verify_database(
        rule.engine,
        &Side {
            transport: from.as_ref(),
            server: &rule.from,
            database: name,
        },
        &Side {
            transport: to.as_ref(),
            server: &rule.to,
            database: name,
        },
        10_000,
    ) {
        Ok(t) => r.tables = t,
        Err(e) => r.error = Some(e),
    }
    r
}
