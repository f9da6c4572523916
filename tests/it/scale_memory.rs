//! Memory bounded by the batch, not by the platform (issue 18, item 4): `sync`, `report` and
//! `status` of many tiny sites keep no site's file listing once its unit is done, so their peak
//! RSS barely grows from 500 to 2,000 sites while the listings they move grow fourfold.
//!
//! The criterion: each site holds `FILES` entries whose relative paths are ~490 bytes long, so
//! the 1,500 extra sites' listings weigh at least `1,500 * FILES * 490` bytes (~23 MB) of names
//! alone. Were they held until the end, the peak would grow by at least that much; we require
//! it to grow by less than a third of it. What may grow is the plan's own site list and the
//! folded journal (a few hundred bytes a site), well under that bound. A second test gives the
//! sites a long journal history first: it must stay in the store. No timing assertions.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Entries per site; with their long names they make each site's listing heavy.
const FILES: usize = 32;
/// One directory and one file name of about 240 bytes each: ~490 bytes of path per entry.
const LONG: usize = 240;

fn make_sites(root: &Path, n: usize) {
    let dir_name = format!("d{}", "x".repeat(LONG));
    for i in 0..n {
        let base = root
            .join("old")
            .join(format!("s{i:05}.test"))
            .join(&dir_name);
        std::fs::create_dir_all(&base).unwrap();
        for j in 0..FILES {
            let name = format!("f{j:02}{}", "y".repeat(LONG));
            std::fs::write(base.join(name), format!("{i}/{j}")).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("new")).unwrap();
    std::fs::write(
        root.join("plan.yaml"),
        "version: 1\nname: scale-memory\nstate_dir: state\ndefaults: { jobs: 2 }\nsites:\n  \
         - from: { host: local, glob: \"old/*/\" }\n    to: { host: local, path: \"new/{name}/\" }\n    \
         domains: [\"{name}\"]\n",
    )
    .unwrap();
}

/// Runs the binary in `dir`; its stdout, and its own peak RSS in bytes (`VmHWM`, written by
/// the binary at exit to `TRANSHUMANCE_PEAK_FILE`: the `ru_maxrss` of `wait4` would include
/// this test process's own peak, inherited by a child started with `vfork`).
fn run_measured(dir: &Path, args: &[&str]) -> (String, u64) {
    let name = args.join("-").replace('/', "_");
    let out_path = dir.join(format!("out-{name}.txt"));
    let peak_path = dir.join(format!("peak-{name}.txt"));
    let status = Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(args)
        .current_dir(dir)
        .env("TRANSHUMANCE_PEAK_FILE", &peak_path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "transhumance {args:?} failed: {status}");
    let kb: u64 = std::fs::read_to_string(&peak_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (std::fs::read_to_string(out_path).unwrap(), kb * 1024)
}

struct Peaks {
    sync: u64,
    report_json: u64,
    report_text: u64,
}

fn move_and_report(n: usize) -> Peaks {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    make_sites(w, n);
    let (_, sync) = run_measured(w, &["sync", "plan.yaml"]);
    let (json, report_json) = run_measured(w, &["report", "--format", "json", "plan.yaml"]);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["counts"]["pre_synced"], n, "{}", report["counts"]);
    let sites = report["sites"].as_array().unwrap();
    assert_eq!(sites.len(), n);
    for (i, s) in sites.iter().enumerate() {
        assert_eq!(s["name"], format!("s{i:05}.test"));
        assert_eq!(s["state"], "pre_synced", "{s}");
        assert_eq!(s["presyncs"], 1, "{s}");
    }
    let (text, report_text) = run_measured(w, &["report", "--format", "text", "plan.yaml"]);
    assert!(text.contains(&format!("{n} pre-synced")), "{text:.400}");
    let rows = text
        .lines()
        .filter(|l| l.starts_with("  s") && l.contains(" pre-synced "))
        .count();
    assert_eq!(rows, n, "one row per site in the table");
    let timelines = text
        .lines()
        .filter(|l| l.contains(" [pre-synced] "))
        .count();
    assert_eq!(timelines, n, "one timeline per site");
    let (status, _) = run_measured(w, &["status", "plan.yaml"]);
    assert!(status.contains(&format!("{n} pre-synced")), "{status}");
    // Every byte arrived: a site's listing was dropped, not its files.
    let last = w
        .join("new")
        .join(format!("s{:05}.test", n - 1))
        .join(format!("d{}", "x".repeat(LONG)));
    assert_eq!(std::fs::read_dir(last).unwrap().count(), FILES);
    Peaks {
        sync,
        report_json,
        report_text,
    }
}

#[test]
#[allow(clippy::print_stderr)] // the peaks measured, shown with --nocapture
fn peak_memory_grows_with_the_batch_not_with_the_sites() {
    let small = move_and_report(500);
    let large = move_and_report(2_000);
    let held_listings = 1_500 * FILES as u64 * (2 * LONG as u64 + 10);
    let bound = held_listings / 3;
    let mb = |b: u64| b as f64 / 1e6;
    for (what, a, b) in [
        ("sync", small.sync, large.sync),
        ("report json", small.report_json, large.report_json),
        ("report text", small.report_text, large.report_text),
    ] {
        eprintln!(
            "{what}: peak {:.1} MB at 500 sites, {:.1} MB at 2,000 (listings of the 1,500 more: {:.1} MB)",
            mb(a),
            mb(b),
            mb(held_listings)
        );
        assert!(
            b < a + bound,
            "{what}: peak grew from {:.1} MB to {:.1} MB, by more than {:.1} MB",
            mb(a),
            mb(b),
            mb(bound)
        );
    }
}

/// Journal entries per site written before the run, each with a `DETAIL`-byte detail: a long
/// history (re-verified databases) that only the last of is shown.
const HISTORY: usize = 12;
const DETAIL: usize = 1_000;
/// Bytes a site `report` and `status` may grow by: the site, its folded status and its rendered
/// row, with none of these held twice and no whole report string.
const REPORT_PER_SITE: u64 = 5_000;

/// `n` sites of one small file each, their journal already holding `HISTORY` unit entries each.
fn sites_with_history(root: &Path, n: usize) {
    std::fs::create_dir_all(root.join("new")).unwrap();
    std::fs::create_dir_all(root.join("state")).unwrap();
    for i in 0..n {
        let dir = root.join("old").join(format!("s{i:05}.test"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("{i}\n")).unwrap();
    }
    std::fs::write(
        root.join("plan.yaml"),
        "version: 1\nname: scale-journal\nstate_dir: state\ndefaults: { jobs: 2 }\nsites:\n  \
         - from: { host: local, glob: \"old/*/\" }\n    to: { host: local, path: \"new/{name}/\" }\n    \
         domains: [\"{name}\"]\n",
    )
    .unwrap();
    let mut journal = std::io::BufWriter::new(
        std::fs::File::create(root.join("state").join("journal.jsonl")).unwrap(),
    );
    let detail = "x".repeat(DETAIL);
    for _ in 0..HISTORY {
        for i in 0..n {
            let entry = serde_json::json!({"kind": "unit", "site": format!("s{i:05}.test"),
                "unit": format!("database db{i:05}"), "step": "verified", "ok": true,
                "detail": detail, "at": 1});
            std::io::Write::write_all(&mut journal, format!("{entry}\n").as_bytes()).unwrap();
        }
    }
}

fn journal_peaks(n: usize) -> Peaks {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    sites_with_history(w, n);
    let (_, sync) = run_measured(w, &["sync", "plan.yaml"]);
    let (json, report_json) = run_measured(w, &["report", "--format", "json", "plan.yaml"]);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["counts"]["pre_synced"], n, "{}", report["counts"]);
    let units = report["sites"][n - 1]["units"].as_array().unwrap();
    assert_eq!(units.len(), 1, "the last of a unit's entries: {units:?}");
    let (status, report_text) = run_measured(w, &["status", "plan.yaml"]);
    assert!(status.contains(&format!("{n} pre-synced")), "{status}");
    Peaks {
        sync,
        report_json,
        report_text,
    }
}

/// Issue 18, item 4: a journal's history stays in its store. Before, every process held every
/// entry (`sync` in its ledger, `status` and `report` in one list), so the peak grew by at
/// least `HISTORY * DETAIL` bytes a site (measured on 0.x: 15 to 21 KB a site with 8 entries);
/// now what grows is the plan's sites, the ledger's positions and the report's own rows.
/// Reports are written as rendered and hold each site once (its folded status moved into its
/// row): 5 to 10 KB a site before that, about 3.5 KB after, so they are held under
/// `REPORT_PER_SITE`.
#[test]
#[allow(clippy::print_stderr)] // the peaks measured, shown with --nocapture
fn peak_memory_does_not_hold_the_journal() {
    let (a, b) = (500, 4_000);
    let small = journal_peaks(a);
    let large = journal_peaks(b);
    let per_site_bound = (HISTORY * DETAIL) as u64;
    for (what, x, y, per_site_bound) in [
        ("sync", small.sync, large.sync, per_site_bound),
        (
            "report json",
            small.report_json,
            large.report_json,
            REPORT_PER_SITE,
        ),
        (
            "status",
            small.report_text,
            large.report_text,
            REPORT_PER_SITE,
        ),
    ] {
        let per_site = y.saturating_sub(x) / (b - a) as u64;
        eprintln!(
            "{what}: peak {:.1} MB at {a} sites, {:.1} MB at {b}: {per_site} bytes a site (bound {per_site_bound})",
            x as f64 / 1e6,
            y as f64 / 1e6
        );
        assert!(
            per_site < per_site_bound,
            "{what}: the peak grew by {per_site} bytes a site (bound {per_site_bound})"
        );
    }
}
