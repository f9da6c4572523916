//! The migration lifecycle over the engines: pre-syncs, then per batch freeze → final sync →
//! verify → DNS switch → probes → confirm, or roll back. Every step is journaled before its
//! side effect, so `resume` finishes and `rollback` reverts after a crash at any instant.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::connections::Connections;
use super::databases::{DbResult, one as move_database};
use super::folded::{DATABASES, FILES, MAIL, PhaseFold};
use super::inventory::expand_sites;
use super::ledger::{Entry, Ledger, RunCommand, Selected};
use super::mail::{MailStep, run as run_mail};
use super::probe::{ProbeResult, ProbeRound, ProbeSpec, banner, parse_banner_url, probe};
use super::state::{ResumeStep, SiteState, SiteStatus};
use crate::check::{Allowed, Check, Refused, Verdict};
use crate::dns::cutover::{self, ZonePlan};
use crate::dns::provider::{DnsEvent, DnsLog, RrKey, RrState};
use crate::event::{Event, Observer};
use crate::journal::{JournalError, now};
use crate::plan::raw::OnFailure;
use crate::plan::template::Template;
use crate::plan::{Loaded, Site, SiteDatabase};
use crate::report::plural;
use crate::sync::{Endpoint, sync};
use crate::transport::ExecRequest;
use crate::unit::UnitId;
use hickory_proto::rr::RecordType;

mod deferred;
mod interrupt;
mod owed;
mod preview;
mod replicate;
mod saved;
mod worker;
pub use interrupt::{Interrupt, Interrupted, StopSummary, signal_name};
pub use preview::{Preview, PreviewSite};
pub use worker::{Worked, WorkerVerb};

/// The journal's name for units that belong to no site (databases no site names, mail).
pub const PLATFORM: &str = "(platform)";

pub use super::ledger::DNS_UNIT;

/// The journal's step of the VHFFS panel's database, moved once after the last site.
pub const PANEL_STEP: &str = "final sync (the panel, last)";

/// Why a lifecycle command could not run (per-site failures are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Bad arguments or a plan that expands badly (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// Refused by a named safety check not allowed (exit 3).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// A host or server needed before anything starts is unreachable (exit 1).
    #[error("{0}")]
    Unreachable(String),
}

/// What a command did to one site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteOutcome {
    pub site: String,
    pub state: SiteState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether the command put the site back on purpose (`rollback`), so rolled back is a
    /// success for it.
    #[serde(skip)]
    pub rollback_asked: bool,
    /// What kind of failure the command met for this site, when the state alone does not tell
    /// (a refusal as unsafe: exit 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::unit::ErrorKind>,
    /// What the operator's stop (Ctrl-C) did to the site, when the command was stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
}

impl SiteOutcome {
    /// Whether the site ended where the command meant it to.
    pub fn ok(&self) -> bool {
        if self.error.is_some() || self.interrupted.is_some() {
            return false;
        }
        match self.state {
            SiteState::RolledBack => self.rollback_asked,
            SiteState::Failed | SiteState::Paused | SiteState::RollingBack => false,
            _ => true,
        }
    }
}

const ROLLBACK_ASKED: &str = "rollback requested";

/// Which sites a cutover takes.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every site, batch after batch.
    All,
    /// Batch N (1-based) of `cutover.batch` sites in plan order.
    Batch(usize),
    /// These sites.
    Only(Vec<String>),
}

impl From<&Selection> for Selected {
    fn from(s: &Selection) -> Selected {
        match s {
            Selection::All => Selected::All,
            Selection::Batch(n) => Selected::Batch(*n),
            Selection::Only(v) => Selected::Only(v.clone()),
        }
    }
}

impl From<&Selected> for Selection {
    fn from(s: &Selected) -> Selection {
        match s {
            Selected::All => Selection::All,
            Selected::Batch(n) => Selection::Batch(*n),
            Selected::Only(v) => Selection::Only(v.clone()),
        }
    }
}

/// One plan's migration: its sites, its journal (held locked), its hosts.
pub struct Migration<'a> {
    /// The plan as the inventory's verdicts restrict it (`Inventory::restricted`): its
    /// databases and mail never include what the inventory leaves out.
    plan: crate::plan::Plan,
    connections: &'a Connections,
    pub sites: Vec<Site>,
    ledger: Ledger,
    observer: &'a dyn Observer,
    /// The engines' bytes, one phase per kind of unit over every site at work.
    engines: PhaseFold<'a>,
    /// The safety checks the operator let through (`--allow NAME`, `--force`).
    checks: Allowed,
    /// Zone plans read once per command: the switch of each site is cut from them.
    zone_plans: Mutex<Option<Vec<ZonePlan>>>,
    /// Live units the operator allowed this run to overwrite at the target (`--allow-live`).
    allowed_live: Vec<UnitId>,
    /// The operator's stop (Ctrl-C), read between steps, and what it did to each site.
    interrupt: Option<&'a Interrupt>,
    interrupted: Mutex<BTreeMap<String, Interrupted>>,
    /// What the panel expanded to, when the plan reads one (its users' and groups' ids).
    panel: Option<crate::panel::PanelInventory>,
    /// `mode: replicate`: the snapshots this run's pre-sync dumped (rule, database, position).
    snapshots: Mutex<Vec<(usize, String, crate::db::replication::BinlogPosition)>>,
    /// Held while a replication connection is read or changed.
    replication_lock: Mutex<()>,
    /// Per `mode: replicate` rule, whether its servers can replicate (checked once per run).
    replication_checked: Mutex<BTreeMap<usize, bool>>,
    /// Replicated databases checked lightly in their freeze, with the target's snapshot their
    /// rows are compared in after the switch (`deferred`).
    held: Mutex<Vec<deferred::HeldDb>>,
    /// Row comparisons a crash left owed that this run already tried to settle (`owed`).
    settle_tried: owed::Tried,
    /// Set by a worker's cutover: the worker that freezes a site keeps its lease until it
    /// switches it (`Leases::finish_kept`), so a snapshot held in the freeze is still here.
    keeps_sites_to_switch: std::sync::atomic::AtomicBool,
    /// Every old host's sites, for the forwarders (built once, when a plan forwards).
    forward_hosts: std::sync::OnceLock<BTreeMap<String, Vec<String>>>,
}

type Stop = Result<(), String>;

impl<'a> Migration<'a> {
    /// Expands the plan's sites and takes the plan's run lock.
    ///
    /// # Errors
    /// The inventory has errors or a host is unreachable; another run holds the lock.
    pub fn open(
        loaded: &'a Loaded,
        connections: &'a Connections,
        observer: &'a dyn Observer,
        checks: Allowed,
    ) -> Result<Migration<'a>, LifecycleError> {
        let ledger = Ledger::for_plan(&loaded.plan)?.with_hook(fault_point);
        let inventory = expand_sites(loaded, connections);
        // With a shared journal every entry about a site needs its lease, DNS ones included.
        ledger.set_owners(
            inventory
                .sites
                .iter()
                .flat_map(|s| names_of(s).into_iter().map(|n| (n, s.name.clone()))),
        );
        if let Some(l) = ledger.leases() {
            l.require();
        }
        let plan = inventory.restricted(&loaded.plan);
        if let Some(i) = inventory.unreachable.first() {
            return Err(LifecycleError::Unreachable(format!(
                "expanding the sites: {}",
                i.message
            )));
        }
        if let Some(i) = inventory.issues.iter().find(|i| i.is_error()) {
            return Err(LifecycleError::Invalid(format!(
                "{}: {}",
                i.path, i.message
            )));
        }
        for site in &inventory.sites {
            for db in &site.databases {
                if super::databases::rule_for(&plan, db).is_none() {
                    return Err(LifecycleError::Invalid(format!(
                        "site `{}` names {} database `{db}`, which no `databases:` rule{} selects",
                        site.name,
                        db.engine
                            .map(|e| super::dry_run::engine_name(e).to_string())
                            .unwrap_or_default(),
                        if db.engine.is_some() {
                            " of its engine"
                        } else {
                            ""
                        }
                    )));
                }
            }
        }
        Ok(Migration {
            plan,
            connections,
            sites: inventory.sites,
            ledger,
            allowed_live: Vec::new(),
            observer,
            engines: PhaseFold::new(observer),
            checks,
            zone_plans: Mutex::new(None),
            interrupt: None,
            interrupted: Mutex::new(BTreeMap::new()),
            // Its sites are `sites` already: a platform's list is held once.
            panel: inventory.panel.map(|mut p| {
                p.sites = Vec::new();
                p
            }),
            snapshots: Mutex::new(Vec::new()),
            replication_lock: Mutex::new(()),
            replication_checked: Mutex::new(BTreeMap::new()),
            held: Mutex::new(Vec::new()),
            settle_tried: Default::default(),
            keeps_sites_to_switch: std::sync::atomic::AtomicBool::new(false),
            forward_hosts: std::sync::OnceLock::new(),
        })
    }

    /// Lets the operator stop this run's cutover between steps (see `Interrupt`).
    pub fn interruptible(mut self, interrupt: &'a Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// Lets this run overwrite these live units at the target (each use is journaled).
    pub fn allow_live(mut self, units: Vec<UnitId>) -> Self {
        self.allowed_live = units;
        self
    }

    /// Where every site stands (sites the journal never saw are `discovered`).
    ///
    /// # Errors
    /// The journal cannot be read.
    pub fn statuses(&self) -> Result<BTreeMap<String, SiteStatus>, LifecycleError> {
        let mut folding = super::state::Fold::default();
        self.ledger.for_each(|e| folding.add(&e))?;
        let mut all = folding.finish();
        for s in &self.sites {
            all.entry(s.name.clone()).or_default();
        }
        Ok(all)
    }

    /// Which units may be live on the new side now.
    fn live(&self) -> super::guard::Live {
        super::guard::Live::new(self.ledger.states().into_iter().collect(), &self.sites)
            .with_switched_names(self.ledger.switched_names(), &self.sites)
    }

    fn state_of(&self, site: &str) -> SiteState {
        self.ledger.state(site)
    }

    fn record(&self, entry: &Entry) -> Stop {
        self.ledger.record(entry.clone()).map_err(|e| e.to_string())
    }

    fn set(&self, site: &str, state: SiteState, detail: Option<String>) -> Stop {
        self.set_measured(site, state, detail, None, None)
    }

    fn set_measured(
        &self,
        site: &str,
        state: SiteState,
        detail: Option<String>,
        bytes: Option<u64>,
        millis: Option<u64>,
    ) -> Stop {
        // Every state change goes through the transition function: a step that would skip a
        // guard (a switch before verification) is a bug, refused before it is journaled.
        let state = self.state_of(site).next(state).map_err(|e| e.to_string())?;
        let at_ms = crate::journal::now_ms();
        self.record(&Entry::Site {
            site: site.to_string(),
            state,
            at: at_ms / 1000,
            detail,
            bytes,
            millis,
            at_ms: Some(at_ms),
        })
    }

    /// The sites named by `only` (all when empty).
    ///
    /// # Errors
    /// A name that is not a site of the plan.
    pub fn select(&self, only: &[String]) -> Result<Vec<&Site>, LifecycleError> {
        for name in only {
            if !self.sites.iter().any(|s| &s.name == name) {
                return Err(LifecycleError::Invalid(format!(
                    "`{name}` is not a site of the plan (see `transhumance plan`)"
                )));
            }
        }
        Ok(self
            .sites
            .iter()
            .filter(|s| only.is_empty() || only.contains(&s.name))
            .collect())
    }

    /// The plan's batches, in order.
    pub fn batches(&self) -> Vec<Vec<&Site>> {
        let size = self.plan.cutover.batch.max(1);
        self.sites
            .chunks(size)
            .map(|c| c.iter().collect())
            .collect()
    }

    /// Runs `work` on every site, `jobs` at a time, in one phase of the progress display (the
    /// engines under it report their bytes through `engines`, folded: one bar per site phase
    /// would drown the display).
    fn each<'s>(
        &self,
        phase: &str,
        sites: &[&'s Site],
        work: impl Fn(&'s Site) -> SiteOutcome + Sync,
    ) -> Vec<SiteOutcome> {
        self.observer.on_event(&Event::PhaseStarted {
            phase: phase.into(),
            total: sites.len() as u64,
        });
        let next = AtomicUsize::new(0);
        let out = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.plan.defaults.jobs.clamp(1, sites.len().max(1)) {
                s.spawn(|| {
                    while let Some(site) = sites.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let o = self.leased(&site.name, || work(site)).unwrap_or_else(|e| {
                            SiteOutcome {
                                error: Some(crate::unit::ErrorKind::Conflict),
                                ..self.outcome(site, Some(e))
                            }
                        });
                        let event = if o.ok() {
                            Event::UnitDone {
                                phase: phase.into(),
                                unit: o.site.clone(),
                            }
                        } else {
                            Event::UnitFailed {
                                phase: phase.into(),
                                unit: o.site.clone(),
                                error: o.detail.clone().unwrap_or_default(),
                            }
                        };
                        self.observer.on_event(&event);
                        out.lock().unwrap_or_else(|p| p.into_inner()).push(o);
                    }
                });
            }
        });
        self.observer.on_event(&Event::PhaseFinished {
            phase: phase.into(),
        });
        let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
    }

    /// Runs `work` holding `unit`'s lease when the journal is shared (the file journal's lock
    /// covers every unit). A lease another controller holds is waited for as long as it could
    /// still expire (a killed controller's), then the unit is left alone (`Err`). A lease taken
    /// from an expired holder is journaled; the journal is read again before `work` decides.
    fn leased<T>(&self, unit: &str, work: impl FnOnce() -> T) -> Result<T, String> {
        let Some(leases) = self.ledger.leases() else {
            return Ok(work());
        };
        let patience = Instant::now() + leases.lease() * 2;
        let taken = loop {
            match leases.try_take(unit).map_err(|e| e.to_string())? {
                Ok(t) => break t,
                Err(held) if Instant::now() >= patience => {
                    return Err(format!(
                        "leased by {} (for {} ms more): left alone",
                        held.holder, held.expires_in_ms
                    ));
                }
                Err(held) => std::thread::sleep(std::time::Duration::from_millis(
                    held.expires_in_ms.clamp(50, 500) as u64,
                )),
            }
        };
        /// Gives the hold back however `work` ends.
        struct Hold<'l>(&'l crate::journal::postgres::Leases, &'l str);
        impl Drop for Hold<'_> {
            fn drop(&mut self) {
                let _ = self.0.release(self.1);
            }
        }
        let _hold = Hold(leases, unit);
        self.took(&taken)?;
        Ok(work())
    }

    /// Journals a lease taken from an expired holder, and reads the journal again: what the
    /// last holder wrote decides what comes next.
    fn took(&self, taken: &crate::journal::postgres::Taken) -> Stop {
        if let (Some(t), Some(leases)) = (&taken.takeover, self.ledger.leases()) {
            self.record(&Entry::Takeover {
                unit: taken.unit.clone(),
                by: leases.holder_info().to_string(),
                from: t.from.clone(),
                expired_ms: t.expired_ms,
                taken_ms: t.taken_ms,
                at: now(),
            })?;
        }
        self.ledger.refresh().map_err(|e| e.to_string())
    }

    /// The outcome of a step that could not go on (`error`): never read as a success, even
    /// when the site's state is one a command may end in (a cutover refused for a site an
    /// interrupted sync left `syncing` stays there, and the command exits 1).
    fn stopped_at(&self, site: &Site, error: String) -> SiteOutcome {
        let o = self.outcome(site, Some(error));
        if o.ok() {
            SiteOutcome {
                error: Some(crate::unit::ErrorKind::Conflict),
                ..o
            }
        } else {
            o
        }
    }

    fn outcome(&self, site: &Site, detail: Option<String>) -> SiteOutcome {
        SiteOutcome {
            site: site.name.clone(),
            state: self.state_of(&site.name),
            detail,
            rollback_asked: false,
            error: None,
            interrupted: None,
        }
    }

    // ---------------------------------------------------------------- pre-sync

    /// Pre-syncs the sites (repeatable while the sources still serve), their databases, and
    /// the units that belong to no site.
    pub fn sync(&self, only: &[String]) -> Result<Vec<SiteOutcome>, LifecycleError> {
        let sites = self.select(only)?;
        let needs = if only.is_empty() {
            super::secrets::Needs {
                dns: false,
                ..super::secrets::Needs::all(&self.plan)
            }
        } else {
            // The named sites' own databases only: the shared units wait for a full sync.
            let mut databases: Vec<&crate::plan::DatabaseRule> = Vec::new();
            for db in sites.iter().flat_map(|s| &s.databases) {
                if let Some(rule) = super::databases::rule_for(&self.plan, db)
                    && !databases.iter().any(|r| r.index == rule.index)
                {
                    databases.push(rule);
                }
            }
            super::secrets::Needs {
                databases,
                mail: false,
                dns: false,
            }
        };
        self.check_secrets(&needs)?;
        self.journaled(
            RunCommand::Sync {
                only: only.to_vec(),
            },
            || self.sync_sites(only),
        )
    }

    fn sync_sites(&self, only: &[String]) -> Result<Vec<SiteOutcome>, LifecycleError> {
        let sites = self.select(only)?;
        if only.is_empty() {
            // Replicated databases are dumped again: their connections go first.
            let failures = self.stop_replication();
            self.replication_failures("pre-sync", failures)?;
        }
        let out = self.each("pre-sync", &sites, |site| {
            self.sync_site(site, !only.is_empty())
        });
        if only.is_empty() {
            let _ = self.leased(PLATFORM, || self.sync_platform());
            let failures = self.start_replication();
            self.replication_failures("pre-sync", failures)?;
        }
        self.engines.finish();
        Ok(out)
    }

    /// The pre-sync of one site (`named`: the operator named it, so a live one is refused).
    fn sync_site(&self, site: &Site, named: bool) -> SiteOutcome {
        let state = self.state_of(&site.name);
        if state.may_have_switched() {
            return self.sync_live_site(site, named);
        }
        if state.in_flight() {
            return self.outcome(
                site,
                Some(format!(
                    "{}: a pre-sync would be pointless now",
                    state.label()
                )),
            );
        }
        let refused = AtomicBool::new(false);
        let result = self
            .set(&site.name, SiteState::Syncing, None)
            .and_then(|()| self.move_site_watched(site, false, &refused));
        match result {
            Ok((bytes, millis)) => {
                let done = self.set_measured(
                    &site.name,
                    SiteState::PreSynced,
                    None,
                    Some(bytes),
                    Some(millis),
                );
                self.outcome(site, done.err())
            }
            Err(e) => {
                let _ = self.set(&site.name, SiteState::Failed, Some(e.clone()));
                let refused = refused.load(Ordering::Relaxed);
                if refused {
                    let finding = crate::check::Finding::new(
                        Check::DeleteShare,
                        format!("site {}", site.name),
                        e.clone(),
                    );
                    let _ = self.judged("sync", vec![finding]);
                }
                SiteOutcome {
                    error: refused.then_some(crate::unit::ErrorKind::Unsafe),
                    ..self.outcome(site, Some(e))
                }
            }
        }
    }

    /// The pre-sync of the units of no site: databases no site names, mail, list archives.
    fn sync_platform(&self) {
        self.move_platform_units(false);
        self.move_mail(false);
        self.move_list_archives("pre-sync");
    }

    /// A pre-sync of a site that may serve from the new side: left alone (refused with exit 3
    /// when the operator named it), or done on the operator's word (`--allow-live site:NAME`,
    /// journaled), leaving the site's state alone.
    fn sync_live_site(&self, site: &Site, named: bool) -> SiteOutcome {
        let unit = UnitId::Site(site.name.clone());
        let live = self.live();
        let allowed: Vec<UnitId> = if self.checks.allows(Check::LiveUnit) {
            vec![unit.clone()]
        } else {
            self.allowed_live.clone()
        };
        let Err(refusal) = live.check(&unit, &allowed) else {
            let because = live.why(&unit).map(|b| b.to_string()).unwrap_or_default();
            let done = self
                .record(&Entry::Override {
                    unit: unit.clone(),
                    because,
                    command: "sync".into(),
                    at: now(),
                })
                .and_then(|()| self.move_site(site, false));
            let detail = match &done {
                Ok((bytes, _)) => format!(
                    "live on the new side, overwritten there on the operator's word (journaled); {bytes} byte(s) sent"
                ),
                Err(e) => e.clone(),
            };
            let error = done.as_ref().err().map(|_| crate::unit::ErrorKind::Io);
            let _ = self.record(&Entry::Unit {
                site: site.name.clone(),
                unit: "files".into(),
                step: "pre-sync (allowed live)".into(),
                ok: done.is_ok(),
                detail: Some(detail.clone()),
                bytes: done.as_ref().ok().map(|(b, _)| *b),
                at: now(),
            });
            return SiteOutcome {
                error,
                ..self.outcome(site, Some(detail))
            };
        };
        if !named {
            return self.outcome(
                site,
                Some(format!(
                    "{}: live on the new side, left alone",
                    refusal.because
                )),
            );
        }
        SiteOutcome {
            error: Some(crate::unit::ErrorKind::Unsafe),
            ..self.outcome(site, Some(refusal.to_string()))
        }
    }

    /// Files of the site, then its databases: bytes moved and milliseconds spent.
    fn move_site(&self, site: &Site, final_sync: bool) -> Result<(u64, u64), String> {
        self.move_site_watched(site, final_sync, &AtomicBool::new(false))
    }

    /// As `move_site`, setting `refused` when a safety check of the file engine refused it.
    fn move_site_watched(
        &self,
        site: &Site,
        final_sync: bool,
        refused: &AtomicBool,
    ) -> Result<(u64, u64), String> {
        let start = Instant::now();
        // The dry run plans with these very options: one source for both.
        let mut options = super::dry_run::site_sync_options(
            &self.plan,
            site,
            self.checks.allows(Check::DeleteShare),
        );
        // The final pass lists the target for real: a manifest is a pre-sync's hint only.
        if final_sync && let Some(hint) = &mut options.manifest {
            hint.read = false;
        }
        let report = self
            .on_hosts(site, |src, dst| {
                sync(src, dst, &options, &self.engines.view(FILES, &site.name)).map_err(|e| {
                    if matches!(e, crate::sync::SyncError::Unsafe(_)) {
                        refused.store(true, Ordering::Relaxed);
                    }
                    e.to_string()
                })
            })
            .map_err(|e| format!("files: {e}"))?;
        if let Some(why) = &report.overridden {
            let finding = crate::check::Finding::new(
                Check::DeleteShare,
                format!("site {}", site.name),
                why.trim_start_matches("[delete-share] ").to_string(),
            );
            self.judged("sync", vec![finding])?;
        }
        if let Some(first) = report.errors.first() {
            return Err(format!(
                "files: {} path(s) failed, first `{}`: {}",
                report.errors.len(),
                first.path,
                first.error
            ));
        }
        // Its certificate and key go with its files (modes kept, the key never shown).
        if let Some(files) = self.plan.tls_files(site) {
            super::tls_files::carry(self.connections, site, &files)
                .map_err(|e| format!("certificate: {e}"))?;
        }
        let mut bytes = report.bytes_sent;
        for db in &site.databases {
            let r = self.move_database(&site.name, db, final_sync, true)?;
            bytes += r.moved.as_ref().map_or(0, |m| m.bytes);
        }
        Ok((bytes, start.elapsed().as_millis() as u64))
    }

    /// Runs `op` on the site's source and target trees, again on fresh connections with
    /// backoff when one of them dropped under it (a transient failure, told by the transport,
    /// not by the message). `op` must be safe to repeat: syncs and verifications are.
    fn on_hosts<T>(
        &self,
        site: &Site,
        op: impl Fn(&Endpoint, &Endpoint) -> Result<T, String>,
    ) -> Result<T, String> {
        let backoff = self.connections.backoff();
        let mut wait = backoff.base;
        let mut tries = backoff.attempts.max(1);
        loop {
            let src = self
                .connections
                .get(&site.source_host)
                .map_err(|e| e.to_string())?;
            let dst = self
                .connections
                .get(&site.target_host)
                .map_err(|e| e.to_string())?;
            let ends = (
                Endpoint {
                    transport: src.clone(),
                    root: site.source_path.clone(),
                },
                Endpoint {
                    transport: dst.clone(),
                    root: site.target_path.clone(),
                },
            );
            match op(&ends.0, &ends.1) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let dropped = src.lost().or_else(|| dst.lost());
                    tries -= 1;
                    if dropped.is_none() || tries == 0 {
                        return Err(e);
                    }
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2);
                }
            }
        }
    }

    /// Journals what went wrong with the replication connections of a command (a unit of no
    /// site), so `status` shows it.
    fn replication_failures(
        &self,
        step: &str,
        failures: Vec<String>,
    ) -> Result<(), LifecycleError> {
        for f in failures {
            self.record(&Entry::Unit {
                site: PLATFORM.to_string(),
                unit: "replication".into(),
                step: step.into(),
                ok: false,
                detail: Some(f),
                bytes: None,
                at: now(),
            })
            .map_err(LifecycleError::Invalid)?;
        }
        Ok(())
    }

    /// Moves (when `copy`) and verifies one database, journaled as a unit of `owner`.
    fn move_database(
        &self,
        owner: &str,
        db: &SiteDatabase,
        final_sync: bool,
        copy: bool,
    ) -> Result<DbResult, String> {
        let name = db.name.as_str();
        let rule = super::databases::rule_for(&self.plan, db)
            .ok_or_else(|| format!("database `{name}`: no rule of its engine selects it"))?;
        let mut copy = copy;
        let mut replicated = false;
        if !copy && final_sync && self.held_for_later(owner, name) {
            // Checked in this freeze; its rows are compared after the switch.
            return Ok(DbResult::nothing_yet(rule.index, name));
        }
        if copy && replicate::replicates(rule) {
            if !final_sync && self.replicating_now(rule, name) {
                // A pre-sync of named sites: the connection keeps this copy current.
                self.record(&Entry::Unit {
                    site: owner.to_string(),
                    unit: format!("database {name}"),
                    step: "pre-sync".into(),
                    ok: true,
                    detail: Some("replicated: left to its connection".into()),
                    bytes: None,
                    at: now(),
                })?;
                return Ok(DbResult::nothing_yet(rule.index, name));
            }
            if final_sync {
                match self.replicated_final(rule, name) {
                    Ok(None) => {
                        copy = false;
                        replicated = true;
                    }
                    // Dumped instead, the site frozen.
                    Ok(Some(_why)) => {}
                    Err(e) => {
                        let e = format!("database `{name}`: replication: {e}");
                        self.record(&Entry::Unit {
                            site: owner.to_string(),
                            unit: format!("database {name}"),
                            step: "final sync".into(),
                            ok: false,
                            detail: Some(e.clone()),
                            bytes: None,
                            at: now(),
                        })?;
                        return Err(e);
                    }
                }
            }
        }
        // PostgreSQL: a pre-sync's dump creates the database's slot, or says why it cannot.
        let mut replica = false;
        let mut not_replicated = false;
        if copy && !final_sync && replicate::logical(rule) && self.replication_possible(rule) {
            match self.pg_before_dump(rule, name) {
                Ok(None) => replica = true,
                Ok(Some(why)) => {
                    not_replicated = true;
                    self.record(&Entry::Unit {
                        site: owner.to_string(),
                        unit: format!("database {name}"),
                        step: "replication".into(),
                        ok: true,
                        detail: Some(format!("dumped instead of replicated: {why}")),
                        bytes: None,
                        at: now(),
                    })?;
                }
                Err(e) => {
                    let e = format!("database `{name}`: replication: {e}");
                    self.record(&Entry::Unit {
                        site: owner.to_string(),
                        unit: format!("database {name}"),
                        step: "pre-sync".into(),
                        ok: false,
                        detail: Some(e.clone()),
                        bytes: None,
                        at: now(),
                    })?;
                    return Err(e);
                }
            }
        }
        // A final sync that dumps (no trusted connection), and servers that cannot replicate:
        // dumped as under `mode: dump` (the journal says why).
        let dumped_rule;
        let rule = if copy
            && replicate::replicates(rule)
            && (final_sync || not_replicated || !self.replication_possible(rule))
        {
            dumped_rule = crate::plan::DatabaseRule {
                mode: crate::plan::raw::DbMode::Dump,
                ..rule.clone()
            };
            &dumped_rule
        } else {
            rule
        };
        // A database that may be live at the target (its site, or any site for one no site
        // names, may have switched) is left alone: users may have written to it there.
        let live = self.live();
        let mode = if copy {
            super::databases::Mode::Copy(&live)
        } else {
            super::databases::Mode::Verify
        };
        // Caught up by replication: the catalogs now, the rows after the switch (`deferred`).
        let mut light = None;
        let r = match replicated.then(|| self.check_lightly(owner, rule, name)) {
            Some(Ok(r)) => {
                light = Some(Ok(()));
                r
            }
            other => {
                if let Some(Err(why)) = other {
                    light = Some(Err(why));
                }
                move_database(
                    &self.plan,
                    rule,
                    name,
                    self.connections,
                    mode,
                    &self.engines.view(DATABASES, owner),
                )
            }
        };
        if replica {
            let copied = r.moved.as_ref().is_some_and(|m| m.outcome == "copied");
            if let Err(e) = self.pg_after_dump(rule, name, copied) {
                self.record(&Entry::Unit {
                    site: owner.to_string(),
                    unit: format!("database {name}"),
                    step: "replication".into(),
                    ok: false,
                    detail: Some(format!("database `{name}`: replication: {e}")),
                    bytes: None,
                    at: now(),
                })?;
            }
        }
        if let Some(p) = r.moved.as_ref().and_then(|m| m.position.clone())
            && !final_sync
        {
            self.snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((rule.index, name.to_string(), p));
        }
        let step = match (copy, final_sync) {
            _ if replicated => "final sync (replicated)",
            (false, _) => super::ledger::VERIFY_STEP,
            (true, false) => "pre-sync",
            (true, true) => "final sync",
        };
        let different = r.differences();
        // A pre-sync copies a source that still serves: rows written since its dump differ,
        // as they should. Only the final sync (the site frozen) and `verify` judge their
        // equality (rows, and the sequences they advance); other catalog facts (owners, grants,
        // settings) must match at every sync.
        let live_source = copy
            && !final_sync
            && r.error.is_none()
            && r.live.is_none()
            && r.properties.iter().all(only_a_sequence_advanced);
        let detail = match (&r.error, different.is_empty()) {
            _ if r.live.is_some() => r.live.as_ref().map(|l| {
                format!(
                    "skipped: may be live on the new side ({}), left as it is there",
                    l.because
                )
            }),
            (Some(e), _) => Some(e.clone()),
            (None, false) if live_source => Some(format!(
                "copied; the source, still serving, differs since its dump: {} (the final sync verifies)",
                different.join(", ")
            )),
            (None, false) => Some(format!("differ: {}", different.join(", "))),
            (None, true) => Some(match &light {
                Some(Ok(())) => format!(
                    "caught up; {} present with the same columns and {} verified in the freeze; rows compared after go-live in the target's snapshot taken now",
                    plural(r.tables.len() as u64, "table", "tables"),
                    plural(
                        r.properties_compared as u64,
                        "catalog fact",
                        "catalog facts"
                    )
                ),
                Some(Err(why)) => format!(
                    "caught up; {} (rows compared in the freeze: {why})",
                    r.verified()
                ),
                None => r.verified(),
            }),
        };
        let ok = r.clean() || live_source;
        self.record(&Entry::Unit {
            site: owner.to_string(),
            unit: format!("database {name}"),
            step: step.into(),
            ok,
            detail: detail.clone(),
            bytes: r.moved.as_ref().map(|m| m.bytes),
            at: now(),
        })?;
        if ok {
            Ok(r)
        } else {
            Err(format!("database `{name}`: {}", detail.unwrap_or_default()))
        }
    }

    /// Databases no site names (and, as they land, other platform-wide units), moved after
    /// the sites of a run are frozen so their copy is never older than the freeze.
    fn move_platform_units(&self, final_sync: bool) -> Vec<String> {
        let tied: Vec<&SiteDatabase> = self.sites.iter().flat_map(|s| &s.databases).collect();
        // The panel describes every other object: it waits for `move_panel_last`.
        let panel = super::databases::panel_database(&self.plan).map(|(r, n)| (r.index, n));
        let mut failures = Vec::new();
        for rule in &self.plan.databases {
            let names = match super::databases::names(rule, self.connections, &[]) {
                Ok(n) => n,
                Err(e) => {
                    failures.push(format!("databases[{}]: {e}", rule.index));
                    continue;
                }
            };
            // A shared database live on the new side is left there by `move_database`.
            let untied = names.into_iter().filter(|n| {
                !tied.iter().any(|d| d.name == *n && d.fits(rule.engine))
                    && panel.as_ref() != Some(&(rule.index, n.clone()))
            });
            for name in untied {
                let db = SiteDatabase {
                    name,
                    engine: Some(rule.engine),
                };
                if let Err(e) = self.move_database(PLATFORM, &db, final_sync, true) {
                    failures.push(e);
                }
            }
        }
        failures
    }

    /// The VHFFS panel's own database, once every site of the plan is confirmed: it describes
    /// every object (and holds the DNS rows the switches wrote), so it moves after all of
    /// them, once. The rule that any site's switch makes a shared database live does not hold
    /// back this copy: the new side's panel is not in service before it. A failure is
    /// journaled and returned; the next `cutover` or `resume` tries again.
    fn move_panel_last(&self) -> Option<String> {
        let (rule, name) = super::databases::panel_database(&self.plan)?;
        let all_confirmed = self
            .sites
            .iter()
            .all(|s| self.state_of(&s.name) == SiteState::Confirmed);
        let unit = format!("database {name}");
        let moved = || {
            self.ledger.site_history(PLATFORM).iter().any(|e| {
                matches!(e, Entry::Unit { site, unit: u, step, ok: true, .. }
                    if site == PLATFORM && *u == unit && step == PANEL_STEP)
            })
        };
        if !all_confirmed || moved() {
            return None;
        }
        /// Admits the panel's copy: see above.
        struct Last;
        impl super::databases::LiveGate for Last {
            fn admit(
                &self,
                _: &str,
            ) -> Result<Option<super::databases::LiveSkip>, crate::unit::UnitError> {
                Ok(None)
            }
        }
        let r = move_database(
            &self.plan,
            rule,
            &name,
            self.connections,
            super::databases::Mode::Copy(&Last),
            &self.engines.view(DATABASES, PLATFORM),
        );
        let detail = match &r.error {
            Some(e) => e.clone(),
            None => format!(
                "every site confirmed: the panel moved last, {} table(s) verified",
                r.tables.len()
            ),
        };
        let _ = self.record(&Entry::Unit {
            site: PLATFORM.to_string(),
            unit,
            step: PANEL_STEP.into(),
            ok: r.clean(),
            detail: Some(detail.clone()),
            bytes: r.moved.as_ref().map(|m| m.bytes),
            at: now(),
        });
        (!r.clean()).then(|| format!("database `{name}` (the panel): {detail}"))
    }

    /// The archives of the panel's mailing lists that move, journaled as units of no site
    /// (`list <address>`): added to at the target, never pruned. A list with no archives yet
    /// has nothing to copy. A failure is journaled and does not hold the sites back (as mail).
    fn move_list_archives(&self, step: &str) {
        let Some(panel) = &self.panel else {
            return;
        };
        let options = super::panel_rows::archive_options(&self.plan);
        for a in super::panel_rows::archives(&self.plan, panel) {
            let ends = self.connections.get(&a.source_host).and_then(|src| {
                self.connections.get(&a.target_host).map(|dst| {
                    (
                        Endpoint {
                            transport: src,
                            root: a.source.clone(),
                        },
                        Endpoint {
                            transport: dst,
                            root: a.target.clone(),
                        },
                    )
                })
            });
            let done = match ends {
                Err(e) => Err(e.to_string()),
                Ok((src, dst)) => match sync(
                    &src,
                    &dst,
                    &options,
                    &self.engines.view(MAIL, &format!("list {}", a.list)),
                ) {
                    Err(crate::sync::SyncError::SourceMissing(_)) => Ok(None),
                    Err(e) => Err(e.to_string()),
                    Ok(r) => match r.errors.first() {
                        Some(first) => Err(format!(
                            "{} path(s) failed, first `{}`: {}",
                            r.errors.len(),
                            first.path,
                            first.error
                        )),
                        None => Ok(Some(r.bytes_sent)),
                    },
                },
            };
            let _ = self.record(&Entry::Unit {
                site: PLATFORM.to_string(),
                unit: format!("list {}", a.list),
                step: format!("{step} (archives)"),
                ok: done.is_ok(),
                detail: Some(match &done {
                    Ok(Some(_)) => format!("{} -> {}", a.source.display(), a.target.display()),
                    Ok(None) => "no archives yet".into(),
                    Err(e) => e.clone(),
                }),
                bytes: done.as_ref().ok().copied().flatten(),
                at: now(),
            });
        }
    }

    /// The panel's group quotas at the target (one `setquota` batch, idempotent), journaled as
    /// the unit `quotas` of no site; when the target does not enforce them, journaled as not
    /// applied with why (the dry run warned), without holding the sites back.
    fn apply_quotas(&self) {
        let (Some(panel), Some(crate::plan::InventorySource::Vhffs(v))) =
            (&self.panel, &self.plan.inventory)
        else {
            return;
        };
        if panel.quotas.is_empty() {
            return;
        }
        let path = super::quotas::target_datadir(v);
        let done = self
            .connections
            .get(&v.target_host)
            .map_err(|e| e.to_string())
            .and_then(|t| super::quotas::apply(t.as_ref(), &path, &panel.quotas));
        let detail = match &done {
            Ok(mount) => format!(
                "{} group quota(s) set on `{}`",
                panel.quotas.len(),
                mount.display()
            ),
            Err(e) => format!("{} group quota(s) {e}", panel.quotas.len()),
        };
        if let Err(e) = &done {
            self.observer.on_event(&Event::UnitFailed {
                phase: "quotas".into(),
                unit: "quotas".into(),
                error: e.clone(),
            });
        }
        let _ = self.record(&Entry::Unit {
            site: PLATFORM.to_string(),
            unit: "quotas".into(),
            step: "final sync (quotas)".into(),
            ok: done.is_ok(),
            detail: Some(detail),
            bytes: None,
            at: now(),
        });
    }

    /// The plan's mail rules, journaled as units of no site. Before any site's DNS moved, the
    /// target follows the source (renames, deletes); once one may have moved, users may be
    /// working on the new side, so only messages it lacks are added (a sweep).
    fn move_mail(&self, final_sync: bool) {
        if self.plan.mail.is_empty() {
            return;
        }
        // One liveness rule for every unit: the guard's.
        let guard = self.live();
        let live = guard.any();
        let (step, label) = match (live, final_sync) {
            (true, _) => (MailStep::Sweep, "sweep"),
            (false, false) => (MailStep::Sync { delete: true }, "pre-sync"),
            (false, true) => (MailStep::Sync { delete: true }, "final sync"),
        };
        for rule in run_mail(
            &self.plan,
            self.connections,
            step,
            &|rule| guard.why(&UnitId::Mail(rule)).map(|b| b.to_string()),
            &self.engines.view(MAIL, "mail"),
        ) {
            let copied: u64 = rule.mailboxes.iter().map(|m| m.copied).sum();
            let renamed: u64 = rule.mailboxes.iter().map(|m| m.renamed).sum();
            let failed: Vec<String> = rule
                .mailboxes
                .iter()
                .filter(|m| !m.clean())
                .map(|m| {
                    format!(
                        "{}: {}",
                        m.mailbox,
                        m.error
                            .clone()
                            .or_else(|| m.failures.first().cloned())
                            .unwrap_or_default()
                    )
                })
                .collect();
            let detail = match (&rule.error, failed.first()) {
                (Some(e), _) => e.clone(),
                (None, Some(f)) => format!(
                    "{} failed, first {f}",
                    plural(failed.len() as u64, "mailbox", "mailboxes")
                ),
                (None, None) => format!(
                    "{}, {} copied, {renamed} renamed",
                    plural(rule.mailboxes.len() as u64, "mailbox", "mailboxes"),
                    plural(copied, "message", "messages")
                ),
            };
            let _ = self.record(&Entry::Unit {
                site: PLATFORM.to_string(),
                unit: format!("mail[{}] ({})", rule.rule, rule.layout),
                step: label.into(),
                ok: rule.clean(),
                detail: Some(detail),
                bytes: Some(rule.bytes_sent),
                at: now(),
            });
        }
    }

    // ---------------------------------------------------------------- cutover

    /// Cuts the selected sites over, batch after batch; a failing site never stops the others.
    ///
    /// # Errors
    /// The DNS plan is unsafe or its TTLs are not ready (unless `force`), a zone cannot be read.
    pub fn cutover(&self, selection: &Selection) -> Result<Vec<SiteOutcome>, LifecycleError> {
        let journaled = Selected::from(selection);
        let batches = self.selected_batches(selection)?;
        self.check_secrets(&super::secrets::Needs::all(&self.plan))?;
        self.check_dns_ready(&batches.concat())?;
        self.check_ids_resolve(&batches.concat())?;
        self.journaled(
            RunCommand::Cutover {
                selection: journaled,
            },
            || {
                let mut out = Vec::new();
                for (i, batch) in batches.iter().enumerate() {
                    if self.stopped() {
                        out.extend(self.not_started(&batches[i..].concat()));
                        break;
                    }
                    out.extend(self.cutover_batch(batch, &format!("batch {}", i + 1)));
                }
                self.mark_interrupted(&mut out);
                Ok(out)
            },
        )
    }

    /// The batches a selection takes, in order.
    fn selected_batches(&self, selection: &Selection) -> Result<Vec<Vec<&Site>>, LifecycleError> {
        Ok(match selection {
            Selection::All => self.batches(),
            Selection::Batch(n) => {
                let all = self.batches();
                let count = all.len();
                vec![all.into_iter().nth(n.wrapping_sub(1)).ok_or_else(|| {
                    LifecycleError::Invalid(format!(
                        "batch {n} does not exist: the plan has {count} batch(es) of {} site(s)",
                        self.plan.cutover.batch
                    ))
                })?]
            }
            Selection::Only(names) => vec![self.select(names)?],
        })
    }

    /// Sites cut over in three steps, each for the whole batch: freeze, final sync and verify;
    /// then the units of no site; then switch and probes.
    fn cutover_batch(&self, batch: &[&Site], label: &str) -> Vec<SiteOutcome> {
        let prepared = self.each(
            &format!("{label}: freeze, final sync, verify"),
            batch,
            |site| match self.checkpoint(site).and_then(|()| self.prepare(site)) {
                Ok(()) => self.outcome(site, None),
                Err(e) => self.stopped_at(site, e),
            },
        );
        let platform_failures = self
            .leased(PLATFORM, || self.final_sync_platform())
            .unwrap_or_else(|e| vec![format!("units of no site: {e}")]);
        let ready: Vec<&Site> = batch
            .iter()
            .copied()
            .filter(|s| {
                matches!(
                    self.state_of(&s.name),
                    SiteState::Verified
                        | SiteState::Switching
                        | SiteState::Switched
                        | SiteState::Paused
                )
            })
            .collect();
        let mut finished = self.each(&format!("{label}: switch and probe"), &ready, |site| {
            if let Err(e) = self.checkpoint(site) {
                return self.outcome(site, Some(e));
            }
            if let Some(e) = platform_failures.first() {
                // A shared unit did not make it: the site must not go live without it.
                let reason = format!("a unit of no site failed its final sync: {e}");
                return self.roll_back(site, &reason);
            }
            self.go_live(site)
        });
        let after = self.verify_after_go_live(label);
        self.mark_after_go_live(&mut finished, &after);
        for p in prepared {
            if !finished.iter().any(|f| f.site == p.site) {
                finished.push(p);
            }
        }
        // Comparisons a crash left owed (its snapshot lost), for the batch's sites live now,
        // those confirmed by an earlier run included.
        let owners: Vec<&str> = batch
            .iter()
            .map(|s| s.name.as_str())
            .chain([PLATFORM])
            .collect();
        let owed = self.settle_owed(&owners, label);
        self.mark_after_go_live(&mut finished, &owed.failures);
        if finished.iter().any(|o| o.state == SiteState::Confirmed) {
            let _ = self.leased(PLATFORM, || self.after_batch(label));
        }
        self.engines.finish();
        finished.sort_by(|a, b| a.site.cmp(&b.site));
        finished
    }

    /// The units of no site once a batch's sites are frozen: databases no site names, then
    /// mail, list archives and quotas. Returns the databases' failures (the sites must not go
    /// live without them).
    fn final_sync_platform(&self) -> Vec<String> {
        // After a stop, nothing new starts: the sites not yet switched are reopened.
        let failures = if self.plan.databases.is_empty() || self.stopped() {
            Vec::new()
        } else {
            self.move_platform_units(true)
        };
        // Mail follows every run's freezes; a mailbox that fails is reported, it does not
        // hold the sites back.
        if !self.stopped() {
            self.move_mail(true);
            self.move_list_archives("final sync");
            self.apply_quotas();
        }
        failures
    }

    /// After a batch with confirmed sites: mail that reached the old server while DNS changed,
    /// and after the plan's last site, the panel that describes them all.
    fn after_batch(&self, label: &str) {
        if self.stopped() {
            return;
        }
        self.move_mail(true);
        if let Some(e) = self.move_panel_last() {
            self.observer.on_event(&Event::UnitFailed {
                phase: format!("{label}: panel"),
                unit: PLATFORM.into(),
                error: e,
            });
        }
    }

    /// Whether a batch has work for the units of no site (workers skip the steps otherwise).
    fn has_platform_units(&self) -> bool {
        !self.plan.databases.is_empty() || !self.plan.mail.is_empty() || self.panel.is_some()
    }

    /// Freeze, final sync and verification, from wherever the site stands.
    fn prepare(&self, site: &Site) -> Stop {
        let state = self.state_of(&site.name);
        if matches!(
            state,
            SiteState::Confirmed
                | SiteState::Verified
                | SiteState::Switching
                | SiteState::Switched
                | SiteState::Paused
        ) {
            // Verified by a run that stopped before its switch: rows it owed are compared now.
            if state == SiteState::Verified
                && let Err(e) = self.compare_owed_in_freeze(site)
            {
                return self.give_up(site, &format!("verification: {e}"));
            }
            return Ok(());
        }
        if state == SiteState::RollingBack {
            return Err("a rollback was interrupted: run `rollback` or `resume`".into());
        }
        if state == SiteState::Syncing {
            return Err(
                "its last pre-sync was interrupted (syncing): run `resume` or `sync` first".into(),
            );
        }
        // `freezing` left by a crash: the command may or may not have run; run it again
        // (freeze commands must be idempotent, as `touch` is).
        if !state.in_flight() || state == SiteState::Freezing {
            self.set(&site.name, SiteState::Freezing, None)?;
            self.front(site);
            if let Err(e) = self.hook(site, true) {
                // Part of a freeze may have run: reopen the site before saying it failed.
                let _ = self.hook(site, false);
                self.set(&site.name, SiteState::Failed, Some(format!("freeze: {e}")))?;
                return Err(format!("freeze: {e}"));
            }
            self.set(&site.name, SiteState::Frozen, None)?;
            self.checkpoint(site)?;
        }
        let state = self.state_of(&site.name);
        if matches!(state, SiteState::Frozen | SiteState::Freezing) {
            match self.move_site(site, true) {
                Ok((bytes, millis)) => self.set_measured(
                    &site.name,
                    SiteState::FinalSynced,
                    None,
                    Some(bytes),
                    Some(millis),
                )?,
                Err(e) => return self.give_up(site, &format!("final sync: {e}")),
            }
            self.checkpoint(site)?;
        }
        match self.verify_site(site) {
            Ok(detail) => self.set(&site.name, SiteState::Verified, Some(detail)),
            Err(e) => self.give_up(site, &format!("verification: {e}")),
        }
    }

    /// Before the switch, a failure only needs the source reopened.
    fn give_up(&self, site: &Site, reason: &str) -> Stop {
        let reopened = self.hook(site, false);
        let reason = match reopened {
            Ok(()) => reason.to_string(),
            Err(e) => format!("{reason}; unfreezing failed too: {e}"),
        };
        self.set(&site.name, SiteState::Failed, Some(reason.clone()))?;
        Err(reason)
    }

    fn verify_site(&self, site: &Site) -> Result<String, String> {
        // What the sync left out (excludes, freeze files, refused devices) is judged alike.
        let options = super::dry_run::site_sync_options(&self.plan, site, false);
        let report = self.on_hosts(site, |src, dst| {
            crate::sync::verify::verify(src, dst, &options, &crate::event::Silent)
                .map_err(|e| e.to_string())
        })?;
        if !report.is_clean() {
            let first = report
                .refused
                .iter()
                .chain(&report.missing)
                .chain(&report.different)
                .chain(&report.extra)
                .chain(&report.errors)
                .next()
                .cloned()
                .unwrap_or_default();
            let refused = match report.refused.len() {
                0 => String::new(),
                n => format!("{n} device node(s) refused, "),
            };
            return Err(format!(
                "{refused}{} missing, {} different, {} extra file(s) at the target (first: {first})",
                report.missing.len(),
                report.different.len(),
                report.extra.len()
            ));
        }
        for db in &site.databases {
            self.move_database(&site.name, db, true, false)?;
        }
        // A repository must open at the target, not only hold the same bytes.
        let usable = super::repo_check::check(self.connections, site)?
            .map(|c| format!(", {c}"))
            .unwrap_or_default();
        Ok(format!(
            "{} hashed on both sides{usable}{}",
            plural(report.files_hashed, "file", "files"),
            if site.databases.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} compared",
                    plural(site.databases.len() as u64, "database", "databases")
                )
            }
        ))
    }

    /// Runs the freeze (or unfreeze) command of the plan on the site's source host.
    fn hook(&self, site: &Site, freeze: bool) -> Stop {
        let cutover = &self.plan.cutover;
        let Some(template) = (if freeze {
            &cutover.freeze
        } else {
            &cutover.unfreeze
        }) else {
            return Ok(());
        };
        // No journal entry precedes every hook (a give-up unfreezes, then says failed): with a
        // shared journal, the site must still be ours.
        if let Some(l) = self.ledger.leases() {
            l.check(&site.name).map_err(|e| e.to_string())?;
        }
        let command = render_shell(template, site);
        // Freeze and unfreeze commands are idempotent by contract: a dropped connection runs
        // them again on a fresh one.
        let request = ExecRequest::new("sh", vec!["-c".to_string(), command]);
        let out = self
            .connections
            .run(&site.source_host, |t| t.exec(&request))
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` on host `{}` failed ({}): {}",
                template.as_str(),
                site.source_host,
                out.code.map_or("killed".into(), |c| format!("exit {c}")),
                out.stderr_text()
            ))
        }
    }

    // ---------------------------------------------------------------- DNS and probes

    fn zone_plans(&self) -> Result<Vec<ZonePlan>, String> {
        let Some(spec) = &self.plan.dns else {
            return Ok(Vec::new());
        };
        let mut cached = self.zone_plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cached.as_ref() {
            return Ok(p.clone());
        }
        let plans: Vec<ZonePlan> = cutover::plan_zones(spec, &spec.zones)
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        *cached = Some(plans.clone());
        Ok(plans)
    }

    /// Evaluates the DNS checks of a switch of `names` on exactly what it would change, and
    /// journals what they decided (refusals and overrides) before anything acts on it.
    fn dns_verdict(&self, names: &[String], command: &str) -> Result<Verdict, String> {
        let findings = self.dns_findings(names)?;
        self.judged(command, findings)
    }

    fn dns_findings(&self, names: &[String]) -> Result<Vec<crate::check::Finding>, String> {
        let Some(spec) = &self.plan.dns else {
            return Ok(Vec::new());
        };
        let mine = cutover::restrict(&self.zone_plans()?, names);
        Ok(cutover::checks(
            spec,
            &mine,
            &self.ledger.history(names),
            now(),
        ))
    }

    /// Judges findings against the operator's overrides, journals the verdict and announces
    /// every override (always shown, whatever the output settings).
    fn judged(
        &self,
        command: &str,
        findings: Vec<crate::check::Finding>,
    ) -> Result<Verdict, String> {
        let verdict = self.checks.judge(findings);
        self.ledger
            .record_verdict(command, &verdict)
            .map_err(|e| e.to_string())?;
        for o in &verdict.overridden {
            self.observer.on_event(&Event::CheckOverridden {
                check: o.finding.check.to_string(),
                subject: o.finding.subject.clone(),
                reason: o.finding.reason.clone(),
                by: o.by.to_string(),
            });
        }
        Ok(verdict)
    }

    /// Refuses the cutover before anything is frozen when the switch of the selected sites
    /// would be refused by a check the operator did not allow.
    fn check_dns_ready(&self, sites: &[&Site]) -> Result<(), LifecycleError> {
        if self.plan.dns.is_none() {
            return Ok(());
        }
        let names: Vec<String> = sites.iter().flat_map(|s| names_of(s)).collect();
        let verdict = self
            .dns_verdict(&names, "cutover")
            .map_err(LifecycleError::Unreachable)?;
        if verdict.ok() {
            Ok(())
        } else {
            Err(Refused(verdict.refused).into())
        }
    }

    /// Refuses the cutover before anything is frozen when a uid or gid the selected sites'
    /// copies keep (their trees' owners, the panel's users and groups) has no name at the
    /// target (check `unresolved-ids`).
    fn check_ids_resolve(&self, sites: &[&Site]) -> Result<(), LifecycleError> {
        let ids = super::ids::of_sites(
            self.panel.as_ref(),
            sites,
            self.connections,
            self.plan.defaults.jobs,
        );
        self.refuse_cutover_unless_allowed(super::ids::findings(&ids, self.connections))
    }

    /// Journals `findings` of a cutover and refuses it unless each is let through (`--allow`).
    fn refuse_cutover_unless_allowed(
        &self,
        findings: Vec<crate::check::Finding>,
    ) -> Result<(), LifecycleError> {
        if findings.is_empty() {
            return Ok(());
        }
        let verdict = self
            .judged("cutover", findings)
            .map_err(LifecycleError::Unreachable)?;
        if verdict.ok() {
            Ok(())
        } else {
            Err(Refused(verdict.refused).into())
        }
    }

    /// Probes through the new address before the switch (never switched when they fail), the
    /// switch, DNS verification, probes through resolution; then confirmed, rolled back or
    /// paused.
    fn go_live(&self, site: &Site) -> SiteOutcome {
        if self.state_of(&site.name) == SiteState::Verified
            && let Err(reason) = self.prove(site)
        {
            let detail = self.give_up(site, &reason).err().unwrap_or(reason);
            return self.outcome(site, Some(detail));
        }
        if let Err(e) = self.checkpoint(site) {
            return self.outcome(site, Some(e));
        }
        match self.switch_and_probe(site) {
            Ok(None) => self.outcome(site, None),
            Ok(Some(reason)) => match self.on_failure() {
                OnFailure::Rollback => self.roll_back(site, &reason),
                OnFailure::Pause => {
                    let _ = self.set(&site.name, SiteState::Paused, Some(reason.clone()));
                    self.outcome(site, Some(reason))
                }
            },
            Err(e) => {
                // The journal could not be written, or the switch failed: put things back.
                self.roll_back(site, &e)
            }
        }
    }

    fn on_failure(&self) -> OnFailure {
        self.plan.cutover.on_failure
    }

    /// Before anything is switched: the site's own DNS checks, and every probe through the new
    /// address the switch will give each domain (Host and SNI set, compared with the old side).
    fn prove(&self, site: &Site) -> Stop {
        let names = names_of(site);
        // Judged on this site's own RRsets; the overrides were journaled and shown when the
        // command started, only a new refusal is.
        let verdict = self.checks.judge(self.dns_findings(&names)?);
        if !verdict.ok() {
            self.judged("cutover", verdict.refused.clone())?;
            return Err(Refused(verdict.refused).to_string());
        }
        let plans = cutover::restrict(&self.zone_plans()?, &names);
        let planned: Vec<(RrKey, RrState)> = plans
            .iter()
            .flat_map(|p| {
                p.changes
                    .iter()
                    .map(|c| (c.key.clone(), c.to.clone()))
                    .chain(p.settled.iter().cloned())
            })
            .collect();
        let results = self.probe_site(site, ProbeRound::BeforeSwitch, &|name| {
            Ok(address_in(&planned, name))
        });
        for r in &results {
            self.record(&Entry::Probe {
                site: site.name.clone(),
                result: r.clone(),
                at: now(),
            })?;
        }
        match results.iter().find(|r| !r.ok) {
            Some(bad) => Err(format!(
                "probe of {} through the new address, before the switch: {} (DNS not switched)",
                bad.domain, bad.detail
            )),
            None => Ok(()),
        }
    }

    /// `Ok(None)` when the site is confirmed, `Ok(Some(reason))` when a check failed.
    fn switch_and_probe(&self, site: &Site) -> Result<Option<String>, String> {
        let names = names_of(site);
        let state = self.state_of(&site.name);
        if let Some(spec) = &self.plan.dns
            && matches!(state, SiteState::Verified | SiteState::Switching)
        {
            let plans = cutover::restrict(&self.zone_plans()?, &names);
            let count: usize = plans.iter().map(|p| p.changes.len()).sum();
            self.set(
                &site.name,
                SiteState::Switching,
                Some(plural(count as u64, "RRset", "RRsets")),
            )?;
            let outcome = cutover::switch(spec, &plans, &self.ledger, &self.checks)
                .map_err(|e| format!("DNS switch: {e}"))?;
            if let Some((key, e)) = outcome.failed.first() {
                return Err(format!("DNS switch of {} {}: {e}", key.name, key.rtype));
            }
            self.set(
                &site.name,
                SiteState::Switched,
                Some(format!(
                    "{} switched",
                    plural(count as u64, "RRset", "RRsets")
                )),
            )?;
        } else if state == SiteState::Verified {
            self.set(
                &site.name,
                SiteState::Switched,
                Some("no DNS section in the plan: nothing to switch".into()),
            )?;
        }
        let expected = self.switched_records(&names)?;
        if let Some(spec) = &self.plan.dns
            && !expected.is_empty()
            && let Err(wrong) = cutover::verify(spec, &expected, spec.verify_timeout)
        {
            return Ok(Some(format!(
                "DNS not served everywhere: {}",
                wrong.first().cloned().unwrap_or_default()
            )));
        }
        // The second round goes where visitors will: the address DNS gives each domain now.
        let results = self.probe_site(site, ProbeRound::AfterSwitch, &|name| {
            self.resolved_address(name, &expected)
        });
        for r in &results {
            self.record(&Entry::Probe {
                site: site.name.clone(),
                result: r.clone(),
                at: now(),
            })?;
        }
        if let Some(bad) = results.iter().find(|r| !r.ok) {
            return Ok(Some(format!(
                "probe of {} after the switch: {}",
                bad.domain, bad.detail
            )));
        }
        let detail = if results.is_empty() {
            "no probe configured".to_string()
        } else {
            format!(
                "{} passed before and after the switch",
                plural(results.len() as u64, "probe", "probes")
            )
        };
        self.set(&site.name, SiteState::Confirmed, Some(detail))?;
        self.forward_confirmed(site, &expected);
        Ok(None)
    }

    /// Routes a confirmed site through the forwarder on its old host, when the plan has one:
    /// to the address its switch gave its first domain, until the switch plus the old TTL plus
    /// the margin. A forwarder that cannot be given the route is said, not a failed site.
    fn forward_confirmed(&self, site: &Site, switched: &[(RrKey, RrState)]) {
        let Some(f) = self.forwarders() else {
            return;
        };
        let names = names_of(site);
        let dns: Vec<Entry> = self
            .ledger
            .history(&names)
            .into_iter()
            .map(Entry::Dns)
            .collect();
        let to = site.domains.iter().find_map(|d| address_in(switched, d));
        let until = super::forward::until(
            site,
            &self.ledger.site_history(&site.name),
            &dns,
            f.spec.margin,
        );
        let result = match (to, until) {
            // Its window is over already (a route owed since a crash): nothing to forward.
            (Some(_), Some(until)) if until <= now() => Ok(()),
            (Some(to), Some(until)) => f.route(site, to, until),
            _ => Err("no record of the site was switched: nothing to forward".into()),
        };
        if let Err(e) = result {
            self.observer.on_event(&Event::Info {
                message: format!("{}: forwarder: {e}", site.name),
            });
        }
    }

    /// The plan's forwarders, when it asks for them.
    fn forwarders(&self) -> Option<super::forward::Forwarders<'_>> {
        self.plan.cutover.forward.as_ref()?;
        let hosts = self
            .forward_hosts
            .get_or_init(|| super::forward::hosts_of(&self.sites));
        super::forward::Forwarders::of(&self.plan, hosts, self.connections, &self.ledger)
    }

    /// The forwarder of `site`'s old host up as its front before the site freezes (see
    /// `forward::front_due`); one that cannot start is said, as at a confirmation.
    fn front(&self, site: &Site) {
        let Some(f) = self.forwarders() else {
            return;
        };
        if let Err(e) = f.front(&site.source_host) {
            self.observer.on_event(&Event::Info {
                message: format!("{}: forwarder: {e}", site.name),
            });
        }
    }

    /// Every old host's forwarder made to match the journal (after a crash too): a site
    /// confirmed without its route (a crash between the two) is routed first.
    fn reconcile_forwarders(&self) {
        let Some(f) = self.forwarders() else {
            return;
        };
        for site in self.sites.iter().filter(|_| self.plan.dns.is_some()) {
            if self.state_of(&site.name) != SiteState::Confirmed {
                continue;
            }
            let history = self.ledger.site_history(&site.name);
            let switched = history.iter().rposition(|e| {
                matches!(
                    e,
                    Entry::Site {
                        state: SiteState::Switched,
                        ..
                    }
                )
            });
            let routed_since = switched.is_some_and(|at| {
                history[at..]
                    .iter()
                    .any(|e| matches!(e, Entry::ForwardRoute { .. }))
            });
            if switched.is_some() && !routed_since {
                match self.switched_records(&names_of(site)) {
                    Ok(records) => self.forward_confirmed(site, &records),
                    Err(e) => self.observer.on_event(&Event::Info {
                        message: format!("{}: forwarder: {e}", site.name),
                    }),
                }
            }
        }
        if let Err(e) = f.reconcile() {
            self.observer.on_event(&Event::Info {
                message: format!("forwarder: {e}"),
            });
        }
    }

    /// The address DNS gives `name` now: through the plan's resolvers when it lists some, else
    /// its authoritative servers; without servers (zone files, panel tables), what our switch
    /// set. `Ok(None)` when nothing names an address for it.
    fn resolved_address(
        &self,
        name: &str,
        switched: &[(RrKey, RrState)],
    ) -> Result<Option<IpAddr>, String> {
        let ours = address_in(switched, name);
        let Some(spec) = &self.plan.dns else {
            return Ok(ours);
        };
        let timeout = std::time::Duration::from_secs(3);
        let fqdn = crate::dns::query::fqdn(name);
        let answer = if let Some(resolver) = spec.resolvers.first() {
            crate::dns::query::resolve(*resolver, &fqdn, RecordType::A, timeout)
        } else if let Some(server) = spec.nameservers.first() {
            crate::dns::query::lookup(*server, &fqdn, RecordType::A, timeout)
        } else {
            return Ok(ours);
        }?;
        let given: Vec<IpAddr> = answer.iter().filter_map(|r| r.data.parse().ok()).collect();
        match (given.first(), ours) {
            (None, _) => Ok(ours),
            (Some(g), Some(o)) if !given.contains(&o) => Err(format!(
                "DNS gives {g} for {name}, not the new address {o} (a resolver may still cache the old one)"
            )),
            (Some(g), _) => Ok(Some(*g)),
        }
    }

    /// The RRsets of `names` as our switch left them (from the journal).
    fn switched_records(&self, names: &[String]) -> Result<Vec<(RrKey, RrState)>, String> {
        let entries = self.ledger.history(names);
        Ok(cutover::switched(&entries, &[])
            .into_iter()
            .filter(|(k, _)| names.contains(&k.name))
            .collect())
    }

    /// Probes every domain of the site (and the plan's banners) through the address
    /// `address_of` gives its name.
    fn probe_site(
        &self,
        site: &Site,
        round: ProbeRound,
        address_of: &dyn Fn(&str) -> Result<Option<IpAddr>, String>,
    ) -> Vec<ProbeResult> {
        let Some(probe_spec) = self.plan.cutover.probe.as_ref() else {
            return Vec::new();
        };
        let pairs: Vec<(IpAddr, IpAddr)> = self
            .plan
            .dns
            .as_ref()
            .map(|d| d.switch.clone())
            .unwrap_or_default();
        let expect: Vec<u16> = if probe_spec.expect.is_empty() {
            vec![200]
        } else {
            probe_spec.expect.clone()
        };
        // The address for a name, else the plan's first new address.
        let new_address_of = |name: &str| -> Result<Option<IpAddr>, String> {
            Ok(address_of(name)?.or_else(|| pairs.first().map(|p| p.1)))
        };
        let render = |t: &Template, domain: &str| {
            t.render(|v| match v {
                "name" => Some(site.name.clone()),
                "domain" => Some(domain.to_string()),
                _ => None,
            })
        };
        let failed = |domain: &str, url: String, detail: String| ProbeResult {
            domain: domain.to_string(),
            url,
            ok: false,
            detail,
            round,
        };
        // TLS expected at the new side: its certificate is judged before the page (issue 15).
        let tls = super::certificate::Wanted::for_site(&self.plan, site);
        let ca = tls.as_ref().map_or(&[][..], |t| t.ca_certificates());
        let mut results: Vec<ProbeResult> = site
            .domains
            .iter()
            .flat_map(|domain| {
                let url = render(&probe_spec.url, domain);
                let new = match new_address_of(domain) {
                    Ok(Some(new)) => new,
                    Ok(None) => {
                        return vec![failed(
                            domain,
                            url,
                            "no new address known for this domain (no DNS switch in the plan)"
                                .into(),
                        )];
                    }
                    Err(e) => return vec![failed(domain, url, e)],
                };
                let mut checks = Vec::new();
                if let Some(tls) = tls.as_ref().filter(|_| round == ProbeRound::BeforeSwitch) {
                    checks.push(tls.check(domain, &url, new));
                    if !checks[0].ok {
                        return checks;
                    }
                }
                let old = pairs.iter().find(|p| p.1 == new).map(|p| p.0);
                checks.push(ProbeResult {
                    round,
                    ..probe(&ProbeSpec {
                        url,
                        domain,
                        new_address: new,
                        old_address: old.filter(|_| probe_spec.compare_with_old),
                        expect: &expect,
                        timeout: probe_spec.timeout,
                        compare_body: probe_spec.compare_body,
                        ca,
                    })
                });
                checks
            })
            .collect();
        // Banners check the services of the new server itself: once, through its address.
        if round != ProbeRound::BeforeSwitch {
            return results;
        }
        let mut greeted: Vec<String> = Vec::new();
        for t in &probe_spec.banners {
            for domain in &site.domains {
                let url = render(t, domain);
                if greeted.contains(&url) {
                    continue;
                }
                greeted.push(url.clone());
                let parsed = match parse_banner_url(&url) {
                    Ok(p) => p,
                    Err(e) => {
                        results.push(failed(domain, url, e));
                        continue;
                    }
                };
                match new_address_of(&parsed.host) {
                    Ok(Some(address)) => results.push(ProbeResult {
                        round,
                        ..banner(&parsed, address, probe_spec.timeout)
                    }),
                    Ok(None) => results.push(failed(
                        domain,
                        url,
                        "no new address known for this host".into(),
                    )),
                    Err(e) => results.push(failed(domain, url, e)),
                }
            }
        }
        results
    }

    // ---------------------------------------------------------------- rollback and resume

    /// DNS back to its exact state before our switch, the source unfrozen, the reason kept.
    /// The site is journaled rolled back only once every one of its RRsets reads back exactly
    /// as before our first change (values and TTL); otherwise it stays `rolling-back`, which
    /// `status` flags and `rollback` or `resume` retry.
    fn roll_back(&self, site: &Site, reason: &str) -> SiteOutcome {
        let result = (|| -> Stop {
            let before = self.state_of(&site.name);
            self.set(&site.name, SiteState::RollingBack, Some(reason.to_string()))?;
            // Visitors at the old address go to the old side again.
            if let Some(f) = self.forwarders() {
                f.unroute(site).map_err(|e| format!("forwarder: {e}"))?;
            }
            if let Some(spec) = &self.plan.dns {
                let names = names_of(site);
                let outcome = cutover::rollback(spec, &self.ledger, &[], &names, false)
                    .map_err(|e| format!("DNS rollback: {e}"))?;
                if let Some((key, e)) = outcome.failed.first() {
                    return Err(format!("DNS rollback of {} {}: {e}", key.name, key.rtype));
                }
                if let Some((key, why)) = outcome.skipped.first() {
                    return Err(format!(
                        "DNS rollback of {} {}: {why}; put it back by hand or check who changed it, then run `rollback` again",
                        key.name, key.rtype
                    ));
                }
                // Read the servers again: only what they serve says the site is back.
                cutover::restored(spec, &self.ledger, &names)
                    .map_err(|wrong| format!("DNS not back as before: {}", wrong.join("; ")))?;
            }
            for db in &site.databases {
                if let Some(rule) = super::databases::rule_for(&self.plan, db)
                    && replicate::replicates(rule)
                {
                    self.detach_replication(rule, &db.name)
                        .map_err(|e| format!("database `{}`: replication: {e}", db.name))?;
                }
            }
            if before != SiteState::Discovered {
                self.hook(site, false)
                    .map_err(|e| format!("unfreeze: {e}"))?;
            }
            self.set(&site.name, SiteState::RolledBack, Some(reason.to_string()))
        })();
        let asked = reason == ROLLBACK_ASKED;
        match result {
            Ok(()) => SiteOutcome {
                rollback_asked: asked,
                ..self.outcome(site, Some(reason.to_string()))
            },
            // Left in `rolling_back`, with why in the journal: `status` shows it, `rollback` or
            // `resume` tries again.
            Err(e) => {
                let detail = format!("{reason}; the rollback stopped: {e}");
                let _ = self.set(&site.name, SiteState::RollingBack, Some(detail.clone()));
                self.outcome(site, Some(detail))
            }
        }
    }

    /// Puts the selected sites back on the old side: every site whose DNS may have moved or
    /// whose source may be frozen.
    pub fn rollback(&self, only: &[String]) -> Result<Vec<SiteOutcome>, LifecycleError> {
        self.journaled(
            RunCommand::Rollback {
                only: only.to_vec(),
            },
            || self.rollback_sites(only),
        )
    }

    /// The sites `rollback(only)` takes: those whose DNS may have moved or whose source may be
    /// frozen.
    fn rollback_selection(&self, only: &[String]) -> Result<Vec<&Site>, LifecycleError> {
        Ok(self
            .select(only)?
            .into_iter()
            .filter(|s| {
                let st = self.state_of(&s.name);
                st.in_flight() || st.may_have_switched()
            })
            .collect())
    }

    fn rollback_sites(&self, only: &[String]) -> Result<Vec<SiteOutcome>, LifecycleError> {
        let sites = self.rollback_selection(only)?;
        Ok(self.each("rollback", &sites, |site| {
            self.roll_back(site, ROLLBACK_ASKED)
        }))
    }

    /// Refuses the command (invalid input) when a secret it needs cannot be read now, before
    /// anything moves.
    pub fn check_secrets(&self, needs: &super::secrets::Needs<'_>) -> Result<(), LifecycleError> {
        match super::secrets::refusal(&self.plan, needs) {
            Some(why) => Err(LifecycleError::Invalid(why)),
            None => Ok(()),
        }
    }

    /// Runs a command between a journaled start and end: a run without an end is what
    /// `resume` finishes.
    fn journaled(
        &self,
        command: RunCommand,
        work: impl FnOnce() -> Result<Vec<SiteOutcome>, LifecycleError>,
    ) -> Result<Vec<SiteOutcome>, LifecycleError> {
        let mut overrides: Vec<String> = self
            .allowed_live
            .iter()
            .map(|u| format!("allow-live {u}"))
            .collect();
        overrides.extend(self.checks.journaled());
        let moves_data = !matches!(command, RunCommand::Rollback { .. });
        let run = self.ledger.start_run(command, overrides)?;
        self.reconcile_forwarders();
        // Keys of the direct data path live as long as the work: removed when it ends, by a
        // panic too (the guard's drop); a crash leaves them journaled for the next command.
        // Their set-up runs on threads of this scope while the work starts.
        let out = std::thread::scope(|scope| {
            let paths = if moves_data {
                super::direct::open(
                    scope,
                    &self.plan,
                    &self.sites,
                    self.connections,
                    &self.ledger,
                    self.observer,
                )
                .map(Some)
                .map_err(LifecycleError::Unreachable)?
            } else {
                super::direct::clean_stale(self.connections, &self.ledger, self.observer);
                None
            };
            let out = work();
            drop(paths);
            out
        });
        // Nothing of the run stays on screen over what is printed next.
        self.engines.finish();
        self.observer.finish();
        // A refusal before anything started ends the run too: there is nothing to finish.
        let ok = out.as_ref().is_ok_and(|o| o.iter().all(SiteOutcome::ok));
        self.reconcile_forwarders();
        self.ledger.end_run(run, ok)?;
        out
    }

    /// Finishes what a crashed run left. Interrupted rollbacks are completed first, sites in
    /// flight go on with their cutover, then every command that started and never ended is
    /// finished over all of its sites (the batches and sites it had not reached too).
    ///
    /// With a shared journal, the workers' open queue is finished first, as one more worker
    /// would (its run then ends).
    pub fn resume(&self) -> Result<Vec<SiteOutcome>, LifecycleError> {
        self.check_secrets(&super::secrets::Needs::all(&self.plan))?;
        let queued = self.join_open_queue()?.unwrap_or_default();
        let unfinished = self.ledger.unfinished_runs();
        let mut out = self.journaled(RunCommand::Resume, || self.resume_runs(&unfinished))?;
        for o in queued {
            if !out.iter().any(|x| x.site == o.site) {
                out.push(o);
            }
        }
        out.sort_by(|a, b| a.site.cmp(&b.site));
        Ok(out)
    }

    fn resume_runs(
        &self,
        unfinished: &[(u64, RunCommand, crate::journal::Pos)],
    ) -> Result<Vec<SiteOutcome>, LifecycleError> {
        let statuses = self.statuses()?;
        let pick = |f: &dyn Fn(SiteState) -> bool| -> Vec<String> {
            self.sites
                .iter()
                .filter(|s| statuses.get(&s.name).is_some_and(|st| f(st.state)))
                .map(|s| s.name.clone())
                .collect()
        };
        let rolling = pick(&|s| s.resume_step() == ResumeStep::FinishRollback);
        let flying = pick(&|s| s.resume_step() == ResumeStep::ContinueCutover);
        let syncing = pick(&|s| s.resume_step() == ResumeStep::RerunPreSync);
        let mut out: Vec<SiteOutcome> = Vec::new();
        let merge = |out: &mut Vec<SiteOutcome>, more: Vec<SiteOutcome>| {
            for o in more {
                out.retain(|x| x.site != o.site);
                out.push(o);
            }
        };
        if !rolling.is_empty() {
            let sites = self.select(&rolling)?;
            let done = self.each("resume: rollback", &sites, |site| {
                let reason = statuses
                    .get(&site.name)
                    .and_then(|s| s.timeline.last())
                    .and_then(|s| s.detail.clone())
                    .unwrap_or_else(|| ROLLBACK_ASKED.into());
                self.roll_back(site, &reason)
            });
            merge(&mut out, done);
        }
        if !flying.is_empty() {
            // The TTL wait was checked when the cutover started; a resume goes on with it.
            let done = self.cutover_batch(&self.select(&flying)?, "resume");
            merge(&mut out, done);
        }
        if !syncing.is_empty() {
            let done = self.sync_sites(&syncing)?;
            merge(&mut out, done);
        }
        for (run, command, start) in unfinished {
            let touched = self.ledger.verdicts_since(*start)?;
            let left = |sites: Vec<&Site>| -> Vec<String> {
                sites
                    .into_iter()
                    .filter(|s| !touched.contains(&s.name))
                    .map(|s| s.name.clone())
                    .collect()
            };
            let done = match command {
                RunCommand::Cutover { selection } => {
                    let selection = Selection::from(selection);
                    let mut done = Vec::new();
                    for (i, batch) in self.selected_batches(&selection)?.into_iter().enumerate() {
                        // Confirmed and paused sites have their verdict: nothing to finish.
                        let names: Vec<String> = left(batch)
                            .into_iter()
                            .filter(|s| {
                                !matches!(
                                    self.state_of(s),
                                    SiteState::Confirmed | SiteState::Paused
                                )
                            })
                            .collect();
                        // An empty list would select every site.
                        if !names.is_empty() {
                            let batch = self.select(&names)?;
                            self.check_dns_ready(&batch)?;
                            done.extend(
                                self.cutover_batch(&batch, &format!("resume: batch {}", i + 1)),
                            );
                        }
                    }
                    done
                }
                RunCommand::Rollback { only } => {
                    let sites = left(self.select(only)?);
                    if sites.is_empty() {
                        Vec::new()
                    } else {
                        self.rollback_sites(&sites)?
                    }
                }
                RunCommand::Sync { only } => {
                    let sites: Vec<String> = left(self.select(only)?)
                        .into_iter()
                        .filter(|s| {
                            let state = self.state_of(s);
                            !state.in_flight() && !state.may_have_switched()
                        })
                        .collect();
                    if sites.is_empty() {
                        Vec::new()
                    } else {
                        self.sync_sites(&sites)?
                    }
                }
                // Journaled for the record only: `unfinished_runs` leaves them out.
                RunCommand::Resume
                | RunCommand::Run
                | RunCommand::Dns { .. }
                | RunCommand::Other { .. } => continue,
            };
            merge(&mut out, done);
            self.ledger.end_run(*run, true)?;
        }
        self.settle_owed_everywhere(&mut out)?;
        out.sort_by(|a, b| a.site.cmp(&b.site));
        Ok(out)
    }

    /// The whole journal, for reports.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub fn entries(&self) -> Result<Vec<Entry>, LifecycleError> {
        Ok(self.ledger.entries()?)
    }

    /// The names the plan's sites switch (the only RRsets a cutover lowers, switches and
    /// restores).
    fn site_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.sites.iter().flat_map(names_of).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Lowers the TTLs of the RRsets the sites will switch, wherever the servers serve a higher
    /// one now (the first time, or after a rollback put the old TTL back), and says how long
    /// until the switch is safe, in seconds.
    ///
    /// # Errors
    /// The DNS server refuses or the journal cannot be written.
    pub fn lower_ttl(&self) -> Result<u64, LifecycleError> {
        self.leased(DNS_UNIT, || self.lower_ttl_leased())
            .map_err(LifecycleError::Unreachable)?
    }

    fn lower_ttl_leased(&self) -> Result<u64, LifecycleError> {
        let Some(spec) = &self.plan.dns else {
            return Ok(0);
        };
        let names = self.site_names();
        let plans = cutover::restrict(
            &self.zone_plans().map_err(LifecycleError::Unreachable)?,
            &names,
        );
        if spec.lower_ttl.is_some() {
            cutover::lower_ttl(spec, &plans, &self.ledger)
                .map_err(|e| LifecycleError::Unreachable(format!("lowering TTLs: {e}")))?;
        }
        // Plans read before the TTLs were lowered are stale now.
        *self.zone_plans.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let plans = cutover::restrict(
            &self.zone_plans().map_err(LifecycleError::Unreachable)?,
            &names,
        );
        Ok(cutover::seconds_until_safe(
            &plans,
            &self.ledger.history(&names),
            now(),
        ))
    }

    /// Whether any site of the plan is confirmed on the new side.
    pub fn any_confirmed(&self) -> bool {
        self.sites
            .iter()
            .any(|s| self.state_of(&s.name) == SiteState::Confirmed)
    }

    /// Puts the original TTLs back on the new values of every confirmed site's RRsets (the
    /// soak is over once the sites are confirmed). Returns what it did.
    ///
    /// # Errors
    /// The DNS server refuses a key or the journal cannot be written.
    pub fn restore_ttl(&self) -> Result<cutover::Outcome, LifecycleError> {
        self.leased(DNS_UNIT, || self.restore_ttl_leased())
            .map_err(LifecycleError::Unreachable)?
    }

    fn restore_ttl_leased(&self) -> Result<cutover::Outcome, LifecycleError> {
        let Some(spec) = &self.plan.dns else {
            return Ok(cutover::Outcome::default());
        };
        let names: Vec<String> = self
            .sites
            .iter()
            .filter(|s| self.state_of(&s.name) == SiteState::Confirmed)
            .flat_map(names_of)
            .collect();
        if names.is_empty() {
            return Ok(cutover::Outcome::default());
        }
        cutover::rollback(spec, &self.ledger, &[], &names, true)
            .map_err(|e| LifecycleError::Unreachable(format!("restoring TTLs: {e}")))
    }
}

/// The migration report, read without taking the run lock (so `status` works while a run
/// goes on).
///
/// # Errors
/// The sites cannot be expanded, or the journal cannot be read.
pub fn report(
    loaded: &Loaded,
    connections: &Connections,
) -> Result<crate::report::lifecycle::MigrationReport, LifecycleError> {
    let inventory = expand_sites(loaded, connections);
    if let Some(i) = inventory.unreachable.first() {
        return Err(LifecycleError::Unreachable(format!(
            "expanding the sites: {}",
            i.message
        )));
    }
    // The journal streamed through the folds, one entry at a time: never held whole.
    let mut folding = super::state::Fold::default();
    let mut facts = super::window::Facts::default();
    let (mut dns, mut overrides) = (Vec::new(), Vec::new());
    super::ledger::visit(&loaded.plan, |e| {
        folding.add(&e);
        facts.add(&e);
        overrides.extend(super::status::override_row(&e));
        if let Entry::Dns(d) = e {
            dns.push(d);
        }
    })?;
    let statuses = folding.finish();
    let windows = super::window::of_sites(&inventory.sites, &statuses, &facts, now());
    drop(facts);
    let mut report = super::status::build(
        &loaded.plan.name,
        &inventory.sites,
        loaded.plan.cutover.batch,
        statuses,
        windows,
        &dns,
        overrides,
    );
    if let Some(config) = super::ledger::pg_config(&loaded.plan)? {
        report.leases = crate::journal::postgres::held_leases(&config)?
            .into_iter()
            .map(|l| {
                crate::report::lifecycle::LeaseRow::new(
                    l.unit,
                    l.holder,
                    l.expires_at,
                    l.expires_in_ms,
                )
            })
            .collect();
    }
    Ok(report)
}

/// The first address `records` give `name` (A or AAAA).
fn address_in(records: &[(RrKey, RrState)], name: &str) -> Option<IpAddr> {
    let fqdn = crate::dns::query::fqdn(name);
    records
        .iter()
        .find(|(k, _)| k.name == fqdn)
        .and_then(|(_, s)| s.values.iter().find_map(|v| v.parse::<IpAddr>().ok()))
}

/// The site's domains as absolute DNS names.
fn names_of(site: &Site) -> Vec<String> {
    site.domains
        .iter()
        .map(|d| crate::dns::query::fqdn(d))
        .collect()
}

/// A hook command with the site's values quoted for the shell (a path with a space or a
/// quote in it stays one word and runs nothing).
fn render_shell(template: &Template, site: &Site) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    template.render(|v| {
        Some(quote(&match v {
            "name" => site.name.clone(),
            "path" => site.source_path.display().to_string(),
            "host" => site.source_host.clone(),
            "target_path" => site.target_path.display().to_string(),
            "target_host" => site.target_host.clone(),
            "kind" => site.kind.as_str().to_string(),
            _ => return None,
        }))
    })
}

/// Fault injection for crash tests at chosen points (random instants are `scripts/chaos`'s):
/// Whether a catalog fact differs only by a sequence's last value (what writes to a still
/// serving source advance).
fn only_a_sequence_advanced(fact: &crate::db::verify::FactDiff) -> bool {
    let before_value = |v: &Option<String>| {
        v.as_deref()
            .and_then(|v| v.rsplit_once("; last value "))
            .map(|(rest, _)| rest.to_string())
    };
    let (a, b) = (before_value(&fact.source), before_value(&fact.target));
    a.is_some() && a == b
}

/// `TRANSHUMANCE_FAULT=after:<state>` kills the process with SIGKILL right after the journal
/// records that state for any site; `after:dns_intent:<phase>` right after a DNS intent of that
/// phase is durable, before its update is sent.
fn fault_point(entry: &Entry) {
    let Ok(spec) = std::env::var("TRANSHUMANCE_FAULT") else {
        return;
    };
    let Some(at) = spec.strip_prefix("after:") else {
        return;
    };
    let label = |v: serde_json::Value| v.as_str().map(str::to_string);
    let hit = match entry {
        Entry::Site { state, .. } => {
            serde_json::to_value(state).ok().and_then(label) == Some(at.to_string())
        }
        Entry::Dns(DnsEvent::DnsIntent { phase, .. }) => {
            at.strip_prefix("dns_intent:").is_some_and(|p| {
                serde_json::to_value(phase).ok().and_then(label) == Some(p.to_string())
            })
        }
        _ => false,
    };
    if hit {
        // SAFETY: signalling our own process; SIGKILL cannot be caught, like `kill -9`.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pre_sync_excuses_a_sequence_that_advanced_and_nothing_else() {
        let fact = |a: Option<&str>, b: Option<&str>| crate::db::verify::FactDiff {
            fact: "sequence public.orders_id_seq".into(),
            source: a.map(str::to_string),
            target: b.map(str::to_string),
        };
        let seq = "bigint start 1 increment 1 min 1 max 9223372036854775807; last value ";
        assert!(only_a_sequence_advanced(&fact(
            Some(&format!("{seq}812")),
            Some(&format!("{seq}640"))
        )));
        // Another definition, a missing sequence, or another kind of fact: not excused.
        assert!(!only_a_sequence_advanced(&fact(
            Some(&format!("{seq}812")),
            Some("integer start 1 increment 1 min 1 max 2147483647; last value 640")
        )));
        assert!(!only_a_sequence_advanced(&fact(
            Some(&format!("{seq}1")),
            None
        )));
        assert!(!only_a_sequence_advanced(&fact(
            Some("owner app"),
            Some("owner web")
        )));
    }

    #[test]
    fn hook_values_are_quoted_for_the_shell() {
        let t = Template::parse("touch {path}/.maintenance # {name}", &["path", "name"]).unwrap();
        let site = Site {
            kind: crate::plan::UnitKind::Web,
            relink: None,
            name: "it's".into(),
            rule: 0,
            source_host: "old".into(),
            source_path: "/srv/a b".into(),
            target_host: "new".into(),
            target_path: "/srv/new".into(),
            domains: vec![],
            databases: vec![],
            exclude: vec![],
            owner: None,
            marks: vec![],
            tls: None,
        };
        assert_eq!(
            render_shell(&t, &site),
            "touch '/srv/a b'/.maintenance # 'it'\\''s'"
        );
    }
}
