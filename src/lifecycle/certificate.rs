//! A site's TLS certificate judged before DNS moves (issue 15): it must chain to a trusted root
//! (the public web roots, or the plan's CA file), cover the name asked for and stay valid for
//! the plan's margin. Chain and name are rustls's own verifier's verdict; the end of validity
//! is read from the certificate (rustls-webpki keeps it private, and a whole X.509 parser for
//! one field would add a dozen crates to the build).

use crate::der::tlv;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};

use super::probe::{ProbeResult, ProbeRound};
use crate::plan::{Plan, Site};

/// The roots a served certificate must chain to.
#[derive(Clone)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    /// The CA file's certificates, for the HTTP probe's own TLS settings (empty: web roots).
    ca: Vec<CertificateDer<'static>>,
    /// `the public web roots`, or `the CA file `…``.
    pub label: String,
}

impl Trust {
    /// The plan's CA file, or the public web roots (webpki-roots) without one.
    ///
    /// # Errors
    /// The file cannot be read or holds no certificate.
    pub fn load(ca_file: Option<&Path>) -> Result<Trust, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = RootCertStore::empty();
        let Some(path) = ca_file else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(Trust {
                roots: Arc::new(roots),
                ca: Vec::new(),
                label: "the public web roots".into(),
            });
        };
        let shown = path.display();
        let mut ca = Vec::new();
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read CA file `{shown}`: {e}"))?
        {
            let cert = cert.map_err(|e| format!("CA file `{shown}`: {e}"))?;
            roots
                .add(cert.clone())
                .map_err(|e| format!("CA file `{shown}`: {e}"))?;
            ca.push(cert);
        }
        if ca.is_empty() {
            return Err(format!("CA file `{shown}` holds no certificate"));
        }
        Ok(Trust {
            roots: Arc::new(roots),
            ca,
            label: format!("the CA file `{shown}`"),
        })
    }

    /// The CA file's certificates; empty when the public web roots are trusted.
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn verifier(&self) -> Result<Arc<WebPkiServerVerifier>, String> {
        WebPkiServerVerifier::builder_with_provider(self.roots.clone(), Self::provider())
            .build()
            .map_err(|e| e.to_string())
    }

    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let config = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Why a certificate will not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing answered in TLS there (refused, reset, plain HTTP, a failed handshake).
    NoTls(String),
    /// It does not chain to the trusted roots (unknown issuer, bad signature, wrong purpose).
    Untrusted(String),
    /// Valid, but not for the name asked: the names it holds.
    WrongName {
        name: String,
        presented: Vec<String>,
    },
    Expired(Option<SystemTime>),
    NotYetValid(Option<SystemTime>),
    /// Valid now, not for the margin: when it ends, and the margin.
    Expiring {
        not_after: SystemTime,
        margin: Duration,
    },
    /// No certificate (or key) file where the plan says.
    Missing(String),
    /// A file without a certificate that can be read.
    Unreadable(String),
}

impl Problem {
    /// Stable code, as the dry run's JSON gives it.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::NoTls(_) => "no_tls",
            Problem::Untrusted(_) => "untrusted",
            Problem::WrongName { .. } => "wrong_name",
            Problem::Expired(_) => "expired",
            Problem::NotYetValid(_) => "not_yet_valid",
            Problem::Expiring { .. } => "expiring",
            Problem::Missing(_) => "missing",
            Problem::Unreadable(_) => "unreadable",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoTls(why) => write!(f, "no TLS: {why}"),
            Problem::Untrusted(why) => write!(f, "untrusted: {why}"),
            Problem::WrongName { name, presented } if presented.is_empty() => {
                write!(f, "wrong name: not valid for {name} (it names no DNS name)")
            }
            Problem::WrongName { name, presented } => write!(
                f,
                "wrong name: not valid for {name}, only for {}",
                presented.join(", ")
            ),
            Problem::Expired(Some(t)) => write!(f, "expired on {}", date(*t)),
            Problem::Expired(None) => write!(f, "expired"),
            Problem::NotYetValid(Some(t)) => write!(f, "not valid before {}", date(*t)),
            Problem::NotYetValid(None) => write!(f, "not valid yet"),
            Problem::Expiring { not_after, margin } => write!(
                f,
                "expiring: valid until {}, less than the {} the plan requires (`cutover.tls.min_validity`)",
                date(*not_after),
                span(*margin)
            ),
            Problem::Missing(why) => write!(f, "missing: {why}"),
            Problem::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// A margin in words: `14 days`, else as humantime writes it.
pub fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 86_400 == 0 => match s / 86_400 {
            1 => "1 day".into(),
            n => format!("{n} days"),
        },
        _ => humantime::format_duration(d).to_string(),
    }
}

/// RFC 3339, seconds.
pub fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn system_time(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// What rustls's verdict means for the site; `trust` names the roots in the message.
pub fn classify(e: &rustls::Error, name: &str, trust: &Trust) -> Problem {
    let rustls::Error::InvalidCertificate(c) = e else {
        return Problem::NoTls(format!("TLS handshake failed: {e}"));
    };
    match c {
        CertificateError::Expired => Problem::Expired(None),
        CertificateError::ExpiredContext { not_after, .. } => {
            Problem::Expired(Some(system_time(*not_after)))
        }
        CertificateError::NotValidYet => Problem::NotYetValid(None),
        CertificateError::NotValidYetContext { not_before, .. } => {
            Problem::NotYetValid(Some(system_time(*not_before)))
        }
        CertificateError::NotValidForName => Problem::WrongName {
            name: name.to_string(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext { presented, .. } => Problem::WrongName {
            name: name.to_string(),
            // rustls gives the names as debug text: `DnsName("other.test")`.
            presented: presented
                .iter()
                .map(|p| {
                    p.strip_prefix("DnsName(\"")
                        .and_then(|n| n.strip_suffix("\")"))
                        .unwrap_or(p)
                        .to_string()
                })
                .collect(),
        },
        CertificateError::BadEncoding => {
            Problem::Unreadable("not a certificate rustls can parse".into())
        }
        other => Problem::Untrusted(format!(
            "does not chain to {} ({})",
            trust.label,
            in_words(&other.to_string())
        )),
    }
}

/// rustls names some errors by their variant only (`UnknownIssuer`): `unknown issuer`.
fn in_words(error: &str) -> String {
    if !error.chars().all(|c| c.is_ascii_alphanumeric()) {
        return error.to_string();
    }
    let mut out = String::new();
    for c in error.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Judges a chain (leaf first) for `name` at `now`: rustls's verifier for the chain and the
/// name, then the margin. The end of validity when it will do.
///
/// # Errors
/// Why it will not.
pub fn judge(
    chain: &[CertificateDer<'_>],
    name: &str,
    trust: &Trust,
    now: SystemTime,
    margin: Duration,
) -> Result<SystemTime, Problem> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(Problem::Unreadable("no certificate in it".into()));
    };
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| Problem::WrongName {
        name: format!("{name} ({e})"),
        presented: Vec::new(),
    })?;
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    trust
        .verifier()
        .map_err(Problem::Untrusted)?
        .verify_server_cert(
            leaf,
            intermediates,
            &server_name,
            &[],
            UnixTime::since_unix_epoch(since),
        )
        .map_err(|e| classify(&e, name, trust))?;
    within_margin(leaf, now, margin)
}

/// The leaf's end of validity, when it is at least `margin` away.
fn within_margin(
    leaf: &CertificateDer<'_>,
    now: SystemTime,
    margin: Duration,
) -> Result<SystemTime, Problem> {
    let end = not_after(leaf).ok_or_else(|| Problem::Unreadable("no validity period".into()))?;
    if end < now + margin {
        return Err(Problem::Expiring {
            not_after: end,
            margin,
        });
    }
    Ok(end)
}

/// Connects to `at`, handshakes with SNI `name` against `trust`, and judges what was served.
///
/// # Errors
/// Why the served certificate will not do, `no TLS` when there was none to judge.
pub fn served(
    name: &str,
    at: SocketAddr,
    trust: &Trust,
    margin: Duration,
    timeout: Duration,
) -> Result<SystemTime, Problem> {
    let mut tcp = TcpStream::connect_timeout(&at, timeout)
        .map_err(|e| Problem::NoTls(format!("cannot connect to {at}: {e}")))?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| Problem::NoTls(format!("`{name}` is not a TLS name: {e}")))?;
    let config = trust.client_config().map_err(Problem::NoTls)?;
    let mut conn = rustls::ClientConnection::new(config, server_name)
        .map_err(|e| Problem::NoTls(e.to_string()))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            // rustls's own verdict travels inside the I/O error.
            return Err(
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(tls) => classify(tls, name, trust),
                    None => Problem::NoTls(format!("TLS handshake with {at} failed: {e}")),
                },
            );
        }
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| Problem::NoTls(format!("{at} sent no certificate")))?;
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    within_margin(&leaf, SystemTime::now(), margin)
}

/// What the pre-switch probe asks of a site's certificates, when its new side must serve TLS:
/// the probe fetches `https://`, or the plan names certificate files for the site.
pub struct Wanted {
    trust: Result<Trust, String>,
    margin: Duration,
    timeout: Duration,
}

impl Wanted {
    /// `None` when the site's new side is not expected to serve TLS.
    pub fn for_site(plan: &Plan, site: &Site) -> Option<Wanted> {
        let probe = plan.cutover.probe.as_ref()?;
        let https = probe.url.as_str().starts_with("https://");
        if !https && plan.tls_files(site).is_none() {
            return None;
        }
        Some(Wanted {
            trust: Trust::load(probe.ca_file.as_deref()),
            margin: plan.cutover.tls.min_validity,
            timeout: probe.timeout,
        })
    }

    /// The trust the HTTP probe uses too (the CA file's certificates; empty: web roots).
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        self.trust.as_ref().map_or(&[], |t| t.ca_certificates())
    }

    /// The certificate `domain` gets at `address`, on the port of the probe URL `url` when it
    /// is `https://` (else 443), as a probe result.
    pub fn check(&self, domain: &str, url: &str, address: IpAddr) -> ProbeResult {
        let port = https_port(url).unwrap_or(443);
        let at = SocketAddr::new(address, port);
        let verdict = match &self.trust {
            Ok(trust) => served(domain, at, trust, self.margin, self.timeout).map(|end| {
                format!(
                    "certificate for {domain} served at {at}: chains to {}, valid until {} ({} days left)",
                    trust.label,
                    date(end),
                    end.duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .as_secs()
                        / 86_400
                )
            }),
            Err(e) => Err(Problem::Untrusted(e.clone())),
        };
        let (ok, detail) = match verdict {
            Ok(detail) => (true, detail),
            Err(p) => (
                false,
                format!("certificate for {domain} served at {at}: {p}"),
            ),
        };
        ProbeResult {
            domain: domain.to_string(),
            url: format!("tls://{domain}:{port}"),
            ok,
            detail,
            round: ProbeRound::BeforeSwitch,
        }
    }
}

/// The port of an `https://` URL (443 by default); `None` for any other scheme.
fn https_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    // `[v6]:port` or `host:port`.
    let port = match host_port.rfind(']') {
        Some(i) => host_port[i + 1..].strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, p)| p),
    };
    Some(port.and_then(|p| p.parse().ok()).unwrap_or(443))
}

// ---------------------------------------------------------------- reading certificates

/// The certificates of a PEM file, in order (leaf first in a chain file).
///
/// # Errors
/// A PEM section that cannot be decoded.
pub fn pem_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The DNS names a certificate is valid for (subject alternative names, wildcards kept).
pub fn names(leaf: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(ee) => ee.valid_dns_names().map(str::to_ascii_lowercase).collect(),
        Err(_) => Vec::new(),
    }
}

/// The issuer's organization and common name, such as `Let's Encrypt, R11`.
pub fn issuer(leaf: &CertificateDer<'_>) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(leaf).ok()?;
    let mut parts = Vec::new();
    // Name ::= SEQUENCE OF SET OF AttributeTypeAndValue { type OID, value string }
    let mut sets = ee.issuer();
    while let Some((_, set, rest)) = tlv(sets) {
        sets = rest;
        let Some((_, atv, _)) = tlv(set) else {
            continue;
        };
        let Some((0x06, oid, after)) = tlv(atv) else {
            continue;
        };
        let Some((_, value, _)) = tlv(after) else {
            continue;
        };
        // id-at-organizationName (2.5.4.10) and id-at-commonName (2.5.4.3).
        if oid == [0x55, 0x04, 0x0a] || oid == [0x55, 0x04, 0x03] {
            parts.push(String::from_utf8_lossy(value).into_owned());
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The end of a certificate's validity (`notAfter`), read from its DER (RFC 5280 4.1).
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = tlv(cert)? else {
        return None;
    };
    // version [0] EXPLICIT, absent in v1 certificates.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer: skipped.
    for _ in 0..3 {
        tbs = tlv(tbs)?.2;
    }
    let (SEQUENCE, validity, _) = tlv(tbs)? else {
        return None;
    };
    let after = tlv(validity)?.2;
    let (tag, value, _) = tlv(after)?;
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    // UTCTime YYMMDDHHMMSSZ (years 1950-2049) or GeneralizedTime YYYYMMDDHHMMSSZ.
    let full = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: u32 = digits[..2].parse().ok()?;
            format!("{}{digits}", if yy >= 50 { "19" } else { "20" })
        }
        (0x18, 14) => digits.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// Whether a certificate name (`example.org`, `*.example.org`) covers `domain`: a wildcard
/// stands for exactly one leftmost label, as browsers read it (RFC 6125 6.4.3).
pub fn name_covers(pattern: &str, domain: &str) -> bool {
    let (p, d) = (
        pattern.trim_end_matches('.').to_ascii_lowercase(),
        domain.trim_end_matches('.').to_ascii_lowercase(),
    );
    match p.strip_prefix("*.") {
        Some(parent) => d
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => p == d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl ca -selfsign -startdate 20261202140000Z -enddate 20271202140000Z`, subject
    /// `CN=fixture.test, O=Fixture CA`, names `example.org` and `*.example.org` (UTCTime).
    const FIXTURE: &str = "-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIBATAKBggqhkjOPQQDAjAsMRUwEwYDVQQDDAxmaXh0dXJl
LnRlc3QxEzARBgNVBAoMCkZpeHR1cmUgQ0EwHhcNMjYxMjAyMTQwMDAwWhcNMjcx
MjAyMTQwMDAwWjAsMRUwEwYDVQQDDAxmaXh0dXJlLnRlc3QxEzARBgNVBAoMCkZp
eHR1cmUgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASREVgQfkg0YuZXmpRb
wUHAQuKZw/7tTBYaZPnXcV6u5cYC26CV7be5m/gH5+m5befPhyqDGxUrciJLLLsH
ihJyo0gwRjAlBgNVHREEHjAcggtleGFtcGxlLm9yZ4INKi5leGFtcGxlLm9yZzAd
BgNVHQ4EFgQUDzub1QIXmUsrg4mE4osH17OtO8YwCgYIKoZIzj0EAwIDRwAwRAIg
N8FvT28ikbAhg15EZeTCUQi205/yiqEnfGjVg720TGYCIACCi9wjn3xnh776tBL/
VHsoZP1wD8MvpeixsAFl2KE8
-----END CERTIFICATE-----
";

    #[test]
    fn not_after_is_read_from_the_certificate() {
        let chain = pem_chain(FIXTURE.as_bytes()).unwrap();
        assert_eq!(chain.len(), 1);
        let end = not_after(&chain[0]).unwrap();
        assert_eq!(date(end), "2027-12-02T14:00:00Z");
        assert_eq!(not_after(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(not_after(&chain[0][..40]), None);
    }

    #[test]
    fn names_and_issuer_come_from_the_leaf() {
        let chain = pem_chain(FIXTURE.as_bytes()).unwrap();
        assert_eq!(names(&chain[0]), ["example.org", "*.example.org"]);
        assert_eq!(
            issuer(&chain[0]).as_deref(),
            Some("fixture.test, Fixture CA")
        );
    }

    #[test]
    fn a_self_signed_certificate_is_untrusted_by_the_web_roots() {
        let chain = pem_chain(FIXTURE.as_bytes()).unwrap();
        let trust = Trust::load(None).unwrap();
        let at = humantime::parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
        let verdict = judge(&chain, "example.org", &trust, at, Duration::ZERO);
        assert_eq!(verdict.unwrap_err().kind(), "untrusted");
    }

    /// The fixture trusted as its own CA: each verdict the probe and the dry run give.
    #[test]
    fn judged_for_trust_names_time_and_margin() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, FIXTURE).unwrap();
        let trust = Trust::load(Some(&ca)).unwrap();
        let chain = pem_chain(FIXTURE.as_bytes()).unwrap();
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        let day = Duration::from_secs(86_400);
        let end = judge(
            &chain,
            "www.example.org",
            &trust,
            at("2027-01-01T00:00:00Z"),
            day,
        );
        assert_eq!(date(end.unwrap()), "2027-12-02T14:00:00Z");
        let kind = |name: &str, when: &str, margin: Duration| {
            judge(&chain, name, &trust, at(when), margin)
                .unwrap_err()
                .kind()
        };
        let wrong = judge(
            &chain,
            "other.test",
            &trust,
            at("2027-01-01T00:00:00Z"),
            day,
        );
        assert_eq!(
            wrong.unwrap_err().to_string(),
            "wrong name: not valid for other.test, only for example.org, *.example.org"
        );
        assert_eq!(kind("example.org", "2028-01-01T00:00:00Z", day), "expired");
        assert_eq!(
            kind("example.org", "2026-11-01T00:00:00Z", day),
            "not_yet_valid"
        );
        assert_eq!(
            kind("example.org", "2027-11-25T00:00:00Z", 14 * day),
            "expiring"
        );
        assert!(Trust::load(Some(&dir.path().join("none.pem"))).is_err());
    }

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(name_covers("*.example.org", "www.example.org"));
        assert!(name_covers("WWW.Example.org.", "www.example.org"));
        assert!(!name_covers("*.example.org", "example.org"));
        assert!(!name_covers("*.example.org", "a.b.example.org"));
        assert!(!name_covers("example.org", "www.example.org"));
    }

    #[test]
    fn https_ports_come_from_the_probe_url() {
        assert_eq!(https_port("https://{domain}/"), Some(443));
        assert_eq!(https_port("https://shop.test:8443/x?y"), Some(8443));
        assert_eq!(https_port("https://[2001:db8::1]:9443/"), Some(9443));
        assert_eq!(https_port("https://[2001:db8::1]/"), Some(443));
        assert_eq!(https_port("http://shop.test:8080/"), None);
    }

    #[test]
    fn problems_say_what_is_wrong_in_words() {
        let t = humantime::parse_rfc3339("2025-04-01T00:00:00Z").unwrap();
        assert_eq!(
            Problem::Expired(Some(t)).to_string(),
            "expired on 2025-04-01T00:00:00Z"
        );
        let wrong = Problem::WrongName {
            name: "shop.test".into(),
            presented: vec!["other.test".into()],
        };
        assert_eq!(
            wrong.to_string(),
            "wrong name: not valid for shop.test, only for other.test"
        );
        let soon = Problem::Expiring {
            not_after: t,
            margin: Duration::from_secs(14 * 86_400),
        };
        assert!(soon.to_string().contains("less than the 14 days"), "{soon}");
    }
}
