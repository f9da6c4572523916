//! The migration report (`status` and `report`): where every site is, its timeline, bytes,
//! verification, DNS changes and probes, as a plain model the lifecycle fills from its journal;
//! rendered as text, Markdown, JSON, HTML. Nothing here reads a journal.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::html::esc;
use super::markdown::cell;
use super::text::{table, wrapped_line};
use super::{Format, plural};
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
    /// The journaled run (`sync`, `cutover`, `resume`, ...) the step was made in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
}

/// What the states alone do not tell, placed in a site's timeline before step `before`
/// (after the last one when it equals the timeline's length).
#[derive(Debug, Clone, Serialize)]
pub struct MarkRow {
    pub at: u64,
    pub before: usize,
    /// `interrupted` (its run ended without a record), `resumed`, `override`, `attempt`.
    pub kind: String,
    pub text: String,
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
    /// The cutover attempt it belongs to (1 for the first): a re-cutover keeps the earlier
    /// attempts' probes.
    pub attempt: u32,
    pub at: u64,
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
    /// The TTL the change set.
    pub ttl: u32,
    /// The TTL before the change.
    pub from_ttl: u32,
    /// `applied`, `failed` or `pending` (intent written, no outcome: a crash in between).
    pub result: String,
    pub at: u64,
}

impl DnsRow {
    /// The phase in words: `lower TTL`, `switch`, `rollback`, `restore TTL`.
    pub fn phase_label(&self) -> String {
        match self.phase.as_str() {
            "lower_ttl" => "lower TTL".into(),
            "restore_ttl" => "restore TTL".into(),
            other => other.replace('_', " "),
        }
    }

    /// What changed: `192.0.2.1 → 198.51.100.1, TTL 300` or `192.0.2.1, TTL 3600 → 300`.
    pub fn change(&self) -> String {
        let values = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(" ")
            }
        };
        let values = if self.from == self.to {
            values(&self.to)
        } else {
            format!("{} → {}", values(&self.from), values(&self.to))
        };
        let ttl = if self.from_ttl == self.ttl {
            format!("TTL {}", self.ttl)
        } else {
            format!("TTL {} → {}", self.from_ttl, self.ttl)
        };
        format!("{values}, {ttl}")
    }
}

/// One site in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SiteRow {
    pub name: String,
    pub domains: Vec<String>,
    /// The plan's cutover batch the site is in (1-based).
    pub batch: usize,
    pub state: StateView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub presyncs: u32,
    pub bytes: u64,
    pub millis: u64,
    /// Cutover attempts (a re-cutover after a failure or a rollback is the second).
    pub attempts: u32,
    /// Seconds the source was frozen, freeze to confirmed (or to unfrozen, after a failure),
    /// over every attempt; absent before any freeze and while one lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_secs: Option<u64>,
    /// When the freeze that still lasts began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_since: Option<u64>,
    /// The cutover's windows, once the site reached a switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<SiteWindow>,
    /// Interruptions, resumes, overrides and new attempts, placed in the timeline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<MarkRow>,
    pub timeline: Vec<StepRow>,
    pub units: Vec<UnitRow>,
    /// Databases whose rows were checked lightly in the freeze and never compared since
    /// (after go-live, or again in a freeze): owed, for `resume` to settle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows_owed: Vec<String>,
    pub dns: Vec<DnsRow>,
    pub probes: Vec<ProbeRow>,
}

/// A site's cutover windows (see the README's *The window, measured*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteWindow {
    /// Freeze window: the `freezing` intent to `switched` (DNS changed at the primary: writes
    /// go to the new side from then on), in milliseconds, for the last attempt that switched.
    pub freeze_ms: u64,
    /// When that freeze and that switch were journaled (milliseconds since the epoch).
    pub frozen_at_ms: u64,
    pub switched_at_ms: u64,
    /// The highest TTL the site's records had just before their switch (what resolvers may
    /// still cache); absent when the plan switched no record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_ttl_secs: Option<u32>,
    /// The plan's margin, when a forwarder on the old host routes the site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_margin_secs: Option<u64>,
    /// DNS exposure: the switch to the end of the old TTL (plus the margin when forwarded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_secs: Option<u64>,
    /// When the exposure ends (seconds since the epoch), and whether it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_until: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_over: Option<bool>,
}

impl SiteWindow {
    /// `freeze window 1.234s`.
    pub fn freeze_label(&self) -> String {
        format!("{}.{:03}s", self.freeze_ms / 1000, self.freeze_ms % 1000)
    }

    /// `300s (TTL 300) until 22:09:10Z, over`, `330s (TTL 300 + margin 30, forwarded) ...`, or
    /// `none (no record switched)`.
    pub fn exposure_label(&self) -> String {
        let (Some(e), Some(ttl), Some(until)) =
            (self.exposure_secs, self.old_ttl_secs, self.exposure_until)
        else {
            return "none (no record switched)".into();
        };
        let how = match self.forward_margin_secs {
            Some(m) => format!("TTL {ttl} + margin {m}, forwarded"),
            None => format!("TTL {ttl}"),
        };
        let state = if self.exposure_over == Some(true) {
            "over"
        } else {
            "lasts"
        };
        format!(
            "{} ({how}) until {}, {state}",
            human_duration(Duration::from_secs(e)),
            clock(until)
        )
    }
}

impl SiteRow {
    /// `42s`, `frozen since 22:04:10Z`, or `-`.
    pub fn downtime_label(&self) -> String {
        match (self.downtime_secs, self.frozen_since) {
            (_, Some(since)) => format!("frozen since {}", clock(since)),
            (Some(d), None) => human_duration(Duration::from_secs(d)),
            (None, None) => "-".into(),
        }
    }
}

/// How long sites were down (frozen), over a batch or the whole plan: the sites whose freezes
/// are over.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Downtime {
    /// The batch (1-based), or absent for every site of the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    pub sites: u64,
    pub min_secs: u64,
    pub median_secs: u64,
    /// Nearest rank: the smallest figure at least 95 % of the sites do not exceed.
    pub p95_secs: u64,
    pub max_secs: u64,
}

impl Downtime {
    /// The distribution of `secs` (none when empty).
    pub fn of(batch: Option<usize>, mut secs: Vec<u64>) -> Option<Downtime> {
        if secs.is_empty() {
            return None;
        }
        secs.sort_unstable();
        let n = secs.len();
        let rank = |p: usize| secs[(n * p).div_ceil(100).clamp(1, n) - 1];
        Some(Downtime {
            batch,
            sites: n as u64,
            min_secs: secs[0],
            median_secs: rank(50),
            p95_secs: rank(95),
            max_secs: secs[n - 1],
        })
    }

    /// The whole plan's distribution first, then each batch's when there are several.
    pub fn of_batches(sites: &[SiteRow]) -> Vec<Downtime> {
        let mut batches: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for s in sites {
            if let Some(d) = s.downtime_secs.filter(|_| s.frozen_since.is_none()) {
                batches.entry(s.batch).or_default().push(d);
            }
        }
        let mut out: Vec<Downtime> =
            Downtime::of(None, batches.values().flatten().copied().collect())
                .into_iter()
                .collect();
        if batches.len() > 1 {
            out.extend(
                batches
                    .into_iter()
                    .filter_map(|(b, secs)| Downtime::of(Some(b), secs)),
            );
        }
        out
    }

    /// `3 sites · min 2s · median 3s · p95 5s · max 5s`.
    pub fn line(&self) -> String {
        let d = |s: u64| human_duration(Duration::from_secs(s));
        format!(
            "{} · min {} · median {} · p95 {} · max {}",
            plural(self.sites, "site", "sites"),
            d(self.min_secs),
            d(self.median_secs),
            d(self.p95_secs),
            d(self.max_secs)
        )
    }

    fn title(&self) -> String {
        match self.batch {
            Some(b) => format!("batch {b}"),
            None => "all sites".into(),
        }
    }
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
    /// Safety checks and live units let through by the operator, in journal order.
    pub overrides: Vec<CheckRow>,
    /// Downtime (freeze to confirmed, or to unfrozen) over the plan, then per batch.
    pub downtime: Vec<Downtime>,
    /// Leases held now by the controllers sharing a journal in PostgreSQL: which one works on
    /// which unit, until when (absent with the file journal, or when none is held).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseRow>,
    /// Every state in lifecycle order, for the summary line.
    #[serde(skip)]
    pub states: Vec<StateView>,
}

/// One lease held now (see `MigrationReport::leases`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseRow {
    pub unit: String,
    pub holder: String,
    /// RFC 3339, the database server's clock.
    pub until: String,
    pub expires_in_secs: u64,
}

impl LeaseRow {
    pub fn new(unit: String, holder: String, expires_at: u64, expires_in_ms: i64) -> LeaseRow {
        LeaseRow {
            unit,
            holder,
            until: clock(expires_at),
            expires_in_secs: (expires_in_ms.max(0) as u64).div_ceil(1000),
        }
    }
}

fn clock(at: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string()
}

/// Renders `r` in `format`; text fits no width (a file, a pipe).
pub fn render(r: &MigrationReport, format: Format) -> String {
    render_width(r, format, None)
}

/// Renders `r` in `format`, its text fitted to `width` columns when given (a terminal).
pub fn render_width(r: &MigrationReport, format: Format, width: Option<usize>) -> String {
    let mut bytes = Vec::new();
    write_report(r, format, width, &mut bytes).expect("a Vec takes every byte");
    String::from_utf8(bytes).expect("reports are UTF-8")
}

/// Writes `r` in `format` to `out` as it is rendered, a site at a time, so a report of many
/// sites is never held whole as one string; text fits `width` columns when given.
pub fn write_report(
    r: &MigrationReport,
    format: Format,
    width: Option<usize>,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    match format {
        Format::Text => write_text(r, true, width, out),
        Format::Markdown => markdown(r, out),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, r)?;
            out.write_all(b"\n")
        }
        Format::Html => html(r, out),
    }
}

/// Hands what `o` holds to `out` and empties it: the renderers build a section (a site) in
/// `o`, then pass it on.
fn spill(o: &mut String, out: &mut dyn io::Write) -> io::Result<()> {
    out.write_all(o.as_bytes())?;
    o.clear();
    Ok(())
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

/// `Downtime (freeze to confirmed, or to unfrozen)`, what every form titles the figures with.
const DOWNTIME: &str = "Downtime (source frozen: freeze to confirmed, or to unfrozen)";

/// The units of no site (mail, databases no site names) as table rows: unit, last step,
/// result, detail.
fn platform_rows(r: &MigrationReport) -> Vec<Vec<String>> {
    r.platform
        .iter()
        .map(|u| {
            vec![
                u.unit.clone(),
                u.step.clone(),
                if u.ok { "ok" } else { "FAILED" }.into(),
                u.detail.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

/// The site's probes in words: `attempt 2, after the switch` (the attempt only once a site
/// had more than one).
fn probe_when(s: &SiteRow, p: &ProbeRow) -> String {
    if s.attempts > 1 {
        format!("attempt {}, {}", p.attempt, p.round)
    } else {
        p.round.clone()
    }
}

/// The text form; `timelines` adds a table of the sites and every site's steps (the report),
/// without them it is the at-a-glance `status`. Tables and long lines fit `width` when given.
pub fn text(r: &MigrationReport, timelines: bool, width: Option<usize>) -> String {
    let mut bytes = Vec::new();
    write_text(r, timelines, width, &mut bytes).expect("a Vec takes every byte");
    String::from_utf8(bytes).expect("reports are UTF-8")
}

/// The text form (see `text`) written to `out` a site at a time.
pub fn write_text(
    r: &MigrationReport,
    timelines: bool,
    width: Option<usize>,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Plan {}: {}",
        r.plan,
        plural(r.sites.len() as u64, "site", "sites")
    );
    let _ = writeln!(o, "  {}", summary_line(r));
    if let Some(l) = rate_line(r) {
        wrapped_line(&mut o, "  ", &l, 4, width);
    }
    if let Some((all, batches)) = r.downtime.split_first() {
        wrapped_line(
            &mut o,
            "  ",
            &format!("{DOWNTIME}: {}", all.line()),
            4,
            width,
        );
        for b in batches {
            let _ = writeln!(o, "    {}: {}", b.title(), b.line());
        }
    }
    if !r.leases.is_empty() {
        let _ = writeln!(o, "\nLeases held ({}):", r.leases.len());
        for l in &r.leases {
            let _ = writeln!(
                o,
                "  {}: {} until {} (in {} s)",
                l.unit, l.holder, l.until, l.expires_in_secs
            );
        }
    }
    let troubled: Vec<&SiteRow> = r
        .sites
        .iter()
        .filter(|s| {
            matches!(s.state.tone, Tone::Bad | Tone::Waiting | Tone::InFlight)
                || !s.rows_owed.is_empty()
        })
        .collect();
    if !troubled.is_empty() {
        let _ = writeln!(o, "\nNeeds attention:");
        for s in troubled {
            let mut why = match (s.reason.as_deref(), s.state.tone == Tone::InFlight) {
                (Some(r), true) => format!(": {r}; run `resume` (or `rollback`)"),
                (Some(r), false) => format!(": {r}"),
                (None, true) => ": interrupted, run `resume`".into(),
                (None, false) => String::new(),
            };
            if let Some(since) = s.frozen_since {
                why.push_str(&format!(" (source frozen since {})", clock(since)));
            }
            if !s.rows_owed.is_empty() {
                why.push_str(if why.is_empty() { ": " } else { "; " });
                why.push_str(&format!(
                    "rows of {} owed a comparison since the freeze (its snapshot lost if the run that froze it stopped): run `resume`",
                    s.rows_owed
                        .iter()
                        .map(|d| format!("`{d}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            wrapped_line(
                &mut o,
                &format!("  {:<14} ", s.state.label),
                &format!("{}{why}", s.name),
                17,
                width,
            );
        }
    }
    if !r.platform.is_empty() {
        let _ = writeln!(o, "\nMail and databases of no site (last step):");
        table(
            &mut o,
            &["UNIT", "STEP", "RESULT", "DETAIL"],
            &platform_rows(r),
            width,
        );
    }
    let windows: Vec<(&SiteRow, &SiteWindow)> = r
        .sites
        .iter()
        .filter_map(|s| s.window.as_ref().map(|w| (s, w)))
        .collect();
    if !windows.is_empty() {
        let _ = writeln!(
            o,
            "\nWindows (freeze: freeze to switch; DNS exposure: switch to old TTL expired):"
        );
        table(
            &mut o,
            &["SITE", "FREEZE", "DNS EXPOSURE"],
            &windows
                .iter()
                .map(|(s, w)| vec![s.name.clone(), w.freeze_label(), w.exposure_label()])
                .collect::<Vec<_>>(),
            width,
        );
    }
    if !r.overrides.is_empty() {
        let _ = writeln!(o, "\nSafety checks let through:");
        for c in &r.overrides {
            wrapped_line(
                &mut o,
                &format!("  {}  ", clock(c.at)),
                &format!(
                    "{} [{}] {}: {} ({})",
                    c.command, c.check, c.subject, c.reason, c.verdict
                ),
                24,
                width,
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
        return spill(&mut o, out);
    }
    if !r.sites.is_empty() {
        let _ = writeln!(o);
        let rows: Vec<Vec<String>> = r
            .sites
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.state.label.clone(),
                    s.presyncs.to_string(),
                    human_bytes(s.bytes),
                    s.downtime_label(),
                    s.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &mut o,
            &["SITE", "STATE", "PRE-SYNCS", "MOVED", "DOWNTIME", "REASON"],
            &rows,
            width,
        );
    }
    for s in &r.sites {
        spill(&mut o, out)?;
        let _ = writeln!(
            o,
            "\n{} [{}] {} · {} · {} moved · downtime {}",
            s.name,
            s.state.label,
            s.domains.join(", "),
            plural(s.presyncs.into(), "pre-sync", "pre-syncs"),
            human_bytes(s.bytes),
            s.downtime_label()
        );
        if let Some(w) = &s.window {
            wrapped_line(
                &mut o,
                "  window ",
                &format!(
                    "freeze {} · DNS exposure {}",
                    w.freeze_label(),
                    w.exposure_label()
                ),
                9,
                width,
            );
        }
        let marks_before = |i: usize| s.marks.iter().filter(move |m| m.before == i);
        for (i, step) in s.timeline.iter().enumerate() {
            for m in marks_before(i) {
                wrapped_line(&mut o, "  ** ", &m.text, 5, width);
            }
            let first = format!("  {}  {:<13}", clock(step.at), step.state.label);
            let rest = [step.bytes.map(human_bytes), step.detail.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            if rest.is_empty() {
                let _ = writeln!(o, "{}", first.trim_end());
            } else {
                wrapped_line(&mut o, &format!("{first} "), &rest, 38, width);
            }
        }
        for m in marks_before(s.timeline.len()) {
            wrapped_line(&mut o, "  ** ", &m.text, 5, width);
        }
        for u in &s.units {
            wrapped_line(
                &mut o,
                "  unit   ",
                &format!(
                    "{} {} ({}): {}",
                    if u.ok { "ok" } else { "FAILED" },
                    u.unit,
                    u.step,
                    u.detail.as_deref().unwrap_or("")
                ),
                9,
                width,
            );
        }
        for d in &s.dns {
            wrapped_line(
                &mut o,
                "  dns    ",
                &format!(
                    "{} {} {}: {} ({})",
                    d.phase_label(),
                    d.name,
                    d.rtype,
                    d.change(),
                    d.result
                ),
                9,
                width,
            );
        }
        for p in &s.probes {
            wrapped_line(
                &mut o,
                "  probe  ",
                &format!(
                    "{} {} ({}): {}",
                    if p.ok { "ok" } else { "FAILED" },
                    p.url,
                    probe_when(s, p),
                    p.detail
                ),
                9,
                width,
            );
        }
    }
    spill(&mut o, out)
}

fn markdown(r: &MigrationReport, out: &mut dyn io::Write) -> io::Result<()> {
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
    if !r.downtime.is_empty() {
        let _ = writeln!(
            o,
            "{DOWNTIME}:\n\n| sites of | sites | min | median | p95 | max |\n|---|---:|---:|---:|---:|---:|"
        );
        let d = |s: u64| human_duration(Duration::from_secs(s));
        for t in &r.downtime {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                t.title(),
                t.sites,
                d(t.min_secs),
                d(t.median_secs),
                d(t.p95_secs),
                d(t.max_secs)
            );
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "| site | state | domains | pre-syncs | moved | downtime | reason |\n|---|---|---|---:|---:|---:|---|"
    );
    for s in &r.sites {
        spill(&mut o, out)?;
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            cell(&s.name),
            s.state.label,
            cell(&s.domains.join(", ")),
            s.presyncs,
            human_bytes(s.bytes),
            s.downtime_label(),
            cell(s.reason.as_deref().unwrap_or(""))
        );
    }
    if r.sites.iter().any(|s| s.window.is_some()) {
        let _ = writeln!(
            o,
            "\n## Windows\n\nFreeze: freeze to switch. DNS exposure: switch to the old TTL expired (plus the margin when forwarded).\n\n| site | freeze | DNS exposure |\n|---|---:|---|"
        );
        for s in &r.sites {
            spill(&mut o, out)?;
            if let Some(w) = &s.window {
                let _ = writeln!(
                    o,
                    "| `{}` | {} | {} |",
                    cell(&s.name),
                    w.freeze_label(),
                    cell(&w.exposure_label())
                );
            }
        }
    }
    if !r.platform.is_empty() {
        let _ = writeln!(
            o,
            "\n## Mail and databases of no site\n\n| unit | last step | result | detail |\n|---|---|---|---|"
        );
        for row in platform_rows(r) {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} |",
                cell(&row[0]),
                cell(&row[1]),
                row[2],
                cell(&row[3])
            );
        }
    }
    if !r.overrides.is_empty() {
        let _ = writeln!(o, "\n## Safety checks let through\n");
        for c in &r.overrides {
            let _ = writeln!(
                o,
                "- {} `{}` **[{}]** {}: {} ({})",
                clock(c.at),
                cell(&c.command),
                c.check,
                cell(&c.subject),
                cell(&c.reason),
                c.verdict
            );
        }
    }
    for s in &r.sites {
        spill(&mut o, out)?;
        let _ = writeln!(o, "\n## `{}`: {}\n", cell(&s.name), s.state.label);
        let mark = |o: &mut String, m: &MarkRow| {
            let _ = writeln!(o, "- ⚑ *{}*", cell(&m.text));
        };
        for (i, step) in s.timeline.iter().enumerate() {
            for m in s.marks.iter().filter(|m| m.before == i) {
                mark(&mut o, m);
            }
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
        for m in s.marks.iter().filter(|m| m.before >= s.timeline.len()) {
            mark(&mut o, m);
        }
        for u in &s.units {
            let _ = writeln!(
                o,
                "- {} unit `{}` ({}): {}",
                if u.ok { "✅" } else { "❌" },
                cell(&u.unit),
                cell(&u.step),
                cell(u.detail.as_deref().unwrap_or(""))
            );
        }
        for d in &s.dns {
            let _ = writeln!(
                o,
                "- DNS {} `{} {}`: {} ({})",
                d.phase_label(),
                d.name,
                d.rtype,
                cell(&d.change()),
                d.result
            );
        }
        for p in &s.probes {
            let _ = writeln!(
                o,
                "- probe {} `{}` ({}): {}",
                if p.ok { "✅" } else { "❌" },
                p.url,
                probe_when(s, p),
                cell(&p.detail)
            );
        }
    }
    spill(&mut o, out)
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:75em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 .2em}\
.bad{color:#b00020;font-weight:600}.good{color:#116329;font-weight:600}.mid{color:#9a6700;font-weight:600}\
ol{margin:.2em 0 .8em 1.2em;padding:0}li{margin:.1em 0}li.mark{list-style:none;margin-left:-1.2em;color:#9a6700;font-style:italic}";

fn state_class(s: &StateView) -> &'static str {
    match s.tone {
        Tone::Good => "good",
        Tone::Bad => "bad",
        _ => "mid",
    }
}

fn html(r: &MigrationReport, out: &mut dyn io::Write) -> io::Result<()> {
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
    if !r.downtime.is_empty() {
        let _ = write!(
            o,
            "<h2>{}</h2><table><tr><th>sites of</th><th>sites</th><th>min</th><th>median</th><th>p95</th><th>max</th></tr>",
            esc(DOWNTIME)
        );
        let d = |s: u64| human_duration(Duration::from_secs(s));
        for t in &r.downtime {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&t.title()),
                t.sites,
                d(t.min_secs),
                d(t.median_secs),
                d(t.p95_secs),
                d(t.max_secs)
            );
        }
        o.push_str("</table>");
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
    o.push_str("<table><tr><th>site</th><th>state</th><th>domains</th><th>pre-syncs</th><th>moved</th><th>downtime</th><th>reason</th></tr>");
    for s in &r.sites {
        spill(&mut o, out)?;
        let _ = write!(
            o,
            "<tr><td><a href=\"#site-{}\"><code>{}</code></a></td><td class=\"{}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.name),
            state_class(&s.state),
            s.state.label,
            esc(&s.domains.join(", ")),
            s.presyncs,
            human_bytes(s.bytes),
            esc(&s.downtime_label()),
            esc(s.reason.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>");
    if !r.platform.is_empty() {
        o.push_str("<h2>Mail and databases of no site</h2><table><tr><th>unit</th><th>last step</th><th>detail</th></tr>");
        for u in &r.platform {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&u.unit),
                esc(&u.step),
                if u.ok { "good" } else { "bad" },
                esc(u
                    .detail
                    .as_deref()
                    .unwrap_or(if u.ok { "ok" } else { "failed" }))
            );
        }
        o.push_str("</table>");
    }
    for s in &r.sites {
        spill(&mut o, out)?;
        let _ = write!(
            o,
            "<h2 id=\"site-{}\"><code>{}</code> <span class=\"{}\">{}</span> <small>downtime {}{}</small></h2><ol>",
            esc(&s.name),
            esc(&s.name),
            state_class(&s.state),
            s.state.label,
            esc(&s.downtime_label()),
            s.window
                .as_ref()
                .map(|w| esc(&format!(
                    " · freeze window {} · DNS exposure {}",
                    w.freeze_label(),
                    w.exposure_label()
                )))
                .unwrap_or_default()
        );
        let mark = |o: &mut String, m: &MarkRow| {
            let _ = write!(o, "<li class=\"mark\">⚑ {}</li>", esc(&m.text));
        };
        for (i, step) in s.timeline.iter().enumerate() {
            for m in s.marks.iter().filter(|m| m.before == i) {
                mark(&mut o, m);
            }
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
        for m in s.marks.iter().filter(|m| m.before >= s.timeline.len()) {
            mark(&mut o, m);
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
                    "<tr><td>DNS {}</td><td><code>{} {}</code> {}</td><td class=\"{}\">{}</td></tr>",
                    esc(&d.phase_label()),
                    esc(&d.name),
                    esc(&d.rtype),
                    esc(&d.change()),
                    if d.result == "applied" { "good" } else { "bad" },
                    esc(&d.result)
                );
            }
            for p in &s.probes {
                let _ = write!(
                    o,
                    "<tr><td>probe ({})</td><td><code>{}</code></td><td class=\"{}\">{}</td></tr>",
                    esc(&probe_when(s, p)),
                    esc(&p.url),
                    if p.ok { "good" } else { "bad" },
                    esc(&p.detail)
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</body></html>\n");
    spill(&mut o, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_row_rounds_the_time_left_up_and_never_below_zero() {
        let row = LeaseRow::new("s".into(), "w".into(), 0, 1_001);
        assert_eq!(row.until, "1970-01-01T00:00:00Z");
        assert_eq!(row.expires_in_secs, 2);
        assert_eq!(
            LeaseRow::new("s".into(), "w".into(), 0, 1_000).expires_in_secs,
            1
        );
        assert_eq!(
            LeaseRow::new("s".into(), "w".into(), 0, -5).expires_in_secs,
            0
        );
    }

    #[test]
    fn downtime_percentiles_are_nearest_rank() {
        let d = Downtime::of(None, (1..=20).collect()).unwrap();
        assert_eq!(
            (d.min_secs, d.median_secs, d.p95_secs, d.max_secs),
            (1, 10, 19, 20)
        );
        assert_eq!(
            d.line(),
            "20 sites · min 1s · median 10s · p95 19s · max 20s"
        );
        let one = Downtime::of(Some(2), vec![7]).unwrap();
        assert_eq!((one.median_secs, one.p95_secs, one.sites), (7, 7, 1));
        assert!(Downtime::of(None, vec![]).is_none());
    }

    #[test]
    fn dns_rows_say_what_changed_in_words() {
        let row = |phase: &str, from: &str, to: &str, from_ttl, ttl| DnsRow {
            name: "www.example.test.".into(),
            rtype: "A".into(),
            phase: phase.into(),
            from: vec![from.into()],
            to: vec![to.into()],
            ttl,
            from_ttl,
            result: "applied".into(),
            at: 0,
        };
        let lower = row("lower_ttl", "192.0.2.1", "192.0.2.1", 3600, 300);
        assert_eq!(lower.phase_label(), "lower TTL");
        assert_eq!(lower.change(), "192.0.2.1, TTL 3600 → 300");
        let switch = row("switch", "192.0.2.1", "198.51.100.1", 300, 300);
        assert_eq!(switch.change(), "192.0.2.1 → 198.51.100.1, TTL 300");
    }
}
