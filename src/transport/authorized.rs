//! Adds and removes a move's restricted key in an authorized_keys file, on the host whose sshd
//! reads it: one atomic rewrite each (temp file, fsync, rename), under a lock on the directory,
//! so sshd never reads a half-written file and two runs never lose each other's lines.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::protocol::PeerGrant;

/// `~/` at the start means this agent's home.
fn expand(file: &str) -> Result<PathBuf, String> {
    match file.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .ok_or_else(|| "`~` in the authorized_keys path, and no HOME".to_string()),
        None if file.starts_with('/') => Ok(PathBuf::from(file)),
        None => Err(format!(
            "`{file}`: the authorized_keys path must be absolute or start with `~/`"
        )),
    }
}

/// Whether `line` carries a token starting with `marker` (our comment).
fn marked(line: &str, marker: &str) -> bool {
    line.split_whitespace().any(|t| t.starts_with(marker))
}

fn check_marker(marker: &str) -> Result<(), String> {
    let ok = !marker.is_empty()
        && marker
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@>+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("marker `{marker}`: unexpected characters"))
    }
}

/// Quotes one argument for the shell sshd runs a forced command with, then for the
/// `command="..."` option (where only `\"` is an escape).
fn quoted(arg: &str) -> Result<String, String> {
    if arg.contains(['\n', '\r', '\0']) {
        return Err(format!(
            "`{}`: a line break in a path: refused",
            arg.escape_debug()
        ));
    }
    Ok(super::ssh::shell_quote(arg).replace('"', "\\\""))
}

/// The authorized_keys line of a grant: the key may run our agent confined to the grant's
/// roots and streams, from the grant's address, and nothing else (`restrict`: no pty, no
/// forwarding of agents, ports or X11).
///
/// # Errors
/// A malformed key, address or marker, or a path with a line break.
pub fn line(grant: &PeerGrant, agent: &Path) -> Result<String, String> {
    check_marker(&grant.marker)?;
    let from: std::net::IpAddr = grant
        .from
        .parse()
        .map_err(|_| format!("`{}` is not an address", grant.from))?;
    let key: Vec<&str> = grant.public_key.split_whitespace().collect();
    let base64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    };
    if key.len() != 2 || key[0] != "ssh-ed25519" || !base64(key[1]) {
        return Err("the public key is not `ssh-ed25519 BASE64`".into());
    }
    let mut command = vec![
        quoted(&agent.display().to_string())?,
        "agent".into(),
        "--stdio".into(),
        "--streams".into(),
        quoted(&grant.streams.display().to_string())?,
    ];
    for root in &grant.confine {
        command.push("--confine".into());
        command.push(quoted(&root.display().to_string())?);
    }
    Ok(format!(
        "restrict,command=\"{}\",from=\"{from}\" {} {} {}",
        command.join(" "),
        key[0],
        key[1],
        grant.marker
    ))
}

/// Adds the grant's line (replacing a line of the same marker) and makes its stream directory.
///
/// # Errors
/// The file cannot be read or rewritten, or the grant is malformed.
pub fn authorize(grant: &PeerGrant) -> Result<(), String> {
    let agent = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot tell where this agent is: {e}"))?;
    let new = line(grant, &agent)?;
    super::rendezvous::make_dir(&grant.streams)?;
    let path = expand(&grant.file)?;
    rewrite(&path, |lines| {
        let mut kept: Vec<String> = lines
            .into_iter()
            .filter(|l| !marked(l, &grant.marker))
            .collect();
        kept.push(new);
        kept
    })
    .map(|_| ())
}

/// Removes every line marked `marker` (a prefix: a plan's stale keys too) and the stream
/// directory; the number of lines removed.
///
/// # Errors
/// The file cannot be read or rewritten.
pub fn revoke(file: &str, marker: &str, streams: Option<&Path>) -> Result<u64, String> {
    check_marker(marker)?;
    if let Some(dir) = streams {
        super::rendezvous::remove_dir(dir);
    }
    let path = expand(file)?;
    if !path.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    let changed = rewrite(&path, |lines| {
        let before = lines.len();
        let kept: Vec<String> = lines.into_iter().filter(|l| !marked(l, marker)).collect();
        removed = (before - kept.len()) as u64;
        kept
    })?;
    Ok(if changed { removed } else { 0 })
}

/// Rewrites `path` line by line through `edit`, atomically, keeping its mode and owner (0600
/// for a new file, its directory made 0700 when missing); `false` when nothing changed.
fn rewrite(path: &Path, edit: impl FnOnce(Vec<String>) -> Vec<String>) -> Result<bool, String> {
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: no directory", path.display()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(at)?;
    }
    let _lock = lock_dir(dir).map_err(at)?;
    let (text, meta) = match std::fs::read(path) {
        Ok(t) => (t, Some(std::fs::metadata(path).map_err(at)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => return Err(at(e)),
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let edited = edit(lines.clone());
    if edited == lines && meta.is_some() {
        return Ok(false);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.th-{}", std::process::id()));
    let mode = meta.as_ref().map_or(0o600, |m| m.mode() & 0o7777);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        for l in &edited {
            f.write_all(l.as_bytes())?;
            f.write_all(b"\n")?;
        }
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        if let Some(m) = &meta {
            // Kept as it was (a user's own file stays theirs); only root may change it.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(at)?;
    Ok(true)
}

/// An exclusive lock on a directory, held while the returned descriptor lives.
fn lock_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(file: &Path, streams: &Path) -> PeerGrant {
        PeerGrant {
            file: file.display().to_string(),
            public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF".into(),
            from: "10.0.0.7".into(),
            confine: vec!["/srv/www".into(), "/var/vmail/it's".into()],
            streams: streams.into(),
            marker: "transhumance-direct:plan:a>b:0001".into(),
        }
    }

    #[test]
    fn the_line_restricts_the_key_to_the_confined_agent_from_one_address() {
        let g = grant(Path::new("/x"), Path::new("/tmp/th-direct-1"));
        let l = line(&g, Path::new("/opt/th agent")).unwrap();
        assert_eq!(
            l,
            "restrict,command=\"'/opt/th agent' agent --stdio --streams '/tmp/th-direct-1' --confine '/srv/www' --confine '/var/vmail/it'\\''s'\",from=\"10.0.0.7\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF transhumance-direct:plan:a>b:0001"
        );
        for bad in [
            PeerGrant {
                from: "10.0.0.7,*".into(),
                ..g.clone()
            },
            PeerGrant {
                public_key: "ssh-rsa AAAA".into(),
                ..g.clone()
            },
            PeerGrant {
                marker: "x\nssh-ed25519 evil".into(),
                ..g.clone()
            },
            PeerGrant {
                confine: vec!["/srv/a\nb".into()],
                ..g.clone()
            },
        ] {
            assert!(line(&bad, Path::new("/opt/th")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_added_and_removed_by_marker_keeping_the_others_and_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ssh/authorized_keys");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "ssh-ed25519 AAAAmine me@laptop\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let streams = dir.path().join("streams");
        let g = grant(&file, &streams);
        authorize(&g).unwrap();
        authorize(&g).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("ssh-ed25519 AAAAmine me@laptop\nrestrict,command="));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(streams.is_dir());
        let removed = revoke(
            &file.display().to_string(),
            "transhumance-direct:plan:",
            Some(&streams),
        )
        .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "ssh-ed25519 AAAAmine me@laptop\n"
        );
        assert!(!streams.exists());
        assert_eq!(
            revoke(
                &file.display().to_string(),
                "transhumance-direct:plan:",
                None
            )
            .unwrap(),
            0
        );
    }
}
