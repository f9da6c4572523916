//! Named safety checks: every refusal has a name, is evaluated on the units a command selected,
//! and is overridden only by naming it (`--allow NAME`; `--force` allows all, each one said).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One safety check. The names are stable: scripts pass them to `--allow`, journals keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Resolvers may still cache a high TTL of an RRset about to switch (served now, or served
    /// until less than that TTL ago).
    TtlNotExpired,
    /// One command would change more than `dns.zone_share.max` of a zone's RRsets (zones of at
    /// least `dns.zone_share.min_rrsets`).
    ZoneShare,
    /// The switch would change the address of one of the zone's own name servers.
    NameserverAddress,
    /// The plan differs from the one reviewed: `dns switch --plan-checksum`, or `cutover
    /// --plan FILE` (the plan's files, the journal, the sites or the DNS values changed).
    PlanChanged,
    /// A `--delete` would remove more than 30 % of a target's files.
    DeleteShare,
    /// The unit may serve from the new side already: overwriting it there loses live writes.
    LiveUnit,
    /// A uid or gid the copies keep has no name at the target (its files would belong to no
    /// one there).
    UnresolvedIds,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::TtlNotExpired,
        Check::ZoneShare,
        Check::NameserverAddress,
        Check::PlanChanged,
        Check::DeleteShare,
        Check::LiveUnit,
        Check::UnresolvedIds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::TtlNotExpired => "ttl-not-expired",
            Check::ZoneShare => "zone-share",
            Check::NameserverAddress => "nameserver-address",
            Check::PlanChanged => "plan-changed",
            Check::DeleteShare => "delete-share",
            Check::LiveUnit => "live-unit",
            Check::UnresolvedIds => "unresolved-ids",
        }
    }

    /// What the check protects, in one line (for `--help` and the README).
    pub fn protects(self) -> &'static str {
        match self {
            Check::TtlNotExpired => {
                "visitors whose resolvers still cache the old address for the old TTL"
            }
            Check::ZoneShare => "a zone from a plan that would rewrite most of it by mistake",
            Check::NameserverAddress => "the zone's own delegation (a name server's address)",
            Check::PlanChanged => "the reviewed plan: the world changed since the review",
            Check::DeleteShare => "a target from a wrong source path mirrored with --delete",
            Check::LiveUnit => "writes made on the new side after its switch",
            Check::UnresolvedIds => {
                "the copies' owners: numeric ids the target's name service does not know"
            }
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Check {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Check::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a check (checks: {})",
                    Check::ALL.map(Check::name).join(", ")
                )
            })
    }
}

/// One thing a check found about one subject (a zone, an RRset, a unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub check: Check,
    /// What it is about, such as `zone example.org` or `www.example.org. A`.
    pub subject: String,
    pub reason: String,
}

impl Finding {
    pub fn new(check: Check, subject: impl Into<String>, reason: impl Into<String>) -> Finding {
        Finding {
            check,
            subject: subject.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.check, self.subject, self.reason)
    }
}

/// The checks an operator allowed for one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// `--force`: every check, each one still printed and journaled.
    pub all: bool,
    pub named: BTreeSet<Check>,
}

impl Allowed {
    pub fn none() -> Allowed {
        Allowed::default()
    }

    pub fn new(named: impl IntoIterator<Item = Check>, force: bool) -> Allowed {
        Allowed {
            all: force,
            named: named.into_iter().collect(),
        }
    }

    /// How `check` is allowed, when it is: `--allow NAME` or `--force`.
    pub fn by(&self, check: Check) -> Option<&'static str> {
        if self.named.contains(&check) {
            Some("--allow")
        } else if self.all {
            Some("--force")
        } else {
            None
        }
    }

    pub fn allows(&self, check: Check) -> bool {
        self.by(check).is_some()
    }

    /// Sorts findings into refusals and overrides.
    pub fn judge(&self, findings: Vec<Finding>) -> Verdict {
        let mut v = Verdict::default();
        for f in findings {
            match self.by(f.check) {
                Some(by) => v.overridden.push(Override { finding: f, by }),
                None => v.refused.push(f),
            }
        }
        v
    }

    /// The overrides as the journal keeps them on a run (`allow zone-share`, `force`).
    pub fn journaled(&self) -> Vec<String> {
        let mut out: Vec<String> = self.named.iter().map(|c| format!("allow {c}")).collect();
        if self.all {
            out.push("force".into());
        }
        out
    }
}

/// A finding let through, and by which flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub finding: Finding,
    /// `--allow` or `--force`.
    pub by: &'static str,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.by == "--allow" {
            format!("--allow {}", self.finding.check)
        } else {
            "--force".to_string()
        };
        write!(f, "overridden by {how}: {}", self.finding)
    }
}

/// What the checks decided for one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refused: Vec<Finding>,
    pub overridden: Vec<Override>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.refused.is_empty()
    }
}

/// A refusal: the findings not allowed, with how to override each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refused(pub Vec<Finding>);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: BTreeSet<Check> = self.0.iter().map(|x| x.check).collect();
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(
            f,
            "refused: {} (to go on anyway: {})",
            lines.join("; "),
            names
                .iter()
                .map(|c| format!("--allow {c}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_checks() {
        for c in Check::ALL {
            assert_eq!(c.name().parse::<Check>(), Ok(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        let e = "zone".parse::<Check>().unwrap_err();
        assert!(e.contains("zone-share") && e.contains("live-unit"), "{e}");
    }

    #[test]
    fn only_the_named_check_is_allowed_and_force_allows_all_saying_so() {
        let f = |c| Finding::new(c, "zone example.org", "why");
        let allowed = Allowed::new([Check::ZoneShare], false);
        let v = allowed.judge(vec![f(Check::ZoneShare), f(Check::TtlNotExpired)]);
        assert_eq!(v.refused, vec![f(Check::TtlNotExpired)]);
        assert_eq!(v.overridden.len(), 1);
        assert_eq!(v.overridden[0].by, "--allow");
        let msg = Refused(v.refused).to_string();
        assert!(msg.contains("--allow ttl-not-expired"), "{msg}");
        assert!(!msg.contains("--allow zone-share"), "{msg}");

        let v = Allowed::new([], true).judge(vec![f(Check::ZoneShare), f(Check::LiveUnit)]);
        assert!(v.ok());
        assert!(v.overridden.iter().all(|o| o.by == "--force"));
        assert!(
            v.overridden[1]
                .to_string()
                .starts_with("overridden by --force: [live-unit]")
        );
        assert_eq!(
            Allowed::new([Check::LiveUnit], true).journaled(),
            vec!["allow live-unit", "force"]
        );
    }
}
