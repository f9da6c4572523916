//! RFC 2136 dynamic updates signed with TSIG: each RRset changes by compare-and-swap.
//!
//! One signed message carries the prerequisite (the exact values we read), the delete and
//! the add, so the server applies all of it or none, and a concurrent edit is detected.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode, UpdateMessage, update_message};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType};

use super::provider::{DnsError, RrKey, RrState, Swap};
use super::tsig::{Auth, TsigKey};

/// A primary server that takes signed updates.
pub struct Rfc2136 {
    server: SocketAddr,
    key: Option<TsigKey>,
    timeout: Duration,
    /// One TCP connection reused for every update (servers take many messages on one).
    stream: std::sync::Mutex<Option<TcpStream>>,
}

impl Rfc2136 {
    /// A server, with an optional TSIG key (`name`, `algorithm`, base64 `secret`).
    ///
    /// # Errors
    /// A key that does not decode or an unsupported algorithm.
    pub fn new(server: SocketAddr, tsig: Option<(&str, &str, &str)>) -> Result<Rfc2136, DnsError> {
        let key = match tsig {
            None => None,
            Some((name, alg, secret)) => Some(TsigKey::new(name, alg, secret)?),
        };
        Ok(Rfc2136 {
            server,
            key,
            timeout: Duration::from_secs(10),
            stream: std::sync::Mutex::new(None),
        })
    }

    /// The RRset as the server serves it now, asked with the key when the server refuses an
    /// unsigned question.
    ///
    /// # Errors
    /// The server does not answer, or rejects the key.
    pub fn read(&self, key: &RrKey) -> Result<RrState, String> {
        let auth = self.key.as_ref().map_or(Auth::None, Auth::OnRefusal);
        super::query::read_rrset_with(self.server, key, auth).map_err(|e| e.to_string())
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Replaces `current` by `new` for `name`/`rtype`, only if the server still holds `current`.
    ///
    /// # Errors
    /// The values changed meanwhile (`Changed`), the key was rejected, the server refused or is
    /// unreachable: nothing was changed in any of these cases.
    pub fn compare_and_swap(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        current: &RrState,
        new: &RrState,
    ) -> Result<(), DnsError> {
        self.swap_all(
            zone,
            &[Swap {
                name,
                rtype,
                current,
                new,
            }],
        )
    }

    /// Swaps many RRsets of one zone in ONE update: the server applies all or none, and any
    /// RRset changed meanwhile fails the whole message (`Changed`, naming the first).
    ///
    /// # Errors
    /// As `compare_and_swap`.
    pub fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError> {
        let Some(first) = swaps.first() else {
            return Ok(());
        };
        let zone_name = Name::from_str(&super::query::fqdn(zone))
            .map_err(|e| DnsError::Invalid(e.to_string()))?;
        let mut message: Option<Message> = None;
        for s in swaps {
            let owner = Name::from_str(&super::query::fqdn(s.name))
                .map_err(|e| DnsError::Invalid(e.to_string()))?;
            let rt = RecordType::from_str(s.rtype)
                .map_err(|e| DnsError::Invalid(format!("type `{}`: {e}", s.rtype)))?;
            let one = update_message::compare_and_swap(
                rrset(&owner, rt, s.current)?,
                rrset(&owner, rt, s.new)?,
                zone_name.clone(),
                false,
            );
            match message.as_mut() {
                None => message = Some(one),
                Some(m) => {
                    // Prerequisites first, then every delete and add, as one atomic update.
                    m.add_pre_requisites(one.answers.clone());
                    m.add_updates(one.authorities.clone());
                }
            }
        }
        let mut message = message.expect("at least one swap");
        message.metadata.id = message_id();
        let answer = self.exchange(&mut message)?;
        let server = self.server.to_string();
        let (name, rtype) = (first.name.to_string(), first.rtype.to_string());
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain => {
                // The same update may have landed already (an answer lost on UDP and the message
                // sent again): when every RRset holds our new values, that is success.
                let landed = swaps.iter().all(|s| {
                    let key = RrKey {
                        zone: zone.into(),
                        name: s.name.into(),
                        rtype: s.rtype.into(),
                    };
                    self.read(&key)
                        .is_ok_and(|now| now.values == s.new.values && now.ttl == s.new.ttl)
                });
                if landed {
                    Ok(())
                } else {
                    Err(DnsError::Changed {
                        name,
                        rtype,
                        server,
                    })
                }
            }
            ResponseCode::Refused => Err(DnsError::Refused {
                zone: zone.into(),
                server,
            }),
            ResponseCode::NotZone => Err(DnsError::NotAuthoritative {
                zone: zone.into(),
                server,
            }),
            code => Err(DnsError::Failed {
                name,
                rtype,
                server,
                code: code.to_string(),
            }),
        }
    }

    /// One UDP exchange; `None` when it should be retried over TCP (lost, truncated).
    fn exchange_udp(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let bind = if self.server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = std::net::UdpSocket::bind(bind).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        sock.connect(self.server).ok()?;
        sock.send(bytes).ok()?;
        let mut buf = vec![0u8; 65535];
        let n = sock.recv(&mut buf).ok()?;
        buf.truncate(n);
        // TC flag: bit 1 of the third byte.
        if n < 12 || buf[2] & 0x02 != 0 || buf[..2] != bytes[..2] {
            return None;
        }
        Some(buf)
    }

    /// Sends a signed message (UDP, else TCP) and returns the verified answer.
    fn exchange(&self, message: &mut Message) -> Result<Message, DnsError> {
        let server = self.server.to_string();
        let unreachable = |e: std::io::Error| DnsError::Unreachable {
            server: server.clone(),
            message: e.to_string(),
        };
        let mut verifier = match &self.key {
            Some(key) => Some(key.sign(message, self.server, super::provider::now())?),
            None => None,
        };
        let bytes = message
            .to_vec()
            .map_err(|e| DnsError::Invalid(e.to_string()))?;
        // Small updates go over UDP (one datagram each way, as nsupdate does); a truncated or
        // lost answer, or a bigger message, goes over TCP.
        let udp = if bytes.len() <= 1232 {
            self.exchange_udp(&bytes)
        } else {
            None
        };
        let buf = match udp {
            Some(buf) => buf,
            None => {
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                let mut slot = self.stream.lock().unwrap_or_else(|p| p.into_inner());
                let mut attempt = 0;
                let buf = loop {
                    attempt += 1;
                    if slot.is_none() {
                        let s = TcpStream::connect_timeout(&self.server, self.timeout)
                            .map_err(unreachable)?;
                        s.set_read_timeout(Some(self.timeout))
                            .map_err(unreachable)?;
                        s.set_nodelay(true).map_err(unreachable)?;
                        *slot = Some(s);
                    }
                    let stream = slot.as_mut().expect("connected");
                    let sent = stream.write_all(&framed).and_then(|()| {
                        let mut len = [0u8; 2];
                        stream.read_exact(&mut len)?;
                        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                        stream.read_exact(&mut buf)?;
                        Ok(buf)
                    });
                    match sent {
                        Ok(buf) => break buf,
                        // The server may close an idle connection: one fresh try, then report.
                        Err(_) if attempt == 1 => *slot = None,
                        Err(e) => {
                            *slot = None;
                            return Err(unreachable(e));
                        }
                    }
                };
                drop(slot);
                buf
            }
        };
        let answer = Message::from_vec(&buf)
            .map_err(|e| DnsError::Invalid(format!("answer from {server}: {e}")))?;
        // A rejected key comes back NOTAUTH with a TSIG error and no valid signature: named
        // plainly by the verifier.
        match verifier.as_mut() {
            Some(v) => {
                v.verify(&buf, &answer, super::provider::now())?;
                v.finish()?;
            }
            None if answer.metadata.response_code == ResponseCode::NotAuth => {
                return Err(DnsError::Refused {
                    zone: String::new(),
                    server,
                });
            }
            None => {}
        }
        Ok(answer)
    }
}

fn rrset(owner: &Name, rt: RecordType, state: &RrState) -> Result<RecordSet, DnsError> {
    let mut set = RecordSet::with_ttl(owner.clone(), rt, state.ttl);
    set.set_dns_class(DNSClass::IN);
    for v in &state.values {
        let rdata = RData::try_from_str(rt, v)
            .map_err(|e| DnsError::Invalid(format!("{owner} {rt} `{v}`: {e}")))?;
        set.insert(Record::from_rdata(owner.clone(), state.ttl, rdata), 0);
    }
    Ok(set)
}

fn message_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos >> 3) as u16 ^ (std::process::id() as u16)
}
