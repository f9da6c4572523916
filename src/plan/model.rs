//! The validated plan: names resolved, values parsed, ready for the engines.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::node::NodePath;
use super::raw::{
    ConflictPolicy, ConnectedClients, DbEngine, DbMode, DevicePolicy, ImapSecurity, OnFailure,
    TransferMode, VerifyMode,
};
use super::secret::SecretRef;
use super::template::Template;
use super::units::SshTarget;

/// A plan that passed validation.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The plan file, as given on the command line.
    pub file: PathBuf,
    /// Directory relative paths in the plan are resolved against.
    pub base_dir: PathBuf,
    /// This machine's state: the file journal (unless `state` says otherwise), logs, reports.
    pub state_dir: PathBuf,
    /// Where the journal is kept.
    pub state: StateStore,
    pub hosts: BTreeMap<String, Host>,
    /// How sources reach each ssh host directly (every ssh host has one).
    pub direct: BTreeMap<String, DirectHost>,
    pub defaults: Defaults,
    pub site_rules: Vec<SiteRule>,
    pub databases: Vec<DatabaseRule>,
    pub mail: Vec<MailRule>,
    pub inventory: Option<InventorySource>,
    pub dns: Option<DnsSpec>,
    pub cutover: Cutover,
}

/// Where a plan's journal is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum StateStore {
    /// `journal.jsonl` in `state_dir`, under one run lock (the default).
    File,
    /// A PostgreSQL database shared by several controllers.
    Postgres(PostgresState),
}

/// The journal in PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresState {
    /// libpq-style settings or a URL, without a password.
    pub conninfo: String,
    pub password: Option<SecretRef>,
    /// How long a lease lasts unless renewed.
    pub lease: Duration,
}

impl Plan {
    /// The host named `name` (validation guarantees every reference exists).
    pub fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// Every secret the plan itself refers to (database passwords, the TSIG key, the DNS API
    /// key), so that their values can be kept out of what is written down. IMAP passwords are
    /// in the users files (`lifecycle::dry_run::read_users`).
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        let mut refs: Vec<&SecretRef> = self
            .databases
            .iter()
            .flat_map(|d| [&d.from.password, &d.to.password])
            .flatten()
            .collect();
        if let StateStore::Postgres(PostgresState {
            password: Some(p), ..
        }) = &self.state
        {
            refs.push(p);
        }
        match self.dns.as_ref().map(|d| &d.provider) {
            Some(DnsProvider::Rfc2136 {
                tsig: Some(tsig), ..
            }) => refs.push(&tsig.secret),
            Some(DnsProvider::PowerDns { api_key, .. }) => refs.push(api_key),
            _ => {}
        }
        refs
    }

    /// The site's certificate and key files, rendered: its rule's own, else `cutover.tls`'s,
    /// else what `cutover.tls.discover` found in the web server's configuration; `None` when
    /// none is known for it.
    pub fn tls_files(&self, site: &Site) -> Option<SiteTls> {
        self.tls_templates(site)
            .or_else(|| site.tls.as_deref().cloned())
    }

    /// The site's certificate and key from the plan's templates (its rule's, else
    /// `cutover.tls`'s), leaving discovery out.
    pub fn tls_templates(&self, site: &Site) -> Option<SiteTls> {
        // Rules sit at their index in a valid plan: no scan per site over 50,000 rules.
        let rule = self
            .site_rules
            .get(site.rule)
            .filter(|r| r.index == site.rule)
            .or_else(|| self.site_rules.iter().find(|r| r.index == site.rule));
        rule.and_then(|r| r.tls.as_ref())
            .or(self.cutover.tls.files.as_ref())
            .map(|f| f.render(site))
    }

    /// What a site's sync does with device nodes: its rule's policy, else the defaults'.
    pub fn devices(&self, site: &Site) -> DevicePolicy {
        self.rule(site.rule)
            .map_or(self.defaults.devices, |r| r.devices)
    }

    /// Whether a site's sync copies POSIX ACLs and extended attributes: its rule's choice,
    /// else the defaults'.
    pub fn keep_xattrs(&self, site: &Site) -> crate::tree::xattr::Keep {
        let (acls, xattrs) = self
            .rule(site.rule)
            .map_or((self.defaults.acls, self.defaults.xattrs), |r| {
                (r.acls, r.xattrs)
            });
        crate::tree::xattr::Keep { xattrs, acls }
    }

    /// The site rule written at `index` under `sites:` (a binary search: rules are kept in
    /// the plan's order, and a plan may list 50,000 of them).
    pub fn rule(&self, index: usize) -> Option<&SiteRule> {
        self.site_rules
            .binary_search_by_key(&index, |r| r.index)
            .ok()
            .map(|i| &self.site_rules[i])
    }
}

/// How to reach a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub access: HostAccess,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAccess {
    Local,
    Ssh(SshAccess),
}

/// Everything the system `ssh` needs to reach a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAccess {
    pub target: SshTarget,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub options: Vec<String>,
    pub agent_dir: String,
}

/// How source hosts reach a host for the direct data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectHost {
    /// The address and port sources reach its sshd at; `None`: the one this machine uses.
    pub address: Option<(String, Option<u16>)>,
    /// The ssh user's authorized_keys file (absolute, or `~/`).
    pub authorized_keys: String,
}

impl Default for DirectHost {
    fn default() -> Self {
        DirectHost {
            address: None,
            authorized_keys: "~/.ssh/authorized_keys".into(),
        }
    }
}

/// Defaults every unit inherits.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub jobs: usize,
    /// Bytes per second, when limited.
    pub bwlimit: Option<u64>,
    pub verify: VerifyMode,
    /// Device nodes in site trees, for sites whose rule does not say (inventory sites too).
    pub devices: DevicePolicy,
    /// POSIX ACLs and extended attributes copied, for sites whose rule does not say.
    pub acls: bool,
    pub xattrs: bool,
    /// Data between two remote hosts: `None` direct where it can be set up, else as said.
    pub transfer: Option<TransferMode>,
    /// Pre-syncs read the target's manifest from its last clean verification instead of
    /// listing it (`sync::manifest`).
    pub manifest_hint: bool,
}

/// Where a site rule finds its sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteSource {
    Path(PathBuf),
    Glob(String),
}

/// One `sites:` entry.
#[derive(Debug, Clone)]
pub struct SiteRule {
    pub index: usize,
    pub name: Option<String>,
    pub source_host: String,
    pub source: SiteSource,
    pub target_host: String,
    pub target_path: Template,
    pub domains: Vec<Template>,
    pub databases: Vec<Template>,
    pub exclude: Vec<String>,
    /// Device nodes in these sites' trees (the rule's own, else `defaults.devices`).
    pub devices: DevicePolicy,
    /// POSIX ACLs and extended attributes copied (the rule's own, else the defaults').
    pub acls: bool,
    pub xattrs: bool,
    /// The sites' certificate and key (`None`: `cutover.tls`'s, if any).
    pub tls: Option<TlsFiles>,
    /// Where the rule stands in the plan, for errors found after expansion.
    pub origin: NodePath,
}

/// One site after inventory expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub rule: usize,
    pub source_host: String,
    pub source_path: PathBuf,
    pub target_host: String,
    pub target_path: PathBuf,
    pub domains: Vec<String>,
    /// Databases that move with the site's final sync.
    pub databases: Vec<SiteDatabase>,
    pub exclude: Vec<String>,
    /// Owner by number (uid, gid) as the panel knows it, for sites from a panel inventory.
    pub owner: Option<(u32, u32)>,
    /// What the review must know, such as `suspended` (moved, but suspended in the panel).
    pub marks: Vec<String>,
    /// Certificate and key found in the web server's configuration (`cutover.tls.discover`).
    /// Boxed, as rare: every site of the platform is held (see `a_site_stays_small`).
    pub tls: Option<Box<SiteTls>>,
    /// What the tree is: a web area, or another kind of a panel's objects (a home, a group's
    /// directory, a repository, a download area) moved by the same lifecycle.
    pub kind: UnitKind,
    /// Symlinks that point into the old data directory point into the new one at the target.
    /// Boxed for the same reason as `tls`.
    pub relink: Option<Box<Relink>>,
}

/// What a unit's tree is. Every kind moves through the same pre-sync, freeze, final sync,
/// verification and rollback; repositories are also checked usable at the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    #[default]
    Web,
    /// A user's home directory.
    Home,
    /// A group's directory: shared files, links to its web areas and download area, dumps.
    Group,
    /// A group's download area (`vhffs_repository`).
    Download,
    Svn,
    Git,
    Mercurial,
    Bazaar,
    Cvs,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Web => "web",
            UnitKind::Home => "home",
            UnitKind::Group => "group",
            UnitKind::Download => "download",
            UnitKind::Svn => "svn",
            UnitKind::Git => "git",
            UnitKind::Mercurial => "mercurial",
            UnitKind::Bazaar => "bazaar",
            UnitKind::Cvs => "cvs",
        }
    }

    /// The tool's own check that a repository of this kind is usable where it lies (run in
    /// the repository's directory, read-only): `None` for kinds that have none.
    pub fn check_command(self) -> Option<&'static [&'static str]> {
        match self {
            // Named explicitly: git refuses to discover a repository another user owns.
            UnitKind::Git => Some(&[
                "git",
                "--git-dir=.",
                "-c",
                "safe.directory=*",
                "fsck",
                "--no-progress",
                "--no-dangling",
            ]),
            UnitKind::Svn => Some(&["svnadmin", "verify", "--quiet", "."]),
            UnitKind::Mercurial => Some(&["hg", "verify", "--quiet"]),
            UnitKind::Bazaar => Some(&["bzr", "check", "."]),
            _ => None,
        }
    }
}

/// Symlink targets under `from` (whole components) are rewritten under `to` at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relink {
    pub from: PathBuf,
    pub to: PathBuf,
}

impl Relink {
    /// `target` with `from` replaced by `to`, when it starts with `from` (whole components);
    /// `None` otherwise. Relative targets are never touched: they move with their tree.
    pub fn rewrite(&self, target: &[u8]) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let from = self.from.as_os_str().as_bytes();
        let from = if from.len() > 1 {
            from.strip_suffix(b"/").unwrap_or(from)
        } else {
            from
        };
        let rest = target.strip_prefix(from)?;
        if !(rest.is_empty() || rest.starts_with(b"/"))
            || from.is_empty()
            || !from.starts_with(b"/")
        {
            return None;
        }
        let to = self.to.as_os_str().as_bytes();
        let to = if to.len() > 1 {
            to.strip_suffix(b"/").unwrap_or(to)
        } else {
            to
        };
        if to == from {
            return None;
        }
        let mut out = to.to_vec();
        out.extend_from_slice(rest);
        Some(out)
    }
}

/// A database that moves with a site, with its engine when the inventory knows it (a panel
/// does; a `sites:` rule's name template does not): the engine travels with the name, so a
/// PostgreSQL database is never looked for on a MariaDB server of the same name pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteDatabase {
    pub name: String,
    pub engine: Option<super::raw::DbEngine>,
}

impl SiteDatabase {
    pub fn named(name: impl Into<String>) -> SiteDatabase {
        SiteDatabase {
            name: name.into(),
            engine: None,
        }
    }

    /// Whether a rule of `engine` may hold it (MariaDB and MySQL are one family).
    pub fn fits(&self, engine: super::raw::DbEngine) -> bool {
        use super::raw::DbEngine::Postgres;
        self.engine
            .is_none_or(|mine| (mine == Postgres) == (engine == Postgres))
    }
}

impl std::fmt::Display for SiteDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl PartialEq<&str> for SiteDatabase {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

/// `Site::rule` of sites that come from the `inventory:` section rather than a `sites:` rule.
pub const INVENTORY_RULE: usize = usize::MAX;

/// The `inventory:` section.
#[derive(Debug, Clone)]
pub enum InventorySource {
    Vhffs(Box<VhffsSource>),
    Csv(CsvSource),
}

/// A VHFFS panel: its database (read with `psql`) and its data directory.
#[derive(Debug, Clone)]
pub struct VhffsSource {
    /// The panel's PostgreSQL server, reached from `panel.host`.
    pub panel: DbServer,
    pub database: String,
    pub datadir: PathBuf,
    /// Host holding the data directory.
    pub data_host: String,
    pub target_host: String,
    pub target: VhffsTarget,
    pub exclude: Vec<String>,
    /// Kinds of objects moved besides web areas (`units:`), only with a target data directory.
    pub units: BTreeSet<super::raw::VhffsUnits>,
}

/// Where a VHFFS site lands.
#[derive(Debug, Clone)]
pub enum VhffsTarget {
    /// The same hashed layout under another data directory.
    Datadir(PathBuf),
    /// A directory template (`{name}`).
    Path(Template),
}

/// A CSV file of sites.
#[derive(Debug, Clone)]
pub struct CsvSource {
    pub file: PathBuf,
    pub source_host: String,
    pub target_host: String,
    pub exclude: Vec<String>,
}

/// How a database server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbServer {
    pub host: String,
    pub socket: Option<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    /// Where the client tools live on `host`; `None` = the host's `PATH`.
    pub bin_dir: Option<String>,
}

/// One `databases:` entry.
#[derive(Debug, Clone)]
pub struct DatabaseRule {
    pub index: usize,
    pub engine: DbEngine,
    pub from: DbServer,
    pub to: DbServer,
    pub names: Vec<String>,
    pub exclude: Vec<String>,
    /// Names an inventory leaves out (a panel's verdict on their state): never selected,
    /// whatever `names` says. Empty as the plan is written; filled by
    /// `lifecycle::inventory::Inventory::restricted` once the panel is read.
    pub left_out: BTreeSet<String>,
    pub conflict: ConflictPolicy,
    /// Bytes to keep free on the target's data directory after a copy.
    pub min_free_space: u64,
    /// Tables above this size move as streams of their own.
    pub split_tables_above: u64,
    /// PostgreSQL: clients connected to the copy being replaced, and how long to wait for them.
    pub connected_clients: ConnectedClients,
    pub connected_clients_timeout: Duration,
    /// PostgreSQL schemas verified (names or globs); empty: every schema.
    pub schemas: Vec<String>,
    /// `dump` (default) or `replicate` (see `db::replication`).
    pub mode: DbMode,
    /// `mode: replicate`: how long a cutover waits for the target to catch up.
    pub replicate_wait: Duration,
}

/// An IMAP server address with its security.
#[derive(Debug, Clone)]
pub struct ImapServer {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    /// CA certificates (PEM) trusted for this server instead of the public web roots.
    pub ca_file: Option<PathBuf>,
}

/// One `mail:` entry.
#[derive(Debug, Clone)]
pub enum MailRule {
    Maildir {
        index: usize,
        from_host: String,
        from_path: PathBuf,
        to_host: String,
        to_path: PathBuf,
        /// Trees under `from_path` an inventory leaves out (exclude patterns relative to it):
        /// never moved. Empty as the plan is written; see `DatabaseRule::left_out`.
        exclude: Vec<String>,
        /// `None`: not set in the plan (files copied as they are, the dry run warns about
        /// Courier files).
        convert: Option<crate::plan::raw::MailConvert>,
    },
    Imap {
        index: usize,
        from: ImapServer,
        to: ImapServer,
        users_file: PathBuf,
        max_connections: usize,
    },
}

/// A TSIG key.
#[derive(Debug, Clone)]
pub struct Tsig {
    pub name: String,
    pub algorithm: String,
    pub secret: SecretRef,
}

/// How DNS records are changed.
#[derive(Debug, Clone)]
pub enum DnsProvider {
    Rfc2136 {
        server: SocketAddr,
        tsig: Option<Tsig>,
    },
    PowerDns {
        api_url: String,
        api_key: SecretRef,
    },
    ZoneFile {
        directory: PathBuf,
        reload: Option<Template>,
    },
    /// The VHFFS panel's `vhffs_dns`/`vhffs_dns_rr` tables, through `psql` on `host`.
    Vhffs {
        host: Box<Host>,
        panel: Box<DbServer>,
        database: String,
    },
}

/// The `dns:` section.
#[derive(Debug, Clone)]
pub struct DnsSpec {
    pub provider: DnsProvider,
    pub zones: Vec<String>,
    /// Authoritative servers that are read and verified.
    pub nameservers: Vec<SocketAddr>,
    /// Recursive resolvers checked after the switch (optional).
    pub resolvers: Vec<SocketAddr>,
    pub switch: Vec<(IpAddr, IpAddr)>,
    pub lower_ttl: Option<u32>,
    pub verify_timeout: Duration,
    pub zone_share: ZoneShare,
}

/// The `zone-share` check's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneShare {
    /// Largest share (0 to 1) of a zone's RRsets one command may change.
    pub max: f64,
    /// Zones with fewer RRsets are not checked.
    pub min_rrsets: usize,
}

impl Default for ZoneShare {
    fn default() -> Self {
        ZoneShare {
            max: 0.30,
            min_rrsets: 10,
        }
    }
}

/// The `cutover:` section with defaults filled in.
#[derive(Debug, Clone)]
pub struct Cutover {
    pub batch: usize,
    pub at: Option<SystemTime>,
    pub freeze: Option<Template>,
    pub unfreeze: Option<Template>,
    /// Files the freeze creates in a site's tree (relative, `{name}`): never carried over.
    pub freeze_files: Vec<Template>,
    pub probe: Option<Probe>,
    pub on_failure: OnFailure,
    pub tls: CutoverTls,
    /// The stale-resolver forwarder on the old hosts, when the plan wants one.
    pub forward: Option<Forward>,
}

/// The stale-resolver forwarder: where it listens on each old host, where the old web server
/// keeps serving what is not forwarded, the new side's ports, and how long past the old TTL a
/// route lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub listen_http: std::net::SocketAddr,
    pub listen_https: std::net::SocketAddr,
    pub local_http: std::net::SocketAddr,
    pub local_https: std::net::SocketAddr,
    pub to_http: u16,
    pub to_https: u16,
    pub margin: Duration,
    pub dir: PathBuf,
    /// Mail ports forwarded too (`cutover.forward.mail`), in a fixed protocol order.
    pub mail: Vec<MailForward>,
}

/// How a mail port is routed by the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailRouting {
    /// TLS from the first byte: routed by the ClientHello's server name, like HTTPS.
    Sni,
    /// No name before authentication or STARTTLS: the whole port goes to the new address once
    /// every site of the old host is confirmed.
    WholePort,
}

/// The mail protocols the forwarder knows: name, default port, routing.
pub const MAIL_PROTOCOLS: [(&str, u16, MailRouting); 7] = [
    ("smtp", 25, MailRouting::WholePort),
    ("submission", 587, MailRouting::WholePort),
    ("smtps", 465, MailRouting::Sni),
    ("imap", 143, MailRouting::WholePort),
    ("imaps", 993, MailRouting::Sni),
    ("pop3", 110, MailRouting::WholePort),
    ("pop3s", 995, MailRouting::Sni),
];

/// One mail port of the forwarder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailForward {
    pub protocol: String,
    pub listen: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
    pub to_port: u16,
    pub routing: MailRouting,
}

impl Forward {
    /// Whether some port is forwarded as a whole (plain mail).
    pub fn has_whole_ports(&self) -> bool {
        self.mail
            .iter()
            .any(|m| m.routing == MailRouting::WholePort)
    }
}

/// Where sites' certificates and keys are (templates `{name}`, `{domain}`), and where they go.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: Template,
    pub key: Template,
    pub target_cert: Template,
    pub target_key: Template,
}

impl TlsFiles {
    /// The paths for one site: `{name}` its name, `{domain}` its first domain.
    pub fn render(&self, site: &Site) -> SiteTls {
        let fill = |t: &Template| {
            PathBuf::from(t.render(|v| match v {
                "name" => Some(site.name.clone()),
                "domain" => site.domains.first().cloned(),
                _ => None,
            }))
        };
        SiteTls {
            cert: fill(&self.cert),
            key: fill(&self.key),
            target_cert: fill(&self.target_cert),
            target_key: fill(&self.target_key),
        }
    }
}

/// One site's certificate and key: on its source host, and where they go on its target host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub target_cert: PathBuf,
    pub target_key: PathBuf,
}

/// `cutover.tls.discover`: web server configuration on each site's source host (files,
/// directories of files, globs), and where the files found go at the target.
#[derive(Debug, Clone)]
pub struct TlsDiscovery {
    pub config: Vec<PathBuf>,
    /// Default: the same path as found.
    pub target_cert: Option<Template>,
    pub target_key: Option<Template>,
}

/// `cutover.tls`: default files per site, and the validity the served certificate must keep.
#[derive(Debug, Clone)]
pub struct CutoverTls {
    pub files: Option<TlsFiles>,
    /// Read each site's files from the web server's configuration (sites without templates).
    pub discover: Option<TlsDiscovery>,
    /// Least validity left on the certificate served at the new address before the switch.
    pub min_validity: Duration,
}

impl Default for CutoverTls {
    fn default() -> Self {
        CutoverTls {
            files: None,
            discover: None,
            min_validity: Duration::from_secs(14 * 86_400),
        }
    }
}

/// Post-switch HTTP probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub url: Template,
    pub expect: Vec<u16>,
    pub timeout: Duration,
    pub compare_with_old: bool,
    /// Compare the body's hash with the old side too.
    pub compare_body: bool,
    /// `smtp://host:port` or `imap://host:port` templates: greetings checked after the switch.
    pub banners: Vec<Template>,
    /// CA certificates (PEM) the served certificates must chain to, instead of the public web
    /// roots.
    pub ca_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relink_rewrites_whole_components_of_absolute_targets_only() {
        let r = Relink {
            from: "/data/".into(),
            to: "/srv/data".into(),
        };
        let w = |t: &str| {
            r.rewrite(t.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            w("/data/groups/a/l/alpha").as_deref(),
            Some("/srv/data/groups/a/l/alpha")
        );
        assert_eq!(w("/data").as_deref(), Some("/srv/data"));
        // Another directory that merely starts alike, relative links, and unrelated paths.
        assert_eq!(w("/database/x"), None);
        assert_eq!(w("../data/x"), None);
        assert_eq!(w("data/x"), None);
        assert_eq!(w("/etc/passwd"), None);
        let same = Relink {
            from: "/data".into(),
            to: "/data/".into(),
        };
        assert_eq!(same.rewrite(b"/data/x"), None);
    }

    /// Every site of a platform (50,000 and more) is held by each controller: its inline size
    /// is what the list costs before any name is stored.
    #[test]
    fn a_site_stays_small() {
        let size = std::mem::size_of::<Site>();
        assert!(size <= 288, "Site grew to {size} bytes");
    }
}
