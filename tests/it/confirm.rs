//! Issue 13, confirmation: on a terminal (a pseudo-terminal here) `cutover`, `rollback` and
//! `dns switch` show what they will change and ask; `n` changes nothing, `y` goes on; without a
//! terminal they refuse unless given `--yes`. And Ctrl-C during a freeze over real sshd: the
//! freeze hook finishes, the site is unfrozen and marked failed, nothing new starts.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Bind, Sshd};
use crate::lifecycle::{NEW, OLD, zone};

const SITES: [&str; 2] = ["alpha.example.test", "beta.example.test"];

/// Two sites under `w/old/www`, a plan moving them to `w/new/www` and switching their names
/// from OLD to NEW on `bind`. `source` is the source host's name (`local`, or `old` defined in
/// `hosts`); `cutover` is the plan's `cutover:` body.
fn world(w: &Path, bind: &Bind, hosts: &str, source: &str, cutover: &str) -> PathBuf {
    for site in SITES {
        let dir = w.join("old/www").join(site);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("<title>{site}</title>")).unwrap();
    }
    std::fs::create_dir_all(w.join("new/www")).unwrap();
    let sites: String = SITES
        .iter()
        .map(|s| {
            format!(
                "  - name: {s}\n    from: {{ host: {source}, path: \"{w}/old/www/{s}/\" }}\n    to: {{ host: local, path: \"{w}/new/www/{s}/\" }}\n    domains: [\"{{name}}\"]\n    exclude: [\".frozen\"]\n",
                w = w.display()
            )
        })
        .collect();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: confirm-it\nstate_dir: state\ndefaults: {{ jobs: 1 }}\n{hosts}sites:\n{sites}\
dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{port}\", tsig: {{ name: {key}, secret_env: IT_TSIG }} }}\n  zones: [example.test]\n  nameservers: [\"127.0.0.1:{port}\"]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 10s\n\
cutover:\n{cutover}",
            port = bind.port,
            key = bind.tsig_name,
        ),
    )
    .unwrap();
    plan
}

/// The journal's entries (none when it does not exist yet).
fn journal(w: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(w.join("state/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn switch_intents(w: &Path) -> usize {
    journal(w)
        .iter()
        .filter(|e| e["kind"] == "dns_intent" && e["phase"] == "switch")
        .count()
}

/// A pseudo-terminal: the command gets the slave as stdin, stdout and stderr; the test reads
/// what it shows and types on the master.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
}

fn pty() -> Pty {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: out-pointers to two ints; no name buffer; default termios; a valid winsize.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned here alone.
    unsafe {
        Pty {
            master: std::fs::File::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

/// Runs `transhumance args PLAN` on a terminal, answers `answer` to its question, and returns
/// its exit code and everything it showed.
fn on_terminal(plan: &Path, secret: &str, args: &[&str], answer: &str) -> (Option<i32>, String) {
    let Pty { master, slave } = pty();
    let mut child = {
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_transhumance"));
        cmd.args(args)
            .arg("--no-progress")
            .arg(plan)
            .env("IT_TSIG", secret)
            .env("TERM", "dumb")
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave));
        cmd.spawn().unwrap()
        // The command and its copies of the slave are dropped here: the master reads EIO once
        // the child is gone.
    };
    drop(slave);
    let shown = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let shown = shown.clone();
        let mut master = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !text().contains("Proceed? [y/N]") {
        if child.try_wait().unwrap().is_some() {
            // Ended without asking (nothing to confirm, or a refusal): what it said is the result.
            reader.join().unwrap();
            return (child.wait().unwrap().code(), text());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no question on the terminal: {}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (&master).write_all(answer.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    (status.code(), text())
}

/// Runs `transhumance args PLAN` with no terminal at all (a script).
fn scripted(plan: &Path, secret: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(args)
        .arg(plan)
        .env("IT_TSIG", secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn destructive_commands_ask_on_a_terminal_and_refuse_without_one() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let plan = world(w, &bind, "", "local", "  batch: 2\n");
    let secret = bind.tsig_secret.as_str();

    // No terminal and no --yes: refused before anything is read or changed, and said why.
    for args in [
        &["cutover"][..],
        &["rollback"],
        &["run"],
        &["dns", "switch"],
        &["dns", "rollback"],
    ] {
        let (code, out) = scripted(&plan, secret, args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(
            out.contains("not a terminal: pass --yes to confirm"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(switch_intents(w), 0);

    // On a terminal: the sites with their state and the records that would switch, from the
    // plan the cutover applies; `n` changes nothing.
    let (code, shown) = on_terminal(&plan, secret, &["cutover"], "n\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("cutover (freeze, final sync, verify, probe, then switch): 2 site(s)"),
        "{shown}"
    );
    assert!(shown.contains("alpha.example.test  discovered"), "{shown}");
    assert!(
        shown.contains("DNS records that will switch (2):"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("alpha.example.test. A  {OLD} -> {NEW}  (TTL 300)")),
        "{shown}"
    );
    assert!(shown.contains("aborted: nothing changed"), "{shown}");
    assert_eq!(switch_intents(w), 0, "no switch intent after `n`");
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![OLD]);
    assert!(!w.join("new/www/alpha.example.test/index.html").exists());

    // `dns switch` shows the very plan it would apply, and an empty answer is no.
    let (code, shown) = on_terminal(&plan, secret, &["dns", "switch"], "\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains(&format!("beta.example.test. A  {OLD} -> {NEW}")),
        "{shown}"
    );
    assert!(shown.contains("aborted: nothing changed"), "{shown}");
    assert_eq!(switch_intents(w), 0);

    // `y` goes on.
    let (code, shown) = on_terminal(&plan, secret, &["cutover", "--only", SITES[0]], "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("then switch): 1 site(s)"), "{shown}");
    assert!(
        shown.contains("confirmed     alpha.example.test"),
        "{shown}"
    );
    assert!(switch_intents(w) > 0);
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![NEW]);
    assert_eq!(bind.dig("beta.example.test", "A"), vec![OLD]);

    // The rollback shows what it would put back, decided as it decides; `no` keeps it all.
    let (code, shown) = on_terminal(&plan, secret, &["rollback"], "no\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("then unfreeze): 1 site(s)"), "{shown}");
    assert!(shown.contains("alpha.example.test  confirmed"), "{shown}");
    assert!(
        shown.contains(&format!("alpha.example.test. A  {NEW} -> {OLD}  (TTL 300)")),
        "{shown}"
    );
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![NEW]);

    // A script passes --yes.
    let (code, out) = scripted(&plan, secret, &["rollback", "--yes"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![OLD]);

    // A cutover its checks refuse has nothing to confirm: no question, the refusal at once.
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "  verify_timeout: 10s\n",
        "  verify_timeout: 10s\n  lower_ttl: 30\n",
    );
    std::fs::write(&plan, text).unwrap();
    let (code, shown) = on_terminal(&plan, secret, &["cutover"], "y\n");
    assert_eq!(code, Some(3), "{shown}");
    assert!(
        !shown.contains("Proceed?") && shown.contains("[ttl-not-expired]"),
        "{shown}"
    );
}

#[test]
fn ctrl_c_during_a_freeze_over_ssh_unfreezes_the_site_and_starts_nothing_new() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let hosts = format!(
        "hosts:\n  old: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\n",
        sshd.port,
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        w.display(),
    );
    // A slow freeze: the signal lands while it sleeps on the source host, over ssh.
    let log = w.join("hooks.log");
    let cutover = format!(
        "  batch: 1\n  freeze: {{ run: \"echo begin {{name}} >> {log}; sleep 2; touch {{path}}/.frozen; echo freeze {{name}} >> {log}\" }}\n  unfreeze: {{ run: \"rm -f {{path}}/.frozen; echo unfreeze {{name}} >> {log}\" }}\n",
        log = log.display()
    );
    let plan = world(w, &bind, &hosts, "old", &cutover);
    let out = interrupted_when(&plan, &bind.tsig_secret, "froze alpha", 1, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("begin alpha.example.test"))
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");

    // The freeze ran once, to its end (its ssh was not killed under it: a killed one would have
    // been run again on a fresh connection, `begin` twice), then the unfreeze.
    let hooks = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        hooks, "begin alpha.example.test\nfreeze alpha.example.test\nunfreeze alpha.example.test\n",
        "{stdout}{stderr}"
    );
    assert!(!w.join("old/www/alpha.example.test/.frozen").exists());
    // Each site's state, and what the stop did, in the last line.
    assert!(
        stdout.contains("failed        alpha.example.test: interrupted by the operator (SIGINT)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("discovered    beta.example.test: not started"),
        "{stdout}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("interrupted: 1 site unfrozen and marked failed, 0 finished, 1 not started (SIGINT)"),
        "{stderr}"
    );
    // The journal says so; nothing was switched.
    let entries = journal(w);
    let last_alpha = entries
        .iter()
        .rfind(|e| e["kind"] == "site" && e["site"] == SITES[0])
        .unwrap();
    assert_eq!(last_alpha["state"], "failed");
    assert_eq!(last_alpha["detail"], "interrupted by the operator (SIGINT)");
    assert!(
        !entries
            .iter()
            .any(|e| e["kind"] == "site" && e["site"] == SITES[1]),
        "beta was never touched"
    );
    assert_eq!(switch_intents(w), 0);
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![OLD]);
    // The run is over (not left for `resume`): `status` names the failure and its reason.
    let (code, out) = scripted(&plan, &bind.tsig_secret, &["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("interrupted by the operator (SIGINT)"),
        "{out}"
    );

    // A second Ctrl-C is not caught: the process dies at once (what `resume` is for).
    let out = interrupted_when(&plan, &bind.tsig_secret, "froze alpha again", 2, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.matches("begin").count() == 2)
    });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGINT),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cutover --yes PLAN` in a process group of its own and, once `ready` holds, sends
/// SIGINT to the whole group `times` times, as a terminal's Ctrl-C does.
fn interrupted_when(
    plan: &Path,
    secret: &str,
    what: &str,
    times: usize,
    ready: impl Fn() -> bool,
) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(["cutover", "--yes"])
        .arg(plan)
        .env("IT_TSIG", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..times {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling the process group of the child we spawned.
        assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    }
    child.wait_with_output().unwrap()
}

#[test]
fn ctrl_c_during_a_switch_finishes_that_site_and_starts_no_new_batch() {
    let bind = Bind::start(&[("example.test", &zone())]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The new side answers slowly: the signal lands while the switched site is probed.
    let port = crate::lifecycle::free_port_on_both();
    let slow = std::net::TcpListener::bind((NEW, port)).unwrap();
    std::thread::spawn(move || {
        for mut s in slow.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(1500));
                let body = "<title>slow</title>";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let cutover = format!(
        "  batch: 1\n  probe: {{ http: \"http://{{domain}}:{port}/\", expect: [200], timeout: 10s, compare_with_old: false }}\n"
    );
    let plan = world(w, &bind, "", "local", &cutover);
    let out = interrupted_when(&plan, &bind.tsig_secret, "switched alpha", 1, || {
        journal(w)
            .iter()
            .any(|e| e["kind"] == "site" && e["site"] == SITES[0] && e["state"] == "switching")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // alpha finished its step (switch, verification, probes): confirmed; beta's batch never
    // started.
    assert!(
        stdout.contains("confirmed     alpha.example.test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("discovered    beta.example.test: not started"),
        "{stdout}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("interrupted: 0 sites unfrozen and marked failed, 1 finished, 1 not started (SIGINT)"),
        "{stderr}"
    );
    assert_eq!(bind.dig("alpha.example.test", "A"), vec![NEW]);
    assert_eq!(bind.dig("beta.example.test", "A"), vec![OLD]);
}
