//! Inventories that write the plan's units for us: a hosting panel's database (VHFFS) or a CSV
//! file, expanded into the same sites as `sites:` rules, plus what the review must see (the
//! panel's databases, mail boxes and zones, and objects the panel holds in odd states).

pub mod csv;
pub mod vhffs;

use std::path::PathBuf;

use serde::Serialize;

use crate::plan::Site;
use crate::plan::secret::Secret;
use crate::report::Risk;

/// Everything an inventory source expanded to.
#[derive(Debug, Default, Serialize)]
pub struct PanelInventory {
    /// Where the units were read, such as `vhffs database `vhffs` on host `panel``.
    pub source: String,
    /// Owner groups in the panel (users' private groups not counted).
    pub groups: u64,
    /// Users (each with a private group of their name).
    #[serde(skip_serializing_if = "is_zero")]
    pub users: u64,
    /// The sites, as the lifecycle moves them (rendered by `export`).
    #[serde(skip)]
    pub sites: Vec<Site>,
    pub databases: Vec<PanelDatabase>,
    pub mail_domains: Vec<PanelMailDomain>,
    pub mailboxes: Vec<PanelMailbox>,
    pub zones: Vec<PanelZone>,
    /// Mailing lists that move (their rows with the panel, their archives as trees).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<PanelList>,
    /// Cron jobs that move (their rows with the panel, their scripts with the group).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cron_jobs: Vec<PanelCron>,
    /// Objects left out or worth a look: error states, missing directories, orphans.
    pub risks: Vec<Risk>,
    /// Everything the inventory leaves out, each with why: no rule of the plan moves them
    /// (`lifecycle::inventory::Inventory::restricted` turns them into the rules' exclusions).
    pub left_out: Vec<LeftOut>,
    /// Panel objects of kinds no unit of this tool moves yet, counted by kind.
    pub other_objects: Vec<KindCount>,
    /// Per-group disk quotas (`vhffs_groups.quota`, MB) of the groups that move, by gid: the
    /// robots set them as filesystem group quotas on the data directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<GroupQuota>,
    /// The host the panel's data moves to: where its users' and groups' ids must resolve.
    #[serde(skip)]
    pub target_host: Option<String>,
    /// The uids and gids of the users and groups that move (the owners their files keep).
    #[serde(skip)]
    pub ids: PanelIds,
}

/// A group's quota as the panel sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupQuota {
    pub gid: u32,
    pub group: String,
    /// Megabytes (10^6 bytes), as `vhffs_groups.quota`.
    pub mb: u64,
}

/// Numeric owners the panel's moving objects keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PanelIds {
    pub uids: std::collections::BTreeSet<u32>,
    pub gids: std::collections::BTreeSet<u32>,
}

impl PanelIds {
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    pub fn extend(&mut self, other: &PanelIds) {
        self.uids.extend(&other.uids);
        self.gids.extend(&other.gids);
    }

    /// The owners of every entry of a listing (and of its root).
    pub fn of_scan(scan: &crate::tree::ScanSummary) -> PanelIds {
        let mut ids = PanelIds::default();
        for e in &scan.entries {
            ids.uids.insert(e.uid);
            ids.gids.insert(e.gid);
        }
        if let Some(m) = &scan.root_meta {
            ids.uids.insert(m.uid);
            ids.gids.insert(m.gid);
        }
        ids
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a left-out object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftOutKind {
    Group,
    Site,
    Mysql,
    Pgsql,
    MailDomain,
    Mailbox,
    Zone,
    /// A directory under the web root that no site of the panel names.
    Directory,
    /// A Maildir the panel has no box for.
    Maildir,
    /// A user's home directory.
    Home,
    Svn,
    Git,
    Mercurial,
    Bazaar,
    Cvs,
    /// A group's download area.
    Download,
    MailingList,
    Cron,
}

impl LeftOutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeftOutKind::Group => "group",
            LeftOutKind::Site => "site",
            LeftOutKind::Mysql => "mysql",
            LeftOutKind::Pgsql => "pgsql",
            LeftOutKind::MailDomain => "mail_domain",
            LeftOutKind::Mailbox => "mailbox",
            LeftOutKind::Zone => "zone",
            LeftOutKind::Directory => "directory",
            LeftOutKind::Maildir => "maildir",
            LeftOutKind::Home => "home",
            LeftOutKind::Svn => "svn",
            LeftOutKind::Git => "git",
            LeftOutKind::Mercurial => "mercurial",
            LeftOutKind::Bazaar => "bazaar",
            LeftOutKind::Cvs => "cvs",
            LeftOutKind::Download => "download",
            LeftOutKind::MailingList => "mailing_list",
            LeftOutKind::Cron => "cron",
        }
    }
}

/// One object the inventory leaves out of the move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub kind: LeftOutKind,
    pub name: String,
    /// The panel's state of the object (or of what it belongs to), when that is the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<i32>,
    /// The state in words, as the panel shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_label: Option<String>,
    pub reason: String,
    /// Where it is on disk, when it has a directory of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// How many panel objects of one kind there are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindCount {
    pub kind: String,
    pub count: u64,
}

/// A database the panel knows, with the site it moves with.
#[derive(Debug, Clone, Serialize)]
pub struct PanelDatabase {
    /// `mysql` or `postgres`.
    pub engine: String,
    pub name: String,
    pub user: String,
    /// Owner group (gid).
    pub gid: u32,
    /// The site whose final sync carries it (the first site of its group), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
    /// The password the panel stores for `user`: only to recreate the user where a dump cannot
    /// carry it. Never serialized, never printed.
    #[serde(skip)]
    pub password: Option<Secret>,
}

/// A mail domain.
#[derive(Debug, Clone, Serialize)]
pub struct PanelMailDomain {
    pub domain: String,
    pub gid: u32,
    pub boxes: u64,
    pub redirects: u64,
    /// Catchall boxes (`vhffs_mx_catchall`): rows that move with the domain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub catchalls: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
}

/// A mail box and where its Maildir is.
#[derive(Debug, Clone, Serialize)]
pub struct PanelMailbox {
    pub address: String,
    /// `host:path` of the Maildir.
    pub maildir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
}

/// A mailing list (`vhffs_mx_ml`) and where listengine keeps its archives.
#[derive(Debug, Clone, Serialize)]
pub struct PanelList {
    pub address: String,
    pub gid: u32,
    /// Rows of `vhffs_mx_ml_subscribers`.
    pub subscribers: u64,
    /// `host:path` of `<listengine>/archives/<domain>/<localpart>`, the tree that moves.
    pub archives: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
}

/// A cron job (`vhffs_cron`): a script under its group's directory, run as its owner.
#[derive(Debug, Clone, Serialize)]
pub struct PanelCron {
    /// `cronpath`, as the scheduler sees it (`/home/<group>/...` in its chroot).
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    /// Seconds between runs.
    pub interval: u64,
    /// `host:path` of the script on disk, where vhffs-fs shows `/home/<group>` (the group's
    /// directory, or a user's home for a private group): it moves with that tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
}

/// A DNS zone the panel serves.
#[derive(Debug, Clone, Serialize)]
pub struct PanelZone {
    pub zone: String,
    pub serial: u64,
    pub records: u64,
    pub gid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
}

/// One site as `transhumance inventory` shows and exports it.
#[derive(Debug, Clone, Serialize)]
pub struct SiteUnit {
    pub name: String,
    /// `host:path`.
    pub source: String,
    pub target: String,
    /// `uid:gid`, when the inventory knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub domains: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<String>,
}

/// A database a `databases:` rule moves.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MovedDatabase {
    pub name: String,
    pub engine: String,
    /// `databases[N]`.
    pub rule: String,
    /// The site that names it, or none (it moves once the sites of a batch are frozen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

impl SiteUnit {
    pub fn of(s: &Site) -> SiteUnit {
        SiteUnit {
            name: s.name.clone(),
            source: format!("{}:{}", s.source_host, s.source_path.display()),
            target: format!("{}:{}", s.target_host, s.target_path.display()),
            owner: s.owner.map(|(u, g)| format!("{u}:{g}")),
            domains: s.domains.clone(),
            databases: s.databases.iter().map(|d| d.name.clone()).collect(),
            marks: s.marks.clone(),
        }
    }
}

/// The expanded units for review (`transhumance inventory --yaml`).
#[derive(Debug, Serialize)]
pub struct InventoryExport<'a> {
    pub source: &'a str,
    pub groups: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub users: u64,
    pub sites: Vec<SiteUnit>,
    pub databases: &'a [PanelDatabase],
    pub mail_domains: &'a [PanelMailDomain],
    pub mailboxes: &'a [PanelMailbox],
    pub zones: &'a [PanelZone],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub lists: &'a [PanelList],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub cron_jobs: &'a [PanelCron],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub quotas: &'a [GroupQuota],
    pub risks: &'a [Risk],
    /// The databases the plan's `databases:` rules move, as their source servers list them
    /// (the sites' own and those no site names), when they were looked at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved_databases: Vec<MovedDatabase>,
    /// What the plan leaves at the source (`lifecycle::unmigrated`), when it was looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmigrated: Option<&'a crate::report::Unmigrated>,
}

impl PanelInventory {
    pub fn export(&self) -> InventoryExport<'_> {
        InventoryExport {
            source: &self.source,
            groups: self.groups,
            users: self.users,
            sites: self.sites.iter().map(SiteUnit::of).collect(),
            databases: &self.databases,
            mail_domains: &self.mail_domains,
            mailboxes: &self.mailboxes,
            zones: &self.zones,
            lists: &self.lists,
            cron_jobs: &self.cron_jobs,
            quotas: &self.quotas,
            risks: &self.risks,
            moved_databases: Vec::new(),
            unmigrated: None,
        }
    }
}

/// Why an inventory could not be read at all.
#[derive(Debug)]
pub enum PanelError {
    /// The host holding the panel or the file is unreachable (a fact about the network today).
    Unreachable(String),
    /// The panel or the file answered, but not with something usable.
    Failed(String),
}

/// `path` joined under `dir` without letting `..` or an absolute part escape it.
pub(crate) fn confined(dir: &std::path::Path, parts: &[&str]) -> Option<PathBuf> {
    let mut p = dir.to_path_buf();
    for part in parts {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('/') {
            return None;
        }
        p.push(part);
    }
    Some(p)
}
