//! Which units may be live on the new side, read from the journal: once a unit may serve users
//! there, no verb overwrites, drops or deletes it unless the operator names it in `--allow-live`.

use std::collections::BTreeMap;

use super::state::SiteState;
use crate::plan::Site;
use crate::unit::UnitId;

/// Where every site stands, as far as the live-unit rule cares.
#[derive(Debug, Clone, Default)]
pub struct Live {
    states: BTreeMap<String, SiteState>,
    /// Which site names which database (from the inventory).
    owners: BTreeMap<String, String>,
    /// Names no site owns whose DNS switch may have started (`dns switch` of the whole plan,
    /// an MX host's address): the platform's shared units may be live from then on.
    foreign_switches: Vec<String>,
}

/// Why a unit may be live: the site whose DNS may have moved and its state, or a name of no
/// site whose DNS switch may have started (then `site` is that name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBecause {
    pub site: String,
    pub state: SiteState,
    /// The DNS name switched outside any site, when that is the reason.
    pub dns_name: Option<String>,
}

impl std::fmt::Display for LiveBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dns_name {
            Some(name) => write!(f, "the DNS of `{name}`, no site's, may have been switched"),
            None => write!(f, "site `{}` is {}", self.site, self.state.label()),
        }
    }
}

/// A write refused because its unit may be live on the new side (exit 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "[live-unit] {unit} may be live on the new side ({because}): refused, nothing was written \
     there; `--allow-live {unit}` overwrites it anyway (journaled)"
)]
pub struct LiveRefusal {
    pub unit: UnitId,
    pub because: LiveBecause,
}

impl Live {
    /// From each site's latest state and the sites' database ties.
    pub fn new(states: BTreeMap<String, SiteState>, sites: &[Site]) -> Live {
        let owners = sites
            .iter()
            .flat_map(|s| s.databases.iter().map(|d| (d.name.clone(), s.name.clone())))
            .collect();
        Live {
            states,
            owners,
            foreign_switches: Vec::new(),
        }
    }

    /// Adds the names whose DNS switch may have started (from the journal's switch intents);
    /// those no site owns make the platform's shared units live.
    pub fn with_switched_names(mut self, names: Vec<String>, sites: &[Site]) -> Live {
        let owned: std::collections::HashSet<String> = sites
            .iter()
            .flat_map(|s| s.domains.iter().map(|d| crate::dns::query::fqdn(d)))
            .collect();
        self.foreign_switches = names.into_iter().filter(|n| !owned.contains(n)).collect();
        self.foreign_switches.sort();
        self
    }

    /// The first site (in name order) whose DNS may have moved.
    fn first_switched(&self) -> Option<LiveBecause> {
        self.states
            .iter()
            .find(|(_, s)| s.may_have_switched())
            .map(|(site, state)| LiveBecause {
                site: site.clone(),
                state: *state,
                dns_name: None,
            })
            .or_else(|| {
                self.foreign_switches.first().map(|name| LiveBecause {
                    site: name.clone(),
                    state: SiteState::Switching,
                    dns_name: Some(name.clone()),
                })
            })
    }

    /// Why `unit` may be live on the new side, or `None` when it serves no one there yet.
    /// A site's own units (files, tied databases) go live with it; a unit shared by every site
    /// (a database no site names, the platform's mail) as soon as the first site may have.
    pub fn why(&self, unit: &UnitId) -> Option<LiveBecause> {
        let site_state = |site: &str| {
            self.states
                .get(site)
                .filter(|s| s.may_have_switched())
                .map(|state| LiveBecause {
                    site: site.to_string(),
                    state: *state,
                    dns_name: None,
                })
        };
        match unit {
            UnitId::Site(site) => site_state(site),
            UnitId::Database(db) => match self.owners.get(db) {
                Some(site) => site_state(site),
                None => self.first_switched(),
            },
            UnitId::Mail(_) => self.first_switched(),
        }
    }

    /// `Ok` when `unit` may be overwritten at the target: not live, or allowed by name.
    ///
    /// # Errors
    /// The unit may be live and is not in `allowed`.
    pub fn check(&self, unit: &UnitId, allowed: &[UnitId]) -> Result<(), LiveRefusal> {
        match self.why(unit) {
            Some(because) if !allowed.contains(unit) => Err(LiveRefusal {
                unit: unit.clone(),
                because,
            }),
            _ => Ok(()),
        }
    }

    /// Whether any site may have switched (the platform's shared units are live then).
    pub fn any(&self) -> bool {
        self.first_switched().is_some()
    }
}

/// A verb outside the lifecycle that writes to targets (`db sync`, `mail sync`): it holds the
/// plan's run lock while it works, knows which units may be live, and journals each override.
pub struct Guarded {
    ledger: super::ledger::Ledger,
    live: Live,
    allowed: Vec<UnitId>,
    command: String,
    /// This command's journaled run, ended when the guard is dropped.
    run: u64,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // A crash leaves the run open: the journal then shows which command was cut short.
        let _ = self.ledger.end_run(self.run, true);
    }
}

impl Guarded {
    /// Takes the plan's run lock and reads where every site stands.
    ///
    /// # Errors
    /// Another run holds the lock, or the journal cannot be read.
    pub fn open(
        plan: &crate::plan::Plan,
        sites: &[Site],
        allowed: Vec<UnitId>,
        command: &str,
    ) -> Result<Guarded, crate::journal::JournalError> {
        let ledger = super::ledger::Ledger::for_plan(plan)?;
        let states = ledger.states().into_iter().collect();
        let switched = ledger.switched_names();
        let run = ledger.start_run(
            super::ledger::RunCommand::Other {
                name: command.to_string(),
            },
            allowed.iter().map(|u| format!("allow-live {u}")).collect(),
        )?;
        Ok(Guarded {
            ledger,
            live: Live::new(states, sites).with_switched_names(switched, sites),
            allowed,
            command: command.to_string(),
            run,
        })
    }

    pub fn live(&self) -> &Live {
        &self.live
    }

    /// `Ok` when `unit` may be overwritten at the target; an override the operator gave for a
    /// live unit is journaled (fsynced) before the caller goes on.
    ///
    /// # Errors
    /// The unit may be live and was not named in `--allow-live`, or the override could not be
    /// journaled (then nothing may be written either).
    pub fn check(&mut self, unit: &UnitId) -> Result<(), crate::unit::UnitError> {
        let Some(because) = self.live.why(unit) else {
            return Ok(());
        };
        if !self.allowed.contains(unit) {
            return Err(crate::unit::UnitError::unsafe_(
                LiveRefusal {
                    unit: unit.clone(),
                    because,
                }
                .to_string(),
            )
            .of_unit(unit.clone()));
        }
        self.ledger
            .record(super::ledger::Entry::Override {
                unit: unit.clone(),
                because: because.to_string(),
                command: self.command.clone(),
                at: crate::journal::now(),
            })
            .map_err(|e| crate::unit::UnitError::io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, dbs: &[&str]) -> Site {
        Site {
            kind: crate::plan::UnitKind::Web,
            relink: None,
            name: name.into(),
            rule: 0,
            source_host: "old".into(),
            source_path: "/a".into(),
            target_host: "new".into(),
            target_path: "/b".into(),
            domains: vec![],
            databases: dbs
                .iter()
                .map(|d| crate::plan::SiteDatabase::named(*d))
                .collect(),
            exclude: vec![],
            owner: None,
            marks: vec![],
            tls: None,
        }
    }

    #[test]
    fn tied_units_follow_their_site_and_shared_units_the_first_live_site() {
        let sites = [site("a", &["a_wp"]), site("b", &["b_wp"])];
        let states = BTreeMap::from([
            ("a".to_string(), SiteState::Confirmed),
            ("b".to_string(), SiteState::PreSynced),
        ]);
        let live = Live::new(states, &sites);
        let a_db = UnitId::Database("a_wp".into());
        let b_db = UnitId::Database("b_wp".into());
        let shared = UnitId::Database("common".into());
        assert_eq!(live.why(&a_db).unwrap().site, "a");
        assert!(live.why(&b_db).is_none(), "b has not switched");
        assert_eq!(live.why(&shared).unwrap().site, "a");
        assert!(live.why(&UnitId::Mail(0)).is_some());
        assert!(live.why(&UnitId::Site("b".into())).is_none());
        let refusal = live.check(&a_db, &[]).unwrap_err();
        assert!(
            refusal.to_string().contains("--allow-live db:a_wp"),
            "{refusal}"
        );
        assert!(live.check(&a_db, std::slice::from_ref(&a_db)).is_ok());
    }

    #[test]
    fn every_state_where_dns_may_have_moved_counts_as_live() {
        let sites = [site("a", &["a_wp"])];
        for state in [
            SiteState::Switching,
            SiteState::Switched,
            SiteState::Confirmed,
            SiteState::Paused,
            SiteState::RollingBack,
        ] {
            let live = Live::new(BTreeMap::from([("a".to_string(), state)]), &sites);
            assert!(
                live.why(&UnitId::Database("a_wp".into())).is_some(),
                "{state:?}"
            );
        }
        for state in [
            SiteState::Verified,
            SiteState::RolledBack,
            SiteState::Failed,
        ] {
            let live = Live::new(BTreeMap::from([("a".to_string(), state)]), &sites);
            assert!(
                live.why(&UnitId::Database("a_wp".into())).is_none(),
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_name_of_no_site_switched_makes_shared_units_live_not_site_units() {
        let mut a = site("a", &["a_wp"]);
        a.domains = vec!["a.example.test".into()];
        let sites = [a];
        let states = BTreeMap::from([("a".to_string(), SiteState::PreSynced)]);
        // The site's own name switching (say by `dns switch`) is the site's business, read from
        // its state; the MX host's name belongs to no site.
        let live = Live::new(states.clone(), &sites).with_switched_names(
            vec!["a.example.test.".into(), "mx.example.test.".into()],
            &sites,
        );
        let because = live.why(&UnitId::Mail(0)).unwrap();
        assert_eq!(because.dns_name.as_deref(), Some("mx.example.test."));
        assert!(
            because.to_string().contains("`mx.example.test.`"),
            "{because}"
        );
        assert!(live.why(&UnitId::Database("shared".into())).is_some());
        assert!(live.why(&UnitId::Database("a_wp".into())).is_none());
        assert!(live.why(&UnitId::Site("a".into())).is_none());
        let only_site_name =
            Live::new(states, &sites).with_switched_names(vec!["a.example.test.".into()], &sites);
        assert!(only_site_name.why(&UnitId::Mail(0)).is_none());
    }
}
