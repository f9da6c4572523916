//! The dry-run report: one serializable model, rendered as text, Markdown, JSON or HTML.
//!
//! The JSON form is a stable interface for CI gates: fields are only ever added, and
//! `schema_version` changes if one is removed or changes meaning (see README).
pub mod files;
pub mod html;
pub mod lifecycle;
pub mod markdown;
pub mod text;

use serde::Serialize;

/// Output formats of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Html,
}

/// Renders `report` in `format`; text fits no width (a file, a pipe).
pub fn render(report: &DryRunReport, format: Format) -> String {
    render_width(report, format, None)
}

/// Renders `report` in `format`, its text tables fitted to `width` columns when given.
pub fn render_width(report: &DryRunReport, format: Format, width: Option<usize>) -> String {
    match format {
        Format::Text => text::render(report, width),
        Format::Markdown => markdown::render(report),
        Format::Json => serde_json::to_string_pretty(report).expect("report serializes") + "\n",
        Format::Html => html::render(report),
    }
}

/// What a migration would do, discovered read-only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRunReport {
    /// Version of this JSON layout.
    pub schema_version: u32,
    pub plan: String,
    pub plan_file: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub totals: Totals,
    pub sites: Vec<SiteReport>,
    pub databases: Vec<DatabaseReport>,
    pub mail: Vec<MailboxReport>,
    pub dns: Vec<ZoneReport>,
    /// The sites' certificates at the source, when the plan names certificate files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificateReport>,
    pub risks: Vec<Risk>,
    pub estimate: Estimate,
    /// What the plan leaves at the source.
    pub unmigrated: Unmigrated,
    /// The panel's own rows (mailing lists, subscribers, cron jobs, catchalls, redirects) and
    /// how each kind moves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub panel_rows: Vec<PanelRows>,
    /// How data goes between each pair of remote hosts: `direct` (host to host) or `relay`
    /// (through this machine), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transfer: Vec<TransferPath>,
    /// Per old host, the mail ports its stale-resolver forwarder will take
    /// (`cutover.forward.mail`), and when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mail_forward: Vec<MailForwardHost>,
}

/// One old host's forwarded mail ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailForwardHost {
    pub host: String,
    /// The plan's sites on that host.
    pub sites: u64,
    pub ports: Vec<MailForwardPort>,
}

/// One forwarded mail port of an old host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailForwardPort {
    /// `smtp`, `submission`, `smtps`, `imap`, `imaps`, `pop3`, `pop3s`.
    pub protocol: String,
    pub listen: String,
    pub local: String,
    pub to_port: u16,
    /// `sni` (each confirmed site's names) or `whole_port` (every connection, once every site
    /// of the host is confirmed).
    pub routing: String,
    /// When, in words.
    pub when: String,
}

/// The data path between two remote hosts, as the dry run found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransferPath {
    pub source: String,
    pub target: String,
    /// `direct` or `relay`.
    pub path: String,
    pub detail: String,
}

impl DryRunReport {
    /// What applying the plan would still change (`plan --detailed-exitcode`).
    pub fn pending(&self) -> Pending {
        Pending {
            sites: self.sites.iter().filter(|s| s.changes_pending()).count() as u64,
            // A sync copies such a database again: the dry run cannot tell whether its rows
            // changed since the last copy, so it is pending until it is live (left alone).
            databases: self
                .databases
                .iter()
                .filter(|d| {
                    matches!(
                        d.action.as_str(),
                        "create" | "replace_ours" | "replace_theirs"
                    )
                })
                .count() as u64,
            mailboxes: self
                .mail
                .iter()
                .filter(|m| m.to_copy + m.flag_updates > 0)
                .count() as u64,
            dns_changes: self.totals.dns_changes,
        }
    }
}

/// What applying a plan would still change, per kind of unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// Sites whose target differs from the source (files, links, directories, metadata,
    /// deletes); sites live on the new side are left alone by `sync`, so never pending.
    pub sites: u64,
    /// Databases a sync would copy (created, or replaced).
    pub databases: u64,
    /// Mailboxes with messages to copy or flags to carry.
    pub mailboxes: u64,
    /// RRsets the switch would change.
    pub dns_changes: u64,
}

impl Pending {
    pub fn any(&self) -> bool {
        self.sites + self.databases + self.mailboxes + self.dns_changes > 0
    }

    /// `2 sites, 1 DNS change`, naming only the kinds with something pending.
    pub fn summary(&self) -> String {
        [
            (self.sites, "site", "sites"),
            (self.databases, "database", "databases"),
            (self.mailboxes, "mailbox", "mailboxes"),
            (self.dns_changes, "DNS change", "DNS changes"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| plural(n, one, many))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// One kind of a panel's rows that no tree carries, and what moves it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PanelRows {
    /// `mailing_list`, `subscriber`, `cron`, `catchall`, `redirect`.
    pub kind: String,
    pub count: u64,
    /// Whether the rows reach the target (in the panel's database, moved last).
    pub moved: bool,
    /// How, or why not, in words.
    pub how: String,
}

/// `panel_rows` in lines for a terminal: `KIND COUNT MOVED HOW`.
pub fn panel_rows_table(rows: &[PanelRows]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                r.kind.clone(),
                r.count.to_string(),
                if r.moved { "yes" } else { "no" }.to_string(),
                r.how.clone(),
            ]
        })
        .collect()
}

/// The certificates the plan carries with its sites (`cutover.tls`, `sites[].tls`), read at
/// the source: which will do at the new address, and an issuance schedule for the others.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CertificateReport {
    /// Validity the cutover requires of a served certificate (`cutover.tls.min_validity`).
    pub min_validity_seconds: u64,
    /// What certificates must chain to: the public web roots, or the plan's CA file.
    pub trust: String,
    pub sites: Vec<SiteCertificate>,
    /// Orders for the sites without a usable certificate, within the CA's rate limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<IssuanceSchedule>,
}

impl CertificateReport {
    /// `3 sites · 1 usable · 2 to issue (at least 14days left required, trusted: …)`.
    pub fn headline(&self) -> String {
        let usable = self.sites.iter().filter(|s| s.status == "usable").count();
        format!(
            "{} · {} usable · {} not (at least {} of validity required; chains checked against {})",
            plural(self.sites.len() as u64, "site", "sites"),
            usable,
            self.sites.len() - usable,
            match self.min_validity_seconds {
                s if s > 0 && s % 86_400 == 0 => format!("{} days", s / 86_400),
                s => humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
            },
            self.trust
        )
    }

    /// The schedule's orders in a line: `expired.test +0s, wrong.test +36s, … (N more)`.
    pub fn orders_line(&self, shown: usize) -> Option<String> {
        let s = self.schedule.as_ref()?;
        if s.new_orders.is_empty() {
            return None;
        }
        let mut line = s
            .new_orders
            .iter()
            .take(shown)
            .map(|o| format!("{} +{}s", o.site, o.at_seconds))
            .collect::<Vec<_>>()
            .join(", ");
        if s.new_orders.len() > shown {
            line.push_str(&format!(", … ({} more)", s.new_orders.len() - shown));
        }
        Some(line)
    }
}

/// One site's certificate at the source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteCertificate {
    pub site: String,
    pub domains: Vec<String>,
    /// `host:path` of the certificate at the source.
    pub cert: String,
    /// `usable`, or why not: `not_found` (no TLS virtual host in the configuration
    /// `cutover.tls.discover` reads), `missing`, `key_missing`, `unreadable`, `untrusted`,
    /// `wrong_name`, `expired`, `not_yet_valid`, `expiring`; `unknown` when the host could not
    /// be read.
    pub status: String,
    pub detail: String,
    /// DNS names the certificate holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// End of validity, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// The issuer's organization and common name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// When to order certificates so that the CA's rate limits are never hit (Let's Encrypt's).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IssuanceSchedule {
    pub ca: String,
    /// The limits the schedule keeps, in words, with where they are documented.
    pub limits: Vec<String>,
    /// Sites whose certificate from this CA already holds every name of theirs: an order for
    /// exactly its names is a renewal, exempt from the limits below: order it now.
    pub renewals: Vec<String>,
    /// Sites that need a new order, and when it can be placed (seconds from the start).
    pub new_orders: Vec<ScheduledOrder>,
    /// When the last new order can be placed, seconds from the start.
    pub seconds: u64,
    /// Registered domains with more new certificates than their weekly limit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub busy_domains: Vec<DomainLoad>,
    /// The schedule in sentences, as the text report prints it.
    pub summary: Vec<String>,
}

/// One new order of the schedule.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ScheduledOrder {
    pub site: String,
    pub names: Vec<String>,
    /// Earliest time it can be placed, seconds from the start of the schedule.
    pub at_seconds: u64,
}

/// A registered domain's share of the new orders.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DomainLoad {
    pub domain: String,
    pub orders: u64,
    /// When its last order can be placed, seconds from the start.
    pub seconds: u64,
}

/// Sums over the whole plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub sites: u64,
    pub files: u64,
    pub bytes: u64,
    /// Files whose content a sync would send (whole or by delta; not local copies or links).
    pub files_to_send: u64,
    pub bytes_to_send: u64,
    /// Files the syncs would delete at the targets, and their bytes.
    pub delete_files: u64,
    pub delete_bytes: u64,
    pub databases: u64,
    pub database_bytes: u64,
    pub mailboxes: u64,
    pub messages: u64,
    pub mail_bytes: u64,
    pub dns_changes: u64,
    pub errors: u64,
    pub warnings: u64,
    /// Objects found at the source that nothing in the plan moves, and their measured bytes.
    pub unmigrated: u64,
    pub unmigrated_bytes: u64,
}

/// One site: what is at the source, what the target has, what would move.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteReport {
    pub name: String,
    /// `host:path`.
    pub source: String,
    pub target: String,
    pub domains: Vec<String>,
    /// `uid:gid` the panel gives the site, when it comes from a panel inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Such as `suspended` (moved, but suspended in the panel).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
    /// What the unit is when not a web area: `home`, `group`, `download`, `svn`, `git`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The repository tool's check the cutover runs at the target before the switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// `old -> new`: symlinks into the old data directory are rewritten into the new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relink: Option<String>,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// `missing`, `empty` (nothing but our own temp files), `populated` (holds files the
    /// source lacks) or `partial copy`; `unknown` when the target could not be read.
    pub target_state: String,
    /// Files written at the target that were not there (sent, copied locally or linked).
    pub new_files: u64,
    /// Files whose content is rewritten at the target.
    pub changed_files: u64,
    pub unchanged_files: u64,
    /// Files whose owner, permissions or time only change.
    pub metadata_only: u64,
    /// Files whose content crosses the wire (whole or by delta), and those bytes at most.
    pub files_to_send: u64,
    pub bytes_to_send: u64,
    pub delta_files: u64,
    /// Files copied from another name at the target (renames): nothing sent.
    pub local_copies: u64,
    /// Hard links made at the target: nothing sent.
    pub hardlinks: u64,
    /// Files at the target that are not at the source (our own temp files never count).
    pub extra_at_target: u64,
    /// What the sync deletes at the target (it mirrors the source), files and bytes.
    pub delete_files: u64,
    pub delete_bytes: u64,
    pub unreadable: u64,
    /// Source files with the immutable or append-only flag, which the copy does not carry:
    /// `path: what`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<String>,
    /// Why the site may be live on the new side (from the journal): `sync` then leaves it
    /// alone, and its plan is what `--allow-live` would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    /// Why the sync would refuse to run (such as deleting over 30 % of the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The file engine's own plan (JSON only): its totals, its deletes path by path, and
    /// every other action too with `plan --itemize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<files::PlanSummary>,
    /// Why the site could not be looked at, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SiteReport {
    /// The name with what a unit of another kind than a web area is, its check at the
    /// target and its rewritten links, as every renderer shows it.
    pub fn title(&self) -> String {
        let notes: Vec<String> = [
            self.kind.clone(),
            self.check.as_ref().map(|c| format!("checked: `{c}`")),
            self.relink.as_ref().map(|r| format!("links {r}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if notes.is_empty() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, notes.join("; "))
        }
    }

    /// The target's state, or `live: left alone` when `sync` will not touch it.
    pub fn target_label(&self) -> String {
        match &self.live {
            Some(_) => "live: left alone".into(),
            None => self.target_state.clone(),
        }
    }

    /// Whether a sync would change anything at the target (a live site: no, it is left alone).
    pub fn changes_pending(&self) -> bool {
        if self.live.is_some() {
            return false;
        }
        let made = self.plan.as_ref().map_or(0, |p| {
            p.totals.dirs_to_create + p.totals.symlinks + p.totals.nodes + p.totals.hardlinks
        });
        self.target_state == "missing"
            || self.new_files + self.changed_files + self.metadata_only + self.delete_files + made
                > 0
    }

    /// What the sync deletes at the target: `3 files, 1.2 KiB`, or `-`.
    pub fn delete_label(&self) -> String {
        if self.delete_files == 0 {
            "-".into()
        } else {
            format!(
                "{}, {}",
                plural(self.delete_files, "file", "files"),
                crate::plan::units::human_bytes(self.delete_bytes)
            )
        }
    }
}

/// One database at the source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseReport {
    pub engine: String,
    pub source_host: String,
    pub target_host: String,
    pub name: String,
    pub bytes: u64,
    /// Tables (MariaDB) or relations (PostgreSQL); absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
    /// Character set (MariaDB) or encoding (PostgreSQL), and the default collation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// Storage engines of the tables (MariaDB).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<String>,
    /// Accounts that reach the database and move with it: MariaDB grantees and definers,
    /// PostgreSQL owner and roles granted on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// The transfer's own decision (`db::plan`): `create`, `replace_ours` (our earlier copy),
    /// `replace_theirs`, `skip` or `conflict` (exists, not ours, `conflict: fail`);
    /// `left_alone` when it may be live on the new side (the lifecycle's guard); `error` when
    /// the target could not be read.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DatabaseReport {
    /// `utf8mb4 / utf8mb4_general_ci · InnoDB`, or `-` when the server said nothing.
    pub fn charset_label(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match (&self.charset, &self.collation) {
            (Some(c), Some(k)) => parts.push(format!("{c} / {k}")),
            (Some(c), None) => parts.push(c.clone()),
            (None, Some(k)) => parts.push(k.clone()),
            (None, None) => {}
        }
        if !self.engines.is_empty() {
            parts.push(self.engines.join(","));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" · ")
        }
    }

    /// The accounts moving with the database, the first few named: `'app'@'%', 'ro'@'%' +3`.
    pub fn users_label(&self) -> String {
        const SHOWN: usize = 3;
        if self.users.is_empty() {
            return "-".into();
        }
        let mut s = self
            .users
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if self.users.len() > SHOWN {
            s.push_str(&format!(" +{}", self.users.len() - SHOWN));
        }
        s
    }
}

/// One mailbox (Maildir tree or IMAP account).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxReport {
    pub layout: String,
    pub source: String,
    pub target: String,
    pub mailbox: String,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Messages already at the target, as the engine matches them (Maildir: same folder and
    /// unique name; IMAP: Message-ID, size and date, look-alikes as a multiset).
    pub messages_at_target: u64,
    /// IMAP: messages a sync would append, and flag sets it would change (the engine's own
    /// matching).
    #[serde(default)]
    pub to_copy: u64,
    #[serde(default)]
    pub flag_updates: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One DNS zone: what its servers say and what would change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    pub servers: Vec<ServerState>,
    pub changes: Vec<DnsChange>,
}

/// The SOA serial one authoritative server gives, or why it gave none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerState {
    pub server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One RRset change, current value → wanted value.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsChange {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    /// TTL the switch would use (the plan's `lower_ttl`, or the current TTL).
    pub new_ttl: u32,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

/// Something an operator should look at before the weekend.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Risk {
    /// `error` (the run would fail) or `warning`.
    pub severity: String,
    /// Stable code: `target_not_empty`, `insufficient_space`, `ttl_too_high`, `duplicate_name`,
    /// `duplicate_domain`, `unreachable`, `authentication` (a server refused our login),
    /// `missing` (a database or tool that does not exist), `servers_disagree`, `database_conflict`,
    /// `unreadable_files`, `overlapping_targets`, `not_supported_yet`, `discovery_failed`,
    /// `tsig_rejected`, `tsig_secret`, `txt_names_old_address`, `flag_not_kept`.
    pub kind: String,
    /// The site, database, mailbox, zone or host concerned.
    pub subject: String,
    pub message: String,
}

impl Risk {
    pub fn warning(kind: &str, subject: impl Into<String>, message: impl Into<String>) -> Risk {
        Risk {
            severity: "warning".into(),
            kind: kind.into(),
            subject: subject.into(),
            message: message.into(),
        }
    }

    pub fn error(kind: &str, subject: impl Into<String>, message: impl Into<String>) -> Risk {
        Risk {
            severity: "error".into(),
            ..Risk::warning(kind, subject, message)
        }
    }
}

/// Every object found at the source that the plan does not move, so that nothing is left
/// behind by silence: panel objects left out (with their state), directories under the data
/// roots no unit covers, databases of the source servers no rule selects, Maildirs no mail
/// rule covers, and panel objects of kinds no unit moves yet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unmigrated {
    /// Per kind: how many, and their size where it was measured.
    pub kinds: Vec<UnmigratedKind>,
    /// Each object, with why it stays.
    pub items: Vec<UnmigratedItem>,
    /// Whether directories were measured (the dry run scans them; `inventory` does not).
    pub sized: bool,
}

/// One kind of object the plan leaves at the source.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UnmigratedKind {
    /// `site`, `mysql`, `pgsql`, `mail_domain`, `mailbox`, `zone`, `group`, `directory`,
    /// `maildir`, `database`, or a panel object kind without a unit (`user`, `svn`, ...).
    pub kind: String,
    pub count: u64,
    /// Sum of the measured sizes (absent when none was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Why the whole kind stays, when it does (no unit moves it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One object the plan leaves at the source.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UnmigratedItem {
    pub kind: String,
    pub name: String,
    /// `host:path` of a directory, or the server of a database (`postgres on old-db`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The panel's state, when the object is left out because of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    pub reason: String,
}

impl UnmigratedItem {
    /// `state 4 (creation error)`, or empty.
    pub fn state_text(&self) -> String {
        match (self.state, &self.state_label) {
            (Some(s), Some(l)) => format!("{s} ({l})"),
            (Some(s), None) => s.to_string(),
            _ => String::new(),
        }
    }
}

/// How long the moves would take, and on what the guess rests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Estimate {
    pub seconds: u64,
    pub basis: String,
}

/// `1 site`, `2 sites`: counts in words for people (never `site(s)`).
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced_site() -> SiteReport {
        SiteReport {
            name: "a.test".into(),
            target_state: "populated".into(),
            unchanged_files: 3,
            ..SiteReport::default()
        }
    }

    #[test]
    fn a_synced_plan_has_nothing_pending() {
        let r = DryRunReport {
            sites: vec![synced_site()],
            mail: vec![MailboxReport {
                messages: 4,
                messages_at_target: 4,
                ..MailboxReport::default()
            }],
            databases: vec![DatabaseReport {
                action: "left_alone".into(),
                ..DatabaseReport::default()
            }],
            ..DryRunReport::default()
        };
        assert!(!r.pending().any(), "{:?}", r.pending());
    }

    #[test]
    fn each_kind_of_change_is_pending_and_counted() {
        let mut changed = synced_site();
        changed.changed_files = 1;
        let mut live = synced_site();
        live.delete_files = 9;
        live.live = Some("switched".into());
        let missing = SiteReport {
            target_state: "missing".into(),
            ..synced_site()
        };
        let mut r = DryRunReport {
            sites: vec![changed, live, missing],
            databases: vec![DatabaseReport {
                action: "replace_ours".into(),
                ..DatabaseReport::default()
            }],
            mail: vec![MailboxReport {
                flag_updates: 2,
                ..MailboxReport::default()
            }],
            ..DryRunReport::default()
        };
        r.totals.dns_changes = 1;
        let p = r.pending();
        assert_eq!(
            p,
            Pending {
                sites: 2,
                databases: 1,
                mailboxes: 1,
                dns_changes: 1
            }
        );
        assert_eq!(p.summary(), "2 sites, 1 database, 1 mailbox, 1 DNS change");
    }
}
