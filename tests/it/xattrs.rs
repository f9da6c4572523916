//! POSIX ACLs, extended attributes and file capabilities through `copy -A -X` over a real sshd,
//! judged by `getfacl`/`getfattr` dumps of both trees; immutable files are named, not lost.

use std::path::Path;
use std::process::Command;

use crate::cli::bin;
use crate::harness::{Sshd, require};

fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `getfacl -R` and `getfattr -R -d -m -` of a tree, one block per path, sorted (the tools
/// list in directory order, which differs between two copies).
fn dump(root: &Path) -> Vec<String> {
    let acls = run("getfacl", &["-R", "-n", "."], root);
    let attrs = run(
        "getfattr",
        &["-R", "-h", "-d", "-m", "-", "-e", "hex", "."],
        root,
    );
    let mut blocks: Vec<String> = acls
        .split("\n\n")
        .chain(attrs.split("\n\n"))
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    blocks.sort();
    blocks
}

fn copy(sshd: &Sshd, src: &str, dst: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = bin()
        .arg("copy")
        .arg("--json")
        .args(extra)
        .args(["-e", &sshd.ssh_command()])
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn remote(p: &Path) -> String {
    format!("root@127.0.0.1:{}", p.display())
}

/// Sets or clears the immutable flag (`chattr +i`); cleared again on drop, so the temp
/// directory can go.
struct Immutable<'a>(&'a Path);

impl Immutable<'_> {
    fn set(path: &Path, on: bool) -> bool {
        use std::os::fd::AsRawFd;
        const FS_IMMUTABLE_FL: libc::c_long = 0x10;
        let f = std::fs::File::open(path).unwrap();
        let mut flags: libc::c_long = 0;
        // SAFETY: valid fd and a long, as FS_IOC_GETFLAGS and FS_IOC_SETFLAGS take.
        unsafe {
            if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
                return false;
            }
            flags = if on {
                flags | FS_IMMUTABLE_FL
            } else {
                flags & !FS_IMMUTABLE_FL
            };
            libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) == 0
        }
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        Immutable::set(self.0, false);
    }
}

/// A shared web root: default ACLs on the root and a directory, an ACL on a file, user
/// attributes on files and a directory, a capability on a helper binary (we run as root).
fn make_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    std::fs::create_dir_all(p("site/uploads")).unwrap();
    std::fs::create_dir_all(p("site/bin")).unwrap();
    std::fs::write(p("site/index.html"), b"<title>coop</title>").unwrap();
    std::fs::write(p("site/plain.txt"), b"no attributes").unwrap();
    std::fs::write(p("site/bin/ping-helper"), vec![7u8; 10_000]).unwrap();
    let r = |args: &[&str]| {
        run(args[0], &args[1..], root);
    };
    r(&["setfacl", "-d", "-m", "g:33:rx", "."]);
    r(&["setfacl", "-d", "-m", "u:1000:rwx,g:33:rx", "site/uploads"]);
    r(&["setfacl", "-m", "u:1000:rw,g:33:r", "site/index.html"]);
    r(&[
        "setfattr",
        "-n",
        "user.mime_type",
        "-v",
        "text/html",
        "site/index.html",
    ]);
    r(&[
        "setfattr",
        "-n",
        "user.purpose",
        "-v",
        "uploads",
        "site/uploads",
    ]);
    // VFS_CAP_REVISION_2 with the effective bit, cap_net_raw (13) permitted.
    r(&[
        "setfattr",
        "-n",
        "security.capability",
        "-v",
        "0x0100000200200000000000000000000000000000",
        "site/bin/ping-helper",
    ]);
}

#[test]
fn acls_xattrs_and_capabilities_arrive_equal_and_an_acl_change_alone_is_brought_over() {
    require("/usr/bin/setfacl", "acl");
    require("/usr/bin/setfattr", "attr");
    if !crate::harness::root_or_skip("acls_xattrs_and_capabilities_arrive_equal") {
        return;
    }
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let far = tempfile::tempdir().unwrap();
    let back = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let (pushed, pulled) = (far.path().join("copy"), back.path().join("copy"));

    // Pushed to a remote target (the agent sets them), then pulled back from it (the agent
    // lists them): both ends of the protocol.
    let (code, report, stderr) = copy(
        &sshd,
        &format!("{}/", src.path().display()),
        &remote(&pushed),
        &["-A", "-X"],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let want = dump(src.path());
    assert!(
        want.iter().any(|b| b.contains("security.capability"))
            && want.iter().any(|b| b.contains("default:user:1000:rwx")),
        "the source has what the test means: {want:#?}"
    );
    assert_eq!(dump(&pushed), want);
    let (code, report, stderr) = copy(
        &sshd,
        &format!("{}/", remote(&pushed)),
        &pulled.display().to_string(),
        &["-A", "-X"],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(dump(&pulled), want);
    let verify = bin()
        .args(["verify", "-A", "-X", "-e", &sshd.ssh_command()])
        .arg(format!("{}/", src.path().display()))
        .arg(remote(&pushed))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // Only ACLs change (a file's, a directory's default): metadata again, no data.
    let r = |args: &[&str]| {
        run(args[0], &args[1..], src.path());
    };
    r(&["setfacl", "-m", "u:1001:r", "site/index.html"]);
    r(&["setfacl", "-d", "-m", "u:1002:rx", "site/uploads"]);
    r(&["setfattr", "-x", "user.purpose", "site/uploads"]);
    let verify = bin()
        .args(["verify", "--json", "-A", "-X", "-e", &sshd.ssh_command()])
        .arg(format!("{}/", src.path().display()))
        .arg(remote(&pushed))
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1), "verify sees the ACL change");
    let (code, report, stderr) = copy(
        &sshd,
        &format!("{}/", src.path().display()),
        &remote(&pushed),
        &["-A", "-X"],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(
        (
            &report["files_sent"],
            &report["files_delta"],
            &report["bytes_sent"]
        ),
        (&0.into(), &0.into(), &0.into()),
        "{report:#}"
    );
    assert!(
        report["metadata_updates"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    let want = dump(src.path());
    assert!(want.iter().any(|b| b.contains("user:1001:r--")));
    assert_eq!(dump(&pushed), want);

    // Without -A -X (rsync's default), none are copied.
    let plain = far.path().join("plain");
    let (code, report, stderr) = copy(
        &sshd,
        &format!("{}/", src.path().display()),
        &plain.display().to_string(),
        &[],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let index = run("getfattr", &["-d", "-m", "-", "site/index.html"], &plain);
    assert!(index.trim().is_empty(), "{index}");
}

#[test]
fn an_immutable_source_file_is_copied_and_named_in_a_warning() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let locked = src.path().join("locked.conf");
    std::fs::write(&locked, b"do not touch").unwrap();
    std::fs::write(src.path().join("free.txt"), b"x").unwrap();
    if !Immutable::set(&locked, true) {
        // Not root, or a file system without the flag: nothing to report then.
        return;
    }
    let _clear = Immutable(&locked);
    let out = bin()
        .args(["copy", "--json"])
        .arg(format!("{}/", src.path().display()))
        .arg(dst.path().join("copy"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not a failure: {report:#}"
    );
    let warnings = report["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{report:#}");
    assert_eq!(warnings[0]["path"], "locked.conf");
    assert!(
        warnings[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("immutable"),
        "{report:#}"
    );
    assert_eq!(
        std::fs::read(dst.path().join("copy/locked.conf")).unwrap(),
        b"do not touch"
    );
}

#[test]
fn many_small_files_with_acls_and_attributes_keep_them_through_batches() {
    require("/usr/bin/setfacl", "acl");
    require("/usr/bin/setfattr", "attr");
    if !crate::harness::root_or_skip("many_small_files_with_acls_and_attributes") {
        return;
    }
    let sshd = Sshd::start();
    let src = tempfile::tempdir().unwrap();
    let far = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("site/pages")).unwrap();
    // More files than one batch holds; every third with an ACL, every file an attribute.
    for i in 0..150 {
        let name = format!("site/pages/p{i}.html");
        std::fs::write(src.path().join(&name), format!("<p>{i}</p>")).unwrap();
        run(
            "setfattr",
            &["-n", "user.page", "-v", &i.to_string(), &name],
            src.path(),
        );
        if i % 3 == 0 {
            run(
                "setfacl",
                &["-m", &format!("u:{}:rw", 1000 + i), &name],
                src.path(),
            );
        }
    }
    let pushed = far.path().join("copy");
    let (code, report, stderr) = copy(
        &sshd,
        &format!("{}/", src.path().display()),
        &remote(&pushed),
        &["-A", "-X"],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["files_sent"], 150, "{report:#}");
    let want = dump(src.path());
    assert!(
        want.iter().any(|b| b.contains("user:1147:rw-")),
        "{want:#?}"
    );
    assert_eq!(dump(&pushed), want);
}
