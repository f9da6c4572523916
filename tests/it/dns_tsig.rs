//! DNS as production runs it, on a real BIND: transfers allowed only with the TSIG key, the key
//! checked by `validate` and the dry run, SPF records naming the old address, `dns plan` JSON
//! as one document, and a rollback that leaves someone else's TTL edit alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::bin;
use crate::harness::Bind;

/// A small hosting zone with an SPF record naming the web server, and enough other records
/// for a transfer to span several messages.
fn records() -> String {
    let mut r = String::from(
        "www 3600 IN A 192.0.2.10\n\
         shop 300 IN A 192.0.2.10\n\
         @ 300 IN MX 10 mail\n\
         mail 300 IN A 192.0.2.99\n\
         @ 300 IN TXT \"v=spf1 ip4:192.0.2.10 mx -all\"\n\
         blog 300 IN TXT \"hello 192.0.2.100\"\n",
    );
    for i in 0..40 {
        r.push_str(&format!(
            "host{i} 300 IN TXT \"filler record number {i}\"\n"
        ));
    }
    r
}

/// A DNS-only plan on `bind`, its TSIG secret from `secret_file`; `tsig` false leaves the key out.
fn write_plan(dir: &Path, bind: &Bind, key_name: &str, secret: &str, tsig: bool) -> PathBuf {
    let secret_file = dir.join("tsig.secret");
    std::fs::write(&secret_file, secret).unwrap();
    let key = if tsig {
        format!(
            ", tsig: {{ name: {key_name}, secret_file: \"{}\" }}",
            secret_file.display()
        )
    } else {
        String::new()
    };
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: dns-tsig\nstate_dir: state\ndns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\"{key} }}\n  zones: [example.test]\n  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]\n  lower_ttl: 60\n  verify_timeout: 10s\n",
            bind.port
        ),
    )
    .unwrap();
    plan
}

fn run(args: &[&str], plan: &Path) -> (i32, String, String) {
    let out = bin().args(args).arg(plan).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `dig AXFR` unsigned: what any client without the key gets.
fn unsigned_transfer(bind: &Bind) -> String {
    let out = Command::new("dig")
        .args(["+time=2", "+tries=1", "@127.0.0.1", "-p"])
        .arg(bind.port.to_string())
        .args(["example.test", "AXFR"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into()
}

#[test]
fn a_primary_that_transfers_only_with_the_key_is_read_and_spf_is_flagged() {
    let bind = Bind::start_transfer_with_key(&[("example.test", &records())]);
    assert!(
        unsigned_transfer(&bind).contains("Transfer failed"),
        "the server must refuse unsigned transfers for this test to mean anything"
    );
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(work.path(), &bind, &bind.tsig_name, &bind.tsig_secret, true);

    let (code, out, err) = run(&["dns", "plan"], &plan);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("~ www.example.test. A ttl 3600 -> 60: 192.0.2.10 -> 198.51.100.10"),
        "{out}"
    );
    assert!(out.contains("(49 RRsets, 2 to change)"), "{out}");
    assert!(
        out.contains("! example.test. TXT `v=spf1 ip4:192.0.2.10 mx -all` names 192.0.2.10, which switches to 198.51.100.10"),
        "{out}"
    );
    assert!(!out.contains("192.0.2.100`"), "another address: {out}");
    assert!(out.contains("plan checksum: "), "{out}");

    let (_, md, _) = run(&["dns", "plan", "--format", "markdown"], &plan);
    assert!(
        md.contains("*Risk:* `example.test.` TXT `v=spf1 ip4:192.0.2.10 mx -all`"),
        "{md}"
    );
    assert!(md.contains("plan checksum: "), "{md}");

    // JSON is one document, with the checksum as a field.
    for args in [
        &["dns", "plan", "--format", "json"][..],
        &["--json", "dns", "plan"],
    ] {
        let (code, json, err) = run(args, &plan);
        assert_eq!(code, 0, "{args:?}: {err}");
        let doc: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{args:?}: {e}: {json}"));
        assert_eq!(doc["checksum"].as_str().unwrap().len(), 16, "{doc:#}");
        let zone = &doc["zones"][0];
        assert_eq!(zone["zone"], "example.test", "{doc:#}");
        assert_eq!(zone["changes"].as_array().unwrap().len(), 2, "{doc:#}");
        assert_eq!(zone["txt_risks"][0]["from"], "192.0.2.10", "{doc:#}");
        assert_eq!(zone["txt_risks"][0]["name"], "example.test.", "{doc:#}");
    }

    // The dry run reads the zone the same way and carries the SPF warning.
    let (code, json, err) = run(&["plan", "--json"], &plan);
    assert_eq!(code, 0, "{json}{err}");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["totals"]["dns_changes"], 2, "{doc:#}");
    let risks = doc["risks"].as_array().unwrap();
    assert!(
        risks.iter().any(|r| r["kind"] == "txt_names_old_address"
            && r["severity"] == "warning"
            && r["subject"] == "example.test."),
        "{doc:#}"
    );
    assert!(!risks.iter().any(|r| r["severity"] == "error"), "{doc:#}");

    // Without the key, the same zone cannot be read: an error of the dry run, not a warning.
    let plan = write_plan(work.path(), &bind, &bind.tsig_name, "", false);
    let (code, out, err) = run(&["plan"], &plan);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("error   discovery_failed")
            && out.contains("refused a zone transfer of example.test (unsigned"),
        "{out}"
    );
}

#[test]
fn a_wrong_or_unknown_key_fails_validate_and_the_dry_run_without_showing_the_secret() {
    let bind = Bind::start(&[("example.test", &records())]);
    let work = tempfile::tempdir().unwrap();
    let good = write_plan(work.path(), &bind, &bind.tsig_name, &bind.tsig_secret, true);
    let (code, out, err) = run(&["validate"], &good);
    assert_eq!(code, 0, "{out}{err}");

    let wrong = "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=";
    let plan = write_plan(work.path(), &bind, &bind.tsig_name, wrong, true);
    let named = format!(
        "TSIG key `{}` rejected by 127.0.0.1:{} (BADSIG",
        bind.tsig_name, bind.port
    );
    let (code, out, err) = run(&["validate"], &plan);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&named), "{err}");
    assert!(err.contains("dns.provider.tsig"), "{err}");
    assert!(!err.contains(wrong) && !out.contains(wrong), "{err}");

    let (code, out, err) = run(&["plan"], &plan);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("error   tsig_rejected") && out.contains(&named),
        "{out}"
    );
    assert!(!err.contains(wrong) && !out.contains(wrong), "{err}");
    // `dns plan` too, though this server transfers the zone to anyone.
    let (code, out, err) = run(&["dns", "plan"], &plan);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&named), "{err}");

    // A key name the server does not know at all.
    let plan = write_plan(work.path(), &bind, "nokey", &bind.tsig_secret, true);
    let (code, _, err) = run(&["validate"], &plan);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "TSIG key `nokey` rejected by 127.0.0.1:{} (BADKEY",
            bind.port
        )),
        "{err}"
    );
    let (code, out, _) = run(&["plan"], &plan);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tsig_rejected"), "{out}");
}

#[test]
fn rollback_leaves_a_ttl_only_edit_alone_and_exits_1() {
    let bind = Bind::start(&[("example.test", &records())]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(work.path(), &bind, &bind.tsig_name, &bind.tsig_secret, true);
    let shop_before = bind.dig_ttl("shop.example.test", "A");
    let (code, out, err) = run(&["dns", "switch", "--force", "--yes"], &plan);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bind.dig("www.example.test", "A"), vec!["198.51.100.10"]);

    // Someone raises www's TTL after our switch, value unchanged.
    bind.nsupdate(
        "update delete www.example.test. A\nupdate add www.example.test. 900 A 198.51.100.10\n",
    );
    let (code, out, err) = run(&["dns", "rollback", "--yes"], &plan);
    assert_eq!(code, 1, "a record left alone is not back: {out}{err}");
    assert!(
        out.contains(
            "left      www.example.test. A: changed by someone since our change (now TTL 900"
        ),
        "{out}"
    );
    assert!(out.contains("changed   shop.example.test. A"), "{out}");
    assert_eq!(
        bind.dig_ttl("www.example.test", "A"),
        vec![(900, "198.51.100.10".to_string())],
        "the edit is kept"
    );
    assert_eq!(bind.dig_ttl("shop.example.test", "A"), shop_before);
}
