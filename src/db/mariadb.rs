//! MariaDB/MySQL side of a database move: the accounts that reach a database, and the dump
//! streamed into the target's client.

use super::discover::is_admin_account;
use super::transfer::{Endpoint, Moved, Options, TableName, Tools, parallel_streams, sql, stream};
use super::{ident, sql_literal as lit};
use crate::plan::raw::DbEngine;

/// Users reaching `name` (privileges on it, or definers of its views and routines), recreated
/// at the target with their password hashes and grants, before the restore needs them.
fn copy_users(
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
    users.retain(|u| !is_admin_account(u));
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

/// MariaDB/MySQL cannot rename a database: the copy is restored under its final name and
/// dropped again if the restore fails (said so in the error).
#[allow(clippy::too_many_arguments)]
pub(super) fn transfer(
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
    let users = copy_users(engine, from, to, name)?;
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
        warnings: Vec::new(),
    })
}
