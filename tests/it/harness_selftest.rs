//! Tests of the harness itself: each server starts and does one real thing, so a broken harness
//! fails here rather than as a puzzling failure in a product test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::harness::{Bind, Dovecot, Knot, MariaDb, Postgres, PowerDns, Sshd, require};

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

/// Two zones, so the harness's per-zone set-up runs more than once; a TXT with spaces.
const DNS_ZONES: [(&str, &str); 2] = [
    (
        "example.test",
        "www IN A 192.0.2.10\nmail IN A 192.0.2.11\n",
    ),
    ("example.org", "txt IN TXT \"hello world\" \"x\"\n"),
];

const DNS_UPDATE: &str = "update delete www.example.test A\n\
                          update add www.example.test 120 A 192.0.2.20";

/// The answer records of an unsigned `dig AXFR`, one per line, fields separated by one space.
fn axfr(port: u16, zone: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args(["+noall", "+answer", "AXFR", "@127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg(zone)
        .output()
        .expect("cannot run dig");
    assert!(out.status.success(), "dig AXFR failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Checks the zone `example.test` after `DNS_UPDATE`, as an AXFR gives it.
fn assert_transfers_updated_zone(port: u16) {
    let records = axfr(port, "example.test");
    for expected in [
        "www.example.test. 120 IN A 192.0.2.20",
        "mail.example.test. 60 IN A 192.0.2.11",
        "ns1.example.test. 60 IN A 127.0.0.1",
    ] {
        assert!(
            records.iter().any(|r| r == expected),
            "{expected:?} not in AXFR {records:#?}"
        );
    }
    // The SOA opens and closes a transfer; the update bumped the serial.
    assert_eq!(records.len(), 6, "AXFR {records:#?}");
    assert!(
        records[0]
            .starts_with("example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 2 "),
        "AXFR {records:#?}"
    );
}

#[test]
fn knot_serves_accepts_signed_updates_and_transfers() {
    let dns = Knot::start(&DNS_ZONES);
    assert_eq!(dns.dig("www.example.test", "A"), ["192.0.2.10"]);
    assert_eq!(
        dns.dig_ttl("txt.example.org", "TXT"),
        [(60, "\"hello world\" \"x\"".to_owned())]
    );
    dns.nsupdate(DNS_UPDATE);
    assert_eq!(
        dns.dig_ttl("www.example.test", "A"),
        [(120, "192.0.2.20".to_owned())]
    );
    assert_transfers_updated_zone(dns.port);
}

#[test]
fn powerdns_serves_accepts_signed_updates_transfers_and_has_an_api() {
    let dns = PowerDns::start(&DNS_ZONES);
    assert_eq!(dns.dig("www.example.test", "A"), ["192.0.2.10"]);
    assert_eq!(
        dns.dig_ttl("txt.example.org", "TXT"),
        [(60, "\"hello world\" \"x\"".to_owned())]
    );
    dns.nsupdate(DNS_UPDATE);
    assert_eq!(
        dns.dig_ttl("www.example.test", "A"),
        [(120, "192.0.2.20".to_owned())]
    );
    assert_transfers_updated_zone(dns.port);
    let out = Command::new(require("curl", "curl"))
        .args(["-sf", "-H", &format!("X-API-Key: {}", dns.api_key)])
        .arg(format!(
            "{}/api/v1/servers/localhost/zones/example.test.",
            dns.api_url()
        ))
        .output()
        .expect("cannot run curl");
    assert!(out.status.success(), "API GET failed: {out:?}");
    let zone: serde_json::Value = serde_json::from_slice(&out.stdout).expect("API answers JSON");
    assert_eq!(zone["name"], "example.test.");
    let rrsets = zone["rrsets"].as_array().expect("rrsets in the zone");
    assert!(
        rrsets.iter().any(|r| r["name"] == "www.example.test."
            && r["type"] == "A"
            && r["records"][0]["content"] == "192.0.2.20"),
        "rrsets: {rrsets:#?}"
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
