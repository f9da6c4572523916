//! The direct data paths of one lifecycle command: for every pair of remote hosts the plan
//! moves data between, a key made for the move is installed at the target before the work and
//! removed after it, journaled both ways so that what a crash leaves is removed by the next
//! command. The dry run checks the same pairs without installing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::connections::Connections;
use super::ledger::{Entry, Ledger};
use crate::event::{Event, Observer};
use crate::journal::now;
use crate::plan::raw::TransferMode;
use crate::plan::{HostAccess, MailRule, Plan, Site};
use crate::transport::direct as route;

/// Roots past this many are folded into their parents in a key's `--confine` list.
const MAX_ROOTS: usize = 32;

/// Host pairs (source, target) the plan moves data between, both remote, each with the
/// target roots written there.
pub fn pairs(plan: &Plan, sites: &[Site]) -> BTreeMap<(String, String), BTreeSet<PathBuf>> {
    let remote = |h: &str| {
        matches!(
            plan.hosts.get(h).map(|h| &h.access),
            Some(HostAccess::Ssh(_))
        )
    };
    let mut out: BTreeMap<(String, String), BTreeSet<PathBuf>> = BTreeMap::new();
    let mut add = |from: &str, to: &str, root: Option<&Path>| {
        if remote(from) && remote(to) {
            let roots = out.entry((from.to_string(), to.to_string())).or_default();
            roots.extend(root.map(Path::to_path_buf));
        }
    };
    for s in sites {
        add(&s.source_host, &s.target_host, Some(&s.target_path));
    }
    for d in &plan.databases {
        add(&d.from.host, &d.to.host, None);
    }
    for m in &plan.mail {
        if let MailRule::Maildir {
            from_host,
            to_host,
            to_path,
            ..
        } = m
        {
            add(from_host, to_host, Some(to_path));
        }
    }
    out
}

/// The fewest roots that cover `roots`: nested ones dropped, and past `MAX_ROOTS` the parent
/// with the most of them standing for its children, again until few enough (an
/// authorized_keys line stays short for 50,000 sites). Never `/` itself.
pub fn confine(roots: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let mut set: Vec<PathBuf> = roots.iter().cloned().collect();
    loop {
        set.sort();
        set.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for r in set {
            if !kept.iter().any(|k| r.starts_with(k)) {
                kept.push(r);
            }
        }
        if kept.len() <= MAX_ROOTS {
            return kept;
        }
        let mut children: BTreeMap<&Path, usize> = BTreeMap::new();
        for r in &kept {
            if let Some(p) = r.parent().filter(|p| p.parent().is_some()) {
                *children.entry(p).or_default() += 1;
            }
        }
        let Some(parent) = children
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(p, _)| p.to_path_buf())
        else {
            return kept;
        };
        kept.push(parent);
        set = kept;
    }
}

/// One pair's path, as the dry run or a command's start found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathCheck {
    pub source: String,
    pub target: String,
    /// `direct` or `relay`.
    pub path: String,
    /// Why (what answered, or why not).
    pub detail: String,
    /// The plan asked for `direct` and it cannot be had: an error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

fn relay(source: &str, target: &str, detail: String, refused: bool) -> PathCheck {
    PathCheck {
        source: source.into(),
        target: target.into(),
        path: if refused { "direct" } else { "relay" }.into(),
        detail,
        refused,
    }
}

/// Where the source reaches the target's sshd, and what answered there.
fn reach(
    plan: &Plan,
    connections: &Connections,
    source: &str,
    target: &str,
) -> Result<String, String> {
    let Some(HostAccess::Ssh(access)) = plan.hosts.get(target).map(|h| &h.access) else {
        return Err(format!("`{target}` is not reached over ssh"));
    };
    let resolved = route::resolve(access)?;
    let (address, port) = match plan.direct.get(target).and_then(|d| d.address.clone()) {
        Some((a, p)) => (a, p.unwrap_or(resolved.port)),
        None => (resolved.hostname, resolved.port),
    };
    let src = connections.get(source).map_err(|e| e.to_string())?;
    let r = route::probe(src.as_ref(), &address, port, true)
        .map_err(|e| format!("`{source}` cannot reach {address}:{port}: {e}"))?;
    Ok(format!(
        "`{source}` reaches {address}:{port} ({}) from {}",
        r.banner, r.from
    ))
}

/// The dry run's check of every pair: whether the source reaches the target's sshd (and the
/// target's host key is known here), installing nothing.
pub fn check(plan: &Plan, sites: &[Site], connections: &Connections) -> Vec<PathCheck> {
    let mode = plan.defaults.transfer;
    pairs(plan, sites)
        .into_keys()
        .map(|(s, t)| match mode {
            Some(TransferMode::Relay) => {
                relay(&s, &t, "`transfer: relay` in the plan".into(), false)
            }
            _ => match reach(plan, connections, &s, &t) {
                Ok(detail) => PathCheck {
                    source: s,
                    target: t,
                    path: "direct".into(),
                    detail,
                    refused: false,
                },
                Err(e) => relay(&s, &t, e, mode == Some(TransferMode::Direct)),
            },
        })
        .collect()
}

/// The direct paths of a command, removed (keys revoked, routes dropped) when it ends.
pub struct Opened<'scope> {
    connections: &'scope Connections,
    ledger: &'scope Ledger,
    observer: &'scope dyn Observer,
    grants: Vec<route::Grant>,
    /// Paths being set up while the work starts: their key, when one was installed.
    setting_up: Vec<std::thread::ScopedJoinHandle<'scope, Option<route::Grant>>>,
    wire_before: (u64, u64),
    /// Pairs of remote hosts this command moves data between.
    pairs: usize,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        for setup in self.setting_up.drain(..) {
            if let Ok(Some(g)) = setup.join() {
                self.grants.push(g);
            }
        }
        for g in self.grants.drain(..) {
            let r = &g.route;
            self.connections.routes().remove(&r.source, &r.target);
            remove(
                self.connections,
                self.ledger,
                self.observer,
                &r.target,
                &g.file,
                &g.marker,
                Some(&r.streams),
            );
        }
        if self.pairs == 0 {
            return;
        }
        let (sent, received) = self.connections.wire_bytes();
        let (out, inn) = (
            sent.saturating_sub(self.wire_before.0),
            received.saturating_sub(self.wire_before.1),
        );
        self.observer.on_event(&Event::Info {
            message: format!(
                "this controller's ssh streams carried {} out and {} in during the command ({} bytes)",
                crate::plan::units::human_bytes(out),
                crate::plan::units::human_bytes(inn),
                out + inn
            ),
        });
    }
}

/// Revokes one key and journals its removal; a target that cannot be reached keeps it until
/// the next command (said).
fn remove(
    connections: &Connections,
    ledger: &Ledger,
    observer: &dyn Observer,
    host: &str,
    file: &str,
    marker: &str,
    streams: Option<&Path>,
) {
    let done = connections
        .get(host)
        .and_then(|t| route::revoke(t.as_ref(), file, marker, streams));
    match done {
        Ok(_) => {
            let _ = ledger.record(Entry::DirectKey {
                host: host.into(),
                file: file.into(),
                marker: marker.into(),
                streams: streams.map(Path::to_path_buf),
                installed: false,
                at: now(),
            });
        }
        Err(e) => observer.on_event(&Event::Info {
            message: format!(
                "the move's key `{marker}` stays in `{host}:{file}` for now ({e}): the next command removes it"
            ),
        }),
    }
}

/// Removes the keys earlier commands journaled as installed and never removed (a crash).
pub fn clean_stale(connections: &Connections, ledger: &Ledger, observer: &dyn Observer) {
    let mut last: BTreeMap<String, Entry> = BTreeMap::new();
    for e in ledger.entries_of(&[super::ledger::Kind::DirectKey]) {
        if let Entry::DirectKey { marker, .. } = &e {
            last.insert(marker.clone(), e.clone());
        }
    }
    for e in last.into_values() {
        if let Entry::DirectKey {
            host,
            file,
            marker,
            streams,
            installed: true,
            ..
        } = e
        {
            remove(
                connections,
                ledger,
                observer,
                &host,
                &file,
                &marker,
                streams.as_deref(),
            );
        }
    }
}

/// Sets up the direct path of every pair the plan moves data between (unless `transfer:
/// relay`). Unasked (`transfer` unset), each path is set up on a thread of `scope` while the
/// work starts (an engine that wants it waits for it), and one that cannot be had leaves its
/// data relayed, said; under `transfer: direct`, every path is set up and tried first, and
/// one that cannot be had stops the command before any work.
///
/// # Errors
/// `transfer: direct` and a pair whose path cannot be set up (nothing stays installed).
pub fn open<'scope, 'env: 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    plan: &'env Plan,
    sites: &[Site],
    connections: &'env Connections,
    ledger: &'env Ledger,
    observer: &'env dyn Observer,
) -> Result<Opened<'scope>, String> {
    clean_stale(connections, ledger, observer);
    let pairs = pairs(plan, sites);
    let mut opened = Opened {
        connections,
        ledger,
        observer,
        grants: Vec::new(),
        setting_up: Vec::new(),
        wire_before: connections.wire_bytes(),
        pairs: pairs.len(),
    };
    let mode = plan.defaults.transfer;
    if mode == Some(TransferMode::Relay) {
        return Ok(opened);
    }
    let required = mode == Some(TransferMode::Direct);
    for ((source, target), roots) in pairs {
        if required {
            let g = grant(plan, connections, ledger, &source, &target, &roots, true)
                .map_err(|e| format!("direct path `{source}` -> `{target}`: {e} (`transfer: direct` in the plan; `relay` sends the data through this machine)"))?;
            let src = connections.get(&source).map_err(|e| e.to_string());
            let login = src.and_then(|src| route::check(src.as_ref(), &g.route));
            connections.routes().set(g.route.clone());
            said_direct(observer, &g, &roots);
            opened.grants.push(g);
            login.map_err(|e| format!("direct path `{source}` -> `{target}`: {e}"))?;
            continue;
        }
        connections.routes().pend(&source, &target);
        opened.setting_up.push(scope.spawn(move || {
            // However this ends (a panic too), nobody waits for the route afterwards.
            let _settle = Settle(connections.routes(), &source, &target);
            let granted = grant(plan, connections, ledger, &source, &target, &roots, false);
            let g = match granted {
                Ok(g) => g,
                Err(e) => {
                    connections.routes().settle(&source, &target);
                    observer.on_event(&Event::Info {
                        message: format!(
                            "`{source}` -> `{target}` relayed through this machine: {e}"
                        ),
                    });
                    return None;
                }
            };
            connections.routes().set(g.route.clone());
            said_direct(observer, &g, &roots);
            // The first login (an ssh handshake); the source's agent keeps the connection
            // for the engines. Should it fail, the route goes: what had started with it
            // falls back to the relay, and so does what comes after.
            let login = connections
                .get(&source)
                .map_err(|e| e.to_string())
                .and_then(|src| route::check(src.as_ref(), &g.route));
            if let Err(e) = login {
                connections.routes().remove(&source, &target);
                observer.on_event(&Event::Info {
                    message: format!(
                        "`{source}` -> `{target}` relayed through this machine after all: {e}"
                    ),
                });
            }
            Some(g)
        }));
    }
    Ok(opened)
}

/// Gives up a pair's route if it is still pending when dropped.
struct Settle<'a>(&'a route::Routes, &'a str, &'a str);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.0.settle(self.1, self.2);
    }
}

fn said_direct(observer: &dyn Observer, g: &route::Grant, roots: &BTreeSet<PathBuf>) {
    observer.on_event(&Event::Info {
        message: format!(
            "direct path `{}` -> `{}`: bytes go host to host, the key confined to {} root(s) and to {}",
            g.route.source,
            g.route.target,
            confine(roots).len(),
            g.route.spec.address
        ),
    });
}

/// One pair's key: journaled before it is installed; a failure leaves nothing installed.
fn grant(
    plan: &Plan,
    connections: &Connections,
    ledger: &Ledger,
    source: &str,
    target: &str,
    roots: &BTreeSet<PathBuf>,
    required: bool,
) -> Result<route::Grant, String> {
    let Some(HostAccess::Ssh(access)) = plan.hosts.get(target).map(|h| &h.access) else {
        return Err(format!("`{target}` is not reached over ssh"));
    };
    let direct = plan.direct.get(target).cloned().unwrap_or_default();
    let src = connections.get(source).map_err(|e| e.to_string())?;
    let dst = connections.get(target).map_err(|e| e.to_string())?;
    let nonce = route::nonce()?;
    let marker = route::marker(&plan.name, source, target, &nonce);
    // A short path of its own: Unix socket names must stay under ~100 bytes.
    let streams = PathBuf::from(format!("/tmp/th-direct-{nonce}"));
    let journal = |installed: bool| {
        ledger
            .record(Entry::DirectKey {
                host: target.into(),
                file: direct.authorized_keys.clone(),
                marker: marker.clone(),
                streams: Some(streams.clone()),
                installed,
                at: now(),
            })
            .map_err(|e| e.to_string())
    };
    journal(true)?;
    let granted = route::grant(&route::Request {
        source: src.as_ref(),
        target: dst.as_ref(),
        target_access: access,
        address: direct.address.clone(),
        authorized_keys: direct.authorized_keys.clone(),
        confine: confine(roots),
        marker: marker.clone(),
        streams: streams.clone(),
        required,
    });
    if granted.is_err()
        && route::revoke(
            dst.as_ref(),
            &direct.authorized_keys,
            &marker,
            Some(&streams),
        )
        .is_ok()
    {
        journal(false)?;
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_fold_into_the_fewest_that_cover_them() {
        let set = |v: &[&str]| v.iter().map(PathBuf::from).collect::<BTreeSet<_>>();
        assert_eq!(
            confine(&set(&[
                "/srv/www/a",
                "/srv/www/a/sub",
                "/var/vmail",
                "/srv/www/b"
            ])),
            ["/srv/www/a", "/srv/www/b", "/var/vmail"].map(PathBuf::from)
        );
        let many: Vec<String> = (0..100).map(|i| format!("/srv/www/site{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut with_mail = many.clone();
        with_mail.push("/var/vmail");
        assert_eq!(
            confine(&set(&with_mail)),
            ["/srv/www", "/var/vmail"].map(PathBuf::from)
        );
        let top: Vec<String> = (0..40).map(|i| format!("/t{i}")).collect();
        let top: Vec<&str> = top.iter().map(String::as_str).collect();
        assert_eq!(confine(&set(&top)).len(), 40, "never `/`");
    }
}
