//! Orchestration over the engines: connections, inventory expansion, the dry run, and the
//! migration lifecycle (state machine, cutover, probes, rollback, resume).
pub mod certificate;
pub mod connections;
pub mod databases;
pub mod direct;
pub mod dry_run;
pub mod folded;
pub mod forward;
pub mod guard;
pub mod ids;
pub mod inventory;
pub mod issuance;
pub mod ledger;
pub mod mail;

pub use connections::{Connections, default_agent_binary};
pub use dry_run::dry_run;
pub use inventory::{Inventory, expand_sites};
pub mod migrate;
pub mod panel_rows;
pub mod probe;
pub mod quotas;
pub mod repo_check;
pub mod saved_plan;
pub mod secrets;
pub mod state;
pub mod status;
pub mod tls_discover;
pub mod tls_files;
pub mod unmigrated;
pub mod window;
