//! Table-by-table verification between two independent database servers, no replication.
//!
//! Each server hashes its own rows (in primary-key order, in chunks whose bounds come from the
//! source), so a difference is located to a table and a key range, like pt-table-checksum but
//! between two servers that may run different versions.

use serde::Serialize;

use super::discover::query;
use super::{ident, sql_literal as sql_str};
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::transport::Transport;

/// How one table compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub rows_source: u64,
    pub rows_target: u64,
    /// `same`, `different`, `missing` (not at the target) or `extra` (only at the target).
    pub status: String,
    /// Key ranges `[low, high]` (SQL literals) whose rows differ.
    pub differing_ranges: Vec<(String, String)>,
    /// Hashed in one piece: no single-column primary key to chunk by (flagged in reports).
    pub hashed_in_full: bool,
}

/// One side: where the client tools run, how to reach the server, which database.
pub struct Side<'a> {
    pub transport: &'a dyn Transport,
    pub server: &'a DbServer,
    pub database: &'a str,
}

fn rows(engine: DbEngine, side: &Side<'_>, sql: &str) -> Result<Vec<Vec<String>>, String> {
    query(
        side.transport,
        engine,
        side.server,
        Some(side.database),
        sql,
    )
    .map_err(|e| format!("database `{}`: {e}", side.database))
}

fn tables(engine: DbEngine, side: &Side<'_>) -> Result<Vec<String>, String> {
    let sql = match engine {
        DbEngine::Postgres => {
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1".to_string()
        }
        _ => format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = {} AND table_type = 'BASE TABLE' ORDER BY 1",
            sql_str(side.database)
        ),
    };
    Ok(rows(engine, side, &sql)?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

fn columns(
    engine: DbEngine,
    side: &Side<'_>,
    table: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let (cols, pk) = match engine {
        DbEngine::Postgres => (
            format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = {} ORDER BY ordinal_position",
                sql_str(table)
            ),
            format!(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = {}::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                sql_str(&ident(engine, table))
            ),
        ),
        _ => (
            format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
                sql_str(side.database),
                sql_str(table)
            ),
            format!(
                "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = {} AND table_name = {} AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
                sql_str(side.database),
                sql_str(table)
            ),
        ),
    };
    let first = |r: Vec<Vec<String>>| {
        r.into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect::<Vec<_>>()
    };
    Ok((
        first(rows(engine, side, &cols)?),
        first(rows(engine, side, &pk)?),
    ))
}

/// The expression hashing one row (NULLs marked, so NULL and '' differ) and the aggregate of a
/// set of rows that does not depend on their order (two 64-bit halves, summed per chunk).
fn chunk_hash(engine: DbEngine, table: &str, cols: &[String], filter: &str) -> String {
    bucket_hash(engine, table, cols, "0", filter)
}

/// Per bucket (`bucket` is an SQL expression of the row): row count and the two hash sums, in
/// ONE scan of the table, grouped and ordered by bucket.
fn bucket_hash(
    engine: DbEngine,
    table: &str,
    cols: &[String],
    bucket: &str,
    filter: &str,
) -> String {
    match engine {
        DbEngine::Postgres => {
            let row = cols
                .iter()
                .map(|c| format!("coalesce({}::text, '\\N')", ident(engine, c)))
                .collect::<Vec<_>>()
                .join(" || E'\\x1f' || ");
            format!(
                "SELECT b, count(*), coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint), 0), coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint), 0) \
                 FROM (SELECT {bucket} AS b, md5({row}) AS h FROM {} {filter}) s GROUP BY b ORDER BY b",
                ident(engine, table)
            )
        }
        _ => {
            let row = cols
                .iter()
                .map(|c| format!("ISNULL({c}), {c}", c = ident(engine, c)))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT b, COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING(h, 1, 15), 16, 10) AS UNSIGNED)), 0), COALESCE(SUM(CAST(CONV(SUBSTRING(h, 16, 15), 16, 10) AS UNSIGNED)), 0) \
                 FROM (SELECT {bucket} AS b, MD5(CONCAT_WS(CHAR(31), {row})) AS h FROM {} {filter}) s GROUP BY b ORDER BY b",
                ident(engine, table)
            )
        }
    }
}

/// Bucket → (rows, hash) as a server computed them.
fn buckets(
    engine: DbEngine,
    side: &Side<'_>,
    sql: &str,
) -> Result<std::collections::BTreeMap<i64, (u64, String)>, String> {
    Ok(rows(engine, side, sql)?
        .into_iter()
        .filter(|r| r.len() >= 3)
        .map(|r| {
            (
                r[0].parse().unwrap_or(-1),
                (r[1].parse().unwrap_or(0), r[2..].join(":")),
            )
        })
        .collect())
}

/// Chunk bounds on the source: about `chunk_rows` rows each, as SQL literals of the key.
fn bounds(
    engine: DbEngine,
    side: &Side<'_>,
    table: &str,
    pk: &str,
    chunk_rows: u64,
) -> Result<Vec<(String, String)>, String> {
    let (t, k) = (ident(engine, table), ident(engine, pk));
    let literal = |e: &str| match engine {
        DbEngine::Postgres => format!("quote_literal({e})"),
        _ => format!("QUOTE({e})"),
    };
    let sql = format!(
        "SELECT {lo}, {hi} FROM (SELECT MIN(k) AS lo, MAX(k) AS hi FROM (SELECT {k} AS k, FLOOR((ROW_NUMBER() OVER (ORDER BY {k}) - 1) / {chunk_rows}) AS b FROM {t}) x GROUP BY b) y ORDER BY y.lo",
        lo = literal("lo"),
        hi = literal("hi"),
    );
    Ok(rows(engine, side, &sql)?
        .into_iter()
        .filter(|r| r.len() == 2)
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect())
}

fn hash_of(engine: DbEngine, side: &Side<'_>, sql: &str) -> Result<(u64, String), String> {
    let r = rows(engine, side, sql)?;
    let row = r.first().ok_or("no answer to a checksum query")?;
    Ok((
        row.first().and_then(|c| c.parse().ok()).unwrap_or(0),
        row[1..].join(":"),
    ))
}

/// Compares every table of `source` with the same table at `target`.
///
/// # Errors
/// A server cannot be queried; differences are results, not errors.
pub fn verify_database(
    engine: DbEngine,
    source: &Side<'_>,
    target: &Side<'_>,
    chunk_rows: u64,
) -> Result<Vec<TableCheck>, String> {
    let (src_tables, dst_tables) = (tables(engine, source)?, tables(engine, target)?);
    let mut out = Vec::new();
    for table in &src_tables {
        let mut check = TableCheck {
            table: table.clone(),
            rows_source: 0,
            rows_target: 0,
            status: "same".into(),
            differing_ranges: Vec::new(),
            hashed_in_full: false,
        };
        if !dst_tables.contains(table) {
            check.status = "missing".into();
            check.rows_source = hash_of(
                engine,
                source,
                &format!("SELECT 0, COUNT(*), 0 FROM {}", ident(engine, table)),
            )?
            .0;
            out.push(check);
            continue;
        }
        let (cols, pk) = columns(engine, source, table)?;
        if pk.len() == 1 {
            let key = ident(engine, &pk[0]);
            let ranges = bounds(engine, source, table, &pk[0], chunk_rows)?;
            let case = ranges
                .iter()
                .enumerate()
                .map(|(i, (lo, hi))| format!("WHEN {key} >= {lo} AND {key} <= {hi} THEN {i}"))
                .collect::<Vec<_>>()
                .join(" ");
            // Rows outside every source chunk (only at the target) fall in bucket -1.
            let bucket = if ranges.is_empty() {
                "-1".to_string()
            } else {
                format!("CASE {case} ELSE -1 END")
            };
            let sql = bucket_hash(engine, table, &cols, &bucket, "");
            let (a, b) = (
                buckets(engine, source, &sql)?,
                buckets(engine, target, &sql)?,
            );
            check.rows_source = a.values().map(|v| v.0).sum();
            check.rows_target = b.values().map(|v| v.0).sum();
            for (i, (lo, hi)) in ranges.iter().enumerate() {
                if a.get(&(i as i64)) != b.get(&(i as i64)) {
                    check.differing_ranges.push((lo.clone(), hi.clone()));
                }
            }
            if b.contains_key(&-1) {
                check
                    .differing_ranges
                    .push(("(outside the source's key range)".into(), String::new()));
            }
        } else {
            check.hashed_in_full = true;
            let (a, b) = (
                hash_of(engine, source, &chunk_hash(engine, table, &cols, ""))?,
                hash_of(engine, target, &chunk_hash(engine, table, &cols, ""))?,
            );
            check.rows_source = a.0;
            check.rows_target = b.0;
            if a != b {
                check
                    .differing_ranges
                    .push(("(whole table)".into(), String::new()));
            }
        }
        if !check.differing_ranges.is_empty() || check.rows_source != check.rows_target {
            check.status = "different".into();
        }
        out.push(check);
    }
    for table in dst_tables.iter().filter(|t| !src_tables.contains(t)) {
        out.push(TableCheck {
            table: table.clone(),
            rows_source: 0,
            rows_target: 0,
            status: "extra".into(),
            differing_ranges: Vec::new(),
            hashed_in_full: false,
        });
    }
    Ok(out)
}
