//! `transhumance inventory PLAN`: every unit the plan's site rules and its `inventory:` source
//! expand to, for review before anything moves (text, or `--yaml` / `--json` to export).

use std::fmt::Write as _;
use std::path::Path;

use super::exit;
use super::printer::Printer;
use crate::lifecycle::{Connections, default_agent_binary, expand_sites};
use crate::panel::{InventoryExport, MovedDatabase, SiteUnit};
use crate::report::plural;
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
    let (moved_databases, unlisted) = moved_databases(&loaded.plan, &inventory, &connections);
    for why in &unlisted {
        printer.status(format!("warning: {why}"));
    }
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
        moved_databases,
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

/// The databases the plan's rules select on their source servers, each with the site that
/// names it; and the rules whose server could not be listed, in words.
fn moved_databases(
    plan: &crate::plan::Plan,
    inventory: &crate::lifecycle::Inventory,
    connections: &Connections,
) -> (Vec<MovedDatabase>, Vec<String>) {
    let restricted = inventory.restricted(plan);
    let mut out = Vec::new();
    let mut unlisted = Vec::new();
    for rule in &restricted.databases {
        match crate::lifecycle::databases::names(rule, connections, &[]) {
            Ok(names) => out.extend(names.into_iter().map(|name| {
                MovedDatabase {
                    site: inventory
                        .sites
                        .iter()
                        .find(|s| {
                            s.databases
                                .iter()
                                .any(|d| d.name == name && d.fits(rule.engine))
                        })
                        .map(|s| s.name.clone()),
                    engine: crate::lifecycle::dry_run::engine_name(rule.engine).to_string(),
                    rule: format!("databases[{}]", rule.index),
                    name,
                }
            })),
            Err(e) => unlisted.push(format!(
                "databases[{}]: the databases of `{}` could not be listed: {e}",
                rule.index, rule.from.host
            )),
        }
    }
    (out, unlisted)
}

/// The inventory as tables for a terminal.
fn render(e: &InventoryExport<'_>, width: Option<usize>) -> String {
    let mut o = String::new();
    let suspended = e.sites.iter().filter(|s| !s.marks.is_empty()).count();
    let n = |n: usize, one: &str, many: &str| plural(n as u64, one, many);
    let in_panel = if e.databases.is_empty() {
        String::new()
    } else {
        format!(" ({} in the panel)", e.databases.len())
    };
    let _ = writeln!(
        o,
        "Inventory from {}: {} ({suspended} marked), {}, {}, {} moved{in_panel}, {}, {}, {}, {}, {}\n",
        e.source,
        n(e.sites.len(), "site", "sites"),
        plural(e.groups, "group", "groups"),
        plural(e.users, "user", "users"),
        n(e.moved_databases.len(), "database", "databases"),
        n(e.mail_domains.len(), "mail domain", "mail domains"),
        n(e.mailboxes.len(), "mail box", "mail boxes"),
        n(e.zones.len(), "zone", "zones"),
        n(e.lists.len(), "mailing list", "mailing lists"),
        n(e.cron_jobs.len(), "cron job", "cron jobs")
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
    if !rows.is_empty() {
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
    }
    if !e.moved_databases.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = e
            .moved_databases
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.engine.clone(),
                    d.rule.clone(),
                    d.site.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            &mut o,
            &["DATABASE MOVED", "ENGINE", "RULE", "MOVES WITH"],
            &rows,
            width,
        );
    }
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
