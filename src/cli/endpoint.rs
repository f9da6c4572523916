//! Parses `copy`/`verify` arguments (`/local/path` or `[user@]host[:port]:/path`) and connects.

use std::path::PathBuf;
use std::sync::Arc;

use crate::lifecycle::default_agent_binary;
use crate::plan::SshAccess;
use crate::plan::units::{SshTarget, parse_ssh_target};
use crate::sync::Endpoint;
use crate::transport::ssh::SshCommand;
use crate::transport::{LocalTransport, SshTransport, TransportError};

/// Where a command-line path lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(SshTarget, PathBuf),
}

/// `host:/path`, `user@host:2222:/path`, `[v6]:22:/path`, or a local path.
///
/// # Errors
/// A remote spec whose host part does not parse.
pub fn parse_location(spec: &str) -> Result<Location, String> {
    if spec.starts_with('/') || spec.starts_with('.') || !spec.contains(":/") {
        return Ok(Location::Local(PathBuf::from(spec)));
    }
    let (host, path) = spec.split_once(":/").expect("checked");
    let target = parse_ssh_target(host).map_err(|e| format!("in `{spec}`: {e}"))?;
    Ok(Location::Remote(target, PathBuf::from(format!("/{path}"))))
}

/// Connects to a location; `rsh` is an rsync-style `-e` command line.
///
/// # Errors
/// The host cannot be reached (named), or a local path has no usable absolute form.
pub fn connect(location: &Location, rsh: Option<&str>) -> Result<Endpoint, TransportError> {
    match location {
        Location::Local(p) => {
            let abs = if p.is_absolute() {
                p.clone()
            } else {
                std::env::current_dir()
                    .map(|d| d.join(p))
                    .unwrap_or_else(|_| p.clone())
            };
            Ok(Endpoint {
                transport: Arc::new(LocalTransport::new("local")),
                root: abs,
            })
        }
        Location::Remote(target, path) => {
            let control = tempfile::Builder::new()
                .prefix("th-ssh-")
                .tempdir_in("/tmp")
                .map_err(|e| TransportError::Connect {
                    host: target.to_string(),
                    message: e.to_string(),
                })?;
            let ssh = match rsh {
                Some(cmd) => {
                    let mut c = SshCommand::from_rsh(cmd, &destination(target), control.path());
                    if let Some(port) = target.port {
                        c.base.splice(1..1, ["-p".to_string(), port.to_string()]);
                    }
                    c
                }
                None => {
                    let access = SshAccess {
                        target: target.clone(),
                        identity_file: None,
                        known_hosts: None,
                        options: Vec::new(),
                        agent_dir: String::new(),
                    };
                    SshCommand::for_access(&access, control.path())
                }
            };
            let transport = SshTransport::connect_with(
                &target.to_string(),
                ssh,
                "~/.cache/transhumance",
                &default_agent_binary(),
                Some(control),
            )?;
            Ok(Endpoint {
                transport: Arc::new(transport),
                root: path.clone(),
            })
        }
    }
}

fn destination(t: &SshTarget) -> String {
    match &t.user {
        Some(u) => format!("{u}@{}", t.host),
        None => t.host.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("/srv/www").unwrap(),
            Location::Local("/srv/www".into())
        );
        assert_eq!(
            parse_location("relative/dir").unwrap(),
            Location::Local("relative/dir".into())
        );
        match parse_location("root@127.0.0.1:2222:/srv/www/").unwrap() {
            Location::Remote(t, p) => {
                assert_eq!(
                    (t.user.as_deref(), t.host.as_str(), t.port),
                    (Some("root"), "127.0.0.1", Some(2222))
                );
                assert_eq!(p, PathBuf::from("/srv/www/"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_location("bad host:/x").is_err());
    }
}
