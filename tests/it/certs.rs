//! Certificates before the switch (issue 15, part 2), with real TLS on real BIND: a test CA and
//! its leaf certificates made by `openssl` (valid, expired, wrong name, expiring within the
//! margin, none), served by rustls over SNI on the new and old loopback addresses from the very
//! files the plan carries. A site whose new side serves no valid certificate is never switched;
//! the valid one is confirmed; certificate and key reach the target with their modes and
//! owners, and the key never shows anywhere (over ssh too, through Let's Encrypt-style
//! symlinks); the dry run lists the sites without a usable certificate and schedules their
//! orders.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::cli::bin;
use crate::harness::Bind;
use crate::lifecycle::{NEW, OLD};

const ZONE: &str = "tls.test";

/// The sites, each named after what its certificate is like.
const GOOD: &str = "good.tls.test";
const EXPIRED: &str = "expired.tls.test";
const WRONG: &str = "wrong.tls.test";
const SOON: &str = "soon.tls.test";
const BARE: &str = "bare.tls.test";

/// Runs `openssl` in `dir`, or fails the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and, per site, `<ssl>/<site>/fullchain.pem` + `privkey.pem` signed by
/// it: `names` in the subject alternative names, validity from `openssl ca`'s date options.
struct Ca {
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let dir = dir.join("ca");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(dir.join("db/index.txt"), "").unwrap();
        std::fs::write(dir.join("db/serial"), "01\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = it\n[it]\ndatabase = db/index.txt\nserial = db/serial\n\
             new_certs_dir = db\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n\
             unique_subject = no\n[any]\ncommonName = supplied\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3650",
                "-subj",
                "/O=IT CA/CN=IT Root",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca { dir }
    }

    fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a leaf for `names` into `out/fullchain.pem` and `out/privkey.pem`; `dates` are
    /// `openssl ca` options (`-days N`, or `-startdate`/`-enddate`).
    fn issue(&self, out: &Path, names: &[&str], dates: &[&str]) {
        std::fs::create_dir_all(out).unwrap();
        let san = names
            .iter()
            .map(|n| format!("DNS:{n}"))
            .collect::<Vec<_>>()
            .join(",");
        let key = out.join("privkey.pem");
        let csr = self.dir.join(format!("{}.csr", names[0]));
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
                "-subj",
                &format!("/CN={}", names[0]),
                "-addext",
                &format!("subjectAltName={san}"),
                "-addext",
                "basicConstraints=CA:FALSE",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ],
        );
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            csr.to_str().unwrap(),
            "-out",
        ];
        let cert = out.join("fullchain.pem");
        args.push(cert.to_str().unwrap());
        args.extend(dates);
        openssl(&self.dir, &args);
    }
}

/// Picks the certificate of `<ssl>/<site>/` for the SNI name (`www.` stripped), read per
/// handshake: the new side serves exactly what the plan carried there.
#[derive(Debug)]
struct FromFiles(PathBuf);

impl rustls::server::ResolvesServerCert for FromFiles {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let sni = hello.server_name()?;
        let dir = self.0.join(sni.strip_prefix("www.").unwrap_or(sni));
        let certs = CertificateDer::pem_file_iter(dir.join("fullchain.pem"))
            .ok()?
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let key = PrivateKeyDer::from_pem_file(dir.join("privkey.pem")).ok()?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).ok()?;
        Some(Arc::new(rustls::sign::CertifiedKey::new(certs, signer)))
    }
}

/// An HTTPS server for one datacenter: `<www>/<site>/index.html` for `Host: [www.]<site>`,
/// certificates from `<ssl>/<site>/`.
struct TlsWeb {
    stop: Arc<AtomicBool>,
    address: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl TlsWeb {
    fn start(address: IpAddr, port: u16, www: PathBuf, ssl: PathBuf) -> TlsWeb {
        let listener = TcpListener::bind((address, port)).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FromFiles(ssl)));
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = stream {
                    let _ = serve(s, config.clone(), &www);
                }
            }
        });
        TlsWeb {
            stop,
            address: SocketAddr::new(address, port),
            thread: Some(thread),
        }
    }
}

impl Drop for TlsWeb {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, www: &Path) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut host = String::new();
    {
        let mut reader = BufReader::new(&mut tls);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("host")
            {
                host = v.trim().split(':').next().unwrap_or("").to_string();
            }
        }
    }
    let site = host.strip_prefix("www.").unwrap_or(&host);
    let (status, body) = match std::fs::read(www.join(site).join("index.html")) {
        Ok(b) if !site.is_empty() && !site.contains('/') => ("200 OK", b),
        _ => ("404 Not Found", b"<title>404</title>".to_vec()),
    };
    write!(
        tls,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    tls.write_all(&body)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// A port free on both the old and the new address.
fn free_port() -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind((NEW, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        if TcpListener::bind((OLD, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on {OLD} and {NEW}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

struct World {
    bind: Bind,
    work: tempfile::TempDir,
    port: u16,
    _web: (TlsWeb, TlsWeb),
}

impl World {
    /// Five sites in one zone, each with `{name}` and `www.{name}`; certificates at the source
    /// under `old/ssl/<site>/` (none for the bare site), carried to `new/ssl/<site>/`.
    fn start() -> World {
        let sites = [GOOD, EXPIRED, WRONG, SOON, BARE];
        let records: String = sites
            .iter()
            .map(|s| {
                let label = s.trim_end_matches(".tls.test");
                format!("{label} 300 IN A {OLD}\nwww.{label} 300 IN A {OLD}\n")
            })
            .collect();
        let bind = Bind::start(&[(ZONE, &records)]);
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        for site in sites {
            let dir = w.join("old/www").join(site);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.html"), format!("<title>{site}</title>")).unwrap();
        }
        let ca = Ca::new(w);
        let ssl = w.join("old/ssl");
        ca.issue(
            &ssl.join(GOOD),
            &[GOOD, &format!("www.{GOOD}")],
            &["-days", "90"],
        );
        ca.issue(
            &ssl.join(EXPIRED),
            &[EXPIRED, &format!("www.{EXPIRED}")],
            &[
                "-startdate",
                "20250101000000Z",
                "-enddate",
                "20250401000000Z",
            ],
        );
        ca.issue(&ssl.join(WRONG), &["other.tls.test"], &["-days", "90"]);
        ca.issue(
            &ssl.join(SOON),
            &[SOON, &format!("www.{SOON}")],
            &["-days", "3"],
        );
        // Keys as a web server keeps them: readable by its group only.
        for site in [GOOD, EXPIRED, WRONG, SOON] {
            let key = ssl.join(site).join("privkey.pem");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
            if is_root() {
                std::os::unix::fs::chown(&key, Some(1234), Some(2345)).unwrap();
            }
        }
        let port = free_port();
        let old = TlsWeb::start(OLD.parse().unwrap(), port, w.join("old/www"), ssl.clone());
        let new = TlsWeb::start(
            NEW.parse().unwrap(),
            port,
            w.join("new/www"),
            w.join("new/ssl"),
        );
        std::fs::write(
            w.join("plan.yaml"),
            format!(
                "version: 1\nname: certs-it\nstate_dir: state\n\
sites:\n  - from: {{ host: local, glob: \"old/www/*/\" }}\n    to: {{ host: local, path: \"new/www/{{name}}/\" }}\n    domains: [\"{{name}}\", \"www.{{name}}\"]\n\
dns:\n  provider: {{ kind: rfc2136, server: \"127.0.0.1:{p}\", tsig: {{ name: {k}, secret_env: IT_TSIG }} }}\n  zones: [{ZONE}]\n  nameservers: [\"127.0.0.1:{p}\"]\n  switch: [{{ from: {OLD}, to: {NEW} }}]\n  verify_timeout: 5s\n  zone_share: {{ max: 1.0 }}\n\
cutover:\n  probe: {{ http: \"https://{{domain}}:{port}/\", expect: [200], timeout: 5s, ca_file: {ca} }}\n  tls:\n    cert: \"{w}/old/ssl/{{name}}/fullchain.pem\"\n    key: \"{w}/old/ssl/{{name}}/privkey.pem\"\n    target_cert: \"{w}/new/ssl/{{name}}/fullchain.pem\"\n    target_key: \"{w}/new/ssl/{{name}}/privkey.pem\"\n  on_failure: rollback\n",
                p = bind.port,
                k = bind.tsig_name,
                w = w.display(),
                ca = ca.pem().display(),
            ),
        )
        .unwrap();
        World {
            bind,
            work,
            port,
            _web: (old, new),
        }
    }

    fn path(&self) -> &Path {
        self.work.path()
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = bin()
            .args(args)
            .arg("--yes")
            .arg(self.path().join("plan.yaml"))
            .env("IT_TSIG", &self.bind.tsig_secret)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self.path().join("state/journal.jsonl")).unwrap_or_default()
    }

    /// The base64 body of a site's private key at the source: must never be seen elsewhere.
    fn key_body(&self, site: &str) -> String {
        let pem =
            std::fs::read_to_string(self.path().join("old/ssl").join(site).join("privkey.pem"))
                .unwrap();
        pem.lines().nth(1).unwrap().to_string()
    }
}

#[test]
fn the_dry_run_lists_sites_without_a_usable_certificate_and_schedules_their_orders() {
    let z = World::start();
    let (code, out, err) = z.run(&["plan", "--json"]);
    assert_eq!(
        code,
        Some(1),
        "unusable certificates are errors: {out}{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let certs = &report["certificates"];
    let status = |site: &str| {
        let s = certs["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site"] == site)
            .unwrap_or_else(|| panic!("{site} in {certs}"));
        (
            s["status"].as_str().unwrap().to_string(),
            s["detail"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(status(GOOD).0, "usable", "{certs}");
    let (expired, detail) = status(EXPIRED);
    assert_eq!(expired, "expired");
    assert!(
        detail.contains("expired on 2025-04-01T00:00:00Z"),
        "{detail}"
    );
    let (wrong, detail) = status(WRONG);
    assert_eq!(wrong, "wrong_name");
    assert!(detail.contains("only for other.tls.test"), "{detail}");
    let (soon, detail) = status(SOON);
    assert_eq!(soon, "expiring");
    assert!(detail.contains("less than the 14 days"), "{detail}");
    assert_eq!(status(BARE).0, "missing");
    let risks: Vec<String> = report["risks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "certificate_unusable" && r["severity"] == "error")
        .map(|r| r["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(risks.len(), 4, "{risks:?}");
    assert!(!risks.contains(&GOOD.to_string()));
    // Four new orders (none from Let's Encrypt to renew): all in the account's first bucket.
    let schedule = &certs["schedule"];
    assert_eq!(schedule["ca"], "Let's Encrypt");
    assert_eq!(
        schedule["new_orders"].as_array().unwrap().len(),
        4,
        "{schedule}"
    );
    assert_eq!(schedule["renewals"].as_array().unwrap().len(), 0);
    assert_eq!(schedule["seconds"], 0);
    let summary = schedule["summary"].to_string();
    assert!(
        summary.contains("4 sites need a new certificate: at 300 new orders per 3.0 h"),
        "{summary}"
    );
    // The text report has the section; nothing was written anywhere.
    let (_, text, _) = z.run(&["plan"]);
    assert!(
        text.contains("Certificates: 5 sites · 1 usable · 4 not")
            && text.contains("Issuance schedule (Let's Encrypt)"),
        "{text}"
    );
    assert!(!z.path().join("new/ssl").exists());
    assert!(!text.contains(&z.key_body(GOOD)) && !out.contains(&z.key_body(GOOD)));
}

#[test]
fn a_site_whose_new_side_serves_no_valid_certificate_is_never_switched() {
    let z = World::start();
    // Pre-sync carries certificate and key with the site: content, mode and owner kept.
    let (code, out, err) = z.run(&["sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for site in [GOOD, EXPIRED, WRONG, SOON] {
        for (file, mode) in [("fullchain.pem", 0o644), ("privkey.pem", 0o640)] {
            let src = z.path().join("old/ssl").join(site).join(file);
            let dst = z.path().join("new/ssl").join(site).join(file);
            assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
            let (s, d) = (
                std::fs::metadata(&src).unwrap(),
                std::fs::metadata(&dst).unwrap(),
            );
            assert_eq!(d.permissions().mode() & 0o7777, mode, "{}", dst.display());
            assert_eq!(s.permissions().mode(), d.permissions().mode());
            assert_eq!((s.uid(), s.gid()), (d.uid(), d.gid()), "{}", dst.display());
        }
    }
    assert!(
        !z.path().join("new/ssl").join(BARE).exists(),
        "nothing to carry"
    );

    // Watched the whole time: the failing sites' names never give the new address.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("transhumance"))
        .args(["cutover", "--yes"])
        .arg(z.path().join("plan.yaml"))
        .env("IT_TSIG", &z.bind.tsig_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let failing = [EXPIRED, WRONG, SOON, BARE];
    while child.try_wait().unwrap().is_none() {
        for site in failing {
            assert_eq!(z.bind.dig(site, "A"), vec![OLD], "{site} switched");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(text.contains(&format!("confirmed     {GOOD}")), "{text}");
    assert_eq!(z.bind.dig(GOOD, "A"), vec![NEW]);
    assert_eq!(z.bind.dig(&format!("www.{GOOD}"), "A"), vec![NEW]);
    let at = format!("served at {NEW}:{}", z.port);
    for (site, why) in [
        (EXPIRED, "expired on 2025-04-01T00:00:00Z".to_string()),
        (
            WRONG,
            format!("wrong name: not valid for {WRONG}, only for other.tls.test"),
        ),
        (SOON, "expiring: valid until".to_string()),
        (BARE, "no TLS: TLS handshake failed".to_string()),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with("failed") && l.contains(site))
            .unwrap_or_else(|| panic!("{site} not failed: {text}"));
        assert!(
            line.contains(&format!(
                "probe of {site} through the new address, before the switch: certificate for {site} {at}: {why}"
            )) && line.contains("(DNS not switched)"),
            "{line}"
        );
        assert_eq!(z.bind.dig(site, "A"), vec![OLD], "{site}");
        assert_eq!(
            z.bind.dig(&format!("www.{site}"), "A"),
            vec![OLD],
            "www.{site}"
        );
    }
    // No switch intent for any failing site's name; the confirmed one's certificate check is
    // journaled with the probes.
    let journal = z.journal();
    for line in journal.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["kind"] == "dns_intent" && e["phase"] == "switch" {
            for site in failing {
                assert!(!line.contains(site), "switch intent for {site}: {line}");
            }
        }
    }
    assert!(
        journal.contains(&format!("\"url\":\"tls://{GOOD}:{}\"", z.port))
            && journal.contains("chains to the CA file"),
        "{journal}"
    );
    // The keys were carried, never shown: not in the journal, the output or the report.
    let (_, report, _) = z.run(&["report"]);
    for site in [GOOD, EXPIRED, WRONG, SOON] {
        let body = z.key_body(site);
        for (what, s) in [
            ("journal", &journal),
            ("stdout", &text),
            ("stderr", &err),
            ("report", &report),
        ] {
            assert!(!s.contains(&body), "{site}'s key in the {what}");
        }
    }
    assert!(!journal.contains("PRIVATE KEY"));
}

/// The same carrying over the ssh transport (the agent runs the reads and the atomic write):
/// source and target on an ssh host, the dry run reading the certificate there too.
#[test]
fn certificate_and_key_travel_over_ssh_with_mode_and_owner() {
    let sshd = crate::harness::Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let site = w.join("old/www/shop.test");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<title>shop</title>").unwrap();
    let ca = Ca::new(w);
    let ssl = w.join("old/ssl/shop.test");
    ca.issue(&ssl, &["shop.test"], &["-days", "90"]);
    // Let's Encrypt's layout: `live/` names are links into `archive/`.
    std::fs::create_dir_all(w.join("old/live")).unwrap();
    std::os::unix::fs::symlink(&ssl, w.join("old/live/shop.test")).unwrap();
    let key = ssl.join("privkey.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&key, Some(4321), Some(5432)).unwrap();
    }
    std::fs::write(
        w.join("plan.yaml"),
        format!(
            "version: 1\nname: certs-ssh\nstate_dir: state\n\
hosts:\n  web: {{ ssh: \"root@127.0.0.1:{port}\", identity_file: \"{id}\", known_hosts: \"{kh}\", agent_dir: \"{w}/agent\" }}\n\
sites:\n  - name: shop.test\n    from: {{ host: web, path: \"{w}/old/www/shop.test/\" }}\n    to: {{ host: web, path: \"{w}/new/www/shop.test/\" }}\n    domains: [shop.test]\n    tls: {{ cert: \"{w}/old/live/{{domain}}/fullchain.pem\", key: \"{w}/old/live/{{domain}}/privkey.pem\", target_cert: \"{w}/new/ssl/{{name}}/cert.pem\", target_key: \"{w}/new/ssl/{{name}}/key.pem\" }}\n\
cutover:\n  probe: {{ http: \"https://{{domain}}/\", ca_file: {ca} }}\n",
            port = sshd.port,
            id = sshd.client_key.display(),
            kh = sshd.known_hosts.display(),
            w = w.display(),
            ca = ca.pem().display(),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = bin()
            .args(args)
            .arg("--yes")
            .arg(w.join("plan.yaml"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["plan", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["certificates"]["sites"][0]["status"], "usable",
        "{out}"
    );
    let (code, out, err) = run(&["sync"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let carried = w.join("new/ssl/shop.test");
    assert_eq!(
        std::fs::read(ssl.join("fullchain.pem")).unwrap(),
        std::fs::read(carried.join("cert.pem")).unwrap()
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(carried.join("key.pem")).unwrap()
    );
    let meta = std::fs::symlink_metadata(carried.join("key.pem")).unwrap();
    assert!(meta.file_type().is_file(), "a plain file, not the link");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (4321, 5432));
    }
    // Nothing but the two files was left in the target directory (no temp file).
    let mut names: Vec<String> = std::fs::read_dir(&carried)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["cert.pem", "key.pem"]);
    let body = std::fs::read_to_string(&key).unwrap();
    let body = body.lines().nth(1).unwrap();
    assert!(!out.contains(body) && !err.contains(body));
}

#[test]
fn certificates_are_found_in_the_web_servers_configuration() {
    let z = World::start();
    let w = z.path();
    let ssl = w.join("old/ssl");
    std::fs::create_dir_all(w.join("old/apache")).unwrap();
    std::fs::create_dir_all(w.join("old/nginx")).unwrap();
    // Apache: one file per site, the site named by an alias; nginx: both in one file.
    for site in [GOOD, EXPIRED] {
        std::fs::write(
            w.join("old/apache").join(format!("{site}.conf")),
            format!(
                "<VirtualHost *:80>\n  ServerName {site}\n</VirtualHost>\n<VirtualHost *:443>\n  ServerName other-name.tls.test\n  ServerAlias www.{site} {site}\n  SSLCertificateFile {d}/fullchain.pem\n  SSLCertificateKeyFile {d}/privkey.pem\n</VirtualHost>\n",
                d = ssl.join(site).display()
            ),
        )
        .unwrap();
    }
    let nginx: String = [WRONG, SOON]
        .iter()
        .map(|site| {
            format!(
                "server {{\n  listen 443 ssl;\n  server_name {site} www.{site};\n  ssl_certificate \"{d}/fullchain.pem\";\n  ssl_certificate_key {d}/privkey.pem; # key\n}}\n",
                d = ssl.join(site).display()
            )
        })
        .collect();
    std::fs::write(
        w.join("old/nginx/sites.conf"),
        format!("http {{\n{nginx}}}\n"),
    )
    .unwrap();
    let plan = std::fs::read_to_string(w.join("plan.yaml")).unwrap();
    let templates = format!(
        "    cert: \"{d}/old/ssl/{{name}}/fullchain.pem\"\n    key: \"{d}/old/ssl/{{name}}/privkey.pem\"\n",
        d = w.display()
    );
    assert!(plan.contains(&templates));
    let plan = plan.replace(
        &templates,
        &format!(
            "    discover: [\"{d}/old/apache\", \"{d}/old/nginx/*.conf\"]\n",
            d = w.display()
        ),
    );
    std::fs::write(w.join("plan.yaml"), plan).unwrap();

    let (code, out, err) = z.run(&["plan", "--json"]);
    assert_eq!(
        code,
        Some(1),
        "unusable certificates are errors: {out}{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let certs = &report["certificates"];
    let site = |name: &str| {
        certs["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site"] == name)
            .unwrap_or_else(|| panic!("{name} in {certs}"))
            .clone()
    };
    for (name, status) in [
        (GOOD, "usable"),
        (EXPIRED, "expired"),
        (WRONG, "wrong_name"),
        (SOON, "expiring"),
    ] {
        let s = site(name);
        assert_eq!(s["status"], status, "{s}");
        assert_eq!(
            s["cert"],
            format!("local:{}", ssl.join(name).join("fullchain.pem").display()),
            "the path the web server names: {s}"
        );
    }
    let bare = site(BARE);
    assert_eq!(bare["status"], "not_found", "{bare}");
    assert!(
        bare["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("no TLS virtual host for `{BARE}`")),
        "{bare}"
    );
    assert!(
        report["risks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "certificate_not_found"
                && r["severity"] == "warning"
                && r["subject"] == BARE),
        "{}",
        report["risks"]
    );
    // The bare site is scheduled with the three unusable ones.
    assert_eq!(
        certs["schedule"]["new_orders"].as_array().unwrap().len(),
        4,
        "{}",
        certs["schedule"]
    );
    assert!(!out.contains(&z.key_body(GOOD)) && !err.contains(&z.key_body(GOOD)));

    // The discovered files travel with the site to the target's templates.
    let (code, out, err) = z.run(&["sync", "--only", GOOD]);
    assert_eq!(code, Some(0), "{out}{err}");
    let key = w.join("new/ssl").join(GOOD).join("privkey.pem");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(ssl.join(GOOD).join("privkey.pem")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o640
    );

    // Both `discover` and `cert`: refused with where.
    let plan = std::fs::read_to_string(w.join("plan.yaml")).unwrap();
    let both = plan.replace("    discover:", &format!("{templates}    discover:"));
    std::fs::write(w.join("plan.yaml"), both).unwrap();
    let (code, out, err) = z.run(&["validate"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("cutover.tls.discover") && err.contains("give one or the other"),
        "{err}"
    );
}
