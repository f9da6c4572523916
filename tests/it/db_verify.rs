//! Database verification on real servers (issue 14, item 3): every schema and key shape,
//! NULL against the text `\N`, skewed keys, servers in different time zones, grants and
//! properties; each planted difference found and located to a table and a small key range,
//! identical data never reported different, skipped objects named. "Same" is checked against
//! the servers' own answers, not only our verifier's.

use transhumance::db::verify::{
    KeyRange, SessionPool, Side, TableCheck, Verification, VerifyOptions, verify, verify_in,
};
use transhumance::plan::DbServer;
use transhumance::plan::raw::DbEngine;
use transhumance::transport::LocalTransport;

use crate::harness::{MariaDb, Postgres};

const CHUNK: u64 = 500;

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

fn run(engine: DbEngine, a: &DbServer, b: &DbServer, db: &str, schemas: &[&str]) -> Verification {
    let local = LocalTransport::new("local");
    let side = |s| Side {
        transport: &local,
        server: s,
        database: db,
    };
    verify(
        engine,
        &side(a),
        &side(b),
        &VerifyOptions {
            chunk_rows: CHUNK,
            schemas: schemas.iter().map(|s| s.to_string()).collect(),
            rows: true,
        },
    )
    .unwrap()
}

fn table<'a>(v: &'a Verification, name: &str) -> &'a TableCheck {
    v.tables
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("no {name} in {:#?}", v.tables))
}

/// The one range a planted difference was located to: it holds at most two chunks' rows.
fn one_range<'a>(v: &'a Verification, name: &str) -> &'a KeyRange {
    let t = table(v, name);
    assert_eq!(t.status, "different", "{t:#?}");
    assert_eq!(t.differing_ranges.len(), 1, "{t:#?}");
    let r = &t.differing_ranges[0];
    assert!(
        r.rows_source <= 2 * CHUNK && r.rows_target <= 2 * CHUNK,
        "{name}: located to a small range: {r:?}"
    );
    r
}

/// `from <= key < before` as SQL over the range's bounds, which are SQL literals as shown.
fn range_sql(key: &str, r: &KeyRange) -> String {
    let lower = r
        .from
        .as_ref()
        .map_or("true".to_string(), |f| format!("{key} >= {f}"));
    let upper = r
        .before
        .as_ref()
        .map_or("true".to_string(), |b| format!("{key} < {b}"));
    format!("{lower} AND {upper}")
}

/// The same PostgreSQL database on both servers: every case of the issue.
const PG_SHOP: &str = "
CREATE SCHEMA audit AUTHORIZATION app;
CREATE TABLE audit.events (id bigint PRIMARY KEY, what text, at timestamptz);
INSERT INTO audit.events SELECT g, 'event ' || g, timestamptz '2024-03-01 00:00:00+00' + g * interval '17 minutes' FROM generate_series(1, 3000) g;
CREATE TABLE ukey (id uuid PRIMARY KEY, v text);
INSERT INTO ukey SELECT md5(g::text)::uuid, 'u' || g FROM generate_series(1, 3000) g;
CREATE TABLE tkey (code text PRIMARY KEY, v int);
INSERT INTO tkey SELECT 'k' || g, g FROM generate_series(1, 3000) g;
CREATE TABLE ckey (a int, b text, v text, PRIMARY KEY (a, b));
INSERT INTO ckey SELECT g % 50, 'b' || g, 'v' || g FROM generate_series(1, 3000) g;
CREATE TABLE skew (id bigint PRIMARY KEY, v text);
INSERT INTO skew SELECT g, 's' || g FROM generate_series(1, 30000) g;
INSERT INTO skew VALUES (1099511627776, 'far');
CREATE TABLE notes (id int PRIMARY KEY, note text, d float8, r real, ts timestamp, tz timestamptz, iv interval, day date, m numeric);
INSERT INTO notes SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END, g / 7.0, g / 3.0, timestamp '2024-01-01' + g * interval '1 hour',
  timestamptz '2024-06-30 23:30:00+02' + g * interval '1 minute', g * interval '1 day 3 hours', date '2024-01-01' + g, g / 9.0 FROM generate_series(1, 3000) g;
CREATE TABLE ukeyed (email text NOT NULL UNIQUE, v int);
INSERT INTO ukeyed SELECT 'e' || g || '@x', g FROM generate_series(1, 3000) g;
CREATE TABLE nokey (v text);
INSERT INTO nokey VALUES ('a'), (NULL), ('\\N');
CREATE VIEW recent AS SELECT id FROM notes WHERE id > 2990;
CREATE MATERIALIZED VIEW counts AS SELECT count(*) FROM notes;
CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000000);
INSERT INTO parted SELECT g, 'p' FROM generate_series(1, 100) g;
GRANT USAGE ON SCHEMA audit TO readers;
GRANT SELECT ON ALL TABLES IN SCHEMA public, audit TO readers;
ALTER DATABASE shop SET search_path = public, audit;
VACUUM ANALYZE;
";

/// `password`: the role's verifier (a SCRAM hash), the same on both servers as a move carries
/// it (the same password set twice gets two salts).
fn pg_setup(pg: &Postgres, password: &str) {
    pg.psql(
        "postgres",
        &format!("CREATE ROLE app LOGIN PASSWORD '{password}'; CREATE ROLE readers NOLOGIN; GRANT readers TO app;"),
    );
    pg.psql("postgres", "CREATE DATABASE shop OWNER app");
    // One statement per call: VACUUM refuses to run in the transaction of a multi-statement -c.
    for statement in PG_SHOP
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        pg.psql("shop", statement);
    }
}

#[test]
fn postgres_verification_sees_every_schema_key_shape_and_catalog_fact() {
    let (src, dst) = (Postgres::start(), Postgres::start());
    // The servers' default time zones differ: identical instants must still compare equal.
    src.psql("postgres", "ALTER SYSTEM SET timezone = 'America/New_York'");
    dst.psql("postgres", "ALTER SYSTEM SET timezone = 'Asia/Tokyo'");
    src.psql("postgres", "CREATE ROLE probe PASSWORD 'app-pw'");
    let verifier = src.psql(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'probe'",
    );
    for pg in [&src, &dst] {
        pg.psql("postgres", "SELECT pg_reload_conf()");
        pg_setup(pg, &verifier);
    }
    assert_ne!(
        src.psql("shop", "SELECT tz::text FROM notes WHERE id = 1"),
        dst.psql("shop", "SELECT tz::text FROM notes WHERE id = 1"),
        "the servers print timestamps in their own zones"
    );
    let (a, b) = (
        server(None, Some(src.port), "postgres"),
        server(None, Some(dst.port), "postgres"),
    );

    // Identical: nothing different, every table of every schema compared.
    let same = run(DbEngine::Postgres, &a, &b, "shop", &[]);
    assert!(same.is_clean(), "{same:#?}");
    let truth: usize = src
        .psql(
            "shop",
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
        )
        .parse()
        .unwrap();
    assert_eq!(same.tables.len(), truth, "{:#?}", same.tables);
    assert_eq!(table(&same, "audit.events").rows_target, 3000);
    assert_eq!(table(&same, "public.skew").rows_source, 30001);
    assert!(
        table(&same, "public.skew").chunks > 50,
        "chunks by quantiles, not min..max: {:?}",
        table(&same, "public.skew")
    );
    assert!(table(&same, "public.nokey").hashed_in_full);
    assert_eq!(
        table(&same, "public.ukeyed").key_from.as_deref(),
        Some("unique index ukeyed_email_key")
    );
    assert_eq!(table(&same, "public.ckey").key, vec!["a", "b"]);
    assert_eq!(same.hash, "hashtextextended");
    assert!(
        same.pinned.contains(&"TimeZone=UTC".to_string()),
        "{:?}",
        same.pinned
    );
    assert!(
        same.properties_compared > 40,
        "{}",
        same.properties_compared
    );
    for (object, why) in [
        ("public.recent", "view"),
        ("public.counts", "materialized view"),
        ("public.parted", "partitioned table"),
    ] {
        assert!(
            same.skipped
                .iter()
                .any(|s| s.object == object && s.why.starts_with(why)),
            "{object} named as skipped: {:#?}",
            same.skipped
        );
    }
    // Catalog truth: the same rows and instants at both ends, read in one zone.
    let fingerprint =
        "SET TimeZone = 'UTC'; SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM notes t";
    assert_eq!(src.psql("shop", fingerprint), dst.psql("shop", fingerprint));

    // The plan's schema list: the others are named as skipped, not silently passed.
    let public_only = run(DbEngine::Postgres, &a, &b, "shop", &["public"]);
    assert!(
        public_only
            .tables
            .iter()
            .all(|t| t.table.starts_with("public."))
    );
    assert!(
        public_only
            .skipped
            .iter()
            .any(|s| s.object == "schema audit" && s.why.contains("1 table(s)")),
        "{:#?}",
        public_only.skipped
    );

    // One planted difference per table, and three in the catalog.
    let plant = [
        "UPDATE audit.events SET what = 'tampered' WHERE id = 1234",
        "UPDATE ukey SET v = 'x' WHERE id = md5('1717')::uuid",
        "UPDATE tkey SET v = -1 WHERE code = 'k777'",
        "UPDATE ckey SET v = 'x' WHERE a = 7 AND b = 'b1007'",
        "UPDATE skew SET v = 'x' WHERE id = 15000",
        // A NULL became the text \\N.
        "UPDATE notes SET note = '\\N' WHERE id = 40",
        "UPDATE ukeyed SET v = -1 WHERE email = 'e55@x'",
        "REVOKE SELECT ON tkey FROM readers",
        // A column only the target has: the rows agree on the others, the table does not.
        "ALTER TABLE nokey ADD COLUMN extra int",
        "ALTER DATABASE shop SET statement_timeout = '5s'",
    ];
    for p in plant {
        dst.psql("shop", p);
    }
    dst.psql("postgres", "REVOKE readers FROM app");
    let found = run(DbEngine::Postgres, &a, &b, "shop", &[]);
    let mut different: Vec<&str> = found
        .tables
        .iter()
        .filter(|t| t.status != "same")
        .map(|t| t.table.as_str())
        .collect();
    different.sort();
    assert_eq!(
        different,
        [
            "audit.events",
            "public.ckey",
            "public.nokey",
            "public.notes",
            "public.skew",
            "public.tkey",
            "public.ukey",
            "public.ukeyed"
        ]
    );
    // Each located to a range that holds the planted key (asked of the server).
    for (name, key) in [
        ("audit.events", "1234::bigint"),
        ("public.ukey", "md5('1717')::uuid"),
        ("public.tkey", "'k777'::text COLLATE \"C\""),
        ("public.ckey", "ROW(7, 'b1007'::text COLLATE \"C\")"),
        ("public.skew", "15000::bigint"),
        ("public.notes", "40"),
        ("public.ukeyed", "'e55@x'::text COLLATE \"C\""),
    ] {
        let r = one_range(&found, name);
        assert_eq!(
            src.psql("shop", &format!("SELECT {}", range_sql(key, r))),
            "t",
            "{name}: {key} in {r:?}"
        );
    }
    let nokey = table(&found, "public.nokey");
    assert!(nokey.differing_ranges.is_empty(), "{nokey:#?}");
    assert_eq!(
        nokey.note.as_deref(),
        Some("columns only at the target: extra")
    );
    let facts: Vec<&str> = found.properties.iter().map(|p| p.fact.as_str()).collect();
    assert_eq!(
        facts,
        [
            "column public.nokey.extra",
            "membership of app in readers",
            "settings of the database",
            "table public.tkey"
        ],
        "{:#?}",
        found.properties
    );
    let settings = &found.properties[2];
    assert_eq!(
        settings.target.as_deref(),
        Some("search_path=public, audit, statement_timeout=5s")
    );
    assert_eq!(found.properties[1].target, None);
}

/// The same MariaDB database on both servers.
const MY_SHOP: &str = "
SET time_zone = '+00:00';
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE orders (id INT PRIMARY KEY, note TEXT NULL, at TIMESTAMP NULL, f FLOAT, d DOUBLE, price DECIMAL(10,2), photo BLOB, b BIT(8));
INSERT INTO orders SELECT seq, IF(seq % 5 = 0, NULL, CONCAT('n', seq)), FROM_UNIXTIME(1700000000 + seq * 3600), 1.0000001, seq / 7, seq * 1.5, UNHEX(MD5(seq)), seq % 256 FROM seq_1_to_3000;
CREATE TABLE ukey (id UUID PRIMARY KEY, v TEXT);
INSERT INTO ukey SELECT CAST(CONCAT(LEFT(MD5(seq), 8), '-', MID(MD5(seq), 9, 4), '-4', MID(MD5(seq), 14, 3), '-a', MID(MD5(seq), 18, 3), '-', RIGHT(MD5(seq), 12)) AS UUID), CONCAT('u', seq) FROM seq_1_to_3000;
CREATE TABLE tkey (code VARCHAR(20) PRIMARY KEY, v INT);
INSERT INTO tkey SELECT CONCAT('k', seq), seq FROM seq_1_to_3000;
CREATE TABLE ckey (a INT, b VARCHAR(20), v TEXT, PRIMARY KEY (a, b));
INSERT INTO ckey SELECT seq % 50, CONCAT('b', seq), CONCAT('v', seq) FROM seq_1_to_3000;
CREATE TABLE skew (id BIGINT PRIMARY KEY, v TEXT);
INSERT INTO skew SELECT seq, CONCAT('s', seq) FROM seq_1_to_30000;
INSERT INTO skew VALUES (1099511627776, 'far');
CREATE TABLE mix (id INT PRIMARY KEY, a VARCHAR(10) CHARACTER SET latin1, c VARCHAR(10) CHARACTER SET cp1251);
INSERT INTO mix VALUES (1, 'été', 'жук'), (2, NULL, '');
CREATE TABLE nokey (v TEXT);
INSERT INTO nokey VALUES ('a'), (NULL), ('\\\\N');
CREATE VIEW recent AS SELECT id FROM orders WHERE id > 2990;
CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw';
GRANT SELECT ON shop.* TO 'app'@'%';
CREATE USER 'col'@'%' IDENTIFIED BY 'col-pw';
GRANT SELECT (note) ON shop.orders TO 'col'@'%';
CREATE ROLE editor;
GRANT UPDATE ON shop.* TO editor;
CREATE USER 'ed'@'%' IDENTIFIED BY 'ed-pw';
GRANT editor TO 'ed'@'%';
CREATE DATABASE blog;
GRANT SELECT ON blog.* TO 'app'@'%';
ANALYZE TABLE orders, ukey, tkey, ckey, skew;
";

#[test]
fn mariadb_verification_sees_every_key_shape_null_time_zones_and_grants() {
    let (src, dst) = (MariaDb::start(), MariaDb::start());
    // New sessions on the target default to another zone: TIMESTAMP columns print differently.
    dst.sql("SET GLOBAL time_zone = '+09:00'");
    for my in [&src, &dst] {
        my.sql(MY_SHOP);
    }
    assert_ne!(
        src.sql("SELECT at FROM shop.orders WHERE id = 1"),
        dst.sql("SELECT at FROM shop.orders WHERE id = 1")
    );
    let (a, b) = (
        server(Some(src.socket.display().to_string()), None, "root"),
        server(Some(dst.socket.display().to_string()), None, "root"),
    );
    let same = run(DbEngine::Mariadb, &a, &b, "shop", &[]);
    assert!(same.is_clean(), "{same:#?}");
    let truth: usize = src
        .sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'shop' AND table_type = 'BASE TABLE'")
        .parse()
        .unwrap();
    assert_eq!(same.tables.len(), truth);
    assert_eq!(same.hash, "sha1");
    assert!(
        table(&same, "skew").chunks > 50,
        "{:?}",
        table(&same, "skew")
    );
    assert!(table(&same, "nokey").hashed_in_full);
    assert_eq!(table(&same, "mix").rows_target, 2);
    assert!(
        same.skipped
            .iter()
            .any(|s| s.object == "recent" && s.why.starts_with("view")),
        "{:#?}",
        same.skipped
    );
    // The grants of every account reaching the database were compared (a role's holder too).
    assert!(same.properties_compared > 20);
    assert_eq!(
        src.sql("SELECT SUM(UNIX_TIMESTAMP(at)) FROM shop.orders"),
        dst.sql("SELECT SUM(UNIX_TIMESTAMP(at)) FROM shop.orders"),
        "the same instants at both ends"
    );

    // Another database's grants are that database's business, not a difference of this one.
    dst.sql("REVOKE SELECT ON blog.* FROM 'app'@'%'");
    assert!(run(DbEngine::Mariadb, &a, &b, "shop", &[]).is_clean());

    let plant = [
        "UPDATE shop.orders SET note = '\\\\N' WHERE id = 40",
        // Both print `1` as FLOAT, yet they differ.
        "UPDATE shop.orders SET f = 1.0000002 WHERE id = 2222",
        "UPDATE shop.ukey SET v = 'x' WHERE v = 'u1717'",
        "UPDATE shop.tkey SET v = -1 WHERE code = 'k777'",
        "UPDATE shop.ckey SET v = 'x' WHERE a = 7 AND b = 'b1007'",
        "UPDATE shop.skew SET v = 'x' WHERE id = 15000",
        "UPDATE shop.mix SET c = 'жуки' WHERE id = 1",
        "REVOKE SELECT ON shop.* FROM 'app'@'%'",
        "ALTER USER 'ed'@'%' IDENTIFIED BY 'changed'",
        "ALTER DATABASE shop CHARACTER SET latin1",
    ];
    for p in plant {
        dst.sql(p);
    }
    let found = run(DbEngine::Mariadb, &a, &b, "shop", &[]);
    let mut different: Vec<&str> = found
        .tables
        .iter()
        .filter(|t| t.status != "same")
        .map(|t| t.table.as_str())
        .collect();
    different.sort();
    assert_eq!(different, ["ckey", "mix", "orders", "skew", "tkey", "ukey"]);
    let orders = table(&found, "orders");
    assert_eq!(orders.differing_ranges.len(), 2, "{orders:#?}");
    let uuid_1717 = "(SELECT id FROM shop.ukey WHERE v = 'u1717' OR v = 'x' LIMIT 1)";
    for (name, key) in [
        ("ukey", uuid_1717),
        ("tkey", "'k777'"),
        ("ckey", "(7, 'b1007')"),
        ("skew", "15000"),
    ] {
        let r = one_range(&found, name);
        assert_eq!(
            src.sql(&format!("SELECT {}", range_sql(key, r))),
            "1",
            "{name}: {key} in {r:?}"
        );
    }
    let facts: Vec<&str> = found.properties.iter().map(|p| p.fact.as_str()).collect();
    assert_eq!(
        facts,
        [
            "credentials of 'ed'@'%'",
            "database character set",
            "database collation",
            "grants of 'app'@'%'"
        ],
        "{:#?}",
        found.properties
    );
    // A password hash is compared, never shown.
    assert_eq!(found.properties[0].source.as_deref(), Some("(hidden)"));
    let shown = format!("{:?}", found);
    let hash = src.sql("SELECT authentication_string FROM mysql.user WHERE user = 'ed'");
    assert!(!hash.is_empty() && !shown.contains(&hash));
}

/// A `bin_dir` whose `psql` and `mariadb` log each start (their pid) to `starts`, then run
/// the real client: counts the client processes a verification spawns.
fn counting_clients() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    for (name, real) in [("psql", "/usr/bin/psql"), ("mariadb", "/usr/bin/mariadb")] {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho $$ >> '{}'\nexec {real} \"$@\"\n",
                starts.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    (dir, starts)
}

/// Verifies `dbs` on two worker threads sharing one pool; returns the verifications.
fn verify_all(
    engine: DbEngine,
    a: &DbServer,
    b: &DbServer,
    dbs: &[String],
) -> Vec<(String, Verification)> {
    let local = LocalTransport::new("local");
    let pool = SessionPool::new();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(db) = dbs.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
                {
                    let side = |s| Side {
                        transport: &local,
                        server: s,
                        database: db,
                    };
                    let v = verify_in(
                        &pool,
                        engine,
                        &side(a),
                        &side(b),
                        &VerifyOptions {
                            chunk_rows: CHUNK,
                            schemas: Vec::new(),
                            rows: true,
                        },
                    )
                    .unwrap();
                    out.lock().unwrap().push((db.clone(), v));
                }
            });
        }
    });
    drop(pool);
    let mut out = out.into_inner().unwrap();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

/// Pids logged in `starts`, and whether any of them still runs.
fn starts(path: &std::path::Path) -> (usize, bool) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let pids: Vec<&str> = text.lines().collect();
    let alive = pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    (pids.len(), alive)
}

#[test]
fn verification_keeps_one_client_per_server_and_worker_and_still_finds_differences() {
    let (my_a, my_b) = (MariaDb::start(), MariaDb::start());
    let (pg_a, pg_b) = (Postgres::start(), Postgres::start());
    let (bin, log) = counting_clients();
    let dbs: Vec<String> = (0..6).map(|i| format!("db{i}")).collect();
    for my in [&my_a, &my_b] {
        for db in &dbs {
            my.sql(&format!("CREATE DATABASE {db}; USE {db}; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_2000; CREATE TABLE u (id INT PRIMARY KEY, v TEXT); INSERT INTO u VALUES (1, 'x');"));
        }
    }
    for pg in [&pg_a, &pg_b] {
        for db in &dbs {
            pg.psql("postgres", &format!("CREATE DATABASE {db}"));
            pg.psql(db, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g; CREATE TABLE u (id int PRIMARY KEY, v text); INSERT INTO u VALUES (1, 'x');");
        }
    }
    // A planted difference, and a table gone from one side (its statement's error named).
    my_b.sql("UPDATE db3.t SET v = 'changed' WHERE id = 1234; DROP TABLE db4.u");
    pg_b.psql("db3", "UPDATE t SET v = 'changed' WHERE id = 1234");
    pg_b.psql("db4", "DROP TABLE u");
    // A table the catalog still lists but no statement can read: the hashing statement's
    // own error is named, in a session that ran scripts before.
    my_b.sql("ALTER TABLE db5.u DISCARD TABLESPACE");

    let with_bin = |mut s: DbServer| {
        s.bin_dir = Some(bin.path().display().to_string());
        s
    };
    let my = |m: &MariaDb| with_bin(server(Some(m.socket.display().to_string()), None, "root"));
    let pg = |p: &Postgres| with_bin(server(None, Some(p.port), "postgres"));
    for (engine, a, b) in [
        (DbEngine::Mariadb, my(&my_a), my(&my_b)),
        (DbEngine::Postgres, pg(&pg_a), pg(&pg_b)),
    ] {
        let _ = std::fs::remove_file(&log);
        let results = verify_all(engine, &a, &b, &dbs);
        let (spawned, alive) = starts(&log);
        // Two servers, two workers. Before: one client per stage, side and database (5 per
        // database here, 30 in all).
        assert!(
            (2..=4).contains(&spawned),
            "{engine:?}: one client per server and worker, {spawned} started"
        );
        assert!(!alive, "{engine:?}: every client ended with the pool");
        for (db, v) in &results {
            match db.as_str() {
                "db3" => {
                    let t = table(
                        v,
                        if engine == DbEngine::Postgres {
                            "public.t"
                        } else {
                            "t"
                        },
                    );
                    assert_eq!(t.status, "different", "{engine:?} {t:#?}");
                    assert_eq!(t.differing_ranges.len(), 1, "{t:#?}");
                }
                "db4" => {
                    let u = table(
                        v,
                        if engine == DbEngine::Postgres {
                            "public.u"
                        } else {
                            "u"
                        },
                    );
                    assert_eq!(u.status, "missing", "{engine:?} {u:#?}");
                }
                "db5" if engine == DbEngine::Mariadb => {
                    let u = table(v, "u");
                    assert_eq!(u.status, "error", "{u:#?}");
                    let note = u.note.as_deref().unwrap_or_default();
                    assert!(
                        note.starts_with("the target could not hash it:")
                            && note.contains("discarded"),
                        "{u:#?}"
                    );
                    assert_eq!(table(v, "t").status, "same");
                }
                _ => assert!(v.is_clean(), "{engine:?} {db}: {v:#?}"),
            }
        }
    }
}
