//! Terraform's saved plan, for the cutover: `plan PLAN --out FILE` keeps what the dry run
//! reviewed (BLAKE3 of the plan file and of the files it includes, the journal's state, the
//! sites, and the DNS changes with the values read from the servers), and `cutover PLAN --plan
//! FILE` applies exactly that or refuses (`plan-changed`) saying what changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dry_run::Reviewed;
use super::ledger::{CheckVerdict, Entry};
use crate::check::{Check, Finding};
use crate::dns::cutover::Change;
use crate::dns::provider::{RrKey, RrState};
use crate::plan::{Loaded, MailRule, Plan, Site};

/// What the file says it is, so a report or another JSON file is not taken for a saved plan.
pub const FORMAT: &str = "transhumance saved plan";
pub const VERSION: u32 = 1;

/// A reviewed plan, as `plan --out` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The transhumance that computed it.
    pub created_by: String,
    pub plan_name: String,
    /// BLAKE3 of the plan file (first) and of each file it includes.
    pub files: Vec<FileDigest>,
    /// One digest of them all, to quote.
    pub checksum: String,
    /// The journal the plan was computed on.
    pub journal: JournalState,
    /// Every site the plan expanded to, in order (the batches are cut from this list).
    pub sites: Vec<SavedSite>,
    /// The RRsets the sites' switch would change, with the values and TTL read then.
    pub dns: Vec<Change>,
    /// The dry run's report as it was reviewed (its JSON).
    pub report: serde_json::Value,
}

/// One file the plan is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    /// Hex BLAKE3, or `unreadable: REASON`.
    pub blake3: String,
}

/// The journal's state: its entries, refused checks left out (a refusal changes nothing, and
/// a cutover the saved plan refuses journals one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    pub entries: u64,
    pub blake3: String,
}

/// A site as the cutover would take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSite {
    pub name: String,
    /// `host:path`.
    pub source: String,
    pub target: String,
    pub domains: Vec<String>,
    pub databases: Vec<String>,
}

impl SavedSite {
    pub fn of(site: &Site) -> SavedSite {
        SavedSite {
            name: site.name.clone(),
            source: format!("{}:{}", site.source_host, site.source_path.display()),
            target: format!("{}:{}", site.target_host, site.target_path.display()),
            domains: site.domains.clone(),
            databases: site.databases.iter().map(|d| d.name.clone()).collect(),
        }
    }
}

/// The plan file, then the files it includes (a CSV inventory, IMAP users files, CA files);
/// secret files are left out: a digest of a secret is not for a file people pass around.
pub fn plan_files(plan: &Plan) -> Vec<PathBuf> {
    let mut files = vec![plan.file.clone()];
    if let Some(crate::plan::InventorySource::Csv(csv)) = &plan.inventory {
        files.push(csv.file.clone());
    }
    for rule in &plan.mail {
        if let MailRule::Imap {
            users_file,
            from,
            to,
            ..
        } = rule
        {
            files.push(users_file.clone());
            files.extend(from.ca_file.iter().chain(&to.ca_file).cloned());
        }
    }
    if let Some(probe) = &plan.cutover.probe {
        files.extend(probe.ca_file.iter().cloned());
    }
    files.dedup();
    files
}

/// The BLAKE3 of each file of `plan_files`.
pub fn digests(plan: &Plan) -> Vec<FileDigest> {
    plan_files(plan)
        .iter()
        .map(|f| {
            let path = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
            FileDigest {
                path: path.display().to_string(),
                blake3: match std::fs::read(&path) {
                    Ok(bytes) => blake3::hash(&bytes).to_hex().to_string(),
                    Err(e) => format!("unreadable: {e}"),
                },
            }
        })
        .collect()
}

fn checksum_of(files: &[FileDigest]) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update(b"\0");
        h.update(f.blake3.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The entries that make the journal's state: all but refused checks.
fn state_entries(entries: &[Entry]) -> impl Iterator<Item = &Entry> {
    entries.iter().filter(|e| {
        !matches!(
            e,
            Entry::Check {
                verdict: CheckVerdict::Refused,
                ..
            }
        )
    })
}

fn hash_entries<'a>(entries: impl Iterator<Item = &'a Entry>) -> (u64, String) {
    let mut h = blake3::Hasher::new();
    let mut n = 0;
    for e in entries {
        h.update(
            serde_json::to_string(e)
                .expect("entries serialize")
                .as_bytes(),
        );
        h.update(b"\n");
        n += 1;
    }
    (n, h.finalize().to_hex().to_string())
}

/// The state of a journal holding `entries`.
pub fn journal_state(entries: &[Entry]) -> JournalState {
    let (entries, blake3) = hash_entries(state_entries(entries));
    JournalState { entries, blake3 }
}

impl SavedPlan {
    /// What `plan --out` keeps of a dry run computed on a journal holding `journal`.
    pub fn capture(loaded: &Loaded, reviewed: &Reviewed, journal: &[Entry]) -> SavedPlan {
        let files = digests(&loaded.plan);
        SavedPlan {
            format: FORMAT.into(),
            version: VERSION,
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            created_by: format!("transhumance {}", env!("CARGO_PKG_VERSION")),
            plan_name: loaded.plan.name.clone(),
            checksum: checksum_of(&files),
            files,
            journal: journal_state(journal),
            sites: reviewed.sites.iter().map(SavedSite::of).collect(),
            dns: reviewed.dns.clone(),
            report: serde_json::to_value(&reviewed.report).expect("the report serializes"),
        }
    }

    /// Writes it as JSON, atomically (a temp file renamed over `path`).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a saved plan serializes");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        std::fs::write(&temp, text + "\n")?;
        std::fs::rename(&temp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }

    /// Reads a saved plan.
    ///
    /// # Errors
    /// The file cannot be read or is not a saved plan of this version.
    pub fn read(path: &Path) -> Result<SavedPlan, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the saved plan `{}`: {e}", path.display()))?;
        let not_one = || {
            format!(
                "`{}` is not a saved plan (write one with `transhumance plan PLAN --out FILE`)",
                path.display()
            )
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| not_one())?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(not_one());
        }
        if value.get("version").and_then(serde_json::Value::as_u64) != Some(u64::from(VERSION)) {
            return Err(format!(
                "`{}` is a saved plan of another version of transhumance: run `plan --out` again",
                path.display()
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("{}: {e}", not_one()))
    }

    /// Every way the world the cutover would act on differs from this reviewed plan: the plan
    /// and its files (`files`, digested now), the journal (`journal`, its entries now), the
    /// sites (all of them now, in order) and the DNS changes of the selected `names` (`dns`,
    /// as the cutover computed them now; `served` reads what the servers hold of a reviewed
    /// RRset that would not change now). Empty: the cutover applies exactly what was reviewed.
    pub fn differences(
        &self,
        files: &[FileDigest],
        journal: &[Entry],
        sites: &[SavedSite],
        (dns, names): (&[Change], &[String]),
        served: &dyn Fn(&RrKey) -> Option<RrState>,
    ) -> Vec<Finding> {
        let mut out = file_differences(&self.files, files);
        out.extend(journal_difference(&self.journal, journal));
        out.extend(site_differences(&self.sites, sites));
        let reviewed: Vec<Change> = self
            .dns
            .iter()
            .filter(|c| names.contains(&c.key.name))
            .cloned()
            .collect();
        out.extend(dns_differences(&reviewed, dns, served));
        out
    }
}

fn finding(subject: impl Into<String>, reason: impl Into<String>) -> Finding {
    Finding::new(Check::PlanChanged, subject, reason)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn file_differences(then: &[FileDigest], now: &[FileDigest]) -> Vec<Finding> {
    let mut out = Vec::new();
    // The plan file is first in both, whatever path it was given by.
    if let (Some(a), Some(b)) = (then.first(), now.first())
        && a.blake3 != b.blake3
    {
        out.push(finding(
            format!("plan file `{}`", b.path),
            format!(
                "edited since the plan was reviewed (BLAKE3 {} then, {} now)",
                short(&a.blake3),
                short(&b.blake3)
            ),
        ));
    }
    let then_rest: BTreeMap<&str, &str> = then
        .iter()
        .skip(1)
        .map(|f| (f.path.as_str(), f.blake3.as_str()))
        .collect();
    let now_rest: BTreeMap<&str, &str> = now
        .iter()
        .skip(1)
        .map(|f| (f.path.as_str(), f.blake3.as_str()))
        .collect();
    for (path, hash) in &now_rest {
        match then_rest.get(path) {
            Some(old) if old == hash => {}
            Some(old) => out.push(finding(
                format!("file `{path}` (included by the plan)"),
                format!(
                    "edited since the plan was reviewed (BLAKE3 {} then, {} now)",
                    short(old),
                    short(hash)
                ),
            )),
            None => out.push(finding(
                format!("file `{path}` (included by the plan)"),
                "not part of the reviewed plan",
            )),
        }
    }
    for path in then_rest.keys().filter(|p| !now_rest.contains_key(*p)) {
        out.push(finding(
            format!("file `{path}`"),
            "part of the reviewed plan, no longer included",
        ));
    }
    out
}

/// What the journal's latest entry was about, for people.
fn describe(entry: &Entry) -> String {
    let v = serde_json::to_value(entry).unwrap_or_default();
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("entry")
        .to_string();
    let about = v
        .get("site")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .or_else(|| {
            v.pointer("/key/name")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        });
    let state = v.get("state").and_then(|s| s.as_str());
    match (about, state) {
        (Some(a), Some(s)) => format!("`{kind}` {a} {s}"),
        (Some(a), None) => format!("`{kind}` {a}"),
        _ => format!("`{kind}`"),
    }
}

fn journal_difference(then: &JournalState, now: &[Entry]) -> Option<Finding> {
    let current = journal_state(now);
    if &current == then {
        return None;
    }
    let kept: Vec<&Entry> = state_entries(now).collect();
    let n = usize::try_from(then.entries).unwrap_or(usize::MAX);
    let prefix_same = n <= kept.len() && hash_entries(kept[..n].iter().copied()).1 == then.blake3;
    let reason = if prefix_same {
        format!(
            "moved on since the plan was reviewed: {} entr{} recorded since (the last: {})",
            kept.len() - n,
            if kept.len() - n == 1 { "y" } else { "ies" },
            kept.last().map(|e| describe(e)).unwrap_or_default()
        )
    } else {
        format!(
            "not the one the plan was computed on ({} entries then, {} now, not a continuation)",
            then.entries, current.entries
        )
    };
    Some(finding("the journal", reason))
}

fn site_differences(then: &[SavedSite], now: &[SavedSite]) -> Vec<Finding> {
    let then_by: BTreeMap<&str, &SavedSite> = then.iter().map(|s| (s.name.as_str(), s)).collect();
    let now_by: BTreeMap<&str, &SavedSite> = now.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = Vec::new();
    for (name, s) in &now_by {
        let Some(t) = then_by.get(name) else {
            out.push(finding(
                format!("site `{name}`"),
                "not in the reviewed plan (the sites expand to more now)",
            ));
            continue;
        };
        let mut changed = Vec::new();
        if t.source != s.source {
            changed.push(format!("source `{}` then, `{}` now", t.source, s.source));
        }
        if t.target != s.target {
            changed.push(format!("target `{}` then, `{}` now", t.target, s.target));
        }
        if t.domains != s.domains {
            changed.push(format!(
                "domains {} then, {} now",
                t.domains.join(", "),
                s.domains.join(", ")
            ));
        }
        if t.databases != s.databases {
            changed.push(format!(
                "databases [{}] then, [{}] now",
                t.databases.join(", "),
                s.databases.join(", ")
            ));
        }
        if !changed.is_empty() {
            out.push(finding(format!("site `{name}`"), changed.join("; ")));
        }
    }
    for name in then_by.keys().filter(|n| !now_by.contains_key(*n)) {
        out.push(finding(
            format!("site `{name}`"),
            "in the reviewed plan, not among the sites now",
        ));
    }
    let order = |v: &[SavedSite]| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if out.is_empty() && order(then) != order(now) {
        out.push(finding(
            "the sites",
            "in another order than reviewed: the batches would differ",
        ));
    }
    out
}

fn state(s: &RrState) -> String {
    format!("{} (TTL {})", s.values.join(", "), s.ttl)
}

fn dns_differences(
    then: &[Change],
    now: &[Change],
    served: &dyn Fn(&RrKey) -> Option<RrState>,
) -> Vec<Finding> {
    let key = |c: &Change| (c.key.name.clone(), c.key.rtype.clone());
    let then_by: BTreeMap<_, &Change> = then.iter().map(|c| (key(c), c)).collect();
    let now_by: BTreeMap<_, &Change> = now.iter().map(|c| (key(c), c)).collect();
    let mut out = Vec::new();
    for (k, c) in &now_by {
        let subject = format!("{} {}", k.0, k.1);
        match then_by.get(k) {
            None => out.push(finding(
                subject,
                format!(
                    "would switch now ({} -> {}), not in the reviewed plan",
                    state(&c.from),
                    state(&c.to)
                ),
            )),
            Some(t) if t.from != c.from => out.push(finding(
                subject,
                format!(
                    "DNS serves other values than reviewed: {} then, {} now",
                    state(&t.from),
                    state(&c.from)
                ),
            )),
            Some(t) if t.to != c.to => out.push(finding(
                subject,
                format!(
                    "would switch to {} now, to {} when reviewed",
                    state(&c.to),
                    state(&t.to)
                ),
            )),
            Some(_) => {}
        }
    }
    for (k, t) in &then_by {
        if !now_by.contains_key(k) {
            let now = match served(&t.key) {
                Some(s) if s.values.is_empty() => "it is gone now".to_string(),
                Some(s) => format!("the servers serve {} now", state(&s)),
                None => "it cannot be read now".to_string(),
            };
            out.push(finding(
                format!("{} {}", k.0, k.1),
                format!(
                    "reviewed to switch ({} -> {}), {now}: the cutover would not change it",
                    state(&t.from),
                    state(&t.to)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, from: &str, ttl: u32) -> Change {
        Change {
            key: RrKey {
                zone: "example.test".into(),
                name: name.into(),
                rtype: "A".into(),
            },
            from: RrState {
                ttl,
                values: vec![from.into()],
            },
            to: RrState {
                ttl,
                values: vec!["198.51.100.10".into()],
            },
        }
    }

    fn site(name: &str, source: &str) -> SavedSite {
        SavedSite {
            name: name.into(),
            source: source.into(),
            target: "local:/new".into(),
            domains: vec![name.into()],
            databases: Vec::new(),
        }
    }

    fn saved(files: Vec<FileDigest>, journal: &[Entry]) -> SavedPlan {
        SavedPlan {
            format: FORMAT.into(),
            version: VERSION,
            created_at: String::new(),
            created_by: String::new(),
            plan_name: "p".into(),
            checksum: checksum_of(&files),
            files,
            journal: journal_state(journal),
            sites: vec![
                site("a.test", "local:/old/a"),
                site("b.test", "local:/old/b"),
            ],
            dns: vec![
                change("a.test.", "192.0.2.10", 300),
                change("b.test.", "192.0.2.10", 300),
            ],
            report: serde_json::Value::Null,
        }
    }

    fn nothing(_: &RrKey) -> Option<RrState> {
        None
    }

    fn served(_: &RrKey) -> Option<RrState> {
        Some(RrState {
            ttl: 60,
            values: vec!["192.0.2.77".into()],
        })
    }

    fn digest(path: &str, hash: &str) -> FileDigest {
        FileDigest {
            path: path.into(),
            blake3: hash.into(),
        }
    }

    fn entry(site: &str, at: u64) -> Entry {
        Entry::Site {
            site: site.into(),
            state: crate::lifecycle::state::SiteState::PreSynced,
            at,
            detail: None,
            bytes: None,
            millis: None,
            at_ms: None,
        }
    }

    #[test]
    fn the_same_world_holds_the_reviewed_plan() {
        let files = vec![digest("/p.yaml", "aa"), digest("/users.csv", "bb")];
        let journal = vec![entry("a.test", 1)];
        let s = saved(files.clone(), &journal);
        let names = vec!["a.test.".to_string(), "b.test.".to_string()];
        assert!(
            s.differences(&files, &journal, &s.sites, (&s.dns, &names), &nothing)
                .is_empty()
        );
        // A selection compares only its own records.
        let only_a = vec!["a.test.".to_string()];
        assert!(
            s.differences(&files, &journal, &s.sites, (&s.dns[..1], &only_a), &nothing)
                .is_empty()
        );
        // A refused check journaled since changes nothing.
        let mut refused = journal.clone();
        refused.push(Entry::Check {
            finding: finding("x", "y"),
            verdict: CheckVerdict::Refused,
            command: "cutover".into(),
            at: 2,
        });
        assert!(
            s.differences(&files, &refused, &s.sites, (&s.dns, &names), &nothing)
                .is_empty()
        );
    }

    #[test]
    fn each_change_of_the_world_is_named() {
        let files = vec![digest("/p.yaml", "aa"), digest("/users.csv", "bb")];
        let journal = vec![entry("a.test", 1)];
        let s = saved(files.clone(), &journal);
        let names = vec!["a.test.".to_string(), "b.test.".to_string()];
        let reasons = |f: Vec<Finding>| f.iter().map(|f| f.to_string()).collect::<Vec<_>>();

        let edited = vec![
            digest("/elsewhere/p.yaml", "cc"),
            digest("/users.csv", "dd"),
        ];
        assert_eq!(
            reasons(s.differences(&edited, &journal, &s.sites, (&s.dns, &names), &nothing)),
            vec![
                "[plan-changed] plan file `/elsewhere/p.yaml`: edited since the plan was reviewed (BLAKE3 aa then, cc now)",
                "[plan-changed] file `/users.csv` (included by the plan): edited since the plan was reviewed (BLAKE3 bb then, dd now)",
            ]
        );

        let mut moved = journal.clone();
        moved.push(entry("b.test", 2));
        assert_eq!(
            reasons(s.differences(&files, &moved, &s.sites, (&s.dns, &names), &nothing)),
            vec![
                "[plan-changed] the journal: moved on since the plan was reviewed: 1 entry recorded since (the last: `site` b.test pre_synced)"
            ]
        );
        assert!(
            reasons(s.differences(&files, &[], &s.sites, (&s.dns, &names), &nothing))[0]
                .contains("not a continuation")
        );

        let sites = vec![
            site("a.test", "local:/old/elsewhere"),
            site("c.test", "local:/c"),
        ];
        assert_eq!(
            reasons(s.differences(&files, &journal, &sites, (&s.dns, &names), &nothing)),
            vec![
                "[plan-changed] site `a.test`: source `local:/old/a` then, `local:/old/elsewhere` now",
                "[plan-changed] site `c.test`: not in the reviewed plan (the sites expand to more now)",
                "[plan-changed] site `b.test`: in the reviewed plan, not among the sites now",
            ]
        );

        let dns = vec![
            change("a.test.", "192.0.2.99", 300),
            change("c.test.", "192.0.2.10", 300),
        ];
        let mut all = names.clone();
        all.push("c.test.".into());
        assert_eq!(
            reasons(s.differences(&files, &journal, &s.sites, (&dns, &all), &served)),
            vec![
                "[plan-changed] a.test. A: DNS serves other values than reviewed: 192.0.2.10 (TTL 300) then, 192.0.2.99 (TTL 300) now",
                "[plan-changed] c.test. A: would switch now (192.0.2.10 (TTL 300) -> 198.51.100.10 (TTL 300)), not in the reviewed plan",
                "[plan-changed] b.test. A: reviewed to switch (192.0.2.10 (TTL 300) -> 198.51.100.10 (TTL 300)), the servers serve 192.0.2.77 (TTL 60) now: the cutover would not change it",
            ]
        );
    }

    #[test]
    fn only_saved_plans_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviewed.plan");
        let s = saved(vec![digest("/p.yaml", "aa")], &[]);
        s.write(&path).unwrap();
        let back = SavedPlan::read(&path).unwrap();
        assert_eq!(back.dns, s.dns);
        assert_eq!(back.sites, s.sites);
        std::fs::write(&path, "{\"schema_version\": 2}").unwrap();
        assert!(
            SavedPlan::read(&path)
                .unwrap_err()
                .contains("is not a saved plan")
        );
    }
}
