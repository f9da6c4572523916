//! The command line as a user meets it: validation errors, exit codes, the schema, the example plans.

use std::path::Path;

use assert_cmd::Command;

pub fn bin() -> Command {
    Command::cargo_bin("transhumance").expect("binary built")
}

#[test]
fn three_mistakes_are_all_named_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: t\nhosts:\n  old: { local: true }\nsites:\n  - from: { host: olld, glob: /var/www/*/ }\n    to: { host: local, path: \"/srv/{name}/\" }\n    exlude: [\"cache/\"]\ndefaults: { jobs: 0 }\n",
    )
    .unwrap();
    let out = bin().args(["validate"]).arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = plan.display().to_string();
    assert!(
        err.contains(&format!("{name}:6:19: error: unknown host `olld`")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:8:5: error: unknown key `exlude` in `sites[0]`"
        )),
        "{err}"
    );
    assert!(err.contains("did you mean `exclude`?"), "{err}");
    assert!(
        err.contains(&format!("{name}:9:19: error: expected at least 1 job")),
        "{err}"
    );
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn json_validation_lists_issues_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, "version: 2\nname: t\nbogus: 1\n").unwrap();
    let out = bin()
        .args(["validate", "--json"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let issues = v["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 2, "{v}");
    assert_eq!(
        (issues[0]["line"].as_u64(), issues[0]["column"].as_u64()),
        (Some(1), Some(10))
    );
    assert_eq!(issues[1]["line"].as_u64(), Some(3));
}

#[test]
fn a_missing_plan_file_is_invalid_input() {
    let out = bin()
        .args(["validate", "/nonexistent/plan.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read plan `/nonexistent/plan.yaml`")
    );
}

#[test]
fn schema_is_draft07_and_describes_the_plan() {
    let out = bin().arg("schema").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(v["properties"]["sites"].is_object());
    assert_eq!(v["additionalProperties"], false);
}

#[test]
fn every_example_plan_validates() {
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut seen = 0;
    for entry in std::fs::read_dir(&plans).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            seen += 1;
            let out = bin().arg("validate").arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{}: {err}", path.display());
            // Safe as written: what a freeze creates is declared (issue 13).
            assert!(!err.contains("freeze_files"), "{}: {err}", path.display());
        }
    }
    assert!(
        seen >= 3,
        "expected at least three example plans, found {seen}"
    );
}

/// A plan listing `n` sites one by one, as a script writing out a platform would: name, source,
/// target, two domains and a database each. Site `i` starts on line `4 + 5 * i`.
fn explicit_plan(n: usize, extra: &str) -> String {
    let mut text = String::from("version: 1\nname: platform\nsites:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - name: site{i:05}.example\n    from: {{ host: local, path: /var/www/site{i:05}.example/ }}\n    to: {{ host: local, path: /srv/www/site{i:05}.example/ }}\n    domains: [site{i:05}.example, www.site{i:05}.example]\n    databases: [db{i:05}_wp]\n"
        ));
    }
    text.push_str(extra);
    text
}

/// Issue 15: a plan listing its sites explicitly was refused above about 13,900 of them by the
/// YAML parser's node budget, and its checks compared every pair of sites.
#[test]
fn a_plan_listing_20000_sites_validates() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, explicit_plan(20_000, "")).unwrap();
    for offline in [true, false] {
        let mut cmd = bin();
        cmd.arg("validate").arg(&plan);
        if offline {
            cmd.arg("--offline");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let verdict = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{err}");
        if !offline {
            assert!(
                verdict.contains("20000 sites from 20000 rules"),
                "{verdict}"
            );
        }
    }
    // The review of what the plan moves reads it too.
    let out = bin()
        .args(["--json", "inventory"])
        .arg(&plan)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sites"].as_array().map(Vec::len), Some(20_000));
}

/// At that size, mistakes are still named by line and column: in the meaning (an unknown host,
/// a target inside another site's) and in the YAML itself.
#[test]
fn mistakes_in_a_large_plan_keep_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    let n = 20_000;
    let extra = "  - name: late\n    from: { host: olld, path: /var/www/late/ }\n    to: { host: local, path: /srv/www/late/ }\n    domains: [late.example]\n    databases: []\n  - name: later\n    from: { host: local, path: /var/www/later/ }\n    to: { host: local, path: /srv/www/site00007.example/later/ }\n";
    std::fs::write(&plan, explicit_plan(n, extra)).unwrap();
    let line = 4 + 5 * n;
    let out = bin().arg("validate").arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = plan.display().to_string();
    assert!(
        err.contains(&format!(
            "{name}:{}:19: error: unknown host `olld`",
            line + 1
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:{}:30: error: target `/srv/www/site00007.example/later/` overlaps the target `/srv/www/site00007.example/` of `sites[7]` on host `local`",
            line + 7
        )),
        "{err}"
    );
    // A YAML mistake on the last line of a large file.
    std::fs::write(&plan, explicit_plan(n, "  - name: [unclosed\n")).unwrap();
    let out = bin().arg("validate").arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{name}:{line}:11: error: invalid YAML")),
        "{err}"
    );
}

/// Sites naming their hosts through one anchor each (`host: *old`): the parser's alias/anchor
/// ratio check refused such a plan from 100 aliases on.
#[test]
fn sites_may_share_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    let mut text = String::from(
        "version: 1\nname: anchors\nhosts:\n  old: { local: true }\n  new: { local: true }\ndefaults: { jobs: &jobs 4 }\nsites:\n",
    );
    for i in 0..500 {
        let host = if i == 0 { "&old old" } else { "*old" };
        text.push_str(&format!(
            "  - {{ name: s{i}, from: {{ host: {host}, path: /a/s{i} }}, to: {{ host: new, path: /b/s{i} }} }}\n"
        ));
    }
    std::fs::write(&plan, text).unwrap();
    let out = bin()
        .args(["validate", "--offline"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
