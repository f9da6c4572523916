//! rsync-style exclude patterns: `cache/` (directories), `*.tmp` (any depth), `/logs/` (anchored).

use std::collections::HashSet;
use std::path::PathBuf;

use globset::{GlobBuilder, GlobMatcher};

/// A compiled list of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct ExcludeSet {
    rules: Vec<Rule>,
    /// Anchored patterns without a wildcard, looked up instead of matched: an inventory leaves
    /// out thousands of paths by name, and each entry of a tree is checked against them all.
    exact: HashSet<PathBuf>,
    exact_dirs: HashSet<PathBuf>,
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    dir_only: bool,
    /// Matched against the whole relative path instead of the last component.
    whole_path: bool,
}

impl ExcludeSet {
    /// Compiles `patterns`.
    ///
    /// # Errors
    /// A pattern that is not a valid glob, named in the message.
    pub fn new(patterns: &[String]) -> Result<ExcludeSet, String> {
        let mut set = ExcludeSet::default();
        for p in patterns {
            let dir_only = p.ends_with('/');
            let body = p.trim_end_matches('/');
            let anchored = body.starts_with('/');
            let body = body.trim_start_matches('/');
            if anchored && !body.is_empty() && !body.contains(['*', '?', '[', ']', '{', '}', '\\'])
            {
                let exact = if dir_only {
                    &mut set.exact_dirs
                } else {
                    &mut set.exact
                };
                exact.insert(PathBuf::from(body));
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
            });
        }
        Ok(set)
    }

    /// Whether `rel` (relative to the tree's root) is excluded.
    pub fn is_excluded(&self, rel: &std::path::Path, is_dir: bool) -> bool {
        if self.exact.contains(rel) || (is_dir && self.exact_dirs.contains(rel)) {
            return true;
        }
        self.rules.iter().any(|r| {
            if r.dir_only && !is_dir {
                return false;
            }
            if r.whole_path {
                r.matcher.is_match(rel)
            } else {
                rel.file_name().is_some_and(|n| r.matcher.is_match(n))
            }
        })
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
