//! One transport per plan host, opened on first use and shared by every unit on that host; a
//! connection that failed or dropped is opened again on the next use, transient failures with
//! backoff, so a restarted server or a flaky link costs a retry instead of the rest of the run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{LocalTransport, SshTransport, Transport, TransportError};
use crate::plan::{Host, HostAccess};
use crate::unit::{UnitError, retry};

/// How hard a connection is tried before its failure is reported.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// The first wait; each next one doubles.
    pub base: Duration,
    /// How long a failure, once every try failed, is answered at once instead of tried again:
    /// a dry run over a thousand sites of a host that is down tries it once, not a thousand
    /// times; the first `get` after that tries again.
    pub hold: Duration,
}

impl Default for Backoff {
    /// Three tries, 0.5 s then 1 s apart (enough for an sshd or a link that restarts); a
    /// failure held 10 s.
    fn default() -> Backoff {
        Backoff {
            attempts: 3,
            base: Duration::from_millis(500),
            hold: Duration::from_secs(10),
        }
    }
}

/// One host's connection, and the outcome of the last attempt to open it.
#[derive(Default)]
struct Slot {
    /// Attempts started so far: a caller that waited for another's attempt takes its outcome
    /// instead of trying again at once.
    attempts: AtomicU64,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    open: Option<Arc<dyn Transport>>,
    /// The last attempt's failure, and when every try of it had failed.
    failed: Option<(TransportError, Instant)>,
}

/// The plan's hosts, connected lazily. Nothing stays failed: a dropped connection is opened
/// again by the next `get`, a failed one by the first `get` after `Backoff::hold`.
pub struct Connections {
    hosts: BTreeMap<String, Host>,
    agent_binary: PathBuf,
    backoff: Backoff,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// The run's direct paths between remote hosts, seen by every transport opened here.
    routes: Arc<super::direct::Routes>,
}

impl Connections {
    pub fn new(hosts: &BTreeMap<String, Host>, agent_binary: PathBuf) -> Connections {
        Connections {
            hosts: hosts.clone(),
            agent_binary,
            backoff: Backoff::default(),
            slots: Mutex::new(HashMap::new()),
            routes: Arc::default(),
        }
    }

    /// The same, trying each connection as `backoff` says.
    pub fn with_backoff(mut self, backoff: Backoff) -> Connections {
        self.backoff = backoff;
        self
    }

    /// The run's direct paths (set up by the lifecycle, looked up by the engines).
    pub fn routes(&self) -> &Arc<super::direct::Routes> {
        &self.routes
    }

    /// Protocol bytes this process wrote to and read from the hosts open now: what went
    /// through it (a connection dropped and opened again counts from then).
    pub fn wire_bytes(&self) -> (u64, u64) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|s| {
                s.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .open
                    .clone()
            })
            .map(|t| t.wire_bytes())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// The plan's description of host `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// How hard connections (and operations through `run`) are tried.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The transport of host `name`: the open one while it lives, else a new one (transient
    /// failures retried with backoff). Callers waiting while another opens the same host, and
    /// callers within `Backoff::hold` of a failure, share that attempt's outcome.
    ///
    /// # Errors
    /// The host is unknown or cannot be reached (named in the error).
    pub fn get(&self, name: &str) -> Result<Arc<dyn Transport>, TransportError> {
        let Some(host) = self.hosts.get(name) else {
            return Err(TransportError::Connect {
                host: name.into(),
                message: "not defined in the plan".into(),
            });
        };
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = &state.open {
            if t.lost().is_none() {
                return Ok(t.clone());
            }
            // Dropped (ssh died, the server restarted): the holders of the old one see their
            // calls fail; the next callers get a new one.
            state.open = None;
        }
        if let Some((e, at)) = &state.failed
            && (slot.attempts.load(Ordering::Acquire) != seen || at.elapsed() < self.backoff.hold)
        {
            return Err(e.clone());
        }
        slot.attempts.fetch_add(1, Ordering::AcqRel);
        match self.connect(name, host) {
            Ok(t) => {
                state.open = Some(t.clone());
                state.failed = None;
                Ok(t)
            }
            Err(e) => {
                state.failed = Some((e.clone(), Instant::now()));
                Err(e)
            }
        }
    }

    /// Runs `op` on host `name`, again on a fresh connection when it fails transiently (the
    /// connection dropped under it), with backoff. `op` must be safe to repeat.
    ///
    /// # Errors
    /// The last failure: a permanent one at once, a transient one once the tries are spent.
    pub fn run<T>(
        &self,
        name: &str,
        mut op: impl FnMut(&dyn Transport) -> Result<T, TransportError>,
    ) -> Result<T, TransportError> {
        let mut last = None;
        retry(self.backoff.attempts, self.backoff.base, || {
            self.get(name).and_then(|t| op(t.as_ref())).map_err(|e| {
                let unit_error = UnitError::from(e.clone());
                last = Some(e);
                unit_error
            })
        })
        .map_err(|_| last.take().expect("a failure was recorded"))
    }

    fn connect(&self, name: &str, host: &Host) -> Result<Arc<dyn Transport>, TransportError> {
        let access = match &host.access {
            HostAccess::Local => return Ok(Arc::new(LocalTransport::new(name))),
            HostAccess::Ssh(access) => access,
        };
        let mut last = None;
        retry(self.backoff.attempts, self.backoff.base, || {
            SshTransport::connect(name, access, &self.agent_binary)
                .map(|t| Arc::new(t.with_routes(self.routes.clone())) as Arc<dyn Transport>)
                .map_err(|e| {
                    let unit_error = UnitError::from(e.clone());
                    last = Some(e);
                    unit_error
                })
        })
        .map_err(|_| last.take().expect("a failure was recorded"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> BTreeMap<String, Host> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Host {
                        name: n.to_string(),
                        access: HostAccess::Local,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_host_is_opened_once_and_shared() {
        let c = Connections::new(&hosts(&["a"]), PathBuf::from("unused"));
        let (x, y) = (c.get("a").unwrap(), c.get("a").unwrap());
        assert!(Arc::ptr_eq(&x, &y));
        let e = c.get("nope").err().unwrap();
        assert!(e.to_string().contains("not defined in the plan"), "{e}");
    }

    #[test]
    fn a_failure_is_answered_from_memory_only_within_the_hold() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        let access = crate::plan::SshAccess {
            target: crate::plan::units::parse_ssh_target("root@127.0.0.1:1").unwrap(),
            identity_file: None,
            known_hosts: None,
            options: vec![],
            agent_dir: "/nonexistent".into(),
        };
        let hosts = BTreeMap::from([(
            "web".to_string(),
            Host {
                name: "web".into(),
                access: HostAccess::Ssh(access),
            },
        )]);
        let connections = |hold| {
            Connections::new(&hosts, agent.clone()).with_backoff(Backoff {
                attempts: 2,
                base: Duration::ZERO,
                hold,
            })
        };
        let (held, fresh) = (
            connections(Duration::from_secs(3600)),
            connections(Duration::ZERO),
        );
        for c in [&held, &fresh] {
            let e = c.get("web").err().unwrap();
            assert!(
                e.to_string().contains("cannot read the agent binary"),
                "{e}"
            );
        }
        // The agent binary appears: only the connections that do not hold failures see it.
        std::fs::write(&agent, b"agent").unwrap();
        let e = held.get("web").err().unwrap();
        assert!(
            e.to_string().contains("cannot read the agent binary"),
            "{e}"
        );
        let e = fresh.get("web").err().unwrap();
        assert!(
            !e.to_string().contains("cannot read the agent binary"),
            "{e}"
        );
    }

    #[test]
    fn an_operation_that_fails_transiently_runs_again_permanently_does_not() {
        let c = Connections::new(&hosts(&["a"]), PathBuf::from("unused")).with_backoff(Backoff {
            attempts: 3,
            base: Duration::ZERO,
            hold: Duration::ZERO,
        });
        let mut calls = 0;
        let r = c.run("a", |t| {
            calls += 1;
            if calls < 3 {
                Err(TransportError::Connect {
                    host: t.host().into(),
                    message: "connection lost while waiting for a reply".into(),
                })
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<(), _> = c.run("a", |t| {
            calls += 1;
            Err(TransportError::Remote {
                host: t.host().into(),
                message: "no such table".into(),
            })
        });
        assert!(matches!(r, Err(TransportError::Remote { .. })));
        assert_eq!(calls, 1);
    }
}
