//! The dry run as one self-contained HTML page (inline CSS, no scripts, no external links).

use std::fmt::Write;

use super::{DryRunReport, plural};
use crate::plan::units::{human_bytes, human_duration};

/// Text escaped for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:75em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 .2em}\
.error{color:#b00020;font-weight:600}.warning{color:#9a6700}.del{color:#b00020}.add{color:#116329}\
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:10em}\
.card b{display:block;font-size:1.4em}";

pub fn render(r: &DryRunReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dry run: {}</title><style>{STYLE}</style></head><body>",
        esc(&r.plan)
    );
    let _ = write!(
        o,
        "<h1>Dry run: <code>{}</code></h1><p>Plan file <code>{}</code>, generated {}. Nothing was changed anywhere.</p>",
        esc(&r.plan),
        esc(&r.plan_file),
        esc(&r.generated_at)
    );
    let card = |o: &mut String, title: &str, value: String, sub: String| {
        let _ = write!(
            o,
            "<div class=\"card\">{}<b>{}</b>{}</div>",
            esc(title),
            esc(&value),
            esc(&sub)
        );
    };
    o.push_str("<div class=\"cards\">");
    card(&mut o, "sites", t.sites.to_string(), human_bytes(t.bytes));
    card(
        &mut o,
        "to send",
        t.files_to_send.to_string(),
        human_bytes(t.bytes_to_send),
    );
    if t.delete_files > 0 {
        card(
            &mut o,
            "to delete",
            t.delete_files.to_string(),
            human_bytes(t.delete_bytes),
        );
    }
    card(
        &mut o,
        "databases",
        t.databases.to_string(),
        human_bytes(t.database_bytes),
    );
    card(
        &mut o,
        "messages",
        t.messages.to_string(),
        plural(t.mailboxes, "mailbox", "mailboxes"),
    );
    card(
        &mut o,
        "DNS changes",
        t.dns_changes.to_string(),
        String::new(),
    );
    card(
        &mut o,
        "risks",
        format!("{} / {}", t.errors, t.warnings),
        "errors / warnings".into(),
    );
    card(
        &mut o,
        "left at the source",
        t.unmigrated.to_string(),
        human_bytes(t.unmigrated_bytes),
    );
    card(
        &mut o,
        "estimate",
        human_duration(std::time::Duration::from_secs(r.estimate.seconds)),
        "first full sync".into(),
    );
    o.push_str("</div>");
    if !r.risks.is_empty() {
        o.push_str("<h2>Risks</h2><table><tr><th>severity</th><th>kind</th><th>subject</th><th>message</th></tr>");
        for k in &r.risks {
            let _ = write!(
                o,
                "<tr><td class=\"{}\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&k.severity),
                esc(&k.severity),
                esc(&k.kind),
                esc(&k.subject),
                esc(&k.message)
            );
        }
        o.push_str("</table>");
    }
    if !r.sites.is_empty() {
        o.push_str("<h2>Sites</h2><table><tr><th>site</th><th>source</th><th>target</th><th>files</th><th>size</th><th>to send</th><th>to delete</th><th>target state</th></tr>");
        for s in &r.sites {
            let state = match &s.error {
                Some(e) => format!("<span class=\"error\">{}</span>", esc(e)),
                None => esc(&s.target_label()),
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} ({})</td><td class=\"n\">{}</td><td>{state}</td></tr>",
                esc(&s.title()),
                esc(&s.source),
                esc(&s.target),
                s.files,
                human_bytes(s.bytes),
                human_bytes(s.bytes_to_send),
                plural(s.files_to_send, "file", "files"),
                esc(&s.delete_label())
            );
        }
        o.push_str("</table>");
    }
    if !r.databases.is_empty() {
        o.push_str("<h2>Databases</h2><table><tr><th>database</th><th>engine</th><th>source → target</th><th>size</th><th>tables</th><th>charset</th><th>users</th><th>action</th></tr>");
        for d in &r.databases {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{} → {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(&d.name),
                esc(&d.engine),
                esc(&d.source_host),
                esc(&d.target_host),
                human_bytes(d.bytes),
                d.tables
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "–".into()),
                esc(&d.charset_label()),
                esc(&d.users_label()),
                esc(&d.action),
                d.note
                    .as_deref()
                    .map(|n| format!(": {}", esc(n)))
                    .unwrap_or_default()
            );
        }
        o.push_str("</table>");
    }
    if !r.mail.is_empty() {
        o.push_str("<h2>Mail</h2><table><tr><th>mailbox</th><th>layout</th><th>folders</th><th>messages</th><th>size</th><th>at target</th></tr>");
        for m in &r.mail {
            let at = match &m.error {
                Some(e) => format!("<span class=\"error\">{}</span>", esc(e)),
                None => m.messages_at_target.to_string(),
            };
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{at}</td></tr>",
                esc(&m.mailbox),
                esc(&m.layout),
                m.folders,
                m.messages,
                human_bytes(m.bytes)
            );
        }
        o.push_str("</table>");
    }
    if !r.dns.is_empty() {
        o.push_str("<h2>DNS</h2>");
        for z in &r.dns {
            let _ = write!(o, "<h3><code>{}</code></h3><ul>", esc(&z.zone));
            for s in &z.servers {
                let state = match (&s.serial, &s.error) {
                    (Some(serial), _) => format!("serial {serial}"),
                    (None, Some(e)) => format!("<span class=\"error\">{}</span>", esc(e)),
                    _ => String::new(),
                };
                let _ = write!(o, "<li><code>{}</code>: {state}</li>", esc(&s.server));
            }
            o.push_str("</ul><table><tr><th>name</th><th>type</th><th>TTL</th><th>now</th><th>after the switch</th></tr>");
            for c in &z.changes {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td class=\"del\">{}</td><td class=\"add\">{}</td></tr>",
                    esc(&c.name),
                    esc(&c.rtype),
                    c.ttl,
                    c.new_ttl,
                    esc(&c.from.join(" ")),
                    esc(&c.to.join(" "))
                );
            }
            o.push_str("</table>");
        }
    }
    if let Some(c) = &r.certificates {
        let _ = write!(
            o,
            "<h2>Certificates</h2><p>{}</p><table><tr><th>site</th><th>certificate</th><th>status</th><th>not after</th><th>detail</th></tr>",
            esc(&c.headline())
        );
        for s in &c.sites {
            let class = if s.status == "usable" { "add" } else { "error" };
            let _ = write!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.site),
                esc(&s.cert),
                esc(&s.status),
                esc(s.not_after.as_deref().unwrap_or("-")),
                esc(&s.detail)
            );
        }
        o.push_str("</table>");
        if let Some(s) = &c.schedule {
            let _ = write!(o, "<h3>Issuance schedule ({})</h3><ul>", esc(&s.ca));
            for line in &s.summary {
                let _ = write!(o, "<li>{}</li>", esc(line));
            }
            if let Some(line) = c.orders_line(20) {
                let _ = write!(o, "<li>new orders: {}</li>", esc(&line));
            }
            let _ = write!(o, "<li>limits: {}</li></ul>", esc(&s.limits.join("; ")));
        }
    }
    if !r.transfer.is_empty() {
        o.push_str("<h2>Data paths</h2><p>Between remote hosts: <code>direct</code> host to host, <code>relay</code> through this machine.</p><table><tr><th>source</th><th>target</th><th>path</th><th>why</th></tr>");
        for p in &r.transfer {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.source),
                esc(&p.target),
                esc(&p.path),
                esc(&p.detail)
            );
        }
        o.push_str("</table>");
    }
    if !r.mail_forward.is_empty() {
        o.push_str("<h2>Mail forwarded by the old hosts</h2><table><tr><th>host</th><th>protocol</th><th>listen</th><th>to port</th><th>else</th><th>when</th></tr>");
        for h in &r.mail_forward {
            for p in &h.ports {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&h.host),
                    esc(&p.protocol),
                    esc(&p.listen),
                    p.to_port,
                    esc(&p.local),
                    esc(&p.when)
                );
            }
        }
        o.push_str("</table>");
    }
    if !r.panel_rows.is_empty() {
        o.push_str("<h2>Panel rows</h2><p>Rows of the panel no tree carries.</p><table><tr><th>kind</th><th>count</th><th>moved</th><th>how</th></tr>");
        for row in super::panel_rows_table(&r.panel_rows) {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&row[0]),
                row[1],
                row[2],
                esc(&row[3])
            );
        }
        o.push_str("</table>");
    }
    let u = &r.unmigrated;
    if !u.kinds.is_empty() {
        let size = |b: Option<u64>| b.map_or_else(|| "–".to_string(), human_bytes);
        o.push_str("<h2>Left at the source</h2><p>Found at the source and moved by no rule.</p><table><tr><th>kind</th><th>count</th><th>size</th><th>note</th></tr>");
        for k in &u.kinds {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&k.kind),
                k.count,
                size(k.bytes),
                esc(k.note.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</table>");
        if !u.items.is_empty() {
            o.push_str("<table><tr><th>kind</th><th>name</th><th>panel state</th><th>size</th><th>where</th><th>why</th></tr>");
            for i in &u.items {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&i.kind),
                    esc(&i.name),
                    esc(&i.state_text()),
                    size(i.bytes),
                    esc(i.source.as_deref().unwrap_or("")),
                    esc(&i.reason)
                );
            }
            o.push_str("</table>");
        }
    }
    let _ = writeln!(
        o,
        "<h2>Estimate</h2><p>{}</p></body></html>",
        esc(&r.estimate.basis)
    );
    o
}
