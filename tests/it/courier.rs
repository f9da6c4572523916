//! Courier Maildirs moved to a real Dovecot with `convert: courier-to-dovecot`, read back
//! through IMAP: every message keeps the UID and every folder the UIDVALIDITY Courier's
//! `courierimapuiddb` gives, keywords and subscriptions are what Courier served, re-runs after
//! Courier numbered new mail change nothing, and the source is never written.
//!
//! Courier is not installed here: the source Maildirs are written by hand as Courier writes
//! them (courier-libs `imap/imapscanclient.C` for `courierimapuiddb` version 1, `imap/
//! configure.ac` `IMAPDBVERSION` 1; `maildir/maildirkeywords.C` and
//! `maildir/README.imapkeywords.html` for `courierimapkeywords/`; Courier's `INBOX.` names in
//! `courierimapsubscribed`), plus the version 2 and 3 layouts of a uid list that Dovecot's
//! `maildir-uidlist.c` documents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::bin;
use crate::harness::{Dovecot, DovecotOptions, Sshd};
use crate::mail::{mail, mailbox, message, planned, subscriptions, view};

/// A message as a Courier server's delivery names it: `time.MusecPpid...host,S=size`.
struct Msg {
    base: String,
    body: Vec<u8>,
}

fn msg(id: &'static str, time: u64, n: u32) -> Msg {
    let body = message(id, 1500 + n as usize * 37);
    let base = format!(
        "{time}.M{n}04213P{n}817V0000000000000803I{n:016X}_0.oldmx.example,S={}",
        body.len()
    );
    Msg { base, body }
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn folder(maildir: &Path, name: Option<&str>) -> PathBuf {
    let d = match name {
        Some(n) => maildir.join(n),
        None => maildir.to_path_buf(),
    };
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    if name.is_some() {
        put(&d, "maildirfolder", b"");
    }
    d
}

/// Every file of a tree with its content and mtime: the source must stay exactly this.
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| {
            let meta = e.metadata().unwrap();
            let content = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.path().strip_prefix(root).unwrap().display().to_string(),
                (content, meta.modified().unwrap()),
            )
        })
        .collect()
}

/// (UID, Message-ID, flags) of one folder as a client sees it, and its UIDVALIDITY.
fn seen(server: &Dovecot, folder: &str) -> (u64, Vec<(u32, String, Vec<String>)>) {
    let (validity, msgs) = view(server, "alice", "pw")[folder].clone();
    (
        validity,
        msgs.into_iter()
            .map(|(uid, id, flags, ..)| (uid, id, flags))
            .collect(),
    )
}

fn row(uid: u32, id: &str, flags: &[&str]) -> (u32, String, Vec<String>) {
    (
        uid,
        format!("<{id}@example.test>"),
        flags.iter().map(|f| f.to_string()).collect(),
    )
}

/// A plan from `src` to `dst`'s mail directory, the target reached over `ssh` (the conversion's
/// reads, renames and writes travel through the uploaded agent).
fn plan(dir: &Path, src: &Path, dst: &Dovecot, ssh: &Sshd, convert: Option<&str>) -> PathBuf {
    let plan = dir.join("plan.yaml");
    let convert = convert
        .map(|c| format!("    convert: {c}\n"))
        .unwrap_or_default();
    let new_host = format!(
        "{{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}\" }}",
        ssh.port,
        ssh.client_key.display(),
        ssh.known_hosts.display(),
        dir.join("agent").display()
    );
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: it-courier\nhosts:\n  old: {{ local: true }}\n  new: {new_host}\nmail:\n  - layout: maildir\n    from: {{ host: old, path: \"{}\" }}\n    to: {{ host: new, path: \"{}\" }}\n{convert}",
            src.display(),
            dst.dir.path().join("mail").display()
        ),
    )
    .unwrap();
    plan
}

#[test]
fn courier_maildirs_keep_uids_keywords_and_subscriptions_on_dovecot() {
    // Dovecot served with Courier's namespace (`INBOX.` prefix, `.` separator), so IMAP names
    // are the ones Courier's clients know.
    let dst = Dovecot::start_with(
        &[("alice", "pw")],
        &DovecotOptions {
            namespace: Some(("INBOX.".into(), '.')),
            ..Default::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("old");
    let maildir = src.join("alice").join("Maildir");

    // INBOX: courierimapuiddb version 1 (UIDs 1, 2, 5, 6 expunged long ago; NEXTUID 8).
    let inbox = folder(&maildir, None);
    let (m1, m2, m3) = (
        msg("m1", 1700000001, 1),
        msg("m2", 1700000002, 2),
        msg("m3", 1700000005, 3),
    );
    put(&inbox.join("cur"), &format!("{}:2,S", m1.base), &m1.body);
    put(&inbox.join("cur"), &format!("{}:2,RS", m2.base), &m2.body);
    put(&inbox.join("cur"), &format!("{}:2,", m3.base), &m3.body);
    // Delivered since Courier last opened INBOX: in new/, not numbered yet.
    let n1 = msg("n1", 1700000009, 9);
    put(&inbox.join("new"), &n1.base, &n1.body);
    put(
        &inbox,
        "courierimapuiddb",
        format!(
            "1 700000123 8\n3 {}\n4 {}\n7 {}\n",
            m1.base, m2.base, m3.base
        )
        .as_bytes(),
    );
    // Keywords: `:list` as `save_keywords` writes it, and a newer update for m3 that
    // replaces what `:list` says (Junk → $Label1).
    let kw = inbox.join("courierimapkeywords");
    put(
        &kw,
        ":list",
        format!("$Label1\nJunk\n\n{}:0 1\n{}:1\n", m2.base, m3.base).as_bytes(),
    );
    put(&kw, &m3.base, b"$Label1\n");
    put(
        &inbox,
        "courierimapsubscribed",
        b"INBOX\nINBOX.Sent\nINBOX.Archive\n",
    );
    // Sent: a uid list in version 3 layout.
    let sent = folder(&maildir, Some(".Sent"));
    let (s1, s2) = (msg("s1", 1690000000, 11), msg("s2", 1690000100, 12));
    put(&sent.join("cur"), &format!("{}:2,S", s1.base), &s1.body);
    put(&sent.join("cur"), &format!("{}:2,S", s2.base), &s2.body);
    put(
        &sent,
        "courierimapuiddb",
        format!("3 V700000200 N5\n1 :{}\n2 :{}:2,S\n", s1.base, s2.base).as_bytes(),
    );
    // Archive: version 2 layout (a flags field after the UID).
    let archive = folder(&maildir, Some(".Archive"));
    let a1 = msg("a1", 1600000000, 21);
    put(&archive.join("cur"), &format!("{}:2,S", a1.base), &a1.body);
    put(
        &archive,
        "courierimapuiddb",
        format!("2 700000300 13\n12 0 {}\n", a1.base).as_bytes(),
    );
    dst.chown_to_mail_user(&src);

    // Without `convert:` the dry run says what a plain copy would cost.
    let sshd = Sshd::start();
    let plain = plan(work.path(), &src, &dst, &sshd, None);
    let out = bin().args(["--json", "plan"]).arg(&plain).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["risks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "courier_not_converted"
                && r["message"]
                    .as_str()
                    .unwrap()
                    .contains("3 Courier-IMAP folder")),
        "{report:#}"
    );

    let plan = plan(work.path(), &src, &dst, &sshd, Some("courier-to-dovecot"));
    assert_eq!(planned(&plan, &[]), [(7, 0, 0)]);
    let source_before = snapshot(&src);

    let (code, first, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{first:#} {err}");
    assert_eq!(mailbox(&first, "alice/Maildir")["copied"], 7, "{first:#}");
    let target = dst.maildir("alice");
    for courier_file in [
        "courierimapuiddb",
        "courierimapsubscribed",
        "courierimapkeywords",
    ] {
        assert!(
            !target.join(courier_file).exists(),
            "{courier_file} is converted, not copied"
        );
    }
    let uidlist = std::fs::read_to_string(target.join("dovecot-uidlist")).unwrap();
    assert!(uidlist.starts_with("3 V700000123 N9\n"), "{uidlist}");
    assert_eq!(
        std::fs::read_to_string(target.join("dovecot-keywords")).unwrap(),
        "0 $Label1\n1 Junk\n"
    );
    assert!(
        target
            .join("cur")
            .join(format!("{}:2,RSab", m2.base))
            .exists(),
        "keyword letters in the file name"
    );

    assert_eq!(
        seen(&dst, "INBOX"),
        (
            700000123,
            vec![
                row(3, "m1", &["\\Seen"]),
                row(4, "m2", &["$Label1", "Junk", "\\Answered", "\\Seen"]),
                row(7, "m3", &["$Label1"]),
                // Numbered as Courier numbers new mail: from NEXTUID, in its order.
                row(8, "n1", &[]),
            ]
        )
    );
    assert_eq!(
        seen(&dst, "INBOX.Sent"),
        (
            700000200,
            vec![row(1, "s1", &["\\Seen"]), row(2, "s2", &["\\Seen"])]
        )
    );
    assert_eq!(
        seen(&dst, "INBOX.Archive"),
        (700000300, vec![row(12, "a1", &["\\Seen"])])
    );
    let mut subs = subscriptions(&dst, "alice", "pw");
    subs.sort();
    assert_eq!(subs, ["INBOX", "INBOX.Archive", "INBOX.Sent"]);
    let checked = bin().args(["mail", "verify"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{text}");
    assert_eq!(snapshot(&src), source_before, "the source is only read");

    // Courier at work on the source: it opens INBOX (n1 to cur/, read, numbered 8), m1 is
    // expunged, m2 loses $Label1 (an update file), and n2 arrives.
    std::fs::rename(
        inbox.join("new").join(&n1.base),
        inbox.join("cur").join(format!("{}:2,S", n1.base)),
    )
    .unwrap();
    std::fs::remove_file(inbox.join("cur").join(format!("{}:2,S", m1.base))).unwrap();
    put(
        &inbox,
        "courierimapuiddb",
        format!(
            "1 700000123 9\n4 {}\n7 {}\n8 {}\n",
            m2.base, m3.base, n1.base
        )
        .as_bytes(),
    );
    put(&kw, &m2.base, b"Junk\n");
    let n2 = msg("n2", 1700000020, 10);
    put(&inbox.join("new"), &n2.base, &n2.body);
    dst.chown_to_mail_user(&src);

    let (code, second, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{second:#} {err}");
    let alice = mailbox(&second, "alice/Maildir");
    assert_eq!(
        (alice["copied"].as_u64(), alice["renamed"].as_u64()),
        (Some(1), Some(2)),
        "n2 sent; n1 to cur/ and m2's keywords are renames: {second:#}"
    );
    assert_eq!(second[0]["bytes_sent"], n2.body.len(), "{second:#}");
    assert_eq!(
        seen(&dst, "INBOX"),
        (
            700000123,
            vec![
                row(3, "m1", &["\\Seen"]),
                row(4, "m2", &["Junk", "\\Answered", "\\Seen"]),
                row(7, "m3", &["$Label1"]),
                row(8, "n1", &["\\Seen"]),
                row(9, "n2", &[]),
            ]
        ),
        "kept without --delete; n2 from NEXTUID"
    );

    // Courier opens INBOX again and numbers n2 as it would: 9.
    std::fs::rename(
        inbox.join("new").join(&n2.base),
        inbox.join("cur").join(format!("{}:2,", n2.base)),
    )
    .unwrap();
    put(
        &inbox,
        "courierimapuiddb",
        format!(
            "1 700000123 10\n4 {}\n7 {}\n8 {}\n9 {}\n",
            m2.base, m3.base, n1.base, n2.base
        )
        .as_bytes(),
    );
    dst.chown_to_mail_user(&src);
    let source_now = snapshot(&src);
    let (code, third, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{third:#} {err}");
    let alice = mailbox(&third, "alice/Maildir");
    assert_eq!(
        (alice["copied"].as_u64(), alice["renamed"].as_u64()),
        (Some(0), Some(1)),
        "{third:#}"
    );
    // m1, expunged at the source, goes with `--delete`.
    let deleted = bin()
        .args(["--json", "mail", "sync", "--delete"])
        .arg(&plan)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(deleted.status.code(), Some(0), "{json:#}");
    assert_eq!(mailbox(&json, "alice/Maildir")["deleted"], 1, "{json:#}");
    let expected = (
        700000123,
        vec![
            row(4, "m2", &["Junk", "\\Answered", "\\Seen"]),
            row(7, "m3", &["$Label1"]),
            row(8, "n1", &["\\Seen"]),
            row(9, "n2", &[]),
        ],
    );
    assert_eq!(seen(&dst, "INBOX"), expected);

    // Nothing changed since: a re-run renames, sends and writes nothing.
    let uidlist_before = std::fs::metadata(target.join("dovecot-uidlist"))
        .unwrap()
        .modified()
        .unwrap();
    let (code, again, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{again:#} {err}");
    let alice = mailbox(&again, "alice/Maildir");
    assert_eq!(
        (alice["copied"].as_u64(), alice["renamed"].as_u64()),
        (Some(0), Some(0)),
        "{again:#}"
    );
    assert_eq!(
        std::fs::metadata(target.join("dovecot-uidlist"))
            .unwrap()
            .modified()
            .unwrap(),
        uidlist_before,
        "the uid list is not rewritten"
    );
    assert_eq!(seen(&dst, "INBOX"), expected);
    assert_eq!(planned(&plan, &[]), [(0, 0, 4 + 2 + 1)]);
    let checked = bin().args(["mail", "verify"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{text}");
    assert!(
        text.contains("same      mail[0] alice/Maildir INBOX: 4 messages"),
        "{text}"
    );
    assert_eq!(snapshot(&src), source_now, "the source is only read");

    // A keyword Courier sets after the last pass: verification names the message.
    put(&kw, &m3.base, b"$Label1\nJunk\n");
    let checked = bin().args(["mail", "verify"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("flags {}", m3.base)), "{text}");

    // After the cutover a sweep adds mail only: Courier's files stay behind, Dovecot's are
    // Dovecot's.
    let (code, swept, err) = mail("sweep", &plan, &[]);
    assert_eq!(code, 0, "{swept:#} {err}");
    assert_eq!(mailbox(&swept, "alice/Maildir")["copied"], 0, "{swept:#}");
    assert!(!target.join("courierimapuiddb").exists());
    assert!(!target.join("courierimapkeywords").exists());
    assert_eq!(seen(&dst, "INBOX"), expected);
}

/// A plain tree of one Courier Maildir (INBOX with a `courierimapuiddb`) under `root`.
fn courier_tree(root: &Path) {
    let inbox = folder(&root.join("bob").join("Maildir"), None);
    let m = msg("b1", 1700000001, 1);
    put(&inbox.join("cur"), &format!("{}:2,S", m.base), &m.body);
    put(
        &inbox,
        "courierimapuiddb",
        format!("1 700000999 2\n1 {}\n", m.base).as_bytes(),
    );
}

fn local_plan(dir: &Path, convert: &str) -> PathBuf {
    let plan = dir.join(format!("plan{}.yaml", convert.len()));
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: it-courier-plain\nhosts:\n  old: {{ local: true }}\nmail:\n  - layout: maildir\n    from: {{ host: old, path: old }}\n    to: {{ host: old, path: new }}\n{convert}"
        ),
    )
    .unwrap();
    plan
}

#[test]
fn without_convert_courier_files_are_copied_and_both_the_dry_run_and_the_pass_say_so() {
    let work = tempfile::tempdir().unwrap();
    courier_tree(&work.path().join("old"));
    let unset = local_plan(work.path(), "");
    let (code, out, err) = mail("sync", &unset, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    let notes = mailbox(&out, "bob/Maildir")["notes"].to_string();
    assert!(notes.contains("convert: courier-to-dovecot"), "{out:#}");
    assert!(
        work.path()
            .join("new/bob/Maildir/courierimapuiddb")
            .exists()
    );

    // `convert: none` says the target is Courier: copied, nothing to warn about.
    let none = local_plan(work.path(), "    convert: none\n");
    let (code, out, err) = mail("sync", &none, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    assert!(
        mailbox(&out, "bob/Maildir").get("notes").is_none(),
        "{out:#}"
    );
    let dry = bin().args(["--json", "plan"]).arg(&none).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(
        !report["risks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "courier_not_converted"),
        "{report:#}"
    );

    // On an IMAP rule the key means nothing: refused, with its place in the file.
    let imap = work.path().join("imap.yaml");
    std::fs::write(
        &imap,
        "version: 1\nname: t\nmail:\n  - layout: imap\n    from: { server: \"127.0.0.1:1\", security: plain }\n    to: { server: \"127.0.0.1:1\", security: plain }\n    users: u.csv\n    convert: courier-to-dovecot\n",
    )
    .unwrap();
    let out = bin()
        .args(["validate", "--offline"])
        .arg(&imap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("`convert` is for `layout: maildir`"),
        "{text}"
    );
}
