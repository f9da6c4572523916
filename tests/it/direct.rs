//! The direct data path (issue 18): between two remote hosts (two sshd on loopback), a plan's
//! sites, databases and Maildirs go source host to target host with a key made for the move;
//! the controller's ssh streams carry listings, hashes and verdicts only, and the key is
//! confined, tied to the source's address, and gone once the move is done.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use transhumance::event::{Event, Recorder};
use transhumance::lifecycle::migrate::Migration;
use transhumance::transport::protocol::{
    Call, PROTOCOL_VERSION, Reply, Request, Response, read_frame, write_frame,
};
use transhumance::transport::{Connections, direct};

use crate::harness::{MariaDb, Sshd};

/// Random bytes (incompressible: compression must not be what keeps the counts low).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn host_line(name: &str, sshd: &Sshd, agent: &Path, extra: &str) -> String {
    format!(
        "  {name}: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}\"{extra} }}\n",
        sshd.port,
        sshd.client_key.display(),
        sshd.known_hosts.display(),
        agent.display()
    )
}

/// The target sshd's authorized keys file for root (the harness's `AuthorizedKeysFile`).
fn authorized(sshd: &Sshd) -> PathBuf {
    sshd.dir.path().join("auth/root")
}

struct Lab {
    old: Sshd,
    new: Sshd,
    dbs: (MariaDb, MariaDb),
    work: tempfile::TempDir,
    /// Bytes of data the plan moves (files, messages, table rows).
    data: u64,
}

impl Lab {
    fn start() -> Lab {
        let (old, new) = (Sshd::start(), Sshd::start());
        let dbs = (MariaDb::start(), MariaDb::start());
        let work = tempfile::Builder::new()
            .prefix("th-direct-")
            .tempdir_in("/tmp")
            .unwrap();
        let w = work.path();
        let mut data = 0u64;
        for (site, files) in [("alpha", 3usize), ("beta", 2)] {
            let root = w.join("src/www").join(site);
            std::fs::create_dir_all(root.join("uploads")).unwrap();
            for i in 0..files {
                let body = noise(3 << 20, i as u64 + site.len() as u64);
                data += body.len() as u64;
                std::fs::write(root.join(format!("uploads/f{i}.bin")), body).unwrap();
            }
            std::fs::write(root.join("index.php"), b"<?php echo 'hi';").unwrap();
        }
        let mailbox = w.join("src/vmail/example.test/alice");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(mailbox.join(sub)).unwrap();
        }
        for i in 0..20u64 {
            let body = crate::mail::message(&format!("m{i}"), 100_000);
            data += body.len() as u64;
            std::fs::write(
                mailbox.join(format!(
                    "cur/17000000{i:02}.M{i}P1.old,S={}:2,S",
                    body.len()
                )),
                body,
            )
            .unwrap();
        }
        dbs.0.sql("CREATE DATABASE site_alpha; USE site_alpha; CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_20000;");
        data += 20_000 * 256;
        Lab {
            old,
            new,
            dbs,
            work,
            data,
        }
    }

    fn plan(&self, name: &str, transfer: Option<&str>) -> PathBuf {
        let w = self.work.path();
        let defaults = match transfer {
            Some(t) => format!("defaults: {{ jobs: 2, transfer: {t} }}\n"),
            None => "defaults: { jobs: 2 }\n".to_string(),
        };
        let text = format!(
            "version: 1\nname: {name}\n{defaults}hosts:\n{}{}sites:\n  - from: {{ host: old, glob: \"{src}/www/*\" }}\n    to: {{ host: new, path: \"{dst}/www/{{name}}\" }}\ndatabases:\n  - engine: mariadb\n    from: {{ host: old, socket: \"{}\", user: root }}\n    to: {{ host: new, socket: \"{}\", user: root }}\n    names: [\"site_*\"]\nmail:\n  - layout: maildir\n    from: {{ host: old, path: \"{src}/vmail\" }}\n    to: {{ host: new, path: \"{dst}/vmail\" }}\n",
            host_line("old", &self.old, &w.join("agent-old"), ""),
            host_line(
                "new",
                &self.new,
                &w.join("agent-new"),
                &format!(
                    ", direct: {{ authorized_keys: \"{}\" }}",
                    authorized(&self.new).display()
                ),
            ),
            self.dbs.0.socket.display(),
            self.dbs.1.socket.display(),
            src = w.join("src").display(),
            dst = w.join(format!("dst-{name}")).display(),
        );
        let path = w.join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `sync` of the plan in this process; the bytes through the controller's streams
    /// and what it reported.
    fn sync(&self, plan: &Path) -> (u64, Vec<Event>) {
        let loaded = transhumance::plan::load(plan).unwrap();
        let connections = Connections::new(
            &loaded.plan.hosts,
            PathBuf::from(env!("CARGO_BIN_EXE_transhumance")),
        );
        let recorder = Recorder::default();
        let outcomes = {
            let migration = Migration::open(
                &loaded,
                &connections,
                &recorder,
                transhumance::check::Allowed::none(),
            )
            .unwrap();
            migration.sync(&[]).unwrap()
        };
        assert!(outcomes.iter().all(|o| o.ok()), "{outcomes:#?}");
        let entries = transhumance::lifecycle::ledger::read(&loaded.plan).unwrap();
        let failed: Vec<_> = entries
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    transhumance::lifecycle::ledger::Entry::Unit { ok: false, .. }
                )
            })
            .collect();
        assert!(failed.is_empty(), "{failed:#?}");
        let (sent, received) = connections.wire_bytes();
        let events = recorder.events.lock().unwrap().clone();
        (sent + received, events)
    }

    fn moved(&self, name: &str) {
        let w = self.work.path();
        let dst = w.join(format!("dst-{name}"));
        for (site, files) in [("alpha", 3usize), ("beta", 2)] {
            assert!(
                !dst.join(format!("www/{site}/.transhumance-tmp")).exists(),
                "{name}: temp directory left"
            );
            for i in 0..files {
                let rel = format!("www/{site}/uploads/f{i}.bin");
                assert_eq!(
                    std::fs::read(dst.join(&rel)).unwrap(),
                    std::fs::read(w.join("src").join(&rel)).unwrap(),
                    "{name}: {rel}"
                );
            }
        }
        let boxes = std::fs::read_dir(dst.join("vmail/example.test/alice/cur"))
            .unwrap()
            .count();
        assert_eq!(boxes, 20, "{name}: messages");
        assert_eq!(
            self.dbs
                .1
                .sql("SELECT COUNT(*), SUM(LENGTH(v)) FROM site_alpha.t"),
            "20000\t5120000",
            "{name}: rows"
        );
    }
}

fn infos(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Info { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Sites, databases and Maildirs between two remote hosts go directly: the controller's
/// streams carry a few percent of the data (the relay carries it twice), the restricted key
/// is gone from the target afterwards, and nothing of the move is left there.
#[test]
fn a_plan_between_two_remote_hosts_moves_its_data_host_to_host() {
    let lab = Lab::start();
    let keys_before = std::fs::read_to_string(authorized(&lab.new)).unwrap();
    let (direct_bytes, events) = lab.sync(&lab.plan("direct", None));
    lab.moved("direct");
    let said = infos(&events);
    assert!(
        said.iter()
            .any(|m| m.starts_with("direct path `old` -> `new`: bytes go host to host")),
        "{said:#?}"
    );
    assert!(
        direct_bytes * 20 <= lab.data,
        "direct: {direct_bytes} bytes through the controller for {} of data",
        lab.data
    );
    assert_eq!(
        std::fs::read_to_string(authorized(&lab.new)).unwrap(),
        keys_before,
        "the move's key is removed"
    );
    // The key was journaled installed, then removed; its stream directory is gone.
    let state = lab.work.path().join(".transhumance/direct");
    let entries = transhumance::lifecycle::ledger::read_dir(&state).unwrap();
    for e in &entries {
        if let transhumance::lifecycle::ledger::Entry::DirectKey {
            streams: Some(dir), ..
        } = e
        {
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
    let installed = entries
        .iter()
        .filter(|e| {
            matches!(
                e,
                transhumance::lifecycle::ledger::Entry::DirectKey {
                    installed: true,
                    ..
                }
            )
        })
        .count();
    let removed = entries
        .iter()
        .filter(|e| {
            matches!(
                e,
                transhumance::lifecycle::ledger::Entry::DirectKey {
                    installed: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!((installed, removed), (1, 1), "{entries:#?}");

    // The same plan relayed: the data goes through the controller, in and out.
    lab.dbs.1.sql("DROP DATABASE site_alpha");
    let (relay_bytes, _) = lab.sync(&lab.plan("relay", Some("relay")));
    lab.moved("relay");
    assert!(
        relay_bytes >= lab.data * 3 / 2,
        "relay: {relay_bytes} bytes through the controller for {} of data",
        lab.data
    );
}

/// Speaks the agent's protocol to whatever `child` runs: the greeting, then calls.
struct Client {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::process::ChildStdout,
    next: u64,
}

impl Client {
    fn start(mut cmd: Command) -> Result<Client, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let mut output = child.stdout.take().unwrap();
        write_frame(
            &mut input,
            &Request::Hello {
                protocol: PROTOCOL_VERSION,
            },
        )
        .unwrap();
        input.flush().unwrap();
        let mut magic = [0u8; 8];
        if output.read_exact(&mut magic).is_err() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            return Err(err);
        }
        assert_eq!(&magic, b"THAGENT\n");
        assert!(matches!(
            read_frame::<Response>(&mut output).unwrap(),
            Some(Response::Hello { .. })
        ));
        Ok(Client {
            child,
            input,
            output,
            next: 1,
        })
    }

    fn call(&mut self, call: Call) -> Reply {
        let id = self.next;
        self.next += 1;
        write_frame(&mut self.input, &Request::Call { id, call }).unwrap();
        self.input.flush().unwrap();
        match read_frame::<Response>(&mut self.output).unwrap() {
            Some(Response::Reply { id: got, reply }) if got == id => reply,
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = write_frame(&mut self.input, &Request::Bye);
        let _ = self.input.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key a move installs runs our confined agent and nothing else, only from the source's
/// address, only beneath the roots it was given; once revoked, it logs in nowhere.
#[test]
fn the_moves_key_is_confined_tied_to_the_source_and_refused_once_revoked() {
    let (old, new) = (Sshd::start(), Sshd::start());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root = w.join("www");
    std::fs::create_dir_all(root.join("site")).unwrap();
    std::fs::create_dir_all(w.join("elsewhere")).unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: key-it\nhosts:\n{}{}",
            host_line("old", &old, &w.join("agent-old"), ""),
            host_line("new", &new, &w.join("agent-new"), "")
        ),
    )
    .unwrap();
    let loaded = transhumance::plan::load(&plan).unwrap();
    let connections = Connections::new(
        &loaded.plan.hosts,
        PathBuf::from(env!("CARGO_BIN_EXE_transhumance")),
    );
    let (src, dst) = (
        connections.get("old").unwrap(),
        connections.get("new").unwrap(),
    );
    let transhumance::plan::HostAccess::Ssh(access) = &loaded.plan.hosts["new"].access else {
        panic!("ssh host")
    };
    let nonce = direct::nonce().unwrap();
    let marker = direct::marker("key-it", "old", "new", &nonce);
    let streams = PathBuf::from(format!("/tmp/th-direct-{nonce}"));
    let file = authorized(&new).display().to_string();
    let grant = direct::grant(&direct::Request {
        source: src.as_ref(),
        target: dst.as_ref(),
        target_access: access,
        address: None,
        authorized_keys: file.clone(),
        confine: vec![root.clone()],
        marker: marker.clone(),
        streams: streams.clone(),
        required: true,
    })
    .unwrap();
    let line = std::fs::read_to_string(authorized(&new)).unwrap();
    let ours = line.lines().find(|l| l.contains(&marker)).unwrap();
    assert!(
        ours.starts_with("restrict,command=\"") && ours.contains("from=\"127.0.0.1\""),
        "{ours}"
    );
    // The test holds the private key the source's agent was given, as a thief would.
    let key = w.join("stolen");
    std::fs::write(&key, &grant.route.spec.key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ssh = |bind: &str, command: &str| {
        // The harness's own options, with the stolen key instead of the harness's.
        let mut args = new.ssh_args();
        let at = args.iter().position(|a| a == "-i").unwrap();
        args[at + 1] = key.display().to_string();
        let mut c = Command::new("ssh");
        c.args(args)
            .args(["-b", bind])
            .arg(new.destination())
            .arg(command);
        c
    };
    // Asked for another command, the key still runs our agent (its greeting comes back).
    let out = ssh("127.0.0.1", "cat /etc/passwd")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.stdout.starts_with(b"THAGENT\n"), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:x:0"));
    // The agent it runs serves writes beneath its root and refuses the rest.
    let mut agent = Client::start(ssh("127.0.0.1", "agent")).unwrap();
    let refused = |r: Reply| match r {
        Reply::Error(e) => e,
        r => panic!("not refused: {r:?}"),
    };
    let e = refused(
        agent.call(Call::Exec(transhumance::transport::ExecRequest::new(
            "id",
            Vec::<String>::new(),
        ))),
    );
    assert!(e.contains("refused") && e.contains("`Exec`"), "{e}");
    let e = refused(agent.call(Call::Scan {
        root: "/".into(),
        exclude: vec![],
        keep: transhumance::tree::xattr::Keep::NONE,
    }));
    assert!(e.contains("refused"), "{e}");
    for outside in [
        w.join("elsewhere"),
        root.join("../elsewhere"),
        PathBuf::from("/"),
    ] {
        let e = refused(agent.call(Call::OpenRoot {
            root: outside.clone(),
            create: false,
        }));
        assert!(
            e.contains("outside the roots"),
            "{}: {e}",
            outside.display()
        );
    }
    assert!(matches!(
        agent.call(Call::OpenRoot {
            root: root.join("site"),
            create: false
        }),
        Reply::Opened(_)
    ));
    drop(agent);
    // From another address of this machine, the key is refused (`from=`).
    let out = ssh("127.0.0.2", "agent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(!out.stdout.starts_with(b"THAGENT"), "{out:?}");
    // Revoked: the line and the stream directory are gone, and the key logs in nowhere.
    assert_eq!(
        direct::revoke(dst.as_ref(), &file, &marker, Some(&streams)).unwrap(),
        1
    );
    assert!(
        !std::fs::read_to_string(authorized(&new))
            .unwrap()
            .contains("transhumance-direct")
    );
    assert!(!streams.exists());
    let out = ssh("127.0.0.1", "agent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
}

/// A run killed while its key is installed (its site moved with it) leaves it journaled; the next command of the plan
/// removes it before anything else (and its own key when it ends).
#[test]
fn a_key_left_by_a_crash_is_removed_by_the_next_command() {
    let (old, new) = (Sshd::start(), Sshd::start());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src/www/alpha")).unwrap();
    std::fs::write(w.join("src/www/alpha/index.html"), noise(100_000, 7)).unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: crash-it\nhosts:\n{}{}sites:\n  - from: {{ host: old, glob: \"{src}/www/*\" }}\n    to: {{ host: new, path: \"{dst}/www/{{name}}\" }}\n",
            host_line("old", &old, &w.join("agent-old"), ""),
            host_line(
                "new",
                &new,
                &w.join("agent-new"),
                &format!(
                    ", direct: {{ authorized_keys: \"{}\" }}",
                    authorized(&new).display()
                ),
            ),
            src = w.join("src").display(),
            dst = w.join("dst").display(),
        ),
    )
    .unwrap();
    let before = std::fs::read_to_string(authorized(&new)).unwrap();
    let killed = crate::cli::bin()
        .args(["sync"])
        .arg(&plan)
        .env("TRANSHUMANCE_FAULT", "after:pre_synced")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "{killed:?}");
    let left = std::fs::read_to_string(authorized(&new)).unwrap();
    assert!(
        left.contains("transhumance-direct:crash-it:old>new:"),
        "the crash left the key: {left}"
    );
    let again = crate::cli::bin()
        .args(["sync"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_eq!(std::fs::read_to_string(authorized(&new)).unwrap(), before);
    assert_eq!(
        std::fs::read(w.join("dst/www/alpha/index.html")).unwrap(),
        noise(100_000, 7)
    );
}

/// The dry run says which path each pair of remote hosts takes, and why, installing nothing:
/// `direct` where the source reaches the target's sshd; relayed (a warning) where it does
/// not; an error where the plan asks for `direct` and it cannot be had.
#[test]
fn the_dry_run_checks_each_pair_without_installing_anything() {
    let (old, new) = (Sshd::start(), Sshd::start());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src/www/alpha")).unwrap();
    std::fs::write(w.join("src/www/alpha/index.html"), b"hi").unwrap();
    let before = std::fs::read_to_string(authorized(&new)).unwrap();
    let plan = |name: &str, transfer: &str, address: &str| {
        let path = w.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: {name}\n{transfer}hosts:\n{}{}sites:\n  - from: {{ host: old, glob: \"{src}/www/*\" }}\n    to: {{ host: new, path: \"{dst}/www/{{name}}\" }}\n",
                host_line("old", &old, &w.join("agent-old"), ""),
                host_line("new", &new, &w.join("agent-new"), address),
                src = w.join("src").display(),
                dst = w.join("dst").display(),
            ),
        )
        .unwrap();
        path
    };
    let report = |path: &Path| -> serde_json::Value {
        let out = crate::cli::bin()
            .args(["plan", "--format", "json"])
            .arg(path)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let risks = |r: &serde_json::Value, kind: &str| -> Vec<String> {
        r["risks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kind"] == kind)
            .map(|k| format!("{} {}", k["severity"], k["message"]))
            .collect()
    };
    let r = report(&plan("reach", "", ""));
    let paths = r["transfer"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{r:#}");
    assert_eq!(
        (&paths[0]["source"], &paths[0]["target"], &paths[0]["path"]),
        (
            &serde_json::json!("old"),
            &serde_json::json!("new"),
            &serde_json::json!("direct")
        ),
        "{r:#}"
    );
    assert!(
        paths[0]["detail"]
            .as_str()
            .unwrap()
            .contains("from 127.0.0.1"),
        "{r:#}"
    );
    // A port nothing listens on: relayed, said as a warning.
    let closed = format!(
        ", direct: {{ address: \"127.0.0.1:{}\" }}",
        crate::harness::free_port()
    );
    let r = report(&plan("closed", "", &closed));
    assert_eq!(r["transfer"][0]["path"], "relay", "{r:#}");
    let warned = risks(&r, "relayed");
    assert!(
        warned.len() == 1 && warned[0].starts_with("\"warning\""),
        "{warned:?}"
    );
    // The same, with `transfer: direct`: an error.
    let r = report(&plan("insist", "defaults: { transfer: direct }\n", &closed));
    let refused = risks(&r, "direct_path");
    assert!(
        refused.len() == 1 && refused[0].starts_with("\"error\""),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_to_string(authorized(&new)).unwrap(), before);
}

/// A key the target's sshd does not read (the plan names the wrong file): unasked, the data is
/// relayed and said so; under `transfer: direct`, the command fails before any work. Either
/// way the key is removed.
#[test]
fn a_path_whose_login_fails_is_relayed_unless_the_plan_asks_for_direct() {
    let (old, new) = (Sshd::start(), Sshd::start());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src/www/alpha")).unwrap();
    std::fs::write(w.join("src/www/alpha/a.bin"), noise(200_000, 3)).unwrap();
    let unread = w.join("keys-sshd-does-not-read");
    let plan = |name: &str, transfer: &str| {
        let path = w.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: {name}\n{transfer}hosts:\n{}{}sites:\n  - from: {{ host: old, glob: \"{src}/www/*\" }}\n    to: {{ host: new, path: \"{dst}/www/{{name}}\" }}\n",
                host_line("old", &old, &w.join("agent-old"), ""),
                host_line(
                    "new",
                    &new,
                    &w.join("agent-new"),
                    &format!(", direct: {{ authorized_keys: \"{}\" }}", unread.display())
                ),
                src = w.join("src").display(),
                dst = w.join(format!("dst-{name}")).display(),
            ),
        )
        .unwrap();
        transhumance::plan::load(&path).unwrap()
    };
    let run = |loaded: &transhumance::plan::Loaded| {
        let connections = Connections::new(
            &loaded.plan.hosts,
            PathBuf::from(env!("CARGO_BIN_EXE_transhumance")),
        );
        let recorder = Recorder::default();
        let done = Migration::open(
            loaded,
            &connections,
            &recorder,
            transhumance::check::Allowed::none(),
        )
        .unwrap()
        .sync(&[]);
        let said = infos(&recorder.events.lock().unwrap());
        (done, said)
    };
    let (done, said) = run(&plan("unasked", ""));
    assert!(done.unwrap().iter().all(|o| o.ok()));
    assert_eq!(
        std::fs::read(w.join("dst-unasked/www/alpha/a.bin")).unwrap(),
        noise(200_000, 3)
    );
    assert!(
        said.iter()
            .any(|m| m.contains("relayed through this machine after all")
                && m.contains("cannot log in")),
        "{said:#?}"
    );
    let (done, _) = run(&plan("asked", "defaults: { transfer: direct }\n"));
    let e = done.expect_err("refused").to_string();
    assert!(e.contains("cannot log in"), "{e}");
    assert!(!w.join("dst-asked/www/alpha/a.bin").exists());
    assert!(
        !std::fs::read_to_string(&unread)
            .unwrap()
            .contains("transhumance-direct"),
        "keys removed"
    );
}
