//! Checks a located YAML tree against the plan's JSON Schema and collects every mismatch.
//!
//! The schema is generated from the serde types in `raw`, so this checker and the
//! deserializer cannot drift apart; it only understands the subset schemars emits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value as Json;

use super::diagnostic::{Issue, closest};
use super::node::{Node, NodePath, Value};

/// Every structural mismatch between `root` and `schema`.
pub fn check(root: &Node, schema: &Json) -> Vec<Issue> {
    let mut issues = Vec::new();
    let checker = Checker {
        schema,
        facts: RefCell::new(HashMap::new()),
    };
    checker.check(root, schema, At::Root, &mut issues);
    issues
}

/// Where a node is, as links to its parent: the `NodePath` is written out only for an issue
/// (a plan of 50,000 sites has a million nodes, and almost never an issue on them).
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn path(&self) -> NodePath {
        let mut steps = Vec::new();
        let mut at = self;
        loop {
            match at {
                At::Root => break,
                At::Key(parent, k) => {
                    steps.push(super::node::Step::Key(k.to_string()));
                    at = parent;
                }
                At::Index(parent, i) => {
                    steps.push(super::node::Step::Index(*i));
                    at = parent;
                }
            }
        }
        steps.reverse();
        NodePath(steps)
    }
}

/// What one schema object says, read once (`$ref` followed) rather than looked up by name at
/// every node it checks.
struct Facts<'s> {
    all_of: &'s [Json],
    /// The `anyOf` then `oneOf` branches, each followed through `$ref`, with whether it is the
    /// `null` branch (how schemars spells `Option`).
    alternatives: Vec<Vec<(&'s Json, bool)>>,
    constant: Option<&'s Json>,
    types: Option<&'s Json>,
    items: Option<&'s Json>,
    minimum: Option<i64>,
    maximum: Option<i64>,
    properties: Option<&'s serde_json::Map<String, Json>>,
    additional: Option<&'s Json>,
    required: Vec<&'s str>,
}

struct Checker<'s> {
    schema: &'s Json,
    facts: RefCell<HashMap<*const Json, Rc<Facts<'s>>>>,
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

    fn facts(&self, schema: &'s Json) -> Rc<Facts<'s>> {
        if let Some(f) = self.facts.borrow().get(&(schema as *const Json)) {
            return Rc::clone(f);
        }
        let s = self.resolve(schema);
        let alternatives = ["anyOf", "oneOf"]
            .iter()
            .filter_map(|c| s.get(*c).and_then(Json::as_array))
            .map(|branches| {
                branches
                    .iter()
                    .map(|b| {
                        let b = self.resolve(b);
                        (b, b.get("type") == Some(&Json::from("null")))
                    })
                    .collect()
            })
            .collect();
        let facts = Rc::new(Facts {
            all_of: s
                .get("allOf")
                .and_then(Json::as_array)
                .map_or(&[], Vec::as_slice),
            alternatives,
            constant: s.get("const"),
            types: s.get("type"),
            items: s.get("items"),
            minimum: s.get("minimum").and_then(Json::as_i64),
            maximum: s.get("maximum").and_then(Json::as_i64),
            properties: s.get("properties").and_then(Json::as_object),
            additional: s.get("additionalProperties"),
            required: s
                .get("required")
                .and_then(Json::as_array)
                .map(|r| r.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default(),
        });
        self.facts
            .borrow_mut()
            .insert(schema as *const Json, Rc::clone(&facts));
        facts
    }

    fn check(&self, node: &Node, schema: &'s Json, at: At<'_>, out: &mut Vec<Issue>) {
        let facts = self.facts(schema);
        for s in facts.all_of {
            self.check(node, s, at, out);
        }
        for branches in &facts.alternatives {
            self.check_alternatives(node, branches, at, out);
        }
        if let Some(constant) = facts.constant {
            if !json_eq(node, constant) {
                out.push(Issue::error(
                    node.loc,
                    at.path(),
                    format!("expected `{}`, found {}", plain(constant), describe(node)),
                ));
            }
            return;
        }
        if let Some(types) = facts.types
            && !type_matches(node, types)
        {
            let mut issue = Issue::error(
                node.loc,
                at.path(),
                format!(
                    "expected {}, found {}",
                    expected_types(types),
                    match &node.value {
                        // Text where another type is wanted: say it is text.
                        Value::Str(s) => format!("the text `{s}`"),
                        _ => describe(node),
                    }
                ),
            );
            if let Some(help) = quoted_scalar_help(node, types) {
                issue = issue.with_help(help);
            }
            out.push(issue);
            return;
        }
        match &node.value {
            Value::Map(entries) => self.check_map(node, entries, &facts, at, out),
            Value::Seq(items) => {
                if let Some(item_schema) = facts.items {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, At::Index(&at, i), out);
                    }
                }
            }
            Value::Int(n) => {
                if let Some(min) = facts.minimum
                    && *n < i128::from(min)
                {
                    out.push(Issue::error(
                        node.loc,
                        at.path(),
                        format!("expected a number of at least {min}, found {n}"),
                    ));
                }
                if let Some(max) = facts.maximum
                    && *n > i128::from(max)
                {
                    out.push(Issue::error(
                        node.loc,
                        at.path(),
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
        branches: &[(&'s Json, bool)],
        at: At<'_>,
        out: &mut Vec<Issue>,
    ) {
        // `null` branches are how schemars spells Option: try the real one for better errors.
        let is_null = matches!(node.value, Value::Null);
        let branches = || {
            branches
                .iter()
                .filter(move |(_, null)| !null || is_null)
                .map(|(b, _)| *b)
        };
        let count = branches().count();
        let constants = branches().filter(|b| b.get("const").is_some()).count();
        if constants > 0 && constants == count {
            if !branches().any(|b| b.get("const").is_some_and(|c| json_eq(node, c))) {
                let constants: Vec<String> = branches()
                    .filter_map(|b| b.get("const"))
                    .map(plain)
                    .collect();
                let found = scalar_text(node);
                let mut issue = Issue::error(
                    node.loc,
                    at.path(),
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
        for branch in branches() {
            let mut attempt = Vec::new();
            self.check(node, branch, at, &mut attempt);
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
        facts: &Facts<'s>,
        at: At<'_>,
        out: &mut Vec<Issue>,
    ) {
        let properties = facts.properties;
        let additional = facts.additional;
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                out.push(Issue::error(
                    key.loc,
                    at.path(),
                    format!("expected a text key, found {}", describe(key)),
                ));
                continue;
            };
            let child = At::Key(&at, name);
            if let Some(prop) = properties.and_then(|p| p.get(name)) {
                self.check(value, prop, child, out);
                continue;
            }
            match additional {
                Some(Json::Bool(false)) => {
                    let path = at.path();
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let mut issue = Issue::error(
                        key.loc,
                        child.path(),
                        format!("unknown key `{name}`{}", where_(&path)),
                    );
                    let list = known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    // A short list (the forwarder's mail protocols) is worth reading whole.
                    issue = match closest(name, known.iter().copied()) {
                        Some(best) if known.len() <= 8 => issue
                            .with_help(format!("did you mean `{best}`? (expected one of {list})")),
                        Some(best) => issue.with_help(format!("did you mean `{best}`?")),
                        None => issue.with_help(format!("expected one of {list}")),
                    };
                    out.push(issue);
                }
                Some(s @ Json::Object(_)) => self.check(value, s, child, out),
                _ => {}
            }
        }
        for name in &facts.required {
            if node.get(name).is_none() {
                let path = at.path();
                out.push(Issue::error(
                    node.loc,
                    path.key(name),
                    format!("missing key `{name}`{}", where_(&path)),
                ));
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

/// A number or `true`/`false` written in quotes is text in YAML: say how to write it.
fn quoted_scalar_help(node: &Node, types: &Json) -> Option<String> {
    let Value::Str(s) = &node.value else {
        return None;
    };
    let wants = |t: &str| match types {
        Json::String(x) => x == t,
        Json::Array(ts) => ts.iter().any(|x| x.as_str() == Some(t)),
        _ => false,
    };
    let t = s.trim();
    let fits = (wants("integer") && t.parse::<i64>().is_ok())
        || (wants("number") && t.parse::<f64>().is_ok())
        || (wants("boolean") && matches!(t, "true" | "false"));
    fits.then(|| format!("write {t} without quotes: in quotes, YAML reads it as text"))
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
    fn a_quoted_number_is_explained() {
        let found = issues("version: 1\nname: x\ncutover: { batch: \"2\" }\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].message,
            "expected a whole number, found the text `2`"
        );
        assert_eq!(
            found[0].help.as_deref(),
            Some("write 2 without quotes: in quotes, YAML reads it as text")
        );
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
