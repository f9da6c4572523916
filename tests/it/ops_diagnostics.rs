//! Diagnostics an operator can act on (issue 17): each failure of its own kind (a refused
//! database login is `authentication`, not `unreachable`), secrets checked before anything
//! moves, `validate` saying each problem once (quoted numbers explained, long lines and
//! invalid UTF-8 placed without a panic, one mistake on 100 sites said once with a count),
//! a rejected TSIG key in words, and `inventory` counting the databases the plan moves.

use std::path::Path;

use crate::cli::bin;
use crate::harness::{Bind, MariaDb};

/// Runs `transhumance ARGS PLAN` with `env`, without the caller's `COLUMNS` (a pipe: lines
/// stay whole unless a test sets it): exit code, stdout, stderr.
pub(crate) fn run(
    args: &[&str],
    plan: &Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut cmd = bin();
    cmd.args(args).arg(plan).env_remove("COLUMNS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Snapshots `text` with the temp dir, ports, sockets and times replaced.
fn snapshot(name: &str, dir: &Path, text: &str) {
    let tmp = dir.display().to_string().replace('.', r"\.");
    insta::with_settings!({filters => vec![
        (tmp.as_str(), "[TMP]"),
        (r"/tmp/[^ `'\n]*\.sock", "[SOCKET]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"port \d+", "port [PORT]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

/// The source: MariaDB with databases `shop` and `blog`.
fn source() -> MariaDb {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1); \
         CREATE DATABASE blog; CREATE TABLE blog.t (id INT PRIMARY KEY);",
    );
    db
}

/// The target: MariaDB with an account `app` whose password is `right`, reached over TCP.
fn target() -> MariaDb {
    let db = MariaDb::start();
    db.sql(
        "CREATE USER app@'127.0.0.1' IDENTIFIED BY 'right'; GRANT ALL ON *.* TO app@'127.0.0.1' WITH GRANT OPTION;",
    );
    db
}

fn db_plan(dir: &Path, src: &MariaDb, dst: &MariaDb, extra: &str) -> std::path::PathBuf {
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: diag\nstate_dir: state\ndatabases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: local, address: 127.0.0.1, port: {}, user: app, password_env: IT_DIAG_DB_PASSWORD }}\n    names: [shop, blog]\n{extra}",
            src.socket.display(),
            dst.port
        ),
    )
    .unwrap();
    plan
}

/// A wrong password is a refused login (`authentication`), in the dry run, `db sync` and its
/// JSON; a server that is down stays `unreachable`.
#[test]
fn a_wrong_database_password_is_an_authentication_failure() {
    let (src, dst) = (source(), target());
    let work = tempfile::tempdir().unwrap();
    let plan = db_plan(work.path(), &src, &dst, "");
    let wrong = [("IT_DIAG_DB_PASSWORD", "wrong")];
    let (code, out, err) = run(&["plan"], &plan, &wrong);
    assert_eq!(code, Some(1), "PLAN {out}{err}");
    assert!(!out.contains("unreachable"), "{out}");
    let risks: String = out
        .lines()
        .skip_while(|l| !l.starts_with("Risks:"))
        .map(|l| format!("{l}\n"))
        .collect();
    snapshot("wrong_password_plan_risks", work.path(), &risks);

    let (code, out, err) = run(&["db", "sync"], &plan, &wrong);
    assert_eq!(code, Some(1), "DB SYNC {out}{err}");
    snapshot(
        "wrong_password_db_sync",
        work.path(),
        &format!("{out}{err}"),
    );
    let (_, json, _) = run(&["db", "sync", "--json"], &plan, &wrong);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["error_kind"], "authentication", "{v:#}");

    // The right password moves both; a server that is gone is unreachable.
    let (code, out, err) = run(&["db", "sync"], &plan, &[("IT_DIAG_DB_PASSWORD", "right")]);
    assert_eq!(code, Some(0), "{out}{err}");
    let port = dst.port;
    drop(dst);
    let (_, json, _) = run(
        &["db", "sync", "--json"],
        &plan,
        &[("IT_DIAG_DB_PASSWORD", "right")],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["error_kind"], "unreachable", "port {port}: {v:#}");
}

/// A secret the plan names for the selected units that cannot be read stops the command
/// before any site's files move (exit 2), naming each one once.
#[test]
fn missing_secrets_are_named_before_anything_moves() {
    let (src, dst) = (source(), target());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("old/www/site.test")).unwrap();
    std::fs::write(w.join("old/www/site.test/index.html"), "hi").unwrap();
    std::fs::create_dir_all(w.join("new")).unwrap();
    let plan = db_plan(
        w,
        &src,
        &dst,
        "sites:\n  - from: { host: local, glob: \"old/www/*/\" }\n    to: { host: local, path: \"new/{name}/\" }\n    databases: [shop]\n\
dns:\n  provider: { kind: rfc2136, server: \"127.0.0.1:53\", tsig: { name: k., secret_env: IT_DIAG_TSIG } }\n  zones: [site.test]\n  switch: [{ from: 192.0.2.1, to: 192.0.2.2 }]\n",
    );
    for verbs in [
        &["sync"][..],
        &["cutover", "--yes"],
        &["run", "--yes"],
        &["resume"],
        &["db", "sync"],
    ] {
        let (code, out, err) = run(verbs, &plan, &[]);
        assert_eq!(code, Some(2), "{verbs:?}: {out}{err}");
        assert!(
            !w.join("new/site.test").exists(),
            "{verbs:?}: nothing moved before the secrets were checked"
        );
        assert!(err.contains("IT_DIAG_DB_PASSWORD"), "{verbs:?}: {err}");
        if verbs[0] == "sync" {
            snapshot("missing_secret_sync", w, &err);
        }
    }
    // `sync` needs no DNS key; `cutover` does.
    let (code, _, err) = run(
        &["cutover", "--yes"],
        &plan,
        &[("IT_DIAG_DB_PASSWORD", "right")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("IT_DIAG_TSIG"), "{err}");
    let (code, out, err) = run(&["sync"], &plan, &[("IT_DIAG_DB_PASSWORD", "right")]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(w.join("new/site.test/index.html").exists());
}

/// `inventory` counts the databases the plan moves (read on the source server), not only a
/// panel's.
#[test]
fn inventory_counts_the_databases_the_plan_moves() {
    let (src, dst) = (source(), target());
    let work = tempfile::tempdir().unwrap();
    let plan = db_plan(work.path(), &src, &dst, "");
    let (code, out, err) = run(&["inventory"], &plan, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("2 databases moved"), "{out}");
    snapshot("inventory_databases", work.path(), &out);
}

/// A TSIG secret the server does not have: said in words by `validate` and `dns plan`.
#[test]
fn a_rejected_tsig_key_is_said_in_words() {
    let bind = Bind::start(&[("example.test", "www 300 IN A 192.0.2.10\n")]);
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: tsig\nstate_dir: state\ndns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\", tsig: {{ name: {}, secret_env: IT_DIAG_BAD_TSIG }} }}\n  zones: [example.test]\n  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]\n",
            bind.port, bind.tsig_name
        ),
    )
    .unwrap();
    // Valid base64, not the server's secret.
    let bad = [("IT_DIAG_BAD_TSIG", "c2VjcmV0LW5vdC10aGUtc2VydmVycw==")];
    let (code, out, err) = run(&["validate"], &plan, &bad);
    assert_eq!(code, Some(2), "{out}{err}");
    let (code2, out2, err2) = run(&["dns", "plan"], &plan, &bad);
    assert_eq!(code2, Some(1), "{out2}{err2}");
    for text in [&err, &out2, &err2] {
        assert!(
            !text.contains("Some(") && !text.contains("BadSig"),
            "Debug output shown: {text}"
        );
    }
    assert!(
        err.contains("BADSIG: the server has another secret for this key"),
        "{err}"
    );
    snapshot("bad_tsig_validate", work.path(), &err);
}

/// `validate`: each problem once, quoted numbers explained, no panic on a diagnostic past
/// column 65,535 nor on a plan that is not UTF-8, one mistake repeated on 100 sites printed
/// once with a count; the verdict of a valid plan on stdout.
#[test]
fn validate_says_each_mistake_once_and_never_panics() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let plan = w.join("plan.yaml");
    let validate = |text: &[u8]| {
        std::fs::write(&plan, text).unwrap();
        run(&["validate", "--offline"], &plan, &[])
    };
    let head = "version: 1\nname: diag\nstate_dir: state\n";

    let (code, out, err) = validate(format!("{head}cutover: {{ batch: \"2\" }}\n").as_bytes());
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.matches("expected a whole number").count(), 1, "{err}");
    snapshot("validate_quoted_number", w, &err);

    let long = format!(
        "{head}sites: [{}{{ from: {{ host: olld, path: /srv/a }}, to: {{ host: local, path: /srv/b }} }}]\n",
        " ".repeat(70_000)
    );
    let (code, out, err) = validate(long.as_bytes());
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.len() < 2_000, "{} bytes", err.len());
    snapshot("validate_long_line", w, &err);

    let mut latin1 = head.as_bytes().to_vec();
    latin1.extend_from_slice(b"# caf\xe9\n");
    let (code, out, err) = validate(&latin1);
    assert_eq!(code, Some(2), "{out}{err}");
    snapshot("validate_not_utf8", w, &err);

    // The same typo on 100 sites listed on one line each, and all on one line.
    let site = |i: usize| {
        format!(
            "{{ name: s{i}, from: {{ host: local, path: /srv/a{i} }}, to: {{ host: local, path: /srv/b{i} }}, exlude: [x] }}"
        )
    };
    let listed: String = (0..100).map(|i| format!("  - {}\n", site(i))).collect();
    let (code, _, err) = validate(format!("{head}sites:\n{listed}").as_bytes());
    assert_eq!(code, Some(2));
    assert_eq!(err.matches("unknown key `exlude`").count(), 1, "{err}");
    assert!(
        err.contains("= and 99 more like it: sites[1].exlude (6:"),
        "{err}"
    );
    assert!(
        err.contains("error: [TMP]/plan.yaml: 100 errors, 0 warnings")
            || err.contains("100 errors, 0 warnings"),
        "{err}"
    );
    snapshot("validate_repeated_mistake", w, &err);
    let one_line: Vec<String> = (0..100).map(site).collect();
    let (code, _, err) = validate(format!("{head}sites: [{}]\n", one_line.join(", ")).as_bytes());
    assert_eq!(code, Some(2));
    assert!(
        err.len() < 3_000,
        "{} bytes for one mistake:\n{err}",
        err.len()
    );

    let (code, out, err) = validate(
        format!("{head}sites:\n  - {{ name: a, from: {{ host: local, path: /srv/a }}, to: {{ host: local, path: /srv/b }} }}\n").as_bytes(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    snapshot("validate_valid", w, &out);
}
