//! DNS cutover against a real BIND with TSIG: lower-ttl, switch, verify, rollback.

use std::path::{Path, PathBuf};

use crate::cli::bin;
use crate::harness::Bind;

const RECORDS: &str = "www 3600 IN A 192.0.2.10\n\
shop 1800 IN A 192.0.2.10\n\
shop 1800 IN A 192.0.2.11\n\
mail 300 IN A 192.0.2.99\n\
@ 300 IN MX 10 mail\n\
ftp 300 IN CNAME www\n\
blog 300 IN TXT \"hello\"\n\
static 300 IN A 192.0.2.50\n\
@ 300 IN NS ns2.example.test.\n\
ns2 300 IN A 192.0.2.53\n";

fn write_plan(dir: &Path, bind: &Bind, switch: &str) -> PathBuf {
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: dns-it\nstate_dir: state\ndns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\", tsig: {{ name: {}, secret_env: IT_TSIG }} }}\n  zones: [example.test]\n  switch: [{switch}]\n  lower_ttl: 60\n  verify_timeout: 10s\n  resolvers: [\"127.0.0.1:{}\"]\n",
            bind.port, bind.tsig_name, bind.port
        ),
    )
    .unwrap();
    plan
}

fn dns(plan: &Path, secret: &str, args: &[&str]) -> (i32, String, String) {
    // A script, not a terminal: `switch` and `rollback` are answered with `--yes`.
    let out = bin()
        .args(["dns", "--yes"])
        .args(args)
        .arg(plan)
        .env("IT_TSIG", secret)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn lower_switch_verify_rollback_restores_exactly_and_spares_a_concurrent_edit() {
    let bind = Bind::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    let s = &bind.tsig_secret;
    let original = (
        bind.dig_ttl("www.example.test", "A"),
        bind.dig_ttl("shop.example.test", "A"),
    );

    let (code, out, err) = dns(&plan, s, &["plan"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("~ www.example.test. A ttl 3600 -> 60: 192.0.2.10 -> 198.51.100.10"),
        "{out}"
    );
    assert!(
        out.contains("? name server not verified: ns2.example.test. (192.0.2.53)"),
        "{out}"
    );
    let (_, md, _) = dns(&plan, s, &["plan", "--format", "markdown"]);
    assert!(
        md.contains("| `www.example.test.` | A | 3600 → 60 | 192.0.2.10 | 198.51.100.10 |"),
        "{md}"
    );
    assert!(out.contains("~ shop.example.test. A ttl 1800 -> 60: 192.0.2.10 192.0.2.11 -> 192.0.2.11 198.51.100.10"), "{out}");

    let (code, out, err) = dns(&plan, s, &["lower-ttl"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        bind.dig_ttl("www.example.test", "A"),
        vec![(60, "192.0.2.10".to_string())]
    );
    assert!(out.contains("switch safe in"), "{out}");

    // Resolvers may still hold the 3600 s TTL: the switch waits unless that check is allowed.
    let (code, _, err) = dns(&plan, s, &["switch"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("[ttl-not-expired]")
            && err.contains("resolvers may cache it with TTL 3600")
            && err.contains("--allow ttl-not-expired"),
        "{err}"
    );
    assert_eq!(bind.dig("www.example.test", "A"), vec!["192.0.2.10"]);

    // The switch applies only the plan that was reviewed.
    let checksum = dns(&plan, s, &["plan"])
        .1
        .lines()
        .find_map(|l| {
            l.strip_prefix("plan checksum: ")
                .map(|c| c[..16].to_string())
        })
        .unwrap();
    let (code, _, err) = dns(
        &plan,
        s,
        &[
            "switch",
            "--allow",
            "ttl-not-expired",
            "--plan-checksum",
            "0123456789abcdef",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("error: refused: [plan-changed] the DNS plan: checksum")
            && !err.contains("--allow ttl-not-expired)"),
        "{err}"
    );
    // The reviewed checksum is the plan's: `dns plan` finds nothing changed.
    let (code, out, err) = dns(&plan, s, &["plan", "--plan-checksum", &checksum]);
    assert!(!out.contains("plan-changed"), "{code} {out}{err}");
    // An operator who knows why the plan changed lets that one check through by its name.
    let (code, out, err) = dns(
        &plan,
        s,
        &[
            "switch",
            "--allow",
            "ttl-not-expired",
            "--allow",
            "plan-changed",
            "--plan-checksum",
            "0123456789abcdef",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("overridden by --allow ttl-not-expired")
            && err.contains("overridden by --allow plan-changed"),
        "{err}"
    );
    let journal = std::fs::read_to_string(work.path().join("state/journal.jsonl")).unwrap();
    assert!(
        journal.contains("\"check\":\"plan-changed\"")
            && journal.contains("\"verdict\":\"refused\"")
            && journal.contains("\"verdict\":\"allowed\""),
        "{journal}"
    );
    assert_eq!(bind.dig("www.example.test", "A"), vec!["198.51.100.10"]);
    assert_eq!(
        bind.dig("shop.example.test", "A"),
        vec!["192.0.2.11", "198.51.100.10"]
    );
    let (code, out, err) = dns(&plan, s, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SOA serials equal; 1 resolver(s)"), "{out}");

    // Someone edits shop after our switch: the rollback must leave it alone.
    bind.nsupdate(
        "update delete shop.example.test. A\nupdate add shop.example.test. 120 A 203.0.113.5\n",
    );
    let (code, out, err) = dns(&plan, s, &["rollback"]);
    assert_eq!(code, 1, "a record left alone is not back: {out}{err}");
    assert!(
        out.contains("left      shop.example.test. A: changed by someone"),
        "{out}"
    );
    assert_eq!(
        bind.dig_ttl("www.example.test", "A"),
        original.0,
        "www is exactly as before, TTL included"
    );
    assert_eq!(bind.dig("shop.example.test", "A"), vec!["203.0.113.5"]);
    // Rolling back again changes nothing, and still says shop is not back (exit 1).
    let (code, out, _) = dns(&plan, s, &["rollback"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("already   www.example.test. A (as before our first change)"),
        "{out}"
    );
}

#[test]
fn a_crash_between_two_changes_is_rolled_back_from_the_journal() {
    let bind = Bind::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    let s = &bind.tsig_secret;
    let original = (
        bind.dig_ttl("www.example.test", "A"),
        bind.dig_ttl("shop.example.test", "A"),
    );
    let (code, out, err) = dns(&plan, s, &["switch", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    // The process died right after sending the last update: its outcome line never reached the
    // journal (and a torn line may be left).
    let journal = work.path().join("state/journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.pop().unwrap().contains("run_end"));
    assert!(lines.pop().unwrap().contains("dns_applied"));
    std::fs::write(
        &journal,
        format!("{}\n{{\"kind\":\"dns_ap", lines.join("\n")),
    )
    .unwrap();
    let (code, out, err) = dns(&plan, s, &["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        (
            bind.dig_ttl("www.example.test", "A"),
            bind.dig_ttl("shop.example.test", "A")
        ),
        original
    );
}

#[test]
fn restore_ttl_keeps_the_new_values() {
    let bind = Bind::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    let s = &bind.tsig_secret;
    assert_eq!(dns(&plan, s, &["lower-ttl"]).0, 0);
    assert_eq!(dns(&plan, s, &["switch", "--force"]).0, 0);
    let (code, out, err) = dns(&plan, s, &["restore-ttl"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        bind.dig_ttl("www.example.test", "A"),
        vec![(3600, "198.51.100.10".to_string())]
    );
}

#[test]
fn a_wrong_tsig_key_is_named_and_changes_nothing() {
    let bind = Bind::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    let (code, _, err) = dns(
        &plan,
        "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=",
        &["switch", "--force"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "TSIG key `{}` rejected by 127.0.0.1:{}",
            bind.tsig_name, bind.port
        )),
        "{err}"
    );
    assert_eq!(bind.dig("www.example.test", "A"), vec!["192.0.2.10"]);
}

/// The share rule applies from the plan's minimum zone size (10 RRsets by default, as octoDNS),
/// on what the command selects; `--allow zone-share` lets it through by name.
#[test]
fn switching_most_of_a_zone_is_refused_from_the_plans_minimum_size() {
    let bind = Bind::start(&[(
        "example.test",
        "www IN A 192.0.2.10\nshop IN A 192.0.2.10\nblog IN A 192.0.2.10\n",
    )]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    let s = &bind.tsig_secret;
    // 3 of 6 RRsets: a zone smaller than the default minimum, not checked.
    let (code, out, err) = dns(&plan, s, &["plan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("zone-share"), "{out}");
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "  zones: [example.test]\n",
        "  zones: [example.test]\n  zone_share: { max: 0.3, min_rrsets: 6 }\n",
    );
    std::fs::write(&plan, text).unwrap();
    let (code, out, _) = dns(&plan, s, &["plan"]);
    assert_eq!(code, 3);
    assert!(
        out.contains("[zone-share] zone example.test: 3 of its 6 RRsets would change (50 %, over the plan's 30 %"),
        "{out}"
    );
    let (code, _, err) = dns(&plan, s, &["switch"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(bind.dig("www.example.test", "A"), vec!["192.0.2.10"]);
    // Judged on what is selected: one name of the three is a sixth of the zone, no refusal.
    let (code, out, err) = dns(&plan, s, &["switch", "--only", "www"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bind.dig("www.example.test", "A"), vec!["198.51.100.10"]);
    let (code, _, err) = dns(&plan, s, &["switch"]);
    assert_eq!(code, 3, "the other two are a third of the zone: {err}");
    let (code, out, err) = dns(&plan, s, &["switch", "--allow", "zone-share"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("overridden by --allow zone-share"), "{err}");
    assert_eq!(bind.dig("blog.example.test", "A"), vec!["198.51.100.10"]);
}

/// A switch that would move the address of one of the zone's own name servers is refused as
/// `nameserver-address`, and goes only by that name.
#[test]
fn moving_a_name_servers_address_is_refused_by_name() {
    let bind = Bind::start(&[("example.test", "www IN A 127.0.0.1\n")]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(work.path(), &bind, "{ from: 127.0.0.1, to: 127.0.0.9 }");
    let s = &bind.tsig_secret;
    let (code, out, _) = dns(&plan, s, &["plan"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("[nameserver-address] ns1.example.test. A"),
        "{out}"
    );
    let (code, _, err) = dns(&plan, s, &["switch", "--allow", "zone-share"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--allow nameserver-address"), "{err}");
    let (code, out, err) = dns(
        &plan,
        s,
        &["switch", "--only", "www", "--allow", "nameserver-address"],
    );
    assert_eq!(
        code, 0,
        "only www selected: the name server's address is not touched: {out}{err}"
    );
    assert_eq!(bind.dig("ns1.example.test", "A"), vec!["127.0.0.1"]);
    let (code, out, err) = dns(&plan, s, &["switch", "--allow", "nameserver-address"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("overridden by --allow nameserver-address"),
        "{err}"
    );
    let journal = std::fs::read_to_string(work.path().join("state/journal.jsonl")).unwrap();
    assert!(
        journal.contains("\"check\":\"nameserver-address\"")
            && journal.contains("\"verdict\":\"allowed\""),
        "{journal}"
    );
}

#[test]
fn zone_files_switch_and_roll_back_in_place() {
    let work = tempfile::tempdir().unwrap();
    let zones = work.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    let original = "$TTL 300\n@ IN SOA ns1 hostmaster ( 7 60 60 600 60 )\n  IN NS ns1\nns1 IN A 127.0.0.1 ; name server\nwww 3600 IN A 192.0.2.10\nshop IN A 192.0.2.10\nmail IN A 192.0.2.99\nblog IN TXT \"hi\"\n";
    std::fs::write(zones.join("example.test.zone"), original).unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: zf\nstate_dir: state\ndns:\n  provider: {{ kind: zonefile, directory: \"{}\", reload: \"touch {}/reloaded-{{zone}}\" }}\n  zones: [example.test]\n  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]\n",
            zones.display(),
            work.path().display()
        ),
    )
    .unwrap();
    let (code, out, err) = dns(&plan, "", &["switch", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(zones.join("example.test.zone")).unwrap();
    assert!(
        text.contains("www.example.test. 3600 IN A 198.51.100.10") && text.contains("( 8 60"),
        "{text}"
    );
    assert!(
        text.contains("ns1 IN A 127.0.0.1 ; name server"),
        "other lines stay as they were: {text}"
    );
    assert!(
        work.path().join("reloaded-example.test").exists(),
        "the reload command ran"
    );
    let (code, out, err) = dns(&plan, "", &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the zone files"), "{out}");
    let (code, out, err) = dns(&plan, "", &["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(zones.join("example.test.zone")).unwrap();
    assert!(
        text.contains("www.example.test. 3600 IN A 192.0.2.10")
            && text.contains("shop.example.test. 300 IN A 192.0.2.10"),
        "{text}"
    );
}

/// The whole round trip on any server: what `dig` shows at the end is what it showed first.
fn round_trip(plan: &Path, secret: &str, dig: &dyn Fn(&str) -> Vec<(u32, String)>) {
    let before = (dig("www.example.test"), dig("shop.example.test"));
    for step in [&["lower-ttl"][..], &["switch", "--force"], &["verify"]] {
        let (code, out, err) = dns(plan, secret, step);
        assert_eq!(code, 0, "{step:?}: {out}{err}");
    }
    assert_eq!(
        dig("www.example.test"),
        vec![(60, "198.51.100.10".to_string())]
    );
    let (code, out, err) = dns(plan, secret, &["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!((dig("www.example.test"), dig("shop.example.test")), before);
}

#[test]
fn knot_takes_the_same_signed_compare_and_swap() {
    let knot = crate::harness::Knot::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: knot-it\nstate_dir: state\ndns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{}\", tsig: {{ name: {}, secret_env: IT_TSIG }} }}\n  zones: [example.test]\n  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]\n  lower_ttl: 60\n  verify_timeout: 10s\n",
            knot.port, knot.tsig_name
        ),
    )
    .unwrap();
    round_trip(&plan, &knot.tsig_secret, &|name| knot.dig_ttl(name, "A"));
}

#[test]
fn powerdns_through_its_http_api() {
    let pdns = crate::harness::PowerDns::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: pdns-it\nstate_dir: state\ndns:\n  provider: {{ kind: powerdns, api_url: \"{}\", api_key_env: IT_TSIG }}\n  zones: [example.test]\n  nameservers: [\"127.0.0.1:{}\"]\n  switch: [{{ from: 192.0.2.10, to: 198.51.100.10 }}]\n  lower_ttl: 60\n  verify_timeout: 10s\n",
            pdns.api_url(),
            pdns.port
        ),
    )
    .unwrap();
    round_trip(&plan, &pdns.api_key, &|name| pdns.dig_ttl(name, "A"));
    // A wrong API key is named, and nothing changes.
    let (code, _, err) = dns(&plan, "not-the-key", &["switch", "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rejected by"), "{err}");
}

#[test]
fn only_narrows_a_switch_to_some_names() {
    let bind = Bind::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    let (code, out, err) = dns(
        &plan,
        &bind.tsig_secret,
        &["switch", "--force", "--only", "www"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bind.dig("www.example.test", "A"), vec!["198.51.100.10"]);
    assert_eq!(
        bind.dig("shop.example.test", "A"),
        vec!["192.0.2.10", "192.0.2.11"]
    );
}

/// DNS through the unit-of-work contract on a real BIND: the plan of one name, applying it
/// through a change log, then verifying every server; once switched, verify still checks the
/// switched RRsets (nothing is left to switch, so it must not pass vacuously).
#[test]
fn the_dns_engine_plans_applies_and_verifies_one_name() {
    use transhumance::dns::engine::{DnsEngine, DnsUnit};
    use transhumance::lifecycle::ledger::Ledger;
    use transhumance::unit::UnitOfWork;
    let bind = Bind::start(&[("example.test", RECORDS)]);
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(
        work.path(),
        &bind,
        "{ from: 192.0.2.10, to: 198.51.100.10 }",
    );
    // The secret from a file (this process's environment is shared by parallel tests).
    let secret = work.path().join("tsig.secret");
    std::fs::write(&secret, &bind.tsig_secret).unwrap();
    let text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace(
            "  resolvers:",
            &format!("  nameservers: [\"127.0.0.1:{}\"]\n  resolvers:", bind.port),
        )
        .replace(
            "secret_env: IT_TSIG",
            &format!("secret_file: \"{}\"", secret.display()),
        );
    std::fs::write(&plan, text).unwrap();
    let loaded = transhumance::plan::validate::load(&plan).unwrap();
    let spec = loaded.plan.dns.as_ref().unwrap();
    let engine = DnsEngine {
        spec,
        allowed: transhumance::check::Allowed::new([], true),
    };
    let unit = DnsUnit {
        zone: "example.test".into(),
        names: vec!["www.example.test.".into()],
    };
    let planned = engine.plan(&unit).unwrap();
    assert_eq!(planned.changes.len(), 1, "only www, not shop: {planned:?}");
    assert!(!engine.verify(&unit).unwrap().ok, "not switched yet");
    let ledger = Ledger::open(&work.path().join("state")).unwrap();
    let done = engine
        .apply(&planned, &transhumance::event::Silent, &ledger)
        .unwrap();
    assert_eq!(done.applied.len(), 1);
    assert_eq!(bind.dig("www.example.test", "A"), vec!["198.51.100.10"]);
    assert_eq!(
        bind.dig("shop.example.test", "A").len(),
        2,
        "shop untouched"
    );
    let again = engine.plan(&unit).unwrap();
    assert!(again.changes.is_empty());
    assert_eq!(again.settled.len(), 1, "{again:?}");
    assert!(engine.verify(&unit).unwrap().ok);
}
