//! Safety checks an operator can reason about (issue 13), on real BIND with TSIG and real web
//! servers: a site is proven through its new address before DNS moves, a typical small hosting
//! zone cuts over one site without any override, each named check refuses and then passes with
//! its own `--allow` (journaled), and TTL readiness follows what the servers serve now.

use std::path::Path;
use std::time::Duration;

use transhumance::demo::WebServer;

use crate::cli::bin;
use crate::harness::Bind;
use crate::lifecycle::{NEW, OLD, free_port_on_both};

/// A typical small hosting zone: SOA, NS, the name server's address, MX elsewhere, and the
/// site's `@` and `www` at the web server: 2 of its 6 RRsets switch for the site.
fn small_zone(ttl: u32) -> String {
    format!("@ {ttl} IN A {OLD}\nwww {ttl} IN A {OLD}\n@ 300 IN MX 10 mx.elsewhere.example.\n")
}

struct Small {
    bind: Bind,
    work: tempfile::TempDir,
    _web: (WebServer, WebServer),
}

impl Small {
    /// One site (`small.test`, `www.small.test`) served by an old and a new web server on
    /// loopback; `broken` names answer 502 on the new side; `dns_extra` goes under `dns:`.
    fn start(ttl: u32, broken: &[&str], dns_extra: &str) -> Small {
        let bind = Bind::start(&[("small.test", &small_zone(ttl))]);
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        for side in ["old", "new"] {
            for host in ["small.test", "www.small.test"] {
                // The web servers serve `<root>/<Host>/`: www's pages stand beside the site.
                let dir = w.join(side).join("www").join(host);
                std::fs::create_dir_all(&dir).unwrap();
                if side == "old" || host == "www.small.test" {
                    std::fs::write(dir.join("index.html"), "<title>Small</title>").unwrap();
                }
            }
        }
        let port = free_port_on_both();
        let old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
        let new = WebServer::start(
            NEW.parse().unwrap(),
            port,
            w.join("new/www"),
            broken.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap();
        std::fs::write(
            w.join("plan.yaml"),
            format!(
                "version: 1\nname: checks-it\nstate_dir: state\n\
sites:\n  - name: small.test\n    from: {{ host: local, path: \"old/www/small.test/\" }}\n    to: {{ host: local, path: \"new/www/small.test/\" }}\n    domains: [\"small.test\", \"www.small.test\"]\n\
dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{p}\", tsig: {{ name: {k}, secret_env: IT_TSIG }} }}\n  zones: [small.test]\n  nameservers: [\"127.0.0.1:{p}\"]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 5s\n{dns_extra}\
cutover:\n  freeze_files: [\".maintenance\"]\n  freeze: {{ run: \"touch {{path}}/.maintenance && echo freeze >> {w}/hooks.log\" }}\n  unfreeze: {{ run: \"rm -f {{path}}/.maintenance && echo unfreeze >> {w}/hooks.log\" }}\n  probe: {{ http: \"http://{{domain}}:{port}/\", expect: [200], timeout: 5s }}\n  on_failure: rollback\n",
                p = bind.port,
                k = bind.tsig_name,
                w = w.display(),
            ),
        )
        .unwrap();
        Small {
            bind,
            work,
            _web: (old, new),
        }
    }

    fn path(&self) -> &Path {
        self.work.path()
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        // A script, not a terminal: the commands that ask are answered with `--yes`.
        let out = bin()
            .arg("--yes")
            .args(args)
            .arg(self.path().join("plan.yaml"))
            .env("IT_TSIG", &self.bind.tsig_secret)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("state/journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The journal's check entries as `(check, verdict)`.
    fn verdicts(&self) -> Vec<(String, String)> {
        self.journal()
            .iter()
            .filter(|e| e["kind"] == "check")
            .map(|e| {
                (
                    e["finding"]["check"].as_str().unwrap().to_string(),
                    e["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn frozen(&self) -> bool {
        self.path().join("old/www/small.test/.maintenance").exists()
    }
}

#[test]
fn a_typical_small_zone_cuts_over_one_site_without_any_override() {
    let z = Small::start(300, &[], "");
    let (code, out, err) = z.run(&["plan", "--json"]);
    assert_eq!(code, Some(0), "the dry run has no error: {out}{err}");
    assert!(!out.contains("check_refuses"), "{out}");
    let (code, out, err) = z.run(&["cutover", "--only", "small.test"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("confirmed     small.test"), "{out}");
    assert!(!err.contains("overridden"), "{err}");
    assert_eq!(z.bind.dig("small.test", "A"), vec![NEW]);
    assert_eq!(z.bind.dig("www.small.test", "A"), vec![NEW]);
    assert!(z.verdicts().is_empty(), "{:?}", z.verdicts());
    // Both probe rounds ran and are in the journal: through the new address, then through DNS.
    let rounds: Vec<String> = z
        .journal()
        .iter()
        .filter(|e| e["kind"] == "probe")
        .map(|e| e["result"]["round"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        rounds,
        [
            "before_switch",
            "before_switch",
            "after_switch",
            "after_switch"
        ]
    );
    // The old side stays frozen once the new one serves; the marker never reached the target.
    assert!(z.frozen());
    assert!(!z.path().join("new/www/small.test/.maintenance").exists());
}

#[test]
fn a_site_failing_its_probe_through_the_new_address_is_never_switched() {
    let z = Small::start(300, &["small.test"], "");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("transhumance"))
        .args(["cutover", "--yes", "--only", "small.test"])
        .arg(z.path().join("plan.yaml"))
        .env("IT_TSIG", &z.bind.tsig_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // DNS is watched the whole time the cutover runs: it never gives the new address.
    let mut polls = 0;
    while child.try_wait().unwrap().is_none() {
        for name in ["small.test", "www.small.test"] {
            assert_eq!(z.bind.dig(name, "A"), vec![OLD], "{name} switched");
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(polls > 0);
    assert!(
        text.contains("failed        small.test: probe of small.test through the new address, before the switch: status 502"),
        "{text}"
    );
    assert_eq!(z.bind.dig("small.test", "A"), vec![OLD]);
    assert!(!z.frozen(), "unfrozen");
    let hooks = std::fs::read_to_string(z.path().join("hooks.log")).unwrap();
    assert_eq!(hooks, "freeze\nunfreeze\n");
    let switch_intents = z
        .journal()
        .iter()
        .filter(|e| e["kind"] == "dns_intent" && e["phase"] == "switch")
        .count();
    assert_eq!(switch_intents, 0, "no switch intent was ever journaled");
    let (_, report, _) = z.run(&["report"]);
    assert!(
        report.contains("failed") && report.contains("before the switch"),
        "{report}"
    );
}

#[test]
fn each_named_check_refuses_then_passes_with_its_own_allow() {
    // The plan applies the share rule from zones of 3 RRsets: 2 of 6 is over 30 %.
    let z = Small::start(300, &[], "  zone_share: { max: 0.30, min_rrsets: 3 }\n");

    // delete-share: the target holds many files the source does not have.
    for i in 0..6 {
        let extra = z.path().join(format!("new/www/small.test/old-{i}.html"));
        std::fs::write(extra, "left from an earlier copy").unwrap();
    }
    let (code, out, err) = z.run(&["sync"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("[delete-share]") && out.contains("--allow delete-share"),
        "{out}"
    );
    assert!(z.path().join("new/www/small.test/old-0.html").exists());
    let (code, out, err) = z.run(&["sync", "--allow", "delete-share"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("check `delete-share` overridden by --allow delete-share"),
        "{err}"
    );
    assert!(!z.path().join("new/www/small.test/old-0.html").exists());

    // zone-share: refused before anything is frozen, then let through by its name only.
    let (code, out, err) = z.run(&["cutover", "--only", "small.test"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        err.contains("[zone-share] zone small.test: 2 of its 6 RRsets would change")
            && err.contains("--allow zone-share"),
        "{err}"
    );
    assert!(!z.frozen() && !z.path().join("hooks.log").exists());
    let (code, _, err) = z.run(&["cutover", "--only", "small.test", "--allow", "live-unit"]);
    assert_eq!(
        code,
        Some(3),
        "another check's name lets nothing through: {err}"
    );
    let (code, out, err) = z.run(&["cutover", "--only", "small.test", "--allow", "zone-share"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("check `zone-share` overridden by --allow zone-share"),
        "{err}"
    );
    assert_eq!(z.bind.dig("www.small.test", "A"), vec![NEW]);

    // live-unit: the site serves from the new side now.
    let (code, out, err) = z.run(&["sync", "--only", "small.test"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("[live-unit] site:small.test"), "{out}");
    let (code, out, err) = z.run(&["sync", "--only", "small.test", "--allow", "live-unit"]);
    assert_eq!(code, Some(0), "{out}{err}");

    // --force lets every check through and still names each one.
    let (code, out, err) = z.run(&["rollback", "--only", "small.test"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = z.run(&["cutover", "--only", "small.test", "--force"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("check `zone-share` overridden by --force"),
        "{err}"
    );

    let verdicts = z.verdicts();
    for expected in [
        ("delete-share", "refused"),
        ("delete-share", "allowed"),
        ("zone-share", "refused"),
        ("zone-share", "allowed"),
        ("zone-share", "forced"),
    ] {
        assert!(
            verdicts.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not in {verdicts:?}"
        );
    }
    let journal = z.journal();
    assert!(
        journal
            .iter()
            .any(|e| e["kind"] == "override" && e["unit"] == "site:small.test"),
        "the live overwrite is journaled"
    );
    let (_, report, _) = z.run(&["report"]);
    assert!(
        report.contains("Safety checks let through")
            && report.contains("[zone-share] zone small.test")
            && report.contains("(forced)"),
        "{report}"
    );
    let runs: Vec<&serde_json::Value> = journal.iter().filter(|e| e["kind"] == "run").collect();
    assert!(
        runs.iter().any(|r| r["overrides"][0] == "allow zone-share"),
        "{runs:?}"
    );
}

#[test]
fn a_recutover_after_a_rollback_that_restored_the_ttl_waits_for_it_again() {
    // TTL 4 stands for the usual 3600: the same rules, seconds to wait instead of an hour.
    let z = Small::start(4, &[], "  lower_ttl: 1\n");
    let (code, _, err) = z.run(&["cutover"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("[ttl-not-expired] small.test. A: served with TTL 4 now"),
        "{err}"
    );
    let (code, out, err) = z.run(&["dns", "lower-ttl"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        z.bind.dig_ttl("small.test", "A"),
        vec![(1, OLD.to_string())]
    );
    // Lowered just now: resolvers may keep the old TTL for up to 4 s more.
    let (code, _, err) = z.run(&["cutover"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("resolvers may cache it with TTL 4"), "{err}");
    std::thread::sleep(Duration::from_secs(5));
    let (code, out, err) = z.run(&["cutover"]);
    assert_eq!(code, Some(0), "{out}{err}");

    // The rollback puts TTL 4 back: an old "safe after" must not let the next cutover through.
    let (code, out, err) = z.run(&["rollback"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        z.bind.dig_ttl("small.test", "A"),
        vec![(4, OLD.to_string())]
    );
    let (code, _, err) = z.run(&["cutover"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("served with TTL 4 now"), "{err}");
    // `run` lowers again (the rollback restored a high TTL) and says how long to wait.
    let (code, _, err) = z.run(&["run", "--max-wait", "0s"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("run `transhumance run` again then"), "{err}");
    assert_eq!(
        z.bind.dig_ttl("small.test", "A"),
        vec![(1, OLD.to_string())]
    );
    let (code, _, err) = z.run(&["cutover"]);
    assert_eq!(code, Some(3), "{err}");
    // The operator decides not to wait: by name, printed and journaled.
    let (code, out, err) = z.run(&["cutover", "--allow", "ttl-not-expired"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("check `ttl-not-expired` overridden by --allow ttl-not-expired"),
        "{err}"
    );
    assert!(
        z.verdicts()
            .contains(&("ttl-not-expired".into(), "allowed".into()))
    );
    let (_, report, _) = z.run(&["report"]);
    assert!(
        report.contains("TTLs still lowered") && report.contains("small.test. A TTL 1 (was 4)"),
        "{report}"
    );
    // `run` with every site confirmed puts the original TTLs back on the new values.
    let (code, out, err) = z.run(&["run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        z.bind.dig_ttl("small.test", "A"),
        vec![(4, NEW.to_string())]
    );
    assert_eq!(
        z.bind.dig_ttl("www.small.test", "A"),
        vec![(4, NEW.to_string())]
    );
    let (_, report, _) = z.run(&["report"]);
    assert!(!report.contains("TTLs still lowered"), "{report}");
}
