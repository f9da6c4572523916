//! `transhumance schema`: the plan's JSON Schema for editors.

use super::exit;

pub fn run() -> u8 {
    outln!(
        "{}",
        serde_json::to_string_pretty(&crate::plan::json_schema()).expect("schema serializes")
    );
    exit::OK
}
