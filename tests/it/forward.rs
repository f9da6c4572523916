//! Issue 19, the stale-resolver forwarder, over a real sshd (the old host) with the demo's two
//! web servers and `openssl s_server` as the old and new HTTPS sides: once a site is confirmed,
//! its old host forwards its HTTP (by Host) and HTTPS (by SNI, passed through) to the new side
//! and everything else to the old web server; it outlives the controller, is kept or started
//! again by the next command as the journal says, stopped by `rollback`, and exits on its own
//! once the old TTL plus the margin has passed. Its margin shows in the site's DNS exposure.
//! Mail too: IMAPS by SNI like HTTPS, and plain SMTP as a whole port once every site of the
//! old host is confirmed (banner servers tell the old side from the new).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use transhumance::demo::{NEW_ADDRESS, OLD_ADDRESS, WebServer};

use crate::harness::{Sshd, free_port, wait_until};
use crate::ops_diagnostics::run;

/// An `openssl s_server -www` serving a certificate for `cn`, stopped on drop.
struct TlsServer(Child);

impl TlsServer {
    fn start(dir: &Path, address: &str, port: u16, cn: &str) -> TlsServer {
        let (key, cert) = (dir.join(format!("{cn}.key")), dir.join(format!("{cn}.pem")));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .arg("-subj")
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let child = Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept"])
            .arg(format!("{address}:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(10), "s_server listening", || {
            TcpStream::connect((address, port)).is_ok()
        });
        TlsServer(child)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body `GET /` with `Host: host` gets at `port` of the old address.
fn http_get(port: u16, host: &str) -> String {
    let mut s = TcpStream::connect((OLD_ADDRESS, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The certificate subject a TLS client asking for `name` at `port` of the old address is shown.
fn tls_subject(port: u16, name: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("{OLD_ADDRESS}:{port}"))
        .args(["-servername", name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .to_string()
}

fn pid_of(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("forwarder.pid"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Stops the forwarder of a directory when a test ends, passed or not: an old host's front
/// lives as long as a site of it is not confirmed.
struct StopsForwarder(PathBuf);

impl Drop for StopsForwarder {
    fn drop(&mut self) {
        if let Some(pid) = pid_of(&self.0) {
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// The journal's forwarder entries: (running, detail).
fn forwarder_entries(state: &Path) -> Vec<(bool, String)> {
    std::fs::read_to_string(state.join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "forwarder")
        .map(|v| {
            (
                v["running"].as_bool().unwrap(),
                v["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

struct Ports {
    web: u16,
    listen_http: u16,
    listen_https: u16,
    old_https: u16,
    new_https: u16,
}

fn write_plan(w: &Path, sshd: &Sshd, p: &Ports, margin: &str) -> PathBuf {
    write_plan_with(w, sshd, p, margin, "")
}

/// The plan, with `extra` appended under `cutover.forward` (indented by four spaces).
fn write_plan_with(w: &Path, sshd: &Sshd, p: &Ports, margin: &str, extra: &str) -> PathBuf {
    let plan = w.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: forward-it\nstate_dir: state\n\
hosts:\n  old: {{ ssh: \"root@127.0.0.1:{ssh}\", identity_file: \"{id}\", known_hosts: \"{kh}\", agent_dir: \"{w}/agent\" }}\n\
sites:\n  - from: {{ host: old, glob: \"{w}/old-dc/www/*/\" }}\n    to: {{ host: local, path: \"new-dc/www/{{name}}/\" }}\n    domains: [\"{{name}}\"]\n\
dns:\n  provider: {{ kind: zonefile, directory: zones }}\n  zones: [demo.test]\n  switch: [{{ from: {OLD_ADDRESS}, to: {NEW_ADDRESS} }}]\n  lower_ttl: 1\n  verify_timeout: 5s\n\
cutover:\n  probe: {{ http: \"http://{{domain}}:{web}/\", expect: [200], timeout: 5s }}\n  forward:\n    listen: {{ http: \"{OLD_ADDRESS}:{lh}\", https: \"{OLD_ADDRESS}:{ls}\" }}\n    local: {{ http: \"{OLD_ADDRESS}:{web}\", https: \"{OLD_ADDRESS}:{os}\" }}\n    to_ports: {{ http: {web}, https: {ns} }}\n    margin: {margin}\n    dir: \"{w}/fwd\"\n{extra}",
            ssh = sshd.port,
            id = sshd.client_key.display(),
            kh = sshd.known_hosts.display(),
            w = w.display(),
            web = p.web,
            lh = p.listen_http,
            ls = p.listen_https,
            os = p.old_https,
            ns = p.new_https,
        ),
    )
    .unwrap();
    plan
}

fn ok(args: &[&str], plan: &Path) -> String {
    let (code, out, err) = run(args, plan, &[]);
    assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    out
}

/// Lowers the TTLs, waits out the old one, and cuts `site` over.
fn cut_over(plan: &Path, site: &str) {
    ok(&["dns", "lower-ttl"], plan);
    std::thread::sleep(Duration::from_secs(4));
    ok(&["cutover", "--yes", "--only", site], plan);
}

#[test]
fn a_confirmed_sites_old_host_forwards_it_until_its_window_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let sshd = Sshd::start();
    let web = transhumance::demo::free_port().unwrap();
    transhumance::demo::build(w, web).unwrap();
    let ports = Ports {
        web,
        listen_http: free_port(),
        listen_https: free_port(),
        old_https: free_port(),
        new_https: free_port(),
    };
    let _old = WebServer::start(
        OLD_ADDRESS.parse().unwrap(),
        web,
        w.join("old-dc/www"),
        vec![],
    )
    .unwrap();
    let _new = WebServer::start(
        NEW_ADDRESS.parse().unwrap(),
        web,
        w.join("new-dc/www"),
        vec![],
    )
    .unwrap();
    let _old_tls = TlsServer::start(w, OLD_ADDRESS, ports.old_https, "old.test");
    let _new_tls = TlsServer::start(w, NEW_ADDRESS, ports.new_https, "new.test");
    let plan = write_plan(w, &sshd, &ports, "60s");
    let fwd = w.join("fwd");
    let _stops = StopsForwarder(fwd.clone());
    let (alpha, beta) = ("alpha.demo.test", "beta.demo.test");

    ok(&["sync"], &plan);
    cut_over(&plan, alpha);
    // The new side now says so; the old side keeps its pages.
    for site in [alpha, beta] {
        std::fs::write(
            w.join("new-dc/www").join(site).join("index.html"),
            format!("NEW {site}"),
        )
        .unwrap();
    }
    let pid = pid_of(&fwd).expect("a forwarder runs after the controller ended");
    assert!(alive(pid));
    // The forwarder, up as the host's front since the freeze, reads the route within 250 ms.
    wait_until(
        Duration::from_secs(5),
        "alpha routed to the new side",
        || http_get(ports.listen_http, alpha).ends_with("NEW alpha.demo.test"),
    );
    let other = http_get(ports.listen_http, beta);
    assert!(
        other.starts_with("HTTP/1.1 200") && !other.contains("NEW"),
        "not confirmed: the old web server: {other}"
    );
    assert!(
        tls_subject(ports.listen_https, alpha).contains("new.test"),
        "SNI to the new side"
    );
    assert!(
        tls_subject(ports.listen_https, beta).contains("old.test"),
        "other names to the old server"
    );
    assert!(tls_subject(ports.listen_https, "ALPHA.demo.test").contains("new.test"));

    // The window counts the margin.
    let (_, json, _) = run(&["report", "--format", "json"], &plan, &[]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == alpha)
        .unwrap();
    assert_eq!(
        a["window"]["forward_margin_secs"].as_u64(),
        Some(60),
        "{a:#}"
    );
    assert_eq!(a["window"]["exposure_secs"].as_u64(), Some(61), "{a:#}");

    // The next command finds it alive with its start time, and keeps it.
    ok(&["sync"], &plan);
    assert_eq!(pid_of(&fwd), Some(pid), "kept");
    // Killed on the old host: the next command starts it again, the route still being due.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until(Duration::from_secs(5), "the forwarder dies", || !alive(pid));
    ok(&["sync"], &plan);
    let again = pid_of(&fwd).expect("started again");
    assert_ne!(again, pid);
    assert!(http_get(ports.listen_http, alpha).ends_with("NEW alpha.demo.test"));

    // Rollback takes the route out: alpha is the old host's again, and visitors arriving
    // there reach its old web server through the forwarder, which stays up as the host's
    // front (the old server listens behind it, on `local`).
    ok(&["rollback", "--yes", "--only", alpha], &plan);
    assert_eq!(pid_of(&fwd), Some(again), "the front stays up");
    let back = http_get(ports.listen_http, alpha);
    assert!(
        back.starts_with("HTTP/1.1 200") && !back.contains("NEW"),
        "rolled back: the old web server: {back}"
    );
    assert!(tls_subject(ports.listen_https, alpha).contains("old.test"));

    // A controller killed between the confirmation and the route: `resume` routes the site.
    // With a short margin the route then expires; the front stays while beta is the old
    // host's, and once beta is confirmed too the forwarder exits at the last window's end.
    let plan = write_plan(w, &sshd, &ports, "6s");
    ok(&["dns", "lower-ttl"], &plan);
    std::thread::sleep(Duration::from_secs(4));
    let (code, _, _) = run(
        &["cutover", "--yes", "--only", alpha],
        &plan,
        &[("TRANSHUMANCE_FAULT", "after:confirmed")],
    );
    assert_eq!(code, None, "killed by the fault");
    ok(&["resume"], &plan);
    assert_eq!(pid_of(&fwd), Some(again), "the same front, given the route");
    // (The final sync put the old page back at the new side.)
    std::fs::write(
        w.join("new-dc/www").join(alpha).join("index.html"),
        "NEW again",
    )
    .unwrap();
    assert!(http_get(ports.listen_http, alpha).ends_with("NEW again"));
    wait_until(Duration::from_secs(15), "alpha's window ends", || {
        !http_get(ports.listen_http, alpha).contains("NEW")
    });
    // Beta and gamma are still the old host's (gamma's new side is broken in the demo): the
    // front stays, and the next command keeps it (it stops once every site of the host is
    // confirmed and the last window has ended: see the mail test).
    assert!(alive(again), "the front stays");
    ok(&["sync"], &plan);
    assert_eq!(pid_of(&fwd), Some(again), "kept");
    assert!(http_get(ports.listen_http, beta).contains("Beta bike repairs"));
    let entries = forwarder_entries(&w.join("state"));
    assert_eq!(entries.last().map(|e| e.0), Some(true), "{entries:?}");
    assert_eq!(
        entries.iter().filter(|e| e.0).count(),
        2,
        "started twice (the second time after it was killed): {entries:?}"
    );
}

/// A server that greets each connection with `220 TAG` and closes it (an SMTP banner).
fn banner_server(address: &str, port: u16, tag: &'static str) {
    let listener = std::net::TcpListener::bind((address, port)).unwrap();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let _ = c.write_all(format!("220 {tag}\r\n").as_bytes());
        }
    });
}

/// The greeting a client of `port` at the old address reads first.
fn greeting(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect((OLD_ADDRESS, port)) else {
        return "refused".into();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\n") && s.read(&mut b).unwrap_or(0) == 1 {
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

/// Waits (2 s at most) for the port to greet from the new side.
fn eventually_new(port: u16, fwd: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while greeting(port) != "220 new" {
        assert!(
            std::time::Instant::now() < deadline,
            "still not the new side; routes: {:?}",
            std::fs::read_to_string(fwd.join("routes.json"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The journal's whole-port route entries: (routed, sites).
fn whole_port_entries(state: &Path) -> Vec<(bool, usize)> {
    std::fs::read_to_string(state.join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "forward_ports")
        .map(|v| {
            (
                v["routed"].as_bool().unwrap(),
                v["sites"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[test]
fn mail_is_forwarded_by_sni_and_plain_ports_once_every_site_of_the_host_is_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let sshd = Sshd::start();
    let web = transhumance::demo::free_port().unwrap();
    transhumance::demo::build(w, web).unwrap();
    // Two sites on the old host: the demo's broken one would never be confirmed.
    std::fs::remove_dir_all(w.join("old-dc/www").join(transhumance::demo::BROKEN_SITE)).unwrap();
    let ports = Ports {
        web,
        listen_http: free_port(),
        listen_https: free_port(),
        old_https: free_port(),
        new_https: free_port(),
    };
    let _old = WebServer::start(
        OLD_ADDRESS.parse().unwrap(),
        web,
        w.join("old-dc/www"),
        vec![],
    )
    .unwrap();
    let _new = WebServer::start(
        NEW_ADDRESS.parse().unwrap(),
        web,
        w.join("new-dc/www"),
        vec![],
    )
    .unwrap();
    let (imaps, old_imaps, new_imaps) = (free_port(), free_port(), free_port());
    let (smtp, old_smtp, new_smtp) = (free_port(), free_port(), free_port());
    let _old_tls = TlsServer::start(w, OLD_ADDRESS, old_imaps, "old-mail.test");
    let _new_tls = TlsServer::start(w, NEW_ADDRESS, new_imaps, "new-mail.test");
    banner_server(OLD_ADDRESS, old_smtp, "old");
    banner_server(NEW_ADDRESS, new_smtp, "new");
    let mail = format!(
        "    mail:\n      imaps: {{ listen: \"{OLD_ADDRESS}:{imaps}\", local: \"{OLD_ADDRESS}:{old_imaps}\", to_port: {new_imaps} }}\n      smtp: {{ listen: \"{OLD_ADDRESS}:{smtp}\", local: \"{OLD_ADDRESS}:{old_smtp}\", to_port: {new_smtp} }}\n"
    );
    let plan = write_plan_with(w, &sshd, &ports, "20s", &mail);
    let fwd = w.join("fwd");
    let _stops = StopsForwarder(fwd.clone());
    let state = w.join("state");
    let (alpha, beta) = ("alpha.demo.test", "beta.demo.test");

    // The dry run says which mail ports of the old host will be forwarded, and when.
    let (_, json, _) = run(&["plan", "--format", "json"], &plan, &[]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let hosts = v["mail_forward"].as_array().expect("mail_forward");
    assert_eq!(hosts.len(), 1, "{hosts:#?}");
    assert_eq!(hosts[0]["host"], "old");
    let how: Vec<(&str, &str)> = hosts[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["protocol"].as_str().unwrap(),
                p["routing"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(how, [("smtp", "whole_port"), ("imaps", "sni")]);

    ok(&["sync"], &plan);
    cut_over(&plan, alpha);
    assert!(pid_of(&fwd).is_some(), "a forwarder runs");
    // (Up as the host's front since the freeze, it reads the route within 250 ms.)
    wait_until(
        Duration::from_secs(5),
        "the confirmed site's SNI to the new side",
        || tls_subject(imaps, alpha).contains("new-mail.test"),
    );
    assert!(
        tls_subject(imaps, beta).contains("old-mail.test"),
        "another site's to the old server"
    );
    assert_eq!(greeting(smtp), "220 old", "beta is not confirmed yet");
    assert!(whole_port_entries(&state).is_empty());

    ok(&["cutover", "--yes", "--only", beta], &plan);
    // (The forwarder reads its routes four times a second.)
    eventually_new(smtp, &fwd);
    assert!(tls_subject(imaps, beta).contains("new-mail.test"));
    assert_eq!(whole_port_entries(&state), [(true, 2)]);

    // Rolling back one site gives the old host its mail back: the whole port goes.
    ok(&["rollback", "--yes", "--only", beta], &plan);
    wait_until(
        Duration::from_secs(5),
        "SMTP back to the old server",
        || greeting(smtp) == "220 old",
    );
    assert_eq!(whole_port_entries(&state).last(), Some(&(false, 2)));

    // Cut over again: the whole port follows beta's new window, then the forwarder exits.
    cut_over(&plan, beta);
    eventually_new(smtp, &fwd);
    let pid = pid_of(&fwd).expect("a forwarder runs");
    wait_until(Duration::from_secs(40), "the window ends", || !alive(pid));
    assert_eq!(pid_of(&fwd), None);
    // Nobody forwards nor passes that port on any more (its number may be another test's by
    // now: the forwarder gave it back).
    let last = greeting(smtp);
    assert!(
        !last.starts_with("220 "),
        "nobody listens there any more: {last}"
    );
    ok(&["sync"], &plan);
    assert_eq!(whole_port_entries(&state).last().map(|e| e.0), Some(true));
}
