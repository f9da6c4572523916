//! Replication catch-up (`mode: replicate`, issue 19) between two real MariaDB servers: the
//! target replicates from the pre-sync's dump position, filtered to the plan's databases, waits
//! at the freeze for the source's position, and leaves no connection nor account behind, even
//! after a crash between the connection's creation and its journaling.

use std::sync::Mutex;
use std::time::Duration;

use transhumance::db::replication::{self, Channel, Step};
use transhumance::db::transfer::{Endpoint, Options, transfer};
use transhumance::plan::DbServer;
use transhumance::plan::raw::{ConflictPolicy, DbEngine};
use transhumance::transport::LocalTransport;

use crate::harness::{MariaDb, MariaDbOptions, wait_until};

/// A server reached by its socket for our clients, and by 127.0.0.1:port for the target's
/// replication.
fn server(db: &MariaDb) -> DbServer {
    DbServer {
        host: "local".into(),
        socket: Some(db.socket.display().to_string()),
        address: Some("127.0.0.1".into()),
        port: Some(db.port),
        user: Some("root".into()),
        password: None,
        bin_dir: None,
    }
}

const TABLE: &str = "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40)); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_200;";

/// The steps a channel went through, as a journal would hold them.
#[derive(Default)]
struct Journal(Mutex<Vec<(Step, bool)>>);

impl Journal {
    fn log(&self, step: &Step, done: bool, _what: &str) -> Result<(), String> {
        self.0.lock().unwrap().push((step.clone(), done));
        Ok(())
    }
    fn steps(&self) -> Vec<(Step, bool)> {
        self.0.lock().unwrap().clone()
    }
}

fn rows(db: &MariaDb, name: &str) -> String {
    db.sql(&format!(
        "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT(id, v))), 0) FROM {name}.t"
    ))
}

#[test]
fn mariadb_replicates_from_the_pre_sync_position_and_leaves_nothing_behind() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(2),
    });
    let dst = MariaDb::start();
    for db in ["shop", "blog", "other"] {
        src.sql(&format!("CREATE DATABASE {db}; USE {db}; {TABLE}"));
    }
    // `other` is not in the plan: the target's copy must not hear of its writes.
    dst.sql(&format!("CREATE DATABASE other; USE other; {TABLE}"));
    let local = LocalTransport::new("local");
    let (from_server, to_server) = (server(&src), server(&dst));
    let (from, to) = (
        Endpoint {
            transport: &local,
            server: &from_server,
        },
        Endpoint {
            transport: &local,
            server: &to_server,
        },
    );
    let ch = Channel::new("repl-it", from, to);
    let prerequisites = replication::prerequisites(&ch);
    assert!(prerequisites.problems.is_empty(), "{prerequisites:#?}");
    let mut options = Options::new(ConflictPolicy::Fail, "repl-it");
    options.replicate = true;
    let shop = transfer(DbEngine::Mariadb, &from, &to, "shop", &options).unwrap();
    // Between the two snapshots: shop's row must come by replication, blog's by its dump (and
    // not twice).
    src.sql(
        "INSERT INTO shop.t VALUES (1001, 'between'); INSERT INTO blog.t VALUES (1001, 'between')",
    );
    let blog = transfer(DbEngine::Mariadb, &from, &to, "blog", &options).unwrap();
    let (p_shop, p_blog) = (shop.position.unwrap(), blog.position.unwrap());
    assert!(p_shop < p_blog, "{p_shop} {p_blog}");
    assert_eq!(dst.sql("SELECT COUNT(*) FROM shop.t"), "200");

    let journal = Journal::default();
    let log = |s: &Step, d: bool, w: &str| journal.log(s, d, w);
    replication::set_up(
        &ch,
        &[("shop".into(), p_shop), ("blog".into(), p_blog)],
        &log,
        Duration::from_secs(30),
    )
    .unwrap();
    let state = replication::state(&ch).unwrap();
    assert!(
        state.channel && state.account && state.sql_running,
        "{state:#?}"
    );
    assert_eq!(state.databases, ["shop", "blog"]);
    // The password is nowhere in what the channel says of itself.
    assert!(!format!("{state:?}").contains("IDENTIFIED"));

    // Writes after the pre-sync, in both databases and in one outside the plan.
    for db in ["shop", "blog", "other"] {
        src.sql(&format!(
            "INSERT INTO {db}.t VALUES (2001, 'new'); UPDATE {db}.t SET v = 'changed' WHERE id <= 10; DELETE FROM {db}.t WHERE id BETWEEN 100 AND 109"
        ));
    }
    wait_until(Duration::from_secs(20), "replicated rows", || {
        rows(&dst, "shop") == rows(&src, "shop") && rows(&dst, "blog") == rows(&src, "blog")
    });
    // The freeze: last writes, then the wait for the source's position.
    src.sql("INSERT INTO shop.t SELECT seq, 'last' FROM shop.seq_3000_to_3099; DELETE FROM blog.t WHERE id = 1001");
    let reached = replication::catch_up(&ch, Duration::from_secs(30), &log).unwrap();
    assert_eq!(reached, replication::source_position(&ch).unwrap());
    for db in ["shop", "blog"] {
        assert_eq!(rows(&dst, db), rows(&src, db), "{db}");
    }
    assert_eq!(dst.sql("SELECT COUNT(*) FROM shop.t"), "292");
    assert_eq!(dst.sql("SELECT COUNT(*) FROM blog.t WHERE id = 1001"), "0");
    assert_eq!(
        dst.sql("SELECT COUNT(*), SUM(v = 'changed') FROM other.t"),
        "200\t0",
        "writes outside the plan must not arrive"
    );

    replication::remove(&ch, &log).unwrap();
    assert_eq!(dst.sql("SHOW ALL SLAVES STATUS"), "");
    assert_eq!(
        src.sql("SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'th\\_repl\\_%'"),
        "0"
    );
    assert_eq!(
        journal.steps(),
        [
            (Step::AccountCreated, false),
            (Step::AccountCreated, true),
            (Step::ChannelCreated, false),
            (Step::ChannelCreated, true),
            (Step::PositionWaited, false),
            (Step::PositionWaited, true),
            (Step::ChannelRemoved, false),
            (Step::ChannelRemoved, true),
            (Step::AccountDropped, false),
            (Step::AccountDropped, true),
        ]
    );
    // Removing again finds nothing to do.
    replication::remove(&ch, &log).unwrap();
    assert_eq!(journal.steps().len(), 10);
}

#[test]
fn a_channel_left_by_a_crash_is_found_on_the_servers_and_removed() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(3),
    });
    let dst = MariaDb::start();
    src.sql(&format!("CREATE DATABASE shop; USE shop; {TABLE}"));
    let local = LocalTransport::new("local");
    let (from_server, to_server) = (server(&src), server(&dst));
    let (from, to) = (
        Endpoint {
            transport: &local,
            server: &from_server,
        },
        Endpoint {
            transport: &local,
            server: &to_server,
        },
    );
    let ch = Channel::new("repl-crash", from, to);
    let mut options = Options::new(ConflictPolicy::Fail, "repl-crash");
    options.replicate = true;
    let shop = transfer(DbEngine::Mariadb, &from, &to, "shop", &options).unwrap();
    // The process dies once the connection exists, before its outcome is journaled.
    let dies = |s: &Step, done: bool, _: &str| {
        if *s == Step::ChannelCreated && done {
            Err("killed".to_string())
        } else {
            Ok(())
        }
    };
    let shop_position = shop.position.unwrap();
    assert!(
        replication::set_up(
            &ch,
            &[("shop".into(), shop_position.clone())],
            &dies,
            Duration::from_secs(30)
        )
        .is_err()
    );
    // The next command reads the servers, not the journal's intent.
    let left = replication::state(&ch).unwrap();
    assert!(left.channel && left.account, "{left:#?}");
    // A set-up again replaces what was left (a new password, the same names).
    let journal = Journal::default();
    let log = |s: &Step, d: bool, w: &str| journal.log(s, d, w);
    replication::set_up(
        &ch,
        &[("shop".into(), shop_position)],
        &log,
        Duration::from_secs(30),
    )
    .unwrap();
    src.sql("INSERT INTO shop.t VALUES (5000, 'after')");
    replication::catch_up(&ch, Duration::from_secs(30), &log).unwrap();
    assert_eq!(dst.sql("SELECT v FROM shop.t WHERE id = 5000"), "after");
    // Rollback: whatever is there goes.
    replication::remove(&ch, &log).unwrap();
    let gone = replication::state(&ch).unwrap();
    assert!(!gone.channel && !gone.account, "{gone:#?}");

    // A server without binary log is no source; two servers of one id are refused.
    let backwards = Channel::new("repl-crash", to, from);
    let p = replication::prerequisites(&backwards);
    assert!(
        p.problems.iter().any(|m| m.contains("binary log is off")),
        "{p:#?}"
    );
    let same = Channel::new("repl-crash", to, to);
    let p = replication::prerequisites(&same);
    assert!(
        p.problems.iter().any(|m| m.contains("same server_id")),
        "{p:#?}"
    );
}

/// Two sites whose MariaDB databases are replicated (`mode: replicate`), one database outside
/// the plan on the same source; no DNS nor probe, so a cutover confirms a verified site.
struct World {
    work: tempfile::TempDir,
    plan: std::path::PathBuf,
}

fn world(src: &MariaDb, dst: &MariaDb) -> World {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for site in ["one", "two"] {
        std::fs::create_dir_all(w.join("old").join(site)).unwrap();
        std::fs::write(w.join("old").join(site).join("index.html"), site).unwrap();
    }
    for db in ["one_db", "two_db", "other_db"] {
        src.sql(&format!("CREATE DATABASE {db}; USE {db}; {TABLE}"));
    }
    dst.sql(&format!("CREATE DATABASE other_db; USE other_db; {TABLE}"));
    let site = |name: &str| {
        format!(
            "  - name: {name}\n    from: {{ host: local, path: \"old/{name}/\" }}\n    to: {{ host: local, path: \"new/{name}/\" }}\n    databases: [\"{name}_db\"]\n"
        )
    };
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: repl-life\nstate_dir: state\ndefaults: {{ jobs: 2 }}\n\
sites:\n{}{}\
databases:\n  - engine: mariadb\n    mode: replicate\n    from: {{ host: local, socket: \"{}\", address: 127.0.0.1, port: {}, user: root }}\n    to: {{ host: local, socket: \"{}\", user: root }}\n    names: [\"one_db\", \"two_db\"]\n",
            site("one"),
            site("two"),
            src.socket.display(),
            src.port,
            dst.socket.display(),
        ),
    )
    .unwrap();
    World { work, plan }
}

fn run(world: &World, args: &[&str], fault: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = crate::cli::bin();
    cmd.arg("--yes")
        .arg(args[0])
        .arg(&world.plan)
        .args(&args[1..]);
    if let Some(f) = fault {
        cmd.env("TRANSHUMANCE_FAULT", f);
    }
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

/// The journal's replication steps, as `step:done` words.
fn journaled_steps(world: &World) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(world.work.path().join("state")) {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["kind"] == "replication"
            {
                out.push(format!("{}:{}", v["step"].as_str().unwrap(), v["done"]));
            }
        }
    }
    out
}

/// The databases each replication connection at `dst` is filtered to (`Replicate_Do_DB`, the
/// 15th column of `SHOW ALL SLAVES STATUS` in MariaDB 10.x).
fn connections(dst: &MariaDb) -> Vec<String> {
    dst.sql("SHOW ALL SLAVES STATUS")
        .lines()
        .filter(|l| l.starts_with("transhumance_"))
        .map(|l| {
            let mut dbs: Vec<&str> = l
                .split('\t')
                .nth(14)
                .unwrap_or_default()
                .split(',')
                .collect();
            dbs.sort_unstable();
            dbs.join(",")
        })
        .collect()
}

fn replication_left(src: &MariaDb, dst: &MariaDb) -> (String, String) {
    (
        connections(dst).len().to_string(),
        src.sql("SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'th\\_repl\\_%'"),
    )
}

#[test]
fn a_replicated_cutover_waits_for_the_freeze_position_site_by_site() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(4),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(replication_left(&src, &dst), ("1".into(), "1".into()));
    assert_eq!(connections(&dst), ["one_db,two_db"]);
    for db in ["one_db", "two_db", "other_db"] {
        src.sql(&format!(
            "INSERT INTO {db}.t VALUES (2001, 'new'); UPDATE {db}.t SET v = 'changed' WHERE id <= 10; DELETE FROM {db}.t WHERE id BETWEEN 100 AND 109"
        ));
    }
    // Before any cutover, the writes arrive by replication.
    wait_until(Duration::from_secs(20), "replicated rows", || {
        rows(&dst, "one_db") == rows(&src, "one_db") && rows(&dst, "two_db") == rows(&src, "two_db")
    });
    let (code, out) = run(&w, &["cutover", "--only", "one"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rows(&dst, "one_db"), rows(&src, "one_db"));
    // Site two still replicates; one left the filter.
    assert_eq!(connections(&dst), ["two_db"]);
    src.sql("INSERT INTO two_db.t SELECT seq, 'last' FROM two_db.seq_3000_to_3049; INSERT INTO one_db.t VALUES (9999, 'after its cutover')");
    let (code, out) = run(&w, &["cutover", "--only", "two"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rows(&dst, "two_db"), rows(&src, "two_db"));
    assert_eq!(dst.sql("SELECT COUNT(*) FROM two_db.t"), "241");
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM one_db.t WHERE id = 9999"),
        "0",
        "a database cut over no longer hears the source"
    );
    assert_eq!(
        dst.sql("SELECT COUNT(*), SUM(v = 'changed') FROM other_db.t"),
        "200\t0",
        "writes outside the plan must not arrive"
    );
    assert_eq!(replication_left(&src, &dst), ("0".into(), "0".into()));
    let steps = journaled_steps(&w);
    for s in [
        "account_created:true",
        "channel_created:true",
        "position_waited:true",
        "database_detached:true",
        "channel_removed:true",
        "account_dropped:true",
    ] {
        assert!(steps.contains(&s.to_string()), "{s} in {steps:?}");
    }
    // The account's password is in no journal nor output.
    for e in walkdir::WalkDir::new(w.work.path().join("state")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            assert!(
                !text.contains("PASSWORD") && !text.contains("IDENTIFIED"),
                "{}",
                e.path().display()
            );
        }
    }
    assert!(
        !out.contains("PASSWORD") && !out.contains("IDENTIFIED"),
        "{out}"
    );
}

#[test]
fn a_kill_after_the_connection_exists_is_resolved_from_the_servers() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(5),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let (code, out) = run(&w, &["sync"], Some("before:replication_set_up"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    // The connection and its account exist; the journal holds only the intent.
    assert_eq!(replication_left(&src, &dst), ("1".into(), "1".into()));
    let steps = journaled_steps(&w);
    assert!(
        steps.contains(&"channel_created:false".to_string()),
        "{steps:?}"
    );
    assert!(
        !steps.contains(&"channel_created:true".to_string()),
        "{steps:?}"
    );
    src.sql("INSERT INTO one_db.t VALUES (7000, 'while nobody watched'); DELETE FROM two_db.t WHERE id = 1");
    // The cutover does not trust that connection: removed, both databases dumped frozen.
    let (code, out) = run(&w, &["cutover"], None);
    assert_eq!(code, Some(0), "{out}");
    for db in ["one_db", "two_db"] {
        assert_eq!(rows(&dst, db), rows(&src, db), "{db}");
    }
    assert_eq!(replication_left(&src, &dst), ("0".into(), "0".into()));
}

/// The dry run's note on each database of the plan, by name.
fn dry_run_notes(world: &World) -> Vec<(String, String)> {
    let out = crate::cli::bin()
        .args(["plan", "--format", "json"])
        .arg(&world.plan)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let mut notes: Vec<(String, String)> = v["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    notes.sort();
    notes
}

#[test]
fn a_source_without_binary_log_is_dumped_and_the_dry_run_says_why() {
    let (src, dst) = (MariaDb::start(), MariaDb::start());
    let w = world(&src, &dst);
    let notes = dry_run_notes(&w);
    assert_eq!(notes.len(), 2, "{notes:?}");
    for (_, note) in &notes {
        assert!(
            note.contains("dumped at the cutover") && note.contains("binary log is off"),
            "{notes:?}"
        );
    }
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(replication_left(&src, &dst), ("0".into(), "0".into()));
    src.sql("INSERT INTO one_db.t VALUES (7000, 'at the freeze')");
    let (code, out) = run(&w, &["cutover"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rows(&dst, "one_db"), rows(&src, "one_db"));

    // With a binary log, the dry run says the databases will be replicated.
    let (src, dst) = (
        MariaDb::start_with(MariaDbOptions {
            binlog_server_id: Some(6),
        }),
        MariaDb::start(),
    );
    let w = world(&src, &dst);
    for (name, note) in dry_run_notes(&w) {
        assert!(note.contains("final delta: replicated"), "{name}: {note}");
    }
}

#[test]
fn rollback_takes_the_sites_databases_out_of_replication_and_the_last_removes_it() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(7),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    // A cutover killed once site one is freezing: the site is in flight, still replicated.
    let (code, _) = run(&w, &["cutover", "--only", "one"], Some("after:freezing"));
    assert_eq!(code, None, "killed by the fault point");
    assert_eq!(connections(&dst), ["one_db,two_db"]);
    let (code, out) = run(&w, &["rollback", "--only", "one"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(connections(&dst), ["two_db"]);
    assert_eq!(replication_left(&src, &dst).1, "1");
    let (code, _) = run(&w, &["cutover", "--only", "two"], Some("after:freezing"));
    assert_eq!(code, None, "killed by the fault point");
    let (code, out) = run(&w, &["rollback"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(replication_left(&src, &dst), ("0".into(), "0".into()));
}

#[test]
fn postgres_replicate_rules_replicate_what_they_can_and_the_dry_run_says_why_not() {
    let logical = crate::harness::Postgres::start_with(true);
    let plain = crate::harness::Postgres::start();
    let dst = crate::harness::Postgres::start();
    for pg in [&logical, &plain] {
        pg.psql("postgres", "CREATE DATABASE pg_keyed");
        pg.psql("postgres", "CREATE DATABASE pg_loose");
        pg.psql("postgres", "CREATE DATABASE pg_more");
        pg.psql("pg_keyed", "CREATE TABLE t (id int PRIMARY KEY, v text)");
        pg.psql("pg_more", "CREATE TABLE t (id int PRIMARY KEY, v text)");
        pg.psql(
            "pg_loose",
            "CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE nokey (v text); CREATE TABLE full_row (v text); ALTER TABLE full_row REPLICA IDENTITY FULL",
        );
    }
    // Three of the four slots taken by others: room for one database only.
    logical.psql(
        "postgres",
        "SELECT pg_create_physical_replication_slot('other_' || i) FROM generate_series(1, 3) i",
    );
    let work = tempfile::tempdir().unwrap();
    let note = |src: &crate::harness::Postgres| {
        let plan = work.path().join("plan.yaml");
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: pg-repl\nstate_dir: state\n\
databases:\n  - engine: postgres\n    mode: replicate\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    to: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    names: [\"pg_*\"]\n",
                src.port, dst.port
            ),
        )
        .unwrap();
        dry_run_notes(&World {
            work: tempfile::tempdir().unwrap(),
            plan,
        })
    };
    let notes = note(&logical);
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes[0]
            .1
            .contains("final delta: replicated (publication, slot and subscription `th_"),
        "{notes:?}"
    );
    assert!(
        notes[1].1.contains(
            "dumped at the cutover (`pg_loose` has tables without a replica identity: public.nokey)"
        ),
        "{notes:?}"
    );
    assert!(!notes[1].1.contains("full_row"), "{notes:?}");
    assert!(
        notes[2]
            .1
            .contains("`pg_more` is beyond the source's replication budget (1 free slot(s)"),
        "{notes:?}"
    );
    let notes = note(&plain);
    for (_, n) in &notes {
        assert!(
            n.contains("dumped at the cutover") && n.contains("wal_level is replica"),
            "{notes:?}"
        );
    }
}

/// A PostgreSQL server for our clients and for the target's subscription (127.0.0.1:port).
fn pg_server(pg: &crate::harness::Postgres) -> DbServer {
    DbServer {
        host: "local".into(),
        socket: None,
        address: Some("127.0.0.1".into()),
        port: Some(pg.port),
        user: Some("postgres".into()),
        password: None,
        bin_dir: None,
    }
}

const PG_TABLE: &str = "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(i::text) FROM generate_series(1, 200) i";

fn pg_rows(pg: &crate::harness::Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT count(*), coalesce(sum(hashtext(id::text || v)::bigint), 0) FROM t",
    )
}

/// Slots, publications, subscriptions and roles of the move left on the two servers.
fn pg_leftovers(
    src: &crate::harness::Postgres,
    dst: &crate::harness::Postgres,
    db: &str,
) -> String {
    format!(
        "{} {} {} {}",
        src.psql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'th\\_%'"
        ),
        src.psql(
            db,
            "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'th\\_%'"
        ),
        src.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'th\\_%'"
        ),
        dst.psql(
            "postgres",
            "SELECT count(*) FROM pg_subscription WHERE subname LIKE 'th\\_%'"
        ),
    )
}

#[test]
fn postgres_replicates_from_the_dump_snapshot_and_leaves_nothing_behind() {
    use transhumance::db::pg_replication::{self as pgr, Replica};
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    src.psql("postgres", "CREATE DATABASE shop");
    src.psql("shop", PG_TABLE);
    let local = LocalTransport::new("local");
    let (from_server, to_server) = (pg_server(&src), pg_server(&dst));
    let (from, to) = (
        Endpoint {
            transport: &local,
            server: &from_server,
        },
        Endpoint {
            transport: &local,
            server: &to_server,
        },
    );
    let r = Replica::new("pg-repl-it", from, to, "shop");
    let journal = Journal::default();
    let log = |s: &Step, d: bool, w: &str| journal.log(s, d, w);
    pgr::room_for_one(&from).unwrap();
    pgr::publish(&r, &log).unwrap();
    let mut options = Options::new(ConflictPolicy::Fail, "pg-repl-it");
    options.replicate = true;
    options.pg_slot = Some(r.name.clone());
    let moved = transfer(DbEngine::Postgres, &from, &to, "shop", &options).unwrap();
    assert!(moved.note.unwrap().contains(&r.name));
    // Written after the dump's snapshot, before the subscription exists: the slot keeps it.
    src.psql("shop", "INSERT INTO t (v) VALUES ('between')");
    assert_eq!(dst.psql("shop", "SELECT count(*) FROM t"), "200");
    // Our publication did not travel with the dump.
    assert_eq!(dst.psql("shop", "SELECT count(*) FROM pg_publication"), "0");
    pgr::subscribe(&r, &log).unwrap();
    let state = pgr::state(&r).unwrap();
    assert!(
        state.subscription.as_deref() == Some("shop")
            && state.enabled
            && state.slot
            && state.publication
            && state.role,
        "{state:#?}"
    );
    // The password is in no state nor journal line.
    assert!(!format!("{state:?}").contains("password"));

    src.psql(
        "shop",
        "INSERT INTO t (v) VALUES ('new'); UPDATE t SET v = 'changed' WHERE id <= 10; DELETE FROM t WHERE id BETWEEN 100 AND 109",
    );
    wait_until(Duration::from_secs(30), "replicated rows", || {
        pg_rows(&dst, "shop") == pg_rows(&src, "shop")
    });
    // The freeze: last writes, then the wait for the source's position.
    src.psql(
        "shop",
        "INSERT INTO t (v) SELECT 'last' FROM generate_series(1, 100)",
    );
    pgr::catch_up(&r, Duration::from_secs(30), &log).unwrap();
    assert_eq!(pg_rows(&dst, "shop"), pg_rows(&src, "shop"));
    assert_eq!(dst.psql("shop", "SELECT count(*) FROM t"), "292");
    assert_ne!(
        dst.psql("shop", "SELECT last_value FROM t_id_seq"),
        src.psql("shop", "SELECT last_value FROM t_id_seq")
    );
    assert_eq!(pgr::copy_sequences(&r, &log).unwrap(), 1);
    assert_eq!(
        dst.psql("shop", "SELECT last_value FROM t_id_seq"),
        src.psql("shop", "SELECT last_value FROM t_id_seq")
    );
    assert_eq!(dst.psql("shop", "SELECT last_value FROM t_id_seq"), "302");

    pgr::remove(&r, Duration::from_secs(30), &log).unwrap();
    assert_eq!(pg_leftovers(&src, &dst, "shop"), "0 0 0 0");
    let steps: Vec<Step> = journal
        .steps()
        .into_iter()
        .filter(|(_, d)| *d)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        steps,
        [
            Step::PublicationCreated,
            Step::AccountCreated,
            Step::ChannelCreated,
            Step::PositionWaited,
            Step::SequencesSet,
            Step::ChannelRemoved,
            Step::SlotDropped,
            Step::PublicationDropped,
            Step::AccountDropped,
        ]
    );
    // Removing again finds nothing to do.
    let before = journal.steps().len();
    pgr::remove(&r, Duration::from_secs(30), &log).unwrap();
    assert_eq!(journal.steps().len(), before);
}

/// Two sites with a PostgreSQL database each under `mode: replicate`: `one_db` replicates,
/// `two_db` holds a table without a replica identity (dumped at the cutover).
fn pg_world(src: &crate::harness::Postgres, dst: &crate::harness::Postgres) -> World {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for site in ["one", "two"] {
        std::fs::create_dir_all(w.join("old").join(site)).unwrap();
        std::fs::write(w.join("old").join(site).join("index.html"), site).unwrap();
    }
    for db in ["one_db", "two_db"] {
        src.psql("postgres", &format!("CREATE DATABASE {db}"));
        src.psql(db, PG_TABLE);
    }
    src.psql(
        "two_db",
        "CREATE TABLE nokey (v text); INSERT INTO nokey VALUES ('a')",
    );
    let site = |name: &str| {
        format!(
            "  - name: {name}\n    from: {{ host: local, path: \"old/{name}/\" }}\n    to: {{ host: local, path: \"new/{name}/\" }}\n    databases: [\"{name}_db\"]\n"
        )
    };
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: pg-life\nstate_dir: state\ndefaults: {{ jobs: 2 }}\n\
sites:\n{}{}\
databases:\n  - engine: postgres\n    mode: replicate\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    to: {{ host: local, address: 127.0.0.1, port: {}, user: postgres }}\n    names: [\"one_db\", \"two_db\"]\n",
            site("one"),
            site("two"),
            src.port,
            dst.port,
        ),
    )
    .unwrap();
    World { work, plan }
}

/// The journal files and a command's output hold no password.
fn no_password(w: &World, out: &str) {
    for e in walkdir::WalkDir::new(w.work.path().join("state")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            assert!(
                !text.contains("password") && !text.contains("PASSWORD"),
                "{}",
                e.path().display()
            );
        }
    }
    assert!(
        !out.contains("password=") && !out.contains("PASSWORD"),
        "{out}"
    );
}

#[test]
fn a_postgres_cutover_catches_up_sets_sequences_and_leaves_nothing_behind() {
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    let w = pg_world(&src, &dst);
    let notes = dry_run_notes(&w);
    assert!(notes[0].1.contains("final delta: replicated"), "{notes:?}");
    assert!(
        notes[1]
            .1
            .contains("tables without a replica identity: public.nokey"),
        "{notes:?}"
    );
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    // one_db is replicated from its dump's snapshot; two_db only dumped.
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "1 1 1 1");
    assert_eq!(
        src.psql("two_db", "SELECT count(*) FROM pg_publication"),
        "0"
    );
    for db in ["one_db", "two_db"] {
        src.psql(
            db,
            "INSERT INTO t (v) VALUES ('new'); UPDATE t SET v = 'changed' WHERE id <= 10; DELETE FROM t WHERE id BETWEEN 100 AND 109",
        );
    }
    wait_until(Duration::from_secs(30), "replicated rows", || {
        pg_rows(&dst, "one_db") == pg_rows(&src, "one_db")
    });
    assert_ne!(pg_rows(&dst, "two_db"), pg_rows(&src, "two_db"));
    // Up to the freeze (the cutover's first step): more rows, the sequence advanced.
    src.psql(
        "one_db",
        "INSERT INTO t (v) SELECT 'last' FROM generate_series(1, 50)",
    );
    src.psql(
        "one_db",
        "SELECT nextval('t_id_seq') FROM generate_series(1, 5)",
    );
    let (code, out) = run(&w, &["cutover"], None);
    assert_eq!(code, Some(0), "{out}");
    for db in ["one_db", "two_db"] {
        assert_eq!(pg_rows(&dst, db), pg_rows(&src, db), "{db}");
    }
    assert_eq!(dst.psql("one_db", "SELECT count(*) FROM t"), "241");
    assert_eq!(dst.psql("one_db", "SELECT last_value FROM t_id_seq"), "256");
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "0 0 0 0");
    let steps = journaled_steps(&w);
    for s in [
        "publication_created:true",
        "slot_created:true",
        "account_created:true",
        "channel_created:true",
        "position_waited:true",
        "sequences_set:true",
        "channel_removed:true",
        "slot_dropped:true",
        "publication_dropped:true",
        "account_dropped:true",
    ] {
        assert!(steps.contains(&s.to_string()), "{s} in {steps:?}");
    }
    no_password(&w, &out);
}

#[test]
fn a_postgres_rollback_removes_the_replica() {
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    let w = pg_world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "1 1 1 1");
    let (code, _) = run(&w, &["cutover", "--only", "one"], Some("after:freezing"));
    assert_eq!(code, None, "killed by the fault point");
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "1 1 1 1");
    let (code, out) = run(&w, &["rollback"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "0 0 0 0");
}

#[test]
fn a_kill_after_the_slot_exists_is_resolved_on_the_next_command() {
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    let w = pg_world(&src, &dst);
    let (code, out) = run(&w, &["sync"], Some("before:replication_slot"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    // The slot and its publication exist; the journal holds only the slot's intent.
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "1 1 0 0");
    let steps = journaled_steps(&w);
    assert!(
        steps.contains(&"slot_created:false".to_string()),
        "{steps:?}"
    );
    assert!(
        !steps.contains(&"slot_created:true".to_string()),
        "{steps:?}"
    );
    src.psql(
        "one_db",
        "INSERT INTO t (v) VALUES ('while nobody watched')",
    );
    // The site stays in its pre-sync (a cutover refuses it): the next sync finds the slot on
    // the source, removes it, and dumps and sets the database up again, journaled whole.
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "1 1 1 1");
    let steps = journaled_steps(&w);
    for s in [
        "slot_dropped:true",
        "slot_created:true",
        "channel_created:true",
    ] {
        assert!(steps.contains(&s.to_string()), "{s} in {steps:?}");
    }
    src.psql(
        "one_db",
        "INSERT INTO t (v) VALUES ('after the new pre-sync')",
    );
    let (code, out) = run(&w, &["cutover"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(pg_rows(&dst, "one_db"), pg_rows(&src, "one_db"));
    assert_eq!(dst.psql("one_db", "SELECT count(*) FROM t"), "202");
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "0 0 0 0");
}

#[test]
fn a_postgres_subscription_found_disabled_at_the_cutover_is_removed_and_its_database_dumped() {
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    let w = pg_world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    let sub = dst.psql(
        "postgres",
        "SELECT subname FROM pg_subscription WHERE subname LIKE 'th\\_%'",
    );
    dst.psql("one_db", &format!("ALTER SUBSCRIPTION {sub} DISABLE"));
    src.psql("one_db", "INSERT INTO t (v) VALUES ('not replicated')");
    let (code, out) = run(&w, &["cutover"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(pg_rows(&dst, "one_db"), pg_rows(&src, "one_db"));
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "0 0 0 0");
    assert!(!journaled_steps(&w).contains(&"position_waited:true".to_string()));
}

/// The journal's unit steps: (site, unit, step, ok, detail), in order.
fn journaled_units(world: &World) -> Vec<(String, String, String, bool, String)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(world.work.path().join("state")) {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["kind"] == "unit"
            {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                out.push((
                    s("site"),
                    s("unit"),
                    s("step"),
                    v["ok"] == true,
                    s("detail"),
                ));
            }
        }
    }
    out
}

/// The last journaled step of `unit`: (step, ok, detail).
fn last_step(world: &World, unit: &str) -> (String, bool, String) {
    journaled_units(world)
        .into_iter()
        .rfind(|u| u.1 == unit)
        .map(|u| (u.2, u.3, u.4))
        .unwrap_or_else(|| panic!("{unit} never journaled"))
}

/// Issue 19: a replicated database's rows are not compared in the freeze (its catalogs are,
/// in a snapshot the target holds from then on) but after the switch, in that snapshot: a row
/// that differs at the target is found, reported with what to do, and left as it is there.
#[test]
fn a_row_changed_at_the_target_is_found_after_go_live_and_left_there() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(7),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    src.sql("INSERT INTO one_db.t VALUES (2001, 'new'); INSERT INTO two_db.t VALUES (2001, 'new')");
    wait_until(Duration::from_secs(20), "replicated rows", || {
        rows(&dst, "one_db") == rows(&src, "one_db") && rows(&dst, "two_db") == rows(&src, "two_db")
    });
    // A divergence replication does not see: a row the source never touches, changed at
    // the target behind its back.
    dst.sql("UPDATE one_db.t SET v = 'changed at the target' WHERE id = 50");
    let (code, out) = run(&w, &["cutover", "--only", "one"], None);
    assert_eq!(code, Some(1), "the difference fails the command: {out}");
    let units = journaled_units(&w);
    let light = units
        .iter()
        .find(|u| u.1 == "database one_db" && u.2 == "final sync (replicated)")
        .unwrap_or_else(|| panic!("{units:#?}"));
    assert!(light.3, "{light:?}");
    assert!(
        light.4.contains("present with the same columns")
            && light.4.contains("rows compared after go-live"),
        "{light:?}"
    );
    // Not compared again row by row before the switch.
    assert!(
        !units
            .iter()
            .any(|u| u.1 == "database one_db" && u.2 == "verify"),
        "{units:#?}"
    );
    let (step, ok, detail) = last_step(&w, "database one_db");
    assert_eq!(step, "verify after go-live");
    assert!(!ok, "{detail}");
    assert!(
        detail.contains("t (different") && detail.contains("rollback PLAN --only one"),
        "{detail}"
    );
    assert!(out.contains("verify after go-live"), "{out}");
    // The site is live, and its database was not overwritten there.
    let status = crate::cli::bin()
        .args(["status", w.plan.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("verify after go-live"), "{status}");
    assert_eq!(
        dst.sql("SELECT v FROM one_db.t WHERE id = 50"),
        "changed at the target"
    );
    // Without a difference: the same path, clean.
    let (code, out) = run(&w, &["cutover", "--only", "two"], None);
    assert_eq!(code, Some(0), "{out}");
    let (step, ok, detail) = last_step(&w, "database two_db");
    assert_eq!(
        (step.as_str(), ok),
        ("verify after go-live", true),
        "{detail}"
    );
    assert_eq!(rows(&dst, "two_db"), rows(&src, "two_db"));
}

/// Issue 19: `replicate_wait` bounds the cutover's wait for the target to catch up; past it
/// the database fails its final sync, named, and the site goes back as any failure does.
#[test]
fn a_replicate_wait_that_runs_out_fails_the_site_and_names_the_key() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(8),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let text = std::fs::read_to_string(&w.plan).unwrap();
    std::fs::write(
        &w.plan,
        text.replace(
            "    mode: replicate\n",
            "    mode: replicate\n    replicate_wait: 1s\n",
        ),
    )
    .unwrap();
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    // A transaction at the target holds a row the source then changes: the applier waits.
    let mut holder =
        std::process::Command::new(crate::harness::require("mariadb", "mariadb-client"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", dst.socket.display()))
            .args(["-uroot", "-NBn"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    {
        use std::io::{BufRead, Write};
        let stdin = holder.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN; SELECT id FROM one_db.t WHERE id = 1 FOR UPDATE;\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "1");
    }
    src.sql("UPDATE one_db.t SET v = 'blocked at the target' WHERE id = 1");
    let (code, out) = run(&w, &["cutover", "--only", "one"], None);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("did not reach the source's position") && out.contains("within 1s"),
        "{out}"
    );
    let status = crate::cli::bin()
        .args(["status", w.plan.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("\"failed\""), "{status}");
    // Once the applier goes on, a new cutover catches up.
    let (code, out) = run(&w, &["cutover", "--only", "one"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(rows(&dst, "one_db"), rows(&src, "one_db"));
}

/// Issue 19: PostgreSQL alike, the snapshot held by the very session that compares.
#[test]
fn a_postgres_row_changed_at_the_target_is_found_after_go_live() {
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    let w = pg_world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    src.psql("one_db", "INSERT INTO t (v) VALUES ('new')");
    wait_until(Duration::from_secs(30), "replicated rows", || {
        pg_rows(&dst, "one_db") == pg_rows(&src, "one_db")
    });
    dst.psql(
        "one_db",
        "UPDATE t SET v = 'changed at the target' WHERE id = 50",
    );
    let (code, out) = run(&w, &["cutover", "--only", "one"], None);
    assert_eq!(code, Some(1), "{out}");
    let (step, ok, detail) = last_step(&w, "database one_db");
    assert_eq!(step, "verify after go-live");
    assert!(!ok && detail.contains("public.t (different"), "{detail}");
    assert_eq!(
        dst.psql("one_db", "SELECT v FROM t WHERE id = 50"),
        "changed at the target"
    );
    assert_eq!(pg_leftovers(&src, &dst, "one_db"), "0 0 0 0");
}

/// The snapshot itself: what the target holds when it is taken, whatever is written there
/// since (the go-live's writes), and read only by the session that took it.
#[test]
fn a_held_snapshot_reads_the_target_as_it_was_when_taken() {
    use transhumance::db::verify::{SessionPool, Side, Snapshot, VerifyOptions, verify_in};
    let local = LocalTransport::new("local");
    let options = VerifyOptions::default();
    // MariaDB.
    let (a, b) = (MariaDb::start(), MariaDb::start());
    for db in [&a, &b] {
        db.sql(&format!("CREATE DATABASE shop; USE shop; {TABLE}"));
    }
    let (sa, sb) = (server(&a), server(&b));
    let side = |s| Side {
        transport: &local,
        server: s,
        database: "shop",
    };
    let snapshot = Snapshot::take(&local, DbEngine::Mariadb, &sb, "shop").unwrap();
    b.sql("UPDATE shop.t SET v = 'after' WHERE id = 3; INSERT INTO shop.t VALUES (999, 'after')");
    let held = verify_in(
        &SessionPool::within(&snapshot),
        DbEngine::Mariadb,
        &side(&sa),
        &side(&sb),
        &options,
    )
    .unwrap();
    assert!(held.is_clean(), "{:#?}", held.tables);
    let now = verify_in(
        &SessionPool::new(),
        DbEngine::Mariadb,
        &side(&sa),
        &side(&sb),
        &options,
    )
    .unwrap();
    assert!(!now.is_clean());
    // PostgreSQL.
    let (p, q) = (
        crate::harness::Postgres::start(),
        crate::harness::Postgres::start(),
    );
    for pg in [&p, &q] {
        pg.psql("postgres", "CREATE DATABASE shop");
        pg.psql("shop", PG_TABLE);
    }
    let (sp, sq) = (pg_server(&p), pg_server(&q));
    let snapshot = Snapshot::take(&local, DbEngine::Postgres, &sq, "shop").unwrap();
    q.psql(
        "shop",
        "UPDATE t SET v = 'after' WHERE id = 3; INSERT INTO t (v) VALUES ('after')",
    );
    let held = verify_in(
        &SessionPool::within(&snapshot),
        DbEngine::Postgres,
        &side(&sp),
        &side(&sq),
        &options,
    )
    .unwrap();
    // Rows as they were; a sequence is no row (no snapshot holds it back): the lifecycle
    // judges the catalog in the freeze, the rows after go-live.
    assert!(
        held.tables.iter().all(|t| t.status == "same"),
        "{:#?}",
        held.tables
    );
    let now = verify_in(
        &SessionPool::new(),
        DbEngine::Postgres,
        &side(&sp),
        &side(&sq),
        &options,
    )
    .unwrap();
    assert!(now.tables.iter().any(|t| t.status != "same"));
    // A session that dies takes the snapshot with it: never a read of the live copy instead.
    q.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop' AND state LIKE 'idle in transaction%'",
    );
    let lost = verify_in(
        &SessionPool::within(&snapshot),
        DbEngine::Postgres,
        &side(&sp),
        &side(&sq),
        &options,
    );
    assert!(
        lost.as_ref()
            .is_err_and(|e| e.contains("snapshot held since the freeze was lost")),
        "{lost:?}"
    );
}

/// `status --json`: each site's `rows_owed` (databases whose row comparison is owed).
fn rows_owed(w: &World) -> Vec<(String, Vec<String>)> {
    let out = crate::cli::bin()
        .args(["status", w.plan.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let owed = s["rows_owed"]
                .as_array()
                .map(|a| a.iter().map(|d| d.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (s["name"].as_str().unwrap().to_string(), owed)
        })
        .collect()
}

/// The steps journaled for `unit`, in order.
fn steps_of(w: &World, unit: &str) -> Vec<String> {
    journaled_units(w)
        .into_iter()
        .filter(|u| u.1 == unit)
        .map(|u| u.2)
        .collect()
}

/// Issue 19: a kill between the freeze's light check and the comparison after go-live loses
/// the target's snapshot; the journal says the rows are owed, `status` shows it, and `resume`
/// settles it from the servers. Site one dies confirmed and a row is deleted at the target
/// (live): the frozen source and the target as it is now differ, reported as the strong
/// signal, nothing written back, exit 1. Site two dies verified, before its switch: nothing
/// can have been written at the target, so its rows are compared in the freeze, exit 0.
#[test]
fn rows_owed_by_a_killed_cutover_are_settled_by_resume_mariadb() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(9),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    src.sql("INSERT INTO one_db.t VALUES (2001, 'new'); INSERT INTO two_db.t VALUES (2001, 'new')");
    wait_until(Duration::from_secs(20), "replicated rows", || {
        rows(&dst, "one_db") == rows(&src, "one_db") && rows(&dst, "two_db") == rows(&src, "two_db")
    });
    let (code, out) = run(&w, &["cutover", "--only", "one"], Some("after:confirmed"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    assert_eq!(
        steps_of(&w, "database one_db").last().map(String::as_str),
        Some("final sync (replicated)")
    );
    assert!(steps_of(&w, "database one_db").contains(&"rows owed after go-live".to_string()));
    assert_eq!(
        rows_owed(&w),
        [
            ("one".into(), vec!["one_db".into()]),
            ("two".into(), vec![])
        ]
    );
    let text = crate::cli::bin()
        .args(["status", w.plan.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("rows of `one_db` owed a comparison since the freeze"),
        "{text}"
    );
    // Users at the new side (or a lost row): one row gone at the target.
    dst.sql("DELETE FROM one_db.t WHERE id = 50");
    let (code, out) = run(&w, &["resume"], None);
    assert_eq!(code, Some(1), "the difference stays unexplained: {out}");
    let (step, ok, detail) = last_step(&w, "database one_db");
    assert_eq!(step, "verify after go-live");
    assert!(!ok, "{detail}");
    assert!(
        detail.contains("snapshot of go-live was lost in a crash")
            && detail.contains("may be writes made at the new side since go-live")
            && detail.contains("missing at the target")
            && detail
                .contains("t (different, all keys (201 rows at the source, 200 at the target))")
            && detail.contains("rollback PLAN --only one"),
        "{detail}"
    );
    assert!(out.contains("snapshot of go-live was lost"), "{out}");
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM one_db.t WHERE id = 50"),
        "0",
        "nothing is written back at a live target"
    );
    assert!(rows_owed(&w).iter().all(|(_, o)| o.is_empty()));
    // Settled: the next resume has nothing to compare.
    let (code, out) = run(&w, &["resume"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        steps_of(&w, "database one_db")
            .iter()
            .filter(|s| *s == "verify after go-live")
            .count(),
        1
    );

    // Site two dies verified: its rows are compared in the freeze, before the switch.
    let (code, out) = run(&w, &["cutover", "--only", "two"], Some("after:verified"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    assert_eq!(
        rows_owed(&w),
        [
            ("one".into(), vec![]),
            ("two".into(), vec!["two_db".into()])
        ]
    );
    let (code, out) = run(&w, &["resume"], None);
    assert_eq!(code, Some(0), "{out}");
    let steps = steps_of(&w, "database two_db");
    let owed = steps
        .iter()
        .rposition(|s| s == "rows owed after go-live")
        .unwrap();
    assert_eq!(
        steps[owed + 1..],
        ["final sync (replicated)", "verify"],
        "{steps:?}"
    );
    assert_eq!(rows(&dst, "two_db"), rows(&src, "two_db"));
    assert!(rows_owed(&w).iter().all(|(_, o)| o.is_empty()));
}

/// Issue 19, PostgreSQL: killed once confirmed with nothing written at the target since, the
/// owed rows compare equal (journaled clean, exit 0); killed once switched, with a row deleted
/// at the target, `resume` confirms the site, then reports the rows missing there (exit 1)
/// and writes nothing back.
#[test]
fn rows_owed_by_a_killed_cutover_are_settled_by_resume_postgres() {
    let src = crate::harness::Postgres::start_with(true);
    let dst = crate::harness::Postgres::start();
    let w = pg_world(&src, &dst);
    // Both databases replicate (a table without a replica identity would be dumped).
    src.psql("two_db", "DROP TABLE nokey");
    let (code, out) = run(&w, &["sync"], None);
    assert_eq!(code, Some(0), "{out}");
    for db in ["one_db", "two_db"] {
        src.psql(db, "INSERT INTO t (v) VALUES ('new')");
    }
    wait_until(Duration::from_secs(30), "replicated rows", || {
        pg_rows(&dst, "one_db") == pg_rows(&src, "one_db")
            && pg_rows(&dst, "two_db") == pg_rows(&src, "two_db")
    });
    let (code, out) = run(&w, &["cutover", "--only", "one"], Some("after:confirmed"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    assert_eq!(rows_owed(&w)[0], ("one".into(), vec!["one_db".into()]));
    let (code, out) = run(&w, &["resume"], None);
    assert_eq!(code, Some(0), "{out}");
    let (step, ok, detail) = last_step(&w, "database one_db");
    assert_eq!(
        (step.as_str(), ok),
        ("verify after go-live", true),
        "{detail}"
    );
    assert!(
        detail.contains("after a crash lost the snapshot of go-live")
            && detail.contains("are equal"),
        "{detail}"
    );

    let (code, out) = run(&w, &["cutover", "--only", "two"], Some("after:switched"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    assert_eq!(rows_owed(&w)[1], ("two".into(), vec!["two_db".into()]));
    dst.psql("two_db", "DELETE FROM t WHERE id = 50");
    let (code, out) = run(&w, &["resume"], None);
    assert_eq!(code, Some(1), "{out}");
    let (step, ok, detail) = last_step(&w, "database two_db");
    assert_eq!(step, "verify after go-live");
    assert!(
        !ok && detail.contains("missing at the target")
            && detail.contains(
                "public.t (different, all keys (201 rows at the source, 200 at the target))"
            )
            && detail.contains("snapshot of go-live was lost in a crash"),
        "{detail}"
    );
    assert!(out.contains("confirmed"), "{out}");
    assert_eq!(
        dst.psql("two_db", "SELECT count(*) FROM t WHERE id = 50"),
        "0"
    );
    assert_eq!(pg_leftovers(&src, &dst, "two_db"), "0 0 0 0");
    assert!(rows_owed(&w).iter().all(|(_, o)| o.is_empty()));
}

/// Issue 19 with several controllers: the worker that freezes a site keeps its lease until it
/// switches it, so its replicated databases get only the light check in the freeze and their
/// rows compared after go-live, as with one controller. A worker killed right after a switch
/// takes that snapshot with it: the worker that takes the sites over settles the rows owed.
#[test]
fn workers_compare_replicated_rows_after_go_live_and_settle_a_dead_workers() {
    let src = MariaDb::start_with(MariaDbOptions {
        binlog_server_id: Some(12),
    });
    let dst = MariaDb::start();
    let w = world(&src, &dst);
    let shared = crate::journal_pg::shared_journal();
    let text = std::fs::read_to_string(&w.plan).unwrap().replace(
        "state_dir: state\n",
        &format!("state_dir: state\n{}", shared.state_key("2s")),
    );
    std::fs::write(&w.plan, text).unwrap();
    let worker = |fault: Option<&str>| {
        let mut cmd = crate::cli::bin();
        cmd.args(["--yes", "worker", w.plan.to_str().unwrap()])
            .env(crate::journal_pg::PASSWORD_ENV, crate::journal_pg::PASSWORD);
        if let Some(f) = fault {
            cmd.env("TRANSHUMANCE_FAULT", f);
        }
        let out = cmd.arg("--verb").arg("cutover").output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let mut sync = crate::cli::bin();
    let out = sync
        .args(["--yes", "sync", w.plan.to_str().unwrap()])
        .env(crate::journal_pg::PASSWORD_ENV, crate::journal_pg::PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    src.sql("INSERT INTO one_db.t VALUES (2001, 'new'); INSERT INTO two_db.t VALUES (2001, 'new')");
    wait_until(Duration::from_secs(20), "replicated rows", || {
        rows(&dst, "one_db") == rows(&src, "one_db") && rows(&dst, "two_db") == rows(&src, "two_db")
    });
    let (code, out) = worker(Some("after:switched"));
    assert_eq!(code, None, "killed by the fault point: {out}");
    let (code, out) = worker(None);
    assert_eq!(code, Some(0), "{out}");
    let units: Vec<(String, String, bool, String)> = shared
        .entries("repl-life")
        .into_iter()
        .filter(|v| v["kind"] == "unit")
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("unit"), s("step"), v["ok"] == true, s("detail"))
        })
        .collect();
    for db in ["database one_db", "database two_db"] {
        let steps: Vec<&(String, String, bool, String)> =
            units.iter().filter(|u| u.0 == db).collect();
        let light = steps
            .iter()
            .find(|u| u.1 == "final sync (replicated)")
            .unwrap_or_else(|| panic!("{steps:#?}"));
        assert!(
            light.2 && light.3.contains("rows compared after go-live"),
            "a worker's freeze checks lightly: {light:?}"
        );
        assert!(
            !steps.iter().any(|u| u.1 == "verify"),
            "no row comparison in the freeze: {steps:#?}"
        );
        let after = steps
            .iter()
            .rfind(|u| u.1 == "verify after go-live")
            .unwrap_or_else(|| panic!("{steps:#?}"));
        assert!(after.2, "{after:?}");
    }
    // The dead worker's snapshot was lost: at least the site it switched was settled without it.
    assert!(
        units
            .iter()
            .any(|u| u.1 == "verify after go-live"
                && u.3.contains("after a crash lost the snapshot")),
        "{units:#?}"
    );
    assert_eq!(rows(&dst, "one_db"), rows(&src, "one_db"));
    assert_eq!(rows(&dst, "two_db"), rows(&src, "two_db"));
}
