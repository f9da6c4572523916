//! The dry run: discovers the real state of every unit read-only and builds the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use super::connections::Connections;
use super::guard::Live;
use super::inventory::expand_sites;
use crate::db::discover as db;
use crate::db::plan::{self as db_plan, DbAction};
use crate::dns::query;
use crate::event::{Event, Observer};
use crate::mail::courier_pass::CourierDirs;
use crate::mail::{imap_move, maildir, maildir_pass};
use crate::plan::raw::{DbEngine, DevicePolicy};
use crate::plan::secret::SecretRef;
use crate::plan::units::human_bytes;
use crate::plan::{DnsSpec, Loaded, MailRule, Plan, Severity, Site};
use crate::report::files::ActionKind;
use crate::report::*;
use crate::sync::diff::is_internal;
use crate::sync::plan::{self as sync_plan, SyncPlan};
use crate::sync::{Endpoint, SyncError, SyncOptions};
use crate::tree::{EntryKind, ScanSummary};
use crate::unit::UnitId;

/// The note of the VHFFS panel's own database in the dry run.
pub const PANEL_LAST: &str =
    "the panel: moved last, by the cutover that confirms the plan's last site";

/// Throughput assumed until pre-syncs measure real figures.
const ASSUMED_BYTES_PER_SEC: u64 = 100 * 1024 * 1024;
const ASSUMED_FILES_PER_SEC: u64 = 2_000;
const ASSUMED_MESSAGES_PER_SEC: u64 = 200;

/// A target file system, told apart by host, size and free bytes.
type TargetSpace = (String, u64, u64);

/// Looks at everything the plan would move, changes nothing, and reports.
pub fn dry_run(
    loaded: &Loaded,
    connections: &Connections,
    observer: &dyn Observer,
) -> DryRunReport {
    dry_run_with(loaded, connections, observer, false)
}

/// As `dry_run`; with `itemize`, each site's plan lists every action path by path, not only
/// its deletes.
pub fn dry_run_with(
    loaded: &Loaded,
    connections: &Connections,
    observer: &dyn Observer,
    itemize: bool,
) -> DryRunReport {
    reviewed(loaded, connections, observer, itemize).report
}

/// What a dry run showed, with the values a saved plan keeps of it (`plan --out`): the sites it
/// expanded and the DNS changes of their names, as the cutover's own computation made them.
pub struct Reviewed {
    pub report: DryRunReport,
    pub sites: Vec<Site>,
    pub dns: Vec<crate::dns::cutover::Change>,
}

/// The dry run, keeping what it reviewed (see `Reviewed`).
pub fn reviewed(
    loaded: &Loaded,
    connections: &Connections,
    observer: &dyn Observer,
    itemize: bool,
) -> Reviewed {
    let plan = &loaded.plan;
    let mut dns_changes = Vec::new();
    let mut report = DryRunReport {
        schema_version: 2,
        plan: plan.name.clone(),
        plan_file: plan.file.display().to_string(),
        generated_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        ..Default::default()
    };
    for w in &loaded.warnings {
        report.risks.push(Risk::warning(
            w.code.unwrap_or("plan_warning"),
            w.path.clone(),
            w.message.clone(),
        ));
    }
    observer.on_event(&Event::PhaseStarted {
        phase: "inventory".into(),
        total: plan.site_rules.len() as u64,
    });
    let inventory = expand_sites(loaded, connections);
    observer.on_event(&Event::PhaseFinished {
        phase: "inventory".into(),
    });
    for i in &inventory.unreachable {
        report.risks.push(Risk::error(
            "unreachable",
            i.path.clone(),
            i.message.clone(),
        ));
    }
    for i in &inventory.issues {
        let kind = i.code.unwrap_or("discovery_failed");
        let risk = if i.severity == Severity::Error {
            Risk::error(kind, i.path.clone(), i.message.clone())
        } else {
            Risk::warning(kind, i.path.clone(), i.message.clone())
        };
        report.risks.push(risk);
    }
    // Databases and mail as the inventory's verdicts restrict them: what it leaves out is
    // moved by no rule, and listed under `unmigrated` instead.
    let restricted = inventory.restricted(plan);
    if let Some(panel) = &inventory.panel {
        panel_risks(&restricted, panel, &mut report.risks);
    }
    let live = live_units(plan, &inventory.sites, &mut report.risks);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.defaults.jobs)
        .build()
        .expect("thread pool");
    observer.on_event(&Event::PhaseStarted {
        phase: "sites".into(),
        total: inventory.sites.len() as u64,
    });
    let sites: Vec<(SiteReport, Option<TargetSpace>, crate::panel::PanelIds)> =
        pool.install(|| {
            inventory
                .sites
                .par_iter()
                .map(|s| {
                    let mut r = site_report(plan, s, connections, itemize);
                    r.0.live = live
                        .why(&UnitId::Site(s.name.clone()))
                        .map(|b| b.to_string());
                    match &r.0.error {
                        Some(e) => observer.on_event(&Event::UnitFailed {
                            phase: "sites".into(),
                            unit: s.name.clone(),
                            error: e.clone(),
                        }),
                        None => observer.on_event(&Event::UnitDone {
                            phase: "sites".into(),
                            unit: s.name.clone(),
                        }),
                    }
                    r
                })
                .collect()
        });
    observer.on_event(&Event::PhaseFinished {
        phase: "sites".into(),
    });
    // Free space per target file system: identified by host, size and free bytes.
    let mut needs: BTreeMap<(String, u64, u64), u64> = BTreeMap::new();
    // The owners the copies keep, by target host: what the panel knows and what the scans saw.
    let site_refs: Vec<&Site> = inventory.sites.iter().collect();
    let mut ids = super::ids::known(inventory.panel.as_ref(), &site_refs);
    for ((_, _, seen), s) in sites.iter().zip(&inventory.sites) {
        ids.entry(s.target_host.clone()).or_default().extend(seen);
    }
    report.risks.extend(super::ids::risks(&ids, connections));
    for (site, space, _) in sites {
        if let Some(because) = &site.live {
            // The lifecycle's sync leaves a site that may serve from the new side alone.
            report.risks.push(Risk::warning(
                "live_unit",
                site.name.clone(),
                format!(
                    "may be live on the new side ({because}): `sync` leaves it alone; its plan is what `--allow-live site:{}` would do",
                    site.name
                ),
            ));
            report.sites.push(site);
            continue;
        }
        if let Some((host, total, free)) = space {
            *needs.entry((host, total, free)).or_default() += site.bytes_to_send;
        }
        if let Some(e) = &site.error {
            report
                .risks
                .push(Risk::error("unreachable", site.name.clone(), e.clone()));
        } else {
            if site.delete_files > 0 {
                report.risks.push(Risk::warning(
                    "target_not_empty",
                    site.name.clone(),
                    format!(
                        "`{}` holds {} not at the source: the sync will delete {}, {}",
                        site.target,
                        plural(site.extra_at_target, "file", "files"),
                        plural(site.delete_files, "file", "files"),
                        human_bytes(site.delete_bytes)
                    ),
                ));
            }
            if let Some(why) = &site.refusal {
                report.risks.push(Risk::error(
                    "unsafe_delete",
                    site.name.clone(),
                    format!("the sync would refuse: {why}"),
                ));
            }
            // Each device node the sync refuses, by path and numbers: the site would fail.
            let refused = site.plan.iter().flat_map(|p| &p.actions);
            for a in refused.filter(|a| a.action == ActionKind::Refuse) {
                report.risks.push(Risk::error(
                    "device_refused",
                    site.name.clone(),
                    format!("`{}`: {}", a.path, a.note.as_deref().unwrap_or_default()),
                ));
            }
            // Copied, but without the flag: the operator sets it again at the target.
            for f in &site.flagged {
                report
                    .risks
                    .push(Risk::warning("flag_not_kept", site.name.clone(), f.clone()));
            }
            if site.unreadable > 0 {
                report.risks.push(Risk::error(
                    "unreadable_files",
                    site.name.clone(),
                    format!("{} path(s) at the source cannot be read", site.unreadable),
                ));
            }
        }
        report.sites.push(site);
    }
    for ((host, _, free), need) in needs {
        if need > free {
            report.risks.push(Risk::error(
                "insufficient_space",
                host.clone(),
                format!(
                    "needs {} for the sites but has {} free",
                    human_bytes(need),
                    human_bytes(free)
                ),
            ));
        } else if need > free / 10 * 9 {
            report.risks.push(Risk::warning(
                "insufficient_space",
                host.clone(),
                format!(
                    "the sites would fill {} of {} free",
                    human_bytes(need),
                    human_bytes(free)
                ),
            ));
        }
    }

    // The sites' certificates, judged as the probe before the switch will judge them.
    report.certificates = pool.install(|| {
        super::tls_files::certificates(plan, &inventory.sites, connections, &mut report.risks)
    });
    // Each pair of remote hosts: direct (the source reaches the target's sshd) or relayed.
    for p in super::direct::check(&restricted, &inventory.sites, connections) {
        let subject = format!("{} -> {}", p.source, p.target);
        if p.refused {
            report.risks.push(Risk::error(
                "direct_path",
                subject,
                format!("`transfer: direct`, but {}", p.detail),
            ));
        } else if p.path == "relay" && restricted.defaults.transfer.is_none() {
            report.risks.push(Risk::warning(
                "relayed",
                subject,
                format!("the data goes through this machine: {}", p.detail),
            ));
        }
        report.transfer.push(crate::report::TransferPath {
            source: p.source,
            target: p.target,
            path: p.path,
            detail: p.detail,
        });
    }
    if let Some(f) = &plan.cutover.forward {
        report.mail_forward = super::forward::mail_ports(f, &inventory.sites);
    }
    databases(&restricted, connections, &live, observer, &mut report);
    mail(&restricted, connections, observer, &mut report);
    observer.on_event(&Event::PhaseStarted {
        phase: "unmigrated".into(),
        total: 0,
    });
    report.unmigrated = super::unmigrated::find(&restricted, &inventory, connections, true);
    if let Some(panel) = &inventory.panel {
        report.panel_rows = super::panel_rows::rows(&restricted, panel);
        if let Some(crate::plan::InventorySource::Vhffs(v)) = &plan.inventory
            && !panel.quotas.is_empty()
        {
            let (rows, risk) = super::quotas::review(v, &panel.quotas, connections);
            report.panel_rows.push(rows);
            report.risks.extend(risk);
        }
    }
    observer.on_event(&Event::PhaseFinished {
        phase: "unmigrated".into(),
    });
    if let Some(dns) = &plan.dns {
        observer.on_event(&Event::PhaseStarted {
            phase: "dns".into(),
            total: dns.zones.len() as u64,
        });
        // The TSIG key is checked once, before the zones: a wrong secret is an error now, not
        // at `lower-ttl`; transfers signed with a rejected key are not tried zone by zone.
        let key_usable = tsig_risks(dns, &mut report.risks);
        // The zones as the cutover plans them (`Migration::zone_plans`, one computation): what
        // the dry run shows is what a cutover would switch, read from the same server.
        let mut planned: Vec<Option<_>> = if key_usable {
            crate::dns::cutover::plan_zones(dns, &dns.zones)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            dns.zones.iter().map(|_| None).collect()
        };
        // The cutover switches the sites' names only (all of a zone in a DNS-only plan), and
        // its checks are judged on those: so are the dry run's.
        let names: HashSet<String> = inventory
            .sites
            .iter()
            .flat_map(|s| s.domains.iter().map(|d| query::fqdn(d)))
            .collect();
        let history = super::ledger::read(plan)
            .map(|e| super::ledger::dns_events(&e))
            .unwrap_or_default();
        for (i, zone) in dns.zones.iter().enumerate() {
            let pre = planned[i].take();
            let (zone_report, changes) = zone_report(
                zone,
                dns,
                pre,
                (plan.cutover.at, key_usable),
                (&names, &history),
                &mut report.risks,
            );
            report.dns.push(zone_report);
            dns_changes.extend(changes);
            observer.on_event(&Event::UnitDone {
                phase: "dns".into(),
                unit: zone.clone(),
            });
        }
        observer.on_event(&Event::PhaseFinished {
            phase: "dns".into(),
        });
    }
    finish(&mut report, plan.defaults.bwlimit);
    Reviewed {
        report,
        sites: inventory.sites,
        dns: dns_changes,
    }
}

/// What the panel holds that the plan's other sections must carry: its databases need a
/// `databases:` rule, its Maildirs a `mail:` rule; plus the panel's own findings.
fn panel_risks(plan: &Plan, panel: &crate::panel::PanelInventory, risks: &mut Vec<Risk>) {
    risks.extend(panel.risks.iter().cloned());
    for d in &panel.databases {
        let engine_matches = |e: DbEngine| match d.engine.as_str() {
            "postgres" => e == DbEngine::Postgres,
            _ => e != DbEngine::Postgres,
        };
        if !plan
            .databases
            .iter()
            .any(|r| engine_matches(r.engine) && super::databases::selects(r, &d.name))
        {
            let message = format!(
                "{} database `{}` of the panel is selected by no `databases:` rule of its engine",
                d.engine, d.name
            );
            // A site's database without a rule stops the cutover of that site.
            risks.push(if d.site.is_some() {
                Risk::error("database_not_selected", d.name.clone(), message)
            } else {
                Risk::warning("database_not_selected", d.name.clone(), message)
            });
        }
    }
    if !panel.mailboxes.is_empty()
        && let Some(crate::plan::InventorySource::Vhffs(v)) = &plan.inventory
    {
        let boxes = v.datadir.join("mail").join("boxes");
        let covered = plan.mail.iter().any(|m| match m {
            MailRule::Maildir {
                from_host,
                from_path,
                ..
            } => from_host == &v.data_host && boxes.starts_with(from_path),
            MailRule::Imap { .. } => false,
        });
        if !covered {
            risks.push(Risk::warning(
                "mail_not_moved",
                v.data_host.clone(),
                format!(
                    "the panel has {} mail box(es) under `{}` and no `mail:` rule (layout `maildir`) moves that tree",
                    panel.mailboxes.len(),
                    boxes.display()
                ),
            ));
        }
    }
}

/// Which units may be live on the new side, from the journal (read without its lock, as
/// `status` does): the same rule the lifecycle's verbs apply before they write.
fn live_units(plan: &Plan, sites: &[Site], risks: &mut Vec<Risk>) -> Live {
    let entries = match super::ledger::read(plan) {
        Ok(e) => e,
        Err(e) => {
            risks.push(Risk::warning(
                "discovery_failed",
                plan.state_dir.display().to_string(),
                format!("cannot read the journal ({e}): sites live on the new side are not known"),
            ));
            Vec::new()
        }
    };
    let switched = super::ledger::switched_names_of(&entries);
    let mut states = BTreeMap::new();
    for e in entries {
        if let super::ledger::Entry::Site { site, state, .. } = e {
            states.insert(site, state);
        }
    }
    Live::new(states, sites).with_switched_names(switched, sites)
}

/// The file sync the lifecycle runs for a site (`sync`, `cutover`): the target mirrors the
/// source, it serves no one before the switch. The dry run plans, and verification judges,
/// with exactly these options.
pub fn site_sync_options(plan: &Plan, site: &Site, force: bool) -> SyncOptions {
    // What the freeze creates at the source is never carried over, compared or deleted there.
    let freeze_files = plan
        .cutover
        .freeze_files
        .iter()
        .map(|f| crate::tree::exclude::literal(&f.render_name(&site.name)));
    SyncOptions {
        delete: true,
        jobs: plan.defaults.jobs.max(1),
        exclude: site.exclude.iter().cloned().chain(freeze_files).collect(),
        force,
        bwlimit: plan.defaults.bwlimit,
        devices: plan.devices(site) == DevicePolicy::Keep,
        relink: site.relink.as_deref().cloned(),
        xattrs: plan.keep_xattrs(site).xattrs,
        acls: plan.keep_xattrs(site).acls,
        manifest: plan.defaults.manifest_hint.then(|| {
            crate::sync::manifest::Hint::under(
                &plan.state_dir,
                &site.target_host,
                &site.target_path,
                true,
            )
        }),
        ..SyncOptions::default()
    }
}

fn site_report(
    plan: &Plan,
    s: &Site,
    connections: &Connections,
    itemize: bool,
) -> (SiteReport, Option<TargetSpace>, crate::panel::PanelIds) {
    let mut r = SiteReport {
        name: s.name.clone(),
        source: format!("{}:{}", s.source_host, s.source_path.display()),
        target: format!("{}:{}", s.target_host, s.target_path.display()),
        domains: s.domains.clone(),
        owner: s.owner.map(|(u, g)| format!("{u}:{g}")),
        marks: s.marks.clone(),
        kind: (s.kind != crate::plan::UnitKind::Web).then(|| s.kind.as_str().to_string()),
        check: super::repo_check::command(s),
        relink: s
            .relink
            .as_ref()
            .map(|r| format!("{} -> {}", r.from.display(), r.to.display())),
        target_state: "unknown".into(),
        ..Default::default()
    };
    let ends = connections.get(&s.source_host).and_then(|src| {
        connections.get(&s.target_host).map(|dst| {
            (
                Endpoint {
                    transport: src,
                    root: s.source_path.clone(),
                },
                Endpoint {
                    transport: dst,
                    root: s.target_path.clone(),
                },
            )
        })
    });
    let (src, dst) = match ends {
        Ok(e) => e,
        Err(e) => {
            r.error = Some(e.to_string());
            return (r, None, Default::default());
        }
    };
    let options = site_sync_options(plan, s, false);
    let planned = sync_plan::scan_both(&src, &dst, &options).and_then(|(source, target)| {
        sync_plan::plan_listed(&src, &dst, &options, &source, &target).map(|p| (p, source, target))
    });
    let (files, source, target) = match planned {
        Ok(p) => p,
        Err(SyncError::SourceMissing(_)) => {
            r.error = Some(format!(
                "source `{}` does not exist on host `{}`",
                s.source_path.display(),
                s.source_host
            ));
            return (r, None, Default::default());
        }
        Err(e) => {
            r.error = Some(e.to_string());
            return (r, None, Default::default());
        }
    };
    render_site_plan(&files, &source, &target, itemize, &mut r);
    let space = dst
        .transport
        .space(&s.target_path)
        .ok()
        .map(|sp| (s.target_host.clone(), sp.total_bytes, sp.free_bytes));
    (r, space, crate::panel::PanelIds::of_scan(&source))
}

/// Fills the counts of `r` from the engine's plan (and facts of the listings: what is at the
/// source, whether the target exists); no decision is taken here.
fn render_site_plan(
    plan: &SyncPlan,
    source: &ScanSummary,
    target: &ScanSummary,
    itemize: bool,
    r: &mut SiteReport,
) {
    r.unreadable = source.errors.len() as u64;
    r.flagged = plan
        .flagged
        .iter()
        .map(|(p, what)| format!("{}: {what}", String::from_utf8_lossy(p)))
        .collect();
    for e in &source.entries {
        match e.kind {
            EntryKind::Dir => r.dirs += 1,
            EntryKind::Symlink => r.symlinks += 1,
            EntryKind::File | EntryKind::Other => {}
        }
    }
    let t = plan.totals();
    r.files = t.source_files;
    r.bytes = t.source_bytes;
    r.new_files = t.new_files;
    r.changed_files = t.changed_files;
    r.unchanged_files = t.unchanged_files;
    r.metadata_only = t.metadata_only;
    r.files_to_send = t.files_to_send;
    r.bytes_to_send = t.bytes_to_send;
    r.delta_files = t.delta_files;
    r.local_copies = t.local_copies;
    r.hardlinks = t.hardlinks;
    r.extra_at_target = t.extra_files;
    r.delete_files = t.delete_files;
    r.delete_bytes = t.delete_bytes;
    r.refusal = plan.refusal.clone();
    let ours_only = target.entries.iter().all(|e| is_internal(&e.path));
    r.target_state = if !target.exists {
        "missing"
    } else if ours_only {
        "empty"
    } else if t.extra_files > 0 {
        "populated"
    } else {
        "partial copy"
    }
    .into();
    r.plan = Some(plan.summary(itemize));
}

pub(crate) fn engine_name(e: DbEngine) -> &'static str {
    match e {
        DbEngine::Mysql => "mysql",
        DbEngine::Mariadb => "mariadb",
        DbEngine::Postgres => "postgres",
    }
}

/// Under `mode: replicate`, how the rule's databases will reach the target at the cutover, in
/// words for each database's note: replicated, or dumped and why (the prerequisites the
/// servers miss, also reported as risks).
fn replication_verdict(
    plan: &Plan,
    rule: &crate::plan::DatabaseRule,
    connections: &Connections,
    report: &mut DryRunReport,
) -> Option<Verdict> {
    if rule.mode != crate::plan::raw::DbMode::Replicate {
        return None;
    }
    let subject = format!("databases[{}]", rule.index);
    if rule.engine == DbEngine::Postgres {
        return Some(postgres_replication_verdict(
            plan,
            rule,
            connections,
            report,
            subject,
        ));
    }
    let said = |all: String| {
        Some(Verdict {
            all,
            each: BTreeMap::new(),
        })
    };
    let (from, to) = match (
        connections.get(&rule.from.host),
        connections.get(&rule.to.host),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return said("final delta: replication not checked (a host is unreachable)".into()),
    };
    let ch = crate::db::replication::Channel::new(
        &plan.name,
        crate::db::transfer::Endpoint {
            transport: from.as_ref(),
            server: &rule.from,
        },
        crate::db::transfer::Endpoint {
            transport: to.as_ref(),
            server: &rule.to,
        },
    );
    let checked = crate::db::replication::prerequisites(&ch);
    for n in &checked.notes {
        report.risks.push(Risk::warning(
            "replication_note",
            subject.clone(),
            n.clone(),
        ));
    }
    if checked.problems.is_empty() {
        return said(format!(
            "final delta: replicated (connection `{}`, account `{}` on the source)",
            ch.name, ch.account
        ));
    }
    let why = checked.problems.join("; ");
    report.risks.push(Risk::warning(
        "replication_fallback",
        subject,
        format!("replication impossible, dumped at the cutover instead: {why}"),
    ));
    said(format!("final delta: dumped at the cutover ({why})"))
}

/// PostgreSQL under `mode: replicate`, per database: replicated by logical replication, or
/// dumped at the cutover and why: `wal_level`, a table without a replica identity, or no room
/// left in the source's budget of replication slots and WAL senders (one of each per database,
/// given in the databases' order).
fn postgres_replication_verdict(
    plan: &Plan,
    rule: &crate::plan::DatabaseRule,
    connections: &Connections,
    report: &mut DryRunReport,
    subject: String,
) -> Verdict {
    let Ok(from) = connections.get(&rule.from.host) else {
        return Verdict {
            all: "final delta: replication not checked (a host is unreachable)".into(),
            each: BTreeMap::new(),
        };
    };
    let names = db::list_databases(from.as_ref(), rule.engine, &rule.from)
        .map(|l| {
            l.into_iter()
                .map(|d| d.name)
                .filter(|n| super::databases::selects(rule, n))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let end = crate::db::transfer::Endpoint {
        transport: from.as_ref(),
        server: &rule.from,
    };
    let (server, per_db) = crate::db::replication::pg_prerequisites(&end, &names);
    let mut each = BTreeMap::new();
    if !server.problems.is_empty() {
        let mut said = server.problems.clone();
        for (db, tables) in per_db.iter().filter(|(_, t)| !t.is_empty()) {
            said.push(format!(
                "`{db}` has tables without a replica identity: {}",
                tables.join(", ")
            ));
        }
        let why = said.join("; ");
        report.risks.push(Risk::warning(
            "replication_fallback",
            subject,
            format!("replication impossible, dumped at the cutover instead: {why}"),
        ));
        return Verdict {
            all: format!("final delta: dumped at the cutover ({why})"),
            each,
        };
    }
    let (slots, senders) = crate::db::pg_replication::free_budget(&end).unwrap_or((0, 0));
    let mut room = slots.min(senders);
    for (db, tables) in &per_db {
        let why = if !tables.is_empty() {
            Some(format!(
                "`{db}` has tables without a replica identity: {}",
                tables.join(", ")
            ))
        } else if room < 1 {
            Some(format!(
                "`{db}` is beyond the source's replication budget ({slots} free slot(s), {senders} free WAL sender(s), one of each per database)"
            ))
        } else {
            room -= 1;
            None
        };
        let note = match why {
            Some(why) => {
                report.risks.push(Risk::warning(
                    "replication_fallback",
                    subject.clone(),
                    format!("dumped at the cutover instead of replicated: {why}"),
                ));
                format!("final delta: dumped at the cutover ({why})")
            }
            None => {
                let n = crate::db::pg_replication::name(&plan.name, &rule.from, db);
                format!(
                    "final delta: replicated (publication, slot and subscription `{n}`, role `{n}` on the source)"
                )
            }
        };
        each.insert(db.clone(), note);
    }
    Verdict {
        all: "final delta: replicated".into(),
        each,
    }
}

/// A rule's final-delta words: the same for every database, or its own for some.
struct Verdict {
    all: String,
    each: BTreeMap<String, String>,
}

impl Verdict {
    fn of(&self, database: &str) -> String {
        self.each.get(database).unwrap_or(&self.all).clone()
    }
}

fn databases(
    plan: &Plan,
    connections: &Connections,
    live: &Live,
    observer: &dyn Observer,
    report: &mut DryRunReport,
) {
    let panel = super::databases::panel_database(plan).map(|(r, name)| (r.index, name));
    for rule in &plan.databases {
        let engine = engine_name(rule.engine);
        observer.on_event(&Event::PhaseStarted {
            phase: format!("databases[{}]", rule.index),
            total: 0,
        });
        let listed = connections
            .get(&rule.from.host)
            .map_err(|e| e.to_string())
            .and_then(|t| db::list_databases(t.as_ref(), rule.engine, &rule.from));
        let source = match listed {
            Ok(list) => list,
            Err(e) => {
                report.risks.push(Risk::error(
                    crate::db::failure_kind(&e).label(),
                    format!("{engine} on {}", rule.from.host),
                    e,
                ));
                continue;
            }
        };
        // Each database's comment at the target: our marker makes an earlier copy ours.
        let target: Result<HashMap<String, String>, String> = connections
            .get(&rule.to.host)
            .map_err(|e| e.to_string())
            .and_then(|t| db::database_comments(t.as_ref(), rule.engine, &rule.to));
        let target_kind = target.as_ref().err().map(|e| crate::db::failure_kind(e));
        if let (Err(e), Some(kind)) = (&target, target_kind) {
            report.risks.push(Risk::error(
                kind.label(),
                format!("{engine} on {}", rule.to.host),
                e.clone(),
            ));
        }
        let final_delta = replication_verdict(plan, rule, connections, report);
        let mut matched = 0;
        for d in source
            .into_iter()
            .filter(|d| super::databases::selects(rule, &d.name))
        {
            matched += 1;
            let (action, note) = match &target {
                // The lifecycle's sync leaves a database that may serve from the new side there.
                _ if live.why(&UnitId::Database(d.name.clone())).is_some() => (
                    "left_alone".to_string(),
                    live.why(&UnitId::Database(d.name.clone())).map(|b| {
                        format!("may be live on the new side ({b}): `sync` leaves it there")
                    }),
                ),
                Err(_) => (
                    "error".to_string(),
                    Some(match target_kind {
                        Some(crate::unit::ErrorKind::Authentication) => {
                            "the target server refused our login".to_string()
                        }
                        Some(crate::unit::ErrorKind::Unreachable) => {
                            "target server unreachable".to_string()
                        }
                        _ => "the target server could not be read".to_string(),
                    }),
                ),
                Ok(t) => {
                    let planned = db_plan::decide(
                        &d.name,
                        t.get(&d.name).map(String::as_str),
                        &plan.name,
                        rule.conflict,
                    );
                    let policy = format!("{:?}", rule.conflict).to_lowercase();
                    let exists = format!(
                        "database `{}` already exists on `{}` and is not ours",
                        d.name, rule.to.host
                    );
                    let note = match planned.action {
                        DbAction::Create => None,
                        DbAction::ReplaceOurs => {
                            Some("our copy from an earlier sync: replaced".to_string())
                        }
                        DbAction::Conflict => {
                            report.risks.push(Risk::error(
                                "database_conflict",
                                d.name.clone(),
                                format!("{exists}: policy `{policy}` stops its move"),
                            ));
                            Some(format!("exists at the target, policy `{policy}`"))
                        }
                        DbAction::Skip | DbAction::ReplaceTheirs => {
                            let what = if planned.action == DbAction::Skip {
                                "left alone"
                            } else {
                                "replaced"
                            };
                            report.risks.push(Risk::warning(
                                "database_conflict",
                                d.name.clone(),
                                format!("{exists}: policy `{policy}`, {what}"),
                            ));
                            Some(format!("exists at the target, policy `{policy}`: {what}"))
                        }
                    };
                    (planned.action.as_str().to_string(), note)
                }
            };
            // The panel describes every other object: the cutover moves it once they all have.
            let note = if panel.as_ref() == Some(&(rule.index, d.name.clone())) {
                Some(match note {
                    Some(n) => format!("{PANEL_LAST}; {n}"),
                    None => PANEL_LAST.to_string(),
                })
            } else {
                note
            };
            let note = match (final_delta.as_ref().map(|v| v.of(&d.name)), note) {
                (None, n) => n,
                (Some(f), None) => Some(f),
                (Some(f), Some(n)) => Some(format!("{n}; {f}")),
            };
            let tables = match (rule.engine, d.tables) {
                (DbEngine::Postgres, _) => connections
                    .get(&rule.from.host)
                    .ok()
                    .and_then(|t| db::postgres_table_count(t.as_ref(), &rule.from, &d.name).ok()),
                (_, n) => n,
            };
            report.databases.push(DatabaseReport {
                engine: engine.into(),
                source_host: rule.from.host.clone(),
                target_host: rule.to.host.clone(),
                name: d.name,
                bytes: d.bytes,
                tables,
                charset: d.charset,
                collation: d.collation,
                engines: d.engines,
                users: d.users,
                action,
                note,
            });
        }
        // A set, not a search per name: a rule may list thousands of databases by name.
        let found: std::collections::HashSet<&str> =
            report.databases.iter().map(|d| d.name.as_str()).collect();
        for name in &rule.names {
            if !name.contains(['*', '?', '[']) && !found.contains(name.as_str()) {
                report.risks.push(Risk::error(
                    "discovery_failed",
                    name.clone(),
                    format!("database `{name}` does not exist on `{}`", rule.from.host),
                ));
            }
        }
        if matched == 0 && rule.names.iter().all(|n| n.contains(['*', '?', '['])) {
            report.risks.push(Risk::warning(
                "discovery_failed",
                format!("databases[{}]", rule.index),
                "no database matches the rule",
            ));
        }
        observer.on_event(&Event::PhaseFinished {
            phase: format!("databases[{}]", rule.index),
        });
    }
}

fn mail(
    plan: &Plan,
    connections: &Connections,
    observer: &dyn Observer,
    report: &mut DryRunReport,
) {
    for rule in &plan.mail {
        match rule {
            MailRule::Maildir {
                index,
                from_host,
                from_path,
                to_host,
                to_path,
                exclude,
                convert,
            } => {
                observer.on_event(&Event::PhaseStarted {
                    phase: format!("mail[{index}]"),
                    total: 0,
                });
                // The pass's own excludes, and what the inventory leaves out of the tree.
                let skip: Vec<String> = maildir::excludes()
                    .into_iter()
                    .chain(exclude.iter().cloned())
                    .collect();
                let source = connections
                    .get(from_host)
                    .and_then(|t| t.scan(from_path, &skip));
                let target = connections
                    .get(to_host)
                    .and_then(|t| t.scan(to_path, &skip));
                let source = match source {
                    Ok(s) if s.exists => s,
                    Ok(_) => {
                        report.risks.push(Risk::error(
                            "discovery_failed",
                            format!("mail[{index}]"),
                            format!("`{}` does not exist on `{from_host}`", from_path.display()),
                        ));
                        continue;
                    }
                    Err(e) => {
                        report.risks.push(Risk::error(
                            "unreachable",
                            format!("mail[{index}]"),
                            e.to_string(),
                        ));
                        continue;
                    }
                };
                // The engine's own matching (`plan_sync`): renames count as present.
                let target = match target {
                    Ok(t) => t,
                    Err(e) => {
                        report.risks.push(Risk::error(
                            "unreachable",
                            format!("mail[{index}]"),
                            e.to_string(),
                        ));
                        ScanSummary::default()
                    }
                };
                let courier = CourierDirs::of(&source);
                if convert.is_none() && !courier.uiddb.is_empty() {
                    report.risks.push(Risk::warning(
                        "courier_not_converted",
                        format!("mail[{index}]"),
                        format!(
                            "{} Courier-IMAP folder(s) (`courierimapuiddb`) under `{}` would be copied as they are: a Dovecot target numbers their messages anew (clients download everything again); set `convert: courier-to-dovecot` on the rule, or `convert: none` for a Courier target",
                            courier.uiddb.len(),
                            from_path.display()
                        ),
                    ));
                }
                // With a conversion, the same listings the pass compares (names at the target).
                let ends = connections.get(from_host).and_then(|s| {
                    connections.get(to_host).map(|d| {
                        (
                            Endpoint {
                                transport: s,
                                root: from_path.clone(),
                            },
                            Endpoint {
                                transport: d,
                                root: to_path.clone(),
                            },
                        )
                    })
                });
                let planned = ends.map_err(SyncError::from).and_then(|(s, d)| {
                    maildir_pass::planned_listings(&s, &d, source.clone(), target.clone(), *convert)
                });
                let (source, target) = match planned {
                    Ok(l) => l,
                    Err(e) => {
                        report.risks.push(Risk::error(
                            "unreachable",
                            format!("mail[{index}]"),
                            e.to_string(),
                        ));
                        (source, target)
                    }
                };
                for b in maildir_pass::plan_sync(&source, &target) {
                    report.mail.push(MailboxReport {
                        layout: "maildir".into(),
                        source: format!("{from_host}:{}", from_path.join(&b.mailbox).display()),
                        target: format!("{to_host}:{}", to_path.join(&b.mailbox).display()),
                        mailbox: b.mailbox,
                        folders: b.folders,
                        messages: b.messages,
                        bytes: b.bytes,
                        messages_at_target: b.present,
                        to_copy: b.to_copy,
                        flag_updates: b.renames,
                        error: None,
                    });
                }
                observer.on_event(&Event::PhaseFinished {
                    phase: format!("mail[{index}]"),
                });
            }
            MailRule::Imap {
                index,
                from,
                to,
                users_file,
                ..
            } => {
                let users = match read_users(users_file) {
                    Ok(u) => u,
                    Err(e) => {
                        report.risks.push(Risk::error(
                            "discovery_failed",
                            format!("mail[{index}]"),
                            e,
                        ));
                        continue;
                    }
                };
                observer.on_event(&Event::PhaseStarted {
                    phase: format!("mail[{index}]"),
                    total: users.len() as u64,
                });
                for u in users {
                    let mut m = MailboxReport {
                        layout: "imap".into(),
                        source: format!("{}:{}", from.host, from.port),
                        target: format!("{}:{}", to.host, to.port),
                        mailbox: u.source_user.clone(),
                        ..Default::default()
                    };
                    // The engine's own matching (`ImapStep::Plan`), so the figures are what a
                    // sync would do, not a comparison of counts.
                    let planned = u.source_password.resolve().and_then(|sp| {
                        let tp = u.target_password.resolve()?;
                        let account = imap_move::Account {
                            from,
                            to,
                            source_user: &u.source_user,
                            source_password: &sp,
                            target_user: &u.target_user,
                            target_password: &tp,
                        };
                        imap_move::run(&account, imap_move::ImapStep::Plan, None)
                    });
                    match planned {
                        Ok(a) => {
                            m.folders = a.folders;
                            m.messages = a.messages;
                            m.messages_at_target = a.present;
                            m.to_copy = a.copied;
                            m.flag_updates = a.flags_updated;
                            if let Some(f) = a.failures.first() {
                                m.error = Some(f.clone());
                            }
                        }
                        Err(e) => m.error = Some(e),
                    }
                    if let Some(e) = &m.error {
                        report
                            .risks
                            .push(Risk::error("unreachable", m.mailbox.clone(), e.clone()));
                    }
                    observer.on_event(&Event::UnitDone {
                        phase: format!("mail[{index}]"),
                        unit: m.mailbox.clone(),
                    });
                    report.mail.push(m);
                }
                observer.on_event(&Event::PhaseFinished {
                    phase: format!("mail[{index}]"),
                });
            }
        }
    }
}

/// One row of an IMAP users file.
#[derive(Debug, Clone)]
pub struct ImapUser {
    pub source_user: String,
    pub source_password: SecretRef,
    pub target_user: String,
    pub target_password: SecretRef,
}

/// Reads `source_user,source_password,target_user,target_password` rows (passwords as
/// `env:VAR` or `file:PATH`; `#` starts a comment; an optional header line is skipped).
///
/// # Errors
/// An unreadable file or a malformed row, with its line number.
pub fn read_users(path: &std::path::Path) -> Result<Vec<ImapUser>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read users file `{}`: {e}", path.display()))?;
    let secret = |s: &str, line: usize| -> Result<SecretRef, String> {
        if let Some(v) = s.strip_prefix("env:") {
            Ok(SecretRef::Env(v.into()))
        } else if let Some(f) = s.strip_prefix("file:") {
            Ok(SecretRef::File(
                path.parent().unwrap_or(std::path::Path::new(".")).join(f),
            ))
        } else {
            Err(format!(
                "{}:{line}: passwords are given as `env:VAR` or `file:PATH`, never inline",
                path.display()
            ))
        }
    };
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("source_user")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 4 {
            return Err(format!(
                "{}:{}: expected 4 fields (source_user,source_password,target_user,target_password), found {}",
                path.display(),
                i + 1,
                f.len()
            ));
        }
        users.push(ImapUser {
            source_user: f[0].into(),
            source_password: secret(f[1], i + 1)?,
            target_user: f[2].into(),
            target_password: secret(f[3], i + 1)?,
        });
    }
    Ok(users)
}

/// The plan's TSIG key checked against its primary (a signed SOA query): a rejected key or a
/// secret that cannot be read is an `error` risk. Whether the key can be used for transfers.
fn tsig_risks(dns: &DnsSpec, risks: &mut Vec<Risk>) -> bool {
    use crate::dns::provider::DnsError;
    match crate::dns::tsig::check_plan_key(dns) {
        Ok(crate::dns::tsig::KeyCheck::SecretUnavailable(why)) => {
            risks.push(Risk::error(
                "tsig_secret",
                "dns.provider.tsig",
                format!("{why}: zone transfers and every DNS change need it"),
            ));
            false
        }
        Ok(_) => true,
        Err(e @ DnsError::TsigRejected { .. }) => {
            risks.push(Risk::error(
                "tsig_rejected",
                "dns.provider.tsig",
                format!("{e}: zone transfers and every DNS change would fail"),
            ));
            false
        }
        Err(e @ DnsError::Invalid(_)) => {
            risks.push(Risk::error(
                "tsig_secret",
                "dns.provider.tsig",
                e.to_string(),
            ));
            false
        }
        // An unreachable primary: its zones' reads say so, each with its own risk.
        Err(_) => true,
    }
}

fn zone_report(
    zone: &str,
    dns: &DnsSpec,
    pre_planned: Option<Result<crate::dns::cutover::ZonePlan, crate::dns::cutover::CutoverError>>,
    (cutover_at, key_usable): (Option<SystemTime>, bool),
    (names, history): (&HashSet<String>, &[crate::dns::provider::DnsEvent]),
    risks: &mut Vec<Risk>,
) -> (ZoneReport, Vec<crate::dns::cutover::Change>) {
    let timeout = Duration::from_secs(3);
    let mut z = ZoneReport {
        zone: zone.into(),
        ..Default::default()
    };
    // Servers that answer only signed questions are asked with the plan's key.
    let plan_key = crate::dns::tsig::plan_key(dns).ok().flatten();
    let auth = plan_key.as_ref().filter(|_| key_usable).map_or(
        crate::dns::tsig::Auth::None,
        crate::dns::tsig::PlanKey::auth,
    );
    for server in &dns.nameservers {
        let state =
            match query::soa_serial_with(*server, zone, timeout, auth).map_err(|e| e.to_string()) {
                Ok(serial) => ServerState {
                    server: server.to_string(),
                    serial: Some(serial),
                    error: None,
                },
                Err(e) => {
                    risks.push(Risk::error("unreachable", zone, e.clone()));
                    ServerState {
                        server: server.to_string(),
                        serial: None,
                        error: Some(e),
                    }
                }
            };
        z.servers.push(state);
    }
    let serials: HashSet<u32> = z.servers.iter().filter_map(|s| s.serial).collect();
    if serials.len() > 1 {
        risks.push(Risk::warning(
            "servers_disagree",
            zone,
            format!(
                "authoritative servers give different SOA serials: {}",
                z.servers
                    .iter()
                    .filter_map(|s| s.serial.map(|n| format!("{} {n}", s.server)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let server = z
        .servers
        .iter()
        .position(|s| s.serial.is_some())
        .map(|i| dns.nameservers[i]);
    if !key_usable || (server.is_none() && !dns.nameservers.is_empty()) {
        return (z, Vec::new());
    }
    // What the cutover would switch, planned as it plans it (no server listed: the provider's
    // own copy, such as zone files).
    let planned = pre_planned.unwrap_or_else(|| crate::dns::cutover::plan_zone(dns, zone));
    // A zone that cannot be read cannot be switched either: the cutover would fail on it.
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            risks.push(Risk::error(
                "discovery_failed",
                zone,
                format!("{e}: cannot list the records that would switch"),
            ));
            return (z, Vec::new());
        }
    };
    for r in &plan.txt_risks {
        risks.push(Risk::warning(
            "txt_names_old_address",
            r.name.clone(),
            format!("{r}: update it by hand with the switch"),
        ));
    }
    for n in &plan.unverified_servers {
        risks.push(Risk::warning(
            "unverified_nameserver",
            zone,
            format!("name server {n} is not checked after the switch"),
        ));
    }
    // Only the selection's records: a left-out site's names are neither judged nor shown.
    let mut plan = plan;
    if !names.is_empty() {
        plan.changes.retain(|c| names.contains(&c.key.name));
        plan.settled.retain(|(k, _)| names.contains(&k.name));
    }
    let selected = if plan.changes.is_empty() && !names.is_empty() {
        Vec::new()
    } else {
        vec![plan.clone()]
    };
    for f in crate::dns::cutover::checks(dns, &selected, history, crate::journal::now()) {
        // TTLs are lowered by `run` (or `dns lower-ttl`) after the dry run: a wait, not a fault.
        if f.check == crate::check::Check::TtlNotExpired {
            risks.push(Risk::warning(
                "ttl_not_expired",
                f.subject.clone(),
                format!(
                    "{}: `cutover` refuses it until then (`run` lowers and waits)",
                    f.reason
                ),
            ));
        } else {
            risks.push(Risk::error(
                "check_refuses",
                f.subject.clone(),
                format!(
                    "the cutover would refuse it: {f} (a plan key or `--allow {}` lets it through)",
                    f.check
                ),
            ));
        }
    }
    let changes = plan.changes.clone();
    for c in plan.changes {
        let (name, rtype, ttl, new_ttl) = (c.key.name, c.key.rtype, c.from.ttl, c.to.ttl);
        if let Some(at) = cutover_at {
            let needed = SystemTime::now() + Duration::from_secs(u64::from(ttl));
            if ttl > new_ttl && needed > at {
                risks.push(Risk::warning(
                    "ttl_too_high",
                    format!("{name} {rtype}"),
                    format!("TTL {ttl}s cannot expire before the planned cutover: lower it now (`dns lower-ttl`) or move the cutover"),
                ));
            }
        } else if dns.lower_ttl.is_none() && ttl > 3600 {
            risks.push(Risk::warning("ttl_too_high", format!("{name} {rtype}"), format!("TTL {ttl}s: resolvers may keep the old address that long after the switch; set `dns.lower_ttl`")));
        }
        z.changes.push(DnsChange {
            name,
            rtype,
            ttl,
            new_ttl,
            from: c.from.values,
            to: c.to.values,
        });
    }
    (z, changes)
}

fn finish(report: &mut DryRunReport, bwlimit: Option<u64>) {
    let t = &mut report.totals;
    t.sites = report.sites.len() as u64;
    for s in &report.sites {
        t.files += s.files;
        t.bytes += s.bytes;
        if s.live.is_some() {
            continue; // left alone by `sync`
        }
        t.files_to_send += s.files_to_send;
        t.bytes_to_send += s.bytes_to_send;
        t.delete_files += s.delete_files;
        t.delete_bytes += s.delete_bytes;
    }
    t.databases = report.databases.len() as u64;
    t.database_bytes = report.databases.iter().map(|d| d.bytes).sum();
    t.mailboxes = report.mail.len() as u64;
    t.messages = report.mail.iter().map(|m| m.messages).sum();
    t.mail_bytes = report.mail.iter().map(|m| m.bytes).sum();
    t.dns_changes = report.dns.iter().map(|z| z.changes.len() as u64).sum();
    t.unmigrated = report.unmigrated.kinds.iter().map(|k| k.count).sum();
    t.unmigrated_bytes = report.unmigrated.kinds.iter().filter_map(|k| k.bytes).sum();
    report.risks.sort_by(|a, b| {
        (&a.severity, &a.kind, &a.subject).cmp(&(&b.severity, &b.kind, &b.subject))
    });
    t.errors = report
        .risks
        .iter()
        .filter(|r| r.severity == "error")
        .count() as u64;
    t.warnings = report.risks.len() as u64 - t.errors;
    let rate = bwlimit.map_or(ASSUMED_BYTES_PER_SEC, |b| b.min(ASSUMED_BYTES_PER_SEC));
    let mail_messages = report
        .mail
        .iter()
        .filter(|m| m.layout == "imap")
        .map(|m| m.messages)
        .sum::<u64>();
    let seconds = (t.bytes_to_send + t.database_bytes + t.mail_bytes) / rate
        + t.files_to_send / ASSUMED_FILES_PER_SEC
        + mail_messages / ASSUMED_MESSAGES_PER_SEC;
    report.estimate = Estimate {
        seconds,
        basis: format!(
            "assumed {}/s, {ASSUMED_FILES_PER_SEC} files/s and {ASSUMED_MESSAGES_PER_SEC} IMAP messages/s until a pre-sync measures this platform",
            human_bytes(rate)
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn entry(p: &str, size: u64, mtime: i128) -> Entry {
        Entry {
            path: p.as_bytes().to_vec(),
            kind: EntryKind::File,
            size,
            mtime_ns: mtime,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            nlink: 1,
            dev: 1,
            ino: 1,
            rdev: 0,
            link_target: None,
        }
    }

    fn listing(entries: Vec<Entry>) -> ScanSummary {
        ScanSummary {
            exists: true,
            root_meta: None,
            entries,
            errors: vec![],
            ..ScanSummary::default()
        }
    }

    /// The counts come from the engine's plan: nanoseconds decide, extra files are deleted
    /// (the lifecycle mirrors), our partial files are neither extra nor a populated target.
    #[test]
    fn site_counts_are_the_engine_plan() {
        let leftover = format!(
            "{}/{}-1-0",
            crate::tree::root::TEMP_DIR,
            crate::tree::root::temp_key(b"c")
        );
        let src = listing(vec![
            entry("a", 10, 5_000_000_000),
            entry("b", 20, 1),
            entry("c", 30, 1),
            entry("d", 40, 1),
        ]);
        let dst = listing(vec![
            entry("a", 10, 5_000_000_001),
            entry("b", 21, 1),
            entry("d", 40, 1),
            entry("z", 1, 1),
            entry(&leftover, 15, 1),
        ]);
        let options = SyncOptions {
            delete: true,
            ..SyncOptions::default()
        };
        let plan = sync_plan::decide(&src, &dst, &options, None);
        let mut r = SiteReport::default();
        render_site_plan(&plan, &src, &dst, false, &mut r);
        assert_eq!(
            (
                r.new_files,
                r.changed_files,
                r.unchanged_files,
                r.bytes_to_send,
                r.extra_at_target,
                r.delete_files,
                r.delete_bytes
            ),
            (1, 2, 1, 60, 1, 1, 1)
        );
        assert_eq!(r.target_state, "populated");
        let mut only_ours = SiteReport::default();
        let partial = listing(vec![
            Entry {
                kind: EntryKind::Dir,
                ..entry(crate::tree::root::TEMP_DIR, 0, 1)
            },
            entry(&leftover, 15, 1),
        ]);
        let plan = sync_plan::decide(&src, &partial, &options, None);
        render_site_plan(&plan, &src, &partial, false, &mut only_ours);
        assert_eq!(
            (only_ours.target_state.as_str(), only_ours.extra_at_target),
            ("empty", 0)
        );
        assert_eq!(only_ours.delete_files, 0);
    }
}
