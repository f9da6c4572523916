//! The module layering of `shared/design.md`, kept by a test: a module uses only modules of its
//! own layer or below, two modules of one layer never use each other, and engines never reach
//! the journal (they get a change log handed in).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each top module (1 is the top).
const LAYERS: &[(&str, u8)] = &[
    ("cli", 1),
    ("lifecycle", 2),
    ("demo", 2),
    ("mail", 3),
    ("sync", 4),
    ("db", 4),
    ("dns", 4),
    ("panel", 4),
    // Over `event`: what a display makes of the events (rate, time left).
    ("progress", 4),
    ("transport", 5),
    ("plan", 5),
    ("report", 5),
    ("journal", 5),
    ("event", 5),
    ("unit", 5),
    ("check", 5),
    ("tree", 6),
    // A DER reader, leaf of everything that reads a certificate.
    ("der", 6),
];

/// Which top modules each module names through `crate::`.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            !text.contains("use crate::{"),
            "{}: name modules one `use` at a time so this test sees them",
            rel.display()
        );
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !target.is_empty() && target != module {
                out.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    out
}

#[test]
fn arrows_point_down_the_layers_of_the_design() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let uses = uses();
    let mut wrong = Vec::new();
    for (from, targets) in &uses {
        let Some(&lf) = layer.get(from.as_str()) else {
            wrong.push(format!(
                "module `{from}` has no layer in this test: place it"
            ));
            continue;
        };
        for to in targets {
            let Some(&lt) = layer.get(to.as_str()) else {
                wrong.push(format!("module `{to}` has no layer in this test: place it"));
                continue;
            };
            if lt < lf {
                wrong.push(format!(
                    "`{from}` (layer {lf}) uses `{to}` (layer {lt}), above it"
                ));
            }
            if lt == lf && uses.get(to).is_some_and(|t| t.contains(from)) {
                wrong.push(format!("`{from}` and `{to}` use each other"));
            }
        }
    }
    for engine in ["sync", "db", "dns", "mail"] {
        if uses.get(engine).is_some_and(|t| t.contains("journal")) {
            wrong.push(format!(
                "engine `{engine}` uses the journal: hand it a change log instead"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
