//! Moves one database: dump on the source host with the server's own tool, streamed into the
//! target's restore tool; the engine-specific halves live in `mariadb.rs` and `postgres.rs`.

use serde::Serialize;

use super::discover::{find_tool, query, tool_request};
use super::plan::DbAction;
use super::sql_literal as lit;
use crate::event::{Event, Observer};
use crate::plan::DbServer;
use crate::plan::raw::{ConflictPolicy, ConnectedClients, DbEngine};
use crate::transport::Transport;
use crate::transport::pipe::pipe_watched;

/// One side of a move.
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    pub transport: &'a dyn Transport,
    pub server: &'a DbServer,
}

/// The plan's policies for moving one database.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    pub conflict: ConflictPolicy,
    /// The plan's name, written in the marker comment of every database we create.
    pub plan: &'a str,
    /// Bytes to keep free on the target's data directory once the copy is in.
    pub min_free_space: u64,
    /// Tables above this size move as streams of their own.
    pub split_tables_above: u64,
    /// Streams at once when a database is split.
    pub jobs: usize,
    /// PostgreSQL: clients connected to the copy being replaced, and how long to wait for them.
    pub connected_clients: ConnectedClients,
    pub connected_clients_timeout: std::time::Duration,
    /// `mode: replicate`: one consistent dump (no table split off), its binlog position read
    /// (MariaDB/MySQL), for the target to replicate from.
    pub replicate: bool,
    /// PostgreSQL `mode: replicate`: the logical slot to create with the dump's snapshot
    /// (`pg_replication`), its publication made beforehand.
    pub pg_slot: Option<String>,
}

impl<'a> Options<'a> {
    /// The plan's defaults: 1 GiB kept free, tables above 64 MiB split, 4 streams, 30 s of
    /// waiting for connected clients to leave.
    pub fn new(conflict: ConflictPolicy, plan: &'a str) -> Self {
        Options {
            conflict,
            plan,
            min_free_space: 1 << 30,
            split_tables_above: 64 << 20,
            jobs: 4,
            connected_clients: ConnectedClients::Wait,
            connected_clients_timeout: std::time::Duration::from_secs(30),
            replicate: false,
            pg_slot: None,
        }
    }
}

/// The programs that dump at the source and restore at the target, as they are named there,
/// and who hears of the dump's bytes as they stream.
pub(super) struct Tools<'a> {
    pub(super) dump: String,
    pub(super) restore: String,
    pub(super) observer: &'a dyn Observer,
    /// Replication: the dump's snapshot position, read from its head as it streams.
    pub(super) position: Option<&'a std::sync::Mutex<super::replication::HeadReader>>,
}

/// What happened to one database.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub name: String,
    /// `copied`, `skipped` (a conflict under `skip`).
    pub outcome: String,
    /// Bytes of dump that went through.
    pub bytes: u64,
    /// Tables that moved as streams of their own (above `split_tables_above`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub split_tables: Vec<String>,
    /// Users (MariaDB `'user'@'host'`) created or updated at the target with their grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the move could not carry or left behind, for the operator (passwords the source
    /// would not let us read, sessions ended, a copy that could not be dropped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `mode: replicate`: where in the source's binary log the dump's snapshot stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<super::replication::BinlogPosition>,
}

pub(super) fn sql(
    engine: DbEngine,
    end: &Endpoint<'_>,
    statement: &str,
) -> Result<Vec<Vec<String>>, String> {
    query(end.transport, engine, end.server, None, statement)
}

/// The mark that says a target database is ours (so a re-run may replace it): MariaDB keeps it
/// as the database's comment, PostgreSQL in a `transhumance.plan` setting (`postgres::mark_sql`).
pub fn marker(plan: &str) -> String {
    format!("created by transhumance for plan {plan}")
}

/// The ownership mark of database `name` at `end` (`None` when it does not exist): its comment
/// for MariaDB; for PostgreSQL our `transhumance.plan` setting spelled as `marker`, else its
/// comment.
///
/// # Errors
/// The server cannot be queried.
pub fn comment(engine: DbEngine, end: &Endpoint<'_>, name: &str) -> Result<Option<String>, String> {
    let q = match engine {
        // A `=` in front, so an empty comment is still a line of output.
        DbEngine::Postgres => format!(
            "SELECT '=' || {} FROM pg_database d WHERE datname = {}",
            super::postgres::mark_sql(),
            lit(name)
        ),
        _ => format!(
            "SELECT CONCAT('=', COALESCE(schema_comment, '')) FROM information_schema.schemata WHERE schema_name = {}",
            lit(name)
        ),
    };
    Ok(sql(engine, end, &q)?.into_iter().next().map(|r| {
        r.into_iter()
            .next()
            .unwrap_or_default()
            .trim_start_matches('=')
            .to_string()
    }))
}

/// Copies database `name` from `from` to `to`, replacing a previous copy of ours.
///
/// # Errors
/// A conflict under `fail`, an unreachable server, a missing tool, a dump or restore that
/// failed: each names the host and database, and leaves nothing half-written under `name`.
pub fn transfer(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    options: &Options<'_>,
) -> Result<Moved, String> {
    transfer_observed(engine, from, to, name, options, &crate::event::Silent)
}

/// As `transfer`, telling `observer` of the database as it starts streaming and of the dump's
/// bytes as they pass (phase `databases`; the total is unknown until the dump ends).
///
/// # Errors
/// As `transfer`.
pub fn transfer_observed(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    options: &Options<'_>,
    observer: &dyn Observer,
) -> Result<Moved, String> {
    let ours = marker(options.plan);
    let at = |e: &Endpoint<'_>| format!("database `{name}` on host `{}`", e.transport.host());
    // A server that is down or refuses us is named with the database we were about to move.
    if comment(engine, from, name)
        .map_err(|e| format!("{}: {e}", at(from)))?
        .is_none()
    {
        return Err(format!("{}: does not exist", at(from)));
    }
    let (dump, restore) = match engine {
        DbEngine::Postgres => ("pg_dump", "pg_restore"),
        _ => ("mariadb-dump", "mariadb"),
    };
    let replicating = options.replicate && engine != DbEngine::Postgres;
    let head = std::sync::Mutex::new(super::replication::HeadReader::default());
    // Both tools are looked for before the target is touched.
    let tools = Tools {
        dump: find_tool(from.transport, engine, from.server, dump)
            .map_err(|e| format!("{}: {e}", at(from)))?,
        restore: find_tool(to.transport, engine, to.server, restore)
            .map_err(|e| format!("{}: {e}", at(to)))?,
        observer,
        position: replicating.then_some(&head),
    };
    let existing = comment(engine, to, name).map_err(|e| format!("{}: {e}", at(to)))?;
    match super::plan::decide(name, existing.as_deref(), options.plan, options.conflict).action {
        DbAction::Conflict => {
            return Err(format!(
                "{}: exists and was not created by this plan (conflict: fail); set `conflict: replace` or `skip`",
                at(to)
            ));
        }
        DbAction::Skip => {
            return Ok(Moved {
                name: name.into(),
                outcome: "skipped".into(),
                bytes: 0,
                split_tables: Vec::new(),
                users: Vec::new(),
                note: Some("exists at the target and is not ours (conflict: skip)".into()),
                warnings: Vec::new(),
                position: None,
            });
        }
        DbAction::Create | DbAction::ReplaceOurs | DbAction::ReplaceTheirs => {}
    }
    ensure_space(engine, from, to, name, options.min_free_space)
        .map_err(|e| format!("{}: {e}", at(to)))?;
    // A replicated database is one snapshot: no table is split off into a dump of its own.
    let big = if options.replicate {
        Vec::new()
    } else {
        big_tables(engine, from, name, options.split_tables_above)
            .map_err(|e| format!("{}: {e}", at(from)))?
    };
    observer.on_event(&Event::UnitStarted {
        phase: "databases".into(),
        unit: name.into(),
        bytes: 0,
    });
    match engine {
        DbEngine::Postgres => {
            super::postgres::transfer(from, to, name, existing.is_some(), &tools, &big, options)
        }
        _ => super::mariadb::transfer(engine, from, to, name, &ours, &tools, &big, options),
    }
    .map_err(|e| format!("{}: {e}", at(to)))
    .and_then(|mut moved| {
        if replicating {
            moved.position = head.into_inner().unwrap_or_else(|e| e.into_inner()).position;
            if moved.position.is_none() {
                return Err(format!(
                    "{}: the dump recorded no binary log position (is `log_bin` on at the source?): it cannot be replicated from",
                    at(from)
                ));
            }
        }
        Ok(moved)
    })
}

/// Refuses a copy that would leave less than `min_free` on the target's data directory. The
/// check is skipped when the data directory is not on the target's host (a server reached by
/// TCP from elsewhere) or the server does not say where it is.
fn ensure_space(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    min_free: u64,
) -> Result<(), String> {
    let size_sql = match engine {
        DbEngine::Postgres => format!("SELECT pg_database_size({})", lit(name)),
        _ => format!(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = {}",
            lit(name)
        ),
    };
    let needed: u64 = sql(engine, from, &size_sql)?
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let dir_sql = match engine {
        DbEngine::Postgres => "SELECT current_setting('data_directory', true)",
        _ => "SELECT @@datadir",
    };
    let Some(dir) = sql(engine, to, dir_sql)
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.into_iter().next())
        .filter(|d| d.starts_with('/'))
    else {
        return Ok(());
    };
    let Ok(space) = to.transport.space(std::path::Path::new(&dir)) else {
        return Ok(());
    };
    if space.free_bytes < needed.saturating_add(min_free) {
        return Err(format!(
            "not enough disk: the copy needs about {} and {} must stay free (`min_free_space`), but `{dir}` has {} free; nothing was written",
            crate::plan::units::human_bytes(needed),
            crate::plan::units::human_bytes(min_free),
            crate::plan::units::human_bytes(space.free_bytes)
        ));
    }
    Ok(())
}

/// A table big enough to move as a stream of its own: `(schema, table)`.
pub(super) type TableName = (String, String);

/// Tables of `name` above `threshold` bytes, biggest first.
fn big_tables(
    engine: DbEngine,
    from: &Endpoint<'_>,
    name: &str,
    threshold: u64,
) -> Result<Vec<TableName>, String> {
    let rows = match engine {
        DbEngine::Postgres => query(
            from.transport,
            engine,
            from.server,
            Some(name),
            &format!(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg_toast%' AND pg_total_relation_size(c.oid) > {threshold} \
                 ORDER BY pg_total_relation_size(c.oid) DESC"
            ),
        )?,
        _ => sql(
            engine,
            from,
            &format!(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = {} \
                 AND table_type = 'BASE TABLE' AND data_length + index_length > {threshold} \
                 ORDER BY data_length + index_length DESC",
                lit(name)
            ),
        )?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [schema, table, ..] => Some((schema.clone(), table.clone())),
            _ => None,
        })
        .collect())
}

/// One dump piped into one restore; the bytes that went through.
pub(super) fn stream(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    tools: &Tools,
    dump_args: Vec<String>,
    restore_args: Vec<String>,
) -> Result<u64, String> {
    let dump = tool_request(engine, from.server, &tools.dump, &dump_args)?;
    let restore = tool_request(engine, to.server, &tools.restore, &restore_args)?;
    let moving = |n| {
        tools.observer.on_event(&Event::BytesDone {
            phase: "databases".into(),
            bytes: n,
        })
    };
    let watch = |chunk: &[u8]| {
        if let Some(p) = tools.position {
            p.lock().unwrap_or_else(|e| e.into_inner()).feed(chunk);
        }
    };
    let (a, b, bytes) = pipe_watched(
        from.transport,
        &dump,
        to.transport,
        &restore,
        &moving,
        tools.position.map(|_| &watch as &dyn Fn(&[u8])),
    )
    .map_err(|e| e.to_string())?;
    check(&tools.dump, &a).and_then(|()| check(&tools.restore, &b))?;
    Ok(bytes)
}

/// Runs `streams` at most `jobs` at a time; the total bytes, or the first error.
pub(super) fn parallel_streams(
    jobs: usize,
    streams: Vec<Box<dyn Fn() -> Result<u64, String> + Send + Sync + '_>>,
) -> Result<u64, String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicU64::new(0);
    let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, streams.len().max(1)) {
            s.spawn(|| {
                while let Some(run) =
                    streams.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    match run() {
                        Ok(n) => {
                            total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(total.into_inner()),
    }
}

pub(super) fn check(what: &str, out: &crate::transport::ExecOutput) -> Result<(), String> {
    if out.success() {
        return Ok(());
    }
    let said = out.stderr_text();
    let said = said
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" / ");
    Err(format!(
        "{what} failed ({}): {said}",
        out.code.map_or("killed".into(), |c| format!("exit {c}"))
    ))
}
