//! Issue 17, Terraform's saved plan: `plan PLAN --out FILE` keeps the reviewed plan, and
//! `cutover PLAN --plan FILE` applies exactly it, or refuses with exit 3 saying what changed
//! (a DNS record edited at the server, the plan file edited, the journal moved on). Real BIND
//! with TSIG, as the other cutover tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::Bind;
use crate::lifecycle::{NEW, OLD, zone};

const SITES: [&str; 2] = ["alpha.example.test", "beta.example.test"];

/// Two sites under `w/old/www` moved to `w/new/www`, their names switched from OLD to NEW on
/// `bind` (TTL 300, no lowering needed).
fn world(w: &Path, bind: &Bind) -> PathBuf {
    for site in SITES {
        let dir = w.join("old/www").join(site);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("<title>{site}</title>")).unwrap();
    }
    std::fs::create_dir_all(w.join("new/www")).unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: saved-plan-it\nstate_dir: state\ndefaults: {{ jobs: 1 }}\n\
sites:\n  - from: {{ host: local, glob: \"old/www/*/\" }}\n    to: {{ host: local, path: \"new/www/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n\
dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{port}\", tsig: {{ name: {key}, secret_env: IT_TSIG }} }}\n  zones: [example.test]\n  nameservers: [\"127.0.0.1:{port}\"]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 10s\n",
            port = bind.port,
            key = bind.tsig_name,
        ),
    )
    .unwrap();
    plan
}

/// Runs `transhumance --yes ARGS PLAN` with the TSIG secret in the environment.
fn run(plan: &Path, secret: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .arg("--yes")
        .args(args)
        .arg(plan)
        .env("IT_TSIG", secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn switch_intents(w: &Path) -> usize {
    std::fs::read_to_string(w.join("state/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "dns_intent" && e["phase"] == "switch")
        .count()
}

#[test]
fn a_saved_plan_is_applied_exactly_or_refused_when_the_world_changed() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let plan = world(w, &bind);
    let secret = bind.tsig_secret.as_str();
    let reviewed = w.join("reviewed.plan");
    let reviewed_arg = reviewed.to_str().unwrap();

    // The dry run, saved: the plan file's digest, the journal's state, the sites and the
    // records that will switch with the values read now.
    let (code, _, err) = run(&plan, secret, &["plan", "--out", reviewed_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("reviewed plan saved to"), "{err}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reviewed).unwrap()).unwrap();
    assert_eq!(saved["format"], "transhumance saved plan");
    assert_eq!(saved["sites"].as_array().unwrap().len(), 2, "{saved}");
    let dns = saved["dns"].as_array().unwrap();
    assert_eq!(dns.len(), 2, "{saved}");
    assert_eq!(dns[0]["key"]["name"], "alpha.example.test.");
    assert_eq!(dns[0]["from"]["values"][0], OLD);
    assert_eq!(dns[0]["to"]["values"][0], NEW);
    assert_eq!(
        saved["files"][0]["blake3"],
        blake3::hash(&std::fs::read(&plan).unwrap())
            .to_hex()
            .to_string()
    );

    // Someone edits a record at the server after the review: refused before anything is
    // frozen, the record named with what was reviewed and what is served now.
    bind.nsupdate(
        "update delete beta.example.test A\nupdate add beta.example.test 300 A 192.0.2.77",
    );
    let (code, out, err) = run(&plan, secret, &["cutover", "--plan", reviewed_arg]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert_eq!(switch_intents(w), 0, "nothing switched");
    assert!(!w.join("new/www/alpha.example.test/index.html").exists());
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![OLD]);
    insta::assert_snapshot!(
        "saved_plan_refused_dns",
        err.replace(&w.display().to_string(), "[TMP]")
    );

    // Put back as reviewed, the same saved plan applies (a refusal changed nothing), exactly:
    // both sites confirmed, both records on the new address.
    bind.nsupdate(&format!(
        "update delete beta.example.test A\nupdate add beta.example.test 300 A {OLD}"
    ));
    let (code, out, err) = run(&plan, secret, &["cutover", "--plan", reviewed_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    for site in SITES {
        assert!(out.contains(&format!("confirmed     {site}")), "{out}");
        assert_eq!(bind.dig(site, "A"), vec![NEW]);
    }
    let switched = switch_intents(w);
    assert_eq!(switched, 2);

    // Applied once, the plan is stale (the journal moved on); an edited plan file is named too.
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, format!("{text}# reviewed again on Friday\n")).unwrap();
    let (code, out, err) = run(&plan, secret, &["cutover", "--plan", reviewed_arg]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        err.contains("[plan-changed] plan file `")
            && err.contains("edited since the plan was reviewed"),
        "{err}"
    );
    assert!(
        err.contains("[plan-changed] the journal: moved on since the plan was reviewed"),
        "{err}"
    );
    assert_eq!(switch_intents(w), switched, "nothing more switched");

    // A file that is not a saved plan is invalid input.
    let (code, _, err) = run(
        &plan,
        secret,
        &["cutover", "--plan", plan.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a saved plan"), "{err}");
}
