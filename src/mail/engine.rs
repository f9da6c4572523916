//! A Maildir tree as a unit of work: plan (the same matching the pass applies: renames by
//! folder and unique part, then the files still missing), apply, verify folder by folder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::maildir::{self, FolderCheck};
use super::maildir_pass::{
    MailboxPlan, Pass, PassReport, plan_sync, planned_listings, run, verify,
};
use crate::sync::unit::TreeUnit;
use crate::unit::{UnitError, UnitOfWork};

/// The Maildir pass of one kind (sync or sweep) with its options.
pub struct MaildirEngine {
    pub pass: Pass,
    pub jobs: usize,
    /// The delivered record that keeps sweeps from bringing back what the user deleted.
    pub delivered: Option<PathBuf>,
    /// The rule's `convert:` (Courier's files into Dovecot's).
    pub convert: Option<crate::plan::raw::MailConvert>,
}

/// What a pass would do, mailbox by mailbox, with the trees it was made for.
#[derive(Serialize)]
pub struct MaildirPlan {
    pub mailboxes: Vec<MailboxPlan>,
    #[serde(skip)]
    pub unit: TreeUnit,
}

/// Every folder compared at both ends, by mailbox.
#[derive(Debug, Clone, Serialize)]
pub struct MaildirCheck {
    pub mailboxes: BTreeMap<String, Vec<FolderCheck>>,
}

impl MaildirCheck {
    pub fn is_clean(&self) -> bool {
        self.mailboxes.values().flatten().all(FolderCheck::clean)
    }
}

impl UnitOfWork for MaildirEngine {
    type Unit = TreeUnit;
    type Plan = MaildirPlan;
    type Report = PassReport;
    type Check = MaildirCheck;
    type Log = ();

    fn plan(&self, unit: &TreeUnit) -> Result<MaildirPlan, UnitError> {
        let exclude = maildir::excludes();
        let source = unit.src.transport.scan(&unit.src.root, &exclude)?;
        let target = unit.dst.transport.scan(&unit.dst.root, &exclude)?;
        let (source, target) =
            planned_listings(&unit.src, &unit.dst, source, target, self.convert)?;
        Ok(MaildirPlan {
            mailboxes: plan_sync(&source, &target),
            unit: unit.clone(),
        })
    }

    fn apply(
        &self,
        plan: &MaildirPlan,
        observer: &dyn crate::event::Observer,
        _log: &(),
    ) -> Result<PassReport, UnitError> {
        Ok(run(
            &plan.unit.src,
            &plan.unit.dst,
            self.pass,
            self.convert,
            self.jobs,
            self.delivered.as_deref(),
            &[],
            observer,
        )?)
    }

    fn verify(&self, unit: &TreeUnit) -> Result<MaildirCheck, UnitError> {
        Ok(MaildirCheck {
            mailboxes: verify(&unit.src, &unit.dst, self.convert, &[])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Endpoint;
    use crate::transport::LocalTransport;

    #[test]
    fn plan_apply_verify_a_maildir_through_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("old/example.test/alice/Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(src.join(sub)).unwrap();
        }
        for i in 0..3 {
            let body = format!("Subject: {i}\r\n\r\nhi\r\n");
            std::fs::write(
                src.join(format!("cur/170000000{i}.M1P1.old,S={}:2,S", body.len())),
                body,
            )
            .unwrap();
        }
        let t: std::sync::Arc<dyn crate::transport::Transport> =
            std::sync::Arc::new(LocalTransport::new("local"));
        let unit = TreeUnit {
            src: Endpoint {
                transport: t.clone(),
                root: dir.path().join("old"),
            },
            dst: Endpoint {
                transport: t,
                root: dir.path().join("new"),
            },
        };
        let engine = MaildirEngine {
            pass: Pass::Sync { delete: false },
            jobs: 2,
            delivered: None,
            convert: None,
        };
        let plan = engine.plan(&unit).unwrap();
        let to_copy: u64 = plan.mailboxes.iter().map(|m| m.to_copy).sum();
        assert_eq!(to_copy, 3, "{:?}", plan.mailboxes);
        engine.apply(&plan, &crate::event::Silent, &()).unwrap();
        assert!(engine.verify(&unit).unwrap().is_clean());
        let again = engine.plan(&unit).unwrap();
        assert_eq!(again.mailboxes.iter().map(|m| m.to_copy).sum::<u64>(), 0);
    }
}
