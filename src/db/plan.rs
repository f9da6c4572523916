//! What moving one database will do at its target, decided in one place for the transfer and
//! the dry run: a database we copied before (it carries our marker) is ours to replace, never
//! a conflict.

use serde::Serialize;

use crate::plan::raw::ConflictPolicy;

pub use super::transfer::marker;

/// What happens to one database at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbAction {
    /// Not at the target: copied.
    Create,
    /// At the target with our marker (an earlier pre-sync of this plan): copied again.
    ReplaceOurs,
    /// At the target, not ours, and the plan says `conflict: replace`.
    ReplaceTheirs,
    /// At the target, not ours, and the plan says `conflict: skip`: left alone.
    Skip,
    /// At the target, not ours, and the plan says `conflict: fail`: the move stops there.
    Conflict,
}

impl DbAction {
    /// The action's name as the dry run and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DbAction::Create => "create",
            DbAction::ReplaceOurs => "replace_ours",
            DbAction::ReplaceTheirs => "replace_theirs",
            DbAction::Skip => "skip",
            DbAction::Conflict => "conflict",
        }
    }
}

/// One database's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbPlan {
    pub name: String,
    pub action: DbAction,
}

/// Decides from the target's comment on the database (`None`: it does not exist there).
pub fn decide(
    name: &str,
    target_comment: Option<&str>,
    plan: &str,
    policy: ConflictPolicy,
) -> DbPlan {
    let action = match target_comment {
        None => DbAction::Create,
        Some(c) if c == marker(plan) => DbAction::ReplaceOurs,
        Some(_) => match policy {
            ConflictPolicy::Fail => DbAction::Conflict,
            ConflictPolicy::Skip => DbAction::Skip,
            ConflictPolicy::Replace => DbAction::ReplaceTheirs,
        },
    };
    DbPlan {
        name: name.into(),
        action,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_copy_is_replaced_whatever_the_policy() {
        let ours = marker("p");
        for policy in [
            ConflictPolicy::Fail,
            ConflictPolicy::Skip,
            ConflictPolicy::Replace,
        ] {
            assert_eq!(
                decide("d", Some(&ours), "p", policy).action,
                DbAction::ReplaceOurs
            );
            assert_eq!(decide("d", None, "p", policy).action, DbAction::Create);
        }
        // Another plan's marker, or a user's comment, is not ours.
        let other = marker("other");
        assert_eq!(
            decide("d", Some(&other), "p", ConflictPolicy::Fail).action,
            DbAction::Conflict
        );
        assert_eq!(
            decide("d", Some(""), "p", ConflictPolicy::Skip).action,
            DbAction::Skip
        );
        assert_eq!(
            decide("d", Some(""), "p", ConflictPolicy::Replace).action,
            DbAction::ReplaceTheirs
        );
    }
}
