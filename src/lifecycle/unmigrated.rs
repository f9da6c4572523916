//! The "unmigrated" report: every object found at the source that the plan does not move, by
//! kind, count and size, so that nothing is left behind by silence. Panel objects left out
//! (with their state), what lies under the data roots outside every unit, databases of the
//! source servers no rule selects, Maildirs no mail rule covers, and panel objects of kinds
//! no unit moves yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::Connections;
use super::databases::selects;
use super::inventory::Inventory;
use crate::db::discover::list_databases;
use crate::panel::LeftOutKind;
use crate::plan::raw::DbEngine;
use crate::plan::{DatabaseRule, InventorySource, MailRule, Plan, SiteSource};
use crate::report::{Unmigrated, UnmigratedItem, UnmigratedKind};
use crate::tree::{EntryKind, ScanSummary};

/// Everything the plan (as the inventory restricts it: `Inventory::restricted`) leaves at the
/// source. With `sized`, the data roots are scanned to measure and find what no unit covers
/// (the dry run); without, only what the panel and the database servers say (`inventory`,
/// which stays fast at platform scale).
pub fn find(
    plan: &Plan,
    inventory: &Inventory,
    connections: &Connections,
    sized: bool,
) -> Unmigrated {
    let mut items: Vec<UnmigratedItem> = Vec::new();
    // Items that have a directory, by host and path.
    let mut dirs: Vec<(String, PathBuf, usize)> = Vec::new();
    if let Some(panel) = &inventory.panel {
        for l in &panel.left_out {
            if let (Some(h), Some(p)) = (&l.host, &l.path) {
                dirs.push((h.clone(), p.clone(), items.len()));
            }
            items.push(UnmigratedItem {
                kind: l.kind.as_str().into(),
                name: l.name.clone(),
                source: l
                    .host
                    .as_ref()
                    .zip(l.path.as_ref())
                    .map(|(h, p)| format!("{h}:{}", p.display())),
                state: l.state,
                state_label: l.state_label.clone(),
                files: None,
                bytes: None,
                reason: l.reason.clone(),
            });
        }
        // Rows of moving objects that stay when the panel's database does not move.
        items.extend(super::panel_rows::unmigrated(plan, panel));
        // The panel's boxes whose Maildir no `mail:` rule holds.
        for b in &panel.mailboxes {
            let Some((host, path)) = b.maildir.split_once(':') else {
                continue;
            };
            let maildir = Path::new(path);
            if !plan.mail.iter().any(|m| {
                maildir_tree(m).is_some_and(|(h, t, _)| h == host && maildir.starts_with(t))
            }) {
                let dir = maildir.parent().unwrap_or(maildir);
                dirs.push((host.to_string(), dir.to_path_buf(), items.len()));
                items.push(UnmigratedItem {
                    kind: "maildir".into(),
                    name: b.address.clone(),
                    source: Some(format!("{host}:{}", dir.display())),
                    reason: "no `mail:` rule (layout `maildir`) holds its Maildir".into(),
                    ..Default::default()
                });
            }
        }
    }
    if sized {
        measure(plan, inventory, connections, &mut items, &dirs);
    }
    databases(plan, inventory, connections, &mut items);
    items.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    let mut kinds: BTreeMap<String, UnmigratedKind> = BTreeMap::new();
    for i in &items {
        let k = kinds
            .entry(i.kind.clone())
            .or_insert_with(|| UnmigratedKind {
                kind: i.kind.clone(),
                ..Default::default()
            });
        k.count += 1;
        if let Some(b) = i.bytes {
            k.bytes = Some(k.bytes.unwrap_or(0) + b);
        }
    }
    let mut kinds: Vec<UnmigratedKind> = kinds.into_values().collect();
    if let Some(panel) = &inventory.panel {
        for o in panel.other_objects.iter().filter(|o| o.count > 0) {
            kinds.push(UnmigratedKind {
                kind: format!("panel {}", o.kind),
                count: o.count,
                bytes: None,
                note: Some(
                    "no unit moves this kind of panel object yet: its rows move with the panel's database, its files are counted under the data directory"
                        .into(),
                ),
            });
        }
    }
    Unmigrated {
        kinds,
        items,
        sized,
    }
}

/// A Maildir rule's source host, tree and excludes.
fn maildir_tree(m: &MailRule) -> Option<(&str, &Path, &[String])> {
    match m {
        MailRule::Maildir {
            from_host,
            from_path,
            exclude,
            ..
        } => Some((from_host, from_path, exclude)),
        MailRule::Imap { .. } => None,
    }
}

/// The directory a glob starts from: its components before the first with a wildcard.
fn glob_base(glob: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for c in Path::new(glob).components() {
        if c.as_os_str()
            .to_string_lossy()
            .contains(['*', '?', '[', '{'])
        {
            break;
        }
        base.push(c);
    }
    base
}

/// Scans every data root once (what the units cover left out) and each listed directory
/// outside them: sizes the items and adds what lies outside every unit, grouped by the
/// highest directory that holds nothing the plan moves.
fn measure(
    plan: &Plan,
    inventory: &Inventory,
    connections: &Connections,
    items: &mut Vec<UnmigratedItem>,
    dirs: &[(String, PathBuf, usize)],
) {
    // Roots: the panel's data directory, and the directory each site glob lists.
    let mut roots: Vec<(String, PathBuf)> = Vec::new();
    if let Some(InventorySource::Vhffs(v)) = &plan.inventory {
        roots.push((v.data_host.clone(), v.datadir.clone()));
    }
    for r in &plan.site_rules {
        if let SiteSource::Glob(g) = &r.source {
            roots.push((r.source_host.clone(), glob_base(g)));
        }
    }
    roots.sort();
    roots.dedup();
    let nested: Vec<bool> = roots
        .iter()
        .map(|(h, p)| {
            roots
                .iter()
                .any(|(h2, p2)| h2 == h && p2 != p && p.starts_with(p2))
        })
        .collect();
    let mut measured: HashSet<usize> = HashSet::new();
    for ((host, root), _) in roots.iter().zip(&nested).filter(|(_, n)| !**n) {
        let Ok(t) = connections.get(host) else {
            continue;
        };
        // What the units move: site trees and Maildir rule trees are not read.
        let mut covered: Vec<PathBuf> = inventory
            .sites
            .iter()
            .filter(|s| &s.source_host == host)
            .filter_map(|s| s.source_path.strip_prefix(root).ok().map(Path::to_path_buf))
            .collect();
        covered.extend(
            plan.mail
                .iter()
                .filter_map(maildir_tree)
                .filter_map(|(h, tree, _)| {
                    (h == host)
                        .then(|| tree.strip_prefix(root).ok().map(Path::to_path_buf))
                        .flatten()
                }),
        );
        // The archives of the lists that move are copied by `sync` and `cutover`.
        if let Some(panel) = &inventory.panel {
            covered.extend(
                super::panel_rows::archives(plan, panel)
                    .into_iter()
                    .filter(|a| &a.source_host == host)
                    .filter_map(|a| a.source.strip_prefix(root).ok().map(Path::to_path_buf)),
            );
        }
        covered.retain(|p| !p.as_os_str().is_empty());
        let exclude: Vec<String> = covered
            .iter()
            .map(|p| format!("{}/", crate::tree::exclude::literal(&p.to_string_lossy())))
            .collect();
        let Ok(scan) = t.scan(root, &exclude) else {
            continue;
        };
        // Items under this root and outside what was left unread are sized by this scan.
        let mine: HashMap<PathBuf, usize> = dirs
            .iter()
            .filter(|(h, p, _)| h == host && p.starts_with(root))
            .filter_map(|(_, p, i)| {
                let rel = p.strip_prefix(root).ok()?;
                (!covered.iter().any(|c| rel.starts_with(c))).then(|| (rel.to_path_buf(), *i))
            })
            .collect();
        // Every directory above a unit or an item: never a group of its own.
        let mut above: HashSet<PathBuf> = HashSet::new();
        for p in covered.iter().chain(mine.keys()) {
            for a in p.ancestors().skip(1) {
                above.insert(a.to_path_buf());
            }
        }
        let groups = attribute(&scan, &mine, &above, items);
        // An item the scan found nothing of (its directory is gone) stays unmeasured.
        measured.extend(mine.values().filter(|i| items[**i].files.is_some()));
        for (key, (is_dir, files, bytes)) in groups {
            if files == 0 {
                continue;
            }
            let path = root.join(&key);
            items.push(UnmigratedItem {
                kind: if is_dir { "directory" } else { "file" }.into(),
                name: path.display().to_string(),
                source: Some(format!("{host}:{}", path.display())),
                files: Some(files),
                bytes: Some(bytes),
                reason: "under a data root, in no unit of the plan".into(),
                ..Default::default()
            });
        }
    }
    // Items inside what a unit covers (a box a Maildir rule excludes) or outside every root:
    // each outermost one scanned once, its entries going to the deepest item that holds them.
    let rest: Vec<&(String, PathBuf, usize)> = dirs
        .iter()
        .filter(|(_, _, i)| !measured.contains(i))
        .collect();
    for (host, path, _) in rest.iter().filter(|(h, p, i)| {
        !rest
            .iter()
            .any(|(h2, p2, j)| h2 == h && j != i && p.starts_with(p2) && p != p2)
    }) {
        let Ok(scan) = connections.get(host).and_then(|t| t.scan(path, &[])) else {
            continue;
        };
        if !scan.exists {
            continue;
        }
        let inner: HashMap<PathBuf, usize> = rest
            .iter()
            .filter(|(h, p, _)| h == host && p.starts_with(path))
            .filter_map(|(_, p, i)| Some((p.strip_prefix(path).ok()?.to_path_buf(), *i)))
            .collect();
        if let Some(i) = inner.get(Path::new("")) {
            items[*i].files.get_or_insert(0);
            items[*i].bytes.get_or_insert(0);
        }
        attribute(&scan, &inner, &HashSet::new(), items);
    }
}

/// Adds each entry of `scan` to the item whose directory holds it, or else to its group: the
/// highest path above it that is not `above` a unit or an item. Returns the groups (whether
/// the group's own entry is a directory, files, bytes). An item is measured (its size set)
/// once the scan holds anything of it; the scan's own root is the item at `""`, if any.
fn attribute(
    scan: &ScanSummary,
    items_at: &HashMap<PathBuf, usize>,
    above: &HashSet<PathBuf>,
    items: &mut [UnmigratedItem],
) -> BTreeMap<PathBuf, (bool, u64, u64)> {
    let mut groups: BTreeMap<PathBuf, (bool, u64, u64)> = BTreeMap::new();
    for e in &scan.entries {
        let rel = PathBuf::from(String::from_utf8_lossy(&e.path).into_owned());
        let is_dir = e.kind == EntryKind::Dir;
        let (files, bytes) = if is_dir { (0, 0) } else { (1, e.size) };
        if let Some(i) = rel.ancestors().find_map(|a| items_at.get(a)) {
            *items[*i].files.get_or_insert(0) += files;
            *items[*i].bytes.get_or_insert(0) += bytes;
            continue;
        }
        if above.contains(&rel) {
            continue;
        }
        // The highest ancestor that is not above anything the plan knows.
        let mut key = rel.as_path();
        for a in rel.ancestors() {
            if a.as_os_str().is_empty() || above.contains(a) {
                break;
            }
            key = a;
        }
        let g = groups.entry(key.to_path_buf()).or_insert((true, 0, 0));
        if key == rel {
            g.0 = is_dir;
        }
        g.1 += files;
        g.2 += bytes;
    }
    groups
}

/// Databases of the rules' source servers that no rule selects (sizing the panel's left-out
/// ones), and databases of the panel that no rule of their engine selects.
fn databases(
    plan: &Plan,
    inventory: &Inventory,
    connections: &Connections,
    items: &mut Vec<UnmigratedItem>,
) {
    let postgres = |e: DbEngine| e == DbEngine::Postgres;
    let same_server = |a: &DatabaseRule, b: &DatabaseRule| {
        postgres(a.engine) == postgres(b.engine)
            && a.from.host == b.from.host
            && a.from.socket == b.from.socket
            && a.from.address == b.from.address
            && a.from.port == b.from.port
    };
    let panel_db = match &plan.inventory {
        Some(InventorySource::Vhffs(v)) => Some(v),
        _ => None,
    };
    let mut servers: Vec<&DatabaseRule> = Vec::new();
    for r in &plan.databases {
        if !servers.iter().any(|s| same_server(s, r)) {
            servers.push(r);
        }
    }
    let mut listed: HashSet<(bool, String)> = HashSet::new();
    for server in servers {
        let engine = if postgres(server.engine) {
            "postgres"
        } else {
            "mariadb"
        };
        let Ok(found) = connections
            .get(&server.from.host)
            .map_err(|e| e.to_string())
            .and_then(|t| list_databases(t.as_ref(), server.engine, &server.from))
        else {
            continue; // the dry run says the server is unreachable
        };
        let source = format!("{engine} on {}", server.from.host);
        for d in found {
            listed.insert((postgres(server.engine), d.name.clone()));
            let moved = plan
                .databases
                .iter()
                .filter(|r| same_server(r, server))
                .any(|r| selects(r, &d.name));
            if moved {
                continue;
            }
            let left_kind = if postgres(server.engine) {
                LeftOutKind::Pgsql
            } else {
                LeftOutKind::Mysql
            };
            if let Some(i) = items
                .iter_mut()
                .find(|i| i.kind == left_kind.as_str() && i.name == d.name && i.bytes.is_none())
            {
                i.bytes = Some(d.bytes);
                i.source = Some(source.clone());
                continue;
            }
            let is_panel = panel_db.is_some_and(|v| {
                postgres(server.engine)
                    && v.database == d.name
                    && v.panel.host == server.from.host
                    && v.panel.socket == server.from.socket
                    && v.panel.address == server.from.address
                    && v.panel.port == server.from.port
            });
            items.push(UnmigratedItem {
                kind: "database".into(),
                name: d.name.clone(),
                source: Some(source.clone()),
                bytes: Some(d.bytes),
                reason: if is_panel {
                    "the VHFFS panel's own database, selected by no rule: it describes every object, so move it last (a `databases:` rule that selects it makes the cutover move it once every site is confirmed)".into()
                } else {
                    format!(
                        "on the source server of `databases[{}]`, selected by no rule",
                        server.index
                    )
                },
                ..Default::default()
            });
        }
    }
    let Some(panel) = &inventory.panel else {
        return;
    };
    for d in &panel.databases {
        let pg = d.engine == "postgres";
        if listed.contains(&(pg, d.name.clone())) {
            continue;
        }
        if !plan
            .databases
            .iter()
            .any(|r| postgres(r.engine) == pg && selects(r, &d.name))
        {
            items.push(UnmigratedItem {
                kind: "database".into(),
                name: d.name.clone(),
                source: Some(format!("{} of the panel", d.engine)),
                reason: "a database of the panel that no `databases:` rule of its engine selects"
                    .into(),
                ..Default::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn entry(p: &str, kind: EntryKind, size: u64) -> Entry {
        Entry {
            path: p.as_bytes().to_vec(),
            kind,
            size,
            mtime_ns: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            dev: 1,
            ino: 1,
            rdev: 0,
            link_target: None,
        }
    }

    #[test]
    fn globs_start_from_their_fixed_directory() {
        assert_eq!(glob_base("/var/www/*/"), PathBuf::from("/var/www"));
        assert_eq!(glob_base("/srv/[ab]*/x"), PathBuf::from("/srv"));
    }

    /// Entries go to the item holding them, else to the highest directory above nothing the
    /// plan moves; directories above a unit are never a group.
    #[test]
    fn entries_are_attributed_to_items_then_grouped() {
        use EntryKind::{Dir, File};
        let scan = ScanSummary {
            exists: true,
            root_meta: None,
            errors: vec![],
            entries: vec![
                entry("web", Dir, 0),
                entry("web/aa", Dir, 0),
                entry("web/aa/bb", Dir, 0),
                entry("web/aa/bb/stray", Dir, 0),
                entry("web/aa/bb/stray/x", File, 10),
                entry("web/cc", Dir, 0),
                entry("web/cc/old", File, 5),
                entry("home", Dir, 0),
                entry("home/a", Dir, 0),
                entry("home/a/alice", Dir, 0),
                entry("home/a/alice/notes", File, 7),
                entry("README", File, 3),
                entry("empty", Dir, 0),
            ],
            ..ScanSummary::default()
        };
        // `web/aa/bb/site` is a site (left unread), `web/aa/bb/stray` an item.
        let mut items = vec![UnmigratedItem::default()];
        let at: HashMap<PathBuf, usize> = [(PathBuf::from("web/aa/bb/stray"), 0)].into();
        let above: HashSet<PathBuf> = ["", "web", "web/aa", "web/aa/bb"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let groups = attribute(&scan, &at, &above, &mut items);
        assert_eq!((items[0].files, items[0].bytes), (Some(1), Some(10)));
        let got: Vec<(&str, (bool, u64, u64))> = groups
            .iter()
            .map(|(k, v)| (k.to_str().unwrap(), *v))
            .collect();
        assert_eq!(
            got,
            [
                ("README", (false, 1, 3)),
                ("empty", (true, 0, 0)),
                ("home", (true, 1, 7)),
                ("web/cc", (true, 1, 5)),
            ]
        );
    }
}
