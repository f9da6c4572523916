//! PostgreSQL side of a database move: the roles that reach a database, and the dump restored
//! under a temporary name, renamed once complete.

use super::discover::{query, tool_request};
use super::transfer::{
    Endpoint, Moved, Options, TableName, Tools, check, parallel_streams, sql, stream,
};
use super::{ident, sql_literal as lit};
use crate::plan::raw::DbEngine;

/// Roles that own or are granted anything in database `name` (and its owner), recreated at the
/// target from `pg_dumpall --roles-only` (password hashes included) before the restore.
fn copy_roles(from: &Endpoint<'_>, to: &Endpoint<'_>, name: &str) -> Result<Vec<String>, String> {
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
pub(super) fn transfer(
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
    let users = copy_roles(from, to, name)?;
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
