//! The located tree built straight from the YAML parser's events, for the plain YAML plans
//! are written in: serde-saphyr's generic path (a located value per node) costs twice the
//! parse itself, a second on a plan of 50,000 sites.
//!
//! Only a subset is taken here: one document whose root is a mapping, text keys, lists,
//! scalars without tags or anchors, no aliases or merge keys. Scalars resolve as serde-saphyr
//! resolves them with our options (YAML 1.1 booleans, its integers and floats), and places are
//! the ones it gives. Anything else, and any error, returns `None`: the caller parses with
//! serde-saphyr, which decides and words it. A test holds both readings equal.

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, Span};

use super::node::{Loc, Node, Value};

/// serde-saphyr's default `max_depth`: deeper is its error to report.
const MAX_DEPTH: usize = 64;
/// Its default comment budget; a larger file goes the slow way rather than judge it here.
const MAX_TEXT: usize = 64 << 20;

/// An open collection: where it starts, and where its children start on the shared stacks
/// (children wait there and move into a vector of their exact size when it closes, rather
/// than grow one vector per collection).
enum Frame {
    Seq(Loc, usize),
    Map(Loc, usize, Option<Node>),
}

/// The tree of `text`, or `None` when it is outside the subset or not valid YAML.
pub fn parse(text: &str) -> Option<Node> {
    if text.len() > MAX_TEXT {
        return None;
    }
    // The parser options serde-saphyr derives from its default budget and options.
    let mut options = Options::default();
    options.simple_key_max_lookahead = 1024;
    options.flow_nesting_limit = 255;
    options.max_buffered_comment_events = 32;
    let mut stack: Vec<Frame> = Vec::new();
    let mut items: Vec<Node> = Vec::new();
    let mut entries: Vec<(Node, Node)> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    for item in Parser::new_from_str_with_options(text, options) {
        let (event, span) = item.ok()?;
        let done = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Comment(..) => {
                continue;
            }
            Event::DocumentStart(_, version) => {
                documents += 1;
                if documents > 1 || version.is_some() {
                    return None;
                }
                continue;
            }
            Event::Alias(_) | Event::Anchor(..) | Event::UnresolvedAlias(_) => return None,
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                let resolved = if style == ScalarStyle::Plain {
                    resolve_plain(&value)?
                } else {
                    Value::Str(value.into_owned())
                };
                Node {
                    value: resolved,
                    loc: loc(&span),
                }
            }
            Event::SequenceStart(_, anchor, tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Frame::Seq(loc(&span), items.len()));
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Frame::Map(loc(&span), entries.len(), None));
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq(loc, start) => Node {
                    value: Value::Seq(items.drain(start..).collect()),
                    loc,
                },
                Frame::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map(loc, start, None) if !has_duplicate_key(&entries[start..]) => Node {
                    value: Value::Map(entries.drain(start..).collect()),
                    loc,
                },
                _ => return None,
            },
            // Anything a later parser version adds: serde-saphyr's to read.
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return None;
                }
                root = Some(done);
            }
            Some(Frame::Seq(..)) => items.push(done),
            Some(Frame::Map(_, _, key)) => match key.take() {
                Some(k) => entries.push((k, done)),
                // Keys are text; `<<` would be a merge key, which serde-saphyr expands.
                None => match &done.value {
                    Value::Str(s) if s != "<<" => *key = Some(done),
                    _ => return None,
                },
            },
        }
    }
    root.filter(|r| matches!(r.value, Value::Map(_)) && stack.is_empty())
}

/// serde-saphyr's place for an event: 1-based line and column, byte range when known.
fn loc(span: &Span) -> Loc {
    let (start, end) = (span.start.byte_offset(), span.end.byte_offset());
    let (offset, len) = match (start, end) {
        (Some(s), Some(e))
            if s <= u32::MAX as usize && e.saturating_sub(s) <= u32::MAX as usize =>
        {
            (s, e.saturating_sub(s))
        }
        _ => (0, 0),
    };
    Loc {
        line: span.start.line() as u32,
        column: (span.start.col() + 1) as u32,
        offset,
        len,
    }
}

fn has_duplicate_key(entries: &[(Node, Node)]) -> bool {
    fn key(e: &(Node, Node)) -> &str {
        match &e.0.value {
            Value::Str(s) => s.as_str(),
            _ => "",
        }
    }
    if entries.len() <= 16 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, a)| entries[..i].iter().any(|b| key(a) == key(b)));
    }
    let mut keys: Vec<&str> = entries.iter().map(key).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// A plain scalar as serde-saphyr's `deserialize_any` reads it with our options: null, YAML
/// 1.1 booleans, integers (64-bit, `0x`/`0o`/`0b`, `_` between digits, no leading zero),
/// finite floats, else text. `None` for what only it may judge (a non-finite float).
fn resolve_plain(s: &str) -> Option<Value> {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Some(Value::Null);
    }
    let t = s.trim_matches([' ', '\t', '\r', '\n']);
    for (word, b) in [
        ("true", true),
        ("yes", true),
        ("y", true),
        ("on", true),
        ("false", false),
        ("no", false),
        ("n", false),
        ("off", false),
    ] {
        if t.eq_ignore_ascii_case(word) {
            return Some(Value::Bool(b));
        }
    }
    // Neither an integer nor a float can start otherwise: most text ends here.
    if !t
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Some(Value::Str(s.to_string()));
    }
    if let Some(n) = parse_int(t) {
        return Some(Value::Int(n));
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if matches!(
        unsigned,
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF"
    ) {
        return None;
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => Some(Value::Float(f)),
        // `1e999`: a float that overflows, which serde-saphyr refuses or maps by its policy.
        Ok(_) if unsigned.bytes().next().is_some_and(|b| b.is_ascii_digit()) => None,
        _ => Some(Value::Str(s.to_string())),
    }
}

/// serde-saphyr's integer reading: a sign, then `0x`/`0o`/`0b` digits or decimal digits
/// without a leading zero, `_` allowed between digits; signed values in `i64`, others `u64`.
fn parse_int(t: &str) -> Option<i128> {
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) = if let Some(d) = rest.strip_prefix("0x").or(rest.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = rest.strip_prefix("0o").or(rest.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = rest.strip_prefix("0b").or(rest.strip_prefix("0B")) {
        (2, d)
    } else {
        if rest.starts_with('0') && rest != "0" {
            return None;
        }
        (10, rest)
    };
    let bytes = digits.as_bytes();
    let mut value: u128 = 0;
    let mut saw = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            if i == 0 || bytes[i - 1] == b'_' || i + 1 == bytes.len() || bytes[i + 1] == b'_' {
                return None;
            }
            continue;
        }
        let d = (b as char).to_digit(16)?;
        if d >= radix {
            return None;
        }
        value = value
            .checked_mul(u128::from(radix))?
            .checked_add(u128::from(d))?;
        saw = true;
    }
    if !saw {
        return None;
    }
    if negative {
        (value <= 1 << 63).then(|| -(value as i128))
    } else {
        u64::try_from(value).ok().map(i128::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readings of `text`, compared node by node: values, places and byte ranges; whether
    /// the fast one read it.
    fn same_as_serde_saphyr(text: &str) -> bool {
        let slow = serde_saphyr::from_str_with_options::<Node>(
            text,
            super::super::node::yaml_options(text),
        );
        let fast = parse(text);
        match (&slow, &fast) {
            (Ok(s), Some(f)) => {
                assert!(equal(s, f), "{text:?}\nserde-saphyr: {s:#?}\nfast: {f:#?}")
            }
            (Ok(_), None) => {} // outside the subset: the slow path reads it
            (Err(e), Some(f)) => panic!("{text:?}: serde-saphyr refuses ({e}), fast read {f:#?}"),
            (Err(_), None) => {}
        }
        fast.is_some()
    }

    fn equal(a: &Node, b: &Node) -> bool {
        a.loc == b.loc
            && match (&a.value, &b.value) {
                (Value::Null, Value::Null) => true,
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x), Value::Int(y)) => x == y,
                (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
                (Value::Str(x), Value::Str(y)) => x == y,
                (Value::Seq(x), Value::Seq(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
                }
                (Value::Map(x), Value::Map(y)) => {
                    x.len() == y.len()
                        && x.iter()
                            .zip(y)
                            .all(|((ka, va), (kb, vb))| equal(ka, kb) && equal(va, vb))
                }
                _ => false,
            }
    }

    #[test]
    fn scalars_resolve_as_serde_saphyr_resolves_them() {
        let scalars = [
            "1",
            "0",
            "-0",
            "+0",
            "00",
            "0755",
            "-0755",
            "+12",
            "-12",
            "1_000",
            "1__0",
            "_1",
            "1_",
            "0x1F",
            "0X1f",
            "-0x10",
            "0o17",
            "0b101",
            "0b102",
            "0x",
            "0xg",
            "1.5",
            "1.",
            ".5",
            "-.5",
            "+.5",
            "1e3",
            "1E-3",
            "1e999",
            "-1e999",
            ".inf",
            "-.Inf",
            ".nan",
            "inf",
            "+inf",
            "nan",
            "-nan",
            "infinity",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999999999999",
            "y",
            "Y",
            "yes",
            "No",
            "ON",
            "off",
            "true",
            "False",
            "n",
            "~",
            "null",
            "Null",
            "NULL",
            "nULL",
            "-",
            "+",
            ".",
            "192.0.2.10",
            "10s",
            "200MiB/s",
            "2026-11-28",
            "2026-11-28T22:00:00Z",
            "1:30",
            "/srv/www/{name}/",
            "a b",
            "'quoted'",
            "\"1\"",
            "'yes'",
            "\"\"",
            "''",
            "- x",
            "1 # comment",
            "0.1.2",
            "1e",
            "e5",
            "+-1",
            "--1",
            "1-2",
            "12:00",
            "0b",
            "0o8",
            "1_000.5",
            "1.5e3_0",
        ];
        let mut fast = Vec::new();
        for s in scalars {
            fast.push(same_as_serde_saphyr(&format!("key: {s}\n")));
            same_as_serde_saphyr(&format!("key: [{s}]\n"));
            same_as_serde_saphyr(&format!("key:\n  - {s}\n  - other\n"));
        }
        // Only the non-finite floats (and `key: -`, not YAML) are left to serde-saphyr.
        let slow: Vec<&str> = scalars
            .iter()
            .zip(&fast)
            .filter(|(_, f)| !**f)
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(
            slow,
            ["1e999", "-1e999", ".inf", "-.Inf", ".nan", "-", "- x"],
            "read by serde-saphyr only"
        );
    }

    #[test]
    fn plans_read_the_same_both_ways() {
        let examples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/plans"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"));
        let mut read = 0;
        for path in examples {
            let text = std::fs::read_to_string(&path).unwrap();
            same_as_serde_saphyr(&text);
            read += usize::from(parse(&text).is_some());
        }
        assert!(read > 0, "the example plans are in the subset");
        let fast: Vec<bool> = [
            "version: 1\nname: t\nsites:\n  - name: a\n    from: { host: local, path: /a }\n    to: { host: local, path: \"/srv/{name}/\" }\n    domains: [a.example, 'www.a.example']\n",
            "# comment\nversion: 1 # trailing\nname: |\n  block\n  text\nother: >\n  folded\n  line\n",
            "---\nversion: 1\nname: \"é ü\"\nemoji: \"\\U0001F600\"\nx: 'it''s'\n...\n",
            "a:\n  b:\n    c:\n      - [1, 2, {d: e}]\n      - {}\n      - []\n  e:\nf: ~\n",
            "a: 1\n? b\n: 2\n",
            "a: {b: 1, b: 2}\n",
            "a: 1\na: 2\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "<<: {a: 1}\n",
            "a: [1, 2\n",
            "a: b: c\n",
            "- 1\n- 2\n",
            "just text\n",
            "",
            "---\na: 1\n---\nb: 2\n",
            "%YAML 1.1\n---\na: yes\n",
            "1: a\n",
            "\"quoted key\": 1\n'k': 2\n",
            "a:\n\tb: 1\n",
            "a: 'multi\n  line'\nb: plain\n  continued\n",
        ]
        .iter()
        .map(|t| same_as_serde_saphyr(t))
        .collect();
        assert_eq!(
            fast,
            [
                true, true, true, true, true, false, false, false, false, false, false, false,
                false, false, false, false, false, false, true, false, true
            ]
        );
    }

    #[test]
    fn a_large_generated_plan_is_in_the_subset() {
        let mut text = String::from("version: 1\nname: big\nsites:\n");
        for i in 0..500 {
            text.push_str(&format!(
                "  - name: s{i}.example\n    from: {{ host: local, path: /var/www/s{i}/ }}\n    to: {{ host: local, path: \"/srv/{{name}}/\" }}\n    domains: [s{i}.example, www.s{i}.example]\n    databases: [db{i}]\n"
            ));
        }
        assert!(parse(&text).is_some());
        same_as_serde_saphyr(&text);
    }
}
