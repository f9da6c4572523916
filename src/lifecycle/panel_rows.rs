//! The panel's own rows that no tree carries (mailing lists and their subscribers, cron jobs,
//! catchalls, redirects), and mailing lists' archives. Rows live in the panel's database:
//! when a `databases:` rule moves it (last, once every site is confirmed) they travel with
//! it, every one; when none does they stay, and each object is listed as left at the source.
//! Archives are trees under listengine's directory, copied by `sync` and `cutover` for the
//! lists that move, never deleting at the target (listengine only adds to them).

use std::path::{Path, PathBuf};

use crate::panel::PanelInventory;
use crate::plan::{InventorySource, Plan, VhffsSource};
use crate::report::{PanelRows, UnmigratedItem};

/// The rule that moves the panel's database, as `databases[N]`, when one does.
fn panel_rule(plan: &Plan) -> Option<String> {
    super::databases::panel_database(plan).map(|(r, _)| format!("databases[{}]", r.index))
}

/// Each kind of rows with its count and how it moves.
pub fn rows(plan: &Plan, panel: &PanelInventory) -> Vec<PanelRows> {
    let lists = panel.lists.len() as u64;
    let subscribers: u64 = panel.lists.iter().map(|l| l.subscribers).sum();
    let cron = panel.cron_jobs.len() as u64;
    let catchalls: u64 = panel.mail_domains.iter().map(|m| m.catchalls).sum();
    let redirects: u64 = panel.mail_domains.iter().map(|m| m.redirects).sum();
    let rule = panel_rule(plan);
    let kinds: [(&str, u64, &str); 5] = [
        (
            "mailing_list",
            lists,
            "; archives copied by `sync` and `cutover` from listengine's directory",
        ),
        ("subscriber", subscribers, ", with their list"),
        (
            "cron",
            cron,
            "; scripts with their group's directory (run as their owner: its uid must resolve)",
        ),
        ("catchall", catchalls, ", with their mail domain"),
        ("redirect", redirects, ", with their mail domain"),
    ];
    kinds
        .into_iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(kind, count, also)| PanelRows {
            kind: kind.into(),
            count,
            moved: rule.is_some(),
            how: match &rule {
                Some(r) => format!(
                    "in the panel's database (`{r}`), moved last once every site is confirmed{also}"
                ),
                None => format!(
                    "stay in the panel's database, which no `databases:` rule moves: the target's panel will not know them (each is listed as left at the source){}",
                    if kind == "mailing_list" {
                        "; archives are still copied"
                    } else {
                        ""
                    }
                ),
            },
        })
        .collect()
}

/// Without the panel's database moving, every moving object's rows stay: one item each.
pub fn unmigrated(plan: &Plan, panel: &PanelInventory) -> Vec<UnmigratedItem> {
    if panel_rule(plan).is_some() {
        return Vec::new();
    }
    let why = "its panel rows stay in the panel's database, which no `databases:` rule moves";
    let mut items = Vec::new();
    for l in &panel.lists {
        items.push(UnmigratedItem {
            kind: "mailing_list rows".into(),
            name: l.address.clone(),
            reason: format!(
                "{why} (the list and {} subscriber row(s)); its archives are copied",
                l.subscribers
            ),
            ..Default::default()
        });
    }
    for c in &panel.cron_jobs {
        items.push(UnmigratedItem {
            kind: "cron rows".into(),
            name: c.path.clone(),
            reason: format!("{why}; its script moves with its group's directory"),
            ..Default::default()
        });
    }
    for m in panel
        .mail_domains
        .iter()
        .filter(|m| m.catchalls + m.redirects > 0)
    {
        items.push(UnmigratedItem {
            kind: "mail_domain rows".into(),
            name: m.domain.clone(),
            reason: format!(
                "{why} ({} catchall(s), {} redirect(s))",
                m.catchalls, m.redirects
            ),
            ..Default::default()
        });
    }
    items
}

/// A list's archives: where they are and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub list: String,
    pub source_host: String,
    pub source: PathBuf,
    pub target_host: String,
    pub target: PathBuf,
}

/// The archives of the lists that move (a list without archives on disk has nothing to copy).
pub fn archives(plan: &Plan, panel: &PanelInventory) -> Vec<Archive> {
    let Some(InventorySource::Vhffs(v)) = &plan.inventory else {
        return Vec::new();
    };
    let (from, to) = (
        crate::panel::vhffs::listengine_dir(v),
        crate::panel::vhffs::target_listengine_dir(v),
    );
    panel
        .lists
        .iter()
        .filter_map(|l| {
            let (_, path) = l.archives.split_once(':')?;
            let rel = Path::new(path).strip_prefix(&from).ok()?;
            Some(Archive {
                list: l.address.clone(),
                source_host: v.data_host.clone(),
                source: PathBuf::from(path),
                target_host: target_host(v),
                target: to.join(rel),
            })
        })
        .collect()
}

fn target_host(v: &VhffsSource) -> String {
    v.target_host.clone()
}

/// The copy of an archive: added to, never pruned (listengine only adds messages; after the
/// switch it adds them at the target).
pub fn archive_options(plan: &Plan) -> crate::sync::SyncOptions {
    crate::sync::SyncOptions {
        delete: false,
        jobs: plan.defaults.jobs.max(1),
        bwlimit: plan.defaults.bwlimit,
        ..crate::sync::SyncOptions::default()
    }
}
