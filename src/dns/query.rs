//! Plain DNS queries straight to one authoritative server, over UDP with TCP fallback, and AXFR;
//! signed with the plan's TSIG key where the server wants it (see `tsig`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::provider::{DnsError, now};
use super::tsig::{Auth, TsigKey, Verifier};

/// One resource record as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rr {
    /// Fully qualified, lower case, with the trailing dot.
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

fn question(name: &str, rtype: RecordType) -> Result<Message, DnsError> {
    question_rd(name, rtype, false)
}

fn question_rd(name: &str, rtype: RecordType, recurse: bool) -> Result<Message, DnsError> {
    let name = Name::from_str(name)
        .map_err(|e| DnsError::Invalid(format!("`{name}` is not a DNS name: {e}")))?;
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

fn unreachable(server: SocketAddr, message: impl ToString) -> DnsError {
    DnsError::Unreachable {
        server: server.to_string(),
        message: message.to_string(),
    }
}

fn bad_answer(server: SocketAddr, message: impl ToString) -> DnsError {
    DnsError::Query {
        server: server.to_string(),
        message: message.to_string(),
    }
}

/// One UDP exchange: the answer as received and decoded.
fn udp(
    server: SocketAddr,
    msg: &Message,
    timeout: Duration,
) -> Result<(Vec<u8>, Message), DnsError> {
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| unreachable(server, e))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| unreachable(server, e))?;
    sock.connect(server).map_err(|e| unreachable(server, e))?;
    let bytes = msg.to_vec().map_err(|e| DnsError::Invalid(e.to_string()))?;
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        sock.send(&bytes)
            .map_err(|e| unreachable(server, format!("cannot send: {e}")))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let answer = Message::from_vec(&buf[..n])
                    .map_err(|e| bad_answer(server, format!("bad answer: {e}")))?;
                if answer.metadata.id == msg.metadata.id {
                    buf.truncate(n);
                    return Ok((buf, answer));
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
            Err(e) => return Err(unreachable(server, format!("no answer: {e}"))),
        }
    }
    Err(unreachable(server, "no answer (timed out)"))
}

fn tcp_connect(server: SocketAddr, timeout: Duration) -> Result<TcpStream, DnsError> {
    let s = TcpStream::connect_timeout(&server, timeout)
        .map_err(|e| unreachable(server, format!("over TCP: {e}")))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| unreachable(server, e))?;
    Ok(s)
}

fn tcp_send(server: SocketAddr, s: &mut TcpStream, msg: &Message) -> Result<(), DnsError> {
    let bytes = msg.to_vec().map_err(|e| DnsError::Invalid(e.to_string()))?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).map_err(|e| unreachable(server, e))
}

fn tcp_recv(server: SocketAddr, s: &mut TcpStream) -> Result<(Vec<u8>, Message), DnsError> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| unreachable(server, format!("TCP answer cut short: {e}")))?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)
        .map_err(|e| unreachable(server, format!("TCP answer cut short: {e}")))?;
    let answer =
        Message::from_vec(&buf).map_err(|e| bad_answer(server, format!("bad TCP answer: {e}")))?;
    Ok((buf, answer))
}

/// Signs `msg` when `key` is given (with a fresh id) and returns the verifier of its answers.
fn sign(
    server: SocketAddr,
    msg: &mut Message,
    key: Option<&TsigKey>,
) -> Result<Option<Verifier>, DnsError> {
    match key {
        Some(k) => {
            msg.metadata.id = rand_id();
            Ok(Some(k.sign(msg, server, now())?))
        }
        None => Ok(None),
    }
}

/// One question and its answer, over UDP then TCP when truncated, signed by `key` when given:
/// the answer's signature is then checked, whatever its response code (NOTAUTH is a rejection).
fn ask_once(
    server: SocketAddr,
    mut msg: Message,
    timeout: Duration,
    key: Option<&TsigKey>,
) -> Result<Message, DnsError> {
    let verifier = sign(server, &mut msg, key)?;
    let (mut bytes, mut answer) = udp(server, &msg, timeout)?;
    if answer.metadata.truncation {
        let mut s = tcp_connect(server, timeout)?;
        tcp_send(server, &mut s, &msg)?;
        (bytes, answer) = tcp_recv(server, &mut s)?;
    }
    if let Some(mut v) = verifier {
        v.verify(&bytes, &answer, now())?;
        v.finish()?;
    }
    Ok(answer)
}

/// `ask_once` as `auth` says: unsigned, signed, or unsigned then signed when refused.
fn ask(
    server: SocketAddr,
    msg: Message,
    timeout: Duration,
    auth: Auth<'_>,
) -> Result<Message, DnsError> {
    match auth {
        Auth::None => ask_once(server, msg, timeout, None),
        Auth::Signed(k) => ask_once(server, msg, timeout, Some(k)),
        Auth::OnRefusal(k) => {
            let answer = ask_once(server, msg.clone(), timeout, None)?;
            if answer.metadata.response_code == ResponseCode::Refused {
                ask_once(server, msg, timeout, Some(k))
            } else {
                Ok(answer)
            }
        }
    }
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
    lookup_with(server, name, rtype, timeout, Auth::None).map_err(|e| e.to_string())
}

/// `lookup`, authenticated as `auth` says.
///
/// # Errors
/// As `lookup`; `TsigRejected` when the server rejects the key or its answer is not signed by it.
pub fn lookup_with(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
    auth: Auth<'_>,
) -> Result<Vec<Rr>, DnsError> {
    let answer = ask(server, question(name, rtype)?, timeout, auth)?;
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => {
            return Err(bad_answer(
                server,
                format!("answered {code} for {name} {rtype}"),
            ));
        }
    }
    if !answer.metadata.authoritative
        && answer.metadata.response_code == ResponseCode::NoError
        && rtype == RecordType::SOA
        && answer.answers.is_empty()
    {
        return Err(DnsError::NotAuthoritative {
            zone: name.to_string(),
            server: server.to_string(),
        });
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
    let msg = question_rd(name, rtype, true).map_err(|e| e.to_string())?;
    let (_, answer) = udp(server, &msg, timeout).map_err(|e| e.to_string())?;
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
    soa_serial_with(server, zone, timeout, Auth::None).map_err(|e| e.to_string())
}

/// `soa_serial`, authenticated as `auth` says.
///
/// # Errors
/// As `soa_serial`; `TsigRejected` when the server rejects the key or its answer is not signed
/// by it.
pub fn soa_serial_with(
    server: SocketAddr,
    zone: &str,
    timeout: Duration,
    auth: Auth<'_>,
) -> Result<u32, DnsError> {
    let answer = ask(
        server,
        question(&fqdn(zone), RecordType::SOA)?,
        timeout,
        auth,
    )?;
    let not_authoritative = || DnsError::NotAuthoritative {
        zone: zone.to_string(),
        server: server.to_string(),
    };
    match answer.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::Refused | ResponseCode::NotZone => return Err(not_authoritative()),
        code => {
            return Err(bad_answer(
                server,
                format!("answered {code} for the SOA of {zone}"),
            ));
        }
    }
    if !answer.metadata.authoritative {
        return Err(not_authoritative());
    }
    answer
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(not_authoritative)
}

/// Every record of `zone` by zone transfer (AXFR over TCP); the closing SOA is left out. When
/// signed, every message's signature is checked (RFC 8945 5.3.1), the last one included.
///
/// # Errors
/// Transfer refused (`TransferRefused`), key rejected (`TsigRejected`), unreachable server, or
/// a broken stream.
pub fn axfr(
    server: SocketAddr,
    zone: &str,
    timeout: Duration,
    auth: Auth<'_>,
) -> Result<Vec<Rr>, DnsError> {
    let msg = question(&fqdn(zone), RecordType::AXFR)?;
    match auth {
        Auth::None => axfr_once(server, zone, msg, timeout, None),
        Auth::Signed(k) => axfr_once(server, zone, msg, timeout, Some(k)),
        Auth::OnRefusal(k) => match axfr_once(server, zone, msg.clone(), timeout, None) {
            Err(DnsError::TransferRefused { .. }) => axfr_once(server, zone, msg, timeout, Some(k)),
            other => other,
        },
    }
}

fn axfr_once(
    server: SocketAddr,
    zone: &str,
    mut msg: Message,
    timeout: Duration,
    key: Option<&TsigKey>,
) -> Result<Vec<Rr>, DnsError> {
    let mut verifier = sign(server, &mut msg, key)?;
    let mut s = tcp_connect(server, timeout)?;
    tcp_send(server, &mut s, &msg)?;
    let mut records = Vec::new();
    let mut soa_seen = 0;
    while soa_seen < 2 {
        let (bytes, answer) = tcp_recv(server, &mut s)?;
        if let (Some(reason), Some(k)) = (super::tsig::rejection(&answer), key) {
            return Err(DnsError::TsigRejected {
                key: k.name().to_string(),
                server: server.to_string(),
                reason,
            });
        }
        match answer.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::Refused | ResponseCode::NotAuth => {
                return Err(DnsError::TransferRefused {
                    zone: zone.to_string(),
                    server: server.to_string(),
                    hint: match key {
                        Some(k) => format!(
                            "with the TSIG key `{}`: is the key in the zone's allow-transfer?",
                            k.name()
                        ),
                        None => "unsigned: if it allows transfers only with a TSIG key, give the provider its `tsig`".into(),
                    },
                });
            }
            code => {
                return Err(bad_answer(
                    server,
                    format!("answered {code} to a zone transfer of {zone}"),
                ));
            }
        }
        if let Some(v) = verifier.as_mut() {
            v.verify(&bytes, &answer, now())?;
        }
        if answer.answers.is_empty() {
            return Err(bad_answer(
                server,
                format!("sent an empty zone transfer for {zone}"),
            ));
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
    if let Some(v) = &verifier {
        v.finish()?;
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
    read_rrset_with(server, key, Auth::None).map_err(|e| e.to_string())
}

/// `read_rrset`, authenticated as `auth` says.
///
/// # Errors
/// As `lookup_with`.
pub fn read_rrset_with(
    server: std::net::SocketAddr,
    key: &super::provider::RrKey,
    auth: Auth<'_>,
) -> Result<super::provider::RrState, DnsError> {
    let rt = key
        .rtype
        .parse()
        .map_err(|e| DnsError::Invalid(format!("type `{}`: {e}", key.rtype)))?;
    let rrs = lookup_with(server, &key.name, rt, Duration::from_secs(3), auth)?;
    let mut values: Vec<String> = rrs.iter().map(|r| r.data.clone()).collect();
    values.sort();
    Ok(super::provider::RrState {
        ttl: rrs.first().map_or(0, |r| r.ttl),
        values,
    })
}
