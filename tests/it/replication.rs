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
