//! Recovery reads the world: a crash between a DNS intent and its update is resolved from what
//! the servers serve, a site is rolled back only once its records are exactly as before, and
//! `resume` finishes every batch of an interrupted cutover (regressions of issue 12).

use transhumance::demo::WebServer;

use crate::harness::{Bind, MariaDb};
use crate::journal_pg::{SharedJournal, shared_journal};
use crate::lifecycle::{
    NEW, OLD, World, check_through, default_journal, free_port_on_both, run, stale_resolver,
    world_on, zone,
};

struct Setup {
    bind: Bind,
    world: World,
    _servers: (MariaDb, MariaDb, WebServer, WebServer, Bind),
}

/// How gamma fails in a setup.
#[derive(PartialEq)]
enum Gamma {
    /// Its new side answers 502: its probe before the switch fails, it is never switched.
    BrokenBackend,
    /// A resolver keeps its old address: it is switched, then fails DNS verification.
    StaleResolver,
}

/// The lifecycle test's world (alpha, beta, gamma failing as `gamma` says), without the SMTP
/// banner, with `edit` applied to the plan.
fn setup(gamma: Gamma, edit: impl Fn(String) -> String) -> Setup {
    setup_on(gamma, edit, default_journal())
}

/// As `setup`, with the journal kept by `shared` (PostgreSQL) or the file.
fn setup_on(gamma: Gamma, edit: impl Fn(String) -> String, shared: Option<SharedJournal>) -> Setup {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = free_port_on_both();
    let world = world_on(&bind, &msrc, &mdst, port, 25, shared);
    let stale = stale_resolver();
    if gamma == Gamma::StaleResolver {
        check_through(&world, &stale);
    }
    let text = std::fs::read_to_string(&world.plan)
        .unwrap()
        .replace(", banners: [\"smtp://mx.example.test:25\"]", "");
    std::fs::write(&world.plan, edit(text)).unwrap();
    let w = world.work.path();
    let old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
    let new = WebServer::start(
        NEW.parse().unwrap(),
        port,
        w.join("new/www"),
        if gamma == Gamma::BrokenBackend {
            vec!["gamma.example.test".into()]
        } else {
            Vec::new()
        },
    )
    .unwrap();
    Setup {
        bind,
        world,
        _servers: (msrc, mdst, old, new, stale),
    }
}

#[test]
fn a_kill_between_the_rollback_intent_and_its_update_never_reads_as_rolled_back() {
    a_kill_between_the_rollback_intent_and_its_update(default_journal());
}

#[test]
fn a_kill_between_the_rollback_intent_and_its_update_with_the_journal_in_postgresql() {
    a_kill_between_the_rollback_intent_and_its_update(Some(shared_journal()));
}

fn a_kill_between_the_rollback_intent_and_its_update(shared: Option<SharedJournal>) {
    let s = setup_on(Gamma::StaleResolver, |t| t, shared);
    let original = s.bind.dig_ttl("gamma.example.test", "A");
    // gamma fails its DNS verification; its automatic rollback dies after the DNS intent,
    // before the update.
    let (code, _, _) = run(
        &s.world,
        &["cutover", "--only", "gamma.example.test"],
        Some("after:dns_intent:rollback"),
    );
    assert_eq!(code, None, "killed by the fault point");
    assert_eq!(s.bind.dig("gamma.example.test", "A"), vec![NEW]);
    let (_, out, _) = run(&s.world, &["status"], None);
    assert!(
        out.contains("rolling-back") && !out.contains("1 rolled-back"),
        "the journal must not say rolled back while DNS serves the new side: {out}"
    );
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(
        code,
        Some(1),
        "gamma ends rolled back (a failure): {out}{err}"
    );
    assert!(out.contains("rolled-back   gamma.example.test"), "{out}");
    assert_eq!(
        s.bind.dig_ttl("gamma.example.test", "A"),
        original,
        "back exactly, TTL included"
    );
    let w = s.world.work.path();
    assert!(!w.join("old/www/gamma.example.test/.maintenance").exists());
    // Nothing is left for `dns rollback`, and it blames no one.
    let (code, out, err) = run(&s.world, &["dns", "rollback"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("changed by someone"), "{out}");
}

#[test]
fn a_kill_between_the_switch_intent_and_its_update_rolls_back_to_the_original_ttl() {
    let s = setup(Gamma::StaleResolver, |t| {
        t.replace(
            "  zones: [example.test]\n",
            "  zones: [example.test]\n  lower_ttl: 5\n",
        )
    });
    let original = s.bind.dig_ttl("gamma.example.test", "A");
    let (code, out, err) = run(&s.world, &["dns", "lower-ttl"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(s.bind.dig_ttl("gamma.example.test", "A")[0].0, 5);
    // Killed after the switch intent is durable, before the update is sent.
    let (code, _, _) = run(
        &s.world,
        &["cutover", "--only", "gamma.example.test", "--force"],
        Some("after:dns_intent:switch"),
    );
    assert_eq!(code, None);
    let (code, out, err) = run(&s.world, &["rollback"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        s.bind.dig_ttl("gamma.example.test", "A"),
        original,
        "the TTL before `lower-ttl`, not the lowered one"
    );
    let (_, out, _) = run(&s.world, &["status", "--json"], None);
    assert!(out.contains("rolled_back"), "{out}");
}

#[test]
fn resume_finishes_the_batches_a_killed_cutover_had_not_reached() {
    resume_finishes_the_batches(default_journal());
}

#[test]
fn resume_finishes_the_batches_with_the_journal_in_postgresql() {
    resume_finishes_the_batches(Some(shared_journal()));
}

fn resume_finishes_the_batches(shared: Option<SharedJournal>) {
    let s = setup_on(
        Gamma::BrokenBackend,
        |t| t.replace("  batch: 2\n", "  batch: 1\n"),
        shared,
    );
    let (code, out, err) = run(&s.world, &["sync"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    // Killed when the first batch (alpha) is final-synced: beta and gamma were never reached.
    let (code, _, _) = run(&s.world, &["cutover"], Some("after:final_synced"));
    assert_eq!(code, None);
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(code, Some(1), "gamma failed its probe: {out}{err}");
    assert!(out.contains("confirmed     alpha.example.test"), "{out}");
    assert!(out.contains("confirmed     beta.example.test"), "{out}");
    assert!(
        out.contains("failed        gamma.example.test: probe of gamma.example.test through the new address, before the switch"),
        "{out}"
    );
    assert_eq!(s.bind.dig("beta.example.test", "A"), vec![NEW]);
    // Nothing is left: a second resume has nothing to do.
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("beta"), "{out}");
}

#[test]
fn resume_finishes_the_sites_a_killed_rollback_had_not_reached() {
    let s = setup(Gamma::BrokenBackend, |t| {
        t.replace("defaults: { jobs: 2 }", "defaults: { jobs: 1 }")
    });
    let original: Vec<_> = ["alpha", "beta"]
        .iter()
        .map(|n| s.bind.dig_ttl(&format!("{n}.example.test"), "A"))
        .collect();
    let (code, out, err) = run(
        &s.world,
        &[
            "cutover",
            "--only",
            "alpha.example.test",
            "--only",
            "beta.example.test",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    // One site at a time: killed once the first is rolled back, before the second is reached.
    let (code, _, _) = run(&s.world, &["rollback"], Some("after:rolled_back"));
    assert_eq!(code, None);
    let (_, out, _) = run(&s.world, &["status"], None);
    assert!(
        out.contains("1 confirmed"),
        "one site not reached yet: {out}"
    );
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    for (i, n) in ["alpha", "beta"].iter().enumerate() {
        assert_eq!(
            s.bind.dig_ttl(&format!("{n}.example.test"), "A"),
            original[i],
            "{n}"
        );
    }
    let (_, out, _) = run(&s.world, &["status"], None);
    assert!(out.contains("2 rolled-back"), "{out}");
}

/// Issue 12: a transient failure (ssh dropped under a pre-sync) is retried on a fresh
/// connection instead of failing the site; the tree arrives whole.
#[test]
fn a_pre_sync_whose_ssh_drops_goes_on_over_a_new_connection() {
    let mut sshd = crate::harness::Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("old/site.example.test");
    // Enough files that the sync is still running when the server drops every session.
    for i in 0..3000 {
        let p = src.join(format!("d{}/f{i}.bin", i % 30));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![(i % 251) as u8; 40_000]).unwrap();
    }
    std::fs::create_dir_all(w.join("new")).unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: drop-it\nstate_dir: state\ndefaults: {{ jobs: 2 }}\n\
hosts:\n  new: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\n\
sites:\n  - name: site.example.test\n    from: {{ host: local, path: \"{}/\" }}\n    to: {{ host: new, path: \"{}/new/{{name}}/\" }}\n",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display(),
            w.display(),
            src.display(),
            w.display(),
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(["sync"])
        .arg(&plan)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drop every session once files are arriving (bounded wait; a run that finished first
    // proves nothing and says so).
    let target = w.join("new/site.example.test");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&target).map_or(0, |d| d.count()) < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dropped_mid_run = child.try_wait().unwrap().is_none();
    sshd.restart();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dropped_mid_run, "the sync ended before the drop: {text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    for i in (0..3000).step_by(97) {
        let rel = format!("d{}/f{i}.bin", i % 30);
        assert_eq!(
            std::fs::read(target.join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{rel}"
        );
    }
}

/// Issue 12: once a site serves from the new side, a pre-sync that names it is refused with
/// exit 3 (a file written there survives), a plain `sync` leaves it alone, and
/// `--allow-live site:NAME` overwrites it on purpose, journaled.
#[test]
fn a_pre_sync_never_overwrites_a_live_site_unless_allowed_by_name() {
    let s = setup(Gamma::BrokenBackend, |t| t);
    let (code, out, err) = run(&s.world, &["cutover", "--only", "alpha.example.test"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    let w = s.world.work.path();
    let live_write = w.join("new/www/alpha.example.test/comment-42.html");
    std::fs::write(&live_write, b"written by a visitor on the new side").unwrap();

    let (code, out, err) = run(&s.world, &["sync", "--only", "alpha.example.test"], None);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("site:alpha.example.test may be live on the new side")
            && out.contains("is confirmed"),
        "{out}"
    );
    assert!(live_write.exists(), "the write on the live side survives");

    let (code, out, err) = run(&s.world, &["sync"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("live on the new side, left alone"), "{out}");
    assert!(live_write.exists());

    let (code, out, err) = run(
        &s.world,
        &[
            "sync",
            "--only",
            "alpha.example.test",
            "--allow-live",
            "site:alpha.example.test",
            "--force",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!live_write.exists(), "overwritten on purpose: {out}");
    let journal = s.world.journal();
    assert!(
        journal
            .iter()
            .any(|e| e["kind"] == "override" && e["unit"] == "site:alpha.example.test"),
        "{journal:?}"
    );
    assert!(
        journal.iter().any(|e| e["overrides"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o == "allow-live site:alpha.example.test"))),
        "{journal:?}"
    );
}

/// Issue 12: a rollback that cannot put a record back (someone changed it since our switch)
/// exits 1, names it, and leaves the site `rolling-back` for `status` and a later `rollback`.
#[test]
fn a_rollback_that_leaves_a_record_alone_is_not_a_rolled_back_site() {
    let s = setup(Gamma::BrokenBackend, |t| t);
    let original = s.bind.dig_ttl("alpha.example.test", "A");
    let (code, out, err) = run(&s.world, &["cutover", "--only", "alpha.example.test"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    s.bind.nsupdate(
        "update delete alpha.example.test. A\nupdate add alpha.example.test. 300 A 192.0.2.77\n",
    );
    let (code, out, err) = run(&s.world, &["rollback"], None);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("rolling-back  alpha.example.test") && out.contains("changed by someone"),
        "{out}"
    );
    let (_, out, _) = run(&s.world, &["status"], None);
    assert!(
        out.contains("1 rolling-back")
            && out.contains("the rollback stopped")
            && out.contains("run `resume` (or `rollback`)"),
        "status says why and what to do: {out}"
    );
    // Someone puts our value back; the next rollback restores the original exactly.
    s.bind.nsupdate(&format!(
        "update delete alpha.example.test. A\nupdate add alpha.example.test. 300 A {NEW}\n"
    ));
    let (code, out, err) = run(&s.world, &["rollback"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(s.bind.dig_ttl("alpha.example.test", "A"), original);
}

#[test]
fn a_cutover_refuses_a_site_a_killed_pre_sync_left_syncing_and_says_so() {
    let s = setup(Gamma::BrokenBackend, |t| t);
    let (code, _, _) = run(&s.world, &["sync"], Some("after:syncing"));
    assert_eq!(code, None, "killed right after a site's sync intent");
    let (_, status, _) = run(&s.world, &["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let syncing = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|site| site["state"].to_string().contains("syncing"))
        .map(|site| site["name"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("a site left syncing: {v:#}"));
    // Not a success: the site is named, with what to do, and the command exits 1.
    let (code, out, err) = run(&s.world, &["cutover", "--only", &syncing], None);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("last pre-sync was interrupted (syncing): run `resume`"),
        "{out}{err}"
    );
    assert!(!out.contains("all ok"), "{out}");
    // `resume` finishes the pre-sync; the cutover then goes through.
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&s.world, &["cutover", "--only", &syncing], None);
    if syncing.starts_with("gamma") {
        assert_eq!(code, Some(1), "gamma's backend is broken: {out}{err}");
    } else {
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains(&format!("confirmed     {syncing}")), "{out}");
    }
}
