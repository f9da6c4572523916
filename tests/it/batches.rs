//! Small files sent many to a call (`WriteSmall`) over a real sshd: each lands, fails or is
//! reported on its own, and a run killed in the middle leaves no temp file among the site's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use transhumance::event::{Event, Observer, Recorder};

use crate::cli::bin;
use crate::harness::Sshd;

fn remote(p: &Path) -> String {
    format!("root@127.0.0.1:{}", p.display())
}

/// `n` small files in a few directories, each with content of its own.
fn small_tree(root: &Path, n: usize) {
    for i in 0..n {
        let d = root.join(format!("site{}/dir{}", i % 4, (i / 4) % 5));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i}.html")),
            format!("page {i} ").repeat(i % 50 + 1),
        )
        .unwrap();
    }
}

/// Every entry under `root` but the temp directory, relative, with its content for files.
fn entries(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".transhumance-tmp")
        .map(|e| {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            let content = e
                .file_type()
                .is_file()
                .then(|| std::fs::read(e.path()).unwrap());
            (rel, content)
        })
        .collect()
}

/// Removes one source file as its batch is being read: it vanished between listing and read.
struct Vanisher {
    path: PathBuf,
    name: String,
    seen: Recorder,
}

impl Observer for Vanisher {
    fn on_event(&self, event: &Event) {
        if let Event::UnitStarted { unit, .. } = event
            && *unit == self.name
        {
            let _ = std::fs::remove_file(&self.path);
        }
        self.seen.on_event(event);
    }
}

#[test]
fn a_batch_lands_its_files_and_names_the_vanished_one_and_the_blocked_one() {
    use transhumance::cli::endpoint::{Location, connect};
    use transhumance::sync::{SyncOptions, sync};
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    small_tree(&src, 200);
    // At the target, a directory with content stands where the source has a small file.
    std::fs::create_dir_all(dst.join("site1/dir2/f9.html/keep")).unwrap();
    std::fs::write(dst.join("site1/dir2/f9.html/keep/x"), b"not ours to remove").unwrap();
    let vanisher = Vanisher {
        path: src.join("site2/dir0/f42.html"),
        name: "site2/dir0/f42.html".into(),
        seen: Recorder::default(),
    };
    let from = connect(&Location::Local(src.clone()), None).unwrap();
    let to = connect(
        &Location::Remote(
            transhumance::plan::units::parse_ssh_target("root@127.0.0.1").unwrap(),
            dst.clone(),
        ),
        Some(&sshd.ssh_command()),
    )
    .unwrap();
    let report = sync(&from, &to, &SyncOptions::default(), &vanisher).unwrap();
    let mut failed: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
    failed.sort();
    assert_eq!(
        failed,
        ["site1/dir2/f9.html", "site2/dir0/f42.html"],
        "{:?}",
        report.errors
    );
    assert_eq!(report.verified, 198, "{report:?}");
    for e in &report.errors {
        if e.path == "site1/dir2/f9.html" {
            assert!(e.error.contains("not empty"), "{}", e.error);
        } else {
            assert!(e.error.contains("No such file"), "{}", e.error);
        }
    }
    // Every other file is there, whole; the blocked directory is untouched.
    for (rel, content) in entries(&src) {
        if let Some(c) = content
            && rel != Path::new("site1/dir2/f9.html")
        {
            assert_eq!(
                std::fs::read(dst.join(&rel)).unwrap(),
                c,
                "{}",
                rel.display()
            );
        }
    }
    assert!(dst.join("site1/dir2/f9.html/keep/x").exists());
    assert!(
        !dst.join(".transhumance-tmp").exists(),
        "temp directory left"
    );
    // Each file of a batch tells its own start and end, its bytes in between.
    let events = vanisher.seen.events.into_inner().unwrap();
    let done: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::UnitDone { unit, .. } => Some(unit),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 198);
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::UnitStarted { .. }))
        .count();
    assert_eq!(started, 200);
}

/// The pid of the process that has `path` open (the agent holds its target root's lock).
fn holder_of(path: &Path) -> Option<i32> {
    let want = std::fs::canonicalize(path).ok()?;
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == want))
        {
            return Some(pid);
        }
    }
    None
}

/// Kills (SIGKILL) the controller or the agent once some small files have landed, then checks
/// that every file the target shows is whole and the next run completes and cleans up.
fn killed_midway(kill_agent: bool) {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    small_tree(&src, 20_000);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(["copy", "-q", "-e", &sshd.ssh_command()])
        .arg(&src)
        .arg(remote(&dst))
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let landed = std::fs::read_dir(dst.join("site0/dir0")).map_or(0, |d| d.count());
        if landed >= 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no file landed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill: more files"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    if kill_agent {
        // The controller is held still first: it would reconnect and finish the copy.
        let agent = holder_of(&dst).expect("the agent holds the target");
        // SAFETY: signals to the controller and the agent this test started.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGSTOP);
            libc::kill(agent, libc::SIGKILL);
        }
    }
    let waited = std::time::Instant::now();
    while kill_agent && holder_of(&dst).is_some() {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the agent lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let waited = std::time::Instant::now();
    while holder_of(&dst).is_some() {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the agent lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown = entries(&dst);
    assert!(shown.len() < entries(&src).len(), "killed too late");
    for (rel, content) in &shown {
        let Some(c) = content else { continue };
        assert_eq!(
            Some(c),
            std::fs::read(src.join(rel)).ok().as_ref(),
            "{} is no whole source file",
            rel.display()
        );
    }
    let out = bin()
        .args(["copy", "--json", "-e", &sshd.ssh_command()])
        .arg(&src)
        .arg(remote(&dst))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&dst), entries(&src));
    assert!(!dst.join(".transhumance-tmp").exists(), "temp files left");
    let out = bin()
        .args(["verify", "-e", &sshd.ssh_command()])
        .arg(&src)
        .arg(remote(&dst))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_batched_copy_whose_controller_is_killed_leaves_only_whole_files() {
    killed_midway(false);
}

#[test]
fn a_batched_copy_whose_agent_is_killed_leaves_only_whole_files() {
    killed_midway(true);
}
