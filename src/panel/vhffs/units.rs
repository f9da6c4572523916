//! The VHFFS objects that are trees but not web areas, as units of their own: users' homes,
//! groups' directories, repositories of every kind VHFFS has and download areas, each at the
//! path VHFFS's API gives it (`Vhffs::User::create`, `Vhffs::Group::get_dir`,
//! `Vhffs::Services::*::get_dir`), in the same layout under the target's data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Judge, field, number, state_risk};
use crate::panel::{LeftOutKind, PanelInventory, confined};
use crate::plan::raw::VhffsUnits;
use crate::plan::{INVENTORY_RULE, Relink, Site, UnitKind, VhffsSource, VhffsTarget};
use crate::report::Risk;

/// Read only when the plan moves some of these kinds (tags as `super::STATEMENTS`).
pub(super) const STATEMENTS: &[&str] = &[
    // A user's home belongs to the user and the user's private group.
    "SELECT 'home', u.username, u.uid, u.gid, o.state FROM vhffs_users u \
     JOIN vhffs_object o ON o.object_id = u.object_id ORDER BY u.username",
    // Private groups have no directory: VHFFS activates them without the group robot.
    "SELECT 'gdir', g.groupname, g.gid, o.owner_uid, o.state FROM vhffs_groups g \
     JOIN vhffs_object o ON o.object_id = g.object_id \
     WHERE NOT EXISTS (SELECT 1 FROM vhffs_users u WHERE u.gid = g.gid) ORDER BY g.groupname",
    "SELECT 'repo', 'svn', r.reponame, o.owner_uid, o.owner_gid, o.state FROM vhffs_svn r \
     JOIN vhffs_object o ON o.object_id = r.object_id ORDER BY r.reponame",
    "SELECT 'repo', 'git', r.reponame, o.owner_uid, o.owner_gid, o.state FROM vhffs_git r \
     JOIN vhffs_object o ON o.object_id = r.object_id ORDER BY r.reponame",
    "SELECT 'repo', 'mercurial', r.reponame, o.owner_uid, o.owner_gid, o.state \
     FROM vhffs_mercurial r JOIN vhffs_object o ON o.object_id = r.object_id ORDER BY r.reponame",
    "SELECT 'repo', 'bazaar', r.reponame, o.owner_uid, o.owner_gid, o.state FROM vhffs_bazaar r \
     JOIN vhffs_object o ON o.object_id = r.object_id ORDER BY r.reponame",
    "SELECT 'repo', 'cvs', r.cvsroot, o.owner_uid, o.owner_gid, o.state FROM vhffs_cvs r \
     JOIN vhffs_object o ON o.object_id = r.object_id ORDER BY r.cvsroot",
    "SELECT 'repo', 'download', r.name, o.owner_uid, o.owner_gid, o.state FROM vhffs_repository r \
     JOIN vhffs_object o ON o.object_id = r.object_id ORDER BY r.name",
];

/// Panel object types (`Vhffs::Constants`) a selection of kinds moves.
pub(super) fn covers(units: &std::collections::BTreeSet<VhffsUnits>, object_type: i32) -> bool {
    let kind = match object_type {
        10 => VhffsUnits::Homes,
        11 => VhffsUnits::Groups,
        21 => VhffsUnits::Downloads,
        40..=44 => VhffsUnits::Repositories,
        _ => return false,
    };
    units.contains(&kind)
}

/// The two first characters of `name` as VHFFS hashes homes and group directories
/// (`substr($name, 0, 1)/substr($name, 1, 1)/$name`).
fn two_levels(datadir: &Path, top: &str, name: &str) -> Option<PathBuf> {
    let mut c = name.chars();
    let (a, b) = (c.next()?.to_string(), c.next()?.to_string());
    confined(datadir, &[top, &a, &b, name])
}

/// `<datadir>/home/<u0>/<u1>/<user>` (`Vhffs::User::create`).
pub fn home_path(datadir: &Path, user: &str) -> Option<PathBuf> {
    two_levels(datadir, "home", user)
}

/// `<datadir>/groups/<g0>/<g1>/<group>` (`Vhffs::Group::get_dir`).
pub fn group_path(datadir: &Path, group: &str) -> Option<PathBuf> {
    two_levels(datadir, "groups", group)
}

/// Where a repository of `kind` named `name` (`group/repo` as the panel stores it) lies.
pub fn repository_path(datadir: &Path, kind: UnitKind, name: &str) -> Option<PathBuf> {
    let base: &[&str] = match kind {
        UnitKind::Svn => &["svn", "svnroot"],
        UnitKind::Git => &["git", "gitroot"],
        UnitKind::Mercurial => &["mercurial", "mercurialroot"],
        UnitKind::Bazaar => &["bazaar", "bazaarroot"],
        UnitKind::Cvs => &["cvs", "cvsroot"],
        UnitKind::Download => &["repository"],
        _ => return None,
    };
    let parts: Vec<&str> = base.iter().copied().chain(name.split('/')).collect();
    confined(datadir, &parts)
}

fn kind_of(tag: &str) -> Option<(UnitKind, LeftOutKind)> {
    Some(match tag {
        "svn" => (UnitKind::Svn, LeftOutKind::Svn),
        "git" => (UnitKind::Git, LeftOutKind::Git),
        "mercurial" => (UnitKind::Mercurial, LeftOutKind::Mercurial),
        "bazaar" => (UnitKind::Bazaar, LeftOutKind::Bazaar),
        "cvs" => (UnitKind::Cvs, LeftOutKind::Cvs),
        "download" => (UnitKind::Download, LeftOutKind::Download),
        _ => return None,
    })
}

/// The unit's name: its kind and its panel name (`home/alice`, `git/alpha/site.git`); no
/// server name holds a `/`, so these never meet a web area's name.
pub fn unit_name(kind: UnitKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

/// Adds the units of the selected kinds from the rows tagged `home`, `gdir` and `repo`, and
/// lists those whose state (or whose group's) keeps them at the source.
pub(super) fn expand(
    source: &VhffsSource,
    by_tag: &BTreeMap<&str, Vec<&[String]>>,
    judge: &Judge,
    inv: &mut PanelInventory,
) {
    let VhffsTarget::Datadir(target_dir) = &source.target else {
        return;
    };
    let relink = (target_dir != &source.datadir).then(|| {
        Box::new(Relink {
            from: source.datadir.clone(),
            to: target_dir.clone(),
        })
    });
    let web_areas = inv.sites.len();
    let wants = |k: VhffsUnits| source.units.contains(&k);
    let rows = |t: &str| by_tag.get(t).cloned().unwrap_or_default();
    let unit = |inv: &mut PanelInventory,
                kind: UnitKind,
                left: LeftOutKind,
                name: &str,
                path: fn(&Path, &str) -> Option<PathBuf>,
                owner: (u32, u32),
                state: i32| {
        let label = unit_name(kind, name);
        let source_path = path(&source.datadir, name);
        let marks = match judge.judge(state, Some(owner.1)) {
            Ok(m) => m,
            Err(v) => {
                inv.risks.push(state_risk(kind.as_str(), &label, v.state));
                inv.left_out
                    .push(judge.left_out(left, &label, v, source_path));
                return;
            }
        };
        let (Some(source_path), Some(target_path)) = (source_path, path(target_dir, name)) else {
            inv.risks.push(Risk::error(
                "panel_invalid",
                &label,
                format!(
                    "{} `{name}`: the name cannot be a directory name",
                    kind.as_str()
                ),
            ));
            return;
        };
        inv.sites.push(Site {
            name: label,
            rule: INVENTORY_RULE,
            source_host: source.data_host.clone(),
            source_path,
            target_host: source.target_host.clone(),
            target_path,
            domains: Vec::new(),
            databases: Vec::new(),
            exclude: source.exclude.clone(),
            owner: Some(owner),
            marks,
            kind,
            relink: relink.clone(),
            tls: None,
        });
    };
    if wants(VhffsUnits::Homes) {
        for h in rows("home") {
            let (uid, gid, state): (u32, u32, i32) = (number(h, 1), number(h, 2), number(h, 3));
            unit(
                inv,
                UnitKind::Home,
                LeftOutKind::Home,
                field(h, 0),
                home_path,
                (uid, gid),
                state,
            );
        }
    }
    if wants(VhffsUnits::Groups) {
        for g in rows("gdir") {
            let (name, gid, uid, state): (&str, u32, u32, i32) =
                (field(g, 0), number(g, 1), number(g, 2), number(g, 3));
            if judge.groups.contains_key(&gid) {
                // The group itself is listed as left out already: its directory goes with it.
                if let Some(l) = inv
                    .left_out
                    .iter_mut()
                    .find(|l| l.kind == LeftOutKind::Group && l.name == name && l.path.is_none())
                {
                    l.path = group_path(&source.datadir, name);
                    l.host = Some(source.data_host.clone());
                }
                continue;
            }
            unit(
                inv,
                UnitKind::Group,
                LeftOutKind::Group,
                name,
                group_path,
                (uid, gid),
                state,
            );
        }
    }
    for r in rows("repo") {
        let Some((kind, left)) = kind_of(field(r, 0)) else {
            continue;
        };
        let wanted = if kind == UnitKind::Download {
            wants(VhffsUnits::Downloads)
        } else {
            wants(VhffsUnits::Repositories)
        };
        if !wanted {
            continue;
        }
        let (uid, gid, state): (u32, u32, i32) = (number(r, 2), number(r, 3), number(r, 4));
        let path: fn(&Path, &str) -> Option<PathBuf> = match kind {
            UnitKind::Svn => |d, n| repository_path(d, UnitKind::Svn, n),
            UnitKind::Git => |d, n| repository_path(d, UnitKind::Git, n),
            UnitKind::Mercurial => |d, n| repository_path(d, UnitKind::Mercurial, n),
            UnitKind::Bazaar => |d, n| repository_path(d, UnitKind::Bazaar, n),
            UnitKind::Cvs => |d, n| repository_path(d, UnitKind::Cvs, n),
            _ => |d, n| repository_path(d, UnitKind::Download, n),
        };
        unit(inv, kind, left, field(r, 1), path, (uid, gid), state);
    }
    with_their_groups(&mut inv.sites, web_areas);
}

/// A unit the panel lists whose directory the data host lacks cannot move: a risk for the
/// review (its sync would fail as the source is missing). One glob per layout, whatever the
/// number of units.
pub(super) fn check_on_disk(
    source: &VhffsSource,
    transport: &dyn crate::transport::Transport,
    inv: &mut PanelInventory,
) {
    if source.units.is_empty() {
        return;
    }
    let datadir = source.datadir.display().to_string();
    let datadir = datadir.trim_end_matches('/');
    let mut on_disk = std::collections::HashSet::new();
    for pattern in ["home/*/*/*", "groups/*/*/*", "*/*root/*/*", "repository/*"] {
        match transport.glob_dirs(&format!("{datadir}/{pattern}")) {
            Ok(dirs) => on_disk.extend(dirs),
            // The web and Maildir checks report an unreadable data directory already.
            Err(_) => return,
        }
    }
    let missing: Vec<Risk> = inv
        .sites
        .iter()
        .filter(|s| s.kind != UnitKind::Web && !on_disk.contains(&s.source_path))
        .map(|s| {
            Risk::warning(
                "missing_source",
                &s.name,
                format!(
                    "the panel lists {} `{}` but `{}` does not exist on `{}`",
                    s.kind.as_str(),
                    s.name,
                    s.source_path.display(),
                    source.data_host
                ),
            )
        })
        .collect();
    inv.risks.extend(missing);
}

/// Each unit right after the last web area of its group, so that a batch of the cutover moves
/// a group's repositories, directory and download area with its sites; units of groups with
/// no web area (homes belong to users' private groups) come after every site.
fn with_their_groups(sites: &mut Vec<Site>, web_areas: usize) {
    let units = sites.split_off(web_areas.min(sites.len()));
    let mut last_of_group: std::collections::HashMap<u32, usize> = Default::default();
    for (i, s) in sites.iter().enumerate() {
        if let Some((_, gid)) = s.owner {
            last_of_group.insert(gid, i);
        }
    }
    let mut after: Vec<Vec<Site>> = vec![Vec::new(); sites.len()];
    let mut rest = Vec::new();
    for u in units {
        match u.owner.and_then(|(_, gid)| last_of_group.get(&gid)) {
            Some(&i) => after[i].push(u),
            None => rest.push(u),
        }
    }
    let web: Vec<Site> = std::mem::take(sites);
    for (s, mut tail) in web.into_iter().zip(after) {
        sites.push(s);
        sites.append(&mut tail);
    }
    sites.append(&mut rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::DbServer;

    fn row(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|f| f.to_string()).collect()
    }

    fn source(units: &[VhffsUnits], target: &str) -> VhffsSource {
        VhffsSource {
            panel: DbServer {
                host: "panel".into(),
                socket: None,
                address: None,
                port: None,
                user: None,
                password: None,
                bin_dir: None,
            },
            database: "vhffs".into(),
            datadir: "/data".into(),
            data_host: "web".into(),
            target_host: "new".into(),
            target: VhffsTarget::Datadir(target.into()),
            exclude: vec![],
            units: units.iter().copied().collect(),
        }
    }

    fn rows() -> Vec<Vec<String>> {
        vec![
            row(&["group", "10001", "alice", "6", "user"]),
            row(&["group", "10002", "bob", "6", "user"]),
            row(&["group", "1001", "alpha", "6", ""]),
            row(&["group", "1002", "beta", "12", ""]),
            row(&["home", "alice", "10001", "10001", "6"]),
            row(&["home", "bob", "10002", "10002", "4"]),
            row(&["gdir", "alpha", "1001", "10001", "6"]),
            row(&["gdir", "beta", "1002", "10002", "12"]),
            row(&["repo", "git", "alpha/site.git", "10002", "1001", "6"]),
            row(&["repo", "svn", "alpha/code", "10001", "1001", "15"]),
            row(&["repo", "mercurial", "beta/old", "10002", "1002", "6"]),
            row(&["repo", "cvs", "alpha/cvs", "10001", "1001", "3"]),
            row(&["repo", "download", "alpha", "10001", "1001", "6"]),
            row(&["type", "10", "2"]),
            row(&["type", "11", "4"]),
            row(&["type", "42", "1"]),
            row(&["type", "61", "1"]),
        ]
    }

    #[test]
    fn selected_kinds_become_units_and_the_others_stay_panel_kinds() {
        let all = [
            VhffsUnits::Homes,
            VhffsUnits::Groups,
            VhffsUnits::Repositories,
            VhffsUnits::Downloads,
        ];
        let inv = super::super::expand(&source(&all, "/srv/data"), &rows());
        type Row<'a> = (&'a str, UnitKind, &'a str, Option<(u32, u32)>);
        let units: Vec<Row> = inv
            .sites
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.kind,
                    s.target_path.to_str().unwrap(),
                    s.owner,
                )
            })
            .collect();
        assert_eq!(
            units,
            [
                (
                    "home/alice",
                    UnitKind::Home,
                    "/srv/data/home/a/l/alice",
                    Some((10001, 10001))
                ),
                (
                    "group/alpha",
                    UnitKind::Group,
                    "/srv/data/groups/a/l/alpha",
                    Some((10001, 1001))
                ),
                (
                    "git/alpha/site.git",
                    UnitKind::Git,
                    "/srv/data/git/gitroot/alpha/site.git",
                    Some((10002, 1001))
                ),
                (
                    "svn/alpha/code",
                    UnitKind::Svn,
                    "/srv/data/svn/svnroot/alpha/code",
                    Some((10001, 1001))
                ),
                (
                    "download/alpha",
                    UnitKind::Download,
                    "/srv/data/repository/alpha",
                    Some((10001, 1001))
                ),
            ]
        );
        assert!(inv.sites.iter().all(|s| s.domains.is_empty()));
        assert_eq!(inv.sites[3].marks, ["suspended"]);
        assert_eq!(
            inv.sites[0].relink.as_deref(),
            Some(&Relink {
                from: "/data".into(),
                to: "/srv/data".into()
            })
        );
        let left: Vec<(&str, &str, Option<i32>, Option<&Path>)> = inv
            .left_out
            .iter()
            .map(|l| (l.kind.as_str(), l.name.as_str(), l.state, l.path.as_deref()))
            .collect();
        for expected in [
            (
                "home",
                "home/bob",
                Some(4),
                Some(Path::new("/data/home/b/o/bob")),
            ),
            // The group's own entry, now with its directory.
            (
                "group",
                "beta",
                Some(12),
                Some(Path::new("/data/groups/b/e/beta")),
            ),
            (
                "mercurial",
                "mercurial/beta/old",
                Some(12),
                Some(Path::new("/data/mercurial/mercurialroot/beta/old")),
            ),
            (
                "cvs",
                "cvs/alpha/cvs",
                Some(3),
                Some(Path::new("/data/cvs/cvsroot/alpha/cvs")),
            ),
        ] {
            assert!(left.contains(&expected), "{expected:?} in {left:?}");
        }
        assert_eq!(left.iter().filter(|l| l.1 == "beta").count(), 1);
        let other: Vec<&str> = inv.other_objects.iter().map(|k| k.kind.as_str()).collect();
        // Mailing lists have a unit of their own (their archives, their rows with the panel).
        assert!(other.is_empty(), "{other:?}");
    }

    #[test]
    fn units_follow_the_last_web_area_of_their_group() {
        let site = |name: &str, gid: u32| Site {
            name: name.into(),
            rule: INVENTORY_RULE,
            source_host: "a".into(),
            source_path: "/a".into(),
            target_host: "b".into(),
            target_path: "/b".into(),
            domains: vec![],
            databases: vec![],
            exclude: vec![],
            owner: Some((1, gid)),
            marks: vec![],
            kind: UnitKind::Web,
            relink: None,
            tls: None,
        };
        let mut sites = vec![
            site("a", 1),
            site("b", 2),
            site("c", 1),
            site("git/u1", 2),
            site("home/u2", 9),
            site("group/u3", 1),
        ];
        with_their_groups(&mut sites, 3);
        let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "git/u1", "c", "group/u3", "home/u2"]);
    }

    #[test]
    fn without_units_nothing_but_web_areas_moves() {
        let inv = super::super::expand(&source(&[VhffsUnits::Homes], "/data"), &rows());
        let names: Vec<&str> = inv.sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["home/alice"]);
        // Same data directory at the target: no link to rewrite.
        assert_eq!(inv.sites[0].relink, None);
        let other: Vec<&str> = inv.other_objects.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(other, ["group", "git"]);
    }

    #[test]
    fn paths_follow_vhffs_s_api() {
        let d = Path::new("/data");
        assert_eq!(home_path(d, "alice"), Some("/data/home/a/l/alice".into()));
        assert_eq!(
            group_path(d, "alpha"),
            Some("/data/groups/a/l/alpha".into())
        );
        assert_eq!(
            repository_path(d, UnitKind::Git, "alpha/site.git"),
            Some("/data/git/gitroot/alpha/site.git".into())
        );
        assert_eq!(
            repository_path(d, UnitKind::Svn, "alpha/code"),
            Some("/data/svn/svnroot/alpha/code".into())
        );
        assert_eq!(
            repository_path(d, UnitKind::Download, "alpha"),
            Some("/data/repository/alpha".into())
        );
        assert_eq!(repository_path(d, UnitKind::Git, "alpha/../x"), None);
        assert_eq!(home_path(d, "a"), None);
        assert_eq!(home_path(d, ".."), None);
    }
}
