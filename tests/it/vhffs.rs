//! Issues 8 and 15: a VHFFS panel built from VHFFS 4.5's own schema (`initdb.sql.in`, vendored
//! under tests/fixtures/vhffs) and populated the way its Perl API and robots do (users with
//! private groups, workgroups whose members own different objects, web areas, databases, mail
//! domains with boxes, zones with the default records, the data directory's hashed layout and
//! modes), with objects in transitional and error states. The inventory and the dry run list
//! every unit with its owner and its names (`servername` and `www.servername`); what the panel
//! leaves out is moved by no rule and listed, with its state, in the "unmigrated" report; a
//! cutover of one batch moves and probes both names of each site and switches their rows in
//! the panel's tables; a rollback puts the rows back exactly; the panel's own database moves
//! last. Also: the CSV inventory, and the DNS provider's compare-and-swap refusing a
//! concurrently edited row without applying anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::bin;
use crate::harness::{MariaDb, Postgres};

// Not 127.0.0.1: a switch must not move what the harness's servers listen on.
const OLD: &str = "127.0.0.3";
const NEW: &str = "127.0.0.2";
/// `boxes_uid`/`boxes_gid` of VHFFS's `vhffs.conf`: the owner of every Maildir.
const BOXES_ID: u32 = 102;
/// When the fixture's objects were created (May 2015, VHFFS 4.5's release).
const CREATED: u64 = 1_431_078_000;

// ------------------------------------------------------------------------------------------
// The panel, as VHFFS's Perl code fills it

/// One web area, database or mail box, with the member who created it and its panel state.
#[derive(Clone)]
pub(super) struct Object {
    name: String,
    /// Index of the creating user (the object's `owner_uid`).
    creator: usize,
    state: i32,
}

/// One workgroup and what it owns.
pub(super) struct Group {
    pub(super) name: String,
    pub(super) state: i32,
    /// Users: the first is the group's owner, all are members.
    pub(super) members: Vec<usize>,
    pub(super) sites: Vec<Object>,
    pub(super) mysql: Vec<Object>,
    pub(super) pgsql: Vec<Object>,
    /// The mail domain's state and its boxes (`localpart`, state).
    pub(super) mail: (i32, Vec<(&'static str, i32)>),
}

impl Group {
    fn zone(&self) -> String {
        format!("{}.test", self.name)
    }
}

/// The fixture's platform: users, then groups.
pub(super) struct Platform {
    pub(super) users: Vec<String>,
    pub(super) groups: Vec<Group>,
}

fn obj(name: String, creator: usize, state: i32) -> Object {
    Object {
        name,
        creator,
        state,
    }
}

/// `groups` workgroups over `groups / 2 + 3` users. States taken from `Vhffs::Constants`:
/// 3 waiting for creation, 4 creation error, 6 activated, 10 modification error, 12 will be
/// deleted, 15 suspended.
fn platform(groups: usize) -> Platform {
    let names = ["ana", "bob", "cyd", "dan", "eve", "fay", "gus"];
    let users: Vec<String> = (0..groups / 2 + 3)
        .map(|i| format!("{}{i:02}", names[i % names.len()]))
        .collect();
    let u = users.len();
    let groups = (0..groups)
        .map(|g| {
            let name = format!("g{g:03}");
            let zone = format!("{name}.test");
            // Owner, then two more members: objects of one group are owned by several users.
            let members = vec![g % u, (g + 1) % u, (g + 2) % u];
            let mut sites = vec![obj(zone.clone(), members[0], if g == 7 { 15 } else { 6 })];
            if g == 0 {
                sites.push(obj(format!("blog.{zone}"), members[1], 6));
            } else if g % 2 == 0 {
                // One web area in an error state: listed with its state, never moved.
                sites.push(obj(
                    format!("shop.{zone}"),
                    members[1],
                    if g == 10 { 4 } else { 6 },
                ));
            }
            let mut mysql = Vec::new();
            if g < 30 {
                mysql.push(obj(format!("{name}_wp"), members[2], 6));
            }
            if g == 3 {
                // Being deleted: the catch-all MariaDB rule must not move it.
                mysql.push(obj(format!("{name}_old"), members[0], 12));
            }
            let mut pgsql = Vec::new();
            if g >= 30 || g == 0 {
                pgsql.push(obj(format!("{name}_pg"), members[1], 6));
            }
            if g == 4 {
                pgsql.push(obj(format!("{name}_tmp"), members[0], 10));
            }
            let mut boxes = vec![("alice", 6)];
            if g % 2 == 0 {
                boxes.push(("bob", 6));
            }
            if g == 8 {
                boxes.push(("carl", 3));
            }
            Group {
                name,
                // The last group is being deleted: everything it owns stays.
                state: if g == 39 { 12 } else { 6 },
                members,
                sites,
                mysql,
                pgsql,
                // g005's mail domain is being deleted: its boxes (activated) stay with it.
                mail: (if g == 5 { 12 } else { 6 }, boxes),
            }
        })
        .collect();
    Platform { users, groups }
}

/// A SQL string literal (the fixture's names hold no quote, but say so).
fn q(s: &str) -> String {
    assert!(!s.contains('\''));
    format!("'{s}'")
}

/// VHFFS's schema as `make install` writes it: configure's default minimal uid and gid, and
/// without `WITH (OIDS)`, which PostgreSQL 12 and later refuse.
pub(crate) fn schema() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vhffs/initdb.sql.in");
    std::fs::read_to_string(path)
        .unwrap()
        .replace("@MINUID@", "10000")
        .replace("@MINGID@", "10000")
        .replace("WITH (OIDS)", "")
}

/// The SQL the panel's Perl runs to create `p` (`Vhffs::User::create` with its private group,
/// `Vhffs::Group::create`, `Vhffs::Services::*::create`, `Vhffs::Services::DNS::create` with
/// the default records of `vhffs.conf`), with each object in the state the robots left it in.
fn fixture_sql(p: &Platform) -> String {
    let mut sql = schema();
    sql.push_str("BEGIN;\nSET CONSTRAINTS ALL DEFERRED;\n");
    // An object row and the row of its service, in one statement (the Perl uses the new oid).
    let object = |sql: &mut String, uid: &str, gid: &str, state: i32, kind: u32, insert: &str| {
        sql.push_str(&format!(
            "WITH o AS (INSERT INTO vhffs_object (owner_uid, owner_gid, date_creation, state, description, type) \
             VALUES ({uid}, {gid}, {CREATED}, {state}, '', {kind}) RETURNING object_id) {insert};\n"
        ));
    };
    let uid_of = |u: usize| {
        format!(
            "(SELECT uid FROM vhffs_users WHERE username = {})",
            q(&p.users[u])
        )
    };
    let gid_of = |g: &str| format!("(SELECT gid FROM vhffs_groups WHERE groupname = {})", q(g));
    for name in &p.users {
        // uid and gid from their sequences; the user's private group has the user's name.
        sql.push_str(
            "SELECT nextval('vhffs_users_uid_seq') AS uid, nextval('vhffs_groups_gid_seq') AS gid \\gset\n",
        );
        let home = format!("/data/home/{}/{}/{name}", &name[0..1], &name[1..2]);
        object(
            &mut sql,
            ":uid",
            ":gid",
            6,
            10,
            &format!(
                "INSERT INTO vhffs_users (uid, gid, username, shell, passwd, homedir, admin, object_id, mail, language, validated) \
                 SELECT :uid, :gid, {}, '/usr/bin/falseshell', '$6$fixture$x', {}, 0, object_id, {}, 'en_US', true FROM o",
                q(name),
                q(&home),
                q(&format!("{name}@example.net"))
            ),
        );
        object(
            &mut sql,
            ":uid",
            ":gid",
            6,
            11,
            &format!(
                "INSERT INTO vhffs_groups (gid, groupname, realname, passwd, quota, quota_used, object_id) \
                 SELECT :gid, {0}, {0}, NULL, 1, 0, object_id FROM o",
                q(name)
            ),
        );
    }
    for g in &p.groups {
        let owner = uid_of(g.members[0]);
        sql.push_str("SELECT nextval('vhffs_groups_gid_seq') AS gid \\gset\n");
        object(
            &mut sql,
            &owner,
            ":gid",
            g.state,
            11,
            &format!(
                "INSERT INTO vhffs_groups (gid, groupname, realname, passwd, quota, quota_used, object_id) \
                 SELECT :gid, {0}, {0}, NULL, 100, 3, object_id FROM o",
                q(&g.name)
            ),
        );
        for m in &g.members {
            sql.push_str(&format!(
                "INSERT INTO vhffs_user_group (uid, gid, state) VALUES ({}, :gid, 6);\n",
                uid_of(*m)
            ));
        }
        let gid = gid_of(&g.name);
        for s in &g.sites {
            object(
                &mut sql,
                &uid_of(s.creator),
                &gid,
                s.state,
                20,
                &format!(
                    "INSERT INTO vhffs_httpd (servername, object_id) SELECT {}, object_id FROM o",
                    q(&s.name)
                ),
            );
        }
        // The robots blank the password once the database exists.
        for (list, table, kind) in [(&g.mysql, "vhffs_mysql", 30), (&g.pgsql, "vhffs_pgsql", 31)] {
            for d in list {
                object(
                    &mut sql,
                    &uid_of(d.creator),
                    &gid,
                    d.state,
                    kind,
                    &format!(
                        "INSERT INTO {table} (dbname, dbuser, dbpass, object_id) SELECT {0}, {0}, '', object_id FROM o",
                        q(&d.name)
                    ),
                );
            }
        }
        let zone = g.zone();
        object(
            &mut sql,
            &owner,
            &gid,
            g.mail.0,
            60,
            &format!(
                "INSERT INTO vhffs_mx (domain, object_id) SELECT {}, object_id FROM o",
                q(&zone)
            ),
        );
        for (lp, state) in &g.mail.1 {
            let mx = format!("(SELECT mx_id FROM vhffs_mx WHERE domain = {})", q(&zone));
            sql.push_str(&format!(
                "INSERT INTO vhffs_mx_localpart (mx_id, localpart, password) VALUES ({mx}, {}, '$6$box$x');\n\
                 INSERT INTO vhffs_mx_box (localpart_id, state) SELECT localpart_id, {state} FROM vhffs_mx_localpart WHERE mx_id = {mx} AND localpart = {};\n",
                q(lp),
                q(lp)
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO vhffs_mx_localpart (mx_id, localpart) SELECT mx_id, 'contact' FROM vhffs_mx WHERE domain = {0};\n\
             INSERT INTO vhffs_mx_redirect (localpart_id, redirect) SELECT l.localpart_id, 'alice@{1}' FROM vhffs_mx_localpart l JOIN vhffs_mx m USING (mx_id) WHERE m.domain = {0} AND l.localpart = 'contact';\n",
            q(&zone),
            zone
        ));
        // The zone as `Vhffs::Services::DNS::create` makes it: the SOA from `vhffs.conf`, then
        // `@` and `www` on the web server, the MX and NS of the platform (TTL 900, the apex
        // stored as ''), then a record per sub-domain web area and the user's own SPF.
        object(
            &mut sql,
            &owner,
            &gid,
            g.state,
            50,
            &format!(
                "INSERT INTO vhffs_dns (domain, object_id, ns, mbox, serial, refresh, retry, expire, minimum, ttl) \
                 SELECT {}, object_id, 'ns1.hoster.test.', 'hostmaster.hoster.test.', 2015050801, 28800, 7200, 604800, 86400, 86400 FROM o",
                q(&zone)
            ),
        );
        let mut records = vec![
            (String::new(), "A", OLD.to_string(), 0),
            ("www".into(), "A", OLD.into(), 0),
            (String::new(), "MX", "mx1.hoster.test.".into(), 10),
            (String::new(), "MX", "mx2.hoster.test.".into(), 20),
            (String::new(), "NS", "ns1.hoster.test.".into(), 0),
            (String::new(), "NS", "ns2.hoster.test.".into(), 0),
            (String::new(), "TXT", "v=spf1 mx -all".into(), 0),
        ];
        for s in g.sites.iter().filter(|s| s.name != zone) {
            records.push((s.name.split('.').next().unwrap().into(), "A", OLD.into(), 0));
        }
        for (name, rtype, data, aux) in records {
            sql.push_str(&format!(
                "INSERT INTO vhffs_dns_rr (zone, name, type, data, aux, ttl) SELECT dns_id, {}, '{rtype}', {}, {aux}, 900 FROM vhffs_dns WHERE domain = {};\n",
                q(&name),
                q(&data),
                q(&zone)
            ));
        }
    }
    sql.push_str("COMMIT;\n");
    sql
}

/// Runs a whole script through psql (`CREATE DATABASE` refuses to share a transaction).
pub(crate) fn psql_script(pg: &Postgres, db: &str, script: &str) {
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

// ------------------------------------------------------------------------------------------
// The data directory, as VHFFS's robots lay it out

pub(super) fn write(path: &Path, content: &[u8], uid: u32, gid: u32, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn dir(path: &Path, uid: u32, gid: u32, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The panel in `pg_src` and what it describes, on disk and in the source database servers.
pub(super) struct Panel {
    pub(super) work: tempfile::TempDir,
    pub(super) platform: Platform,
    /// Server name -> md5 hex, from PostgreSQL's own md5() as the panel computes it.
    md5: BTreeMap<String, String>,
    /// User name -> (uid, private gid); group name -> gid: as the sequences gave them.
    pub(super) uids: BTreeMap<String, (u32, u32)>,
    pub(super) gids: BTreeMap<String, u32>,
}

impl Panel {
    pub(super) fn data(&self) -> PathBuf {
        self.work.path().join("data")
    }

    pub(super) fn newdata(&self) -> PathBuf {
        self.work.path().join("newdata")
    }

    /// `Vhffs::Services::Web::get_dir`.
    pub(super) fn web(&self, datadir: &Path, site: &str) -> PathBuf {
        let h = &self.md5[site];
        datadir
            .join("web")
            .join(&h[0..2])
            .join(&h[2..4])
            .join(&h[4..6])
            .join(site)
    }

    /// `Vhffs::Services::Mail::Box::get_dir`.
    fn box_dir(&self, datadir: &Path, domain: &str, localpart: &str) -> PathBuf {
        datadir.join(format!(
            "mail/boxes/{}/{}/{domain}/{}/{localpart}",
            &domain[0..1],
            &domain[1..2],
            &localpart[0..1]
        ))
    }

    pub(super) fn uid(&self, user: usize) -> u32 {
        self.uids[&self.platform.users[user]].0
    }

    pub(super) fn plan(&self, name: &str, extra: &str) -> PathBuf {
        let w = self.work.path();
        let plan = w.join(format!("{name}.yaml"));
        std::fs::write(
            &plan,
            format!("version: 1\nname: {name}\nstate_dir: state-{name}\ndefaults: {{ jobs: 4 }}\n{extra}"),
        )
        .unwrap();
        plan
    }
}

/// Builds the panel of `groups` workgroups in `pg_src` (database `vhffs`), the data directory
/// the robots would have made of it, and its databases in the source servers.
pub(super) fn panel(groups: usize, pg_src: &Postgres, maria_src: &MariaDb) -> Panel {
    let work = tempfile::tempdir().unwrap();
    let platform = platform(groups);
    psql_script(pg_src, "postgres", "CREATE DATABASE vhffs;");
    psql_script(pg_src, "vhffs", &fixture_sql(&platform));
    let pairs = |sql: &str| -> Vec<(String, String)> {
        pg_src
            .psql("vhffs", sql)
            .lines()
            .map(|l| {
                let (a, b) = l.split_once('|').unwrap();
                (a.to_string(), b.to_string())
            })
            .collect()
    };
    let md5 = pairs("SELECT servername, md5(servername) FROM vhffs_httpd")
        .into_iter()
        .collect();
    let uids = pairs("SELECT username, uid || ' ' || gid FROM vhffs_users")
        .into_iter()
        .map(|(u, ids)| {
            let (a, b) = ids.split_once(' ').unwrap();
            (u, (a.parse().unwrap(), b.parse().unwrap()))
        })
        .collect();
    let gids = pairs("SELECT groupname, gid FROM vhffs_groups")
        .into_iter()
        .map(|(g, id)| (g, id.parse().unwrap()))
        .collect();
    let p = Panel {
        work,
        platform,
        md5,
        uids,
        gids,
    };
    let data = p.data();
    // Homes (`Vhffs::Robots::User::create`, 0700) with a link to each group of the user.
    for (i, name) in p.platform.users.iter().enumerate() {
        let (uid, gid) = p.uids[name];
        let home = data.join(format!("home/{}/{}/{name}", &name[0..1], &name[1..2]));
        dir(&home, uid, gid, 0o700);
        write(&home.join(".profile"), b"# shell\n", uid, gid, 0o644);
        for g in p.platform.groups.iter().filter(|g| g.members.contains(&i)) {
            let target = data.join(format!(
                "groups/{}/{}/{}",
                &g.name[0..1],
                &g.name[1..2],
                g.name
            ));
            std::os::unix::fs::symlink(&target, home.join(&g.name)).unwrap();
        }
    }
    let mut mysql = String::new();
    let mut pg = String::new();
    for g in &p.platform.groups {
        let gid = p.gids[&g.name];
        // The group's directory (`Vhffs::Robots::Group::create`: owner's uid, 02770).
        let gdir = data.join(format!(
            "groups/{}/{}/{}",
            &g.name[0..1],
            &g.name[1..2],
            g.name
        ));
        dir(&gdir, p.uid(g.members[0]), gid, 0o2770);
        write(
            &gdir.join("shared.txt"),
            b"shared notes\n",
            p.uid(g.members[1]),
            gid,
            0o664,
        );
        for s in &g.sites {
            // `Vhffs::Robots::Web::create`: the hashed path made by root, three directories of
            // the creator's at 02775, a link in the group's directory; then the members' files
            // (uploaded by different members), and the stats robot's `logs` and `awstats`.
            let site = p.web(&data, &s.name);
            let (uid, other) = (p.uid(s.creator), p.uid(g.members[2]));
            for sub in ["htdocs", "php-include", "tmp"] {
                dir(&site.join(sub), uid, gid, 0o2775);
            }
            std::os::unix::fs::symlink(&site, gdir.join(format!("{}-web", s.name))).unwrap();
            let title = format!("<title>{}</title>", s.name);
            write(
                &site.join("htdocs/index.html"),
                title.as_bytes(),
                uid,
                gid,
                0o664,
            );
            write(
                &site.join("htdocs/about.html"),
                b"<p>about</p>",
                other,
                gid,
                0o644,
            );
            write(
                &site.join("php-include/config.php"),
                b"<?php $db='x';",
                other,
                gid,
                0o640,
            );
            dir(&site.join("logs"), uid, gid, 0o770);
            write(
                &site.join("logs/access.log"),
                b"GET / 200\n",
                uid,
                gid,
                0o640,
            );
            dir(&site.join("awstats"), uid, gid, 0o775);
            if s.state == 15 {
                // `Vhffs::Robots::Web::disable` copies its template as root.
                write(&site.join(".htaccess"), b"Deny from all\n", 0, 0, 0o644);
            }
        }
        // Mail: `Vhffs::Robots::Mail::create_mailbox` (0755 parents, the box 0700, Maildir
        // 0700, all the boxes' owner); a box waiting for creation has no directory yet.
        for (lp, state) in &g.mail.1 {
            if *state == 3 {
                continue;
            }
            let zone = g.zone();
            let boxdir = p.box_dir(&data, &zone, lp);
            std::fs::create_dir_all(boxdir.parent().unwrap()).unwrap();
            dir(&boxdir, BOXES_ID, BOXES_ID, 0o700);
            for sub in ["cur", "new", "tmp"] {
                dir(&boxdir.join("Maildir").join(sub), BOXES_ID, BOXES_ID, 0o700);
            }
            let body = format!("Subject: hi {lp}\r\nMessage-ID: <{lp}@{zone}>\r\n\r\nhello\r\n");
            write(
                &boxdir.join(format!(
                    "Maildir/cur/1431078000.M1P1.mx1,S={}:2,S",
                    body.len()
                )),
                body.as_bytes(),
                BOXES_ID,
                BOXES_ID,
                0o600,
            );
        }
        for d in &g.mysql {
            mysql.push_str(&format!(
                "CREATE DATABASE {0}; CREATE TABLE {0}.posts (id INT PRIMARY KEY, body TEXT); \
                 INSERT INTO {0}.posts VALUES (1, '{0} first'), (2, '{0} second'); \
                 CREATE USER '{0}'@'%' IDENTIFIED BY 'pw-{0}'; GRANT ALL ON {0}.* TO '{0}'@'%';\n",
                d.name
            ));
        }
        for d in &g.pgsql {
            pg.push_str(&format!(
                "CREATE ROLE {0} LOGIN PASSWORD 'pw-{0}';\nCREATE DATABASE {0} OWNER {0} STRATEGY FILE_COPY;\n",
                d.name
            ));
        }
    }
    // A directory the panel does not know under the web root, and a Maildir of no box.
    let stray = data.join("web/00/00/00/stray.test");
    write(
        &stray.join("htdocs/index.html"),
        b"<title>stray</title>",
        0,
        0,
        0o644,
    );
    let orphan = p.box_dir(&data, "g001.test", "zed").join("Maildir");
    write(
        &orphan.join("cur/1431078000.M9P9.mx1,S=5:2,S"),
        b"hello",
        BOXES_ID,
        BOXES_ID,
        0o600,
    );
    maria_src.sql(&mysql);
    psql_script(pg_src, "postgres", &pg);
    p
}

// ------------------------------------------------------------------------------------------
// The web servers

/// A web server as VHFFS's Apache with mod_vhost_hash_alias serves the data directory: the
/// Host header (without a leading `www.` when that names no web area) picks the area by the
/// MD5 of its name, and `htdocs/index.html` is the page.
struct VhffsWeb {
    stop: Arc<AtomicBool>,
    address: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VhffsWeb {
    fn start(
        address: &str,
        port: u16,
        datadir: PathBuf,
        md5: BTreeMap<String, String>,
    ) -> VhffsWeb {
        let address = SocketAddr::new(address.parse::<IpAddr>().unwrap(), port);
        let listener = TcpListener::bind(address).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = stream {
                    let _ = Self::serve(s, &datadir, &md5);
                }
            }
        });
        VhffsWeb {
            stop,
            address,
            thread: Some(thread),
        }
    }

    fn serve(
        stream: TcpStream,
        datadir: &Path,
        md5: &BTreeMap<String, String>,
    ) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let (mut host, mut line) = (String::new(), String::new());
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("host")
            {
                host = v
                    .trim()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
            }
        }
        let name = if md5.contains_key(&host) {
            Some(host.as_str())
        } else {
            host.strip_prefix("www.").filter(|n| md5.contains_key(*n))
        };
        let page = name.and_then(|n| {
            let h = &md5[n];
            std::fs::read(
                datadir
                    .join("web")
                    .join(&h[0..2])
                    .join(&h[2..4])
                    .join(&h[4..6])
                    .join(n)
                    .join("htdocs/index.html"),
            )
            .ok()
        });
        let (status, body) = match page {
            Some(b) => ("200 OK", b),
            None => ("404 Not Found", b"<title>404</title>".to_vec()),
        };
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        out.write_all(&body)
    }
}

impl Drop for VhffsWeb {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port free on both web addresses.
pub(super) fn web_port() -> u16 {
    transhumance::demo::free_port().unwrap()
}

// ------------------------------------------------------------------------------------------
// Helpers

pub(super) fn run(plan: &Path, args: &[&str]) -> (Option<i32>, String, String) {
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

/// The data of `name`'s A rows (`''` for the apex) in `zone`, as the panel stores them.
fn a_rows(pg: &Postgres, db: &str, zone: &str, name: &str) -> String {
    pg.psql(
        db,
        &format!(
            "SELECT string_agg(data, ' ') FROM vhffs_dns_rr r JOIN vhffs_dns d ON d.dns_id = r.zone \
             WHERE d.domain = '{zone}' AND r.name = '{name}' AND r.type = 'A'"
        ),
    )
}

/// The plan's common sections: the panel as inventory, catch-all database rules (the panel's
/// own database `vhffs` included: it moves last), the Maildir tree, the panel's DNS tables.
pub(super) fn common(
    p: &Panel,
    pg: (&Postgres, &Postgres),
    my: (&MariaDb, &MariaDb),
    port: u16,
) -> String {
    let zones: Vec<String> = p
        .platform
        .groups
        .iter()
        .filter(|g| g.state == 6)
        .map(Group::zone)
        .collect();
    format!(
        "inventory:\n  kind: vhffs\n  host: local\n  database: vhffs\n  address: 127.0.0.1\n  port: {}\n  user: postgres\n  datadir: \"{}\"\n  to: {{ host: local, datadir: \"{}\" }}\n\
databases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: local, socket: \"{}\", user: root }}\n  \
- engine: postgres\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    to: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n\
mail:\n  - layout: maildir\n    from: {{ host: local, path: \"{}/mail/boxes/\" }}\n    to: {{ host: local, path: \"{}/mail/boxes/\" }}\n\
dns:\n  provider: {{ kind: vhffs }}\n  zones: [{}]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 10s\n\
cutover:\n  batch: 10\n  probe: {{ http: \"http://{{domain}}:{port}/\", expect: [200], timeout: 5s, compare_with_old: true }}\n",
        pg.0.port,
        p.data().display(),
        p.newdata().display(),
        my.0.socket.display(),
        my.1.socket.display(),
        pg.0.port,
        pg.1.port,
        p.data().display(),
        p.newdata().display(),
        zones.join(", ")
    )
}

pub(super) fn mode(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

// ------------------------------------------------------------------------------------------
// Tests

#[test]
fn vhffs_panel_inventory_dry_run_cutover_of_a_batch_and_exact_rollback() {
    let (pg_src, pg_dst) = (Postgres::start(), Postgres::start());
    let (my_src, my_dst) = (MariaDb::start(), MariaDb::start());
    let p = panel(40, &pg_src, &my_src);
    let port = web_port();
    let _old = VhffsWeb::start(OLD, port, p.data(), p.md5.clone());
    let _new = VhffsWeb::start(NEW, port, p.newdata(), p.md5.clone());
    let plan = p.plan(
        "vhffs-it",
        &common(&p, (&pg_src, &pg_dst), (&my_src, &my_dst), port),
    );
    let groups = &p.platform.groups;

    // The inventory: every activated or suspended site of a group in service, with its hashed
    // path, its creator's uid and its group's gid, and both names VHFFS serves.
    let (code, out, err) = run(&plan, &["inventory", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sites = inv["sites"].as_array().unwrap();
    let expected: Vec<(&Group, &Object)> = groups
        .iter()
        .filter(|g| g.state == 6)
        .flat_map(|g| g.sites.iter().map(move |s| (g, s)))
        .filter(|(_, s)| s.state == 6 || s.state == 15)
        .collect();
    assert_eq!(sites.len(), expected.len());
    assert!(sites.len() >= 55, "{}", sites.len());
    let by_name: BTreeMap<&str, &serde_json::Value> = sites
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    for (g, s) in &expected {
        let site = by_name[s.name.as_str()];
        assert_eq!(
            site["source"],
            format!("local:{}", p.web(&p.data(), &s.name).display())
        );
        assert_eq!(
            site["target"],
            format!("local:{}", p.web(&p.newdata(), &s.name).display())
        );
        assert_eq!(
            site["owner"],
            format!("{}:{}", p.uid(s.creator), p.gids[&g.name])
        );
        assert_eq!(
            site["domains"],
            serde_json::json!([s.name, format!("www.{}", s.name)])
        );
        assert_eq!(
            s.state == 15,
            site["marks"] == serde_json::json!(["suspended"])
        );
    }
    // Owners vary inside a group: its two web areas were made by two members.
    assert_ne!(
        by_name["blog.g000.test"]["owner"],
        by_name["g000.test"]["owner"]
    );
    // A group's databases move with its first site by name (`blog.` before `g000.`).
    assert_eq!(
        by_name["blog.g000.test"]["databases"],
        serde_json::json!(["g000_wp", "g000_pg"])
    );
    assert_eq!(
        by_name["g031.test"]["databases"],
        serde_json::json!(["g031_pg"])
    );
    assert!(by_name["g003.test"]["databases"] == serde_json::json!(["g003_wp"]));
    let users = p.platform.users.len() as u64;
    assert_eq!(
        (inv["groups"].as_u64(), inv["users"].as_u64()),
        (Some(40), Some(users))
    );
    assert!(!out.contains("pw-g0"), "stored passwords are never printed");
    let boxes = inv["mailboxes"].as_array().unwrap();
    // Boxes of groups in service, of domains in service, activated: not carl, not g005's.
    assert_eq!(boxes.len(), 58, "{boxes:#?}");
    let bob = p.box_dir(&p.data(), "g002.test", "bob").join("Maildir");
    assert!(
        boxes
            .iter()
            .any(|b| b["maildir"] == format!("local:{}", bob.display())),
        "{boxes:#?}"
    );
    assert_eq!(inv["zones"].as_array().unwrap().len(), 39);
    // Left out, each with its state: the review lists what no rule will move.
    let items = inv["unmigrated"]["items"].as_array().unwrap();
    let left: BTreeSet<(String, String, i64)> = items
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
                i["state"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    for (kind, name, state) in [
        ("site", "shop.g010.test", 4),
        ("mysql", "g003_old", 12),
        ("pgsql", "g004_tmp", 10),
        ("mail_domain", "g005.test", 12),
        ("mailbox", "alice@g005.test", 12),
        ("mailbox", "carl@g008.test", 3),
        // A group being deleted: everything it owns stays, with the group's state.
        ("group", "g039", 12),
        ("site", "g039.test", 12),
        ("pgsql", "g039_pg", 12),
        ("mail_domain", "g039.test", 12),
        ("zone", "g039.test", 12),
    ] {
        assert!(
            left.contains(&(kind.to_string(), name.to_string(), state)),
            "{kind} {name} {state} in {left:#?}"
        );
    }
    let stray = p
        .data()
        .join("web/00/00/00/stray.test")
        .display()
        .to_string();
    let orphan = p
        .box_dir(&p.data(), "g001.test", "zed")
        .display()
        .to_string();
    assert!(
        left.contains(&("directory".into(), stray.clone(), -1)),
        "{left:#?}"
    );
    assert!(
        left.contains(&("maildir".into(), orphan.clone(), -1)),
        "{left:#?}"
    );
    // The left-out MariaDB database was measured on its server.
    let old_db = items.iter().find(|i| i["name"] == "g003_old").unwrap();
    assert!(old_db["bytes"].as_u64().is_some(), "{old_db}");
    let kinds: BTreeMap<&str, u64> = inv["unmigrated"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kind"].as_str().unwrap(), k["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(kinds.get("panel user"), Some(&users), "{kinds:?}");
    assert_eq!(kinds.get("panel group"), Some(&(40 + users)), "{kinds:?}");
    let (code, text, err) = run(&plan, &["inventory"]);
    assert_eq!(code, Some(0), "{err}");
    let suspended = format!("{}:{}", p.uid(groups[7].sites[0].creator), p.gids["g007"]);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("g007.test ")
                && l.contains(&suspended)
                && l.contains("www.g007.test")
                && l.contains("suspended")),
        "{text}"
    );
    assert!(
        text.contains("Left at the source, moved by no rule"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("shop.g010.test") && l.contains("4 (creation error)")),
        "{text}"
    );
    let (code, yaml, err) = run(&plan, &["inventory", "--yaml"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(yaml.contains("www.g033.test"), "{yaml}");

    // The dry run: the same units, what each rule would move (never a left-out object), the
    // panel's database noted as moving last, and everything left at the source, measured.
    let (code, out, err) = run(&plan, &["plan", "--format", "json"]);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["sites"].as_array().unwrap().len(), expected.len());
    let g7 = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "g007.test")
        .unwrap();
    assert_eq!(g7["owner"], suspended);
    assert_eq!(g7["marks"], serde_json::json!(["suspended"]));
    assert_eq!(g7["target_state"], "missing");
    assert_eq!(g7["files"], 5, "{g7:#}");
    let dbs: BTreeMap<&str, &serde_json::Value> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d))
        .collect();
    for gone in ["g003_old", "g004_tmp", "g039_pg"] {
        assert!(!dbs.contains_key(gone), "{gone} is left out: {dbs:#?}");
    }
    assert!(dbs.contains_key("g003_wp") && dbs.contains_key("g031_pg"));
    assert!(
        dbs["vhffs"]["note"]
            .as_str()
            .unwrap()
            .contains("moved last"),
        "{:#}",
        dbs["vhffs"]
    );
    let mail: BTreeSet<&str> = report["mail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mailbox"].as_str().unwrap())
        .collect();
    assert_eq!(mail.len(), 58, "{mail:#?}");
    assert!(
        !mail
            .iter()
            .any(|m| m.contains("g005.test") || m.contains("/zed")),
        "{mail:#?}"
    );
    let un = &report["unmigrated"];
    assert_eq!(un["sized"], true);
    let find = |kind: &str, name: &str| -> serde_json::Value {
        un["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == kind && i["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {name} in {un:#}"))
    };
    // Sizes: the error-state site's tree, the stray directory, the left-out Maildirs.
    let shop10 = find("site", "shop.g010.test");
    assert_eq!(shop10["state_label"], "creation error");
    assert_eq!(shop10["files"], 4, "{shop10}");
    assert_eq!(find("directory", &stray)["files"], 1);
    assert_eq!(find("maildir", &orphan)["bytes"], 5);
    assert_eq!(find("mailbox", "alice@g005.test")["files"], 1);
    // Counted once: the domain's own size leaves out its boxes'; a box not made yet has none.
    assert_eq!(find("mail_domain", "g005.test")["files"], 0);
    assert!(find("mailbox", "carl@g008.test")["bytes"].is_null());
    // The data directory's homes and group directories: no unit moves them (yet).
    for top in ["home", "groups"] {
        let d = find("directory", &p.data().join(top).display().to_string());
        assert!(d["files"].as_u64().unwrap() >= 40, "{d}");
    }
    assert!(report["totals"]["unmigrated"].as_u64().unwrap() > 20);
    assert!(report["totals"]["unmigrated_bytes"].as_u64().unwrap() > 0);
    // The panel's zones switch by address: both names of each site are among the changes.
    let changes: BTreeSet<String> = report["dns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|z| z["changes"].as_array().unwrap().iter())
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        changes.contains("g001.test.") && changes.contains("www.g001.test."),
        "{changes:?}"
    );
    for format in ["text", "markdown", "html"] {
        let (_, out, _) = run(&plan, &["plan", "--format", format]);
        assert!(out.contains("Left at the source"), "{format}: {out}");
        assert!(out.contains("shop.g010.test"), "{format}");
    }

    // Cutover of batch 1 (the first 10 sites by name): files with owners and modes, databases
    // with their users, both names probed and switched in the panel's own table.
    let rows_before = rr_rows(&pg_src);
    let serial_before = pg_src.psql(
        "vhffs",
        "SELECT serial FROM vhffs_dns WHERE domain = 'g001.test'",
    );
    // The fixture's uids and gids have no names in this sandbox's passwd (VHFFS serves them
    // from the panel): the check is named and let through (tests/it/vhffs_rows.rs proves it).
    let (code, out, err) = run(
        &plan,
        &["cutover", "--batch", "1", "--allow", "unresolved-ids"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let batch: Vec<&str> = by_name.keys().copied().take(10).collect();
    assert_eq!(batch[..2], ["blog.g000.test", "g000.test"]);
    for site in &batch {
        let (g, s) = expected.iter().find(|(_, s)| s.name == *site).unwrap();
        let (src, dst) = (p.web(&p.data(), site), p.web(&p.newdata(), site));
        for f in [
            "",
            "htdocs",
            "htdocs/index.html",
            "htdocs/about.html",
            "php-include/config.php",
            "logs",
            "awstats",
        ] {
            assert_eq!(mode(&dst.join(f)), mode(&src.join(f)), "{site}/{f}");
        }
        assert_eq!(
            mode(&dst.join("htdocs")),
            (p.uid(s.creator), p.gids[&g.name], 0o2775)
        );
        assert_eq!(mode(&dst.join("htdocs/about.html")).0, p.uid(g.members[2]));
        let zone = g.zone();
        let stored = if *site == zone {
            String::new()
        } else {
            site.split('.').next().unwrap().to_string()
        };
        assert_eq!(a_rows(&pg_src, "vhffs", &zone, &stored), NEW, "{site}");
        if *site == zone {
            assert_eq!(a_rows(&pg_src, "vhffs", &zone, "www"), NEW, "www.{site}");
        }
    }
    // The suspended site moved with its robot's `.htaccess`.
    assert_eq!(
        mode(&p.web(&p.newdata(), "g007.test").join(".htaccess")),
        (0, 0, 0o644)
    );
    // Both names were probed through the new address, before and after the switch.
    let (code, out, _) = run(&plan, &["report", "--format", "json"]);
    assert_eq!(code, Some(0));
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let g1 = rep["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "g001.test")
        .unwrap();
    for domain in ["g001.test", "www.g001.test"] {
        let probes: Vec<&serde_json::Value> = g1["probes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["domain"] == domain)
            .collect();
        assert!(
            probes.len() >= 2 && probes.iter().all(|p| p["ok"] == true),
            "{domain}: {g1:#}"
        );
    }
    assert_eq!(
        my_dst.sql("SELECT body FROM g000_wp.posts WHERE id = 2"),
        "g000_wp second"
    );
    assert_eq!(
        my_dst.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'g000_wp'"),
        "1"
    );
    assert_eq!(
        pg_dst.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'g000_pg'"
        ),
        "1"
    );
    // Mail moved, box owners and modes kept, what the panel leaves out did not move.
    let bob = p.box_dir(&p.newdata(), "g002.test", "bob");
    assert_eq!(mode(&bob), (BOXES_ID, BOXES_ID, 0o700));
    assert_eq!(mode(&bob.join("Maildir/cur")), (BOXES_ID, BOXES_ID, 0o700));
    assert!(
        !p.box_dir(&p.newdata(), "g005.test", "alice").exists(),
        "domain being deleted"
    );
    assert!(
        !p.box_dir(&p.newdata(), "g001.test", "zed").exists(),
        "Maildir of no box"
    );
    for (db, gone) in [
        (
            "g003_old",
            my_dst.sql(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'g003_old'",
            ),
        ),
        (
            "g039_pg",
            pg_dst.psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'g039_pg'",
            ),
        ),
        (
            "g004_tmp",
            pg_dst.psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'g004_tmp'",
            ),
        ),
        (
            "vhffs",
            pg_dst.psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'vhffs'",
            ),
        ),
    ] {
        assert_eq!(gone, "0", "{db} must not be at the target");
    }
    // Sites of later batches did not move, and their records hold the old address.
    assert!(!p.web(&p.newdata(), "g030.test").exists());
    assert_eq!(a_rows(&pg_src, "vhffs", "g030.test", "www"), OLD);
    let serial_after: i64 = pg_src
        .psql(
            "vhffs",
            "SELECT serial FROM vhffs_dns WHERE domain = 'g001.test'",
        )
        .parse()
        .unwrap();
    assert!(serial_after > serial_before.parse::<i64>().unwrap());

    // Rollback: every row of vhffs_dns_rr exactly as before (ids, names, data, TTLs).
    let (code, out, err) = run(&plan, &["rollback"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(rr_rows(&pg_src), rows_before);
}

/// The panel's own database describes every object and holds the rows the switches write: it
/// moves once, after the plan's last site is confirmed, with those rows in it.
#[test]
fn vhffs_panel_database_moves_after_every_site() {
    let (pg_src, pg_dst) = (Postgres::start(), Postgres::start());
    let (my_src, my_dst) = (MariaDb::start(), MariaDb::start());
    let p = panel(3, &pg_src, &my_src);
    let port = web_port();
    let _old = VhffsWeb::start(OLD, port, p.data(), p.md5.clone());
    let _new = VhffsWeb::start(NEW, port, p.newdata(), p.md5.clone());
    let plan = p.plan(
        "vhffs-last",
        &common(&p, (&pg_src, &pg_dst), (&my_src, &my_dst), port).replace("batch: 10", "batch: 2"),
    );
    let panel_at_target = || {
        pg_dst.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'vhffs'",
        )
    };
    let (code, out, err) = run(&plan, &["sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        panel_at_target(),
        "0",
        "a pre-sync leaves the panel for last"
    );
    // The fixture's uids and gids have no names in this sandbox's passwd (VHFFS serves them
    // from the panel): the check is named and let through (tests/it/vhffs_rows.rs proves it).
    let (code, out, err) = run(
        &plan,
        &["cutover", "--batch", "1", "--allow", "unresolved-ids"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(panel_at_target(), "0", "sites are still to move");
    let (code, out, err) = run(&plan, &["cutover", "--allow", "unresolved-ids"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(panel_at_target(), "1", "{out}{err}");
    // The copy holds every switch: both names of each site on the new address.
    for g in ["g000", "g001", "g002"] {
        let zone = format!("{g}.test");
        assert_eq!(a_rows(&pg_dst, "vhffs", &zone, ""), NEW, "{zone}");
        assert_eq!(a_rows(&pg_dst, "vhffs", &zone, "www"), NEW, "www.{zone}");
    }
    let journal =
        std::fs::read_to_string(p.work.path().join("state-vhffs-last/journal.jsonl")).unwrap();
    assert_eq!(
        journal.matches("final sync (the panel, last)").count(),
        1,
        "moved once: {journal}"
    );
}

#[test]
fn vhffs_dns_swap_refuses_a_concurrently_edited_row_and_applies_nothing() {
    use transhumance::dns::provider::Provider;
    use transhumance::dns::provider::RrState;
    use transhumance::dns::provider::{DnsError, Swap};

    let pg = Postgres::start();
    psql_script(&pg, "postgres", "CREATE DATABASE vhffs;");
    let mut p = platform(2);
    p.groups.truncate(2);
    psql_script(&pg, "vhffs", &fixture_sql(&p));
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
    let state = |v: &str| RrState {
        ttl: 900,
        values: vec![v.into()],
    };
    let (old, new, stale) = (state(OLD), state(NEW), state("192.0.2.77"));
    // Someone edits blog.g000.test in the panel after our plan read it.
    let err = dns
        .swap_all(
            "g000.test",
            &[
                Swap {
                    name: "g000.test.",
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
        "2015050801"
    );
    // The records read back as servers would serve them: the apex stored as ''.
    let rrs = dns.records("g000.test").unwrap();
    assert!(
        rrs.iter()
            .any(|r| r.name == "g000.test." && r.rtype == "MX" && r.data == "10 mx1.hoster.test.")
    );
    assert!(
        rrs.iter()
            .any(|r| r.name == "g000.test." && r.rtype == "NS")
    );
    let key = |name: &str| transhumance::dns::provider::RrKey {
        zone: "g000.test".into(),
        name: name.into(),
        rtype: "A".into(),
    };
    assert_eq!(dns.read(&key("www.g000.test.")).unwrap(), old);
    // A swap that holds bumps the serial as VHFFS does: today's first.
    dns.swap_all(
        "g000.test",
        &[Swap {
            name: "www.g000.test.",
            rtype: "A",
            current: &old,
            new: &new,
        }],
    )
    .unwrap();
    assert_eq!(dns.read(&key("www.g000.test.")).unwrap(), new);
    let today = pg.psql("vhffs", "SELECT to_char(now(), 'YYYYMMDD01')");
    assert_eq!(
        pg.psql(
            "vhffs",
            "SELECT serial FROM vhffs_dns WHERE domain = 'g000.test'"
        ),
        today
    );
}

#[test]
fn csv_inventory_feeds_the_dry_run_and_names_bad_rows() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for s in ["shop", "blog"] {
        let f = w.join(format!("old/{s}/index.html"));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, s.as_bytes()).unwrap();
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
        out.contains("2 sites") && out.contains("1 mail domain,"),
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
