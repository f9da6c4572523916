//! The migration plan: YAML model, structural and semantic validation, templates, secrets.
//!
//! Pure data: nothing here touches the network. Expanding globs on real hosts needs
//! transports and lives in `discover`.
pub mod banner;
pub mod diagnostic;
mod fast_yaml;
pub mod model;
pub mod node;
pub mod overlap;
pub mod raw;
pub mod schema_check;
pub mod secret;
pub mod template;
pub mod units;
pub mod validate;

pub use diagnostic::{Issue, Severity};
pub use model::*;
pub use node::NodePath;
pub use validate::{Loaded, PlanError, SourceFile, load, parse};

/// The plan's JSON Schema (draft-07), for editors through yaml-language-server.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    generator.into_root_schema_for::<raw::RawPlan>().to_value()
}
