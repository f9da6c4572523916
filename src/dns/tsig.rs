//! TSIG (RFC 8945) in one place: the plan's key, signing a request, and checking the server's
//! signature on an answer or on every message of a zone transfer, for updates and reads alike.

use std::net::SocketAddr;
use std::str::FromStr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, signed_bitmessage_to_buf};
use hickory_proto::rr::{Name, TSigner};

use super::provider::DnsError;
use crate::plan::{DnsProvider, DnsSpec};

/// How many unsigned messages a transfer may send in a row (RFC 8945 5.3.1: at most 99).
const MAX_UNSIGNED: usize = 99;

/// A TSIG key: its name and the signer holding the secret (never printed).
#[derive(Clone)]
pub struct TsigKey {
    name: String,
    signer: TSigner,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsigKey({}, <secret>)", self.name)
    }
}

/// Maps a plan's algorithm name to hickory's.
fn algorithm(name: &str) -> Result<TsigAlgorithm, DnsError> {
    match name.to_ascii_lowercase().as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        other => Err(DnsError::Invalid(format!(
            "unsupported TSIG algorithm `{other}`"
        ))),
    }
}

impl TsigKey {
    /// A key from its name, algorithm (`hmac-sha256`...) and Base64 secret.
    ///
    /// # Errors
    /// A secret that is not Base64, a bad key name or an unsupported algorithm.
    pub fn new(name: &str, alg: &str, secret: &str) -> Result<TsigKey, DnsError> {
        let key = data_encoding::BASE64
            .decode(secret.trim().as_bytes())
            .map_err(|e| {
                DnsError::Invalid(format!("TSIG secret of `{name}` is not base64: {e}"))
            })?;
        let signer_name = Name::from_str(name)
            .map_err(|e| DnsError::Invalid(format!("TSIG key name `{name}`: {e}")))?;
        let signer = TSigner::new(key, algorithm(alg)?, signer_name, 300)
            .map_err(|e| DnsError::Invalid(e.to_string()))?;
        Ok(TsigKey {
            name: name.to_string(),
            signer,
        })
    }

    /// The key's name, as the plan gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `message` (with its final id) at `now` (unix seconds); the verifier checks the
    /// answers to it, from `server`.
    ///
    /// # Errors
    /// The message cannot be encoded.
    pub fn sign(
        &self,
        message: &mut Message,
        server: SocketAddr,
        now: u64,
    ) -> Result<Verifier, DnsError> {
        message
            .finalize(&self.signer, now)
            .map_err(|e| DnsError::Invalid(e.to_string()))?;
        let mac = message
            .signature()
            .map(|s| s.data.mac.clone())
            .ok_or_else(|| DnsError::Invalid("the request was not signed".into()))?;
        Ok(Verifier {
            key: self.clone(),
            server: server.to_string(),
            previous_mac: mac,
            unsigned: Vec::new(),
            unsigned_count: 0,
            signed_seen: false,
            last_time: 0,
        })
    }
}

/// The server's TSIG rejection of our request, if the answer is one: NOTAUTH (or a TSIG error)
/// with the reason, e.g. `BADSIG`. Such answers are unsigned by design.
pub fn rejection(answer: &Message) -> Option<String> {
    let error = answer.signature().and_then(|s| s.data.error);
    if answer.metadata.response_code != ResponseCode::NotAuth && error.is_none() {
        return None;
    }
    Some(match error {
        Some(TsigError::BadSig) => "BADSIG: the server has another secret for this key".into(),
        Some(TsigError::BadKey) => {
            "BADKEY: the server knows no key of this name and algorithm".into()
        }
        Some(TsigError::BadTime) => {
            "BADTIME: our clock and the server's differ by more than 300 s".into()
        }
        Some(TsigError::BadTrunc) => "BADTRUNC".into(),
        Some(TsigError::Unknown(code)) => format!("TSIG error {code}"),
        None => "NOTAUTH".into(),
    })
}

/// Checks the server's signatures on the answers to one signed request, in order: one answer,
/// or every message of a zone transfer (RFC 8945 5.3.1: the first and the last are signed, up
/// to 99 in a row may be unsigned, each signature covers the unsigned ones before it).
pub struct Verifier {
    key: TsigKey,
    server: String,
    /// The MAC of the request, then of the last signed answer.
    previous_mac: Vec<u8>,
    /// The unsigned messages since the last signed one, as received.
    unsigned: Vec<u8>,
    unsigned_count: usize,
    signed_seen: bool,
    last_time: u64,
}

impl Verifier {
    fn rejected(&self, reason: impl Into<String>) -> DnsError {
        DnsError::TsigRejected {
            key: self.key.name.clone(),
            server: self.server.clone(),
            reason: reason.into(),
        }
    }

    /// Checks one answer (`bytes` as received, `answer` decoded from them) at `now`.
    ///
    /// # Errors
    /// `TsigRejected`: the server rejected our key, or the answer is not signed by it (forged,
    /// altered, out of time, or too many unsigned messages).
    pub fn verify(&mut self, bytes: &[u8], answer: &Message, now: u64) -> Result<(), DnsError> {
        if let Some(reason) = rejection(answer) {
            return Err(self.rejected(reason));
        }
        let Some(sig) = answer.signature() else {
            if !self.signed_seen {
                return Err(self.rejected("the answer is not signed"));
            }
            self.unsigned_count += 1;
            if self.unsigned_count > MAX_UNSIGNED {
                return Err(self.rejected(format!(
                    "more than {MAX_UNSIGNED} unsigned messages in a row"
                )));
            }
            self.unsigned.extend_from_slice(bytes);
            return Ok(());
        };
        if sig.name != *self.key.signer.signer_name()
            || sig.data.algorithm != *self.key.signer.algorithm()
        {
            return Err(self.rejected(format!(
                "the answer is signed with another key ({})",
                sig.name
            )));
        }
        // The first answer covers the whole TSIG record; later ones only its timers, and the
        // unsigned messages between (RFC 8945 4.3.1, 5.3.1).
        let first = !self.signed_seen;
        let (body, _) = signed_bitmessage_to_buf(bytes, None, first)
            .map_err(|e| self.rejected(format!("unreadable signature: {e}")))?;
        let mut tbs =
            Vec::with_capacity(2 + self.previous_mac.len() + self.unsigned.len() + body.len());
        tbs.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
        tbs.extend_from_slice(&self.previous_mac);
        tbs.extend_from_slice(&self.unsigned);
        tbs.extend_from_slice(&body);
        self.key
            .signer
            .verify(&tbs, &sig.data.mac)
            .map_err(|_| self.rejected("the answer's signature does not verify with the key"))?;
        let (time, fudge) = (sig.data.time, u64::from(sig.data.fudge));
        if now.abs_diff(time) > fudge || time < self.last_time {
            return Err(self.rejected(format!(
                "the answer was signed at {time}, our clock says {now} (fudge {fudge} s)"
            )));
        }
        self.previous_mac = sig.data.mac.clone();
        self.unsigned.clear();
        self.unsigned_count = 0;
        self.signed_seen = true;
        self.last_time = time;
        Ok(())
    }

    /// After the last message: it must have been signed.
    ///
    /// # Errors
    /// `TsigRejected` when the last message carried no signature.
    pub fn finish(&self) -> Result<(), DnsError> {
        if self.signed_seen && self.unsigned_count == 0 {
            Ok(())
        } else {
            Err(self.rejected("the last message of the answer is not signed"))
        }
    }
}

/// The plan's TSIG key and the primary it belongs to (an `rfc2136` provider with `tsig`).
#[derive(Debug, Clone)]
pub struct PlanKey {
    pub primary: SocketAddr,
    pub key: TsigKey,
}

/// How a read is authenticated.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// Unsigned first, signed when the server refuses: a primary may allow transfers only with
    /// the key, while a secondary may not know it (it would answer BADKEY) and a key may be
    /// allowed to update only (Knot's ACLs), with unsigned transfers open to our address.
    OnRefusal(&'a TsigKey),
    /// Always signed: checking the key itself.
    Signed(&'a TsigKey),
}

impl PlanKey {
    /// How to read from any server (transfers and questions): signed when it refuses unsigned
    /// ones. A wrong key is caught by `check_plan_key`, which always signs.
    pub fn auth(&self) -> Auth<'_> {
        Auth::OnRefusal(&self.key)
    }
}

/// The plan's TSIG key, when its provider is `rfc2136` with `tsig`.
///
/// # Errors
/// A secret that cannot be read (environment, file) or decoded.
pub fn plan_key(spec: &DnsSpec) -> Result<Option<PlanKey>, DnsError> {
    let DnsProvider::Rfc2136 {
        server,
        tsig: Some(t),
    } = &spec.provider
    else {
        return Ok(None);
    };
    let secret = t
        .secret
        .resolve()
        .map_err(|e| DnsError::Invalid(format!("TSIG key `{}`: {e}", t.name)))?;
    Ok(Some(PlanKey {
        primary: *server,
        key: TsigKey::new(&t.name, &t.algorithm, secret.expose())?,
    }))
}

/// What the key check found: the key works, there is no key, or its secret cannot be read here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    NoKey,
    /// The secret's environment variable or file is not available (why, without the secret).
    SecretUnavailable(String),
    /// The primary answered a signed SOA query of `zone` with a valid signature.
    Accepted {
        key: String,
        server: String,
    },
}

/// Checks the plan's TSIG key before anything depends on it: a signed SOA query of the plan's
/// first zone to the primary, whose answer must be signed by the same key.
///
/// # Errors
/// `TsigRejected` (wrong secret, unknown key: named with the key and server, never the secret),
/// `Unreachable`, or a secret that cannot be read.
pub fn check_plan_key(spec: &DnsSpec) -> Result<KeyCheck, DnsError> {
    if let DnsProvider::Rfc2136 { tsig: Some(t), .. } = &spec.provider
        && let Err(e) = t.secret.resolve()
    {
        return Ok(KeyCheck::SecretUnavailable(format!(
            "TSIG key `{}`: {e}",
            t.name
        )));
    }
    let Some(plan_key) = plan_key(spec)? else {
        return Ok(KeyCheck::NoKey);
    };
    let zone = spec.zones.first().map_or(".", String::as_str);
    super::query::soa_serial_with(
        plan_key.primary,
        zone,
        std::time::Duration::from_secs(3),
        Auth::Signed(&plan_key.key),
    )
    .map(|_| KeyCheck::Accepted {
        key: plan_key.key.name.clone(),
        server: plan_key.primary.to_string(),
    })
    .or_else(|e| match e {
        // The key verified but the server is not authoritative for the zone: the key is fine,
        // the zone is another check's business.
        DnsError::NotAuthoritative { .. } => Ok(KeyCheck::Accepted {
            key: plan_key.key.name.clone(),
            server: plan_key.primary.to_string(),
        }),
        e => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::tsig::{TSIG, make_tsig_record};
    use hickory_proto::rr::{RData, Record, RecordType, TSigResponseContext};

    const SECRET: &str = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IHNlY3I=";
    const NOW: u64 = 1_700_000_000;

    fn server() -> SocketAddr {
        "192.0.2.53:53".parse().unwrap()
    }

    fn request(key: &TsigKey) -> (Message, Verifier) {
        let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_str("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        let v = key.sign(&mut q, server(), NOW).unwrap();
        (q, v)
    }

    fn answer(records: &[&str]) -> Message {
        let mut a = Message::new(4242, MessageType::Response, OpCode::Query);
        for r in records {
            a.add_answer(Record::from_rdata(
                Name::from_str(r).unwrap(),
                60,
                RData::A("192.0.2.10".parse().unwrap()),
            ));
        }
        a
    }

    /// A server's first answer, signed as BIND does (request MAC, answer, whole TSIG record).
    fn sign_first(key: &TsigKey, request_mac: &[u8], mut a: Message, time: u64) -> Vec<u8> {
        let unsigned = a.to_vec().unwrap();
        let ctx = TSigResponseContext::new(
            a.metadata.id,
            time,
            key.signer.clone(),
            request_mac.to_vec(),
            None,
        );
        a.set_signature(ctx.sign(&unsigned).unwrap());
        a.to_vec().unwrap()
    }

    /// A later message of a transfer, signed over the previous MAC, the unsigned messages in
    /// between, this message and the timers only (RFC 8945 5.3.1), computed here by hand.
    fn sign_next(
        key: &TsigKey,
        previous_mac: &[u8],
        between: &[u8],
        mut a: Message,
        time: u64,
    ) -> Vec<u8> {
        let unsigned = a.to_vec().unwrap();
        let mut tbs = (previous_mac.len() as u16).to_be_bytes().to_vec();
        tbs.extend_from_slice(previous_mac);
        tbs.extend_from_slice(between);
        tbs.extend_from_slice(&unsigned);
        tbs.extend_from_slice(&((time >> 32) as u16).to_be_bytes());
        tbs.extend_from_slice(&(time as u32).to_be_bytes());
        tbs.extend_from_slice(&300u16.to_be_bytes());
        let mac = key.signer.sign(&tbs).unwrap();
        let tsig = TSIG::new(
            key.signer.algorithm().clone(),
            time,
            300,
            mac,
            a.metadata.id,
            None,
            Vec::new(),
        );
        a.set_signature(Box::new(make_tsig_record(
            key.signer.signer_name().clone(),
            tsig,
        )));
        a.to_vec().unwrap()
    }

    fn mac_of(bytes: &[u8]) -> Vec<u8> {
        Message::from_vec(bytes)
            .unwrap()
            .signature()
            .unwrap()
            .data
            .mac
            .clone()
    }

    fn check(v: &mut Verifier, bytes: &[u8]) -> Result<(), DnsError> {
        v.verify(bytes, &Message::from_vec(bytes).unwrap(), NOW)
    }

    /// BIND 9.18's signed answer to our signed SOA query (id 0x1234, `example.test.`), captured
    /// with its key: our verifier takes what a real server sends.
    #[test]
    fn an_answer_captured_from_bind_verifies() {
        const BIND_SECRET: &str = "NIU1L2N0UUOSCdIOEtlWBwdSV+oCUeHOIkn1dKW+UBQ=";
        const SIGNED_AT: u64 = 1_796_218_941;
        const ANSWER: &str = "123484000001000100010002076578616d706c6504746573740000060001c00c000600010000003c0027036e7331c00c0a686f73746d6173746572c00c000000010000003c0000003c000002580000003cc00c000200010000003c0002c02ac02a000100010000003c00047f000001066d69676b65790000fa00ff00000000003d0b686d61632d7368613235360000006b10203d012c0020e95ef8de39db6e4e7c0f36648ac524ae5b4b52928e34462853a70f1eb8a6a984123400000000";
        let key = TsigKey::new("migkey", "hmac-sha256", BIND_SECRET).unwrap();
        let verifier = || {
            let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
            q.add_query(Query::query(
                Name::from_str("example.test.").unwrap(),
                RecordType::SOA,
            ));
            key.sign(&mut q, server(), SIGNED_AT).unwrap()
        };
        let bytes = data_encoding::HEXLOWER.decode(ANSWER.as_bytes()).unwrap();
        let answer = Message::from_vec(&bytes).unwrap();
        let mut v = verifier();
        v.verify(&bytes, &answer, SIGNED_AT + 10).unwrap();
        v.finish().unwrap();
        // Too late by more than the fudge (300 s).
        assert!(verifier().verify(&bytes, &answer, SIGNED_AT + 400).is_err());
        // The SOA serial changed in transit.
        let mut altered = bytes.clone();
        let at = data_encoding::HEXLOWER
            .decode(b"000000010000003c")
            .map(|serial| altered.windows(8).position(|w| w == serial).unwrap())
            .unwrap();
        altered[at + 3] = 2;
        let e = verifier()
            .verify(&altered, &Message::from_vec(&altered).unwrap(), SIGNED_AT)
            .unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }

    #[test]
    fn a_signed_answer_verifies_and_an_altered_or_foreign_one_does_not() {
        let key = TsigKey::new("migkey", "hmac-sha256", SECRET).unwrap();
        let (q, mut v) = request(&key);
        let request_mac = q.signature().unwrap().data.mac.clone();
        let good = sign_first(&key, &request_mac, answer(&["www.example.test."]), NOW + 5);
        check(&mut v, &good).unwrap();
        v.finish().unwrap();

        // One bit changed in the answer's data.
        let (_, mut v) = request(&key);
        let mut altered = good.clone();
        let at = altered
            .windows(4)
            .position(|w| w == [192, 0, 2, 10])
            .unwrap();
        altered[at + 3] = 11;
        let e = check(&mut v, &altered).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");

        // Signed by the same key name with another secret.
        let other = TsigKey::new("migkey", "hmac-sha256", "b3RoZXIgb3RoZXIgb3RoZXI=").unwrap();
        let forged = sign_first(&other, &request_mac, answer(&["www.example.test."]), NOW);
        let (_, mut v) = request(&key);
        assert!(check(&mut v, &forged).is_err());

        // Unsigned, or signed too long ago.
        let (_, mut v) = request(&key);
        let e = check(&mut v, &answer(&["www.example.test."]).to_vec().unwrap()).unwrap_err();
        assert!(e.to_string().contains("not signed"), "{e}");
        let old = sign_first(
            &key,
            &request_mac,
            answer(&["www.example.test."]),
            NOW - 3600,
        );
        let (_, mut v) = request(&key);
        assert!(check(&mut v, &old).is_err());
    }

    #[test]
    fn a_transfer_verifies_across_unsigned_messages_and_needs_a_signed_last_one() {
        let key = TsigKey::new("migkey.", "hmac-sha512", SECRET).unwrap();
        let (q, mut v) = request(&key);
        let first = sign_first(
            &key,
            &q.signature().unwrap().data.mac,
            answer(&["a.example.test."]),
            NOW,
        );
        let middle = answer(&["b.example.test."]).to_vec().unwrap();
        let last = sign_next(
            &key,
            &mac_of(&first),
            &middle,
            answer(&["c.example.test."]),
            NOW + 1,
        );
        check(&mut v, &first).unwrap();
        check(&mut v, &middle).unwrap();
        assert!(
            v.finish().is_err(),
            "an unsigned message cannot end the transfer"
        );
        check(&mut v, &last).unwrap();
        v.finish().unwrap();

        // The same last message without the unsigned one before it does not verify.
        let (_, mut v) = request(&key);
        check(&mut v, &first).unwrap();
        assert!(check(&mut v, &last).is_err());
    }

    #[test]
    fn a_rejection_names_the_reason() {
        let key = TsigKey::new("migkey", "hmac-sha256", SECRET).unwrap();
        let mut a = answer(&[]);
        a.metadata.response_code = ResponseCode::NotAuth;
        let tsig = TSIG::new(
            TsigAlgorithm::HmacSha256,
            NOW,
            300,
            Vec::new(),
            4242,
            Some(TsigError::BadSig),
            Vec::new(),
        );
        a.set_signature(Box::new(make_tsig_record(
            Name::from_str("migkey.").unwrap(),
            tsig,
        )));
        let (_, mut v) = request(&key);
        let e = check(&mut v, &a.to_vec().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "TSIG key `migkey` rejected by 192.0.2.53:53 (BADSIG: the server has another secret for this key): check the key name, algorithm and secret"
        );
        assert!(!format!("{key:?}").contains(SECRET));
    }
}
