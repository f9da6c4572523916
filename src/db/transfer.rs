//! Moves one database: dump on the source host with the server's own tool, streamed into the
//! target's restore tool, under a temporary name where the engine can rename it afterwards.

use serde::Serialize;

use super::discover::{find_tool, query, tool_request};
use super::plan::DbAction;
use super::{ident, sql_literal as lit};
use crate::plan::DbServer;
use crate::plan::raw::{ConflictPolicy, DbEngine};
use crate::transport::Transport;
use crate::transport::pipe::pipe;

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
}

impl<'a> Options<'a> {
    /// The plan's defaults: 1 GiB kept free, tables above 512 MiB split, 4 streams.
    pub fn new(conflict: ConflictPolicy, plan: &'a str) -> Self {
        Options {
            conflict,
            plan,
            min_free_space: 1 << 30,
            split_tables_above: 512 << 20,
            jobs: 4,
        }
    }
}

/// The programs that dump at the source and restore at the target, as they are named there.
struct Tools {
    dump: String,
    restore: String,
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
}

fn sql(engine: DbEngine, end: &Endpoint<'_>, statement: &str) -> Result<Vec<Vec<String>>, String> {
    query(end.transport, engine, end.server, None, statement)
}

/// The marker comment that says a target database is ours (so a re-run may replace it).
pub fn marker(plan: &str) -> String {
    format!("created by transhumance for plan {plan}")
}

/// The comment of database `name` at `end`: `None` when it does not exist.
/// The comment database `name` carries at `end` (`None` when it does not exist).
///
/// # Errors
/// The server cannot be queried.
pub fn comment(engine: DbEngine, end: &Endpoint<'_>, name: &str) -> Result<Option<String>, String> {
    let q = match engine {
        // A `=` in front, so an empty comment is still a line of output.
        DbEngine::Postgres => format!(
            "SELECT '=' || coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = {}",
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
    // Both tools are looked for before the target is touched.
    let tools = Tools {
        dump: find_tool(from.transport, engine, from.server, dump)
            .map_err(|e| format!("{}: {e}", at(from)))?,
        restore: find_tool(to.transport, engine, to.server, restore)
            .map_err(|e| format!("{}: {e}", at(to)))?,
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
            });
        }
        DbAction::Create | DbAction::ReplaceOurs | DbAction::ReplaceTheirs => {}
    }
    ensure_space(engine, from, to, name, options.min_free_space)
        .map_err(|e| format!("{}: {e}", at(to)))?;
    let big = big_tables(engine, from, name, options.split_tables_above)
        .map_err(|e| format!("{}: {e}", at(from)))?;
    match engine {
        DbEngine::Postgres => transfer_postgres(
            from,
            to,
            name,
            &ours,
            existing.is_some(),
            &tools,
            &big,
            options,
        ),
        _ => transfer_mysql(engine, from, to, name, &ours, &tools, &big, options),
    }
    .map_err(|e| format!("{}: {e}", at(to)))
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
type TableName = (String, String);

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
fn stream(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    tools: &Tools,
    dump_args: Vec<String>,
    restore_args: Vec<String>,
) -> Result<u64, String> {
    let dump = tool_request(engine, from.server, &tools.dump, &dump_args)?;
    let restore = tool_request(engine, to.server, &tools.restore, &restore_args)?;
    let (a, b, bytes) =
        pipe(from.transport, &dump, to.transport, &restore).map_err(|e| e.to_string())?;
    check(&tools.dump, &a).and_then(|()| check(&tools.restore, &b))?;
    Ok(bytes)
}

/// Runs `streams` at most `jobs` at a time; the total bytes, or the first error.
fn parallel_streams(
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

fn check(what: &str, out: &crate::transport::ExecOutput) -> Result<(), String> {
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

/// MariaDB/MySQL cannot rename a database: the copy is restored under its final name and
/// dropped again if the restore fails (said so in the error).
/// Users reaching `name` (privileges on it, or definers of its views and routines), recreated
/// at the target with their password hashes and grants, before the restore needs them.
fn copy_mysql_users(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
) -> Result<Vec<String>, String> {
    let n = lit(name);
    let q = format!(
        "SELECT DISTINCT GRANTEE FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = {n} \
         UNION SELECT DISTINCT CONCAT(\"'\", SUBSTRING_INDEX(DEFINER, '@', 1), \"'@'\", SUBSTRING_INDEX(DEFINER, '@', -1), \"'\") FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {n} \
         UNION SELECT DISTINCT CONCAT(\"'\", SUBSTRING_INDEX(DEFINER, '@', 1), \"'@'\", SUBSTRING_INDEX(DEFINER, '@', -1), \"'\") FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {n} \
         UNION SELECT DISTINCT CONCAT(\"'\", SUBSTRING_INDEX(DEFINER, '@', 1), \"'@'\", SUBSTRING_INDEX(DEFINER, '@', -1), \"'\") FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {n}"
    );
    let mut users: Vec<String> = sql(engine, from, &q)?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    // The administrator running the move exists on both sides already.
    users.retain(|u| !super::discover::is_admin_account(u));
    users.sort();
    users.dedup();
    for user in &users {
        let create = sql(engine, from, &format!("SHOW CREATE USER {user}"))?;
        let grants = sql(engine, from, &format!("SHOW GRANTS FOR {user}"))?;
        let mut statements: Vec<String> = create
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .map(|c| c.replacen("CREATE USER ", "CREATE USER IF NOT EXISTS ", 1))
            .collect();
        statements.extend(grants.into_iter().filter_map(|r| r.into_iter().next()));
        let script = statements
            .iter()
            .map(|s| format!("{s};"))
            .collect::<Vec<_>>()
            .join(" ");
        // The statements carry password hashes: an error names the user, never the statement.
        sql(engine, to, &script).map_err(|e| {
            format!(
                "recreating user {user} failed ({})",
                e.lines()
                    .last()
                    .unwrap_or("")
                    .split(" at line")
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(120)
                    .collect::<String>()
            )
        })?;
    }
    Ok(users)
}

#[allow(clippy::too_many_arguments)]
fn transfer_mysql(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    ours: &str,
    tools: &Tools,
    big: &[TableName],
    options: &Options<'_>,
) -> Result<Moved, String> {
    let charset = sql(
        engine,
        from,
        &format!(
            "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata WHERE schema_name = {}",
            lit(name)
        ),
    )?;
    let (cs, coll) = charset
        .first()
        .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
        .unwrap_or(("utf8mb4".into(), "utf8mb4_general_ci".into()));
    let db = ident(engine, name);
    sql(
        engine,
        to,
        &format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET {cs} COLLATE {coll} COMMENT {}",
            lit(ours)
        ),
    )?;
    let users = copy_mysql_users(engine, from, to, name)?;
    let args = |extra: &[&str], tail: &[&str]| -> Vec<String> {
        [
            "--single-transaction",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-comments",
        ]
        .iter()
        .chain(extra)
        .chain([&name])
        .chain(tail)
        .map(|s| s.to_string())
        .collect()
    };
    let restore = || {
        vec![
            "--default-character-set=utf8mb4".to_string(),
            name.to_string(),
        ]
    };
    let moved = if big.is_empty() {
        stream(
            engine,
            from,
            to,
            tools,
            args(&["--routines", "--triggers", "--events"], &[]),
            restore(),
        )
    } else {
        // Tables first without their triggers, so loading rows fires none; then the rows in
        // parallel streams; then triggers, routines and events.
        let ignored: Vec<String> = big
            .iter()
            .map(|(_, t)| format!("--ignore-table={name}.{t}"))
            .collect();
        let rest: Vec<&str> = ["--no-create-info", "--skip-triggers"]
            .into_iter()
            .chain(ignored.iter().map(String::as_str))
            .collect();
        let mut streams: Vec<Box<dyn Fn() -> Result<u64, String> + Send + Sync + '_>> =
            vec![Box::new(move || {
                stream(engine, from, to, tools, args(&rest, &[]), restore())
            })];
        for (_, table) in big {
            streams.push(Box::new(move || {
                stream(
                    engine,
                    from,
                    to,
                    tools,
                    args(&["--no-create-info", "--skip-triggers"], &[table]),
                    restore(),
                )
            }));
        }
        stream(
            engine,
            from,
            to,
            tools,
            args(&["--no-data", "--skip-triggers"], &[]),
            restore(),
        )
        .and_then(|a| parallel_streams(options.jobs, streams).map(|b| a + b))
        .and_then(|ab| {
            stream(
                engine,
                from,
                to,
                tools,
                args(
                    &[
                        "--no-data",
                        "--no-create-info",
                        "--triggers",
                        "--routines",
                        "--events",
                    ],
                    &[],
                ),
                restore(),
            )
            .map(|c| ab + c)
        })
    };
    let bytes = match moved {
        Ok(bytes) => bytes,
        Err(e) => {
            let dropped = sql(engine, to, &format!("DROP DATABASE IF EXISTS {db}")).is_ok();
            return Err(format!(
                "{e}{}",
                if dropped {
                    "; the partial copy was dropped"
                } else {
                    "; the partial copy could NOT be dropped"
                }
            ));
        }
    };
    Ok(Moved {
        name: name.into(),
        outcome: "copied".into(),
        bytes,
        split_tables: big.iter().map(|(_, t)| t.clone()).collect(),
        users,
        note: None,
    })
}

/// Roles that own or are granted anything in database `name` (and its owner), recreated at the
/// target from `pg_dumpall --roles-only` (password hashes included) before the restore.
fn copy_pg_roles(
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
) -> Result<Vec<String>, String> {
    let engine = DbEngine::Postgres;
    let needed_sql = "SELECT DISTINCT quote_ident(r.rolname) FROM pg_roles r WHERE r.oid IN (\
        SELECT datdba FROM pg_database WHERE datname = current_database() \
        UNION SELECT relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
        UNION SELECT nspowner FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema' \
        UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL \
        UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL) \
        AND r.rolname NOT LIKE 'pg\\_%' AND NOT r.rolsuper ORDER BY 1";
    let needed: Vec<String> = query(from.transport, engine, from.server, Some(name), needed_sql)?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    if needed.is_empty() {
        return Ok(needed);
    }
    let dumpall = tool_request(
        engine,
        from.server,
        "pg_dumpall",
        &["--roles-only".to_string()],
    )?;
    let out = from.transport.exec(&dumpall).map_err(|e| e.to_string())?;
    check("pg_dumpall --roles-only", &out)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for role in &needed {
        let exists = !query(
            to.transport,
            engine,
            to.server,
            None,
            &format!(
                "SELECT 1 FROM pg_roles WHERE quote_ident(rolname) = {}",
                lit(role)
            ),
        )?
        .is_empty();
        let mut statements: Vec<&str> = Vec::new();
        for line in text.lines() {
            let is_create = line == format!("CREATE ROLE {role};");
            if (is_create && !exists) || line.starts_with(&format!("ALTER ROLE {role} WITH ")) {
                statements.push(line);
            }
        }
        if statements.is_empty() {
            return Err(format!("role {role} not found in pg_dumpall's output"));
        }
        // The statements carry password hashes: an error names the role, never the statement.
        query(to.transport, engine, to.server, None, &statements.join(" "))
            .map_err(|_| format!("recreating role {role} at the target failed"))?;
    }
    Ok(needed)
}

/// A `pg_dump --table` pattern that matches exactly `schema.table`, whatever their characters.
fn pg_table_pattern((schema, table): &TableName) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", quote(schema), quote(table))
}

/// PostgreSQL restores into `<name>__th_new`, then renames: the final name only ever holds a
/// complete copy.
#[allow(clippy::too_many_arguments)]
fn transfer_postgres(
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    ours: &str,
    exists: bool,
    tools: &Tools,
    big: &[TableName],
    options: &Options<'_>,
) -> Result<Moved, String> {
    let engine = DbEngine::Postgres;
    let (tmp, old) = (format!("{name}__th_new"), format!("{name}__th_old"));
    let info = sql(
        engine,
        from,
        &format!(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = {}",
            lit(name)
        ),
    )?;
    let (enc, coll, ctype) = info
        .first()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .ok_or("no encoding")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {}", ident(engine, &tmp)),
        format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            ident(engine, &tmp),
            lit(&enc),
            lit(&coll),
            lit(&ctype)
        ),
        format!(
            "COMMENT ON DATABASE {} IS {}",
            ident(engine, &tmp),
            lit(ours)
        ),
    ] {
        sql(engine, to, &statement)?;
    }
    // Owners and privileges are restored as they were: the roles come first.
    let users = copy_pg_roles(from, to, name)?;
    let dump = |extra: &[String]| -> Vec<String> {
        ["-Fc".to_string(), format!("--dbname={name}")]
            .into_iter()
            .chain(extra.iter().cloned())
            .collect()
    };
    let restore = || vec!["--exit-on-error".to_string(), format!("--dbname={tmp}")];
    let moved = if big.is_empty() {
        stream(engine, from, to, tools, dump(&[]), restore())
    } else {
        // Definitions, then rows in parallel streams (big tables alone, the rest together with
        // sequences and large objects), then indexes and constraints.
        let rest: Vec<String> = std::iter::once("--section=data".to_string())
            .chain(
                big.iter()
                    .map(|t| format!("--exclude-table-data={}", pg_table_pattern(t))),
            )
            .collect();
        let mut streams: Vec<Box<dyn Fn() -> Result<u64, String> + Send + Sync + '_>> =
            vec![Box::new(move || {
                stream(engine, from, to, tools, dump(&rest), restore())
            })];
        for t in big {
            streams.push(Box::new(move || {
                stream(
                    engine,
                    from,
                    to,
                    tools,
                    dump(&[
                        "--section=data".into(),
                        format!("--table={}", pg_table_pattern(t)),
                    ]),
                    restore(),
                )
            }));
        }
        stream(
            engine,
            from,
            to,
            tools,
            dump(&["--section=pre-data".into()]),
            restore(),
        )
        .and_then(|a| parallel_streams(options.jobs, streams).map(|b| a + b))
        .and_then(|ab| {
            stream(
                engine,
                from,
                to,
                tools,
                dump(&["--section=post-data".into()]),
                restore(),
            )
            .map(|c| ab + c)
        })
    };
    let bytes = match moved {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = sql(
                engine,
                to,
                &format!("DROP DATABASE IF EXISTS {}", ident(engine, &tmp)),
            );
            return Err(format!(
                "{e}; the copy under `{tmp}` was dropped, `{name}` is untouched"
            ));
        }
    };
    if exists {
        sql(
            engine,
            to,
            &format!("DROP DATABASE IF EXISTS {}", ident(engine, &old)),
        )?;
        sql(
            engine,
            to,
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(engine, name),
                ident(engine, &old)
            ),
        )?;
    }
    sql(
        engine,
        to,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            ident(engine, &tmp),
            ident(engine, name)
        ),
    )?;
    sql(
        engine,
        to,
        &format!(
            "COMMENT ON DATABASE {} IS {}",
            ident(engine, name),
            lit(ours)
        ),
    )?;
    if exists {
        sql(
            engine,
            to,
            &format!("DROP DATABASE IF EXISTS {}", ident(engine, &old)),
        )?;
    }
    Ok(Moved {
        name: name.into(),
        outcome: "copied".into(),
        bytes,
        split_tables: big.iter().map(|(s, t)| format!("{s}.{t}")).collect(),
        users,
        note: None,
    })
}
