//! The whole migration lifecycle against real servers (BIND with TSIG, MariaDB, web servers on
//! two loopback addresses): crashes at several points finished by `resume`, a failing probe
//! rolled back alone, and `rollback` of confirmed sites restoring DNS exactly.

use std::path::{Path, PathBuf};

use transhumance::demo::WebServer;

use crate::cli::bin;
use crate::harness::{Bind, MariaDb};
use crate::journal_pg::SharedJournal;

// Not 127.0.0.1: the harness's BIND names its own server there, and a switch must not move it.
pub(crate) const OLD: &str = "127.0.0.3";
pub(crate) const NEW: &str = "127.0.0.2";

pub(crate) fn zone() -> String {
    format!(
        "alpha 300 IN A {OLD}\nbeta 300 IN A {OLD}\ngamma 600 IN A {OLD}\n\
         mail 300 IN A 192.0.2.99\n@ 300 IN MX 10 mail\nftp 300 IN CNAME alpha\n\
         blog 300 IN TXT \"hello\"\nstatic 300 IN A 192.0.2.50\nshop 300 IN A 192.0.2.51\n\
         @ 300 IN TXT \"v=spf1 mx -all\"\n"
    )
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

pub(crate) struct World {
    _bind_dir: (),
    pub(crate) work: tempfile::TempDir,
    pub(crate) plan: PathBuf,
    secret: String,
    /// The journal in PostgreSQL, when the world keeps it there (else the file).
    pub(crate) shared: Option<SharedJournal>,
}

/// The journal the lifecycle tests use unless they say: the file, or PostgreSQL when
/// `TRANSHUMANCE_IT_JOURNAL=postgres` (the whole lifecycle suite then runs on it).
pub(crate) fn default_journal() -> Option<SharedJournal> {
    (std::env::var("TRANSHUMANCE_IT_JOURNAL").as_deref() == Ok("postgres"))
        .then(crate::journal_pg::shared_journal)
}

impl World {
    /// Every entry of the plan's journal, wherever it is kept.
    pub(crate) fn journal(&self) -> Vec<serde_json::Value> {
        match &self.shared {
            Some(j) => j.entries(&self.plan_name()),
            None => std::fs::read_to_string(self.work.path().join("state/journal.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        }
    }

    fn plan_name(&self) -> String {
        let text = std::fs::read_to_string(&self.plan).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("name: "))
            .unwrap()
            .to_string()
    }
}

pub(crate) fn world(
    bind: &Bind,
    maria_src: &MariaDb,
    maria_dst: &MariaDb,
    port: u16,
    smtp: u16,
) -> World {
    world_on(bind, maria_src, maria_dst, port, smtp, default_journal())
}

pub(crate) fn world_on(
    bind: &Bind,
    maria_src: &MariaDb,
    maria_dst: &MariaDb,
    port: u16,
    smtp: u16,
    shared: Option<SharedJournal>,
) -> World {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for (site, title) in [("alpha", "Alpha"), ("beta", "Beta"), ("gamma", "Gamma")] {
        let dir = w.join("old/www").join(format!("{site}.example.test"));
        write(
            &dir.join("index.html"),
            format!("<title>{title}</title>").as_bytes(),
        );
        write(&dir.join("data/blob.bin"), &vec![site.len() as u8; 300_000]);
    }
    std::fs::create_dir_all(w.join("new/www")).unwrap();
    for (i, user) in ["alice", "bob"].iter().enumerate() {
        let maildir = w.join("old/vmail/example.test").join(user).join("Maildir");
        let body = format!("Subject: hello {user}\r\nMessage-ID: <{i}@example.test>\r\n\r\nhi\r\n");
        write(
            &maildir.join(format!("cur/170000000{i}.M1P1.old,S={}:2,S", body.len())),
            body.as_bytes(),
        );
        std::fs::create_dir_all(maildir.join("new")).unwrap();
        std::fs::create_dir_all(maildir.join("tmp")).unwrap();
    }
    std::fs::create_dir_all(w.join("new/vmail")).unwrap();
    maria_src.sql("CREATE DATABASE alpha_wp; USE alpha_wp; CREATE TABLE posts (id INT PRIMARY KEY, body TEXT); INSERT INTO posts SELECT seq, MD5(seq) FROM seq_1_to_2000; CREATE DATABASE shared_stats; CREATE TABLE shared_stats.hits (id INT PRIMARY KEY, n INT); INSERT INTO shared_stats.hits VALUES (1, 10);");
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: lifecycle-it\nstate_dir: state\n{}defaults: {{ jobs: 2 }}\n\
sites:\n  - name: alpha.example.test\n    from: {{ host: local, path: \"old/www/alpha.example.test/\" }}\n    to: {{ host: local, path: \"new/www/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n    databases: [\"alpha_wp\"]\n  - from: {{ host: local, glob: \"old/www/[bg]*/\" }}\n    to: {{ host: local, path: \"new/www/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n\
databases:\n  - engine: mariadb\n    from: {{ host: local, socket: \"{}\", user: root }}\n    to: {{ host: local, socket: \"{}\", user: root }}\n    names: [\"alpha_wp\", \"shared_*\"]\n    conflict: replace\n\
mail:\n  - layout: maildir\n    from: {{ host: local, path: old/vmail }}\n    to: {{ host: local, path: new/vmail }}\n\
dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\", tsig: {{ name: {}, secret_env: IT_TSIG }} }}\n  zones: [example.test]\n  nameservers: [\"127.0.0.1:{}\"]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 10s\n\
cutover:\n  batch: 2\n  freeze_files: [\".maintenance\"]\n  freeze: {{ run: \"touch {{path}}/.maintenance && echo freeze {{name}} >> {}/hooks.log\" }}\n  unfreeze: {{ run: \"rm -f {{path}}/.maintenance && echo unfreeze {{name}} >> {}/hooks.log\" }}\n  probe: {{ http: \"http://{{domain}}:{port}/\", expect: [200], timeout: 5s, banners: [\"smtp://mx.example.test:{smtp}\"] }}\n  on_failure: rollback\n",
            shared
                .as_ref()
                .map(|j| j.state_key("3s"))
                .unwrap_or_default(),
            maria_src.socket.display(),
            maria_dst.socket.display(),
            bind.port,
            bind.tsig_name,
            bind.port,
            w.display(),
            w.display(),
        ),
    )
    .unwrap();
    World {
        _bind_dir: (),
        plan,
        secret: bind.tsig_secret.clone(),
        work,
        shared,
    }
}

pub(crate) fn run(
    world: &World,
    args: &[&str],
    fault: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut cmd = bin();
    // A script, not a terminal: the commands that ask are answered with `--yes`.
    cmd.arg("--yes")
        .args(args)
        .arg(&world.plan)
        .env("IT_TSIG", &world.secret)
        .env(crate::journal_pg::PASSWORD_ENV, crate::journal_pg::PASSWORD);
    if let Some(f) = fault {
        cmd.env("TRANSHUMANCE_FAULT", f);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A resolver that still gives gamma its old address once it is switched (a stale cache, a
/// secondary left behind): gamma passes its probes through the new address, is switched, then
/// fails DNS verification and goes back. alpha and beta already get the new address there.
pub(crate) fn stale_resolver() -> Bind {
    Bind::start(&[(
        "example.test",
        &format!("alpha 300 IN A {NEW}\nbeta 300 IN A {NEW}\ngamma 600 IN A {OLD}\n"),
    )])
}

/// Makes the plan check DNS through `resolver` too (with a short verification timeout).
pub(crate) fn check_through(world: &World, resolver: &Bind) {
    let text = std::fs::read_to_string(&world.plan).unwrap().replace(
        "  verify_timeout: 10s\n",
        &format!(
            "  verify_timeout: 2s\n  resolvers: [\"127.0.0.1:{}\"]\n",
            resolver.port
        ),
    );
    std::fs::write(&world.plan, text).unwrap();
}

pub(crate) fn free_port_on_both() -> u16 {
    transhumance::demo::free_port().unwrap()
}

#[test]
fn lifecycle_survives_crashes_rolls_back_a_failing_site_and_restores_dns_exactly() {
    lifecycle_story(default_journal());
}

/// The same lifecycle with the journal in PostgreSQL (every command a controller of its own).
#[test]
fn the_lifecycle_story_holds_with_the_journal_in_postgresql() {
    lifecycle_story(Some(crate::journal_pg::shared_journal()));
}

fn lifecycle_story(shared: Option<SharedJournal>) {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = free_port_on_both();
    // The new mail host greets like an SMTP server.
    let smtp = std::net::TcpListener::bind((NEW, 0)).unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in smtp.incoming().flatten() {
            let _ = s.write_all(b"220 mx.example.test ESMTP\r\n");
        }
    });
    let world = world_on(&bind, &msrc, &mdst, port, smtp_port, shared);
    let stale = stale_resolver();
    check_through(&world, &stale);
    let w = world.work.path();
    let _old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
    let _new = WebServer::start(NEW.parse().unwrap(), port, w.join("new/www"), vec![]).unwrap();
    let original: Vec<Vec<(u32, String)>> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|s| bind.dig_ttl(&format!("{s}.example.test"), "A"))
        .collect();

    // Pre-sync twice: repeatable, sites and both databases (the tied one and the shared one).
    for _ in 0..2 {
        let (code, out, err) = run(&world, &["sync"], None);
        assert_eq!(code, Some(0), "{out}{err}");
    }
    let (code, out, _) = run(&world, &["status"], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("3 pre-synced"), "{out}");
    assert_eq!(mdst.sql("SELECT COUNT(*) FROM alpha_wp.posts"), "2000");
    assert_eq!(mdst.sql("SELECT n FROM shared_stats.hits"), "10");

    // Writes at the source after the pre-sync: the final sync must carry them.
    write(
        &w.join("old/www/alpha.example.test/late.html"),
        b"written after the pre-sync",
    );
    msrc.sql("UPDATE alpha_wp.posts SET body = 'late edit' WHERE id = 1234; UPDATE shared_stats.hits SET n = 11;");

    // Crash 1: alpha dies right after its final sync; resume finishes it.
    let (code, _, _) = run(
        &world,
        &["cutover", "--only", "alpha.example.test"],
        Some("after:final_synced"),
    );
    assert_eq!(code, None, "killed by the fault point");
    let (_, out, _) = run(&world, &["status"], None);
    assert!(
        out.contains("final-synced") && out.contains("run `resume`"),
        "{out}"
    );
    let (code, out, err) = run(&world, &["resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("confirmed     alpha.example.test"), "{out}");

    // Mail that lands on the old server after the pre-sync (and while DNS changes).
    let late = "Subject: late\r\nMessage-ID: <late@example.test>\r\n\r\nlate\r\n";
    write(
        &w.join(format!(
            "old/vmail/example.test/alice/Maildir/new/1700000099.M9P9.old,S={}",
            late.len()
        )),
        late.as_bytes(),
    );

    // Crash 2: beta dies with its switch intent written, before the update is sent.
    let (code, _, _) = run(
        &world,
        &["cutover", "--only", "beta.example.test"],
        Some("after:switching"),
    );
    assert_eq!(code, None);
    assert_eq!(bind.dig("beta.example.test", "A"), vec![OLD]);
    let (code, out, err) = run(&world, &["resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("confirmed     beta.example.test"), "{out}");

    // Crash 3: gamma dies switched, before DNS verification; resume verifies, a resolver still
    // gives the old address, gamma alone goes back.
    let (code, _, _) = run(&world, &["cutover", "--batch", "2"], Some("after:switched"));
    assert_eq!(code, None);
    assert_eq!(bind.dig("gamma.example.test", "A"), vec![NEW]);
    let (code, out, _) = run(&world, &["resume"], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("rolled-back   gamma.example.test: DNS not served everywhere: resolver"),
        "{out}"
    );

    // Everything moved is verified: files, messages (the late one swept), and rows including
    // the late edit.
    assert_eq!(
        std::fs::read_dir(w.join("new/vmail/example.test/alice/Maildir/new"))
            .unwrap()
            .count(),
        1,
        "the late message was swept to the target"
    );
    assert!(
        w.join("new/vmail/example.test/bob/Maildir/cur")
            .read_dir()
            .unwrap()
            .count()
            == 1
    );
    assert_eq!(
        std::fs::read(w.join("new/www/alpha.example.test/late.html")).unwrap(),
        b"written after the pre-sync"
    );
    assert_eq!(
        mdst.sql("SELECT body FROM alpha_wp.posts WHERE id = 1234"),
        "late edit"
    );
    assert_eq!(mdst.sql("SELECT n FROM shared_stats.hits"), "11");
    let (code, out, _) = run(&world, &["verify"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![NEW]);
    assert_eq!(bind.dig("beta.example.test", "A"), vec![NEW]);
    // gamma is back exactly as it was, TTL included; its source is open again.
    assert_eq!(bind.dig_ttl("gamma.example.test", "A"), original[2]);
    assert!(!w.join("old/www/gamma.example.test/.maintenance").exists());

    // A second cutover of everything leaves the confirmed sites alone and retries gamma; it
    // dies with gamma's freeze under way (crash 4), and resume freezes again and goes on.
    let (code, _, _) = run(&world, &["cutover"], Some("after:freezing"));
    assert_eq!(code, None);
    let (code, out, _) = run(&world, &["resume"], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled-back   gamma.example.test"), "{out}");
    assert!(!out.contains("alpha.example.test"), "{out}");
    let (_, out, _) = run(&world, &["status"], None);
    assert!(out.contains("2 confirmed · 1 rolled-back"), "{out}");

    // Rolling back the confirmed batch restores DNS exactly and unfreezes the sources.
    let (code, out, err) = run(&world, &["rollback"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    for (i, s) in ["alpha", "beta", "gamma"].iter().enumerate() {
        assert_eq!(
            bind.dig_ttl(&format!("{s}.example.test"), "A"),
            original[i],
            "{s}"
        );
        assert!(
            !w.join(format!("old/www/{s}.example.test/.maintenance"))
                .exists()
        );
    }
    let hooks = std::fs::read_to_string(w.join("hooks.log")).unwrap();
    assert!(
        hooks.contains("freeze 'alpha.example.test'")
            || hooks.contains("freeze alpha.example.test"),
        "{hooks}"
    );
    assert!(hooks.contains("unfreeze alpha.example.test"), "{hooks}");

    // The report tells each site's story.
    let (code, out, _) = run(&world, &["report", "--format", "json"], None);
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sites = report["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 3);
    let gamma = sites
        .iter()
        .find(|s| s["name"] == "gamma.example.test")
        .unwrap();
    assert_eq!(gamma["state"], "rolled_back");
    assert!(
        gamma["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["state"] == "switched")
    );
    let alpha = sites
        .iter()
        .find(|s| s["name"] == "alpha.example.test")
        .unwrap();
    assert!(alpha["dns"].as_array().unwrap().len() >= 2, "{alpha}");
    assert!(alpha["units"][0]["unit"] == "database alpha_wp", "{alpha}");
    let probes = alpha["probes"].as_array().unwrap();
    assert!(
        probes.iter().any(|p| p["url"]
            .as_str()
            .unwrap()
            .starts_with("smtp://mx.example.test")
            && p["ok"] == true),
        "{alpha}"
    );
    let (code, html, _) = run(&world, &["report", "--format", "html"], None);
    assert_eq!(code, Some(0));
    assert!(html.contains("<!DOCTYPE html>") && !html.contains("<script"));
    assert!(!html.contains(&world.secret) && !out.contains(&world.secret));
}

#[test]
fn cutover_refuses_when_ttls_were_not_lowered_and_names_unknown_sites() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let world = world(&bind, &msrc, &mdst, 9, 25);
    // Ask for a lower TTL: switching before it was lowered and waited for is unsafe.
    let text = std::fs::read_to_string(&world.plan).unwrap().replace(
        "verify_timeout: 10s",
        "verify_timeout: 10s\n  lower_ttl: 30",
    );
    std::fs::write(&world.plan, text).unwrap();
    let (code, _, err) = run(&world, &["cutover"], None);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("[ttl-not-expired]") && err.contains("--allow ttl-not-expired"),
        "{err}"
    );
    assert!(
        !world
            .work
            .path()
            .join("old/www/alpha.example.test/.maintenance")
            .exists(),
        "nothing was frozen"
    );
    let (code, _, err) = run(&world, &["cutover", "--only", "nope.example.test"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`nope.example.test` is not a site of the plan"),
        "{err}"
    );
}

#[test]
fn demo_runs_the_whole_lifecycle_with_one_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("confirmed     alpha.demo.test"), "{text}");
    assert!(
        text.contains("failed        gamma.demo.test: probe of gamma.demo.test through the new address, before the switch"),
        "{text}"
    );
    assert!(text.contains("gamma.demo.test. 1 IN A 127.0.0.1"), "{text}");
    assert!(text.contains("HTML report:"), "{text}");
}

#[test]
fn a_failing_probe_under_pause_waits_for_a_human_then_rolls_back_on_request() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = free_port_on_both();
    let world = world(&bind, &msrc, &mdst, port, 25);
    let stale = stale_resolver();
    check_through(&world, &stale);
    let text = std::fs::read_to_string(&world.plan)
        .unwrap()
        .replace("on_failure: rollback", "on_failure: pause")
        .replace(", banners: [\"smtp://mx.example.test:25\"]", "");
    std::fs::write(&world.plan, text).unwrap();
    let w = world.work.path();
    let _old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
    let _new = WebServer::start(NEW.parse().unwrap(), port, w.join("new/www"), vec![]).unwrap();
    let original = bind.dig_ttl("gamma.example.test", "A");
    let (code, out, err) = run(&world, &["cutover", "--only", "gamma.example.test"], None);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("paused        gamma.example.test: DNS not served everywhere"),
        "{out}"
    );
    // Paused: the switch stays and the source stays frozen until someone decides.
    assert_eq!(bind.dig("gamma.example.test", "A"), vec![NEW]);
    assert!(w.join("old/www/gamma.example.test/.maintenance").exists());
    let (_, out, _) = run(&world, &["status"], None);
    assert!(
        out.contains("paused") && out.contains("gamma.example.test"),
        "{out}"
    );
    let (code, out, err) = run(&world, &["rollback", "--only", "gamma.example.test"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(bind.dig_ttl("gamma.example.test", "A"), original);
    assert!(!w.join("old/www/gamma.example.test/.maintenance").exists());
}

#[test]
fn run_goes_through_every_phase_and_writes_the_html_report() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port_on_both();
    let scenario = transhumance::demo::build(tmp.path(), port).unwrap();
    let _old = WebServer::start(
        transhumance::demo::OLD_ADDRESS.parse().unwrap(),
        port,
        tmp.path().join("old-dc/www"),
        vec![],
    )
    .unwrap();
    let _new = WebServer::start(
        transhumance::demo::NEW_ADDRESS.parse().unwrap(),
        port,
        tmp.path().join("new-dc/www"),
        vec![transhumance::demo::BROKEN_SITE.into()],
    )
    .unwrap();
    // A TTL wait longer than allowed stops the run after the pre-sync and the lowering.
    let out = bin()
        .args(["run", "--yes", "--max-wait", "0s"])
        .arg(&scenario.plan)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("run `transhumance run` again then"), "{err}");
    let zone = std::fs::read_to_string(&scenario.zone_file).unwrap();
    assert!(zone.contains("alpha.demo.test. 1 IN A 127.0.0.1"), "{zone}");
    // Run again: the wait is short enough now, every phase runs.
    let out = bin()
        .args(["run", "--yes"])
        .arg(&scenario.plan)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("confirmed     beta.demo.test"), "{text}");
    assert!(text.contains("failed        gamma.demo.test"), "{text}");
    let html = std::fs::read_to_string(tmp.path().join("state/report.html")).unwrap();
    assert!(
        html.contains("gamma.demo.test") && html.contains("502"),
        "{html}"
    );
}

/// Issue 12: databases no site names were copied again by every later `sync` and every cutover
/// batch, even once sites using them were live on the new side.
#[test]
fn a_shared_database_is_not_copied_again_once_a_site_using_it_is_live() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = free_port_on_both();
    let world = world(&bind, &msrc, &mdst, port, 25);
    let text = std::fs::read_to_string(&world.plan)
        .unwrap()
        .replace(", banners: [\"smtp://mx.example.test:25\"]", "");
    std::fs::write(&world.plan, text).unwrap();
    let w = world.work.path();
    let _old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
    let _new = WebServer::start(NEW.parse().unwrap(), port, w.join("new/www"), vec![]).unwrap();

    let (code, out, err) = run(&world, &["cutover", "--batch", "1"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("confirmed     alpha.example.test"), "{out}");
    assert_eq!(mdst.sql("SELECT n FROM shared_stats.hits"), "10");

    // alpha and beta are served from the new side: their users write the shared database there.
    mdst.sql("INSERT INTO shared_stats.hits VALUES (2, 99)");
    msrc.sql("UPDATE shared_stats.hits SET n = 12");
    let (code, out, err) = run(&world, &["cutover", "--batch", "2"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("confirmed     gamma.example.test"), "{out}");
    assert_eq!(
        mdst.sql("SELECT n FROM shared_stats.hits WHERE id = 2"),
        "99",
        "the row written at the new side survives batch 2"
    );
    assert_eq!(
        mdst.sql("SELECT n FROM shared_stats.hits WHERE id = 1"),
        "10"
    );

    // Nor does a later pre-sync copy it again.
    let (code, out, err) = run(&world, &["sync"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        mdst.sql("SELECT n FROM shared_stats.hits WHERE id = 2"),
        "99"
    );

    // The journal says why it was left alone, each time.
    let journal = world.journal();
    let skipped = journal
        .iter()
        .filter(|e| {
            e["kind"] == "unit"
                && e["unit"] == "database shared_stats"
                && e["ok"] == true
                && e["detail"].as_str().is_some_and(|d| {
                    d.starts_with("skipped: may be live on the new side (site `alpha.example.test` is confirmed)")
                })
        })
        .count();
    assert_eq!(skipped, 2, "{journal:?}");
}

/// Issue 13: a device node in a web root was recreated at the target as root, silently. It is
/// refused by default: an `error` risk in the dry run (path, major:minor), the site's sync
/// fails with it while the other sites go on, nothing is created for it at the target; the
/// plan key `devices: keep` recreates it, and verification then agrees.
#[test]
fn a_device_node_in_a_site_is_refused_unless_the_plan_keeps_it() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !crate::harness::root_or_skip("a_device_node_in_a_site_is_refused_unless_the_plan_keeps_it")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for site in ["holed", "clean"] {
        write(
            &w.join(format!("old/{site}/index.html")),
            b"<title>hi</title>",
        );
    }
    std::fs::create_dir_all(w.join("old/holed/dev")).unwrap();
    crate::harness::mknod_char(&w.join("old/holed/dev/mem"), 1, 1);
    let plan = w.join("plan.yaml");
    let write_plan = |devices: &str| {
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: devices-it\nstate_dir: state\n\
sites:\n  - from: {{ host: local, glob: \"old/*/\" }}\n    to: {{ host: local, path: \"new/{{name}}/\" }}\n{devices}"
            ),
        )
        .unwrap();
    };
    let cli = |args: &[&str]| {
        let out = bin().args(args).arg(&plan).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    write_plan("");

    // The dry run: one error risk naming the node and its numbers.
    let (code, out, err) = cli(&["plan", "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let risks: Vec<&serde_json::Value> = report["risks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "device_refused")
        .collect();
    assert_eq!(risks.len(), 1, "{report:#}");
    assert_eq!(
        (risks[0]["severity"].as_str(), risks[0]["subject"].as_str()),
        (Some("error"), Some("holed"))
    );
    let message = risks[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("`dev/mem`: character device 1:1 refused")
            && message.contains("devices: keep"),
        "{message}"
    );

    // The sync: the site fails with the reason, the other one is synced, no node is made.
    let (code, out, err) = cli(&["sync"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let both = format!("{out}{err}");
    assert!(
        both.contains("holed") && both.contains("`dev/mem`: character device 1:1 refused"),
        "{both}"
    );
    assert!(std::fs::symlink_metadata(w.join("new/holed/dev/mem")).is_err());
    assert!(w.join("new/clean/index.html").exists());
    let (_, out, _) = cli(&["status"]);
    assert!(out.contains("failed") && out.contains("holed"), "{out}");
    // Verification says why the site is not a copy, in words.
    let (code, out, _) = cli(&["verify"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("refused   holed: dev/mem: character device 1:1 refused"),
        "{out}"
    );

    // A bad value is invalid input, placed in the file.
    write_plan("    devices: sometimes\n");
    let (code, _, err) = cli(&["validate"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:7:14: error", plan.display())),
        "{err}"
    );

    // Kept on the operator's word: recreated with its numbers, verified, no risk left.
    write_plan("    devices: keep\n");
    let (code, out, err) = cli(&["plan", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = cli(&["sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let node = std::fs::symlink_metadata(w.join("new/holed/dev/mem")).unwrap();
    assert!(node.file_type().is_char_device());
    assert_eq!(node.rdev(), libc::makedev(1, 1));
    let (code, out, _) = cli(&["verify"]);
    assert_eq!(code, Some(0), "{out}");
}

/// Issue 13: the README's freeze (`touch {path}/.maintenance`) ran before the final sync, so
/// the marker went to the new side, which then served its maintenance page. Declared in
/// `cutover.freeze_files`, it is never copied, compared or deleted there: the site verifies and
/// is confirmed with no marker at the target. Undeclared, `validate` and the dry run warn.
#[test]
fn a_declared_freeze_marker_never_reaches_the_new_side() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = free_port_on_both();
    let world = world(&bind, &msrc, &mdst, port, 25);
    let text = std::fs::read_to_string(&world.plan)
        .unwrap()
        .replace(", banners: [\"smtp://mx.example.test:25\"]", "");
    std::fs::write(&world.plan, &text).unwrap();
    let w = world.work.path();
    let _old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
    let _new = WebServer::start(NEW.parse().unwrap(), port, w.join("new/www"), vec![]).unwrap();
    let (code, _, err) = run(&world, &["validate"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("freeze_files"), "{err}");

    // Pre-synced, then cut over: the freeze writes the marker at the source before the final
    // sync, as the README's example does.
    let (code, out, err) = run(&world, &["sync", "--only", "alpha.example.test"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&world, &["cutover", "--only", "alpha.example.test"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("confirmed     alpha.example.test"), "{out}");
    assert!(
        w.join("old/www/alpha.example.test/.maintenance").exists(),
        "the source stays frozen"
    );
    assert!(
        !w.join("new/www/alpha.example.test/.maintenance").exists(),
        "the freeze marker reached the new side"
    );
    assert!(w.join("new/www/alpha.example.test/index.html").exists());
    let journal = world.journal();
    let verified = journal.iter().any(|e| {
        e["kind"] == "site" && e["site"] == "alpha.example.test" && e["state"] == "verified"
    });
    assert!(verified, "{journal:?}");

    // A marker the plan does not declare: a warning on the freeze command, and in the dry run.
    let undeclared = text.replace("  freeze_files: [\".maintenance\"]\n", "");
    assert_ne!(undeclared, text);
    std::fs::write(&world.plan, &undeclared).unwrap();
    let line = undeclared
        .lines()
        .position(|l| l.starts_with("  freeze:"))
        .unwrap()
        + 1;
    let (code, _, err) = run(&world, &["validate"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("{}:{line}:", world.plan.display()))
            && err.contains("warning: the freeze command names `{path}/.maintenance`")
            && err.contains("freeze_files: [\".maintenance\"]"),
        "{err}"
    );
    let (_, out, err) = run(&world, &["plan", "--json"], None);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let risk = report["risks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "freeze_file_undeclared")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(risk["severity"], "warning");
    assert_eq!(risk["subject"], "cutover.freeze.run");
}
