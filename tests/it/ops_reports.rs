//! Reports that tell the weekend (issue 17): the demo's world run for real (two web servers
//! on two loopback addresses, a zone file, Maildir mail), then a re-cutover of the failing site,
//! a cutover killed after its freeze and finished by `resume`. `status` and every form of
//! `report` must show mail, TTL rows with their old and new TTL, each site's downtime and the
//! batch's distribution, every probe of every attempt, and the marks that explain the second
//! and third `freezing`; text tables fit the terminal.

use std::path::Path;

use transhumance::demo::{BROKEN_SITE, NEW_ADDRESS, OLD_ADDRESS, WebServer};

use crate::ops_diagnostics::run;

/// Snapshots `text` with what changes from run to run replaced: the temp dir, times, the port,
/// durations, rates and the user.
fn snapshot(name: &str, dir: &Path, text: &str) {
    let tmp = dir.display().to_string().replace('.', r"\.");
    insta::with_settings!({filters => vec![
        (tmp.as_str(), "[TMP]"),
        // Lines whose wrapping depends on measured figures.
        (r"Pre-syncs moved [^\n]*\n(    [^\n]*\n)?", "[PRE-SYNC RATE]\n"),
        (r"Downtime \(source frozen[^\n]*\n(    [^\n]*\n)?", "[DOWNTIME DISTRIBUTION]\n"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r":\d{2,5}/", ":[PORT]/"),
        (r"\b\d+\.\d{3}s\b", "[MILLIS]"),
        // Whether an exposure has ended depends on how fast the run went.
        (r"\], (over|lasts)\b", "], [OVER]"),
        (r"\b\d+s\b", "[SECS]"),
        (r"moved [\d.]+ [KMG]?i?B/s", "moved [RATE]/s"),
        (r"by [a-z0-9_ -]+\)", "by [USER])"),
        (r"uid \d+", "[USER]"),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn reports_show_mail_ttls_downtime_every_attempt_and_the_marks_of_a_weekend() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = transhumance::demo::free_port().unwrap();
    let scenario = transhumance::demo::build(dir, port).unwrap();
    let _old = WebServer::start(
        OLD_ADDRESS.parse().unwrap(),
        port,
        dir.join("old-dc/www"),
        vec![],
    )
    .unwrap();
    let _new = WebServer::start(
        NEW_ADDRESS.parse().unwrap(),
        port,
        dir.join("new-dc/www"),
        vec![BROKEN_SITE.into()],
    )
    .unwrap();
    let plan = &scenario.plan;
    // Pre-sync, TTLs lowered, their wait, the cutover: gamma fails its probe (attempt 1).
    let (code, out, err) = run(&["run", "--yes"], plan, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    // Attempt 2: the same failure, its probes kept beside the first ones.
    let gamma = ["--only", BROKEN_SITE];
    let (code, out, err) = run(&[&["cutover", "--yes"][..], &gamma].concat(), plan, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    // Attempt 3: killed right after the freeze, finished by `resume`.
    let (code, _, _) = run(
        &[&["cutover", "--yes"][..], &gamma].concat(),
        plan,
        &[("TRANSHUMANCE_FAULT", "after:frozen")],
    );
    assert_eq!(code, None, "killed by the fault");
    let (code, status, _) = run(&["status"], plan, &[("COLUMNS", "100")]);
    assert_eq!(code, Some(0));
    assert!(status.contains("frozen since"), "{status}");
    let (code, out, err) = run(&["resume"], plan, &[]);
    assert_eq!(code, Some(1), "gamma fails again: {out}{err}");

    let (code, status, err) = run(&["status"], plan, &[("COLUMNS", "100")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        status.contains("mail[0] (maildir)"),
        "mail in status: {status}"
    );
    // The windows of the confirmed sites: measured, and the same in every form.
    assert!(
        status.contains("Windows (freeze: freeze to switch"),
        "{status}"
    );
    snapshot("status", dir, &status);

    let (code, text, err) = run(&["report"], plan, &[("COLUMNS", "100")]);
    assert_eq!(code, Some(0), "{err}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than the terminal: {line}"
        );
    }
    assert!(!text.contains("lower_ttl"), "phases in words: {text}");
    assert!(
        text.contains("lower TTL alpha.demo.test. A: 127.0.0.1, TTL 3 → 1 (applied)"),
        "{text}"
    );
    assert_eq!(
        text.matches("probe  FAILED http://gamma.demo.test").count(),
        3,
        "every attempt's failed probe: {text}"
    );
    for mark in [
        "** attempt 2 (the one before ended failed)",
        "** attempt 3 (the one before ended failed)",
        "stopped here without an end (killed or crashed)",
        "** taken up by run",
    ] {
        assert!(text.contains(mark), "`{mark}` missing:\n{text}");
    }
    snapshot("report_text", dir, &text);

    let (_, markdown, _) = run(&["report", "--format", "markdown"], plan, &[]);
    assert!(
        markdown.contains("## Mail and databases of no site"),
        "{markdown}"
    );
    snapshot("report_markdown", dir, &markdown);

    let (_, html, _) = run(&["report", "--format", "html"], plan, &[]);
    for needle in [
        "<h2>Mail and databases of no site</h2>",
        "<code>mail[0] (maildir)</code>",
        "Downtime (source frozen",
        "<td>DNS lower TTL</td><td><code>alpha.demo.test. A</code> 127.0.0.1, TTL 3 → 1</td>",
        "<li class=\"mark\">⚑ attempt 2",
        "probe (attempt 1, before the switch)",
        "probe (attempt 3, before the switch)",
    ] {
        assert!(html.contains(needle), "`{needle}` missing from the HTML");
    }

    let (_, json, _) = run(&["report", "--format", "json"], plan, &[]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let gamma = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == BROKEN_SITE)
        .unwrap();
    assert_eq!(gamma["attempts"], 3, "{gamma:#}");
    let attempts: Vec<u64> = gamma["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3], "{gamma:#}");
    let kinds: Vec<&str> = gamma["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["attempt", "attempt", "interrupted", "resumed"],
        "{gamma:#}"
    );
    assert!(gamma["downtime_secs"].is_u64(), "{gamma:#}");
    assert!(gamma.get("window").is_none(), "never switched: {gamma:#}");
    let alpha = &v["sites"][0];
    let w = &alpha["window"];
    let (frozen, switched) = (
        w["frozen_at_ms"].as_u64().unwrap(),
        w["switched_at_ms"].as_u64().unwrap(),
    );
    assert!(frozen <= switched, "{w:#}");
    assert_eq!(w["freeze_ms"].as_u64(), Some(switched - frozen), "{w:#}");
    assert!(
        w["freeze_ms"].as_u64().unwrap() <= alpha["downtime_secs"].as_u64().unwrap() * 1000 + 999,
        "the freeze window is within the downtime: {alpha:#}"
    );
    // The demo lowered TTL 3 to 1 before the switch: resolvers may hold 1 s of the old one.
    assert_eq!(w["old_ttl_secs"].as_u64(), Some(1), "{w:#}");
    assert_eq!(w["exposure_secs"].as_u64(), Some(1), "{w:#}");
    assert_eq!(
        w["exposure_until"].as_u64(),
        Some(switched / 1000 + 1),
        "{w:#}"
    );
    assert!(w["exposure_over"].is_boolean(), "{w:#}");
    let freeze = format!(
        "{}.{:03}s",
        w["freeze_ms"].as_u64().unwrap() / 1000,
        w["freeze_ms"].as_u64().unwrap() % 1000
    );
    assert!(
        text.contains(&format!("window freeze {freeze} · DNS exposure 1s (TTL 1)")),
        "{text}"
    );
    assert!(
        status.contains(&freeze),
        "status and report agree: {status}"
    );
    assert!(markdown.contains(&format!("| {freeze} |")), "{markdown}");
    assert!(
        html.contains(&format!("freeze window {freeze}")),
        "the HTML"
    );
    let all = &v["downtime"][0];
    assert_eq!(all["sites"], 3, "{v:#}");
    let dns = v["sites"][0]["dns"][0].clone();
    assert_eq!(
        (
            dns["phase"].as_str(),
            dns["from_ttl"].as_u64(),
            dns["ttl"].as_u64()
        ),
        (Some("lower_ttl"), Some(3), Some(1)),
        "{dns:#}"
    );
    assert!(v["platform"][0]["unit"] == "mail[0] (maildir)", "{v:#}");
}

/// Narrow terminals: paths are cut in the middle with `…` and the last column wraps; without
/// a terminal (a pipe, a file) lines stay whole.
#[test]
fn text_tables_fit_the_terminal_width() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let long = "a-site-with-a-rather-long-name-that-goes-on-and-on.example.test";
    std::fs::create_dir_all(dir.join("old/www").join(long)).unwrap();
    std::fs::write(dir.join("old/www").join(long).join("index.html"), "hi").unwrap();
    std::fs::create_dir_all(dir.join("new")).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: narrow\nstate_dir: state\nsites:\n  - from: { host: local, glob: \"old/www/*/\" }\n    to: { host: local, path: \"new/srv/customers/hosting/www/{name}/htdocs/\" }\n",
    )
    .unwrap();
    let (code, wide, _) = run(&["plan"], &plan, &[]);
    assert_eq!(code, Some(0), "{wide}");
    assert!(
        wide.lines().any(|l| l.chars().count() > 120),
        "a pipe keeps lines whole: {wide}"
    );
    let (code, narrow, _) = run(&["plan"], &plan, &[("COLUMNS", "100")]);
    assert_eq!(code, Some(0));
    for line in narrow.lines().filter(|l| l.starts_with("  ")) {
        assert!(line.chars().count() <= 100, "wider than 100: {line}");
    }
    assert!(narrow.contains('…'), "{narrow}");
    let table: String = narrow
        .lines()
        .skip_while(|l| !l.starts_with("  SITE"))
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    snapshot("plan_table_100_columns", dir, &table);
}
