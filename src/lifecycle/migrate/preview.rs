//! What a cutover or a rollback of a selection would take, read before it acts, so the question
//! the CLI asks shows what the command will do: the sites with their state, and the DNS records
//! that would change, cut from the very zone plans the cutover applies (cached for the command)
//! or decided as the rollback decides them.

use serde::Serialize;

use super::{LifecycleError, Migration, Selection, names_of};
use crate::dns::cutover::{self, Change};
use crate::dns::provider::{DnsLog, RrKey};
use crate::lifecycle::state::SiteState;
use crate::plan::Site;

/// A selected site and where it stands now.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewSite {
    pub name: String,
    pub state: SiteState,
}

/// What a command would take.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preview {
    /// The sites it would act on, with their state now.
    pub sites: Vec<PreviewSite>,
    /// The RRsets it would change: name, type, values and TTL before and after.
    pub dns: Vec<Change>,
    /// RRsets it would leave alone, with why (a rollback: changed by someone since ours).
    pub left_alone: Vec<(RrKey, String)>,
}

impl Preview {
    /// Nothing to do: no question to ask.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty() && self.dns.is_empty() && self.left_alone.is_empty()
    }
}

impl Migration<'_> {
    /// The DNS changes a cutover of `names` would make (none without `dns:`): what the preview
    /// shows and what a saved plan is held to.
    ///
    /// # Errors
    /// A zone that cannot be read.
    pub(super) fn dns_changes_of(&self, names: &[String]) -> Result<Vec<Change>, LifecycleError> {
        if self.plan.dns.is_none() {
            return Ok(Vec::new());
        }
        let plans = self.zone_plans().map_err(LifecycleError::Unreachable)?;
        Ok(cutover::restrict(&plans, names)
            .into_iter()
            .flat_map(|p| p.changes)
            .collect())
    }

    /// What `cutover(selection)` would take: the selected sites and the DNS changes restricted
    /// to their names, from the zone plans the cutover itself will apply (read once, cached).
    ///
    /// # Errors
    /// A batch or site that does not exist, a zone that cannot be read.
    pub fn preview_cutover(&self, selection: &Selection) -> Result<Preview, LifecycleError> {
        let sites: Vec<&Site> = self.selected_batches(selection)?.concat();
        self.check_secrets(&crate::lifecycle::secrets::Needs::all(&self.plan))?;
        let names: Vec<String> = sites.iter().flat_map(|s| names_of(s)).collect();
        let dns = self.dns_changes_of(&names)?;
        Ok(Preview {
            sites: self.preview_sites(&sites),
            dns,
            left_alone: Vec::new(),
        })
    }

    /// Whether the cutover of `selection` will be refused by a check the operator did not allow
    /// (then there is nothing to confirm: the cutover refuses and journals why).
    ///
    /// # Errors
    /// A bad selection; a zone that cannot be read.
    pub fn cutover_refused(&self, selection: &Selection) -> Result<bool, LifecycleError> {
        // The secrets the cutover needs, before the zones are read with one of them.
        self.check_secrets(&crate::lifecycle::secrets::Needs::all(&self.plan))?;
        let names: Vec<String> = self
            .selected_batches(selection)?
            .concat()
            .iter()
            .flat_map(|s| names_of(s))
            .collect();
        let findings = self
            .dns_findings(&names)
            .map_err(LifecycleError::Unreachable)?;
        Ok(!self.checks.judge(findings).ok())
    }

    /// What `rollback(only)` would take: the sites whose DNS may have moved or whose source may
    /// be frozen, and per RRset of theirs we changed, what the rollback would decide from what
    /// the servers serve now (the same trails and decision it applies).
    ///
    /// # Errors
    /// A name that is not a site of the plan; the DNS provider cannot be set up.
    pub fn preview_rollback(&self, only: &[String]) -> Result<Preview, LifecycleError> {
        let sites = self.rollback_selection(only)?;
        let mut preview = Preview {
            sites: self.preview_sites(&sites),
            ..Preview::default()
        };
        let Some(spec) = &self.plan.dns else {
            return Ok(preview);
        };
        let names: Vec<String> = sites.iter().flat_map(|s| names_of(s)).collect();
        if names.is_empty() {
            return Ok(preview);
        }
        let decided =
            crate::dns::preview::rollback(spec, &self.ledger.history(&names), &[], &names, false)
                .map_err(|e| LifecycleError::Unreachable(e.to_string()))?;
        preview.dns = decided.changes;
        preview.left_alone = decided.left_alone;
        Ok(preview)
    }

    fn preview_sites(&self, sites: &[&Site]) -> Vec<PreviewSite> {
        sites
            .iter()
            .map(|s| PreviewSite {
                name: s.name.clone(),
                state: self.state_of(&s.name),
            })
            .collect()
    }
}
