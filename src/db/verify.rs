//! Table-by-table verification between two independent database servers, no replication.
//!
//! Each server hashes its own rows (in primary-key order, in chunks whose bounds come from the
//! source), so a difference is located to a table and a key range, like pt-table-checksum but
//! between two servers that may run different versions.

use serde::Serialize;

use std::collections::BTreeMap;

use super::discover::query_many;
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
    /// `same`, `different`, `missing` (not at the target), `extra` (only at the target) or
    /// `error` (the target could not hash it; the reason is the first range).
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

fn rows(engine: DbEngine, side: &Side<'_>, sql: &[String]) -> Result<Vec<Vec<String>>, String> {
    query_many(
        side.transport,
        engine,
        side.server,
        Some(side.database),
        sql,
    )
    .map_err(|e| format!("database `{}`: {e}", side.database))
}

/// A table's columns in order and its primary key's columns.
#[derive(Debug, Default)]
struct Shape {
    cols: Vec<String>,
    pk: Vec<String>,
    /// Data type of each column, lower case, in `cols` order.
    types: Vec<String>,
}

impl Shape {
    /// A one-column integer key: chunks can be key ranges computed by arithmetic, with no
    /// sort of the table.
    fn int_key(&self) -> Option<&str> {
        let [pk] = self.pk.as_slice() else {
            return None;
        };
        let i = self.cols.iter().position(|c| c == pk)?;
        matches!(
            self.types.get(i).map(String::as_str),
            Some("tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint")
        )
        .then_some(pk.as_str())
    }
}

/// Integer-key chunking of a table: chunk `b` holds keys `min + b*width ..= min + (b+1)*width - 1`.
#[derive(Debug, Clone, Copy)]
struct Ranges {
    min: i64,
    max: i64,
    width: i64,
}

/// Every base table of the database with its shape, in one round trip.
fn shapes(engine: DbEngine, side: &Side<'_>) -> Result<BTreeMap<String, Shape>, String> {
    let statements = match engine {
        DbEngine::Postgres => vec![
            "SELECT 't', tablename, '', '' FROM pg_tables WHERE schemaname = 'public'".to_string(),
            "SELECT 'c', table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position".into(),
            "SELECT 'k', c.relname, a.attname, '' FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indisprimary AND n.nspname = 'public' ORDER BY c.relname, array_position(i.indkey, a.attnum)".into(),
        ],
        _ => {
            let db = sql_str(side.database);
            vec![
                format!("SELECT 't', table_name, '', '' FROM information_schema.tables WHERE table_schema = {db} AND table_type = 'BASE TABLE'"),
                format!("SELECT 'c', table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = {db} ORDER BY table_name, ordinal_position"),
                format!("SELECT 'k', table_name, column_name, '' FROM information_schema.key_column_usage WHERE table_schema = {db} AND constraint_name = 'PRIMARY' ORDER BY table_name, ordinal_position"),
            ]
        }
    };
    let mut out: BTreeMap<String, Shape> = BTreeMap::new();
    let mut cols: Vec<(String, String, String, bool)> = Vec::new();
    for r in rows(engine, side, &statements)? {
        match r.as_slice() {
            [tag, table, ..] if tag == "t" => {
                out.insert(table.clone(), Shape::default());
            }
            [tag, table, col, typ] => cols.push((
                table.clone(),
                col.clone(),
                typ.to_ascii_lowercase(),
                tag == "k",
            )),
            _ => {}
        }
    }
    for (table, col, typ, is_key) in cols {
        if let Some(shape) = out.get_mut(&table) {
            if is_key {
                shape.pk.push(col);
            } else {
                shape.cols.push(col);
                shape.types.push(typ);
            }
        }
    }
    Ok(out)
}

/// The per-row hash (NULLs marked, so NULL and '' differ) and the two sums of its 60-bit
/// halves that aggregate a set of rows whatever their order.
fn row_hash_and_sums(engine: DbEngine, cols: &[String]) -> (String, String) {
    match engine {
        DbEngine::Postgres => {
            let row = cols
                .iter()
                .map(|c| format!("coalesce({}::text, '\\N')", ident(engine, c)))
                .collect::<Vec<_>>()
                .join(" || E'\\x1f' || ");
            (
                format!("md5({row})"),
                "coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint), 0), coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint), 0)".into(),
            )
        }
        _ => {
            let row = cols
                .iter()
                .map(|c| format!("ISNULL({c}), {c}", c = ident(engine, c)))
                .collect::<Vec<_>>()
                .join(", ");
            (
                format!("MD5(CONCAT_WS(CHAR(31), {row}))"),
                "COALESCE(SUM(CAST(CONV(SUBSTRING(h, 1, 15), 16, 10) AS UNSIGNED)), 0), COALESCE(SUM(CAST(CONV(SUBSTRING(h, 16, 15), 16, 10) AS UNSIGNED)), 0)".into(),
            )
        }
    }
}

/// At the source, in one scan: chunks of `chunk_rows` rows in key order, each with its row
/// count, key bounds (as SQL literals) and hash sums. Rows: `tag, chunk, count, lo, hi, h1, h2`.
fn source_chunks(
    engine: DbEngine,
    tag: usize,
    table: &str,
    shape: &Shape,
    chunk_rows: u64,
    ranges: Option<Ranges>,
) -> String {
    let (hash, sums) = row_hash_and_sums(engine, &shape.cols);
    let t = ident(engine, table);
    let quote = |e: &str| match engine {
        DbEngine::Postgres => format!("quote_literal({e})"),
        _ => format!("QUOTE({e})"),
    };
    if let (Some(r), Some(pk)) = (ranges, shape.int_key()) {
        let k = ident(engine, pk);
        return format!(
            "SELECT {tag}, b, count(*), {lo}, {hi}, {sums} FROM (SELECT {k} AS k, {b} AS b, {hash} AS h FROM {t}) s GROUP BY b ORDER BY b",
            lo = quote("MIN(k)"),
            hi = quote("MAX(k)"),
            b = range_bucket(engine, &k, r),
        );
    }
    match shape.pk.as_slice() {
        [pk] => {
            let k = ident(engine, pk);
            format!(
                "SELECT {tag}, b, count(*), {lo}, {hi}, {sums} FROM (SELECT {k} AS k, FLOOR((ROW_NUMBER() OVER (ORDER BY {k}) - 1) / {chunk_rows}) AS b, {hash} AS h FROM {t}) s GROUP BY b ORDER BY b",
                lo = quote("MIN(k)"),
                hi = quote("MAX(k)"),
            )
        }
        _ => format!(
            "SELECT {tag}, 0, count(*), '', '', {sums} FROM (SELECT {hash} AS h FROM {t}) s"
        ),
    }
}

/// At the target, the same chunks by the source's key bounds (rows outside all of them in
/// chunk -1). Rows: `tag, chunk, count, h1, h2`.
fn target_chunks(
    engine: DbEngine,
    tag: usize,
    table: &str,
    shape: &Shape,
    bounds: &[(String, String)],
    ranges: Option<Ranges>,
) -> String {
    let (hash, sums) = row_hash_and_sums(engine, &shape.cols);
    let t = ident(engine, table);
    let bucket = match shape.pk.as_slice() {
        [_] if let (Some(r), Some(pk)) = (ranges, shape.int_key()) => {
            let k = ident(engine, pk);
            format!(
                "CASE WHEN {k} >= {} AND {k} <= {} THEN {} ELSE -1 END",
                r.min,
                r.max,
                range_bucket(engine, &k, r)
            )
        }
        [pk] if !bounds.is_empty() => {
            let k = ident(engine, pk);
            let case = bounds
                .iter()
                .enumerate()
                .map(|(i, (lo, hi))| format!("WHEN {k} >= {lo} AND {k} <= {hi} THEN {i}"))
                .collect::<Vec<_>>()
                .join(" ");
            format!("CASE {case} ELSE -1 END")
        }
        [_] => "-1".to_string(),
        _ => "0".to_string(),
    };
    format!(
        "SELECT {tag}, b, count(*), {sums} FROM (SELECT {bucket} AS b, {hash} AS h FROM {t}) s GROUP BY b ORDER BY b"
    )
}

/// The chunk number of key `k` (an integer expression) under `r`.
fn range_bucket(engine: DbEngine, k: &str, r: Ranges) -> String {
    match engine {
        DbEngine::Postgres => format!("(({k})::bigint - ({})) / {}", r.min, r.width),
        _ => format!("(CAST({k} AS SIGNED) - ({})) DIV {}", r.min, r.width),
    }
}

/// Key ranges of the integer-keyed tables, from their smallest and largest keys and row count
/// (read through the primary key's index): `tag → ranges` of about `chunk_rows` rows each.
fn int_ranges(
    engine: DbEngine,
    source: &Side<'_>,
    tables: &[(usize, &str, &str)],
    chunk_rows: u64,
) -> Result<BTreeMap<usize, Ranges>, String> {
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let statements: Vec<String> = tables
        .iter()
        .map(|(tag, table, pk)| {
            let k = ident(engine, pk);
            format!(
                "SELECT {tag}, MIN({k}), MAX({k}), count(*) FROM {}",
                ident(engine, table)
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for r in rows(engine, source, &statements)? {
        if let [tag, min, max, n] = r.as_slice()
            && let (Ok(tag), Ok(min), Ok(max), Ok(n)) = (
                tag.parse::<usize>(),
                min.parse::<i64>(),
                max.parse::<i64>(),
                n.parse::<u64>(),
            )
        {
            let chunks = n.div_ceil(chunk_rows.max(1)).max(1) as i128;
            let span = max as i128 - min as i128 + 1;
            let width = ((span + chunks - 1) / chunks).clamp(1, i64::MAX as i128) as i64;
            out.insert(tag, Ranges { min, max, width });
        }
    }
    Ok(out)
}

/// One chunk as a server summed it: rows and hash.
type Chunk = (u64, String);

/// Compares every table of `source` with the same table at `target`, in four round trips per
/// database whatever its number of tables.
///
/// # Errors
/// A server cannot be queried; differences are results, not errors.
pub fn verify_database(
    engine: DbEngine,
    source: &Side<'_>,
    target: &Side<'_>,
    chunk_rows: u64,
) -> Result<Vec<TableCheck>, String> {
    let (src, dst) = (shapes(engine, source)?, shapes(engine, target)?);
    let both: Vec<(&String, &Shape)> = src.iter().filter(|(t, _)| dst.contains_key(*t)).collect();
    let mut out = Vec::new();

    // Integer keys are chunked by arithmetic on the key (no sort of the table); others by
    // row number in key order.
    let keyed: Vec<(usize, &str, &str)> = src
        .iter()
        .enumerate()
        .filter_map(|(i, (t, shape))| shape.int_key().map(|k| (i, t.as_str(), k)))
        .collect();
    let ranges = int_ranges(engine, source, &keyed, chunk_rows)?;
    // Source: chunk bounds and hashes of every table, tagged by its index in `src`.
    let statements: Vec<String> = src
        .iter()
        .enumerate()
        .map(|(i, (t, shape))| {
            source_chunks(
                engine,
                i,
                t,
                shape,
                chunk_rows.max(1),
                ranges.get(&i).copied(),
            )
        })
        .collect();
    let mut at_source: Vec<BTreeMap<i64, (Chunk, String, String)>> =
        vec![BTreeMap::new(); src.len()];
    for r in rows(engine, source, &statements)? {
        if let [tag, b, n, lo, hi, h1, h2] = r.as_slice()
            && let (Ok(tag), Ok(b)) = (tag.parse::<usize>(), b.parse::<i64>())
            && tag < at_source.len()
        {
            at_source[tag].insert(
                b,
                (
                    (n.parse().unwrap_or(0), format!("{h1}:{h2}")),
                    lo.clone(),
                    hi.clone(),
                ),
            );
        }
    }
    let index_of = |t: &String| src.keys().position(|k| k == t).unwrap_or(usize::MAX);
    let bounds = |i: usize| -> Vec<(String, String)> {
        at_source[i]
            .values()
            .map(|(_, lo, hi)| (lo.clone(), hi.clone()))
            .collect()
    };

    // Target: the same chunks for the tables it has. A table whose query fails there (a
    // column missing, say) is named alone, not the whole database.
    let statements: Vec<(usize, String)> = both
        .iter()
        .map(|(t, shape)| {
            let i = index_of(t);
            (
                i,
                target_chunks(engine, i, t, shape, &bounds(i), ranges.get(&i).copied()),
            )
        })
        .collect();
    let mut at_target: BTreeMap<usize, BTreeMap<i64, Chunk>> = BTreeMap::new();
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    let take = |rs: Vec<Vec<String>>, at_target: &mut BTreeMap<usize, BTreeMap<i64, Chunk>>| {
        for r in rs {
            if let [tag, b, n, h1, h2] = r.as_slice()
                && let (Ok(tag), Ok(b)) = (tag.parse::<usize>(), b.parse::<i64>())
            {
                at_target
                    .entry(tag)
                    .or_default()
                    .insert(b, (n.parse().unwrap_or(0), format!("{h1}:{h2}")));
            }
        }
    };
    let all: Vec<String> = statements.iter().map(|(_, s)| s.clone()).collect();
    match rows(engine, target, &all) {
        Ok(rs) => take(rs, &mut at_target),
        Err(_) => {
            for (i, statement) in &statements {
                match rows(engine, target, std::slice::from_ref(statement)) {
                    Ok(rs) => take(rs, &mut at_target),
                    Err(e) => {
                        failed.insert(*i, e);
                    }
                }
            }
        }
    }

    for (i, (table, shape)) in src.iter().enumerate() {
        let chunks = &at_source[i];
        let mut check = TableCheck {
            table: table.clone(),
            rows_source: chunks.values().map(|((n, _), _, _)| n).sum(),
            rows_target: 0,
            status: "same".into(),
            differing_ranges: Vec::new(),
            hashed_in_full: shape.pk.len() != 1,
        };
        if !dst.contains_key(table) {
            check.status = "missing".into();
            out.push(check);
            continue;
        }
        if let Some(e) = failed.get(&i) {
            check.status = "error".into();
            check.differing_ranges.push((
                format!("(the target could not be read: {e})"),
                String::new(),
            ));
            out.push(check);
            continue;
        }
        let empty = BTreeMap::new();
        let there = at_target.get(&i).unwrap_or(&empty);
        check.rows_target = there.values().map(|(n, _)| n).sum();
        if check.hashed_in_full {
            if chunks.get(&0).map(|(c, _, _)| c) != there.get(&0) {
                check
                    .differing_ranges
                    .push(("(whole table)".into(), String::new()));
            }
        } else {
            for (b, (chunk, lo, hi)) in chunks {
                if there.get(b) != Some(chunk) {
                    check.differing_ranges.push((lo.clone(), hi.clone()));
                }
            }
            // Target rows in a key range where the source has none.
            for b in there.keys().filter(|b| **b >= 0 && !chunks.contains_key(b)) {
                let label = match ranges.get(&i) {
                    Some(r) => (
                        format!("'{}'", r.min.saturating_add(b.saturating_mul(r.width))),
                        format!(
                            "'{}'",
                            r.min
                                .saturating_add((b + 1).saturating_mul(r.width))
                                .saturating_sub(1)
                                .min(r.max)
                        ),
                    ),
                    None => (format!("(chunk {b})"), String::new()),
                };
                check.differing_ranges.push(label);
            }
            if there.contains_key(&-1) {
                check
                    .differing_ranges
                    .push(("(outside the source's key range)".into(), String::new()));
            }
        }
        if !check.differing_ranges.is_empty() || check.rows_source != check.rows_target {
            check.status = "different".into();
        }
        out.push(check);
    }
    for table in dst.keys().filter(|t| !src.contains_key(*t)) {
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
