//! Post-switch checks: a site's pages fetched through a chosen address (the new one, and the
//! old one to compare with) with the real Host header and TLS name, as a visitor will see them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// What one fetch gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub status: u16,
    /// The `<title>` text, trimmed, when the page has one.
    pub title: Option<String>,
    /// BLAKE3 of the body (first 16 hex digits).
    pub body_hash: String,
}

/// Sends every request of the agent to one fixed address, whatever the URL's host says: the
/// Host header and the TLS name stay the URL's (like `curl --resolve`).
#[derive(Debug)]
struct Pinned(IpAddr);

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let mut out = self.empty();
        out.push(SocketAddr::new(self.0, port));
        Ok(out)
    }
}

/// Fetches `url` from the server at `address` (redirects are not followed: a 301 is an answer).
/// `https://` certificates must chain to `ca` (the plan's CA file), or to the public web roots
/// when it is empty.
///
/// # Errors
/// The connection, TLS or the HTTP exchange failed (the reason, with the address).
pub fn fetch(
    url: &str,
    address: IpAddr,
    timeout: Duration,
    ca: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Page, String> {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false);
    if !ca.is_empty() {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots: Vec<Certificate<'static>> = ca
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        config = config.tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&roots))
                .build(),
        );
    }
    let config = config.build();
    let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), Pinned(address));
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("{url} through {address}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(4 << 20)
        .read_to_vec()
        .unwrap_or_default();
    Ok(Page {
        status,
        title: title(&body),
        body_hash: blake3::hash(&body).to_hex()[..16].to_string(),
    })
}

/// The text of the first `<title>` element, whitespace collapsed.
pub fn title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(
        text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// When a probe ran: through the new address before DNS moves (the proof that allows the
/// switch), or through what DNS gives once it has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRound {
    BeforeSwitch,
    #[default]
    AfterSwitch,
}

impl ProbeRound {
    pub fn label(self) -> &'static str {
        match self {
            ProbeRound::BeforeSwitch => "before the switch",
            ProbeRound::AfterSwitch => "after the switch",
        }
    }
}

/// How one domain of a site fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub domain: String,
    pub url: String,
    pub ok: bool,
    /// What was seen, or why it failed.
    pub detail: String,
    #[serde(default)]
    pub round: ProbeRound,
}

/// What to check for one domain.
pub struct ProbeSpec<'a> {
    pub url: String,
    pub domain: &'a str,
    pub new_address: IpAddr,
    /// The old address, to compare status and title with (the content check).
    pub old_address: Option<IpAddr>,
    pub expect: &'a [u16],
    pub timeout: Duration,
    pub compare_body: bool,
    /// The plan's CA file's certificates for `https://` (empty: the public web roots).
    pub ca: &'a [rustls::pki_types::CertificateDer<'static>],
}

/// Probes the new side, and compares with the old side when asked.
pub fn probe(spec: &ProbeSpec<'_>) -> ProbeResult {
    let result = |ok: bool, detail: String| ProbeResult {
        domain: spec.domain.to_string(),
        url: spec.url.clone(),
        ok,
        detail,
        round: ProbeRound::default(),
    };
    let new = match fetch(&spec.url, spec.new_address, spec.timeout, spec.ca) {
        Ok(p) => p,
        Err(e) => return result(false, e),
    };
    if !spec.expect.contains(&new.status) {
        return result(
            false,
            format!(
                "status {} through {} (expected {})",
                new.status,
                spec.new_address,
                spec.expect
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        );
    }
    let Some(old_address) = spec.old_address else {
        return result(
            true,
            format!("status {} through {}", new.status, spec.new_address),
        );
    };
    let old = match fetch(&spec.url, old_address, spec.timeout, spec.ca) {
        Ok(p) => p,
        // The old side gone is not the new side's fault: say so, and pass on the new side.
        Err(e) => {
            return result(
                true,
                format!(
                    "status {} through {}; old side not comparable ({e})",
                    new.status, spec.new_address
                ),
            );
        }
    };
    if old.status != new.status {
        return result(
            false,
            format!(
                "status {} through {} but {} through the old address {old_address}",
                new.status, spec.new_address, old.status
            ),
        );
    }
    if old.title != new.title {
        return result(
            false,
            format!(
                "title {:?} through {} but {:?} through the old address {old_address}",
                new.title.as_deref().unwrap_or(""),
                spec.new_address,
                old.title.as_deref().unwrap_or("")
            ),
        );
    }
    if spec.compare_body && old.body_hash != new.body_hash {
        return result(
            false,
            format!(
                "body differs from the old address {old_address} (BLAKE3 {} vs {})",
                new.body_hash, old.body_hash
            ),
        );
    }
    result(
        true,
        format!(
            "status {}{} through {}, same as the old side",
            new.status,
            new.title
                .as_deref()
                .map(|t| format!(", title {t:?}"))
                .unwrap_or_default(),
            spec.new_address
        ),
    )
}

pub use crate::plan::banner::{BannerUrl, parse_banner_url};

/// Connects to `address` and checks the service's greeting (`220` for SMTP, `* OK` for IMAP).
pub fn banner(url: &BannerUrl, address: IpAddr, timeout: Duration) -> ProbeResult {
    use std::io::{BufRead, BufReader};
    let shown = format!("{}://{}:{}", url.protocol, url.host, url.port);
    let result = |ok: bool, detail: String| ProbeResult {
        domain: url.host.clone(),
        url: shown.clone(),
        ok,
        detail,
        round: ProbeRound::default(),
    };
    let target = SocketAddr::new(address, url.port);
    let stream = match std::net::TcpStream::connect_timeout(&target, timeout) {
        Ok(s) => s,
        Err(e) => return result(false, format!("cannot connect to {target}: {e}")),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut line = String::new();
    if let Err(e) = BufReader::new(stream).read_line(&mut line) {
        return result(false, format!("no greeting from {target}: {e}"));
    }
    let line = line.trim_end().to_string();
    let ok = match url.protocol {
        "smtp" => line.starts_with("220"),
        _ => line.starts_with("* OK") || line.starts_with("* PREAUTH"),
    };
    let shown_line: String = line.chars().take(80).collect();
    if ok {
        result(true, format!("{target} greets: {shown_line}"))
    } else {
        result(
            false,
            format!("{target} greets unexpectedly: {shown_line:?}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_urls_take_default_ports_and_templates() {
        assert_eq!(
            parse_banner_url("smtp://mx.{domain}").unwrap(),
            BannerUrl {
                protocol: "smtp",
                host: "mx.{domain}".into(),
                port: 25
            }
        );
        assert_eq!(
            parse_banner_url("imap://mail.example:1143").unwrap().port,
            1143
        );
        assert!(parse_banner_url("pop3://x").is_err());
    }

    #[test]
    fn a_greeting_is_read_and_judged() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for greeting in ["220 mx ESMTP ready\r\n", "421 busy\r\n"] {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(greeting.as_bytes()).unwrap();
            }
        });
        let url = BannerUrl {
            protocol: "smtp",
            host: "mx.example.test".into(),
            port,
        };
        let ip = "127.0.0.1".parse().unwrap();
        assert!(banner(&url, ip, Duration::from_secs(5)).ok);
        let bad = banner(&url, ip, Duration::from_secs(5));
        assert!(!bad.ok && bad.detail.contains("421"), "{bad:?}");
        t.join().unwrap();
    }

    #[test]
    fn titles_are_found_whatever_their_case_and_spacing() {
        assert_eq!(
            title(b"<html><head><TITLE id=x>\n  Shop   home </TITLE>"),
            Some("Shop home".into())
        );
        assert_eq!(title(b"<p>no title</p>"), None);
    }

    #[test]
    fn a_probe_goes_to_the_pinned_address_with_the_sites_host() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = "<title>ok</title>";
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            request
        });
        let page = fetch(
            &format!("http://shop.example.test:{port}/"),
            "127.0.0.1".parse().unwrap(),
            Duration::from_secs(5),
            &[],
        )
        .unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.title.as_deref(), Some("ok"));
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(
            request.contains(&format!("host: shop.example.test:{port}")),
            "{request}"
        );
    }
}
