//! The dry run for a terminal: aligned tables, one section per kind of unit.

use std::fmt::Write;

use super::{DryRunReport, Unmigrated, plural};
use crate::plan::units::{human_bytes, human_duration};

pub(crate) fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, header.to_vec());
    for r in rows {
        line(out, r.iter().map(String::as_str).collect());
    }
}

pub fn render(r: &DryRunReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(
        o,
        "Dry run of plan `{}` ({}): nothing was changed anywhere\n",
        r.plan, r.plan_file
    );
    let _ = writeln!(
        o,
        "Sites: {} · {} · {} at the source · {} / {} to send",
        t.sites,
        plural(t.files, "file", "files"),
        human_bytes(t.bytes),
        plural(t.files_to_send, "file", "files"),
        human_bytes(t.bytes_to_send)
    );
    if t.delete_files > 0 {
        let _ = writeln!(
            o,
            "The syncs will delete {}, {} at the targets (not at the sources)",
            plural(t.delete_files, "file", "files"),
            human_bytes(t.delete_bytes)
        );
    }
    if !r.sites.is_empty() {
        // Owners and marks come from a panel inventory: shown only when a site has them.
        let owners = r
            .sites
            .iter()
            .any(|s| s.owner.is_some() || !s.marks.is_empty());
        let rows: Vec<Vec<String>> = r
            .sites
            .iter()
            .map(|s| {
                let mut name = s.title();
                if owners {
                    name = format!("{name} [{}]", s.owner.as_deref().unwrap_or("-"));
                    for m in &s.marks {
                        name = format!("{name} ({m})");
                    }
                }
                vec![
                    name,
                    format!("{} -> {}", s.source, s.target),
                    s.files.to_string(),
                    human_bytes(s.bytes),
                    format!("{} ({})", human_bytes(s.bytes_to_send), s.files_to_send),
                    s.delete_label(),
                    s.error
                        .clone()
                        .map(|e| format!("error: {e}"))
                        .unwrap_or_else(|| s.target_label()),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "SITE",
                "SOURCE -> TARGET",
                "FILES",
                "SIZE",
                "TO SEND (FILES)",
                "TO DELETE",
                "TARGET",
            ],
            &rows,
        );
    }
    let _ = writeln!(
        o,
        "\nDatabases: {} · {}",
        t.databases,
        human_bytes(t.database_bytes)
    );
    if !r.databases.is_empty() {
        let rows: Vec<Vec<String>> = r
            .databases
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.engine.clone(),
                    format!("{} -> {}", d.source_host, d.target_host),
                    human_bytes(d.bytes),
                    d.tables
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into()),
                    d.charset_label(),
                    d.users_label(),
                    match &d.note {
                        Some(n) => format!("{}: {n}", d.action),
                        None => d.action.clone(),
                    },
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "DATABASE", "ENGINE", "HOSTS", "SIZE", "TABLES", "CHARSET", "USERS", "ACTION",
            ],
            &rows,
        );
    }
    let _ = writeln!(
        o,
        "\nMail: {} · {} · {}",
        plural(t.mailboxes, "mailbox", "mailboxes"),
        plural(t.messages, "message", "messages"),
        human_bytes(t.mail_bytes)
    );
    if !r.mail.is_empty() {
        let rows: Vec<Vec<String>> = r
            .mail
            .iter()
            .map(|m| {
                vec![
                    m.mailbox.clone(),
                    m.layout.clone(),
                    m.folders.to_string(),
                    m.messages.to_string(),
                    human_bytes(m.bytes),
                    m.error
                        .clone()
                        .map(|e| format!("error: {e}"))
                        .unwrap_or_else(|| m.messages_at_target.to_string()),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "MAILBOX",
                "LAYOUT",
                "FOLDERS",
                "MESSAGES",
                "SIZE",
                "AT TARGET",
            ],
            &rows,
        );
    }
    let _ = writeln!(o, "\nDNS: {}", plural(t.dns_changes, "change", "changes"));
    for z in &r.dns {
        let servers: Vec<String> = z
            .servers
            .iter()
            .map(|s| match (&s.serial, &s.error) {
                (Some(serial), _) => format!("{} serial {serial}", s.server),
                (None, Some(e)) => format!("{} error: {e}", s.server),
                _ => s.server.clone(),
            })
            .collect();
        let _ = writeln!(o, "  zone {} ({})", z.zone, servers.join(", "));
        for c in &z.changes {
            let _ = writeln!(
                o,
                "    ~ {} {} ttl {}->{}: {} -> {}",
                c.name,
                c.rtype,
                c.ttl,
                c.new_ttl,
                c.from.join(" "),
                c.to.join(" ")
            );
        }
        if z.changes.is_empty() {
            let _ = writeln!(o, "    (no record holds a switched address)");
        }
    }
    if let Some(c) = &r.certificates {
        let _ = writeln!(o, "\nCertificates: {}", c.headline());
        let rows: Vec<Vec<String>> = c
            .sites
            .iter()
            .map(|s| {
                vec![
                    s.site.clone(),
                    s.cert.clone(),
                    s.status.clone(),
                    s.not_after.clone().unwrap_or_else(|| "-".into()),
                    s.detail.clone(),
                ]
            })
            .collect();
        table(
            &mut o,
            &["SITE", "CERTIFICATE", "STATUS", "NOT AFTER", "DETAIL"],
            &rows,
        );
        if let Some(s) = &c.schedule {
            let _ = writeln!(o, "  Issuance schedule ({}):", s.ca);
            for line in &s.summary {
                let _ = writeln!(o, "    {line}");
            }
            if let Some(line) = c.orders_line(10) {
                let _ = writeln!(o, "    new orders: {line}");
            }
            let _ = writeln!(o, "    limits: {}", s.limits.join("; "));
        }
    }
    if !r.panel_rows.is_empty() {
        let _ = writeln!(o, "\nPanel rows (no tree carries them):");
        table(
            &mut o,
            &["KIND", "COUNT", "MOVED", "HOW"],
            &super::panel_rows_table(&r.panel_rows),
        );
    }
    o.push('\n');
    o.push_str(&unmigrated(&r.unmigrated));
    let _ = writeln!(
        o,
        "\nRisks: {} error(s), {} warning(s)",
        t.errors, t.warnings
    );
    for k in &r.risks {
        let _ = writeln!(
            o,
            "  {:<7} {:<20} {}: {}",
            k.severity, k.kind, k.subject, k.message
        );
    }
    let _ = writeln!(
        o,
        "\nEstimated duration of a first full sync: {} ({})",
        human_duration(std::time::Duration::from_secs(r.estimate.seconds)),
        r.estimate.basis
    );
    o
}

/// What the plan leaves at the source: per kind, then each object with why it stays (shared by
/// the dry run and `inventory`).
pub fn unmigrated(u: &Unmigrated) -> String {
    let mut o = String::new();
    let count: u64 = u.kinds.iter().map(|k| k.count).sum();
    let bytes: u64 = u.kinds.iter().filter_map(|k| k.bytes).sum();
    let _ = writeln!(
        o,
        "Left at the source, moved by no rule: {} · {}{}",
        plural(count, "object", "objects"),
        human_bytes(bytes),
        if u.sized {
            ""
        } else {
            " measured (directories are measured by `plan`)"
        }
    );
    if count == 0 {
        return o;
    }
    let size = |b: Option<u64>| b.map_or_else(|| "-".to_string(), human_bytes);
    let rows: Vec<Vec<String>> = u
        .kinds
        .iter()
        .map(|k| {
            vec![
                k.kind.clone(),
                k.count.to_string(),
                size(k.bytes),
                k.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&mut o, &["KIND", "COUNT", "SIZE", "NOTE"], &rows);
    if !u.items.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = u
            .items
            .iter()
            .map(|i| {
                vec![
                    i.kind.clone(),
                    i.name.clone(),
                    i.state_text(),
                    size(i.bytes),
                    i.source.clone().unwrap_or_default(),
                    i.reason.clone(),
                ]
            })
            .collect();
        table(
            &mut o,
            &["KIND", "NAME", "PANEL STATE", "SIZE", "WHERE", "WHY"],
            &rows,
        );
    }
    o
}
