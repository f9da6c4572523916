//! The dry run for a terminal: aligned tables, one section per kind of unit.

use std::fmt::Write;

use super::{DryRunReport, Unmigrated, plural};
use crate::plan::units::{human_bytes, human_duration};

/// Prints an aligned table indented by two spaces, fitted to `width` columns when given: the
/// last column wraps onto lines of its own (down to 24 characters), then the widest columns
/// give way, their cells cut in the middle with `…` (the two ends of a
/// path say the most).
pub fn table(out: &mut String, header: &[&str], rows: &[Vec<String>], width: Option<usize>) {
    let count = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| count(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(count(c));
        }
    }
    let last = widths.len().saturating_sub(1);
    if let Some(width) = width {
        fit(&mut widths, header, width);
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut s = String::from("  ");
        let mut wrapped: Vec<String> = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            if i == last && count(c) > widths[i] && width.is_some() {
                wrapped = wrap(c, widths[i]);
                s.push_str(wrapped.first().map_or("", String::as_str));
                break;
            }
            let cell = if count(c) > widths[i] {
                shorten_middle(c, widths[i])
            } else {
                c.to_string()
            };
            let pad = widths[i] - count(&cell);
            s.push_str(&cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
        let indent = 2 + widths[..last].iter().map(|w| w + 2).sum::<usize>();
        for more in wrapped.iter().skip(1) {
            let _ = writeln!(out, "{}{more}", " ".repeat(indent));
        }
    };
    line(out, header.to_vec());
    for r in rows {
        line(out, r.iter().map(String::as_str).collect());
    }
}

/// Narrows `widths` until the table (two spaces of indent, two between columns) fits in
/// `width`: the widest column gives way one character at a time, none below its header or 8.
fn fit(widths: &mut [usize], header: &[&str], width: usize) {
    let total = |w: &[usize]| 2 + w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    // The last column wraps, losing nothing: it gives way first, down to a readable width.
    if let Some(last) = widths.len().checked_sub(1) {
        let floor = header[last].chars().count().max(24);
        let over = total(widths).saturating_sub(width);
        widths[last] = widths[last]
            .saturating_sub(over)
            .max(floor.min(widths[last]));
    }
    while total(widths) > width {
        let floor = |i: usize| header[i].chars().count().max(8);
        let Some(widest) = (0..widths.len())
            .filter(|i| widths[*i] > floor(*i))
            .max_by_key(|i| (widths[*i], *i))
        else {
            return;
        };
        widths[widest] -= 1;
    }
}

/// `text` cut to `max` characters by taking out its middle: `/srv/www/a-ve…/htdocs/`.
pub fn shorten_middle(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_string();
    }
    if max <= 1 {
        return "…".chars().take(max).collect();
    }
    let keep = max - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// `text` in lines of at most `width` characters, broken at spaces when it can be (a word
/// longer than a line is cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let sep = usize::from(used > 0);
            if used + sep + word.len() <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.extend(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a whole line: cut it.
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// One line of free text, wrapped to `width` when given, continuation lines indented by
/// `indent` spaces (`first` is written before the text on the first line).
pub fn wrapped_line(
    out: &mut String,
    first: &str,
    text: &str,
    indent: usize,
    width: Option<usize>,
) {
    let lead = first.chars().count();
    match width {
        Some(w) if lead + text.chars().count() > w && w > lead.max(indent) + 20 => {
            let mut lines = wrap(text, w - lead).into_iter();
            let _ = writeln!(out, "{first}{}", lines.next().unwrap_or_default());
            let rest: Vec<String> = lines.collect();
            for l in wrap(&rest.join(" "), w - indent) {
                let _ = writeln!(out, "{}{l}", " ".repeat(indent));
            }
        }
        _ => {
            let _ = writeln!(out, "{first}{text}");
        }
    }
}

pub fn render(r: &DryRunReport, width: Option<usize>) -> String {
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
            width,
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
            width,
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
            width,
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
            width,
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
    if !r.transfer.is_empty() {
        let _ = writeln!(o, "\nData paths between remote hosts:");
        for p in &r.transfer {
            let _ = writeln!(
                o,
                "  {} -> {}: {} ({})",
                p.source, p.target, p.path, p.detail
            );
        }
    }
    for h in &r.mail_forward {
        let _ = writeln!(o, "\nMail forwarded by the old host {}:", h.host);
        for p in &h.ports {
            let _ = writeln!(
                o,
                "  {} {} -> new address:{} (else {}): {}",
                p.protocol, p.listen, p.to_port, p.local, p.when
            );
        }
    }
    if !r.panel_rows.is_empty() {
        let _ = writeln!(o, "\nPanel rows (no tree carries them):");
        table(
            &mut o,
            &["KIND", "COUNT", "MOVED", "HOW"],
            &super::panel_rows_table(&r.panel_rows),
            width,
        );
    }
    o.push('\n');
    o.push_str(&unmigrated(&r.unmigrated, width));
    let _ = writeln!(
        o,
        "\nRisks: {}, {}",
        plural(t.errors, "error", "errors"),
        plural(t.warnings, "warning", "warnings")
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
pub fn unmigrated(u: &Unmigrated, width: Option<usize>) -> String {
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
    table(&mut o, &["KIND", "COUNT", "SIZE", "NOTE"], &rows, width);
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
            width,
        );
    }
    o
}
