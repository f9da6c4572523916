//! Databases between two real servers: verification that locates a single changed row.

use std::time::Duration;

use transhumance::db::verify::{KeyRange, Side, TableCheck, verify_database};
use transhumance::plan::DbServer;
use transhumance::plan::raw::DbEngine;
use transhumance::transport::LocalTransport;

use crate::harness::{MariaDb, Postgres};

fn server(socket: Option<String>, port: Option<u16>, user: &str) -> DbServer {
    DbServer {
        host: "local".into(),
        socket,
        address: port.map(|_| "127.0.0.1".into()),
        port,
        user: Some(user.into()),
        password: None,
        bin_dir: None,
    }
}

fn check<'a>(checks: &'a [TableCheck], table: &str) -> &'a TableCheck {
    checks
        .iter()
        .find(|c| c.table == table)
        .unwrap_or_else(|| panic!("no {table} in {checks:#?}"))
}

#[test]
fn mariadb_verification_finds_one_changed_row_and_its_key_range() {
    let (src, dst) = (MariaDb::start(), MariaDb::start());
    src.sql(
        "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop; \
         CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10,2), note TEXT NULL, photo BLOB); \
         INSERT INTO shop.orders SELECT seq, seq * 1.5, IF(seq % 7 = 0, NULL, CONCAT('n', seq)), UNHEX(MD5(seq)) FROM seq_1_to_2500; \
         CREATE TABLE shop.logs (line TEXT); INSERT INTO shop.logs VALUES ('a'), ('b'), (NULL);",
    );
    // The copy itself is the transfer issue's job; the servers' own tools stand in here.
    let dump = std::process::Command::new("mariadb-dump")
        .args([
            "--no-defaults",
            &format!("--socket={}", src.socket.display()),
            "-uroot",
            "--single-transaction",
            "--databases",
            "shop",
        ])
        .output()
        .unwrap();
    assert!(dump.status.success());
    let mut load = std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            &format!("--socket={}", dst.socket.display()),
            "-uroot",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), &dump.stdout).unwrap();
    drop(load.stdin.take());
    assert!(load.wait().unwrap().success());

    let local = LocalTransport::new("local");
    let (a, b) = (
        server(Some(src.socket.display().to_string()), None, "root"),
        server(Some(dst.socket.display().to_string()), None, "root"),
    );
    let side = |s| Side {
        transport: &local,
        server: s,
        database: "shop",
    };
    let same = verify_database(DbEngine::Mariadb, &side(&a), &side(&b), 500).unwrap();
    assert!(same.iter().all(|c| c.status == "same"), "{same:#?}");
    assert_eq!(check(&same, "orders").rows_target, 2500);
    assert!(
        check(&same, "logs").hashed_in_full,
        "a table without a primary key is flagged"
    );

    // One NULL becomes an empty string at the target: the smallest change there is.
    dst.sql("UPDATE shop.orders SET note = '' WHERE id = 1631");
    let found = verify_database(DbEngine::Mariadb, &side(&a), &side(&b), 500).unwrap();
    let orders = check(&found, "orders");
    assert_eq!(orders.status, "different");
    assert_eq!(
        orders.differing_ranges,
        vec![KeyRange {
            from: Some("1501".into()),
            before: Some("2001".into()),
            rows_source: 500,
            rows_target: 500
        }],
        "{orders:#?}"
    );
    assert_eq!(check(&found, "logs").status, "same");

    // A row only the target has, beyond the source's keys, is found too.
    dst.sql("INSERT INTO shop.orders VALUES (9000, 1, 'only here', NULL)");
    let found = verify_database(DbEngine::Mariadb, &side(&a), &side(&b), 500).unwrap();
    let orders = check(&found, "orders");
    assert_eq!(orders.rows_target, 2501);
    assert!(
        orders.differing_ranges.contains(&KeyRange {
            from: Some("2001".into()),
            before: None,
            rows_source: 500,
            rows_target: 501
        }),
        "{orders:#?}"
    );
}

#[test]
fn postgres_verification_finds_one_changed_row_and_its_key_range() {
    let (src, dst) = (Postgres::start(), Postgres::start());
    src.psql("postgres", "CREATE DATABASE shop");
    src.psql(
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric, note text, photo bytea); \
         INSERT INTO orders SELECT g, g * 1.5, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, decode(md5(g::text), 'hex') FROM generate_series(1, 2500) g; \
         CREATE TABLE logs (line text); INSERT INTO logs VALUES ('a'), ('b'), (NULL);",
    );
    dst.psql("postgres", "CREATE DATABASE shop");
    let dump = std::process::Command::new(src.bin.join("pg_dump"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &src.port.to_string(),
            "-U",
            "postgres",
            "shop",
        ])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let mut load = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &dst.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "shop",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), &dump.stdout).unwrap();
    drop(load.stdin.take());
    assert!(load.wait().unwrap().success());

    let local = LocalTransport::new("local");
    let (a, b) = (
        server(None, Some(src.port), "postgres"),
        server(None, Some(dst.port), "postgres"),
    );
    let side = |s| Side {
        transport: &local,
        server: s,
        database: "shop",
    };
    let same = verify_database(DbEngine::Postgres, &side(&a), &side(&b), 500).unwrap();
    assert!(same.iter().all(|c| c.status == "same"), "{same:#?}");
    assert!(check(&same, "public.logs").hashed_in_full);
    dst.psql("shop", "UPDATE orders SET note = '' WHERE id = 1631");
    let found = verify_database(DbEngine::Postgres, &side(&a), &side(&b), 500).unwrap();
    let orders = check(&found, "public.orders");
    assert_eq!(orders.status, "different");
    assert_eq!(
        orders.differing_ranges,
        vec![KeyRange {
            from: Some("'1501'".into()),
            before: Some("'2001'".into()),
            rows_source: 500,
            rows_target: 500
        }],
        "{orders:#?}"
    );
}

#[test]
fn a_dump_streams_between_hosts_through_the_agents() {
    use transhumance::cli::endpoint::{Location, connect};
    use transhumance::transport::ExecRequest;
    use transhumance::transport::pipe::pipe;
    let sshd = crate::harness::Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let target = transhumance::plan::units::parse_ssh_target("root@127.0.0.1").unwrap();
    let remote = connect(
        &Location::Remote(target, work.path().to_path_buf()),
        Some(&sshd.ssh_command()),
    )
    .unwrap();
    let local = LocalTransport::new("local");
    let produce = ExecRequest::new("sh", ["-c", "head -c 5000000 /dev/zero; echo made >&2"]);
    for (from, to, name) in [
        (
            remote.transport.as_ref(),
            &local as &dyn transhumance::transport::Transport,
            "remote-to-local",
        ),
        (
            &local as &dyn transhumance::transport::Transport,
            remote.transport.as_ref(),
            "local-to-remote",
        ),
        (
            remote.transport.as_ref(),
            remote.transport.as_ref(),
            "remote-to-same-remote",
        ),
    ] {
        let out = work.path().join(name);
        let consume = ExecRequest::new(
            "sh",
            ["-c", &format!("cat > {}; echo stored >&2", out.display())],
        );
        // The dump's bytes are told as they pass, not once at the end.
        let told = std::sync::Mutex::new(Vec::new());
        let (a, b, moved) = pipe(from, &produce, to, &consume, &|n| {
            told.lock().unwrap().push(n)
        })
        .unwrap();
        assert_eq!(
            (a.code, b.code, moved),
            (Some(0), Some(0), 5_000_000),
            "{name}"
        );
        let told = told.into_inner().unwrap();
        assert!(told.len() > 1, "{name}: {told:?}");
        assert_eq!(told.iter().sum::<u64>(), moved, "{name}");
        assert_eq!(
            String::from_utf8_lossy(&b.stderr).trim(),
            "stored",
            "{name}"
        );
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 5_000_000, "{name}");
    }
    // Dumps to one host at once each get an agent stream: a consumer that stalls (reads
    // nothing until a gate opens) holds up no other. Were they queued behind it, only the
    // watchdog would open the gate.
    let gate = work.path().join("gate");
    let by_watchdog = std::sync::atomic::AtomicBool::new(false);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let stalled = s.spawn(|| {
            pipe(
                &local,
                &produce,
                remote.transport.as_ref(),
                &ExecRequest::new(
                    "sh",
                    [
                        "-c",
                        &format!(
                            "while [ ! -e {} ]; do sleep 0.1; done; cat > /dev/null",
                            gate.display()
                        ),
                    ],
                ),
                &|_| {},
            )
            .unwrap()
        });
        s.spawn(|| {
            for _ in 0..600 {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            by_watchdog.store(true, std::sync::atomic::Ordering::SeqCst);
            std::fs::write(&gate, "").unwrap();
        });
        let (_, b, moved) = pipe(
            &local,
            &produce,
            remote.transport.as_ref(),
            &ExecRequest::new("sh", ["-c", "cat > /dev/null"]),
            &|_| {},
        )
        .unwrap();
        assert_eq!((b.code, moved), (Some(0), 5_000_000));
        assert!(
            !by_watchdog.load(std::sync::atomic::Ordering::SeqCst),
            "the second dump waited for the stalled one"
        );
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        std::fs::write(&gate, "").unwrap();
        assert_eq!(stalled.join().unwrap().1.code, Some(0));
    });
    // A session through the agent answers line by line while it runs.
    let mut session = transhumance::transport::session::Session::open(
        remote.transport.as_ref(),
        &ExecRequest::new("sh", ["-c", "while read l; do echo \"got $l\"; done"]),
    )
    .unwrap();
    session.send("one\n").unwrap();
    assert_eq!(session.read_line().unwrap().as_deref(), Some("got one"));
    session.send("two\n").unwrap();
    assert_eq!(session.read_line().unwrap().as_deref(), Some("got two"));
    assert_eq!(session.close().unwrap().code, Some(0));
    // A failing consumer is reported with its message, not hidden.
    let (_, b, _) = pipe(
        &local,
        &produce,
        remote.transport.as_ref(),
        &ExecRequest::new("sh", ["-c", "echo 'ERROR 1045: access denied' >&2; exit 1"]),
        &|_| {},
    )
    .unwrap();
    assert_eq!(b.code, Some(1));
    assert!(String::from_utf8_lossy(&b.stderr).contains("access denied"));
}

#[test]
fn databases_move_over_ssh_and_verify_and_bad_input_is_named() {
    use transhumance::cli::endpoint::{Location, connect};
    use transhumance::db::transfer::{Endpoint, Options, transfer};
    use transhumance::plan::raw::ConflictPolicy;
    let sshd = crate::harness::Sshd::start();
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let (psrc, pdst) = (Postgres::start(), Postgres::start());
    msrc.sql("CREATE DATABASE site_a CHARACTER SET latin1; USE site_a; CREATE TABLE posts (id INT PRIMARY KEY, body TEXT, img BLOB); INSERT INTO posts SELECT seq, CONCAT('été ', seq), UNHEX(MD5(seq)) FROM seq_1_to_3000; CREATE VIEW recent AS SELECT id FROM posts WHERE id > 2990; CREATE TRIGGER t BEFORE INSERT ON posts FOR EACH ROW SET NEW.body = UPPER(NEW.body); CREATE USER 'shop'@'%' IDENTIFIED BY 'Sh0p-secret'; GRANT SELECT, INSERT ON site_a.* TO 'shop'@'%'; CREATE DEFINER='shop'@'%' VIEW site_a.mine AS SELECT id FROM site_a.posts WHERE id < 3;");
    psrc.psql("postgres", "CREATE DATABASE shop");
    psrc.psql("shop", "CREATE TABLE items (id serial PRIMARY KEY, name text); INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 2000) g; SELECT lo_from_bytea(0, 'large object'); CREATE ROLE shop_owner LOGIN PASSWORD 'Own3r-pg'; CREATE ROLE shop_reader; ALTER TABLE items OWNER TO shop_owner; GRANT SELECT ON items TO shop_reader;");
    let work = tempfile::tempdir().unwrap();
    let target = transhumance::plan::units::parse_ssh_target("root@127.0.0.1").unwrap();
    let remote = connect(
        &Location::Remote(target, work.path().to_path_buf()),
        Some(&sshd.ssh_command()),
    )
    .unwrap();
    let local = LocalTransport::new("local");
    let (ma, mb) = (
        server(Some(msrc.socket.display().to_string()), None, "root"),
        server(Some(mdst.socket.display().to_string()), None, "root"),
    );
    let (pa, pb) = (
        server(None, Some(psrc.port), "postgres"),
        server(None, Some(pdst.port), "postgres"),
    );
    let from = |s| Endpoint {
        transport: &local,
        server: s,
    };
    let to = |s| Endpoint {
        transport: remote.transport.as_ref(),
        server: s,
    };

    for split in [false, true] {
        // A second run replaces the copy it made (pre-syncs repeat); it splits every table
        // into a stream of its own, and the trigger must not fire while rows load.
        let options = Options {
            split_tables_above: if split { 0 } else { 512 << 20 },
            ..Options::new(ConflictPolicy::Fail, "it")
        };
        let m = transfer(DbEngine::Mariadb, &from(&ma), &to(&mb), "site_a", &options).unwrap();
        assert_eq!(m.outcome, "copied");
        assert!(m.bytes > 100_000, "{m:?}");
        assert_eq!(m.users, vec!["'shop'@'%'".to_string()]);
        assert_eq!(
            m.split_tables,
            if split {
                vec!["posts".to_string()]
            } else {
                vec![]
            }
        );
        let p = transfer(DbEngine::Postgres, &from(&pa), &to(&pb), "shop", &options).unwrap();
        assert_eq!(p.outcome, "copied");
        assert_eq!(p.split_tables.len(), usize::from(split), "{p:?}");
    }
    fn side<'a>(
        t: &'a dyn transhumance::transport::Transport,
        s: &'a DbServer,
        db: &'a str,
    ) -> Side<'a> {
        Side {
            transport: t,
            server: s,
            database: db,
        }
    }
    let m = verify_database(
        DbEngine::Mariadb,
        &side(&local, &ma, "site_a"),
        &side(&local, &mb, "site_a"),
        1000,
    )
    .unwrap();
    assert!(m.iter().all(|c| c.status == "same"), "{m:#?}");
    assert_eq!(mdst.sql("SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = 'site_a'"), "latin1");
    assert_eq!(mdst.sql("SELECT COUNT(*) FROM site_a.recent"), "10");
    // The user came with its password hash and grants: it logs in at the target as before.
    assert_eq!(
        mdst.sql("SHOW GRANTS FOR 'shop'@'%'")
            .lines()
            .last()
            .unwrap(),
        "GRANT SELECT, INSERT ON `site_a`.* TO `shop`@`%`"
    );
    assert_eq!(
        msrc.sql("SELECT authentication_string FROM mysql.user WHERE user = 'shop'"),
        mdst.sql("SELECT authentication_string FROM mysql.user WHERE user = 'shop'")
    );
    assert_eq!(mdst.sql("SELECT COUNT(*) FROM site_a.mine"), "2");
    assert_eq!(
        mdst.sql(
            "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'site_a'"
        ),
        "1"
    );
    let p = verify_database(
        DbEngine::Postgres,
        &side(&local, &pa, "shop"),
        &side(&local, &pb, "shop"),
        1000,
    )
    .unwrap();
    assert!(p.iter().all(|c| c.status == "same"), "{p:#?}");
    assert_eq!(
        pdst.psql("shop", "SELECT count(*) FROM pg_largeobject_metadata"),
        "1"
    );
    assert_eq!(
        pdst.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop__th%'"
        ),
        "0"
    );

    // A database at the target that is not ours is a conflict.
    mdst.sql("CREATE DATABASE site_b");
    msrc.sql("CREATE DATABASE site_b");
    let err = transfer(
        DbEngine::Mariadb,
        &from(&ma),
        &to(&mb),
        "site_b",
        &Options::new(ConflictPolicy::Fail, "it"),
    )
    .unwrap_err();
    assert!(
        err.contains("database `site_b` on host `root@127.0.0.1`")
            && err.contains("not created by this plan"),
        "{err}"
    );
    assert_eq!(
        transfer(
            DbEngine::Mariadb,
            &from(&ma),
            &to(&mb),
            "site_b",
            &Options::new(ConflictPolicy::Skip, "it"),
        )
        .unwrap()
        .outcome,
        "skipped"
    );
    // A name that does not exist, a wrong password.
    let err = transfer(
        DbEngine::Mariadb,
        &from(&ma),
        &to(&mb),
        "nope",
        &Options::new(ConflictPolicy::Fail, "it"),
    )
    .unwrap_err();
    assert!(
        err.contains("database `nope` on host `local`: does not exist"),
        "{err}"
    );
    // SAFETY: a variable only this test reads.
    unsafe { std::env::set_var("IT_WRONG_DB_PW", "wrong") };
    let mut bad = ma.clone();
    bad.socket = None;
    bad.address = Some("127.0.0.1".into());
    bad.port = Some(msrc.port);
    bad.password = Some(transhumance::plan::secret::SecretRef::Env(
        "IT_WRONG_DB_PW".into(),
    ));
    let err = transfer(
        DbEngine::Mariadb,
        &from(&bad),
        &to(&mb),
        "site_a",
        &Options::new(ConflictPolicy::Fail, "it"),
    )
    .unwrap_err();
    assert!(
        err.contains("Access denied") && !err.contains("wrong"),
        "{err}"
    );
    // A target server that is down is named with the database.
    let mut down = mb.clone();
    down.socket = Some(format!("{}/no-such.sock", work.path().display()));
    let err = transfer(
        DbEngine::Mariadb,
        &from(&ma),
        &to(&down),
        "site_a",
        &Options::new(ConflictPolicy::Fail, "it"),
    )
    .unwrap_err();
    assert!(
        err.contains("database `site_a` on host `root@127.0.0.1`") && err.contains("Can't connect"),
        "{err}"
    );
    // A missing dump tool is named with its host before the target is touched.
    let only_psql = tempfile::tempdir().unwrap();
    let psql = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v psql"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(psql.trim(), only_psql.path().join("psql")).unwrap();
    let mut no_tools = pa.clone();
    no_tools.bin_dir = Some(only_psql.path().display().to_string());
    psrc.psql("postgres", "CREATE DATABASE fresh");
    let err = transfer(
        DbEngine::Postgres,
        &from(&no_tools),
        &to(&pb),
        "fresh",
        &Options::new(ConflictPolicy::Fail, "it"),
    )
    .unwrap_err();
    assert!(
        err.contains("`pg_dump` not found on host `local`") && err.contains("bin_dir"),
        "{err}"
    );
    // A target without room for the copy (plus what must stay free) is refused up front.
    let err = transfer(
        DbEngine::Postgres,
        &from(&pa),
        &to(&pb),
        "fresh",
        &Options {
            min_free_space: u64::MAX / 2,
            ..Options::new(ConflictPolicy::Fail, "it")
        },
    )
    .unwrap_err();
    assert!(
        err.contains("database `fresh` on host `root@127.0.0.1`: not enough disk"),
        "{err}"
    );
    assert_eq!(
        pdst.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'fresh%'"
        ),
        "0",
        "nothing was written for the refused moves"
    );
}

#[test]
fn db_sync_moves_a_plans_databases_and_verify_plan_finds_a_changed_row() {
    let sshd = crate::harness::Sshd::start();
    let (src, dst) = (MariaDb::start(), MariaDb::start());
    for db in ["site_one", "site_two", "other"] {
        src.sql(&format!("CREATE DATABASE {db}; USE {db}; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_1000;"));
    }
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: db-it\ndefaults: {{ jobs: 2 }}\nhosts:\n  newdb: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\ndatabases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: newdb, socket: \"{}\", user: root }}\n    names: [\"site_*\"]\n",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display(),
            work.path().display(),
            src.socket.display(),
            dst.socket.display()
        ),
    )
    .unwrap();
    let out = crate::cli::bin()
        .args(["db", "sync"])
        .arg(&plan)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("copied    site_one")
            && text.contains("copied    site_two")
            && !text.contains("other"),
        "{text}"
    );
    assert!(text.contains("same      site_one.t: 1000 rows"), "{text}");
    assert_eq!(dst.sql("SHOW DATABASES LIKE 'other'"), "");

    dst.sql("UPDATE site_two.t SET v = 'changed' WHERE id = 777");
    let out = crate::cli::bin().arg("verify").arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "DIFFERENT site_two.t: 1000 rows at the source, 1000 at the target; in its only chunk"
        ),
        "{text}"
    );
    assert!(text.contains("same      site_one.t"), "{text}");
}

/// A plan with three sites, each tied to a database (MariaDB and PostgreSQL, targets reached
/// over the real sshd), a MariaDB database no site names, and no DNS nor probe: a cutover
/// confirms a site once its files and databases are verified.
struct LiveWorld {
    _work: tempfile::TempDir,
    plan: std::path::PathBuf,
    state: std::path::PathBuf,
}

fn live_world(
    sshd: &crate::harness::Sshd,
    (msrc, mdst): (&MariaDb, &MariaDb),
    (psrc, pdst): (&Postgres, &Postgres),
) -> LiveWorld {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for site in ["one", "two", "three"] {
        std::fs::create_dir_all(w.join("old").join(site)).unwrap();
        std::fs::write(w.join("old").join(site).join("index.html"), site).unwrap();
    }
    for db in ["one_db", "three_db", "shared_db"] {
        msrc.sql(&format!("CREATE DATABASE {db}; USE {db}; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_100;"));
    }
    psrc.psql("postgres", "CREATE DATABASE two_pg");
    psrc.psql("two_pg", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g;");
    let site = |name: &str, db: &str| {
        format!(
            "  - name: {name}\n    from: {{ host: local, path: \"old/{name}/\" }}\n    to: {{ host: local, path: \"new/{name}/\" }}\n    databases: [\"{db}\"]\n"
        )
    };
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: db-live-it\nstate_dir: state\ndefaults: {{ jobs: 2 }}\n\
hosts:\n  newdb: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\n\
sites:\n{}{}{}\
databases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: newdb, socket: \"{}\", user: root }}\n    names: [\"one_db\", \"three_db\", \"shared_db\"]\n  - engine: postgres\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    to: {{ host: newdb, address: 127.0.0.1, port: {}, user: postgres }}\n    names: [\"two_pg\"]\n",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display(),
            w.display(),
            site("one", "one_db"),
            site("two", "two_pg"),
            site("three", "three_db"),
            msrc.socket.display(),
            mdst.socket.display(),
            psrc.port,
            pdst.port,
        ),
    )
    .unwrap();
    LiveWorld {
        state: w.join("state"),
        plan,
        _work: work,
    }
}

fn run_plan(world: &LiveWorld, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = crate::cli::bin();
    let (verb, rest) = args.split_at(if args[0] == "db" { 2 } else { 1 });
    // A script, not a terminal: the commands that ask are answered with `--yes`.
    cmd.arg("--yes").args(verb).arg(&world.plan).args(rest);
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Issue 12: after a site was confirmed and served from the new side, `db sync` dropped and
/// re-copied its live database (a row written there was lost, exit 0).
#[test]
fn db_sync_refuses_databases_live_on_the_new_side_unless_allowed_by_name() {
    let sshd = crate::harness::Sshd::start();
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let (psrc, pdst) = (Postgres::start(), Postgres::start());
    let world = live_world(&sshd, (&msrc, &mdst), (&psrc, &pdst));
    let (code, out) = run_plan(&world, &["cutover", "--only", "one", "--only", "two"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("confirmed     one") && out.contains("confirmed     two"),
        "{out}"
    );
    // Users of the new side write there.
    mdst.sql("INSERT INTO one_db.t VALUES (1000, 'written at the new side')");
    mdst.sql("INSERT INTO shared_db.t VALUES (1000, 'written at the new side')");
    pdst.psql(
        "two_pg",
        "INSERT INTO t VALUES (1000, 'written at the new side')",
    );

    let (code, out) = run_plan(&world, &["db", "sync"]);
    assert_eq!(code, Some(3), "{out}");
    for (db, site) in [("one_db", "one"), ("two_pg", "two"), ("shared_db", "one")] {
        assert!(
            out.contains(&format!(
                "REFUSED   {db}: [live-unit] db:{db} may be live on the new side (site `{site}` is confirmed)"
            )),
            "{db}: {out}"
        );
    }
    // The database of a site that has not moved still goes.
    assert!(out.contains("copied    three_db"), "{out}");
    assert_eq!(
        mdst.sql("SELECT v FROM one_db.t WHERE id = 1000"),
        "written at the new side"
    );
    assert_eq!(
        mdst.sql("SELECT v FROM shared_db.t WHERE id = 1000"),
        "written at the new side"
    );
    assert_eq!(
        pdst.psql("two_pg", "SELECT v FROM t WHERE id = 1000"),
        "written at the new side"
    );

    // Named overrides go (and are journaled); the one not named is still refused.
    let (code, out) = run_plan(
        &world,
        &[
            "db",
            "sync",
            "--allow-live",
            "db:one_db",
            "--allow-live",
            "db:two_pg",
        ],
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("copied    one_db") && out.contains("copied    two_pg"),
        "{out}"
    );
    assert!(out.contains("REFUSED   shared_db"), "{out}");
    assert_eq!(
        mdst.sql("SELECT COUNT(*) FROM one_db.t WHERE id = 1000"),
        "0"
    );
    assert_eq!(
        pdst.psql("two_pg", "SELECT count(*) FROM t WHERE id = 1000"),
        "0"
    );
    assert_eq!(
        mdst.sql("SELECT COUNT(*) FROM shared_db.t WHERE id = 1000"),
        "1"
    );
    let journal = std::fs::read_to_string(world.state.join("journal.jsonl")).unwrap();
    let overrides: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "override")
        .collect();
    let units: Vec<&str> = overrides
        .iter()
        .map(|e| e["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units.len(), 2, "{overrides:?}");
    assert!(
        units.contains(&"db:one_db") && units.contains(&"db:two_pg"),
        "{units:?}"
    );
    assert!(
        overrides
            .iter()
            .all(|e| e["because"] == "site `one` is confirmed"
                || e["because"] == "site `two` is confirmed"),
        "{overrides:?}"
    );
    // An override names a database: any other unit is invalid input.
    let (code, out) = run_plan(&world, &["db", "sync", "--allow-live", "site:one"]);
    assert_eq!(code, Some(2), "{out}");
}

/// Issue 12: a host that failed to connect once stayed failed for the whole run, and a
/// connection that dropped (sshd restarted, ControlMaster gone) was never opened again.
#[test]
fn connections_come_back_after_sshd_restarts_and_after_it_was_down() {
    use std::sync::Arc;
    use transhumance::db::discover::list_databases;
    use transhumance::plan::{Host, HostAccess, SshAccess};
    use transhumance::transport::{Backoff, Connections, ExecRequest};
    let mut sshd = crate::harness::Sshd::start();
    let db = MariaDb::start();
    db.sql("CREATE DATABASE site_back");
    let work = tempfile::tempdir().unwrap();
    let access = SshAccess {
        target: transhumance::plan::units::parse_ssh_target(&format!(
            "root@127.0.0.1:{}",
            sshd.port
        ))
        .unwrap(),
        identity_file: Some(sshd.client_key.clone()),
        known_hosts: Some(sshd.known_hosts.clone()),
        options: vec![],
        agent_dir: format!("{}/agent", work.path().display()),
    };
    let hosts = std::collections::BTreeMap::from([(
        "newdb".to_string(),
        Host {
            name: "newdb".into(),
            access: HostAccess::Ssh(access),
        },
    )]);
    let connections = Connections::new(
        &hosts,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_transhumance")),
    )
    .with_backoff(Backoff {
        attempts: 3,
        base: std::time::Duration::from_millis(200),
        // Not held: the first call after the server is back must connect.
        hold: std::time::Duration::ZERO,
    });
    let mut at_target = server(Some(db.socket.display().to_string()), None, "root");
    at_target.host = "newdb".into();
    let names = |t: &dyn transhumance::transport::Transport| {
        list_databases(t, DbEngine::Mariadb, &at_target)
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect::<Vec<_>>()
    };
    let echo = |t: &dyn transhumance::transport::Transport| {
        t.exec(&ExecRequest::new("echo", ["back"]))
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };

    let first = connections.get("newdb").unwrap();
    assert!(names(first.as_ref()).contains(&"site_back".to_string()));
    assert!(Arc::ptr_eq(&first, &connections.get("newdb").unwrap()));

    // Every session drops; the next operation through the same `Connections` goes through.
    sshd.restart();
    assert_eq!(connections.run("newdb", echo).unwrap(), "back");
    assert!(
        first.lost().is_some(),
        "the old connection is known to be gone"
    );
    let second = connections.get("newdb").unwrap();
    assert!(
        !Arc::ptr_eq(&first, &second),
        "a new connection replaced it"
    );
    assert!(names(second.as_ref()).contains(&"site_back".to_string()));

    // While the server is down, operations fail (transient, retried, then reported); once it is
    // back, the next one connects again: the failure was not remembered.
    sshd.kill();
    let err = connections.run("newdb", echo).unwrap_err();
    let unit_error = transhumance::unit::UnitError::from(err.clone());
    assert!(unit_error.is_transient(), "{err}");
    assert!(err.to_string().contains("host `newdb`"), "{err}");
    sshd.start_again();
    assert_eq!(connections.run("newdb", echo).unwrap(), "back");
    assert!(names(connections.get("newdb").unwrap().as_ref()).contains(&"site_back".to_string()));
}

/// Issue 12: a transient failure (ssh dropped under a database move) was neither retried nor
/// told apart from a permanent one; the move is now done again on fresh connections.
#[test]
fn a_database_move_whose_connection_drops_is_done_again_on_a_new_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use transhumance::lifecycle::databases::{Mode, one};
    use transhumance::lifecycle::guard::Live;
    use transhumance::transport::{Backoff, Connections};
    let mut sshd = crate::harness::Sshd::start();
    let (src, dst) = (MariaDb::start(), MariaDb::start());
    src.sql("CREATE DATABASE big; USE big; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, REPEAT(MD5(seq), 4) FROM seq_1_to_200000;");
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: db-drop-it\nhosts:\n  newdb: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\ndatabases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: newdb, socket: \"{}\", user: root }}\n    names: [\"big\"]\n",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display(),
            work.path().display(),
            src.socket.display(),
            dst.socket.display()
        ),
    )
    .unwrap();
    let loaded = transhumance::plan::load(&plan).unwrap();
    let connections = Connections::new(
        &loaded.plan.hosts,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_transhumance")),
    )
    .with_backoff(Backoff {
        attempts: 3,
        base: std::time::Duration::from_millis(200),
        hold: std::time::Duration::ZERO,
    });
    let first = connections.get("newdb").unwrap();
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let restarted = s.spawn(|| {
            // Once rows are loading at the target, every ssh session drops.
            crate::harness::wait_until(
                std::time::Duration::from_secs(120),
                "the restore to start",
                || {
                    dst.sql(
                        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'big'",
                    ) != "0"
                },
            );
            let during = !done.load(Ordering::SeqCst);
            sshd.restart();
            during
        });
        let r = one(
            &loaded.plan,
            &loaded.plan.databases[0],
            "big",
            &connections,
            Mode::Copy(&Live::default()),
            &transhumance::event::Silent,
        );
        done.store(true, Ordering::SeqCst);
        assert!(
            restarted.join().unwrap(),
            "sshd restarted while the move ran"
        );
        r
    });
    assert!(first.lost().is_some(), "the first connection dropped");
    assert_eq!(result.error, None, "{result:?}");
    assert_eq!(result.moved.as_ref().unwrap().outcome, "copied");
    assert!(result.clean(), "{result:?}");
    assert_eq!(dst.sql("SELECT COUNT(*) FROM big.t"), "200000");
}

/// A database through the unit-of-work contract on real MariaDB servers: the plan says create,
/// applying it copies, verify compares every table; once copied, the plan says replace ours.
#[test]
fn the_database_engine_plans_applies_and_verifies_one_database() {
    use transhumance::db::engine::{DbEngineRun, DbUnit};
    use transhumance::db::plan::DbAction;
    use transhumance::db::transfer::{Endpoint, Options};
    use transhumance::plan::raw::ConflictPolicy;
    use transhumance::unit::UnitOfWork;
    let (a, b) = (MariaDb::start(), MariaDb::start());
    a.sql("CREATE DATABASE site_unit; USE site_unit; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_500;");
    let local = LocalTransport::new("local");
    let (from, to) = (
        server(Some(a.socket.display().to_string()), None, "root"),
        server(Some(b.socket.display().to_string()), None, "root"),
    );
    let unit = DbUnit {
        engine: DbEngine::Mariadb,
        from: Endpoint {
            transport: &local,
            server: &from,
        },
        to: Endpoint {
            transport: &local,
            server: &to,
        },
        name: "site_unit".into(),
    };
    let engine = DbEngineRun {
        options: Options::new(ConflictPolicy::Fail, "unit-it"),
        chunk_rows: 100,
    };
    let plan = engine.plan(&unit).unwrap();
    assert_eq!(plan.plan.action, DbAction::Create);
    assert!(
        serde_json::to_string(&plan)
            .unwrap()
            .contains("\"action\":\"create\"")
    );
    engine
        .apply(&plan, &transhumance::event::Silent, &())
        .unwrap();
    assert_eq!(b.sql("SELECT COUNT(*) FROM site_unit.t"), "500");
    assert!(engine.verify(&unit).unwrap().is_clean());
    assert_eq!(
        engine.plan(&unit).unwrap().plan.action,
        DbAction::ReplaceOurs
    );
    b.sql("UPDATE site_unit.t SET v = 'tampered' WHERE id = 7");
    assert!(!engine.verify(&unit).unwrap().is_clean());
}
