//! Parsers for the small value languages of a plan: sizes, rates, durations, ssh targets.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

/// `[user@]host[:port]` as written in a plan's `ssh:` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Parses `[user@]host[:port]`; IPv6 hosts are written in brackets.
pub fn parse_ssh_target(s: &str) -> Result<SshTarget, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("expected `[user@]host[:port]`, found an empty value".into());
    }
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(format!("expected a user name before `@` in `{s}`")),
        None => (None, s),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("unclosed `[` in `{s}`"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p, s)?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected `{after}` after `]` in `{s}`")),
        };
        (h.to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(parse_port(p, s)?)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty()
        || host.chars().any(|c| c.is_whitespace() || c == '/')
        || host.starts_with('-')
    {
        return Err(format!("`{host}` is not a host name or address"));
    }
    Ok(SshTarget { user, host, port })
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{p}` in `{whole}` is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

/// Parses a size such as `512`, `4KiB`, `200MiB`, `1.5GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as `200MiB`"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((value * factor).round() as u64)
}

/// Parses a bandwidth limit as rsync's `--bwlimit` reads it, into bytes per second; `0` means
/// no limit, as in rsync. A bare number is KiB/s (rsync's unit, so `--bwlimit 5000` is about
/// 5 MB/s, not 5 kB/s). Suffixes, in any case, as rsync accepts them: `B` (bytes), `K`, `M`,
/// `G`, `T`, `P` (powers of 1024, also written `KiB`, `MiB`, ...), `KB`, `MB`, `GB`, ... (powers
/// of 1000); a fraction is allowed (`1.5M`), and so is a trailing `/s` (`200MiB/s`).
pub fn parse_bwlimit(s: &str) -> Result<u64, String> {
    let body = s.trim();
    let body = body.strip_suffix("/s").unwrap_or(body).trim_end();
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(split);
    let bad = || {
        format!(
            "`{s}` is not a bandwidth limit such as `5000` (KiB/s, as rsync), `50M`, `10MB` or `200MiB/s`"
        )
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let suffix = suffix.trim().to_ascii_lowercase();
    let mut chars = suffix.chars();
    // rsync's `parse_size_arg`: a power letter (K by default), then `b` for 1000 or `ib` (or
    // nothing) for 1024.
    let power = match chars.next() {
        None => 1,
        Some('b') => 0,
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        Some('p') => 5,
        Some(_) => return Err(bad()),
    };
    let base: f64 = match chars.as_str() {
        "" | "ib" => 1024.0,
        "b" if power > 0 => 1000.0,
        _ => return Err(bad()),
    };
    let bytes = value * base.powi(power);
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `10s`, `2m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration such as `90s` or `2m` ({e})"))
}

/// Parses an RFC 3339 time such as `2026-11-28T22:00:00Z`.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s.trim())
        .map_err(|e| format!("`{s}` is not a time such as `2026-11-28T22:00:00Z` ({e})"))
}

/// Parses `ip[:port]` (`[v6]:port` for IPv6) with a default port.
pub fn parse_server(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "`{s}` is not an address such as `192.0.2.53` or `192.0.2.53:5353`"
    ))
}

/// Formats a byte count for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Formats a duration for people: `1h 02m`, `3m 20s`, `12s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_targets() {
        let t = parse_ssh_target("root@old-web.dc1.example:2222").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("root"), "old-web.dc1.example", Some(2222))
        );
        let t = parse_ssh_target("[2001:db8::1]:22").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", Some(22)));
        assert_eq!(t.to_string(), "[2001:db8::1]:22");
        assert!(parse_ssh_target("host:99999").is_err());
        assert!(parse_ssh_target("-oProxyCommand=x").is_err());
        assert!(parse_ssh_target("@host").is_err());
    }

    #[test]
    fn sizes_rates_durations() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_time("2026-11-28T22:00:00Z").is_ok());
        assert_eq!(parse_server("192.0.2.53", 53).unwrap().port(), 53);
        assert_eq!(parse_server("127.0.0.1:5353", 53).unwrap().port(), 5353);
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn bwlimit_units_are_rsyncs() {
        // A bare number is KiB/s, as rsync's `--bwlimit`.
        assert_eq!(parse_bwlimit("5000").unwrap(), 5000 * 1024);
        assert_eq!(parse_bwlimit("1.5").unwrap(), 1536);
        assert_eq!(parse_bwlimit("0").unwrap(), 0, "no limit, as rsync");
        for (text, bytes) in [
            ("512b", 512),
            ("512B", 512),
            ("100k", 100 * 1024),
            ("100K", 100 * 1024),
            ("100KiB", 100 * 1024),
            ("100KB", 100_000),
            ("100kb", 100_000),
            ("2m", 2 << 20),
            ("2M", 2 << 20),
            ("2MiB", 2 << 20),
            ("2MB", 2_000_000),
            ("1.5M", 1536 * 1024),
            ("1G", 1 << 30),
            ("1GB", 1_000_000_000),
            ("1t", 1 << 40),
            ("1P", 1 << 50),
            // Our plans' own spelling stays valid.
            ("200MiB/s", 200 << 20),
            ("50MB/s", 50_000_000),
            ("10 MiB/s", 10 << 20),
        ] {
            assert_eq!(parse_bwlimit(text).unwrap(), bytes, "{text}");
        }
        for bad in ["", "fast", "5x", "1Mx", "1bb", "-1", "1e3", "M"] {
            assert!(parse_bwlimit(bad).is_err(), "{bad}");
        }
    }
}
