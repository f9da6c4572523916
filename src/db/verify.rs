//! Database verification between two independent servers, no replication: every table of
//! every schema (or the plan's `schemas`) row by row, and the catalog facts around the rows
//! (owners, privileges, settings, the roles and accounts that reach the database and their
//! grants, character sets), with what was left out named and why.
//!
//! Three stages, each ONE client session per server fed a script on stdin, the two servers
//! working at once where they can: (1) both catalogs (tables, columns, keys, facts); (2) at
//! the source, the key bounds: every `chunk_rows`-th key in key order, so chunks hold as many
//! rows whatever the keys' spread (a skewed or uuid key included); (3) on both servers the
//! very same statements: per table and bucket of keys, the row count and the exact sum of
//! 64-bit row hashes. A difference is located to a table and a key range. Settings that
//! change how values print (time zone, date and float formats…) are pinned identically on
//! both sides, and the row encoding tells NULL from any text.

mod catalog;
mod pool;
mod session;
mod sql;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use self::catalog::{Catalog, Fact, Table, account_facts, grant_concerns, granted_table};
pub use self::pool::{SessionPool, Snapshot};
use self::session::{Line, Ran, Script, field, run, text};
pub use self::sql::HashFn;
use self::sql::{Col, Enc, Lit};
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::transport::Transport;

/// Rows per chunk unless told otherwise.
pub const DEFAULT_CHUNK_ROWS: u64 = 10_000;

/// Chunks per table at most: a bigger table gets bigger chunks (the bucket expression grows
/// with the number of chunks).
const MAX_CHUNKS: u64 = 2_000;

/// One side: where the client tools run, how to reach the server, which database.
pub struct Side<'a> {
    pub transport: &'a dyn Transport,
    pub server: &'a DbServer,
    pub database: &'a str,
}

/// What a verification compares, beyond the rows.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Rows per chunk (a difference is located to a chunk).
    pub chunk_rows: u64,
    /// PostgreSQL schemas whose tables are compared (names or globs); empty: every schema.
    /// Tables of the others are reported as skipped.
    pub schemas: Vec<String>,
    /// Whether rows are compared; without them, only what the catalogs say (tables, columns,
    /// keys, facts): O(catalog), whatever the tables hold.
    pub rows: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            chunk_rows: DEFAULT_CHUNK_ROWS,
            schemas: Vec::new(),
            rows: true,
        }
    }
}

/// A range of keys whose rows differ: from `from` (included; `None`: the smallest key) to
/// `before` (excluded; `None`: past the largest), with the rows each side holds there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRange {
    pub from: Option<String>,
    pub before: Option<String>,
    pub rows_source: u64,
    pub rows_target: u64,
}

impl std::fmt::Display for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.from, &self.before) {
            (None, None) => write!(f, "all keys"),
            (Some(a), None) => write!(f, "keys from {a}"),
            (None, Some(b)) => write!(f, "keys below {b}"),
            (Some(a), Some(b)) => write!(f, "keys {a} to before {b}"),
        }?;
        write!(
            f,
            " ({} rows at the source, {} at the target)",
            self.rows_source, self.rows_target
        )
    }
}

/// How one table compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCheck {
    /// `schema.table` (PostgreSQL), `table` (MariaDB/MySQL).
    pub table: String,
    pub rows_source: u64,
    pub rows_target: u64,
    /// `same`, `different`, `missing` (not at the target), `extra` (only at the target) or
    /// `error` (a side could not hash it; `note` says why).
    pub status: String,
    /// Key ranges whose rows differ.
    pub differing_ranges: Vec<KeyRange>,
    /// The key chunks are cut along, and where it comes from (`primary key`,
    /// `unique index NAME`); empty without one.
    pub key: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_from: Option<String>,
    /// Hashed in one piece: no primary key nor unique index on NOT NULL columns (flagged in
    /// reports: a difference cannot be located).
    pub hashed_in_full: bool,
    pub chunks: usize,
    /// Columns present on one side only, an error, a chunk too coarse…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A catalog fact that differs: its value on each side (`None`: absent there). Secrets
/// (password hashes) are compared but shown as `(hidden)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FactDiff {
    pub fact: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

/// Something verification did not compare, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Skipped {
    pub object: String,
    pub why: String,
}

/// One database compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub tables: Vec<TableCheck>,
    /// Catalog facts (owners, privileges, settings, roles, grants…) that differ.
    pub properties: Vec<FactDiff>,
    /// How many catalog facts were compared.
    pub properties_compared: usize,
    pub skipped: Vec<Skipped>,
    /// The row hash both servers used.
    pub hash: String,
    /// Session settings pinned on both servers, as `name=value`.
    pub pinned: Vec<String>,
    pub source_version: String,
    pub target_version: String,
}

impl Verification {
    /// Every table the same and every fact equal.
    pub fn is_clean(&self) -> bool {
        self.tables.iter().all(|t| t.status == "same") && self.properties.is_empty()
    }
}

/// Compares the rows of every table of `source` with the same table at `target` (the
/// catalog facts are left out: see `verify` for the whole comparison).
///
/// # Errors
/// As `verify`.
pub fn verify_database(
    engine: DbEngine,
    source: &Side<'_>,
    target: &Side<'_>,
    chunk_rows: u64,
) -> Result<Vec<TableCheck>, String> {
    verify(
        engine,
        source,
        target,
        &VerifyOptions {
            chunk_rows,
            schemas: Vec::new(),
            rows: true,
        },
    )
    .map(|v| v.tables)
}

/// Runs `a` here and `b` on another thread: the two servers work at once.
fn both<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let hb = s.spawn(b);
        let ra = a();
        (ra, hb.join().expect("verification thread panicked"))
    })
}

/// One table as both sides will hash it.
struct Planned<'a> {
    tag: String,
    src: &'a Table,
    dst: Option<&'a Table>,
    /// Columns hashed: the source's that the target has too, in the source's order.
    cols: Vec<Col>,
    cast_binary: bool,
    /// Key columns, when both sides have them.
    key: Option<Vec<Col>>,
    notes: Vec<String>,
    /// Lower bounds of the buckets after the first: (SQL literal, as shown).
    bounds: Vec<(String, String)>,
}

/// Compares database `source.database` with `target.database`: rows of every table, catalog
/// facts, and what was skipped.
///
/// # Errors
/// A server cannot be queried at all, or its session settings could not be pinned like the
/// other's; a difference, or a table one side cannot read, is a result.
pub fn verify(
    engine: DbEngine,
    source: &Side<'_>,
    target: &Side<'_>,
    options: &VerifyOptions,
) -> Result<Verification, String> {
    verify_in(&SessionPool::new(), engine, source, target, options)
}

/// As `verify`, on the clients of `pool`: a run verifying many databases keeps one client
/// per server and worker instead of one per script.
///
/// # Errors
/// As `verify`.
pub fn verify_in(
    pool: &SessionPool,
    engine: DbEngine,
    source: &Side<'_>,
    target: &Side<'_>,
    options: &VerifyOptions,
) -> Result<Verification, String> {
    let chunk_rows = options.chunk_rows.max(2);
    let (src, dst) = both(
        || catalog::read(pool, engine, source, &options.schemas),
        || catalog::read(pool, engine, target, &options.schemas),
    );
    let (src, dst) = (
        src.map_err(|e| format!("source: {e}"))?,
        dst.map_err(|e| format!("target: {e}"))?,
    );
    // Key bounds travel as quoted literals: only safe with standard strings.
    if engine == DbEngine::Postgres && src.pins.get(6).map(String::as_str) != Some("on") {
        return Err(format!(
            "database `{}`: standard_conforming_strings could not be turned on",
            source.database
        ));
    }
    if src.pins != dst.pins {
        return Err(format!(
            "database `{}`: the session settings could not be pinned alike on both servers (source {}, target {})",
            source.database,
            src.pins.join(" "),
            dst.pins.join(" ")
        ));
    }
    let hash = match engine {
        DbEngine::Postgres
            if src.hashtext_probe.is_some() && src.hashtext_probe == dst.hashtext_probe =>
        {
            HashFn::Hashtext
        }
        DbEngine::Postgres => HashFn::Md5,
        _ => HashFn::Sha1,
    };
    let mut planned: Vec<Planned<'_>> = src
        .tables
        .values()
        .enumerate()
        .map(|(i, t)| plan_table(engine, format!("t{i}"), t, dst.tables.get(&t.display)))
        .collect();

    // Stage 2: bounds at the source, for keyed tables that may hold more than a chunk.
    let mut bounds_script = Script::new(engine);
    for p in sql::pins(engine) {
        bounds_script.plain(p);
    }
    let mut wanted = 0;
    for p in planned.iter().filter(|_| options.rows) {
        let (Some(key), Some(_)) = (&p.key, p.dst) else {
            continue;
        };
        if p.src.estimate.is_some_and(|n| n < chunk_rows / 2) {
            continue;
        }
        let step = chunk_rows.max(p.src.estimate.unwrap_or(0) / MAX_CHUNKS);
        bounds_script.tagged(
            &p.tag,
            &sql::bounds_query(engine, &p.tag, &p.src.from, key, step),
        );
        wanted += 1;
    }
    if wanted > 0 {
        let ran = run(pool, engine, source, &bounds_script).map_err(|e| format!("source: {e}"))?;
        for p in &mut planned {
            let Some(key) = &p.key else { continue };
            if let Some(rows) = ran.rows(&p.tag) {
                p.bounds = read_bounds(engine, key, rows);
            } else if ran.failed.contains_key(&p.tag) {
                p.notes.push(format!(
                    "its keys could not be read in order ({}): compared in one chunk",
                    ran.why(&p.tag)
                ));
            }
        }
    }

    // Stage 3: the same hashing statements on both servers (the source also counts tables
    // the target lacks, the target those only it has), and MariaDB accounts' grants.
    let accounts: Vec<(String, String)> = src.accounts.union(&dst.accounts).cloned().collect();
    let extra: Vec<(String, &Table)> = dst
        .tables
        .values()
        .filter(|t| !src.tables.contains_key(&t.display))
        .enumerate()
        .map(|(i, t)| (format!("x{i}"), t))
        .collect();
    let hash_script = |for_source: bool| -> Script {
        let mut s = Script::new(engine);
        for p in sql::pins(engine) {
            s.plain(p);
        }
        if engine == DbEngine::Postgres {
            // The planner cannot count the buckets of an expression and would sort every row
            // to group them (measured: a quarter of the statement's CPU); hashing groups them.
            s.plain("SET enable_sort = off;");
        }
        for p in planned.iter().filter(|_| options.rows) {
            if !for_source && p.dst.is_none() {
                continue;
            }
            let bucket = match (&p.key, p.bounds.is_empty()) {
                (Some(key), false) => {
                    let lits: Vec<String> = p.bounds.iter().map(|(l, _)| l.clone()).collect();
                    sql::bucket(&sql::key_expr(engine, key), &lits)
                }
                _ => "0".into(),
            };
            s.tagged(
                &p.tag,
                &sql::chunk_query(
                    engine,
                    &p.tag,
                    &p.src.from,
                    &p.cols,
                    p.cast_binary,
                    &bucket,
                    hash,
                ),
            );
        }
        if !for_source && options.rows {
            for (tag, t) in &extra {
                let cols: Vec<Col> = t.columns.iter().map(|c| c.col.clone()).collect();
                s.tagged(
                    tag,
                    &sql::chunk_query(engine, tag, &t.from, &cols, mixed(t, None), "0", hash),
                );
            }
        }
        for (i, (user, host)) in accounts.iter().enumerate() {
            let who = if host.is_empty() {
                crate::db::sql_literal(user)
            } else {
                format!(
                    "{}@{}",
                    crate::db::sql_literal(user),
                    crate::db::sql_literal(host)
                )
            };
            s.block(&format!("g{i}"), format!("SHOW GRANTS FOR {who};"));
        }
        s
    };
    let (at_src, at_dst) = both(
        || run(pool, engine, source, &hash_script(true)),
        || run(pool, engine, target, &hash_script(false)),
    );
    let (at_src, at_dst) = (
        at_src.map_err(|e| format!("source: {e}"))?,
        at_dst.map_err(|e| format!("target: {e}"))?,
    );

    let mut out = Verification {
        hash: hash.name().into(),
        pinned: pinned_names(engine)
            .iter()
            .zip(&src.pins)
            .map(|(n, v)| format!("{n}={v}"))
            .collect(),
        source_version: src.version.clone(),
        target_version: dst.version.clone(),
        ..Default::default()
    };
    for p in &planned {
        let mut check = compare_table(p, &at_src, &at_dst);
        if !options.rows {
            // Nothing hashed: only presence and columns were compared.
            check.chunks = 0;
            check.hashed_in_full = false;
        }
        out.tables.push(check);
    }
    for (tag, t) in &extra {
        out.tables.push(TableCheck {
            table: t.display.clone(),
            rows_source: 0,
            rows_target: chunks(&at_dst, tag).values().map(|(n, _)| n).sum(),
            status: "extra".into(),
            differing_ranges: Vec::new(),
            key: Vec::new(),
            key_from: None,
            hashed_in_full: false,
            chunks: 0,
            note: Some("only at the target".into()),
        });
    }
    out.tables.sort_by(|a, b| a.table.cmp(&b.table));
    compare_facts(
        engine,
        source.database,
        &src,
        &dst,
        &accounts,
        &at_src,
        &at_dst,
        &mut out,
    );
    Ok(out)
}

/// Names of the pinned settings, in the order of the `pins` row.
fn pinned_names(engine: DbEngine) -> &'static [&'static str] {
    match engine {
        DbEngine::Postgres => &[
            "TimeZone",
            "DateStyle",
            "IntervalStyle",
            "extra_float_digits",
            "bytea_output",
            "lc_monetary",
            "standard_conforming_strings",
            "client_encoding",
            "search_path",
            "row_security",
        ],
        _ => &[
            "time_zone",
            "sql_mode",
            "character_set_results",
            "collation_connection",
            "character_set_connection",
        ],
    }
}

/// Whether a MariaDB table's string columns (on either side) mix character sets or
/// collations, which `CONCAT` refuses: they are hashed as bytes then.
fn mixed(a: &Table, b: Option<&Table>) -> bool {
    let kinds: BTreeSet<(&str, &str)> = a
        .columns
        .iter()
        .chain(b.into_iter().flat_map(|t| t.columns.iter()))
        .filter(|c| c.col.enc == Enc::Text && !c.charset.is_empty())
        .map(|c| (c.charset.as_str(), c.collation.as_str()))
        .collect();
    kinds.len() > 1
}

fn plan_table<'a>(
    engine: DbEngine,
    tag: String,
    src: &'a Table,
    dst: Option<&'a Table>,
) -> Planned<'a> {
    let mut p = Planned {
        tag,
        src,
        dst,
        cols: Vec::new(),
        cast_binary: false,
        key: None,
        notes: Vec::new(),
        bounds: Vec::new(),
    };
    let Some(dst) = dst else {
        // Counted at the source only.
        p.cols = src.columns.iter().map(|c| c.col.clone()).collect();
        p.cast_binary = engine != DbEngine::Postgres && mixed(src, None);
        return p;
    };
    let mut missing = Vec::new();
    for c in &src.columns {
        match dst.column(&c.col.name) {
            Some(d) => {
                let mut col = c.col.clone();
                // Written the same way on both sides: as text when the types disagree.
                if d.col.enc != col.enc {
                    col.enc = Enc::Text;
                }
                col.collatable = col.collatable && d.col.collatable;
                if d.col.lit != col.lit {
                    col.lit = if engine == DbEngine::Postgres {
                        Lit::Quoted
                    } else {
                        d.col.lit.clone()
                    };
                }
                p.cols.push(col);
            }
            None => missing.push(c.col.name.clone()),
        }
    }
    let extra: Vec<String> = dst
        .columns
        .iter()
        .filter(|c| src.column(&c.col.name).is_none())
        .map(|c| c.col.name.clone())
        .collect();
    if !missing.is_empty() {
        p.notes.push(format!(
            "columns missing at the target: {}",
            missing.join(", ")
        ));
    }
    if !extra.is_empty() {
        p.notes
            .push(format!("columns only at the target: {}", extra.join(", ")));
    }
    p.cast_binary = engine != DbEngine::Postgres && mixed(src, Some(dst));
    if let Some(k) = &src.key {
        let cols: Option<Vec<Col>> = k
            .columns
            .iter()
            .map(|n| p.cols.iter().find(|c| &c.name == n).cloned())
            .collect();
        match cols {
            Some(cols) => p.key = Some(cols),
            None => p
                .notes
                .push("its key columns are missing at the target: compared in one chunk".into()),
        }
    }
    p
}

/// Bounds rows (`["bound", tag, position, [values…]]`) in key order, as literals and as shown.
fn read_bounds<'a>(
    engine: DbEngine,
    key: &[Col],
    rows: impl Iterator<Item = &'a Vec<serde_json::Value>>,
) -> Vec<(String, String)> {
    let mut found: Vec<(u64, Vec<String>)> = rows
        .filter_map(|r| {
            let pos = field(r, 2).parse().ok()?;
            let values = match r.get(3)? {
                serde_json::Value::Array(a) => a.iter().map(text).collect(),
                _ => return None,
            };
            Some((pos, values))
        })
        .collect();
    found.sort_by_key(|(p, _)| *p);
    found
        .into_iter()
        .filter_map(|(_, values)| {
            let lit = sql::bound_literal(engine, key, &values)?;
            let shown: Vec<String> = key
                .iter()
                .zip(&values)
                .map(|(c, v)| show_value(&c.lit, v))
                .collect();
            let shown = match shown.as_slice() {
                [one] => one.clone(),
                _ => format!("({})", shown.join(", ")),
            };
            Some((lit, shown))
        })
        .collect()
}

/// A key value as reports show it.
fn show_value(lit: &Lit, v: &str) -> String {
    match lit {
        Lit::Number => v.to_string(),
        Lit::Hex(_) => {
            let bytes: Option<Vec<u8>> = (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(v.get(i..i + 2)?, 16).ok())
                .collect();
            match bytes.map(String::from_utf8) {
                Some(Ok(s)) => format!("'{}'", s.replace('\'', "''")),
                _ => format!("0x{v}"),
            }
        }
        Lit::Quoted | Lit::Temporal => format!("'{}'", v.replace('\'', "''")),
    }
}

/// A table's chunks as a side hashed them: bucket → (rows, sum of hashes).
fn chunks(ran: &Ran, tag: &str) -> BTreeMap<i64, (u64, String)> {
    ran.rows(tag)
        .map(|rows| {
            rows.filter_map(|r| {
                Some((
                    field(r, 2).parse().ok()?,
                    (field(r, 3).parse().ok()?, field(r, 4)),
                ))
            })
            .collect()
        })
        .unwrap_or_default()
}

fn compare_table(p: &Planned<'_>, at_src: &Ran, at_dst: &Ran) -> TableCheck {
    let (a, b) = (chunks(at_src, &p.tag), chunks(at_dst, &p.tag));
    let mut check = TableCheck {
        table: p.src.display.clone(),
        rows_source: a.values().map(|(n, _)| n).sum(),
        rows_target: b.values().map(|(n, _)| n).sum(),
        status: "same".into(),
        differing_ranges: Vec::new(),
        key: p
            .key
            .as_ref()
            .map(|k| k.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default(),
        key_from: p.key.as_ref().and(p.src.key.as_ref()).map(|k| k.by.clone()),
        hashed_in_full: p.key.is_none() && (p.dst.is_some() || p.src.key.is_none()),
        chunks: p.bounds.len() + 1,
        note: None,
    };
    let mut notes = p.notes.clone();
    if p.dst.is_none() {
        check.status = "missing".into();
        notes.push("not at the target".into());
    } else if let Some(why) =
        [("source", at_src), ("target", at_dst)]
            .iter()
            .find_map(|(side, ran)| {
                ran.failed
                    .get(&p.tag)
                    .map(|w| format!("the {side} could not hash it: {w}"))
            })
    {
        check.status = "error".into();
        notes.push(why);
    } else {
        let buckets: BTreeSet<i64> = a.keys().chain(b.keys()).copied().collect();
        for bucket in buckets {
            let (x, y) = (a.get(&bucket), b.get(&bucket));
            if x == y {
                continue;
            }
            let i = usize::try_from(bucket).unwrap_or(0);
            check.differing_ranges.push(KeyRange {
                from: i
                    .checked_sub(1)
                    .and_then(|j| p.bounds.get(j))
                    .map(|(_, s)| s.clone()),
                before: p.bounds.get(i).map(|(_, s)| s.clone()),
                rows_source: x.map_or(0, |(n, _)| *n),
                rows_target: y.map_or(0, |(n, _)| *n),
            });
        }
        if !check.differing_ranges.is_empty() || !p.notes.is_empty() {
            check.status = "different".into();
        }
    }
    check.note = (!notes.is_empty()).then(|| notes.join("; "));
    check
}

/// Compares the catalog facts (MariaDB grants read in the hashing sessions added), leaving
/// out on both sides what either could not read.
#[allow(clippy::too_many_arguments)]
fn compare_facts(
    engine: DbEngine,
    database: &str,
    src: &Catalog,
    dst: &Catalog,
    accounts: &[(String, String)],
    at_src: &Ran,
    at_dst: &Ran,
    out: &mut Verification,
) {
    // What is left out of the comparison of accounts, and why: said, never a difference.
    let mut noted: BTreeSet<Skipped> = BTreeSet::new();
    let grant_lines = |ran: &Ran, i: usize| -> Vec<String> {
        ran.done
            .get(&format!("g{i}"))
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| match l {
                        Line::Text(t) => Some(t.clone()),
                        Line::Row(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut a = src.facts.clone();
    let mut b = dst.facts.clone();
    if engine != DbEngine::Postgres {
        for (i, (user, host)) in accounts.iter().enumerate() {
            let who = if host.is_empty() {
                format!("role '{user}'")
            } else {
                format!("'{user}'@'{host}'")
            };
            // An account absent from a side prints no line there at all.
            let (at_s, at_t) = (grant_lines(at_src, i), grant_lines(at_dst, i));
            if at_s.is_empty() {
                if !at_t.is_empty() {
                    noted.insert(Skipped {
                        object: who.clone(),
                        why: "exists at the target only and holds grants on the database there: left as it is".into(),
                    });
                }
                continue;
            }
            // A grant on a table a side no longer has cannot be carried: said, not compared.
            let keep =
                |lines: Vec<String>, cat: &Catalog, side: &str, noted: &mut BTreeSet<Skipped>| {
                    lines
                        .into_iter()
                        .filter(|l| grant_concerns(l, database))
                        .filter(|l| match granted_table(l, database) {
                            Some(t)
                                if !cat.tables.contains_key(&t)
                                    && !cat.skipped.iter().any(|s| s.object == t) =>
                            {
                                noted.insert(Skipped {
                                    object: format!("grant of {who} on `{t}`"),
                                    why: format!(
                                        "the {side} has no such table: not carried, not compared"
                                    ),
                                });
                                false
                            }
                            _ => true,
                        })
                        .collect::<Vec<_>>()
                };
            let (fs, ft) = (
                account_facts(&keep(at_s, src, "source", &mut noted)),
                account_facts(&keep(at_t, dst, "target", &mut noted)),
            );
            let insert =
                |facts: &mut BTreeMap<String, Fact>, f: &catalog::AccountFacts, auth: bool| {
                    facts.insert(
                        format!("grants of {who}"),
                        Fact {
                            value: f.grants.clone(),
                            secret: false,
                            origin: "accounts".into(),
                        },
                    );
                    if !auth {
                        return;
                    }
                    facts.insert(
                        format!("authentication of {who}"),
                        Fact {
                            value: f.authentication.clone(),
                            secret: false,
                            origin: "accounts".into(),
                        },
                    );
                    if !f.secrets.is_empty() {
                        facts.insert(
                            format!("credentials of {who}"),
                            Fact {
                                value: blake3::hash(f.secrets.as_bytes()).to_hex().to_string(),
                                secret: true,
                                origin: "accounts".into(),
                            },
                        );
                    }
                };
            // A plugin the target lacks: the account was created locked there, to be given a
            // new password; its authentication cannot be equal.
            let missing: Vec<String> = fs
                .plugins()
                .into_iter()
                .filter(|p| !dst.auth_plugins.is_empty() && !dst.auth_plugins.contains(p))
                .collect();
            let auth = missing.is_empty();
            if !auth {
                noted.insert(Skipped {
                    object: format!("authentication of {who}"),
                    why: format!(
                        "{} not active at the target: the account needs a new password there",
                        missing.join(", ")
                    ),
                });
            }
            insert(&mut a, &fs, auth);
            insert(&mut b, &ft, auth);
        }
    }
    // A statement of facts that failed on either side: its facts are compared on neither.
    let mut unread: BTreeMap<&String, (String, String)> = BTreeMap::new();
    for (side, cat) in [("source", src), ("target", dst)] {
        for (tag, (label, why)) in &cat.unread {
            unread.entry(tag).or_insert_with(|| {
                (
                    label.clone(),
                    format!("not compared: the {side} could not read them ({why})"),
                )
            });
        }
    }
    let left_out = |fact: &Fact| unread.contains_key(&fact.origin);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        if a.get(k).or(b.get(k)).is_some_and(&left_out) {
            continue;
        }
        out.properties_compared += 1;
        let (x, y) = (a.get(k), b.get(k));
        if x.map(|f| &f.value) == y.map(|f| &f.value) {
            continue;
        }
        let show = |f: Option<&Fact>| {
            f.map(|f| {
                if f.secret {
                    "(hidden)".to_string()
                } else {
                    f.value.clone()
                }
            })
        };
        out.properties.push(FactDiff {
            fact: k.clone(),
            source: show(x),
            target: show(y),
        });
    }
    let mut skipped: BTreeSet<Skipped> = src.skipped.iter().cloned().collect();
    for s in &dst.skipped {
        if !src.skipped.iter().any(|x| x.object == s.object) {
            skipped.insert(Skipped {
                object: s.object.clone(),
                why: format!("{} (at the target)", s.why),
            });
        }
    }
    for (label, why) in unread.into_values() {
        skipped.insert(Skipped { object: label, why });
    }
    skipped.extend(noted);
    out.skipped = skipped.into_iter().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_come_back_in_key_order_as_literals_and_as_shown() {
        let key = [Col {
            name: "code".into(),
            enc: Enc::Text,
            collatable: false,
            lit: Lit::Hex(Some("utf8mb4".into())),
        }];
        let rows = [
            serde_json::json!(["bound", "t0", "1001", ["6B32"]]),
            serde_json::json!(["bound", "t0", "501", ["6B31"]]),
            serde_json::json!(["bound", "t0", "1501", ["zz"]]),
            serde_json::json!(["bound", "t0", "2001", ["FF"]]),
        ];
        let rows: Vec<Vec<serde_json::Value>> =
            rows.iter().map(|r| r.as_array().unwrap().clone()).collect();
        let bounds = read_bounds(DbEngine::Mariadb, &key, rows.iter());
        assert_eq!(
            bounds,
            vec![
                ("_utf8mb4 X'6B31'".to_string(), "'k1'".to_string()),
                ("_utf8mb4 X'6B32'".to_string(), "'k2'".to_string()),
                // Not hex: never trusted into SQL. Not UTF-8: shown in hex.
                ("_utf8mb4 X'FF'".to_string(), "0xFF".to_string()),
            ]
        );
    }

    #[test]
    fn ranges_read_as_from_and_before() {
        let r = KeyRange {
            from: Some("1501".into()),
            before: Some("2001".into()),
            rows_source: 500,
            rows_target: 499,
        };
        assert_eq!(
            r.to_string(),
            "keys 1501 to before 2001 (500 rows at the source, 499 at the target)"
        );
        let last = KeyRange { before: None, ..r };
        assert!(last.to_string().starts_with("keys from 1501 ("));
    }
}
