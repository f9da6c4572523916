//! `cutover --plan FILE`: before anything is frozen, the world the cutover would act on is
//! compared with the reviewed plan, computed as the cutover computes it (its sites, its own zone
//! plans), so it applies exactly what was reviewed or refuses (`plan-changed`).

use super::{LifecycleError, Migration, Selection, names_of};
use crate::check::Finding;
use crate::dns::cutover;
use crate::dns::provider::RrKey;
use crate::lifecycle::saved_plan::{self, SavedPlan, SavedSite};

impl Migration<'_> {
    /// How the cutover of `selection` would differ from `saved`: the plan's files, the journal,
    /// the sites, and the DNS changes of the selected sites' names.
    ///
    /// # Errors
    /// A bad selection; a zone that cannot be read.
    pub fn saved_plan_findings(
        &self,
        saved: &SavedPlan,
        selection: &Selection,
    ) -> Result<Vec<Finding>, LifecycleError> {
        // Read before anything of this command is journaled.
        let journal = self.ledger.entries()?;
        let files = saved_plan::digests(&self.plan);
        let sites: Vec<SavedSite> = self.sites.iter().map(SavedSite::of).collect();
        let names: Vec<String> = self
            .selected_batches(selection)?
            .concat()
            .iter()
            .flat_map(|s| names_of(s))
            .collect();
        let dns = self.dns_changes_of(&names)?;
        // What the servers hold of a reviewed RRset the cutover would leave alone now.
        let provider = self
            .plan
            .dns
            .as_ref()
            .and_then(|spec| cutover::provider(spec).ok());
        let served = |key: &RrKey| provider.as_ref().and_then(|p| p.read(key).ok());
        Ok(saved.differences(&files, &journal, &sites, (&dns, &names), &served))
    }

    /// Refuses the cutover of `selection` (check `plan-changed`, journaled) unless it would
    /// apply exactly the reviewed `saved` plan; an override is said and journaled.
    ///
    /// # Errors
    /// `Refused` with every difference; a bad selection; a zone that cannot be read.
    pub fn hold_to(&self, saved: &SavedPlan, selection: &Selection) -> Result<(), LifecycleError> {
        let findings = self.saved_plan_findings(saved, selection)?;
        self.refuse_cutover_unless_allowed(findings)
    }
}
