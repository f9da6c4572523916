//! Courier-IMAP's per-folder files read as Courier writes them, and the Dovecot files that take
//! their place at a Dovecot target: `courierimapuiddb` → `dovecot-uidlist` (UIDs and UIDVALIDITY
//! kept), `courierimapkeywords/` → `dovecot-keywords` plus keyword letters in the file names,
//! `courierimapsubscribed` → `subscriptions`. The conversion Dovecot's own
//! `courier-dovecot-migrate.pl` (github.com/dovecot/tools) makes in place, done here on the
//! copy, never on the source. Pure: the pass reads and writes the files.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::maildir::unique_part;

/// Courier's UID list of a folder (courier-libs `imap/imapscanclient.C`, `IMAPDB`).
pub const UIDDB: &str = "courierimapuiddb";
/// Courier's keyword directory of a folder (courier-libs `maildir/README.imapkeywords.html`).
pub const KEYWORDS_DIR: &str = "courierimapkeywords";
/// Courier's subscribed folders, at the root of a mailbox.
pub const SUBSCRIBED: &str = "courierimapsubscribed";
/// Dovecot's counterparts, in the same directories.
pub const DOVECOT_UIDLIST: &str = "dovecot-uidlist";
pub const DOVECOT_KEYWORDS: &str = "dovecot-keywords";
pub const DOVECOT_SUBSCRIPTIONS: &str = "subscriptions";

/// Dovecot keeps at most this many keywords per folder in Maildir file names (`a`..`z`).
pub const MAX_KEYWORDS: usize = 26;

/// One line of a UID list: the UID, the extension fields Dovecot keeps before the name (`W1234`,
/// none in Courier's), and the file name as written (Courier: the base, before `:2,`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidEntry {
    pub uid: u64,
    pub ext: Vec<String>,
    pub name: String,
}

/// A UID list as Courier and Dovecot write it, in any of the versions it has had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidList {
    pub version: u8,
    pub validity: u64,
    pub next_uid: u64,
    /// Version 3: the mailbox GUID (`G`), kept when the list is rewritten.
    pub guid: Option<String>,
    pub entries: Vec<UidEntry>,
}

impl UidList {
    /// Reads a `courierimapuiddb` or a `dovecot-uidlist`:
    /// - version 1, the only one Courier writes (`imapscanclient.C` step 7, `IMAPDBVERSION` 1 in
    ///   courier-libs `imap/configure.ac`), also Dovecot's up to 1.0: `1 UIDVALIDITY NEXTUID`,
    ///   then `UID NAME` lines;
    /// - version 2 (a few Dovecot 1.0 development versions; Dovecot 1.0's `maildir-uidlist.c`
    ///   reads it): the same header, then `UID FLAGS NAME`;
    /// - version 3 (Dovecot 1.1 and later, `src/lib-storage/index/maildir/maildir-uidlist.c`):
    ///   `3 V<uidvalidity> N<nextuid> [G<guid>] ...`, then `UID [<key><value> ...] :NAME`.
    ///
    /// Lines Courier's own reader would skip (no UID) are skipped; NEXTUID is raised past the
    /// highest UID, as `courier-dovecot-migrate.pl` does.
    ///
    /// # Errors
    /// The header is none of these or has no UIDVALIDITY (Courier itself then starts over with
    /// new UIDs, so nothing can be kept).
    pub fn parse(bytes: &[u8]) -> Result<UidList, String> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.lines();
        let header = lines.next().ok_or("empty file")?;
        let mut words = header.split_whitespace();
        let mut list = UidList::default();
        match words.next() {
            Some(v @ ("1" | "2")) => {
                list.version = if v == "1" { 1 } else { 2 };
                let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
                list.validity = num().ok_or_else(|| format!("broken header `{header}`"))?;
                list.next_uid = num().ok_or_else(|| format!("broken header `{header}`"))?;
            }
            Some("3") => {
                list.version = 3;
                for w in words {
                    if let Some(v) = w.strip_prefix('V') {
                        list.validity = v.parse().map_err(|_| format!("broken `{w}`"))?;
                    } else if let Some(n) = w.strip_prefix('N') {
                        list.next_uid = n.parse().map_err(|_| format!("broken `{w}`"))?;
                    } else if let Some(g) = w.strip_prefix('G') {
                        list.guid = Some(g.to_string());
                    }
                }
            }
            _ => return Err(format!("unknown header `{header}`")),
        }
        if list.validity == 0 {
            return Err(format!("no UIDVALIDITY in `{header}`"));
        }
        for line in lines {
            let Some((uid, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(uid) = uid.parse::<u64>() else {
                continue;
            };
            let rest = rest.trim_start();
            let (ext, name) = match list.version {
                1 => (Vec::new(), rest),
                2 => match rest.split_once(' ') {
                    Some((_flags, name)) => (Vec::new(), name.trim_start()),
                    None => continue,
                },
                _ => match rest.find(':') {
                    Some(i) => (
                        rest[..i].split_whitespace().map(str::to_string).collect(),
                        &rest[i + 1..],
                    ),
                    None => continue,
                },
            };
            if uid == 0 || name.is_empty() {
                continue;
            }
            list.entries.push(UidEntry {
                uid,
                ext,
                name: name.to_string(),
            });
        }
        let highest = list.entries.iter().map(|e| e.uid).max().unwrap_or(0);
        list.next_uid = list.next_uid.max(highest + 1);
        Ok(list)
    }

    /// UID by base name (the part before `:2,`); the last line wins a name listed twice, as in
    /// Dovecot's `maildir_uidlist_next` (the older UID is dropped).
    pub fn by_base(&self) -> HashMap<&str, u64> {
        self.entries
            .iter()
            .map(|e| (unique_part(&e.name), e.uid))
            .collect()
    }

    /// The list as `maildir::Uidlist` (what verification compares).
    pub fn to_uidlist(&self) -> super::maildir::Uidlist {
        super::maildir::Uidlist {
            validity: self.validity,
            next_uid: self.next_uid,
            uids: self
                .by_base()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// Dovecot's version 3 text: `3 V.. N.. [G..]`, then `UID [ext] :NAME` by rising UID.
    pub fn render_v3(&self) -> Vec<u8> {
        let mut out = format!("3 V{} N{}", self.validity, self.next_uid);
        if let Some(g) = &self.guid {
            out.push_str(&format!(" G{g}"));
        }
        out.push('\n');
        let mut entries: Vec<&UidEntry> = self.entries.iter().collect();
        entries.sort_by_key(|e| e.uid);
        for e in entries {
            out.push_str(&e.uid.to_string());
            for x in &e.ext {
                out.push(' ');
                out.push_str(x);
            }
            out.push_str(" :");
            out.push_str(&e.name);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Same UIDVALIDITY, NEXTUID, GUID and UID of every message: rewriting one with the other
    /// would change nothing Dovecot reads.
    pub fn same_as(&self, other: &UidList) -> bool {
        let uids = |l: &UidList| -> BTreeMap<u64, String> {
            l.entries
                .iter()
                .map(|e| (e.uid, unique_part(&e.name).to_string()))
                .collect()
        };
        self.validity == other.validity
            && self.next_uid == other.next_uid
            && self.guid == other.guid
            && uids(self) == uids(other)
    }
}

/// Courier's order of message file names (`fnamcmp` in `imapscanclient.C`): by the number they
/// start with (the delivery time), then byte by byte up to the `:`. Courier gives new UIDs in
/// this order, so a UID given here to a message Courier has not numbered yet is the one Courier
/// would give it on the same files.
pub fn courier_order(a: &str, b: &str) -> Ordering {
    let lead = |s: &str| {
        s.bytes().take_while(u8::is_ascii_digit).fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    };
    let cut = |s: &str| s.split(':').next().unwrap_or(s).to_string();
    lead(a)
        .cmp(&lead(b))
        .then_with(|| cut(a).as_bytes().cmp(cut(b).as_bytes()))
}

/// One message of a converted folder as it will be at the target: its file name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMessage {
    pub name: String,
}

/// The `dovecot-uidlist` a folder gets, and what changed at the target to get there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedUids {
    pub list: UidList,
    /// UIDs the target's previous list gave and this one does not (`base: old → new`).
    pub changed: Vec<String>,
    /// The target's list had another UIDVALIDITY (it is replaced by Courier's).
    pub replaced_validity: Option<u64>,
}

/// The `dovecot-uidlist` of a Courier folder, from its `courierimapuiddb` (`courier`), the
/// messages that will be at the target (`messages`) and the target's list if it has one:
/// - UIDVALIDITY is Courier's;
/// - a message Courier numbered keeps Courier's UID: that is what the source's clients know,
///   and before the cutover they are the only ones;
/// - any other message keeps the UID the target's list gives it (same UIDVALIDITY) unless
///   Courier gave that UID to another message;
/// - the rest (Courier has not opened the folder since they came) get UIDs from NEXTUID up, in
///   Courier's order (`courier_order`), as Courier would number them;
/// - NEXTUID never goes down: the highest of Courier's, the target's and past the last UID.
///
/// A re-run over the same files gives the same list.
pub fn convert_uids(
    courier: &UidList,
    messages: &[TargetMessage],
    target: Option<&UidList>,
) -> ConvertedUids {
    let same = target.filter(|t| t.validity == courier.validity);
    let replaced_validity = target
        .filter(|t| t.validity != courier.validity && !t.entries.is_empty())
        .map(|t| t.validity);
    let courier_uids = courier.by_base();
    let target_uids = same.map(UidList::by_base).unwrap_or_default();
    let target_ext: HashMap<&str, &Vec<String>> = same
        .map(|t| {
            t.entries
                .iter()
                .map(|e| (unique_part(&e.name), &e.ext))
                .collect()
        })
        .unwrap_or_default();
    let mut given: HashMap<&str, u64> = HashMap::new();
    let mut used: HashSet<u64> = HashSet::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let messages: Vec<&TargetMessage> = messages
        .iter()
        .filter(|m| seen.insert(unique_part(&m.name)))
        .collect();
    for m in &messages {
        let base = unique_part(&m.name);
        if let Some(u) = courier_uids.get(base)
            && used.insert(*u)
        {
            given.insert(base, *u);
        }
    }
    for m in &messages {
        let base = unique_part(&m.name);
        if given.contains_key(base) {
            continue;
        }
        if let Some(u) = target_uids.get(base)
            && !courier_uids.values().any(|c| c == u)
            && used.insert(*u)
        {
            given.insert(base, *u);
        }
    }
    let mut next = courier
        .next_uid
        .max(same.map_or(0, |t| t.next_uid))
        .max(used.iter().max().map_or(0, |m| m + 1));
    let mut rest: Vec<&&TargetMessage> = messages
        .iter()
        .filter(|m| !given.contains_key(unique_part(&m.name)))
        .collect();
    rest.sort_by(|a, b| courier_order(&a.name, &b.name));
    for m in rest {
        given.insert(unique_part(&m.name), next);
        next += 1;
    }
    let mut changed: Vec<String> = messages
        .iter()
        .filter_map(|m| {
            let base = unique_part(&m.name);
            let old = target_uids.get(base)?;
            let new = given[base];
            (*old != new).then(|| format!("{base}: {old} → {new}"))
        })
        .collect();
    changed.sort();
    let entries = messages
        .iter()
        .map(|m| {
            let base = unique_part(&m.name);
            UidEntry {
                uid: given[base],
                ext: target_ext
                    .get(base)
                    .map(|e| (*e).clone())
                    .unwrap_or_default(),
                name: m.name.clone(),
            }
        })
        .collect();
    ConvertedUids {
        list: UidList {
            version: 3,
            validity: courier.validity,
            next_uid: next,
            guid: same.and_then(|t| t.guid.clone()),
            entries,
        },
        changed,
        replaced_validity,
    }
}

/// What a file of `courierimapkeywords/` is to Courier: the `:list`, the latest update of a
/// message (`NAME`), an older one (`.N.NAME`), or nothing (temp files, anything else with a
/// leading dot), as `scan_updates` in courier-libs `maildir/maildirkeywords.C` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordFile {
    List,
    Update { message: String, age: Option<u64> },
    Other,
}

pub fn keyword_file(name: &str) -> KeywordFile {
    if name == ":list" {
        return KeywordFile::List;
    }
    if let Some(rest) = name.strip_prefix('.') {
        if let Some((n, message)) = rest.split_once('.')
            && !n.is_empty()
            && !n.starts_with('0')
            && n.bytes().all(|b| b.is_ascii_digit())
            && let Ok(age) = n.parse::<u64>()
            && !message.is_empty()
        {
            return KeywordFile::Update {
                message: message.to_string(),
                age: Some(age),
            };
        }
        return KeywordFile::Other;
    }
    KeywordFile::Update {
        message: name.to_string(),
        age: None,
    }
}

/// The keywords of one Courier folder, as Courier reads them (courier-libs
/// `maildir/README.imapkeywords.html`, "Reading keywords", and `maildirkeywords.C`): the
/// `:list` (keyword names one a line, an empty line, then `BASENAME:INDEX INDEX ...`), then for
/// each message its latest update file (`NAME`, else the `.N.NAME` with the largest N; one
/// keyword a line, empty for none), which replaces what `:list` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourierKeywords {
    /// Every keyword some message has, in the order Courier lists them, then new ones by name.
    pub order: Vec<String>,
    /// Base name → its keywords (messages without any are left out).
    pub by_message: BTreeMap<String, BTreeSet<String>>,
}

impl CourierKeywords {
    /// `list`: the `:list` file if there is one; `updates`: (file name, content) of the other
    /// files of the directory.
    pub fn read(list: Option<&[u8]>, updates: &[(String, Vec<u8>)]) -> CourierKeywords {
        let mut by_message: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut listed: Vec<String> = Vec::new();
        if let Some(list) = list {
            let text = String::from_utf8_lossy(list);
            let mut lines = text.lines();
            for line in lines.by_ref() {
                if line.is_empty() {
                    break;
                }
                listed.push(line.to_string());
            }
            for line in lines {
                let (name, indexes) = line.split_once(':').unwrap_or((line, ""));
                let set: BTreeSet<String> = indexes
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<usize>().ok())
                    .filter_map(|i| listed.get(i).cloned())
                    .collect();
                if !name.is_empty() && !set.is_empty() {
                    by_message.insert(name.to_string(), set);
                }
            }
        }
        // Per message, the update that counts: the plain name, else the oldest-numbered last.
        let mut latest: BTreeMap<&str, (Option<u64>, &[u8])> = BTreeMap::new();
        for (file, content) in updates {
            if let KeywordFile::Update { message, age } = keyword_file(file) {
                let message = &file[file.len() - message.len()..];
                let newer = match latest.get(message) {
                    None => true,
                    Some((None, _)) => false,
                    Some((Some(old), _)) => age.is_none_or(|a| a > *old),
                };
                if newer {
                    latest.insert(message, (age, content));
                }
            }
        }
        for (message, (_, content)) in latest {
            let set: BTreeSet<String> = String::from_utf8_lossy(content)
                .lines()
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            if set.is_empty() {
                by_message.remove(message);
            } else {
                by_message.insert(message.to_string(), set);
            }
        }
        let used: BTreeSet<&String> = by_message.values().flatten().collect();
        let mut order: Vec<String> = listed.into_iter().filter(|k| used.contains(k)).collect();
        order.dedup();
        let known: HashSet<String> = order.iter().cloned().collect();
        order.extend(
            used.into_iter()
                .filter(|k| !known.contains(*k))
                .cloned()
                .collect::<Vec<_>>(),
        );
        CourierKeywords { order, by_message }
    }
}

/// A folder's `dovecot-keywords`: keyword names by index, 0 being the letter `a` in file names
/// (Dovecot's "Maildir Mailbox Format" page, "IMAP Keywords": `0 $Junk` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DovecotKeywords {
    pub names: Vec<Option<String>>,
}

impl DovecotKeywords {
    pub fn parse(bytes: &[u8]) -> DovecotKeywords {
        let mut names: Vec<Option<String>> = Vec::new();
        for line in String::from_utf8_lossy(bytes).lines() {
            let Some((i, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            if i >= MAX_KEYWORDS || name.is_empty() {
                continue;
            }
            if names.len() <= i {
                names.resize(i + 1, None);
            }
            names[i] = Some(name.to_string());
        }
        DovecotKeywords { names }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                out.push_str(&format!("{i} {n}\n"));
            }
        }
        out.into_bytes()
    }

    /// This list with `wanted` keywords it lacks added in free places (letters already given
    /// never move, so file names at the target keep their meaning); the keywords that found no
    /// place (past `z`).
    pub fn with(&self, wanted: &[String]) -> (DovecotKeywords, Vec<String>) {
        let mut out = self.clone();
        let mut left = Vec::new();
        for k in wanted {
            if out.names.iter().flatten().any(|n| n == k) {
                continue;
            }
            match out.names.iter().position(Option::is_none) {
                Some(i) => out.names[i] = Some(k.clone()),
                None if out.names.len() < MAX_KEYWORDS => out.names.push(Some(k.clone())),
                None => left.push(k.clone()),
            }
        }
        (out, left)
    }

    /// The letters of `keywords` (those this list has), sorted.
    pub fn letters(&self, keywords: &BTreeSet<String>) -> String {
        let mut out: Vec<char> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.as_ref().is_some_and(|n| keywords.contains(n)))
            .map(|(i, _)| char::from(b'a' + i as u8))
            .collect();
        out.sort_unstable();
        out.into_iter().collect()
    }
}

/// The name a `cur/` message gets at the target: its `:2,` flags with lower-case letters (no
/// Courier meaning, a keyword letter at Dovecot) replaced by `letters`, sorted as Dovecot writes
/// them; what follows a `,` in the flags (Dovecot's non-standard fields) is kept.
pub fn with_keyword_letters(name: &str, letters: &str) -> String {
    let (base, info) = match name.split_once(":2,") {
        Some((b, i)) => (b, i),
        None if letters.is_empty() => return name.to_string(),
        None => (name, ""),
    };
    let (flags, extra) = match info.find(',') {
        Some(i) => (&info[..i], &info[i..]),
        None => (info, ""),
    };
    let mut all: Vec<char> = flags
        .chars()
        .filter(|c| !c.is_ascii_lowercase())
        .chain(letters.chars())
        .collect();
    all.sort_unstable();
    all.dedup();
    format!("{base}:2,{}{extra}", all.into_iter().collect::<String>())
}

/// Courier's `courierimapsubscribed` (one folder a line, with Courier's `INBOX.` namespace) as
/// Dovecot's `subscriptions`, converted as `courier-dovecot-migrate.pl` does: `INBOX` stays,
/// `INBOX.Name` becomes `Name` (Dovecot stores names without the namespace prefix, even with an
/// `INBOX.` namespace), anything else is kept. Dovecot reads this layout (no `V\t2` header:
/// version 1, `subsfile_list_read_header` in `subscription-file.c`).
pub fn subscriptions(courier: &[u8]) -> Vec<u8> {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for line in String::from_utf8_lossy(courier).lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let name = if line.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else if line.len() > 6 && line[..6].eq_ignore_ascii_case("INBOX.") {
            &line[6..]
        } else {
            line
        };
        if seen.insert(name.to_string()) {
            out.push_str(name);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The folder names of a Dovecot `subscriptions` file, in either layout: version 1 (one name a
/// line) or version 2 (`V\t2\n\n`, then names whose hierarchy levels are separated by tabs,
/// read back here with Maildir++'s `.`).
pub fn subscribed_names(dovecot: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(dovecot);
    match text.strip_prefix("V\t2\n\n") {
        Some(rest) => rest
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.replace('\t', "."))
            .collect(),
        None => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(names: &[&str]) -> Vec<TargetMessage> {
        names
            .iter()
            .map(|n| TargetMessage {
                name: n.to_string(),
            })
            .collect()
    }

    fn uids(c: &ConvertedUids) -> Vec<(u64, &str)> {
        let mut v: Vec<(u64, &str)> = c
            .list
            .entries
            .iter()
            .map(|e| (e.uid, unique_part(&e.name)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn courier_version_1_is_read_as_courier_writes_it() {
        // imapscanclient.C writes `version uidv nextuid`, then `uid basename` (flags stripped).
        let db = UidList::parse(
            b"1 705123456 5\n1 1700000001.M1P1.old,S=10\n2 1700000002.M2P1.old,S=20\n4 1700000004.M4P1.old:2,S\nnot a line\n",
        )
        .unwrap();
        assert_eq!((db.version, db.validity, db.next_uid), (1, 705123456, 5));
        let by = db.by_base();
        assert_eq!(by["1700000002.M2P1.old,S=20"], 2);
        assert_eq!(by["1700000004.M4P1.old"], 4, "cut at the colon");
        assert_eq!(db.entries.len(), 3);
        // NEXTUID below a listed UID is raised past it.
        assert_eq!(UidList::parse(b"1 7 2\n9 a\n").unwrap().next_uid, 10);
    }

    #[test]
    fn versions_2_and_3_are_read_too() {
        let v2 = UidList::parse(b"2 100 4\n1 0 1.M1.h\n3 1 3.M3.h,S=5\n").unwrap();
        assert_eq!((v2.version, v2.validity, v2.next_uid), (2, 100, 4));
        assert_eq!(v2.by_base()["3.M3.h,S=5"], 3, "the flags field is skipped");
        let v3 = UidList::parse(
            b"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n",
        )
        .unwrap();
        assert_eq!((v3.validity, v3.next_uid), (1275660208, 25022));
        assert_eq!(v3.guid.as_deref(), Some("3085f01b7f11094c501100008c4a11c1"));
        assert_eq!(v3.entries[1].ext, vec!["W2481"]);
        assert_eq!(v3.by_base()["1276533073.M242911P3632.kurkku"], 25017);
        assert!(UidList::parse(b"4 1 2\n").is_err());
        assert!(UidList::parse(b"1 0 2\n").is_err(), "no UIDVALIDITY");
        assert!(UidList::parse(b"").is_err());
    }

    #[test]
    fn a_v3_list_renders_and_reads_back() {
        let l = UidList {
            version: 3,
            validity: 42,
            next_uid: 9,
            guid: Some("abc".into()),
            entries: vec![
                UidEntry {
                    uid: 5,
                    ext: vec!["W10".into()],
                    name: "5.M5.h:2,S".into(),
                },
                UidEntry {
                    uid: 2,
                    ext: vec![],
                    name: "2.M2.h".into(),
                },
            ],
        };
        let text = l.render_v3();
        assert_eq!(
            String::from_utf8_lossy(&text),
            "3 V42 N9 Gabc\n2 :2.M2.h\n5 W10 :5.M5.h:2,S\n"
        );
        assert!(UidList::parse(&text).unwrap().same_as(&l));
    }

    #[test]
    fn courier_orders_names_by_delivery_time_first() {
        let mut names = vec![
            "1700000010.M1.b:2,S",
            "999999999.M9.z",
            "1700000010.M1.a:2,S",
            "1700000002.M5.a",
        ];
        names.sort_by(|a, b| courier_order(a, b));
        assert_eq!(
            names,
            vec![
                "999999999.M9.z",
                "1700000002.M5.a",
                "1700000010.M1.a:2,S",
                "1700000010.M1.b:2,S"
            ]
        );
    }

    #[test]
    fn courier_uids_and_validity_become_the_target_list() {
        let courier = UidList::parse(b"1 705 8\n3 30.M3.h\n5 50.M5.h\n7 70.M7.h\n").unwrap();
        // 70 is gone from the source; 80 and 90 came and Courier has not numbered them.
        let at_target = msgs(&["30.M3.h:2,S", "50.M5.h:2,RSa", "90.M9.h", "80.M8.h:2,"]);
        let c = convert_uids(&courier, &at_target, None);
        assert_eq!(c.list.validity, 705);
        assert_eq!(
            uids(&c),
            vec![
                (3, "30.M3.h"),
                (5, "50.M5.h"),
                (8, "80.M8.h"),
                (9, "90.M9.h")
            ],
            "new ones from NEXTUID in Courier's order"
        );
        assert_eq!(c.list.next_uid, 10);
        assert!(c.changed.is_empty() && c.replaced_validity.is_none());
        let names: Vec<&str> = c.list.entries.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"50.M5.h:2,RSa"), "the target's file names");

        // A re-run over the target's own list gives the same list: nothing to write.
        let again = convert_uids(&courier, &at_target, Some(&c.list));
        assert!(again.list.same_as(&c.list) && again.changed.is_empty());

        // Courier then numbers them as it would: 80 → 8, 90 → 9; a new one (95) arrives.
        let courier2 =
            UidList::parse(b"1 705 10\n3 30.M3.h\n5 50.M5.h\n8 80.M8.h\n9 90.M9.h\n").unwrap();
        let at_target2 = msgs(&[
            "30.M3.h:2,S",
            "50.M5.h:2,RSa",
            "90.M9.h",
            "80.M8.h:2,",
            "95.M.h",
        ]);
        let c2 = convert_uids(&courier2, &at_target2, Some(&c.list));
        assert_eq!(
            uids(&c2)[2..],
            [(8, "80.M8.h"), (9, "90.M9.h"), (10, "95.M.h")]
        );
        assert!(c2.changed.is_empty());
    }

    #[test]
    fn courier_wins_where_it_numbered_differently_and_the_target_keeps_the_rest() {
        let courier = UidList::parse(b"1 705 4\n1 10.M.a\n2 20.M.b\n3 30.M.c\n").unwrap();
        // The target's list (same UIDVALIDITY) gave 20.M.b UID 3 before Courier numbered it,
        // and numbered a message delivered there (99.T.x) 4.
        let target =
            UidList::parse(b"3 V705 N5 Gfeed\n1 W9 :10.M.a:2,S\n3 :20.M.b:2,\n4 :99.T.x:2,\n")
                .unwrap();
        let at_target = msgs(&["10.M.a:2,S", "20.M.b:2,", "30.M.c:2,", "99.T.x:2,"]);
        let c = convert_uids(&courier, &at_target, Some(&target));
        assert_eq!(
            uids(&c),
            vec![(1, "10.M.a"), (2, "20.M.b"), (3, "30.M.c"), (4, "99.T.x")]
        );
        assert_eq!(c.changed, vec!["20.M.b: 3 → 2"]);
        assert_eq!(c.list.guid.as_deref(), Some("feed"), "the GUID is kept");
        assert_eq!(
            c.list.entries[0].ext,
            vec!["W9"],
            "Dovecot's fields are kept"
        );
        assert_eq!(c.list.next_uid, 5, "never lowered");

        // Courier gave UID 4 to a message of its own: the target's 99.T.x moves past it.
        let courier = UidList::parse(b"1 705 5\n1 10.M.a\n2 20.M.b\n3 30.M.c\n4 40.M.d\n").unwrap();
        let at_target = msgs(&["10.M.a", "20.M.b", "30.M.c", "40.M.d", "99.T.x"]);
        let c = convert_uids(&courier, &at_target, Some(&target));
        assert_eq!(uids(&c)[3..], [(4, "40.M.d"), (5, "99.T.x")]);
        assert!(c.changed.contains(&"99.T.x: 4 → 5".to_string()));
    }

    #[test]
    fn another_uidvalidity_at_the_target_is_replaced() {
        let courier = UidList::parse(b"1 705 2\n1 10.M.a\n").unwrap();
        let target = UidList::parse(b"3 V1999 N7\n6 :10.M.a\n").unwrap();
        let c = convert_uids(&courier, &msgs(&["10.M.a"]), Some(&target));
        assert_eq!(c.replaced_validity, Some(1999));
        assert_eq!(uids(&c), vec![(1, "10.M.a")]);
        assert_eq!((c.list.validity, c.list.next_uid), (705, 2));
        assert!(
            c.changed.is_empty(),
            "UIDs of another UIDVALIDITY are no change"
        );
    }

    #[test]
    fn keyword_files_are_told_apart_as_courier_does() {
        assert_eq!(keyword_file(":list"), KeywordFile::List);
        assert_eq!(
            keyword_file(".12.1700.M1.h"),
            KeywordFile::Update {
                message: "1700.M1.h".into(),
                age: Some(12)
            }
        );
        assert_eq!(
            keyword_file("1700.M1.h"),
            KeywordFile::Update {
                message: "1700.M1.h".into(),
                age: None
            }
        );
        assert_eq!(keyword_file(".tmp.17000.x"), KeywordFile::Other);
        assert_eq!(keyword_file(".012.m"), KeywordFile::Other);
    }

    #[test]
    fn courier_keywords_are_the_list_overridden_by_the_latest_updates() {
        // As Courier's save_keywords writes :list: names, empty line, `base:indexes`.
        let list = b"$Label1\nJunk\nwork\n\n10.M.a:0 2\n20.M.b:1\n30.M.c:2\n";
        let updates = vec![
            // 20.M.b: two aged updates, the larger N wins.
            (".5.20.M.b".to_string(), b"old\n".to_vec()),
            (".9.20.M.b".to_string(), b"NonJunk\nwork\n".to_vec()),
            // 30.M.c: the plain name beats any aged one; empty = no keywords.
            (".99.30.M.c".to_string(), b"x\n".to_vec()),
            ("30.M.c".to_string(), b"".to_vec()),
            // 40.M.d: only in an update.
            ("40.M.d".to_string(), b"$Label1\n".to_vec()),
            (".tmp.1700000000.x".to_string(), b"ignored\n".to_vec()),
        ];
        let k = CourierKeywords::read(Some(list), &updates);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(k.by_message["10.M.a"], set(&["$Label1", "work"]));
        assert_eq!(k.by_message["20.M.b"], set(&["NonJunk", "work"]));
        assert!(!k.by_message.contains_key("30.M.c"));
        assert_eq!(k.by_message["40.M.d"], set(&["$Label1"]));
        assert_eq!(
            k.order,
            vec!["$Label1", "work", "NonJunk"],
            "Junk is unused"
        );
    }

    #[test]
    fn dovecot_keywords_keep_their_letters_and_stop_at_z() {
        let existing = DovecotKeywords::parse(b"0 $Junk\n2 work\n");
        let (merged, left) = existing.with(&["work".into(), "$Label1".into(), "x".into()]);
        assert_eq!(
            String::from_utf8_lossy(&merged.render()),
            "0 $Junk\n1 $Label1\n2 work\n3 x\n"
        );
        assert!(left.is_empty());
        let set: BTreeSet<String> = ["work".to_string(), "x".to_string()].into();
        assert_eq!(merged.letters(&set), "cd");
        let many: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        let (full, left) = DovecotKeywords::default().with(&many);
        assert_eq!(full.names.len(), MAX_KEYWORDS);
        assert_eq!(left, vec!["k26", "k27", "k28", "k29"]);
    }

    #[test]
    fn keyword_letters_join_the_flags_of_the_file_name() {
        assert_eq!(with_keyword_letters("1.M1.h:2,SR", "ac"), "1.M1.h:2,RSac");
        assert_eq!(
            with_keyword_letters("1.M1.h:2,Sb", "a"),
            "1.M1.h:2,Sa",
            "stray lower-case letters are not Courier's"
        );
        assert_eq!(
            with_keyword_letters("1.M1.h:2,S,x=1", "a"),
            "1.M1.h:2,Sa,x=1"
        );
        assert_eq!(with_keyword_letters("1.M1.h", "a"), "1.M1.h:2,a");
        assert_eq!(with_keyword_letters("1.M1.h", ""), "1.M1.h");
        assert_eq!(with_keyword_letters("1.M1.h:2,RS", ""), "1.M1.h:2,RS");
    }

    #[test]
    fn subscriptions_lose_courier_s_inbox_prefix() {
        let out = subscriptions(
            b"INBOX\nINBOX.Sent\nINBOX.Archive.2010\ninbox.Drafts\nShared.x\nINBOX.Sent\n\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "INBOX\nSent\nArchive.2010\nDrafts\nShared.x\n"
        );
        let names: Vec<String> = subscribed_names(&out).into_iter().collect();
        assert_eq!(
            names,
            vec!["Archive.2010", "Drafts", "INBOX", "Sent", "Shared.x"]
        );
        let v2 = subscribed_names(b"V\t2\n\nSent\nArchive\t2010\n");
        assert!(v2.contains("Archive.2010") && v2.contains("Sent"));
    }
}
