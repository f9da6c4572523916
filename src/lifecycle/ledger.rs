//! The migration's journal entries and the ledger that owns them: durable appends with group
//! commit, the change log handed to engines, and per-unit indexes so reading one site's or one
//! RRset's history costs what that unit holds, not the whole journal. With a journal shared by
//! several controllers, each entry names the unit it is about (its site, or the units of no
//! site) for the store to check this controller's lease on it, and readers of other units'
//! entries read the store again first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::probe::ProbeResult;
use super::state::SiteState;
use crate::dns::provider::{DnsEvent, DnsLog};
use crate::journal::postgres::{Leases, PgConfig, PgStore};
use crate::journal::{Journal, JournalError, Pos, now};
use crate::plan::{Plan, StateStore};
use crate::unit::{UnitError, UnitId};

/// The lease under which a shared journal's controllers change the TTLs of every site's
/// records at once (lowering them, restoring them).
pub const DNS_UNIT: &str = "(dns)";

/// A database's step once its rows were compared in its site's freeze (`verify` of a plan).
pub const VERIFY_STEP: &str = "verify";

/// A replicated database's step once its catalogs were checked in the freeze and its rows are
/// left for the comparison after go-live, in a snapshot this run holds at the target: owed
/// until `AFTER_GO_LIVE` (or a row comparison in a later freeze, `VERIFY_STEP`) follows.
pub const ROWS_OWED: &str = "rows owed after go-live";

/// A database's step once its rows were compared after the switch.
pub const AFTER_GO_LIVE: &str = "verify after go-live";

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A site reached a state of the migration lifecycle. States that name an intent
    /// (`freezing`, `switching`, `rolling_back`) are written before their side effect.
    Site {
        site: String,
        state: SiteState,
        at: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// Bytes moved by the step (syncs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        /// How long the step's engine worked, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        millis: Option<u64>,
        /// `at` in milliseconds since the epoch (journals written before it have `at` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
    /// A probe of one of a site's domains.
    Probe {
        site: String,
        result: ProbeResult,
        at: u64,
    },
    /// A unit that may be live on the new side was overwritten because the operator named it
    /// in `--allow-live`.
    Override {
        unit: UnitId,
        /// Why it may be live (the site and its state).
        because: String,
        command: String,
        at: u64,
    },
    /// A named safety check refused, or was let through by `--allow NAME` or `--force`.
    Check {
        finding: crate::check::Finding,
        verdict: CheckVerdict,
        command: String,
        at: u64,
    },
    /// A unit that belongs to a site (a database, a mail store) moved or was checked.
    Unit {
        site: String,
        unit: String,
        step: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        at: u64,
    },
    /// A command started: what `resume` finishes when no `run_end` follows.
    Run {
        run: u64,
        command: RunCommand,
        /// The command line as typed (no secret is ever on it).
        argv: Vec<String>,
        version: String,
        user: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        overrides: Vec<String>,
        at: u64,
    },
    /// The command of `run` finished (with or without failed sites).
    RunEnd { run: u64, ok: bool, at: u64 },
    /// A controller took a unit's lease from another whose lease had expired (killed, or
    /// stalled): it goes on from what the journal and the real world say, as `resume` does.
    Takeover {
        unit: String,
        /// Who took it and who held it, as each describes itself (host, PID, command).
        by: String,
        from: String,
        /// When the old lease expired and when it was taken, in milliseconds since the epoch
        /// by the journal server's clock.
        expired_ms: i64,
        taken_ms: i64,
        at: u64,
    },
    /// A move's restricted key at a target host (the direct data path): journaled before it
    /// is installed and once it is removed, so what a crash leaves is removed by the next
    /// command.
    DirectKey {
        host: String,
        /// The authorized_keys file it is in.
        file: String,
        marker: String,
        /// Its stream directory at the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        streams: Option<std::path::PathBuf>,
        installed: bool,
        at: u64,
    },
    /// A step of a replication connection (`mode: replicate`): its intent (`done` false) is
    /// journaled before the servers are touched, its outcome after. Recovery reads the
    /// servers; an intent without its outcome is never taken as applied.
    Replication {
        /// The connection's name at the target (also names the account on the source).
        channel: String,
        /// The target's host.
        host: String,
        step: crate::db::replication::Step,
        done: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        at: u64,
    },
    /// A confirmed site's route through the forwarder on its old host (stale resolvers' visitors
    /// sent on to the new address): journaled before the route is handed to the forwarder
    /// (`routed`), and once it is taken out (rollback, or its window is over).
    ForwardRoute {
        site: String,
        host: String,
        names: Vec<String>,
        /// The new address its connections go to.
        to: String,
        /// When the route expires (seconds since the epoch): the switch, plus the old TTL, plus
        /// the plan's margin.
        until: u64,
        margin_secs: u64,
        routed: bool,
        at: u64,
    },
    /// An old host's whole-port route (plain mail ports, which carry no name to route by):
    /// journaled before the forwarder is given it, once every site of the host (`sites`) is
    /// confirmed, and taken out (`routed` false) when one of them is not any more (rollback).
    ForwardPorts {
        host: String,
        sites: Vec<String>,
        /// The new address its connections go to.
        to: String,
        /// The latest of the sites' route expiries (seconds since the epoch).
        until: u64,
        routed: bool,
        at: u64,
    },
    /// The forwarder process on an old host: started (its PID and the start time the kernel
    /// gives it, so a PID reused by another process is not taken for it), or found stopped.
    Forwarder {
        host: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_ticks: Option<u64>,
        running: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        at: u64,
    },
    /// A DNS change's intent or outcome (the `dns_*` kinds).
    #[serde(untagged)]
    Dns(DnsEvent),
}

/// What a journaled run was doing, so `resume` can finish exactly that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum RunCommand {
    Sync { only: Vec<String> },
    Cutover { selection: Selected },
    Rollback { only: Vec<String> },
    Resume,
    Run,
    Dns { step: String },
    Other { name: String },
}

/// What became of a check's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckVerdict {
    Refused,
    /// Let through by `--allow NAME`.
    Allowed,
    /// Let through by `--force`.
    Forced,
}

impl CheckVerdict {
    /// The flag that let the check through, as the operator typed it.
    pub fn flag(self) -> &'static str {
        match self {
            CheckVerdict::Refused => "nothing (refused)",
            CheckVerdict::Allowed => "`--allow`",
            CheckVerdict::Forced => "`--force`",
        }
    }
}

/// Which sites a cutover took, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selected {
    All,
    Batch(usize),
    Only(Vec<String>),
}

/// A site's (or a leased unit's) compact record in the ledger: its latest state, and where
/// its entries are in the store. Tens of bytes, not its entries.
#[derive(Default)]
struct SiteIndex {
    /// `None` for a unit the journal has no `site` entry of (a takeover, a probe only).
    state: Option<SiteState>,
    at: Vec<Pos>,
}

/// A DNS name's record: the phase of its last change intent and where its entries are.
#[derive(Default)]
struct NameIndex {
    last: Option<crate::dns::provider::DnsPhase>,
    at: Vec<Pos>,
}

/// Entry positions by what they are about, and the run bookkeeping: what the ledger keeps in
/// memory instead of the entries, which stay in the store and are read back when asked.
#[derive(Default)]
struct Index {
    sites: HashMap<Box<str>, SiteIndex>,
    names: HashMap<Box<str>, NameIndex>,
    zone_wide: Vec<Pos>,
    /// Entries about no site (runs, checks, keys, forwarders, replication), and a site's
    /// forwarder routes, by kind: few, read back by the readers of one kind.
    by_kind: HashMap<Kind, Vec<Pos>>,
    /// Per old host, where its forwarder's routes stand: what `Ledger::forward_of` reads back
    /// (a route change reads that host's entries, not every forwarding entry of the platform).
    forward: HashMap<Box<str>, HostForward>,
    /// The highest run number journaled.
    last_run: u64,
    /// Runs started and not ended, resumable ones only, oldest first, with their positions.
    open_runs: Vec<(u64, RunCommand, Pos)>,
}

/// One old host's forwarding entries: each site's last route, the last whole-port route and
/// the last forwarder entry.
#[derive(Default)]
struct HostForward {
    routes: HashMap<Box<str>, Pos>,
    ports: Option<Pos>,
    forwarder: Option<Pos>,
}

/// The kinds of entry `Ledger::entries_of` reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Override,
    Check,
    Run,
    RunEnd,
    DirectKey,
    Replication,
    ForwardRoute,
    ForwardPorts,
    Forwarder,
}

impl Index {
    fn site(&mut self, site: &str) -> &mut SiteIndex {
        if !self.sites.contains_key(site) {
            self.sites.insert(site.into(), SiteIndex::default());
        }
        self.sites.get_mut(site).expect("just inserted")
    }

    fn host_forward(&mut self, host: &str) -> &mut HostForward {
        if !self.forward.contains_key(host) {
            self.forward.insert(host.into(), HostForward::default());
        }
        self.forward.get_mut(host).expect("just inserted")
    }

    fn kind(&mut self, kind: Kind, at: Pos) {
        self.by_kind.entry(kind).or_default().push(at);
    }

    fn add(&mut self, at: Pos, e: &Entry) {
        match e {
            Entry::Site { site, state, .. } => {
                let s = self.site(site);
                s.at.push(at);
                s.state = Some(*state);
            }
            Entry::Probe { site, .. } | Entry::Unit { site, .. } => self.site(site).at.push(at),
            Entry::ForwardRoute { site, host, .. } => {
                self.site(site).at.push(at);
                self.kind(Kind::ForwardRoute, at);
                self.host_forward(host)
                    .routes
                    .insert(site.as_str().into(), at);
            }
            Entry::Dns(d) => match d.key() {
                Some(k) => {
                    if !self.names.contains_key(k.name.as_str()) {
                        self.names
                            .insert(k.name.as_str().into(), NameIndex::default());
                    }
                    let n = self.names.get_mut(k.name.as_str()).expect("just inserted");
                    if let DnsEvent::DnsIntent { phase, .. } = d {
                        n.last = Some(*phase);
                    }
                    n.at.push(at);
                }
                None => self.zone_wide.push(at),
            },
            Entry::Takeover { unit, .. } => self.site(unit).at.push(at),
            Entry::Run { run, command, .. } => {
                self.last_run = self.last_run.max(*run);
                if command.resumable() {
                    self.open_runs.push((*run, command.clone(), at));
                }
                self.kind(Kind::Run, at);
            }
            Entry::RunEnd { run, .. } => {
                self.open_runs.retain(|(r, _, _)| r != run);
                self.kind(Kind::RunEnd, at);
            }
            Entry::Override { .. } => self.kind(Kind::Override, at),
            Entry::Check { .. } => self.kind(Kind::Check, at),
            Entry::DirectKey { .. } => self.kind(Kind::DirectKey, at),
            Entry::Replication { .. } => self.kind(Kind::Replication, at),
            Entry::ForwardPorts { host, .. } => {
                self.kind(Kind::ForwardPorts, at);
                self.host_forward(host).ports = Some(at);
            }
            Entry::Forwarder { host, .. } => {
                self.kind(Kind::Forwarder, at);
                self.host_forward(host).forwarder = Some(at);
            }
        }
    }
}

struct Inner {
    journal: Journal<Entry>,
    index: Index,
}

impl Inner {
    /// Indexes what others appended since this process last read or wrote (every entry, the
    /// first time), one entry at a time.
    fn catch_up(&mut self) -> Result<(), JournalError> {
        let Inner { journal, index } = self;
        journal.catch_up(&mut |at, e| index.add(at, &e))?;
        Ok(())
    }

    /// The entries at `at`, read back from the store.
    fn read_at(&mut self, mut at: Vec<Pos>) -> Result<Vec<Entry>, JournalError> {
        at.sort_unstable();
        at.dedup();
        self.journal.read_at(&at)
    }
}

/// The plan's journal, held locked for the run, with its indexes.
pub struct Ledger {
    inner: Mutex<Inner>,
    /// Hook called after each durable entry (crash tests).
    after_record: fn(&Entry),
    /// The shared store's leases (none with the file journal, whose lock covers every unit).
    leases: Option<Leases>,
    /// The site each DNS name belongs to, so a DNS entry is checked against that site's lease.
    owners: RwLock<HashMap<Box<str>, Box<str>>>,
    /// Why entries could not be read back, when a reader that cannot report it met it: every
    /// later `record` refuses, so nothing is changed on a decision taken on a partial read.
    unreadable: Mutex<Option<String>>,
}

impl Ledger {
    /// Opens the journal in `state_dir`, taking the plan's run lock.
    ///
    /// # Errors
    /// Another run holds the lock, or the journal cannot be read.
    pub fn open(state_dir: &Path) -> Result<Ledger, JournalError> {
        Ledger::over(Journal::<Entry>::open(state_dir)?)
    }

    /// Opens the plan's journal where the plan keeps it: the file in its state directory (taking
    /// the run lock), or PostgreSQL (no lock: each unit is leased before it changes).
    ///
    /// # Errors
    /// Another run holds the file's lock, the store is unreachable, or the journal cannot be
    /// read.
    pub fn for_plan(plan: &Plan) -> Result<Ledger, JournalError> {
        match pg_config(plan)? {
            None => Ledger::open(&plan.state_dir),
            Some(config) => Ledger::over(Journal::over(Box::new(PgStore::open(config)?))?),
        }
    }

    fn over(journal: Journal<Entry>) -> Result<Ledger, JournalError> {
        let leases = journal.leases();
        let mut inner = Inner {
            journal,
            index: Index::default(),
        };
        inner.catch_up()?;
        Ok(Ledger {
            inner: Mutex::new(inner),
            after_record: |_| {},
            leases,
            owners: RwLock::new(HashMap::new()),
            unreadable: Mutex::new(None),
        })
    }

    /// Calls `hook` after each entry is durable (fault injection in crash tests).
    pub fn with_hook(mut self, hook: fn(&Entry)) -> Ledger {
        self.after_record = hook;
        self
    }

    /// The shared store's leases (`None` with the file journal).
    pub fn leases(&self) -> Option<&Leases> {
        self.leases.as_ref()
    }

    /// Names the site each DNS name belongs to: its DNS entries then need that site's lease.
    /// Kept only with leases: the file journal's lock covers every unit, and a platform's
    /// names are the largest thing it would hold.
    pub fn set_owners(&self, owners: impl IntoIterator<Item = (String, String)>) {
        if self.leases.is_none() {
            return;
        }
        self.owners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(
                owners
                    .into_iter()
                    .map(|(name, site)| (name.into_boxed_str(), site.into_boxed_str())),
            );
    }

    /// The unit an entry is about, for the lease it needs.
    fn unit_of(&self, entry: &Entry) -> Option<String> {
        match entry {
            Entry::Site { site, .. }
            | Entry::Probe { site, .. }
            | Entry::Unit { site, .. }
            | Entry::ForwardRoute { site, .. } => Some(site.clone()),
            Entry::Takeover { unit, .. } => Some(unit.clone()),
            Entry::Override {
                unit: UnitId::Site(site),
                ..
            } => Some(site.clone()),
            // A name's change belongs to its site, unless this controller changes the names of
            // many sites at once (TTLs) under the plan's DNS lease instead.
            Entry::Dns(d) => d.key().and_then(|k| {
                let site = self
                    .owners
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(k.name.as_str())
                    .map(|s| s.to_string())?;
                match &self.leases {
                    Some(l) if !l.holds(&site) && l.holds(DNS_UNIT) => Some(DNS_UNIT.to_string()),
                    _ => Some(site),
                }
            }),
            Entry::Override { .. }
            | Entry::Check { .. }
            | Entry::Run { .. }
            | Entry::RunEnd { .. }
            // A move's key belongs to the controller that made it, not to one site; so does a
            // host's forwarder and its whole-port route, which serve several sites, and a
            // replication connection.
            | Entry::DirectKey { .. }
            | Entry::Replication { .. }
            | Entry::ForwardPorts { .. }
            | Entry::Forwarder { .. } => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what other controllers appended since this one last read or wrote (nothing with
    /// the file journal). Called before deciding on anything others may have changed.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn refresh(&self) -> Result<(), JournalError> {
        if self.leases.is_none() {
            return Ok(());
        }
        self.lock().catch_up()
    }

    /// As `refresh`, for readers that cannot report an error: they decide on what they have.
    fn refreshed(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if self.leases.is_some() {
            let _ = inner.catch_up();
        }
        inner
    }

    /// Reads entries back for a reader that cannot report an error: a failure is kept, and
    /// refuses every later `record` (what was decided on a partial read changes nothing).
    fn read_back(&self, inner: &mut Inner, at: Vec<Pos>) -> Vec<Entry> {
        match inner.read_at(at) {
            Ok(entries) => entries,
            Err(e) => {
                let mut unreadable = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
                unreadable.get_or_insert_with(|| format!("reading entries back: {e}"));
                Vec::new()
            }
        }
    }

    /// Appends `entry` and returns once it is on disk. Entries from parallel sites share fsyncs:
    /// the write happens under the lock, the wait for the disk outside it.
    ///
    /// # Errors
    /// The entry is not durable: the change it announces must not be made.
    pub fn record(&self, entry: Entry) -> Result<(), JournalError> {
        if let Some(why) = self
            .unreadable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(JournalError::Store {
                store: self.lock().journal.describe(),
                message: why,
            });
        }
        let unit = self.unit_of(&entry);
        let (ticket, syncer) = {
            let mut inner = self.lock();
            let written = inner.journal.write_about(&entry, unit.as_deref())?;
            for (at, e) in &written.others {
                inner.index.add(*at, e);
            }
            for at in &written.ours {
                inner.index.add(*at, &entry);
            }
            (written.ticket, inner.journal.syncer())
        };
        syncer.sync_to(ticket)?;
        (self.after_record)(&entry);
        Ok(())
    }

    /// Every entry, read back from the store and collected: only for the saved plan's digest
    /// of the whole journal; other readers of everything use `for_each`, readers of one unit
    /// or kind `site_history`, `history`, `entries_of`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn entries(&self) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        self.for_each(|e| out.push(e))?;
        Ok(out)
    }

    /// Hands `visit` every entry, in order, one at a time, read from the store (reports).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn for_each(&self, mut visit: impl FnMut(Entry)) -> Result<(), JournalError> {
        let mut inner = self.refreshed();
        inner.journal.scan(0, &mut |_, e| visit(e))
    }

    /// The entries of the kinds `kinds`, in order, read back from the store.
    pub fn entries_of(&self, kinds: &[Kind]) -> Vec<Entry> {
        let mut inner = self.refreshed();
        let at: Vec<Pos> = kinds
            .iter()
            .filter_map(|k| inner.index.by_kind.get(k))
            .flatten()
            .copied()
            .collect();
        self.read_back(&mut inner, at)
    }

    /// What `host`'s forwarder serves, as journaled: each of its sites' last route entry, its
    /// last whole-port route entry and its last forwarder entry, in journal order.
    pub fn forward_of(&self, host: &str) -> Vec<Entry> {
        let mut inner = self.refreshed();
        let at: Vec<Pos> = inner.index.forward.get(host).map_or_else(Vec::new, |f| {
            f.routes
                .values()
                .copied()
                .chain(f.ports)
                .chain(f.forwarder)
                .collect()
        });
        self.read_back(&mut inner, at)
    }

    /// The old hosts the journal gave a route, a whole-port route or a forwarder, sorted.
    pub fn forward_hosts(&self) -> Vec<String> {
        let inner = self.refreshed();
        let mut hosts: Vec<String> = inner.index.forward.keys().map(|h| h.to_string()).collect();
        hosts.sort();
        hosts
    }

    /// The latest state of `site` (`discovered` when the journal never saw it). A site this
    /// controller holds the lease of is read as it knows it (only it writes there); any other
    /// is read from the store again.
    pub fn state(&self, site: &str) -> SiteState {
        let held = self.leases.as_ref().is_none_or(|l| l.holds(site));
        let inner = if held { self.lock() } else { self.refreshed() };
        inner
            .index
            .sites
            .get(site)
            .and_then(|s| s.state)
            .unwrap_or(SiteState::Discovered)
    }

    /// Every site's latest state.
    pub fn states(&self) -> HashMap<String, SiteState> {
        self.refreshed()
            .index
            .sites
            .iter()
            .filter_map(|(site, s)| Some((site.to_string(), s.state?)))
            .collect()
    }

    /// The DNS names whose last change may have left them on the new side (a switch, or a TTL
    /// restored on switched values), whether or not it was applied: only the server could say,
    /// and for deciding what may be live the cautious answer is yes.
    pub fn switched_names(&self) -> Vec<String> {
        let inner = self.refreshed();
        switched_names(
            inner
                .index
                .names
                .iter()
                .filter_map(|(n, i)| Some((&**n, i.last?))),
        )
    }

    /// The entries about `site`, in order, read back from the store.
    pub fn site_history(&self, site: &str) -> Vec<Entry> {
        let mut inner = self.refreshed();
        let at = inner
            .index
            .sites
            .get(site)
            .map(|s| s.at.clone())
            .unwrap_or_default();
        self.read_back(&mut inner, at)
    }

    /// Journals what the checks decided for `command`: every refusal and every override, each
    /// with its finding, before anything acts on them.
    ///
    /// # Errors
    /// An entry is not durable.
    pub fn record_verdict(
        &self,
        command: &str,
        verdict: &crate::check::Verdict,
    ) -> Result<(), JournalError> {
        let refused = verdict.refused.iter().map(|f| (f, CheckVerdict::Refused));
        let overridden = verdict.overridden.iter().map(|o| {
            let how = if o.by == "--allow" {
                CheckVerdict::Allowed
            } else {
                CheckVerdict::Forced
            };
            (&o.finding, how)
        });
        for (finding, verdict) in refused.chain(overridden) {
            self.record(Entry::Check {
                finding: finding.clone(),
                verdict,
                command: command.to_string(),
                at: now(),
            })?;
        }
        Ok(())
    }

    /// Starts a journaled run of `command`; its number goes to `end_run`.
    ///
    /// # Errors
    /// The entry is not durable.
    pub fn start_run(
        &self,
        command: RunCommand,
        overrides: Vec<String>,
    ) -> Result<u64, JournalError> {
        let run = self.refreshed().index.last_run + 1;
        // Controllers sharing the journal are each given a number of their own.
        let run = match &self.leases {
            Some(l) => l.next_run(run)?,
            None => run,
        };
        self.record(Entry::Run {
            run,
            command,
            argv: std::env::args().collect(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            user: std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() })),
            overrides,
            at: now(),
        })?;
        Ok(run)
    }

    /// Marks run `run` finished.
    ///
    /// # Errors
    /// The entry is not durable.
    pub fn end_run(&self, run: u64, ok: bool) -> Result<(), JournalError> {
        self.record(Entry::RunEnd { run, ok, at: now() })
    }

    /// The runs that started and never ended (a crash or a kill), oldest first, with their
    /// commands and the journal position where each started.
    pub fn unfinished_runs(&self) -> Vec<(u64, RunCommand, Pos)> {
        self.refreshed().index.open_runs.clone()
    }

    /// The sites that reached a verdict (confirmed, rolled back, failed, paused, pre-synced)
    /// at or after journal position `from`: what a run that started there already finished.
    /// Read from the store, one entry at a time.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn verdicts_since(
        &self,
        from: Pos,
    ) -> Result<std::collections::HashSet<String>, JournalError> {
        let mut out = std::collections::HashSet::new();
        let mut inner = self.refreshed();
        inner.journal.scan(from, &mut |_, e| {
            if let Entry::Site { site, state, .. } = e
                && state.is_verdict()
            {
                out.insert(site);
            }
        })?;
        Ok(out)
    }
}

impl RunCommand {
    /// Whether `resume` finishes this command when it was interrupted (the others are
    /// journaled for the record: a `dns` step is finished by running it again, since what
    /// it changed is read back from the servers).
    pub fn resumable(&self) -> bool {
        matches!(
            self,
            RunCommand::Sync { .. } | RunCommand::Cutover { .. } | RunCommand::Rollback { .. }
        )
    }

    /// The verb as an operator types it.
    pub fn label(&self) -> String {
        match self {
            RunCommand::Sync { .. } => "sync".into(),
            RunCommand::Cutover { .. } => "cutover".into(),
            RunCommand::Rollback { .. } => "rollback".into(),
            RunCommand::Resume => "resume".into(),
            RunCommand::Run => "run".into(),
            RunCommand::Dns { step } => format!("dns {step}"),
            RunCommand::Other { name } => name.clone(),
        }
    }
}

impl DnsLog for Ledger {
    fn record(&self, event: DnsEvent) -> Result<(), UnitError> {
        Ledger::record(self, Entry::Dns(event)).map_err(|e| UnitError::io(e.to_string()))
    }

    fn history(&self, names: &[String]) -> Vec<DnsEvent> {
        let mut inner = self.refreshed();
        let index = &inner.index;
        let at: Vec<Pos> = if names.is_empty() {
            index
                .names
                .values()
                .flat_map(|n| n.at.iter())
                .chain(index.zone_wide.iter())
                .copied()
                .collect()
        } else {
            names
                .iter()
                .filter_map(|n| index.names.get(n.as_str()))
                .flat_map(|n| n.at.iter())
                .chain(index.zone_wide.iter())
                .copied()
                .collect()
        };
        self.read_back(&mut inner, at)
            .into_iter()
            .filter_map(|e| match e {
                Entry::Dns(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

fn switched_names<'n>(
    last: impl Iterator<Item = (&'n str, crate::dns::provider::DnsPhase)>,
) -> Vec<String> {
    use crate::dns::provider::DnsPhase;
    let mut out: Vec<String> = last
        .filter(|(_, p)| matches!(p, DnsPhase::Switch | DnsPhase::RestoreTtl))
        .map(|(n, _)| n.to_string())
        .collect();
    out.sort();
    out
}

/// As `Ledger::switched_names`, from entries read without the lock.
pub fn switched_names_of(entries: &[Entry]) -> Vec<String> {
    let mut last: HashMap<String, crate::dns::provider::DnsPhase> = HashMap::new();
    for e in entries {
        if let Entry::Dns(DnsEvent::DnsIntent { key, phase, .. }) = e {
            last.insert(key.name.clone(), *phase);
        }
    }
    switched_names(last.iter().map(|(n, p)| (n.as_str(), *p)))
}

/// The DNS events of a journal read without its lock (`status`, `dns verify`).
pub fn dns_events(entries: &[Entry]) -> Vec<DnsEvent> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Dns(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Reads a plan's journal without taking the lock or any lease (for `status` while a run goes
/// on, from any controller).
///
/// # Errors
/// The file is unreadable or corrupt before its last line; the store is unreachable.
pub fn read(plan: &Plan) -> Result<Vec<Entry>, JournalError> {
    let mut out = Vec::new();
    visit(plan, |e| out.push(e))?;
    Ok(out)
}

/// Hands `visit` every entry of a plan's journal, in order, one at a time, without taking the
/// lock or any lease (`status`, `report`: memory bounded by one entry, not the journal).
///
/// # Errors
/// The file is unreadable or corrupt before its last line; the store is unreachable.
pub fn visit(plan: &Plan, mut visit: impl FnMut(Entry)) -> Result<(), JournalError> {
    match pg_config(plan)? {
        None => {
            crate::journal::visit_entries(&plan.state_dir.join("journal.jsonl"), &mut |_, e| {
                visit(e)
            })
        }
        Some(config) => crate::journal::postgres::visit_lines(&config, &mut |_, line| {
            visit(serde_json::from_str(line).map_err(|e| e.to_string())?);
            Ok(())
        }),
    }
}

/// The DNS events of a plan's journal, read without its lock (`dns verify`, the dry run).
///
/// # Errors
/// As `visit`.
pub fn dns_history(plan: &Plan) -> Result<Vec<DnsEvent>, JournalError> {
    let mut out = Vec::new();
    visit(plan, |e| {
        if let Entry::Dns(d) = e {
            out.push(d);
        }
    })?;
    Ok(out)
}

/// Reads the journal file in `state_dir` without taking the lock.
///
/// # Errors
/// The file is unreadable or corrupt before its last line.
pub fn read_dir(state_dir: &Path) -> Result<Vec<Entry>, JournalError> {
    crate::journal::read_entries(&state_dir.join("journal.jsonl"))
}

/// The shared store's settings, its password read now (`None` for the file journal).
///
/// # Errors
/// The password cannot be read (invalid input: nothing was done).
pub fn pg_config(plan: &Plan) -> Result<Option<PgConfig>, JournalError> {
    let StateStore::Postgres(pg) = &plan.state else {
        return Ok(None);
    };
    let password = match &pg.password {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| JournalError::Invalid(format!("`state` password: {e}")))?
                .expose()
                .to_string(),
        ),
        None => None,
    };
    let me = crate::journal::LockHolder::this_process();
    Ok(Some(PgConfig {
        conninfo: pg.conninfo.clone(),
        base_dir: plan.base_dir.clone(),
        password,
        plan: plan.name.clone(),
        lease: pg.lease,
        holder_info: format!(
            "`{}` on {} (PID {}, started {})",
            me.command, me.host, me.pid, me.started
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::provider::{DnsPhase, RrKey, RrState};

    fn key(name: &str) -> RrKey {
        RrKey {
            zone: "example.test".into(),
            name: name.into(),
            rtype: "A".into(),
        }
    }

    #[test]
    fn dns_entries_keep_their_kind_tags_in_the_journal() {
        let e = Entry::Dns(DnsEvent::DnsApplied {
            key: key("www.example.test."),
            phase: DnsPhase::Switch,
            at: 3,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.starts_with("{\"kind\":\"dns_applied\""), "{line}");
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
        let site = Entry::Site {
            site: "a".into(),
            state: SiteState::Frozen,
            at: 1,
            detail: None,
            bytes: None,
            millis: None,
            at_ms: None,
        };
        let line = serde_json::to_string(&site).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), site);
    }

    #[test]
    fn a_names_history_is_read_from_its_index_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let state = |ttl| RrState {
            ttl,
            values: vec!["192.0.2.1".into()],
        };
        {
            let l = Ledger::open(dir.path()).unwrap();
            for i in 0..50 {
                DnsLog::record(
                    &l,
                    DnsEvent::DnsIntent {
                        key: key(&format!("s{i}.example.test.")),
                        phase: DnsPhase::Switch,
                        from: state(60),
                        to: state(60),
                        at: 1,
                    },
                )
                .unwrap();
            }
            DnsLog::record(
                &l,
                DnsEvent::DnsSafeAfter {
                    zone: "example.test".into(),
                    safe_after: 9,
                },
            )
            .unwrap();
        }
        let l = Ledger::open(dir.path()).unwrap();
        let h = l.history(&["s7.example.test.".into()]);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[0].key().unwrap().name, "s7.example.test.");
        assert!(matches!(h[1], DnsEvent::DnsSafeAfter { .. }));
    }

    #[test]
    fn a_hosts_forwarding_entries_are_its_sites_last_routes_and_its_last_forwarder() {
        let dir = tempfile::tempdir().unwrap();
        let route = |site: &str, host: &str, routed: bool| Entry::ForwardRoute {
            site: site.into(),
            host: host.into(),
            names: vec![format!("{site}.test")],
            to: "192.0.2.9".into(),
            until: 100,
            margin_secs: 0,
            routed,
            at: 1,
        };
        let forwarder = |host: &str, running: bool| Entry::Forwarder {
            host: host.into(),
            pid: Some(7),
            start_ticks: Some(8),
            running,
            detail: None,
            at: 1,
        };
        {
            let l = Ledger::open(dir.path()).unwrap();
            for e in [
                route("a", "old1", true),
                route("b", "old2", true),
                forwarder("old1", true),
                route("c", "old1", true),
                route("a", "old1", false),
                forwarder("old1", false),
            ] {
                l.record(e).unwrap();
            }
        }
        // Reopened: the index is rebuilt from the file, as another controller would.
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(
            l.forward_of("old1"),
            [
                route("c", "old1", true),
                route("a", "old1", false),
                forwarder("old1", false)
            ]
        );
        assert_eq!(l.forward_of("old2"), [route("b", "old2", true)]);
        assert!(l.forward_of("old3").is_empty());
        assert_eq!(l.forward_hosts(), ["old1", "old2"]);
    }

    #[test]
    fn runs_without_an_end_are_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let a = l
            .start_run(
                RunCommand::Cutover {
                    selection: Selected::All,
                },
                vec![],
            )
            .unwrap();
        let b = l
            .start_run(RunCommand::Rollback { only: vec![] }, vec![])
            .unwrap();
        l.end_run(a, true).unwrap();
        let open = l.unfinished_runs();
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            (open[0].0, &open[0].1),
            (b, &RunCommand::Rollback { only: vec![] })
        );
        // Its position is the second line's, read back from the file.
        let first = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(open[0].2, first.find('\n').unwrap() as u64 + 1);
        // Reopened, the index is rebuilt from the store alike.
        drop(l);
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.unfinished_runs(), open);
        assert_eq!(l.start_run(RunCommand::Resume, vec![]).unwrap(), b + 1);
    }

    #[test]
    fn names_whose_last_change_may_have_switched_them() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let st = |v: &str| RrState {
            ttl: 60,
            values: vec![v.into()],
        };
        let intent = |name: &str, phase| {
            DnsLog::record(
                &l,
                DnsEvent::DnsIntent {
                    key: key(name),
                    phase,
                    from: st("192.0.2.1"),
                    to: st("198.51.100.1"),
                    at: 1,
                },
            )
            .unwrap()
        };
        intent("mx.example.test.", DnsPhase::LowerTtl);
        intent("mx.example.test.", DnsPhase::Switch);
        intent("www.example.test.", DnsPhase::Switch);
        intent("www.example.test.", DnsPhase::Rollback);
        // No outcome for mx's switch: it may have happened, so it counts.
        assert_eq!(l.switched_names(), vec!["mx.example.test.".to_string()]);
        assert_eq!(switched_names_of(&l.entries().unwrap()), l.switched_names());
    }
}
