//! The dry run as Markdown, for a ticket or a change request.

use std::fmt::Write;

use super::{DryRunReport, plural};
use crate::plan::units::{human_bytes, human_duration};

/// Text made safe for one Markdown table cell.
pub(crate) fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(r: &DryRunReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(o, "# Dry run: `{}`\n", cell(&r.plan));
    let _ = writeln!(
        o,
        "Plan file `{}`, generated {}. Nothing was changed anywhere.\n",
        cell(&r.plan_file),
        r.generated_at
    );
    let _ = writeln!(o, "| | count | size |\n|---|---:|---:|");
    let _ = writeln!(o, "| sites | {} | {} |", t.sites, human_bytes(t.bytes));
    let _ = writeln!(
        o,
        "| files to send | {} | {} |",
        t.files_to_send,
        human_bytes(t.bytes_to_send)
    );
    if t.delete_files > 0 {
        let _ = writeln!(
            o,
            "| files to delete at the targets | {} | {} |",
            t.delete_files,
            human_bytes(t.delete_bytes)
        );
    }
    let _ = writeln!(
        o,
        "| databases | {} | {} |",
        t.databases,
        human_bytes(t.database_bytes)
    );
    let _ = writeln!(
        o,
        "| mailboxes / messages | {} / {} | {} |",
        t.mailboxes,
        t.messages,
        human_bytes(t.mail_bytes)
    );
    let _ = writeln!(o, "| DNS changes | {} | |", t.dns_changes);
    let _ = writeln!(
        o,
        "| left at the source | {} | {} |",
        t.unmigrated,
        human_bytes(t.unmigrated_bytes)
    );
    let _ = writeln!(
        o,
        "| risks | {} errors, {} warnings | |\n",
        t.errors, t.warnings
    );
    if !r.risks.is_empty() {
        let _ = writeln!(
            o,
            "## Risks\n\n| severity | kind | subject | message |\n|---|---|---|---|"
        );
        for k in &r.risks {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {} |",
                k.severity,
                k.kind,
                cell(&k.subject),
                cell(&k.message)
            );
        }
        o.push('\n');
    }
    if !r.sites.is_empty() {
        let _ = writeln!(
            o,
            "## Sites\n\n| site | source | target | files | size | to send | to delete | target state |\n|---|---|---|---:|---:|---:|---:|---|"
        );
        for s in &r.sites {
            let state = s
                .error
                .as_deref()
                .map(|e| format!("error: {e}"))
                .unwrap_or_else(|| s.target_label());
            let _ = writeln!(
                o,
                "| {} | `{}` | `{}` | {} | {} | {} ({}) | {} | {} |",
                cell(&s.title()),
                cell(&s.source),
                cell(&s.target),
                s.files,
                human_bytes(s.bytes),
                human_bytes(s.bytes_to_send),
                plural(s.files_to_send, "file", "files"),
                s.delete_label(),
                cell(&state)
            );
        }
        o.push('\n');
    }
    if !r.databases.is_empty() {
        let _ = writeln!(
            o,
            "## Databases\n\n| database | engine | source → target | size | tables | charset | users | action |\n|---|---|---|---:|---:|---|---|---|"
        );
        for d in &r.databases {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} → {} | {} | {} | {} | {} | {}{} |",
                cell(&d.name),
                d.engine,
                cell(&d.source_host),
                cell(&d.target_host),
                human_bytes(d.bytes),
                d.tables
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "–".into()),
                cell(&d.charset_label()),
                cell(&d.users_label()),
                d.action,
                d.note
                    .as_deref()
                    .map(|n| format!(": {}", cell(n)))
                    .unwrap_or_default()
            );
        }
        o.push('\n');
    }
    if !r.mail.is_empty() {
        let _ = writeln!(
            o,
            "## Mail\n\n| mailbox | layout | folders | messages | size | at target |\n|---|---|---:|---:|---:|---:|"
        );
        for m in &r.mail {
            let at = m
                .error
                .as_deref()
                .map(|e| format!("error: {}", cell(e)))
                .unwrap_or_else(|| m.messages_at_target.to_string());
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} |",
                cell(&m.mailbox),
                m.layout,
                m.folders,
                m.messages,
                human_bytes(m.bytes),
                at
            );
        }
        o.push('\n');
    }
    if !r.dns.is_empty() {
        let _ = writeln!(o, "## DNS\n");
        for z in &r.dns {
            let _ = writeln!(o, "### `{}`\n", cell(&z.zone));
            for s in &z.servers {
                match (&s.serial, &s.error) {
                    (Some(serial), _) => {
                        let _ = writeln!(o, "- `{}`: serial {serial}", s.server);
                    }
                    (None, Some(e)) => {
                        let _ = writeln!(o, "- `{}`: error: {}", s.server, cell(e));
                    }
                    _ => {}
                }
            }
            if z.changes.is_empty() {
                let _ = writeln!(o, "\nNo record holds a switched address.\n");
                continue;
            }
            let _ = writeln!(o, "\n```diff");
            for c in &z.changes {
                for v in &c.from {
                    let _ = writeln!(o, "- {} {} {} {}", c.name, c.ttl, c.rtype, v);
                }
                for v in &c.to {
                    let _ = writeln!(o, "+ {} {} {} {}", c.name, c.new_ttl, c.rtype, v);
                }
            }
            let _ = writeln!(o, "```\n");
        }
    }
    if let Some(c) = &r.certificates {
        let _ = writeln!(
            o,
            "## Certificates\n\n{}\n\n| site | certificate | status | not after | detail |\n|---|---|---|---|---|",
            cell(&c.headline())
        );
        for s in &c.sites {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {} | {} |",
                cell(&s.site),
                cell(&s.cert),
                s.status,
                s.not_after.as_deref().unwrap_or("-"),
                cell(&s.detail)
            );
        }
        if let Some(s) = &c.schedule {
            let _ = writeln!(o, "\n### Issuance schedule ({})\n", cell(&s.ca));
            for line in &s.summary {
                let _ = writeln!(o, "- {}", cell(line));
            }
            if let Some(line) = c.orders_line(20) {
                let _ = writeln!(o, "- new orders: {}", cell(&line));
            }
            let _ = writeln!(o, "- limits: {}", cell(&s.limits.join("; ")));
        }
        o.push('\n');
    }
    if !r.mail_forward.is_empty() {
        let _ = writeln!(
            o,
            "## Mail forwarded by the old hosts\n\n| host | protocol | listen | to port | else | when |\n|---|---|---|---:|---|---|"
        );
        for h in &r.mail_forward {
            for p in &h.ports {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} |",
                    cell(&h.host),
                    p.protocol,
                    cell(&p.listen),
                    p.to_port,
                    cell(&p.local),
                    cell(&p.when)
                );
            }
        }
        o.push('\n');
    }
    if !r.transfer.is_empty() {
        let _ = writeln!(
            o,
            "## Data paths\n\nBetween remote hosts: `direct` host to host, `relay` through this machine.\n\n| source | target | path | why |\n|---|---|---|---|"
        );
        for p in &r.transfer {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&p.source),
                cell(&p.target),
                p.path,
                cell(&p.detail)
            );
        }
        o.push('\n');
    }
    if !r.panel_rows.is_empty() {
        let _ = writeln!(
            o,
            "## Panel rows\n\nRows of the panel no tree carries.\n\n| kind | count | moved | how |\n|---|---:|---|---|"
        );
        for row in super::panel_rows_table(&r.panel_rows) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&row[0]),
                row[1],
                row[2],
                cell(&row[3])
            );
        }
        o.push('\n');
    }
    unmigrated(&mut o, &r.unmigrated);
    let _ = writeln!(
        o,
        "## Estimate\n\nA first full sync: about **{}** ({}).",
        human_duration(std::time::Duration::from_secs(r.estimate.seconds)),
        r.estimate.basis
    );
    o
}

/// What the plan leaves at the source, per kind then object by object.
fn unmigrated(o: &mut String, u: &super::Unmigrated) {
    if u.kinds.is_empty() {
        return;
    }
    let size = |b: Option<u64>| b.map_or_else(|| "–".to_string(), human_bytes);
    let _ = writeln!(
        o,
        "## Left at the source\n\nFound at the source and moved by no rule.\n\n| kind | count | size | note |\n|---|---:|---:|---|"
    );
    for k in &u.kinds {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            cell(&k.kind),
            k.count,
            size(k.bytes),
            cell(k.note.as_deref().unwrap_or(""))
        );
    }
    if !u.items.is_empty() {
        let _ = writeln!(
            o,
            "\n| kind | name | panel state | size | where | why |\n|---|---|---|---:|---|---|"
        );
        for i in &u.items {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {} | {} | {} |",
                cell(&i.kind),
                cell(&i.name),
                cell(&i.state_text()),
                size(i.bytes),
                i.source
                    .as_deref()
                    .map(|s| format!("`{}`", cell(s)))
                    .unwrap_or_default(),
                cell(&i.reason)
            );
        }
    }
    o.push('\n');
}
