//! When to order certificates for the sites without a usable one, so that the CA's rate limits
//! are never hit (issue 15): re-issuing tens of thousands of certificates at the switch takes
//! weeks, while renewals of the same name set can all go at once. Pure: the dry run feeds it.
//!
//! Let's Encrypt's limits, from <https://letsencrypt.org/docs/rate-limits/> (last updated June
//! 2025, read for this code in December 2026):
//! - New Orders per Account: 300 per 3 hours, refilled one every 36 seconds;
//! - Certificates per Registered Domain: 50 per 7 days, refilled one every 202 minutes (the
//!   registered domain is the name bought from a registrar, found with the Public Suffix List);
//! - "Limit Exemptions for Renewals": an order for the exact same set of identifiers as an
//!   earlier certificate is a renewal, exempt from both limits above (still at most 5 per 7 days
//!   for one set: one order per site here); renewals through ACME Renewal Information (ARI) are
//!   exempt from every limit
//!   (<https://letsencrypt.org/2024/04/25/guide-to-integrating-ari-into-existing-acme-clients>).
//!
//! The CA computes each limit as a token bucket (GCRA): a full bucket may be spent at once, then
//! it refills at a steady rate; this schedule simulates exactly that, in time order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use crate::report::{DomainLoad, IssuanceSchedule, ScheduledOrder};

/// One site without a usable certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub site: String,
    /// The names its new certificate must hold.
    pub names: Vec<String>,
    /// Its current certificate comes from the CA and holds every one of `names`: ordering that
    /// certificate's own name set again is a renewal.
    pub renewal: bool,
}

/// `size` orders per `period`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub size: u64,
    pub period: Duration,
}

impl Bucket {
    /// Milliseconds between two refills.
    fn interval(&self) -> u64 {
        (self.period.as_millis() as u64 / self.size.max(1)).max(1)
    }
}

/// A CA's limits on new orders.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub ca: &'static str,
    pub orders_per_account: Bucket,
    pub certificates_per_domain: Bucket,
}

/// Let's Encrypt's production limits (see the module's sources).
pub const LETS_ENCRYPT: Limits = Limits {
    ca: "Let's Encrypt",
    orders_per_account: Bucket {
        size: 300,
        period: Duration::from_secs(3 * 3600),
    },
    certificates_per_domain: Bucket {
        size: 50,
        period: Duration::from_secs(7 * 86_400),
    },
};

/// Where the rule is written, for the report.
const SOURCE: &str = "https://letsencrypt.org/docs/rate-limits/";

/// The generic cell rate algorithm: `tat` is the theoretical arrival time of the next order.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    tat: u64,
    interval: u64,
    /// How far ahead of `tat` an order may come: a full bucket minus one.
    tolerance: u64,
}

impl Gcra {
    fn new(b: Bucket) -> Gcra {
        let interval = b.interval();
        Gcra {
            tat: 0,
            interval,
            tolerance: interval * b.size.saturating_sub(1),
        }
    }

    fn earliest(&self) -> u64 {
        self.tat.saturating_sub(self.tolerance)
    }

    fn take(&mut self, at: u64) {
        self.tat = self.tat.max(at) + self.interval;
    }
}

/// Multi-label public suffixes under which names are registered at the third level. The Public
/// Suffix List has thousands; these are the common ones, so a platform's own domain and its
/// customers' usual ones are counted right.
const TWO_LABEL_SUFFIXES: &[&str] = &[
    "ac.at", "co.at", "or.at", "com.au", "net.au", "org.au", "edu.au", "com.br", "net.br",
    "org.br", "com.cn", "net.cn", "org.cn", "asso.fr", "gouv.fr", "com.es", "org.es", "com.hk",
    "co.il", "co.in", "net.in", "org.in", "co.jp", "ne.jp", "or.jp", "ac.jp", "co.kr", "or.kr",
    "com.mx", "co.nz", "net.nz", "org.nz", "com.pl", "com.sg", "com.tr", "com.tw", "ac.uk",
    "co.uk", "gov.uk", "ltd.uk", "me.uk", "net.uk", "org.uk", "plc.uk", "co.za", "org.za",
];

/// The registered domain of a name (`www.shop.example.co.uk` → `example.co.uk`), on the short
/// suffix list above: what Let's Encrypt counts certificates per.
pub fn registered_domain(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let name = name.strip_prefix("*.").unwrap_or(&name);
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    if n <= 2 {
        return name.to_string();
    }
    let last_two = format!("{}.{}", labels[n - 2], labels[n - 1]);
    let keep = if TWO_LABEL_SUFFIXES.contains(&last_two.as_str()) {
        3
    } else {
        2
    };
    labels[n - keep..].join(".")
}

/// A span in hours (and days past two), as the summary gives it.
fn span(seconds: u64) -> String {
    match seconds {
        0 => "at once".into(),
        s if s < 3600 => format!("{} min", s.div_ceil(60)),
        s if s < 2 * 86_400 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!(
            "{:.1} h ({:.1} days)",
            s as f64 / 3600.0,
            s as f64 / 86_400.0
        ),
    }
}

/// Orders for `needs` within `limits`: renewals now, new orders as early as both limits allow,
/// in time order (ties in plan order).
pub fn schedule(needs: &[Need], limits: &Limits) -> IssuanceSchedule {
    let account_bucket = limits.orders_per_account;
    let domain_bucket = limits.certificates_per_domain;
    let mut out = IssuanceSchedule {
        ca: limits.ca.to_string(),
        limits: vec![
            format!(
                "{} new orders per account per {} (then one every {} s)",
                account_bucket.size,
                span(account_bucket.period.as_secs()),
                account_bucket.interval() / 1000
            ),
            format!(
                "{} certificates per registered domain per {} days (then one every {} min)",
                domain_bucket.size,
                domain_bucket.period.as_secs() / 86_400,
                (domain_bucket.interval() + 30_000) / 60_000
            ),
            "an order for the exact name set of an earlier certificate is a renewal: exempt from both".into(),
            format!("source: {SOURCE}"),
        ],
        ..Default::default()
    };
    // New orders grouped by the registered domains they count against.
    let mut groups: Vec<(Vec<String>, VecDeque<usize>)> = Vec::new();
    let mut group_of: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for (i, need) in needs.iter().enumerate() {
        if need.renewal {
            out.renewals.push(need.site.clone());
            continue;
        }
        let mut domains: Vec<String> = need.names.iter().map(|n| registered_domain(n)).collect();
        domains.sort();
        domains.dedup();
        let g = *group_of.entry(domains.clone()).or_insert_with(|| {
            groups.push((domains, VecDeque::new()));
            groups.len() - 1
        });
        groups[g].1.push_back(i);
    }
    let mut account = Gcra::new(account_bucket);
    let mut per_domain: HashMap<String, Gcra> = HashMap::new();
    for (domains, _) in &groups {
        for d in domains {
            per_domain
                .entry(d.clone())
                .or_insert_with(|| Gcra::new(domain_bucket));
        }
    }
    let ready = |domains: &[String], per_domain: &HashMap<String, Gcra>| {
        domains
            .iter()
            .map(|d| per_domain[d].earliest())
            .max()
            .unwrap_or(0)
    };
    // Lazy heap: a group's key only grows, so a stale key is pushed back with its new value.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..groups.len()).map(|g| Reverse((0, g))).collect();
    let mut at: Vec<Option<u64>> = vec![None; needs.len()];
    let mut now = 0u64;
    let mut per_domain_last: HashMap<String, (u64, u64)> = HashMap::new();
    while let Some(Reverse((key, g))) = heap.pop() {
        let r = ready(&groups[g].0, &per_domain);
        if r > key {
            heap.push(Reverse((r, g)));
            continue;
        }
        // Orders go in time order: never before one already placed.
        let t = r.max(account.earliest()).max(now);
        now = t;
        let i = groups[g]
            .1
            .pop_front()
            .expect("groups in the heap have orders");
        at[i] = Some(t);
        account.take(t);
        for d in &groups[g].0 {
            per_domain.get_mut(d).expect("known domain").take(t);
            let e = per_domain_last.entry(d.clone()).or_default();
            *e = (e.0 + 1, t);
        }
        if !groups[g].1.is_empty() {
            heap.push(Reverse((ready(&groups[g].0, &per_domain), g)));
        }
    }
    for (i, need) in needs.iter().enumerate() {
        if let Some(t) = at[i] {
            out.new_orders.push(ScheduledOrder {
                site: need.site.clone(),
                names: need.names.clone(),
                at_seconds: t.div_ceil(1000),
            });
        }
    }
    out.seconds = out
        .new_orders
        .iter()
        .map(|o| o.at_seconds)
        .max()
        .unwrap_or(0);
    let mut busy: Vec<DomainLoad> = per_domain_last
        .into_iter()
        .filter(|(_, (n, _))| *n > domain_bucket.size)
        .map(|(domain, (orders, last))| DomainLoad {
            domain,
            orders,
            seconds: last.div_ceil(1000),
        })
        .collect();
    busy.sort_by(|a, b| b.orders.cmp(&a.orders).then(a.domain.cmp(&b.domain)));
    out.busy_domains = busy;
    out.summary = summary(&out, limits);
    out
}

fn summary(s: &IssuanceSchedule, limits: &Limits) -> Vec<String> {
    let mut lines = Vec::new();
    let sites = |n: usize| {
        if n == 1 {
            "1 site".to_string()
        } else {
            format!("{n} sites")
        }
    };
    if !s.renewals.is_empty() {
        lines.push(format!(
            "{} can renew now: {}'s certificate already holds all their names, and an order for the same name set is a renewal, exempt from the limits",
            sites(s.renewals.len()),
            limits.ca
        ));
    }
    if !s.new_orders.is_empty() {
        let a = limits.orders_per_account;
        lines.push(format!(
            "{} need a new certificate: at {} new orders per {} (then one every {} s), the last order can go {}",
            sites(s.new_orders.len()),
            a.size,
            span(a.period.as_secs()),
            a.interval() / 1000,
            match s.seconds {
                0 => "at once".to_string(),
                t => format!("after {}", span(t)),
            }
        ));
    }
    let d = limits.certificates_per_domain;
    for b in &s.busy_domains {
        lines.push(format!(
            "registered domain {}: {} new certificates at {} per {} days: its last order can go after {}; ask {} for a rate limit adjustment, or cover its names with fewer certificates",
            b.domain,
            b.orders,
            d.size,
            d.period.as_secs() / 86_400,
            span(b.seconds),
            limits.ca
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(site: &str, renewal: bool) -> Need {
        Need {
            site: site.into(),
            names: vec![site.into(), format!("www.{site}")],
            renewal,
        }
    }

    #[test]
    fn registered_domains_follow_the_common_suffixes() {
        assert_eq!(registered_domain("www.shop.example.org."), "example.org");
        assert_eq!(registered_domain("*.Example.org"), "example.org");
        assert_eq!(registered_domain("new.blog.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("example.org"), "example.org");
        assert_eq!(registered_domain("localhost"), "localhost");
    }

    #[test]
    fn renewals_go_now_and_a_full_bucket_at_once() {
        let needs: Vec<Need> = (0..300)
            .map(|i| need(&format!("s{i}.test{}", i % 7), false))
            .chain([need("kept.org", true)])
            .collect();
        let s = schedule(&needs, &LETS_ENCRYPT);
        assert_eq!(s.renewals, ["kept.org"]);
        assert_eq!(s.new_orders.len(), 300);
        assert_eq!(s.seconds, 0, "300 orders fit in a full bucket");
        assert!(
            s.summary[0].starts_with("1 site can renew now"),
            "{:?}",
            s.summary
        );
        assert!(
            s.summary[1].contains("the last order can go at once"),
            "{:?}",
            s.summary
        );
    }

    /// The issue's platform: 47,634 sites in distinct registered domains need new orders:
    /// 300 at once, then one every 36 s, about 20 days.
    #[test]
    fn the_account_limit_spaces_orders_36_seconds_apart() {
        let needs: Vec<Need> = (0..47_634)
            .map(|i| need(&format!("site{i}.org"), false))
            .collect();
        let s = schedule(&needs, &LETS_ENCRYPT);
        assert_eq!(s.seconds, (47_634 - 300) * 36);
        assert_eq!(s.new_orders[299].at_seconds, 0);
        assert_eq!(s.new_orders[300].at_seconds, 36);
        assert_eq!(s.new_orders[301].at_seconds, 72);
        assert!(s.busy_domains.is_empty());
        assert!(
            s.summary[0].contains("473.3 h (19.7 days)"),
            "{:?}",
            s.summary
        );
        // Orders are placed in time order.
        let times: Vec<u64> = s.new_orders.iter().map(|o| o.at_seconds).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Sites under one registered domain wait for its weekly limit; sites elsewhere do not wait
    /// for them.
    #[test]
    fn one_registered_domain_waits_for_its_weekly_limit_alone() {
        let mut needs: Vec<Need> = (0..120)
            .map(|i| Need {
                site: format!("u{i}"),
                names: vec![format!("u{i}.hosting.example")],
                renewal: false,
            })
            .collect();
        needs.push(need("other.org", false));
        let s = schedule(&needs, &LETS_ENCRYPT);
        let interval = 7 * 86_400 * 1000 / 50; // 201.6 min, in ms
        let at = |site: &str| {
            s.new_orders
                .iter()
                .find(|o| o.site == site)
                .unwrap()
                .at_seconds
        };
        assert_eq!(at("u49"), 0);
        assert_eq!(at("u50"), (interval as u64).div_ceil(1000));
        assert_eq!(at("u119"), (70 * interval as u64).div_ceil(1000));
        assert_eq!(at("other.org"), 0, "another domain is not held back");
        assert_eq!(
            s.busy_domains,
            [DomainLoad {
                domain: "hosting.example".into(),
                orders: 120,
                seconds: (70 * interval as u64).div_ceil(1000),
            }]
        );
        assert!(
            s.summary
                .iter()
                .any(|l| l.starts_with("registered domain hosting.example: 120 new certificates")),
            "{:?}",
            s.summary
        );
    }

    /// An order naming two registered domains counts against both.
    #[test]
    fn an_order_spanning_two_domains_counts_against_each() {
        let mut needs: Vec<Need> = (0..50)
            .map(|i| Need {
                site: format!("a{i}"),
                names: vec![format!("a{i}.one.example")],
                renewal: false,
            })
            .collect();
        needs.push(Need {
            site: "both".into(),
            names: vec!["x.one.example".into(), "x.two.example".into()],
            renewal: false,
        });
        let s = schedule(&needs, &LETS_ENCRYPT);
        let both = s.new_orders.iter().find(|o| o.site == "both").unwrap();
        assert_eq!(both.at_seconds, (7 * 86_400 * 1000 / 50u64).div_ceil(1000));
    }

    #[test]
    fn nothing_to_order_says_nothing() {
        let s = schedule(&[], &LETS_ENCRYPT);
        assert!(s.new_orders.is_empty() && s.renewals.is_empty() && s.summary.is_empty());
        assert_eq!(s.seconds, 0);
    }
}
