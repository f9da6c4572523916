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
    /// Owner groups in the panel.
    pub groups: u64,
    /// The sites, as the lifecycle moves them (rendered by `export`).
    #[serde(skip)]
    pub sites: Vec<Site>,
    pub databases: Vec<PanelDatabase>,
    pub mail_domains: Vec<PanelMailDomain>,
    pub mailboxes: Vec<PanelMailbox>,
    pub zones: Vec<PanelZone>,
    /// Objects left out or worth a look: error states, missing directories, orphans.
    pub risks: Vec<Risk>,
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
    pub sites: Vec<SiteUnit>,
    pub databases: &'a [PanelDatabase],
    pub mail_domains: &'a [PanelMailDomain],
    pub mailboxes: &'a [PanelMailbox],
    pub zones: &'a [PanelZone],
    pub risks: &'a [Risk],
}

impl PanelInventory {
    pub fn export(&self) -> InventoryExport<'_> {
        InventoryExport {
            source: &self.source,
            groups: self.groups,
            sites: self.sites.iter().map(SiteUnit::of).collect(),
            databases: &self.databases,
            mail_domains: &self.mail_domains,
            mailboxes: &self.mailboxes,
            zones: &self.zones,
            risks: &self.risks,
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
