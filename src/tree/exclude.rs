//! rsync-style filter rules: `cache/` (directories), `*.tmp` (any depth), `/logs/` (anchored),
//! and rsync's `+ PATTERN` / `- PATTERN` prefixes for include and exclude rules. As in rsync's
//! filter list, the first rule that matches a path decides; a path no rule matches is kept.

use std::collections::HashMap;
use std::path::PathBuf;

use globset::{GlobBuilder, GlobMatcher};

/// A compiled, ordered list of filter rules (excludes, and includes written `+ PATTERN`).
#[derive(Debug, Clone, Default)]
pub struct ExcludeSet {
    rules: Vec<Rule>,
    /// Anchored patterns without a wildcard, looked up instead of matched: an inventory leaves
    /// out thousands of paths by name, and each entry of a tree is checked against them all.
    /// Each keeps the position of its earliest rule, so the first match still decides.
    exact: HashMap<PathBuf, Decision>,
    exact_dirs: HashMap<PathBuf, Decision>,
}

/// What a rule says of the paths it matches, and where it stands in the list.
#[derive(Debug, Clone, Copy)]
struct Decision {
    position: usize,
    include: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    dir_only: bool,
    /// Matched against the whole relative path instead of the last component.
    whole_path: bool,
    decision: Decision,
}

/// Splits rsync's rule prefix off a pattern: `+ PATTERN` includes, `- PATTERN` excludes, and a
/// pattern without a prefix is an exclude (rsync's `--exclude`).
fn split_rule(p: &str) -> (bool, &str) {
    if let Some(rest) = p.strip_prefix("+ ") {
        (true, rest)
    } else if let Some(rest) = p.strip_prefix("- ") {
        (false, rest)
    } else {
        (false, p)
    }
}

/// The rule that keeps what `pattern` matches (rsync's `--include PATTERN`): it wins over any
/// exclude after it in the list. A pattern that already has a rule prefix is kept as it is.
pub fn include(pattern: &str) -> String {
    if pattern.starts_with("+ ") || pattern.starts_with("- ") {
        pattern.to_string()
    } else {
        format!("+ {pattern}")
    }
}

/// The rules of a file read by `--exclude-from` (`include` false) or `--include-from`, as rsync
/// reads them: one pattern per line, blank lines and lines starting with `;` or `#` skipped, a
/// `+ ` or `- ` prefix taken as written.
pub fn rules_from(text: &str, include_by_default: bool) -> Vec<String> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with(';') && !l.starts_with('#'))
        .map(|l| {
            if include_by_default {
                include(l)
            } else {
                l.to_string()
            }
        })
        .collect()
}

impl ExcludeSet {
    /// Compiles `patterns`, in order.
    ///
    /// # Errors
    /// A pattern that is not a valid glob, named in the message.
    pub fn new(patterns: &[String]) -> Result<ExcludeSet, String> {
        let mut set = ExcludeSet::default();
        for (position, p) in patterns.iter().enumerate() {
            let (include, pattern) = split_rule(p);
            let decision = Decision { position, include };
            let dir_only = pattern.ends_with('/');
            let body = pattern.trim_end_matches('/');
            let anchored = body.starts_with('/');
            let body = body.trim_start_matches('/');
            if anchored && !body.is_empty() && !body.contains(['*', '?', '[', ']', '{', '}', '\\'])
            {
                let exact = if dir_only {
                    &mut set.exact_dirs
                } else {
                    &mut set.exact
                };
                exact.entry(PathBuf::from(body)).or_insert(decision);
                continue;
            }
            let whole_path = anchored || body.contains('/');
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid exclude pattern `{p}`: {e}"))?;
            set.rules.push(Rule {
                matcher: glob.compile_matcher(),
                dir_only,
                whole_path,
                decision,
            });
        }
        Ok(set)
    }

    /// Whether `rel` (relative to the tree's root) is excluded: the first rule matching it
    /// decides, and no rule matching keeps it.
    pub fn is_excluded(&self, rel: &std::path::Path, is_dir: bool) -> bool {
        let looked_up = [
            self.exact.get(rel),
            is_dir.then(|| self.exact_dirs.get(rel)).flatten(),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|d| d.position)
        .copied();
        let before = looked_up.map_or(usize::MAX, |d| d.position);
        let matched = self
            .rules
            .iter()
            .take_while(|r| r.decision.position < before)
            .find(|r| {
                if r.dir_only && !is_dir {
                    return false;
                }
                if r.whole_path {
                    r.matcher.is_match(rel)
                } else {
                    rel.file_name().is_some_and(|n| r.matcher.is_match(n))
                }
            })
            .map(|r| r.decision);
        matched
            .or(looked_up)
            .is_some_and(|decision| !decision.include)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.exact.is_empty() && self.exact_dirs.is_empty()
    }
}

/// The pattern that leaves out exactly `rel` (relative to the root, whatever characters its
/// name holds), file or directory: for paths known by name, such as a freeze's marker.
pub fn literal(rel: &str) -> String {
    let rel = rel.trim_matches('/');
    format!("/{}", globset::escape(&rel.replace('\\', "\\\\")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn rsync_like_rules() {
        let set = ExcludeSet::new(&["cache/".into(), "*.tmp".into(), "/logs/".into()]).unwrap();
        assert!(set.is_excluded(Path::new("a/b/cache"), true));
        assert!(!set.is_excluded(Path::new("a/b/cache"), false));
        assert!(set.is_excluded(Path::new("x/y.tmp"), false));
        assert!(set.is_excluded(Path::new("logs"), true));
        assert!(!set.is_excluded(Path::new("a/logs"), true));
    }

    #[test]
    fn anchored_names_are_looked_up_and_match_as_globs_would() {
        let set = ExcludeSet::new(&["/e/x/example.org/a/alice/".into(), "/top".into()]).unwrap();
        assert!(set.is_excluded(Path::new("e/x/example.org/a/alice"), true));
        assert!(!set.is_excluded(Path::new("e/x/example.org/a/alice"), false));
        assert!(!set.is_excluded(Path::new("x/e/x/example.org/a/alice"), true));
        assert!(!set.is_excluded(Path::new("e/x/example.org/a/alicia"), true));
        assert!(
            set.is_excluded(Path::new("top"), false) && set.is_excluded(Path::new("top"), true)
        );
        assert!(!set.is_excluded(Path::new("a/top"), false));
        assert!(!set.is_empty());
    }

    #[test]
    fn the_first_matching_rule_decides_as_in_rsync() {
        let rules = |r: &[&str]| {
            ExcludeSet::new(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        // rsync's classic: every directory, the PHP files, nothing else.
        let set = rules(&["+ */", &include("*.php"), "*"]);
        assert!(!set.is_excluded(Path::new("a/b"), true));
        assert!(!set.is_excluded(Path::new("a/b/index.php"), false));
        assert!(set.is_excluded(Path::new("a/b/style.css"), false));
        // An include before an exclude wins for what it matches; after it, it comes too late.
        let set = rules(&[&include("keep.log"), "*.log"]);
        assert!(!set.is_excluded(Path::new("x/keep.log"), false));
        assert!(set.is_excluded(Path::new("x/other.log"), false));
        let set = rules(&["*.log", &include("keep.log")]);
        assert!(set.is_excluded(Path::new("x/keep.log"), false));
        // Looked-up anchored names keep their place in the list.
        let set = rules(&[&include("/top/"), "- /top/", "/other"]);
        assert!(!set.is_excluded(Path::new("top"), true));
        assert!(set.is_excluded(Path::new("other"), false));
        let set = rules(&["/top/", &include("*")]);
        assert!(set.is_excluded(Path::new("top"), true));
        assert!(
            !set.is_excluded(Path::new("top"), false),
            "a file is no `top/`"
        );
        let set = rules(&[&include("t*"), "/top"]);
        assert!(!set.is_excluded(Path::new("top"), false));
        // No rule matching: kept.
        assert!(!rules(&["+ a"]).is_excluded(Path::new("b"), false));
    }

    #[test]
    fn rule_files_read_as_rsync_reads_them() {
        let text = "# comment\n; another\n\ncache/\n+ keep.tmp\r\n*.tmp\n- /secret\n";
        assert_eq!(
            rules_from(text, false),
            vec!["cache/", "+ keep.tmp", "*.tmp", "- /secret"]
        );
        assert_eq!(
            rules_from("*.php\n- *.bak\n", true),
            vec!["+ *.php", "- *.bak"]
        );
    }

    #[test]
    fn a_literal_matches_that_path_only() {
        let set =
            ExcludeSet::new(&[literal(".maintenance"), literal("run/x*[1]{a}\\.lock")]).unwrap();
        assert!(set.is_excluded(Path::new(".maintenance"), false));
        assert!(set.is_excluded(Path::new(".maintenance"), true));
        assert!(!set.is_excluded(Path::new("blog/.maintenance"), false));
        assert!(!set.is_excluded(Path::new(".maintenance2"), false));
        assert!(set.is_excluded(Path::new("run/x*[1]{a}\\.lock"), false));
        assert!(!set.is_excluded(Path::new("run/xy[1]{a}\\.lock"), false));
        assert!(!set.is_excluded(Path::new("run/x*1a.lock"), false));
    }
}
