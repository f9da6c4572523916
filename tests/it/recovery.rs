//! Recovery reads the world: a crash between a DNS intent and its update is resolved from what
//! the servers serve, a site is rolled back only once its records are exactly as before, and
//! `resume` finishes every batch of an interrupted cutover (regressions of issue 12).

use transhumance::demo::WebServer;

use crate::harness::{Bind, MariaDb};
use crate::lifecycle::{NEW, OLD, World, free_port_on_both, run, world, zone};

struct Setup {
    bind: Bind,
    world: World,
    _servers: (MariaDb, MariaDb, WebServer, WebServer),
}

/// The lifecycle test's world (alpha, beta, gamma; gamma's new side answers 502), without the
/// SMTP banner, with `edit` applied to the plan.
fn setup(edit: impl Fn(String) -> String) -> Setup {
    let bind = Bind::start(&[("example.test", &zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = free_port_on_both();
    let world = world(&bind, &msrc, &mdst, port, 25);
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
        vec!["gamma.example.test".into()],
    )
    .unwrap();
    Setup {
        bind,
        world,
        _servers: (msrc, mdst, old, new),
    }
}

#[test]
fn a_kill_between_the_rollback_intent_and_its_update_never_reads_as_rolled_back() {
    let s = setup(|t| t);
    let original = s.bind.dig_ttl("gamma.example.test", "A");
    // gamma fails its probe; its automatic rollback dies after the DNS intent, before the update.
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
    let s = setup(|t| {
        t.replace(
            "  verify_timeout: 10s\n",
            "  verify_timeout: 10s\n  lower_ttl: 5\n",
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
    let s = setup(|t| t.replace("  batch: 2\n", "  batch: 1\n"));
    let (code, out, err) = run(&s.world, &["sync"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    // Killed when the first batch (alpha) is final-synced: beta and gamma were never reached.
    let (code, _, _) = run(&s.world, &["cutover"], Some("after:final_synced"));
    assert_eq!(code, None);
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(code, Some(1), "gamma is rolled back: {out}{err}");
    assert!(out.contains("confirmed     alpha.example.test"), "{out}");
    assert!(out.contains("confirmed     beta.example.test"), "{out}");
    assert!(out.contains("rolled-back   gamma.example.test"), "{out}");
    assert_eq!(s.bind.dig("beta.example.test", "A"), vec![NEW]);
    // Nothing is left: a second resume has nothing to do.
    let (code, out, err) = run(&s.world, &["resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("beta"), "{out}");
}

#[test]
fn resume_finishes_the_sites_a_killed_rollback_had_not_reached() {
    let s = setup(|t| t.replace("defaults: { jobs: 2 }", "defaults: { jobs: 1 }"));
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
