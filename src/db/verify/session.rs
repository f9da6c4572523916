//! One client session per server and stage: a script of one statement per line, fed on stdin;
//! every statement that must be accounted for ends with an `end` row of its own tag, so the
//! output says which ones finished and the errors are matched to the others by line.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Side;
use super::pool::SessionPool;
use crate::plan::raw::DbEngine;

/// A script under construction: one statement per line, so a server's error (which names its
/// line) is traced back to the statement.
/// Every statement that prints rows is tagged: rows are assigned to the tag whose end row
/// follows them.
#[derive(Debug, Clone)]
pub(super) struct Script {
    engine: DbEngine,
    lines: Vec<String>,
    /// Tag of the statement on each line that has one.
    tags: BTreeMap<usize, String>,
}

impl Script {
    pub(super) fn new(engine: DbEngine) -> Script {
        Script {
            engine,
            lines: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    /// A statement that prints nothing (settings, transaction control).
    pub(super) fn plain(&mut self, statement: impl Into<String>) {
        self.lines.push(one_line(statement.into()));
    }

    /// A query (no `;`) whose rows are followed by `["end", tag]` in the same statement: the
    /// end row is printed only when the whole query succeeded.
    pub(super) fn tagged(&mut self, tag: impl Into<String>, query: &str) {
        let tag = tag.into();
        let statement = with_end(self.engine, &tag, query);
        self.tags.insert(self.lines.len() + 1, tag);
        self.lines.push(one_line(statement));
    }

    /// A statement whose output (rows or text) counts for `tag` even when it fails (then it
    /// printed nothing): an end row of its own follows it.
    pub(super) fn block(&mut self, tag: &str, statement: impl Into<String>) {
        self.lines.push(one_line(statement.into()));
        let end = match self.engine {
            DbEngine::Postgres => format!("SELECT json_build_array('end', '{tag}');"),
            _ => format!("SELECT JSON_ARRAY('end', '{tag}');"),
        };
        self.lines.push(end);
    }

    /// The script, ending with the row `["end", "~session"]`: a session that did not print
    /// it did not get through (refused, dropped).
    pub(super) fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s.push_str(match self.engine {
            DbEngine::Postgres => "SELECT json_build_array('end', '~session');\n",
            _ => "SELECT JSON_ARRAY('end', '~session');\n",
        });
        s
    }
}

/// Statements are generated without line breaks; any that slipped into a literal would only
/// shift the error lines, never change the SQL (a newline is whitespace outside literals).
fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.replace('\n', " ")
    } else {
        s
    }
}

/// `query`, then the row `["end", tag]` in the same statement.
fn with_end(engine: DbEngine, tag: &str, statement: &str) -> String {
    let end = match engine {
        DbEngine::Postgres => format!("SELECT json_build_array('end', '{tag}')"),
        _ => format!("SELECT JSON_ARRAY('end', '{tag}')"),
    };
    format!("({statement}) UNION ALL ({end});")
}

/// A line of output: a JSON row, or raw text (what `SHOW GRANTS` prints).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Line {
    Row(Vec<Value>),
    Text(String),
}

/// What a session printed, by statement.
#[derive(Debug, Default)]
pub(super) struct Ran {
    /// Rows (and text lines) of each statement that finished, by tag.
    pub done: BTreeMap<String, Vec<Line>>,
    /// Rows printed by statements without a tag (pinned settings), in order.
    pub untagged: Vec<Vec<Value>>,
    /// The server's error for each tagged statement that failed, by tag.
    pub failed: BTreeMap<String, String>,
}

impl Ran {
    /// The rows of statement `tag`, when it finished.
    pub(super) fn rows(&self, tag: &str) -> Option<impl Iterator<Item = &Vec<Value>>> {
        self.done.get(tag).map(|lines| {
            lines.iter().filter_map(|l| match l {
                Line::Row(r) => Some(r),
                Line::Text(_) => None,
            })
        })
    }

    /// Why statement `tag` gave no result.
    pub(super) fn why(&self, tag: &str) -> String {
        self.failed
            .get(tag)
            .cloned()
            .unwrap_or_else(|| "no result".into())
    }
}

/// Runs `script` in one session on `side`, on a client of `pool`.
///
/// # Errors
/// The client could not run, or the session never started (refused connection, unknown
/// database): nothing at all came back.
pub(super) fn run(
    pool: &SessionPool,
    engine: DbEngine,
    side: &Side<'_>,
    script: &Script,
) -> Result<Ran, String> {
    let out = pool.run(
        side.transport,
        engine,
        side.server,
        side.database,
        &script.text(),
    )?;
    let ran = parse(&out.stdout, &out.stderr, script);
    if !ran.done.contains_key("~session") {
        let why = out
            .stderr
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("FATAL"))
            .or(out.stderr.lines().next())
            .unwrap_or("no output")
            .to_string();
        return Err(format!(
            "host `{}`, database `{}`: {why}",
            side.transport.host(),
            side.database
        ));
    }
    Ok(ran)
}

/// Splits a session's output by statement and matches errors to the statements that failed.
pub(super) fn parse(stdout: &str, stderr: &str, script: &Script) -> Ran {
    let mut ran = Ran::default();
    let mut pending: Vec<Line> = Vec::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    for line in stdout.lines() {
        let row = line
            .starts_with('[')
            .then(|| serde_json::from_str::<Vec<Value>>(line).ok())
            .flatten();
        match row {
            Some(r) if r.len() == 2 && r[0] == "end" => {
                let tag = text(&r[1]);
                finished.insert(tag.clone());
                ran.done.insert(tag, std::mem::take(&mut pending));
            }
            Some(r) => pending.push(Line::Row(r)),
            None => pending.push(Line::Text(line.to_string())),
        }
    }
    // Rows after the last end marker come from untagged statements.
    ran.untagged = pending
        .into_iter()
        .filter_map(|l| match l {
            Line::Row(r) => Some(r),
            Line::Text(_) => None,
        })
        .collect();
    let errors = errors_by_line(stderr);
    for (line, tag) in &script.tags {
        if finished.contains(tag) {
            continue;
        }
        let why = errors
            .get(line)
            .cloned()
            .unwrap_or_else(|| "failed (no error message)".into());
        ran.failed.insert(tag.clone(), why);
    }
    ran
}

/// The first line of each error, by the script line it names (`psql:<stdin>:12: ERROR: …`,
/// `ERROR 1146 (42S02) at line 12: …`).
fn errors_by_line(stderr: &str) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    for l in stderr.lines() {
        if let Some(rest) = l.strip_prefix("psql:<stdin>:")
            && let Some((n, msg)) = rest.split_once(':')
            && let Ok(n) = n.parse::<usize>()
        {
            let msg = msg.trim();
            let msg = msg.strip_prefix("ERROR:").unwrap_or(msg).trim();
            out.entry(n).or_insert_with(|| msg.to_string());
        } else if l.starts_with("ERROR ")
            && let Some((_, rest)) = l.split_once(" at line ")
            && let Some((n, msg)) = rest.split_once(':')
            && let Ok(n) = n.trim().parse::<usize>()
        {
            out.entry(n).or_insert_with(|| msg.trim().to_string());
        }
    }
    out
}

/// A JSON field as text: strings as they are, numbers in decimal, null as empty.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Field `i` of a row as text (empty when absent).
pub(super) fn field(row: &[Value], i: usize) -> String {
    row.get(i).map(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_by_statement_and_errors_found_by_line() {
        let mut s = Script::new(DbEngine::Postgres);
        s.plain("SET x = 1;");
        s.tagged("a", "SELECT 1");
        s.tagged("b", "SELECT 2");
        s.tagged("c", "SELECT 3");
        s.plain("SELECT 'pins';");
        assert!(
            s.text()
                .contains("(SELECT 2) UNION ALL (SELECT json_build_array('end', 'b'));\n")
        );
        let stdout = "[\"r\", 1]\n[\"end\", \"a\"]\n[\"r\", 3]\nGRANT X\n[\"end\", \"c\"]\n[\"pins\", \"UTC\"]\n";
        let stderr = "psql:<stdin>:3: ERROR:  relation \"t\" does not exist\nLINE 1: SELECT ...\n";
        let ran = parse(stdout, stderr, &s);
        assert_eq!(ran.rows("a").unwrap().count(), 1);
        assert!(ran.rows("b").is_none());
        assert_eq!(ran.why("b"), "relation \"t\" does not exist");
        assert_eq!(
            ran.done["c"],
            vec![
                Line::Row(vec![Value::from("r"), Value::from(3)]),
                Line::Text("GRANT X".into())
            ]
        );
        assert_eq!(
            ran.untagged,
            vec![vec![Value::from("pins"), Value::from("UTC")]]
        );
        // MariaDB's form.
        let ran = parse(
            "",
            "ERROR 1146 (42S02) at line 2: Table 'd.t' doesn't exist",
            &s,
        );
        assert_eq!(ran.why("a"), "Table 'd.t' doesn't exist");
    }
}
