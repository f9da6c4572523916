//! The stale-resolver forwarders of a move, driven from the journal: a confirmed site's route
//! is journaled, then handed to the forwarder on its old host (started there, detached, when
//! none runs); a rollback takes the route out; and every command reconciles each host's
//! forwarder with what the journal says (started again after a crash while routes remain,
//! stopped once none does), reading the real process (PID and start time) before deciding.
//! Plain mail ports carry no name, so a host gets one whole-port route of its own, journaled
//! once every site of the host is confirmed and taken out when one is not any more.
//! Once a host's cutover has begun, its old web server listens behind the forwarder (`local`):
//! the forwarder then stays up as the host's front, passing every name it does not route to
//! that server, as long as the old host serves a site (not cut over yet, or rolled back), and
//! exits only once every site of the host is confirmed and every window has ended.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::ledger::{Entry, Ledger};
use super::state::SiteState;
use crate::journal::now;

/// The entries the forwarders are folded from.
use crate::plan::{Forward, MailRouting, Plan, Site};
use crate::transport::forward::{CONFIG, ForwardConfig, MailListener, ROUTES, Route};
use crate::transport::{Connections, ExecRequest, Transport};

/// A route as the journal last left it.
#[derive(Debug, Clone)]
struct Journaled {
    host: String,
    names: Vec<String>,
    to: String,
    until: u64,
    routed: bool,
}

/// A host's forwarder as last journaled: PID, start ticks, running.
type Process = (Option<u32>, Option<u64>, bool);

/// A host's whole-port route as last journaled: its address, expiry, routed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WholePort {
    sites: Vec<String>,
    to: String,
    until: u64,
    routed: bool,
}

/// Each host's last whole-port route entry.
fn whole_ports(entries: &[Entry]) -> BTreeMap<String, WholePort> {
    let mut out = BTreeMap::new();
    for e in entries {
        if let Entry::ForwardPorts {
            host,
            sites,
            to,
            until,
            routed,
            ..
        } = e
        {
            out.insert(
                host.clone(),
                WholePort {
                    sites: sites.clone(),
                    to: to.clone(),
                    until: *until,
                    routed: *routed,
                },
            );
        }
    }
    out
}

/// The whole-port route a host should have: when every one of its sites is confirmed, to the
/// address their routes share, until the latest of them expires. `Err` when the sites went to
/// different addresses (a whole port has one destination).
fn whole_port_due(
    sites: &[String],
    state: impl Fn(&str) -> SiteState,
    routes: &BTreeMap<String, Journaled>,
    now: u64,
) -> Result<Option<(String, u64)>, String> {
    if sites.is_empty() || sites.iter().any(|s| state(s) != SiteState::Confirmed) {
        return Ok(None);
    }
    let live: Vec<&Journaled> = sites
        .iter()
        .filter_map(|s| routes.get(s))
        .filter(|r| r.routed && r.until > now)
        .collect();
    let Some(until) = live.iter().map(|r| r.until).max() else {
        return Ok(None);
    };
    let mut to: Vec<&str> = live.iter().map(|r| r.to.as_str()).collect();
    to.sort();
    to.dedup();
    match to.as_slice() {
        [one] => Ok(Some((one.to_string(), until))),
        many => Err(format!(
            "plain mail ports not forwarded: the sites of this host went to several addresses ({})",
            many.join(", ")
        )),
    }
}

/// Each site's last route entry, and each host's last forwarder entry.
fn folded(entries: &[Entry]) -> (BTreeMap<String, Journaled>, BTreeMap<String, Process>) {
    let mut routes = BTreeMap::new();
    let mut forwarders = BTreeMap::new();
    for e in entries {
        match e {
            Entry::ForwardRoute {
                site,
                host,
                names,
                to,
                until,
                routed,
                ..
            } => {
                routes.insert(
                    site.clone(),
                    Journaled {
                        host: host.clone(),
                        names: names.clone(),
                        to: to.clone(),
                        until: *until,
                        routed: *routed,
                    },
                );
            }
            Entry::Forwarder {
                host,
                pid,
                start_ticks,
                running,
                ..
            } => {
                forwarders.insert(host.clone(), (*pid, *start_ticks, *running));
            }
            _ => {}
        }
    }
    (routes, forwarders)
}

/// Whether a site in `state` shows that its host's cutover has begun: from then on, the old
/// web server may listen behind the forwarder.
fn cutover_begun(state: SiteState) -> bool {
    !matches!(
        state,
        SiteState::Discovered | SiteState::Syncing | SiteState::PreSynced | SiteState::Failed
    )
}

/// Whether a host whose sites are in `states` needs its forwarder as its front, routes or not:
/// its cutover has begun (or a forwarder already ran there), and the old host still serves one
/// of its sites. Otherwise a rolled-back site, or one of a later batch, would find nobody
/// listening where its visitors arrive.
fn front_due(states: impl IntoIterator<Item = SiteState>, started_before: bool) -> bool {
    let (mut begun, mut served_here) = (started_before, false);
    for state in states {
        begun |= cutover_begun(state);
        served_here |= state != SiteState::Confirmed;
    }
    begun && served_here
}

/// The route that keeps a front up: no name, no port of its own, never ending.
fn front_route(spec: &Forward) -> Route {
    Route {
        site: String::new(),
        names: Vec::new(),
        http: spec.local_http,
        https: spec.local_https,
        until: u64::MAX,
        whole_port: false,
    }
}

/// The forwarders of a plan.
pub struct Forwarders<'a> {
    pub spec: &'a Forward,
    pub connections: &'a Connections,
    pub ledger: &'a Ledger,
    /// Every old host's sites in the plan (all of them, not only a command's selection).
    hosts: &'a BTreeMap<String, Vec<String>>,
}

/// Every old host's sites (`sites`: every site of the plan), as `Forwarders::of` takes them:
/// built once per command, not once per site.
pub fn hosts_of(sites: &[Site]) -> BTreeMap<String, Vec<String>> {
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in sites {
        hosts
            .entry(s.source_host.clone())
            .or_default()
            .push(s.name.clone());
    }
    hosts
}

impl<'a> Forwarders<'a> {
    /// The plan's forwarders, when it asks for them; `hosts` are every old host's sites
    /// (`hosts_of`).
    pub fn of(
        plan: &'a Plan,
        hosts: &'a BTreeMap<String, Vec<String>>,
        connections: &'a Connections,
        ledger: &'a Ledger,
    ) -> Option<Self> {
        plan.cutover.forward.as_ref().map(|spec| Forwarders {
            spec,
            connections,
            ledger,
            hosts,
        })
    }

    /// Journals the change `host`'s whole-port route needs, if any (the plan forwards a plain
    /// mail port): given once every site of the host is confirmed, taken out once one is not.
    fn settle_whole_port(&self, host: &str) -> Result<(), String> {
        let entries = self.ledger.forward_of(host);
        let last = whole_ports(&entries).remove(host);
        let now = now();
        let sites = self.hosts.get(host).cloned().unwrap_or_default();
        let due = if self.spec.has_whole_ports() {
            let (routes, _) = folded(&entries);
            whole_port_due(&sites, |s| self.ledger.state(s), &routes, now)
        } else {
            Ok(None)
        };
        let (entry, problem) = match (&due, &last) {
            (Ok(Some((to, until))), last) => {
                let same = last
                    .as_ref()
                    .is_some_and(|l| l.routed && &l.to == to && l.until == *until);
                let entry = (!same).then(|| (sites.clone(), to.clone(), *until, true));
                (entry, None)
            }
            (due, Some(l)) if l.routed && l.until > now => (
                Some((l.sites.clone(), l.to.clone(), l.until, false)),
                due.as_ref().err().cloned(),
            ),
            (due, _) => (None, due.as_ref().err().cloned()),
        };
        if let Some((sites, to, until, routed)) = entry {
            self.ledger
                .record(Entry::ForwardPorts {
                    host: host.to_string(),
                    sites,
                    to,
                    until,
                    routed,
                    at: now,
                })
                .map_err(|e| e.to_string())?;
        }
        problem.map_or(Ok(()), Err)
    }

    /// Routes `site`'s names on its old host to `to` until `until`, journaled first.
    ///
    /// # Errors
    /// The route is not durable, or the forwarder cannot be given it.
    pub fn route(&self, site: &Site, to: IpAddr, until: u64) -> Result<(), String> {
        self.ledger
            .record(Entry::ForwardRoute {
                site: site.name.clone(),
                host: site.source_host.clone(),
                names: site.domains.clone(),
                to: to.to_string(),
                until,
                margin_secs: self.spec.margin.as_secs(),
                routed: true,
                at: now(),
            })
            .map_err(|e| e.to_string())?;
        self.sync_host(&site.source_host)
    }

    /// Takes `site`'s route out (a rollback), when it has one.
    ///
    /// # Errors
    /// The removal is not durable, or the forwarder cannot be told.
    pub fn unroute(&self, site: &Site) -> Result<(), String> {
        let host = &site.source_host;
        let whole = whole_ports(&self.ledger.forward_of(host))
            .get(host)
            .is_some_and(|w| w.routed);
        let site = site.name.as_str();
        let (routes, _) = folded(&self.ledger.site_history(site));
        let Some(r) = routes.get(site).filter(|r| r.routed) else {
            // Its host's whole-port route goes all the same: the old host serves mail again.
            return if whole { self.sync_host(host) } else { Ok(()) };
        };
        self.ledger
            .record(Entry::ForwardRoute {
                site: site.to_string(),
                host: r.host.clone(),
                names: r.names.clone(),
                to: r.to.clone(),
                until: r.until,
                margin_secs: self.spec.margin.as_secs(),
                routed: false,
                at: now(),
            })
            .map_err(|e| e.to_string())?;
        self.sync_host(&r.host)
    }

    /// Every host the journal gave a route or a forwarder: its forwarder made to match.
    ///
    /// # Errors
    /// The first host that could not be reconciled (the others are still tried).
    pub fn reconcile(&self) -> Result<(), String> {
        let mut first = Ok(());
        let mut hosts: std::collections::BTreeSet<String> =
            self.ledger.forward_hosts().into_iter().collect();
        hosts.extend(self.hosts.keys().filter(|h| self.front_due(h)).cloned());
        for h in hosts {
            if let Err(e) = self.sync_host(&h)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Starts `host`'s forwarder as its front before a site of it freezes (see `front_due`),
    /// so its old web server may already listen behind it.
    ///
    /// # Errors
    /// The forwarder cannot be told or started.
    pub fn front(&self, host: &str) -> Result<(), String> {
        self.sync_host(host)
    }

    fn front_due(&self, host: &str) -> bool {
        let (_, forwarders) = folded(&self.ledger.forward_of(host));
        self.front_due_given(host, forwarders.contains_key(host))
    }

    /// `front_due` of `host`, the journal having (`started_before`) or not a forwarder there.
    fn front_due_given(&self, host: &str, started_before: bool) -> bool {
        let sites = self.hosts.get(host).map(Vec::as_slice).unwrap_or_default();
        front_due(sites.iter().map(|s| self.ledger.state(s)), started_before)
    }

    /// The live routes the journal gives `host`, as the forwarder reads them, and the front's
    /// while it is due.
    fn routes_of(&self, host: &str) -> Vec<Route> {
        let entries = self.ledger.forward_of(host);
        let (routes, forwarders) = folded(&entries);
        let front = self
            .front_due_given(host, forwarders.contains_key(host))
            .then(|| front_route(self.spec));
        let now = now();
        let whole = whole_ports(&entries)
            .remove(host)
            .filter(|w| w.routed && w.until > now)
            .map(|w| (String::new(), w.to, Vec::new(), w.until, true));
        routes
            .into_iter()
            .filter(|(_, r)| r.host == host && r.routed && r.until > now)
            .map(|(site, r)| (site, r.to, r.names, r.until, false))
            .chain(whole)
            .filter_map(|(site, to, names, until, whole_port)| {
                let ip: IpAddr = to.parse().ok()?;
                Some(Route {
                    site,
                    names,
                    http: SocketAddr::new(ip, self.spec.to_http),
                    https: SocketAddr::new(ip, self.spec.to_https),
                    until,
                    whole_port,
                })
            })
            .chain(front)
            .collect()
    }

    /// Makes `host`'s forwarder match the journal: routes written, the process started when
    /// routes remain and none runs, stopped when none remains.
    fn sync_host(&self, host: &str) -> Result<(), String> {
        // A whole-port route that cannot be given is said; the sites' routes still go.
        let whole = self.settle_whole_port(host);
        self.sync_process(host)?;
        whole
    }

    fn sync_process(&self, host: &str) -> Result<(), String> {
        let t = self.connections.get(host).map_err(|e| e.to_string())?;
        let routes = self.routes_of(host);
        let dir = self.spec.dir.display().to_string();
        let running = self.running(t.as_ref(), &dir)?;
        if routes.is_empty() {
            if let Some((pid, ticks)) = running {
                self.stop(t.as_ref(), &dir, pid, ticks, true)?;
            }
            let (_, forwarders) = folded(&self.ledger.forward_of(host));
            if forwarders.get(host).is_some_and(|f| f.2) || running.is_some() {
                self.journal(
                    host,
                    None,
                    false,
                    "no route left, and every site of the host confirmed",
                )?;
            }
            return Ok(());
        }
        write(
            t.as_ref(),
            &dir,
            ROUTES,
            &serde_json::to_vec_pretty(&routes).unwrap_or_default(),
        )?;
        if let Some((pid, ticks)) = running {
            // Returns once the forwarder has them in force (a rollback's visitors go back to
            // the old server before DNS does). One that has not read them within 5 s is
            // stopped and started again, reading them first.
            let loaded = sh(
                t.as_ref(),
                r#"for i in $(seq 100); do cmp -s "$1/routes.json" "$1/routes.loaded" && exit 0; sleep 0.05; done; echo "not loaded""#,
                &[&dir],
                &[],
            )?;
            if loaded.trim().is_empty() {
                return Ok(());
            }
            self.stop(t.as_ref(), &dir, pid, ticks, false)?;
            self.journal(host, None, false, "had not read its routes within 5s")?;
        }
        let config = ForwardConfig {
            listen_http: self.spec.listen_http,
            listen_https: self.spec.listen_https,
            local_http: self.spec.local_http,
            local_https: self.spec.local_https,
            mail: self
                .spec
                .mail
                .iter()
                .map(|m| MailListener {
                    protocol: m.protocol.clone(),
                    listen: m.listen,
                    local: m.local,
                    to_port: m.to_port,
                    sni: m.routing == MailRouting::Sni,
                })
                .collect(),
        };
        write(
            t.as_ref(),
            &dir,
            CONFIG,
            &serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )?;
        // The agent (or, on this machine, the controller) is the shell's parent: the forwarder
        // is that same binary, in a session of its own so it outlives our connection.
        sh(
            t.as_ref(),
            r#"rm -f "$1/forwarder.pid"; exe=$(readlink /proc/$PPID/exe); setsid "$exe" forward --dir "$1" </dev/null >>"$1/forwarder.log" 2>&1 &"#,
            &[&dir],
            &[],
        )?;
        for _ in 0..100 {
            if let Some((pid, ticks)) = self.running(t.as_ref(), &dir)? {
                return self.journal(host, Some((pid, ticks)), true, "started");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = sh(
            t.as_ref(),
            r#"tail -n 3 "$1/forwarder.log" 2>/dev/null"#,
            &[&dir],
            &[],
        )
        .unwrap_or_default();
        Err(format!(
            "forwarder on {host} did not start within 10s: {}",
            log.trim()
        ))
    }

    /// Stops the forwarder `pid` (when it is still the process started at `ticks`), and
    /// removes its PID file, and its routes when `forget_routes`.
    fn stop(
        &self,
        t: &dyn Transport,
        dir: &str,
        pid: u32,
        ticks: u64,
        forget_routes: bool,
    ) -> Result<(), String> {
        sh(
            t,
            r#"[ "$(sed 's/.*) //' /proc/$2/stat | cut -d' ' -f20)" = "$3" ] && kill "$2"; rm -f "$1/forwarder.pid" "$1/routes.loaded"; [ "$4" = yes ] && rm -f "$1/routes.json"; exit 0"#,
            &[
                dir,
                &pid.to_string(),
                &ticks.to_string(),
                if forget_routes { "yes" } else { "no" },
            ],
            &[],
        )
        .map(drop)
    }

    /// The forwarder running in `dir` on the host: its PID file names a live process with the
    /// same start time whose command line is our forwarder of that directory.
    fn running(&self, t: &dyn Transport, dir: &str) -> Result<Option<(u32, u64)>, String> {
        let out = sh(
            t,
            r#"[ -f "$1/forwarder.pid" ] || exit 0; read pid ticks < "$1/forwarder.pid"; [ -r "/proc/$pid/stat" ] || exit 0; now=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20); cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline"); echo "$pid $ticks $now $cmd""#,
            &[dir],
            &[],
        )?;
        let mut f = out.split_whitespace();
        let (Some(pid), Some(ticks), Some(now)) = (f.next(), f.next(), f.next()) else {
            return Ok(None);
        };
        let cmd: Vec<&str> = f.collect();
        let ours = cmd.windows(3).any(|w| w == ["forward", "--dir", dir]);
        match (pid.parse::<u32>(), ticks.parse::<u64>()) {
            (Ok(pid), Ok(ticks)) if ticks.to_string() == now && ours => Ok(Some((pid, ticks))),
            _ => Ok(None),
        }
    }

    fn journal(
        &self,
        host: &str,
        process: Option<(u32, u64)>,
        running: bool,
        detail: &str,
    ) -> Result<(), String> {
        self.ledger
            .record(Entry::Forwarder {
                host: host.to_string(),
                pid: process.map(|p| p.0),
                start_ticks: process.map(|p| p.1),
                running,
                detail: Some(detail.to_string()),
                at: now(),
            })
            .map_err(|e| e.to_string())
    }
}

/// Runs `script` with `args` as `$1...` on the host; its stdout.
fn sh(t: &dyn Transport, script: &str, args: &[&str], stdin: &[u8]) -> Result<String, String> {
    let mut all = vec!["-c".to_string(), script.to_string(), "sh".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = t
        .exec(&ExecRequest {
            stdin: stdin.to_vec(),
            ..ExecRequest::new("sh", all)
        })
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("forwarder on {}: {}", t.host(), out.stderr_text()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes `name` in `dir` on the host: a temp name only its owner reads, then renamed.
fn write(t: &dyn Transport, dir: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
    sh(
        t,
        r#"umask 077; mkdir -p "$1" && cat > "$1/.$2.tmp" && mv -f "$1/.$2.tmp" "$1/$2""#,
        &[dir, name],
        bytes,
    )
    .map(|_| ())
}

/// When `site`'s route expires: its switch (from the journal), plus the old TTL, plus the
/// plan's margin. `None` when the site never switched a record.
pub fn until(
    site: &Site,
    history: &[Entry],
    dns: &[Entry],
    margin: std::time::Duration,
) -> Option<u64> {
    let statuses = super::state::fold(history);
    let st = statuses.get(&site.name)?;
    let facts = super::window::Facts::of(dns);
    let w = super::window::of_site(&site.name, st, &site.domains, &facts, now())?;
    Some(w.switched_at_ms / 1000 + u64::from(w.old_ttl_secs?) + margin.as_secs())
}

/// What the dry run says of the mail ports: per old host of `sites`, each forwarded port and
/// when it is forwarded.
pub fn mail_ports(spec: &Forward, sites: &[Site]) -> Vec<crate::report::MailForwardHost> {
    let mut hosts: BTreeMap<&str, u64> = BTreeMap::new();
    for s in sites {
        *hosts.entry(s.source_host.as_str()).or_default() += 1;
    }
    let margin = humantime::format_duration(spec.margin);
    hosts
        .into_iter()
        .filter(|_| !spec.mail.is_empty())
        .map(|(host, n)| crate::report::MailForwardHost {
            host: host.to_string(),
            sites: n,
            ports: spec
                .mail
                .iter()
                .map(|m| crate::report::MailForwardPort {
                    protocol: m.protocol.clone(),
                    listen: m.listen.to_string(),
                    local: m.local.to_string(),
                    to_port: m.to_port,
                    routing: match m.routing {
                        MailRouting::Sni => "sni",
                        MailRouting::WholePort => "whole_port",
                    }
                    .to_string(),
                    when: match m.routing {
                        MailRouting::Sni => format!(
                            "each site's names by SNI, from its confirmation until its switch + old TTL + {margin}"
                        ),
                        MailRouting::WholePort if n == 1 => format!(
                            "the whole port, from the site's confirmation until its switch + old TTL + {margin}"
                        ),
                        MailRouting::WholePort => format!(
                            "the whole port, once all {n} sites are confirmed, until the latest switch + old TTL + {margin}"
                        ),
                    },
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The front stays up from a host's first freeze while the old host serves any site of
    /// it (a rolled-back one, one of a later batch), and goes once every site is confirmed.
    #[test]
    fn a_hosts_front_is_due_from_its_first_freeze_until_every_site_is_confirmed() {
        use SiteState::*;
        let cases: &[(&[SiteState], bool, bool)] = &[
            (&[PreSynced, PreSynced], false, false),
            (&[Failed, Discovered], false, false),
            (&[Freezing, PreSynced], false, true),
            (&[Confirmed, PreSynced], false, true),
            (&[Confirmed, Switched], false, true),
            (&[RolledBack, Confirmed], false, true),
            (&[RollingBack], false, true),
            (&[PreSynced], true, true),
            (&[Confirmed, Confirmed], false, false),
            (&[Confirmed, Confirmed], true, false),
            (&[], true, false),
        ];
        for (states, started, due) in cases {
            assert_eq!(
                front_due(states.iter().copied(), *started),
                *due,
                "{states:?}, started before: {started}"
            );
        }
        // The front's route keeps the forwarder alive and sends no name nor mail port anywhere:
        // everything goes to `local`, the old servers behind it.
        let local: std::net::SocketAddr = "127.0.0.1:1993".parse().unwrap();
        let front = Route {
            http: "127.0.0.1:8080".parse().unwrap(),
            https: "127.0.0.1:8443".parse().unwrap(),
            ..Route {
                site: "front".into(),
                names: Vec::new(),
                http: local,
                https: local,
                until: u64::MAX,
                whole_port: false,
            }
        };
        assert_eq!(
            crate::transport::forward::live(std::slice::from_ref(&front), now()).len(),
            1
        );
        for sni in [true, false] {
            let listener = crate::transport::forward::MailListener {
                protocol: "imaps".into(),
                listen: "127.0.0.1:993".parse().unwrap(),
                local,
                to_port: 993,
                sni,
            };
            assert_eq!(
                crate::transport::forward::mail_destination(
                    &listener,
                    std::slice::from_ref(&front),
                    Some("alpha.demo.test"),
                    now()
                ),
                local
            );
        }
    }

    fn route(to: &str, until: u64, routed: bool) -> Journaled {
        Journaled {
            host: "old".into(),
            names: vec![],
            to: to.into(),
            until,
            routed,
        }
    }

    #[test]
    fn a_host_gets_its_whole_port_route_once_every_site_is_confirmed_until_the_last_window() {
        let sites = vec!["a".to_string(), "b".to_string()];
        let mut routes = BTreeMap::new();
        routes.insert("a".to_string(), route("192.0.2.9", 100, true));
        let confirmed = |s: &str| {
            if s == "a" {
                SiteState::Confirmed
            } else {
                SiteState::PreSynced
            }
        };
        assert_eq!(whole_port_due(&sites, confirmed, &routes, 10), Ok(None));
        routes.insert("b".to_string(), route("192.0.2.9", 150, true));
        let all = |_: &str| SiteState::Confirmed;
        assert_eq!(
            whole_port_due(&sites, all, &routes, 10),
            Ok(Some(("192.0.2.9".to_string(), 150)))
        );
        // A rolled-back site: the old host serves mail again.
        let back = |s: &str| {
            if s == "b" {
                SiteState::RolledBack
            } else {
                SiteState::Confirmed
            }
        };
        assert_eq!(whole_port_due(&sites, back, &routes, 10), Ok(None));
        // Every window over: nothing to forward.
        assert_eq!(whole_port_due(&sites, all, &routes, 150), Ok(None));
        // Sites gone to two addresses: one port cannot follow both.
        routes.insert("b".to_string(), route("192.0.2.10", 150, true));
        assert!(whole_port_due(&sites, all, &routes, 10).is_err());
        assert_eq!(whole_port_due(&[], all, &routes, 10), Ok(None));
    }
}
