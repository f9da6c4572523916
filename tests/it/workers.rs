//! Several controllers on one move (issue 18): three `transhumance worker` processes share a
//! plan of twelve sites (two batches, mail as a unit of no site) through the journal in
//! PostgreSQL, against real BIND with TSIG and web servers on two loopback addresses. One worker
//! is killed with SIGKILL mid-cutover: at a chosen instant (its freeze hook of one site blocks on
//! a gate, so the kill lands while it holds that site) or at a random one (after a random number
//! of journaled site steps). The others take its sites over once its lease expired and finish:
//! every site ends confirmed or rolled back exactly, as DNS serves it and as the journal folds
//! (one site is rolled back on purpose: a resolver keeps its old address). `status`, `report`
//! and `resume` then read and finish the move from yet another process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use transhumance::demo::WebServer;

use crate::harness::Bind;
use crate::journal_pg::{PASSWORD, PASSWORD_ENV, SharedJournal, shared_journal};
use crate::lifecycle::{NEW, OLD, free_port_on_both};

const SITES: usize = 12;
/// The site a resolver keeps on its old address: switched, then rolled back.
const STALE: &str = "s12.example.test";
/// The site whose freeze blocks on the gate in the chosen-instant variant.
const GATED: &str = "s05.example.test";
const PLAN_NAME: &str = "workers-it";

fn site(i: usize) -> String {
    format!("s{i:02}.example.test")
}

struct Move {
    shared: SharedJournal,
    bind: Bind,
    work: tempfile::TempDir,
    plan: PathBuf,
    tsig: String,
    original: BTreeMap<String, Vec<(u32, String)>>,
    /// Said first by every failure message (the random variant's seed).
    context: std::cell::RefCell<String>,
    _servers: (Bind, WebServer, WebServer),
}

/// Twelve sites, a Maildir, BIND and a resolver that keeps `STALE` old; `freeze_gate` adds to
/// the freeze command.
fn setup(freeze_gate: &str) -> Move {
    setup_with(freeze_gate, 300, "")
}

/// As `setup`, the sites' records with TTL `ttl` and `dns_extra` added to the plan's `dns:`.
fn setup_with(freeze_gate: &str, ttl: u32, dns_extra: &str) -> Move {
    let shared = shared_journal();
    let zone: String = (1..=SITES)
        .map(|i| format!("s{i:02} {ttl} IN A {OLD}\n"))
        .collect();
    let bind = Bind::start(&[("example.test", &zone)]);
    let stale_zone: String = (1..=SITES)
        .map(|i| {
            let address = if site(i) == STALE { OLD } else { NEW };
            format!("s{i:02} 300 IN A {address}\n")
        })
        .collect();
    let stale = Bind::start(&[("example.test", &stale_zone)]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for i in 1..=SITES {
        let dir = w.join("old/www").join(site(i));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("index.html"), format!("<title>{i}</title>")).unwrap();
        std::fs::write(dir.join("data/blob.bin"), vec![i as u8; 50_000]).unwrap();
    }
    std::fs::create_dir_all(w.join("new/www")).unwrap();
    let maildir = w.join("old/vmail/example.test/alice/Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let body = "Subject: hi\r\nMessage-ID: <1@example.test>\r\n\r\nhi\r\n";
    std::fs::write(
        maildir.join(format!("cur/1700000001.M1P1.old,S={}:2,S", body.len())),
        body,
    )
    .unwrap();
    std::fs::create_dir_all(w.join("new/vmail")).unwrap();
    let port = free_port_on_both();
    let old = WebServer::start(OLD.parse().unwrap(), port, w.join("old/www"), vec![]).unwrap();
    let new = WebServer::start(NEW.parse().unwrap(), port, w.join("new/www"), vec![]).unwrap();
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: {PLAN_NAME}\nstate_dir: state\n{}defaults: {{ jobs: 2 }}\n\
sites:\n  - from: {{ host: local, glob: \"old/www/*/\" }}\n    to: {{ host: local, path: \"new/www/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n\
mail:\n  - layout: maildir\n    from: {{ host: local, path: old/vmail }}\n    to: {{ host: local, path: new/vmail }}\n\
dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\", tsig: {{ name: {}, secret_env: IT_TSIG }} }}\n  zones: [example.test]\n  nameservers: [\"127.0.0.1:{}\"]\n  resolvers: [\"127.0.0.1:{}\"]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 2s\n  zone_share: {{ max: 1.0 }}\n{dns_extra}\
cutover:\n  batch: 6\n  freeze_files: [\".maintenance\"]\n  freeze: {{ run: \"touch {{path}}/.maintenance{freeze_gate}\" }}\n  unfreeze: {{ run: \"rm -f {{path}}/.maintenance\" }}\n  probe: {{ http: \"http://{{domain}}:{port}/\", expect: [200], timeout: 5s }}\n  on_failure: rollback\n",
            shared.state_key("3s"),
            bind.port,
            bind.tsig_name,
            bind.port,
            stale.port,
        ),
    )
    .unwrap();
    let original = (1..=SITES)
        .map(|i| (site(i), bind.dig_ttl(&site(i), "A")))
        .collect();
    Move {
        shared,
        tsig: bind.tsig_secret.clone(),
        bind,
        work,
        plan,
        original,
        context: Default::default(),
        _servers: (stale, old, new),
    }
}

impl Move {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_transhumance"));
        cmd.arg("--yes")
            .args(args)
            .arg(&self.plan)
            .env("IT_TSIG", &self.tsig)
            .env(PASSWORD_ENV, PASSWORD);
        cmd
    }

    /// Starts worker `n` of a cutover, its output in `worker<n>.log`.
    fn worker(&self, n: usize) -> Child {
        self.worker_of(n, "cutover")
    }

    fn worker_of(&self, n: usize, verb: &str) -> Child {
        let log = std::fs::File::create(self.log(n)).unwrap();
        self.command(&["worker", "--verb", verb])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, n: usize) -> PathBuf {
        self.work.path().join(format!("worker{n}.log"))
    }

    fn logs(&self) -> String {
        let context = self.context.borrow().clone();
        context
            + &(0..3)
                .map(|n| {
                    format!(
                        "--- worker {n}\n{}",
                        std::fs::read_to_string(self.log(n)).unwrap_or_default()
                    )
                })
                .collect::<String>()
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// How many site steps the journal holds now.
    fn site_steps(&self, client: &mut postgres::Client) -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM transhumance_journal WHERE plan = $1 AND entry->>'kind' = 'site'",
                &[&PLAN_NAME],
            )
            .map(|r| r.get(0))
            .unwrap_or(0)
    }

    fn client(&self) -> postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match postgres::Client::connect(
                &format!("{} password={PASSWORD}", self.shared.conninfo),
                postgres::NoTls,
            ) {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits for the surviving workers to end (bounded), returning their exit codes.
    fn finish(&self, workers: Vec<Child>) -> Vec<Option<i32>> {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut codes = Vec::new();
        for mut w in workers {
            loop {
                if let Some(status) = w.try_wait().unwrap() {
                    codes.push(status.code());
                    break;
                }
                if Instant::now() > deadline {
                    let _ = w.kill();
                    panic!("a worker did not finish:\n{}", self.logs());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        codes
    }

    /// Every site is confirmed or rolled back exactly: as the journal folds (`report` from
    /// another process), as DNS serves it, as the sources' freeze markers say. Takeovers name
    /// the killed worker and came once its lease had expired. `resume` has nothing left.
    fn check_the_end(&self, killed: u32) {
        let w = self.work.path();
        let (code, out) = self.run(&["report", "--format", "json"]);
        assert_eq!(code, Some(0), "{out}");
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let states: BTreeMap<String, String> = report["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(states.len(), SITES, "{states:?}");
        for (name, state) in &states {
            let frozen = w.join("old/www").join(name).join(".maintenance").exists();
            if name == STALE {
                assert_eq!(state, "rolled_back", "{name}\n{}", self.logs());
                assert_eq!(
                    self.bind.dig_ttl(name, "A"),
                    self.original[name],
                    "{name} back exactly, TTL included\n{}",
                    self.logs()
                );
                assert!(!frozen, "{name} reopened");
            } else {
                assert_eq!(state, "confirmed", "{name}\n{}", self.logs());
                assert_eq!(
                    self.bind.dig(name, "A"),
                    vec![NEW],
                    "{name}\n{}",
                    self.logs()
                );
                assert!(frozen, "{name}: the source stays frozen once confirmed");
                assert!(w.join("new/www").join(name).join("data/blob.bin").exists());
            }
        }
        assert!(
            w.join("new/vmail/example.test/alice/Maildir/cur")
                .read_dir()
                .unwrap()
                .count()
                == 1,
            "the mail moved as a unit of no site"
        );
        let journal = self.shared.entries(PLAN_NAME);
        for t in journal.iter().filter(|e| e["kind"] == "takeover") {
            assert!(
                t["from"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("PID {killed},")),
                "only the killed worker's leases are taken over: {t}\n{}",
                self.logs()
            );
            assert!(
                t["taken_ms"].as_i64().unwrap() >= t["expired_ms"].as_i64().unwrap(),
                "taken before its lease expired: {t}\n{}",
                self.logs()
            );
        }
        let runs = journal.iter().filter(|e| e["kind"] == "run").count();
        let ends = journal.iter().filter(|e| e["kind"] == "run_end").count();
        assert_eq!(
            (runs, ends),
            (1, 1),
            "one run for the three workers, ended once"
        );
        let (code, out) = self.run(&["status"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("11 confirmed · 1 rolled-back"), "{out}");
        let (code, out) = self.run(&["resume"]);
        assert_eq!(code, Some(0), "nothing left to finish: {out}");
    }
}

/// A gate in the freeze command of `GATED`: the first freeze of it writes its caller's PID (the
/// worker's) and blocks until the gate opens; later ones go through.
struct Gate(tempfile::TempDir);

impl Gate {
    fn new() -> Gate {
        Gate(tempfile::tempdir().unwrap())
    }

    /// What the plan's freeze command gets appended.
    fn hook(&self) -> String {
        let (gate, release) = (self.0.path().join("gate"), self.0.path().join("release"));
        format!(
            " && if [ {{name}} = {GATED} ] && mkdir {} 2>/dev/null; then echo $PPID > {}/pid; while [ ! -e {} ]; do sleep 0.05; done; fi",
            gate.display(),
            gate.display(),
            release.display()
        )
    }

    /// Waits (bounded) until a worker is held at the gate; its PID.
    fn reached(&self, m: &Move) -> u32 {
        let pid_file = self.0.path().join("gate/pid");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no worker reached the gate:\n{}",
                m.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn open(&self) {
        std::fs::write(self.0.path().join("release"), b"").unwrap();
    }
}

#[test]
fn a_worker_killed_while_it_holds_a_site_is_taken_over_and_the_others_finish() {
    // The gated site's first freeze blocks until the test has killed the worker running it; its
    // taker freezes it again (freeze commands are idempotent) without blocking.
    let gate = Gate::new();
    let m = setup(&gate.hook());
    let mut workers: Vec<Child> = (0..3).map(|n| m.worker(n)).collect();
    let holder = gate.reached(&m);
    let victim = workers
        .iter()
        .position(|w| w.id() == holder)
        .unwrap_or_else(|| panic!("the gate's caller {holder} is not a worker"));
    let mut killed = workers.remove(victim);
    killed.kill().unwrap(); // SIGKILL
    let status = killed.wait().unwrap();
    gate.open();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    for code in m.finish(workers) {
        assert!(matches!(code, Some(0 | 1)), "{code:?}\n{}", m.logs());
    }
    m.check_the_end(holder);
    // The gated site itself went to another worker, after the lease expired.
    let journal = m.shared.entries(PLAN_NAME);
    let takeover = journal
        .iter()
        .find(|e| e["kind"] == "takeover" && e["unit"] == GATED)
        .unwrap_or_else(|| panic!("{GATED} was not taken over: {journal:?}"));
    assert!(
        takeover["by"]
            .as_str()
            .is_some_and(|b| !b.contains(&format!("PID {holder},"))),
        "{takeover}"
    );
    let (_, out) = m.run(&["report", "--format", "json"]);
    assert!(
        out.contains("taken over by") && out.contains("once the lease of"),
        "the report tells the takeover: {out}"
    );
}

#[test]
fn a_worker_killed_at_a_random_instant_leaves_every_site_confirmed_or_rolled_back() {
    let seed = std::env::var("WORKERS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    // splitmix64, one draw per choice.
    let mut state = seed;
    let mut draw = |n: u64| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    };
    let victim = draw(3) as usize;
    // Twelve sites journal about eight steps each: the kill lands between the first freezes
    // and the last confirmations.
    let after_steps = 4 + draw(70) as i64;
    let m = setup("");
    let mut client = m.client();
    let mut workers: Vec<Child> = (0..3).map(|n| m.worker(n)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while m.site_steps(&mut client) < after_steps {
        assert!(
            workers.iter_mut().all(|w| w.try_wait().unwrap().is_none()),
            "seed {seed}: the move ended before step {after_steps}:\n{}",
            m.logs()
        );
        assert!(Instant::now() < deadline, "seed {seed}:\n{}", m.logs());
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut killed = workers.remove(victim);
    let pid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();
    for code in m.finish(workers) {
        assert!(
            matches!(code, Some(0 | 1)),
            "seed {seed}: {code:?}\n{}",
            m.logs()
        );
    }
    *m.context.borrow_mut() = format!(
        "seed {seed} (WORKERS_SEED replays it): worker {victim} killed after {after_steps} site steps\n"
    );
    m.check_the_end(pid);
}

#[test]
fn workers_of_a_run_pre_sync_wait_for_the_lowered_ttls_together_then_cut_over() {
    let m = setup_with("", 2, "  lower_ttl: 1\n");
    let workers: Vec<Child> = (0..2).map(|n| m.worker_of(n, "run")).collect();
    for code in m.finish(workers) {
        assert!(matches!(code, Some(0 | 1)), "{code:?}\n{}", m.logs());
    }
    let journal = m.shared.entries(PLAN_NAME);
    // Every site pre-synced before any was frozen, and frozen only once the lowered TTL was
    // safe, whichever worker did what.
    let position = |f: &dyn Fn(&Value) -> bool| journal.iter().position(f);
    let last_presync = journal
        .iter()
        .rposition(|e| e["kind"] == "site" && e["state"] == "pre_synced")
        .unwrap_or_else(|| panic!("no pre-sync: {journal:?}"));
    let safe_after = journal
        .iter()
        .filter_map(|e| e["safe_after"].as_u64())
        .max()
        .unwrap_or_else(|| {
            panic!(
                "no TTL lowered: {}\n{}",
                m.shared.pg.psql(
                    "moves",
                    "SELECT item, outcome FROM transhumance_queue_items WHERE outcome IS NOT NULL"
                ),
                m.logs()
            )
        });
    let first_freeze = position(&|e| e["kind"] == "site" && e["state"] == "freezing").unwrap();
    assert!(last_presync < first_freeze, "{journal:?}");
    assert!(
        journal[first_freeze]["at"].as_u64().unwrap() >= safe_after,
        "frozen before the old TTL ran out: {journal:?}"
    );
    for i in 1..=SITES {
        assert_eq!(
            journal
                .iter()
                .filter(|e| e["site"] == site(i).as_str() && e["state"] == "pre_synced")
                .count(),
            1,
            "one pre-sync of {} for both workers",
            site(i)
        );
    }
    // The confirmed sites' records carry their original TTL again; the rolled back one is as
    // it was.
    m.check_the_end(0);
    for i in 1..=SITES {
        assert_eq!(m.bind.dig_ttl(&site(i), "A")[0].0, 2, "{}", site(i));
    }
}

#[test]
fn workers_of_a_run_planned_later_stop_after_the_pre_sync_and_say_why() {
    let m = setup_with("", 2, "  lower_ttl: 1\n");
    let text = std::fs::read_to_string(&m.plan)
        .unwrap()
        .replace("cutover:\n", "cutover:\n  at: \"2099-01-01T00:00:00Z\"\n");
    std::fs::write(&m.plan, text).unwrap();
    let workers: Vec<Child> = (0..2).map(|n| m.worker_of(n, "run")).collect();
    assert_eq!(m.finish(workers), vec![Some(0), Some(0)], "{}", m.logs());
    for n in 0..2 {
        let log = std::fs::read_to_string(m.log(n)).unwrap();
        assert!(
            log.contains("the workers stopped after the pre-sync: the cutover is planned at 2099-01-01T00:00:00Z"),
            "worker {n}: {log}"
        );
    }
    let journal = m.shared.entries(PLAN_NAME);
    let pre_synced = journal
        .iter()
        .filter(|e| e["kind"] == "site" && e["state"] == "pre_synced")
        .count();
    assert_eq!(pre_synced, SITES, "{journal:?}");
    assert!(
        !journal
            .iter()
            .any(|e| e["state"] == "freezing" || e["kind"] == "dns_intent"),
        "nothing frozen, no DNS touched: {journal:?}"
    );
    assert_eq!(journal.iter().filter(|e| e["kind"] == "run_end").count(), 1);
}

#[test]
fn a_worker_stopped_by_sigterm_gives_its_site_back_and_the_other_cuts_it_over() {
    let gate = Gate::new();
    let m = setup(&gate.hook());
    let workers: Vec<Child> = (0..2).map(|n| m.worker(n)).collect();
    let holder = gate.reached(&m);
    let stopped = workers.iter().position(|w| w.id() == holder).unwrap();
    // SAFETY: a signal to a child this test started.
    assert_eq!(unsafe { libc::kill(holder as i32, libc::SIGTERM) }, 0);
    gate.open();
    let codes = m.finish(workers);
    assert_eq!(
        codes[stopped],
        Some(1),
        "a stopped worker exits 1\n{}",
        m.logs()
    );
    let log = std::fs::read_to_string(m.log(stopped)).unwrap();
    assert!(
        log.contains("interrupted:") && log.contains("SIGTERM"),
        "{log}"
    );
    // The other finished everything, the gated site included, with no lease to wait for.
    m.check_the_end(0);
    let journal = m.shared.entries(PLAN_NAME);
    assert!(
        !journal.iter().any(|e| e["kind"] == "takeover"),
        "the stopped worker gave its leases back: {journal:?}"
    );
    let gated: Vec<&str> = journal
        .iter()
        .filter(|e| e["kind"] == "site" && e["site"] == GATED)
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert!(
        gated.windows(2).any(|w| w == ["failed", "freezing"]),
        "undone by the stop, then frozen again by the other worker: {gated:?}"
    );
}
