//! The numeric owners the copies keep must mean someone at the target: every uid and gid of
//! the moved trees (and of the panel's users and groups) is looked up there with `getent`
//! over the plan's transport. The dry run reports the ones that do not resolve as a risk; a
//! cutover refuses them (check `unresolved-ids`) before anything is frozen.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::{Check, Finding};
use crate::plan::Site;
use crate::report::Risk;
use crate::transport::{ExecRequest, Transport};

use super::Connections;
use crate::panel::PanelInventory;

/// Ids per `getent` call: keeps every command line far below the kernel's argument limit.
const CHUNK: usize = 512;

pub use crate::panel::PanelIds as Ids;

/// The ids the plan's copies keep, by target host, as known without reading any tree: the
/// sites' owners and the panel's users and groups that move.
pub fn known(panel: Option<&PanelInventory>, sites: &[&Site]) -> BTreeMap<String, Ids> {
    let mut by_host: BTreeMap<String, Ids> = BTreeMap::new();
    for s in sites {
        if let Some((u, g)) = s.owner {
            let ids = by_host.entry(s.target_host.clone()).or_default();
            ids.uids.insert(u);
            ids.gids.insert(g);
        }
    }
    if let Some(panel) = panel
        && let Some(host) = &panel.target_host
        && !panel.ids.is_empty()
    {
        by_host.entry(host.clone()).or_default().extend(&panel.ids);
    }
    by_host
}

/// `known`, plus the owners of every entry of the sites' source trees (read in parallel, `jobs`
/// at a time); a tree that cannot be read adds nothing (its sync reports it).
pub fn of_sites(
    panel: Option<&PanelInventory>,
    sites: &[&Site],
    connections: &Connections,
    jobs: usize,
) -> BTreeMap<String, Ids> {
    let mut by_host = known(panel, sites);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, sites.len().max(1)) {
            s.spawn(|| {
                while let Some(site) =
                    sites.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let Ok(scan) = connections
                        .get(&site.source_host)
                        .and_then(|t| t.scan(&site.source_path, &site.exclude))
                    else {
                        continue;
                    };
                    let ids = Ids::of_scan(&scan);
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((site.target_host.clone(), ids));
                }
            });
        }
    });
    for (host, ids) in seen.into_inner().unwrap_or_else(|p| p.into_inner()) {
        by_host.entry(host).or_default().extend(&ids);
    }
    by_host
}

/// The ids among `ids` the host's name service does not know.
///
/// # Errors
/// `getent` cannot be run there, or fails otherwise than by a key it does not know.
pub fn unresolved(t: &dyn Transport, ids: &Ids) -> Result<Ids, String> {
    Ok(Ids {
        uids: missing(t, "passwd", &ids.uids)?,
        gids: missing(t, "group", &ids.gids)?,
    })
}

fn missing(t: &dyn Transport, db: &str, ids: &BTreeSet<u32>) -> Result<BTreeSet<u32>, String> {
    let wanted: Vec<u32> = ids.iter().copied().collect();
    let mut found = BTreeSet::new();
    for chunk in wanted.chunks(CHUNK) {
        let req = ExecRequest::new(
            "getent",
            std::iter::once(db.to_string()).chain(chunk.iter().map(u32::to_string)),
        );
        let out = t.exec(&req).map_err(|e| e.to_string())?;
        // getent: 0 all found, 2 some key not found; anything else is a failure of its own.
        if !matches!(out.code, Some(0) | Some(2)) {
            return Err(format!(
                "host `{}`: `getent {db}` failed ({}): {}",
                t.host(),
                out.code
                    .map_or("did not run".to_string(), |c| format!("exit {c}")),
                out.stderr_text()
            ));
        }
        found.extend(numbers(&out.stdout));
    }
    Ok(ids.difference(&found).copied().collect())
}

/// The ids (third field) of `getent passwd` or `getent group` lines.
fn numbers(stdout: &[u8]) -> impl Iterator<Item = u32> + '_ {
    stdout.split(|b| *b == b'\n').filter_map(|line| {
        std::str::from_utf8(line)
            .ok()?
            .split(':')
            .nth(2)?
            .parse()
            .ok()
    })
}

/// `1001, 1002 and 3 more`: a short list of ids for one line of a report.
fn listed(ids: &BTreeSet<u32>) -> String {
    let shown: Vec<String> = ids.iter().take(8).map(u32::to_string).collect();
    match ids.len().saturating_sub(shown.len()) {
        0 => shown.join(", "),
        n => format!("{} and {n} more", shown.join(", ")),
    }
}

/// What the target does not resolve, in words; `None` when it resolves everything.
pub fn describe(host: &str, unresolved: &Ids) -> Option<String> {
    let mut parts = Vec::new();
    if !unresolved.uids.is_empty() {
        parts.push(format!("uid(s) {}", listed(&unresolved.uids)));
    }
    if !unresolved.gids.is_empty() {
        parts.push(format!("gid(s) {}", listed(&unresolved.gids)));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "host `{host}` resolves no name for {} the copies keep: files would belong to no one there (make its name service know them, e.g. VHFFS's NSS from the panel, before the cutover)",
            parts.join(" and ")
        )
    })
}

/// Each target host's unresolved ids as findings of the `unresolved-ids` check; a host that
/// cannot be asked is a finding too (the cutover cannot know).
pub fn findings(by_host: &BTreeMap<String, Ids>, connections: &Connections) -> Vec<Finding> {
    let mut out = Vec::new();
    for (host, ids) in by_host.iter().filter(|(_, i)| !i.is_empty()) {
        let subject = format!("host {host}");
        match connections
            .get(host)
            .map_err(|e| e.to_string())
            .and_then(|t| unresolved(t.as_ref(), ids))
        {
            Ok(u) => {
                if let Some(why) = describe(host, &u) {
                    out.push(Finding::new(Check::UnresolvedIds, subject, why));
                }
            }
            Err(e) => out.push(Finding::new(
                Check::UnresolvedIds,
                subject,
                format!("cannot check that the copies' owners resolve: {e}"),
            )),
        }
    }
    out
}

/// The same findings as risks of a dry run: warnings, as the target's name service is made
/// ready after the review (like TTLs lowered), and the cutover refuses until it is.
pub fn risks(by_host: &BTreeMap<String, Ids>, connections: &Connections) -> Vec<Risk> {
    findings(by_host, connections)
        .into_iter()
        .map(|f| {
            let why = format!(
                "{}: `cutover` refuses it until then (`--allow {}` lets it through)",
                f.reason, f.check
            );
            Risk::warning("unresolved_ids", f.subject, why)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getent_lines_give_their_ids_and_lists_stay_short() {
        let out = b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\nbad\n";
        assert_eq!(numbers(out).collect::<Vec<_>>(), [0, 65534]);
        assert_eq!(numbers(b"staff:x:50:alice,bob\n").collect::<Vec<_>>(), [50]);
        let many: BTreeSet<u32> = (1000..1010).collect();
        assert_eq!(
            listed(&many),
            "1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007 and 2 more"
        );
        assert_eq!(describe("new", &Ids::default()), None);
        let u = Ids {
            uids: [4242].into(),
            gids: BTreeSet::new(),
        };
        let why = describe("new", &u).unwrap();
        assert!(why.contains("uid(s) 4242") && !why.contains("gid"), "{why}");
    }
}
