//! The stale-resolver forwarder, run on an old host after its sites are confirmed: visitors
//! whose resolvers still hold the old address are sent on to the new one, HTTP by its Host
//! header and HTTPS by the server name of its TLS ClientHello (the bytes pass through
//! untouched: no certificate, nothing decrypted); every other name goes to the old web server
//! (`local`). Mail ports too, where the plan names them: TLS-wrapped ones (IMAPS, SMTPS, POP3S)
//! by SNI like HTTPS, plain ones (SMTP, IMAP...) as a whole port once the controller gives the
//! host its whole-port route. Routes come from a file the controller rewrites atomically; each
//! expires on its own, and the forwarder exits once none is left.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where the forwarder listens and where what it does not forward goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardConfig {
    pub listen_http: SocketAddr,
    pub listen_https: SocketAddr,
    pub local_http: SocketAddr,
    pub local_https: SocketAddr,
    /// Mail ports (none in configs written before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mail: Vec<MailListener>,
}

/// One mail port: where it listens, where the old mail server serves what is not forwarded,
/// the new side's port, and whether it is routed by SNI or as a whole port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailListener {
    pub protocol: String,
    pub listen: SocketAddr,
    pub local: SocketAddr,
    pub to_port: u16,
    /// TLS from the first byte, routed by the ClientHello's server name; else the whole port.
    pub sni: bool,
}

/// One confirmed site's names and where their connections go, until `until` (seconds since the
/// epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub site: String,
    pub names: Vec<String>,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub until: u64,
    /// The host-wide route of plain mail ports (no names): every connection to them goes to
    /// this route's address while it lasts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole_port: bool,
}

/// The files of a forwarder's directory.
pub const CONFIG: &str = "config.json";
pub const ROUTES: &str = "routes.json";
/// A copy of the routes the forwarder has in force, written once it has read them.
pub const LOADED: &str = "routes.loaded";
/// `PID START_TICKS`, written once it listens, removed when it exits.
pub const PID_FILE: &str = "forwarder.pid";

/// A request head or a ClientHello is read within this many bytes, or not routed.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HELLO: usize = 64 * 1024;
/// Connections handled at once; more are closed at once (the visitor retries).
const MAX_CONNECTIONS: usize = 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The routes still valid at `now`.
pub fn live(routes: &[Route], now: u64) -> Vec<Route> {
    routes.iter().filter(|r| r.until > now).cloned().collect()
}

/// A name as routes hold it: lower case, no trailing dot, no port.
pub fn normal_name(name: &str) -> String {
    let name = name.trim();
    let host = if name.starts_with('[') {
        name
    } else {
        name.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(name)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Where a connection to a mail port goes: by SNI (`name`, from its ClientHello) to a site's
/// new address, or, on a plain port, to the host-wide route's address; else to `local`.
pub fn mail_destination(
    listener: &MailListener,
    routes: &[Route],
    name: Option<&str>,
    now: u64,
) -> SocketAddr {
    let route = if listener.sni {
        pick(routes, name, now)
    } else {
        routes
            .iter()
            .find(|r| r.whole_port && r.until > now)
            .cloned()
    };
    match route {
        Some(r) => SocketAddr::new(r.https.ip(), listener.to_port),
        None => listener.local,
    }
}

fn pick(routes: &[Route], name: Option<&str>, now: u64) -> Option<Route> {
    let name = normal_name(name?);
    routes
        .iter()
        .find(|r| r.until > now && r.names.iter().any(|n| normal_name(n) == name))
        .cloned()
}

/// The Host header of an HTTP/1 request head (`None` when absent or not readable).
pub fn http_host(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("host")
            .then(|| v.trim().to_string())
    })
}

/// What a ClientHello read so far says.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed (never more than `MAX_HELLO`).
    Incomplete,
    /// A whole ClientHello, with its server name when it has one.
    Complete(Option<String>),
    /// Not a TLS ClientHello.
    Invalid,
}

/// Reads the server name from the TLS records in `bytes` (the first bytes a client sent). Every
/// length comes from the peer and is checked against what is there.
pub fn client_hello(bytes: &[u8]) -> Hello {
    // The handshake message may span several records: gather their payloads.
    let mut handshake = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = bytes.get(at..at + 5) else {
            return Hello::Incomplete;
        };
        if header[0] != 22 || header[1] != 3 {
            return Hello::Invalid;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16 * 1024 + 2048 {
            return Hello::Invalid;
        }
        let Some(payload) = bytes.get(at + 5..at + 5 + len) else {
            return Hello::Incomplete;
        };
        handshake.extend_from_slice(payload);
        at += 5 + len;
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Hello::Invalid;
            }
            let need = 4
                + (usize::from(handshake[1]) << 16
                    | usize::from(handshake[2]) << 8
                    | usize::from(handshake[3]));
            if need > MAX_HELLO {
                return Hello::Invalid;
            }
            if handshake.len() >= need {
                return match server_name(&handshake[4..need]) {
                    Some(name) => Hello::Complete(name),
                    None => Hello::Invalid,
                };
            }
        }
    }
}

/// A bounded reader over a peer's bytes.
struct Cursor<'b>(&'b [u8]);

impl<'b> Cursor<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// The `server_name` extension of a ClientHello body: `Some(None)` when it has none, `None`
/// when the body does not parse.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut c = Cursor(body);
    c.take(2 + 32)?; // version, random
    let n = c.u8()?;
    c.take(n)?; // session id
    let n = c.u16()?;
    c.take(n)?; // cipher suites
    let n = c.u8()?;
    c.take(n)?; // compression methods
    if c.0.is_empty() {
        return Some(None);
    }
    let n = c.u16()?;
    let mut ext = Cursor(c.take(n)?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let n = ext.u16()?;
        let data = ext.take(n)?;
        if kind != 0 {
            continue;
        }
        let mut list = Cursor(data);
        let n = list.u16()?;
        let mut names = Cursor(list.take(n)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = names.u16()?;
            let name = names.take(n)?;
            if kind == 0 {
                return std::str::from_utf8(name).ok().map(|s| Some(s.to_string()));
            }
        }
        return Some(None);
    }
    Some(None)
}

/// Reads the config and routes of `dir`, listens, writes the PID file, and forwards until no
/// route is left (then removes the PID file and returns).
///
/// # Errors
/// The config cannot be read or an address cannot be listened on.
pub fn run(dir: &Path) -> io::Result<()> {
    let config: ForwardConfig = serde_json::from_slice(&std::fs::read(dir.join(CONFIG))?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{CONFIG}: {e}")))?;
    let routes = Arc::new(RwLock::new(read_routes(dir)));
    let http = TcpListener::bind(config.listen_http)?;
    let https = TcpListener::bind(config.listen_https)?;
    let mut listeners = vec![(http, Port::Http), (https, Port::Https)];
    for m in &config.mail {
        listeners.push((TcpListener::bind(m.listen)?, Port::Mail(m.clone())));
    }
    let busy = Arc::new(AtomicUsize::new(0));
    for (listener, port) in listeners {
        let (routes, busy, config) = (routes.clone(), busy.clone(), config.clone());
        std::thread::spawn(move || accept(listener, &port, &config, &routes, &busy));
    }
    let pid = std::process::id();
    let ticks = start_ticks(pid).unwrap_or(0);
    write_atomic(&dir.join(PID_FILE), format!("{pid} {ticks}\n").as_bytes())?;
    let mut loaded: Option<Vec<u8>> = None;
    loop {
        let now = now();
        let bytes = std::fs::read(dir.join(ROUTES)).unwrap_or_default();
        let current = parse_routes(&bytes);
        *routes.write().unwrap_or_else(|p| p.into_inner()) = current.clone();
        if loaded.as_deref() != Some(&bytes[..]) {
            // What is in force now, for the controller waiting on a change (a rollback).
            let _ = write_atomic(&dir.join(LOADED), &bytes);
            loaded = Some(bytes);
        }
        let left = live(&current, now);
        if left.is_empty() {
            let _ = std::fs::remove_file(dir.join(PID_FILE));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read_routes(dir: &Path) -> Vec<Route> {
    parse_routes(&std::fs::read(dir.join(ROUTES)).unwrap_or_default())
}

fn parse_routes(bytes: &[u8]) -> Vec<Route> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// Writes `path` under a temp name, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat` field 22), which tells
/// it from a later process given the same PID.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What a listener serves.
#[derive(Clone)]
enum Port {
    Http,
    Https,
    Mail(MailListener),
}

fn accept(
    listener: TcpListener,
    port: &Port,
    config: &ForwardConfig,
    routes: &Arc<RwLock<Vec<Route>>>,
    busy: &Arc<AtomicUsize>,
) {
    for client in listener.incoming().flatten() {
        if busy.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue;
        }
        busy.fetch_add(1, Ordering::SeqCst);
        let (routes, busy, config, port) =
            (routes.clone(), busy.clone(), config.clone(), port.clone());
        std::thread::spawn(move || {
            let _ = serve(client, &port, &config, &routes);
            busy.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Reads enough of the client's first bytes to know its name, connects where that name goes,
/// hands those bytes on as they came, then relays both ways.
/// A plain mail port's server speaks first: nothing is read before its connection is made.
fn serve(
    mut client: TcpStream,
    port: &Port,
    config: &ForwardConfig,
    routes: &RwLock<Vec<Route>>,
) -> io::Result<()> {
    let tls = match port {
        Port::Http => false,
        Port::Https => true,
        Port::Mail(m) if m.sni => true,
        Port::Mail(m) => {
            let to = {
                let routes = routes.read().unwrap_or_else(|p| p.into_inner());
                mail_destination(m, &routes, None, now())
            };
            let upstream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
            return relay(client, upstream);
        }
    };
    client.set_read_timeout(Some(READ_TIMEOUT))?;
    let limit = if tls { MAX_HELLO + 5 * 8 } else { MAX_HEAD };
    let mut first = Vec::new();
    let mut chunk = [0u8; 4096];
    let name = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        first.extend_from_slice(&chunk[..n]);
        if tls {
            match client_hello(&first) {
                Hello::Incomplete if first.len() < limit => continue,
                Hello::Complete(name) => break name,
                _ => break None,
            }
        } else if first.windows(4).any(|w| w == b"\r\n\r\n") || first.len() >= limit {
            let end = first
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(first.len());
            break http_host(&first[..end]);
        }
    };
    let to = {
        let routes = routes.read().unwrap_or_else(|p| p.into_inner());
        match port {
            Port::Mail(m) => mail_destination(m, &routes, name.as_deref(), now()),
            _ => match (pick(&routes, name.as_deref(), now()), tls) {
                (Some(r), false) => r.http,
                (Some(r), true) => r.https,
                (None, false) => config.local_http,
                (None, true) => config.local_https,
            },
        }
    };
    let mut upstream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
    client.set_read_timeout(None)?;
    upstream.write_all(&first)?;
    relay(client, upstream)
}

/// Relays both ways until each side has closed its half.
fn relay(mut client: TcpStream, mut upstream: TcpStream) -> io::Result<()> {
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a client sends it, with `sni` (and a few other extensions).
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        // supported_groups, before the name.
        ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]);
        if let Some(name) = sni {
            let n = name.len() as u16;
            ext.extend_from_slice(&[0x00, 0x00]);
            ext.extend_from_slice(&(n + 5).to_be_bytes());
            ext.extend_from_slice(&(n + 3).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&n.to_be_bytes());
            ext.extend_from_slice(name.as_bytes());
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn the_server_name_is_read_from_a_client_hello_whole_or_split_over_records() {
        let h = hello(Some("www.Example.test"));
        assert_eq!(
            client_hello(&h),
            Hello::Complete(Some("www.Example.test".into()))
        );
        assert_eq!(client_hello(&hello(None)), Hello::Complete(None));
        for cut in [0, 3, 5, 20, h.len() - 1] {
            assert_eq!(client_hello(&h[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        // The same handshake split over two records.
        let hs = &h[5..];
        let (a, b) = hs.split_at(30);
        let mut split = vec![22, 3, 1, 0, a.len() as u8];
        split.extend_from_slice(a);
        split.extend_from_slice(&[22, 3, 1]);
        split.extend_from_slice(&(b.len() as u16).to_be_bytes());
        split.extend_from_slice(b);
        assert_eq!(
            client_hello(&split),
            Hello::Complete(Some("www.Example.test".into()))
        );
    }

    #[test]
    fn lengths_from_the_peer_are_never_trusted() {
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Hello::Invalid);
        // A handshake announcing 16 MiB.
        assert_eq!(
            client_hello(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
            Hello::Invalid
        );
        // An extension list longer than the body.
        let mut h = hello(Some("a.test"));
        let at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
        h[at] = 0xff;
        assert_eq!(client_hello(&h), Hello::Invalid);
        // Every truncation of the body inside one record is refused or incomplete, never a panic.
        let h = hello(Some("a.test"));
        for cut in 9..h.len() {
            let mut t = h[..cut].to_vec();
            let len = (t.len() - 5) as u16;
            t[3..5].copy_from_slice(&len.to_be_bytes());
            let _ = client_hello(&t);
        }
    }

    #[test]
    fn hosts_are_matched_without_case_port_or_trailing_dot_and_routes_expire() {
        assert_eq!(
            http_host(b"GET / HTTP/1.1\r\nhost: WWW.a.test:8080\r\nX: y"),
            Some("WWW.a.test:8080".into())
        );
        assert_eq!(http_host(b"GET / HTTP/1.0\r\n"), None);
        let a: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let r = Route {
            site: "a".into(),
            names: vec!["www.a.test.".into()],
            http: a,
            https: a,
            until: 100,
            whole_port: false,
        };
        let routes = vec![r.clone()];
        assert_eq!(pick(&routes, Some("WWW.a.test:8080"), 99), Some(r));
        assert_eq!(pick(&routes, Some("www.a.test"), 100), None, "expired");
        assert_eq!(pick(&routes, Some("b.test"), 1), None);
        assert_eq!(pick(&routes, None, 1), None);
        assert!(live(&routes, 100).is_empty());
    }

    #[test]
    fn mail_ports_go_by_sni_or_by_the_host_wide_route_else_to_local() {
        let new: SocketAddr = "192.0.2.9:443".parse().unwrap();
        let site = Route {
            site: "a".into(),
            names: vec!["a.test".into()],
            http: new,
            https: new,
            until: 100,
            whole_port: false,
        };
        let imaps = MailListener {
            protocol: "imaps".into(),
            listen: "0.0.0.0:993".parse().unwrap(),
            local: "127.0.0.1:1993".parse().unwrap(),
            to_port: 993,
            sni: true,
        };
        let smtp = MailListener {
            protocol: "smtp".into(),
            listen: "0.0.0.0:25".parse().unwrap(),
            local: "127.0.0.1:2525".parse().unwrap(),
            to_port: 25,
            sni: false,
        };
        let routes = vec![site.clone()];
        let to = |port: u16| SocketAddr::new(new.ip(), port);
        assert_eq!(
            mail_destination(&imaps, &routes, Some("A.test"), 1),
            to(993)
        );
        assert_eq!(
            mail_destination(&imaps, &routes, Some("b.test"), 1),
            imaps.local
        );
        assert_eq!(mail_destination(&imaps, &routes, None, 1), imaps.local);
        // A site's route alone never takes a plain port: its server cannot tell the sites apart.
        assert_eq!(mail_destination(&smtp, &routes, None, 1), smtp.local);
        let whole = Route {
            site: String::new(),
            names: vec![],
            until: 200,
            whole_port: true,
            ..site
        };
        let routes = vec![whole];
        assert_eq!(mail_destination(&smtp, &routes, None, 150), to(25));
        assert_eq!(
            mail_destination(&smtp, &routes, None, 200),
            smtp.local,
            "expired"
        );
        assert_eq!(
            mail_destination(&imaps, &routes, Some("a.test"), 1),
            imaps.local
        );
    }
}
