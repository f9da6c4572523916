//! Databases between two real servers: verification that locates a single changed row.

use transhumance::db::verify::{Side, TableCheck, verify_database};
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
        vec![("'1501'".to_string(), "'2000'".to_string())],
        "{orders:#?}"
    );
    assert_eq!(check(&found, "logs").status, "same");
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
    assert!(check(&same, "logs").hashed_in_full);
    dst.psql("shop", "UPDATE orders SET note = '' WHERE id = 1631");
    let found = verify_database(DbEngine::Postgres, &side(&a), &side(&b), 500).unwrap();
    let orders = check(&found, "orders");
    assert_eq!(orders.status, "different");
    assert_eq!(
        orders.differing_ranges,
        vec![("'1501'".to_string(), "'2000'".to_string())],
        "{orders:#?}"
    );
}
