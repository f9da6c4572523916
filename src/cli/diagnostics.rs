//! Renders plan issues with the offending line: the place first (`file:line:col`, for grep),
//! the message once, the line with the value underlined and a hint. Lines are cut to a window
//! around the value, so a plan written on one long line prints a few hundred bytes per issue,
//! and one mistake repeated on many sites prints once with a count.

use std::fmt::Write as _;

use crate::plan::{Issue, Severity, SourceFile};

/// Characters of a line shown around the value (a longer line is cut on both sides with `…`).
const WINDOW: usize = 100;

/// Places listed after `and N more like it`.
const PLACES: usize = 5;

/// One issue: `file:line:col: error: message`, then the line with the value underlined, the
/// lines around it, and the hint.
pub fn render(issue: &Issue, source: &SourceFile) -> String {
    let mut o = format!(
        "{}: {}: {}\n",
        place(issue, source),
        kind(issue),
        issue.message
    );
    if issue.loc.is_known() {
        o.push_str(&snippet(issue, &source.text));
    }
    if let Some(help) = &issue.help {
        let _ = writeln!(o, "   = help: {help}");
    }
    o
}

/// Every issue, once per distinct mistake: issues that differ only in the names and numbers
/// they quote (the same mistake on 100 sites) print the first in full, then one line with
/// how many more there are and where.
pub fn render_all<'a>(issues: impl IntoIterator<Item = &'a Issue>, source: &SourceFile) -> String {
    let mut o = String::new();
    for group in group(issues) {
        o.push_str(&render(group[0], source));
        if group.len() > 1 {
            // Each other one by its place; at the first one's place, by its own words.
            let first = where_(group[0]);
            let mut seen = std::collections::HashSet::new();
            let named: Vec<String> = group[1..]
                .iter()
                .map(|i| match where_(i) {
                    w if w == first => i.message.clone(),
                    w => w,
                })
                .filter(|w| seen.insert(w.clone()))
                .take(PLACES)
                .collect();
            let _ = writeln!(
                o,
                "   = and {} more like it: {}{}",
                group.len() - 1,
                named.join("; "),
                if group.len() - 1 > named.len() {
                    "; …"
                } else {
                    ""
                }
            );
        }
        o.push('\n');
    }
    o
}

/// Where an issue is, in a few words: `sites[3].exlude (9:5)`.
fn where_(i: &Issue) -> String {
    match (i.path.is_empty(), i.loc.is_known()) {
        (false, true) => format!("{} ({}:{})", i.path, i.loc.line, i.loc.column),
        (true, true) => format!("{}:{}", i.loc.line, i.loc.column),
        (false, false) => i.path.clone(),
        (true, false) => "(no place)".into(),
    }
}

/// Issues grouped by the mistake they report, in order of first appearance.
fn group<'a>(issues: impl IntoIterator<Item = &'a Issue>) -> Vec<Vec<&'a Issue>> {
    let mut groups: Vec<Vec<&Issue>> = Vec::new();
    let mut index: std::collections::HashMap<(Severity, Option<&str>, String, String), usize> =
        std::collections::HashMap::new();
    for i in issues {
        let key = (
            i.severity,
            i.code,
            shape(&i.message),
            shape(i.help.as_deref().unwrap_or("")),
        );
        match index.get(&key) {
            Some(&g) => groups[g].push(i),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// A message with what it quotes (`…` spans) and its numbers left out: the mistake itself.
fn shape(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut digits = false;
    for c in message.chars() {
        if c == '`' {
            quoted = !quoted;
            if quoted {
                out.push_str("`…`");
            }
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
            continue;
        }
        digits = false;
        out.push(c);
    }
    out
}

fn kind(issue: &Issue) -> &'static str {
    match issue.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn place(issue: &Issue, source: &SourceFile) -> String {
    if issue.loc.is_known() {
        format!("{}:{}:{}", source.name, issue.loc.line, issue.loc.column)
    } else {
        source.name.clone()
    }
}

/// The issue's line between its neighbours, the value underlined and labelled with its path.
fn snippet(issue: &Issue, text: &str) -> String {
    let offset = floor_boundary(text, issue.loc.offset.min(text.len()));
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line_no = issue.loc.line as usize;
    let value_end = floor_boundary(text, (offset + issue.loc.len.max(1)).min(end));
    let line = &text[start..end];
    let col = text[start..offset].chars().count();
    let len = text[offset..value_end].chars().count().max(1);
    // The window: the value, with what precedes it when the line is long.
    let (from, shown) = window(line, col, len);
    let width = (line_no + 1).to_string().len();
    let gutter = |n: Option<usize>| match n {
        Some(n) => format!(" {n:>width$} │ "),
        None => format!(" {} │ ", " ".repeat(width)),
    };
    let mut o = String::new();
    let _ = writeln!(o, "{}", gutter(None).trim_end());
    if line_no > 1 && start > 0 {
        let before_end = start - 1;
        let before_start = text[..before_end].rfind('\n').map_or(0, |i| i + 1);
        let prev = &text[before_start..before_end];
        let _ = writeln!(
            o,
            "{}{}",
            gutter(Some(line_no - 1)),
            window(prev, col, len).1
        );
    }
    let _ = writeln!(o, "{}{shown}", gutter(Some(line_no)));
    let pad = col - from + usize::from(from > 0);
    let carets = len.min(WINDOW);
    let label = if issue.path.is_empty() {
        String::new()
    } else {
        format!(" {}", issue.path)
    };
    let _ = writeln!(
        o,
        "{}{}{}{label}",
        gutter(None),
        " ".repeat(pad),
        "^".repeat(carets)
    );
    if end < text.len() {
        let next_end = text[end + 1..]
            .find('\n')
            .map_or(text.len(), |i| end + 1 + i);
        let next = &text[end + 1..next_end];
        if !next.trim().is_empty() {
            let _ = writeln!(
                o,
                "{}{}",
                gutter(Some(line_no + 1)),
                window(next, col, len).1
            );
        }
    }
    o
}

/// The part of `line` shown: whole when short, else `WINDOW` characters starting a little
/// before column `col`, cut with `…` on the sides it was cut. Returns the first character shown.
fn window(line: &str, col: usize, len: usize) -> (usize, String) {
    let line = line.trim_end_matches('\r');
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= WINDOW {
        return (0, line.to_string());
    }
    let lead = 20.min(col);
    let from = if len > WINDOW - lead {
        col - lead
    } else {
        (col - lead).min(chars.len().saturating_sub(WINDOW))
    }
    .min(chars.len());
    let to = (from + WINDOW).min(chars.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(&chars[from..to]);
    if to < chars.len() {
        out.push('…');
    }
    (from, out)
}

/// The largest char boundary of `text` at or before `at`.
fn floor_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::plan::node::Loc;

    fn source(text: &str) -> SourceFile {
        SourceFile {
            name: "plan.yaml".into(),
            text: text.into(),
        }
    }

    fn at(text: &str, needle: &str, line: u32) -> Loc {
        let offset = text.find(needle).unwrap();
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        Loc {
            line,
            column: (text[start..offset].chars().count() + 1) as u32,
            offset,
            len: needle.len(),
        }
    }

    #[test]
    fn the_message_is_said_once_with_the_line_underlined() {
        let text = "version: 1\ncutover: { batch: \"2\" }\nsites: []\n";
        let issue = Issue::error(at(text, "\"2\"", 2), "cutover.batch", "expected a number")
            .with_help("write 2 without quotes");
        let out = render(&issue, &source(text));
        assert_eq!(
            out,
            "plan.yaml:2:19: error: expected a number\n   │\n 1 │ version: 1\n 2 │ cutover: { batch: \"2\" }\n   │                   ^^^ cutover.batch\n 3 │ sites: []\n   = help: write 2 without quotes\n"
        );
        assert_eq!(out.matches("expected a number").count(), 1);
    }

    #[test]
    fn a_value_past_column_65535_is_shown_in_a_window() {
        let text = format!("sites: [{}olld, x]\n", " ".repeat(70_000));
        let issue = Issue::error(at(&text, "olld", 1), "sites[0]", "unknown host `olld`");
        let out = render(&issue, &source(&text));
        assert!(out.len() < 600, "{} bytes:\n{out}", out.len());
        assert!(out.starts_with("plan.yaml:1:70009: error: unknown host `olld`\n"));
        let shown = out.lines().nth(2).unwrap();
        let carets = out.lines().nth(3).unwrap();
        let column = |line: &str, at: usize| line[..at].chars().count();
        let value_at = column(shown, shown.find("olld").unwrap());
        let caret_at = column(carets, carets.find('^').unwrap());
        assert_eq!(caret_at, value_at, "\n{shown}\n{carets}");
    }

    #[test]
    fn one_mistake_on_many_sites_prints_once_with_a_count() {
        let mut text = String::new();
        let mut issues = Vec::new();
        for i in 0..100 {
            let line = format!("  - {{ name: s{i}, exlude: [x] }}\n");
            let offset = text.len() + line.find("exlude").unwrap();
            text.push_str(&line);
            issues.push(
                Issue::error(
                    Loc {
                        line: i + 1,
                        column: 17,
                        offset,
                        len: 6,
                    },
                    format!("sites[{i}].exlude"),
                    format!("unknown key `exlude` in `sites[{i}]`"),
                )
                .with_help("did you mean `exclude`?"),
            );
        }
        issues.push(Issue::warning(Loc::default(), "", "another mistake"));
        let out = render_all(&issues, &source(&text));
        assert_eq!(out.matches("unknown key").count(), 1, "{out}");
        assert!(
            out.contains("   = and 99 more like it: sites[1].exlude (2:17); sites[2].exlude (3:17); sites[3].exlude (4:17); sites[4].exlude (5:17); sites[5].exlude (6:17); …\n"),
            "{out}"
        );
        assert!(out.contains("plan.yaml: warning: another mistake"), "{out}");
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(200))]

        /// Whatever the plan holds (wrong types, unknown keys, tabs, long lines, any
        /// characters), every issue renders without a panic, each message once.
        #[test]
        fn any_plan_renders_without_a_panic(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("[a-z_]{1,8}: [\\[\\]{}\"'a-z0-9 ,:.é\t-]{0,40}").unwrap(),
                    proptest::string::string_regex("  - [{}a-z: ,\"0-9]{0,30}").unwrap(),
                    (0usize..3000).prop_map(|n| format!("sites: [{}{{ from: x }}]", " ".repeat(n * 30))),
                    proptest::string::string_regex("\\PC{0,20}").unwrap(),
                ],
                0..12,
            )
        ) {
            let text = format!("version: 1\nname: p\n{}\n", lines.join("\n"));
            let path = std::path::Path::new("plan.yaml");
            if let Err(crate::plan::PlanError::Invalid { source_file, issues }) =
                crate::plan::parse(&text, "plan.yaml", path, std::path::Path::new("."))
            {
                let out = render_all(&issues, &source_file);
                for i in &issues {
                    prop_assert!(out.contains(&i.message) || out.contains("more like it"));
                }
            }
        }
    }
}
