//! How the engine reaches a host: the `Transport` trait, in-process or over ssh.
//!
//! Every operation here is read-only on the host except `exec`, whose command the caller owns.
pub mod agent;
pub mod authorized;
pub mod channel;
pub mod confine;
pub mod direct;
pub mod forward;
pub mod hosts;
pub mod local;
pub mod peer;
pub mod pipe;
pub mod protocol;
pub mod rendezvous;
pub mod server;
pub mod session;
pub mod ssh;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tree::ScanSummary;

pub use hosts::{Backoff, Connections, default_agent_binary};

/// Puts the child in a process group of its own: a Ctrl-C at the terminal then reaches only
/// us, so an ssh session, a freeze hook or a dump is never killed half-way by it, and the
/// lifecycle decides what stops (it finishes or undoes the step it is in).
pub fn own_process_group(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    command.process_group(0)
}
pub use local::LocalTransport;
pub use ssh::SshTransport;

/// Free and total bytes of the file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsSpace {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// A command to run on a host. `env` carries secrets: it travels inside the transport, never on
/// a command line that `ps` shows, and is never logged.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecRequest")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env_names)
            .finish_non_exhaustive()
    }
}

impl ExecRequest {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        ExecRequest {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code; `None` when killed by a signal or the program could not start.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// A transport failure, naming the host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("host `{host}`: {message}")]
    Connect { host: String, message: String },
    #[error("host `{host}`: {path}: {message}")]
    Path {
        host: String,
        path: String,
        message: String,
    },
    #[error("host `{host}`: {message}")]
    Remote { host: String, message: String },
    #[error("host `{host}`: protocol error: {message}")]
    Protocol { host: String, message: String },
}

/// What the caller must do about a transport failure: a connection that failed or dropped is
/// worth another try (on a new connection); an error the far side reported is not.
impl From<TransportError> for crate::unit::UnitError {
    fn from(e: TransportError) -> Self {
        use crate::unit::UnitError;
        let (error, host) = match e {
            TransportError::Connect { host, message } => {
                (UnitError::unreachable(message).transient(), host)
            }
            TransportError::Path {
                host,
                path,
                message,
            } => (
                UnitError::io(format!("{path}: {message}")).permanent(),
                host,
            ),
            TransportError::Remote { host, message } => (UnitError::io(message).permanent(), host),
            TransportError::Protocol { host, message } => (
                UnitError::io(format!("protocol error: {message}")).permanent(),
                host,
            ),
        };
        error.on_host(host)
    }
}

/// Read-only access to a host's files, plus running commands there.
pub trait Transport: Send + Sync {
    /// The plan's name for this host.
    fn host(&self) -> &str;

    /// Directories matching `pattern` (absolute, `*`, `?` and `[..]` per component), sorted;
    /// symlinks are not followed.
    ///
    /// # Errors
    /// An unreachable host or an invalid pattern.
    fn glob_dirs(&self, pattern: &str) -> Result<Vec<PathBuf>, TransportError>;

    /// Lists the tree under `root`.
    ///
    /// # Errors
    /// An unreachable host or invalid excludes; unreadable entries are in the summary.
    fn scan(&self, root: &Path, exclude: &[String]) -> Result<ScanSummary, TransportError> {
        self.scan_with(root, exclude, crate::tree::xattr::Keep::NONE)
    }

    /// Lists the tree under `root` with the extended attributes and ACLs `keep` covers.
    ///
    /// # Errors
    /// As `scan`.
    fn scan_with(
        &self,
        root: &Path,
        exclude: &[String],
        keep: crate::tree::xattr::Keep,
    ) -> Result<ScanSummary, TransportError>;

    /// As `scan_with`, handing the listing to `on_part` in parts as they come (in
    /// `walk_order`, each with its errors, attributes and flags, and `listed_as_root`), so
    /// the caller works on them while the rest is listed; what is left, with the root's own
    /// fields, is returned (`ScanSummary::joined` makes parts and rest the whole listing).
    /// An error of `on_part` ends the listing with it. By default no part: the rest is all.
    ///
    /// # Errors
    /// As `scan_with`, or `on_part`'s.
    fn scan_parts(
        &self,
        root: &Path,
        exclude: &[String],
        keep: crate::tree::xattr::Keep,
        on_part: &mut dyn FnMut(ScanSummary) -> Result<(), TransportError>,
    ) -> Result<ScanSummary, TransportError> {
        let _ = on_part;
        self.scan_with(root, exclude, keep)
    }

    /// As `scan_with`, each file's content hashed too (`ScanSummary::digests`), where the
    /// tree is.
    ///
    /// # Errors
    /// As `scan_with`.
    fn scan_digested(
        &self,
        root: &Path,
        exclude: &[String],
        keep: crate::tree::xattr::Keep,
    ) -> Result<ScanSummary, TransportError>;

    /// Space of the file system that holds `path` (or its nearest existing parent).
    ///
    /// # Errors
    /// An unreachable host, or no existing parent.
    fn space(&self, path: &Path) -> Result<FsSpace, TransportError>;

    /// Runs a command on the host and waits for it.
    ///
    /// # Errors
    /// An unreachable host; a command that fails is an `Ok` with its exit code.
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, TransportError>;

    /// Why the connection is gone, when it is (ssh died, the server dropped it): callers that
    /// hold this transport see their calls fail, and `Connections` opens a new one.
    fn lost(&self) -> Option<String> {
        None
    }

    /// Whether this is the machine we run on (files can be read directly).
    fn is_local(&self) -> bool {
        false
    }

    /// Protocol bytes this process wrote to and read from the host so far, all streams (0
    /// for this machine).
    fn wire_bytes(&self) -> (u64, u64) {
        (0, 0)
    }

    /// The direct data path from this host to host `target`, when the run set one up: the
    /// engines then send bytes host to host instead of through this process.
    fn direct_to(&self, _target: &str) -> Option<std::sync::Arc<direct::Route>> {
        None
    }

    /// The `index`-th stream of calls to this host (opened on first use); several streams move
    /// files in parallel. Local hosts have one, served in-process.
    ///
    /// # Errors
    /// A new stream cannot be opened.
    fn channel(&self, index: usize)
    -> Result<std::sync::Arc<dyn channel::Channel>, TransportError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{ErrorKind, UnitError};

    #[test]
    fn lost_connections_are_transient_remote_failures_permanent() {
        let host = || "web".to_string();
        let dropped = UnitError::from(TransportError::Connect {
            host: host(),
            message: "connection lost while waiting for a reply".into(),
        });
        assert_eq!(dropped.kind, ErrorKind::Unreachable);
        assert!(dropped.is_transient());
        assert_eq!(dropped.host.as_deref(), Some("web"));
        for e in [
            TransportError::Remote {
                host: host(),
                message: "disk full".into(),
            },
            TransportError::Path {
                host: host(),
                path: "/srv/a".into(),
                message: "permission denied".into(),
            },
            TransportError::Protocol {
                host: host(),
                message: "bad frame".into(),
            },
        ] {
            let u = UnitError::from(e);
            assert_eq!(u.kind, ErrorKind::Io, "{u}");
            assert!(!u.is_transient(), "{u}");
        }
    }
}
