//! A database as a unit of work: plan (create, replace ours, replace theirs, skip, conflict,
//! decided by `db::plan::decide` as the transfer decides it), apply that plan, verify table by
//! table at both ends.

use serde::Serialize;

use super::plan::{DbAction, DbPlan, decide};
use super::transfer::{Endpoint, Moved, Options, comment, transfer_observed};
use super::verify::{Side, Verification, VerifyOptions, verify};
use crate::plan::raw::DbEngine;
use crate::unit::{UnitError, UnitOfWork};

/// One database between two servers.
pub struct DbUnit<'a> {
    pub engine: DbEngine,
    pub from: Endpoint<'a>,
    pub to: Endpoint<'a>,
    pub name: String,
}

/// A unit's plan, with the ends it was made for (apply needs both).
#[derive(Serialize)]
pub struct DbUnitPlan<'a> {
    #[serde(flatten)]
    pub plan: DbPlan,
    #[serde(skip)]
    pub engine: DbEngine,
    #[serde(skip)]
    pub from: Endpoint<'a>,
    #[serde(skip)]
    pub to: Endpoint<'a>,
}

/// Every table and catalog fact compared (`is_clean`: all equal).
pub type DbCheck = Verification;

/// The database engine with a run's options.
pub struct DbEngineRun<'a> {
    pub options: Options<'a>,
    /// Rows per verification chunk.
    pub chunk_rows: u64,
}

impl<'a> UnitOfWork for DbEngineRun<'a> {
    type Unit = DbUnit<'a>;
    type Plan = DbUnitPlan<'a>;
    type Report = Moved;
    type Check = DbCheck;
    type Log = ();

    fn plan(&self, unit: &DbUnit<'a>) -> Result<DbUnitPlan<'a>, UnitError> {
        let existing = comment(unit.engine, &unit.to, &unit.name).map_err(|e| {
            UnitError::new(super::failure_kind(&e), e).on_host(unit.to.transport.host())
        })?;
        Ok(DbUnitPlan {
            plan: decide(
                &unit.name,
                existing.as_deref(),
                self.options.plan,
                self.options.conflict,
            ),
            engine: unit.engine,
            from: unit.from,
            to: unit.to,
        })
    }

    fn apply(
        &self,
        plan: &DbUnitPlan<'a>,
        observer: &dyn crate::event::Observer,
        _log: &(),
    ) -> Result<Moved, UnitError> {
        if plan.plan.action == DbAction::Conflict {
            return Err(UnitError::conflict(format!(
                "database `{}` at the target is not ours: refused by the plan's conflict policy",
                plan.plan.name
            )));
        }
        // The transfer decides again from the target as it is then: the plan may be old.
        transfer_observed(
            plan.engine,
            &plan.from,
            &plan.to,
            &plan.plan.name,
            &self.options,
            observer,
        )
        .map_err(|e| UnitError::new(super::failure_kind(&e), e).on_host(plan.to.transport.host()))
    }

    fn verify(&self, unit: &DbUnit<'a>) -> Result<DbCheck, UnitError> {
        let side = |e: &Endpoint<'a>| Side {
            transport: e.transport,
            server: e.server,
            database: &unit.name,
        };
        verify(
            unit.engine,
            &side(&unit.from),
            &side(&unit.to),
            &VerifyOptions {
                chunk_rows: self.chunk_rows,
                schemas: Vec::new(),
                rows: true,
            },
        )
        .map_err(UnitError::io)
    }
}
