//! The banner probe URLs of a plan (`smtp://host[:port]`, `imap://host[:port]`): parsed here so
//! validation and the probes read them the same way.

/// A mail service to greet: `smtp://host[:25]` or `imap://host[:143]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BannerUrl {
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
}

/// Reads `smtp://host[:port]` or `imap://host[:port]` (templates are checked with sample values).
///
/// # Errors
/// Another scheme, or no host.
pub fn parse_banner_url(url: &str) -> Result<BannerUrl, String> {
    let (protocol, rest, default_port) = if let Some(r) = url.strip_prefix("smtp://") {
        ("smtp", r, 25)
    } else if let Some(r) = url.strip_prefix("imap://") {
        ("imap", r, 143)
    } else {
        return Err(format!("`{url}`: expected smtp:// or imap://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.contains('}') => (
            h,
            p.parse()
                .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
        ),
        _ => (rest, default_port),
    };
    if host.is_empty() {
        return Err(format!("`{url}`: no host"));
    }
    Ok(BannerUrl {
        protocol,
        host: host.to_string(),
        port,
    })
}
