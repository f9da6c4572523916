//! Mail between two real Dovecot servers, read back through IMAP: Maildir passes that rename
//! instead of resending, a sweep after the cutover, IMAP moves over TLS re-run without
//! duplicates, and the bad inputs (wrong password, refused folder, size limit, full quota).

use std::collections::BTreeMap;
use std::path::Path;

use transhumance::mail::imap::ImapSession;
use transhumance::plan::ImapServer;
use transhumance::plan::raw::ImapSecurity;
use transhumance::plan::secret::Secret;

use crate::cli::bin;
use crate::harness::{Dovecot, DovecotOptions, Sshd};

/// A message with a Message-ID, padded to about `size` bytes.
pub(crate) fn message(id: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender@example.test\r\nTo: user@example.test\r\nSubject: {id}\r\nMessage-ID: <{id}@example.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let mut i = 0;
    while m.len() < size {
        m.extend_from_slice(format!("line {i} of {id}\r\n").as_bytes());
        i += 1;
    }
    m
}

fn save(server: &Dovecot, user: &str, folder: &str, id: &str, size: usize) {
    server.doveadm_with_input(&["save", "-u", user, "-m", folder], &message(id, size));
}

fn flag(server: &Dovecot, user: &str, folder: &str, uid: u32, flag: &str) {
    server.doveadm(&[
        "flags",
        "add",
        "-u",
        user,
        flag,
        "mailbox",
        folder,
        "uid",
        &uid.to_string(),
    ]);
}

/// What a client sees of one folder: UIDVALIDITY, then (UID, Message-ID, flags, date, size).
pub(crate) type FolderView = (u64, Vec<(u32, String, Vec<String>, i64, u64)>);

/// Every folder of an account, read through IMAP (read-only).
pub(crate) fn view(server: &Dovecot, user: &str, password: &str) -> BTreeMap<String, FolderView> {
    let plain = ImapServer {
        host: "127.0.0.1".into(),
        port: server.port,
        security: ImapSecurity::Plain,
        ca_file: None,
    };
    let mut s = ImapSession::login(&plain, user, &Secret::new(password)).unwrap();
    let mut out = BTreeMap::new();
    for folder in s.list(false).unwrap() {
        // A folder the server itself refuses to open (bad name made on disk) is not shown.
        let Ok((_, validity)) = s.status(&folder.name) else {
            continue;
        };
        let n = s.open(&folder.name, false).unwrap();
        let mut messages: Vec<_> = if n == 0 {
            Vec::new()
        } else {
            s.summaries(true).unwrap()
        }
        .into_iter()
        .map(|m| {
            let mut flags: Vec<String> = m.flags.into_iter().filter(|f| f != "\\Recent").collect();
            flags.sort();
            (
                m.uid,
                m.message_id.unwrap_or_default(),
                flags,
                m.date_epoch,
                m.size,
            )
        })
        .collect();
        messages.sort();
        out.insert(folder.name, (validity, messages));
    }
    s.logout();
    out
}

/// A message without its UID: (Message-ID, flags, date, size).
type Content = (String, Vec<String>, i64, u64);

/// The same view without UIDs and UIDVALIDITY (an IMAP move gives new ones), sorted.
fn content(v: &BTreeMap<String, FolderView>) -> BTreeMap<String, Vec<Content>> {
    v.iter()
        .map(|(k, (_, msgs))| {
            let mut m: Vec<_> = msgs
                .iter()
                .map(|(_, id, f, d, s)| (id.clone(), f.clone(), *d, *s))
                .collect();
            m.sort();
            (k.clone(), m)
        })
        .collect()
}

pub(crate) fn subscriptions(server: &Dovecot, user: &str, password: &str) -> Vec<String> {
    let plain = ImapServer {
        host: "127.0.0.1".into(),
        port: server.port,
        security: ImapSecurity::Plain,
        ca_file: None,
    };
    let mut s = ImapSession::login(&plain, user, &Secret::new(password)).unwrap();
    let subs = s.list(true).unwrap().into_iter().map(|e| e.name).collect();
    s.logout();
    subs
}

/// Runs `transhumance --json mail STEP plan` with `env`; (exit code, JSON, stderr).
pub(crate) fn mail(
    step: &str,
    plan: &Path,
    env: &[(&str, &str)],
) -> (i32, serde_json::Value, String) {
    let mut cmd = bin();
    cmd.args(["--json", "mail", step]).arg(plan);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), json, stderr)
}

pub(crate) fn mailbox<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json[0]["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == name)
        .unwrap_or_else(|| panic!("no mailbox {name} in {json:#}"))
}

/// A Maildir plan from `src`'s mail to `dst`'s, the target reached over `ssh` when given
/// (then the renames travel through the uploaded agent).
fn maildir_plan(
    dir: &Path,
    src: &Dovecot,
    dst: &Dovecot,
    ssh: Option<&Sshd>,
) -> std::path::PathBuf {
    let new_host = match ssh {
        Some(s) => format!(
            "{{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}\" }}",
            s.port,
            s.client_key.display(),
            s.known_hosts.display(),
            dir.join("agent").display()
        ),
        None => "{ local: true }".into(),
    };
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: it-maildir\nhosts:\n  old: {{ local: true }}\n  new: {new_host}\nmail:\n  - layout: maildir\n    from: {{ host: old, path: \"{}\" }}\n    to: {{ host: new, path: \"{}\" }}\n",
            src.dir.path().join("mail").display(),
            dst.dir.path().join("mail").display()
        ),
    )
    .unwrap();
    plan
}

/// Names of the message files of a Maildir tree, for "nothing was renamed" checks.
fn message_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .filter(|p| p.contains("/cur/") || p.contains("/new/"))
        .collect();
    out.sort();
    out
}

#[test]
fn maildir_pass_renames_flag_changes_and_keeps_uids() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    src.doveadm(&["mailbox", "create", "-u", "alice", "Archive"]);
    for i in 0..6 {
        save(&src, "alice", "INBOX", &format!("in{i}"), 3000 + i * 100);
    }
    save(&src, "alice", "Archive", "old1", 9000);
    flag(&src, "alice", "INBOX", 1, "\\Seen");
    // Delivered by an MDA, not yet seen by any client: in new/.
    let fresh = message("fresh", 4000);
    let fresh_name = format!("1700000100.M9P9.it,S={}", fresh.len());
    std::fs::write(src.maildir("alice").join("new").join(&fresh_name), &fresh).unwrap();
    src.chown_to_mail_user(&src.maildir("alice"));
    // Index and cache files exist at the source now; they must not travel.
    let before = view(&src, "alice", "pw");
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let plan = maildir_plan(work.path(), &src, &dst, Some(&sshd));

    let (code, first, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{first:#} {err}");
    assert_eq!(mailbox(&first, "alice/Maildir")["copied"], 8, "{first:#}");
    assert!(src.maildir("alice").join("dovecot.index.log").exists());
    assert!(
        !dst.maildir("alice").join("dovecot.index.log").exists(),
        "index files are rebuilt by the target, not copied"
    );
    assert!(dst.maildir("alice").join("dovecot-uidlist").exists());
    assert_eq!(
        view(&dst, "alice", "pw"),
        before,
        "same messages, flags, UIDs and UIDVALIDITY through IMAP"
    );

    // A client at the source reads, answers and flags; one message goes from new/ to cur/.
    flag(&src, "alice", "INBOX", 2, "\\Answered");
    flag(&src, "alice", "INBOX", 3, "\\Flagged");
    flag(&src, "alice", "Archive", 1, "\\Seen");
    std::fs::rename(
        src.maildir("alice").join("new").join(&fresh_name),
        src.maildir("alice")
            .join("cur")
            .join(format!("{fresh_name}:2,S")),
    )
    .unwrap();
    let changed = view(&src, "alice", "pw");
    assert_ne!(changed, before);

    let (code, second, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{second:#} {err}");
    let alice = mailbox(&second, "alice/Maildir");
    assert_eq!(alice["copied"], 0, "flag changes are renames: {second:#}");
    assert_eq!(alice["renamed"], 4, "{second:#}");
    assert_eq!(second[0]["bytes_sent"], 0, "no message was sent again");
    let wire = second[0]["wire_bytes"].as_u64().unwrap();
    assert!(
        wire > 0 && wire < 20_000,
        "only listings and renames crossed ssh: {wire} bytes"
    );
    assert_eq!(view(&dst, "alice", "pw"), changed);

    let verify = bin().args(["mail", "verify"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{text}");
    assert!(
        text.contains("same      mail[0] alice/Maildir .Archive: 1 messages"),
        "{text}"
    );

    // Expunged at the source before the cutover: gone at the target with `--delete` only.
    src.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "4"]);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    assert_eq!(
        view(&dst, "alice", "pw")["INBOX"].1.len(),
        7,
        "kept without --delete"
    );
    let deleted = bin()
        .args(["mail", "sync", "--delete"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(deleted.status.code(), Some(0));
    assert_eq!(view(&dst, "alice", "pw"), view(&src, "alice", "pw"));
    let whole = bin().arg("verify").arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&whole.stdout);
    assert_eq!(
        whole.status.code(),
        Some(0),
        "`verify PLAN` covers mail: {text}"
    );
    assert!(
        text.contains("same      mail[0] alice/Maildir INBOX: 6 messages"),
        "{text}"
    );
}

#[test]
fn an_unreadable_users_file_is_invalid_input() {
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: t\nmail:\n  - layout: imap\n    from: { server: \"127.0.0.1:1\", security: plain }\n    to: { server: \"127.0.0.1:1\", security: plain }\n    users: missing.csv\n",
    )
    .unwrap();
    let out = bin().args(["mail", "sync"]).arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Said before anything moves, with the other secrets the command needs.
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("cannot read users file"), "{text}");
}

#[test]
fn late_message_is_swept_after_cutover_without_touching_the_target() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    for i in 0..3 {
        save(&src, "alice", "INBOX", &format!("m{i}"), 2000);
    }
    let work = tempfile::tempdir().unwrap();
    let plan = maildir_plan(work.path(), &src, &dst, None);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    let (validity, _) = view(&dst, "alice", "pw")["INBOX"].clone();

    // Cutover. The user works at the target; a late message still lands at the source.
    flag(&dst, "alice", "INBOX", 1, "\\Flagged");
    save(&dst, "alice", "INBOX", "new-at-target", 1500);
    flag(&src, "alice", "INBOX", 2, "\\Deleted");
    save(&src, "alice", "INBOX", "late", 2500);
    let target_files = message_files(&dst.maildir("alice"));

    let (code, out, err) = mail("sweep", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    assert_eq!(mailbox(&out, "alice/Maildir")["copied"], 1, "{out:#}");
    let after = message_files(&dst.maildir("alice"));
    assert!(
        target_files.iter().all(|f| after.contains(f)),
        "nothing at the target was renamed or removed: {target_files:?} {after:?}"
    );
    let (v, msgs) = view(&dst, "alice", "pw")["INBOX"].clone();
    assert_eq!(v, validity, "the target's UIDVALIDITY stays");
    let ids: Vec<(u32, &str, &[String])> = msgs
        .iter()
        .map(|(u, id, f, _, _)| (*u, id.as_str(), f.as_slice()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (1, "<m0@example.test>", &["\\Flagged".to_string()][..]),
            (2, "<m1@example.test>", &[][..]),
            (3, "<m2@example.test>", &[][..]),
            (4, "<new-at-target@example.test>", &[][..]),
            (5, "<late@example.test>", &[][..]),
        ],
        "the target's own changes are kept, the source's flags are not applied, the late message is new"
    );

    // The user deletes a message at the target that the old server still has: a sweep does
    // not bring it back (the pass recorded what it delivered).
    dst.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "3"]);
    let (code, again, _) = mail("sweep", &plan, &[]);
    assert_eq!(code, 0);
    assert_eq!(mailbox(&again, "alice/Maildir")["copied"], 0, "{again:#}");
    let ids: Vec<String> = view(&dst, "alice", "pw")["INBOX"]
        .1
        .iter()
        .map(|m| m.1.clone())
        .collect();
    assert_eq!(
        ids,
        [
            "<m0@example.test>",
            "<m1@example.test>",
            "<new-at-target@example.test>",
            "<late@example.test>"
        ]
    );
}

fn imap_plan(
    dir: &Path,
    from: &str,
    to: &str,
    users: &str,
    max_connections: u32,
) -> std::path::PathBuf {
    std::fs::write(dir.join("users.csv"), users).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: it-imap\nmail:\n  - layout: imap\n    from: {from}\n    to: {to}\n    users: users.csv\n    max_connections: {max_connections}\n"
        ),
    )
    .unwrap();
    plan
}

#[test]
fn imap_move_over_tls_is_idempotent_with_flags_dates_and_subscriptions() {
    let tls = DovecotOptions {
        tls: true,
        ..Default::default()
    };
    let users = [("alice", "a-pw"), ("bob", "b-pw")];
    let (src, dst) = (
        Dovecot::start_with(&users, &tls),
        Dovecot::start_with(&users, &tls),
    );
    for u in ["alice", "bob"] {
        src.doveadm(&["mailbox", "create", "-u", u, "Archive", "Archive.2024"]);
        src.doveadm(&["mailbox", "subscribe", "-u", u, "Archive.2024"]);
        for i in 0..4 {
            save(&src, u, "INBOX", &format!("{u}-in{i}"), 1000 + i * 700);
        }
        save(&src, u, "Archive.2024", &format!("{u}-old"), 50_000);
        flag(&src, u, "INBOX", 1, "\\Seen");
        flag(&src, u, "INBOX", 2, "$Forwarded");
        flag(&src, u, "Archive.2024", 1, "\\Answered");
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("bob.pw"), "b-pw\n").unwrap();
    let plan = imap_plan(
        work.path(),
        &format!(
            "{{ server: \"127.0.0.1:{}\", security: tls, ca_file: \"{}\" }}",
            src.imaps_port.unwrap(),
            src.ca_file.as_ref().unwrap().display()
        ),
        &format!(
            "{{ server: \"127.0.0.1:{}\", security: starttls, ca_file: \"{}\" }}",
            dst.port,
            dst.ca_file.as_ref().unwrap().display()
        ),
        "source_user,source_password,target_user,target_password\nalice,env:IT_A_PW,alice,env:IT_A_PW\nbob,file:bob.pw,bob,file:bob.pw\n",
        2,
    );
    let env = [("IT_A_PW", "a-pw")];

    let (code, first, err) = mail("sync", &plan, &env);
    assert_eq!(code, 0, "{first:#} {err}");
    assert_eq!(mailbox(&first, "alice")["copied"], 5, "{first:#}");
    for (u, pw) in users {
        assert_eq!(
            content(&view(&dst, u, pw)),
            content(&view(&src, u, pw)),
            "{u}: same folders, messages, flags, dates and sizes"
        );
        assert_eq!(subscriptions(&dst, u, pw), vec!["Archive.2024"]);
    }

    // Re-run: nothing appended twice; a flag changed at the source follows.
    flag(&src, "bob", "INBOX", 3, "\\Flagged");
    let (code, second, err) = mail("sync", &plan, &env);
    assert_eq!(code, 0, "{second:#} {err}");
    for u in ["alice", "bob"] {
        assert_eq!(mailbox(&second, u)["copied"], 0, "{second:#}");
        assert_eq!(mailbox(&second, u)["present"], 5, "{second:#}");
    }
    assert_eq!(mailbox(&second, "bob")["renamed"], 1, "one flag update");
    assert_eq!(
        content(&view(&dst, "bob", "b-pw")),
        content(&view(&src, "bob", "b-pw"))
    );

    // After the cutover the user works at the target; a late message lands at the source.
    // A sweep adds it and leaves the target's own flag change alone.
    let seen_at_target = |v: &BTreeMap<String, FolderView>| {
        v["INBOX"]
            .1
            .iter()
            .filter(|m| m.2.contains(&"\\Deleted".to_string()))
            .count()
    };
    flag(&dst, "alice", "INBOX", 1, "\\Deleted");
    save(&src, "alice", "INBOX", "alice-late", 1200);
    let (code, swept, err) = mail("sweep", &plan, &env);
    assert_eq!(code, 0, "{swept:#} {err}");
    assert_eq!(mailbox(&swept, "alice")["copied"], 1, "{swept:#}");
    assert_eq!(mailbox(&swept, "alice")["renamed"], 0, "no flag changed");
    let after = view(&dst, "alice", "a-pw");
    assert_eq!(seen_at_target(&after), 1);
    assert_eq!(after["INBOX"].1.len(), 5);
    // Deleted by the user at the target, still at the source: a sweep leaves it deleted.
    dst.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "2"]);
    let (code, swept, err) = mail("sweep", &plan, &env);
    assert_eq!(code, 0, "{swept:#} {err}");
    assert_eq!(mailbox(&swept, "alice")["copied"], 0, "{swept:#}");
    assert_eq!(view(&dst, "alice", "a-pw")["INBOX"].1.len(), 4);
    // Back to equal ends for the verification below.
    for uid in ["2", "5"] {
        src.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", uid]);
    }
    dst.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "5"]);
    dst.doveadm(&[
        "flags",
        "remove",
        "-u",
        "alice",
        "\\Deleted",
        "mailbox",
        "INBOX",
        "uid",
        "1",
    ]);

    let (code, verified, _) = mail("verify", &plan, &env);
    assert_eq!(code, 0, "{verified:#}");
    // A message appended twice at the target is reported as a duplicate.
    save(&dst, "alice", "INBOX", "alice-in0", 1000);
    let out = bin()
        .args(["mail", "verify"])
        .arg(&plan)
        .env("IT_A_PW", "a-pw")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("duplicate mail[0] alice INBOX: <alice-in0@example.test>"),
        "{text}"
    );

    // Without the plan's CA, the self-signed certificate is refused, per mailbox.
    let strict = imap_plan(
        work.path(),
        &format!(
            "{{ server: \"127.0.0.1:{}\", security: tls }}",
            src.imaps_port.unwrap()
        ),
        &format!(
            "{{ server: \"127.0.0.1:{}\", security: starttls }}",
            dst.port
        ),
        "alice,env:IT_A_PW,alice,env:IT_A_PW\n",
        1,
    );
    let (code, refused, _) = mail("sync", &strict, &env);
    assert_eq!(code, 1);
    let e = mailbox(&refused, "alice")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("certificate"), "{e}");
}

#[test]
fn imap_bad_inputs_are_reported_per_mailbox_and_a_rerun_resumes() {
    let users = [("alice", "a-pw"), ("bob", "b-pw"), ("carol", "c-pw")];
    let src = Dovecot::start(&users);
    let dst = Dovecot::start_with(
        &users,
        &DovecotOptions {
            quota: true,
            max_mail_size: Some("60k".into()),
            ..Default::default()
        },
    );
    dst.set_quota("carol", "50K");
    for u in ["alice", "bob", "carol"] {
        save(&src, u, "INBOX", &format!("{u}-0"), 20_000);
    }
    save(&src, "alice", "INBOX", "alice-1", 3000);
    // bob: one message over the target's size limit, and a folder the target refuses to
    // create (a name Dovecot accepts on disk but not through CREATE).
    save(&src, "bob", "INBOX", "bob-big", 100_000);
    save(&src, "bob", "INBOX", "bob-1", 3000);
    let odd = src.maildir("bob").join(".~odd");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(odd.join(sub)).unwrap();
    }
    std::fs::write(odd.join("cur/1700000000.M1P1.it,S=10:2,S"), b"Subject: x").unwrap();
    src.chown_to_mail_user(&src.maildir("bob"));
    // carol: more than her 50K quota.
    for i in 1..6 {
        save(&src, "carol", "INBOX", &format!("carol-{i}"), 20_000);
    }
    let work = tempfile::tempdir().unwrap();
    let plan = imap_plan(
        work.path(),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", src.port),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", dst.port),
        "alice,env:IT_SRC_A,alice,env:IT_DST_A\nbob,env:IT_SRC_B,bob,env:IT_SRC_B\ncarol,env:IT_SRC_C,carol,env:IT_SRC_C\n",
        3,
    );
    let mut env = vec![
        ("IT_SRC_A", "a-pw"),
        ("IT_DST_A", "wrong"),
        ("IT_SRC_B", "b-pw"),
        ("IT_SRC_C", "c-pw"),
    ];

    let (code, first, err) = mail("sync", &plan, &env);
    assert_eq!(code, 1, "{first:#} {err}");
    let alice = mailbox(&first, "alice");
    let why = alice["error"].as_str().unwrap();
    assert!(why.contains("login of `alice` refused"), "{why}");
    assert!(!why.contains("wrong"), "no password in messages: {why}");
    let bob = mailbox(&first, "bob");
    let bob_failures = bob["failures"].to_string();
    assert!(
        bob_failures.contains("folder `~odd`: the target refused"),
        "{bob_failures}"
    );
    assert!(
        bob_failures.contains("<bob-big@example.test>"),
        "{bob_failures}"
    );
    assert_eq!(bob["copied"], 2, "the rest of bob's mail went on: {bob:#}");
    let carol = mailbox(&first, "carol");
    assert!(carol["failures"].to_string().contains("quota"), "{carol:#}");
    let carol_copied = carol["copied"].as_u64().unwrap();
    assert!((1..6).contains(&carol_copied), "{carol:#}");

    // Fixed: the right password, room at the target. A re-run picks up where it stopped.
    env[1] = ("IT_DST_A", "a-pw");
    dst.set_quota("carol", "10M");
    let (code, second, err) = mail("sync", &plan, &env);
    assert_eq!(
        code, 1,
        "bob's big message and folder still fail: {second:#} {err}"
    );
    assert_eq!(mailbox(&second, "alice")["copied"], 2);
    assert!(mailbox(&second, "alice")["error"].is_null());
    let carol = mailbox(&second, "carol");
    assert_eq!(
        carol["copied"].as_u64().unwrap(),
        6 - carol_copied,
        "{carol:#}"
    );
    assert!(carol["failures"].is_null(), "{carol:#}");
    assert_eq!(mailbox(&second, "bob")["copied"], 0);
    assert_eq!(mailbox(&second, "bob")["present"], 2);
    assert_eq!(
        content(&view(&dst, "carol", "c-pw")),
        content(&view(&src, "carol", "c-pw")),
        "carol complete, no duplicates"
    );
    assert_eq!(
        view(&src, "bob", "b-pw")["INBOX"].1.len(),
        3,
        "nothing deleted at the source"
    );

    // Verification goes past a folder the source itself refuses to open, and names the
    // message that could not go.
    let (code, checked, _) = mail("verify", &plan, &env);
    assert_eq!(code, 1);
    let bob = mailbox(&checked, "bob");
    assert!(bob["failures"].to_string().contains("~odd"), "{bob:#}");
    let inbox = &bob["folders"][0];
    assert_eq!(inbox["folder"], "INBOX", "{bob:#}");
    assert_eq!(
        inbox["missing"],
        serde_json::json!(["<bob-big@example.test> (100015 bytes)"]),
        "{bob:#}"
    );
}

#[test]
fn imap_folders_cross_namespace_prefixes_and_separators() {
    let courier = DovecotOptions {
        namespace: Some(("INBOX.".into(), '.')),
        ..Default::default()
    };
    let slash = DovecotOptions {
        namespace: Some((String::new(), '/')),
        ..Default::default()
    };
    let (src, dst) = (
        Dovecot::start_with(&[("alice", "pw")], &courier),
        Dovecot::start_with(&[("alice", "pw")], &slash),
    );
    src.doveadm(&[
        "mailbox",
        "create",
        "-u",
        "alice",
        "INBOX.Archive",
        "INBOX.Archive.2024",
    ]);
    src.doveadm(&["mailbox", "subscribe", "-u", "alice", "INBOX.Archive.2024"]);
    save(&src, "alice", "INBOX", "in", 1000);
    save(&src, "alice", "INBOX.Archive.2024", "old", 2000);
    let work = tempfile::tempdir().unwrap();
    let plan = imap_plan(
        work.path(),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", src.port),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", dst.port),
        "alice,env:IT_PW,alice,env:IT_PW\n",
        1,
    );
    let env = [("IT_PW", "pw")];
    let (code, out, err) = mail("sync", &plan, &env);
    assert_eq!(code, 0, "{out:#} {err}");
    let folders: Vec<String> = view(&dst, "alice", "pw").into_keys().collect();
    assert_eq!(folders, ["Archive", "Archive/2024", "INBOX"]);
    assert_eq!(
        view(&dst, "alice", "pw")["Archive/2024"].1[0].1,
        "<old@example.test>"
    );
    assert_eq!(subscriptions(&dst, "alice", "pw"), ["Archive/2024"]);
    let (code, checked, _) = mail("verify", &plan, &env);
    assert_eq!(code, 0, "{checked:#}");
}

/// The dry run's mail figures, per mailbox: (to copy, flag updates, already at the target).
pub(crate) fn planned(plan: &Path, env: &[(&str, &str)]) -> Vec<(u64, u64, u64)> {
    let mut cmd = bin();
    cmd.args(["--json", "plan"]).arg(plan);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    report["mail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["to_copy"].as_u64().unwrap(),
                m["flag_updates"].as_u64().unwrap(),
                m["messages_at_target"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Journals site `a` as confirmed on the new side, as a cutover would have.
fn confirm_a_site(plan_dir: &Path, plan_name: &str) {
    use transhumance::journal::now;
    use transhumance::lifecycle::ledger::{Entry, Ledger};
    let ledger = Ledger::open(&plan_dir.join(".transhumance").join(plan_name)).unwrap();
    ledger
        .record(Entry::Site {
            site: "a".into(),
            state: transhumance::lifecycle::state::SiteState::Confirmed,
            at: now(),
            detail: None,
            bytes: None,
            millis: None,
            at_ms: None,
        })
        .unwrap();
}

/// UID → Message-ID of one folder, as a client caches it.
fn uids(server: &Dovecot, user: &str, folder: &str) -> (u64, BTreeMap<u32, String>) {
    let (validity, msgs) = view(server, user, "pw")[folder].clone();
    (
        validity,
        msgs.into_iter().map(|(uid, id, ..)| (uid, id)).collect(),
    )
}

/// Issue 12: after a site was confirmed on the new side, `mail sync --delete` deleted a message
/// delivered to the new server, with exit 0 and no count.
#[test]
fn a_live_mail_unit_is_swept_and_delete_refused_unless_allowed() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    for i in 0..8 {
        save(&src, "alice", "INBOX", &format!("m{i}"), 2000);
    }
    let work = tempfile::tempdir().unwrap();
    let plan = maildir_plan(work.path(), &src, &dst, None);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");

    // Cutover of a site: the platform's mail is live at the target from now on.
    confirm_a_site(work.path(), "it-maildir");
    save(&dst, "alice", "INBOX", "new-at-target", 1500);
    src.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "1"]);
    let live_view = view(&dst, "alice", "pw");

    let refused = bin()
        .args(["mail", "sync", "--delete"])
        .arg(&plan)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(3), "{text}");
    assert!(
        text.contains("mail:0 may be live on the new side (site `a` is"),
        "{text}"
    );
    assert!(text.contains("--allow-live mail:0"), "{text}");
    assert_eq!(view(&dst, "alice", "pw"), live_view, "nothing written");

    // Without --delete: a sweep, and it says so.
    src.doveadm(&[
        "flags", "add", "-u", "alice", "\\Seen", "mailbox", "INBOX", "uid", "2",
    ]);
    save(&src, "alice", "INBOX", "late", 1800);
    let swept = bin().args(["mail", "sync"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&swept.stdout);
    assert_eq!(swept.status.code(), Some(0), "{text}");
    assert!(text.contains("swept instead of synced"), "{text}");
    let ids: Vec<(u32, String, Vec<String>)> = view(&dst, "alice", "pw")["INBOX"]
        .1
        .iter()
        .map(|(u, id, f, ..)| (*u, id.clone(), f.clone()))
        .collect();
    let expected: Vec<(u32, String, Vec<String>)> = (0..8)
        .map(|i| (i + 1, format!("<m{i}@example.test>"), vec![]))
        .chain([
            (9, "<new-at-target@example.test>".into(), vec![]),
            (10, "<late@example.test>".into(), vec![]),
        ])
        .collect();
    assert_eq!(
        ids, expected,
        "the late message added, nothing renamed or removed at the target"
    );

    // The operator names the unit: deletions happen, are counted, and the override journaled.
    let allowed = bin()
        .args(["mail", "sync", "--delete", "--allow-live", "mail:0"])
        .arg(&plan)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(allowed.status.code(), Some(0), "{text}");
    assert!(text.contains("deleted 2"), "{text}");
    let journal =
        std::fs::read_to_string(work.path().join(".transhumance/it-maildir/journal.jsonl"))
            .unwrap();
    assert!(
        journal
            .lines()
            .any(|l| l.contains("\"mail:0\"") && l.contains("verride")),
        "{journal}"
    );
}

/// Issue 12: `mail sync` renumbered messages: the source's `dovecot-uidlist` copied over a
/// target that had given UIDs of its own (mail delivered there), so a UID named another message
/// under the same UIDVALIDITY.
#[test]
fn a_maildir_sync_never_renumbers_a_message_at_the_target() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    for i in 0..3 {
        save(&src, "alice", "INBOX", &format!("m{i}"), 2000);
    }
    let work = tempfile::tempdir().unwrap();
    let plan = maildir_plan(work.path(), &src, &dst, None);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    // Delivered at the target (an MX moved early) and at the source: both take UID 4.
    save(&dst, "alice", "INBOX", "at-target", 1500);
    save(&src, "alice", "INBOX", "at-source", 1700);
    let (validity, before) = uids(&dst, "alice", "INBOX");
    assert_eq!(before[&4], "<at-target@example.test>");

    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    let (v, after) = uids(&dst, "alice", "INBOX");
    assert_eq!(v, validity);
    for (uid, id) in &before {
        assert_eq!(
            after.get(uid),
            Some(id),
            "UID {uid} still names {id}: {after:?}"
        );
    }
    let new: Vec<(&u32, &String)> = after
        .iter()
        .filter(|(u, _)| !before.contains_key(u))
        .collect();
    assert_eq!(new, vec![(&5, &"<at-source@example.test>".to_string())]);
    let notes = mailbox(&out, "alice/Maildir")["notes"].to_string();
    assert!(notes.contains("UIDs"), "{out:#}");
    // A second pass changes nothing at the target.
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    assert_eq!(uids(&dst, "alice", "INBOX").1, after);

    // Verification reads the UIDs: the source's message has another UID at the target.
    let checked = bin().args(["mail", "verify"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{text}");
    assert!(
        text.contains("differs   mail[0] alice/Maildir INBOX: UID "),
        "{text}"
    );
    assert!(text.contains("source 4, target 5"), "{text}");
}

/// Issue 12: a sweep recreated folders the user deleted or renamed at the new side.
#[test]
fn a_sweep_does_not_recreate_folders_deleted_or_renamed_at_the_target() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    src.doveadm(&["mailbox", "create", "-u", "alice", "Old", "Archive"]);
    save(&src, "alice", "INBOX", "in", 1000);
    save(&src, "alice", "Old", "old", 1000);
    save(&src, "alice", "Archive", "arch", 1000);
    let work = tempfile::tempdir().unwrap();
    let plan = maildir_plan(work.path(), &src, &dst, None);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");

    // After the cutover the user deletes one folder and renames another at the target; late
    // mail lands in both at the source, and a folder appears there.
    dst.doveadm(&["mailbox", "delete", "-u", "alice", "-r", "Old"]);
    dst.doveadm(&["mailbox", "rename", "-u", "alice", "Archive", "Kept"]);
    save(&src, "alice", "Old", "old-late", 1000);
    save(&src, "alice", "Archive", "arch-late", 1000);
    save(&src, "alice", "INBOX", "in-late", 1000);
    src.doveadm(&["mailbox", "create", "-u", "alice", "Fresh"]);
    save(&src, "alice", "Fresh", "fresh", 1000);

    let (code, out, err) = mail("sweep", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    let after = view(&dst, "alice", "pw");
    let folders: Vec<&String> = after.keys().collect();
    assert_eq!(folders, ["Fresh", "INBOX", "Kept"], "{out:#}");
    assert_eq!(after["INBOX"].1.len(), 2);
    assert_eq!(
        after["Kept"].1.len(),
        1,
        "nothing swept into the renamed folder"
    );
    let notes = mailbox(&out, "alice/Maildir")["notes"].to_string();
    assert!(
        notes.contains(".Old") && notes.contains(".Archive"),
        "{out:#}"
    );

    // The same over IMAP.
    let (isrc, idst) = (
        Dovecot::start(&[("bob", "pw")]),
        Dovecot::start(&[("bob", "pw")]),
    );
    isrc.doveadm(&["mailbox", "create", "-u", "bob", "Old"]);
    save(&isrc, "bob", "Old", "old", 1000);
    let imap_work = tempfile::tempdir().unwrap();
    let iplan = imap_plan(
        imap_work.path(),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", isrc.port),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", idst.port),
        "bob,env:IT_PW,bob,env:IT_PW\n",
        1,
    );
    let env = [("IT_PW", "pw")];
    let (code, out, err) = mail("sync", &iplan, &env);
    assert_eq!(code, 0, "{out:#} {err}");
    idst.doveadm(&["mailbox", "delete", "-u", "bob", "-r", "Old"]);
    save(&isrc, "bob", "Old", "old-late", 1000);
    let (code, out, err) = mail("sweep", &iplan, &env);
    assert_eq!(code, 0, "{out:#} {err}");
    assert_eq!(
        view(&idst, "bob", "pw").into_keys().collect::<Vec<_>>(),
        ["INBOX"]
    );
    assert!(
        mailbox(&out, "bob")["notes"].to_string().contains("`Old`"),
        "{out:#}"
    );
}

/// Two look-alike messages (same Message-ID, size and INTERNALDATE) written straight into a
/// Maildir, one read and one not.
fn twins(server: &Dovecot, user: &str) {
    let body = message("twin", 1200);
    let cur = server.maildir(user).join("cur");
    std::fs::create_dir_all(&cur).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
    for (name, info) in [("1790000000.M1P1.it", "S"), ("1790000000.M2P1.it", "")] {
        let path = cur.join(format!("{name},S={}:2,{info}", body.len()));
        std::fs::write(&path, &body).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    server.chown_to_mail_user(&server.maildir(user));
}

/// Issue 12: an IMAP re-run with nothing changed at the source swapped the flags of two
/// messages it could not tell apart, and `mail verify` (presence only) still passed.
#[test]
fn imap_reruns_never_swap_flags_of_look_alikes_and_verify_compares_flags_and_dates() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    save(&src, "alice", "INBOX", "other", 900);
    twins(&src, "alice");
    let work = tempfile::tempdir().unwrap();
    let plan = imap_plan(
        work.path(),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", src.port),
        &format!("{{ server: \"127.0.0.1:{}\", security: plain }}", dst.port),
        "alice,env:IT_PW,alice,env:IT_PW\n",
        1,
    );
    let env = [("IT_PW", "pw")];
    // The dry run announces what the engine then does, from the same matching: a message
    // at the target that is none of the source's is not counted as there.
    save(&dst, "alice", "INBOX", "unrelated", 900);
    let planned = |plan: &Path| planned(plan, &env)[0];
    assert_eq!(planned(&plan), (3, 0, 0));
    let (code, out, err) = mail("sync", &plan, &env);
    assert_eq!(code, 0, "{out:#} {err}");
    assert_eq!(mailbox(&out, "alice")["copied"], 3, "{out:#}");
    dst.doveadm(&["expunge", "-u", "alice", "mailbox", "INBOX", "uid", "1"]);
    let first = view(&dst, "alice", "pw");
    assert_eq!(content(&first), content(&view(&src, "alice", "pw")));

    for _ in 0..2 {
        assert_eq!(planned(&plan), (0, 0, 3), "nothing to do");
        let (code, out, err) = mail("sync", &plan, &env);
        assert_eq!(code, 0, "{out:#} {err}");
        assert_eq!(
            mailbox(&out, "alice")["renamed"],
            0,
            "no flag touched: {out:#}"
        );
        assert_eq!(
            view(&dst, "alice", "pw"),
            first,
            "same flags on the same UIDs"
        );
    }
    let (code, out, _) = mail("verify", &plan, &env);
    assert_eq!(code, 0, "{out:#}");

    // Verification compares flags and dates, not only presence.
    flag(&dst, "alice", "INBOX", 2, "\\Flagged");
    let out = bin()
        .args(["mail", "verify"])
        .arg(&plan)
        .env("IT_PW", "pw")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("differs   mail[0] alice INBOX: flags <other@example.test>"),
        "{text}"
    );
    // A flag the source has changes at the target: the dry run says one, the sync does one.
    flag(&src, "alice", "INBOX", 1, "\\Answered");
    assert_eq!(planned(&plan).1, 1);
    let (code, out, err) = mail("sync", &plan, &env);
    assert_eq!(code, 0, "{out:#} {err}");
    assert_eq!(mailbox(&out, "alice")["renamed"], 1, "{out:#}");
}

/// Issue 12: Maildir verification compared presence only; a flag changed at one end passed.
#[test]
fn maildir_verify_names_a_message_whose_flags_differ() {
    let (src, dst) = (
        Dovecot::start(&[("alice", "pw")]),
        Dovecot::start(&[("alice", "pw")]),
    );
    save(&src, "alice", "INBOX", "m0", 1000);
    save(&src, "alice", "INBOX", "m1", 1000);
    let work = tempfile::tempdir().unwrap();
    let plan = maildir_plan(work.path(), &src, &dst, None);
    assert_eq!(planned(&plan, &[]), [(2, 0, 0)]);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    let (code, out, _) = mail("verify", &plan, &[]);
    assert_eq!(code, 0, "{out:#}");
    // The dry run and the engine agree on a flag change: one rename, nothing sent.
    flag(&src, "alice", "INBOX", 2, "\\Answered");
    assert_eq!(planned(&plan, &[]), [(0, 1, 2)]);
    let (code, out, err) = mail("sync", &plan, &[]);
    assert_eq!(code, 0, "{out:#} {err}");
    let alice = mailbox(&out, "alice/Maildir");
    assert_eq!(
        (alice["copied"].as_u64(), alice["renamed"].as_u64()),
        (Some(0), Some(1))
    );
    flag(&dst, "alice", "INBOX", 1, "\\Seen");
    let out = bin().args(["mail", "verify"]).arg(&plan).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("source (none), target S"), "{text}");
}
