//! The journal kept in PostgreSQL, through the library, against a real server that asks for
//! passwords: one order every controller reads, leases whose loss refuses every later write
//! about the unit (fencing), takeovers only once a lease expired, the staged work queue, and
//! `status` showing the leases held.

use std::time::Duration;

use serde_json::{Value, json};
use transhumance::journal::postgres::{Next, PgConfig, PgStore};
use transhumance::journal::{Journal, JournalError};

use crate::harness::Postgres;

/// The role and database an operator makes for the move (as the README says), on a server
/// that asks every other role for its password.
pub(crate) struct SharedJournal {
    pub(crate) pg: Postgres,
    pub(crate) conninfo: String,
}

pub(crate) const PASSWORD: &str = "M1grat0r-pw";
pub(crate) const PASSWORD_ENV: &str = "IT_JOURNAL_PASSWORD";

pub(crate) fn shared_journal() -> SharedJournal {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        &format!("CREATE ROLE migrator LOGIN PASSWORD '{PASSWORD}'"),
    );
    pg.psql("postgres", "CREATE DATABASE moves OWNER migrator");
    pg.require_passwords();
    let conninfo = format!("host=127.0.0.1 port={} dbname=moves user=migrator", pg.port);
    SharedJournal { pg, conninfo }
}

impl SharedJournal {
    /// The plan's `state:` key, its password in `PASSWORD_ENV`.
    pub(crate) fn state_key(&self, lease: &str) -> String {
        format!(
            "state: {{ postgres: \"{}\", password_env: {PASSWORD_ENV}, lease: {lease} }}\n",
            self.conninfo
        )
    }

    /// Every entry of `plan`'s journal, in order.
    pub(crate) fn entries(&self, plan: &str) -> Vec<Value> {
        let text = self.pg.psql(
            "moves",
            &format!(
                "SELECT entry::text FROM transhumance_journal WHERE plan = '{plan}' ORDER BY seq"
            ),
        );
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn config(&self, plan: &str, who: &str, lease: Duration) -> PgConfig {
        PgConfig {
            conninfo: self.conninfo.clone(),
            base_dir: std::path::PathBuf::new(),
            password: Some(PASSWORD.into()),
            plan: plan.into(),
            lease,
            holder_info: who.into(),
        }
    }

    fn journal(&self, plan: &str, who: &str, lease: Duration) -> Journal<Value> {
        Journal::over(Box::new(
            PgStore::open(self.config(plan, who, lease)).unwrap(),
        ))
        .unwrap()
    }

    /// Makes every lease of `unit` look expired (a controller stalled past its lease).
    fn expire(&self, plan: &str, unit: &str) {
        self.pg.psql(
            "moves",
            &format!(
                "UPDATE transhumance_leases SET expires_at = now() - interval '1 second' \
                 WHERE plan = '{plan}' AND unit = '{unit}'"
            ),
        );
    }
}

#[test]
fn a_controller_that_lost_its_lease_can_no_longer_write_about_the_unit() {
    let j = shared_journal();
    let lease = Duration::from_secs(30);
    let mut a = j.journal("p", "controller A", lease);
    let mut b = j.journal("p", "controller B", lease);
    let (la, lb) = (a.leases().unwrap(), b.leases().unwrap());
    let taken = la.try_take("site1").unwrap().unwrap();
    assert!(taken.takeover.is_none());
    a.write_about(&json!({"a": 1}), Some("site1")).unwrap();
    // A live lease is never taken.
    let held = lb.try_take("site1").unwrap().unwrap_err();
    assert_eq!(held.holder, "controller A");
    assert!(held.expires_in_ms > 0);

    // A stalls past its lease (its heartbeat may renew meanwhile: expire until B gets it).
    let taken = loop {
        j.expire("p", "site1");
        if let Ok(t) = lb.try_take("site1").unwrap() {
            break t;
        }
    };
    let takeover = taken.takeover.expect("taken from an expired holder");
    assert_eq!(takeover.from, "controller A");
    assert!(takeover.taken_ms >= takeover.expired_ms, "{takeover:?}");
    b.write_about(&json!({"b": 1}), Some("site1")).unwrap();

    // A wakes up: nothing it writes about the site is accepted any more.
    let err = a.write_about(&json!({"a": 2}), Some("site1")).unwrap_err();
    assert!(
        matches!(&err, JournalError::LeaseLost { unit, holder: Some(h) } if unit == "site1" && h == "controller B"),
        "{err:?}"
    );
    assert!(a.write_about(&json!({"a": 3}), Some("site1")).is_err());
    assert!(matches!(
        la.check("site1"),
        Err(JournalError::LeaseLost { .. })
    ));
    // Entries about no unit need no lease; a unit never leased is refused once required.
    a.write_about(&json!({"a": "run"}), None).unwrap();
    la.require();
    assert!(matches!(
        a.write_about(&json!({"a": 4}), Some("site2")),
        Err(JournalError::LeaseLost { holder: None, .. })
    ));
    // Every controller reads one order, and A's refused entries are nowhere.
    b.refresh().unwrap();
    let expected = vec![json!({"a": 1}), json!({"b": 1}), json!({"a": "run"})];
    assert_eq!(b.entries().unwrap(), expected);
    assert_eq!(a.entries().unwrap(), expected);
    assert_eq!(j.entries("p"), expected);
    // Another plan's journal in the same tables is its own.
    let mut other = j.journal("q", "controller C", lease);
    assert!(other.entries().unwrap().is_empty());
}

#[test]
fn appends_of_many_controllers_are_read_in_one_order_without_a_gap() {
    let j = shared_journal();
    let lease = Duration::from_secs(30);
    let mut reader = j.journal("p", "reader", lease);
    let mut seen: Vec<Value> = Vec::new();
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let mut journal = j.journal("p", &format!("writer {w}"), lease);
                s.spawn(move || {
                    for i in 0..40 {
                        journal.write_about(&json!({"w": w, "i": i}), None).unwrap();
                    }
                })
            })
            .collect();
        // Read while they write: a reader never skips an entry committed late.
        // Each entry is handed out once, by the refresh that first finds it.
        while !writers.iter().all(|w| w.is_finished()) {
            seen.extend(reader.refresh().unwrap().into_iter().map(|(_, e)| e));
        }
    });
    seen.extend(reader.refresh().unwrap().into_iter().map(|(_, e)| e));
    assert_eq!(seen.len(), 120);
    assert_eq!(seen, j.entries("p"));
    for w in 0..3 {
        let mine: Vec<i64> = seen
            .iter()
            .filter(|e| e["w"] == w)
            .map(|e| e["i"].as_i64().unwrap())
            .collect();
        assert_eq!(mine, (0..40).collect::<Vec<_>>(), "writer {w} in its order");
    }
}

#[test]
fn the_queue_starts_a_stage_once_the_one_before_is_done_everywhere() {
    let j = shared_journal();
    let lease = Duration::from_secs(30);
    let (a, b) = (
        j.journal("p", "worker A", lease),
        j.journal("p", "worker B", lease),
    );
    let (la, lb) = (a.leases().unwrap(), b.leases().unwrap());
    let items = vec![
        ("s1".to_string(), "s1".to_string(), 0),
        ("s2".to_string(), "s2".to_string(), 0),
        (
            "(platform) batch 1".to_string(),
            "(platform)".to_string(),
            1,
        ),
    ];
    let qa = la.join_or_create("cutover", &items).unwrap();
    assert!(qa.created);
    let qb = lb.join_or_create("cutover", &items).unwrap();
    assert_eq!((qb.id, qb.created), (qa.id, false));
    assert!(matches!(
        lb.join_or_create("sync", &items),
        Err(JournalError::Busy(_))
    ));
    let take = |l: &transhumance::journal::postgres::Leases| match l.next(qa.id).unwrap() {
        Next::Item { item, lease } => Some((item, lease)),
        Next::Wait => None,
        Next::Done => panic!("not done yet"),
    };
    let (s1, _) = take(&la).unwrap();
    let (s2, _) = take(&lb).unwrap();
    assert_eq!((s1.item.as_str(), s2.item.as_str()), ("s1", "s2"));
    // The platform step waits for both sites.
    assert!(take(&la).is_none());
    la.finish(qa.id, &s1, None, Some("ok")).unwrap();
    assert!(take(&la).is_none());
    // B stalls holding s2: its item is taken over once the lease expired, not before.
    assert!(take(&la).is_none());
    let (again, lease) = loop {
        j.expire("p", "s2");
        if let Some(t) = take(&la) {
            break t;
        }
    };
    assert_eq!(again.item, "s2");
    let takeover = lease.takeover.expect("taken over");
    assert_eq!(takeover.from, "worker B");
    // B wakes up: its step's end is refused, A's stands.
    assert!(matches!(
        lb.finish(qa.id, &s2, None, Some("late")),
        Err(JournalError::LeaseLost { .. })
    ));
    la.finish(qa.id, &again, None, None).unwrap();
    let (p, _) = take(&la).unwrap();
    assert_eq!(p.unit, "(platform)");
    la.finish(qa.id, &p, None, Some("db failed")).unwrap();
    assert_eq!(
        la.outcome(qa.id, "(platform) batch 1").unwrap().as_deref(),
        Some("db failed")
    );
    assert!(matches!(la.next(qa.id).unwrap(), Next::Done));
    assert!(
        la.close(qa.id).unwrap().is_some(),
        "the first closer ends the run"
    );
    assert!(la.close(qa.id).unwrap().is_none());
    assert!(la.open_queue().unwrap().is_none());
}

/// `status` (issue 18) shows which controller holds which site's lease and until when, read
/// from the shared journal while the holder works; once it lets go, the line is gone.
#[test]
fn status_shows_who_holds_which_lease_until_when() {
    let j = shared_journal();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for site in ["a.example.test", "b.example.test"] {
        std::fs::create_dir_all(w.join("old").join(site)).unwrap();
        std::fs::write(w.join("old").join(site).join("index.html"), site).unwrap();
    }
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: leases-shown\nstate_dir: state\n{}sites:\n  \
             - from: {{ host: local, glob: \"old/*/\" }}\n    to: {{ host: local, path: \"new/{{name}}/\" }}\n",
            j.state_key("30s")
        ),
    )
    .unwrap();
    let status = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_transhumance"));
        cmd.arg("status")
            .arg(&plan)
            .current_dir(w)
            .env(PASSWORD_ENV, PASSWORD);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Nothing held: no leases in either form.
    let report: Value = serde_json::from_str(&status(true)).unwrap();
    assert!(report.get("leases").is_none(), "{report}");
    assert!(!status(false).contains("Leases held"));

    let holder = j.journal(
        "leases-shown",
        "controller A (pid 1)",
        Duration::from_secs(30),
    );
    let leases = holder.leases().unwrap();
    leases.try_take("b.example.test").unwrap().unwrap();
    let report: Value = serde_json::from_str(&status(true)).unwrap();
    let shown = report["leases"].as_array().expect("leases shown");
    assert_eq!(shown.len(), 1, "{report}");
    assert_eq!(shown[0]["unit"], "b.example.test");
    assert_eq!(shown[0]["holder"], "controller A (pid 1)");
    let left = shown[0]["expires_in_secs"].as_u64().unwrap();
    assert!((1..=30).contains(&left), "{left}");
    assert!(
        shown[0]["until"].as_str().unwrap().ends_with('Z'),
        "{report}"
    );
    let text = status(false);
    assert!(text.contains("Leases held (1):"), "{text}");
    assert!(
        text.contains("  b.example.test: controller A (pid 1) until "),
        "{text}"
    );

    leases.release("b.example.test").unwrap();
    let report: Value = serde_json::from_str(&status(true)).unwrap();
    assert!(report.get("leases").is_none(), "{report}");
}
