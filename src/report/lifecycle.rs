//! The migration report (`status` and `report`): where every site is, its timeline, bytes,
//! verification, DNS changes and probes, as a plain model the lifecycle fills from its journal;
//! rendered as text, Markdown, JSON, HTML. Nothing here reads a journal.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::Format;
use super::html::esc;
use super::markdown::cell;
use crate::plan::units::{human_bytes, human_duration};

/// How a state reads to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done as meant (confirmed).
    Good,
    /// Did not go through (failed, rolled back).
    Bad,
    /// Waits for a human (paused).
    Waiting,
    /// Interrupted between a freeze and a verdict: `resume` finishes it.
    InFlight,
    /// Nothing pending (not started, pre-synced).
    Idle,
}

/// A site's state as reports show it; serialized as its journal key (`pre_synced`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateView {
    pub key: String,
    pub label: String,
    pub tone: Tone,
}

impl Serialize for StateView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key)
    }
}

/// One step of a site's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub at: u64,
    pub state: StateView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

/// A unit (database, mail) as its last journaled step left it.
#[derive(Debug, Clone, Serialize)]
pub struct UnitRow {
    pub unit: String,
    pub step: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// One probe of a site's domain.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRow {
    pub domain: String,
    pub url: String,
    pub ok: bool,
    pub detail: String,
    /// `before the switch` (through the new address) or `after the switch` (through DNS).
    pub round: String,
}

/// A safety check that refused or was let through, from the journal.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub check: String,
    pub subject: String,
    pub reason: String,
    /// `refused`, `allowed` (`--allow`) or `forced` (`--force`).
    pub verdict: String,
    pub command: String,
    pub at: u64,
}

/// An RRset whose TTL a change of ours left below its original one.
#[derive(Debug, Clone, Serialize)]
pub struct LoweredTtl {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub original_ttl: u32,
}

/// One DNS change made for a site, from the journal.
#[derive(Debug, Clone, Serialize)]
pub struct DnsRow {
    pub name: String,
    pub rtype: String,
    /// `lower_ttl`, `switch`, `rollback` or `restore_ttl`.
    pub phase: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub ttl: u32,
    /// `applied`, `failed` or `pending` (intent written, no outcome: a crash in between).
    pub result: String,
    pub at: u64,
}

/// One site in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SiteRow {
    pub name: String,
    pub domains: Vec<String>,
    pub state: StateView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub presyncs: u32,
    pub bytes: u64,
    pub millis: u64,
    pub timeline: Vec<StepRow>,
    pub units: Vec<UnitRow>,
    pub dns: Vec<DnsRow>,
    pub probes: Vec<ProbeRow>,
}

/// The whole migration as the journal tells it.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub schema_version: u32,
    pub plan: String,
    pub generated_at: String,
    /// Sites per state (`pre_synced`, `confirmed`, ...).
    pub counts: BTreeMap<String, u64>,
    /// Bytes per second measured over every pre-sync (engine time), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presync_rate: Option<u64>,
    /// Seconds the final syncs of the sites not yet cut over should take at that rate,
    /// assuming each moves what its last pre-sync moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_sync_estimate_secs: Option<u64>,
    pub sites: Vec<SiteRow>,
    /// Units that belong to no site (databases no site names).
    pub platform: Vec<UnitRow>,
    /// TTLs still lowered by us: resolvers re-ask often until `dns restore-ttl` (or `run`)
    /// puts the original back.
    pub lowered_ttls: Vec<LoweredTtl>,
    /// Safety checks let through by the operator, in journal order.
    pub overrides: Vec<CheckRow>,
    /// Every state in lifecycle order, for the summary line.
    #[serde(skip)]
    pub states: Vec<StateView>,
}

fn clock(at: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string()
}

pub fn render(r: &MigrationReport, format: Format) -> String {
    match format {
        Format::Text => text(r, true),
        Format::Markdown => markdown(r),
        Format::Json => serde_json::to_string_pretty(r).expect("report serializes") + "\n",
        Format::Html => html(r),
    }
}

fn summary_line(r: &MigrationReport) -> String {
    r.states
        .iter()
        .filter_map(|s| r.counts.get(&s.key).map(|n| format!("{n} {}", s.label)))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn rate_line(r: &MigrationReport) -> Option<String> {
    let rate = r.presync_rate?;
    Some(format!(
        "Pre-syncs moved {}/s (engine time){}",
        human_bytes(rate),
        r.final_sync_estimate_secs
            .map(|s| format!(
                "; final syncs of the sites not yet moved: about {} if each moves what its last pre-sync did",
                human_duration(Duration::from_secs(s.max(1)))
            ))
            .unwrap_or_default()
    ))
}

/// The text form; `timelines` adds every site's steps (the report), without them it is the
/// at-a-glance `status`.
pub fn text(r: &MigrationReport, timelines: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Plan {}: {} site(s)", r.plan, r.sites.len());
    let _ = writeln!(o, "  {}", summary_line(r));
    if let Some(l) = rate_line(r) {
        let _ = writeln!(o, "  {l}");
    }
    let troubled: Vec<&SiteRow> = r
        .sites
        .iter()
        .filter(|s| matches!(s.state.tone, Tone::Bad | Tone::Waiting | Tone::InFlight))
        .collect();
    if !troubled.is_empty() {
        let _ = writeln!(o, "\nNeeds attention:");
        for s in troubled {
            let _ = writeln!(
                o,
                "  {:<14} {}{}",
                s.state.label,
                s.name,
                match (s.reason.as_deref(), s.state.tone == Tone::InFlight) {
                    (Some(r), true) => format!(": {r}; run `resume` (or `rollback`)"),
                    (Some(r), false) => format!(": {r}"),
                    (None, true) => ": interrupted, run `resume`".into(),
                    (None, false) => String::new(),
                }
            );
        }
    }
    for u in r.platform.iter().filter(|u| !u.ok) {
        let _ = writeln!(
            o,
            "  unit {} ({}): {}",
            u.unit,
            u.step,
            u.detail.as_deref().unwrap_or("")
        );
    }
    if !r.overrides.is_empty() {
        let _ = writeln!(o, "\nSafety checks let through:");
        for c in &r.overrides {
            let _ = writeln!(
                o,
                "  {}  {} [{}] {}: {} ({})",
                clock(c.at),
                c.command,
                c.check,
                c.subject,
                c.reason,
                c.verdict
            );
        }
    }
    if !r.lowered_ttls.is_empty() {
        let _ = writeln!(
            o,
            "\nTTLs still lowered (`dns restore-ttl` puts them back once the sites are confirmed):"
        );
        for l in &r.lowered_ttls {
            let _ = writeln!(
                o,
                "  {} {} TTL {} (was {})",
                l.name, l.rtype, l.ttl, l.original_ttl
            );
        }
    }
    if !timelines {
        return o;
    }
    for s in &r.sites {
        let _ = writeln!(
            o,
            "\n{} [{}] {} · {} pre-sync(s) · {} moved",
            s.name,
            s.state.label,
            s.domains.join(", "),
            s.presyncs,
            human_bytes(s.bytes)
        );
        for step in &s.timeline {
            let _ = writeln!(
                o,
                "  {}  {:<13}{}{}",
                clock(step.at),
                step.state.label,
                step.bytes
                    .map(|b| format!(" {}", human_bytes(b)))
                    .unwrap_or_default(),
                step.detail
                    .as_deref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default()
            );
        }
        for u in &s.units {
            let _ = writeln!(
                o,
                "  unit   {} {} ({}): {}",
                if u.ok { "ok" } else { "FAILED" },
                u.unit,
                u.step,
                u.detail.as_deref().unwrap_or("")
            );
        }
        for d in &s.dns {
            let _ = writeln!(
                o,
                "  dns    {} {} {} {:?} -> {:?} ttl {} ({})",
                d.phase, d.name, d.rtype, d.from, d.to, d.ttl, d.result
            );
        }
        for p in &s.probes {
            let _ = writeln!(
                o,
                "  probe  {} {} ({}): {}",
                if p.ok { "ok" } else { "FAILED" },
                p.url,
                p.round,
                p.detail
            );
        }
    }
    o
}

fn markdown(r: &MigrationReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Migration report: `{}`\n\nGenerated {}. {}\n",
        r.plan,
        r.generated_at,
        summary_line(r)
    );
    if let Some(l) = rate_line(r) {
        let _ = writeln!(o, "{l}.\n");
    }
    let _ = writeln!(
        o,
        "| site | state | domains | pre-syncs | moved | reason |\n|---|---|---|---:|---:|---|"
    );
    for s in &r.sites {
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} | {} | {} |",
            cell(&s.name),
            s.state.label,
            cell(&s.domains.join(", ")),
            s.presyncs,
            human_bytes(s.bytes),
            cell(s.reason.as_deref().unwrap_or(""))
        );
    }
    for s in &r.sites {
        let _ = writeln!(o, "\n## `{}`: {}\n", cell(&s.name), s.state.label);
        for step in &s.timeline {
            let _ = writeln!(
                o,
                "- {} **{}**{}",
                clock(step.at),
                step.state.label,
                step.detail
                    .as_deref()
                    .map(|d| format!(": {}", cell(d)))
                    .unwrap_or_default()
            );
        }
        for d in &s.dns {
            let _ = writeln!(
                o,
                "- DNS {} `{} {}` {:?} → {:?} (TTL {}, {})",
                d.phase, d.name, d.rtype, d.from, d.to, d.ttl, d.result
            );
        }
        for p in &s.probes {
            let _ = writeln!(
                o,
                "- probe {} `{}`: {}",
                if p.ok { "✅" } else { "❌" },
                p.url,
                cell(&p.detail)
            );
        }
    }
    o
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:75em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 .2em}\
.bad{color:#b00020;font-weight:600}.good{color:#116329;font-weight:600}.mid{color:#9a6700;font-weight:600}\
ol{margin:.2em 0 .8em 1.2em;padding:0}li{margin:.1em 0}";

fn state_class(s: &StateView) -> &'static str {
    match s.tone {
        Tone::Good => "good",
        Tone::Bad => "bad",
        _ => "mid",
    }
}

fn html(r: &MigrationReport) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Migration: {}</title><style>{STYLE}</style></head><body>\
         <h1>Migration report: <code>{}</code></h1><p>Generated {}. {}</p>",
        esc(&r.plan),
        esc(&r.plan),
        esc(&r.generated_at),
        esc(&summary_line(r))
    );
    if let Some(l) = rate_line(r) {
        let _ = write!(o, "<p>{}.</p>", esc(&l));
    }
    if !r.overrides.is_empty() {
        o.push_str("<h2>Safety checks let through</h2><ul>");
        for c in &r.overrides {
            let _ = write!(
                o,
                "<li>{} <code>{}</code> <b>[{}]</b> {}: {} ({})</li>",
                esc(&clock(c.at)),
                esc(&c.command),
                esc(&c.check),
                esc(&c.subject),
                esc(&c.reason),
                esc(&c.verdict)
            );
        }
        o.push_str("</ul>");
    }
    if !r.lowered_ttls.is_empty() {
        o.push_str("<h2>TTLs still lowered</h2><p>Put back by <code>dns restore-ttl</code> once the sites are confirmed.</p><ul>");
        for l in &r.lowered_ttls {
            let _ = write!(
                o,
                "<li><code>{} {}</code> TTL {} (was {})</li>",
                esc(&l.name),
                esc(&l.rtype),
                l.ttl,
                l.original_ttl
            );
        }
        o.push_str("</ul>");
    }
    o.push_str("<table><tr><th>site</th><th>state</th><th>domains</th><th>pre-syncs</th><th>moved</th><th>reason</th></tr>");
    for s in &r.sites {
        let _ = write!(
            o,
            "<tr><td><a href=\"#site-{}\"><code>{}</code></a></td><td class=\"{}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.name),
            state_class(&s.state),
            s.state.label,
            esc(&s.domains.join(", ")),
            s.presyncs,
            human_bytes(s.bytes),
            esc(s.reason.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>");
    for s in &r.sites {
        let _ = write!(
            o,
            "<h2 id=\"site-{}\"><code>{}</code> <span class=\"{}\">{}</span></h2><ol>",
            esc(&s.name),
            esc(&s.name),
            state_class(&s.state),
            s.state.label
        );
        for step in &s.timeline {
            let _ = write!(
                o,
                "<li>{} <b>{}</b>{}{}</li>",
                esc(&clock(step.at)),
                step.state.label,
                step.bytes
                    .map(|b| format!(" · {}", human_bytes(b)))
                    .unwrap_or_default(),
                step.detail
                    .as_deref()
                    .map(|d| format!(" · {}", esc(d)))
                    .unwrap_or_default()
            );
        }
        o.push_str("</ol>");
        if !s.units.is_empty() || !s.dns.is_empty() || !s.probes.is_empty() {
            o.push_str("<table><tr><th>check</th><th>what</th><th>result</th></tr>");
            for u in &s.units {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                    esc(&u.step),
                    esc(&u.unit),
                    if u.ok { "good" } else { "bad" },
                    esc(u.detail.as_deref().unwrap_or(""))
                );
            }
            for d in &s.dns {
                let _ = write!(
                    o,
                    "<tr><td>DNS {}</td><td><code>{} {}</code> {} → {} (TTL {})</td><td class=\"{}\">{}</td></tr>",
                    d.phase,
                    esc(&d.name),
                    esc(&d.rtype),
                    esc(&d.from.join(", ")),
                    esc(&d.to.join(", ")),
                    d.ttl,
                    if d.result == "applied" { "good" } else { "bad" },
                    esc(&d.result)
                );
            }
            for p in &s.probes {
                let _ = write!(
                    o,
                    "<tr><td>probe</td><td><code>{}</code></td><td class=\"{}\">{}</td></tr>",
                    esc(&p.url),
                    if p.ok { "good" } else { "bad" },
                    esc(&p.detail)
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</body></html>\n");
    o
}
