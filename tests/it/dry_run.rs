//! The dry run against real servers: sites over ssh, MariaDB, PostgreSQL, Maildir, IMAP and DNS.
//! It must report what is there and change nothing anywhere.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::bin;
use crate::harness::{Bind, Dovecot, MariaDb, Postgres, Sshd};

/// Every file under `root` with its content, to prove a dry run wrote nothing.
fn tree_state(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let content = if e.file_type().is_file() {
            std::fs::read(e.path()).unwrap()
        } else {
            b"<dir>".to_vec()
        };
        out.insert(rel, content);
    }
    out
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Two sites at the source; the target already has part of one of them.
fn make_sites(root: &Path) {
    write(
        &root.join("src/alpha.test/index.html"),
        b"<title>alpha</title>",
    );
    write(&root.join("src/alpha.test/img/logo.png"), &[7u8; 4096]);
    write(&root.join("src/alpha.test/cache/tmp.bin"), &[1u8; 100_000]);
    write(&root.join("src/beta.test/index.php"), b"<?php echo 'beta';");
    write(
        &root.join("dst/alpha.test/index.html"),
        b"<title>old alpha</title>!!",
    );
    write(&root.join("dst/alpha.test/stale.html"), b"left over");
}

#[test]
fn dry_run_over_real_servers_reports_everything_and_changes_nothing() {
    let sshd = Sshd::start();
    let (maria_src, maria_dst) = (MariaDb::start(), MariaDb::start());
    let (pg_src, pg_dst) = (Postgres::start(), Postgres::start());
    let bind = Bind::start(&[(
        "example.test",
        "www IN A 192.0.2.10\nshop 3600 IN A 192.0.2.10\nshop IN A 192.0.2.11\nmail IN A 192.0.2.99\n",
    )]);
    let dovecot = Dovecot::start(&[("alice", "alicepw")]);
    for i in 0..3 {
        let msg = format!(
            "From: a@example.test\r\nTo: alice@example.test\r\nSubject: m{i}\r\nMessage-ID: <m{i}@example.test>\r\n\r\nbody {i}\r\n"
        );
        dovecot.doveadm_with_input(&["save", "-u", "alice", "-m", "INBOX"], msg.as_bytes());
    }

    maria_src.sql("CREATE DATABASE site_alpha; CREATE TABLE site_alpha.posts (id INT PRIMARY KEY, body TEXT); INSERT INTO site_alpha.posts VALUES (1, 'hello'), (2, 'world'); CREATE USER 'blog'@'%' IDENTIFIED BY 'Bl0g-pw'; GRANT SELECT ON site_alpha.* TO 'blog'@'%'; CREATE DATABASE site_beta; CREATE DATABASE other;");
    maria_dst.sql("CREATE DATABASE site_beta;");
    pg_src.psql("postgres", "CREATE DATABASE shop");
    pg_src.psql("shop", "CREATE TABLE orders (id int primary key, total numeric); INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g");

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    make_sites(w);
    write(
        &w.join("mail-src/example.test/alice/Maildir/cur/1700000000.M1P1.old,S=5:2,S"),
        b"hello",
    );
    write(
        &w.join("mail-src/example.test/alice/Maildir/new/1700000001.M2P1.old,S=3"),
        b"abc",
    );
    write(
        &w.join("mail-src/example.test/alice/Maildir/.Sent/cur/1700000002.M3P1.old,S=1:2,RS"),
        b"x",
    );
    write(
        &w.join("mail-dst/example.test/alice/Maildir/cur/1700000000.M1P1.old,S=5:2,RS"),
        b"hello",
    );
    write(&w.join("users.csv"), b"source_user,source_password,target_user,target_password\nalice,env:IT_ALICE_PW,alice,env:IT_ALICE_PW\n");
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            r#"version: 1
name: it-dry-run
hosts:
  web: {{ ssh: "root@127.0.0.1:{ssh_port}", identity_file: "{key}", known_hosts: "{kh}", agent_dir: "{w}/agent" }}
sites:
  - from: {{ host: web, glob: "{w}/src/*/" }}
    to: {{ host: local, path: "{w}/dst/{{name}}/" }}
    domains: ["{{name}}", "www.{{name}}"]
    exclude: ["cache/"]
databases:
  - engine: mariadb
    from: {{ host: local, socket: "{maria_src}", user: root }}
    to: {{ host: web, socket: "{maria_dst}", user: root }}
    names: ["site_*"]
  - engine: postgres
    from: {{ host: web, address: 127.0.0.1, port: {pg_src}, user: postgres }}
    to: {{ host: local, address: 127.0.0.1, port: {pg_dst}, user: postgres }}
mail:
  - layout: maildir
    from: {{ host: web, path: "{w}/mail-src" }}
    to: {{ host: local, path: "{w}/mail-dst" }}
  - layout: imap
    from: {{ server: "127.0.0.1:{imap}", security: plain }}
    to: {{ server: "127.0.0.1:{imap}", security: plain }}
    users: users.csv
dns:
  provider: {{ kind: rfc2136, server: "127.0.0.1:{dns}", tsig: {{ name: {tsig_name}, secret_env: IT_TSIG }} }}
  zones: [example.test]
  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]
  lower_ttl: 60
"#,
            ssh_port = sshd.port,
            key = sshd.client_key.display(),
            kh = sshd.known_hosts.display(),
            w = w.display(),
            maria_src = maria_src.socket.display(),
            maria_dst = maria_dst.socket.display(),
            pg_src = pg_src.port,
            pg_dst = pg_dst.port,
            imap = dovecot.port,
            dns = bind.port,
            tsig_name = bind.tsig_name,
        ),
    )
    .unwrap();

    let before = (
        tree_state(&w.join("dst")),
        tree_state(&w.join("mail-dst")),
        maria_dst.sql("SHOW DATABASES"),
        pg_dst.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1"),
        bind.dig("www.example.test", "A"),
    );
    let out = bin()
        .args(["plan", "--format", "json"])
        .arg(&plan)
        .env("IT_TSIG", &bind.tsig_secret)
        .env("IT_ALICE_PW", "alicepw")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let after = (
        tree_state(&w.join("dst")),
        tree_state(&w.join("mail-dst")),
        maria_dst.sql("SHOW DATABASES"),
        pg_dst.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1"),
        bind.dig("www.example.test", "A"),
    );
    assert_eq!(before, after, "the dry run changed a target");
    assert!(!w.join("dst/beta.test").exists());

    // Sites, expanded over ssh by the uploaded agent.
    let sites = report["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2, "{report:#}");
    let alpha = &sites[0];
    assert_eq!(alpha["name"], "alpha.test");
    assert_eq!(alpha["files"], 2, "cache/ is excluded: {alpha:#}");
    assert_eq!(alpha["bytes"], 20 + 4096);
    assert_eq!(
        (
            alpha["new_files"].as_u64(),
            alpha["changed_files"].as_u64(),
            alpha["extra_at_target"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(alpha["target_state"], "populated");
    assert_eq!(
        alpha["domains"],
        serde_json::json!(["alpha.test", "www.alpha.test"])
    );
    assert_eq!(sites[1]["target_state"], "missing");
    assert!(
        std::fs::read_dir(w.join("agent")).unwrap().count() == 1,
        "the agent was uploaded once"
    );

    // Databases with sizes; the one already at the target is a conflict under policy `fail`.
    let dbs: Vec<(String, String, String)> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["engine"].as_str().unwrap().into(),
                d["name"].as_str().unwrap().into(),
                d["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        dbs,
        vec![
            ("mariadb".into(), "site_alpha".into(), "create".into()),
            ("mariadb".into(), "site_beta".into(), "conflict".into()),
            ("postgres".into(), "shop".into(), "create".into())
        ]
    );
    assert!(report["databases"][0]["tables"] == 1);
    // The accounts that move with a database, its character set and engines.
    assert_eq!(
        report["databases"][0]["users"],
        serde_json::json!(["'blog'@'%'"])
    );
    assert!(report["databases"][0]["charset"].is_string());
    assert_eq!(
        report["databases"][0]["engines"],
        serde_json::json!(["InnoDB"])
    );
    assert_eq!(
        report["databases"][2]["users"],
        serde_json::json!(["postgres"])
    );
    assert_eq!(report["databases"][2]["tables"], 1);
    assert!(report["databases"][2]["bytes"].as_u64().unwrap() > 100_000);

    // Mail: Maildir counts (one message already at the target despite its renamed flags), IMAP counts.
    let mail = report["mail"].as_array().unwrap();
    assert_eq!(mail.len(), 2, "{mail:#?}");
    assert_eq!(
        (
            mail[0]["messages"].as_u64(),
            mail[0]["folders"].as_u64(),
            mail[0]["messages_at_target"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(
        (mail[1]["layout"].as_str(), mail[1]["messages"].as_u64()),
        (Some("imap"), Some(3))
    );

    // DNS read from the authoritative server. The cutover switches the sites' names only, and
    // the dry run shows what it would do: `shop` and `www` hold the old address but belong to
    // no site of this plan, so nothing of the zone changes (they stay as they are).
    let zone = &report["dns"][0];
    assert_eq!(zone["servers"][0]["serial"], 1);
    let changes = zone["changes"].as_array().unwrap();
    assert!(changes.is_empty(), "{zone:#}");

    // Risks: the database conflict and the populated target; exit 1 because of the conflict.
    let kinds: Vec<&str> = report["risks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"database_conflict") && kinds.contains(&"target_not_empty"),
        "{kinds:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&bind.tsig_secret),
        "a secret leaked into the report"
    );
}

#[test]
fn an_unknown_host_key_is_refused_with_the_host_named() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("empty_known_hosts"), b"").unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: t\nhosts:\n  web: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}/empty_known_hosts\" }}\nsites:\n  - {{ name: a, from: {{ host: web, path: /tmp }}, to: {{ host: local, path: \"{}/dst\" }} }}\n",
            sshd.port,
            sshd.client_key.display(),
            w.display(),
            w.display()
        ),
    )
    .unwrap();
    let out = bin().args(["plan", "--json"]).arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let risk = &report["risks"][0];
    assert_eq!(risk["kind"], "unreachable");
    let message = risk["message"].as_str().unwrap();
    assert!(
        message.contains("host `web`") && message.contains("host key unknown or changed"),
        "{message}"
    );
    assert!(!w.join("dst").exists());
}

#[test]
fn local_dry_run_renders_in_four_formats_and_its_json_is_stable() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    make_sites(w);
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: local-demo\nsites:\n  - from: {{ host: local, glob: \"{w}/src/*/\" }}\n    to: {{ host: local, path: \"{w}/dst/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n    exclude: [\"cache/\"]\n",
            w = w.display()
        ),
    )
    .unwrap();
    let before = tree_state(w);
    // Exit 1: the sync mirrors, and deleting 1 of alpha's 2 target files is over 30 %, so the
    // engine's plan refuses it (without --force) and the dry run says so.
    let run = |format: &str| {
        let out = bin()
            .args(["plan", "--format", format])
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("text");
    assert!(
        text.contains("Dry run of plan `local-demo`")
            && text.contains("alpha.test")
            && text.contains("populated")
            && text.contains("1 file, 9 B")
            && text.contains("unsafe_delete"),
        "{text}"
    );
    let md = run("markdown");
    assert!(
        md.starts_with("# Dry run: `local-demo`") && md.contains("| alpha.test |"),
        "{md}"
    );
    let html = run("html");
    assert!(
        html.starts_with("<!DOCTYPE html>")
            && html.contains("<td>beta.test</td>")
            && !html.contains("<script"),
        "{html}"
    );
    let json = run("json");
    assert_eq!(before, tree_state(w), "the dry run wrote something");

    let tmp = w.display().to_string();
    insta::with_settings!({filters => vec![
        (tmp.as_str(), "[TMP]"),
        (r#""generated_at": "[^"]+""#, r#""generated_at": "[TIME]""#),
    ]}, {
        insta::assert_snapshot!("local_dry_run_json", json);
    });
}
