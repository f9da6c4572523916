//! Zone files edited in place: for shops on plain BIND/NSD files, and for the embedded demo.
//!
//! Only the lines of the RRsets we change are rewritten (comments and layout elsewhere stay),
//! the SOA serial is bumped, the new file replaces the old by rename, then the reload command
//! runs. Compare-and-swap reads the file first, under a lock file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::provider::Provider;
use super::provider::{DnsError, RrKey, RrState, Swap};
use super::query::Rr;
use crate::plan::template::Template;

/// A directory of `<zone>.zone` files and the command that makes the server reload one.
pub struct ZoneFiles {
    directory: PathBuf,
    reload: Option<Template>,
    read_server: Option<std::net::SocketAddr>,
}

/// One record as parsed, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    line: usize,
    /// How many physical lines it spans (parentheses).
    lines: usize,
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

fn absolute(name: &str, origin: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "@" {
        origin.to_string()
    } else if n.ends_with('.') {
        n
    } else {
        format!("{n}.{origin}")
    }
}

fn parse_ttl(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let mut total = 0u32;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let unit = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return None,
            };
            total += num.parse::<u32>().ok()? * unit;
            num.clear();
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

const CLASSES: &[&str] = &["IN", "CH", "HS"];

/// Parses the subset of the master-file format zones use: `$ORIGIN`, `$TTL`, owners left blank
/// (the previous one), relative names, optional TTL and class, parentheses across lines.
fn parse(text: &str, zone: &str) -> Result<Vec<Parsed>, String> {
    let mut origin = super::query::fqdn(zone);
    let mut default_ttl = 3600u32;
    let mut last_owner = origin.clone();
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut logical = strip_comment(lines[i]).to_string();
        // Parentheses join lines into one record.
        while logical.matches('(').count() > logical.matches(')').count() && i + 1 < lines.len() {
            i += 1;
            logical.push(' ');
            logical.push_str(strip_comment(lines[i]));
        }
        i += 1;
        let span = i - start;
        let owner_given = !logical.starts_with([' ', '\t']);
        let flat = logical.replace(['(', ')'], " ");
        let mut tokens: Vec<&str> = flat.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        match tokens[0].to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                origin = absolute(tokens.get(1).ok_or("$ORIGIN without a name")?, &origin);
                continue;
            }
            "$TTL" => {
                default_ttl = tokens
                    .get(1)
                    .and_then(|t| parse_ttl(t))
                    .ok_or("$TTL without a TTL")?;
                continue;
            }
            d if d.starts_with('$') => {
                return Err(format!(
                    "line {}: `{}` is not supported",
                    start + 1,
                    tokens[0]
                ));
            }
            _ => {}
        }
        let owner = if owner_given {
            absolute(tokens.remove(0), &origin)
        } else {
            last_owner.clone()
        };
        last_owner = owner.clone();
        let mut ttl = default_ttl;
        // TTL and class come in either order before the type.
        for _ in 0..2 {
            if let Some(t) = tokens.first().and_then(|t| parse_ttl(t)) {
                ttl = t;
                tokens.remove(0);
            } else if tokens
                .first()
                .is_some_and(|t| CLASSES.contains(&t.to_ascii_uppercase().as_str()))
            {
                tokens.remove(0);
            }
        }
        if tokens.is_empty() {
            return Err(format!("line {}: a record without a type", start + 1));
        }
        let rtype = tokens.remove(0).to_ascii_uppercase();
        out.push(Parsed {
            line: start,
            lines: span,
            name: owner,
            ttl,
            rtype,
            data: tokens.join(" "),
        });
    }
    Ok(out)
}

impl ZoneFiles {
    pub fn new(
        directory: &Path,
        reload: Option<Template>,
        read_server: Option<std::net::SocketAddr>,
    ) -> ZoneFiles {
        ZoneFiles {
            directory: directory.to_path_buf(),
            reload,
            read_server,
        }
    }

    fn file(&self, zone: &str) -> PathBuf {
        self.directory.join(format!(
            "{}.zone",
            crate::plan::validate::normalize_zone(zone)
        ))
    }

    fn load(&self, zone: &str) -> Result<(String, Vec<Parsed>), DnsError> {
        let path = self.file(zone);
        let text = std::fs::read_to_string(&path).map_err(|e| DnsError::NotAuthoritative {
            zone: zone.into(),
            server: format!("{} ({e})", path.display()),
        })?;
        let parsed = parse(&text, zone)
            .map_err(|e| DnsError::Invalid(format!("{}: {e}", path.display())))?;
        Ok((text, parsed))
    }

    /// Every record of the zone, as a transfer would give them.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn records(&self, zone: &str) -> Result<Vec<Rr>, DnsError> {
        let (_, parsed) = self.load(zone)?;
        Ok(parsed
            .into_iter()
            .map(|p| Rr {
                name: p.name,
                rtype: p.rtype,
                ttl: p.ttl,
                data: p.data,
            })
            .collect())
    }
}

fn state_of(parsed: &[Parsed], name: &str, rtype: &str) -> RrState {
    let name = super::query::fqdn(name);
    let mine: Vec<&Parsed> = parsed
        .iter()
        .filter(|p| p.name == name && p.rtype == rtype)
        .collect();
    let mut values: Vec<String> = mine.iter().map(|p| p.data.clone()).collect();
    values.sort();
    RrState {
        ttl: mine.first().map_or(0, |p| p.ttl),
        values,
    }
}

/// The SOA serial bumped in `text` (the serial is the number after the SOA's two names).
fn bump_serial(text: &str, parsed: &[Parsed]) -> Result<String, String> {
    let soa = parsed
        .iter()
        .find(|p| p.rtype == "SOA")
        .ok_or("no SOA record")?;
    let fields: Vec<&str> = soa.data.split_whitespace().collect();
    let serial: u32 = fields
        .get(2)
        .and_then(|s| s.parse().ok())
        .ok_or("SOA without a numeric serial")?;
    let new = serial.wrapping_add(1).max(1);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Replace the first whole-word occurrence of the serial within the SOA's lines.
    for l in lines.iter_mut().skip(soa.line).take(soa.lines) {
        let body = strip_comment(l).to_string();
        let mut found = None;
        let mut pos = 0;
        for tok in body.split_whitespace() {
            let at = body[pos..].find(tok).map(|p| p + pos).unwrap_or(pos);
            pos = at + tok.len();
            if tok.trim_matches(['(', ')']) == serial.to_string() {
                found = Some((at, tok.len()));
                break;
            }
        }
        if let Some((at, len)) = found {
            let tok = &l[at..at + len];
            let replaced = tok.replace(&serial.to_string(), &new.to_string());
            l.replace_range(at..at + len, &replaced);
            return Ok(lines.join("\n") + "\n");
        }
    }
    Err("cannot find the SOA serial in the file".into())
}

impl Provider for ZoneFiles {
    fn label(&self) -> String {
        self.directory.display().to_string()
    }

    fn read_server(&self) -> std::net::SocketAddr {
        self.read_server
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 53)))
    }

    fn read(&self, key: &RrKey) -> Result<RrState, String> {
        let (_, parsed) = self.load(&key.zone).map_err(|e| e.to_string())?;
        Ok(state_of(&parsed, &key.name, &key.rtype))
    }

    fn list(&self, zone: &str) -> Option<Result<Vec<Rr>, DnsError>> {
        Some(self.records(zone))
    }

    fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError> {
        let path = self.file(zone);
        let lock_path = path.with_extension("zone.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| DnsError::Invalid(format!("{}: {e}", lock_path.display())))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        let (text, parsed) = self.load(zone)?;
        for s in swaps {
            if state_of(&parsed, s.name, s.rtype).values != s.current.values {
                return Err(DnsError::Changed {
                    name: s.name.into(),
                    rtype: s.rtype.into(),
                    server: path.display().to_string(),
                });
            }
        }
        let mut lines: Vec<Option<String>> = text.lines().map(|l| Some(l.to_string())).collect();
        let mut inserts: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for s in swaps {
            let fq = super::query::fqdn(s.name);
            let old: Vec<&Parsed> = parsed
                .iter()
                .filter(|p| p.name == fq && p.rtype == s.rtype)
                .collect();
            let at = old.first().map_or(lines.len(), |p| p.line);
            for p in &old {
                for l in lines.iter_mut().skip(p.line).take(p.lines) {
                    *l = None;
                }
            }
            let new: Vec<String> = s
                .new
                .values
                .iter()
                .map(|v| format!("{fq} {} IN {} {v}", s.new.ttl, s.rtype))
                .collect();
            inserts.entry(at).or_default().extend(new);
        }
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(new) = inserts.get(&i) {
                for n in new {
                    out.push_str(n);
                    out.push('\n');
                }
            }
            if let Some(l) = l {
                out.push_str(l);
                out.push('\n');
            }
        }
        if let Some(new) = inserts.get(&lines.len()) {
            for n in new {
                out.push_str(n);
                out.push('\n');
            }
        }
        let reparsed = parse(&out, zone).map_err(DnsError::Invalid)?;
        let out = bump_serial(&out, &reparsed)
            .map_err(|e| DnsError::Invalid(format!("{}: {e}", path.display())))?;
        let tmp = path.with_extension("zone.th-tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| DnsError::Invalid(format!("{}: {e}", path.display())))?;
        if let Some(reload) = &self.reload {
            let cmd = reload.render(|v| (v == "zone").then(|| zone.to_string()));
            let status = crate::transport::own_process_group(&mut std::process::Command::new("sh"))
                .arg("-c")
                .arg(&cmd)
                .status();
            if !status.is_ok_and(|s| s.success()) {
                return Err(DnsError::Failed {
                    name: zone.into(),
                    rtype: String::new(),
                    server: self.label(),
                    code: format!("reload command `{cmd}` failed (the file is updated)"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$TTL 300\n@ IN SOA ns1 hostmaster (\n  2026112301 ; serial\n  60 60 600 60 )\n  IN NS ns1\nns1 IN A 127.0.0.1\nwww 3600 IN A 192.0.2.10 ; the shop\nshop IN A 192.0.2.10\n     IN A 192.0.2.11\n";

    #[test]
    fn parses_the_usual_master_file_forms() {
        let p = parse(ZONE, "example.test").unwrap();
        let www = p.iter().find(|r| r.name == "www.example.test.").unwrap();
        assert_eq!(
            (www.ttl, www.rtype.as_str(), www.data.as_str()),
            (3600, "A", "192.0.2.10")
        );
        assert_eq!(
            state_of(&p, "shop.example.test", "A").values,
            vec!["192.0.2.10", "192.0.2.11"]
        );
        assert!(
            p.iter()
                .any(|r| r.rtype == "NS" && r.name == "example.test.")
        );
    }

    #[test]
    fn swaps_rewrite_only_their_lines_and_bump_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("example.test.zone"), ZONE).unwrap();
        let files = ZoneFiles::new(dir.path(), None, None);
        let cur = RrState {
            ttl: 300,
            values: vec!["192.0.2.10".into(), "192.0.2.11".into()],
        };
        let new = RrState {
            ttl: 60,
            values: vec!["192.0.2.11".into(), "198.51.100.10".into()],
        };
        files
            .swap_all(
                "example.test",
                &[Swap {
                    name: "shop.example.test.",
                    rtype: "A",
                    current: &cur,
                    new: &new,
                }],
            )
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("example.test.zone")).unwrap();
        assert!(text.contains("2026112302 ; serial"), "{text}");
        assert!(
            text.contains("www 3600 IN A 192.0.2.10 ; the shop"),
            "comments elsewhere stay: {text}"
        );
        let p = parse(&text, "example.test").unwrap();
        assert_eq!(state_of(&p, "shop.example.test", "A"), new);
        // The old values are gone: a second swap from them is a concurrent change.
        let err = files
            .swap_all(
                "example.test",
                &[Swap {
                    name: "shop.example.test.",
                    rtype: "A",
                    current: &cur,
                    new: &new,
                }],
            )
            .unwrap_err();
        assert!(matches!(err, DnsError::Changed { .. }));
    }
}
