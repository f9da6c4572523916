//! The controller's side of the direct data path between two remote hosts: a key pair made for
//! one move, its public half installed at the target restricted to our confined agent and to
//! the source's address, its private half handed to the source's agent (never on a command
//! line, never logged), the target's host key pinned from what this controller checked, and
//! the route the engines look up to send bytes host to host. Revoked when the move is done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::protocol::{Call, PEER_HOST_ALIAS, PeerGrant, PeerSpec, Reply};
use super::ssh::SshCommand;
use super::{Transport, TransportError};
use crate::plan::SshAccess;

/// How a source host's agent reaches a target host's agent directly.
#[derive(Debug)]
pub struct Route {
    pub source: String,
    pub target: String,
    pub spec: PeerSpec,
    /// The target's rendezvous directory for streams (database restores).
    pub streams: PathBuf,
    /// The plan asked for `direct`: a failure is an error, not a fall back to the relay.
    pub required: bool,
}

/// A (source, target) pair of host names.
type Pair = (String, String);

/// The routes of a run, by (source, target) host name. A route being set up is pending: who
/// asks for it waits until it is there or given up (the set-up runs while the work starts).
#[derive(Debug, Default)]
pub struct Routes {
    map: Mutex<BTreeMap<Pair, Option<Arc<Route>>>>,
    changed: std::sync::Condvar,
}

impl Routes {
    /// The route from `source` to `target`, once it is no longer pending.
    pub fn get(&self, source: &str, target: &str) -> Option<Arc<Route>> {
        let key = (source.to_string(), target.to_string());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match map.get(&key) {
                None => return None,
                Some(Some(r)) => return Some(r.clone()),
                Some(None) => {
                    map = self.changed.wait(map).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    /// Marks the pair's route as being set up: `set` or `remove` must follow.
    pub fn pend(&self, source: &str, target: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((source.to_string(), target.to_string()), None);
    }

    pub fn set(&self, route: Arc<Route>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((route.source.clone(), route.target.clone()), Some(route));
        self.changed.notify_all();
    }

    pub fn remove(&self, source: &str, target: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(source.to_string(), target.to_string()));
        self.changed.notify_all();
    }

    /// Gives up a pair still pending (its set-up ended without a route).
    pub fn settle(&self, source: &str, target: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (source.to_string(), target.to_string());
        if matches!(map.get(&key), Some(None)) {
            map.remove(&key);
        }
        drop(map);
        self.changed.notify_all();
    }
}

/// An ed25519 key pair: the private key in OpenSSH's format, the public one as an
/// authorized_keys key (`ssh-ed25519 BASE64`).
pub struct KeyPair {
    pub private: Vec<u8>,
    pub public: String,
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        self.private.iter_mut().for_each(|b| *b = 0);
    }
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u32).to_be_bytes());
    out.extend(s);
}

/// Makes a fresh key pair (the system's randomness), named `comment`.
///
/// # Errors
/// No randomness.
pub fn key_pair(comment: &str) -> Result<KeyPair, String> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut seed = [0u8; 32];
    rng.fill(&mut seed).map_err(|_| "no randomness for a key")?;
    let mut check = [0u8; 4];
    rng.fill(&mut check)
        .map_err(|_| "no randomness for a key")?;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|_| "cannot make an ed25519 key")?;
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let mut blob = Vec::new();
    ssh_string(&mut blob, b"ssh-ed25519");
    ssh_string(&mut blob, &public);
    // openssh-key-v1, unencrypted: https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.key
    let mut secret = Vec::new();
    secret.extend(check);
    secret.extend(check);
    ssh_string(&mut secret, b"ssh-ed25519");
    ssh_string(&mut secret, &public);
    let mut both = seed.to_vec();
    both.extend(&public);
    ssh_string(&mut secret, &both);
    both.iter_mut().for_each(|b| *b = 0);
    seed.iter_mut().for_each(|b| *b = 0);
    ssh_string(&mut secret, comment.as_bytes());
    let mut pad = 1u8;
    while secret.len() % 8 != 0 {
        secret.push(pad);
        pad += 1;
    }
    let mut body = b"openssh-key-v1\0".to_vec();
    ssh_string(&mut body, b"none");
    ssh_string(&mut body, b"none");
    ssh_string(&mut body, b"");
    body.extend(1u32.to_be_bytes());
    ssh_string(&mut body, &blob);
    ssh_string(&mut body, &secret);
    secret.iter_mut().for_each(|b| *b = 0);
    let encoded = data_encoding::BASE64.encode(&body);
    body.iter_mut().for_each(|b| *b = 0);
    let mut private = b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec();
    for line in encoded.as_bytes().chunks(70) {
        private.extend(line);
        private.push(b'\n');
    }
    private.extend(b"-----END OPENSSH PRIVATE KEY-----\n");
    Ok(KeyPair {
        private,
        public: format!("ssh-ed25519 {}", data_encoding::BASE64.encode(&blob)),
    })
}

/// Where this controller's ssh goes for a plan host, as `ssh -G` resolves it (the user's
/// `~/.ssh/config` applied), and the host keys this controller checks it against.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// known_hosts lines for `PEER_HOST_ALIAS`.
    pub known_hosts: Vec<String>,
}

/// Resolves a plan host's ssh destination and the host keys pinned for it.
///
/// # Errors
/// `ssh -G` fails, or this controller knows no host key for it (the direct path pins the key
/// the controller itself checks; it never trusts one on first use).
pub fn resolve(access: &SshAccess) -> Result<Resolved, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ssh = SshCommand::for_access(access, dir.path());
    let out = Command::new(&ssh.base[0])
        .args(&ssh.base[1..])
        .arg("-G")
        .arg(&ssh.destination)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ssh -G`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ssh -G {}`: {}",
            ssh.destination,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().to_string())
        })
    };
    let hostname = get("hostname").unwrap_or_else(|| access.target.host.clone());
    let port: u16 = get("port").and_then(|p| p.parse().ok()).unwrap_or(22);
    let user = get("user").unwrap_or_else(|| "root".into());
    let name = match get("hostkeyalias").filter(|a| a != "none") {
        Some(alias) => alias,
        None if port == 22 => hostname.clone(),
        None => format!("[{hostname}]:{port}"),
    };
    let files: Vec<String> = ["userknownhostsfile", "globalknownhostsfile"]
        .iter()
        .filter_map(|k| get(k))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let mut known_hosts = Vec::new();
    for f in files {
        let path = match f.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(rest))
                .unwrap_or_else(|| PathBuf::from(&f)),
            None => PathBuf::from(&f),
        };
        if !path.is_file() {
            continue;
        }
        known_hosts.extend(pinned_lines(&name, &path)?);
    }
    if known_hosts.is_empty() {
        return Err(format!(
            "this controller knows no host key for `{name}` in its known_hosts: the direct path pins the key the controller checks, so add it first (ssh-keyscan, then check it)"
        ));
    }
    Ok(Resolved {
        hostname,
        port,
        user,
        known_hosts,
    })
}

/// The known_hosts lines of `file` that match `name` (hashed ones too), rewritten for
/// `PEER_HOST_ALIAS`.
fn pinned_lines(name: &str, file: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(name)
        .arg("-f")
        .arg(file)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ssh-keygen -F`: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields: Vec<&str> = l.split_whitespace().collect();
            let marker = fields
                .first()
                .filter(|f| f.starts_with('@'))
                .map(|m| m.to_string());
            if marker.is_some() {
                fields.remove(0);
            }
            let (kind, key) = (fields.get(1)?, fields.get(2)?);
            Some(match marker {
                Some(m) => format!("{m} {PEER_HOST_ALIAS} {kind} {key}"),
                None => format!("{PEER_HOST_ALIAS} {kind} {key}"),
            })
        })
        .collect())
}

/// What answered when the source tried the target's sshd.
#[derive(Debug, Clone)]
pub struct Reach {
    pub banner: String,
    /// The address the source reached it from.
    pub from: String,
}

/// The address `source` reaches `address:port` from; with `banner`, whether an ssh server
/// answers there (without logging in).
///
/// # Errors
/// The source cannot be asked, or it cannot reach the address (the reason).
pub fn probe(
    source: &dyn Transport,
    address: &str,
    port: u16,
    banner: bool,
) -> Result<Reach, TransportError> {
    match source.channel(0)?.call_wait(Call::PeerProbe {
        address: address.to_string(),
        port,
        banner,
    })? {
        Reply::Probed { banner, local } => Ok(Reach {
            banner,
            from: local,
        }),
        r => Err(TransportError::Protocol {
            host: source.host().into(),
            message: format!("unexpected {r:?}"),
        }),
    }
}

/// What the plan says of one direct path.
pub struct Request<'a> {
    pub source: &'a dyn Transport,
    pub target: &'a dyn Transport,
    pub target_access: &'a SshAccess,
    /// The address (and port) the source reaches the target's sshd at, when not the one this
    /// controller uses.
    pub address: Option<(String, Option<u16>)>,
    /// The target's authorized_keys file for its ssh user.
    pub authorized_keys: String,
    /// The target roots the restricted key may write beneath.
    pub confine: Vec<PathBuf>,
    /// The comment that names the key (`marker`).
    pub marker: String,
    pub streams: PathBuf,
    pub required: bool,
}

/// A key installed at a target, for `revoke`.
#[derive(Debug, Clone)]
pub struct Grant {
    pub route: Arc<Route>,
    pub file: String,
    pub marker: String,
}

/// The comment of a move's key: `transhumance-direct:PLAN:SOURCE>TARGET:NONCE`; the plan's
/// prefix (`stale_prefix`) finds every key a crashed run of it left.
pub fn marker(plan: &str, source: &str, target: &str, nonce: &str) -> String {
    format!(
        "{}{}>{}:{nonce}",
        stale_prefix(plan),
        clean(source),
        clean(target)
    )
}

/// The start of every marker of `plan`'s keys.
pub fn stale_prefix(plan: &str) -> String {
    format!("transhumance-direct:{}:", clean(plan))
}

fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A random nonce (hex) for a marker and a stream directory.
pub fn nonce() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness")?;
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

/// Sets up one direct path: resolves where the source reaches the target's sshd and installs a
/// fresh restricted key at the target. Whether the source logs in with it is `check`'s to say.
///
/// # Errors
/// Why the path cannot be set up.
pub fn grant(req: &Request<'_>) -> Result<Grant, String> {
    let resolved = resolve(req.target_access)?;
    let (address, port) = match &req.address {
        Some((a, p)) => (a.clone(), p.unwrap_or(resolved.port)),
        None => (resolved.hostname.clone(), resolved.port),
    };
    // The route's own address: whether sshd answers there is what `check` finds out.
    let reach = probe(req.source, &address, port, false)
        .map_err(|e| format!("`{}` cannot reach {address}:{port}: {e}", req.source.host()))?;
    let keys = key_pair(&req.marker)?;
    let installed = req
        .target
        .channel(0)
        .and_then(|c| {
            c.call_wait(Call::AuthorizePeer(Box::new(PeerGrant {
                file: req.authorized_keys.clone(),
                public_key: keys.public.clone(),
                from: reach.from.clone(),
                confine: req.confine.clone(),
                streams: req.streams.clone(),
                marker: req.marker.clone(),
            })))
        })
        .map_err(|e| format!("installing the move's key: {e}"))?;
    if !matches!(installed, Reply::Done(_)) {
        return Err(format!(
            "installing the move's key: unexpected {installed:?}"
        ));
    }
    let spec = PeerSpec {
        host: req.target.host().to_string(),
        address,
        port,
        user: resolved.user.clone(),
        key: keys.private.clone(),
        known_hosts: resolved.known_hosts.clone(),
    };
    Ok(Grant {
        route: Arc::new(Route {
            source: req.source.host().to_string(),
            target: req.target.host().to_string(),
            spec,
            streams: req.streams.clone(),
            required: req.required,
        }),
        file: req.authorized_keys.clone(),
        marker: req.marker.clone(),
    })
}

/// Logs in from the source with the route's key once (the source's agent keeps that
/// connection for the engines that use the route).
///
/// # Errors
/// Why the source cannot log in (unreachable, key refused, host key not the pinned one).
pub fn check(source: &dyn Transport, route: &Route) -> Result<(), String> {
    let tried = source
        .channel(0)
        .and_then(|c| c.call_wait(Call::PeerOpen(Box::new(route.spec.clone()))));
    match tried {
        Ok(Reply::Opened(_)) => Ok(()),
        Ok(r) => Err(format!("unexpected {r:?}")),
        Err(e) => Err(format!(
            "`{}` cannot log in to `{}` with the move's key: {e}",
            route.source, route.target
        )),
    }
}

/// Removes the keys marked `marker` (a prefix) from the target's authorized_keys file, and
/// the stream directory: the lines removed.
///
/// # Errors
/// The target cannot be reached or its file rewritten.
pub fn revoke(
    target: &dyn Transport,
    file: &str,
    marker: &str,
    streams: Option<&Path>,
) -> Result<u64, TransportError> {
    match target.channel(0)?.call_wait(Call::RevokePeer {
        file: file.to_string(),
        marker: marker.to_string(),
        streams: streams.map(Path::to_path_buf),
    })? {
        Reply::Done(o) => Ok(o.len),
        r => Err(TransportError::Protocol {
            host: target.host().into(),
            message: format!("unexpected {r:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pairs_are_what_ssh_keygen_reads() {
        let pair = key_pair("transhumance-direct:t:a>b:00").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, &pair.private).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // ssh-keygen -y derives the public key from the private file: it must be ours.
        let Ok(out) = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
        else {
            return; // no OpenSSH client here
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8_lossy(&out.stdout);
        assert!(
            derived.starts_with(&pair.public),
            "{derived} vs {}",
            pair.public
        );
        assert_ne!(key_pair("x").unwrap().public, pair.public);
    }

    #[test]
    fn markers_name_the_plan_and_pair_and_nothing_else_matches_the_prefix() {
        let m = marker("coop move", "old:web", "new-web", "ab12");
        assert_eq!(m, "transhumance-direct:coop_move:old_web>new-web:ab12");
        assert!(m.starts_with(&stale_prefix("coop move")));
        assert!(!marker("a:b", "x", "y", "1").starts_with(&stale_prefix("a")));
    }

    #[test]
    fn known_hosts_lines_are_pinned_under_the_alias() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            "[127.0.0.1]:2222 ssh-ed25519 AAAAkey1\nother ssh-ed25519 AAAAkey2\n@cert-authority [127.0.0.1]:2222 ssh-ed25519 AAAAca\n",
        )
        .unwrap();
        let Ok(lines) = pinned_lines("[127.0.0.1]:2222", &file) else {
            return;
        };
        if lines.is_empty() && Command::new("ssh-keygen").arg("-?").output().is_err() {
            return;
        }
        assert_eq!(
            lines,
            [
                format!("{PEER_HOST_ALIAS} ssh-ed25519 AAAAkey1"),
                format!("@cert-authority {PEER_HOST_ALIAS} ssh-ed25519 AAAAca"),
            ]
        );
    }
}
