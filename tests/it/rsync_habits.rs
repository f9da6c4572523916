//! Issue 17, rsync's habits on `copy` and `verify`: `--bwlimit` in KiB/s, ordered
//! `--include`/`--exclude`/`--exclude-from` rules (the first match decides), `--stats`, `-P`,
//! `-i` codes saying why each entry is sent, and `--rsync-exit-codes`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::bin;

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Gives `path` (file or directory) a fixed modification time, seconds after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// Runs `transhumance copy|verify ARGS`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The relative paths of the files under `root`, sorted.
fn files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bwlimit_reads_a_bare_number_as_kib_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), vec![7u8; 256 * 1024]).unwrap();
    // 256 KiB at `--bwlimit 128`: two seconds as rsync reads it (128 KiB/s); as bytes per
    // second it would take more than half an hour.
    let started = Instant::now();
    let (code, _, err) = run(&[
        "copy",
        "--bwlimit",
        "128",
        s(&src),
        s(&dir.path().join("dst")),
    ]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(30),
        "took {took:?}"
    );
    // `0` is no limit, as rsync's; a rate that is not one is invalid input, said with the unit.
    let (code, _, err) = run(&[
        "copy",
        "--bwlimit",
        "0",
        s(&src),
        s(&dir.path().join("dst0")),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["copy", "--bwlimit", "5x", s(&src), "dst"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`5x` is not a bandwidth limit") && err.contains("KiB/s"));
    // The plan's `defaults.bwlimit` reads the same way.
    for (value, code) in [("5000", 0), ("1.5M", 0), ("200MiB/s", 0), ("fast", 2)] {
        let plan = dir.path().join("plan.yaml");
        std::fs::write(
            &plan,
            format!("version: 1\nname: t\ndefaults: {{ bwlimit: \"{value}\" }}\n"),
        )
        .unwrap();
        let (got, _, err) = run(&["validate", "--offline", s(&plan)]);
        assert_eq!(got, Some(code), "{value}: {err}");
    }
}

#[test]
fn include_and_exclude_rules_apply_in_order_the_first_match_deciding() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for f in [
        "index.php",
        "style.css",
        "blog/post.php",
        "blog/img.png",
        "cache/page.php",
        "keep.tmp",
        "junk.tmp",
    ] {
        write(&src.join(f), f);
    }
    let rules = dir.path().join("rules");
    std::fs::write(&rules, "# build leftovers\n*.tmp\n\ncache/\n").unwrap();
    let copy = |name: &str, rules_args: &[&str]| {
        let dst = dir.path().join(name);
        let mut args = vec!["copy"];
        args.extend(rules_args);
        args.extend([s(&src), s(&dst)]);
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(0), "{out}{err}");
        files(&dst)
    };
    let rules = s(&rules);
    // An include before the rules file wins over its `*.tmp`.
    assert_eq!(
        copy("a", &["--include", "keep.tmp", "--exclude-from", rules]),
        [
            "blog/img.png",
            "blog/post.php",
            "index.php",
            "keep.tmp",
            "style.css"
        ]
    );
    // After it, it comes too late: `*.tmp` matched first.
    assert_eq!(
        copy("b", &["--exclude-from", rules, "--include", "keep.tmp"]),
        ["blog/img.png", "blog/post.php", "index.php", "style.css"]
    );
    // rsync's classic: every directory, the PHP files, nothing else.
    assert_eq!(
        copy(
            "c",
            &["--include", "*/", "--include", "*.php", "--exclude", "*"]
        ),
        ["blog/post.php", "cache/page.php", "index.php"]
    );
    // `verify` judges with the same rules: identical with them, different without.
    let (code, out, err) = run(&[
        "verify",
        "--include",
        "keep.tmp",
        "--exclude-from",
        rules,
        s(&src),
        s(&dir.path().join("a")),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = run(&["verify", s(&src), s(&dir.path().join("a"))]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("missing") && out.contains("junk.tmp"), "{out}");
    // A rules file that cannot be read is invalid input, named.
    let (code, _, err) = run(&[
        "copy",
        "--exclude-from",
        "/nonexistent/rules",
        s(&src),
        s(&dir.path().join("d")),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/rules"), "{err}");
}

/// A small tree with fixed contents and times: `index.html`, `blog/post.html`, `old.txt`, a
/// symlink.
fn site(src: &Path) {
    write(&src.join("index.html"), "<h1>home</h1>\n");
    write(&src.join("blog/post.html"), "<p>first post</p>\n");
    write(&src.join("old.txt"), "old\n");
    write(&src.join("same.txt"), "same\n");
    write(&src.join("mode.txt"), "mode\n");
    std::os::unix::fs::symlink("index.html", src.join("home")).unwrap();
    for f in [
        "index.html",
        "blog/post.html",
        "old.txt",
        "same.txt",
        "mode.txt",
        "blog",
        "",
    ] {
        set_mtime(&src.join(f), 1_700_000_000);
    }
}

#[test]
fn itemized_changes_say_why_each_entry_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    site(&src);
    let (code, first, err) = run(&["copy", "-i", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");

    // Grown, touched, chmodded, a new directory with a file, a deleted file, one unchanged.
    write(&src.join("index.html"), "<h1>home, longer</h1>\n");
    set_mtime(&src.join("index.html"), 1_700_000_000);
    set_mtime(&src.join("blog/post.html"), 1_700_000_100);
    std::fs::set_permissions(
        src.join("mode.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    write(&src.join("shop/cart.html"), "<p>cart</p>\n");
    std::fs::remove_file(src.join("old.txt")).unwrap();
    let (code, second, err) = run(&["copy", "-i", "--delete", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");
    // `-ii`: the entries left as they are are listed too (nothing changes now).
    let (code, third, err) = run(&["copy", "-ii", "--delete", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");
    // A dry run itemizes the same way and changes nothing.
    write(&src.join("new.txt"), "new\n");
    let (code, dry, err) = run(&["copy", "-n", "-i", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!dst.join("new.txt").exists());
    insta::assert_snapshot!(
        "itemize_codes",
        format!(
            "# first copy\n{first}# grown, touched, chmodded, new dir, deleted\n{second}# -ii, nothing to do\n{third}# -n -i\n{dry}"
        )
    );
    // Machines get the same codes in the JSON report.
    let out = bin()
        .args(["--json", "copy", "-n", "-i"])
        .args([&src, &dst])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changes"][1]["code"], ">f+++++++++", "{v}");
    assert_eq!(v["changes"][1]["path"], "new.txt", "{v}");
}

#[test]
fn stats_summarize_the_transfer_as_rsync_does() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    site(&src);
    let (code, first, err) = run(&["copy", "--stats", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");
    write(&src.join("blog/post.html"), "<p>first post, edited</p>\n");
    let (code, dry, err) = run(&["copy", "--stats", "-n", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");
    // `-P` (`--partial --progress`) without a terminal: one line per file written, on stderr.
    let (code, second, err) = run(&["copy", "--stats", "-P", s(&src), s(&dst)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("blog/post.html (1/1 files)"), "{err}");
    // The rate depends on the machine; everything else is the tree's.
    insta::with_settings!({filters => vec![(r"\d[\d,]*\.\d\d bytes/sec", "[RATE] bytes/sec")]}, {
        insta::assert_snapshot!(
            "copy_stats",
            format!("# first copy\n{first}# -n after an edit\n{dry}# -P after it\n{second}")
        );
    });
}

/// Over ssh, `--stats` counts the protocol's bytes each way, as rsync counts its own.
#[test]
fn stats_over_ssh_count_the_wire_both_ways() {
    let sshd = crate::harness::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), vec![3u8; 300_000]).unwrap();
    let target = format!("root@127.0.0.1:{}", dir.path().join("dst").display());
    let (code, out, err) = run(&[
        "copy",
        "--stats",
        "-e",
        &sshd.ssh_command(),
        s(&src),
        &target,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let number = |label: &str| -> u64 {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` in\n{out}"));
        line.trim()
            .trim_end_matches(" bytes")
            .replace(',', "")
            .parse()
            .unwrap()
    };
    assert_eq!(number("Literal data:"), 300_000, "{out}");
    // The file list and the data go out, the replies come back.
    assert!(number("Total bytes sent:") > 300_000, "{out}");
    assert!(number("Total bytes received:") > 0, "{out}");
}

#[test]
fn rsync_exit_codes_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src.join("a.txt"), "a");
    let missing = dir.path().join("missing");
    let dst = dir.path().join("dst");
    // A missing source: ours is invalid input (2), rsync's a partial transfer (23).
    let (code, _, _) = run(&["copy", s(&missing), s(&dst)]);
    assert_eq!(code, Some(2));
    let (code, _, err) = run(&["copy", "--rsync-exit-codes", s(&missing), s(&dst)]);
    assert_eq!(code, Some(23), "{err}");
    // A usage error: rsync's 1 (syntax or usage error).
    let (code, _, _) = run(&["copy", "--rsync-exit-codes", "--no-such-flag", "a", "b"]);
    assert_eq!(code, Some(1));
    // ssh failing: rsync's 255.
    let (code, _, err) = run(&[
        "copy",
        "--rsync-exit-codes",
        "-e",
        "ssh -p 1 -o BatchMode=yes -o ConnectTimeout=2",
        s(&src),
        "127.0.0.1:/nonexistent/dst",
    ]);
    assert_eq!(code, Some(255), "{err}");
    // `verify` finding a difference: 1, or rsync's 23.
    let (code, _, _) = run(&["copy", s(&src), s(&dst)]);
    assert_eq!(code, Some(0));
    write(&dst.join("a.txt"), "b");
    let (code, _, _) = run(&["verify", s(&src), s(&dst)]);
    assert_eq!(code, Some(1));
    let (code, _, _) = run(&["verify", "--rsync-exit-codes", s(&src), s(&dst)]);
    assert_eq!(code, Some(23));
    // `--delete` stopped by its limit: ours is refused as unsafe (3), rsync's --max-delete 25.
    for f in ["x", "y", "z"] {
        write(&dst.join(f), f);
    }
    let (code, _, err) = run(&["copy", "--delete", s(&src), s(&dst)]);
    assert_eq!(code, Some(3), "{err}");
    let (code, _, err) = run(&["copy", "--delete", "--rsync-exit-codes", s(&src), s(&dst)]);
    assert_eq!(code, Some(25), "{err}");
}
