//! Tests of the harness itself: each server starts and does one real thing, so a broken harness
//! fails here rather than as a puzzling failure in a product test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use crate::harness::{Bind, Dovecot, MariaDb, Postgres, Sshd, require};

#[test]
#[should_panic(expected = "install the Debian package `no-such-package`")]
fn a_missing_binary_names_its_package() {
    require("/usr/sbin/no-such-server", "no-such-package");
}

#[test]
fn sshd_runs_a_command() {
    let sshd = Sshd::start();
    let out = sshd.run("echo ok");
    assert!(
        out.status.success(),
        "ssh failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn mariadb_answers_a_query() {
    let db = MariaDb::start();
    assert_eq!(db.sql("SELECT 1+1"), "2");
}

#[test]
fn postgres_answers_a_query() {
    let pg = Postgres::start();
    assert_eq!(pg.psql("postgres", "select 40+2"), "42");
}

#[test]
fn bind_serves_and_accepts_signed_updates() {
    let dns = Bind::start(&[(
        "example.test",
        "www IN A 192.0.2.10\nmail IN A 192.0.2.11\n",
    )]);
    assert_eq!(dns.dig("www.example.test", "A"), ["192.0.2.10"]);
    dns.nsupdate(
        "update delete www.example.test A\n\
         update add www.example.test 120 A 192.0.2.20",
    );
    assert_eq!(dns.dig("www.example.test", "A"), ["192.0.2.20"]);
    assert_eq!(
        dns.dig_ttl("www.example.test", "A"),
        [(120, "192.0.2.20".to_owned())]
    );
}

#[test]
fn dovecot_accepts_an_imap_login() {
    let imap = Dovecot::start(&[("alice", "secret")]);
    let mut stream = TcpStream::connect(("127.0.0.1", imap.port)).expect("connect to IMAP");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the greeting");
    assert!(line.starts_with("* OK"), "greeting: {line:?}");
    stream
        .write_all(b"a LOGIN alice secret\r\n")
        .expect("send LOGIN");
    // Untagged lines may come before the tagged answer.
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read the LOGIN answer");
        if line.starts_with("a ") {
            break;
        }
        assert!(!line.is_empty(), "connection closed after LOGIN");
    }
    assert!(line.starts_with("a OK"), "LOGIN answer: {line:?}");
    let mailboxes = imap.doveadm(&["mailbox", "list", "-u", "alice"]);
    assert!(mailboxes.contains("INBOX"), "mailboxes: {mailboxes:?}");
    assert!(imap.maildir("alice").is_dir());
}
