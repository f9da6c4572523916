//! The operator's basics (issue 17): shell completions, the man page, `--version` with its
//! commit, a timestamped log of every run that changes the world in `state_dir/logs` (never a
//! secret), the plan's lock naming its holder with an exit code of its own (4), and `plan
//! --detailed-exitcode` (0 nothing to do, 2 changes pending, 1 error).

use std::path::{Path, PathBuf};

use transhumance::journal::{Journal, host_name};

use crate::cli::bin;
use crate::harness::Bind;

/// Every command a user may type, as `--help` lists them.
const VERBS: &[&str] = &[
    "validate",
    "plan",
    "inventory",
    "schema",
    "completions",
    "man",
    "demo",
    "sync",
    "cutover",
    "rollback",
    "status",
    "resume",
    "run",
    "report",
    "db",
    "mail",
    "dns",
    "copy",
    "verify",
];

/// Two local sites, `www.example.test` and `shop.example.test`, moved one at a time (so their
/// events come in one order); `extra` is appended (a `dns:` section).
fn local_plan(dir: &Path, extra: &str) -> PathBuf {
    for (site, body) in [("www.example.test", "www"), ("shop.example.test", "shop")] {
        let d = dir.join("old/www").join(site);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), body).unwrap();
    }
    std::fs::create_dir_all(dir.join("new/www")).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: basics\nstate_dir: state\ndefaults: {{ jobs: 1 }}\n\
sites:\n  - from: {{ host: local, glob: \"old/www/*/\" }}\n    to: {{ host: local, path: \"new/www/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n{extra}"
        ),
    )
    .unwrap();
    plan
}

fn run(args: &[&str], plan: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = bin();
    cmd.arg("--yes").args(args).arg(plan);
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

/// The logs in `state/logs`, by name.
fn logs(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir.join("state/logs"))
        .map(|r| {
            r.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Snapshots `text` with what changes from run to run replaced: times, PIDs, the host, the
/// version, the temp dir, durations.
fn assert_stable_snapshot(name: &str, dir: &Path, text: &str) {
    let tmp = regex_escape(&dir.display().to_string());
    // The host only where it is named (a short host name may be a word elsewhere).
    let pid_host = format!(r"PID \d+ on {}\b", regex_escape(&host_name()));
    insta::with_settings!({filters => vec![
        (tmp.as_str(), "[TMP]"),
        (pid_host.as_str(), "PID [PID] on [HOST]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", "[TIME]"),
        (r"PID \d+", "PID [PID]"),
        (r"after \d+\.\d s", "after [SECS] s"),
        (r"transhumance \d+\.\d+\.\d+ \(commit [^)]*\)", "transhumance [VERSION]"),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

#[test]
fn completions_name_every_command_in_every_shell() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("complete -F _transhumance"), "{script}");
    for verb in VERBS {
        assert!(script.contains(verb), "`{verb}` missing from\n{script}");
    }
    assert!(script.contains("--detailed-exitcode"), "{script}");
    assert!(
        !script.contains("agent"),
        "the hidden agent is no user's command"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("cutover"),
            "{shell}"
        );
    }
}

#[test]
fn the_man_page_lists_every_command_and_each_has_its_own() {
    let out = bin().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH transhumance 1 "), "{page}");
    for verb in VERBS {
        assert!(
            page.contains(&format!("transhumance\\-{}(1)", verb.replace('-', "\\-"))),
            "`{verb}` missing from\n{page}"
        );
    }
    let out = bin().args(["man", "plan"]).output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH transhumance-plan 1 "), "{page}");
    assert!(page.contains("\\-\\-detailed\\-exitcode"), "{page}");
    let out = bin().args(["man", "agent"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "the hidden agent has no page");
    // Packagers: every page into a directory.
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for verb in VERBS {
        assert!(
            dir.path().join(format!("transhumance-{verb}.1")).is_file(),
            "{verb}"
        );
    }
    assert!(dir.path().join("transhumance.1").is_file());
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = bin().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rest = line
        .strip_prefix(&format!(
            "transhumance {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(date.len(), 10, "YYYY-MM-DD: {line}");
    assert!(
        date.chars().all(|c| c.is_ascii_digit() || c == '-'),
        "{line}"
    );
    // Built from this checkout: the commit is git's; from a tarball (no git), `unknown`.
    let head = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_string(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        );
    assert_eq!(commit.trim_end_matches("+dirty"), head, "{line}");
}

/// A run that changes the world leaves a log of what it did, with times, and no secret: the
/// plan's TSIG key is read from the environment and used for real against BIND.
#[test]
fn each_run_writes_a_timestamped_log_without_its_secrets() {
    let bind = Bind::start(&[(
        "example.test",
        "www 3600 IN A 192.0.2.10\nshop 3600 IN A 192.0.2.10\n",
    )]);
    let dir = tempfile::tempdir().unwrap();
    let plan = local_plan(
        dir.path(),
        &format!(
            "dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\", tsig: {{ name: {}, secret_env: IT_BASICS_TSIG }} }}\n  zones: [example.test]\n  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]\n  lower_ttl: 60\n",
            bind.port, bind.tsig_name
        ),
    );
    let env = [("IT_BASICS_TSIG", bind.tsig_secret.as_str())];
    let (code, out, err) = run(&["sync"], &plan, &env);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["dns", "lower-ttl"], &plan, &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("changed   www.example.test. A"), "{out}");
    // Read-only commands keep no log.
    let (code, _, err) = run(&["status"], &plan, &env);
    assert_eq!(code, Some(0), "{err}");

    let mut logs = logs(dir.path());
    let names: Vec<String> = logs.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Named by start time, then verbs: in one second, the verbs order them.
    logs.sort_by_key(|(n, _)| !n.ends_with("Z-sync.log"));
    assert!(logs[0].0.ends_with("Z-sync.log"), "{names:?}");
    assert!(logs[1].0.ends_with("Z-dns-lower-ttl.log"), "{names:?}");
    for (name, text) in &logs {
        assert!(
            !text.contains(&bind.tsig_secret),
            "{name} holds the TSIG secret:\n{text}"
        );
        for line in text.lines() {
            let stamp = line.split(' ').next().unwrap();
            assert!(
                humantime::parse_rfc3339(stamp).is_ok(),
                "{name}: a line without its time: {line}"
            );
        }
    }
    assert!(
        logs[1].1.contains("out    changed   www.example.test. A"),
        "{}",
        logs[1].1
    );
    let lock = std::fs::read_to_string(dir.path().join("state/lock")).unwrap();
    assert!(!lock.contains(&bind.tsig_secret));
    assert_stable_snapshot("sync_log", dir.path(), &logs[0].1);
}

/// A second run while one holds the plan's lock is refused with exit 4, naming the holder; a
/// record whose process is gone is said so; once free, the plan runs again.
#[test]
fn a_held_lock_is_refused_with_its_own_code_and_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    // Mail and a zone file too: `mail sync` and `dns lower-ttl` take the same lock.
    let maildir = dir.path().join("old/vmail/example.test/ann/Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("new/vmail")).unwrap();
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    std::fs::write(
        dir.path().join("zones/example.test.zone"),
        "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A 192.0.2.10\n",
    )
    .unwrap();
    let plan = local_plan(
        dir.path(),
        "mail:\n  - layout: maildir\n    from: { host: local, path: old/vmail }\n    to: { host: local, path: new/vmail }\n\
dns:\n  provider: { kind: zonefile, directory: zones }\n  zones: [example.test]\n  switch: [{ from: 192.0.2.10, to: 198.51.100.10 }]\n  lower_ttl: 60\n",
    );
    let state = dir.path().join("state");
    // Held the way every command holds it: the journal's lock, taken by this process.
    transhumance::journal::set_command("held by a test");
    let held = Journal::<serde_json::Value>::open(&state).unwrap();
    let (code, out, err) = run(&["sync"], &plan, &[]);
    assert_eq!(code, Some(4), "{out}{err}");
    let me = std::process::id();
    assert!(
        err.contains(&format!("PID {me} on {}", host_name())),
        "{err}"
    );
    assert!(
        !dir.path().join("new/www/www.example.test").exists(),
        "nothing done"
    );
    assert_stable_snapshot("lock_refusal", dir.path(), &err);
    for verbs in [&["cutover"][..], &["mail", "sync"], &["dns", "lower-ttl"]] {
        let (code, _, err) = run(verbs, &plan, &[]);
        assert_eq!(code, Some(4), "{verbs:?}: {err}");
        assert!(err.contains(&format!("PID {me} ")), "{verbs:?}: {err}");
    }

    // The record names a process that has exited, yet the lock is held: said so, and how to
    // find the process that holds it.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let lock = state.join("lock");
    let record = std::fs::read_to_string(&lock)
        .unwrap()
        .replace(&format!("pid: {me}\n"), &format!("pid: {dead}\n"));
    std::fs::write(&lock, &record).unwrap();
    let (code, _, err) = run(&["sync"], &plan, &[]);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains(&format!("PID {dead} on this host")) && err.contains("no longer running"),
        "{err}"
    );
    assert!(
        err.contains(&format!("fuser -v {}", lock.display())),
        "{err}"
    );

    // Free again: a record its holder left behind (it was killed) does not block.
    drop(held);
    std::fs::write(&lock, &record).unwrap();
    let (code, out, err) = run(&["sync"], &plan, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let refused = logs(dir.path())
        .into_iter()
        .filter(|(_, t)| t.contains("exit 4 (refused: another run holds the lock)"))
        .count();
    assert_eq!(refused, 5, "each refused run says so in its log");
}

/// Terraform's `-detailed-exitcode`: 2 while changes are pending, 0 once they are applied, 1
/// on any error (invalid input too, which is 2 without the flag).
#[test]
fn plan_detailed_exitcode_says_whether_changes_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let plan = local_plan(dir.path(), "");
    let (code, _, err) = run(&["plan", "--detailed-exitcode"], &plan, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_stable_snapshot("detailed_exitcode_pending", dir.path(), &err);
    let (code, _, err) = run(&["plan"], &plan, &[]);
    assert_eq!(code, Some(0), "without the flag: {err}");

    let (code, out, err) = run(&["sync"], &plan, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = run(&["plan", "--detailed-exitcode"], &plan, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_stable_snapshot("detailed_exitcode_none", dir.path(), &err);

    // One file changed at the source: pending again.
    std::fs::write(dir.path().join("old/www/shop.example.test/new.html"), "new").unwrap();
    let (code, _, err) = run(&["plan", "--detailed-exitcode"], &plan, &[]);
    assert_eq!(code, Some(2), "{err}");

    std::fs::write(&plan, "version: 1\nname: broken\nbogus: 1\n").unwrap();
    let (code, _, _) = run(&["plan", "--detailed-exitcode"], &plan, &[]);
    assert_eq!(
        code,
        Some(1),
        "invalid input is an error, never `changes pending`"
    );
    let (code, _, _) = run(
        &["plan", "--detailed-exitcode", "--no-such-flag"],
        &plan,
        &[],
    );
    assert_eq!(code, Some(1), "a usage error too");
    let (code, _, _) = run(&["plan"], &plan, &[]);
    assert_eq!(code, Some(2), "without the flag, invalid input stays 2");
}
