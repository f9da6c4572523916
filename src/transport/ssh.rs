//! The ssh transport: the system OpenSSH client, multiplexed, running our own agent remotely.
//!
//! Using `ssh` itself means the user's `~/.ssh/config`, ProxyJump bastions, agents,
//! certificates and known_hosts work exactly as in their shell. Host keys are checked strictly
//! (`BatchMode=yes`: an unknown or changed key fails, nothing is asked or added).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::channel::{Channel, RemoteChannel};
use super::protocol::{Call, PROTOCOL_VERSION, Reply, Request, Response, read_frame, write_frame};
use super::{ExecOutput, ExecRequest, FsSpace, Transport, TransportError};
use crate::plan::SshAccess;
use crate::tree::ScanSummary;

/// Exit status the remote launcher uses to say "agent binary missing here".
const AGENT_MISSING: i32 = 97;

/// How to start `ssh` towards one host.
#[derive(Debug, Clone)]
pub struct SshCommand {
    /// The program and options before the destination (`ssh -p 22 -i KEY ...`).
    pub base: Vec<String>,
    pub destination: String,
}

impl SshCommand {
    /// Builds the command for a plan host; `control_dir` holds the ControlMaster socket.
    pub fn for_access(access: &SshAccess, control_dir: &Path) -> SshCommand {
        let mut base = vec!["ssh".to_string()];
        if let Some(port) = access.target.port {
            base.extend(["-p".into(), port.to_string()]);
        }
        if let Some(id) = &access.identity_file {
            base.extend([
                "-i".into(),
                id.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if let Some(kh) = &access.known_hosts {
            base.extend(["-o".into(), format!("UserKnownHostsFile={}", kh.display())]);
        }
        for opt in &access.options {
            base.extend(["-o".into(), opt.clone()]);
        }
        let destination = match &access.target.user {
            Some(u) => format!("{u}@{}", access.target.host),
            None => access.target.host.clone(),
        };
        let mut cmd = SshCommand { base, destination };
        cmd.add_defaults(control_dir);
        cmd
    }

    /// Builds the command from an rsync-style `-e` string such as `ssh -i KEY -p 2222`.
    pub fn from_rsh(rsh: &str, destination: &str, control_dir: &Path) -> SshCommand {
        let mut cmd = SshCommand {
            base: rsh.split_whitespace().map(String::from).collect(),
            destination: destination.into(),
        };
        cmd.add_defaults(control_dir);
        cmd
    }

    fn add_defaults(&mut self, control_dir: &Path) {
        // Options given first win in OpenSSH, so these only fill what the user left unset.
        let mut defaults = vec![
            "BatchMode=yes".to_string(),
            "ControlMaster=auto".to_string(),
            format!("ControlPath={}/%C", control_dir.display()),
            "ControlPersist=60".to_string(),
            "ServerAliveInterval=15".to_string(),
            "ConnectTimeout=15".to_string(),
        ];
        defaults.extend(fast_ciphers());
        for opt in defaults {
            self.base.extend(["-o".into(), opt]);
        }
    }

    /// A `Command` that runs `remote` (a shell command line) on the host.
    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new(&self.base[0]);
        super::own_process_group(&mut c);
        c.args(&self.base[1..])
            .arg("--")
            .arg(&self.destination)
            .arg(remote);
        c
    }
}

/// With AES instructions, AES-GCM moves about twice what ChaCha20 does per core, and one core
/// of cipher is what caps an ssh stream. `^` only moves them first in the default list.
pub fn fast_ciphers() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        return Some("Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com".to_string());
    }
    None
}

/// Quotes `s` for a POSIX shell; `~/` at the start becomes `"$HOME"/`.
pub fn shell_quote(s: &str) -> String {
    if let Some(rest) = s.strip_prefix("~/") {
        return format!("\"$HOME\"/{}", shell_quote(rest));
    }
    if s == "~" {
        return "\"$HOME\"".into();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A host reached over ssh: agent sessions (ssh channels of one ControlMaster) opened on demand.
pub struct SshTransport {
    host: String,
    ssh: SshCommand,
    remote_path: String,
    channels: Mutex<Vec<Arc<RemoteChannel>>>,
    children: Mutex<Vec<Child>>,
    _control_dir: Option<tempfile::TempDir>,
    /// The run's direct paths (from this host to others), when it has any.
    routes: Option<Arc<super::direct::Routes>>,
}

impl SshTransport {
    /// Connects to a plan host, uploading the agent when the host lacks it.
    ///
    /// # Errors
    /// Unreachable host, refused authentication, unknown or changed host key, or an agent
    /// that does not answer; each names the host.
    pub fn connect(
        host: &str,
        access: &SshAccess,
        agent_binary: &Path,
    ) -> Result<SshTransport, TransportError> {
        let control_dir = control_dir(host)?;
        let ssh = SshCommand::for_access(access, control_dir.path());
        let agent_dir = access.agent_dir.clone();
        Self::connect_with(host, ssh, &agent_dir, agent_binary, Some(control_dir))
    }

    /// Connects with a ready ssh command line (the `-e` of `copy`).
    ///
    /// # Errors
    /// As `connect`.
    pub fn connect_with(
        host: &str,
        ssh: SshCommand,
        agent_dir: &str,
        agent_binary: &Path,
        control_dir: Option<tempfile::TempDir>,
    ) -> Result<SshTransport, TransportError> {
        let unreadable = |e: std::io::Error| TransportError::Connect {
            host: host.into(),
            message: format!(
                "cannot read the agent binary `{}` to upload: {e}",
                agent_binary.display()
            ),
        };
        let digest = agent_digest(agent_binary).map_err(unreadable)?;
        let remote_path = format!(
            "{}/transhumance-{}-{}",
            agent_dir.trim_end_matches('/'),
            env!("CARGO_PKG_VERSION"),
            &digest[..16]
        );
        let (child, channel) = match start_session(host, &ssh, &remote_path)? {
            Some(s) => s,
            None => {
                let binary = std::fs::read(agent_binary).map_err(unreadable)?;
                upload(host, &ssh, agent_dir, &remote_path, &binary)?;
                start_session(host, &ssh, &remote_path)?.ok_or_else(|| TransportError::Connect {
                    host: host.into(),
                    message: format!("the agent uploaded to `{remote_path}` does not start"),
                })?
            }
        };
        Ok(SshTransport {
            host: host.into(),
            ssh,
            remote_path,
            channels: Mutex::new(vec![Arc::new(channel)]),
            children: Mutex::new(vec![child]),
            _control_dir: control_dir,
            routes: None,
        })
    }

    /// Lets the engines find the run's direct paths from this host.
    pub fn with_routes(mut self, routes: Arc<super::direct::Routes>) -> SshTransport {
        self.routes = Some(routes);
        self
    }

    /// The ssh command line in use, for running plain commands alongside the agent.
    pub fn ssh_command(&self) -> &SshCommand {
        &self.ssh
    }

    fn first(&self) -> Arc<RemoteChannel> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())[0].clone()
    }

    fn unexpected(&self, r: Reply) -> TransportError {
        TransportError::Protocol {
            host: self.host.clone(),
            message: format!("unexpected answer {r:?}"),
        }
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        for c in self
            .channels
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            c.close();
        }
        for mut child in self
            .children
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = child.wait();
        }
        // Close the ControlMaster we may have started, so no ssh lingers after us.
        let mut exit = Command::new(&self.ssh.base[0]);
        super::own_process_group(&mut exit)
            .args(&self.ssh.base[1..])
            .args(["-O", "exit", &self.ssh.destination])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = exit.status();
    }
}

impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn glob_dirs(&self, pattern: &str) -> Result<Vec<PathBuf>, TransportError> {
        match self.first().call_wait(Call::GlobDirs {
            pattern: pattern.into(),
        })? {
            Reply::Dirs(d) => Ok(d),
            r => Err(self.unexpected(r)),
        }
    }

    fn scan_with(
        &self,
        root: &Path,
        exclude: &[String],
        keep: crate::tree::xattr::Keep,
    ) -> Result<ScanSummary, TransportError> {
        let pending = self.first().call(Call::Scan {
            root: root.into(),
            exclude: exclude.to_vec(),
            keep,
        })?;
        scan_streamed(&self.host, pending)
    }

    fn scan_parts(
        &self,
        root: &Path,
        exclude: &[String],
        keep: crate::tree::xattr::Keep,
        on_part: &mut dyn FnMut(ScanSummary) -> Result<(), TransportError>,
    ) -> Result<ScanSummary, TransportError> {
        let pending = self.first().call(Call::Scan {
            root: root.into(),
            exclude: exclude.to_vec(),
            keep,
        })?;
        scan_parts_of(&self.host, pending, on_part)
    }

    fn scan_digested(
        &self,
        root: &Path,
        exclude: &[String],
        keep: crate::tree::xattr::Keep,
    ) -> Result<ScanSummary, TransportError> {
        let reply = self.first().call_wait(Call::ScanDigested {
            root: root.into(),
            exclude: exclude.to_vec(),
            keep,
        })?;
        scan_reply(&self.host, reply)
    }

    fn space(&self, path: &Path) -> Result<FsSpace, TransportError> {
        match self.first().call_wait(Call::Space { path: path.into() })? {
            Reply::Space(s) => Ok(s),
            r => Err(self.unexpected(r)),
        }
    }

    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, TransportError> {
        match self.first().call_wait(Call::Exec(request.clone()))? {
            Reply::Exec(o) => Ok(o),
            r => Err(self.unexpected(r)),
        }
    }

    fn lost(&self) -> Option<String> {
        // The first session's ssh exiting is the earliest sign (the ControlMaster or the
        // server went away); its reader thread notices the closed stream a moment later.
        if let Some(child) = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Some(format!("ssh exited ({status})"));
        }
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|c| c.lost())
    }

    fn wire_bytes(&self) -> (u64, u64) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|c| c.wire_bytes())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    fn direct_to(&self, target: &str) -> Option<Arc<super::direct::Route>> {
        self.routes.as_ref()?.get(&self.host, target)
    }

    fn channel(&self, index: usize) -> Result<Arc<dyn Channel>, TransportError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        while channels.len() <= index {
            let (child, channel) = start_session(&self.host, &self.ssh, &self.remote_path)?
                .ok_or_else(|| TransportError::Connect {
                    host: self.host.clone(),
                    message: "the agent disappeared from the host".into(),
                })?;
            self.children
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(child);
            channels.push(Arc::new(channel));
        }
        Ok(channels[index].clone())
    }
}

/// The listing a `Scan` call's reply holds, unpacked within the bounds a peer's data gets
/// (`protocol::inflate`); anything else from `host` is a protocol error naming it.
///
/// # Errors
/// `TransportError::Protocol`: an unexpected reply, or a listing that is corrupt or would
/// inflate past its bound.
pub fn scan_reply(host: &str, reply: Reply) -> Result<ScanSummary, TransportError> {
    let protocol = |message: String| TransportError::Protocol {
        host: host.into(),
        message,
    };
    match reply {
        Reply::Scan(packed) => {
            super::protocol::unpack_scan(&packed).map_err(|e| protocol(e.to_string()))
        }
        r => Err(protocol(format!("unexpected answer {r:?}"))),
    }
}

/// A listing's parts checked as they arrive (`Reply::ScanPart`, then `Scan`): each unpacked
/// while the agent walks on, all of them within one `MAX_LISTING`, each within the bound of
/// its own bytes, the entries in `walk_order` across parts (the diff pairs entries by that
/// order), and every part from one lister (`listed_as_root` as the end says); anything else
/// from `host` is a protocol error naming it.
#[derive(Debug)]
pub struct ListingParts {
    host: String,
    /// Bytes inflated so far, against `MAX_LISTING`.
    inflated: u64,
    /// The last path taken so far, against which the next one is ordered.
    last: Option<Vec<u8>>,
    /// What the parts so far said of their lister.
    as_root: Option<bool>,
}

impl ListingParts {
    pub fn new(host: &str) -> ListingParts {
        ListingParts {
            host: host.into(),
            inflated: 0,
            last: None,
            as_root: None,
        }
    }

    fn protocol(&self, message: String) -> TransportError {
        TransportError::Protocol {
            host: self.host.clone(),
            message,
        }
    }

    fn unpack(&mut self, packed: &[u8]) -> Result<ScanSummary, TransportError> {
        let cap = super::protocol::MAX_LISTING.saturating_sub(self.inflated);
        let raw = super::protocol::inflate(packed, cap, "listing")
            .map_err(|e| self.protocol(e.to_string()))?;
        self.inflated += raw.len() as u64;
        postcard::from_bytes(&raw).map_err(|e| self.protocol(format!("listing: {e}")))
    }

    /// Checks that `part` goes on where the parts so far ended, from the same lister.
    fn follows(&mut self, part: &ScanSummary) -> Result<(), TransportError> {
        if *self.as_root.get_or_insert(part.listed_as_root) != part.listed_as_root {
            return Err(self.protocol("listing parts disagree on their lister".into()));
        }
        let mut last = self.last.as_deref();
        for e in &part.entries {
            if last.is_some_and(|l| {
                crate::tree::scan::walk_order(l, &e.path) != std::cmp::Ordering::Less
            }) {
                return Err(self.protocol(format!(
                    "listing out of order: `{}` after `{}`",
                    String::from_utf8_lossy(&e.path),
                    String::from_utf8_lossy(last.unwrap_or_default())
                )));
            }
            last = Some(&e.path);
        }
        if let Some(e) = part.entries.last() {
            self.last = Some(e.path.clone());
        }
        Ok(())
    }

    /// Takes one streamed reply of the listing: the part it holds, checked.
    ///
    /// # Errors
    /// A reply that is not a part, or a part refused as above.
    pub fn part(&mut self, reply: Reply) -> Result<ScanSummary, TransportError> {
        match reply {
            Reply::ScanPart(packed) => {
                let part = self.unpack(&packed)?;
                if part.exists || part.root_meta.is_some() || !part.digests.is_empty() {
                    return Err(self.protocol("a listing part with the root's fields".into()));
                }
                self.follows(&part)?;
                Ok(part)
            }
            r => Err(self.protocol(format!("unexpected answer {r:?}"))),
        }
    }

    /// The rest of the listing with the root's own fields, from its terminal reply, checked
    /// (`ScanSummary::joined` makes it and the parts the whole listing).
    ///
    /// # Errors
    /// As `part`.
    pub fn finish(mut self, reply: Reply) -> Result<ScanSummary, TransportError> {
        match reply {
            Reply::Scan(packed) => {
                let rest = self.unpack(&packed)?;
                if !rest.digests.is_empty() {
                    return Err(self.protocol("a streamed listing with digests".into()));
                }
                self.follows(&rest)?;
                Ok(rest)
            }
            r => Err(self.protocol(format!("unexpected answer {r:?}"))),
        }
    }
}

/// The listing a `Scan` call streams, each part handed to `on_part` once checked
/// (`ListingParts`); the rest, with the root's own fields, is returned.
///
/// # Errors
/// The far side's error, a lost connection, a listing refused by `ListingParts`, or
/// `on_part`'s error.
pub fn scan_parts_of(
    host: &str,
    pending: super::channel::Pending,
    on_part: &mut dyn FnMut(ScanSummary) -> Result<(), TransportError>,
) -> Result<ScanSummary, TransportError> {
    let mut parts = ListingParts::new(host);
    let end = pending.wait_streaming(host, &mut |r| on_part(parts.part(r)?))?;
    parts.finish(end)
}

/// The listing a `Scan` call streams, assembled as its parts arrive (`scan_parts_of`).
///
/// # Errors
/// As `scan_parts_of`.
pub fn scan_streamed(
    host: &str,
    pending: super::channel::Pending,
) -> Result<ScanSummary, TransportError> {
    let mut parts = ScanSummary::default();
    let rest = scan_parts_of(host, pending, &mut |p| {
        parts.append(p);
        Ok(())
    })?;
    Ok(ScanSummary::joined(parts, rest))
}

/// The agent binary's BLAKE3 (hex), read and hashed once per process and binary version: a
/// run that connects to many hosts would read the whole binary again for each.
fn agent_digest(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    type Known = Vec<(PathBuf, (u64, i64, i64), String)>;
    static KNOWN: Mutex<Known> = Mutex::new(Vec::new());
    let m = std::fs::metadata(path)?;
    let version = (m.len(), m.mtime(), m.mtime_nsec());
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, d)) = known.iter().find(|(p, v, _)| p == path && *v == version) {
        return Ok(d.clone());
    }
    let digest = blake3::hash(&std::fs::read(path)?).to_hex().to_string();
    known.push((path.to_path_buf(), version, digest.clone()));
    Ok(digest)
}

fn control_dir(host: &str) -> Result<tempfile::TempDir, TransportError> {
    // Short base: ControlPath sockets must stay under ~100 bytes.
    tempfile::Builder::new()
        .prefix("th-ssh-")
        .tempdir_in("/tmp")
        .map_err(|e| TransportError::Connect {
            host: host.into(),
            message: format!("cannot create a directory for the ssh control socket: {e}"),
        })
}

/// Starts an agent session; `Ok(None)` when the host lacks the agent.
pub(super) fn start_session(
    host: &str,
    ssh: &SshCommand,
    remote_path: &str,
) -> Result<Option<(Child, RemoteChannel)>, TransportError> {
    let p = shell_quote(remote_path);
    let launcher =
        format!("if [ -x {p} ]; then exec {p} agent --stdio; else exit {AGENT_MISSING}; fi");
    let mut child = ssh
        .command(&launcher)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TransportError::Connect {
            host: host.into(),
            message: format!("cannot run `{}`: {e}", ssh.base[0]),
        })?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut err_pipe = child.stderr.take().expect("piped");
    let sink = stderr.clone();
    let err_reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
    let mut input = child.stdin.take().expect("piped");
    let mut output = child.stdout.take().expect("piped");
    {
        use std::os::fd::AsRawFd;
        super::agent::grow_pipe(input.as_raw_fd());
        super::agent::grow_pipe(output.as_raw_fd());
    }
    // The agent starts its stream with a fixed greeting: anything else on stdout (a login
    // script printing a banner) would be read as frame lengths and could wait forever.
    let hello = write_frame(&mut input, &Request::Hello { protocol: PROTOCOL_VERSION }).and_then(|()| {
        let mut magic = [0u8; 8];
        output.read_exact(&mut magic)?;
        if &magic != super::agent::MAGIC {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the remote shell printed `{}` before the agent started: make its startup files (~/.bashrc) quiet for non-interactive shells", String::from_utf8_lossy(&magic).escape_debug()),
            ));
        }
        read_frame::<Response>(&mut output)
    });
    match hello {
        Ok(Some(Response::Hello { protocol, .. })) if protocol == PROTOCOL_VERSION => {
            let channel = RemoteChannel::new(host, Box::new(input), Box::new(output), stderr);
            Ok(Some((child, channel)))
        }
        Ok(Some(Response::Hello { protocol, version })) => Err(TransportError::Protocol {
            host: host.into(),
            message: format!(
                "the agent speaks protocol {protocol} (transhumance {version}), this controller {PROTOCOL_VERSION}"
            ),
        }),
        Ok(Some(other)) => Err(TransportError::Protocol {
            host: host.into(),
            message: format!("agent answered {other:?} to hello"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(TransportError::Connect {
            host: host.into(),
            message: e.to_string(),
        }),
        Ok(None) | Err(_) => {
            drop(input);
            let status = child.wait().ok().and_then(|s| s.code());
            let _ = err_reader.join();
            let err = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|p| p.into_inner()))
                .to_string();
            if status == Some(AGENT_MISSING) {
                return Ok(None);
            }
            Err(TransportError::Connect {
                host: host.into(),
                message: explain_ssh_failure(&err, status),
            })
        }
    }
}

fn upload(
    host: &str,
    ssh: &SshCommand,
    agent_dir: &str,
    remote_path: &str,
    binary: &[u8],
) -> Result<(), TransportError> {
    let dir = shell_quote(agent_dir);
    let p = shell_quote(remote_path);
    let script = format!(
        "umask 077 && mkdir -p {dir} && cat > {p}.tmp.$$ && chmod 700 {p}.tmp.$$ && mv -f {p}.tmp.$$ {p}"
    );
    let mut child = ssh
        .command(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TransportError::Connect {
            host: host.into(),
            message: format!("cannot run ssh: {e}"),
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let data = binary.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child
        .wait_with_output()
        .map_err(|e| TransportError::Connect {
            host: host.into(),
            message: e.to_string(),
        })?;
    let _ = writer.join();
    if out.status.success() {
        Ok(())
    } else {
        Err(TransportError::Connect {
            host: host.into(),
            message: format!(
                "cannot upload the agent to `{remote_path}`: {}",
                explain_ssh_failure(&String::from_utf8_lossy(&out.stderr), out.status.code())
            ),
        })
    }
}

/// Turns ssh's stderr into a sentence an operator can act on.
pub fn explain_ssh_failure(stderr: &str, status: Option<i32>) -> String {
    let said = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect::<Vec<_>>()
        .join("; ");
    let hint = if said.contains("Host key verification failed")
        || said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    {
        "host key unknown or changed: check the key, then add it to known_hosts (ssh-keyscan); nothing was sent"
    } else if said.contains("Permission denied") {
        "authentication refused: check the user, the identity file and the authorized keys"
    } else if said.contains("Connection refused")
        || said.contains("No route to host")
        || said.contains("timed out")
        || said.contains("Could not resolve")
    {
        "cannot reach the ssh server"
    } else {
        "ssh failed"
    };
    let code = status.map(|c| format!(" (exit {c})")).unwrap_or_default();
    if said.is_empty() {
        format!("{hint}{code}")
    } else {
        format!("{hint}{code}: {said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_home_expansion_only_for_tilde() {
        assert_eq!(shell_quote("~/.cache/x y"), "\"$HOME\"/'.cache/x y'");
        assert_eq!(shell_quote("/a'b"), "'/a'\\''b'");
    }

    #[test]
    fn ssh_failures_are_explained() {
        assert!(
            explain_ssh_failure("Host key verification failed.\n", Some(255))
                .starts_with("host key unknown or changed")
        );
        assert!(
            explain_ssh_failure(
                "ssh: connect to host 127.0.0.1 port 1: Connection refused",
                Some(255)
            )
            .starts_with("cannot reach")
        );
    }

    fn listing_of(paths: &[&str], exists: bool) -> Vec<u8> {
        let entries = paths
            .iter()
            .map(|p| crate::tree::Entry {
                path: p.as_bytes().to_vec(),
                kind: crate::tree::EntryKind::File,
                size: 0,
                mtime_ns: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                nlink: 1,
                dev: 0,
                ino: 0,
                rdev: 0,
                link_target: None,
            })
            .collect();
        super::super::protocol::pack_scan(&ScanSummary {
            exists,
            entries,
            errors: vec![(paths.first().unwrap_or(&"").as_bytes().to_vec(), "e".into())],
            ..ScanSummary::default()
        })
    }

    #[test]
    fn parts_assemble_in_walk_order_with_the_end_last() {
        let mut parts = ListingParts::new("h");
        let mut whole = ScanSummary::default();
        whole.append(
            parts
                .part(Reply::ScanPart(listing_of(&["a", "a/b"], false)))
                .unwrap(),
        );
        whole.append(parts.part(Reply::ScanPart(listing_of(&[], false))).unwrap());
        let rest = parts
            .finish(Reply::Scan(listing_of(&["a.b", "b/c"], true)))
            .unwrap();
        let whole = ScanSummary::joined(whole, rest);
        let paths: Vec<&[u8]> = whole.entries.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(paths, [&b"a"[..], b"a/b", b"a.b", b"b/c"]);
        assert!(whole.exists);
        assert_eq!(whole.errors.len(), 3, "each part's errors are kept");
        // The order holds across the last part and the end too.
        let mut parts = ListingParts::new("h");
        parts
            .part(Reply::ScanPart(listing_of(&["a.b"], false)))
            .unwrap();
        let err = parts
            .finish(Reply::Scan(listing_of(&["a/b"], true)))
            .unwrap_err();
        assert!(
            matches!(&err, TransportError::Protocol { host, message } if host == "h" && message.contains("out of order")),
            "{err:?}"
        );
        // Every part says who listed it, as the end does: a pairing reads it from the first.
        let mut parts = ListingParts::new("h");
        parts
            .part(Reply::ScanPart(listing_of(&["a"], false)))
            .unwrap();
        let mut rooted =
            crate::transport::protocol::unpack_scan(&listing_of(&["b"], true)).unwrap();
        rooted.listed_as_root = true;
        let err = parts
            .finish(Reply::Scan(crate::transport::protocol::pack_scan(&rooted)))
            .unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
    }
}
