//! From plan text to a validated `Plan`: YAML, structure, then meaning, every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::diagnostic::{Issue, closest, sort_issues};
use super::model::*;
use super::node::{Loc, Node, NodePath};
use super::raw::{
    self, ConflictPolicy, ConnectedClients, DevicePolicy, DnsProviderKind, ImapSecurity,
    MailLayout, OnFailure, RawPlan, VerifyMode,
};
use super::secret::SecretRef;
use super::template::Template;
use super::units;

/// The text of a plan file and the name errors call it by.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// A plan that loaded, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub plan: Plan,
    pub source: SourceFile,
    pub warnings: Vec<Issue>,
    /// The located YAML tree, to place problems found later (after expansion). Shared, so
    /// the CLI can keep it until the process exits rather than free it node by node.
    pub tree: std::sync::Arc<Node>,
    /// How long each step of the load took, in order (`validate -v` shows them).
    pub phases: Vec<(&'static str, Duration)>,
}

/// Why a plan could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plan `{}` has {} error(s)", source_file.name, issues.iter().filter(|i| i.is_error()).count())]
    Invalid {
        source_file: SourceFile,
        issues: Vec<Issue>,
    },
}

/// A plan that is not UTF-8, placed at its first invalid byte: the byte offset (what a hex
/// editor shows), and the line and column of the text before it.
fn not_utf8(bytes: &[u8], e: std::str::Utf8Error) -> Issue {
    let at = e.valid_up_to();
    let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let line = valid.matches('\n').count() + 1;
    let column = valid[line_start..].chars().count() + 1;
    let bad: Vec<String> = bytes[at..]
        .iter()
        .take(e.error_len().unwrap_or(bytes.len() - at).max(1))
        .map(|b| format!("\\x{b:02X}"))
        .collect();
    // The lossy text the snippet shows has U+FFFD (3 bytes) where the bad bytes were.
    Issue::error(
        Loc {
            line: line as u32,
            column: column as u32,
            offset: at,
            len: 3,
        },
        "",
        format!(
            "the plan is not UTF-8 text: the byte at offset {at} (line {line}, column {column}) is `{}`",
            bad.join("")
        ),
    )
    .with_help("save the plan as UTF-8 (`iconv -f LATIN1 -t UTF-8 plan.yaml`, or your editor's encoding setting)")
}

/// Reads and validates the plan at `path`.
///
/// # Errors
/// The file cannot be read, or the plan has errors (all of them, sorted by position).
pub fn load(path: &Path) -> Result<Loaded, PlanError> {
    let bytes = std::fs::read(path).map_err(|source| PlanError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Err(PlanError::Invalid {
                issues: vec![not_utf8(e.as_bytes(), e.utf8_error())],
                source_file: SourceFile {
                    name: path.display().to_string(),
                    text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                },
            });
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    // Absolute, so relative paths in the plan mean the same from any working directory.
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    parse(&text, &path.display().to_string(), path, &base)
}

/// Validates plan `text`; `name` is used in messages, `base_dir` resolves relative paths.
///
/// # Errors
/// Every problem of the plan, sorted by position.
pub fn parse(text: &str, name: &str, file: &Path, base_dir: &Path) -> Result<Loaded, PlanError> {
    let source = SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    };
    let invalid = |issues: Vec<Issue>| PlanError::Invalid {
        source_file: source.clone(),
        issues,
    };
    let mut phases = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut phase = |name: &'static str| {
        let now = std::time::Instant::now();
        phases.push((name, now - clock));
        clock = now;
    };
    let tree = match Node::parse(text) {
        Ok(t) => t,
        Err(e) => return Err(invalid(vec![yaml_issue(&e, text)])),
    };
    phase("yaml parse");
    if matches!(tree.value, super::node::Value::Null) {
        return Err(invalid(vec![Issue::error(
            Loc::default(),
            "",
            "the plan is empty: expected a mapping with `version: 1` and `name`",
        )]));
    }
    let structural = super::schema_check::check(&tree, &super::json_schema());
    phase("schema check");
    let raw: RawPlan = if structural.is_empty() {
        // Read from the tree already parsed; the text again (with serde-saphyr's own located
        // message) only if the tree does not fit, which a checked tree should not do.
        match RawPlan::deserialize(&tree) {
            Ok(r) => r,
            Err(_) => {
                match serde_saphyr::from_str_with_options(text, super::node::yaml_options(text)) {
                    Ok(r) => r,
                    Err(e) => return Err(invalid(vec![yaml_issue(&e, text)])),
                }
            }
        }
    } else {
        // Check the meaning of what is well-formed too, so every mistake shows in one run.
        let skip = structural.iter().map(|i| i.path.clone()).collect();
        match serde_json::from_value(tree.to_json_without(&skip)) {
            Ok(r) => r,
            Err(_) => {
                let mut issues = structural;
                sort_issues(&mut issues);
                return Err(invalid(issues));
            }
        }
    };
    let mut v = Validator {
        tree: &tree,
        issues: structural,
    };
    phase("typed read");
    let plan = v.plan(raw, file, base_dir);
    let mut issues = v.issues;
    sort_issues(&mut issues);
    phase("meaning checks");
    if issues.iter().any(Issue::is_error) {
        return Err(invalid(issues));
    }
    Ok(Loaded {
        plan,
        source,
        warnings: issues,
        tree: std::sync::Arc::new(tree),
        phases,
    })
}

fn yaml_issue(e: &serde_saphyr::Error, text: &str) -> Issue {
    let loc = e
        .location()
        .map(|l| {
            let mut loc = Loc::from(&l);
            if loc.len == 0 {
                loc.offset = line_col_offset(text, loc.line, loc.column);
            }
            loc
        })
        .unwrap_or_default();
    // serde-saphyr's Display repeats the location and a snippet; keep the first line.
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or("invalid YAML");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop the "line L column C: " prefix: the place is shown separately.
    let first = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((_, rest)) => rest,
        None => first,
    };
    let issue = Issue::error(loc, "", format!("invalid YAML: {first}"));
    let line_text = text
        .lines()
        .nth(loc.line.saturating_sub(1) as usize)
        .unwrap_or("");
    if line_text.contains('{') && line_text.matches('{').count() > 1 {
        issue.with_help("a `{name}` template inside a `{ ... }` mapping must be quoted: `path: \"/srv/www/{name}/\"`")
    } else {
        issue
    }
}

fn line_col_offset(text: &str, line: u32, col: u32) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            return offset
                + l.char_indices()
                    .nth(col.saturating_sub(1) as usize)
                    .map_or(0, |(b, _)| b);
        }
        offset += l.len();
    }
    offset
}

struct Validator<'t> {
    tree: &'t Node,
    issues: Vec<Issue>,
}

const SITE_VARS: &[&str] = &["name"];
const HOOK_VARS: &[&str] = &["name", "path", "host", "target_path", "target_host", "kind"];
const PROBE_VARS: &[&str] = &["name", "domain"];
const TLS_VARS: &[&str] = &["name", "domain"];

impl Validator<'_> {
    fn error(&mut self, path: &NodePath, message: impl Into<String>) -> &mut Issue {
        self.issues
            .push(Issue::error(self.tree.locate(path), path, message));
        self.issues.last_mut().expect("just pushed")
    }

    fn warning(&mut self, path: &NodePath, message: impl Into<String>) {
        self.issues
            .push(Issue::warning(self.tree.locate(path), path, message));
    }

    fn plan(&mut self, raw: RawPlan, file: &Path, base_dir: &Path) -> Plan {
        let root = NodePath::root();
        if raw.version != 1 {
            self.error(
                &root.key("version"),
                format!("unsupported plan version {}: expected `1`", raw.version),
            );
        }
        if raw.name.trim().is_empty() || raw.name.contains('/') {
            self.error(&root.key("name"), "expected a non-empty name without `/`");
        }
        let hosts = self.hosts(&raw.hosts, base_dir);
        let defaults = self.defaults(&raw.defaults);
        let site_rules = raw
            .sites
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.site_rule(i, s, &hosts, base_dir, &defaults))
            .collect::<Vec<_>>();
        self.explicit_site_overlaps(&site_rules);
        let databases = raw
            .databases
            .iter()
            .enumerate()
            .map(|(i, d)| self.database(i, d, &hosts, base_dir))
            .collect();
        let mail = raw
            .mail
            .iter()
            .enumerate()
            .filter_map(|(i, m)| self.mail(i, m, &hosts, base_dir))
            .collect();
        let inventory = raw
            .inventory
            .as_ref()
            .and_then(|i| self.inventory(i, &hosts, base_dir));
        let dns = raw
            .dns
            .as_ref()
            .and_then(|d| self.dns(d, base_dir, inventory.as_ref(), &hosts));
        let cutover = self.cutover(
            raw.cutover.as_ref().unwrap_or(&raw::RawCutover::default()),
            base_dir,
            &raw.name,
        );
        if cutover.probe.is_none()
            && (cutover.tls.files.is_some()
                || cutover.tls.discover.is_some()
                || site_rules.iter().any(|r| r.tls.is_some()))
        {
            self.warning(
                &root.key("cutover"),
                "certificates are carried to the target but the one the new address serves is not checked before the switch without `cutover.probe`",
            );
        }
        let state_dir = match &raw.state_dir {
            Some(d) => resolve(base_dir, d),
            None => base_dir.join(".transhumance").join(&raw.name),
        };
        let state = match &raw.state {
            Some(s) => self.state(s, base_dir),
            None => StateStore::File,
        };
        let direct = self.direct_hosts(&raw.hosts, &hosts);
        Plan {
            name: raw.name,
            file: file.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            state_dir,
            state,
            direct,
            hosts,
            defaults,
            site_rules,
            databases,
            mail,
            inventory,
            dns,
            cutover,
        }
    }

    fn hosts(
        &mut self,
        raw: &BTreeMap<String, raw::RawHost>,
        base_dir: &Path,
    ) -> BTreeMap<String, Host> {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "local".to_string(),
            Host {
                name: "local".into(),
                access: HostAccess::Local,
            },
        );
        for (name, h) in raw {
            let path = NodePath::root().key("hosts").key(name);
            // A host with errors is still known by name, so its users do not cascade errors.
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    access: HostAccess::Local,
                },
            );
            let access = match (&h.ssh, h.local) {
                (Some(_), true) => {
                    self.error(
                        &path,
                        format!("host `{name}` sets both `local: true` and `ssh`: choose one"),
                    );
                    continue;
                }
                (None, false) => {
                    self.error(
                        &path,
                        format!("host `{name}` needs `ssh: [user@]host[:port]` or `local: true`"),
                    );
                    continue;
                }
                (None, true) => HostAccess::Local,
                (Some(ssh), false) => match units::parse_ssh_target(ssh) {
                    Ok(target) => HostAccess::Ssh(SshAccess {
                        target,
                        identity_file: h.identity_file.as_deref().map(|p| resolve(base_dir, p)),
                        known_hosts: h.known_hosts.as_deref().map(|p| resolve(base_dir, p)),
                        options: h.ssh_options.clone(),
                        agent_dir: h
                            .agent_dir
                            .clone()
                            .unwrap_or_else(|| "~/.cache/transhumance".into()),
                    }),
                    Err(e) => {
                        self.error(&path.key("ssh"), e);
                        continue;
                    }
                },
            };
            for (i, opt) in h.ssh_options.iter().enumerate() {
                if !opt.contains('=') || opt.starts_with('-') {
                    self.error(
                        &path.key("ssh_options").index(i),
                        format!("expected an option such as `ConnectTimeout=10`, found `{opt}`"),
                    );
                }
            }
            if name == "local" && !matches!(access, HostAccess::Local) {
                self.error(&path, "the name `local` is reserved for this machine");
            }
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    access,
                },
            );
        }
        hosts
    }

    /// Whether host `name` exists; an error at `at` when not (the path is written out only
    /// then: a plan checks two host names per site, 100,000 on a platform).
    fn host_ref(
        &mut self,
        at: impl FnOnce() -> NodePath,
        name: &str,
        hosts: &BTreeMap<String, Host>,
    ) -> bool {
        if hosts.contains_key(name) {
            return true;
        }
        let issue = self.error(&at(), format!("unknown host `{name}`"));
        let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
        match closest(name, known.iter().copied()) {
            Some(best) => {
                issue.help = Some(format!(
                    "did you mean `{best}`? hosts are defined under `hosts:`"
                ))
            }
            None => {
                issue.help = Some(format!(
                    "defined hosts: {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        false
    }

    fn defaults(&mut self, raw: &raw::RawDefaults) -> Defaults {
        let path = NodePath::root().key("defaults");
        let jobs = match raw.jobs {
            Some(0) => {
                self.error(&path.key("jobs"), "expected at least 1 job");
                1
            }
            Some(n) => n as usize,
            None => 4,
        };
        let bwlimit = raw
            .bwlimit
            .as_deref()
            .and_then(|b| match units::parse_bwlimit(b) {
                // `0` is no limit, as rsync's `--bwlimit 0`.
                Ok(0) => None,
                Ok(r) => Some(r),
                Err(e) => {
                    self.error(&path.key("bwlimit"), e);
                    None
                }
            });
        let verify = raw.verify.unwrap_or(VerifyMode::Blake3);
        let manifest_hint = raw.manifest_hint.unwrap_or(false);
        if manifest_hint && verify == VerifyMode::None {
            self.error(
                &path.key("manifest_hint"),
                "a manifest hint comes from a clean verification: with `verify: none` there is none (set `verify: blake3`, or leave `manifest_hint` out)",
            );
        }
        Defaults {
            jobs,
            bwlimit,
            verify,
            manifest_hint,
            devices: raw.devices.unwrap_or(DevicePolicy::Refuse),
            acls: raw.acls.unwrap_or(true),
            xattrs: raw.xattrs.unwrap_or(true),
            transfer: raw.transfer,
        }
    }

    /// How sources reach each ssh host directly.
    fn direct_hosts(
        &mut self,
        raw: &BTreeMap<String, raw::RawHost>,
        hosts: &BTreeMap<String, Host>,
    ) -> BTreeMap<String, DirectHost> {
        let mut out = BTreeMap::new();
        for (name, h) in raw {
            let path = NodePath::root().key("hosts").key(name).key("direct");
            let ssh = hosts
                .get(name)
                .is_some_and(|h| matches!(h.access, HostAccess::Ssh(_)));
            let Some(d) = &h.direct else {
                if ssh {
                    out.insert(name.clone(), DirectHost::default());
                }
                continue;
            };
            if !ssh {
                self.error(
                    &path,
                    format!("host `{name}` is not reached over ssh: `direct` applies to ssh hosts"),
                );
                continue;
            }
            let mut direct = DirectHost::default();
            if let Some(a) = &d.address {
                match units::parse_ssh_target(a) {
                    Ok(t) if t.user.is_none() => direct.address = Some((t.host, t.port)),
                    Ok(_) => {
                        self.error(
                            &path.key("address"),
                            format!(
                                "expected `host[:port]` (the user is the one of `ssh`), found `{a}`"
                            ),
                        );
                    }
                    Err(e) => {
                        self.error(&path.key("address"), e);
                    }
                }
            }
            if let Some(k) = &d.authorized_keys {
                if k.starts_with('/') || k.starts_with("~/") {
                    direct.authorized_keys = k.clone();
                } else {
                    self.error(
                        &path.key("authorized_keys"),
                        format!("expected an absolute path or one starting with `~/`, found `{k}`"),
                    );
                }
            }
            out.insert(name.clone(), direct);
        }
        out
    }

    fn site_rule(
        &mut self,
        index: usize,
        raw: &raw::RawSiteRule,
        hosts: &BTreeMap<String, Host>,
        base_dir: &Path,
        defaults: &Defaults,
    ) -> Option<SiteRule> {
        let path = NodePath::root().key("sites").index(index);
        let from_local = hosts
            .get(&raw.from.host)
            .is_some_and(|h| h.access == HostAccess::Local);
        let to_local = hosts
            .get(&raw.to.host)
            .is_some_and(|h| h.access == HostAccess::Local);
        let mut ok = self.host_ref(|| path.key("from").key("host"), &raw.from.host, hosts);
        ok &= self.host_ref(|| path.key("to").key("host"), &raw.to.host, hosts);
        let source = match (&raw.from.path, &raw.from.glob) {
            (Some(p), None) => {
                if raw.name.is_none() {
                    self.error(&path, "a site with `from.path` needs a `name`");
                    ok = false;
                }
                let p = self.site_path(|| path.key("from").key("path"), p, from_local, base_dir);
                SiteSource::Path(PathBuf::from(p))
            }
            (None, Some(g)) => {
                if let Err(e) = globset::GlobBuilder::new(g.trim_end_matches('/'))
                    .literal_separator(true)
                    .build()
                {
                    self.error(&path.key("from").key("glob"), format!("invalid glob: {e}"));
                    ok = false;
                }
                SiteSource::Glob(self.site_path(
                    || path.key("from").key("glob"),
                    g,
                    from_local,
                    base_dir,
                ))
            }
            (Some(_), Some(_)) => {
                self.error(
                    &path.key("from"),
                    "set either `path` (one site) or `glob` (one site per directory), not both",
                );
                return None;
            }
            (None, None) => {
                self.error(
                    &path.key("from"),
                    "expected `path` (one site) or `glob` (one site per directory)",
                );
                return None;
            }
        };
        let to_path = self.site_path(
            || path.key("to").key("path"),
            &raw.to.path,
            to_local,
            base_dir,
        );
        let target_path = match Template::parse(&to_path, SITE_VARS) {
            Ok(t) => {
                if matches!(source, SiteSource::Glob(_)) && !t.uses("name") {
                    self.error(
                        &path.key("to").key("path"),
                        "every site of a glob would land in the same directory",
                    )
                    .help = Some(format!(
                        "use `{{name}}`, such as `{}/{{name}}/`",
                        raw.to.path.trim_end_matches('/')
                    ));
                    ok = false;
                }
                Some(t)
            }
            Err(e) => {
                self.error(&path.key("to").key("path"), e);
                None
            }
        };
        let mut domains = Vec::new();
        for (i, d) in raw.domains.iter().enumerate() {
            match Template::parse(d, SITE_VARS) {
                Ok(t) => domains.push(t),
                Err(e) => {
                    self.error(&path.key("domains").index(i), e);
                    ok = false;
                }
            }
        }
        let mut databases = Vec::new();
        for (i, d) in raw.databases.iter().enumerate() {
            match Template::parse(d, SITE_VARS) {
                Ok(t) => databases.push(t),
                Err(e) => {
                    self.error(&path.key("databases").index(i), e);
                    ok = false;
                }
            }
        }
        if let Some(name) = &raw.name
            && (name.is_empty() || name.contains('/'))
        {
            self.error(&path.key("name"), "expected a site name without `/`");
        }
        let tls = raw.tls.as_ref().and_then(|t| {
            self.tls_files(
                &path.key("tls"),
                [
                    Some(&t.cert),
                    Some(&t.key),
                    t.target_cert.as_ref(),
                    t.target_key.as_ref(),
                ],
            )
        });
        (ok && target_path.is_some()).then(|| SiteRule {
            index,
            name: raw.name.clone(),
            source_host: raw.from.host.clone(),
            source,
            target_host: raw.to.host.clone(),
            target_path: target_path.expect("checked"),
            domains,
            databases,
            exclude: raw.exclude.clone(),
            devices: raw.devices.unwrap_or(defaults.devices),
            acls: raw.acls.unwrap_or(defaults.acls),
            xattrs: raw.xattrs.unwrap_or(defaults.xattrs),
            tls,
            origin: path,
        })
    }

    /// Certificate and key templates (`cert`, `key`, `target_cert`, `target_key`): absolute
    /// paths, `{name}` and `{domain}`; the targets default to the sources.
    fn tls_files(&mut self, path: &NodePath, paths: [Option<&String>; 4]) -> Option<TlsFiles> {
        const KEYS: [&str; 4] = ["cert", "key", "target_cert", "target_key"];
        let mut parsed: [Option<Template>; 4] = [None, None, None, None];
        let mut ok = true;
        for (i, p) in paths.iter().enumerate() {
            let Some(p) = p else { continue };
            let at = path.key(KEYS[i]);
            if !p.starts_with('/') {
                self.error(&at, format!("expected an absolute path, found `{p}`"));
                ok = false;
                continue;
            }
            match Template::parse(p, TLS_VARS) {
                Ok(t) => parsed[i] = Some(t),
                Err(e) => {
                    self.error(&at, e);
                    ok = false;
                }
            }
        }
        match (&parsed[0], &parsed[1]) {
            (Some(_), Some(_)) => {}
            (None, None) if ok => {
                if paths[2].is_some() || paths[3].is_some() {
                    self.error(path, "`target_cert`/`target_key` need `cert` and `key`");
                }
                return None;
            }
            _ if !ok => return None,
            _ => {
                self.error(path, "a certificate needs both `cert` and `key`");
                return None;
            }
        }
        if !ok {
            return None;
        }
        let [cert, key, target_cert, target_key] = parsed;
        let (cert, key) = (cert.expect("checked"), key.expect("checked"));
        Some(TlsFiles {
            target_cert: target_cert.unwrap_or_else(|| cert.clone()),
            target_key: target_key.unwrap_or_else(|| key.clone()),
            cert,
            key,
        })
    }

    /// `cutover.tls.discover`: absolute paths (globs allowed), target templates checked.
    fn tls_discovery(
        &mut self,
        path: &NodePath,
        t: &raw::RawCutoverTls,
        config: &[String],
    ) -> Option<TlsDiscovery> {
        let at = path.key("discover");
        let mut ok = !config.is_empty();
        if config.is_empty() {
            self.error(
                &at,
                "expected the web server's configuration files or directories, such as `/etc/apache2/sites-enabled`",
            );
        }
        for (i, c) in config.iter().enumerate() {
            if !c.starts_with('/') {
                self.error(
                    &at.index(i),
                    format!("expected an absolute path, found `{c}`"),
                );
                ok = false;
            }
        }
        let mut target = |key: &str, v: Option<&String>| -> Option<Template> {
            let v = v?;
            let at = path.key(key);
            if !v.starts_with('/') {
                self.error(&at, format!("expected an absolute path, found `{v}`"));
                ok = false;
                return None;
            }
            Template::parse(v, TLS_VARS)
                .map_err(|e| {
                    self.error(&at, e);
                    ok = false;
                })
                .ok()
        };
        let target_cert = target("target_cert", t.target_cert.as_ref());
        let target_key = target("target_key", t.target_key.as_ref());
        ok.then(|| TlsDiscovery {
            config: config.iter().map(PathBuf::from).collect(),
            target_cert,
            target_key,
        })
    }

    /// On this machine a relative path is relative to the plan file; elsewhere it is an error.
    fn site_path(
        &mut self,
        at: impl FnOnce() -> NodePath,
        p: &str,
        local: bool,
        base_dir: &Path,
    ) -> String {
        if p.starts_with('/') {
            return p.to_string();
        }
        if !local {
            self.error(
                &at(),
                format!("expected an absolute path on a remote host, found `{p}`"),
            );
            return p.to_string();
        }
        let joined = normalize(&base_dir.join(p)).to_string_lossy().into_owned();
        if p.ends_with('/') && !joined.ends_with('/') {
            format!("{joined}/")
        } else {
            joined
        }
    }

    /// Each explicit site whose target holds, or lies in, an earlier one's on the same host is
    /// an error, named once against the first such site (sorted, not every pair compared).
    fn explicit_site_overlaps(&mut self, rules: &[SiteRule]) {
        let explicit: Vec<(&SiteRule, String)> = rules
            .iter()
            .filter(|r| matches!(r.source, SiteSource::Path(_)))
            .map(|r| {
                (
                    r,
                    r.target_path.render_name(r.name.as_deref().unwrap_or("")),
                )
            })
            .collect();
        let entries: Vec<(&str, &Path)> = explicit
            .iter()
            .map(|(r, p)| (r.target_host.as_str(), Path::new(p.as_str())))
            .collect();
        let overlaps = super::overlap::earliest_overlaps(&entries);
        for ((b, pb), first) in explicit.iter().zip(overlaps) {
            let Some(first) = first else { continue };
            let (a, pa) = &explicit[first];
            self.error(
                &b.origin.key("to").key("path"),
                format!(
                    "target `{pb}` overlaps the target `{pa}` of `{}` on host `{}`",
                    a.origin, a.target_host
                ),
            );
        }
    }

    fn secret(
        &mut self,
        path: &NodePath,
        env: &Option<String>,
        file: &Option<String>,
        base_dir: &Path,
        what: &str,
    ) -> Option<SecretRef> {
        match (env, file) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    format!("{what}: set either the `_env` or the `_file` key, not both"),
                );
                None
            }
            (Some(var), None) => {
                let r = SecretRef::Env(var.clone());
                if let Err(e) = r.resolve() {
                    self.warning(path, format!("{what}: {e} (needed when the plan runs)"));
                }
                Some(r)
            }
            (None, Some(f)) => Some(SecretRef::File(resolve(base_dir, f))),
            (None, None) => None,
        }
    }

    /// The `state:` key: the journal in PostgreSQL.
    fn state(&mut self, raw: &raw::RawState, base_dir: &Path) -> StateStore {
        let path = NodePath::root().key("state");
        let libpq = match crate::journal::postgres::tls::parse(&raw.postgres, base_dir) {
            Ok(settings) => {
                self.journal_tls_files(&path.key("postgres"), &settings.tls);
                Some(settings.libpq.parse::<postgres::Config>())
            }
            Err(e) => {
                self.error(&path.key("postgres"), format!("connection settings: {e}"));
                None
            }
        };
        match libpq {
            None => {}
            Some(Ok(c)) if c.get_password().is_some() => {
                self.error(
                    &path.key("postgres"),
                    "the connection settings hold a password: put it in `password_env` or `password_file` (a plan is read and shared by many)",
                );
            }
            Some(Ok(c)) if c.get_hosts().is_empty() => {
                self.error(
                    &path.key("postgres"),
                    "no `host=` in the connection settings: every controller must reach the same server",
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                self.error(
                    &path.key("postgres"),
                    format!("not PostgreSQL connection settings ({e}): expected `host=… dbname=… user=…` or `postgresql://user@host/dbname`"),
                );
            }
        }
        let password = self.secret(
            &path.key("password_env"),
            &raw.password_env,
            &raw.password_file,
            base_dir,
            "password of `state`",
        );
        let lease = match &raw.lease {
            Some(t) => match units::parse_duration(t) {
                Ok(d) if d < Duration::from_secs(1) => {
                    self.error(
                        &path.key("lease"),
                        "a lease under 1s would expire between two renewals: expected `30s` or so",
                    );
                    d
                }
                Ok(d) => d,
                Err(e) => {
                    self.error(&path.key("lease"), e);
                    Duration::from_secs(30)
                }
            },
            None => Duration::from_secs(30),
        };
        StateStore::Postgres(PostgresState {
            conninfo: raw.postgres.clone(),
            password,
            lease,
        })
    }

    /// The files TLS to the journal needs, looked for now: one missing is a warning (it may be
    /// put on the controllers later), and fails the command that needs it.
    fn journal_tls_files(&mut self, path: &NodePath, tls: &crate::journal::postgres::tls::Tls) {
        use crate::journal::postgres::tls::Roots;
        let mut files = Vec::new();
        if let Some(Roots::File(ca)) = &tls.roots {
            files.push(("sslrootcert", ca));
        }
        if let Some(c) = &tls.client {
            files.extend([("sslcert", &c.cert), ("sslkey", &c.key)]);
        }
        for (key, file) in files {
            if let Err(e) = std::fs::File::open(file) {
                self.warning(
                    path,
                    format!(
                        "`{key}` `{}` cannot be read here ({e}): needed when the plan runs",
                        file.display()
                    ),
                );
            }
        }
    }

    fn database(
        &mut self,
        index: usize,
        raw: &raw::RawDatabaseRule,
        hosts: &BTreeMap<String, Host>,
        base_dir: &Path,
    ) -> DatabaseRule {
        let path = NodePath::root().key("databases").index(index);
        let server = |v: &mut Self, side: &str, s: &raw::RawDbServer| {
            let p = path.key(side);
            v.host_ref(|| p.key("host"), &s.host, hosts);
            let password = v.secret(
                &p.key("password_env"),
                &s.password_env,
                &s.password_file,
                base_dir,
                &format!("password of `{}`", p),
            );
            DbServer {
                host: s.host.clone(),
                socket: s.socket.clone(),
                address: s.address.clone(),
                port: s.port,
                user: s.user.clone(),
                password,
                bin_dir: s.bin_dir.clone(),
            }
        };
        let from = server(self, "from", &raw.from);
        let to = server(self, "to", &raw.to);
        for (i, n) in raw.names.iter().chain(&raw.exclude).enumerate() {
            if globset::Glob::new(n).is_err() {
                self.error(
                    &path.key("names").index(i),
                    format!("invalid database name pattern `{n}`"),
                );
            }
        }
        for (i, n) in raw.schemas.iter().enumerate() {
            if globset::Glob::new(n).is_err() {
                self.error(
                    &path.key("schemas").index(i),
                    format!("invalid schema name pattern `{n}`"),
                );
            }
        }
        DatabaseRule {
            index,
            engine: raw.engine,
            from,
            to,
            names: raw.names.clone(),
            exclude: raw.exclude.clone(),
            left_out: Default::default(),
            conflict: raw.conflict.unwrap_or(ConflictPolicy::Fail),
            min_free_space: self.size(
                &path.key("min_free_space"),
                raw.min_free_space.as_deref(),
                1 << 30,
            ),
            split_tables_above: self.size(
                &path.key("split_tables_above"),
                raw.split_tables_above.as_deref(),
                64 << 20,
            ),
            connected_clients: raw.connected_clients.unwrap_or(ConnectedClients::Wait),
            connected_clients_timeout: match &raw.connected_clients_timeout {
                Some(t) => units::parse_duration(t)
                    .map_err(|e| {
                        self.error(&path.key("connected_clients_timeout"), e)
                            .clone()
                    })
                    .unwrap_or_default(),
                None => Duration::from_secs(30),
            },
            schemas: raw.schemas.clone(),
            mode: raw.mode.unwrap_or_default(),
            replicate_wait: self.replicate_wait(&path, raw),
        }
    }

    /// `replicate_wait`: a duration of at least a second (the servers wait in whole seconds),
    /// only where the rule replicates; default 5 minutes.
    fn replicate_wait(&mut self, path: &NodePath, raw: &raw::RawDatabaseRule) -> Duration {
        const DEFAULT: Duration = Duration::from_secs(300);
        let Some(text) = &raw.replicate_wait else {
            return DEFAULT;
        };
        let at = path.key("replicate_wait");
        if raw.mode != Some(raw::DbMode::Replicate) {
            self.error(
                &at,
                "`replicate_wait` needs `mode: replicate` on the same rule",
            );
            return DEFAULT;
        }
        match units::parse_duration(text) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                self.error(&at, "must be at least `1s`");
                DEFAULT
            }
            Err(e) => {
                self.error(&at, e);
                DEFAULT
            }
        }
    }

    /// A size such as `10GiB`, or `default` when absent; an error names the key.
    fn size(&mut self, at: &NodePath, value: Option<&str>, default: u64) -> u64 {
        match value.map(units::parse_size) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.error(at, e);
                default
            }
        }
    }

    fn mail(
        &mut self,
        index: usize,
        raw: &raw::RawMailRule,
        hosts: &BTreeMap<String, Host>,
        base_dir: &Path,
    ) -> Option<MailRule> {
        let path = NodePath::root().key("mail").index(index);
        match raw.layout {
            MailLayout::Maildir => {
                let side = |v: &mut Self,
                            name: &str,
                            e: &raw::RawMailEndpoint|
                 -> Option<(String, PathBuf)> {
                    let p = path.key(name);
                    if e.server.is_some() {
                        v.error(
                            &p.key("server"),
                            "`server` is for `layout: imap`; a Maildir needs `host` and `path`",
                        );
                    }
                    if e.security.is_some() || e.ca_file.is_some() {
                        v.error(&p, "`security` and `ca_file` are for `layout: imap`");
                    }
                    let host = match &e.host {
                        Some(h) => v.host_ref(|| p.key("host"), h, hosts).then(|| h.clone()),
                        None => {
                            v.error(&p, "a Maildir store needs `host`");
                            None
                        }
                    };
                    let dir = match &e.path {
                        Some(d) => {
                            let local = e
                                .host
                                .as_ref()
                                .and_then(|h| hosts.get(h))
                                .is_some_and(|h| h.access == HostAccess::Local);
                            Some(PathBuf::from(v.site_path(
                                || p.key("path"),
                                d,
                                local,
                                base_dir,
                            )))
                        }
                        None => {
                            v.error(&p, "a Maildir store needs `path`");
                            None
                        }
                    };
                    Some((host?, dir?))
                };
                let from = side(self, "from", &raw.from);
                let to = side(self, "to", &raw.to);
                let ((from_host, from_path), (to_host, to_path)) = (from?, to?);
                Some(MailRule::Maildir {
                    index,
                    from_host,
                    from_path,
                    to_host,
                    to_path,
                    exclude: Vec::new(),
                    convert: raw.convert,
                })
            }
            MailLayout::Imap => {
                let side = |v: &mut Self,
                            name: &str,
                            e: &raw::RawMailEndpoint|
                 -> Option<ImapServer> {
                    let p = path.key(name);
                    if e.host.is_some() || e.path.is_some() {
                        v.error(&p, "`host` and `path` are for `layout: maildir`; an IMAP store needs `server`");
                    }
                    let security = e.security.unwrap_or(ImapSecurity::Tls);
                    if e.ca_file.is_some() && security == ImapSecurity::Plain {
                        v.warning(
                            &p.key("ca_file"),
                            "`ca_file` is unused with `security: plain` (no TLS)",
                        );
                    }
                    let ca_file = e.ca_file.as_ref().map(|f| resolve(base_dir, f));
                    let Some(server) = &e.server else {
                        v.error(&p, "an IMAP store needs `server: host[:port]`");
                        return None;
                    };
                    let default_port = if security == ImapSecurity::Tls {
                        993
                    } else {
                        143
                    };
                    match units::parse_ssh_target(server) {
                        Ok(t) if t.user.is_none() => Some(ImapServer {
                            host: t.host,
                            port: t.port.unwrap_or(default_port),
                            security,
                            ca_file,
                        }),
                        _ => {
                            v.error(
                                &p.key("server"),
                                format!("expected `host[:port]`, found `{server}`"),
                            );
                            None
                        }
                    }
                };
                if raw.convert.is_some() {
                    self.error(
                        &path.key("convert"),
                        "`convert` is for `layout: maildir` (an IMAP move goes through the servers)",
                    );
                }
                let from = side(self, "from", &raw.from);
                let to = side(self, "to", &raw.to);
                let users_file = match &raw.users {
                    Some(u) => Some(resolve(base_dir, u)),
                    None => {
                        self.error(&path, "an IMAP move needs `users: FILE.csv` (source_user,source_password,target_user,target_password)");
                        None
                    }
                };
                let max_connections = match raw.max_connections {
                    Some(0) => {
                        self.error(&path.key("max_connections"), "expected at least 1");
                        1
                    }
                    Some(n) => n as usize,
                    None => 4,
                };
                Some(MailRule::Imap {
                    index,
                    from: from?,
                    to: to?,
                    users_file: users_file?,
                    max_connections,
                })
            }
        }
    }

    fn inventory(
        &mut self,
        raw: &raw::RawInventory,
        hosts: &BTreeMap<String, Host>,
        base_dir: &Path,
    ) -> Option<InventorySource> {
        let path = NodePath::root().key("inventory");
        let mut ok = self.host_ref(|| path.key("host"), &raw.host, hosts);
        ok &= self.host_ref(|| path.key("to").key("host"), &raw.to.host, hosts);
        let is_local = |h: &str| hosts.get(h).is_some_and(|h| h.access == HostAccess::Local);
        match raw.kind {
            raw::InventoryKind::Vhffs => {
                let data_host = raw.data_host.clone().unwrap_or_else(|| raw.host.clone());
                ok &= self.host_ref(|| path.key("data_host"), &data_host, hosts);
                let datadir = raw.datadir.clone().unwrap_or_else(|| "/data".into());
                let datadir = self.site_path(
                    || path.key("datadir"),
                    &datadir,
                    is_local(&data_host),
                    base_dir,
                );
                let target = match (&raw.to.datadir, &raw.to.path) {
                    (Some(_), Some(_)) => {
                        self.error(
                            &path.key("to"),
                            "set either `datadir` (the panel's layout) or `path` (a template), not both",
                        );
                        return None;
                    }
                    (Some(d), None) => VhffsTarget::Datadir(PathBuf::from(self.site_path(
                        || path.key("to").key("datadir"),
                        d,
                        is_local(&raw.to.host),
                        base_dir,
                    ))),
                    (None, None) => VhffsTarget::Datadir(PathBuf::from(&datadir)),
                    (None, Some(p)) => {
                        let at = path.key("to").key("path");
                        let p = self.site_path(|| at.clone(), p, is_local(&raw.to.host), base_dir);
                        match Template::parse(&p, SITE_VARS) {
                            Ok(t) if t.uses("name") => VhffsTarget::Path(t),
                            Ok(_) => {
                                self.error(&at, "every site would land in the same directory")
                                    .help = Some("use `{name}`, such as `/srv/www/{name}/`".into());
                                return None;
                            }
                            Err(e) => {
                                self.error(&at, e);
                                return None;
                            }
                        }
                    }
                };
                if raw.file.is_some() {
                    self.warning(
                        &path.key("file"),
                        "`file` is ignored by a `vhffs` inventory",
                    );
                }
                if !raw.units.is_empty() && matches!(target, VhffsTarget::Path(_)) {
                    self.error(
                        &path.key("units"),
                        "homes, groups, repositories and download areas keep the panel's layout: they need `to: { datadir }`, not `to: { path }`",
                    );
                    return None;
                }
                let password = self.secret(
                    &path.key("password_env"),
                    &raw.password_env,
                    &raw.password_file,
                    base_dir,
                    "password of the panel's database",
                );
                ok.then(|| {
                    InventorySource::Vhffs(Box::new(VhffsSource {
                        panel: DbServer {
                            host: raw.host.clone(),
                            socket: raw.socket.clone(),
                            address: raw.address.clone(),
                            port: raw.port,
                            user: raw.user.clone(),
                            password,
                            bin_dir: raw.bin_dir.clone(),
                        },
                        database: raw.database.clone().unwrap_or_else(|| "vhffs".into()),
                        datadir: PathBuf::from(datadir),
                        data_host,
                        target_host: raw.to.host.clone(),
                        target,
                        exclude: raw.exclude.clone(),
                        units: raw.units.iter().copied().collect(),
                    }))
                })
            }
            raw::InventoryKind::Csv => {
                let Some(file) = &raw.file else {
                    self.error(&path, "a `csv` inventory needs `file`");
                    return None;
                };
                let vhffs_only = [
                    ("database", raw.database.is_some()),
                    ("socket", raw.socket.is_some()),
                    ("address", raw.address.is_some()),
                    ("port", raw.port.is_some()),
                    ("user", raw.user.is_some()),
                    ("password_env", raw.password_env.is_some()),
                    ("password_file", raw.password_file.is_some()),
                    ("bin_dir", raw.bin_dir.is_some()),
                    ("datadir", raw.datadir.is_some()),
                    ("data_host", raw.data_host.is_some()),
                    ("units", !raw.units.is_empty()),
                ];
                for (k, set) in vhffs_only {
                    if set {
                        self.warning(
                            &path.key(k),
                            format!("`{k}` is ignored by a `csv` inventory"),
                        );
                    }
                }
                if raw.to.datadir.is_some() || raw.to.path.is_some() {
                    self.warning(
                        &path.key("to"),
                        "a `csv` inventory takes each site's target path from its row",
                    );
                }
                ok.then(|| {
                    InventorySource::Csv(CsvSource {
                        file: resolve(base_dir, file),
                        source_host: raw.host.clone(),
                        target_host: raw.to.host.clone(),
                        exclude: raw.exclude.clone(),
                    })
                })
            }
        }
    }

    fn dns(
        &mut self,
        raw: &raw::RawDns,
        base_dir: &Path,
        inventory: Option<&InventorySource>,
        hosts: &BTreeMap<String, Host>,
    ) -> Option<DnsSpec> {
        let path = NodePath::root().key("dns");
        let pp = path.key("provider");
        let p = &raw.provider;
        let provider = match p.kind {
            DnsProviderKind::Rfc2136 => {
                let server = match &p.server {
                    Some(s) => units::parse_server(s, 53)
                        .map_err(|e| self.error(&pp.key("server"), e).clone())
                        .ok(),
                    None => {
                        self.error(&pp, "an `rfc2136` provider needs `server: ip[:port]`");
                        None
                    }
                };
                let tsig = p.tsig.as_ref().and_then(|t| {
                    let tp = pp.key("tsig");
                    let algorithm = t.algorithm.clone().unwrap_or_else(|| "hmac-sha256".into());
                    if !["hmac-sha256", "hmac-sha512", "hmac-sha384"].contains(&algorithm.as_str()) {
                        self.error(&tp.key("algorithm"), format!("unsupported TSIG algorithm `{algorithm}`: expected `hmac-sha256`, `hmac-sha384` or `hmac-sha512`"));
                    }
                    let secret = self.secret(&tp.key("secret_env"), &t.secret_env, &t.secret_file, base_dir, "TSIG secret");
                    if secret.is_none() {
                        self.error(&tp, "a TSIG key needs `secret_env` or `secret_file`");
                    }
                    Some(Tsig { name: t.name.clone(), algorithm, secret: secret? })
                });
                if p.tsig.is_none() {
                    self.warning(
                        &pp,
                        "no `tsig`: updates will be unsigned, which servers usually refuse",
                    );
                }
                self.unused(
                    &pp,
                    &[
                        ("api_url", p.api_url.is_some()),
                        ("directory", p.directory.is_some()),
                    ],
                    "rfc2136",
                );
                DnsProvider::Rfc2136 {
                    server: server?,
                    tsig,
                }
            }
            DnsProviderKind::Powerdns => {
                let key = self.secret(
                    &pp.key("api_key_env"),
                    &p.api_key_env,
                    &p.api_key_file,
                    base_dir,
                    "PowerDNS API key",
                );
                if key.is_none() {
                    self.error(
                        &pp,
                        "a `powerdns` provider needs `api_key_env` or `api_key_file`",
                    );
                }
                let Some(url) = &p.api_url else {
                    self.error(
                        &pp,
                        "a `powerdns` provider needs `api_url`, such as `http://127.0.0.1:8081`",
                    );
                    return None;
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.error(
                        &pp.key("api_url"),
                        format!("expected an http(s) URL, found `{url}`"),
                    );
                }
                DnsProvider::PowerDns {
                    api_url: url.clone(),
                    api_key: key?,
                }
            }
            DnsProviderKind::Zonefile => {
                let Some(dir) = &p.directory else {
                    self.error(&pp, "a `zonefile` provider needs `directory`");
                    return None;
                };
                let reload = p.reload.as_deref().and_then(|r| {
                    Template::parse(r, &["zone"])
                        .map_err(|e| self.error(&pp.key("reload"), e).clone())
                        .ok()
                });
                DnsProvider::ZoneFile {
                    directory: resolve(base_dir, dir),
                    reload,
                }
            }
            DnsProviderKind::Vhffs => {
                self.unused(
                    &pp,
                    &[
                        ("server", p.server.is_some()),
                        ("api_url", p.api_url.is_some()),
                        ("directory", p.directory.is_some()),
                    ],
                    "vhffs",
                );
                let Some(InventorySource::Vhffs(v)) = inventory else {
                    self.error(
                        &pp,
                        "a `vhffs` provider edits the panel's tables through the `inventory` connection: add `inventory: { kind: vhffs, ... }`",
                    );
                    return None;
                };
                DnsProvider::Vhffs {
                    host: Box::new(hosts.get(&v.panel.host)?.clone()),
                    panel: Box::new(v.panel.clone()),
                    database: v.database.clone(),
                }
            }
        };
        if raw.zones.is_empty() {
            self.error(&path.key("zones"), "expected at least one zone");
        }
        let mut seen = HashMap::new();
        for (i, z) in raw.zones.iter().enumerate() {
            let zone = normalize_zone(z);
            if zone.is_empty() || zone.contains(' ') || zone.contains('/') {
                self.error(
                    &path.key("zones").index(i),
                    format!("`{z}` is not a zone name"),
                );
            }
            if let Some(first) = seen.insert(zone.clone(), i) {
                self.error(
                    &path.key("zones").index(i),
                    format!("zone `{zone}` is listed twice (also at zones[{first}])"),
                );
            }
        }
        let mut resolvers = Vec::new();
        for (i, s) in raw.resolvers.iter().enumerate() {
            match units::parse_server(s, 53) {
                Ok(a) => resolvers.push(a),
                Err(e) => {
                    self.error(&path.key("resolvers").index(i), e);
                }
            }
        }
        let mut nameservers = Vec::new();
        for (i, s) in raw.nameservers.iter().enumerate() {
            match units::parse_server(s, 53) {
                Ok(a) => nameservers.push(a),
                Err(e) => {
                    self.error(&path.key("nameservers").index(i), e);
                }
            }
        }
        if nameservers.is_empty()
            && let DnsProvider::Rfc2136 { server, .. } = &provider
        {
            nameservers.push(*server);
        }
        if nameservers.is_empty() && matches!(provider, DnsProvider::PowerDns { .. }) {
            self.error(&path.key("nameservers"), "list the zone's authoritative servers (`ip[:port]`): they are read and verified, and only an `rfc2136` provider gives one by itself");
        }
        let mut switch = Vec::new();
        for (i, s) in raw.switch.iter().enumerate() {
            let sp = path.key("switch").index(i);
            let from = s.from.parse::<IpAddr>().map_err(|_| {
                self.error(
                    &sp.key("from"),
                    format!("`{}` is not an IP address", s.from),
                )
                .clone()
            });
            let to = s.to.parse::<IpAddr>().map_err(|_| {
                self.error(&sp.key("to"), format!("`{}` is not an IP address", s.to))
                    .clone()
            });
            if let (Ok(f), Ok(t)) = (from, to) {
                if f.is_ipv4() != t.is_ipv4() {
                    self.error(&sp, format!("`{f}` and `{t}` are not of the same family: an A record cannot become AAAA"));
                } else if switch.iter().any(|(o, _)| *o == f) {
                    self.error(&sp.key("from"), format!("`{f}` is switched twice"));
                } else {
                    switch.push((f, t));
                }
            }
        }
        if let Some(0) = raw.lower_ttl {
            self.error(
                &path.key("lower_ttl"),
                "a TTL of 0 disables caching entirely: expected 30 or more",
            );
        }
        let verify_timeout = match &raw.verify_timeout {
            Some(t) => units::parse_duration(t)
                .map_err(|e| self.error(&path.key("verify_timeout"), e).clone())
                .unwrap_or_default(),
            None => Duration::from_secs(120),
        };
        let mut zone_share = ZoneShare::default();
        if let Some(z) = &raw.zone_share {
            if let Some(max) = z.max {
                if (0.0..=1.0).contains(&max) {
                    zone_share.max = max;
                } else {
                    self.error(
                        &path.key("zone_share").key("max"),
                        format!("`{max}` is not a share: expected 0 to 1, such as 0.30"),
                    );
                }
            }
            if let Some(min) = z.min_rrsets {
                zone_share.min_rrsets = min;
            }
        }
        Some(DnsSpec {
            provider,
            zones: raw.zones.iter().map(|z| normalize_zone(z)).collect(),
            nameservers,
            resolvers,
            switch,
            lower_ttl: raw.lower_ttl,
            verify_timeout,
            zone_share,
        })
    }

    fn unused(&mut self, path: &NodePath, keys: &[(&str, bool)], kind: &str) {
        for (k, set) in keys {
            if *set {
                self.warning(
                    &path.key(k),
                    format!("`{k}` is ignored by a `{kind}` provider"),
                );
            }
        }
    }

    fn cutover(&mut self, raw: &raw::RawCutover, base_dir: &Path, plan_name: &str) -> Cutover {
        let path = NodePath::root().key("cutover");
        let batch = match raw.batch {
            Some(0) => {
                self.error(&path.key("batch"), "expected a batch of at least 1 site");
                1
            }
            Some(n) => n as usize,
            None => 50,
        };
        let at = raw.at.as_deref().and_then(|t| {
            units::parse_time(t)
                .map_err(|e| self.error(&path.key("at"), e).clone())
                .ok()
        });
        let hook = |v: &mut Self, name: &str, h: &Option<raw::RawHook>| {
            h.as_ref().and_then(|h| {
                Template::parse(&h.run, HOOK_VARS)
                    .map_err(|e| v.error(&path.key(name).key("run"), e).clone())
                    .ok()
            })
        };
        let freeze = hook(self, "freeze", &raw.freeze);
        let unfreeze = hook(self, "unfreeze", &raw.unfreeze);
        let mut freeze_files = Vec::new();
        for (i, f) in raw.freeze_files.iter().enumerate() {
            let at = path.key("freeze_files").index(i);
            match freeze_file(f) {
                Ok(t) => freeze_files.push(t),
                Err((message, help)) => {
                    self.error(&at, message).help = help;
                }
            }
        }
        if let Some(h) = &raw.freeze {
            let at = path.key("freeze").key("run");
            for named in named_in_site(&h.run) {
                if !covered(&named, &raw.freeze_files) {
                    let issue = Issue::warning(
                        self.tree.locate(&at),
                        &at,
                        format!(
                            "the freeze command names `{{path}}/{named}`, which `cutover.freeze_files` does not declare: a file the freeze creates there is carried to the new side by the final sync (a maintenance marker would be served there)"
                        ),
                    )
                    .with_help(format!(
                        "if the freeze creates it, add `freeze_files: [\"{named}\"]` under `cutover:` (never copied, compared or deleted at the target)"
                    ))
                    .with_code("freeze_file_undeclared");
                    self.issues.push(issue);
                }
            }
        }
        if freeze.is_some() && unfreeze.is_none() {
            self.warning(
                &path.key("freeze"),
                "a `freeze` without `unfreeze`: a rollback cannot reopen the old site by itself",
            );
        }
        let probe = raw.probe.as_ref().and_then(|p| {
            let pp = path.key("probe");
            let url = match &p.http {
                Some(u) => match Template::parse(u, PROBE_VARS) {
                    Ok(t) if u.starts_with("http://") || u.starts_with("https://") => Some(t),
                    Ok(_) => {
                        self.error(
                            &pp.key("http"),
                            format!("expected an http(s) URL template, found `{u}`"),
                        );
                        None
                    }
                    Err(e) => {
                        self.error(&pp.key("http"), e);
                        None
                    }
                },
                None => {
                    self.error(&pp, "a probe needs `http`, such as `https://{domain}/`");
                    None
                }
            };
            for (i, code) in p.expect.iter().enumerate() {
                if !(100..=599).contains(code) {
                    self.error(
                        &pp.key("expect").index(i),
                        format!("`{code}` is not an HTTP status"),
                    );
                }
            }
            let timeout = match &p.timeout {
                Some(t) => units::parse_duration(t)
                    .map_err(|e| self.error(&pp.key("timeout"), e).clone())
                    .unwrap_or_default(),
                None => Duration::from_secs(10),
            };
            let mut banners = Vec::new();
            for (i, b) in p.banners.iter().enumerate() {
                let at = pp.key("banners").index(i);
                match Template::parse(b, PROBE_VARS) {
                    Ok(t) if super::banner::parse_banner_url(b).is_ok() => {
                        banners.push(t);
                    }
                    Ok(_) => {
                        self.error(
                            &at,
                            format!(
                                "expected `smtp://HOST[:PORT]` or `imap://HOST[:PORT]`, found `{b}`"
                            ),
                        );
                    }
                    Err(e) => {
                        self.error(&at, e);
                    }
                }
            }
            Some(Probe {
                ca_file: p.ca_file.as_ref().map(|f| resolve(base_dir, f)),
                compare_body: p.compare_body.unwrap_or(false),
                banners,
                url: url?,
                expect: if p.expect.is_empty() {
                    vec![200]
                } else {
                    p.expect.clone()
                },
                timeout,
                compare_with_old: p.compare_with_old.unwrap_or(true),
            })
        });
        let tls = match &raw.tls {
            None => CutoverTls::default(),
            Some(t) => {
                let tp = path.key("tls");
                let discover = t
                    .discover
                    .as_ref()
                    .map(|config| self.tls_discovery(&tp, t, config));
                let files = if discover.is_some() {
                    if t.cert.is_some() || t.key.is_some() {
                        self.error(
                            &tp.key("discover"),
                            "`discover` finds the files that `cert` and `key` name: give one or the other",
                        );
                    }
                    None
                } else {
                    self.tls_files(
                        &tp,
                        [
                            t.cert.as_ref(),
                            t.key.as_ref(),
                            t.target_cert.as_ref(),
                            t.target_key.as_ref(),
                        ],
                    )
                };
                let min_validity = match &t.min_validity {
                    Some(d) => units::parse_duration(d)
                        .map_err(|e| self.error(&tp.key("min_validity"), e).clone())
                        .unwrap_or(CutoverTls::default().min_validity),
                    None => CutoverTls::default().min_validity,
                };
                CutoverTls {
                    files,
                    discover: discover.flatten(),
                    min_validity,
                }
            }
        };
        Cutover {
            batch,
            at,
            freeze,
            unfreeze,
            freeze_files,
            probe,
            on_failure: raw.on_failure.unwrap_or(OnFailure::Rollback),
            tls,
            forward: raw
                .forward
                .as_ref()
                .and_then(|f| self.forward(f, plan_name)),
        }
    }

    /// `cutover.forward`: every address and the margin read, each mistake located.
    fn forward(
        &mut self,
        raw: &raw::RawForward,
        plan_name: &str,
    ) -> Option<crate::plan::model::Forward> {
        let path = NodePath::root().key("cutover").key("forward");
        let addr = |v: &mut Self, side: &str, proto: &str, text: &str| {
            text.parse::<std::net::SocketAddr>()
                .map_err(|_| {
                    v.error(
                        &path.key(side).key(proto),
                        format!("expected ADDRESS:PORT (such as `0.0.0.0:80` or `[::]:443`), not `{text}`"),
                    )
                    .clone()
                })
                .ok()
        };
        let listen_http = addr(self, "listen", "http", &raw.listen.http);
        let listen_https = addr(self, "listen", "https", &raw.listen.https);
        let local_http = addr(self, "local", "http", &raw.local.http);
        let local_https = addr(self, "local", "https", &raw.local.https);
        for (proto, l, f) in [
            ("http", listen_http, local_http),
            ("https", listen_https, local_https),
        ] {
            if l.is_some() && l == f {
                self.error(
                    &path.key("local").key(proto),
                    "the old web server cannot listen where the forwarder does: give it another port",
                );
            }
        }
        let margin = match &raw.margin {
            Some(m) => units::parse_duration(m)
                .map_err(|e| self.error(&path.key("margin"), e).clone())
                .ok(),
            None => Some(std::time::Duration::from_secs(300)),
        };
        let dir = match &raw.dir {
            Some(d) if !d.starts_with('/') => {
                self.error(
                    &path.key("dir"),
                    format!("expected an absolute path, not `{d}`"),
                );
                return None;
            }
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(format!("/var/lib/transhumance/forward/{plan_name}")),
        };
        let to = raw.to_ports.clone().unwrap_or_default();
        let mut mail = Vec::new();
        let mut taken: Vec<(std::net::SocketAddr, String)> =
            [(listen_http, "listen.http"), (listen_https, "listen.https")]
                .into_iter()
                .filter_map(|(a, n)| Some((a?, n.to_string())))
                .collect();
        for (name, l) in raw.mail.iter().flat_map(|m| m.named()) {
            let (_, port, routing) = crate::plan::model::MAIL_PROTOCOLS
                .iter()
                .find(|p| p.0 == name)
                .copied()
                .expect("every named listener is a known protocol");
            let at = path.key("mail").key(name);
            let parse = |v: &mut Self, key: &str, text: &str| {
                text.parse::<std::net::SocketAddr>()
                    .map_err(|_| {
                        v.error(
                            &at.key(key),
                            format!(
                                "expected ADDRESS:PORT (such as `0.0.0.0:{port}`), not `{text}`"
                            ),
                        )
                        .clone()
                    })
                    .ok()
            };
            let (listen, local) = (
                parse(self, "listen", &l.listen),
                parse(self, "local", &l.local),
            );
            if listen.is_some() && listen == local {
                self.error(
                    &at.key("local"),
                    "the old mail server cannot listen where the forwarder does: give it another port",
                );
            }
            if let Some(a) = listen {
                if let Some((_, other)) = taken.iter().find(|(t, _)| *t == a) {
                    self.error(
                        &at.key("listen"),
                        format!("`{a}` is already where the forwarder listens for {other}"),
                    );
                }
                taken.push((a, format!("mail.{name}")));
            }
            if let (Some(listen), Some(local)) = (listen, local) {
                mail.push(crate::plan::model::MailForward {
                    protocol: name.to_string(),
                    listen,
                    local,
                    to_port: l.to_port.unwrap_or(port),
                    routing,
                });
            }
        }
        Some(crate::plan::model::Forward {
            listen_http: listen_http?,
            listen_https: listen_https?,
            local_http: local_http?,
            local_https: local_https?,
            to_http: to.http.unwrap_or(80),
            to_https: to.https.unwrap_or(443),
            margin: margin?,
            dir,
            mail,
        })
    }
}

/// A `freeze_files` entry: a path relative to the site's directory, `{name}` allowed; the
/// message and a hint when it is not.
fn freeze_file(f: &str) -> Result<Template, (String, Option<String>)> {
    let bare = f.trim_end_matches('/');
    if let Some(rest) = bare.strip_prefix("{path}/") {
        return Err((
            format!("`{f}`: freeze files are relative to the site's directory"),
            Some(format!("write `{rest}`")),
        ));
    }
    let wrong = if bare.is_empty() {
        Some("an empty path")
    } else if bare.starts_with('/') {
        Some("an absolute path")
    } else if bare
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        Some("`.`, `..` or an empty component")
    } else {
        None
    };
    if let Some(what) = wrong {
        return Err((
            format!(
                "`{f}` is {what}: expected a path relative to the site's directory, such as `.maintenance`"
            ),
            None,
        ));
    }
    Template::parse(bare, SITE_VARS).map_err(|e| (e, None))
}

/// The paths a freeze command names inside the site's directory (`{path}/X`), as written.
fn named_in_site(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = command;
    while let Some(i) = rest.find("{path}/") {
        // `{{path}}` is a literal brace in a template, not the variable.
        let escaped = rest[..i].ends_with('{');
        rest = &rest[i + "{path}/".len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "'\";&|<>()`$".contains(c))
            .unwrap_or(rest.len());
        let named = rest[..end].trim_start_matches("./").trim_end_matches('/');
        // A glob names no file of its own: nothing to declare.
        if !escaped && !named.is_empty() && !named.contains(['*', '?', '[']) {
            out.push(named.to_string());
        }
    }
    out
}

/// Whether `named` is a declared freeze file or lies under one.
fn covered(named: &str, declared: &[String]) -> bool {
    declared.iter().any(|d| {
        let d = d.trim_end_matches('/');
        named == d || named.strip_prefix(d).is_some_and(|r| r.starts_with('/'))
    })
}

/// Zone names are compared without the trailing dot and in lower case.
pub fn normalize_zone(z: &str) -> String {
    z.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let expanded = match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

/// Removes `.` and `..` components without touching the file system (the path may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether one directory contains the other (or they are the same), compared by components.
pub fn paths_overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[cfg(test)]
mod tests {
    use super::super::diagnostic::Severity;
    use super::*;

    fn errors(text: &str) -> Vec<Issue> {
        match parse(text, "plan.yaml", Path::new("plan.yaml"), Path::new("/tmp")) {
            Ok(l) => l.warnings,
            Err(PlanError::Invalid { issues, .. }) => issues,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let issues = errors(
            "version: 1\nname: t\nhosts:\n  web: { ssh: 'root@web:99999' }\nsites:\n  - from: { host: wbe, glob: /var/www/*/ }\n    to: { host: local, path: /srv/www/ }\n",
        );
        let msgs: Vec<_> = issues
            .iter()
            .map(|i| (i.loc.line, i.message.clone()))
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
        assert!(
            msgs[0].0 == 4 && msgs[0].1.contains("not a port"),
            "{msgs:#?}"
        );
        assert!(
            msgs[1].0 == 6 && msgs[1].1.contains("unknown host `wbe`"),
            "{msgs:#?}"
        );
        assert_eq!(
            issues[1].help.as_deref(),
            Some("did you mean `web`? hosts are defined under `hosts:`")
        );
        assert!(
            msgs[2].0 == 7 && msgs[2].1.contains("same directory"),
            "{msgs:#?}"
        );
    }

    #[test]
    fn overlapping_explicit_targets_are_refused() {
        let issues = errors(
            "version: 1\nname: t\nsites:\n  - { name: a, from: { host: local, path: /a }, to: { host: local, path: /srv/a } }\n  - { name: b, from: { host: local, path: /b }, to: { host: local, path: /srv/a/b } }\n",
        );
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert!(issues[0].message.contains("overlaps"));
        assert_eq!(issues[0].loc.line, 5);
    }

    #[test]
    fn unset_secret_is_a_warning_only() {
        let issues = errors(
            "version: 1\nname: t\ndatabases:\n  - engine: mariadb\n    from: { host: local, password_env: TRANSHUMANCE_TEST_UNSET_PW }\n    to: { host: local }\n",
        );
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].severity,
            super::super::diagnostic::Severity::Warning
        );
        assert!(issues[0].message.contains("TRANSHUMANCE_TEST_UNSET_PW"));
    }

    #[test]
    fn the_journal_in_postgresql_is_checked_where_it_is_written() {
        let p = plan(
            "version: 1\nname: t\nstate: { postgres: \"host=db.example dbname=moves user=migrator\", password_file: pw, lease: 5s }\n",
        );
        assert_eq!(
            p.state,
            StateStore::Postgres(PostgresState {
                conninfo: "host=db.example dbname=moves user=migrator".into(),
                password: Some(SecretRef::File("/tmp/pw".into())),
                lease: Duration::from_secs(5),
            })
        );
        assert!(
            p.secret_refs()
                .contains(&&SecretRef::File("/tmp/pw".into()))
        );
        assert_eq!(plan("version: 1\nname: t\n").state, StateStore::File);
        let issues = errors(
            "version: 1\nname: t\nstate:\n  postgres: \"postgresql://migrator:hunter2@db/moves\"\n  lease: 300ms\n  passwd_env: X\n",
        );
        let found: Vec<(u32, u32, &str)> = issues
            .iter()
            .map(|i| (i.loc.line, i.loc.column, i.message.as_str()))
            .collect();
        assert_eq!(found.len(), 3, "every problem at once: {found:#?}");
        assert_eq!(found[2], (6, 3, "unknown key `passwd_env` in `state`"));
        assert!(
            found[0].0 == 4 && found[0].1 == 13 && found[0].2.contains("password_env"),
            "{found:#?}"
        );
        assert!(
            issues.iter().all(|i| !i.message.contains("hunter2")),
            "the password is never repeated"
        );
        assert!(
            found[1].0 == 5 && found[1].2.contains("under 1s"),
            "{found:#?}"
        );
        let issues = errors("version: 1\nname: t\nstate: { postgres: \"dbname=moves\" }\n");
        assert!(
            issues.len() == 1 && issues[0].message.contains("no `host=`"),
            "{issues:#?}"
        );
    }

    #[test]
    fn the_journal_tls_settings_are_checked_where_they_are_written() {
        let issues = errors(
            "version: 1\nname: t\nstate:\n  postgres: \"host=db sslmode=verify sslrootcert=ca.pem\"\n",
        );
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!((issues[0].loc.line, issues[0].loc.column), (4, 13));
        assert!(
            issues[0]
                .message
                .contains("`sslmode=verify`: expected disable"),
            "{issues:#?}"
        );
        // Good settings, a CA file not on this machine: a warning, not an error.
        let warnings = errors(
            "version: 1\nname: t\nstate: { postgres: \"postgresql://m@db/moves?sslmode=verify-full&sslrootcert=missing-ca.pem\" }\n",
        );
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0]
                .message
                .contains("`sslrootcert` `/tmp/missing-ca.pem` cannot be read"),
            "{warnings:#?}"
        );
    }

    fn plan(text: &str) -> Plan {
        parse(text, "plan.yaml", Path::new("plan.yaml"), Path::new("/tmp"))
            .unwrap()
            .plan
    }

    #[test]
    fn the_forwarder_keys_are_read_and_their_mistakes_located() {
        let p = plan(
            "version: 1\nname: t\ncutover:\n  forward:\n    listen: { http: \"0.0.0.0:80\", https: \"[::]:443\" }\n    local: { http: \"127.0.0.1:8080\", https: \"127.0.0.1:8443\" }\n    margin: 10m\n",
        );
        let f = p.cutover.forward.unwrap();
        assert_eq!(f.listen_https, "[::]:443".parse().unwrap());
        assert_eq!((f.to_http, f.to_https), (80, 443));
        assert_eq!(f.margin, Duration::from_secs(600));
        assert_eq!(f.dir, PathBuf::from("/var/lib/transhumance/forward/t"));
        let issues = errors(
            "version: 1\nname: t\ncutover:\n  forward:\n    listen: { http: \"80\", https: \"0.0.0.0:443\" }\n    local: { http: \"127.0.0.1:8080\", https: \"0.0.0.0:443\" }\n    margin: soon\n    dir: fwd\n",
        );
        let found: Vec<(u32, u32, &str)> = issues
            .iter()
            .map(|i| (i.loc.line, i.loc.column, i.message.as_str()))
            .collect();
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].0 == 5 && found[0].1 == 21 && found[0].2.contains("ADDRESS:PORT"),
            "{found:#?}"
        );
        assert!(
            found[1].0 == 6
                && found[1]
                    .2
                    .contains("cannot listen where the forwarder does"),
            "{found:#?}"
        );
        assert_eq!(found[2].0, 7, "{found:#?}");
        assert!(
            found[3].0 == 8 && found[3].2.contains("absolute"),
            "{found:#?}"
        );
    }

    #[test]
    fn the_forwarders_mail_ports_are_read_and_unknown_protocols_refused() {
        let p = plan(
            "version: 1\nname: t\ncutover:\n  forward:\n    listen: { http: \"0.0.0.0:80\", https: \"0.0.0.0:443\" }\n    local: { http: \"127.0.0.1:8080\", https: \"127.0.0.1:8443\" }\n    mail:\n      imaps: { listen: \"0.0.0.0:993\", local: \"127.0.0.1:1993\" }\n      smtp: { listen: \"0.0.0.0:25\", local: \"127.0.0.1:2525\", to_port: 2526 }\n",
        );
        let f = p.cutover.forward.unwrap();
        let got: Vec<(&str, u16, crate::plan::MailRouting)> = f
            .mail
            .iter()
            .map(|m| (m.protocol.as_str(), m.to_port, m.routing))
            .collect();
        assert_eq!(
            got,
            [
                ("smtp", 2526, crate::plan::MailRouting::WholePort),
                ("imaps", 993, crate::plan::MailRouting::Sni)
            ]
        );
        assert!(f.has_whole_ports());
        let issues = errors(
            "version: 1\nname: t\ncutover:\n  forward:\n    listen: { http: \"0.0.0.0:80\", https: \"0.0.0.0:443\" }\n    local: { http: \"127.0.0.1:8080\", https: \"127.0.0.1:8443\" }\n    mail:\n      smtp: { listen: \"0.0.0.0:443\", local: \"25\" }\n",
        );
        let found: Vec<(u32, &str)> = issues
            .iter()
            .map(|i| (i.loc.line, i.message.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found.iter().all(|f| f.0 == 8), "{found:#?}");
        assert!(
            found.iter().any(|f| f.1.contains("ADDRESS:PORT")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|f| f.1.contains("listen.https")),
            "{found:#?}"
        );
        let issues = errors(
            "version: 1\nname: t\ncutover:\n  forward:\n    listen: { http: \"0.0.0.0:80\", https: \"0.0.0.0:443\" }\n    local: { http: \"127.0.0.1:8080\", https: \"127.0.0.1:8443\" }\n    mail:\n      lmtp: { listen: \"0.0.0.0:24\", local: \"127.0.0.1:2424\" }\n",
        );
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!(issues[0].loc.line, 8, "{issues:#?}");
        for known in [
            "smtp",
            "submission",
            "smtps",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
        ] {
            let help = issues[0].help.as_deref().unwrap_or_default();
            assert!(help.contains(&format!("`{known}`")), "{issues:#?}");
        }
    }

    const TWO_SITES: &str = "sites:\n  - { name: a, from: { host: local, path: /a }, to: { host: local, path: /srv/a } }\n  - { name: b, devices: refuse, from: { host: local, path: /b }, to: { host: local, path: /srv/b } }\n";

    #[test]
    fn the_direct_path_keys_are_read_and_their_mistakes_located() {
        let hosts = "hosts:\n  old: { ssh: root@old.example }\n  new:\n    ssh: root@new.example:2222\n    direct: { address: \"10.0.0.5:22\", authorized_keys: /etc/ssh/keys/root }\n";
        let p = plan(&format!(
            "version: 1\nname: t\ndefaults: {{ transfer: relay }}\n{hosts}"
        ));
        assert_eq!(
            p.defaults.transfer,
            Some(crate::plan::raw::TransferMode::Relay)
        );
        assert_eq!(
            p.direct["new"],
            DirectHost {
                address: Some(("10.0.0.5".into(), Some(22))),
                authorized_keys: "/etc/ssh/keys/root".into()
            }
        );
        assert_eq!(p.direct["old"], DirectHost::default());
        assert!(!p.direct.contains_key("local"));
        let p = plan(&format!("version: 1\nname: t\n{hosts}"));
        assert_eq!(
            p.defaults.transfer, None,
            "unset: direct where it can be had"
        );
        let issues = errors("version: 1\nname: t\ndefaults:\n  transfer: sometimes\n");
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!((issues[0].loc.line, issues[0].loc.column), (4, 13));
        let issues = errors(
            "version: 1\nname: t\nhosts:\n  a: { local: true, direct: { address: x } }\n  b:\n    ssh: b.example\n    direct:\n      address: \"root@10.0.0.5\"\n      authorized_keys: keys/root\n",
        );
        let messages: Vec<(u32, &str)> = issues
            .iter()
            .map(|i| (i.loc.line, i.message.as_str()))
            .collect();
        assert_eq!(issues.len(), 3, "{messages:#?}");
        assert!(
            messages
                .iter()
                .any(|(l, m)| *l == 4 && m.contains("not reached over ssh")),
            "{messages:#?}"
        );
        assert!(
            messages
                .iter()
                .any(|(l, m)| *l == 8 && m.contains("host[:port]")),
            "{messages:#?}"
        );
        assert!(
            messages
                .iter()
                .any(|(l, m)| *l == 9 && m.contains("absolute")),
            "{messages:#?}"
        );
    }

    #[test]
    fn devices_are_refused_unless_a_plan_key_keeps_them() {
        let p = plan(&format!("version: 1\nname: t\n{TWO_SITES}"));
        assert_eq!(p.defaults.devices, DevicePolicy::Refuse);
        assert_eq!(p.site_rules[0].devices, DevicePolicy::Refuse);
        let p = plan(&format!(
            "version: 1\nname: t\ndefaults: {{ devices: keep }}\n{TWO_SITES}"
        ));
        assert_eq!(p.site_rules[0].devices, DevicePolicy::Keep);
        assert_eq!(p.site_rules[1].devices, DevicePolicy::Refuse, "a rule says");
        let issues = errors(&format!(
            "version: 1\nname: t\ndefaults:\n  devices: maybe\n{TWO_SITES}"
        ));
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert!(issues[0].is_error());
        assert_eq!((issues[0].loc.line, issues[0].loc.column), (4, 12));
        assert!(issues[0].message.contains("keep"), "{issues:#?}");
    }

    #[test]
    fn acls_and_xattrs_are_kept_unless_a_plan_key_leaves_them_out() {
        let keep = |p: &Plan, i: usize| (p.site_rules[i].acls, p.site_rules[i].xattrs);
        let p = plan(&format!("version: 1\nname: t\n{TWO_SITES}"));
        assert_eq!((keep(&p, 0), keep(&p, 1)), ((true, true), (true, true)));
        let p = plan(
            "version: 1\nname: t\ndefaults: { acls: false }\nsites:\n  - { name: a, xattrs: false, from: { host: local, path: /a }, to: { host: local, path: /srv/a } }\n  - { name: b, acls: true, from: { host: local, path: /b }, to: { host: local, path: /srv/b } }\n",
        );
        assert_eq!(
            keep(&p, 0),
            (false, false),
            "the default, and the rule's own"
        );
        assert_eq!(keep(&p, 1), (true, true), "a rule says");
    }

    const FREEZE: &str = "version: 1\nname: t\ncutover:\n  freeze: { run: \"touch {path}/.maintenance && echo 1 > '{path}/run/{name}.lock'; cp {path}/*.html /tmp\" }\n";

    /// Issue 13: the README's own freeze shipped its marker to the new side; a marker the
    /// plan does not declare is a warning placed on the command, one per path it names.
    #[test]
    fn a_freeze_naming_undeclared_files_in_the_site_is_a_warning() {
        let issues = errors(FREEZE);
        let undeclared: Vec<_> = issues
            .iter()
            .filter(|i| i.code == Some("freeze_file_undeclared"))
            .collect();
        assert_eq!(undeclared.len(), 2, "{issues:#?}");
        assert_eq!(undeclared[0].severity, Severity::Warning);
        assert_eq!(
            (undeclared[0].loc.line, undeclared[0].path.as_str()),
            (4, "cutover.freeze.run")
        );
        assert!(undeclared[0].loc.column > 0);
        assert!(undeclared[0].message.contains("`{path}/.maintenance`"));
        assert!(undeclared[1].message.contains("`{path}/run/{name}.lock`"));
        assert!(
            undeclared[0]
                .help
                .as_deref()
                .is_some_and(|h| h.contains("freeze_files: [\".maintenance\"]"))
        );
        // Declared (a directory covers what is under it): no warning, and the plan has them.
        let text = format!("{FREEZE}  freeze_files: [\".maintenance\", \"run/\"]\n");
        assert!(
            !errors(&text)
                .iter()
                .any(|i| i.code == Some("freeze_file_undeclared")),
            "{:#?}",
            errors(&text)
        );
        let p = plan(&text);
        let files: Vec<String> = p
            .cutover
            .freeze_files
            .iter()
            .map(|f| f.render_name("x"))
            .collect();
        assert_eq!(files, vec![".maintenance", "run"]);
    }

    #[test]
    fn freeze_files_are_relative_paths_in_the_site() {
        let issues = errors(
            "version: 1\nname: t\ncutover:\n  freeze_files: [\"{path}/.maintenance\", /etc/x, \"a/../b\", \"{domain}\", \"{name}.lock\"]\n",
        );
        let msgs: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (i.path.as_str(), i.message.as_str()))
            .collect();
        assert_eq!(issues.len(), 4, "{msgs:#?}");
        assert!(
            msgs[0].1.contains("relative to the site's directory"),
            "{msgs:#?}"
        );
        assert_eq!(issues[0].help.as_deref(), Some("write `.maintenance`"));
        assert!(msgs[1].1.contains("an absolute path"), "{msgs:#?}");
        assert!(msgs[2].1.contains("`..`"), "{msgs:#?}");
        assert!(
            msgs[3].1.contains("unknown variable `{domain}`"),
            "{msgs:#?}"
        );
        assert_eq!(msgs[3].0, "cutover.freeze_files[3]");
    }

    /// Issue 15: certificate files per site (its rule's, else `cutover.tls`'s), templates
    /// rendered per site, targets defaulting to the sources, the margin, the probe's CA file.
    #[test]
    fn certificate_files_and_margin_are_plan_keys() {
        let text = "version: 1\nname: t\nsites:\n  - { name: a, from: { host: local, path: /a }, to: { host: local, path: /srv/a }, domains: [a.test] }\n  - name: b\n    from: { host: local, path: /b }\n    to: { host: local, path: /srv/b }\n    tls: { cert: /etc/b.pem, key: /etc/b.key, target_key: /etc/private/b.key }\n\
cutover:\n  probe: { http: \"https://{domain}/\", ca_file: ca.pem }\n  tls:\n    cert: \"/etc/ssl/{name}/fullchain.pem\"\n    key: \"/etc/ssl/{domain}/privkey.pem\"\n    target_cert: \"/srv/ssl/{name}.pem\"\n    min_validity: 30d\n";
        let p = plan(text);
        assert_eq!(p.cutover.tls.min_validity, Duration::from_secs(30 * 86_400));
        assert_eq!(
            p.cutover.probe.as_ref().unwrap().ca_file.as_deref(),
            Some(Path::new("/tmp/ca.pem"))
        );
        let site = |rule: usize, name: &str| Site {
            kind: crate::plan::UnitKind::Web,
            relink: None,
            name: name.into(),
            rule,
            source_host: "local".into(),
            source_path: PathBuf::from("/a"),
            target_host: "local".into(),
            target_path: PathBuf::from("/srv/a"),
            domains: vec![format!("{name}.test")],
            databases: Vec::new(),
            exclude: Vec::new(),
            owner: None,
            marks: Vec::new(),
            tls: None,
        };
        let a = p.tls_files(&site(0, "a")).unwrap();
        assert_eq!(a.cert, Path::new("/etc/ssl/a/fullchain.pem"));
        assert_eq!(a.key, Path::new("/etc/ssl/a.test/privkey.pem"));
        assert_eq!(a.target_cert, Path::new("/srv/ssl/a.pem"));
        assert_eq!(
            a.target_key, a.key,
            "the target defaults to the source path"
        );
        let b = p.tls_files(&site(1, "b")).unwrap();
        assert_eq!(b.cert, Path::new("/etc/b.pem"));
        assert_eq!(b.target_cert, Path::new("/etc/b.pem"));
        assert_eq!(b.target_key, Path::new("/etc/private/b.key"));
        assert!(
            p.tls_files(&site(crate::plan::INVENTORY_RULE, "inv"))
                .is_some_and(|f| f.cert == Path::new("/etc/ssl/inv/fullchain.pem")),
            "inventory sites take `cutover.tls`"
        );
        assert_eq!(
            plan("version: 1\nname: t\n").cutover.tls.min_validity,
            Duration::from_secs(14 * 86_400)
        );

        let issues = errors(
            "version: 1\nname: t\ncutover:\n  tls: { cert: relative.pem, key: \"/k/{nmae}\", min_validity: soon }\n",
        );
        let msgs: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (i.path.as_str(), i.message.as_str()))
            .collect();
        assert!(
            msgs.contains(&(
                "cutover.tls.cert",
                "expected an absolute path, found `relative.pem`"
            )),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|(p, m)| *p == "cutover.tls.key" && m.contains("unknown variable `{nmae}`")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter().any(|(p, _)| *p == "cutover.tls.min_validity"),
            "{msgs:#?}"
        );
        let issues = errors("version: 1\nname: t\ncutover:\n  tls: { cert: /c.pem }\n");
        assert!(
            issues
                .iter()
                .any(|i| i.is_error() && i.message.contains("both `cert` and `key`")),
            "{issues:#?}"
        );
        // Carried but never checked: a warning.
        let issues =
            errors("version: 1\nname: t\ncutover:\n  tls: { cert: /c.pem, key: /k.pem }\n");
        assert!(
            issues
                .iter()
                .any(|i| !i.is_error() && i.message.contains("not checked before the switch")),
            "{issues:#?}"
        );
    }

    #[test]
    fn connected_clients_policy_and_timeout() {
        let rule = |extra: &str| {
            format!(
                "version: 1\nname: t\ndatabases:\n  - engine: postgres\n    from: {{ host: local }}\n    to: {{ host: local }}\n{extra}"
            )
        };
        let plan = parse(
            &rule(""),
            "plan.yaml",
            Path::new("plan.yaml"),
            Path::new("/tmp"),
        )
        .unwrap()
        .plan;
        assert_eq!(plan.databases[0].connected_clients, ConnectedClients::Wait);
        assert_eq!(
            plan.databases[0].connected_clients_timeout,
            Duration::from_secs(30)
        );
        let plan = parse(
            &rule("    connected_clients: terminate\n    connected_clients_timeout: 2m\n"),
            "plan.yaml",
            Path::new("plan.yaml"),
            Path::new("/tmp"),
        )
        .unwrap()
        .plan;
        assert_eq!(
            plan.databases[0].connected_clients,
            ConnectedClients::Terminate
        );
        assert_eq!(
            plan.databases[0].connected_clients_timeout,
            Duration::from_secs(120)
        );
        let issues = errors(&rule("    connected_clients_timeout: soon\n"));
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!(issues[0].loc.line, 7);
    }

    #[test]
    fn database_mode_defaults_to_dump_and_is_checked() {
        let rule = |extra: &str| {
            format!(
                "version: 1\nname: t\ndatabases:\n  - engine: mariadb\n    from: {{ host: local }}\n    to: {{ host: local }}\n{extra}"
            )
        };
        let mode = |extra: &str| {
            parse(
                &rule(extra),
                "plan.yaml",
                Path::new("plan.yaml"),
                Path::new("/tmp"),
            )
            .unwrap()
            .plan
            .databases[0]
                .mode
        };
        assert_eq!(mode(""), crate::plan::raw::DbMode::Dump);
        assert_eq!(
            mode("    mode: replicate\n"),
            crate::plan::raw::DbMode::Replicate
        );
        let issues = errors(&rule("    mode: mirror\n"));
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!(
            (issues[0].loc.line, issues[0].loc.column),
            (7, 11),
            "{issues:#?}"
        );
        assert!(issues[0].message.contains("mirror"), "{issues:#?}");
    }

    #[test]
    fn replicate_wait_defaults_to_five_minutes_and_is_checked_where_it_stands() {
        let rule = |extra: &str| {
            format!(
                "version: 1\nname: t\ndatabases:\n  - engine: mariadb\n    from: {{ host: local }}\n    to: {{ host: local }}\n{extra}"
            )
        };
        let wait = |extra: &str| {
            parse(
                &rule(extra),
                "plan.yaml",
                Path::new("plan.yaml"),
                Path::new("/tmp"),
            )
            .unwrap()
            .plan
            .databases[0]
                .replicate_wait
        };
        assert_eq!(wait("    mode: replicate\n"), Duration::from_secs(300));
        assert_eq!(
            wait("    mode: replicate\n    replicate_wait: 20s\n"),
            Duration::from_secs(20)
        );
        for (extra, says) in [
            ("    mode: replicate\n    replicate_wait: soon\n", "soon"),
            ("    mode: replicate\n    replicate_wait: 0s\n", "at least"),
            ("    replicate_wait: 1m\n", "mode: replicate"),
        ] {
            let issues = errors(&rule(extra));
            assert_eq!(issues.len(), 1, "{extra}: {issues:#?}");
            let line = 6 + extra.matches('\n').count() as u32;
            assert_eq!(
                (issues[0].loc.line, issues[0].loc.column),
                (line, 21),
                "{extra}: {issues:#?}"
            );
            assert!(issues[0].message.contains(says), "{issues:#?}");
        }
    }

    #[test]
    fn yaml_syntax_errors_have_a_place() {
        let issues = errors("version: 1\nname: [unclosed\n");
        assert_eq!(issues.len(), 1);
        assert!(issues[0].loc.line >= 2, "{issues:#?}");
    }
}
