//! Checks a located YAML tree against the plan's JSON Schema and collects every mismatch.
//!
//! The schema is generated from the serde types in `raw`, so this checker and the
//! deserializer cannot drift apart; it only understands the subset schemars emits.

use serde_json::Value as Json;

use super::diagnostic::{Issue, closest};
use super::node::{Node, NodePath, Value};

/// Every structural mismatch between `root` and `schema`.
pub fn check(root: &Node, schema: &Json) -> Vec<Issue> {
    let mut issues = Vec::new();
    let checker = Checker { schema };
    checker.check(root, schema, &NodePath::root(), &mut issues);
    issues
}

struct Checker<'s> {
    schema: &'s Json,
}

impl<'s> Checker<'s> {
    fn resolve(&self, mut s: &'s Json) -> &'s Json {
        while let Some(r) = s.get("$ref").and_then(Json::as_str) {
            let pointer = r.trim_start_matches('#');
            match self.schema.pointer(pointer) {
                Some(target) => s = target,
                None => break,
            }
        }
        s
    }

    fn check(&self, node: &Node, schema: &'s Json, path: &NodePath, out: &mut Vec<Issue>) {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
            for s in all {
                self.check(node, s, path, out);
            }
        }
        for combinator in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(combinator).and_then(Json::as_array) {
                self.check_alternatives(node, branches, path, out);
            }
        }
        if let Some(constant) = schema.get("const") {
            if !json_eq(node, constant) {
                out.push(Issue::error(
                    node.loc,
                    path,
                    format!("expected `{}`, found {}", plain(constant), describe(node)),
                ));
            }
            return;
        }
        if let Some(types) = schema.get("type")
            && !type_matches(node, types)
        {
            out.push(Issue::error(
                node.loc,
                path,
                format!(
                    "expected {}, found {}",
                    expected_types(types),
                    describe(node)
                ),
            ));
            return;
        }
        match &node.value {
            Value::Map(entries) => self.check_map(node, entries, schema, path, out),
            Value::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &path.index(i), out);
                    }
                }
            }
            Value::Int(n) => {
                if let Some(min) = schema.get("minimum").and_then(Json::as_i64)
                    && *n < i128::from(min)
                {
                    out.push(Issue::error(
                        node.loc,
                        path,
                        format!("expected a number of at least {min}, found {n}"),
                    ));
                }
                if let Some(max) = schema.get("maximum").and_then(Json::as_i64)
                    && *n > i128::from(max)
                {
                    out.push(Issue::error(
                        node.loc,
                        path,
                        format!("expected a number of at most {max}, found {n}"),
                    ));
                }
            }
            _ => {}
        }
    }

    fn check_alternatives(
        &self,
        node: &Node,
        branches: &'s [Json],
        path: &NodePath,
        out: &mut Vec<Issue>,
    ) {
        // `null` branches are how schemars spells Option: try the real one for better errors.
        let branches: Vec<&Json> = branches
            .iter()
            .map(|b| self.resolve(b))
            .filter(|b| {
                b.get("type") != Some(&Json::from("null")) || matches!(node.value, Value::Null)
            })
            .collect();
        let constants: Vec<String> = branches
            .iter()
            .filter_map(|b| b.get("const"))
            .map(plain)
            .collect();
        if !constants.is_empty() && constants.len() == branches.len() {
            if !branches
                .iter()
                .any(|b| b.get("const").is_some_and(|c| json_eq(node, c)))
            {
                let found = scalar_text(node);
                let mut issue = Issue::error(
                    node.loc,
                    path,
                    format!(
                        "expected one of {}, found {}",
                        constants
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        describe(node)
                    ),
                );
                if let Some(best) = found
                    .as_deref()
                    .and_then(|f| closest(f, constants.iter().map(String::as_str)))
                {
                    issue = issue.with_help(format!("did you mean `{best}`?"));
                }
                out.push(issue);
            }
            return;
        }
        let mut best: Option<Vec<Issue>> = None;
        for branch in branches {
            let mut attempt = Vec::new();
            self.check(node, branch, path, &mut attempt);
            if attempt.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| attempt.len() < b.len()) {
                best = Some(attempt);
            }
        }
        out.extend(best.unwrap_or_default());
    }

    fn check_map(
        &self,
        node: &Node,
        entries: &[(Node, Node)],
        schema: &'s Json,
        path: &NodePath,
        out: &mut Vec<Issue>,
    ) {
        let properties = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                out.push(Issue::error(
                    key.loc,
                    path,
                    format!("expected a text key, found {}", describe(key)),
                ));
                continue;
            };
            let child_path = path.key(name);
            if let Some(prop) = properties.and_then(|p| p.get(name)) {
                self.check(value, prop, &child_path, out);
                continue;
            }
            match additional {
                Some(Json::Bool(false)) => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let mut issue = Issue::error(
                        key.loc,
                        &child_path,
                        format!("unknown key `{name}`{}", where_(path)),
                    );
                    issue = match closest(name, known.iter().copied()) {
                        Some(best) => issue.with_help(format!("did you mean `{best}`?")),
                        None => issue.with_help(format!(
                            "expected one of {}",
                            known
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    out.push(issue);
                }
                Some(s @ Json::Object(_)) => self.check(value, s, &child_path, out),
                _ => {}
            }
        }
        if let Some(required) = schema.get("required").and_then(Json::as_array) {
            for name in required.iter().filter_map(Json::as_str) {
                if node.get(name).is_none() {
                    out.push(Issue::error(
                        node.loc,
                        path.key(name),
                        format!("missing key `{name}`{}", where_(path)),
                    ));
                }
            }
        }
    }
}

fn where_(path: &NodePath) -> String {
    if path.0.is_empty() {
        " at the top level".into()
    } else {
        format!(" in `{path}`")
    }
}

fn type_matches(node: &Node, types: &Json) -> bool {
    let one = |t: &str| match (t, &node.value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("integer", Value::Int(_))
        | ("number", Value::Int(_) | Value::Float(_))
        | ("string", Value::Str(_))
        | ("array", Value::Seq(_))
        | ("object", Value::Map(_)) => true,
        // An empty `key:` is null; serde fills an empty list or mapping for it.
        ("array" | "object", Value::Null) => true,
        _ => false,
    };
    match types {
        Json::String(t) => one(t),
        Json::Array(ts) => ts.iter().filter_map(Json::as_str).any(one),
        _ => true,
    }
}

fn expected_types(types: &Json) -> String {
    let name = |t: &str| match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a text value",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "`true` or `false`",
        "null" => "nothing",
        _ => "a value",
    };
    match types {
        Json::String(t) => name(t).to_string(),
        Json::Array(ts) => ts
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".into(),
    }
}

fn describe(node: &Node) -> String {
    match &node.value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Int(n) => format!("the number `{n}`"),
        Value::Float(n) => format!("the number `{n}`"),
        Value::Str(s) => format!("`{s}`"),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn plain(j: &Json) -> String {
    match j {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_eq(node: &Node, j: &Json) -> bool {
    match (&node.value, j) {
        (Value::Str(s), Json::String(t)) => s == t,
        (Value::Bool(b), Json::Bool(c)) => b == c,
        (Value::Int(n), Json::Number(m)) => m.as_i64().is_some_and(|m| i128::from(m) == *n),
        (Value::Null, Json::Null) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<Issue> {
        let node = Node::parse(text).unwrap();
        check(&node, &crate::plan::json_schema())
    }

    #[test]
    fn a_valid_minimal_plan_has_no_issue() {
        assert!(issues("version: 1\nname: x\n").is_empty());
    }

    #[test]
    fn every_mistake_is_reported_with_its_place() {
        let found = issues(
            "version: 1\nname: x\ndefaults: { jobs: many, verify: blake2 }\nsites:\n  - from: { host: a, path: /x }\n    to: { host: b, path: /y }\n    exlude: [a]\n",
        );
        let lines: Vec<_> = found
            .iter()
            .map(|i| (i.loc.line, i.loc.column, i.message.as_str(), i.help.clone()))
            .collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.0 == 3 && l.2.contains("expected a whole number")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.0 == 3
                && l.2.contains("`blake3`")
                && l.3.as_deref() == Some("did you mean `blake3`?")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.0 == 7
                && l.1 == 5
                && l.2.contains("unknown key `exlude`")
                && l.3.as_deref() == Some("did you mean `exclude`?")),
            "{lines:#?}"
        );
    }

    #[test]
    fn missing_required_keys_are_named() {
        let found = issues("version: 1\nsites:\n  - from: { host: a, path: /x }\n");
        let messages: Vec<_> = found.iter().map(|i| i.message.as_str()).collect();
        assert!(
            messages.contains(&"missing key `name` at the top level"),
            "{messages:?}"
        );
        assert!(
            messages.contains(&"missing key `to` in `sites[0]`"),
            "{messages:?}"
        );
    }
}
