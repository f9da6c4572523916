//! Issue 8: a VHFFS-shaped panel (our own fixture: the panel's tables and columns, a few hundred
//! groups, sites, databases, mail boxes and zones) whose files, Maildirs and databases exist on
//! real servers; the inventory and the dry run list every unit with its paths and owners, a
//! cutover of one batch moves it and switches its records in the panel's tables, and a
//! rollback puts the rows back exactly. Also: the CSV inventory, and the DNS provider's
//! compare-and-swap refusing a concurrently edited row without applying anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::bin;
use crate::harness::{MariaDb, Postgres};

const GROUPS: u32 = 200;
const OLD: &str = "192.0.2.10";
const NEW: &str = "198.51.100.10";

/// Our VHFFS-shaped schema: the tables and columns the panel keeps its state in.
const SCHEMA: &str = "
CREATE TABLE vhffs_object (object_id serial PRIMARY KEY, owner_uid integer NOT NULL,
  owner_gid integer NOT NULL, date_creation bigint, state integer NOT NULL, description text, type integer);
CREATE TABLE vhffs_groups (gid integer PRIMARY KEY, groupname varchar(50) NOT NULL UNIQUE,
  passwd varchar(20), quota integer, quota_used integer, object_id integer REFERENCES vhffs_object);
CREATE TABLE vhffs_httpd (httpd_id serial PRIMARY KEY, servername varchar(200) NOT NULL UNIQUE,
  object_id integer REFERENCES vhffs_object);
CREATE TABLE vhffs_mysql (mysql_id serial PRIMARY KEY, dbname varchar(200) NOT NULL UNIQUE,
  dbuser varchar(200) NOT NULL, dbpass varchar(200), object_id integer REFERENCES vhffs_object);
CREATE TABLE vhffs_pgsql (pgsql_id serial PRIMARY KEY, dbname varchar(200) NOT NULL UNIQUE,
  dbuser varchar(200) NOT NULL, dbpass varchar(200), object_id integer REFERENCES vhffs_object);
CREATE TABLE vhffs_mx (mx_id serial PRIMARY KEY, domain varchar(255) NOT NULL UNIQUE,
  object_id integer REFERENCES vhffs_object);
CREATE TABLE vhffs_mx_localpart (localpart_id serial PRIMARY KEY, mx_id integer REFERENCES vhffs_mx,
  localpart varchar(255) NOT NULL, password varchar(255), nospam boolean, novirus boolean);
CREATE TABLE vhffs_mx_box (box_id serial PRIMARY KEY, localpart_id integer REFERENCES vhffs_mx_localpart,
  allowpop boolean, allowimap boolean, state integer NOT NULL);
CREATE TABLE vhffs_mx_redirect (redirect_id serial PRIMARY KEY,
  localpart_id integer REFERENCES vhffs_mx_localpart, redirect varchar(255) NOT NULL);
CREATE TABLE vhffs_dns (dns_id serial PRIMARY KEY, domain varchar(255) NOT NULL UNIQUE,
  ns varchar(255), mbox varchar(255), serial integer NOT NULL, refresh integer, retry integer,
  expire integer, minimum integer, ttl integer, object_id integer REFERENCES vhffs_object);
CREATE TABLE vhffs_dns_rr (id serial PRIMARY KEY, zone integer NOT NULL REFERENCES vhffs_dns,
  name varchar(200) NOT NULL, type varchar(10) NOT NULL, data varchar(4096) NOT NULL,
  aux integer NOT NULL DEFAULT 0, ttl integer NOT NULL DEFAULT 3600);
";

/// One group of the fixture, with what it owns.
struct Group {
    gid: u32,
    uid: u32,
    name: String,
    /// Server names of its sites, with the panel state of each.
    sites: Vec<(String, i32)>,
    mysql: Option<String>,
    pgsql: Option<String>,
    boxes: Vec<&'static str>,
}

fn groups() -> Vec<Group> {
    (0..GROUPS)
        .map(|g| {
            let name = format!("g{g:03}");
            let zone = format!("{name}.test");
            let mut sites = vec![(format!("www.{zone}"), if g == 7 { 15 } else { 6 })];
            if g % 2 == 0 {
                // One site in an error state: listed as a risk, never moved.
                sites.push((format!("blog.{zone}"), if g == 10 { 4 } else { 6 }));
            }
            Group {
                gid: 10_000 + g,
                uid: 20_000 + g,
                mysql: (g < 120).then(|| format!("{name}_wp")),
                // g000 has both: its PostgreSQL database must go to the PostgreSQL rule, though
                // the MariaDB rule (listed first) selects every name.
                pgsql: (g >= 120 || g == 0).then(|| format!("{name}_pg")),
                boxes: if g % 2 == 0 {
                    vec!["alice", "bob"]
                } else {
                    vec!["alice"]
                },
                name,
                sites,
            }
        })
        .collect()
}

/// The panel's rows for `groups`, as SQL.
fn fixture_sql(groups: &[Group]) -> String {
    let mut sql = String::from(SCHEMA);
    let mut object = 0;
    let mut obj = |sql: &mut String, uid: u32, gid: u32, state: i32| {
        object += 1;
        sql.push_str(&format!(
            "INSERT INTO vhffs_object VALUES ({object}, {uid}, {gid}, 1700000000, {state}, '', 0);\n"
        ));
        object
    };
    for g in groups {
        let zone = format!("{}.test", g.name);
        let o = obj(&mut sql, g.uid, g.gid, 6);
        sql.push_str(&format!(
            "INSERT INTO vhffs_groups VALUES ({}, '{}', NULL, 100, 1, {o});\n",
            g.gid, g.name
        ));
        for (site, state) in &g.sites {
            let o = obj(&mut sql, g.uid, g.gid, *state);
            sql.push_str(&format!(
                "INSERT INTO vhffs_httpd (servername, object_id) VALUES ('{site}', {o});\n"
            ));
        }
        if let Some(db) = &g.mysql {
            let o = obj(&mut sql, g.uid, g.gid, 6);
            sql.push_str(&format!("INSERT INTO vhffs_mysql (dbname, dbuser, dbpass, object_id) VALUES ('{db}', '{}', 'pw-{}', {o});\n", g.name, g.name));
        }
        if let Some(db) = &g.pgsql {
            let o = obj(&mut sql, g.uid, g.gid, 6);
            sql.push_str(&format!("INSERT INTO vhffs_pgsql (dbname, dbuser, dbpass, object_id) VALUES ('{db}', '{}', 'pw-{}', {o});\n", g.name, g.name));
        }
        let o = obj(&mut sql, g.uid, g.gid, 6);
        sql.push_str(&format!(
            "INSERT INTO vhffs_mx (domain, object_id) VALUES ('{zone}', {o});\n"
        ));
        for b in &g.boxes {
            sql.push_str(&format!(
                "INSERT INTO vhffs_mx_localpart (mx_id, localpart, password) SELECT mx_id, '{b}', 'x' FROM vhffs_mx WHERE domain = '{zone}';\n\
                 INSERT INTO vhffs_mx_box (localpart_id, allowpop, allowimap, state) SELECT l.localpart_id, true, true, 6 FROM vhffs_mx_localpart l JOIN vhffs_mx m USING (mx_id) WHERE m.domain = '{zone}' AND l.localpart = '{b}';\n"
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO vhffs_mx_redirect (localpart_id, redirect) SELECT l.localpart_id, 'someone@example.net' FROM vhffs_mx_localpart l JOIN vhffs_mx m USING (mx_id) WHERE m.domain = '{zone}' AND l.localpart = 'alice';\n"
        ));
        // Records relative to the zone, the apex as `@` (our fixture's convention).
        let o = obj(&mut sql, g.uid, g.gid, 6);
        sql.push_str(&format!(
            "INSERT INTO vhffs_dns (domain, ns, mbox, serial, refresh, retry, expire, minimum, ttl, object_id) VALUES ('{zone}', 'ns1.coop.test.', 'hostmaster.coop.test.', 2026112301, 3600, 600, 604800, 300, 3600, {o});\n"
        ));
        let mut records = vec![
            ("@", "A", "192.0.2.80".to_string(), 0),
            ("@", "NS", "ns1.coop.test.".into(), 0),
            ("@", "MX", "mail".into(), 10),
            ("@", "TXT", "v=spf1 mx -all".into(), 0),
            ("mail", "A", "192.0.2.99".into(), 0),
            ("ftp", "CNAME", "www".into(), 0),
        ];
        for (site, _) in &g.sites {
            records.push((site.split('.').next().unwrap(), "A", OLD.into(), 0));
        }
        for (name, rtype, data, aux) in records {
            sql.push_str(&format!(
                "INSERT INTO vhffs_dns_rr (zone, name, type, data, aux, ttl) SELECT dns_id, '{name}', '{rtype}', '{data}', {aux}, 300 FROM vhffs_dns WHERE domain = '{zone}';\n"
            ));
        }
    }
    sql
}

/// Runs a whole script through psql (`CREATE DATABASE` refuses to share a transaction).
fn psql_script(pg: &Postgres, db: &str, script: &str) {
    let mut child = Command::new(pg.bin.join("psql"))
        .args(["-XqAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    for e in walkdir(path) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid)).unwrap();
    }
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            for e in std::fs::read_dir(&out[i]).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

struct Panel {
    work: tempfile::TempDir,
    groups: Vec<Group>,
    /// Server name -> md5 hex, from PostgreSQL's own md5().
    md5: BTreeMap<String, String>,
}

impl Panel {
    fn data(&self) -> PathBuf {
        self.work.path().join("data")
    }

    fn web(&self, datadir: &Path, site: &str) -> PathBuf {
        let h = &self.md5[site];
        datadir
            .join("web")
            .join(&h[0..2])
            .join(&h[2..4])
            .join(&h[4..6])
            .join(site)
    }

    fn plan(&self, name: &str, extra: &str) -> PathBuf {
        let w = self.work.path();
        let plan = w.join(format!("{name}.yaml"));
        std::fs::write(&plan, format!("version: 1\nname: {name}\nstate_dir: state-{name}\ndefaults: {{ jobs: 4 }}\n{extra}")).unwrap();
        plan
    }
}

/// Builds the panel in `pg_src` (database `vhffs`) and everything it describes on disk and in
/// the source database servers.
fn panel(pg_src: &Postgres, maria_src: &MariaDb) -> Panel {
    let work = tempfile::tempdir().unwrap();
    let groups = groups();
    psql_script(pg_src, "postgres", "CREATE DATABASE vhffs;");
    psql_script(pg_src, "vhffs", &fixture_sql(&groups));
    let md5: BTreeMap<String, String> = pg_src
        .psql(
            "vhffs",
            "SELECT servername || ' ' || md5(servername) FROM vhffs_httpd",
        )
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    let p = Panel { work, groups, md5 };
    let data = p.data();
    let mut mysql = String::new();
    let mut pg = String::new();
    for g in &p.groups {
        for (site, _) in &g.sites {
            let dir = p.web(&data, site);
            write(
                &dir.join("htdocs/index.html"),
                format!("<title>{site}</title>").as_bytes(),
            );
            chown_tree(&dir, g.uid, g.gid);
        }
        for b in &g.boxes {
            let zone = format!("{}.test", g.name);
            let maildir = data.join(format!(
                "mail/boxes/g/{}/{zone}/{}/{b}/Maildir",
                &g.name[1..2],
                &b[..1]
            ));
            write(
                &maildir.join("cur/1700000000.M1P1.host,S=20:2,S"),
                b"Subject: hi\r\n\r\nhello",
            );
            std::fs::create_dir_all(maildir.join("new")).unwrap();
            std::fs::create_dir_all(maildir.join("tmp")).unwrap();
        }
        if let Some(db) = &g.mysql {
            mysql.push_str(&format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.posts (id INT PRIMARY KEY, body TEXT); \
                 INSERT INTO {db}.posts VALUES (1, '{db} first'), (2, '{db} second'); \
                 CREATE USER '{0}'@'%' IDENTIFIED BY 'pw-{0}'; GRANT ALL ON {db}.* TO '{0}'@'%';\n",
                g.name
            ));
        }
        if let Some(db) = &g.pgsql {
            pg.push_str(&format!(
                "CREATE ROLE {0} LOGIN PASSWORD 'pw-{0}';\nCREATE DATABASE {db} OWNER {0} STRATEGY FILE_COPY;\n",
                g.name
            ));
        }
    }
    // One directory the panel does not know: reported, not moved.
    std::fs::create_dir_all(data.join("web/00/00/00/stray.test")).unwrap();
    maria_src.sql(&mysql);
    psql_script(pg_src, "postgres", &pg);
    p
}

fn run(plan: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    // A script, not a terminal: the commands that ask are answered with `--yes`.
    let out = bin().arg("--yes").args(args).arg(plan).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn rr_rows(pg: &Postgres) -> String {
    pg.psql(
        "vhffs",
        "SELECT id, zone, name, type, data, aux, ttl FROM vhffs_dns_rr ORDER BY id",
    )
}

#[test]
fn vhffs_panel_inventory_dry_run_cutover_of_a_batch_and_exact_rollback() {
    let (pg_src, pg_dst) = (Postgres::start(), Postgres::start());
    let (my_src, my_dst) = (MariaDb::start(), MariaDb::start());
    let p = panel(&pg_src, &my_src);
    let w = p.work.path();
    let zones: Vec<String> = p
        .groups
        .iter()
        .map(|g| format!("{}.test", g.name))
        .collect();
    let common = format!(
        "inventory:\n  kind: vhffs\n  host: local\n  database: vhffs\n  address: 127.0.0.1\n  port: {}\n  user: postgres\n  datadir: \"{}\"\n  to: {{ host: local, datadir: \"{}\" }}\n\
databases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: local, socket: \"{}\", user: root }}\n  \
- engine: postgres\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    to: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    exclude: [vhffs]\n\
dns:\n  provider: {{ kind: vhffs }}\n  zones: [{}]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 10s\n\
cutover:\n  batch: 20\n",
        pg_src.port,
        p.data().display(),
        w.join("newdata").display(),
        my_src.socket.display(),
        my_dst.socket.display(),
        pg_src.port,
        pg_dst.port,
        zones.join(", ")
    );
    let plan = p.plan("vhffs-it", &common);

    // The inventory: every activated or suspended site, with its hashed path and owner.
    let (code, out, err) = run(&plan, &["inventory", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sites = inv["sites"].as_array().unwrap();
    let expected_sites: Vec<(&Group, &String, i32)> = p
        .groups
        .iter()
        .flat_map(|g| g.sites.iter().map(move |(s, st)| (g, s, *st)))
        .filter(|(_, _, st)| *st != 4)
        .collect();
    assert_eq!(sites.len(), expected_sites.len());
    assert!(sites.len() >= 290, "a few hundred sites: {}", sites.len());
    let by_name: BTreeMap<&str, &serde_json::Value> = sites
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    for (g, site, state) in &expected_sites {
        let s = by_name[site.as_str()];
        assert_eq!(
            s["source"],
            format!("local:{}", p.web(&p.data(), site).display())
        );
        assert_eq!(
            s["target"],
            format!("local:{}", p.web(&w.join("newdata"), site).display())
        );
        assert_eq!(s["owner"], format!("{}:{}", g.uid, g.gid));
        assert_eq!(s["domains"], serde_json::json!([site]));
        assert_eq!(*state == 15, s["marks"] == serde_json::json!(["suspended"]));
    }
    // A group's databases move with its first site (by name: `blog.` before `www.`).
    assert_eq!(
        by_name["blog.g000.test"]["databases"],
        serde_json::json!(["g000_wp", "g000_pg"])
    );
    assert_eq!(
        by_name["www.g199.test"]["databases"],
        serde_json::json!(["g199_pg"])
    );
    assert_eq!(
        inv["databases"].as_array().unwrap().len(),
        GROUPS as usize + 1
    );
    assert!(!out.contains("pw-g0"), "stored passwords are never printed");
    let boxes = inv["mailboxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 300);
    assert!(boxes.iter().any(|b| b["maildir"]
        == format!(
            "local:{}",
            p.data()
                .join("mail/boxes/g/0/g042.test/b/bob/Maildir")
                .display()
        )));
    assert_eq!(inv["zones"].as_array().unwrap().len(), GROUPS as usize);
    assert_eq!(inv["groups"], GROUPS);
    let risks: Vec<(String, String)> = inv["risks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().into(),
                r["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        risks.contains(&("panel_state".into(), "blog.g010.test".into())),
        "{risks:?}"
    );
    assert!(
        risks
            .iter()
            .any(|(k, s)| k == "not_in_panel" && s.ends_with("stray.test"))
    );
    // The error-state site's directory exists but belongs to no moved site.
    assert!(
        !risks
            .iter()
            .any(|(k, _)| k == "missing_source" || k == "missing_maildir"),
        "{risks:?}"
    );
    let (code, text, err) = run(&plan, &["inventory"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("www.g007.test ")
                && l.contains("20007:10007")
                && l.contains("suspended")),
        "{text}"
    );
    let (code, yaml, err) = run(&plan, &["inventory", "--yaml"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(yaml.contains("www.g123.test"), "{yaml}");

    // The dry run shows the panel's units like any other, with owners and the mail tree.
    let dry = p.plan(
        "vhffs-dry",
        &format!(
            "{common}mail:\n  - layout: maildir\n    from: {{ host: local, path: \"{}/mail/boxes/\" }}\n    to: {{ host: local, path: \"{}/newdata/mail/boxes/\" }}\n",
            p.data().display(),
            w.display()
        ),
    );
    let (code, out, err) = run(&dry, &["plan", "--format", "json"]);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        report["sites"].as_array().unwrap().len(),
        expected_sites.len()
    );
    let www7 = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "www.g007.test")
        .unwrap();
    assert_eq!(www7["owner"], "20007:10007");
    assert_eq!(www7["marks"], serde_json::json!(["suspended"]));
    assert_eq!(www7["target_state"], "missing");
    assert_eq!(www7["files"], 1);
    let dbs: BTreeSet<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(dbs.len(), GROUPS as usize + 1, "{dbs:?}");
    assert_eq!(report["mail"].as_array().unwrap().len(), 300);
    // The zones switch by address: the error-state site's record is planned too (300 A records).
    assert_eq!(report["totals"]["dns_changes"], 300);

    // Cutover of batch 1 (the first 20 sites by name): files with owners, databases with
    // users, and the records switched in the panel's own table.
    let rows_before = rr_rows(&pg_src);
    let serial_before = pg_src.psql(
        "vhffs",
        "SELECT serial FROM vhffs_dns WHERE domain = 'g000.test'",
    );
    let (code, out, err) = run(&plan, &["cutover", "--batch", "1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let batch: Vec<&str> = by_name.keys().copied().take(20).collect();
    assert_eq!(batch[0], "blog.g000.test");
    for site in &batch {
        let (g, _, _) = expected_sites.iter().find(|(_, s, _)| s == site).unwrap();
        let target = p.web(&w.join("newdata"), site);
        let meta = std::fs::metadata(target.join("htdocs/index.html")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (g.uid, g.gid), "{site}");
        let (zone_name, host) = (format!("{}.test", g.name), site.split('.').next().unwrap());
        assert_eq!(
            pg_src.psql("vhffs", &format!("SELECT data FROM vhffs_dns_rr r JOIN vhffs_dns d ON d.dns_id = r.zone WHERE d.domain = '{zone_name}' AND r.name = '{host}' AND r.type = 'A'")),
            NEW,
            "{site}"
        );
    }
    assert_eq!(
        my_dst.sql("SELECT body FROM g000_wp.posts WHERE id = 2"),
        "g000_wp second"
    );
    assert_eq!(
        my_dst.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'g000'"),
        "1",
        "the database's user came along"
    );
    // The engine travels with the database: g000's PostgreSQL database went to PostgreSQL.
    assert_eq!(
        pg_dst.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'g000_pg'"
        ),
        "1",
        "{out}{err}"
    );
    assert_eq!(
        my_dst
            .sql("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'g000_pg'"),
        "0"
    );
    // Sites of later batches did not move, and their records still hold the old address.
    assert!(!p.web(&w.join("newdata"), "www.g150.test").exists());
    assert_eq!(
        pg_src.psql("vhffs", "SELECT data FROM vhffs_dns_rr r JOIN vhffs_dns d ON d.dns_id = r.zone WHERE d.domain = 'g150.test' AND r.name = 'www'"),
        OLD
    );
    let serial_after: i64 = pg_src
        .psql(
            "vhffs",
            "SELECT serial FROM vhffs_dns WHERE domain = 'g000.test'",
        )
        .parse()
        .unwrap();
    assert!(serial_after > serial_before.parse::<i64>().unwrap());
    let (_, status, _) = run(&plan, &["status"]);
    assert!(
        status.contains("20 confirmed") || status.contains("confirmed"),
        "{status}"
    );

    // Rollback: every row of vhffs_dns_rr exactly as before (ids, names, data, TTLs).
    let (code, out, err) = run(&plan, &["rollback"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(rr_rows(&pg_src), rows_before);
}

#[test]
fn vhffs_dns_swap_refuses_a_concurrently_edited_row_and_applies_nothing() {
    use transhumance::dns::provider::Provider;
    use transhumance::dns::provider::RrState;
    use transhumance::dns::provider::{DnsError, Swap};

    let pg = Postgres::start();
    psql_script(&pg, "postgres", "CREATE DATABASE vhffs;");
    let groups: Vec<Group> = groups().into_iter().take(2).collect();
    psql_script(&pg, "vhffs", &fixture_sql(&groups));
    let server = transhumance::plan::DbServer {
        host: "local".into(),
        socket: None,
        address: Some("127.0.0.1".into()),
        port: Some(pg.port),
        user: Some("postgres".into()),
        password: None,
        bin_dir: Some(pg.bin.display().to_string()),
    };
    let dns = transhumance::dns::vhffs::VhffsDns::new(
        std::sync::Arc::new(transhumance::transport::LocalTransport::new("local")),
        server,
        "vhffs".into(),
    );
    let before = rr_rows(&pg);
    let old = RrState {
        ttl: 300,
        values: vec![OLD.into()],
    };
    let new = RrState {
        ttl: 300,
        values: vec![NEW.into()],
    };
    let stale = RrState {
        ttl: 300,
        values: vec!["192.0.2.77".into()],
    };
    // Someone edits blog.g000.test in the panel after our plan read it.
    let err = dns
        .swap_all(
            "g000.test",
            &[
                Swap {
                    name: "www.g000.test.",
                    rtype: "A",
                    current: &old,
                    new: &new,
                },
                Swap {
                    name: "blog.g000.test.",
                    rtype: "A",
                    current: &stale,
                    new: &new,
                },
            ],
        )
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Changed { name, .. } if name == "blog.g000.test."),
        "{err}"
    );
    assert_eq!(rr_rows(&pg), before, "nothing half-applied");
    assert_eq!(
        pg.psql(
            "vhffs",
            "SELECT serial FROM vhffs_dns WHERE domain = 'g000.test'"
        ),
        "2026112301"
    );
    // The records read back as servers would serve them.
    let rrs = dns.records("g000.test").unwrap();
    assert!(
        rrs.iter()
            .any(|r| r.name == "g000.test." && r.rtype == "MX" && r.data == "10 mail.g000.test.")
    );
    assert!(
        rrs.iter()
            .any(|r| r.name == "ftp.g000.test." && r.data == "www.g000.test.")
    );
    assert_eq!(
        dns.read(&transhumance::dns::provider::RrKey {
            zone: "g000.test".into(),
            name: "www.g000.test.".into(),
            rtype: "A".into()
        })
        .unwrap(),
        old
    );
}

#[test]
fn csv_inventory_feeds_the_dry_run_and_names_bad_rows() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for s in ["shop", "blog"] {
        write(&w.join(format!("old/{s}/index.html")), s.as_bytes());
    }
    std::fs::write(
        w.join("sites.csv"),
        format!(
            "name,source_path,target_path,domains,databases,mail_domain\n\
             shop,{0}/old/shop,{0}/new/shop,shop.example.org www.shop.example.org,,example.org\n\
             blog,{0}/old/blog,{0}/new/blog,blog.example.org,,\n",
            w.display()
        ),
    )
    .unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: csv\ninventory: { kind: csv, host: local, file: sites.csv, to: { host: local } }\n",
    )
    .unwrap();
    let (code, out, err) = run(&plan, &["plan", "--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop", "blog"]);
    assert_eq!(
        report["sites"][0]["domains"],
        serde_json::json!(["shop.example.org", "www.shop.example.org"])
    );
    let (code, out, _) = run(&plan, &["inventory"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("2 site(s)") && out.contains("1 mail domain(s)"),
        "{out}"
    );

    std::fs::write(w.join("sites.csv"), "shop,relative,/srv/shop\n").unwrap();
    let (code, _, err) = run(&plan, &["inventory"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("sites.csv:1: `source_path` must be absolute"),
        "{err}"
    );
}
