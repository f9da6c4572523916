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
    /// Objects left out or worth a look: error states, missing directories, orphans.
    pub risks: Vec<Risk>,
    /// Everything the inventory leaves out, each with why: no rule of the plan moves them
    /// (`lifecycle::inventory::Inventory::restricted` turns them into the rules' exclusions).
    pub left_out: Vec<LeftOut>,
    /// Panel objects of kinds no unit of this tool moves yet, counted by kind.
    pub other_objects: Vec<KindCount>,
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
    pub risks: &'a [Risk],
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
            risks: &self.risks,
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
