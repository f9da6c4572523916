//! Problems found in a plan, each tied to a place in the file, collected rather than thrown.

use serde::Serialize;

use super::node::Loc;

/// How bad a problem is: errors stop the plan, warnings are shown and the plan goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a plan file.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub severity: Severity,
    /// Where in the plan (line 0 when the problem is not tied to one place).
    #[serde(flatten)]
    pub loc: Loc,
    /// The path of the offending value, such as `sites[2].to.host`.
    pub path: String,
    /// What is wrong, and what was expected.
    pub message: String,
    /// A hint to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// A stable code for problems found beyond the file, such as `overlapping_targets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

impl Issue {
    pub fn error(loc: Loc, path: impl ToString, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            loc,
            path: path.to_string(),
            message: message.into(),
            help: None,
            code: None,
        }
    }

    pub fn warning(loc: Loc, path: impl ToString, message: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(loc, path, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Issue {
        self.help = Some(help.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Issue {
        self.code = Some(code);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts issues by position so a report reads top to bottom like the file.
pub fn sort_issues(issues: &mut [Issue]) {
    issues.sort_by(|a, b| {
        (a.loc.line, a.loc.column, a.severity, &a.message).cmp(&(
            b.loc.line,
            b.loc.column,
            b.severity,
            &b.message,
        ))
    });
}

/// The candidate closest to `word`, when close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["exclude", "domains", "from", "to", "name"];
        assert_eq!(closest("exlude", keys), Some("exclude"));
        assert_eq!(closest("domain", keys), Some("domains"));
        assert_eq!(closest("totally_else", keys), None);
    }
}
