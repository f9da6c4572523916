//! A YAML document as a tree of nodes that remember where they stand in the file.
//!
//! Serde stops at the first error; checking this tree instead lets `validate` report every
//! mistake of a plan at once, each with its line and column.

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The parser's options for a plan of this size: its budget grows with the file.
///
/// serde-saphyr's default budget (250,000 nodes, 1,000,000 events) refuses a plan listing
/// about 13,900 sites, while a platform has 50,000. Without aliases a node or an event takes
/// at least one byte of the file, so limits proportionate to its length refuse nothing
/// written out by hand or by a script; what aliases replay keeps the parser's absolute caps,
/// which are what bounds an alias bomb. The anchor/alias ratio check is off: it refuses a
/// plan where many sites name one anchor (`host: *new`), and replays are capped anyway.
pub fn yaml_options(text: &str) -> serde_saphyr::Options {
    let len = text.len();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(len);
    // A collection is two events (start, end), a scalar or an alias one, a comment one.
    budget.max_events = budget.max_events.max(2 * len);
    budget.max_aliases = budget.max_aliases.max(len / 2);
    budget.max_anchors = budget.max_anchors.max(len / 2);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    budget.enforce_alias_anchor_ratio = false;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// A position in the plan file: 1-based line and column, byte range for snippets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
    #[serde(skip)]
    pub offset: usize,
    #[serde(skip)]
    pub len: usize,
}

impl Loc {
    pub fn is_known(&self) -> bool {
        self.line > 0
    }
}

impl From<&serde_saphyr::Location> for Loc {
    fn from(l: &serde_saphyr::Location) -> Self {
        let span = l.span();
        Loc {
            line: l.line() as u32,
            column: l.column() as u32,
            offset: span.byte_offset().unwrap_or(0) as usize,
            len: span.byte_len().unwrap_or(0) as usize,
        }
    }
}

/// A YAML value with its location.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

/// The value of a node.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The JSON Schema type name this value satisfies first.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }
}

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl From<&str> for Step {
    fn from(s: &str) -> Self {
        Step::Key(s.to_string())
    }
}

impl From<usize> for Step {
    fn from(i: usize) -> Self {
        Step::Index(i)
    }
}

/// A path into the plan, such as `sites[3].to.host`, for errors and lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePath(pub Vec<Step>);

impl NodePath {
    pub fn root() -> Self {
        NodePath(Vec::new())
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Step::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Step::Index(i));
        p
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in &self.0 {
            match step {
                Step::Key(k) if first => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

impl Node {
    /// Parses YAML text into a located tree.
    ///
    /// # Errors
    /// Malformed YAML, with serde-saphyr's location.
    pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
        if let Some(tree) = super::fast_yaml::parse(text) {
            return Ok(tree);
        }
        // serde-saphyr refuses duplicate keys by default, which a plan wants.
        serde_saphyr::from_str_with_options::<Node>(text, yaml_options(text))
    }

    /// The child under `key` of a mapping node, with the key node.
    pub fn get_entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.get_entry(key).map(|(_, v)| v)
    }

    /// The deepest node along `path`: the value itself when present, else the nearest parent.
    pub fn locate(&self, path: &NodePath) -> Loc {
        let mut node = self;
        for step in &path.0 {
            let next = match (step, &node.value) {
                (Step::Key(k), _) => node.get(k),
                (Step::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.loc
    }

    /// Location of the key `path`'s last step names (for "unknown key" style errors).
    pub fn locate_key(&self, path: &NodePath) -> Loc {
        let Some((Step::Key(last), parent)) = path.0.split_last() else {
            return self.locate(path);
        };
        let mut node = self;
        for step in parent {
            let next = match (step, &node.value) {
                (Step::Key(k), _) => node.get(k),
                (Step::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return node.loc,
            }
        }
        node.get_entry(last).map(|(k, _)| k.loc).unwrap_or(node.loc)
    }
}

impl Node {
    /// The tree as JSON, leaving out the nodes at `skip` paths (values that failed the schema),
    /// so the rest of a broken plan can still be checked for meaning.
    pub fn to_json_without(&self, skip: &std::collections::HashSet<String>) -> serde_json::Value {
        self.to_json_at(&NodePath::root(), skip)
    }

    fn to_json_at(
        &self,
        path: &NodePath,
        skip: &std::collections::HashSet<String>,
    ) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(n) => i64::try_from(*n).map(J::from).unwrap_or(J::Null),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(
                items
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !skip.contains(&path.index(*i).to_string()))
                    .map(|(i, n)| n.to_json_at(&path.index(i), skip))
                    .collect(),
            ),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .filter_map(|(k, v)| match &k.value {
                        Value::Str(key) if !skip.contains(&path.key(key).to_string()) => {
                            Some((key.clone(), v.to_json_at(&path.key(key), skip)))
                        }
                        _ => None,
                    })
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            loc: Loc::from(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

/// The located tree read as a serde type (the plan's `raw` structs), so a large plan is not
/// parsed a second time for them. Scalars are taken as the tree holds them: a checked plan
/// has the schema's types; an empty value (`key:`) reads as an empty list or mapping.
impl<'de> Deserializer<'de> for &'de Node {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(n) => match i64::try_from(*n) {
                Ok(n) => visitor.visit_i64(n),
                Err(_) => visitor.visit_i128(*n),
            },
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => {
                let mut seq = de::value::SeqDeserializer::new(items.iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Map(entries) => {
                let mut map = de::value::MapDeserializer::new(entries.iter().map(|(k, v)| (k, v)));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_seq(de::value::SeqDeserializer::<
                std::iter::Empty<&Node>,
                Self::Error,
            >::new(std::iter::empty())),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_map(de::value::MapDeserializer::<
                std::iter::Empty<(&Node, &Node)>,
                Self::Error,
            >::new(std::iter::empty())),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // The plan's enums are all unit variants, written as their name.
        match &self.value {
            Value::Str(s) => visitor.visit_enum(de::value::BorrowedStrDeserializer::new(s)),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other(self.value.kind()),
                &visitor,
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct identifier ignored_any
    }
}

impl<'de> de::IntoDeserializer<'de, de::value::Error> for &'de Node {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_line_and_column() {
        let text = "version: 1\nsites:\n  - name: shop\n    to: { host: b, path: /x }\n";
        let root = Node::parse(text).unwrap();
        let path = NodePath::root().key("sites").index(0).key("to").key("host");
        let loc = root.locate(&path);
        assert_eq!((loc.line, loc.column), (4, 17));
        assert_eq!(&text[loc.offset..loc.offset + loc.len], "b");
        let key = root.locate_key(&NodePath::root().key("sites").index(0).key("name"));
        assert_eq!((key.line, key.column), (3, 5));
        assert_eq!(path.to_string(), "sites[0].to.host");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = Node::parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }
}
