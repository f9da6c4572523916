//! Replication catch-up (`mode: replicate`) for MariaDB: the pre-sync's dump records its binary
//! log position; the target replicates from the source from there through one named
//! connection per source server (multi-source), filtered to the plan's databases, with an
//! account made for the move; the cutover waits for the target to reach the source's position
//! once the sites are frozen, then the connection and the account are removed. Every step is
//! told to the caller's log before and after it happens, and `state` reads what the servers
//! really hold, so a crash at any instant is resolved from the servers, never assumed.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::discover::tool_request;
use super::sql_literal as lit;
use super::transfer::Endpoint;
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::plan::secret::Secret;

/// A place in the source's binary log (the file, the byte offset in it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The head of a dump, read as it streams, until the position `--master-data=2` writes there
/// (`-- CHANGE MASTER TO MASTER_LOG_FILE='f', MASTER_LOG_POS=n;`) is found.
#[derive(Debug, Default)]
pub struct HeadReader {
    head: Vec<u8>,
    done: bool,
    pub position: Option<BinlogPosition>,
}

/// The position is within the dump's first lines; past this, it is not there.
const HEAD_LIMIT: usize = 256 << 10;

impl HeadReader {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        let room = HEAD_LIMIT.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let text = String::from_utf8_lossy(&self.head);
        if let Some(p) = text.lines().find_map(parse_master_data) {
            self.position = Some(p);
            self.done = true;
        } else if self.head.len() >= HEAD_LIMIT {
            self.done = true;
        }
    }
}

/// The position in a `CHANGE MASTER TO MASTER_LOG_FILE='f', MASTER_LOG_POS=n;` line.
fn parse_master_data(line: &str) -> Option<BinlogPosition> {
    let rest = line.split("MASTER_LOG_FILE='").nth(1)?;
    let (file, rest) = rest.split_once('\'')?;
    let pos = rest.split("MASTER_LOG_POS=").nth(1)?;
    let digits: String = pos.chars().take_while(char::is_ascii_digit).collect();
    Some(BinlogPosition {
        file: file.to_string(),
        pos: digits.parse().ok()?,
    })
}

/// The dump's arguments that record its snapshot's position (read by `HeadReader`).
pub const DUMP_POSITION_ARGS: &[&str] = &["--master-data=2"];

/// One replication connection on a target server, from one source server, and the account it
/// uses on the source.
pub struct Channel<'a> {
    pub from: Endpoint<'a>,
    pub to: Endpoint<'a>,
    /// The multi-source connection name at the target.
    pub name: String,
    /// The account on the source (`'name'@'%'`).
    pub account: String,
}

impl<'a> Channel<'a> {
    /// The channel of `plan` between these servers: its names come from the plan and the
    /// source server, so any later command finds it on the servers.
    pub fn new(plan: &str, from: Endpoint<'a>, to: Endpoint<'a>) -> Self {
        let (name, account) = names(plan, from.server);
        Channel {
            from,
            to,
            name,
            account,
        }
    }
}

/// The connection's and the account's names for `plan`'s source server `from`.
pub fn names(plan: &str, from: &DbServer) -> (String, String) {
    let key = source_key(plan, from);
    (format!("transhumance_{key}"), format!("th_repl_{key}"))
}

/// Eight hex digits naming a plan's source server.
fn source_key(plan: &str, s: &DbServer) -> String {
    let id = format!(
        "{plan}\n{}\n{:?}\n{:?}\n{:?}",
        s.host, s.socket, s.address, s.port
    );
    blake3::hash(id.as_bytes()).to_hex()[..8].to_string()
}

/// A step of a channel's life, told to the caller's log: `done` false before it is tried,
/// true once it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    AccountCreated,
    ChannelCreated,
    PositionWaited,
    /// One database left the connection's filter (its site's cutover or rollback).
    DatabaseDetached,
    ChannelRemoved,
    AccountDropped,
    /// PostgreSQL: the publication of a database's tables at the source.
    PublicationCreated,
    /// PostgreSQL: the logical slot the pre-sync's dump took its snapshot from.
    SlotCreated,
    /// PostgreSQL: the sequences' values copied at the cutover.
    SequencesSet,
    SlotDropped,
    PublicationDropped,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::AccountCreated => "replication account created",
            Step::ChannelCreated => "replication channel set up",
            Step::PositionWaited => "replication caught up",
            Step::DatabaseDetached => "database taken out of replication",
            Step::ChannelRemoved => "replication channel removed",
            Step::AccountDropped => "replication account dropped",
            Step::PublicationCreated => "publication created",
            Step::SlotCreated => "replication slot created",
            Step::SequencesSet => "sequences set",
            Step::SlotDropped => "replication slot dropped",
            Step::PublicationDropped => "publication dropped",
        })
    }
}

/// Where the caller journals a step (`done` false: the intent; true: the outcome, with words).
pub type StepLog<'l> = &'l dyn Fn(&Step, bool, &str) -> Result<(), String>;

/// What the servers hold of a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelState {
    /// The connection exists at the target.
    pub channel: bool,
    pub io_running: bool,
    pub sql_running: bool,
    /// The databases it is filtered to.
    pub databases: Vec<String>,
    /// The last error either thread met.
    pub error: Option<String>,
    /// The account exists on the source.
    pub account: bool,
}

/// Rows of `script` (fed on stdin, so no statement is on a command line), with the header row
/// first when `headers`; any `secret` is blanked out of an error.
fn run(
    server: &DbServer,
    end: &Endpoint<'_>,
    script: &str,
    headers: bool,
    secret: Option<&Secret>,
) -> Result<Vec<Vec<String>>, String> {
    let args: Vec<String> = ["-B", "-r"]
        .iter()
        .chain((!headers).then_some(&"-N"))
        .map(|s| s.to_string())
        .collect();
    let mut req = tool_request(DbEngine::Mariadb, server, "mariadb", &args)?;
    req.stdin = script.as_bytes().to_vec();
    let out = end.transport.exec(&req).map_err(|e| e.to_string())?;
    if !out.success() {
        let mut said = out.stderr_text();
        if let Some(s) = secret {
            said = said.replace(s.expose(), "***");
        }
        return Err(format!(
            "on host `{}`: {}",
            end.transport.host(),
            said.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

fn sql(end: &Endpoint<'_>, script: &str) -> Result<Vec<Vec<String>>, String> {
    run(end.server, end, script, false, None)
}

fn one_value(end: &Endpoint<'_>, q: &str) -> Result<String, String> {
    Ok(sql(end, q)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default())
}

/// The source's address and port as the target reaches them: the plan's `address` (or
/// 127.0.0.1 when both servers are on the same host) and `port` (default 3306).
fn source_address(ch: &Channel<'_>) -> Result<(String, u16), String> {
    let s = ch.from.server;
    let address = match &s.address {
        Some(a) => a.clone(),
        None if s.host == ch.to.server.host => "127.0.0.1".into(),
        None => {
            return Err(format!(
                "`mode: replicate` needs the source server's `address:` (as the target host reaches it) for databases on host `{}`",
                s.host
            ));
        }
    };
    Ok((address, s.port.unwrap_or(3306)))
}

/// What must hold before a channel is set up: problems (replication impossible: those
/// databases are dumped instead) and notes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prerequisites {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Checks the source's binary log, its format, distinct server ids, and that the target host
/// reaches the source's port (a login refused there still proves the port answers).
pub fn prerequisites(ch: &Channel<'_>) -> Prerequisites {
    let mut p = Prerequisites::default();
    let facts = match sql(
        &ch.from,
        "SELECT @@log_bin, @@binlog_format, @@server_id, @@have_ssl, @@version",
    ) {
        Ok(r) => r.into_iter().next().unwrap_or_default(),
        Err(e) => {
            p.problems.push(format!("the source cannot be asked: {e}"));
            return p;
        }
    };
    let get = |i: usize| facts.get(i).cloned().unwrap_or_default();
    let mariadb = |v: String| v.contains("MariaDB");
    if !mariadb(get(4)) || !one_value(&ch.to, "SELECT @@version").is_ok_and(mariadb) {
        p.problems.push(
            "both servers must be MariaDB (named replication connections); MySQL's channels are not supported yet".into(),
        );
    }
    if get(0) != "1" {
        p.problems
            .push("the source's binary log is off (set `log_bin` and restart it)".into());
    }
    match get(1).as_str() {
        "ROW" => {}
        "MIXED" => p.notes.push(
            "binlog_format is MIXED: statements logged as statements are filtered by their default database".into(),
        ),
        other => p.problems.push(format!(
            "binlog_format is {other}: set it to ROW (statements would be filtered by their default database)"
        )),
    }
    match one_value(&ch.to, "SELECT @@server_id") {
        Ok(id) if id == get(2) => p.problems.push(format!(
            "source and target have the same server_id ({id}): give them distinct ones"
        )),
        Ok(_) => {}
        Err(e) => p.problems.push(format!("the target cannot be asked: {e}")),
    }
    if get(3) != "YES" {
        p.notes
            .push("the source offers no TLS: replication traffic is not encrypted".into());
    }
    match source_address(ch) {
        Ok((address, port)) => {
            let mut probe = DbServer {
                host: ch.to.server.host.clone(),
                socket: None,
                address: Some(address.clone()),
                port: Some(port),
                user: Some("transhumance_probe".into()),
                password: None,
                bin_dir: ch.to.server.bin_dir.clone(),
            };
            probe.password = None;
            let end = Endpoint {
                transport: ch.to.transport,
                server: &probe,
            };
            match run(&probe, &end, "SELECT 1", false, None) {
                Err(e) if e.contains("ERROR 2002") || e.contains("ERROR 2003") => p.problems.push(
                    format!("the target host does not reach the source at {address}:{port}: {e}"),
                ),
                _ => {}
            }
        }
        Err(e) => p.problems.push(e),
    }
    p
}

/// PostgreSQL: what logical replication of `databases` needs from the source: problems for
/// the whole server (`wal_level`; the slot budget is `pg_replication::free_budget`), and per
/// database the tables without a replica identity (no primary key, no `REPLICA IDENTITY`
/// index or `FULL`), which make that database fall back to dump.
pub fn pg_prerequisites(
    from: &Endpoint<'_>,
    databases: &[String],
) -> (Prerequisites, Vec<(String, Vec<String>)>) {
    let mut p = Prerequisites::default();
    let q = |db: Option<&str>, sql: &str| {
        super::discover::query(from.transport, DbEngine::Postgres, from.server, db, sql)
    };
    match q(None, "SELECT current_setting('wal_level')") {
        Ok(rows) => {
            let level = rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .unwrap_or_default();
            if level != "logical" {
                p.problems.push(format!(
                    "wal_level is {level} at the source: set it to `logical` (a restart)"
                ));
            }
        }
        Err(e) => p.problems.push(format!("the source cannot be asked: {e}")),
    }
    let per_db = databases
        .iter()
        .map(|db| {
            let tables = q(
                Some(db),
                "SELECT n.nspname || '.' || c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg_toast%' \
                 AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS \
                 (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))) \
                 ORDER BY 1",
            )
            .map(|rows| {
                rows.into_iter()
                    .filter_map(|r| r.into_iter().next())
                    .collect()
            })
            .unwrap_or_else(|e| vec![format!("(cannot be read: {e})")]);
            (db.clone(), tables)
        })
        .collect();
    (p, per_db)
}

/// What the servers hold of `ch` now.
///
/// # Errors
/// A server cannot be asked.
pub fn state(ch: &Channel<'_>) -> Result<ChannelState, String> {
    let mut s = ChannelState::default();
    let rows = run(ch.to.server, &ch.to, "SHOW ALL SLAVES STATUS", true, None)?;
    if let Some((head, rows)) = rows.split_first() {
        let col = |r: &[String], name: &str| {
            head.iter()
                .position(|h| h == name)
                .and_then(|i| r.get(i).cloned())
                .unwrap_or_default()
        };
        if let Some(r) = rows.iter().find(|r| col(r, "Connection_name") == ch.name) {
            s.channel = true;
            s.io_running = col(r, "Slave_IO_Running") == "Yes";
            s.sql_running = col(r, "Slave_SQL_Running") == "Yes";
            s.databases = col(r, "Replicate_Do_DB")
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect();
            let errors: Vec<String> = ["Last_IO_Error", "Last_SQL_Error"]
                .iter()
                .map(|c| col(r, c))
                .filter(|e| !e.is_empty())
                .collect();
            s.error = (!errors.is_empty()).then(|| errors.join("; "));
        }
    }
    s.account = one_value(
        &ch.from,
        &format!(
            "SELECT COUNT(*) FROM mysql.user WHERE User = {} AND Host = '%'",
            lit(&ch.account)
        ),
    )? != "0";
    Ok(s)
}

/// A fresh random password (never printed, never on a command line).
fn password() -> Result<Secret, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for the replication password".to_string())?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Sets `ch` up to replicate `databases` (name, position of its snapshot, in dump order) from
/// their snapshots on: the account (made again with a new password if a crash left one), the
/// connection from the earliest position, then one database at a time added to the filter as
/// the target reaches the position of its snapshot (`START SLAVE UNTIL`), so no change is
/// applied twice or missed. A connection a crash left behind is removed first.
///
/// # Errors
/// A server refused, or the target stopped on an error on its way: the message says which.
pub fn set_up(
    ch: &Channel<'_>,
    databases: &[(String, BinlogPosition)],
    log: StepLog<'_>,
    timeout: Duration,
) -> Result<(), String> {
    if databases.is_empty() {
        return Ok(());
    }
    if let Some((d, _)) = databases.iter().find(|(d, _)| d.contains(',')) {
        return Err(format!(
            "database `{d}`: a name holding a comma cannot be a replication filter; use `mode: dump` for it"
        ));
    }
    let before = state(ch)?;
    if before.channel {
        remove_channel(ch, log)?;
    }
    let secret = password()?;
    let account = format!("{}@'%'", lit(&ch.account));
    let tls = one_value(&ch.from, "SELECT @@have_ssl")? == "YES";
    log(&Step::AccountCreated, false, &ch.account)?;
    run(
        ch.from.server,
        &ch.from,
        &format!(
            "CREATE USER IF NOT EXISTS {account};\nALTER USER {account} IDENTIFIED BY {}{};\nGRANT REPLICATION SLAVE ON *.* TO {account};\n",
            lit(secret.expose()),
            if tls { " REQUIRE SSL" } else { "" }
        ),
        false,
        Some(&secret),
    )?;
    log(&Step::AccountCreated, true, &ch.account)?;

    let mut order: Vec<&(String, BinlogPosition)> = databases.iter().collect();
    order.sort_by(|a, b| a.1.cmp(&b.1));
    let (address, port) = source_address(ch)?;
    let conn = ident(&ch.name);
    log(&Step::ChannelCreated, false, &ch.name)?;
    run(
        ch.to.server,
        &ch.to,
        &format!(
            "CHANGE MASTER {conn} TO MASTER_HOST={}, MASTER_PORT={port}, MASTER_USER={}, MASTER_PASSWORD={}, MASTER_LOG_FILE={}, MASTER_LOG_POS={}, MASTER_USE_GTID=no, MASTER_SSL={};\n",
            lit(&address),
            lit(&ch.account),
            lit(secret.expose()),
            lit(&order[0].1.file),
            order[0].1.pos,
            u8::from(tls)
        ),
        false,
        Some(&secret),
    )?;
    let mut filter: Vec<&str> = Vec::new();
    for (i, (db, _)) in order.iter().enumerate() {
        filter.push(db);
        let next = order.get(i + 1).map(|n| &n.1);
        let set_filter = format!(
            "SET @@default_master_connection = {conn};\nSET GLOBAL replicate_do_db = {};\n",
            lit(&filter.join(","))
        );
        match next {
            Some(n) if *n > order[i].1 => {
                sql(
                    &ch.to,
                    &format!(
                        "{set_filter}START SLAVE {conn} UNTIL MASTER_LOG_FILE={}, MASTER_LOG_POS={};",
                        lit(&n.file),
                        n.pos
                    ),
                )?;
                wait_stopped(ch, timeout, n)?;
                sql(&ch.to, &format!("STOP SLAVE {conn};"))?;
            }
            Some(_) => {}
            None => {
                sql(&ch.to, &format!("{set_filter}START SLAVE {conn};"))?;
            }
        }
    }
    log(
        &Step::ChannelCreated,
        true,
        &format!(
            "{} from {} ({} database(s))",
            ch.name,
            order[0].1,
            order.len()
        ),
    )
}

/// `name` as a connection name (a string in MariaDB's syntax).
fn ident(name: &str) -> String {
    lit(name)
}

/// Waits for the target's applier to stop at `until` (a `START SLAVE UNTIL`).
fn wait_stopped(ch: &Channel<'_>, timeout: Duration, until: &BinlogPosition) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let s = state(ch)?;
        if let Some(e) = &s.error {
            return Err(format!(
                "replication `{}` stopped on an error before {until}: {e}",
                ch.name
            ));
        }
        if !s.sql_running {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "replication `{}` did not reach {until} within {}",
                ch.name,
                humantime::format_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The source's position now (once the sites are frozen, the last of their writes).
///
/// # Errors
/// The source cannot be asked, or its binary log is off.
pub fn source_position(ch: &Channel<'_>) -> Result<BinlogPosition, String> {
    let r = sql(&ch.from, "SHOW MASTER STATUS")?;
    match r.first().map(Vec::as_slice) {
        Some([file, pos, ..]) => Ok(BinlogPosition {
            file: file.clone(),
            pos: pos
                .parse()
                .map_err(|_| format!("odd binlog position `{pos}`"))?,
        }),
        _ => Err(format!(
            "host `{}`: the source's binary log is off",
            ch.from.transport.host()
        )),
    }
}

/// Waits until the target has applied everything the source wrote up to now (the sites are
/// frozen): the position it reached.
///
/// # Errors
/// The channel is missing or stopped on an error, or did not catch up within `timeout`.
pub fn catch_up(
    ch: &Channel<'_>,
    timeout: Duration,
    log: StepLog<'_>,
) -> Result<BinlogPosition, String> {
    let target = source_position(ch)?;
    log(&Step::PositionWaited, false, &target.to_string())?;
    let s = state(ch)?;
    if !s.channel {
        return Err(format!(
            "replication `{}` is not set up at the target: run a sync first",
            ch.name
        ));
    }
    if let Some(e) = s.error {
        return Err(format!(
            "replication `{}` stopped on an error: {e}",
            ch.name
        ));
    }
    let waited = one_value(
        &ch.to,
        &format!(
            "SELECT MASTER_POS_WAIT({}, {}, {}, {})",
            lit(&target.file),
            target.pos,
            timeout.as_secs().max(1),
            lit(&ch.name)
        ),
    )?;
    match waited.as_str() {
        "-1" => Err(format!(
            "replication `{}` did not reach the source's position {target} within {} (`replicate_wait` on the rule; `{}` shows how far it is)",
            ch.name,
            humantime::format_duration(timeout),
            "SHOW ALL SLAVES STATUS"
        )),
        "NULL" | "" => {
            let e = state(ch)?
                .error
                .unwrap_or_else(|| "its applier is not running".into());
            Err(format!(
                "replication `{}` cannot reach {target}: {e}",
                ch.name
            ))
        }
        _ => {
            log(&Step::PositionWaited, true, &target.to_string())?;
            Ok(target)
        }
    }
}

/// Stops and forgets the connection at the target, if it is there.
fn remove_channel(ch: &Channel<'_>, log: StepLog<'_>) -> Result<(), String> {
    log(&Step::ChannelRemoved, false, &ch.name)?;
    if state(ch)?.channel {
        let conn = ident(&ch.name);
        sql(
            &ch.to,
            &format!("STOP SLAVE {conn};\nRESET SLAVE {conn} ALL;"),
        )?;
    }
    log(&Step::ChannelRemoved, true, &ch.name)
}

/// Takes `database` out of the connection's filter (its site is cut over or rolled back); the
/// last one out removes the connection and the account.
///
/// # Errors
/// A server refused.
pub fn detach(ch: &Channel<'_>, database: &str, log: StepLog<'_>) -> Result<(), String> {
    let s = state(ch)?;
    let rest: Vec<&str> = s
        .databases
        .iter()
        .map(String::as_str)
        .filter(|d| *d != database)
        .collect();
    if !s.channel || rest.is_empty() {
        return remove(ch, log);
    }
    if rest.len() == s.databases.len() {
        return Ok(());
    }
    log(&Step::DatabaseDetached, false, database)?;
    let conn = ident(&ch.name);
    sql(
        &ch.to,
        &format!(
            "STOP SLAVE {conn};\nSET @@default_master_connection = {conn};\nSET GLOBAL replicate_do_db = {};\nSTART SLAVE {conn};",
            lit(&rest.join(","))
        ),
    )?;
    log(&Step::DatabaseDetached, true, database)
}

/// Removes whatever the servers hold of `ch` (connection, then account): after the cutover,
/// on rollback, and for what a crash left. Reads the servers first, so it is safe to repeat.
///
/// # Errors
/// A server refused.
pub fn remove(ch: &Channel<'_>, log: StepLog<'_>) -> Result<(), String> {
    let s = state(ch)?;
    if s.channel {
        remove_channel(ch, log)?;
    }
    if s.account {
        log(&Step::AccountDropped, false, &ch.account)?;
        sql(
            &ch.from,
            &format!("DROP USER IF EXISTS {}@'%';", lit(&ch.account)),
        )?;
        log(&Step::AccountDropped, true, &ch.account)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_is_read_from_the_dump_head_across_chunks() {
        let dump = "/*!40101 SET NAMES utf8mb4 */;\n-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=1234;\nCREATE TABLE t (a int);\n";
        let mut r = HeadReader::default();
        for chunk in dump.as_bytes().chunks(7) {
            r.feed(chunk);
        }
        assert_eq!(
            r.position,
            Some(BinlogPosition {
                file: "binlog.000002".into(),
                pos: 1234
            })
        );
        let mut none = HeadReader::default();
        none.feed(b"CREATE TABLE t (a int);\n");
        assert_eq!(none.position, None);
    }

    #[test]
    fn positions_order_by_file_then_offset() {
        let p = |f: &str, n| BinlogPosition {
            file: f.into(),
            pos: n,
        };
        assert!(p("b.000001", 900) < p("b.000002", 4));
        assert!(p("b.000002", 4) < p("b.000002", 5));
    }
}
