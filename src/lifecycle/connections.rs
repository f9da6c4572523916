//! One transport per plan host, opened on first use and shared by every unit on that host.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::plan::{Host, HostAccess};
use crate::transport::{LocalTransport, SshTransport, Transport, TransportError};

type Opened = Result<Arc<dyn Transport>, TransportError>;

/// The plan's hosts, connected lazily; a failed connection is remembered and not retried.
pub struct Connections {
    hosts: BTreeMap<String, Host>,
    agent_binary: PathBuf,
    open: Mutex<HashMap<String, Opened>>,
}

impl Connections {
    pub fn new(hosts: &BTreeMap<String, Host>, agent_binary: PathBuf) -> Connections {
        Connections {
            hosts: hosts.clone(),
            agent_binary,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The transport of host `name`.
    ///
    /// # Errors
    /// The host is unknown or cannot be reached (named in the error).
    pub fn get(&self, name: &str) -> Result<Arc<dyn Transport>, TransportError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = open.get(name) {
            return t.clone();
        }
        let result = match self.hosts.get(name).map(|h| &h.access) {
            None => Err(TransportError::Connect {
                host: name.into(),
                message: "not defined in the plan".into(),
            }),
            Some(HostAccess::Local) => {
                Ok(Arc::new(LocalTransport::new(name)) as Arc<dyn Transport>)
            }
            Some(HostAccess::Ssh(access)) => {
                SshTransport::connect(name, access, &self.agent_binary)
                    .map(|t| Arc::new(t) as Arc<dyn Transport>)
            }
        };
        open.insert(name.to_string(), result.clone());
        result
    }
}

/// The binary uploaded as the remote agent: `TRANSHUMANCE_AGENT_BINARY`, else this program when
/// it is `transhumance`, else a `transhumance` beside it (examples and tests run other binaries).
pub fn default_agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TRANSHUMANCE_AGENT_BINARY") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("transhumance"));
    if exe.file_name().is_some_and(|n| n == "transhumance") {
        return exe;
    }
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    for _ in 0..2 {
        let candidate = dir.join("transhumance");
        if candidate.is_file() {
            return candidate;
        }
        dir.pop();
    }
    exe
}
