//! The dry run and the file engine agree: `transhumance plan --json` announces, path by path,
//! what `transhumance sync` then does, on targets in every state (missing, empty, partial,
//! populated with changes, holding our leftover partial and temp files, with hard links and
//! renames at the source), locally and over the real sshd transport. What the engine did is
//! read from the target tree itself (inodes, content, metadata before and after), and from its
//! own per-path report through the library.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cli::bin;
use crate::harness::Sshd;

/// One entry of a tree as the test sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    dir: bool,
    ino: u64,
    mode: u32,
    mtime_ns: i128,
    content: Vec<u8>,
}

/// Our own temp directory and the partial files in it, which neither side may count.
fn ours(path: &str) -> bool {
    transhumance::tree::root::is_temp(path.as_bytes())
}

/// A temp file of ours for `path`, as a writer with process id `pid` left it.
fn leftover_of(path: &str, pid: u32) -> String {
    format!(
        "{}/{}-{pid}-0",
        transhumance::tree::root::TEMP_DIR,
        transhumance::tree::root::temp_key(path.as_bytes())
    )
}

fn snapshot(root: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let m = e.path().symlink_metadata().unwrap();
        out.insert(
            rel,
            Seen {
                dir: m.is_dir(),
                ino: m.ino(),
                mode: m.mode() & 0o7777,
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                content: if m.is_file() {
                    std::fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                },
            },
        );
    }
    out
}

fn write_at(path: &Path, content: &[u8], mtime: SystemTime) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
}

/// Copies one file exactly as a previous sync would have left it (content, mode, mtime).
fn copy_exact(from: &Path, to: &Path) {
    let m = std::fs::metadata(from).unwrap();
    write_at(to, &std::fs::read(from).unwrap(), m.modified().unwrap());
    std::fs::set_permissions(to, m.permissions()).unwrap();
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every site's source: small and big files, nested directories, distinct nanosecond times.
fn make_source(dir: &Path, seed: u8) -> Vec<String> {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("index.html".into(), b"<title>home</title>".to_vec()),
        ("big.bin".into(), content(seed, 64 * 1024)),
        ("img/logo.png".into(), content(seed ^ 1, 5000)),
        ("css/site.css".into(), b"body { color: black }".to_vec()),
        ("js/app.js".into(), b"console.log(1)".to_vec()),
    ];
    for i in 0..9 {
        files.push((
            format!("pages/p{i}.html"),
            format!("<p>{i}</p>").into_bytes(),
        ));
    }
    for (i, (name, body)) in files.iter().enumerate() {
        write_at(
            &dir.join(name),
            body,
            base + Duration::from_nanos(1_000_000_007 * i as u64 + 123),
        );
    }
    files.into_iter().map(|(n, _)| n).collect()
}

/// The sites, one per state of the target, built under `w/src` and `w/dst`.
fn make_sites(w: &Path) {
    let (src, dst) = (w.join("src"), w.join("dst"));
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    make_source(&src.join("missing.test"), 1);

    make_source(&src.join("empty.test"), 2);
    std::fs::create_dir_all(dst.join("empty.test")).unwrap();

    let names = make_source(&src.join("partial.test"), 3);
    for n in names.iter().step_by(2) {
        copy_exact(
            &src.join("partial.test").join(n),
            &dst.join("partial.test").join(n),
        );
    }

    // Populated: a full copy, then changes on both sides.
    let (s, d) = (src.join("populated.test"), dst.join("populated.test"));
    for n in make_source(&s, 4) {
        copy_exact(&s.join(&n), &d.join(&n));
    }
    // Same size, other content and time: sent whole (small) or by delta (big).
    write_at(&d.join("index.html"), b"<title>HOME</title>", later);
    let mut big = std::fs::read(s.join("big.bin")).unwrap();
    big[100..110].copy_from_slice(b"0123456789");
    write_at(&d.join("big.bin"), &big, later);
    // Another size.
    write_at(&d.join("css/site.css"), b"body{}", later);
    // Only the mode differs.
    std::fs::set_permissions(d.join("js/app.js"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // Only the time differs, by one nanosecond (the old dry run compared seconds).
    let m = std::fs::metadata(s.join("pages/p0.html")).unwrap();
    write_at(
        &d.join("pages/p0.html"),
        &std::fs::read(s.join("pages/p0.html")).unwrap(),
        m.modified().unwrap() + Duration::from_nanos(1),
    );
    // Not at the source: deleted by the sync, which mirrors.
    write_at(&d.join("stale.html"), b"left over", later);
    write_at(&d.join("old/a.txt"), b"old a", later);
    write_at(&d.join("old/deeper/b.txt"), b"old b!", later);
    // New at the source.
    write_at(&s.join("pages/new.html"), b"<p>new</p>", later);

    // Leftovers of interrupted runs: a partial file (a delta basis) and a temp file of ours,
    // both of writers that are gone; and user files named like our old temp names.
    let (s, d) = (src.join("leftovers.test"), dst.join("leftovers.test"));
    let names = make_source(&s, 5);
    for n in names.iter().filter(|n| n.as_str() != "big.bin").step_by(2) {
        copy_exact(&s.join(n), &d.join(n));
    }
    let big = std::fs::read(s.join("big.bin")).unwrap();
    write_at(
        &d.join(leftover_of("big.bin", 999_999)),
        &big[..32 * 1024],
        later,
    );
    write_at(
        &d.join(leftover_of("pages/p1.html", 999_998)),
        b"half",
        later,
    );
    write_at(
        &s.join("pages/.p2.html.th-partial"),
        b"a user's file",
        later,
    );
    write_at(&s.join(".x.th-tmp-42"), b"another", later);

    // Hard links and a rename at the source; the target has the old name.
    let (s, d) = (src.join("links.test"), dst.join("links.test"));
    for n in make_source(&s, 6) {
        copy_exact(&s.join(&n), &d.join(&n));
    }
    write_at(&s.join("shared/a.bin"), &content(9, 9000), later);
    std::fs::create_dir_all(s.join("z")).unwrap();
    std::fs::hard_link(s.join("shared/a.bin"), s.join("z/b.bin")).unwrap();
    std::fs::rename(s.join("img/logo.png"), s.join("img/brand.png")).unwrap();
}

/// What the target shows the engine did to each path, between two snapshots.
fn observed(
    before: &BTreeMap<String, Seen>,
    after: &BTreeMap<String, Seen>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let paths: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for p in paths.into_iter().filter(|p| !ours(p)) {
        let class = match (before.get(p), after.get(p)) {
            (Some(_), None) => "deleted".to_string(),
            (None, Some(a)) if a.dir => "mkdir".into(),
            (None, Some(a)) => {
                // A link to a path that sorts first (the engine's leader) shares its inode.
                match after
                    .iter()
                    .find(|(q, s)| *q < p && !s.dir && s.ino == a.ino)
                {
                    Some((leader, _)) => format!("link to {leader}"),
                    None => "created".into(),
                }
            }
            (Some(b), Some(a)) if b.dir || a.dir => continue,
            (Some(b), Some(a)) if b.ino != a.ino => "rewritten".into(),
            (Some(b), Some(a)) if b.content != a.content => "rewritten in place".into(),
            (Some(b), Some(a)) if b.mode != a.mode || b.mtime_ns != a.mtime_ns => "meta".into(),
            _ => continue,
        };
        out.insert(p.clone(), class);
    }
    out
}

/// What a site's plan announces for each path, in the same terms.
fn announced(
    plan: &serde_json::Value,
    before: &BTreeMap<String, Seen>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in plan["actions"].as_array().unwrap() {
        let path = a["path"].as_str().unwrap().to_string();
        assert!(!ours(&path), "the plan names our own temp file {path}");
        let replaces = a["replaces"].as_bool().unwrap_or(false);
        match a["action"].as_str().unwrap() {
            "mkdir" => {
                out.insert(path, "mkdir".into());
            }
            "send" | "delta" | "copy_local" => {
                let class = if replaces { "rewritten" } else { "created" };
                out.insert(path, class.into());
            }
            "hardlink" => {
                let from = a["from"].as_str().unwrap();
                out.insert(path, format!("link to {from}"));
            }
            "meta" => {
                out.insert(path, "meta".into());
            }
            "delete" => {
                // A directory goes with everything under it.
                let under = format!("{path}/");
                for p in before.keys() {
                    if (*p == path || p.starts_with(&under)) && !ours(p) {
                        out.insert(p.clone(), "deleted".into());
                    }
                }
            }
            other => panic!("unexpected action {other} for {path}"),
        }
    }
    out
}

fn plan_json(plan: &Path) -> serde_json::Value {
    let out = bin()
        .args(["plan", "--json", "--itemize"])
        .arg(plan)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// Source and target trees equal, our own temp files aside (content, mode, nanosecond mtime).
fn assert_mirrored(src: &Path, dst: &Path) {
    let strip =
        |m: BTreeMap<String, Seen>| -> BTreeMap<String, (bool, u32, Option<i128>, Vec<u8>)> {
            m.into_iter()
                .filter(|(p, _)| !ours(p))
                .map(|(p, s)| {
                    (
                        p,
                        (s.dir, s.mode, (!s.dir).then_some(s.mtime_ns), s.content),
                    )
                })
                .collect()
        };
    assert_eq!(
        strip(snapshot(src)),
        strip(snapshot(dst)),
        "{} is not a mirror of {}",
        dst.display(),
        src.display()
    );
}

const SITES: [&str; 6] = [
    "empty.test",
    "leftovers.test",
    "links.test",
    "missing.test",
    "partial.test",
    "populated.test",
];

fn agreement(w: &Path, host_line: &str, host: &str) {
    make_sites(w);
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: agrees\nstate_dir: state\n{host_line}sites:\n  - from: {{ host: {host}, glob: \"{w}/src/*/\" }}\n    to: {{ host: {host}, path: \"{w}/dst/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n",
            w = w.display()
        ),
    )
    .unwrap();
    let before: BTreeMap<&str, _> = SITES
        .iter()
        .map(|s| (*s, snapshot(&w.join("dst").join(s))))
        .collect();
    let report = plan_json(&plan);
    let sites: BTreeMap<&str, &serde_json::Value> = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    assert_eq!(sites.keys().copied().collect::<Vec<_>>(), SITES.to_vec());

    let out = bin().arg("sync").arg(&plan).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = bin()
        .args(["status", "--json"])
        .arg(&plan)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let sent: BTreeMap<&str, u64> = status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["bytes"].as_u64().unwrap()))
        .collect();

    // Each defect of the old dry run, on the fields it always had: our partial and temp files
    // are not "extra" (nor make a target "populated"), a hard link and a rename send nothing,
    // a file one nanosecond apart is sent again, and the mirror's deletes are counted.
    assert_eq!(sites["leftovers.test"]["extra_at_target"], 0);
    assert_eq!(sites["leftovers.test"]["target_state"], "partial copy");
    assert_eq!(sites["links.test"]["bytes_to_send"], 9000);
    assert_eq!(sites["populated.test"]["unchanged_files"], 9);
    assert_eq!(
        (
            sites["populated.test"]["delete_files"].as_u64(),
            sites["populated.test"]["delete_bytes"].as_u64()
        ),
        (Some(3), Some(9 + 5 + 6))
    );

    for site in SITES {
        let s = sites[site];
        let (src, dst) = (w.join("src").join(site), w.join("dst").join(site));
        let after = snapshot(&dst);
        assert_mirrored(&src, &dst);
        assert_eq!(
            announced(&s["plan"], &before[site]),
            observed(&before[site], &after),
            "{site}: the dry run announced one thing and the engine did another"
        );
        // Bytes: exact when everything goes whole; a delta sends at most what was announced.
        let totals = &s["plan"]["totals"];
        let planned = totals["bytes_to_send"].as_u64().unwrap();
        assert_eq!(s["bytes_to_send"].as_u64().unwrap(), planned);
        if totals["delta_files"] == 0 {
            assert_eq!(sent[site], planned, "{site}: bytes sent");
        } else {
            assert!(sent[site] < planned, "{site}: {} > {planned}", sent[site]);
        }
        // Deletes are announced with their count and bytes.
        let deleted: Vec<&Seen> = before[site]
            .iter()
            .filter(|(p, b)| !ours(p) && !b.dir && !after.contains_key(*p))
            .map(|(_, b)| b)
            .collect();
        assert_eq!(
            s["delete_files"].as_u64().unwrap(),
            deleted.len() as u64,
            "{site}"
        );
        assert_eq!(
            s["delete_bytes"].as_u64().unwrap(),
            deleted.iter().map(|b| b.content.len() as u64).sum::<u64>(),
            "{site}"
        );
    }

    // Facts each state must show, so the comparison above cannot pass on an empty plan.
    let action_of = |site: &str, path: &str| -> Vec<String> {
        sites[site]["plan"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["path"] == path)
            .map(|a| a["action"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sites["missing.test"]["target_state"], "missing");
    assert_eq!(sites["empty.test"]["target_state"], "empty");
    assert_eq!(sites["partial.test"]["unchanged_files"], 7);
    assert_eq!(action_of("populated.test", "big.bin"), ["delta"]);
    assert_eq!(action_of("populated.test", "js/app.js"), ["meta"]);
    // One nanosecond apart: the quick check cannot tell the content is the same, so the engine
    // sends it again, and the dry run (which compared seconds) must say so too.
    assert_eq!(action_of("populated.test", "pages/p0.html"), ["send"]);
    assert_eq!(action_of("populated.test", "old"), ["delete"]);
    // Our partial file is a delta basis; user files named like old temp files are sent.
    assert_eq!(action_of("leftovers.test", "big.bin"), ["delta"]);
    assert_eq!(
        action_of("leftovers.test", "pages/.p2.html.th-partial"),
        ["send"]
    );
    assert_eq!(action_of("leftovers.test", ".x.th-tmp-42"), ["send"]);
    assert_eq!(action_of("links.test", "z/b.bin"), ["hardlink"]);
    assert_eq!(action_of("links.test", "img/brand.png"), ["copy_local"]);
    assert_eq!(action_of("links.test", "img/logo.png"), ["delete"]);

    // Right after the sync, the engine's plan has nothing left to do anywhere.
    let again = plan_json(&plan);
    for s in again["sites"].as_array().unwrap() {
        assert_eq!(s["plan"]["actions"], serde_json::json!([]), "{s:#}");
    }
}

#[test]
fn dry_run_announces_what_sync_does_locally() {
    let work = tempfile::tempdir().unwrap();
    agreement(work.path(), "", "local");
}

#[test]
fn dry_run_announces_what_sync_does_over_ssh() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let hosts = format!(
        "hosts:\n  web: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\n",
        sshd.port,
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        w.display()
    );
    agreement(w, &hosts, "web");
}

/// Through the library: `sync::plan` (the dry run's value), then `sync::apply` of that very
/// value; the engine's own per-path report of what it did equals the plan, for every state.
#[test]
fn the_engine_report_lists_the_planned_actions() {
    use transhumance::event::Silent;
    use transhumance::sync::{Endpoint, SyncOptions, apply, plan};
    use transhumance::transport::LocalTransport;

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    make_sites(w);
    for site in SITES {
        let end = |side: &str| Endpoint {
            transport: std::sync::Arc::new(LocalTransport::new("local")),
            root: w.join(side).join(site),
        };
        let options = SyncOptions {
            delete: true,
            ..SyncOptions::default()
        };
        let (planned, _) = plan(&end("src"), &end("dst"), &options).unwrap();
        let report = apply(&planned, &end("src"), &end("dst"), &options, &Silent).unwrap();
        assert!(report.errors.is_empty(), "{site}: {:?}", report.errors);
        let mut done: Vec<(String, String)> = report
            .done
            .iter()
            .map(|i| (i.path.clone(), format!("{:?}", i.action)))
            .collect();
        done.sort();
        let wanted: Vec<(String, String)> = planned
            .actions()
            .into_iter()
            .map(|a| (a.path, format!("{:?}", a.action)))
            .collect();
        assert_eq!(done, wanted, "{site}");
        assert_mirrored(&w.join("src").join(site), &w.join("dst").join(site));
    }
}

/// A database copied by an earlier pre-sync carries our marker: the dry run calls it
/// `replace_ours` (no conflict, exit 0), as the transfer treats it; someone else's database
/// under `conflict: skip` is `skip` in the dry run and left alone by the transfer.
#[test]
fn dry_run_database_actions_are_the_transfer_decisions() {
    use crate::harness::MariaDb;
    let (src, dst) = (MariaDb::start(), MariaDb::start());
    src.sql("CREATE DATABASE site_a; CREATE TABLE site_a.t (id INT PRIMARY KEY); INSERT INTO site_a.t VALUES (1); CREATE DATABASE theirs_b; CREATE TABLE theirs_b.t (id INT PRIMARY KEY); INSERT INTO theirs_b.t VALUES (1), (2);");
    dst.sql("CREATE DATABASE theirs_b; CREATE TABLE theirs_b.t (id INT PRIMARY KEY); INSERT INTO theirs_b.t VALUES (7);");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src/a.test")).unwrap();
    std::fs::write(w.join("src/a.test/index.html"), b"a").unwrap();
    let plan = w.join("plan.yaml");
    let servers = format!(
        "    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: local, socket: \"{}\", user: root }}\n",
        src.socket.display(),
        dst.socket.display()
    );
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: agrees-db\nstate_dir: state\nsites:\n  - name: a.test\n    from: {{ host: local, path: \"{w}/src/a.test/\" }}\n    to: {{ host: local, path: \"{w}/dst/a.test/\" }}\n    domains: [a.test]\n    databases: [site_a]\ndatabases:\n  - engine: mariadb\n{servers}    names: [\"site_*\"]\n  - engine: mariadb\n{servers}    names: [\"theirs_*\"]\n    conflict: skip\n",
            w = w.display()
        ),
    )
    .unwrap();
    let actions = |report: &serde_json::Value| -> Vec<(String, String)> {
        report["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let first = plan_json(&plan);
    assert_eq!(
        actions(&first),
        [
            ("site_a".into(), "create".into()),
            ("theirs_b".into(), "skip".into())
        ]
    );
    let out = bin().arg("sync").arg(&plan).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dst.sql("SELECT id FROM site_a.t").trim(), "1");
    assert_eq!(
        dst.sql("SELECT id FROM theirs_b.t").trim(),
        "7",
        "skipped, untouched"
    );

    // After the pre-sync: our own copy is ours to replace, not a conflict.
    let second = plan_json(&plan);
    assert_eq!(
        actions(&second),
        [
            ("site_a".into(), "replace_ours".into()),
            ("theirs_b".into(), "skip".into())
        ]
    );
    assert!(
        !second["risks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["severity"] == "error"),
        "{:#}",
        second["risks"]
    );
    // And the transfer does replace it: a second sync succeeds and follows the source.
    src.sql("INSERT INTO site_a.t VALUES (2);");
    let out = bin().arg("sync").arg(&plan).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dst.sql("SELECT COUNT(*) FROM site_a.t").trim(), "2");
}

/// A site the journal says may serve from the new side: the dry run says `sync` leaves it
/// alone (and counts nothing of it to send or delete), and `sync` does leave it alone, a file
/// written at the new side included; the other site is synced as announced.
#[test]
fn a_live_site_is_announced_as_left_alone_and_left_alone() {
    use transhumance::lifecycle::ledger::{Entry, Ledger};
    use transhumance::lifecycle::state::SiteState;

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for site in ["live.test", "moving.test"] {
        let (s, d) = (w.join("src").join(site), w.join("dst").join(site));
        for n in make_source(&s, 7) {
            copy_exact(&s.join(&n), &d.join(&n));
        }
        write_at(
            &s.join("index.html"),
            b"<title>changed at the old side</title>",
            later,
        );
        write_at(&d.join("upload.jpg"), b"written at the new side", later);
    }
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: agrees-live\nstate_dir: \"{w}/state\"\nsites:\n  - from: {{ host: local, glob: \"{w}/src/*/\" }}\n    to: {{ host: local, path: \"{w}/dst/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n",
            w = w.display()
        ),
    )
    .unwrap();
    Ledger::open(&w.join("state"))
        .unwrap()
        .record(Entry::Site {
            site: "live.test".into(),
            state: SiteState::Confirmed,
            at: 1,
            detail: None,
            bytes: None,
            millis: None,
            at_ms: None,
        })
        .unwrap();
    let before = snapshot(&w.join("dst/live.test"));
    let report = plan_json(&plan);
    let sites = report["sites"].as_array().unwrap();
    let (live, moving) = (&sites[0], &sites[1]);
    assert_eq!(live["name"], "live.test");
    assert!(
        live["live"].as_str().unwrap().contains("confirmed"),
        "{live:#}"
    );
    assert!(moving["live"].is_null());
    // Totals count only what `sync` will do: the moving site's index.html and its delete.
    assert_eq!(
        report["totals"]["bytes_to_send"], moving["bytes_to_send"],
        "{:#}",
        report["totals"]
    );
    assert_eq!(report["totals"]["delete_files"], 1);
    assert!(
        report["risks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "live_unit" && r["subject"] == "live.test"),
        "{:#}",
        report["risks"]
    );

    let out = bin().arg("sync").arg(&plan).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        before,
        snapshot(&w.join("dst/live.test")),
        "a live site was touched"
    );
    assert_mirrored(&w.join("src/moving.test"), &w.join("dst/moving.test"));
}
