//! Moves one database: dump on the source host with the server's own tool, streamed into the
//! target's restore tool, under a temporary name where the engine can rename it afterwards.

use serde::Serialize;

use super::discover::{query, tool_request};
use super::{ident, sql_literal as lit};
use crate::plan::DbServer;
use crate::plan::raw::{ConflictPolicy, DbEngine};
use crate::transport::Transport;
use crate::transport::pipe::pipe;

/// One side of a move.
pub struct Endpoint<'a> {
    pub transport: &'a dyn Transport,
    pub server: &'a DbServer,
}

/// What happened to one database.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub name: String,
    /// `copied`, `skipped` (a conflict under `skip`).
    pub outcome: String,
    /// Bytes of dump that went through.
    pub bytes: u64,
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
fn comment(engine: DbEngine, end: &Endpoint<'_>, name: &str) -> Result<Option<String>, String> {
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
    conflict: ConflictPolicy,
    plan: &str,
) -> Result<Moved, String> {
    let ours = marker(plan);
    let at = |e: &Endpoint<'_>| format!("database `{name}` on host `{}`", e.transport.host());
    // A server that is down or refuses us is named with the database we were about to move.
    if comment(engine, from, name)
        .map_err(|e| format!("{}: {e}", at(from)))?
        .is_none()
    {
        return Err(format!("{}: does not exist", at(from)));
    }
    let existing = comment(engine, to, name).map_err(|e| format!("{}: {e}", at(to)))?;
    if let Some(c) = &existing
        && c != &ours
    {
        match conflict {
            ConflictPolicy::Fail => {
                return Err(format!(
                    "{}: exists and was not created by this plan (conflict: fail); set `conflict: replace` or `skip`",
                    at(to)
                ));
            }
            ConflictPolicy::Skip => {
                return Ok(Moved {
                    name: name.into(),
                    outcome: "skipped".into(),
                    bytes: 0,
                    users: Vec::new(),
                    note: Some("exists at the target and is not ours (conflict: skip)".into()),
                });
            }
            ConflictPolicy::Replace => {}
        }
    }
    match engine {
        DbEngine::Postgres => transfer_postgres(from, to, name, &ours, existing.is_some()),
        _ => transfer_mysql(engine, from, to, name, &ours),
    }
    .map_err(|e| format!("{}: {e}", at(to)))
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
    users.retain(|u| {
        !u.starts_with("'root'@")
            && !u.starts_with("'mariadb.sys'@")
            && !u.starts_with("'mysql.sys'@")
    });
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

fn transfer_mysql(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    ours: &str,
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
    let dump_args: Vec<String> = [
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--skip-comments",
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let dump = tool_request(engine, from.server, "mariadb-dump", &dump_args)?;
    let restore = tool_request(
        engine,
        to.server,
        "mariadb",
        &[
            "--default-character-set=utf8mb4".to_string(),
            name.to_string(),
        ],
    )?;
    let (a, b, bytes) =
        pipe(from.transport, &dump, to.transport, &restore).map_err(|e| e.to_string())?;
    if let Err(e) = check("mariadb-dump", &a).and_then(|()| check("restore", &b)) {
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
    Ok(Moved {
        name: name.into(),
        outcome: "copied".into(),
        bytes,
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

/// PostgreSQL restores into `<name>__th_new`, then renames: the final name only ever holds a
/// complete copy.
fn transfer_postgres(
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    ours: &str,
    exists: bool,
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
    let dump = tool_request(
        engine,
        from.server,
        "pg_dump",
        &["-Fc".to_string(), format!("--dbname={name}")],
    )?;
    // Owners and privileges are restored as they were: the roles come first.
    let users = copy_pg_roles(from, to, name)?;
    let restore = tool_request(
        engine,
        to.server,
        "pg_restore",
        &["--exit-on-error".to_string(), format!("--dbname={tmp}")],
    )?;
    let (a, b, bytes) =
        pipe(from.transport, &dump, to.transport, &restore).map_err(|e| e.to_string())?;
    if let Err(e) = check("pg_dump", &a).and_then(|()| check("pg_restore", &b)) {
        let _ = sql(
            engine,
            to,
            &format!("DROP DATABASE IF EXISTS {}", ident(engine, &tmp)),
        );
        return Err(format!(
            "{e}; the copy under `{tmp}` was dropped, `{name}` is untouched"
        ));
    }
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
        users,
        note: None,
    })
}
