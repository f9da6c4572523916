//! The journal kept in PostgreSQL, shared by several controllers of one move, and the leases
//! and work queue that let them share its units safely.
//!
//! Entries are totally ordered: appends of a plan take one transaction-scoped advisory lock, so
//! an entry's number is also its commit order and a reader that saw number N has seen every
//! entry before it. A unit (a site, or the units of no site) is changed only under a lease: a
//! row with its holder, an expiry renewed by a heartbeat thread, and a fencing token bumped on
//! every take. An entry about a unit is accepted only if, in the same transaction, the unit's
//! token is still the writer's (`FOR SHARE` on the lease row, so a concurrent take waits or is
//! waited for): a controller that lost its lease cannot write anything about the unit again.
//! Tables are created on first use. All times are the server's clock.

pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Appended, JournalError, Line, Pos, Store, Syncer, Visit};

/// How to reach the store and how long a lease lasts.
#[derive(Clone)]
pub struct PgConfig {
    /// libpq-style settings (`host=… dbname=… user=…`) or a `postgresql://` URL, no password;
    /// `sslmode`, `sslrootcert`, `sslcert` and `sslkey` as libpq reads them.
    pub conninfo: String,
    /// Where the relative paths of `sslrootcert`, `sslcert` and `sslkey` are (the plan's
    /// directory; empty: the working directory, as libpq).
    pub base_dir: PathBuf,
    /// The password, read from the plan's `password_env` or `password_file`.
    pub password: Option<String>,
    /// The plan whose journal this is (several plans may share the tables).
    pub plan: String,
    /// How long a lease lasts without being renewed.
    pub lease: Duration,
    /// Who this process is, as other controllers are told (host, PID, command, start).
    pub holder_info: String,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("conninfo", &self.conninfo)
            .field("plan", &self.plan)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transhumance_journal (
    plan text NOT NULL,
    seq bigserial NOT NULL,
    entry jsonb NOT NULL,
    unit text,
    fence bigint,
    holder text NOT NULL,
    written timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plan, seq)
);
CREATE TABLE IF NOT EXISTS transhumance_leases (
    plan text NOT NULL,
    unit text NOT NULL,
    holder text,
    holder_info text,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    PRIMARY KEY (plan, unit)
);
CREATE SEQUENCE IF NOT EXISTS transhumance_fence;
CREATE TABLE IF NOT EXISTS transhumance_runs (
    plan text PRIMARY KEY,
    last bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS transhumance_queues (
    plan text NOT NULL,
    queue bigserial NOT NULL,
    kind text NOT NULL,
    run bigint,
    open boolean NOT NULL DEFAULT true,
    stopped text,
    created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plan, queue)
);
CREATE TABLE IF NOT EXISTS transhumance_queue_items (
    plan text NOT NULL,
    queue bigint NOT NULL,
    item text NOT NULL,
    unit text NOT NULL,
    ord integer NOT NULL,
    stage integer NOT NULL,
    done boolean NOT NULL DEFAULT false,
    outcome text,
    not_before timestamptz,
    PRIMARY KEY (plan, queue, item)
);
-- A step kept for the worker that did the one before it (a site's switch, for the worker that
-- holds the snapshot of its freeze): only that worker takes it while its lease lives.
ALTER TABLE transhumance_queue_items ADD COLUMN IF NOT EXISTS kept boolean NOT NULL DEFAULT false;
-- A worker's next item is the first not done of the lowest stage: found through this index in
-- one step, not by scanning every item of a queue of 50,000 sites at every take.
CREATE INDEX IF NOT EXISTS transhumance_queue_items_todo
    ON transhumance_queue_items (plan, queue, stage, ord) WHERE NOT done;
";

/// Frees a lease still held with token `$3` (a lease taken since is left to its holder).
const FREE_LEASE: &str = "UPDATE transhumance_leases SET holder = NULL, holder_info = NULL,
    expires_at = NULL WHERE plan = $1 AND unit = $2 AND token = $3";

/// Connects with the plan's settings (the password never leaves this process but to the server),
/// over TLS as its `sslmode` asks.
fn connect(config: &PgConfig, role: &str) -> Result<postgres::Client, JournalError> {
    let invalid = |e: String| JournalError::Invalid(format!("`state.postgres`: {e}"));
    let settings = tls::parse(&config.conninfo, &config.base_dir).map_err(invalid)?;
    let mut pg: postgres::Config = settings
        .libpq
        .parse()
        .map_err(|e: postgres::Error| invalid(e.to_string()))?;
    if let Some(p) = &config.password {
        pg.password(p);
    }
    pg.application_name(&format!("transhumance {role}"));
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(10));
    }
    let connected = match tls::connector(&settings.tls, &mut pg).map_err(invalid)? {
        Some(rustls) => pg.connect(rustls),
        None => pg.connect(postgres::NoTls),
    };
    connected.map_err(|e| connect_error(config, &pg, settings.tls.mode, &e))
}

/// A failed connection: TLS refused or failed is said as such, naming the host.
fn connect_error(
    config: &PgConfig,
    pg: &postgres::Config,
    mode: tls::SslMode,
    e: &postgres::Error,
) -> JournalError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(failed) = s.downcast_ref::<tls::TlsFailed>() {
            return JournalError::Tls {
                host: failed.host.clone(),
                reason: failed.reason.clone(),
            };
        }
        // tokio-postgres's words when the server answers the TLS request with a no.
        if s.to_string() == "server does not support TLS" {
            let mut hosts: Vec<String> = pg
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            if hosts.is_empty() {
                hosts = pg.get_hostaddrs().iter().map(|a| a.to_string()).collect();
            }
            return JournalError::Tls {
                host: hosts.join(","),
                reason: format!(
                    "the server refuses TLS, and `sslmode={}` requires it (turn `ssl = on` in its postgresql.conf with a certificate, or lower `sslmode` only on a network you trust)",
                    mode.name()
                ),
            };
        }
        source = s.source();
    }
    store_error(&config.conninfo, e)
}

/// A client error in words: the server's own message when it sent one (a refused password, a
/// missing grant), never the password.
fn store_error(conninfo: &str, e: &postgres::Error) -> JournalError {
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut m = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                m.push_str(&format!(": {s}"));
                source = s.source();
            }
            m
        }
    };
    JournalError::Store {
        store: format!("PostgreSQL `{conninfo}`"),
        message,
    }
}

/// The advisory lock key of a plan's appends (or its queue), from its name.
fn lock_key(what: &str, plan: &str) -> i64 {
    let h = blake3::hash(format!("transhumance {what} {plan}").as_bytes());
    i64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A lease some controller holds now: `status` shows who works on what, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub unit: String,
    /// The holder's own words (`holder_info`: host, process, command), else its id.
    pub holder: String,
    /// When it expires unless renewed (Unix seconds, the server's clock).
    pub expires_at: u64,
    /// Milliseconds left, measured by the server.
    pub expires_in_ms: i64,
}

/// The leases of `config`'s plan held and not expired now, by unit; read without taking any.
///
/// # Errors
/// The server is unreachable or refuses the login or the query.
pub fn held_leases(config: &PgConfig) -> Result<Vec<HeldLease>, JournalError> {
    let mut client = connect(config, "status")?;
    // A plan whose tables were never created has no lease.
    let exists: bool = client
        .query_one("SELECT to_regclass('transhumance_leases') IS NOT NULL", &[])
        .map_err(|e| store_error(&config.conninfo, &e))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT unit, coalesce(holder_info, holder),
                    extract(epoch FROM expires_at)::int8,
                    (extract(epoch FROM expires_at - now()) * 1000)::int8
             FROM transhumance_leases
             WHERE plan = $1 AND holder IS NOT NULL AND expires_at > now()
             ORDER BY unit",
            &[&config.plan],
        )
        .map_err(|e| store_error(&config.conninfo, &e))?;
    Ok(rows
        .iter()
        .map(|r| HeldLease {
            unit: r.get(0),
            holder: r.get(1),
            expires_at: r.get::<_, i64>(2).max(0) as u64,
            expires_in_ms: r.get(3),
        })
        .collect())
}

/// The journal's store in PostgreSQL, with this process's leases.
pub struct PgStore {
    client: postgres::Client,
    config: PgConfig,
    leases: Leases,
    statements: AppendStatements,
}

impl PgStore {
    /// Connects, creates the tables when they are missing, and starts the lease heartbeat.
    ///
    /// # Errors
    /// The server is unreachable or refuses the login or a statement.
    pub fn open(config: PgConfig) -> Result<PgStore, JournalError> {
        let mut client = connect(&config, "journal")?;
        let err = |e: postgres::Error| store_error(&config.conninfo, &e);
        // Two controllers starting at once must not both create the tables.
        let mut tx = client.transaction().map_err(err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key("schema", "")],
        )
        .map_err(err)?;
        tx.batch_execute(SCHEMA).map_err(err)?;
        tx.commit().map_err(err)?;
        let statements = AppendStatements::prepare(&mut client).map_err(err)?;
        let leases = Leases::start(&config)?;
        Ok(PgStore {
            client,
            config,
            leases,
            statements,
        })
    }

    fn err(&self, e: &postgres::Error) -> JournalError {
        store_error(&self.config.conninfo, e)
    }

    /// The body of `append`, inside the transaction that holds the plan's append lock.
    fn append_locked(
        &mut self,
        next: Pos,
        lines: &[Line<'_>],
        fences: &[Option<i64>],
    ) -> Result<Appended, JournalError> {
        let fenced: Vec<(&str, i64)> = lines
            .iter()
            .zip(fences)
            .filter_map(|(l, f)| Some((l.unit?, (*f)?)))
            .collect();
        if !fenced.is_empty() {
            let units: Vec<&str> = fenced.iter().map(|f| f.0).collect();
            let rows = self
                .client
                .query(&self.statements.fences, &[&self.config.plan, &units])
                .map_err(|e| self.err(&e))?;
            let now: HashMap<String, (i64, Option<String>)> = rows
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect();
            for (unit, token) in &fenced {
                let current = now.get(*unit);
                if current.map(|c| c.0) != Some(*token) {
                    let holder = current.and_then(|c| c.1.clone());
                    self.leases.lost(unit);
                    return Err(JournalError::LeaseLost {
                        unit: unit.to_string(),
                        holder,
                    });
                }
            }
        }
        let entries: Vec<&str> = lines.iter().map(|l| l.json.as_str()).collect();
        let units: Vec<Option<&str>> = lines.iter().map(|l| l.unit).collect();
        let rows = self
            .client
            .query(
                &self.statements.insert,
                &[
                    &self.config.plan,
                    &(next as i64),
                    &self.leases.0.holder,
                    &entries,
                    &units,
                    &fences,
                ],
            )
            .map_err(|e| self.err(&e))?;
        let mut others = Vec::new();
        let mut ours = Vec::with_capacity(lines.len());
        for r in &rows {
            let seq = r.get::<_, i64>(0) as u64;
            match r.get::<_, Option<String>>(1) {
                Some(entry) => others.push((seq, entry)),
                None => ours.push(seq),
            }
        }
        let last = others.iter().map(|o| o.0).chain(ours.iter().copied()).max();
        Ok(Appended {
            others,
            ours,
            next: last.map_or(next, |l| l + 1),
            ticket: 0,
        })
    }
}

/// The statements of an append, prepared once per connection.
struct AppendStatements {
    /// The current tokens (and holders) of the units an append writes about, locked against a
    /// take until the append commits.
    fences: postgres::Statement,
    /// Inserts the lines in order and returns, in the same snapshot, the entries others wrote
    /// from seq `$2` on (with their text) and the new lines' seqs (text NULL).
    insert: postgres::Statement,
}

impl AppendStatements {
    fn prepare(client: &mut postgres::Client) -> Result<AppendStatements, postgres::Error> {
        Ok(AppendStatements {
            fences: client.prepare(
                "SELECT unit, token, holder_info FROM transhumance_leases
                 WHERE plan = $1 AND unit = ANY($2::text[]) FOR SHARE",
            )?,
            insert: client.prepare(
                "WITH ins AS (
                     INSERT INTO transhumance_journal (plan, entry, unit, fence, holder)
                     SELECT $1, e.entry::jsonb, e.unit, e.fence, $3
                     FROM unnest($4::text[], $5::text[], $6::int8[]) WITH ORDINALITY
                         AS e(entry, unit, fence, n)
                     ORDER BY e.n
                     RETURNING seq)
                 SELECT seq, entry::text FROM transhumance_journal WHERE plan = $1 AND seq >= $2
                 UNION ALL SELECT seq, NULL FROM ins
                 ORDER BY 1",
            )?,
        })
    }
}

impl Store for PgStore {
    fn append(&mut self, next: Pos, lines: &[Line<'_>]) -> Result<Appended, JournalError> {
        // The fences to check, decided before the transaction (a lost lease fails at once).
        let mut fences: Vec<Option<i64>> = Vec::with_capacity(lines.len());
        for l in lines {
            fences.push(match l.unit {
                Some(unit) => self.leases.fence(unit)?,
                None => None,
            });
        }
        // Four round trips whatever the number of lines: BEGIN with the lock, the fences, the
        // insert with the others' entries, COMMIT (each statement was two, prepared each time).
        let begin = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            lock_key("journal", &self.config.plan)
        );
        self.client
            .batch_execute(&begin)
            .map_err(|e| self.err(&e))?;
        let appended = self.append_locked(next, lines, &fences);
        let end = if appended.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = self.client.batch_execute(end).map_err(|e| self.err(&e));
        let appended = appended?;
        ended?;
        Ok(appended)
    }

    fn read_range(
        &mut self,
        from: Pos,
        until: Pos,
        visit: &mut Visit<'_>,
    ) -> Result<Pos, JournalError> {
        let (plan, conninfo) = (self.config.plan.clone(), self.config.conninfo.clone());
        visit_range(&mut self.client, &plan, &conninfo, from, until, visit)
    }

    fn read_at(&mut self, at: &[Pos], visit: &mut Visit<'_>) -> Result<(), JournalError> {
        for chunk in at.chunks(BATCH as usize) {
            let seqs: Vec<i64> = chunk.iter().map(|s| *s as i64).collect();
            let rows = self
                .client
                .query(
                    "SELECT seq, entry::text FROM transhumance_journal
                     WHERE plan = $1 AND seq = ANY($2::int8[]) ORDER BY seq",
                    &[&self.config.plan, &seqs],
                )
                .map_err(|e| self.err(&e))?;
            if rows.len() != chunk.len() {
                return Err(JournalError::Store {
                    store: self.describe(),
                    message: format!(
                        "{} of {} journal entries read back are missing",
                        chunk.len() - rows.len(),
                        chunk.len()
                    ),
                });
            }
            for r in &rows {
                let seq = r.get::<_, i64>(0) as u64;
                visit(seq, r.get::<_, &str>(1))
                    .map_err(|message| corrupt(&self.config, seq, message))?;
            }
        }
        Ok(())
    }

    fn syncer(&self) -> Syncer {
        // A commit is durable when it returns.
        Syncer::durable()
    }

    fn leases(&self) -> Option<Leases> {
        Some(self.leases.clone())
    }

    fn describe(&self) -> String {
        format!("PostgreSQL `{}`", self.config.conninfo)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.leases.shutdown();
    }
}

/// How many entries a read of the journal takes from the server at once: reading a whole
/// journal holds this many, never all of them.
const BATCH: i64 = 2_000;

fn corrupt(config: &PgConfig, seq: u64, message: String) -> JournalError {
    JournalError::Corrupt {
        path: format!("PostgreSQL `{}`", config.conninfo).into(),
        at: format!("seq {seq}"),
        message,
    }
}

/// Visits the entries of `plan` with seqs in `from..until`, in order, `BATCH` at a time.
/// Returns the seq after the last one visited.
fn visit_range(
    client: &mut postgres::Client,
    plan: &str,
    conninfo: &str,
    from: Pos,
    until: Pos,
    visit: &mut Visit<'_>,
) -> Result<Pos, JournalError> {
    let mut next = from;
    let until = i64::try_from(until).unwrap_or(i64::MAX);
    loop {
        let rows = client
            .query(
                "SELECT seq, entry::text FROM transhumance_journal
                 WHERE plan = $1 AND seq >= $2 AND seq < $3 ORDER BY seq LIMIT $4",
                &[&plan, &(next as i64), &until, &BATCH],
            )
            .map_err(|e| store_error(conninfo, &e))?;
        for r in &rows {
            let seq = r.get::<_, i64>(0) as u64;
            visit(seq, r.get::<_, &str>(1)).map_err(|message| JournalError::Corrupt {
                path: format!("PostgreSQL `{conninfo}`").into(),
                at: format!("seq {seq}"),
                message,
            })?;
            next = seq + 1;
        }
        if (rows.len() as i64) < BATCH {
            return Ok(next);
        }
    }
}

/// Visits a plan's journal in the store without taking any lease (`status`, `report`), one
/// entry at a time.
///
/// # Errors
/// The store is unreachable, or `visit` refuses a line (its parse error).
pub fn visit_lines(config: &PgConfig, visit: &mut Visit<'_>) -> Result<(), JournalError> {
    let mut client = connect(config, "status")?;
    // A plan whose tables were never created has an empty journal.
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('transhumance_journal') IS NOT NULL",
            &[],
        )
        .map_err(|e| store_error(&config.conninfo, &e))?
        .get(0);
    if !exists {
        return Ok(());
    }
    visit_range(
        &mut client,
        &config.plan,
        &config.conninfo,
        0,
        Pos::MAX,
        visit,
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------ leases

/// This process's leases on units of one plan: taking, renewing (a heartbeat thread), giving
/// back, and the plan's work queue. Cheap to clone: one connection and thread behind it.
#[derive(Clone)]
pub struct Leases(Arc<Shared>);

struct Shared {
    client: Mutex<postgres::Client>,
    plan: String,
    conninfo: String,
    /// This process's identity in the lease rows.
    holder: String,
    holder_info: String,
    lease: Duration,
    /// Units held now, with their fencing tokens and how many holds are open on each.
    held: Mutex<HashMap<String, Held>>,
    /// Units whose lease this process lost, with who took them when known.
    lost: Mutex<HashMap<String, Option<String>>>,
    /// When set, a unit this process holds no lease on may not be written about.
    strict: AtomicBool,
    stop: AtomicBool,
    heartbeat: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    holds: u32,
}

/// A lease taken: the unit, its fencing token, and whose expired lease it replaced.
#[derive(Debug, Clone)]
pub struct Taken {
    pub unit: String,
    pub token: i64,
    pub takeover: Option<Takeover>,
}

/// A lease taken from a holder whose lease had expired (a killed or stalled controller).
#[derive(Debug, Clone, PartialEq)]
pub struct Takeover {
    /// Who held it, as it described itself.
    pub from: String,
    /// When its lease expired and when it was taken, milliseconds since the epoch, both by the
    /// server's clock (`taken >= expired` always: a live lease is never taken).
    pub expired_ms: i64,
    pub taken_ms: i64,
}

/// Why a unit could not be leased now.
#[derive(Debug, Clone)]
pub struct HeldBy {
    pub holder: String,
    /// Milliseconds until its lease expires unless renewed.
    pub expires_in_ms: i64,
}

/// What a worker found in the queue.
#[derive(Debug)]
pub enum Next {
    /// An item to work on, its unit leased.
    Item { item: QueueItem, lease: Taken },
    /// Items remain, but none may start now (an earlier stage is under way elsewhere, or a lease
    /// has not expired yet).
    Wait,
    /// Every item is done.
    Done,
}

/// One item of the work queue.
#[derive(Debug, Clone)]
pub struct QueueItem {
    pub item: String,
    pub unit: String,
    pub stage: i32,
}

/// A work queue this process created or joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub id: i64,
    pub kind: String,
    /// The journaled run of the queue, once its creator wrote it.
    pub run: Option<i64>,
    /// Whether this process created it.
    pub created: bool,
}

impl Leases {
    fn start(config: &PgConfig) -> Result<Leases, JournalError> {
        let client = connect(config, "leases")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            client: Mutex::new(client),
            plan: config.plan.clone(),
            conninfo: config.conninfo.clone(),
            holder: format!("{}/{}/{nanos}", super::host_name(), std::process::id()),
            holder_info: config.holder_info.clone(),
            lease: config.lease,
            held: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashMap::new()),
            strict: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            heartbeat: Mutex::new(None),
        });
        let beat = Arc::downgrade(&shared);
        let period = (config.lease / 3).max(Duration::from_millis(100));
        let handle = std::thread::Builder::new()
            .name("lease heartbeat".into())
            .spawn(move || {
                loop {
                    let mut slept = Duration::ZERO;
                    while slept < period {
                        let step = Duration::from_millis(50).min(period - slept);
                        std::thread::sleep(step);
                        slept += step;
                        match beat.upgrade() {
                            Some(s) if !s.stop.load(Ordering::Relaxed) => {}
                            _ => return,
                        }
                    }
                    let Some(s) = beat.upgrade() else { return };
                    // A failed renewal is retried at the next beat; the lease may expire
                    // meanwhile, and then the journal refuses this process's entries.
                    let _ = Leases(s).renew();
                }
            })
            .map_err(|e| JournalError::Store {
                store: "lease heartbeat".into(),
                message: e.to_string(),
            })?;
        *lock(&shared.heartbeat) = Some(handle);
        Ok(Leases(shared))
    }

    fn err(&self, e: &postgres::Error) -> JournalError {
        store_error(&self.0.conninfo, e)
    }

    fn client(&self) -> std::sync::MutexGuard<'_, postgres::Client> {
        lock(&self.0.client)
    }

    fn lease_secs(&self) -> f64 {
        self.0.lease.as_secs_f64()
    }

    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> Duration {
        self.0.lease
    }

    /// Who this process is in lease rows and journal lines.
    pub fn holder(&self) -> &str {
        &self.0.holder
    }

    /// How this process describes itself to other controllers (host, PID, command, start).
    pub fn holder_info(&self) -> &str {
        &self.0.holder_info
    }

    /// Refuses from now on any entry about a unit this process holds no lease on (a command
    /// that changes units takes each one's lease first).
    pub fn require(&self) {
        self.0.strict.store(true, Ordering::Relaxed);
    }

    /// The fencing token to write an entry about `unit` with: `None` when no lease is needed.
    fn fence(&self, unit: &str) -> Result<Option<i64>, JournalError> {
        if let Some(h) = lock(&self.0.held).get(unit) {
            return Ok(Some(h.token));
        }
        if let Some(holder) = lock(&self.0.lost).get(unit) {
            return Err(JournalError::LeaseLost {
                unit: unit.to_string(),
                holder: holder.clone(),
            });
        }
        if self.0.strict.load(Ordering::Relaxed) {
            return Err(JournalError::LeaseLost {
                unit: unit.to_string(),
                holder: None,
            });
        }
        Ok(None)
    }

    /// Notes that `unit`'s lease is gone (the store refused a write with its token).
    fn lost(&self, unit: &str) {
        lock(&self.0.held).remove(unit);
        lock(&self.0.lost).insert(unit.to_string(), None);
    }

    /// Whether this process still holds `unit`, asked of the server (before a side effect no
    /// journal entry precedes, such as a hook).
    ///
    /// # Errors
    /// It does not (`LeaseLost`), or the server cannot be asked.
    pub fn check(&self, unit: &str) -> Result<(), JournalError> {
        let Some(token) = self.fence(unit)? else {
            return Ok(());
        };
        let row = self
            .client()
            .query_opt(
                "SELECT token, holder_info FROM transhumance_leases WHERE plan = $1 AND unit = $2",
                &[&self.0.plan, &unit],
            )
            .map_err(|e| self.err(&e))?;
        match row {
            Some(r) if r.get::<_, i64>(0) == token => Ok(()),
            other => {
                let holder = other.and_then(|r| r.get::<_, Option<String>>(1));
                lock(&self.0.held).remove(unit);
                lock(&self.0.lost).insert(unit.to_string(), holder.clone());
                Err(JournalError::LeaseLost {
                    unit: unit.to_string(),
                    holder,
                })
            }
        }
    }

    /// Whether this process holds `unit` now.
    pub fn holds(&self, unit: &str) -> bool {
        lock(&self.0.held).contains_key(unit)
    }

    /// Takes `unit`'s lease if it is free or expired (or already ours: one more hold).
    /// `Ok(Err(held))` says who holds it and for how long.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn try_take(&self, unit: &str) -> Result<Result<Taken, HeldBy>, JournalError> {
        if let Some(h) = lock(&self.0.held).get_mut(unit) {
            h.holds += 1;
            return Ok(Ok(Taken {
                unit: unit.to_string(),
                token: h.token,
                takeover: None,
            }));
        }
        let plan = &self.0.plan;
        let mut client = self.client();
        let conninfo = self.0.conninfo.clone();
        let err = |e: postgres::Error| store_error(&conninfo, &e);
        let mut tx = client.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO transhumance_leases (plan, unit) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[plan, &unit],
        )
        .map_err(err)?;
        let row = tx
            .query_one(
                "SELECT holder, holder_info, expires_at <= now(),
                        (extract(epoch FROM expires_at) * 1000)::int8,
                        (extract(epoch FROM now()) * 1000)::int8
                 FROM transhumance_leases WHERE plan = $1 AND unit = $2 FOR UPDATE",
                &[plan, &unit],
            )
            .map_err(err)?;
        let holder: Option<String> = row.get(0);
        let info: Option<String> = row.get(1);
        let expired: Option<bool> = row.get(2);
        let expires_ms: Option<i64> = row.get(3);
        let now_ms: i64 = row.get(4);
        if holder.is_some() && expired == Some(false) {
            return Ok(Err(HeldBy {
                holder: info.unwrap_or_default(),
                expires_in_ms: expires_ms.unwrap_or(now_ms) - now_ms,
            }));
        }
        let token: i64 = tx
            .query_one(
                "UPDATE transhumance_leases SET holder = $3, holder_info = $4,
                        token = nextval('transhumance_fence'),
                        expires_at = now() + make_interval(secs => $5)
                 WHERE plan = $1 AND unit = $2 RETURNING token",
                &[
                    plan,
                    &unit,
                    &self.0.holder,
                    &self.0.holder_info,
                    &self.lease_secs(),
                ],
            )
            .map_err(err)?
            .get(0);
        tx.commit().map_err(err)?;
        drop(client);
        self.note_taken(unit, token);
        Ok(Ok(Taken {
            unit: unit.to_string(),
            token,
            takeover: holder.map(|_| Takeover {
                from: info.unwrap_or_default(),
                expired_ms: expires_ms.unwrap_or(now_ms),
                taken_ms: now_ms,
            }),
        }))
    }

    fn note_taken(&self, unit: &str, token: i64) {
        lock(&self.0.lost).remove(unit);
        lock(&self.0.held).insert(unit.to_string(), Held { token, holds: 1 });
    }

    /// Gives one hold of `unit` back; the lease is freed when the last one is.
    ///
    /// # Errors
    /// The server cannot be asked (the lease then expires on its own).
    pub fn release(&self, unit: &str) -> Result<(), JournalError> {
        let token = {
            let mut held = lock(&self.0.held);
            let Some(h) = held.get_mut(unit) else {
                return Ok(());
            };
            h.holds -= 1;
            if h.holds > 0 {
                return Ok(());
            }
            let token = h.token;
            held.remove(unit);
            token
        };
        self.client()
            .execute(FREE_LEASE, &[&self.0.plan, &unit, &token])
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Extends every lease held; a lease whose token changed (taken by another controller
    /// after it expired) is lost from then on.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn renew(&self) -> Result<(), JournalError> {
        let (units, tokens): (Vec<String>, Vec<i64>) = lock(&self.0.held)
            .iter()
            .map(|(u, h)| (u.clone(), h.token))
            .unzip();
        if units.is_empty() {
            return Ok(());
        }
        let renewed: Vec<String> = self
            .client()
            .query(
                "UPDATE transhumance_leases l SET expires_at = now() + make_interval(secs => $3)
                 FROM unnest($2::text[], $4::int8[]) AS h(unit, token)
                 WHERE l.plan = $1 AND l.unit = h.unit AND l.token = h.token
                 RETURNING l.unit",
                &[&self.0.plan, &units, &self.lease_secs(), &tokens],
            )
            .map_err(|e| self.err(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut held = lock(&self.0.held);
        for (unit, token) in units.iter().zip(&tokens) {
            if !renewed.contains(unit) && held.get(unit).is_some_and(|h| h.token == *token) {
                held.remove(unit);
                lock(&self.0.lost).insert(unit.clone(), None);
            }
        }
        Ok(())
    }

    /// Stops the heartbeat and frees every lease still held (a clean exit: others need not
    /// wait for them to expire).
    fn shutdown(&self) {
        self.0.stop.store(true, Ordering::Relaxed);
        if let Some(h) = lock(&self.0.heartbeat).take() {
            let _ = h.join();
        }
        let held: Vec<(String, i64)> = lock(&self.0.held)
            .drain()
            .map(|(u, h)| (u, h.token))
            .collect();
        for (unit, token) in held {
            let _ = self
                .client()
                .execute(FREE_LEASE, &[&self.0.plan, &unit, &token]);
        }
    }

    /// A run number no other controller was given: above `floor` and every number handed out
    /// for this plan before.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn next_run(&self, floor: u64) -> Result<u64, JournalError> {
        let n: i64 = self
            .client()
            .query_one(
                "INSERT INTO transhumance_runs (plan, last) VALUES ($1, $2)
                 ON CONFLICT (plan) DO UPDATE
                 SET last = greatest(transhumance_runs.last + 1, EXCLUDED.last)
                 RETURNING last",
                &[&self.0.plan, &(floor as i64)],
            )
            .map_err(|e| self.err(&e))?
            .get(0);
        Ok(n as u64)
    }

    // --------------------------------------------------------------------------- work queue

    /// The plan's open work queue, if there is one with items left.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn open_queue(&self) -> Result<Option<Queue>, JournalError> {
        let row = self
            .client()
            .query_opt(
                "SELECT q.queue, q.kind, q.run FROM transhumance_queues q
                 WHERE q.plan = $1 AND q.open AND EXISTS (
                     SELECT 1 FROM transhumance_queue_items i
                     WHERE i.plan = q.plan AND i.queue = q.queue AND NOT i.done)
                 ORDER BY q.queue DESC LIMIT 1",
                &[&self.0.plan],
            )
            .map_err(|e| self.err(&e))?;
        Ok(row.map(|r| Queue {
            id: r.get(0),
            kind: r.get(1),
            run: r.get(2),
            created: false,
        }))
    }

    /// Joins the plan's open queue of `kind`, or creates it with `items` (item, unit, stage) in
    /// order when none is open. Another open queue of a different kind is `Busy`.
    ///
    /// # Errors
    /// `Busy`, or the server cannot be asked.
    pub fn join_or_create(
        &self,
        kind: &str,
        items: &[(String, String, i32)],
    ) -> Result<Queue, JournalError> {
        let plan = &self.0.plan;
        let mut client = self.client();
        let conninfo = self.0.conninfo.clone();
        let err = |e: postgres::Error| store_error(&conninfo, &e);
        let mut tx = client.transaction().map_err(err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key("queue", plan)],
        )
        .map_err(err)?;
        // A queue whose items are all done is closed here if its last worker died closing it.
        tx.execute(
            "UPDATE transhumance_queues q SET open = false WHERE q.plan = $1 AND q.open
             AND NOT EXISTS (SELECT 1 FROM transhumance_queue_items i
                             WHERE i.plan = q.plan AND i.queue = q.queue AND NOT i.done)",
            &[plan],
        )
        .map_err(err)?;
        if let Some(r) = tx
            .query_opt(
                "SELECT queue, kind, run FROM transhumance_queues WHERE plan = $1 AND open
                 ORDER BY queue DESC LIMIT 1",
                &[plan],
            )
            .map_err(err)?
        {
            let open_kind: String = r.get(1);
            if open_kind != kind {
                return Err(JournalError::Busy(format!(
                    "the workers of plan `{plan}` run `{open_kind}` now: start more workers with the same arguments, or wait until they finish"
                )));
            }
            return Ok(Queue {
                id: r.get(0),
                kind: open_kind,
                run: r.get(2),
                created: false,
            });
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO transhumance_queues (plan, kind) VALUES ($1, $2) RETURNING queue",
                &[plan, &kind],
            )
            .map_err(err)?
            .get(0);
        let names: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
        let units: Vec<&str> = items.iter().map(|i| i.1.as_str()).collect();
        let stages: Vec<i32> = items.iter().map(|i| i.2).collect();
        tx.execute(
            "INSERT INTO transhumance_queue_items (plan, queue, item, unit, ord, stage)
             SELECT $1, $2, t.item, t.unit, t.ord::int4, t.stage
             FROM unnest($3::text[], $4::text[], $5::int4[]) WITH ORDINALITY AS t(item, unit, stage, ord)",
            &[plan, &id, &names, &units, &stages],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO transhumance_leases (plan, unit)
             SELECT DISTINCT $1, u FROM unnest($2::text[]) AS u ON CONFLICT DO NOTHING",
            &[plan, &units],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Queue {
            id,
            kind: kind.to_string(),
            run: None,
            created: true,
        })
    }

    /// Records the journaled run a queue's creator started for it.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn set_run(&self, queue: i64, run: u64) -> Result<(), JournalError> {
        self.client()
            .execute(
                "UPDATE transhumance_queues SET run = $3 WHERE plan = $1 AND queue = $2",
                &[&self.0.plan, &queue, &(run as i64)],
            )
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Takes the next item that may start: of the lowest stage with items left, its unit's
    /// lease free or expired (`SKIP LOCKED`: controllers never wait on each other here).
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn next(&self, queue: i64) -> Result<Next, JournalError> {
        let plan = &self.0.plan;
        let row = self
            .client()
            .query_opt(
                "WITH cand AS (
                    SELECT i.item, i.unit, i.stage,
                           (i.kept AND l.holder = $3 AND l.expires_at > now()) AS ours,
                           l.holder AS prev, l.holder_info AS prev_info,
                           (extract(epoch FROM l.expires_at) * 1000)::int8 AS prev_expiry
                    FROM transhumance_queue_items i
                    JOIN transhumance_leases l ON l.plan = i.plan AND l.unit = i.unit
                    WHERE i.plan = $1 AND i.queue = $2 AND NOT i.done
                      AND i.stage = (SELECT min(stage) FROM transhumance_queue_items
                                     WHERE plan = $1 AND queue = $2 AND NOT done)
                      AND (i.not_before IS NULL OR i.not_before <= now())
                      AND (l.holder IS NULL OR l.expires_at <= now()
                           OR (i.kept AND l.holder = $3))
                    ORDER BY i.ord LIMIT 1
                    FOR UPDATE OF l SKIP LOCKED),
                 unkept AS (
                    UPDATE transhumance_queue_items q SET kept = false FROM cand
                    WHERE q.plan = $1 AND q.queue = $2 AND q.item = cand.item AND q.kept)
                 UPDATE transhumance_leases l SET holder = $3, holder_info = $4,
                        token = nextval('transhumance_fence'),
                        expires_at = now() + make_interval(secs => $5)
                 FROM cand WHERE l.plan = $1 AND l.unit = cand.unit
                 RETURNING cand.item, cand.unit, cand.stage, l.token,
                           CASE WHEN cand.ours THEN NULL ELSE cand.prev END,
                           cand.prev_info, cand.prev_expiry,
                           (extract(epoch FROM now()) * 1000)::int8",
                &[
                    plan,
                    &queue,
                    &self.0.holder,
                    &self.0.holder_info,
                    &self.lease_secs(),
                ],
            )
            .map_err(|e| self.err(&e))?;
        if let Some(r) = row {
            let unit: String = r.get(1);
            let token: i64 = r.get(3);
            let prev: Option<String> = r.get(4);
            let now_ms: i64 = r.get(7);
            self.note_taken(&unit, token);
            return Ok(Next::Item {
                item: QueueItem {
                    item: r.get(0),
                    unit: unit.clone(),
                    stage: r.get(2),
                },
                lease: Taken {
                    unit,
                    token,
                    takeover: prev.map(|_| Takeover {
                        from: r.get::<_, Option<String>>(5).unwrap_or_default(),
                        expired_ms: r.get::<_, Option<i64>>(6).unwrap_or(now_ms),
                        taken_ms: now_ms,
                    }),
                },
            });
        }
        let left: i64 = self
            .client()
            .query_one(
                "SELECT count(*) FROM transhumance_queue_items
                 WHERE plan = $1 AND queue = $2 AND NOT done",
                &[plan, &queue],
            )
            .map_err(|e| self.err(&e))?
            .get(0);
        Ok(if left == 0 { Next::Done } else { Next::Wait })
    }

    /// Ends this process's work on `item` (its unit's lease given back): done, or moved to
    /// `next_stage`; `outcome` is kept for later stages to read. Fenced: refused when the
    /// unit's lease is no longer ours.
    ///
    /// # Errors
    /// `LeaseLost`, or the server cannot be asked.
    pub fn finish(
        &self,
        queue: i64,
        item: &QueueItem,
        next_stage: Option<i32>,
        outcome: Option<&str>,
    ) -> Result<(), JournalError> {
        self.finish_as(queue, item, next_stage, outcome, false)
    }

    /// `finish`, moving `item` to `next_stage` while this process keeps its unit's lease
    /// (renewed by the heartbeat): no other worker takes the step unless this one dies, or
    /// gives the lease back (`release`). Fenced as `finish`.
    ///
    /// # Errors
    /// `LeaseLost`, or the server cannot be asked.
    pub fn finish_kept(
        &self,
        queue: i64,
        item: &QueueItem,
        next_stage: i32,
    ) -> Result<(), JournalError> {
        self.finish_as(queue, item, Some(next_stage), None, true)
    }

    fn finish_as(
        &self,
        queue: i64,
        item: &QueueItem,
        next_stage: Option<i32>,
        outcome: Option<&str>,
        keep: bool,
    ) -> Result<(), JournalError> {
        let token = match lock(&self.0.held).get(&item.unit) {
            Some(h) => h.token,
            None => {
                return Err(JournalError::LeaseLost {
                    unit: item.unit.clone(),
                    holder: None,
                });
            }
        };
        let plan = &self.0.plan;
        let mut client = self.client();
        let conninfo = self.0.conninfo.clone();
        let err = |e: postgres::Error| store_error(&conninfo, &e);
        let mut tx = client.transaction().map_err(err)?;
        let freed = if keep {
            tx.execute(
                "UPDATE transhumance_leases SET expires_at = now() + make_interval(secs => $4)
                 WHERE plan = $1 AND unit = $2 AND token = $3",
                &[plan, &item.unit, &token, &self.lease_secs()],
            )
        } else {
            tx.execute(FREE_LEASE, &[plan, &item.unit, &token])
        }
        .map_err(err)?;
        if freed == 0 {
            drop(tx);
            drop(client);
            self.lost(&item.unit);
            return Err(JournalError::LeaseLost {
                unit: item.unit.clone(),
                holder: None,
            });
        }
        tx.execute(
            "UPDATE transhumance_queue_items SET done = $4, stage = coalesce($5, stage),
                    outcome = coalesce($6, outcome), kept = $7
             WHERE plan = $1 AND queue = $2 AND item = $3",
            &[
                plan,
                &queue,
                &item.item,
                &next_stage.is_none(),
                &next_stage,
                &outcome,
                &keep,
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        drop(client);
        if !keep {
            lock(&self.0.held).remove(&item.unit);
        }
        Ok(())
    }

    /// The outcome an item left (`finish`), if it is done.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn outcome(&self, queue: i64, item: &str) -> Result<Option<String>, JournalError> {
        let row = self
            .client()
            .query_opt(
                "SELECT outcome FROM transhumance_queue_items
                 WHERE plan = $1 AND queue = $2 AND item = $3 AND done",
                &[&self.0.plan, &queue, &item],
            )
            .map_err(|e| self.err(&e))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Holds every item not done yet of a stage above `stage` for `wait` from now (by the
    /// server's clock): a wait every controller observes (resolvers forgetting old TTLs).
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn hold_later_stages(
        &self,
        queue: i64,
        stage: i32,
        wait: Duration,
    ) -> Result<(), JournalError> {
        self.client()
            .execute(
                "UPDATE transhumance_queue_items
                 SET not_before = now() + make_interval(secs => $4)
                 WHERE plan = $1 AND queue = $2 AND stage > $3 AND NOT done",
                &[&self.0.plan, &queue, &stage, &wait.as_secs_f64()],
            )
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Marks every item not done yet of a stage above `stage` done with `reason` (a run that
    /// stops, such as after failed pre-syncs).
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn drop_later_stages(
        &self,
        queue: i64,
        stage: i32,
        reason: &str,
    ) -> Result<(), JournalError> {
        let mut client = self.client();
        let conninfo = self.0.conninfo.clone();
        let err = |e: postgres::Error| store_error(&conninfo, &e);
        let mut tx = client.transaction().map_err(err)?;
        tx.execute(
            "UPDATE transhumance_queue_items SET done = true, outcome = $4
             WHERE plan = $1 AND queue = $2 AND stage > $3 AND NOT done",
            &[&self.0.plan, &queue, &stage, &reason],
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE transhumance_queues SET stopped = $3 WHERE plan = $1 AND queue = $2",
            &[&self.0.plan, &queue, &reason],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Why the queue's later steps were dropped, if they were.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn stopped(&self, queue: i64) -> Result<Option<String>, JournalError> {
        let row = self
            .client()
            .query_opt(
                "SELECT stopped FROM transhumance_queues WHERE plan = $1 AND queue = $2",
                &[&self.0.plan, &queue],
            )
            .map_err(|e| self.err(&e))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Closes the queue when every item is done. `Some(run)` for the one caller that closed it
    /// (it ends the journaled run); `None` for every other.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn close(&self, queue: i64) -> Result<Option<Option<i64>>, JournalError> {
        let row = self
            .client()
            .query_opt(
                "UPDATE transhumance_queues q SET open = false
                 WHERE q.plan = $1 AND q.queue = $2 AND q.open AND NOT EXISTS (
                     SELECT 1 FROM transhumance_queue_items i
                     WHERE i.plan = q.plan AND i.queue = q.queue AND NOT i.done)
                 RETURNING q.run",
                &[&self.0.plan, &queue],
            )
            .map_err(|e| self.err(&e))?;
        Ok(row.map(|r| r.get(0)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
