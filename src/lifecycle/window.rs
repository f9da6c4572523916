//! A site's cutover windows, folded from the journal in one place so `status`, the report and
//! JSON cannot disagree: the freeze window (writes had nowhere to go) and the DNS exposure
//! (stale resolvers may still send visitors to the old address).

use std::collections::{BTreeMap, HashMap};

use super::ledger::Entry;
use super::state::{SiteState, SiteStatus};
use crate::dns::provider::{DnsEvent, DnsPhase};
use crate::report::lifecycle::SiteWindow;

/// What the journal says about switches and routes, indexed once for every site.
#[derive(Default)]
pub struct Facts {
    /// Per DNS name: each switch intent's record type, the TTL it was served with before, and
    /// when it was journaled (seconds).
    switches: HashMap<String, Vec<(String, u32, u64)>>,
    /// Per site: each route handed to a forwarder, its margin and when (seconds).
    routes: HashMap<String, Vec<(u64, u64)>>,
}

impl Facts {
    /// Indexes `entries` (one pass).
    pub fn of(entries: &[Entry]) -> Facts {
        let mut f = Facts::default();
        for e in entries {
            f.add(e);
        }
        f
    }

    /// Indexes one more entry (readers that stream the journal).
    pub fn add(&mut self, e: &Entry) {
        let f = self;
        {
            match e {
                Entry::Dns(DnsEvent::DnsIntent {
                    key,
                    phase: DnsPhase::Switch,
                    from,
                    at,
                    ..
                }) => f.switches.entry(key.name.clone()).or_default().push((
                    key.rtype.clone(),
                    from.ttl,
                    *at,
                )),
                Entry::ForwardRoute {
                    site,
                    routed: true,
                    margin_secs,
                    at,
                    ..
                } => f
                    .routes
                    .entry(site.clone())
                    .or_default()
                    .push((*margin_secs, *at)),
                _ => {}
            }
        }
    }
}

/// The windows of site `name` (its folded `status`, its `domains`), `None` when it never
/// reached a switch.
///
/// Freeze window: from the `freezing` intent of the last attempt that reached `switched` to
/// that `switched` (the compare-and-swap applied: from then on a resolver asking anew is sent
/// to the new side, which accepts writes), in milliseconds.
/// DNS exposure: from that `switched` for the old TTL (the highest TTL the site's RRsets were
/// served with just before their switch: what a resolver may still hold), plus the forwarder's
/// margin when one routes the site (its visitors are then forwarded, not lost).
pub fn of_site(
    name: &str,
    status: &SiteStatus,
    domains: &[String],
    facts: &Facts,
    now: u64,
) -> Option<SiteWindow> {
    let mut freeze_from: Option<u64> = None;
    let mut found: Option<(u64, u64)> = None;
    let mut frozen = false;
    for step in &status.timeline {
        match step.state {
            SiteState::Freezing if !frozen => {
                frozen = true;
                freeze_from = Some(step.at_ms);
            }
            SiteState::Switched => {
                if let Some(from) = freeze_from.take() {
                    found = Some((from, step.at_ms));
                }
            }
            SiteState::Confirmed | SiteState::Failed | SiteState::RolledBack => frozen = false,
            _ => {}
        }
    }
    let (from_ms, switched_ms) = found?;
    let switched = switched_ms / 1000;
    // The last switch intent of each of the site's RRsets up to the switch.
    let mut old_ttls: HashMap<(String, &str), u32> = HashMap::new();
    for d in domains {
        let fqdn = crate::dns::query::fqdn(d);
        for (rtype, ttl, at) in facts.switches.get(&fqdn).into_iter().flatten() {
            if *at <= switched {
                old_ttls.insert((fqdn.clone(), rtype), *ttl);
            }
        }
    }
    let margin = facts
        .routes
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(_, at)| *at >= switched)
        .map(|(m, _)| *m)
        .next_back();
    let old_ttl = old_ttls.values().copied().max();
    let exposure_secs = old_ttl.map(|t| u64::from(t) + margin.unwrap_or(0));
    let until = exposure_secs.map(|e| switched + e);
    Some(SiteWindow {
        freeze_ms: switched_ms.saturating_sub(from_ms),
        frozen_at_ms: from_ms,
        switched_at_ms: switched_ms,
        old_ttl_secs: old_ttl,
        forward_margin_secs: margin,
        exposure_secs,
        exposure_until: until,
        exposure_over: until.map(|u| u <= now),
    })
}

/// Every site's windows (the sites that reached a switch), by name.
pub fn of_sites(
    sites: &[crate::plan::Site],
    statuses: &BTreeMap<String, SiteStatus>,
    facts: &Facts,
    now: u64,
) -> BTreeMap<String, SiteWindow> {
    sites
        .iter()
        .filter_map(|s| {
            let st = statuses.get(&s.name)?;
            of_site(&s.name, st, &s.domains, facts, now).map(|w| (s.name.clone(), w))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::provider::{RrKey, RrState};

    fn step(state: SiteState, at_ms: u64) -> Entry {
        Entry::Site {
            site: "a".into(),
            state,
            at: at_ms / 1000,
            detail: None,
            bytes: None,
            millis: None,
            at_ms: Some(at_ms),
        }
    }

    fn switch(name: &str, ttl: u32, at: u64) -> Entry {
        let st = |v: &str, ttl| RrState {
            ttl,
            values: vec![v.into()],
        };
        Entry::Dns(DnsEvent::DnsIntent {
            key: RrKey {
                zone: "example.test".into(),
                name: name.into(),
                rtype: "A".into(),
            },
            phase: DnsPhase::Switch,
            from: st("192.0.2.1", ttl),
            to: st("198.51.100.1", ttl),
            at,
        })
    }

    #[test]
    fn the_last_switched_attempt_gives_the_freeze_window_and_the_highest_ttl_the_exposure() {
        let entries = vec![
            step(SiteState::Freezing, 1_000_000),
            step(SiteState::Failed, 1_001_000),
            step(SiteState::Freezing, 2_000_000),
            step(SiteState::Frozen, 2_000_100),
            step(SiteState::Switching, 2_001_000),
            switch("a.example.test.", 60, 2_001),
            switch("www.a.example.test.", 300, 2_001),
            step(SiteState::Switched, 2_001_234),
            step(SiteState::Confirmed, 2_002_000),
        ];
        let st = &super::super::state::fold(&entries)["a"];
        let domains = vec!["a.example.test".to_string(), "www.a.example.test".into()];
        let w = of_site("a", st, &domains, &Facts::of(&entries), 2_100).unwrap();
        assert_eq!(w.freeze_ms, 1_234);
        assert_eq!(w.old_ttl_secs, Some(300));
        assert_eq!(w.exposure_secs, Some(300));
        assert_eq!(w.exposure_until, Some(2_001 + 300));
        assert_eq!(w.exposure_over, Some(false));
        let mut routed = entries.clone();
        routed.push(Entry::ForwardRoute {
            site: "a".into(),
            host: "old".into(),
            names: domains.clone(),
            to: "198.51.100.1".into(),
            until: 2_001 + 300 + 30,
            margin_secs: 30,
            routed: true,
            at: 2_002,
        });
        let w = of_site("a", st, &domains, &Facts::of(&routed), 9_999).unwrap();
        assert_eq!(w.exposure_secs, Some(330));
        assert_eq!(w.exposure_over, Some(true));
    }

    #[test]
    fn no_switch_no_window_and_old_journals_count_in_seconds() {
        let never = vec![
            step(SiteState::Freezing, 5_000),
            step(SiteState::Failed, 6_000),
        ];
        let f = Facts::of(&never);
        assert!(of_site("a", &super::super::state::fold(&never)["a"], &[], &f, 9).is_none());
        let old: Vec<Entry> = [(SiteState::Freezing, 10), (SiteState::Switched, 12)]
            .into_iter()
            .map(|(state, at)| Entry::Site {
                site: "a".into(),
                state,
                at,
                detail: None,
                bytes: None,
                millis: None,
                at_ms: None,
            })
            .collect();
        let f = Facts::of(&old);
        let w = of_site("a", &super::super::state::fold(&old)["a"], &[], &f, 20).unwrap();
        assert_eq!(w.freeze_ms, 2_000);
        assert_eq!(w.exposure_secs, None, "nothing switched in DNS");
    }
}
