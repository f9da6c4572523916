//! Issue 15, the panel's rows and the target's name service: owners a target cannot name are
//! refused by a cutover until allowed (check `unresolved-ids`), and the dry run says so first.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::cli::bin;

fn run(plan: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    // A script, not a terminal: the commands that ask are answered with `--yes`.
    let out = bin().arg("--yes").args(args).arg(plan).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Ids no name service of this machine knows (asked, not assumed).
fn unknown_id(db: &str) -> u32 {
    (42_000..60_000)
        .find(|id| {
            !std::process::Command::new("getent")
                .args([db, &id.to_string()])
                .output()
                .unwrap()
                .status
                .success()
        })
        .unwrap()
}

#[test]
fn cutover_refuses_owners_the_target_cannot_name_until_allowed() {
    // Owners can be given only as root (the suite runs as root in CI and here).
    if !is_root() {
        return;
    }
    let (uid, gid) = (unknown_id("passwd"), unknown_id("group"));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let site = w.join("old/www/owned.test");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<title>owned</title>").unwrap();
    std::fs::write(site.join("root.txt"), "root's").unwrap();
    std::os::unix::fs::chown(site.join("index.html"), Some(uid), Some(gid)).unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: ids-it\nstate_dir: state\n\
sites:\n  - name: owned.test\n    from: { host: local, path: \"old/www/owned.test/\" }\n    to: { host: local, path: \"new/www/owned.test/\" }\n    domains: [owned.test]\n",
    )
    .unwrap();

    // The dry run names the host and both ids, and the check that will refuse.
    let (code, out, err) = run(&plan, &["plan", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let risk = report["risks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "unresolved_ids")
        .unwrap_or_else(|| panic!("{report:#}"));
    let msg = risk["message"].as_str().unwrap();
    assert_eq!(risk["subject"], "host local");
    assert!(msg.contains(&format!("uid(s) {uid}")), "{msg}");
    assert!(msg.contains(&format!("gid(s) {gid}")), "{msg}");
    assert!(!msg.contains("uid(s) 0"), "root resolves: {msg}");
    assert!(msg.contains("--allow unresolved-ids"), "{msg}");
    for format in ["text", "markdown", "html"] {
        let (_, out, _) = run(&plan, &["plan", "--format", format]);
        assert!(out.contains(&uid.to_string()), "{format}: {out}");
    }

    // The cutover refuses before anything is frozen or written.
    let (code, out, err) = run(&plan, &["cutover"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("unresolved-ids"), "{err}");
    assert!(!w.join("new/www/owned.test").exists());

    // Named, it goes through; the copy keeps the numeric owner.
    let (code, out, err) = run(&plan, &["cutover", "--allow", "unresolved-ids"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("unresolved-ids"),
        "the override is said: {out}{err}"
    );
    let m = std::fs::metadata(w.join("new/www/owned.test/index.html")).unwrap();
    assert_eq!((m.uid(), m.gid()), (uid, gid));
}

/// A panel on VHFFS 4.5's own schema, filled as its Perl fills it (`Vhffs::User::create`,
/// `Vhffs::Group::create`, `Vhffs::Services::Mail::create`, `::Mail::Localpart::create`,
/// `::Mail::Box` and catchall, `Vhffs::Services::MailingList::create` with subscribers,
/// `Vhffs::Services::Cron::create`): a group whose lists, cron job, catchall and redirect
/// move, and objects in other states that do not.
fn rows_panel_sql() -> String {
    let mut sql = crate::vhffs::schema();
    sql.push_str("BEGIN;\n");
    let object = |sql: &mut String, uid: &str, gid: &str, state: i32, kind: u32, insert: &str| {
        sql.push_str(&format!(
            "WITH o AS (INSERT INTO vhffs_object (owner_uid, owner_gid, date_creation, state, description, type) \
             VALUES ({uid}, {gid}, 1431078000, {state}, '', {kind}) RETURNING object_id) {insert};\n"
        ));
    };
    sql.push_str(
        "SELECT nextval('vhffs_users_uid_seq') AS uid, nextval('vhffs_groups_gid_seq') AS gid \\gset\n",
    );
    object(
        &mut sql,
        ":uid",
        ":gid",
        6,
        10,
        "INSERT INTO vhffs_users (uid, gid, username, shell, passwd, homedir, admin, object_id, mail, language, validated) \
         SELECT :uid, :gid, 'alice', '/usr/bin/falseshell', '$6$x$x', '/data/home/a/l/alice', 0, object_id, 'alice@example.net', 'en_US', true FROM o",
    );
    object(
        &mut sql,
        ":uid",
        ":gid",
        6,
        11,
        "INSERT INTO vhffs_groups (gid, groupname, realname, passwd, quota, quota_used, object_id) SELECT :gid, 'alice', 'alice', NULL, 1, 0, object_id FROM o",
    );
    for (group, state) in [("lists", 6), ("gone", 12)] {
        sql.push_str("SELECT nextval('vhffs_groups_gid_seq') AS g \\gset\n");
        object(
            &mut sql,
            ":uid",
            ":g",
            state,
            11,
            &format!(
                "INSERT INTO vhffs_groups (gid, groupname, realname, passwd, quota, quota_used, object_id) SELECT :g, '{group}', '{group}', NULL, 100, 3, object_id FROM o"
            ),
        );
        sql.push_str(&format!("INSERT INTO vhffs_user_group (uid, gid, state) VALUES (:uid, :g, 6);\n\\set {group} :g\n"));
    }
    for (domain, state) in [("ml.test", 6), ("dying.test", 12)] {
        object(
            &mut sql,
            ":uid",
            ":lists",
            state,
            60,
            &format!(
                "INSERT INTO vhffs_mx (domain, object_id) SELECT '{domain}', object_id FROM o"
            ),
        );
    }
    let mx = |d: &str| format!("(SELECT mx_id FROM vhffs_mx WHERE domain = '{d}')");
    let lp = |d: &str, l: &str| {
        format!(
            "(SELECT localpart_id FROM vhffs_mx_localpart WHERE mx_id = {} AND localpart = '{l}')",
            mx(d)
        )
    };
    sql.push_str(&format!(
        "INSERT INTO vhffs_mx_localpart (localpart_id, mx_id, localpart, password, nospam, novirus) VALUES (DEFAULT, {m}, 'alice', DEFAULT, DEFAULT, DEFAULT);\n\
         INSERT INTO vhffs_mx_box (box_id, localpart_id, allowpop, allowimap, state) VALUES (DEFAULT, {a}, DEFAULT, DEFAULT, 6);\n\
         INSERT INTO vhffs_mx_catchall (catchall_id, mx_id, box_id) VALUES (DEFAULT, {m}, (SELECT box_id FROM vhffs_mx_box WHERE localpart_id = {a}));\n\
         INSERT INTO vhffs_mx_localpart (localpart_id, mx_id, localpart, password, nospam, novirus) VALUES (DEFAULT, {m}, 'contact', DEFAULT, DEFAULT, DEFAULT);\n\
         INSERT INTO vhffs_mx_redirect (localpart_id, redirect) VALUES ({c}, 'alice@example.net');\n",
        m = mx("ml.test"),
        a = lp("ml.test", "alice"),
        c = lp("ml.test", "contact"),
    ));
    // news moves; old failed its creation; talk's domain is being deleted.
    for (domain, local, state, subscribers) in [
        ("ml.test", "news", 6, 3),
        ("ml.test", "old", 4, 1),
        ("dying.test", "talk", 6, 2),
    ] {
        sql.push_str(&format!(
            "INSERT INTO vhffs_mx_localpart (localpart_id, mx_id, localpart, password, nospam, novirus) VALUES (DEFAULT, {}, '{local}', DEFAULT, DEFAULT, DEFAULT);\n",
            mx(domain)
        ));
        object(
            &mut sql,
            ":uid",
            ":lists",
            state,
            61,
            &format!(
                "INSERT INTO vhffs_mx_ml (localpart_id, prefix, object_id, open_archive, reply_to, sub_ctrl, post_ctrl) \
             SELECT {}, '{local}', object_id, FALSE, TRUE, 0, 3 FROM o",
                lp(domain, local)
            ),
        );
        for n in 0..subscribers {
            sql.push_str(&format!(
                "INSERT INTO vhffs_mx_ml_subscribers (member, perm, hash, ml_id, language) \
                 SELECT 'member{n}@example.net', 4, NULL, ml_id, NULL FROM vhffs_mx_ml WHERE localpart_id = {};\n",
                lp(domain, local)
            ));
        }
    }
    for (path, group) in [
        ("/home/lists/backup.sh", ":lists"),
        ("/home/gone/purge.sh", ":gone"),
    ] {
        object(
            &mut sql,
            ":uid",
            group,
            6,
            70,
            &format!(
                "INSERT INTO vhffs_cron (cronpath, interval, reportmail, running, object_id) SELECT '{path}', 3600, 'alice@example.net', 0, object_id FROM o"
            ),
        );
    }
    sql.push_str("COMMIT;\n");
    sql
}

#[test]
fn vhffs_lists_cron_catchalls_and_redirects_move_with_the_panel_or_are_listed() {
    let (pg, pg_dst) = (
        crate::harness::Postgres::start(),
        crate::harness::Postgres::start(),
    );
    crate::vhffs::psql_script(&pg, "postgres", "CREATE DATABASE vhffs;");
    crate::vhffs::psql_script(&pg, "vhffs", &rows_panel_sql());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // listengine's archives: `<datadir>/listengine/archives/<domain>/<localpart>/<y>/<m>/<d>`.
    let archive = |list: &str, domain: &str| {
        let dir = w.join(format!(
            "data/listengine/archives/{domain}/{list}/2026/11/30"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("msg1@example.net"),
            format!("Subject: {list}\n\nhello\n"),
        )
        .unwrap();
    };
    archive("news", "ml.test");
    archive("old", "ml.test");
    archive("talk", "dying.test");
    let inventory = format!(
        "inventory:\n  kind: vhffs\n  host: local\n  database: vhffs\n  address: 127.0.0.1\n  port: {}\n  user: postgres\n  datadir: \"{w}/data\"\n  to: {{ host: local, datadir: \"{w}/newdata\" }}\n",
        pg.port,
        w = w.display()
    );
    let without = w.join("without.yaml");
    std::fs::write(
        &without,
        format!("version: 1\nname: rows\nstate_dir: state-without\n{inventory}"),
    )
    .unwrap();
    let with = w.join("with.yaml");
    std::fs::write(
        &with,
        format!(
            "version: 1\nname: rows-panel\nstate_dir: state-with\n{inventory}databases:\n  - engine: postgres\n    names: [vhffs]\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    to: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n",
            pg.port, pg_dst.port
        ),
    )
    .unwrap();

    // The inventory: what moves, and what does not with its state.
    let (code, out, err) = run(&without, &["inventory", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lists: Vec<&str> = inv["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["address"].as_str().unwrap())
        .collect();
    assert_eq!(lists, ["news@ml.test"], "{inv:#}");
    assert_eq!(inv["lists"][0]["subscribers"], 3);
    let cron: Vec<&str> = inv["cron_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(cron, ["/home/lists/backup.sh"]);
    // The script lies where vhffs-fs shows `/home/lists`: the group's directory.
    assert_eq!(
        inv["cron_jobs"][0]["script"],
        format!("local:{}/data/groups/l/i/lists/backup.sh", w.display())
    );
    let ml = inv["mail_domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["domain"] == "ml.test")
        .unwrap();
    assert_eq!(
        (ml["catchalls"].as_u64(), ml["redirects"].as_u64()),
        (Some(1), Some(1)),
        "{ml:#}"
    );

    // The dry run without the panel's database: the rows stay, each object said so; the
    // left-out lists and cron job are listed with their state.
    let (code, out, err) = run(&without, &["plan", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(&str, u64, bool)> = report["panel_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["count"].as_u64().unwrap(),
                r["moved"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("mailing_list", 1, false),
            ("subscriber", 3, false),
            ("cron", 1, false),
            ("catchall", 1, false),
            ("redirect", 1, false),
            ("quota", 2, false)
        ]
    );
    let items: Vec<(String, String, Option<i64>)> = report["unmigrated"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
                i["state"].as_i64(),
            )
        })
        .collect();
    for expected in [
        ("mailing_list rows", "news@ml.test", None),
        ("cron rows", "/home/lists/backup.sh", None),
        ("mail_domain rows", "ml.test", None),
        ("mailing_list", "old@ml.test", Some(4)),
        ("mailing_list", "talk@dying.test", Some(12)),
        ("cron", "/home/gone/purge.sh", Some(12)),
    ] {
        let e = (expected.0.to_string(), expected.1.to_string(), expected.2);
        assert!(items.contains(&e), "{e:?} in {items:#?}");
    }
    // The moving list's archives are no stranger under the data directory; a left-out list's
    // are listed with it.
    let sources: Vec<&str> = report["unmigrated"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["source"].as_str())
        .collect();
    assert!(
        !sources.iter().any(|s| s.ends_with("archives/ml.test/news")
            || s.ends_with("/listengine")
            || s.ends_with("/archives")),
        "{sources:#?}"
    );
    assert!(
        sources
            .iter()
            .any(|s| s.ends_with("listengine/archives/ml.test/old")),
        "{sources:#?}"
    );
    let kinds_left: Vec<&str> = report["unmigrated"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert!(
        !kinds_left.contains(&"panel mailing_list") && !kinds_left.contains(&"panel cron"),
        "{kinds_left:?}"
    );
    for format in ["text", "markdown", "html"] {
        let (_, out, _) = run(&without, &["plan", "--format", format]);
        assert!(
            out.contains("subscriber") && out.contains("no `databases:` rule moves"),
            "{format}: {out}"
        );
        assert!(out.contains("old@ml.test"), "{format}: {out}");
    }

    // Group quotas of the moving groups (`lists` 100 MB, `alice`'s private group 1 MB; not
    // `gone`'s): this sandbox's file systems enforce none, and the dry run says so.
    let quota = report["panel_rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "quota")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(
        (quota["count"].as_u64(), quota["moved"].as_bool()),
        (Some(2), Some(false)),
        "{quota:#}"
    );
    let risk = report["risks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "quota_not_enforced")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(risk["severity"], "warning");
    assert!(
        risk["message"]
            .as_str()
            .unwrap()
            .contains("2 group quota(s) of the panel will not be applied"),
        "{risk:#}"
    );
    let (_, inv_out, _) = run(&without, &["inventory", "--json"]);
    let inv2: serde_json::Value = serde_json::from_str(&inv_out).unwrap();
    let quotas: Vec<(&str, u64)> = inv2["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["group"].as_str().unwrap(), q["mb"].as_u64().unwrap()))
        .collect();
    assert_eq!(quotas, [("alice", 1), ("lists", 100)]);

    // With a rule that moves the panel's database: the rows travel with it, last.
    let (code, out, err) = run(&with, &["plan", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    for r in report["panel_rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "quota")
    {
        assert_eq!(r["moved"], true, "{r:#}");
        assert!(r["how"].as_str().unwrap().contains("databases[0]"), "{r:#}");
    }
    let rows_left = report["unmigrated"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"].as_str().unwrap().ends_with(" rows"))
        .count();
    assert_eq!(rows_left, 0, "{:#}", report["unmigrated"]);

    // The pre-sync copies the moving list's archives only, as they are.
    let (code, out, err) = run(&without, &["sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let new = w.join("newdata/listengine/archives");
    assert_eq!(
        std::fs::read_to_string(new.join("ml.test/news/2026/11/30/msg1@example.net")).unwrap(),
        "Subject: news\n\nhello\n"
    );
    assert!(
        !new.join("ml.test/old").exists(),
        "a list that failed its creation stays"
    );
    assert!(
        !new.join("dying.test").exists(),
        "a list of a domain being deleted stays"
    );
    // A message the target's listengine archived after the switch is never pruned.
    std::fs::write(
        new.join("ml.test/news/2026/11/30/later@example.net"),
        "later",
    )
    .unwrap();
    let (code, out, err) = run(&without, &["sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        new.join("ml.test/news/2026/11/30/later@example.net")
            .exists()
    );
    let (_, status, _) = run(&without, &["status", "--json"]);
    assert!(status.contains("list news@ml.test"), "{status}");
}

/// Issue 15's DNS defects: the dry run shows only the records of the sites that move, and a
/// zone of `dns.zones` the inventory leaves out is refused where the plan names it.
#[test]
fn vhffs_dns_shows_only_the_selection_and_refuses_a_left_out_zone() {
    let pg = crate::harness::Postgres::start();
    crate::vhffs::psql_script(&pg, "postgres", "CREATE DATABASE vhffs;");
    let mut sql = rows_panel_sql();
    sql.push_str(
        "BEGIN;\nSELECT gid AS lists FROM vhffs_groups WHERE groupname = 'lists' \\gset\n\
                  SELECT uid FROM vhffs_users WHERE username = 'alice' \\gset\n",
    );
    let object = |sql: &mut String, state: i32, kind: u32, insert: &str| {
        sql.push_str(&format!(
            "WITH o AS (INSERT INTO vhffs_object (owner_uid, owner_gid, date_creation, state, description, type) \
             VALUES (:uid, :lists, 1431078000, {state}, '', {kind}) RETURNING object_id) {insert};\n"
        ));
    };
    // a.zone.test moves; b.zone.test failed its creation; dead.test is being deleted.
    for (site, state) in [("a.zone.test", 6), ("b.zone.test", 4)] {
        object(
            &mut sql,
            state,
            20,
            &format!(
                "INSERT INTO vhffs_httpd (servername, object_id) SELECT '{site}', object_id FROM o"
            ),
        );
    }
    for (zone, state) in [("zone.test", 6), ("dead.test", 12)] {
        object(
            &mut sql,
            state,
            50,
            &format!(
                "INSERT INTO vhffs_dns (domain, object_id, ns, mbox, serial, refresh, retry, expire, minimum, ttl) \
             SELECT '{zone}', object_id, 'ns1.hoster.test.', 'hostmaster.hoster.test.', 2015050801, 28800, 7200, 604800, 86400, 86400 FROM o"
            ),
        );
        for name in ["", "www", "a", "www.a", "b", "www.b"] {
            sql.push_str(&format!(
                "INSERT INTO vhffs_dns_rr (zone, name, type, data, aux, ttl) SELECT dns_id, '{name}', 'A', '127.0.0.3', 0, 900 FROM vhffs_dns WHERE domain = '{zone}';\n"));
        }
    }
    sql.push_str("COMMIT;\n");
    crate::vhffs::psql_script(&pg, "vhffs", &sql);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for site in ["a.zone.test", "b.zone.test"] {
        let h = pg.psql("vhffs", &format!("SELECT md5('{site}')"));
        let h = h.trim();
        let dir = w.join(format!(
            "data/web/{}/{}/{}/{site}/htdocs",
            &h[0..2],
            &h[2..4],
            &h[4..6]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), site).unwrap();
    }
    let plan = |name: &str, zones: &str| {
        let path = w.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: {name}\nstate_dir: state-{name}\n\
inventory:\n  kind: vhffs\n  host: local\n  database: vhffs\n  address: 127.0.0.1\n  port: {}\n  user: postgres\n  datadir: \"{w}/data\"\n  to: {{ host: local, datadir: \"{w}/newdata\" }}\n\
dns:\n  provider: {{ kind: vhffs }}\n  zones: [{zones}]\n  switch: [{{ from: 127.0.0.3, to: 127.0.0.2 }}]\n",
                pg.port,
                w = w.display()
            ),
        )
        .unwrap();
        path
    };

    let good = plan("good", "zone.test");
    let (code, out, err) = run(&good, &["plan", "--format", "json"]);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    assert_eq!(code, Some(0), "{report:#}");
    let shown: Vec<&str> = report["dns"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown.contains(&"a.zone.test.") && shown.contains(&"www.a.zone.test."),
        "{shown:?}"
    );
    for format in ["text", "markdown", "html"] {
        let (_, out, _) = run(&good, &["plan", "--format", format]);
        assert!(out.contains("www.a.zone.test"), "{format}: {out}");
        assert!(
            !out.contains("www.b.zone.test"),
            "{format}: a left-out site's record is shown: {out}"
        );
    }

    // A zone being deleted in the panel, named in `dns.zones`: refused, with its place.
    let bad = plan("bad", "zone.test, dead.test");
    for verb in ["validate", "plan", "cutover"] {
        let (code, out, err) = run(&bad, &[verb]);
        let all = format!("{out}{err}");
        assert_ne!(code, Some(0), "{verb}: {all}");
        assert!(
            all.contains("dead.test") && all.contains("left out by the inventory"),
            "{verb}: {all}"
        );
        assert!(all.contains("will be deleted"), "{verb}: {all}");
    }
    let (_, out, err) = run(&bad, &["validate"]);
    assert!(format!("{out}{err}").contains("bad.yaml:"), "{out}{err}");
}

/// Quotas on a real file system of this machine, through the local transport: it enforces no
/// group quota (a sandbox cannot enable them), so `apply` refuses with why and writes nothing.
#[test]
fn group_quotas_are_refused_with_why_where_the_target_does_not_enforce_them() {
    use transhumance::lifecycle::quotas::{Enforcement, apply, enforcement};
    let t = transhumance::transport::LocalTransport::new("local");
    let work = tempfile::tempdir().unwrap();
    // Before the first copy the data directory does not exist: its nearest ancestor decides.
    let path = work.path().join("newdata/not/yet");
    let state = enforcement(&t, &path);
    let Enforcement::Off { reason } = state else {
        panic!("this test expects a file system without group quotas: {state:?}");
    };
    assert!(
        reason.contains("not installed") || reason.contains("not enabled"),
        "{reason}"
    );
    let q = transhumance::panel::GroupQuota {
        gid: 10_001,
        group: "lists".into(),
        mb: 100,
    };
    let e = apply(&t, &path, &[q]).unwrap_err();
    assert!(e.starts_with("not applied: "), "{e}");
    assert!(!path.exists());
}
