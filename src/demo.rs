//! The scenario behind `transhumance demo`: a small old and new datacenter in a temp dir (sites,
//! a Maildir, a zone file), a plan for them, and two tiny web servers the probes go through.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The address the sites have in the old datacenter, and the one they get in the new.
pub const OLD_ADDRESS: &str = "127.0.0.1";
pub const NEW_ADDRESS: &str = "127.0.0.2";

/// The demo's sites: name, page title, and extra files.
const SITES: &[(&str, &str)] = &[
    ("alpha.demo.test", "Alpha bakery"),
    ("beta.demo.test", "Beta bike repairs"),
    ("gamma.demo.test", "Gamma choir"),
];

/// The site whose new web server is not ready (its PHP backend was forgotten): its probe through
/// the new address fails before the switch, so its DNS never moves; the others go on.
pub const BROKEN_SITE: &str = "gamma.demo.test";

/// A demo world on disk.
pub struct Scenario {
    pub root: PathBuf,
    pub plan: PathBuf,
    pub zone_file: PathBuf,
    pub port: u16,
}

fn write(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)
}

/// Builds the old datacenter (sites, a Maildir, the zone), an empty new one, and the plan.
///
/// # Errors
/// The directory cannot be written.
pub fn build(root: &Path, port: u16) -> std::io::Result<Scenario> {
    let old = root.join("old-dc");
    for (i, (site, title)) in SITES.iter().enumerate() {
        let dir = old.join("www").join(site);
        write(
            &dir.join("index.html"),
            format!("<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n").as_bytes(),
        )?;
        write(&dir.join("css/site.css"), b"body { font-family: serif }\n")?;
        // Some weight, different per site, so the pre-sync has something to move.
        let blob: Vec<u8> = (0..(200_000 + i * 150_000))
            .map(|n| (n * 31 % 251) as u8)
            .collect();
        write(&dir.join("img/banner.bin"), &blob)?;
        write(&dir.join("cache/page.tmp"), b"rebuilt by the app")?;
    }
    for (user, n) in [("alice", 4), ("bob", 2)] {
        let maildir = old.join("vmail/demo.test").join(user).join("Maildir");
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(d))?;
        }
        for m in 0..n {
            let body = format!(
                "From: friend@example.org\r\nTo: {user}@demo.test\r\nSubject: hello {m}\r\nMessage-ID: <{user}.{m}@demo.test>\r\n\r\nMessage {m} for {user}.\r\n"
            );
            write(
                &maildir.join(format!(
                    "cur/17000000{m:02}.M{m}P1.oldmx,S={}:2,S",
                    body.len()
                )),
                body.as_bytes(),
            )?;
        }
    }
    std::fs::create_dir_all(root.join("new-dc/www"))?;
    std::fs::create_dir_all(root.join("new-dc/vmail"))?;
    let zones = root.join("zones");
    let zone_file = zones.join("demo.test.zone");
    write(
        &zone_file,
        format!(
            "$ORIGIN demo.test.\n$TTL 3\n\
             @ IN SOA ns1.demo.test. hostmaster.demo.test. 2026112401 3600 600 86400 3\n\
             @ IN NS ns1.demo.test.\n\
             ns1 IN A 192.0.2.53\n\
             @ IN MX 10 mx.demo.test.\n\
             @ IN TXT \"v=spf1 mx -all\"\n\
             mx IN A 192.0.2.25\n\
             ftp IN A 192.0.2.21\n\
             status IN A 192.0.2.80\n\
             docs IN CNAME alpha.demo.test.\n\
             _dmarc IN TXT \"v=DMARC1; p=none\"\n\
             alpha IN A {OLD_ADDRESS}\n\
             beta IN A {OLD_ADDRESS}\n\
             gamma IN A {OLD_ADDRESS}\n"
        )
        .as_bytes(),
    )?;
    let plan = root.join("demo-plan.yaml");
    write(
        &plan,
        format!(
            "# Written by `transhumance demo`: the old and new datacenters are folders here.\n\
             version: 1\n\
             name: demo\n\
             state_dir: state\n\
             defaults: {{ jobs: 3 }}\n\
             sites:\n\
             \x20 - from: {{ host: local, glob: \"old-dc/www/*/\" }}\n\
             \x20   to: {{ host: local, path: \"new-dc/www/{{name}}/\" }}\n\
             \x20   domains: [\"{{name}}\"]\n\
             \x20   exclude: [\"cache/\"]\n\
             mail:\n\
             \x20 - layout: maildir\n\
             \x20   from: {{ host: local, path: old-dc/vmail }}\n\
             \x20   to: {{ host: local, path: new-dc/vmail }}\n\
             dns:\n\
             \x20 provider: {{ kind: zonefile, directory: zones }}\n\
             \x20 zones: [demo.test]\n\
             \x20 switch: [{{ from: {OLD_ADDRESS}, to: {NEW_ADDRESS} }}]\n\
             \x20 lower_ttl: 1\n\
             \x20 verify_timeout: 5s\n\
             cutover:\n\
             \x20 batch: 10\n\
             \x20 freeze: {{ run: \"touch {{path}}/.maintenance\" }}\n\
             \x20 freeze_files: [\".maintenance\"]\n\
             \x20 unfreeze: {{ run: \"rm -f {{path}}/.maintenance\" }}\n\
             \x20 probe: {{ http: \"http://{{domain}}:{port}/\", expect: [200], timeout: 5s, compare_body: true }}\n\
             \x20 on_failure: rollback\n"
        )
        .as_bytes(),
    )?;
    Ok(Scenario {
        root: root.to_path_buf(),
        plan,
        zone_file,
        port,
    })
}

/// A web server for one datacenter: serves `<www>/<Host>/index.html`; `broken` hosts get 502.
pub struct WebServer {
    stop: Arc<AtomicBool>,
    address: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Listens on `address:port`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start(
        address: IpAddr,
        port: u16,
        www: PathBuf,
        broken: Vec<String>,
    ) -> std::io::Result<WebServer> {
        let listener = TcpListener::bind((address, port))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = stream {
                    let _ = serve(s, &www, &broken);
                }
            }
        });
        Ok(WebServer {
            stop,
            address: SocketAddr::new(address, port),
            thread: Some(thread),
        })
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop up so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, www: &Path, broken: &[String]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut host = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("host")
        {
            host = v
                .trim()
                .split(':')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
        }
    }
    let page = www.join(&host).join("index.html");
    let (status, body) = if host.is_empty() || host.contains(['/', '\\']) || host.starts_with('.') {
        ("400 Bad Request", b"bad host\n".to_vec())
    } else if broken.contains(&host) {
        (
            "502 Bad Gateway",
            b"<title>502 Bad Gateway</title>PHP backend not deployed\n".to_vec(),
        )
    } else {
        match std::fs::read(&page) {
            Ok(b) => ("200 OK", b),
            Err(_) => ("404 Not Found", b"<title>404 Not Found</title>\n".to_vec()),
        }
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(&body)
}

/// A port free on both demo addresses.
///
/// # Errors
/// No port could be found.
pub fn free_port() -> std::io::Result<u16> {
    for _ in 0..50 {
        let l = TcpListener::bind((OLD_ADDRESS, 0))?;
        let port = l.local_addr()?.port();
        drop(l);
        let new: IpAddr = NEW_ADDRESS.parse().expect("address");
        if TcpListener::bind((new, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free port on 127.0.0.1 and 127.0.0.2",
    ))
}
