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
    assert!(err.contains("3 error(s)"), "{err}");
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
