//! `transhumance inventory PLAN`: every unit the plan's site rules and its `inventory:` source
//! expand to, for review before anything moves (text, or `--yaml` / `--json` to export).

use std::fmt::Write as _;
use std::path::Path;

use super::exit;
use super::printer::Printer;
use crate::lifecycle::{Connections, default_agent_binary, expand_sites};
use crate::panel::{InventoryExport, SiteUnit};
use crate::report::text::table;

pub fn run(path: &Path, yaml: bool, printer: &Printer) -> u8 {
    let loaded = match super::validate::load_or_report(path, printer) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let inventory = expand_sites(&loaded, &connections);
    let shown = inventory
        .unreachable
        .iter()
        .chain(&inventory.issues)
        .filter(|i| i.is_error() || !printer.quiet);
    eprint!("{}", super::diagnostics::render_all(shown, &loaded.source));
    if !inventory.unreachable.is_empty() {
        return exit::FAILURES;
    }
    if inventory.issues.iter().any(|i| i.is_error()) {
        return exit::INVALID;
    }
    // What the plan leaves at the source: from the panel and the database servers, without
    // scanning the data roots (the dry run measures them).
    let unmigrated = crate::lifecycle::unmigrated::find(
        &inventory.restricted(&loaded.plan),
        &inventory,
        &connections,
        false,
    );
    let panel = inventory.panel.as_ref();
    let export = InventoryExport {
        source: panel.map_or("the plan's `sites:` rules", |p| p.source.as_str()),
        groups: panel.map_or(0, |p| p.groups),
        users: panel.map_or(0, |p| p.users),
        sites: inventory.sites.iter().map(SiteUnit::of).collect(),
        databases: panel.map_or(&[], |p| &p.databases),
        mail_domains: panel.map_or(&[], |p| &p.mail_domains),
        mailboxes: panel.map_or(&[], |p| &p.mailboxes),
        zones: panel.map_or(&[], |p| &p.zones),
        lists: panel.map_or(&[], |p| &p.lists),
        cron_jobs: panel.map_or(&[], |p| &p.cron_jobs),
        quotas: panel.map_or(&[], |p| &p.quotas),
        risks: panel.map_or(&[], |p| &p.risks),
        unmigrated: Some(&unmigrated),
    };
    if printer.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&export).expect("inventory serializes")
        );
    } else if yaml {
        match serde_saphyr::to_string(&export) {
            Ok(text) => super::printer::out(&text),
            Err(e) => {
                printer.error(format!("cannot write the inventory as YAML: {e}"));
                return exit::FAILURES;
            }
        }
    } else {
        super::printer::out(&render(&export, super::printer::text_width()));
    }
    if export.risks.iter().any(|r| r.severity == "error") {
        exit::FAILURES
    } else {
        exit::OK
    }
}

/// The inventory as tables for a terminal.
fn render(e: &InventoryExport<'_>, width: Option<usize>) -> String {
    let mut o = String::new();
    let suspended = e.sites.iter().filter(|s| !s.marks.is_empty()).count();
    let _ = writeln!(
        o,
        "Inventory from {}: {} site(s) ({suspended} marked), {} group(s), {} user(s), {} database(s), {} mail domain(s), {} mail box(es), {} zone(s), {} mailing list(s), {} cron job(s)\n",
        e.source,
        e.sites.len(),
        e.groups,
        e.users,
        e.databases.len(),
        e.mail_domains.len(),
        e.mailboxes.len(),
        e.zones.len(),
        e.lists.len(),
        e.cron_jobs.len()
    );
    let marks = |m: &[String]| m.join(", ");
    let rows: Vec<Vec<String>> = e
        .sites
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.owner.clone().unwrap_or_else(|| "-".into()),
                format!("{} -> {}", s.source, s.target),
                s.domains.join(" "),
                s.databases.join(" "),
                marks(&s.marks),
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "SITE",
            "OWNER",
            "SOURCE -> TARGET",
            "DOMAINS",
            "DATABASES",
            "MARKS",
        ],
        &rows,
        width,
    );
    if !e.databases.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = e
            .databases
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.engine.clone(),
                    d.user.clone(),
                    d.gid.to_string(),
                    d.site.clone().unwrap_or_else(|| "-".into()),
                    marks(&d.marks),
                ]
            })
            .collect();
        table(
            &mut o,
            &["DATABASE", "ENGINE", "USER", "GID", "MOVES WITH", "MARKS"],
            &rows,
            width,
        );
    }
    if !e.mailboxes.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = e
            .mailboxes
            .iter()
            .map(|b| vec![b.address.clone(), b.maildir.clone(), marks(&b.marks)])
            .collect();
        table(&mut o, &["MAIL BOX", "MAILDIR", "MARKS"], &rows, width);
    }
    if !e.zones.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = e
            .zones
            .iter()
            .map(|z| {
                vec![
                    z.zone.clone(),
                    z.serial.to_string(),
                    z.records.to_string(),
                    marks(&z.marks),
                ]
            })
            .collect();
        table(
            &mut o,
            &["ZONE", "SERIAL", "RECORDS", "MARKS"],
            &rows,
            width,
        );
    }
    if let Some(u) = e.unmigrated {
        o.push('\n');
        o.push_str(&crate::report::text::unmigrated(u, width));
    }
    if !e.risks.is_empty() {
        let _ = writeln!(o, "\nRisks: {}", e.risks.len());
        for r in e.risks {
            let _ = writeln!(o, "  {} {}: {}", r.severity, r.kind, r.message);
        }
    }
    o
}
