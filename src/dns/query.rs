//! Plain DNS queries straight to one authoritative server, over UDP with TCP fallback, and AXFR.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// One resource record as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rr {
    /// Fully qualified, lower case, with the trailing dot.
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

fn question(name: &str, rtype: RecordType) -> Result<Message, String> {
    question_rd(name, rtype, false)
}

fn question_rd(name: &str, rtype: RecordType, recurse: bool) -> Result<Message, String> {
    let name = Name::from_str(name).map_err(|e| format!("`{name}` is not a DNS name: {e}"))?;
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    // Authoritative servers are asked for their own data only; resolvers are asked to recurse.
    msg.metadata.recursion_desired = recurse;
    msg.add_query(Query::query(name, rtype));
    Ok(msg)
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (std::process::id() << 7)) as u16
}

fn udp(server: SocketAddr, msg: &Message, timeout: Duration) -> Result<Message, String> {
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        sock.send(&bytes)
            .map_err(|e| format!("cannot send to {server}: {e}"))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let answer = Message::from_vec(&buf[..n])
                    .map_err(|e| format!("bad answer from {server}: {e}"))?;
                if answer.metadata.id == msg.metadata.id {
                    return Ok(answer);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("no answer from {server}: {e}")),
        }
    }
    Err(format!("no answer from {server} (timed out)"))
}

fn tcp_connect(server: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&server, timeout)
        .map_err(|e| format!("cannot reach {server} over TCP: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn tcp_send(s: &mut TcpStream, msg: &Message) -> Result<(), String> {
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).map_err(|e| e.to_string())
}

fn tcp_recv(s: &mut TcpStream) -> Result<Message, String> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| format!("TCP answer cut short: {e}"))?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)
        .map_err(|e| format!("TCP answer cut short: {e}"))?;
    Message::from_vec(&buf).map_err(|e| format!("bad TCP answer: {e}"))
}

/// Asks `server` for `name`/`rtype` without recursion, retrying over TCP when truncated.
///
/// # Errors
/// Unreachable server, an error response code (named), or an answer that does not decode.
pub fn lookup(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Vec<Rr>, String> {
    let msg = question(name, rtype)?;
    let mut answer = udp(server, &msg, timeout)?;
    if answer.metadata.truncation {
        let mut s = tcp_connect(server, timeout)?;
        tcp_send(&mut s, &msg)?;
        answer = tcp_recv(&mut s)?;
    }
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(format!("{server} answered {code} for {name} {rtype}")),
    }
    if !answer.metadata.authoritative
        && answer.metadata.response_code == ResponseCode::NoError
        && rtype == RecordType::SOA
        && answer.answers.is_empty()
    {
        return Err(format!("{server} is not authoritative for {name}"));
    }
    Ok(answer
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(to_rr)
        .collect())
}

/// Asks a recursive resolver for `name`/`rtype` (what visitors see once caches expire).
///
/// # Errors
/// As `lookup`.
pub fn resolve(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Vec<Rr>, String> {
    let msg = question_rd(name, rtype, true)?;
    let answer = udp(server, &msg, timeout)?;
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => {
            return Err(format!(
                "resolver {server} answered {code} for {name} {rtype}"
            ));
        }
    }
    Ok(answer
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(to_rr)
        .collect())
}

/// The SOA serial `server` gives for `zone`.
///
/// # Errors
/// As `lookup`, or no SOA in the answer (the server is not authoritative for the zone).
pub fn soa_serial(server: SocketAddr, zone: &str, timeout: Duration) -> Result<u32, String> {
    let msg = question(&fqdn(zone), RecordType::SOA)?;
    let answer = udp(server, &msg, timeout)?;
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(format!(
            "{server} answered {} for the SOA of {zone}",
            answer.metadata.response_code
        ));
    }
    if !answer.metadata.authoritative {
        return Err(format!("{server} is not authoritative for {zone}"));
    }
    answer
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| format!("{server} has no SOA for {zone}: not authoritative for it"))
}

/// Every record of `zone` by zone transfer (AXFR over TCP); the closing SOA is left out.
///
/// # Errors
/// Transfer refused (named as such), unreachable server, or a broken stream.
pub fn axfr(server: SocketAddr, zone: &str, timeout: Duration) -> Result<Vec<Rr>, String> {
    let msg = question(&fqdn(zone), RecordType::AXFR)?;
    let mut s = tcp_connect(server, timeout)?;
    tcp_send(&mut s, &msg)?;
    let mut records = Vec::new();
    let mut soa_seen = 0;
    while soa_seen < 2 {
        let answer = tcp_recv(&mut s)?;
        match answer.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::Refused | ResponseCode::NotAuth => {
                return Err(format!("{server} refused a zone transfer of {zone}"));
            }
            code => {
                return Err(format!(
                    "{server} answered {code} to a zone transfer of {zone}"
                ));
            }
        }
        if answer.answers.is_empty() {
            return Err(format!("{server} sent an empty zone transfer for {zone}"));
        }
        for r in &answer.answers {
            if r.record_type() == RecordType::SOA {
                soa_seen += 1;
                if soa_seen == 2 {
                    break;
                }
            }
            records.push(to_rr(r));
        }
    }
    Ok(records)
}

fn to_rr(r: &hickory_proto::rr::Record) -> Rr {
    Rr {
        name: r.name.to_ascii().to_ascii_lowercase(),
        rtype: r.record_type().to_string(),
        ttl: r.ttl,
        data: r.data.to_string(),
    }
}

/// `name` with a trailing dot.
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.", name.to_ascii_lowercase())
    }
}

/// The RRset `key` as the server serves it now (empty values when absent).
///
/// # Errors
/// The server does not answer.
pub fn read_rrset(
    server: std::net::SocketAddr,
    key: &super::provider::RrKey,
) -> Result<super::provider::RrState, String> {
    let rt = key.rtype.parse().map_err(|e| format!("{e:?}"))?;
    let rrs = lookup(server, &key.name, rt, Duration::from_secs(3))?;
    let mut values: Vec<String> = rrs.iter().map(|r| r.data.clone()).collect();
    values.sort();
    Ok(super::provider::RrState {
        ttl: rrs.first().map_or(0, |r| r.ttl),
        values,
    })
}
