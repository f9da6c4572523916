//! A site's certificate and key carried to its target host with the site (issue 15), and its
//! certificate read at the source for the dry run. Both go through the hosts' transports as
//! commands (`stat`, `cat`, an atomic write), not through the file engine: certificate paths
//! are often symlinks (Let's Encrypt's `live/` links into `archive/`), which the engine never
//! follows by design; the content is read through the link and written at the target as a
//! plain file. The key travels on the command's stdin inside the transport, never on a
//! command line, and is never printed, logged or journaled.

use std::time::SystemTime;

use rayon::prelude::*;

use super::certificate::{self, Problem, Trust};
use super::issuance::{self, LETS_ENCRYPT, Need};
use crate::plan::{Plan, Site, SiteTls};
use crate::report::{CertificateReport, Risk, SiteCertificate};
use crate::transport::{Connections, ExecRequest};

/// Exit code of `READ` for a path that does not exist.
const ABSENT: i32 = 3;

/// `$1` the path; `$2` `meta` for the metadata line only. Prints `MODE UID GID MTIME`, a
/// newline, then the content (through symlinks).
const READ: &str = r#"[ -e "$1" ] || exit 3
stat -L -c '%a %u %g %Y' -- "$1" || exit 1
[ "$2" = meta ] && exit 0
exec cat -- "$1""#;

/// `$1` the path, `$2` the mode (octal), `$3:$4` the owner, `$5` the mtime; the content on
/// stdin. Written beside the final name under a temp name no one else can read, then renamed:
/// the path never holds half a key. Owners are set only as root. Prints the writer's uid.
const WRITE: &str = r#"set -e
d=$(dirname -- "$1")
[ -d "$d" ] || (umask 022 && mkdir -p -- "$d")
umask 077
t=$(mktemp "$d/.transhumance-tls.XXXXXX")
trap 'rm -f -- "$t"' EXIT
cat > "$t"
u=$(id -u)
if [ "$u" = 0 ]; then chown -- "$3:$4" "$t"; fi
chmod -- "$2" "$t"
touch -m -d "@$5" -- "$t"
mv -f -- "$t" "$1"
trap - EXIT
echo "$u""#;

/// A file read from a host. `Debug` leaves its bytes out: it may be a private key.
#[derive(Clone, PartialEq, Eq)]
struct HostFile {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for HostFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFile")
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl HostFile {
    /// Same content and mode, and the same owner when `owner` (the writer could set it).
    fn same_as(&self, other: &HostFile, owner: bool) -> bool {
        self.bytes == other.bytes
            && self.mode == other.mode
            && (!owner || (self.uid, self.gid) == (other.uid, other.gid))
    }
}

/// Parses `READ`'s output: the metadata line, then the content.
fn parse_read(out: &[u8]) -> Option<HostFile> {
    let nl = out.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&out[..nl]).ok()?;
    let mut f = line.split_whitespace();
    Some(HostFile {
        mode: u32::from_str_radix(f.next()?, 8).ok()?,
        uid: f.next()?.parse().ok()?,
        gid: f.next()?.parse().ok()?,
        mtime: f.next()?.parse().ok()?,
        bytes: out[nl + 1..].to_vec(),
    })
}

/// Reads `path` on `host` (only its metadata unless `content`); `None` when it does not exist.
fn read(
    connections: &Connections,
    host: &str,
    path: &std::path::Path,
    content: bool,
) -> Result<Option<HostFile>, String> {
    let shown = path.display();
    let request = ExecRequest::new(
        "sh",
        [
            "-c".to_string(),
            READ.to_string(),
            "sh".to_string(),
            path.to_string_lossy().into_owned(),
            if content { "content" } else { "meta" }.to_string(),
        ],
    );
    let out = connections
        .run(host, |t| t.exec(&request))
        .map_err(|e| e.to_string())?;
    match out.code {
        Some(0) => parse_read(&out.stdout)
            .map(Some)
            .ok_or_else(|| format!("`{shown}` on host `{host}`: unexpected `stat` output")),
        Some(ABSENT) => Ok(None),
        // stderr only: stdout may hold part of a key.
        _ => Err(format!(
            "cannot read `{shown}` on host `{host}`: {}",
            out.stderr_text()
        )),
    }
}

/// Writes `file` (content, mode, owner, mtime) at `path` on `host`; whether it could set the
/// owner (it runs as root there).
fn write(
    connections: &Connections,
    host: &str,
    path: &std::path::Path,
    file: &HostFile,
) -> Result<bool, String> {
    let mut request = ExecRequest::new(
        "sh",
        [
            "-c".to_string(),
            WRITE.to_string(),
            "sh".to_string(),
            path.to_string_lossy().into_owned(),
            format!("{:o}", file.mode),
            file.uid.to_string(),
            file.gid.to_string(),
            file.mtime.to_string(),
        ],
    );
    request.stdin = file.bytes.clone();
    let out = connections
        .run(host, |t| t.exec(&request))
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!(
            "cannot write `{}` on host `{host}`: {}",
            path.display(),
            out.stderr_text()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// What carrying a site's certificate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// Certificate and key written at the target (modes and owners kept).
    Copied,
    /// The target holds them already.
    Unchanged,
    /// No certificate at the source path: nothing to carry (the dry run says so; the probe
    /// before the switch judges whatever the new side serves).
    NoCertificate,
    /// The target holds a certificate valid longer than the source's (issued there): left
    /// alone, key included.
    TargetNewer(SystemTime),
}

/// The end of validity of the first certificate of a PEM file.
fn pem_not_after(pem: &[u8]) -> Option<SystemTime> {
    let chain = certificate::pem_chain(pem).ok()?;
    certificate::not_after(chain.first()?)
}

/// Carries the site's certificate and key to its target host, unless the target already holds
/// them or a certificate valid longer; each written file is read back and compared.
///
/// # Errors
/// A host cannot be read or written, the key is missing beside its certificate, or a file
/// reads back different.
pub fn carry(connections: &Connections, site: &Site, files: &SiteTls) -> Result<Carried, String> {
    let (src, dst) = (&site.source_host, &site.target_host);
    let Some(cert) = read(connections, src, &files.cert, true)? else {
        return Ok(Carried::NoCertificate);
    };
    let there = read(connections, dst, &files.target_cert, true)?;
    if let Some(there) = &there
        && there.bytes != cert.bytes
        && let Some(theirs) = pem_not_after(&there.bytes)
        && pem_not_after(&cert.bytes).is_none_or(|ours| theirs > ours)
    {
        return Ok(Carried::TargetNewer(theirs));
    }
    let key = read(connections, src, &files.key, true)?.ok_or_else(|| {
        format!(
            "key `{}` missing on host `{src}` beside its certificate `{}`",
            files.key.display(),
            files.cert.display()
        )
    })?;
    let key_there = read(connections, dst, &files.target_key, true)?;
    let mut copied = false;
    for (file, target, existing) in [
        (&cert, &files.target_cert, there),
        (&key, &files.target_key, key_there),
    ] {
        if existing.is_some_and(|e| e.same_as(file, true)) {
            continue;
        }
        let as_root = write(connections, dst, target, file)?;
        let back = read(connections, dst, target, true)?;
        if !back.is_some_and(|b| b.same_as(file, as_root)) {
            return Err(format!(
                "`{}` on host `{dst}` reads back different from what was written",
                target.display()
            ));
        }
        copied = true;
    }
    Ok(if copied {
        Carried::Copied
    } else {
        Carried::Unchanged
    })
}

/// One site's certificate at the source, judged as the probe before the switch will judge it
/// at the new address (which serves what is carried); and what to order when it will not do.
fn inspect(
    connections: &Connections,
    site: &Site,
    files: &SiteTls,
    trust: &Trust,
    margin: std::time::Duration,
) -> (SiteCertificate, Option<Need>) {
    let domains: Vec<String> = if site.domains.is_empty() {
        vec![site.name.clone()]
    } else {
        site.domains.clone()
    };
    let mut r = SiteCertificate {
        site: site.name.clone(),
        domains: domains.clone(),
        cert: format!("{}:{}", site.source_host, files.cert.display()),
        ..Default::default()
    };
    let fresh = |renewal: bool, names: Vec<String>| {
        Some(Need {
            site: site.name.clone(),
            names,
            renewal,
        })
    };
    let problem = |r: &mut SiteCertificate, p: Problem| {
        r.status = p.kind().into();
        r.detail = p.to_string();
    };
    let pem = match read(connections, &site.source_host, &files.cert, true) {
        Ok(Some(f)) => f.bytes,
        Ok(None) => {
            problem(
                &mut r,
                Problem::Missing("no certificate at this path".into()),
            );
            return (r, fresh(false, domains));
        }
        Err(e) => {
            r.status = "unknown".into();
            r.detail = e;
            return (r, None);
        }
    };
    let chain = match certificate::pem_chain(&pem) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            problem(
                &mut r,
                Problem::Unreadable("no PEM certificate in it".into()),
            );
            return (r, fresh(false, domains));
        }
        Err(e) => {
            problem(&mut r, Problem::Unreadable(e));
            return (r, fresh(false, domains));
        }
    };
    let leaf = &chain[0];
    r.names = certificate::names(leaf);
    r.not_after = certificate::not_after(leaf).map(certificate::date);
    r.issuer = certificate::issuer(leaf);
    // Let's Encrypt takes an order for the names of a certificate it issued as a renewal.
    let covers_all = domains
        .iter()
        .all(|d| r.names.iter().any(|n| certificate::name_covers(n, d)));
    let renewal = covers_all
        && r.issuer
            .as_deref()
            .is_some_and(|i| i.contains(LETS_ENCRYPT.ca));
    let need = |r: &SiteCertificate| {
        if renewal {
            fresh(true, r.names.clone())
        } else {
            fresh(false, domains.clone())
        }
    };
    let now = SystemTime::now();
    for d in &domains {
        if let Err(p) = certificate::judge(&chain, d, trust, now, margin) {
            problem(&mut r, p);
            let n = need(&r);
            return (r, n);
        }
    }
    match read(connections, &site.source_host, &files.key, false) {
        Ok(Some(_)) => {
            r.status = "usable".into();
            r.detail = format!(
                "chains to {}, holds every domain, valid until {}",
                trust.label,
                r.not_after.as_deref().unwrap_or("?")
            );
            (r, None)
        }
        Ok(None) => {
            r.status = "key_missing".into();
            r.detail = format!("no key at `{}`", files.key.display());
            let n = need(&r);
            (r, n)
        }
        Err(e) => {
            r.status = "unknown".into();
            r.detail = e;
            (r, None)
        }
    }
}

/// The dry run's certificate section: every site the plan names certificate files for, read
/// at the source and judged; the issuance schedule for those that will not do; a risk each.
pub fn certificates(
    plan: &Plan,
    sites: &[Site],
    connections: &Connections,
    risks: &mut Vec<Risk>,
) -> Option<CertificateReport> {
    let with_files: Vec<(&Site, SiteTls)> = sites
        .iter()
        .filter_map(|s| plan.tls_files(s).map(|f| (s, f)))
        .collect();
    // Discovery on, and no virtual host found: the site serves no TLS as far as its web
    // server says; listed, and scheduled, should it need a certificate at the new side.
    let undiscovered: Vec<&Site> = match &plan.cutover.tls.discover {
        Some(_) => sites
            .iter()
            .filter(|s| plan.tls_files(s).is_none())
            .collect(),
        None => Vec::new(),
    };
    if with_files.is_empty() && undiscovered.is_empty() {
        return None;
    }
    let ca_file = plan
        .cutover
        .probe
        .as_ref()
        .and_then(|p| p.ca_file.as_deref());
    let trust = match Trust::load(ca_file) {
        Ok(t) => t,
        Err(e) => {
            risks.push(Risk::error("certificate_trust", "cutover.probe.ca_file", e));
            return None;
        }
    };
    let margin = plan.cutover.tls.min_validity;
    let judged: Vec<(SiteCertificate, Option<Need>)> = with_files
        .par_iter()
        .map(|(s, f)| inspect(connections, s, f, &trust, margin))
        .collect();
    let mut report = CertificateReport {
        min_validity_seconds: margin.as_secs(),
        trust: trust.label.clone(),
        ..Default::default()
    };
    let mut needs = Vec::new();
    let config = plan
        .cutover
        .tls
        .discover
        .as_ref()
        .map(super::tls_discover::shown)
        .unwrap_or_default();
    for site in undiscovered {
        let domains = if site.domains.is_empty() {
            vec![site.name.clone()]
        } else {
            site.domains.clone()
        };
        let detail = format!(
            "no TLS virtual host for `{}` in the web server configuration ({config}) on host `{}`",
            domains[0], site.source_host
        );
        risks.push(Risk::warning(
            "certificate_not_found",
            site.name.clone(),
            format!("{detail}: no certificate moves with this site"),
        ));
        needs.push(Need {
            site: site.name.clone(),
            names: domains.clone(),
            renewal: false,
        });
        report.sites.push(SiteCertificate {
            site: site.name.clone(),
            domains,
            status: "not_found".into(),
            detail,
            ..Default::default()
        });
    }
    for (site, need) in judged {
        match site.status.as_str() {
            "usable" => {}
            "unknown" => risks.push(Risk::warning(
                "certificate_unusable",
                site.site.clone(),
                format!("certificate `{}` could not be read: {}", site.cert, site.detail),
            )),
            _ => risks.push(Risk::error(
                "certificate_unusable",
                site.site.clone(),
                format!(
                    "certificate `{}`: {}; the cutover will not switch this site until its new side serves a valid one",
                    site.cert, site.detail
                ),
            )),
        }
        needs.extend(need);
        report.sites.push(site);
    }
    if !needs.is_empty() {
        report.schedule = Some(issuance::schedule(&needs, &LETS_ENCRYPT));
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_output_is_metadata_then_bytes() {
        let f = parse_read(b"640 0 115 1700000000\n-----BEGIN PRIVATE KEY-----\n").unwrap();
        assert_eq!(
            (f.mode, f.uid, f.gid, f.mtime),
            (0o640, 0, 115, 1_700_000_000)
        );
        assert_eq!(f.bytes, b"-----BEGIN PRIVATE KEY-----\n");
        assert!(parse_read(b"no newline").is_none());
        assert!(parse_read(b"9x 0 0 1\n").is_none());
    }

    #[test]
    fn a_host_file_never_shows_its_bytes() {
        let f = HostFile {
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime: 0,
            bytes: b"SECRET KEY MATERIAL".to_vec(),
        };
        let shown = format!("{f:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.contains("600") && shown.contains("len: 19"),
            "{shown}"
        );
    }

    /// Carried on this machine through the local transport: content, mode, owner and mtime
    /// kept; a second run changes nothing; a newer certificate at the target is left alone.
    #[test]
    fn certificate_and_key_are_carried_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let src = d.join("old/ssl/shop");
        std::fs::create_dir_all(&src).unwrap();
        let cert = src.join("fullchain.pem");
        let key = src.join("privkey.pem");
        std::fs::write(&cert, "not a real certificate\n").unwrap();
        std::fs::write(&key, "not a real key\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let files = SiteTls {
            cert: cert.clone(),
            key: key.clone(),
            target_cert: d.join("new/ssl/shop/fullchain.pem"),
            target_key: d.join("new/ssl/shop/privkey.pem"),
        };
        let site = Site {
            kind: crate::plan::UnitKind::Web,
            relink: None,
            name: "shop".into(),
            rule: 0,
            source_host: "local".into(),
            source_path: d.join("old/www"),
            target_host: "local".into(),
            target_path: d.join("new/www"),
            domains: vec!["shop.test".into()],
            databases: Vec::new(),
            exclude: Vec::new(),
            owner: None,
            marks: Vec::new(),
            tls: None,
        };
        let local = crate::plan::Host {
            name: "local".into(),
            access: crate::plan::HostAccess::Local,
        };
        let hosts = [("local".to_string(), local)].into_iter().collect();
        let connections = Connections::new(&hosts, "transhumance".into());
        assert_eq!(carry(&connections, &site, &files).unwrap(), Carried::Copied);
        let meta = std::fs::metadata(&files.target_key).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read(&files.target_key).unwrap(),
            b"not a real key\n"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            meta.mtime(),
            std::fs::metadata(&key).unwrap().mtime(),
            "mtime kept"
        );
        assert_eq!(
            carry(&connections, &site, &files).unwrap(),
            Carried::Unchanged
        );
        std::fs::remove_file(&cert).unwrap();
        assert_eq!(
            carry(&connections, &site, &files).unwrap(),
            Carried::NoCertificate
        );
    }
}
