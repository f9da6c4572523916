//! Expands the plan's site rules into concrete sites on the real hosts, and checks the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::panel::{LeftOutKind, PanelError, PanelInventory};
use crate::plan::raw::DbEngine;
use crate::plan::{
    INVENTORY_RULE, InventorySource, Issue, Loaded, MailRule, NodePath, Plan, Site, SiteDatabase,
    SiteSource,
};

use super::connections::Connections;

/// Sites found, and problems tied to the rule that produced them.
#[derive(Debug, Default)]
pub struct Inventory {
    pub sites: Vec<Site>,
    pub issues: Vec<Issue>,
    /// Rules that could not be expanded because their host is unreachable: a fact about the
    /// network today, not a mistake in the plan (`validate` warns, the dry run fails).
    pub unreachable: Vec<Issue>,
    /// What the plan's `inventory:` section expanded to (its sites are in `sites` too).
    pub panel: Option<PanelInventory>,
}

impl Inventory {
    /// The plan as the inventory's verdicts restrict it: a database the panel leaves out is
    /// left out of every rule of its engine, a tree it leaves out (a box, a mail domain being
    /// deleted, a Maildir it does not know) is excluded from the Maildir rules that hold it.
    /// The one place where a verdict becomes a rule's exclusion: the dry run, `sync`,
    /// `cutover`, `db`, `mail` and `verify` take their databases and mail from this plan, so
    /// what the review lists as left out is moved by no rule.
    pub fn restricted(&self, plan: &Plan) -> Plan {
        let mut plan = plan.clone();
        let Some(panel) = &self.panel else {
            return plan;
        };
        for l in &panel.left_out {
            if matches!(l.kind, LeftOutKind::Mysql | LeftOutKind::Pgsql) {
                let postgres = l.kind == LeftOutKind::Pgsql;
                for r in &mut plan.databases {
                    if (r.engine == DbEngine::Postgres) == postgres {
                        r.left_out.insert(l.name.clone());
                    }
                }
            }
            let (Some(host), Some(path)) = (&l.host, &l.path) else {
                continue;
            };
            for m in &mut plan.mail {
                if let MailRule::Maildir {
                    from_host,
                    from_path,
                    exclude,
                    ..
                } = m
                    && from_host == host
                    && let Ok(rel) = path.strip_prefix(from_path)
                    && !rel.as_os_str().is_empty()
                {
                    let pattern =
                        format!("{}/", crate::tree::exclude::literal(&rel.to_string_lossy()));
                    if !exclude.contains(&pattern) {
                        exclude.push(pattern);
                    }
                }
            }
        }
        plan
    }
}

/// Expands every site rule (globs run read-only on their hosts) and checks that targets do not
/// overlap each other or a source, and that names and domains are unique.
pub fn expand_sites(loaded: &Loaded, connections: &Connections) -> Inventory {
    let plan = &loaded.plan;
    let mut inv = Inventory::default();
    let issue = |origin: &NodePath, key: &str, message: String| {
        Issue::error(
            loaded.tree.locate(&origin.key(key)),
            origin.key(key),
            message,
        )
    };
    let mut globbed = glob_per_host(plan, connections);
    // Held by every controller for the whole run: allocated once, at its size.
    inv.sites.reserve_exact(
        globbed
            .values()
            .map(|d| d.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
            + plan.site_rules.len(),
    );
    for rule in &plan.site_rules {
        let found: Vec<(String, PathBuf)> = match &rule.source {
            SiteSource::Path(p) => vec![(rule.name.clone().unwrap_or_default(), p.clone())],
            SiteSource::Glob(g) => match globbed
                .remove(&rule.index)
                .expect("every glob rule was expanded")
            {
                Ok(dirs) => {
                    if dirs.is_empty() {
                        inv.issues.push(Issue::warning(
                            loaded.tree.locate(&rule.origin.key("from")),
                            rule.origin.key("from"),
                            format!(
                                "glob `{g}` matches no directory on host `{}`",
                                rule.source_host
                            ),
                        ));
                    }
                    dirs.into_iter()
                        .map(|d| {
                            (
                                d.file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                                d,
                            )
                        })
                        .collect()
                }
                Err(e @ crate::transport::TransportError::Connect { .. }) => {
                    inv.unreachable.push(
                        issue(&rule.origin, "from", format!("cannot expand the glob: {e}"))
                            .with_code("unreachable"),
                    );
                    continue;
                }
                Err(e) => {
                    inv.issues.push(issue(
                        &rule.origin,
                        "from",
                        format!("cannot expand the glob: {e}"),
                    ));
                    continue;
                }
            },
        };
        for (name, source_path) in found {
            inv.sites.push(Site {
                kind: crate::plan::UnitKind::Web,
                relink: None,
                target_path: PathBuf::from(rule.target_path.render_name(&name)),
                domains: rule
                    .domains
                    .iter()
                    .map(|d| d.render_name(&name).to_ascii_lowercase())
                    .collect(),
                databases: rule
                    .databases
                    .iter()
                    .map(|d| SiteDatabase::named(d.render_name(&name)))
                    .collect(),
                name,
                rule: rule.index,
                source_host: rule.source_host.clone(),
                source_path,
                target_host: rule.target_host.clone(),
                exclude: rule.exclude.clone(),
                owner: None,
                marks: Vec::new(),
                tls: None,
            });
        }
    }
    if let Some(source) = &plan.inventory {
        let at = NodePath::root().key("inventory");
        let read = match source {
            InventorySource::Vhffs(v) => crate::panel::vhffs::read(v, connections),
            InventorySource::Csv(c) => crate::panel::csv::read(c),
        };
        match read {
            Ok(panel) => {
                inv.sites.extend(panel.sites.iter().cloned());
                zones_left_out(loaded, &panel, &mut inv.issues);
                inv.panel = Some(panel);
            }
            Err(PanelError::Unreachable(m)) => inv
                .unreachable
                .push(Issue::error(loaded.tree.locate(&at), at, m).with_code("unreachable")),
            Err(PanelError::Failed(m)) => inv
                .issues
                .push(Issue::error(loaded.tree.locate(&at), at, m).with_code("discovery_failed")),
        }
    }
    if plan.cutover.tls.discover.is_some() {
        let found = super::tls_discover::discover(plan, &inv.sites, connections);
        let at = NodePath::root().key("cutover").key("tls").key("discover");
        for problem in super::tls_discover::apply(plan, &mut inv.sites, &found) {
            inv.issues.push(
                Issue::warning(loaded.tree.locate(&at), at.clone(), problem)
                    .with_code("tls_discovery"),
            );
        }
    }
    check_sites(loaded, &inv.sites, &mut inv.issues);
    inv.sites.shrink_to_fit();
    inv
}

/// Every glob rule's directories, each host listed on its own thread (its rules one after the
/// other): discovering a platform of many servers takes as long as its slowest host, not their
/// sum.
fn glob_per_host(
    plan: &Plan,
    connections: &Connections,
) -> HashMap<usize, Result<Vec<PathBuf>, crate::transport::TransportError>> {
    let mut by_host: HashMap<&str, Vec<(usize, &str)>> = HashMap::new();
    for rule in &plan.site_rules {
        if let SiteSource::Glob(g) = &rule.source {
            by_host
                .entry(rule.source_host.as_str())
                .or_default()
                .push((rule.index, g.as_str()));
        }
    }
    std::thread::scope(|scope| {
        let listing: Vec<_> = by_host
            .into_iter()
            .map(|(host, rules)| {
                scope.spawn(move || {
                    let transport = connections.get(host);
                    rules
                        .into_iter()
                        .map(|(rule, glob)| {
                            let dirs = match &transport {
                                Ok(t) => t.glob_dirs(glob),
                                Err(e) => Err(e.clone()),
                            };
                            (rule, dirs)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        listing
            .into_iter()
            .flat_map(|l| l.join().expect("a host's glob does not panic"))
            .collect()
    })
}

/// A zone of `dns.zones` the inventory leaves out (its panel state, or its group's) would be
/// switched while nothing of it moves: refused where the plan names it.
fn zones_left_out(loaded: &Loaded, panel: &crate::panel::PanelInventory, issues: &mut Vec<Issue>) {
    let Some(dns) = &loaded.plan.dns else {
        return;
    };
    let left: std::collections::HashMap<&str, &crate::panel::LeftOut> = panel
        .left_out
        .iter()
        .filter(|l| l.kind == LeftOutKind::Zone)
        .map(|l| (l.name.as_str(), l))
        .collect();
    for (i, zone) in dns.zones.iter().enumerate() {
        let name = zone.trim_end_matches('.').to_ascii_lowercase();
        if let Some(l) = left.get(name.as_str()) {
            let at = NodePath::root().key("dns").key("zones").index(i);
            issues.push(
                Issue::error(
                    loaded.tree.locate(&at),
                    at,
                    format!(
                        "zone `{name}` is left out by the inventory ({}): nothing of it moves, so no switch may touch it; remove it from `dns.zones` or settle it in the panel",
                        l.reason
                    ),
                )
                .with_code("zone_left_out"),
            );
        }
    }
}

fn check_sites(loaded: &Loaded, sites: &[Site], issues: &mut Vec<Issue>) {
    let plan = &loaded.plan;
    let origin = |s: &Site| {
        if s.rule == INVENTORY_RULE {
            return NodePath::root().key("inventory");
        }
        plan.rule(s.rule)
            .map(|r| r.origin.clone())
            .unwrap_or_default()
    };
    let at = |s: &Site, key: &str, severity_error: bool, message: String| {
        let path = origin(s).key(key);
        let loc = loaded.tree.locate(&path);
        // Each check below reports under its own key, which names the kind of problem.
        let code = match key {
            "name" => "duplicate_name",
            "domains" => "duplicate_domain",
            "databases" => "duplicate_database",
            _ => "overlapping_targets",
        };
        let issue = if severity_error {
            Issue::error(loc, path, message)
        } else {
            Issue::warning(loc, path, message)
        };
        issue.with_code(code)
    };
    let mut names: HashMap<&str, &Site> = HashMap::new();
    for s in sites {
        if let Some(first) = names.insert(&s.name, s) {
            issues.push(at(
                s,
                "name",
                true,
                format!(
                    "site name `{}` is used twice (sources `{}` and `{}`)",
                    s.name,
                    first.source_path.display(),
                    s.source_path.display()
                ),
            ));
        }
    }
    let mut domains: HashMap<&str, &Site> = HashMap::new();
    for s in sites {
        for d in &s.domains {
            if let Some(first) = domains.insert(d, s)
                && first.name != s.name
            {
                issues.push(at(
                    s,
                    "domains",
                    false,
                    format!(
                        "domain `{d}` belongs to both `{}` and `{}`",
                        first.name, s.name
                    ),
                ));
            }
        }
    }
    // A database moves with one site: two sites claiming it would copy it twice at once.
    // A MariaDB and a PostgreSQL database of one name are two databases.
    let mut databases: HashMap<(&str, Option<bool>), &Site> = HashMap::new();
    for s in sites {
        for d in &s.databases {
            let family = d.engine.map(|e| e == crate::plan::raw::DbEngine::Postgres);
            if let Some(first) = databases.insert((d.name.as_str(), family), s)
                && first.name != s.name
            {
                issues.push(at(
                    s,
                    "databases",
                    true,
                    format!(
                        "database `{d}` is claimed by both `{}` and `{}` (use `{{name}}` in the template, or list it on one site)",
                        first.name, s.name
                    ),
                ));
            }
        }
    }
    // Sorted by host then path, an overlap is always with an entry still on the ancestor stack.
    // An entry: host, directory key, whether it is a target, its site.
    type Root<'a> = (&'a str, String, bool, &'a Site);
    let mut roots: Vec<Root> = Vec::with_capacity(sites.len() * 2);
    for s in sites {
        roots.push((&s.target_host, dir_key(&s.target_path), true, s));
        roots.push((&s.source_host, dir_key(&s.source_path), false, s));
    }
    roots.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    // Each frame: the entry, and the nearest target at or below it on the stack (a source
    // overlapping a source is no problem, and many sources may share one directory).
    let mut stack: Vec<(&Root, Option<usize>)> = Vec::new();
    for entry in &roots {
        while let Some((top, _)) = stack.last() {
            if top.0 == entry.0 && entry.1.starts_with(&top.1) {
                break;
            }
            stack.pop();
        }
        let nearest_target = stack.last().and_then(|(_, t)| *t);
        let other = if entry.2 {
            stack.last().map(|(t, _)| *t)
        } else {
            nearest_target.map(|i| stack[i].0)
        };
        if let Some(top) = other
            && !(std::ptr::eq(top.3, entry.3) && top.2 == entry.2)
        {
            let (target, other) = if entry.2 { (entry, top) } else { (top, entry) };
            let what = if other.2 { "target" } else { "source" };
            issues.push(at(
                target.3,
                "to",
                true,
                format!(
                    "target `{}` of site `{}` overlaps the {what} `{}` of site `{}` on host `{}`",
                    target.1.trim_end_matches('/'),
                    target.3.name,
                    other.1.trim_end_matches('/'),
                    other.3.name,
                    entry.0
                ),
            ));
        }
        let here = stack.len();
        stack.push((entry, if entry.2 { Some(here) } else { nearest_target }));
    }
}

/// Directories compared by components (`/srv/a/` holds `/srv/a/b/`, not `/srv/ab/`).
fn dir_key(p: &Path) -> String {
    crate::plan::overlap::dir_key(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanded_targets_may_not_overlap_a_source() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        for s in ["www/a", "www/b"] {
            std::fs::create_dir_all(dir.path().join(s)).unwrap();
        }
        // Sites land inside the source tree itself: `www/a` would be written into.
        let text = format!(
            "version: 1\nname: t\nsites:\n  - from: {{ host: local, glob: \"{d}/www/*/\" }}\n    to: {{ host: local, path: \"{d}/www/{{name}}/copy/\" }}\n    domains: [same.example]\n"
        );
        let loaded =
            crate::plan::parse(&text, "plan.yaml", Path::new("plan.yaml"), dir.path()).unwrap();
        let connections = Connections::new(&loaded.plan.hosts, PathBuf::from("unused"));
        let inv = expand_sites(&loaded, &connections);
        assert_eq!(inv.sites.len(), 2);
        let codes: Vec<_> = inv
            .issues
            .iter()
            .map(|i| (i.code, i.is_error(), i.loc.line))
            .collect();
        assert!(
            codes.contains(&(Some("overlapping_targets"), true, 5)),
            "{:#?}",
            inv.issues
        );
        assert!(
            codes.contains(&(Some("duplicate_domain"), false, 6)),
            "{:#?}",
            inv.issues
        );
    }
}
