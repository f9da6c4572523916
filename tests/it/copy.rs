//! The file engine over a real sshd: fidelity, interrupted runs, hostile targets, delta, verify.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::bin;
use crate::harness::Sshd;

/// Everything a faithful copy must keep, per path: type, mode, owner, mtime, size, content
/// hash, link target, device number, and which paths share an inode.
fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let content = if m.file_type().is_file() {
            blake3::hash(&std::fs::read(e.path()).unwrap())
                .to_hex()
                .to_string()
        } else {
            String::new()
        };
        let link = std::fs::read_link(e.path())
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let group = if m.file_type().is_file() && m.nlink() > 1 {
            inodes
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            Vec::new()
        };
        let mtime = if m.file_type().is_symlink() {
            0
        } else {
            i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
        };
        out.insert(
            rel,
            format!(
                "mode={:o} uid={} gid={} mtime={mtime} size={} content={content} link={link} rdev={} linkgroup={}",
                m.mode(),
                m.uid(),
                m.gid(),
                if m.file_type().is_dir() { 0 } else { m.len() },
                m.rdev(),
                String::from_utf8_lossy(&group)
            ),
        );
    }
    out
}

fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
    ];
    // SAFETY: valid path and two timespecs.
    assert_eq!(
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                t.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        },
        0
    );
}

/// A tree with every kind of thing a hosting platform has, and some it should not.
fn make_rich_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    std::fs::create_dir_all(p("site/html/img")).unwrap();
    std::fs::create_dir_all(p("site/empty/deeper")).unwrap();
    std::fs::write(p("site/html/index.html"), b"<title>shop</title>").unwrap();
    std::fs::write(p("site/html/img/logo.png"), vec![42u8; 70_000]).unwrap();
    std::fs::write(
        root.join(OsStr::from_bytes(b"site/odd name\nwith newline \xff\xfe")),
        b"bytes are names",
    )
    .unwrap();
    std::os::unix::fs::symlink("html/index.html", p("site/current")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p("site/absolute-link")).unwrap();
    std::fs::hard_link(p("site/html/index.html"), p("site/index-hardlink.html")).unwrap();
    std::fs::set_permissions(p("site/html/img"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::write(p("site/secret.php"), b"<?php").unwrap();
    std::fs::set_permissions(p("site/secret.php"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(p("site/secret.php"), Some(1234), Some(5678)).unwrap();
    // Sparse: 20 MiB of hole with a little data at both ends.
    let f = std::fs::File::create(p("site/sparse.db")).unwrap();
    f.set_len(20 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"head", 0).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail", (20 << 20) - 4).unwrap();
    drop(f);
    let fifo = std::ffi::CString::new(p("site/queue.fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o620) }, 0);
    let dev = std::ffi::CString::new(p("site/null.dev").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path; we run as root in the test suite.
    assert_eq!(
        unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
        0
    );
    for (i, e) in walkdir::WalkDir::new(root)
        .contents_first(true)
        .into_iter()
        .enumerate()
    {
        set_mtime(e.unwrap().path(), 1_700_000_000 + i as i64, 123_456_789);
    }
}

fn ssh(sshd: &Sshd) -> String {
    sshd.ssh_command()
}

fn copy(sshd: &Sshd, src: &str, dst: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = bin()
        .arg("copy")
        .arg("--json")
        .args(extra)
        .args(["-e", &ssh(sshd)])
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn remote(p: &Path) -> String {
    format!("root@127.0.0.1:{}", p.display())
}

/// The directory at the top of a target where files are written before their rename.
const TEMP_DIR: &str = ".transhumance-tmp";

/// A file being written (or left by a writer that died) at the target, if there is one.
fn temp_file(dst: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dst.join(TEMP_DIR))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .next()
}

/// Waits until no process has `path` open (an agent that lost its controller exits).
fn wait_until_unheld(path: &Path) {
    let started = std::time::Instant::now();
    while holder_of(path).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the writer of {} never exited",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn push_and_pull_over_ssh_keep_everything() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, pushed, pulled) = (
        work.path().join("src"),
        work.path().join("pushed"),
        work.path().join("pulled"),
    );
    make_rich_tree(&src);
    // Issue 13: without `--devices` (rsync's name), the device node is refused: not created,
    // named with its numbers, exit 1; everything else is copied, the FIFO included.
    let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &remote(&pushed), &[]);
    assert_eq!(code, 1, "{err}\n{report:#}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(errors[0]["path"], "site/null.dev");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("character device 1:3 refused"),
        "{report:#}"
    );
    assert!(report["verified"].as_u64().unwrap() >= 5, "{report:#}");
    assert!(std::fs::symlink_metadata(pushed.join("site/null.dev")).is_err());
    let mut without = describe(&src);
    without.remove(&b"site/null.dev"[..]);
    assert_eq!(
        without,
        describe(&pushed),
        "push without --devices changed something else"
    );
    let out = bin()
        .args(["verify", "-e", &ssh(&sshd)])
        .arg(&src)
        .arg(remote(&pushed))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("refused   ") && text.contains("site/null.dev: character device 1:3 refused"),
        "{text}"
    );

    let (code, report, err) = copy(
        &sshd,
        src.to_str().unwrap(),
        &remote(&pushed),
        &["--devices"],
    );
    assert_eq!(code, 0, "{err}\n{report:#}");
    assert_eq!(describe(&src), describe(&pushed), "push changed something");
    assert_eq!(
        report["nodes"], 1,
        "only the device was left to make: {report:#}"
    );
    let (code, _, err) = copy(
        &sshd,
        &remote(&pushed),
        pulled.to_str().unwrap(),
        &["--devices"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(describe(&src), describe(&pulled), "pull changed something");
    let sparse = std::fs::metadata(pulled.join("site/sparse.db")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "the sparse file was filled: {} blocks",
        sparse.blocks()
    );

    // A second run has nothing to send.
    let (code, report, _) = copy(
        &sshd,
        src.to_str().unwrap(),
        &remote(&pushed),
        &["--devices"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        (report["files_sent"].as_u64(), report["bytes_sent"].as_u64()),
        (Some(0), Some(0)),
        "{report:#}"
    );

    // And verify agrees, over ssh too.
    let out = bin()
        .args(["verify", "--devices", "-e", &ssh(&sshd)])
        .arg(&src)
        .arg(remote(&pushed))
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
fn a_planted_symlink_cannot_send_writes_outside_the_target() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst, outside) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("outside"),
    );
    std::fs::create_dir_all(src.join("uploads")).unwrap();
    std::fs::write(src.join("uploads/evil.php"), b"<?php system($_GET['c']);").unwrap();
    std::fs::write(src.join("index.html"), b"hello").unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"precious").unwrap();
    // The target's `uploads` is a link out of the tree, and `index.html` a link to a file outside.
    std::os::unix::fs::symlink(&outside, dst.join("uploads")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep"), dst.join("index.html")).unwrap();
    let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "something was written outside"
    );
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(dst.join("uploads"))
            .unwrap()
            .is_dir(),
        "the link was replaced by a real directory"
    );
    assert_eq!(std::fs::read(dst.join("index.html")).unwrap(), b"hello");
}

#[test]
fn verify_finds_a_corrupted_target_file() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"the original content").unwrap();
    std::fs::write(src.join("b.txt"), b"untouched").unwrap();
    let out = bin().arg("copy").arg(&src).arg(&dst).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Same size, same mtime: only a content check can see it.
    let meta = std::fs::metadata(dst.join("a.txt")).unwrap();
    std::fs::write(dst.join("a.txt"), b"the 0riginal content").unwrap();
    set_mtime(&dst.join("a.txt"), meta.mtime(), meta.mtime_nsec());
    std::fs::write(dst.join("stray"), b"x").unwrap();
    let out = bin().arg("verify").arg(&src).arg(&dst).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("different") && text.contains("a.txt (content)"),
        "{text}"
    );
    assert!(text.contains("extra") && text.contains("stray"), "{text}");
    assert!(!text.contains("b.txt"), "{text}");
    // A quick-check copy does not see it; --checksum does and repairs it.
    let out = bin()
        .args(["copy", "--json", "--checksum"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["files_sent"], 1, "{r:#}");
    assert_eq!(
        std::fs::read(dst.join("a.txt")).unwrap(),
        b"the original content"
    );
}

#[test]
fn a_large_file_is_updated_by_delta_over_ssh() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    let mut data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("db.sql"), &data).unwrap();
    let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    data[8 << 20] ^= 0xff;
    data.extend_from_slice(b"-- appended line\n");
    std::fs::write(src.join("db.sql"), &data).unwrap();
    let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["files_delta"], 1, "{report:#}");
    let sent = report["bytes_sent"].as_u64().unwrap();
    assert!(
        sent < 64 * 1024,
        "a 1-byte change sent {sent} bytes of a 16 MiB file"
    );
    assert_eq!(std::fs::read(dst.join("db.sql")).unwrap(), data);
}

#[test]
fn a_killed_transfer_leaves_no_partial_file_and_the_rerun_reuses_it() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..400u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(src.join("video.mp4"), &data).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(["copy", "-q", "-e", &ssh(&sshd)])
        .arg(&src)
        .arg(remote(&dst))
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let partial = loop {
        if let Some(p) = temp_file(&dst)
            && std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) >= 16 << 20
        {
            break p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the transfer never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed: make the file bigger"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    // The agent on the far side dies with its ssh channel: its temp file is then a leftover.
    wait_until_unheld(&partial);
    assert!(
        !dst.join("video.mp4").exists(),
        "a partial file stands under the final name"
    );
    assert!(
        partial.exists(),
        "the partial file is kept for the next run"
    );
    let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        report["files_delta"], 1,
        "the partial was not used as a basis: {report:#}"
    );
    assert!(
        report["bytes_matched"].as_u64().unwrap() >= 8 << 20,
        "{report:#}"
    );
    assert_eq!(
        blake3::hash(&std::fs::read(dst.join("video.mp4")).unwrap()),
        blake3::hash(&data)
    );
    let left: Vec<PathBuf> = std::fs::read_dir(&dst)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![dst.join("video.mp4")], "temp files left behind");
}

#[test]
fn delete_refuses_to_empty_most_of_a_target() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("keep"), b"1").unwrap();
    for i in 0..5 {
        std::fs::write(dst.join(format!("old{i}")), b"x").unwrap();
    }
    let out = bin()
        .args(["copy", "--delete"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_dir(&dst).unwrap().count(),
        5,
        "nothing may change when refused"
    );
    let out = bin()
        .args(["copy", "--delete", "--force"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 1);
}

#[test]
fn with_delete_a_directory_the_source_now_has_as_a_file_or_a_link_is_replaced_in_one_pass() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let build = |to: &Path| {
        std::fs::create_dir_all(to.join("page/assets")).unwrap();
        std::fs::write(to.join("page/assets/a.css"), b"old").unwrap();
        std::fs::write(to.join("page/index.html"), b"old").unwrap();
        std::fs::create_dir_all(to.join("current/v1")).unwrap();
        std::fs::write(to.join("current/v1/app"), b"old").unwrap();
        for i in 0..10 {
            std::fs::write(to.join(format!("keep{i}")), format!("{i}")).unwrap();
        }
    };
    build(&dst);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("page"), b"now a file").unwrap();
    std::os::unix::fs::symlink("releases/v2", src.join("current")).unwrap();
    for i in 0..10 {
        std::fs::write(src.join(format!("keep{i}")), format!("{i}")).unwrap();
    }
    // Over ssh, then locally: both go through the same plan and the same agent calls.
    for (target, local) in [(remote(&dst), false), (dst.display().to_string(), true)] {
        if local {
            std::fs::remove_dir_all(&dst).unwrap();
            build(&dst);
        }
        let (code, json, stderr) = copy(&sshd, src.to_str().unwrap(), &target, &["--delete"]);
        assert_eq!(code, 0, "{stderr}\n{json}");
        assert_eq!(std::fs::read(dst.join("page")).unwrap(), b"now a file");
        assert_eq!(
            std::fs::read_link(dst.join("current")).unwrap(),
            Path::new("releases/v2")
        );
        let (code, _, stderr) = copy(&sshd, src.to_str().unwrap(), &target, &["--delete"]);
        assert_eq!(code, 0, "a second run has nothing left to do: {stderr}");
    }
    // Without --delete the directory stays, and the run says so.
    std::fs::remove_dir_all(&dst).unwrap();
    build(&dst);
    let (code, json, stderr) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 1, "{stderr}");
    let said = format!("{json}{stderr}");
    assert!(said.contains("use --delete"), "{said}");
    assert!(dst.join("page/index.html").exists());
}

#[test]
fn dry_run_itemizes_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    make_rich_tree(&src);
    let out = bin()
        .args(["copy", "--dry-run", "--devices"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mkdir      site/html")
            && text.contains("send       site/html/index.html")
            && text.contains("hardlink   site/index-hardlink.html")
            && text.contains("mknod      site/null.dev")
            && text.contains("mknod      site/queue.fifo"),
        "{text}"
    );
    assert!(!dst.exists());
    // Without `--devices`, the dry run says the device would be refused, and fails like the run.
    let out = bin()
        .args(["copy", "--dry-run"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(!text.contains("site/null.dev"), "{text}");
    assert!(
        err.contains("site/null.dev: character device 1:3 refused"),
        "{err}"
    );
    assert!(!dst.exists());
}

#[test]
fn an_unknown_host_key_stops_the_copy_and_names_the_host() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("kh"), b"").unwrap();
    let rsh = format!(
        "ssh -F /dev/null -p {} -i {} -o UserKnownHostsFile={}/kh -o StrictHostKeyChecking=yes",
        sshd.port,
        sshd.client_key.display(),
        work.path().display()
    );
    let out = bin()
        .args(["copy", "-e", &rsh])
        .arg(work.path())
        .arg(format!("root@127.0.0.1:{}/dst", work.path().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host `root@127.0.0.1`") && err.contains("host key unknown or changed"),
        "{err}"
    );
    assert!(!work.path().join("dst").exists());
}

#[test]
fn a_renamed_file_is_copied_at_the_target_not_sent_again() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(src.join("2025")).unwrap();
    let photo: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(src.join("2025/photo.raw"), &photo).unwrap();
    let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    // The site reorganizes its uploads: same content under a new name (mtime kept by `mv`).
    std::fs::create_dir_all(src.join("archive")).unwrap();
    std::fs::rename(
        src.join("2025/photo.raw"),
        src.join("archive/photo-2025.raw"),
    )
    .unwrap();
    let (code, report, err) = copy(
        &sshd,
        src.to_str().unwrap(),
        &remote(&dst),
        &["--delete", "--force"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["files_copied_locally"], 1, "{report:#}");
    assert!(report["bytes_sent"].as_u64().unwrap() < 1024, "{report:#}");
    assert_eq!(
        std::fs::read(dst.join("archive/photo-2025.raw")).unwrap(),
        photo
    );
    assert!(!dst.join("2025/photo.raw").exists());
}

/// A tiny file system mounted for one test, unmounted even when the test fails.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (the suite runs as root)"
        );
        SmallFs(at.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_that_file_and_the_run_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    let random: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    std::fs::write(src.join("huge.bin"), &random).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("small{i}.txt")), format!("file {i}")).unwrap();
    }
    let _fs = SmallFs::mount(&dst, "1m");
    let out = bin()
        .args(["copy", "--json", "-j", "1"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r:#}");
    assert_eq!(errors[0]["path"], "huge.bin");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{r:#}"
    );
    for i in 0..5 {
        assert_eq!(
            std::fs::read_to_string(dst.join(format!("small{i}.txt"))).unwrap(),
            format!("file {i}")
        );
    }
    assert!(
        !dst.join("huge.bin").exists(),
        "a partial file stands under the final name"
    );
}

/// The pid of the process that has `path` open (the remote agent writing it).
fn holder_of(path: &Path) -> Option<i32> {
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l == path) {
                return Some(pid);
            }
        }
    }
    None
}

#[test]
fn a_dropped_connection_is_retried_and_the_copy_completes() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..300u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 5) as u8)
        .collect();
    std::fs::write(src.join("backup.tar"), &data).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_transhumance"))
        .args(["copy", "--json", "-e", &ssh(&sshd)])
        .arg(&src)
        .arg(remote(&dst))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let agent = loop {
        if let Some(partial) = temp_file(&dst)
            && std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) > 8 << 20
            && let Some(pid) = holder_of(&partial)
        {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the transfer never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // The far side dies, as when a link drops: the stream breaks under the transfer.
    // SAFETY: signalling a pid we just found holding our test file.
    unsafe { libc::kill(agent, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("retrying in 1s"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["files_delta"], 1,
        "the retry did not reuse the partial file: {report:#}"
    );
    assert_eq!(
        blake3::hash(&std::fs::read(dst.join("backup.tar")).unwrap()),
        blake3::hash(&data)
    );
}

#[test]
fn review_regressions_links_root_metadata_and_directories_in_the_way() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a"), b"one").unwrap();
    std::fs::hard_link(src.join("a"), src.join("b")).unwrap();
    std::fs::write(src.join("d/f"), b"x").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&src.join("d"), 1_600_000_000, 0);
    let copy = |extra: &[&str]| {
        bin()
            .arg("copy")
            .args(extra)
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap()
    };
    assert_eq!(copy(&[]).status.code(), Some(0));
    // A hard-linked file changed in place: both names must show the new content.
    std::fs::write(src.join("a"), b"two!").unwrap();
    std::fs::write(src.join("d/f"), b"y").unwrap();
    set_mtime(&src.join("d"), 1_600_000_000, 0);
    assert_eq!(copy(&[]).status.code(), Some(0));
    assert_eq!(std::fs::read(dst.join("b")).unwrap(), b"two!");
    assert_eq!(
        std::fs::metadata(dst.join("a")).unwrap().ino(),
        std::fs::metadata(dst.join("b")).unwrap().ino()
    );
    // The root's mode and a rewritten directory's mtime follow the source.
    assert_eq!(std::fs::metadata(&dst).unwrap().mode() & 0o777, 0o750);
    assert_eq!(
        std::fs::metadata(dst.join("d")).unwrap().mtime(),
        1_600_000_000
    );
    // A non-empty directory where the source now has a file is not deleted as a side effect.
    std::fs::create_dir_all(dst.join("uploads")).unwrap();
    std::fs::write(dst.join("uploads/photo.jpg"), b"precious").unwrap();
    std::os::unix::fs::symlink("d", src.join("uploads")).unwrap();
    let out = copy(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dst.join("uploads/photo.jpg")).unwrap(),
        b"precious"
    );
}

#[test]
fn a_target_inside_its_source_is_refused() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("site/sub")).unwrap();
    std::fs::write(work.path().join("site/index.html"), b"x").unwrap();
    for (src, dst) in [("site", "site/sub"), ("site/sub", "site")] {
        let out = bin()
            .args(["copy", "--delete", "--force"])
            .arg(work.path().join(src))
            .arg(work.path().join(dst))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{src} -> {dst}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("overlap"));
    }
    assert_eq!(
        std::fs::read(work.path().join("site/index.html")).unwrap(),
        b"x"
    );
}

#[test]
fn commands_on_a_remote_host_run_side_by_side() {
    use transhumance::cli::endpoint::{Location, connect};
    use transhumance::transport::ExecRequest;
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let target = transhumance::plan::units::parse_ssh_target("root@127.0.0.1").unwrap();
    let remote = connect(
        &Location::Remote(target, work.path().to_path_buf()),
        Some(&sshd.ssh_command()),
    )
    .unwrap();
    let flag = work.path().join("flag");
    // The first command waits for a file only the second one creates: it can only succeed if
    // the agent runs the second while the first is still running (a slow database query must
    // not hold up the others).
    let waiter = ExecRequest::new(
        "timeout",
        vec![
            "20".to_string(),
            "sh".into(),
            "-c".into(),
            format!("while [ ! -e '{}' ]; do sleep 0.05; done", flag.display()),
        ],
    );
    let maker = ExecRequest::new("touch", vec![flag.display().to_string()]);
    let t = remote.transport.clone();
    let waiting = std::thread::spawn(move || t.exec(&waiter).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert!(remote.transport.exec(&maker).unwrap().success());
    assert!(
        waiting.join().unwrap().success(),
        "the second command ran only after the first gave up"
    );
}

fn verify_code(sshd: &Sshd, src: &str, dst: &str) -> (i32, String) {
    let out = bin()
        .args(["verify", "-e", &ssh(sshd)])
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn user_files_named_like_temp_files_are_copied_and_verified() {
    // Issue 12: `.x.th-partial` was copied, then reported missing by `verify` forever.
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("d/.transhumance-tmp")).unwrap();
    for (name, body) in [
        ("x", "the file"),
        (".x.th-partial", "a user's file"),
        (".x.th-partial.basis", "another"),
        ("d/.y.th-tmp-77", "and another"),
        (
            "d/.transhumance-tmp/0123456789abcdef-1-0",
            "not ours: not at the top",
        ),
    ] {
        std::fs::write(src.join(name), body).unwrap();
    }
    for (dst, spec) in [
        (work.path().join("local"), None),
        (work.path().join("remote"), Some(())),
    ] {
        let target = match spec {
            None => dst.display().to_string(),
            Some(()) => remote(&dst),
        };
        let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &target, &[]);
        assert_eq!(code, 0, "{err}\n{report:#}");
        assert_eq!(describe(&src), describe(&dst), "{target}");
        let (code, text) = verify_code(&sshd, src.to_str().unwrap(), &target);
        assert_eq!(code, 0, "{target}: {text}");
        // A second run finds nothing to do: those files are not ours to rewrite or count.
        let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &target, &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(report["files_sent"], 0, "{report:#}");
    }
}

#[test]
fn names_of_255_bytes_are_copied_locally_and_over_ssh() {
    // Issue 12: the temp name of a 250-byte name went over NAME_MAX; nothing could copy it.
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let long = |c: &str| c.repeat(255);
    std::fs::create_dir_all(src.join(long("d"))).unwrap();
    std::fs::write(src.join(long("f")), b"a long name").unwrap();
    std::fs::write(src.join(long("d")).join(long("g")), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink(long("f"), src.join(long("s"))).unwrap();
    std::fs::hard_link(src.join(long("f")), src.join(long("h"))).unwrap();
    for (dst, over_ssh) in [
        (work.path().join("local"), false),
        (work.path().join("remote"), true),
    ] {
        let target = if over_ssh {
            remote(&dst)
        } else {
            dst.display().to_string()
        };
        let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &target, &[]);
        assert_eq!(code, 0, "{target}: {err}\n{report:#}");
        assert_eq!(describe(&src), describe(&dst), "{target}");
        // Updated by delta (a temp file again) and pulled back.
        std::fs::write(src.join(long("d")).join(long("g")), vec![8u8; 100_001]).unwrap();
        let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &target, &[]);
        assert_eq!(code, 0, "{target}: {err}");
        assert_eq!(describe(&src), describe(&dst), "{target}");
        let back = work.path().join(format!("back-{over_ssh}"));
        let (code, _, err) = copy(&sshd, &target, back.to_str().unwrap(), &[]);
        assert_eq!(code, 0, "{target}: {err}");
        assert_eq!(describe(&src), describe(&back), "{target}");
    }
}

/// Whether a file with content has appeared anywhere under `dst` (a copy is writing there).
fn writes_under(dst: &Path) -> bool {
    walkdir::WalkDir::new(dst)
        .into_iter()
        .flatten()
        .any(|e| e.file_type().is_file() && e.metadata().is_ok_and(|m| m.len() > 0))
}

/// Whether nobody holds the lock of the target root `dst` (probed, then released).
fn lock_is_free(dst: &Path) -> bool {
    let dir = std::fs::File::open(dst).unwrap();
    // SAFETY: flock on a descriptor we own; it is released when `dir` closes.
    unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            libc::LOCK_EX | libc::LOCK_NB,
        ) == 0
    }
}

#[test]
fn a_second_copy_into_a_target_being_written_is_refused() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    std::fs::write(src.join("big.bin"), &data).unwrap();
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    for (dst, over_ssh) in [
        (work.path().join("local"), false),
        (work.path().join("remote"), true),
    ] {
        let target = if over_ssh {
            remote(&dst)
        } else {
            dst.display().to_string()
        };
        // A first copy, slowed down so that it is still writing when the second one starts.
        let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_transhumance"))
            .args(["copy", "-q", "--bwlimit", "2MiB/s", "-e", &ssh(&sshd)])
            .arg(&src)
            .arg(&target)
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !writes_under(&dst) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the first copy never started writing"
            );
            assert!(
                first.try_wait().unwrap().is_none(),
                "the first copy ended early"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &target, &[]);
        assert_eq!(code, 3, "{target}: {err}");
        assert!(
            err.contains("another run is writing into this target") && err.contains(&target),
            "{err}"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the refusal stopped the first copy"
        );
        first.kill().unwrap();
        first.wait().unwrap();
        // The lock goes with the process that held it (the agent, over ssh), however it ended.
        let started = std::time::Instant::now();
        while !lock_is_free(&dst) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the lock outlived its holder"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &target, &[]);
        assert_eq!(code, 0, "{target}: {err}");
        assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), data);
        assert!(!dst.join(TEMP_DIR).exists(), "temp directory left behind");
    }
}

/// Version `v` of a file that keeps being rewritten: one byte value (1 to 200), which sets
/// its length.
fn version(v: u32) -> Vec<u8> {
    let byte = (v % 200) as u8 + 1;
    vec![byte; version_len(byte)]
}

fn version_len(byte: u8) -> usize {
    (2 << 20) + usize::from(byte % 3) * (512 << 10)
}

/// Whether `data` may be something the file was at one instant: one version, or the next one
/// up to where its writer was and the one before after that (two runs of bytes, the newer
/// first). A read that spans several rewrites shows more runs, or the older first.
fn may_be_one_instant(data: &[u8]) -> bool {
    let mut runs: Vec<u8> = Vec::new();
    for b in data {
        if runs.last() != Some(b) {
            runs.push(*b);
        }
    }
    match runs[..] {
        [] | [_] => true,
        [new, old] => new == old % 200 + 1,
        _ => false,
    }
}

#[test]
fn a_source_rewritten_during_the_read_is_never_reported_as_copied() {
    // Issue 12: a file rewritten while it was read landed torn and was printed as verified.
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("live.db"), version(0)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), src.join("live.db"));
        std::thread::spawn(move || {
            // Rewritten in place a piece at a time, as a database file is: at any instant the
            // file is the new version up to where the writer is, then the old one.
            let mut v = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let data = version(v);
                let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                    break;
                };
                for chunk in data.chunks(64 << 10) {
                    let _ = std::io::Write::write_all(&mut f, chunk);
                }
                let _ = f.set_len(data.len() as u64);
                v += 1;
            }
        })
    };
    // Local to local, and pulled over ssh (the agent reads the source there).
    for (from, over_ssh) in [(src.display().to_string(), false), (remote(&src), true)] {
        // Into an empty target (the file sent whole) and onto an older copy (sent as a delta).
        let seed = vec![250u8; 2 << 20];
        let (mut whole_reported, mut delta_reported) = (false, false);
        for i in 0..60 {
            let dst = work.path().join(format!("dst-{over_ssh}-{i}"));
            let onto_old_copy = i % 2 == 1;
            if onto_old_copy {
                std::fs::create_dir_all(&dst).unwrap();
                std::fs::write(dst.join("live.db"), &seed).unwrap();
            }
            let (code, report, err) = copy(&sshd, &from, dst.to_str().unwrap(), &[]);
            let errors = report["errors"].as_array().cloned().unwrap_or_default();
            if let Some(e) = errors.iter().find(|e| e["path"] == "live.db") {
                assert!(
                    e["error"]
                        .as_str()
                        .unwrap()
                        .contains("changed while it was read"),
                    "{report:#}"
                );
                assert_eq!(code, 1, "{err}");
                assert_eq!(report["verified"], 0, "a changing file counted as verified");
                if onto_old_copy {
                    assert!(
                        std::fs::read(dst.join("live.db")).unwrap() == seed,
                        "the older copy was replaced by a file reported as changing"
                    );
                    delta_reported = true;
                } else {
                    assert!(
                        !dst.join("live.db").exists(),
                        "a file reported as changing stands under its final name"
                    );
                    whole_reported = true;
                }
            } else {
                assert_eq!(code, 0, "{err}\n{report:#}");
                let data = std::fs::read(dst.join("live.db")).unwrap();
                assert!(
                    may_be_one_instant(&data),
                    "torn file at the target ({} bytes, first {:?}, last {:?}), report {report:#}",
                    data.len(),
                    data.first(),
                    data.last()
                );
            }
            if whole_reported && delta_reported {
                break;
            }
        }
        assert!(
            whole_reported && delta_reported,
            "the rewrite was not seen in 60 copies (over ssh: {over_ssh}; whole: {whole_reported}, delta: {delta_reported})"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn two_writers_of_one_path_never_commit_each_others_bytes() {
    // Issue 12: an agent still draining frames after its controller died, and a new run's
    // agent, wrote the same temp name; the first to finish renamed the other's unfinished
    // bytes into place and acknowledged them as done.
    use transhumance::cli::endpoint::{Location, connect};
    use transhumance::transport::protocol::{Basis, Call, Reply};
    use transhumance::tree::root::Meta;
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let one: Vec<u8> = vec![1u8; 300_000];
    let two: Vec<u8> = vec![2u8; 200_000];
    for over_ssh in [false, true] {
        let dst = work.path().join(format!("dst-{over_ssh}"));
        let location = || {
            if over_ssh {
                Location::Remote(
                    transhumance::plan::units::parse_ssh_target("root@127.0.0.1").unwrap(),
                    dst.clone(),
                )
            } else {
                Location::Local(dst.clone())
            }
        };
        // Two sessions: two agent processes over ssh, two servers in this process locally.
        let (a, b) = (
            connect(&location(), Some(&sshd.ssh_command())).unwrap(),
            connect(&location(), Some(&sshd.ssh_command())).unwrap(),
        );
        let open = |e: &transhumance::sync::Endpoint| {
            let ch = e.transport.channel(0).unwrap();
            let Reply::Opened(root) = ch
                .call_wait(Call::OpenRoot {
                    root: dst.clone(),
                    create: true,
                })
                .unwrap()
            else {
                panic!("root not opened")
            };
            (ch, root)
        };
        let ((ca, ra), (cb, rb)) = (open(&a), open(&b));
        let meta = Meta {
            mode: 0o100644,
            uid: 0,
            gid: 0,
            mtime_ns: 1_700_000_000_000_000_000,
        };
        let begin = |ch: &std::sync::Arc<dyn transhumance::transport::channel::Channel>, root| {
            ch.call(Call::WriteBegin {
                root,
                path: b"page.html".to_vec(),
                meta,
                basis: Basis::None,
                block_len: 4096,
                xattrs: None,
            })
            .unwrap()
        };
        let pa = begin(&ca, ra);
        ca.follow(
            pa.id,
            Call::WriteData {
                data: one[..100_000].to_vec(),
            },
        )
        .unwrap();
        let pb = begin(&cb, rb);
        cb.follow(
            pb.id,
            Call::WriteData {
                data: two[..50_000].to_vec(),
            },
        )
        .unwrap();
        ca.follow(
            pa.id,
            Call::WriteData {
                data: one[100_000..].to_vec(),
            },
        )
        .unwrap();
        ca.follow(
            pa.id,
            Call::WriteEnd {
                hash: *blake3::hash(&one).as_bytes(),
            },
        )
        .unwrap();
        let first = pa.wait(ca.host());
        assert!(matches!(first, Ok(Reply::Done(_))), "{first:?}");
        assert_eq!(
            std::fs::read(dst.join("page.html")).unwrap(),
            one,
            "the first writer's commit put other bytes in place (over ssh: {over_ssh})"
        );
        cb.follow(
            pb.id,
            Call::WriteData {
                data: two[50_000..].to_vec(),
            },
        )
        .unwrap();
        cb.follow(
            pb.id,
            Call::WriteEnd {
                hash: *blake3::hash(&two).as_bytes(),
            },
        )
        .unwrap();
        let second = pb.wait(cb.host());
        assert!(matches!(second, Ok(Reply::Done(_))), "{second:?}");
        assert_eq!(std::fs::read(dst.join("page.html")).unwrap(), two);
    }
}

#[test]
fn a_mount_point_inside_the_target_fails_its_files_with_the_reason() {
    // Temp files of big files live at the target root; a rename cannot cross into another file
    // system. A small new file is made in its own directory (O_TMPFILE) and lands.
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(src.join("uploads")).unwrap();
    std::fs::write(src.join("index.html"), b"home").unwrap();
    std::fs::write(src.join("uploads/photo.jpg"), b"photo").unwrap();
    std::fs::write(src.join("uploads/video.mp4"), vec![7u8; 300_000]).unwrap();
    let _fs = SmallFs::mount(&dst.join("uploads"), "1m");
    let out = bin()
        .args(["copy", "--json"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r:#}");
    assert_eq!(errors[0]["path"], "uploads/video.mp4");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("another file system"),
        "{r:#}"
    );
    assert_eq!(std::fs::read(dst.join("index.html")).unwrap(), b"home");
    assert_eq!(
        std::fs::read(dst.join("uploads/photo.jpg")).unwrap(),
        b"photo"
    );
    assert!(!dst.join(TEMP_DIR).exists(), "temp directory left behind");
}

#[test]
fn verify_hashes_both_ends_where_they_are_and_names_each_difference() {
    // Listing and hashes come in one pass per side (the local source hashed while the ssh
    // connection is made): a same-size change, a missing and an extra file are each found,
    // in both directions.
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("a/b/f{i}")), format!("body {i:05}")).unwrap();
    }
    std::fs::write(src.join("big"), vec![7u8; 6 << 20]).unwrap();
    let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    let (code, text) = verify_code(&sshd, src.to_str().unwrap(), &remote(&dst));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("301 files hashed"), "{text}");

    std::fs::write(dst.join("a/b/f17"), "body 99999").unwrap();
    let mut big = vec![7u8; 6 << 20];
    big[5 << 20] = 8;
    std::fs::write(dst.join("big"), big).unwrap();
    std::fs::remove_file(dst.join("a/b/f5")).unwrap();
    std::fs::write(dst.join("a/extra"), "x").unwrap();
    for (first, second) in [
        (src.to_str().unwrap().to_string(), remote(&dst)),
        (remote(&src), dst.to_str().unwrap().to_string()),
    ] {
        let (code, text) = verify_code(&sshd, &first, &second);
        assert_eq!(code, 1, "{text}");
        for needle in ["a/b/f17 (content)", "big (content)", "a/b/f5", "a/extra"] {
            assert!(text.contains(needle), "{needle} not named:\n{text}");
        }
    }
}

/// Issue 16: a listing bigger than one streamed part (4,096 entries) is compared right in
/// both directions: adds, changes and deletes around the parts' edges, directories whose
/// content straddles an edge, and names that sort differently by bytes and by the walk
/// (`a`, `a/b`, `a.b`, `a-`, `a0`).
#[test]
fn listings_streamed_in_parts_are_compared_across_their_edges() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst, back) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("back"),
    );
    // 9,000 files in directories of 97: parts end inside directories, at varied depths.
    for i in 0..9000u32 {
        let dir = src.join(format!("d{:03}/e{}", i / 97, (i / 13) % 3));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:05}")), i.to_le_bytes()).unwrap();
    }
    for name in ["a/b/c", "a.b/c", "a-/c", "a0/c"] {
        std::fs::create_dir_all(src.join(name).parent().unwrap()).unwrap();
        std::fs::write(src.join(name), name).unwrap();
    }
    std::fs::write(src.join("a/b.x"), b"b.x").unwrap();
    let (code, _, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(describe(&src), describe(&dst));
    // The no-change pass sends no file.
    let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["files_sent"], 0, "{report:#}");
    // Changes around the 4,096th and 8,192nd entries (each directory of 97 files is about
    // 101 entries), at the first and last entries, and in the names that sort apart.
    let file = |i: u32| src.join(format!("d{:03}/e{}/f{i:05}", i / 97, (i / 13) % 3));
    for i in [0u32, 3950, 3960, 3975, 7900, 7925, 8999] {
        std::fs::write(file(i), format!("changed {i}")).unwrap();
    }
    for i in [3961u32, 3962, 7926, 8998] {
        std::fs::remove_file(file(i)).unwrap();
    }
    std::fs::remove_dir_all(src.join("d041")).unwrap();
    std::fs::write(src.join("d040/e0/zz-new"), b"new").unwrap();
    std::fs::write(src.join("a/b/c"), b"changed").unwrap();
    std::fs::remove_file(src.join("a.b/c")).unwrap();
    std::fs::write(src.join("a.b/d"), b"added").unwrap();
    std::fs::create_dir(src.join("a/b/new")).unwrap();
    std::fs::write(src.join("a/b/new/x"), b"x").unwrap();
    let (code, report, err) = copy(
        &sshd,
        src.to_str().unwrap(),
        &remote(&dst),
        &["--delete", "--force"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(describe(&src), describe(&dst), "{report:#}");
    // 7 changed + 1 new in d040 + a/b/c + a.b/d + a/b/new/x.
    assert_eq!(report["files_sent"], 11, "{report:#}");
    // Pulled back: the remote side is now the source, listed in parts too.
    let (code, _, err) = copy(&sshd, &remote(&dst), back.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(describe(&dst), describe(&back));
    std::fs::remove_file(dst.join("a/b.x")).unwrap();
    std::fs::write(dst.join("d000/e0/f00000"), b"pulled change").unwrap();
    let (code, report, err) = copy(
        &sshd,
        &remote(&dst),
        back.to_str().unwrap(),
        &["--delete", "--force"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["files_sent"], 1, "{report:#}");
    assert_eq!(describe(&dst), describe(&back));
}

/// Issue 16: both listings are paired while they stream in (over ssh, in parts of 4,096
/// entries), and plan what the whole listings plan (`-i` has them listed whole to itemize):
/// pushed and pulled, after new, changed, touched, renamed, removed files, a link, and a
/// directory replaced by a file (then removed); the run then leaves the target equal, and a
/// re-run finds nothing to do.
#[test]
fn listings_paired_as_they_stream_plan_as_whole_listings() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let (src, dst, pulled) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("pulled"),
    );
    // Over 6,000 entries: two parts of the target's listing, and of the pulled source's.
    for d in 0..60 {
        let dir = src.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}.html")), format!("{d} {f}")).unwrap();
        }
    }
    let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}\n{report:#}");
    let (code, _, err) = copy(&sshd, &remote(&src), pulled.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    for target in [&dst, &pulled] {
        assert_eq!(describe(&src), describe(target));
    }

    let unchanged = |report: &serde_json::Value| {
        assert_eq!(report["listed"]["files"], 6000, "{report:#}");
        for key in ["files_sent", "metadata_updates", "deleted", "dirs_created"] {
            assert_eq!(report[key], 0, "{key}: {report:#}");
        }
    };
    let (code, report, err) = copy(&sshd, src.to_str().unwrap(), &remote(&dst), &[]);
    assert_eq!(code, 0, "{err}");
    unchanged(&report);

    std::fs::write(src.join("d000/f000.html"), "longer than before").unwrap();
    std::fs::write(src.join("d059/new.html"), "new").unwrap();
    std::fs::remove_file(src.join("d030/f050.html")).unwrap();
    std::fs::rename(src.join("d010/f010.html"), src.join("d011/moved.html")).unwrap();
    std::fs::hard_link(src.join("d020/f001.html"), src.join("d020/link.html")).unwrap();
    std::fs::set_permissions(src.join("d040/f040.html"), PermissionsExt::from_mode(0o600)).unwrap();
    set_mtime(&src.join("d041/f041.html"), 1_000_000_000, 5);
    std::fs::remove_dir_all(src.join("d050")).unwrap();
    std::fs::write(src.join("d050"), "a file now").unwrap();
    // Both ways, as the run plans it (paired while listed) and with both listed whole.
    for (from, to) in [
        (src.display().to_string(), remote(&dst)),
        (remote(&src), pulled.display().to_string()),
    ] {
        let plans: Vec<serde_json::Value> = [&[][..], &["-i"]]
            .iter()
            .map(|extra| {
                let args = [&["--dry-run", "--delete"], *extra].concat();
                let (code, report, err) = copy(&sshd, &from, &to, &args);
                assert_eq!(code, 0, "{err}\n{report:#}");
                report["itemized"].clone()
            })
            .collect();
        assert_eq!(plans[0], plans[1], "{from} -> {to}");
        let actions: Vec<String> = plans[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{} {}",
                    i["action"].as_str().unwrap(),
                    i["path"].as_str().unwrap()
                )
            })
            .collect();
        for expected in [
            "send d000/f000.html",
            "send d059/new.html",
            "delete d030/f050.html",
            "copy_local d011/moved.html",
            "hardlink d020/link.html",
            "meta d040/f040.html",
            "send d041/f041.html",
            "delete d050/f000.html",
            "send d050",
        ] {
            assert!(
                actions.iter().any(|a| a == expected),
                "{expected}: {actions:#?}"
            );
        }
    }
    // A non-empty directory where the source now has a file fails its first run (as before
    // issue 16: the deletions come after the files): the run copies the directory's removal.
    std::fs::remove_file(src.join("d050")).unwrap();
    for (from, to, target) in [
        (src.display().to_string(), remote(&dst), &dst),
        (remote(&src), pulled.display().to_string(), &pulled),
    ] {
        let (code, report, err) = copy(&sshd, &from, &to, &["--delete"]);
        assert_eq!(code, 0, "{err}\n{report:#}");
        assert_eq!(describe(&src), describe(target), "{from} -> {to}");
        let (code, report, err) = copy(&sshd, &from, &to, &["--delete"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(report["listed"]["files"], 5901, "{report:#}");
        for key in ["files_sent", "metadata_updates", "deleted", "hardlinks"] {
            assert_eq!(report[key], 0, "{key}: {report:#}");
        }
    }
}
