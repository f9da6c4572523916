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
use crate::journal::{Journal, JournalError, now};
use crate::plan::{Plan, StateStore};
use crate::unit::{UnitError, UnitId};

/// The lease under which a shared journal's controllers change the TTLs of every site's
/// records at once (lowering them, restoring them).
pub const DNS_UNIT: &str = "(dns)";

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

/// Entry positions by what they are about.
#[derive(Default)]
struct Index {
    by_site: HashMap<String, Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    zone_wide: Vec<usize>,
    states: HashMap<String, SiteState>,
    /// Per DNS name, the phase of its last change intent.
    dns_last: HashMap<String, crate::dns::provider::DnsPhase>,
}

impl Index {
    fn add(&mut self, at: usize, e: &Entry) {
        match e {
            Entry::Site { site, state, .. } => {
                self.by_site.entry(site.clone()).or_default().push(at);
                self.states.insert(site.clone(), *state);
            }
            Entry::Probe { site, .. }
            | Entry::Unit { site, .. }
            | Entry::ForwardRoute { site, .. } => {
                self.by_site.entry(site.clone()).or_default().push(at);
            }
            Entry::Dns(d) => {
                if let DnsEvent::DnsIntent { key, phase, .. } = d {
                    self.dns_last.insert(key.name.clone(), *phase);
                }
                match d.key() {
                    Some(k) => self.by_name.entry(k.name.clone()).or_default().push(at),
                    None => self.zone_wide.push(at),
                }
            }
            Entry::Takeover { unit, .. } => {
                self.by_site.entry(unit.clone()).or_default().push(at);
            }
            Entry::Override { .. }
            | Entry::Check { .. }
            | Entry::Run { .. }
            | Entry::RunEnd { .. }
            | Entry::DirectKey { .. }
            | Entry::Replication { .. }
            | Entry::ForwardPorts { .. }
            | Entry::Forwarder { .. } => {}
        }
    }
}

struct Inner {
    journal: Journal<Entry>,
    index: Index,
}

impl Inner {
    /// Indexes the entries the journal took in since it held `from` of them.
    fn index_from(&mut self, from: usize) {
        let Inner { journal, index } = self;
        for (i, e) in journal.all().iter().enumerate().skip(from) {
            index.add(i, e);
        }
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
    owners: RwLock<HashMap<String, String>>,
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
        inner.index_from(0);
        Ok(Ledger {
            inner: Mutex::new(inner),
            after_record: |_| {},
            leases,
            owners: RwLock::new(HashMap::new()),
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
    pub fn set_owners(&self, owners: impl IntoIterator<Item = (String, String)>) {
        self.owners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(owners);
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
                    .get(&k.name)
                    .cloned()?;
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
        let mut inner = self.lock();
        let from = inner.journal.all().len();
        inner.journal.refresh()?;
        inner.index_from(from);
        Ok(())
    }

    /// As `refresh`, for readers that cannot report an error: they decide on what they have.
    fn refreshed(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if self.leases.is_some() {
            let from = inner.journal.all().len();
            if inner.journal.refresh().is_ok() {
                inner.index_from(from);
            }
        }
        inner
    }

    /// Appends `entry` and returns once it is on disk. Entries from parallel sites share fsyncs:
    /// the write happens under the lock, the wait for the disk outside it.
    ///
    /// # Errors
    /// The entry is not durable: the change it announces must not be made.
    pub fn record(&self, entry: Entry) -> Result<(), JournalError> {
        let unit = self.unit_of(&entry);
        let (seq, syncer) = {
            let mut inner = self.lock();
            let from = inner.journal.all().len();
            let seq = inner.journal.write_about(&entry, unit.as_deref())?;
            inner.index_from(from);
            (seq, inner.journal.syncer())
        };
        syncer.sync_to(seq)?;
        (self.after_record)(&entry);
        Ok(())
    }

    /// A copy of every entry (reports); prefer the per-unit readers in hot paths.
    pub fn entries(&self) -> Vec<Entry> {
        self.refreshed().journal.all().to_vec()
    }

    /// The latest state of `site` (`discovered` when the journal never saw it). A site this
    /// controller holds the lease of is read as it knows it (only it writes there); any other
    /// is read from the store again.
    pub fn state(&self, site: &str) -> SiteState {
        let held = self.leases.as_ref().is_none_or(|l| l.holds(site));
        let inner = if held { self.lock() } else { self.refreshed() };
        inner
            .index
            .states
            .get(site)
            .copied()
            .unwrap_or(SiteState::Discovered)
    }

    /// Every site's latest state.
    pub fn states(&self) -> HashMap<String, SiteState> {
        self.refreshed().index.states.clone()
    }

    /// The DNS names whose last change may have left them on the new side (a switch, or a TTL
    /// restored on switched values), whether or not it was applied: only the server could say,
    /// and for deciding what may be live the cautious answer is yes.
    pub fn switched_names(&self) -> Vec<String> {
        switched_names(self.refreshed().index.dns_last.iter().map(|(n, p)| (n, *p)))
    }

    /// The entries about `site`, in order.
    pub fn site_history(&self, site: &str) -> Vec<Entry> {
        let inner = self.refreshed();
        let all = inner.journal.all();
        inner
            .index
            .by_site
            .get(site)
            .map(|v| v.iter().map(|i| all[*i].clone()).collect())
            .unwrap_or_default()
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
        let run = {
            let inner = self.refreshed();
            inner
                .journal
                .all()
                .iter()
                .filter_map(|e| match e {
                    Entry::Run { run, .. } => Some(*run),
                    _ => None,
                })
                .max()
                .unwrap_or(0)
                + 1
        };
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
    pub fn unfinished_runs(&self) -> Vec<(u64, RunCommand, usize)> {
        unfinished_runs(self.refreshed().journal.all())
    }

    /// The sites that reached a verdict (confirmed, rolled back, failed, paused, pre-synced)
    /// at or after journal position `from`: what a run that started there already finished.
    pub fn verdicts_since(&self, from: usize) -> std::collections::HashSet<String> {
        let inner = self.refreshed();
        inner.journal.all()[from.min(inner.journal.all().len())..]
            .iter()
            .filter_map(|e| match e {
                Entry::Site { site, state, .. } if state.is_verdict() => Some(site.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The runs of `entries` that have no `run_end`, oldest first, with their start positions.
pub fn unfinished_runs(entries: &[Entry]) -> Vec<(u64, RunCommand, usize)> {
    let mut open: Vec<(u64, RunCommand, usize)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Run { run, command, .. } if command.resumable() => {
                open.push((*run, command.clone(), i))
            }
            Entry::RunEnd { run, .. } => open.retain(|(r, _, _)| r != run),
            _ => {}
        }
    }
    open
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
        let inner = self.refreshed();
        let all = inner.journal.all();
        let mut at: Vec<usize> = if names.is_empty() {
            inner
                .index
                .by_name
                .values()
                .flatten()
                .copied()
                .chain(inner.index.zone_wide.iter().copied())
                .collect()
        } else {
            names
                .iter()
                .filter_map(|n| inner.index.by_name.get(n))
                .flatten()
                .copied()
                .chain(inner.index.zone_wide.iter().copied())
                .collect()
        };
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .filter_map(|i| match &all[i] {
                Entry::Dns(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

fn switched_names<'n>(
    last: impl Iterator<Item = (&'n String, crate::dns::provider::DnsPhase)>,
) -> Vec<String> {
    use crate::dns::provider::DnsPhase;
    let mut out: Vec<String> = last
        .filter(|(_, p)| matches!(p, DnsPhase::Switch | DnsPhase::RestoreTtl))
        .map(|(n, _)| n.clone())
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
    switched_names(last.iter().map(|(n, p)| (n, *p)))
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
    match pg_config(plan)? {
        None => read_dir(&plan.state_dir),
        Some(config) => crate::journal::postgres::read_lines(&config)?
            .into_iter()
            .map(|(seq, line)| {
                serde_json::from_str(&line).map_err(|e| JournalError::Corrupt {
                    path: format!("PostgreSQL `{}`", config.conninfo).into(),
                    line: seq as usize,
                    message: e.to_string(),
                })
            })
            .collect(),
    }
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
        assert_eq!(
            l.unfinished_runs(),
            vec![(b, RunCommand::Rollback { only: vec![] }, 1)]
        );
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
        assert_eq!(switched_names_of(&l.entries()), l.switched_names());
    }
}
