//! Replication catch-up (`mode: replicate`) for PostgreSQL, by logical replication, one set of
//! objects per database, all under one name (`th_<source key>_<database key>`): a publication
//! of the database's tables and a logical slot at the source, the slot created with an
//! exported snapshot that the pre-sync's `pg_dump` reads (so the copy and the slot start at
//! the same point); then a role for the move (`LOGIN REPLICATION`, random password) and a
//! subscription at the target reading that slot (`copy_data = false`). The cutover waits for
//! the slot to confirm the source's position once the site is frozen, copies the sequences'
//! values, and removes all of it. Every step is told to the caller's log before and after it
//! happens; `state` reads what the servers hold, so a crash is resolved from them.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::discover::{query, tool_request};
use super::replication::{Step, StepLog};
use super::transfer::Endpoint;
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::plan::secret::Secret;
use crate::transport::session::Session;

const PG: DbEngine = DbEngine::Postgres;

/// One replicated database: its source and target servers and the name of every object made
/// for it (publication, slot, role, subscription).
pub struct Replica<'a> {
    pub from: Endpoint<'a>,
    pub to: Endpoint<'a>,
    pub database: String,
    pub name: String,
}

impl<'a> Replica<'a> {
    pub fn new(plan: &str, from: Endpoint<'a>, to: Endpoint<'a>, database: &str) -> Self {
        Replica {
            name: name(plan, from.server, database),
            from,
            to,
            database: database.to_string(),
        }
    }
}

/// The objects' name for `database` of `plan`'s source server `from`: lower-case hex and
/// underscores only, valid as a slot name and short of PostgreSQL's 63 bytes.
pub fn name(plan: &str, from: &DbServer, database: &str) -> String {
    let server = format!(
        "{plan}\n{}\n{:?}\n{:?}\n{:?}",
        from.host, from.socket, from.address, from.port
    );
    let key = |s: &str| blake3::hash(s.as_bytes()).to_hex()[..8].to_string();
    format!(
        "th_{}_{}",
        key(&server),
        key(&format!("{server}\n{database}"))
    )
}

/// A PostgreSQL string literal (standard-conforming strings).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A quoted identifier.
fn id(s: &str) -> String {
    super::ident(PG, s)
}

fn sql(end: &Endpoint<'_>, db: Option<&str>, q: &str) -> Result<Vec<Vec<String>>, String> {
    query(end.transport, PG, end.server, db, q)
}

fn one(end: &Endpoint<'_>, db: Option<&str>, q: &str) -> Result<String, String> {
    Ok(sql(end, db, q)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default())
}

/// Runs `script` in `database` fed on psql's stdin (never on a command line); `secret` is
/// blanked out of any error.
fn script(
    end: &Endpoint<'_>,
    database: &str,
    script: &str,
    secret: Option<&Secret>,
) -> Result<(), String> {
    let args: Vec<String> = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--dbname={database}")])
        .collect();
    let mut req = tool_request(PG, end.server, "psql", &args)?;
    req.stdin = format!("\\set VERBOSITY terse\n{script}").into_bytes();
    let out = end.transport.exec(&req).map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(());
    }
    let mut said = out.stderr_text();
    if let Some(s) = secret {
        said = said.replace(s.expose(), "***");
    }
    Err(format!(
        "on host `{}`: {}",
        end.transport.host(),
        said.trim()
    ))
}

/// What the servers hold of a replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaState {
    /// The subscription exists at the target (in the database named here).
    pub subscription: Option<String>,
    pub enabled: bool,
    pub slot: bool,
    /// A process reads the slot now.
    pub slot_active: bool,
    pub publication: bool,
    pub role: bool,
}

impl ReplicaState {
    pub fn anything(&self) -> bool {
        self.subscription.is_some() || self.slot || self.publication || self.role
    }
}

/// What the servers hold of `r` now.
///
/// # Errors
/// A server cannot be asked.
pub fn state(r: &Replica<'_>) -> Result<ReplicaState, String> {
    let n = lit(&r.name);
    let mut s = ReplicaState::default();
    if let Some(row) = sql(
        &r.to,
        None,
        &format!(
            "SELECT d.datname, s.subenabled FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subname = {n}"
        ),
    )?
    .into_iter()
    .next()
    {
        s.subscription = row.first().cloned();
        s.enabled = row.get(1).is_some_and(|v| v == "t");
    }
    if let Some(row) = sql(
        &r.from,
        None,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = {n}"),
    )?
    .into_iter()
    .next()
    {
        s.slot = true;
        s.slot_active = row.first().is_some_and(|v| v == "t");
    }
    s.role = one(
        &r.from,
        None,
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = {n}"),
    )? != "0";
    let db_exists = one(
        &r.from,
        None,
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            lit(&r.database)
        ),
    )? != "0";
    s.publication = db_exists
        && one(
            &r.from,
            Some(&r.database),
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = {n}"),
        )? != "0";
    Ok(s)
}

/// Free replication slots and WAL senders at the source now.
///
/// # Errors
/// The source cannot be asked.
pub fn free_budget(from: &Endpoint<'_>) -> Result<(i64, i64), String> {
    let row = sql(
        from,
        None,
        "SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots), \
         current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)",
    )?
    .into_iter()
    .next()
    .unwrap_or_default();
    let get = |i: usize| row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((get(0), get(1)))
}

/// Whether the source has room for one more replica: `Err(why)` when it has not.
///
/// # Errors
/// No free slot or WAL sender, or the source cannot be asked.
pub fn room_for_one(from: &Endpoint<'_>) -> Result<(), String> {
    let (slots, senders) = free_budget(from)?;
    if slots < 1 || senders < 1 {
        return Err(format!(
            "the source's replication budget is spent ({slots} free slot(s), {senders} free WAL sender(s))"
        ));
    }
    Ok(())
}

/// Before the dump: the publication of the database's tables (it must exist before the slot,
/// whose decoding looks it up as of each change).
///
/// # Errors
/// The source refused.
pub fn publish(r: &Replica<'_>, log: StepLog<'_>) -> Result<(), String> {
    log(&Step::PublicationCreated, false, &r.name)?;
    script(
        &r.from,
        &r.database,
        &format!(
            "DROP PUBLICATION IF EXISTS {0};\nCREATE PUBLICATION {0} FOR ALL TABLES;\n",
            id(&r.name)
        ),
        None,
    )?;
    log(&Step::PublicationCreated, true, &r.name)
}

/// The logical slot `slot` created on `database` with its snapshot exported, and the session
/// that keeps the snapshot usable (`pg_dump --snapshot`) until it is closed: the slot's
/// changes start exactly where the dump's snapshot stands. Returns the session, the snapshot
/// id and the slot's consistent point.
///
/// # Errors
/// The source refused (no free slot, `wal_level` not logical...).
pub fn slot_with_snapshot(
    from: &Endpoint<'_>,
    database: &str,
    slot: &str,
) -> Result<(Session, String, String), String> {
    let req = tool_request(
        PG,
        from.server,
        "psql",
        &[
            "-XAtq".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            format!(
                "--dbname=dbname={} replication=database",
                conninfo_value(database)
            ),
        ],
    )?;
    let failed = |e: String| format!("creating replication slot `{slot}` on the source: {e}");
    // One an earlier try of this dump left (ours by its name) goes first.
    sql(
        from,
        None,
        &format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {} AND NOT active",
            lit(slot)
        ),
    )
    .map_err(failed)?;
    let mut session = Session::open(from.transport, &req).map_err(|e| failed(e.to_string()))?;
    session
        .send(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export');\n",
            id(slot)
        ))
        .map_err(|e| failed(e.to_string()))?;
    match session.read_line().map_err(|e| failed(e.to_string()))? {
        Some(line) => {
            let f: Vec<&str> = line.split('|').collect();
            match f.as_slice() {
                [name, lsn, snapshot, _plugin] if name == &slot && !snapshot.is_empty() => {
                    Ok((session, snapshot.to_string(), lsn.to_string()))
                }
                _ => Err(failed(format!("unexpected answer `{line}`"))),
            }
        }
        None => {
            let out = session.close().map_err(|e| failed(e.to_string()))?;
            Err(failed(out.stderr_text().trim().to_string()))
        }
    }
}

/// A value in a libpq connection string.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The source as the target reaches it: the plan's `address` (or its socket directory when
/// both servers are on one host) and `port` (default 5432).
fn source_address(r: &Replica<'_>) -> Result<(String, u16), String> {
    let s = r.from.server;
    let host = match (&s.address, &s.socket) {
        (Some(a), _) => a.clone(),
        (None, Some(dir)) if s.host == r.to.server.host => dir.clone(),
        (None, None) if s.host == r.to.server.host => "127.0.0.1".into(),
        _ => {
            return Err(format!(
                "`mode: replicate` needs the source server's `address:` (as the target host reaches it) for databases on host `{}`",
                s.host
            ));
        }
    };
    Ok((host, s.port.unwrap_or(5432)))
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

/// Once the database is restored at the target: the role for the move at the source (made
/// again with a new password if one was left), then the subscription at the target reading
/// the slot from its start (no copy: the dump was the copy). The subscription keeps the
/// password in the target's `pg_subscription` until it is dropped with the role.
///
/// # Errors
/// A server refused.
pub fn subscribe(r: &Replica<'_>, log: StepLog<'_>) -> Result<(), String> {
    let secret = password()?;
    let role = id(&r.name);
    log(&Step::AccountCreated, false, &r.name)?;
    script(
        &r.from,
        "postgres",
        &format!(
            "SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) \\gexec\nALTER ROLE {role} LOGIN REPLICATION PASSWORD {};\n",
            lit(&r.name),
            lit(secret.expose())
        ),
        Some(&secret),
    )?;
    log(&Step::AccountCreated, true, &r.name)?;
    let (host, port) = source_address(r)?;
    let conninfo = format!(
        "host={} port={port} dbname={} user={} password={}",
        conninfo_value(&host),
        conninfo_value(&r.database),
        conninfo_value(&r.name),
        conninfo_value(secret.expose())
    );
    log(&Step::ChannelCreated, false, &r.name)?;
    script(
        &r.to,
        &r.database,
        &format!(
            "CREATE SUBSCRIPTION {0} CONNECTION {1} PUBLICATION {0} WITH (create_slot = false, slot_name = {2}, copy_data = false);\n",
            id(&r.name),
            lit(&conninfo),
            lit(&r.name)
        ),
        Some(&secret),
    )?;
    log(&Step::ChannelCreated, true, &r.name)
}

/// Waits until the slot confirms everything the source wrote up to now (the site is frozen):
/// the source's position waited for.
///
/// # Errors
/// The subscription is missing, or did not catch up within `timeout`.
pub fn catch_up(r: &Replica<'_>, timeout: Duration, log: StepLog<'_>) -> Result<String, String> {
    // The insert position, not the write one: under `synchronous_commit = off` a commit
    // returns before its record is written.
    let lsn = one(&r.from, None, "SELECT pg_current_wal_insert_lsn()")?;
    log(&Step::PositionWaited, false, &lsn)?;
    let start = Instant::now();
    loop {
        let reached = one(
            &r.from,
            None,
            &format!(
                "SELECT confirmed_flush_lsn >= {}::pg_lsn FROM pg_replication_slots WHERE slot_name = {}",
                lit(&lsn),
                lit(&r.name)
            ),
        )?;
        match reached.as_str() {
            "t" => break,
            "" => {
                return Err(format!(
                    "replication slot `{}` is gone from the source: the database cannot be caught up",
                    r.name
                ));
            }
            _ => {}
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "subscription `{}` did not reach the source's position {lsn} within {} (`replicate_wait` on the rule; `pg_stat_subscription` at the target and `pg_replication_slots` at the source show how far it is)",
                r.name,
                humantime::format_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log(&Step::PositionWaited, true, &lsn)?;
    Ok(lsn)
}

/// Sets every sequence of the target's copy to the source's value (logical replication does
/// not carry them): read once the site is frozen. Returns how many were set.
///
/// # Errors
/// A server refused.
pub fn copy_sequences(r: &Replica<'_>, log: StepLog<'_>) -> Result<usize, String> {
    let rows = sql(
        &r.from,
        Some(&r.database),
        "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences WHERE last_value IS NOT NULL ORDER BY 1",
    )?;
    log(&Step::SequencesSet, false, &r.database)?;
    let mut set = String::new();
    for row in &rows {
        if let [seq, value] = row.as_slice() {
            let value: i64 = value
                .parse()
                .map_err(|_| format!("sequence {seq}: odd value `{value}`"))?;
            set.push_str(&format!("SELECT setval({}, {value}, true);\n", lit(seq)));
        }
    }
    if !set.is_empty() {
        script(&r.to, &r.database, &set, None)?;
    }
    log(
        &Step::SequencesSet,
        true,
        &format!("{} sequence(s) of {}", rows.len(), r.database),
    )?;
    Ok(rows.len())
}

/// Removes whatever the servers hold of `r` (subscription, slot, publication, role): after the
/// cutover, on rollback, before a new pre-sync and for what a crash left. Reads the servers
/// first, so it is safe to repeat. The subscription is detached from its slot before it is
/// dropped, so dropping it never depends on the source; the slot is then dropped at the
/// source once no process reads it.
///
/// # Errors
/// A server refused, or the slot stayed in use for `timeout`.
pub fn remove(r: &Replica<'_>, timeout: Duration, log: StepLog<'_>) -> Result<(), String> {
    let s = state(r)?;
    if let Some(db) = &s.subscription {
        log(&Step::ChannelRemoved, false, &r.name)?;
        let sub = id(&r.name);
        script(
            &r.to,
            db,
            &format!(
                "ALTER SUBSCRIPTION {sub} DISABLE;\nALTER SUBSCRIPTION {sub} SET (slot_name = NONE);\nDROP SUBSCRIPTION {sub};\n"
            ),
            None,
        )?;
        log(&Step::ChannelRemoved, true, &r.name)?;
    }
    if s.slot {
        log(&Step::SlotDropped, false, &r.name)?;
        let start = Instant::now();
        loop {
            let q = format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {} AND NOT active",
                lit(&r.name)
            );
            sql(&r.from, None, &q)?;
            let left = one(
                &r.from,
                None,
                &format!(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = {}",
                    lit(&r.name)
                ),
            )?;
            if left == "0" {
                break;
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "replication slot `{}` is still in use at the source after {}: drop it by hand (`SELECT pg_drop_replication_slot('{}')`)",
                    r.name,
                    humantime::format_duration(timeout),
                    r.name
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        log(&Step::SlotDropped, true, &r.name)?;
    }
    if s.publication {
        log(&Step::PublicationDropped, false, &r.name)?;
        script(
            &r.from,
            &r.database,
            &format!("DROP PUBLICATION IF EXISTS {};\n", id(&r.name)),
            None,
        )?;
        log(&Step::PublicationDropped, true, &r.name)?;
    }
    if s.role {
        log(&Step::AccountDropped, false, &r.name)?;
        script(
            &r.from,
            "postgres",
            &format!("DROP ROLE IF EXISTS {};\n", id(&r.name)),
            None,
        )?;
        log(&Step::AccountDropped, true, &r.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(port: u16) -> DbServer {
        DbServer {
            host: "db".into(),
            socket: None,
            address: Some("10.0.0.1".into()),
            port: Some(port),
            user: None,
            password: None,
            bin_dir: None,
        }
    }

    #[test]
    fn names_are_valid_slot_names_distinct_per_database_and_server() {
        let a = name("plan", &server(5432), "shop");
        assert_eq!(a.len(), 3 + 8 + 1 + 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_eq!(a, name("plan", &server(5432), "shop"));
        assert_ne!(a, name("plan", &server(5432), "blog"));
        assert_ne!(a, name("plan", &server(5433), "shop"));
        assert_eq!(a[..12], name("plan", &server(5432), "blog")[..12]);
    }

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_value("a b'c\\"), "'a b\\'c\\\\'");
    }
}
