//! Issue 15, the panel's trees besides web areas: users' homes, groups' directories (links to
//! web areas and the download area), repositories of every kind VHFFS has, made with the real
//! tools the robots run (`git init --shared=all --bare`, `svnadmin create`, `hg init`, `bzr
//! init`, `cvs init`) with their hooks, and a download area. The inventory lists them as units, the dry
//! run shows their kind, check and rewritten links in every format, a cutover moves them with
//! owners and modes kept and links rewritten into the new data directory, the repositories
//! pass their own tool's check at the target, left-out objects are untouched and listed with
//! their state, and a rollback reopens their sources.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::harness::{MariaDb, Postgres};
use super::vhffs::{Panel, common, dir, panel, psql_script, run, web_port, write};

/// `Vhffs::Constants` object types.
const CVS: u32 = 40;
const SVN: u32 = 41;
const GIT: u32 = 42;
const MERCURIAL: u32 = 43;
const BAZAAR: u32 = 44;
const DOWNLOAD: u32 = 21;

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `Vhffs::Robots::chmod_recur` then `chown_recur`, as the repository robots call them.
fn robots_recur(path: &Path, file_mode: u32, dir_mode: u32, uid: u32, gid: u32) {
    for e in walk(path) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        if m.is_symlink() {
            continue;
        }
        let mode = if m.is_dir() { dir_mode } else { file_mode };
        std::fs::set_permissions(&e, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid)).unwrap();
    }
}

/// Every path under `root` (itself included), in a stable order.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut kids: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// One repository or download area the fixture made, with where it lies under a datadir.
struct Repo {
    /// The unit's name (`git/g000/site.git`).
    unit: String,
    /// Relative to the data directory.
    rel: String,
}

/// Panel rows and trees of the repositories and download area of `g000`, a Git repository of
/// `g001` being deleted, a Bazaar repository waiting for creation (no tree yet), and user
/// `dan03` whose account had a creation error. Returns the units that move.
fn populate(p: &Panel, pg: &Postgres) -> Vec<Repo> {
    let data = p.data();
    let g = &p.platform.groups[0];
    let gid = p.gids[&g.name];
    let (owner, member) = (p.uid(g.members[0]), p.uid(g.members[1]));
    let mut sql = String::from("BEGIN;\n");
    let mut row = |kind: u32, uid: u32, gid: u32, state: i32, insert: String| {
        sql.push_str(&format!(
            "WITH o AS (INSERT INTO vhffs_object (owner_uid, owner_gid, date_creation, state, description, type) \
             VALUES ({uid}, {gid}, 1431078000, {state}, '', {kind}) RETURNING object_id) {insert};\n"
        ));
    };
    let repo = |table: &str, name: &str| {
        format!(
            "INSERT INTO {table} (reponame, public, ml_name, object_id) SELECT '{name}', 1, '', object_id FROM o"
        )
    };
    let mut moved = Vec::new();
    // Git (`Vhffs::Robots::Git::create` and `modify`): a bare shared repository, files 0664
    // and directories 02775 of the creator, hooks root's, the post-receive hook 0755.
    row(GIT, member, gid, 6, repo("vhffs_git", "g000/site.git"));
    let git = data.join("git/gitroot/g000/site.git");
    std::fs::create_dir_all(&git).unwrap();
    sh(Command::new("git")
        .args(["init", "-q", "--shared=all", "--bare"])
        .current_dir(&git));
    let blob = Command::new("sh")
        .args([
            "-c",
            "printf 'hello\\n' | git --git-dir=. hash-object -w --stdin",
        ])
        .current_dir(&git)
        .output()
        .unwrap();
    let blob = String::from_utf8(blob.stdout).unwrap();
    let tree = Command::new("sh")
        .args([
            "-c",
            &format!(
                "printf '100644 blob {}\\tREADME\\n' | git --git-dir=. mktree",
                blob.trim()
            ),
        ])
        .current_dir(&git)
        .output()
        .unwrap();
    let tree = String::from_utf8(tree.stdout).unwrap();
    let commit = Command::new("git")
        .args([
            "--git-dir=.",
            "-c",
            "user.name=ana",
            "-c",
            "user.email=ana@x.test",
        ])
        .args(["commit-tree", tree.trim(), "-m", "first"])
        .current_dir(&git)
        .output()
        .unwrap();
    let commit = String::from_utf8(commit.stdout).unwrap();
    sh(Command::new("git")
        .args([
            "--git-dir=.",
            "update-ref",
            "refs/heads/master",
            commit.trim(),
        ])
        .current_dir(&git));
    robots_recur(&git, 0o664, 0o2775, member, gid);
    std::fs::remove_file(git.join("hooks/post-receive")).ok();
    write(
        &git.join("hooks/post-receive"),
        b"#!/bin/sh\n# mail the commit\n",
        0,
        0,
        0o755,
    );
    robots_recur(&git.join("hooks"), 0o644, 0o755, 0, 0);
    std::fs::set_permissions(
        git.join("hooks/post-receive"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write(
        &git.join("description"),
        b"g000/site.git\n",
        member,
        gid,
        0o664,
    );
    moved.push(Repo {
        unit: "git/g000/site.git".into(),
        rel: "git/gitroot/g000/site.git".into(),
    });
    // SVN (`Vhffs::Robots::Svn::create`): `svnadmin create --fs-type fsfs`, same modes.
    if tool("svnadmin") {
        row(SVN, owner, gid, 6, repo("vhffs_svn", "g000/code"));
        let svn = data.join("svn/svnroot/g000/code");
        std::fs::create_dir_all(svn.parent().unwrap()).unwrap();
        sh(Command::new("svnadmin")
            .args(["create", "--fs-type", "fsfs"])
            .arg(&svn));
        robots_recur(&svn, 0o664, 0o2775, owner, gid);
        robots_recur(&svn.join("hooks"), 0o644, 0o755, 0, 0);
        write(
            &svn.join("hooks/post-commit"),
            b"#!/bin/sh\n# notify\n",
            0,
            0,
            0o755,
        );
        moved.push(Repo {
            unit: "svn/g000/code".into(),
            rel: "svn/svnroot/g000/code".into(),
        });
    }
    // Mercurial (`Vhffs::Robots::Mercurial::create`): `hg init`, its hook in `.hg/hgrc`.
    if tool("hg") {
        row(
            MERCURIAL,
            owner,
            gid,
            6,
            repo("vhffs_mercurial", "g000/hgrepo"),
        );
        let hg = data.join("mercurial/mercurialroot/g000/hgrepo");
        std::fs::create_dir_all(hg.parent().unwrap()).unwrap();
        sh(Command::new("hg").arg("init").arg(&hg));
        std::fs::write(
            hg.join(".hg/hgrc"),
            "[hooks]\nchangegroup.notify = python:hgext.notify.hook\n",
        )
        .unwrap();
        robots_recur(&hg, 0o664, 0o2775, owner, gid);
        moved.push(Repo {
            unit: "mercurial/g000/hgrepo".into(),
            rel: "mercurial/mercurialroot/g000/hgrepo".into(),
        });
    }
    // Bazaar (`Vhffs::Robots::Bazaar::create`): `bzr init` in the new directory.
    if tool("bzr") {
        row(BAZAAR, owner, gid, 6, repo("vhffs_bazaar", "g000/bzrcode"));
        let bzr = data.join("bazaar/bazaarroot/g000/bzrcode");
        std::fs::create_dir_all(&bzr).unwrap();
        sh(Command::new("bzr").args(["init", "-q"]).current_dir(&bzr));
        robots_recur(&bzr, 0o664, 0o2775, owner, gid);
        moved.push(Repo {
            unit: "bazaar/g000/bzrcode".into(),
            rel: "bazaar/bazaarroot/g000/bzrcode".into(),
        });
    }
    // CVS (`Vhffs::Robots::Cvs::create`): `cvs init`; no tool check of its own.
    row(
        CVS,
        owner,
        gid,
        6,
        "INSERT INTO vhffs_cvs (cvsroot, public, object_id) SELECT 'g000/legacy', TRUE, object_id FROM o"
            .into(),
    );
    let cvs = data.join("cvs/cvsroot/g000/legacy");
    if tool("cvs") {
        std::fs::create_dir_all(&cvs).unwrap();
        sh(Command::new("cvs").arg("-d").arg(&cvs).arg("init"));
    } else {
        write(&cvs.join("CVSROOT/config"), b"# cvs\n", 0, 0, 0o664);
    }
    robots_recur(&cvs, 0o664, 0o2775, owner, gid);
    moved.push(Repo {
        unit: "cvs/g000/legacy".into(),
        rel: "cvs/cvsroot/g000/legacy".into(),
    });
    // Download area (`Vhffs::Robots::Repository::create`: 02775, a link in the group's dir).
    row(
        DOWNLOAD,
        owner,
        gid,
        6,
        "INSERT INTO vhffs_repository (name, quota, quota_used, object_id) SELECT 'g000', 100, 1, object_id FROM o"
            .into(),
    );
    let download = data.join("repository/g000");
    dir(&download, owner, gid, 0o2775);
    write(
        &download.join("release-1.0.tar.gz"),
        b"tarball",
        member,
        gid,
        0o664,
    );
    let gdir = data.join("groups/g/0/g000");
    std::os::unix::fs::symlink(&download, gdir.join("g000-repository")).unwrap();
    // Nightly dumps and a cron script in the group's directory, as the robots leave them.
    write(
        &gdir.join("mysql_dumps/g000_wp.sql.gz"),
        b"dump",
        owner,
        gid,
        0o440,
    );
    write(
        &gdir.join("cron/backup.sh"),
        b"#!/bin/sh\n",
        member,
        gid,
        0o750,
    );
    moved.push(Repo {
        unit: "download/g000".into(),
        rel: "repository/g000".into(),
    });
    // Left out: a repository of g001 being deleted (on disk), a Bazaar repository waiting
    // for creation (no tree), and dan03's account in creation error (its home stays).
    let g1 = p.gids["g001"];
    row(GIT, p.uid(1), g1, 12, repo("vhffs_git", "g001/old.git"));
    let old = data.join("git/gitroot/g001/old.git");
    std::fs::create_dir_all(&old).unwrap();
    sh(Command::new("git")
        .args(["init", "-q", "--bare"])
        .current_dir(&old));
    row(BAZAAR, owner, gid, 3, repo("vhffs_bazaar", "g000/bzr"));
    sql.push_str(
        "UPDATE vhffs_object SET state = 4 WHERE object_id = (SELECT object_id FROM vhffs_users WHERE username = 'dan03');\nCOMMIT;\n",
    );
    psql_script(pg, "vhffs", &sql);
    moved
}

/// (relative path, uid, gid, mode, link target) of every entry under `root`.
type Listing = Vec<(PathBuf, u32, u32, u32, Option<PathBuf>)>;

fn listing(root: &Path) -> Listing {
    walk(root)
        .into_iter()
        .map(|e| {
            let m = std::fs::symlink_metadata(&e).unwrap();
            let link = m.is_symlink().then(|| std::fs::read_link(&e).unwrap());
            (
                e.strip_prefix(root).unwrap().to_path_buf(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777,
                link,
            )
        })
        .collect()
}

#[test]
fn vhffs_homes_groups_repositories_and_downloads_move_with_links_rewritten_and_usable() {
    let (pg_src, pg_dst) = (Postgres::start(), Postgres::start());
    let (my_src, my_dst) = (MariaDb::start(), MariaDb::start());
    let p = panel(3, &pg_src, &my_src);
    let repos = populate(&p, &pg_src);
    let port = web_port();
    let extra = common(&p, (&pg_src, &pg_dst), (&my_src, &my_dst), port)
        .replacen(
            "  to: {",
            "  units: [homes, groups, repositories, downloads]\n  to: {",
            1,
        )
        .replace(
            "cutover:\n",
            "cutover:\n  freeze: { run: \"touch {path}/.maintenance\" }\n  freeze_files: [\".maintenance\"]\n  unfreeze: { run: \"rm -f {path}/.maintenance\" }\n",
        );
    let plan = p.plan("vhffs-units", &extra);
    let (data, newdata) = (p.data(), p.newdata());
    let homes = ["ana00", "bob01", "cyd02"];
    let mut units: Vec<String> = homes.iter().map(|h| format!("home/{h}")).collect();
    units.extend([
        "group/g000".to_string(),
        "group/g001".into(),
        "group/g002".into(),
    ]);
    units.extend(repos.iter().map(|r| r.unit.clone()));

    // Inventory: every unit, with its owner; what stays is listed with its state.
    let (code, out, err) = run(&plan, &["inventory", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: BTreeSet<&str> = inv["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for u in &units {
        assert!(names.contains(u.as_str()), "{u} in {names:?}");
    }
    for gone in ["home/dan03", "git/g001/old.git", "bazaar/g000/bzr"] {
        assert!(!names.contains(gone), "{gone}");
    }
    // Every unit's directory was found where the layout puts it (one glob per layout).
    let missing: Vec<&serde_json::Value> = inv["risks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "missing_source")
        .collect();
    assert!(missing.is_empty(), "{missing:#?}");
    let (uid, gid) = p.uids["ana00"];
    let ana = inv["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "home/ana00")
        .unwrap();
    assert_eq!(ana["owner"], format!("{uid}:{gid}"));
    assert_eq!(
        ana["target"],
        format!("local:{}", newdata.join("home/a/n/ana00").display())
    );

    // The dry run: kinds, checks and rewritten links, in every format; the unmigrated report
    // lists the left-out objects with their states and no longer the homes or groups' trees.
    let (code, out, err) = run(&plan, &["plan", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let dry: serde_json::Value = serde_json::from_str(&out).unwrap();
    let git = dry["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "git/g000/site.git")
        .unwrap_or_else(|| panic!("{dry:#}"));
    assert_eq!(git["kind"], "git");
    assert!(git["check"].as_str().unwrap().contains("fsck"), "{git}");
    assert_eq!(
        git["relink"],
        format!("{} -> {}", data.display(), newdata.display())
    );
    let items: BTreeSet<(String, String, i64)> = dry["unmigrated"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
                i["state"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    for expected in [
        ("home", "home/dan03", 4),
        ("git", "git/g001/old.git", 12),
        ("bazaar", "bazaar/g000/bzr", 3),
    ] {
        let expected = (expected.0.to_string(), expected.1.to_string(), expected.2);
        assert!(items.contains(&expected), "{expected:?} in {items:#?}");
    }
    for top in ["home", "groups", "git", "svn", "repository"] {
        let d = data.join(top).display().to_string();
        assert!(
            !items.iter().any(|i| i.0 == "directory" && i.1 == d),
            "{d} is moved by units: {items:#?}"
        );
    }
    let kinds: Vec<&str> = dry["unmigrated"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    for k in [
        "panel user",
        "panel group",
        "panel git",
        "panel svn",
        "panel repository",
    ] {
        assert!(!kinds.contains(&k), "{k} in {kinds:?}");
    }
    for format in ["text", "markdown", "html"] {
        let (code, out, err) = run(&plan, &["plan", "--format", format]);
        assert_eq!(code, Some(0), "{format}: {out}{err}");
        assert!(
            out.contains("git/g000/site.git (git; checked:"),
            "{format}: {out}"
        );
        assert!(out.contains("home/ana00 (home; links "), "{format}: {out}");
    }

    // Cutover of these units: frozen, final sync, verified, repositories checked, confirmed.
    let before: Vec<Listing> = units_paths(&p, &repos, &homes, &data)
        .iter()
        .map(|d| listing(d))
        .collect();
    let mut args = vec!["cutover", "--allow", "unresolved-ids"];
    for u in &units {
        args.extend(["--only", u.as_str()]);
    }
    let (code, out, err) = run(&plan, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    let sources = units_paths(&p, &repos, &homes, &data);
    let targets = units_paths(&p, &repos, &homes, &newdata);
    for ((src, dst), before) in sources.iter().zip(&targets).zip(&before) {
        assert!(
            src.join(".maintenance").exists(),
            "{} frozen",
            src.display()
        );
        assert!(!dst.join(".maintenance").exists());
        let mut expected = before.clone();
        for e in &mut expected {
            // Links into the old data directory point into the new one.
            if let Some(t) = &e.4
                && let Ok(rest) = t.strip_prefix(&data)
            {
                e.4 = Some(newdata.join(rest));
            }
        }
        assert_eq!(listing(dst), expected, "{}", dst.display());
    }
    // The links really were rewritten: a home's link to its group, the group's to its areas.
    let link = std::fs::read_link(newdata.join("home/a/n/ana00/g000")).unwrap();
    assert_eq!(link, newdata.join("groups/g/0/g000"));
    let link = std::fs::read_link(newdata.join("groups/g/0/g000/g000-repository")).unwrap();
    assert_eq!(link, newdata.join("repository/g000"));
    // Hooks keep root as owner and their modes.
    let hook =
        std::fs::metadata(newdata.join("git/gitroot/g000/site.git/hooks/post-receive")).unwrap();
    assert_eq!((hook.uid(), hook.mode() & 0o7777), (0, 0o755));
    // Usable at the target, by the tools themselves.
    sh(Command::new("git")
        .args([
            "--git-dir=.",
            "-c",
            "safe.directory=*",
            "fsck",
            "--no-progress",
        ])
        .current_dir(newdata.join("git/gitroot/g000/site.git")));
    if tool("svnadmin") {
        sh(Command::new("svnadmin")
            .args(["verify", "--quiet"])
            .arg(newdata.join("svn/svnroot/g000/code")));
    }
    if tool("bzr") {
        sh(Command::new("bzr")
            .args(["check", "."])
            .current_dir(newdata.join("bazaar/bazaarroot/g000/bzrcode")));
    }
    if tool("hg") {
        sh(Command::new("hg")
            .args(["verify", "--quiet"])
            .current_dir(newdata.join("mercurial/mercurialroot/g000/hgrepo")));
    }
    let journal =
        std::fs::read_to_string(p.work.path().join("state-vhffs-units/journal.jsonl")).unwrap();
    assert!(journal.contains("passed at the target"), "{journal}");
    for u in &units {
        assert!(
            journal.contains(&format!("\"site\":\"{u}\",\"state\":\"confirmed\"")),
            "{u} confirmed: {journal}"
        );
    }
    // Left out: never written at the target, untouched at the source.
    assert!(!newdata.join("git/gitroot/g001/old.git").exists());
    assert!(!newdata.join("home/d/a/dan03").exists());
    assert!(data.join("git/gitroot/g001/old.git/HEAD").exists());
    assert!(!data.join("git/gitroot/g001/old.git/.maintenance").exists());

    // Rollback: the sources reopen (unfrozen); the target copies are left as they are.
    let mut args = vec!["rollback"];
    for u in &units {
        args.extend(["--only", u.as_str()]);
    }
    let (code, out, err) = run(&plan, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    for src in &sources {
        assert!(
            !src.join(".maintenance").exists(),
            "{} reopened",
            src.display()
        );
    }
    for (src, before) in sources.iter().zip(&before) {
        assert_eq!(&listing(src), before, "{} untouched", src.display());
    }
}

/// The units' directories under `datadir`, in the order of `units` in the test.
fn units_paths(p: &Panel, repos: &[Repo], homes: &[&str], datadir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = homes
        .iter()
        .map(|h| datadir.join(format!("home/{}/{}/{h}", &h[0..1], &h[1..2])))
        .collect();
    for g in &p.platform.groups {
        out.push(datadir.join(format!(
            "groups/{}/{}/{}",
            &g.name[0..1],
            &g.name[1..2],
            g.name
        )));
    }
    out.extend(repos.iter().map(|r| datadir.join(&r.rel)));
    out
}

/// A repository its own tool finds broken at the target is never confirmed: the unit fails
/// its verification (the tool's message journaled) and its source is reopened.
#[test]
fn vhffs_a_repository_broken_at_the_target_fails_verification_and_is_reopened() {
    let (pg_src, pg_dst) = (Postgres::start(), Postgres::start());
    let (my_src, my_dst) = (MariaDb::start(), MariaDb::start());
    let p = panel(3, &pg_src, &my_src);
    populate(&p, &pg_src);
    // The blob the commit's tree names is lost: every byte copies, `git fsck` refuses it.
    let git = p.data().join("git/gitroot/g000/site.git");
    let objects: Vec<PathBuf> = walk(&git.join("objects"))
        .into_iter()
        .filter(|e| e.is_file())
        .collect();
    let blob = objects
        .iter()
        .find(|o| {
            let name = format!(
                "{}{}",
                o.parent().unwrap().file_name().unwrap().to_string_lossy(),
                o.file_name().unwrap().to_string_lossy()
            );
            let t = Command::new("git")
                .args(["--git-dir=.", "cat-file", "-t", &name])
                .current_dir(&git)
                .output()
                .unwrap();
            String::from_utf8_lossy(&t.stdout).trim() == "blob"
        })
        .unwrap();
    std::fs::remove_file(blob).unwrap();
    let extra = common(&p, (&pg_src, &pg_dst), (&my_src, &my_dst), web_port())
        .replacen("  to: {", "  units: [repositories]\n  to: {", 1)
        .replace(
            "cutover:\n",
            "cutover:\n  freeze: { run: \"touch {path}/.maintenance\" }\n  freeze_files: [\".maintenance\"]\n  unfreeze: { run: \"rm -f {path}/.maintenance\" }\n",
        );
    let plan = p.plan("vhffs-broken", &extra);
    // A repository the panel lists but the disk lacks: a risk for the review.
    psql_script(
        &pg_src,
        "vhffs",
        &format!(
            "WITH o AS (INSERT INTO vhffs_object (owner_uid, owner_gid, date_creation, state, description, type) \
             VALUES ({}, {}, 1431078000, 6, '', {GIT}) RETURNING object_id) \
             INSERT INTO vhffs_git (reponame, public, ml_name, object_id) SELECT 'g002/gone.git', 1, '', object_id FROM o;",
            p.uid(2),
            p.gids["g002"]
        ),
    );
    let (code, out, err) = run(&plan, &["inventory", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        inv["risks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "missing_source" && r["subject"] == "git/g002/gone.git"),
        "{:#}",
        inv["risks"]
    );
    let (code, out, err) = run(
        &plan,
        &[
            "cutover",
            "--allow",
            "unresolved-ids",
            "--only",
            "git/g000/site.git",
        ],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let journal =
        std::fs::read_to_string(p.work.path().join("state-vhffs-broken/journal.jsonl")).unwrap();
    assert!(journal.contains("failed at the target"), "{journal}");
    assert!(!journal.contains("\"confirmed\""), "{journal}");
    assert!(!git.join(".maintenance").exists(), "reopened");
}
