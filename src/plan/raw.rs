//! The plan file as written: serde + JSON Schema types, one struct per YAML mapping.
//!
//! These types are the single source of truth for the plan's shape: the JSON Schema that
//! `transhumance schema` prints and the structural checker that reports every error at once
//! are both derived from them. Doc comments here are what editors show on hover.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A migration plan: what moves from where to where, and how the cutover happens.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    /// Plan format version; only `1` exists.
    pub version: u32,
    /// Name of the migration, used in reports and as the default state directory name.
    pub name: String,
    /// Where the journal, locks and reports live. Relative paths are relative to the plan
    /// file. Default: `.transhumance/<name>` beside the plan.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// Where the journal and the work queue live when several controllers share the move
    /// (`transhumance worker`): a PostgreSQL database every controller reaches. Default: the
    /// file `journal.jsonl` in `state_dir`, on this machine only.
    #[serde(default)]
    pub state: Option<RawState>,
    /// Hosts by name. The name `local` always exists and means this machine.
    #[serde(default)]
    pub hosts: BTreeMap<String, RawHost>,
    /// Settings every unit inherits unless it overrides them.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Web sites: explicit ones, or one site per directory matched by a glob.
    #[serde(default)]
    pub sites: Vec<RawSiteRule>,
    /// Database servers and which of their databases move.
    #[serde(default)]
    pub databases: Vec<RawDatabaseRule>,
    /// Mail stores: Maildir trees or IMAP servers.
    #[serde(default)]
    pub mail: Vec<RawMailRule>,
    /// Sites read from a hosting panel's database (`vhffs`) or a CSV file (`csv`), added to
    /// the `sites:` rules; `transhumance inventory` shows what they expand to.
    #[serde(default)]
    pub inventory: Option<RawInventory>,
    /// DNS zones to switch from old addresses to new ones.
    #[serde(default)]
    pub dns: Option<RawDns>,
    /// How the final switch happens.
    #[serde(default)]
    pub cutover: Option<RawCutover>,
}

/// The journal kept in PostgreSQL, shared by several controllers.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// Connection settings, libpq style (`host=db.example port=5432 dbname=transhumance
    /// user=migrator`) or a `postgresql://` URL, without the password. TLS as libpq: `sslmode`
    /// (prefer by default; require, verify-ca, verify-full, disable), `sslrootcert` (CA file,
    /// relative to the plan), `sslcert`/`sslkey`. The tables are created on first use.
    pub postgres: String,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: Option<String>,
    /// How long a controller's lease on a site lasts unless renewed (every third of it while
    /// it works): a killed controller's sites are taken over by the others once it expires.
    /// Default `30s`.
    #[serde(default)]
    pub lease: Option<String>,
}

/// How to reach a host: this machine (`local: true`) or OpenSSH.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// `true` for this machine (no ssh).
    #[serde(default)]
    pub local: bool,
    /// `[user@]host[:port]`, resolved by the system `ssh` with your own `~/.ssh/config`
    /// (ProxyJump, agents and certificates work as in your shell).
    #[serde(default)]
    pub ssh: Option<String>,
    /// Identity file (`ssh -i`). `~` expands to your home directory.
    #[serde(default)]
    pub identity_file: Option<String>,
    /// A known_hosts file to check this host's key against (`UserKnownHostsFile`).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// Extra `ssh -o` options, such as `ConnectTimeout=10`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// Where the agent binary is kept on that host. Default `~/.cache/transhumance`.
    #[serde(default)]
    pub agent_dir: Option<String>,
    /// How other remote hosts reach this one for the direct data path (when it is the target
    /// of a remote source and `defaults.transfer` is not `relay`).
    #[serde(default)]
    pub direct: Option<RawDirectHost>,
}

/// The direct data path to a host: where sources reach its sshd, where it keeps the keys it
/// accepts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDirectHost {
    /// `host[:port]` the source hosts reach this host's sshd at, when not the address this
    /// machine uses (a private network between the data centres, say).
    #[serde(default)]
    pub address: Option<String>,
    /// The authorized_keys file of the ssh user, as this host's sshd reads it (the first
    /// file of its `AuthorizedKeysFile`): a move's restricted key is added there and removed
    /// when the move is done. Absolute or `~/`. Default `~/.ssh/authorized_keys`.
    #[serde(default)]
    pub authorized_keys: Option<String>,
}

/// Settings inherited by every unit.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Units moved in parallel (sites, databases, mailboxes). Default 4.
    #[serde(default)]
    pub jobs: Option<u32>,
    /// Bandwidth limit per host pair, such as `200MiB/s` or `50MB/s`; a bare number is KiB/s
    /// (rsync's `--bwlimit` unit), `0` no limit. Default: none.
    #[serde(default)]
    pub bwlimit: Option<String>,
    /// End-to-end verification of what was written: `blake3` (default) or `none`.
    #[serde(default)]
    pub verify: Option<VerifyMode>,
    /// Block and character device nodes found in a site's tree: `refuse` (default: not
    /// created at the target, an error for the site) or `keep` (recreated, as root).
    #[serde(default)]
    pub devices: Option<DevicePolicy>,
    /// Copy POSIX ACLs, access and default (as `rsync -A`). Default `true`; `false` leaves
    /// them out (the target's own are then left alone).
    #[serde(default)]
    pub acls: Option<bool>,
    /// Copy extended attributes (as `rsync -X`): `user.*`, and `security.*` (file
    /// capabilities) and `trusted.*` when the target runs as root. Default `true`.
    #[serde(default)]
    pub xattrs: Option<bool>,
    /// How data goes between two remote hosts: `direct` (source host to target host over ssh,
    /// with a key made for the move; this machine sees listings, hashes and progress) or
    /// `relay` (through this machine). Unset: `direct` where the source reaches the target's
    /// sshd (checked by the dry run and at the start of each command), `relay` elsewhere.
    #[serde(default)]
    pub transfer: Option<TransferMode>,
    /// Pre-syncs of a site verified before read the manifest its last clean verification
    /// kept (path, type, size, mtime, mode, owner; under `state_dir/manifests/`) instead of
    /// listing the target again. A hint only: the final pass and `verify` always list the
    /// target. Default `false`; needs `verify: blake3` (the manifests come from it).
    #[serde(default)]
    pub manifest_hint: Option<bool>,
}

/// The path of data between two remote hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// Source host to target host; a path that cannot be set up is an error.
    Direct,
    /// Through this machine.
    Relay,
}

/// What a site's sync does with block and character device nodes in its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DevicePolicy {
    /// Not created at the target; each is an error of its site (a `/dev/mem`-numbered node in
    /// a docroot would be a hole on the new server).
    Refuse,
    /// Recreated with their numbers and mode (needs root at the target).
    Keep,
}

/// Verification applied to written data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// BLAKE3 of every file, computed on both ends.
    Blake3,
    /// No verification (not recommended).
    None,
}

/// One site, or a family of sites found by a glob.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSiteRule {
    /// Site name. Required with `from.path`; with `from.glob` each matched directory's name
    /// becomes `{name}`.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the site's files are now.
    pub from: RawSiteSource,
    /// Where they go. `path` may use `{name}`.
    pub to: RawSiteTarget,
    /// Domains served by the site, templates allowed (`{name}`, `www.{name}`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Databases of the site (names, templates allowed: `{name}_wp`). They move in the site's
    /// final sync, after its freeze; a `databases:` rule must select them.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Paths to leave out, rsync style: `cache/` (a directory), `*.tmp`, `/logs/` (anchored).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Device nodes in these sites' trees: `refuse` or `keep`. Default: `defaults.devices`.
    #[serde(default)]
    pub devices: Option<DevicePolicy>,
    /// Copy POSIX ACLs. Default: `defaults.acls`.
    #[serde(default)]
    pub acls: Option<bool>,
    /// Copy extended attributes. Default: `defaults.xattrs`.
    #[serde(default)]
    pub xattrs: Option<bool>,
    /// The sites' TLS certificate and key on the source host, carried to the target with the
    /// site. Default: the files of `cutover.tls`.
    #[serde(default)]
    pub tls: Option<RawTlsFiles>,
}

/// A site's certificate and private key files. Templates: `{name}` (the site's name) and
/// `{domain}` (its first domain); absolute paths.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTlsFiles {
    /// Certificate chain (PEM, leaf first) on the source host, such as
    /// `/etc/ssl/sites/{name}/fullchain.pem`.
    pub cert: String,
    /// Private key (PEM) on the source host, such as `/etc/ssl/sites/{name}/privkey.pem`. Its
    /// mode and owner are kept at the target; its content is never printed, logged or
    /// journaled.
    pub key: String,
    /// Where the certificate goes on the target host. Default: the same path as `cert`.
    #[serde(default)]
    pub target_cert: Option<String>,
    /// Where the key goes on the target host. Default: the same path as `key`.
    #[serde(default)]
    pub target_key: Option<String>,
}

/// The source of a site rule: one directory (`path`) or many (`glob`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSiteSource {
    /// Host name from `hosts` (or `local`).
    pub host: String,
    /// One site directory.
    #[serde(default)]
    pub path: Option<String>,
    /// A glob whose matching directories are one site each, such as `/var/www/*/`.
    #[serde(default)]
    pub glob: Option<String>,
}

/// The target of a site rule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSiteTarget {
    /// Host name from `hosts` (or `local`).
    pub host: String,
    /// Target directory; `{name}` is the site's name.
    pub path: String,
}

/// Database engine.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DbEngine {
    /// MariaDB or MySQL (`mariadb-dump`/`mysqldump`).
    Mysql,
    /// Same as `mysql`.
    Mariadb,
    /// PostgreSQL (`pg_dump`/`pg_restore`).
    Postgres,
}

/// A database server and the databases that move from it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDatabaseRule {
    /// `mysql`, `mariadb` or `postgres`.
    pub engine: DbEngine,
    /// The source server.
    pub from: RawDbServer,
    /// The target server.
    pub to: RawDbServer,
    /// Database names or globs (`site_*`). Default: every user database.
    #[serde(default)]
    pub names: Vec<String>,
    /// Names or globs to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// What to do when the target already has a database we did not create:
    /// `fail` (default), `replace` or `skip`.
    #[serde(default)]
    pub conflict: Option<ConflictPolicy>,
    /// Free space to keep on the target's data directory once a copy is in, such as `10GiB`.
    /// A database that would leave less is refused before anything is written. Default `1GiB`.
    #[serde(default)]
    pub min_free_space: Option<String>,
    /// Tables larger than this are dumped and restored as streams of their own, in parallel
    /// with the rest of the database, such as `256MiB`. Default `64MiB`.
    #[serde(default)]
    pub split_tables_above: Option<String>,
    /// PostgreSQL: clients connected to the target's previous copy when the new one is swapped
    /// in. `wait` (default): until they leave, at most `connected_clients_timeout`, then refuse;
    /// `terminate`: the same wait, then their sessions are ended; `refuse`: at once. A refused
    /// swap leaves the previous copy serving and drops the new one.
    #[serde(default)]
    pub connected_clients: Option<ConnectedClients>,
    /// How long to wait for connected clients to leave, such as `2m`. Default `30s`.
    #[serde(default)]
    pub connected_clients_timeout: Option<String>,
    /// PostgreSQL: the schemas whose tables verification compares, names or globs. Default:
    /// every schema; the tables of the others are reported as skipped.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// How the final delta reaches the target: `dump` (default: dumped again at the cutover)
    /// or `replicate` (the target replicates from the source from the pre-sync's snapshot on;
    /// the cutover only waits for it to catch up). MariaDB/MySQL: one replication channel per
    /// source server, filtered to the rule's databases.
    #[serde(default)]
    pub mode: Option<DbMode>,
    /// With `mode: replicate`: how long a cutover waits for the target to apply the source's
    /// position once the site is frozen, such as `30s` or `5m` (default `5m`); past it the
    /// database fails its final sync and the site is put back on the source.
    #[serde(default)]
    pub replicate_wait: Option<String>,
}

/// How a database's changes after the pre-sync reach the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DbMode {
    /// Dumped again at the cutover, sites frozen.
    #[default]
    Dump,
    /// Replicated from the pre-sync's snapshot on; the cutover waits for the target to catch up.
    Replicate,
}

/// What to do with clients connected to a target database about to be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectedClients {
    /// Wait for them to leave (at most the timeout), then refuse.
    Wait,
    /// Wait (at most the timeout), then end their sessions.
    Terminate,
    /// Refuse at once.
    Refuse,
}

/// What to do with a target database that exists and is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// Stop and report.
    Fail,
    /// Replace its contents.
    Replace,
    /// Leave it alone and report.
    Skip,
}

/// How to reach a database server: its tools run on `host` (over ssh when remote).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDbServer {
    /// Host where the server's client tools run.
    pub host: String,
    /// Unix socket path (MariaDB socket file, or PostgreSQL socket directory).
    #[serde(default)]
    pub socket: Option<String>,
    /// TCP address as seen from that host. Default: the socket, or the tools' default.
    #[serde(default)]
    pub address: Option<String>,
    /// TCP port.
    #[serde(default)]
    pub port: Option<u16>,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: Option<String>,
    /// Directory of the server's client tools on `host`, such as `/usr/lib/postgresql/16/bin`
    /// to match the server's version. Default: found through the host's `PATH`.
    #[serde(default)]
    pub bin_dir: Option<String>,
}

/// Where an inventory reads its units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InventoryKind {
    /// A VHFFS panel: its PostgreSQL database (through `psql` on `host`) and its data directory.
    Vhffs,
    /// A CSV file, one row per site: `name,source_path,target_path,domains,databases,mail_domain`
    /// (lists separated by spaces).
    Csv,
}

/// Sites read from a hosting panel or a file instead of written one by one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// `vhffs` or `csv`.
    pub kind: InventoryKind,
    /// vhffs: host where `psql` reaches the panel's database. csv: host holding the sites' files.
    pub host: String,
    /// vhffs: the panel's database. Default `vhffs`.
    #[serde(default)]
    pub database: Option<String>,
    /// vhffs: PostgreSQL socket directory.
    #[serde(default)]
    pub socket: Option<String>,
    /// vhffs: PostgreSQL address as seen from `host`.
    #[serde(default)]
    pub address: Option<String>,
    /// vhffs: PostgreSQL port.
    #[serde(default)]
    pub port: Option<u16>,
    /// vhffs: PostgreSQL user.
    #[serde(default)]
    pub user: Option<String>,
    /// vhffs: environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// vhffs: file holding the password (first line).
    #[serde(default)]
    pub password_file: Option<String>,
    /// vhffs: directory of `psql` on `host`. Default: the host's `PATH`.
    #[serde(default)]
    pub bin_dir: Option<String>,
    /// vhffs: the panel's data directory (`web/` and `mail/boxes/` below it). Default `/data`.
    #[serde(default)]
    pub datadir: Option<String>,
    /// vhffs: host where the data directory is (web files, Maildirs). Default: `host`.
    #[serde(default)]
    pub data_host: Option<String>,
    /// csv: the file, relative to the plan file.
    #[serde(default)]
    pub file: Option<String>,
    /// vhffs: the panel's objects moved besides web areas, each as a unit of its own, in the
    /// same layout under the target's data directory: `homes` (users' home directories),
    /// `groups` (groups' directories), `repositories` (SVN, Git, Mercurial, Bazaar, CVS),
    /// `downloads` (download areas). Default: none (web areas only).
    #[serde(default)]
    pub units: Vec<VhffsUnits>,
    /// Where the sites go.
    pub to: RawInventoryTarget,
    /// Paths to leave out in every site, rsync style.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The kinds of a VHFFS panel's objects that move as units besides web areas.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum VhffsUnits {
    /// Users' home directories (`<datadir>/home/<u0>/<u1>/<user>`).
    Homes,
    /// Groups' directories (`<datadir>/groups/<g0>/<g1>/<group>`).
    Groups,
    /// SVN, Git, Mercurial, Bazaar and CVS repositories (`<datadir>/<kind>/<kind>root/...`).
    Repositories,
    /// Download areas (`<datadir>/repository/<name>`).
    Downloads,
}

/// The target of an inventory's sites.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInventoryTarget {
    /// Host name from `hosts` (or `local`).
    pub host: String,
    /// vhffs: the target's data directory, same layout as the panel's. Default: the source's.
    #[serde(default)]
    pub datadir: Option<String>,
    /// vhffs: a target directory template instead (`{name}` is the site's server name).
    #[serde(default)]
    pub path: Option<String>,
}

/// Mail store layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MailLayout {
    /// Maildir trees copied file by file (Dovecot layout).
    Maildir,
    /// IMAP server to IMAP server.
    Imap,
}

/// A mail store that moves.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMailRule {
    /// `maildir` or `imap`.
    pub layout: MailLayout,
    /// The source store.
    pub from: RawMailEndpoint,
    /// The target store.
    pub to: RawMailEndpoint,
    /// IMAP only: a CSV file of users (`source_user,source_password,target_user,target_password`,
    /// passwords as `env:VAR` or `file:PATH`). Relative to the plan file.
    #[serde(default)]
    pub users: Option<String>,
    /// IMAP only: connections per server at most. Default 4.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Maildir only: what the source's IMAP server files become at the target.
    /// `courier-to-dovecot`: Courier-IMAP's `courierimapuiddb`, `courierimapkeywords/` and
    /// `courierimapsubscribed` are converted, as the Maildir is written, into Dovecot's
    /// `dovecot-uidlist` (UIDs and UIDVALIDITY kept), `dovecot-keywords` with keyword letters in
    /// the file names, and `subscriptions`; `none`: every file is copied as it is (a Courier
    /// target). Unset: copied as they are, and the dry run warns when the source has Courier
    /// files.
    #[serde(default)]
    pub convert: Option<MailConvert>,
}

/// What a Maildir rule converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MailConvert {
    /// Files copied as they are.
    None,
    /// Courier-IMAP's files turned into Dovecot's.
    CourierToDovecot,
}

/// A Maildir tree (`host` + `path`) or an IMAP server (`server`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMailEndpoint {
    /// Maildir: host holding the tree.
    #[serde(default)]
    pub host: Option<String>,
    /// Maildir: root of the tree (one subdirectory per mailbox, or per domain then user).
    #[serde(default)]
    pub path: Option<String>,
    /// IMAP: `host:port`.
    #[serde(default)]
    pub server: Option<String>,
    /// IMAP: `tls` (implicit, port 993), `starttls`, or `plain` (only for tests on loopback).
    #[serde(default)]
    pub security: Option<ImapSecurity>,
    /// IMAP: a PEM file of CA certificates to check the server's certificate against, instead
    /// of the public web roots (a private CA). Relative to the plan file.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// IMAP connection security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImapSecurity {
    /// TLS from the first byte (IMAPS).
    Tls,
    /// Plain, then STARTTLS.
    Starttls,
    /// No encryption: passwords cross the network in clear.
    Plain,
}

/// DNS: where the zones are edited, which zones, and which addresses switch.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// How records are changed.
    pub provider: RawDnsProvider,
    /// Zones to look at, such as `example.org`.
    pub zones: Vec<String>,
    /// Authoritative servers to read and verify (`ip[:port]`). Default: the provider's server.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Recursive resolvers also checked by `dns verify` (`ip[:port]`), such as your ISP's or
    /// a public one: they show what visitors will get once caches expire.
    #[serde(default)]
    pub resolvers: Vec<String>,
    /// Address switches: every A/AAAA record holding `from` moves to `to`.
    #[serde(default)]
    pub switch: Vec<RawSwitch>,
    /// TTL (seconds) set on switching records ahead of the cutover.
    #[serde(default)]
    pub lower_ttl: Option<u32>,
    /// How long to wait for every authoritative server to serve new values, such as `2m`.
    #[serde(default)]
    pub verify_timeout: Option<String>,
    /// The `zone-share` check: how much of a zone one command may change.
    #[serde(default)]
    pub zone_share: Option<RawZoneShare>,
}

/// The `zone-share` safety check's thresholds (octoDNS's defaults: 30 %, zones of 10 RRsets
/// or more).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawZoneShare {
    /// Largest share of a zone's RRsets one command may change, from 0 to 1 (default 0.30).
    #[serde(default)]
    pub max: Option<f64>,
    /// Zones with fewer RRsets than this are not checked (default 10): a small hosting zone
    /// switches half of itself for one site.
    #[serde(default)]
    pub min_rrsets: Option<usize>,
}

/// A DNS provider.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDnsProvider {
    /// `rfc2136` (dynamic updates), `powerdns` (HTTP API), `zonefile`, or `vhffs` (the
    /// panel's `vhffs_dns_rr` table, reached like the `vhffs` inventory).
    pub kind: DnsProviderKind,
    /// rfc2136: primary server `ip[:port]` (port 53 by default).
    #[serde(default)]
    pub server: Option<String>,
    /// rfc2136: TSIG key used to sign updates.
    #[serde(default)]
    pub tsig: Option<RawTsig>,
    /// powerdns: API base URL, such as `http://127.0.0.1:8081`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// powerdns: environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// powerdns: file holding the API key.
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// zonefile: directory holding `<zone>.zone` files.
    #[serde(default)]
    pub directory: Option<String>,
    /// zonefile: command run after an edit, such as `rndc reload {zone}`.
    #[serde(default)]
    pub reload: Option<String>,
}

/// DNS provider kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsProviderKind {
    /// RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS).
    Rfc2136,
    /// PowerDNS HTTP API.
    Powerdns,
    /// Zone files edited in place, then a reload command.
    Zonefile,
    /// The VHFFS panel's tables, edited by SQL through the `inventory` connection.
    Vhffs,
}

/// A TSIG key.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTsig {
    /// Key name, such as `migrate.`.
    pub name: String,
    /// `hmac-sha256` (default) or `hmac-sha512`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Environment variable holding the base64 secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the base64 secret.
    #[serde(default)]
    pub secret_file: Option<String>,
}

/// One address switch.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSwitch {
    /// Old address.
    pub from: String,
    /// New address.
    pub to: String,
}

/// The cutover policy.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCutover {
    /// Sites per batch. Default 50.
    #[serde(default)]
    pub batch: Option<u32>,
    /// Planned start of the cutover (RFC 3339, such as `2026-11-28T22:00:00Z`), used to warn
    /// when TTLs cannot expire in time.
    #[serde(default)]
    pub at: Option<String>,
    /// Command run on the source host to freeze a site (`{name}`, `{path}`, `{host}`).
    #[serde(default)]
    pub freeze: Option<RawHook>,
    /// Command run on the source host to unfreeze a site after a rollback.
    #[serde(default)]
    pub unfreeze: Option<RawHook>,
    /// Files the `freeze` command creates in a site's tree (such as `.maintenance`), relative
    /// to the site's source directory, `{name}` allowed: never copied to the target, never
    /// compared by verification, never deleted there.
    #[serde(default)]
    pub freeze_files: Vec<String>,
    /// Checks run after the switch.
    #[serde(default)]
    pub probe: Option<RawProbe>,
    /// TLS certificates: the files of every site that does not name its own (`sites[].tls`),
    /// and how long the certificate served at the new address must still be valid.
    #[serde(default)]
    pub tls: Option<RawCutoverTls>,
    /// `rollback` (default) or `pause` when a check fails.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// A forwarder on each confirmed site's old host, for visitors whose resolvers still hold
    /// the old address: HTTP by its Host header, HTTPS by its TLS SNI (passed through, never
    /// decrypted) to the new address, until the old TTL plus `margin` has passed.
    #[serde(default)]
    pub forward: Option<RawForward>,
}

/// The stale-resolver forwarder on the old hosts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    /// Where it listens on the old host, per protocol: `{ http: "0.0.0.0:80", https: "0.0.0.0:443" }`
    /// (the old web server then listens on `local`'s addresses instead).
    pub listen: RawForwardPorts,
    /// Where the old web server keeps serving the names not forwarded (sites not confirmed yet,
    /// names of no site): `{ http: "127.0.0.1:8080", https: "127.0.0.1:8443" }`.
    pub local: RawForwardPorts,
    /// The port each protocol has at the new address (defaults 80 and 443).
    #[serde(default)]
    pub to_ports: Option<RawForwardToPorts>,
    /// How long after the old TTL a route lasts, such as `10m` (default `5m`).
    #[serde(default)]
    pub margin: Option<String>,
    /// The forwarder's directory on each old host (its routes, PID file and log), absolute.
    /// Default `/var/lib/transhumance/forward/<plan name>`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Mail ports forwarded too, each optional: TLS-wrapped ones (`smtps`, `imaps`, `pop3s`)
    /// by SNI like HTTPS, plain ones (`smtp`, `submission`, `imap`, `pop3`) as a whole port
    /// once every site of the old host is confirmed.
    #[serde(default)]
    pub mail: Option<RawForwardMail>,
}

/// The mail listeners of the forwarder, by protocol (unknown names are refused with this list).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForwardMail {
    #[serde(default)]
    pub smtp: Option<RawMailListener>,
    #[serde(default)]
    pub submission: Option<RawMailListener>,
    #[serde(default)]
    pub smtps: Option<RawMailListener>,
    #[serde(default)]
    pub imap: Option<RawMailListener>,
    #[serde(default)]
    pub imaps: Option<RawMailListener>,
    #[serde(default)]
    pub pop3: Option<RawMailListener>,
    #[serde(default)]
    pub pop3s: Option<RawMailListener>,
}

impl RawForwardMail {
    /// The listeners the plan names, with their protocol's name, in a fixed order.
    pub fn named(&self) -> Vec<(&'static str, &RawMailListener)> {
        [
            ("smtp", &self.smtp),
            ("submission", &self.submission),
            ("smtps", &self.smtps),
            ("imap", &self.imap),
            ("imaps", &self.imaps),
            ("pop3", &self.pop3),
            ("pop3s", &self.pop3s),
        ]
        .into_iter()
        .filter_map(|(n, l)| l.as_ref().map(|l| (n, l)))
        .collect()
    }
}

/// One mail port of the forwarder.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMailListener {
    /// `ADDRESS:PORT` where clients arrive at the old host.
    pub listen: String,
    /// `ADDRESS:PORT` where the old mail server keeps serving what is not forwarded.
    pub local: String,
    /// The port at the new address (default: the protocol's own, such as 25 or 993).
    #[serde(default)]
    pub to_port: Option<u16>,
}

/// An address and port per forwarded protocol.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForwardPorts {
    /// `ADDRESS:PORT` for plain HTTP (routed by the Host header).
    pub http: String,
    /// `ADDRESS:PORT` for HTTPS (routed by the TLS ClientHello's server name).
    pub https: String,
}

/// The new side's ports.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForwardToPorts {
    #[serde(default)]
    pub http: Option<u16>,
    #[serde(default)]
    pub https: Option<u16>,
}

/// Certificates at the cutover: default files per site and the validity margin.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCutoverTls {
    /// Certificate chain (PEM) of every site on its source host, templates `{name}` and
    /// `{domain}`, such as `/etc/ssl/sites/{name}/fullchain.pem`.
    #[serde(default)]
    pub cert: Option<String>,
    /// Private key (PEM) of every site on its source host, such as
    /// `/etc/ssl/sites/{name}/privkey.pem` (mode and owner kept, content never shown).
    #[serde(default)]
    pub key: Option<String>,
    /// Where certificates go on the target host. Default: the same path as `cert`.
    #[serde(default)]
    pub target_cert: Option<String>,
    /// Where keys go on the target host. Default: the same path as `key`.
    #[serde(default)]
    pub target_key: Option<String>,
    /// Find each site's certificate and key in the web server's configuration on its source
    /// host instead of a template: Apache (`SSLCertificateFile`, `SSLCertificateKeyFile`) and
    /// nginx (`ssl_certificate`, `ssl_certificate_key`) files, directories of them (such as
    /// `/etc/apache2/sites-enabled`) or globs. A site takes the TLS virtual host naming its
    /// first domain (else a `*.` wildcard covering it). `target_cert`/`target_key` (templates)
    /// say where the files go; default: the same paths. Not with `cert`/`key`.
    #[serde(default)]
    pub discover: Option<Vec<String>>,
    /// Validity the certificate served at the new address must still have before the switch,
    /// such as `14d` (default); the dry run applies it to the certificates at the source.
    #[serde(default)]
    pub min_validity: Option<String>,
}

/// A command run on a host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    /// Shell command, templates allowed.
    pub run: String,
}

/// Post-switch checks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// URL template fetched through the new address, such as `https://{domain}/`.
    #[serde(default)]
    pub http: Option<String>,
    /// Acceptable HTTP status codes. Default `[200]`.
    #[serde(default)]
    pub expect: Vec<u16>,
    /// Timeout per probe, such as `10s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Compare status and `<title>` with the old side. Default true.
    #[serde(default)]
    pub compare_with_old: Option<bool>,
    /// Also compare the page's body (BLAKE3) with the old side's: for static pages, where any
    /// difference is a problem. Default false.
    #[serde(default)]
    pub compare_body: Option<bool>,
    /// Mail services checked through the new address by their greeting, such as
    /// `smtp://mx.{domain}:25` (expects `220`) or `imap://mail.{domain}:143` (expects `* OK`).
    #[serde(default)]
    pub banners: Vec<String>,
    /// A PEM file of CA certificates the certificates served through the new address must
    /// chain to, instead of the public web roots (a private CA). Relative to the plan file.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// What happens when a post-switch check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Switch DNS back and unfreeze the source.
    Rollback,
    /// Wait for a human.
    Pause,
}
