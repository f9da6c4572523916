//! Progress that moves: bytes are told as they stream inside one big file (sent whole, by
//! delta, pulled), JSON lines carry them as `progress` records, and a plan's `sync` folds every
//! site's engines into one phase per kind of unit.

use std::path::Path;

use transhumance::event::{Event, Recorder};

use crate::cli::bin;
use crate::harness::{Bind, MariaDb, Sshd};

const BIG: u64 = 64 << 20;

/// `len` bytes no two blocks of which are alike (a delta then finds only what did not change).
fn noise(len: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn events(r: Recorder) -> Vec<Event> {
    r.events.into_inner().unwrap()
}

/// The bytes told of `phase`, in order.
fn bytes_done(events: &[Event], phase: &str) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BytesDone { phase: p, bytes } if p == phase => Some(*bytes),
            _ => None,
        })
        .collect()
}

/// One file's run: it starts, several chunks of bytes come before it is done, adding up to its
/// size; none after.
fn assert_streamed(events: &[Event], path: &str, size: u64, how: &str) {
    let at = |want: &dyn Fn(&Event) -> bool| events.iter().position(want);
    let started = at(
        &|e| matches!(e, Event::UnitStarted { unit, bytes, .. } if unit == path && *bytes == size),
    )
    .unwrap_or_else(|| panic!("{how}: no start for {path}: {events:?}"));
    let done = at(&|e| matches!(e, Event::UnitDone { unit, .. } if unit == path))
        .unwrap_or_else(|| panic!("{how}: {path} not done: {events:?}"));
    let before = bytes_done(&events[started..done], "files");
    assert!(
        before.len() >= 4,
        "{how}: bytes told as they stream, not once: {before:?}"
    );
    // Each step adds: the count grows strictly, up to the file's size.
    let mut cumulative = 0;
    for b in &before {
        assert!(*b > 0, "{how}: {before:?}");
        cumulative += b;
        assert!(cumulative <= size, "{how}: past the size: {before:?}");
    }
    assert_eq!(cumulative, size, "{how}");
    assert_eq!(
        bytes_done(&events[done..], "files"),
        Vec::<u64>::new(),
        "{how}: counted again at the end"
    );
    assert!(
        events.contains(&Event::BytesTotal {
            phase: "files".into(),
            bytes: size
        }),
        "{how}"
    );
}

#[test]
fn a_big_file_tells_its_bytes_as_they_stream_whole_by_delta_and_pulled() {
    use transhumance::cli::endpoint::{Location, connect};
    use transhumance::sync::{SyncOptions, sync};
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst, back) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("back"),
    );
    std::fs::create_dir_all(&src).unwrap();
    let mut data = noise(BIG);
    std::fs::write(src.join("big.bin"), &data).unwrap();
    let local = |p: &Path| connect(&Location::Local(p.to_path_buf()), None).unwrap();
    let remote = |p: &Path| {
        connect(
            &Location::Remote(
                transhumance::plan::units::parse_ssh_target("root@127.0.0.1").unwrap(),
                p.to_path_buf(),
            ),
            Some(&sshd.ssh_command()),
        )
        .unwrap()
    };
    let run = |from: &transhumance::sync::Endpoint, to: &transhumance::sync::Endpoint| {
        let r = Recorder::default();
        let report = sync(from, to, &SyncOptions::default(), &r).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        (report, events(r))
    };

    let (report, e) = run(&local(&src), &remote(&dst));
    assert_eq!(report.files_sent, 1);
    assert_streamed(&e, "big.bin", BIG, "sent whole over ssh");

    // A few bytes in the middle change: the delta covers the whole source as it reads it.
    data[(BIG / 2) as usize..(BIG / 2) as usize + 100].fill(0xAB);
    std::fs::write(src.join("big.bin"), &data).unwrap();
    let (report, e) = run(&local(&src), &remote(&dst));
    assert_eq!(report.files_delta, 1, "{report:?}");
    assert_streamed(&e, "big.bin", BIG, "delta over ssh");

    // Pulled: the chunks come from the far agent.
    let (report, e) = run(&remote(&dst), &local(&back));
    assert_eq!(report.files_sent, 1);
    assert_streamed(&e, "big.bin", BIG, "pulled over ssh");
    assert_eq!(std::fs::read(back.join("big.bin")).unwrap(), data);
}

#[test]
fn json_lines_carry_progress_records_that_grow_up_to_the_total() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), noise(16 << 20)).unwrap();
    let out = bin()
        .args(["copy", "--json", "-v"])
        .arg(format!("{}/", src.display()))
        .arg(work.path().join("dst"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let records: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "progress" && l["phase"] == "files")
        .collect();
    assert!(records.len() >= 2, "{err}");
    let bytes: Vec<u64> = records
        .iter()
        .map(|r| r["bytes"].as_u64().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
    let last = records.last().unwrap();
    assert_eq!(last["bytes"], 16 << 20, "{err}");
    assert_eq!(last["total_bytes"], 16 << 20, "{err}");
    assert_eq!(last["eta_s"], 0, "{err}");
    for field in ["bytes_per_sec", "file", "units", "total_units"] {
        assert!(last.get(field).is_some(), "{field}: {last}");
    }
    assert!(
        records.iter().any(|r| r["file"] == "big.bin"),
        "the file in flight is named: {err}"
    );
    // Raw chunk counts are folded into the records; the other events stay.
    assert!(!lines.iter().any(|l| l["event"] == "bytes_done"), "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "unit_done" && l["unit"] == "big.bin"),
        "{err}"
    );
}

#[test]
fn a_plan_sync_folds_every_site_into_one_phase_of_files_databases_and_mail() {
    use transhumance::lifecycle::migrate::Migration;
    use transhumance::lifecycle::{Connections, default_agent_binary};
    let bind = Bind::start(&[("example.test", &crate::lifecycle::zone())]);
    let (msrc, mdst) = (MariaDb::start(), MariaDb::start());
    let port = crate::lifecycle::free_port_on_both();
    let world = crate::lifecycle::world(&bind, &msrc, &mdst, port, 25);
    let big = 4u64 << 20;
    std::fs::write(
        world
            .work
            .path()
            .join("old/www/beta.example.test/data/video.bin"),
        noise(big),
    )
    .unwrap();
    let loaded = transhumance::plan::load(&world.plan).unwrap();
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let recorder = Recorder::default();
    let outcomes = Migration::open(
        &loaded,
        &connections,
        &recorder,
        transhumance::check::Allowed::none(),
    )
    .unwrap()
    .sync(&[])
    .unwrap();
    assert!(outcomes.iter().all(|o| o.ok()), "{outcomes:?}");
    let e = events(recorder);
    let started = |phase: &str| {
        e.iter()
            .filter(|x| matches!(x, Event::PhaseStarted { phase: p, .. } if p == phase))
            .count()
    };
    // One phase each over the three sites; the engines' own phases stay inside.
    assert_eq!(
        (
            started("files"),
            started("databases"),
            started("mail"),
            started("scan")
        ),
        (1, 1, 1, 0),
        "{e:?}"
    );
    let last_total = |phase: &str| {
        e.iter().rev().find_map(|x| match x {
            Event::BytesTotal { phase: p, bytes } if p == phase => Some(*bytes),
            _ => None,
        })
    };
    // Totals add up as each site announces its files; every byte of them is told.
    let files = bytes_done(&e, "files");
    assert!(files.len() > 16, "{files:?}");
    let files_total = last_total("files").unwrap();
    assert!(files_total > big + 3 * 300_000, "{files_total}");
    assert_eq!(files.iter().sum::<u64>(), files_total);
    assert!(
        e.iter()
            .any(|x| matches!(x, Event::UnitStarted { phase, unit, bytes }
            if phase == "files" && unit == "beta.example.test: data/video.bin" && *bytes == big)),
        "the file in flight is named with its site: {e:?}"
    );
    let mail = bytes_done(&e, "mail");
    assert_eq!(Some(mail.iter().sum::<u64>()), last_total("mail"), "{e:?}");
    // Dumps have no total before they end: their bytes are told as they pass.
    assert!(bytes_done(&e, "databases").iter().sum::<u64>() > 0, "{e:?}");
    for unit in ["alpha.example.test: alpha_wp", "(platform): shared_stats"] {
        assert!(
            e.iter()
                .any(|x| matches!(x, Event::UnitStarted { phase, unit: u, .. }
                if phase == "databases" && u == unit)),
            "{unit}: {e:?}"
        );
    }
    // The engines' files are theirs to count; the sites are the lifecycle's.
    assert!(
        !e.iter()
            .any(|x| matches!(x, Event::UnitDone { phase, .. } if phase == "files")),
        "{e:?}"
    );
    let sites_done = e
        .iter()
        .filter(|x| matches!(x, Event::UnitDone { phase, .. } if phase == "pre-sync"))
        .count();
    assert_eq!(sites_done, 3);
    // Every phase started is finished, after its last bytes.
    for phase in ["files", "databases", "mail"] {
        let end = e
            .iter()
            .rposition(|x| matches!(x, Event::PhaseFinished { phase: p } if p == phase))
            .unwrap_or_else(|| panic!("{phase} not finished: {e:?}"));
        assert!(
            !e[end..]
                .iter()
                .any(|x| matches!(x, Event::BytesDone { phase: p, .. } if p == phase)),
            "{phase}: {e:?}"
        );
    }
}
