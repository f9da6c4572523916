//! The SQL both servers run to compare rows, generated from the catalogs: settings pinned so
//! values print the same on both, an injective row encoding (NULL never looks like any text),
//! the row hash, and key buckets. Both servers run the very same hashing statement, so a
//! bucket holds the same keys on both whatever the data. Pure functions, unit-tested.

use crate::db::ident;
use crate::plan::raw::DbEngine;

/// How a column's value is written into the row encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enc {
    /// Its text never holds the field separator nor a backslash (numbers, dates, uuid, bytea
    /// in hex, booleans): written as it prints.
    Plain,
    /// Single precision: PostgreSQL writes its exact bits (`float4send`); MariaDB widens it to
    /// double (its own text keeps 6 digits, so two different floats could print alike).
    Float4,
    /// Double precision: PostgreSQL writes its exact bits, so servers that print floats
    /// differently (before and after PostgreSQL 12) agree; MariaDB's text is exact.
    Float8,
    /// MariaDB `BIT`: as a number (its raw bytes may hold the separator).
    Bit,
    /// Anything else: length-prefixed (`5:hello`), so no content can imitate a separator or
    /// the NULL marker.
    Text,
}

/// How a key column's bounds are read at the source and written back as SQL literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lit {
    /// PostgreSQL: the value's text, quoted; the column's type parses it back.
    Quoted,
    /// MariaDB numbers: bare (a quoted number would be compared as a double).
    Number,
    /// MariaDB dates and times: quoted.
    Temporal,
    /// MariaDB strings: the bytes in hex, introduced by the column's character set (`None`:
    /// binary), so any byte survives the trip.
    Hex(Option<String>),
}

/// A column as the generated SQL needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Col {
    pub name: String,
    pub enc: Enc,
    /// PostgreSQL: collatable, so key comparisons and ordering use `COLLATE "C"` (the same
    /// bytewise order on both servers, whatever their locales).
    pub collatable: bool,
    pub lit: Lit,
}

/// The row hash, 64 bits of it summed per bucket (with the row count): the cheapest stable
/// function both servers offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashFn {
    /// PostgreSQL 11+ `hashtextextended`: 64 bits directly, no hex to parse; used when both
    /// servers give the same value for a probe string (same algorithm and byte order).
    Hashtext,
    /// `md5`, first 64 bits: PostgreSQL before 11, or servers that disagree on the probe.
    Md5,
    /// MariaDB/MySQL `SHA1`, first 64 bits: hardware-accelerated where MD5 is not (measured
    /// 0.13 s vs 0.44 s of server CPU per 500,000 rows of 250 bytes); CRC32/CRC32C are cheaper
    /// still but linear, so their sum lets structured changes (two rows swapping a value)
    /// cancel out.
    Sha1,
}

impl HashFn {
    pub(super) fn name(self) -> &'static str {
        match self {
            HashFn::Hashtext => "hashtextextended",
            HashFn::Md5 => "md5",
            HashFn::Sha1 => "sha1",
        }
    }
}

/// Session settings that change how values print, pinned identically on both servers
/// (statements that print nothing), then a transaction that reads one snapshot.
pub(super) fn pins(engine: DbEngine) -> Vec<String> {
    match engine {
        DbEngine::Postgres => [
            "SET client_encoding = 'UTF8';",
            "SET TimeZone = 'UTC';",
            "SET DateStyle = 'ISO, YMD';",
            "SET IntervalStyle = 'postgres';",
            "SET extra_float_digits = 3;",
            "SET bytea_output = 'hex';",
            "SET lc_monetary = 'C';",
            "SET standard_conforming_strings = on;",
            "SET search_path = pg_catalog;",
            "SET statement_timeout = 0;",
            // JIT compiles the long bucket expressions for longer than it saves (before 11:
            // an unknown setting, an error nobody reads).
            "SET jit = off;",
            // A table whose rows a policy hides must fail, not verify as a subset.
            "SET row_security = off;",
            begin(engine),
        ]
        .map(String::from)
        .to_vec(),
        _ => [
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin;",
            "SET SESSION time_zone = '+00:00';",
            // Backslash escapes on (our literals use them), no CHAR padding, no ANSI quotes.
            "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;",
            begin(engine),
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// The statement that opens a script's transaction (the last of `pins`): left out of the
/// scripts run inside a snapshot already held (`pool::Snapshot`), where it would end it.
pub(super) fn begin(engine: DbEngine) -> &'static str {
    match engine {
        DbEngine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;",
        _ => "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;",
    }
}

/// The pinned settings as the server holds them (compared between the two sides), then the
/// server's version. Tagged `pins`.
pub(super) fn pins_query(engine: DbEngine) -> String {
    match engine {
        DbEngine::Postgres => "SELECT json_build_array('pins', current_setting('TimeZone'), current_setting('DateStyle'), \
current_setting('IntervalStyle'), current_setting('extra_float_digits'), current_setting('bytea_output'), \
current_setting('lc_monetary'), current_setting('standard_conforming_strings'), current_setting('client_encoding'), \
current_setting('search_path'), current_setting('row_security', true), current_setting('server_version_num'), \
'PostgreSQL ' || current_setting('server_version'))".into(),
        _ => "SELECT JSON_ARRAY('pins', @@session.time_zone, @@session.sql_mode, @@session.character_set_results, \
@@session.collation_connection, @@session.character_set_connection, '', '', '', '', '', \
CAST(SUBSTRING_INDEX(VERSION(), '.', 1) * 10000 + SUBSTRING_INDEX(SUBSTRING_INDEX(VERSION(), '.', 2), '.', -1) * 100 AS CHAR), VERSION())".into(),
    }
}

/// Number of leading fields of the `pins` row that are settings (compared); then come the
/// version as a number (`110200`) and as the server shows it.
pub(super) const PINNED_FIELDS: usize = 10;

/// The value of column `c` in the row encoding.
fn field(engine: DbEngine, c: &Col, cast_binary: bool) -> String {
    let q = ident(engine, &c.name);
    match engine {
        DbEngine::Postgres => match c.enc {
            Enc::Plain | Enc::Bit => format!("coalesce({q}::text, '\\N')"),
            Enc::Float4 => format!("coalesce(float4send({q})::text, '\\N')"),
            Enc::Float8 => format!("coalesce(float8send({q})::text, '\\N')"),
            Enc::Text => format!("coalesce(length({q}::text) || ':' || {q}::text, '\\N')"),
        },
        _ => match c.enc {
            Enc::Plain | Enc::Float8 => format!("IFNULL({q}, '\\\\N')"),
            Enc::Float4 => format!("IFNULL(CAST({q} AS DOUBLE), '\\\\N')"),
            Enc::Bit => format!("IFNULL({q} + 0, '\\\\N')"),
            Enc::Text if cast_binary => {
                format!("IFNULL(CONCAT(LENGTH({q}), ':', CAST({q} AS BINARY)), '\\\\N')")
            }
            Enc::Text => format!("IFNULL(CONCAT(LENGTH({q}), ':', {q}), '\\\\N')"),
        },
    }
}

/// The whole row as one string: fields in order, separated by 0x1F. Injective: a field is
/// either the NULL marker `\N`, a plain value (no separator, no backslash), or
/// `length:content`; so two rows encode alike only when they are equal. `cast_binary`
/// (MariaDB): the table mixes character sets, which `CONCAT` refuses to mix.
pub(super) fn encoding(engine: DbEngine, cols: &[Col], cast_binary: bool) -> String {
    if cols.is_empty() {
        return "''".into();
    }
    let fields: Vec<String> = cols.iter().map(|c| field(engine, c, cast_binary)).collect();
    match engine {
        DbEngine::Postgres => fields.join(" || E'\\x1f' || "),
        _ => format!("CONCAT_WS(CHAR(31), {})", fields.join(", ")),
    }
}

/// 64 bits of the hash of `enc`, as an integer the server can sum exactly.
pub(super) fn hash(hash: HashFn, enc: &str) -> String {
    match hash {
        // In "C": a column's nondeterministic collation must not make the hash blind to case.
        HashFn::Hashtext => format!("hashtextextended(({enc}) COLLATE \"C\", 0)"),
        HashFn::Md5 => format!("('x' || left(md5({enc}), 16))::bit(64)::bigint"),
        HashFn::Sha1 => format!("CAST(CONV(LEFT(SHA1({enc}), 16), 16, 10) AS UNSIGNED)"),
    }
}

/// The key as one comparable expression (a row for composite keys).
pub(super) fn key_expr(engine: DbEngine, keys: &[Col]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|c| {
            let q = ident(engine, &c.name);
            if engine == DbEngine::Postgres && c.collatable {
                format!("{q} COLLATE \"C\"")
            } else {
                q
            }
        })
        .collect();
    match (engine, parts.as_slice()) {
        (_, [one]) => one.clone(),
        (DbEngine::Postgres, _) => format!("ROW({})", parts.join(", ")),
        _ => format!("({})", parts.join(", ")),
    }
}

/// Key order, the same as `key_expr`'s comparisons.
fn order_by(engine: DbEngine, keys: &[Col]) -> String {
    keys.iter()
        .map(|c| {
            let q = ident(engine, &c.name);
            if engine == DbEngine::Postgres && c.collatable {
                format!("{q} COLLATE \"C\"")
            } else {
                q
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The expression that prints key column `c` for `literal` to read back.
fn key_text(engine: DbEngine, c: &Col, column: &str) -> String {
    match engine {
        DbEngine::Postgres => format!("{column}::text"),
        _ => match c.lit {
            Lit::Hex(_) => format!("HEX({column})"),
            _ if c.enc == Enc::Bit => format!("CAST({column} + 0 AS CHAR)"),
            _ => format!("CAST({column} AS CHAR)"),
        },
    }
}

/// A key value printed by `key_text` as an SQL literal for its column; `None` when the text
/// is not what that kind of column prints (never trusted into SQL).
pub(super) fn literal(engine: DbEngine, lit: &Lit, text: &str) -> Option<String> {
    match (engine, lit) {
        (DbEngine::Postgres, _) => Some(format!("'{}'", text.replace('\'', "''"))),
        (_, Lit::Number) => (!text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .then(|| text.to_string()),
        (_, Lit::Temporal) => text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | ' '))
            .then(|| format!("'{text}'")),
        (_, Lit::Hex(charset)) => {
            if !text.chars().all(|c| c.is_ascii_hexdigit()) || !text.len().is_multiple_of(2) {
                return None;
            }
            match charset {
                Some(cs) if cs.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    Some(format!("_{cs} X'{text}'"))
                }
                Some(_) => None,
                None => Some(format!("X'{text}'")),
            }
        }
        (_, Lit::Quoted) => Some(format!(
            "'{}'",
            text.replace('\\', "\\\\").replace('\'', "''")
        )),
    }
}

/// One bound (the key values of one row) as a literal comparable with `key_expr`.
pub(super) fn bound_literal(engine: DbEngine, keys: &[Col], values: &[String]) -> Option<String> {
    if keys.len() != values.len() || keys.is_empty() {
        return None;
    }
    let lits: Option<Vec<String>> = keys
        .iter()
        .zip(values)
        .map(|(c, v)| literal(engine, &c.lit, v))
        .collect();
    let lits = lits?;
    Some(match (engine, lits.as_slice()) {
        (_, [one]) => one.clone(),
        (DbEngine::Postgres, _) => format!("ROW({})", lits.join(", ")),
        _ => format!("({})", lits.join(", ")),
    })
}

/// The bucket of key `k` among sorted lower bounds: how many bounds are ≤ `k` (0 below the
/// first, `bounds.len()` from the last on), as a binary tree of comparisons (log₂ n per row).
/// Were the bounds not in the servers' order, buckets would still be the same on both sides
/// (the same expression on the same key), only less contiguous.
pub(super) fn bucket(k: &str, bounds: &[String]) -> String {
    fn tree(k: &str, bounds: &[String], offset: usize) -> String {
        if bounds.is_empty() {
            return offset.to_string();
        }
        let mid = bounds.len() / 2;
        format!(
            "CASE WHEN {k} < {} THEN {} ELSE {} END",
            bounds[mid],
            tree(k, &bounds[..mid], offset),
            tree(k, &bounds[mid + 1..], offset + mid + 1)
        )
    }
    tree(k, bounds, 0)
}

/// Per bucket: row count and the exact sum of the rows' 64-bit hashes. Rows
/// `["chunk", tag, bucket, count, sum]`.
pub(super) fn chunk_query(
    engine: DbEngine,
    tag: &str,
    from: &str,
    cols: &[Col],
    cast_binary: bool,
    bucket_expr: &str,
    hash_fn: HashFn,
) -> String {
    let h = hash(hash_fn, &encoding(engine, cols, cast_binary));
    match engine {
        DbEngine::Postgres => format!(
            "SELECT json_build_array('chunk', '{tag}', b::text, count(*)::text, coalesce(sum(h), 0)::text) \
FROM (SELECT {bucket_expr} AS b, {h} AS h FROM {from}) s GROUP BY b"
        ),
        _ => format!(
            // ORDER BY NULL: MariaDB would sort the groups otherwise.
            "SELECT JSON_ARRAY('chunk', '{tag}', CAST(b AS CHAR), CAST(COUNT(*) AS CHAR), CAST(COALESCE(SUM(h), 0) AS CHAR)) \
FROM (SELECT {bucket_expr} AS b, {h} AS h FROM {from}) s GROUP BY b ORDER BY NULL"
        ),
    }
}

/// At the source: every `step`-th key in key order (from the `step + 1`-th), the lower bounds
/// of the buckets after the first. Rows `["bound", tag, position, [values…]]`.
pub(super) fn bounds_query(
    engine: DbEngine,
    tag: &str,
    from: &str,
    keys: &[Col],
    step: u64,
) -> String {
    let names: Vec<String> = keys.iter().map(|c| ident(engine, &c.name)).collect();
    let texts: Vec<String> = keys
        .iter()
        .zip(&names)
        .map(|(c, n)| key_text(engine, c, &format!("s.{n}")))
        .collect();
    let order = order_by(engine, keys);
    let step = step.max(2);
    match engine {
        DbEngine::Postgres => format!(
            "SELECT json_build_array('bound', '{tag}', rn::text, json_build_array({})) \
FROM (SELECT {}, row_number() OVER (ORDER BY {order}) AS rn FROM {from}) s WHERE rn > 1 AND (rn - 1) % {step} = 0",
            texts.join(", "),
            names.join(", ")
        ),
        _ => format!(
            "SELECT JSON_ARRAY('bound', '{tag}', CAST(rn AS CHAR), JSON_ARRAY({})) \
FROM (SELECT {}, ROW_NUMBER() OVER (ORDER BY {order}) AS rn FROM {from}) s WHERE rn > 1 AND MOD(rn - 1, {step}) = 0",
            texts.join(", "),
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, enc: Enc, lit: Lit) -> Col {
        Col {
            name: name.into(),
            enc,
            collatable: enc == Enc::Text,
            lit,
        }
    }

    /// Decodes an encoding the way the proof of injectivity goes: every field is recovered.
    fn decode(s: &str, n: usize) -> Vec<Option<String>> {
        let mut out = Vec::new();
        let mut rest = s;
        for i in 0..n {
            if let Some(r) = rest.strip_prefix("\\N") {
                out.push(None);
                rest = r;
            } else if let Some((len, r)) = rest.split_once(':')
                && let Ok(len) = len.parse::<usize>()
            {
                out.push(Some(r[..len].to_string()));
                rest = &r[len..];
            } else {
                let end = rest.find('\u{1f}').unwrap_or(rest.len());
                out.push(Some(rest[..end].to_string()));
                rest = &rest[end..];
            }
            if i + 1 < n {
                rest = rest.strip_prefix('\u{1f}').expect("separator");
            }
        }
        assert!(rest.is_empty());
        out
    }

    /// What the servers compute for text columns, in Rust.
    fn encode(values: &[Option<&str>]) -> String {
        values
            .iter()
            .map(|v| match v {
                None => "\\N".to_string(),
                Some(v) => format!("{}:{v}", v.len()),
            })
            .collect::<Vec<_>>()
            .join("\u{1f}")
    }

    #[test]
    fn the_row_encoding_tells_null_from_any_text() {
        let rows: [&[Option<&str>]; 6] = [
            &[None, Some("a")],
            &[Some("\\N"), Some("a")],
            &[Some(""), Some("a")],
            &[Some("a\u{1f}1:"), Some("")],
            &[Some("a"), Some("1:\u{1f}")],
            &[Some("3:abc"), None],
        ];
        let encoded: Vec<String> = rows.iter().map(|r| encode(r)).collect();
        for (r, e) in rows.iter().zip(&encoded) {
            let back = decode(e, r.len());
            assert_eq!(
                back,
                r.iter().map(|v| v.map(String::from)).collect::<Vec<_>>()
            );
        }
        let distinct: std::collections::BTreeSet<&String> = encoded.iter().collect();
        assert_eq!(distinct.len(), rows.len());
        // The SQL writes the same shapes.
        let pg = encoding(
            DbEngine::Postgres,
            &[
                col("a", Enc::Text, Lit::Quoted),
                col("n", Enc::Plain, Lit::Quoted),
            ],
            false,
        );
        assert_eq!(
            pg,
            "coalesce(length(\"a\"::text) || ':' || \"a\"::text, '\\N') || E'\\x1f' || coalesce(\"n\"::text, '\\N')"
        );
        let my = encoding(
            DbEngine::Mariadb,
            &[
                col("a", Enc::Text, Lit::Hex(None)),
                col("f", Enc::Float4, Lit::Number),
            ],
            true,
        );
        assert_eq!(
            my,
            "CONCAT_WS(CHAR(31), IFNULL(CONCAT(LENGTH(`a`), ':', CAST(`a` AS BINARY)), '\\\\N'), IFNULL(CAST(`f` AS DOUBLE), '\\\\N'))"
        );
    }

    #[test]
    fn buckets_count_the_bounds_at_or_below_the_key() {
        let bounds: Vec<String> = [10, 20, 30, 40, 50].iter().map(|b| b.to_string()).collect();
        let expr = bucket("k", &bounds);
        // Evaluate the generated tree for a few keys.
        fn eval(expr: &str, k: i64) -> usize {
            let e = expr.trim();
            if let Ok(n) = e.parse() {
                return n;
            }
            let body = e
                .strip_prefix("CASE WHEN k < ")
                .unwrap()
                .strip_suffix(" END")
                .unwrap();
            let (bound, rest) = body.split_once(" THEN ").unwrap();
            // Split THEN-part and ELSE-part at the ELSE of this level.
            let mut depth = 0;
            let bytes = rest.as_bytes();
            let mut split = 0;
            let mut i = 0;
            while i < bytes.len() {
                if rest[i..].starts_with("CASE ") {
                    depth += 1;
                } else if rest[i..].starts_with(" END") {
                    depth -= 1;
                } else if depth == 0 && rest[i..].starts_with(" ELSE ") {
                    split = i;
                    break;
                }
                i += 1;
            }
            let (then, other) = (&rest[..split], &rest[split + 6..]);
            if k < bound.parse::<i64>().unwrap() {
                eval(then, k)
            } else {
                eval(other, k)
            }
        }
        for (k, want) in [
            (-5, 0),
            (9, 0),
            (10, 1),
            (19, 1),
            (20, 2),
            (45, 4),
            (50, 5),
            (1 << 40, 5),
        ] {
            assert_eq!(eval(&expr, k), want, "key {k}");
        }
        assert_eq!(bucket("k", &[]), "0");
    }

    #[test]
    fn literals_never_carry_unchecked_text() {
        let e = DbEngine::Mariadb;
        assert_eq!(
            literal(e, &Lit::Number, "1099511627776").as_deref(),
            Some("1099511627776")
        );
        assert_eq!(literal(e, &Lit::Number, "1; DROP"), None);
        assert_eq!(
            literal(e, &Lit::Hex(Some("utf8mb4".into())), "61276263").as_deref(),
            Some("_utf8mb4 X'61276263'")
        );
        assert_eq!(literal(e, &Lit::Hex(None), "6g"), None);
        assert_eq!(
            literal(e, &Lit::Temporal, "2024-01-01 10:00:00.5").as_deref(),
            Some("'2024-01-01 10:00:00.5'")
        );
        assert_eq!(literal(e, &Lit::Temporal, "x'"), None);
        assert_eq!(
            literal(DbEngine::Postgres, &Lit::Quoted, "it's \\N").as_deref(),
            Some("'it''s \\N'")
        );
        let keys = [
            col("a", Enc::Plain, Lit::Quoted),
            col("b", Enc::Text, Lit::Quoted),
        ];
        assert_eq!(
            bound_literal(DbEngine::Postgres, &keys, &["1".into(), "x".into()]).as_deref(),
            Some("ROW('1', 'x')")
        );
        assert_eq!(
            key_expr(DbEngine::Postgres, &keys),
            "ROW(\"a\", \"b\" COLLATE \"C\")"
        );
        assert_eq!(
            bound_literal(DbEngine::Postgres, &keys, &["1".into()]),
            None
        );
    }
}
