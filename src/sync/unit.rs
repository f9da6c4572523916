//! A site's tree as a unit of work: plan (the dry run's value), apply that very plan, verify by
//! hashing both ends. The same functions `sync` and `transhumance plan` use.

use super::engine::{Endpoint, SyncError, SyncOptions, SyncReport, apply};
use super::plan::{SyncPlan, plan};
use super::verify::{VerifyReport, verify};
use crate::unit::{UnitError, UnitOfWork};

/// A tree at the source and where it goes.
#[derive(Clone)]
pub struct TreeUnit {
    pub src: Endpoint,
    pub dst: Endpoint,
}

/// The file engine with the options of one kind of run (the lifecycle mirrors).
pub struct FileEngine {
    pub options: SyncOptions,
}

impl From<SyncError> for UnitError {
    fn from(e: SyncError) -> UnitError {
        match e {
            SyncError::Transport(t) => UnitError::from(t),
            SyncError::SourceMissing(_) => UnitError::invalid(e.to_string()),
            SyncError::Unsafe(_) => UnitError::unsafe_(e.to_string()),
        }
    }
}

/// The plan and the trees it was made for (apply needs both ends).
#[derive(serde::Serialize)]
pub struct TreePlan {
    #[serde(flatten)]
    pub plan: SyncPlan,
    #[serde(skip)]
    pub unit: TreeUnit,
}

impl UnitOfWork for FileEngine {
    type Unit = TreeUnit;
    type Plan = TreePlan;
    type Report = SyncReport;
    type Check = VerifyReport;
    type Log = ();

    fn plan(&self, unit: &TreeUnit) -> Result<TreePlan, UnitError> {
        let (plan, _) = plan(&unit.src, &unit.dst, &self.options)?;
        Ok(TreePlan {
            plan,
            unit: unit.clone(),
        })
    }

    fn apply(
        &self,
        plan: &TreePlan,
        observer: &dyn crate::event::Observer,
        _log: &(),
    ) -> Result<SyncReport, UnitError> {
        Ok(apply(
            &plan.plan,
            &plan.unit.src,
            &plan.unit.dst,
            &self.options,
            observer,
        )?)
    }

    fn verify(&self, unit: &TreeUnit) -> Result<VerifyReport, UnitError> {
        Ok(verify(
            &unit.src,
            &unit.dst,
            &self.options,
            &crate::event::Silent,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LocalTransport;

    /// Through the contract: the plan announces the copy, applying it makes the target verify
    /// clean, and a second plan has nothing left to do.
    #[test]
    fn plan_apply_verify_through_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/index.html"), b"<title>a</title>").unwrap();
        std::fs::write(src.join("logo.bin"), vec![7u8; 5000]).unwrap();
        let t: std::sync::Arc<dyn crate::transport::Transport> =
            std::sync::Arc::new(LocalTransport::new("local"));
        let unit = TreeUnit {
            src: Endpoint {
                transport: t.clone(),
                root: src,
            },
            dst: Endpoint {
                transport: t,
                root: dir.path().join("dst"),
            },
        };
        let engine = FileEngine {
            options: SyncOptions {
                delete: true,
                ..SyncOptions::default()
            },
        };
        let plan = engine.plan(&unit).unwrap();
        assert_eq!(plan.plan.totals().files_to_send, 2);
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains("logo.bin"), "{json}");
        engine.apply(&plan, &crate::event::Silent, &()).unwrap();
        assert!(engine.verify(&unit).unwrap().is_clean());
        assert_eq!(engine.plan(&unit).unwrap().plan.totals().files_to_send, 0);
    }
}
