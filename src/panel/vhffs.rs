//! The VHFFS panel as an inventory: its PostgreSQL tables (VHFFS 4.5's own schema) read in
//! one `psql` round trip, and the paths its data directory layout gives sites
//! (`web/<md5 prefix>/<servername>`) and Maildirs.
//!
//! Objects move when the panel has them activated (state 6) or suspended (state 15, marked);
//! any other state is transitional or an error: the object is left out, listed with its state,
//! and so are the objects of a group, and the boxes of a mail domain, that are left out. Every
//! site serves `servername` and `www.servername`, as VHFFS's web server aliases them.

mod units;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{
    KindCount, LeftOut, LeftOutKind, PanelCron, PanelDatabase, PanelError, PanelInventory,
    PanelList, PanelMailDomain, PanelMailbox, PanelZone, confined,
};
use crate::db::discover::query_many;
use crate::plan::raw::DbEngine;
use crate::plan::secret::Secret;
use crate::plan::{INVENTORY_RULE, Site, UnitKind, VhffsSource, VhffsTarget};
use crate::report::Risk;
use crate::transport::Connections;
use crate::transport::TransportError;

/// `vhffs_object.state` of an object in service.
pub const ACTIVATED: i32 = 6;
/// `vhffs_object.state` of a suspended object: it moves, and the review says so.
pub const SUSPENDED: i32 = 15;

/// Every statement tags its rows, so one `psql` run answers them all.
const STATEMENTS: &[&str] = &[
    // A user's private group has the user's gid: counted as a user, not a group.
    "SELECT 'group', g.gid, g.groupname, o.state, CASE WHEN u.gid IS NULL THEN '' ELSE 'user' END \
     FROM vhffs_groups g JOIN vhffs_object o ON o.object_id = g.object_id \
     LEFT JOIN (SELECT DISTINCT gid FROM vhffs_users) u ON u.gid = g.gid",
    // md5 computed by the server: the hashed web layout needs it and we carry no MD5 of our own.
    "SELECT 'site', h.servername, md5(h.servername), o.owner_uid, o.owner_gid, o.state \
     FROM vhffs_httpd h JOIN vhffs_object o ON o.object_id = h.object_id ORDER BY h.servername",
    // Passwords travel hex-encoded so no byte of theirs can break the row format.
    "SELECT 'mysql', d.dbname, d.dbuser, encode(convert_to(COALESCE(d.dbpass, ''), 'UTF8'), 'hex'), \
     o.owner_gid, o.state FROM vhffs_mysql d JOIN vhffs_object o ON o.object_id = d.object_id \
     ORDER BY d.dbname",
    "SELECT 'pgsql', d.dbname, d.dbuser, encode(convert_to(COALESCE(d.dbpass, ''), 'UTF8'), 'hex'), \
     o.owner_gid, o.state FROM vhffs_pgsql d JOIN vhffs_object o ON o.object_id = d.object_id \
     ORDER BY d.dbname",
    // Counts joined as aggregates (hash joins), not correlated subqueries: the panel's tables
    // may lack the indexes that would make those fast, and 25,000 domains made them quadratic.
    "SELECT 'mx', m.domain, o.owner_gid, o.state, COALESCE(c.n, 0) FROM vhffs_mx m \
     JOIN vhffs_object o ON o.object_id = m.object_id LEFT JOIN (SELECT l.mx_id, count(*) AS n \
     FROM vhffs_mx_localpart l JOIN vhffs_mx_redirect r ON r.localpart_id = l.localpart_id \
     GROUP BY l.mx_id) c ON c.mx_id = m.mx_id ORDER BY m.domain",
    // A box has a state of its own (no object row); its domain's object decides too.
    "SELECT 'box', m.domain, l.localpart, b.state, o.state, o.owner_gid FROM vhffs_mx_box b \
     JOIN vhffs_mx_localpart l ON l.localpart_id = b.localpart_id \
     JOIN vhffs_mx m ON m.mx_id = l.mx_id JOIN vhffs_object o ON o.object_id = m.object_id \
     ORDER BY m.domain, l.localpart",
    "SELECT 'zone', d.domain, d.serial, o.owner_gid, o.state, COALESCE(c.n, 0) FROM vhffs_dns d \
     JOIN vhffs_object o ON o.object_id = d.object_id LEFT JOIN (SELECT zone, count(*) AS n \
     FROM vhffs_dns_rr GROUP BY zone) c ON c.zone = d.dns_id ORDER BY d.domain",
    // Users' ids (and their private groups'): the owners of what moves must resolve at the
    // target (`lifecycle::ids`).
    "SELECT 'uid', u.uid, u.gid, o.state FROM vhffs_users u \
     JOIN vhffs_object o ON o.object_id = u.object_id",
    // Mailing lists with their subscriber counts; the domain's state decides too.
    "SELECT 'ml', m.domain, l.localpart, o.owner_gid, o.state, mo.state, COALESCE(c.n, 0) \
     FROM vhffs_mx_ml ml JOIN vhffs_object o ON o.object_id = ml.object_id \
     JOIN vhffs_mx_localpart l ON l.localpart_id = ml.localpart_id \
     JOIN vhffs_mx m ON m.mx_id = l.mx_id JOIN vhffs_object mo ON mo.object_id = m.object_id \
     LEFT JOIN (SELECT ml_id, count(*) AS n FROM vhffs_mx_ml_subscribers GROUP BY ml_id) c \
     ON c.ml_id = ml.ml_id ORDER BY m.domain, l.localpart",
    "SELECT 'catchall', m.domain, count(*) FROM vhffs_mx_catchall c \
     JOIN vhffs_mx m ON m.mx_id = c.mx_id GROUP BY m.domain",
    "SELECT 'cron', c.cronpath, o.owner_uid, o.owner_gid, o.state, c.interval FROM vhffs_cron c \
     JOIN vhffs_object o ON o.object_id = c.object_id ORDER BY c.cronpath",
    // Each group's quota in MB, as `group_quota.pl` applies it to the data directory.
    "SELECT 'quota', g.gid, g.groupname, g.quota FROM vhffs_groups g ORDER BY g.gid",
    // Every object by type (Vhffs::Constants TYPE_*), for the kinds no unit moves.
    "SELECT 'type', o.type, count(*) FROM vhffs_object o GROUP BY o.type ORDER BY o.type",
];

/// Panel object types (`Vhffs::Constants`) no unit of this tool moves yet, with their names.
const TYPES_WITHOUT_UNIT: &[(i32, &str)] = &[
    (10, "user"),
    (11, "group"),
    (21, "repository"),
    (40, "cvs"),
    (41, "svn"),
    (42, "git"),
    (43, "mercurial"),
    (44, "bazaar"),
];

/// A state in words, as the panel shows it (`Vhffs::Constants::STATUS_STRINGS`).
pub fn state_label(state: i32) -> &'static str {
    match state {
        1 => "waiting for validation",
        2 => "validation refused",
        3 => "waiting for creation",
        4 => "creation error",
        5 => "waiting for activation",
        6 => "activated",
        7 => "activation error",
        9 => "waiting for modification",
        10 => "modification error",
        12 => "will be deleted",
        13 => "deletion error",
        14 => "waiting for suspension",
        15 => "suspended",
        16 => "suspension error",
        _ => "unknown state",
    }
}

/// `<datadir>/web/<h[0:2]>/<h[2:4]>/<h[4:6]>/<servername>`, `h` the MD5 of the server name in
/// hex; `None` for a name that would leave the directory.
pub fn web_path(datadir: &Path, servername: &str, md5_hex: &str) -> Option<PathBuf> {
    if md5_hex.len() < 6 || !md5_hex.is_ascii() {
        return None;
    }
    confined(
        datadir,
        &[
            "web",
            &md5_hex[0..2],
            &md5_hex[2..4],
            &md5_hex[4..6],
            servername,
        ],
    )
}

/// `<datadir>/mail/boxes/<d[0]>/<d[1]>/<domain>`, a mail domain's directory.
pub fn mail_domain_path(datadir: &Path, domain: &str) -> Option<PathBuf> {
    let mut d = domain.chars();
    let (d0, d1) = (d.next()?.to_string(), d.next()?.to_string());
    confined(datadir, &["mail", "boxes", &d0, &d1, domain])
}

/// `<datadir>/mail/boxes/<d[0]>/<d[1]>/<domain>/<l[0]>/<localpart>/Maildir`.
pub fn maildir_path(datadir: &Path, domain: &str, localpart: &str) -> Option<PathBuf> {
    let l0 = localpart.chars().next()?.to_string();
    let domain_dir = mail_domain_path(datadir, domain)?;
    confined(&domain_dir, &[&l0, localpart, "Maildir"])
}

/// Where listengine keeps its data at the source: VHFFS's default, `<datadir>/listengine`
/// (`<listengine> datadir` of `vhffs.conf`).
pub fn listengine_dir(source: &VhffsSource) -> PathBuf {
    source.datadir.join("listengine")
}

/// Where listengine's data goes at the target: under the new data directory, or where it was.
pub fn target_listengine_dir(source: &VhffsSource) -> PathBuf {
    match &source.target {
        VhffsTarget::Datadir(d) => d.join("listengine"),
        VhffsTarget::Path(_) => listengine_dir(source),
    }
}

/// `<listengine>/archives/<domain>/<localpart>`, a list's archives (listengine's `archive_it`).
pub fn list_archives_path(listengine: &Path, domain: &str, localpart: &str) -> Option<PathBuf> {
    confined(listengine, &["archives", domain, localpart])
}

/// Where a cron job's script lies: `cronpath` is `/home/<name>/<rest>` as vhffs-fs shows it
/// (`Vhffs::Panel::Cron::create`), `/home/<name>` being the group's directory
/// (`<datadir>/groups/<n0>/<n1>/<name>`, `Vhffs::Group::get_dir`) or, for a user's private
/// group, the user's home (`<datadir>/home/<n0>/<n1>/<name>`); `None` for another shape.
pub fn cron_script_path(datadir: &Path, cronpath: &str, user: bool) -> Option<PathBuf> {
    let rest = cronpath.strip_prefix("/home/")?;
    let mut parts = rest.split('/');
    let name = parts.next()?;
    let mut n = name.chars();
    let (n0, n1) = (n.next()?.to_string(), n.next()?.to_string());
    let top = if user { "home" } else { "groups" };
    let mut path = confined(datadir, &[top, &n0, &n1, name])?;
    for p in parts.filter(|p| !p.is_empty()) {
        path = confined(&path, &[p])?;
    }
    Some(path)
}

/// The names a site is served under: VHFFS's web server aliases `www.<servername>` to every
/// server name (its panel tells users so), except one that starts with `www.` already.
pub fn site_domains(servername: &str) -> Vec<String> {
    if servername.starts_with("www.") {
        vec![servername.to_string()]
    } else {
        vec![servername.to_string(), format!("www.{servername}")]
    }
}

/// What the move does with an object in `state`: `Some(marks)` to move it, `None` to leave it.
fn disposition(state: i32) -> Option<Vec<String>> {
    match state {
        ACTIVATED => Some(Vec::new()),
        SUSPENDED => Some(vec!["suspended".into()]),
        _ => None,
    }
}

fn state_risk(what: &str, name: &str, state: i32) -> Risk {
    Risk::warning(
        "panel_state",
        name,
        format!(
            "{what} `{name}` is in panel state {state} ({}, neither activated nor suspended): left out of the move; settle it in the panel first or move it by hand",
            state_label(state)
        ),
    )
}

fn field(row: &[String], i: usize) -> &str {
    row.get(i).map_or("", String::as_str)
}

fn number<T: std::str::FromStr + Default>(row: &[String], i: usize) -> T {
    field(row, i).parse().unwrap_or_default()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Reads the panel and expands it.
///
/// # Errors
/// The panel's host is unreachable, or `psql` fails (its message, never a password).
pub fn read(source: &VhffsSource, connections: &Connections) -> Result<PanelInventory, PanelError> {
    let label = format!(
        "vhffs database `{}` on host `{}`",
        source.database, source.panel.host
    );
    let transport = connections.get(&source.panel.host).map_err(|e| match e {
        TransportError::Connect { .. } => PanelError::Unreachable(format!("{label}: {e}")),
        e => PanelError::Failed(format!("{label}: {e}")),
    })?;
    // Homes, groups' directories and repositories are read only when the plan moves them.
    let more: &[&str] = if source.units.is_empty() {
        &[]
    } else {
        units::STATEMENTS
    };
    let statements: Vec<String> = STATEMENTS
        .iter()
        .chain(more)
        .map(|s| s.to_string())
        .collect();
    let rows = query_many(
        transport.as_ref(),
        DbEngine::Postgres,
        &source.panel,
        Some(&source.database),
        &statements,
    )
    .map_err(|e| PanelError::Failed(format!("cannot read the VHFFS panel ({label}): {e}")))?;
    let mut inv = expand(source, &rows);
    inv.source = label;
    check_on_disk(source, connections, &mut inv);
    Ok(inv)
}

/// Why an object is left out: its own state, or the state of what it belongs to.
struct Verdict {
    state: i32,
    reason: String,
}

/// Collects the verdicts while the rows are expanded.
struct Judge<'a> {
    source: &'a VhffsSource,
    /// Groups left out, by gid: name and state.
    groups: HashMap<u32, (String, i32)>,
}

impl Judge<'_> {
    /// As `judge`, for an object of mail domain `domain`: one whose domain does not move
    /// stays with its domain (a box, a list).
    fn judge_in_domain(
        &self,
        state: i32,
        gid: u32,
        domain: &str,
        domain_state: i32,
    ) -> Result<Vec<String>, Verdict> {
        let marks = self.judge(state, Some(gid))?;
        match self.judge(domain_state, None) {
            Ok(_) => Ok(marks),
            Err(_) => Err(Verdict {
                state: domain_state,
                reason: format!(
                    "its mail domain `{domain}` is in panel state {domain_state} ({})",
                    state_label(domain_state)
                ),
            }),
        }
    }

    /// The object's marks when it moves, or why it does not.
    fn judge(&self, state: i32, gid: Option<u32>) -> Result<Vec<String>, Verdict> {
        let Some(marks) = disposition(state) else {
            return Err(Verdict {
                state,
                reason: format!("panel state {state} ({})", state_label(state)),
            });
        };
        match gid.and_then(|g| self.groups.get(&g)) {
            Some((name, gs)) => Err(Verdict {
                state: *gs,
                reason: format!(
                    "its group `{name}` is in panel state {gs} ({})",
                    state_label(*gs)
                ),
            }),
            None => Ok(marks),
        }
    }

    fn left_out(
        &self,
        kind: LeftOutKind,
        name: &str,
        verdict: Verdict,
        path: Option<PathBuf>,
    ) -> LeftOut {
        LeftOut {
            kind,
            name: name.to_string(),
            state: Some(verdict.state),
            state_label: Some(state_label(verdict.state).into()),
            reason: verdict.reason,
            host: path.as_ref().map(|_| self.source.data_host.clone()),
            path,
        }
    }
}

/// The units of the panel's rows (tagged as `STATEMENTS` tags them).
pub fn expand(source: &VhffsSource, rows: &[Vec<String>]) -> PanelInventory {
    let mut inv = PanelInventory {
        target_host: Some(source.target_host.clone()),
        ..PanelInventory::default()
    };
    let mut by_tag: BTreeMap<&str, Vec<&[String]>> = BTreeMap::new();
    for r in rows {
        by_tag.entry(field(r, 0)).or_default().push(&r[1..]);
    }
    let tagged = |t: &str| by_tag.get(t).cloned().unwrap_or_default();
    let mut judge = Judge {
        source,
        groups: HashMap::new(),
    };
    for g in tagged("group") {
        if field(g, 3) == "user" {
            inv.users += 1;
        } else {
            inv.groups += 1;
        }
        let (gid, name, state): (u32, &str, i32) = (number(g, 0), field(g, 1), number(g, 2));
        if disposition(state).is_none() {
            inv.risks.push(state_risk("group", name, state));
            inv.left_out.push(judge.left_out(
                LeftOutKind::Group,
                name,
                Verdict {
                    state,
                    reason: format!("panel state {state} ({})", state_label(state)),
                },
                None,
            ));
            judge.groups.insert(gid, (name.to_string(), state));
        } else {
            inv.ids.gids.insert(gid);
        }
    }
    for q in tagged("quota") {
        let (gid, group, mb): (u32, &str, u64) = (number(q, 0), field(q, 1), number(q, 2));
        if mb > 0 && !judge.groups.contains_key(&gid) {
            inv.quotas.push(super::GroupQuota {
                gid,
                group: group.to_string(),
                mb,
            });
        }
    }
    for u in tagged("uid") {
        let (uid, gid, state): (u32, u32, i32) = (number(u, 0), number(u, 1), number(u, 2));
        if disposition(state).is_some() {
            inv.ids.uids.insert(uid);
            inv.ids.gids.insert(gid);
        }
    }
    // Sites first: a group's databases move with its first site.
    let mut first_site_of_group: HashMap<u32, String> = HashMap::new();
    for s in tagged("site") {
        let (name, md5) = (field(s, 0).to_ascii_lowercase(), field(s, 1));
        let (uid, gid, state): (u32, u32, i32) = (number(s, 2), number(s, 3), number(s, 4));
        let source_path = web_path(&source.datadir, &name, md5);
        let marks = match judge.judge(state, Some(gid)) {
            Ok(m) => m,
            Err(v) => {
                inv.risks.push(state_risk("site", &name, v.state));
                inv.left_out
                    .push(judge.left_out(LeftOutKind::Site, &name, v, source_path));
                continue;
            }
        };
        let (Some(source_path), Some(target_path)) = (
            source_path,
            match &source.target {
                VhffsTarget::Datadir(d) => web_path(d, &name, md5),
                VhffsTarget::Path(t) => Some(PathBuf::from(t.render_name(&name))),
            },
        ) else {
            inv.risks.push(Risk::error(
                "panel_invalid",
                &name,
                format!("site `{name}`: the server name cannot be a directory name"),
            ));
            continue;
        };
        first_site_of_group.entry(gid).or_insert(name.clone());
        inv.sites.push(Site {
            kind: crate::plan::UnitKind::Web,
            relink: None,
            domains: site_domains(&name),
            name,
            rule: INVENTORY_RULE,
            source_host: source.data_host.clone(),
            source_path,
            target_host: source.target_host.clone(),
            target_path,
            databases: Vec::new(),
            exclude: source.exclude.clone(),
            owner: Some((uid, gid)),
            marks,
            tls: None,
        });
    }
    let site_index: HashMap<String, usize> = inv
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    for (tag, engine, kind) in [
        ("mysql", "mysql", LeftOutKind::Mysql),
        ("pgsql", "postgres", LeftOutKind::Pgsql),
    ] {
        for d in tagged(tag) {
            let (name, user) = (field(d, 0).to_string(), field(d, 1).to_string());
            let (gid, state): (u32, i32) = (number(d, 3), number(d, 4));
            let marks = match judge.judge(state, Some(gid)) {
                Ok(m) => m,
                Err(v) => {
                    inv.risks.push(state_risk("database", &name, v.state));
                    inv.left_out.push(judge.left_out(kind, &name, v, None));
                    continue;
                }
            };
            let site = first_site_of_group.get(&gid).cloned();
            match &site {
                Some(s) => inv.sites[site_index[s]]
                    .databases
                    .push(crate::plan::SiteDatabase {
                        name: name.clone(),
                        engine: Some(if engine == "postgres" {
                            DbEngine::Postgres
                        } else {
                            DbEngine::Mariadb
                        }),
                    }),
                None => inv.risks.push(Risk::warning(
                    "panel_no_site",
                    &name,
                    format!(
                        "{engine} database `{name}` belongs to group {gid}, which has no site: it moves only with a `databases:` rule, outside the cutover of a site"
                    ),
                )),
            }
            inv.databases.push(PanelDatabase {
                engine: engine.into(),
                name,
                user,
                gid,
                site,
                marks,
                password: unhex(field(d, 2))
                    .filter(|p| !p.is_empty())
                    .map(Secret::new),
            });
        }
    }
    let mut boxes: HashMap<&str, u64> = HashMap::new();
    for b in tagged("box") {
        let (domain, localpart) = (field(b, 0), field(b, 1));
        let address = format!("{localpart}@{domain}");
        let (state, domain_state, gid): (i32, i32, u32) =
            (number(b, 2), number(b, 3), number(b, 4));
        let path = maildir_path(&source.datadir, domain, localpart);
        let verdict = judge.judge_in_domain(state, gid, domain, domain_state);
        let marks = match verdict {
            Ok(m) => m,
            Err(v) => {
                inv.risks.push(state_risk("mail box", &address, v.state));
                let dir = path
                    .as_deref()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf);
                inv.left_out
                    .push(judge.left_out(LeftOutKind::Mailbox, &address, v, dir));
                continue;
            }
        };
        let Some(path) = path else {
            inv.risks.push(Risk::error(
                "panel_invalid",
                &address,
                format!("mail box `{address}`: the address cannot be a directory name"),
            ));
            continue;
        };
        *boxes.entry(domain).or_default() += 1;
        inv.mailboxes.push(PanelMailbox {
            address,
            maildir: format!("{}:{}", source.data_host, path.display()),
            marks,
        });
    }
    let catchalls: HashMap<&str, u64> = tagged("catchall")
        .into_iter()
        .map(|c| (field(c, 0), number(c, 1)))
        .collect();
    for m in tagged("mx") {
        let domain = field(m, 0);
        let (gid, state): (u32, i32) = (number(m, 1), number(m, 2));
        let marks = match judge.judge(state, Some(gid)) {
            Ok(m) => m,
            Err(v) => {
                inv.risks.push(state_risk("mail domain", domain, v.state));
                let dir = mail_domain_path(&source.datadir, domain);
                inv.left_out
                    .push(judge.left_out(LeftOutKind::MailDomain, domain, v, dir));
                continue;
            }
        };
        inv.mail_domains.push(PanelMailDomain {
            domain: domain.to_string(),
            gid,
            boxes: boxes.get(domain).copied().unwrap_or(0),
            redirects: number(m, 3),
            catchalls: catchalls.get(domain).copied().unwrap_or(0),
            marks,
        });
    }
    let listengine = listengine_dir(source);
    for l in tagged("ml") {
        let (domain, localpart) = (field(l, 0), field(l, 1));
        let address = format!("{localpart}@{domain}");
        let (gid, state, domain_state, subscribers): (u32, i32, i32, u64) =
            (number(l, 2), number(l, 3), number(l, 4), number(l, 5));
        let path = list_archives_path(&listengine, domain, localpart);
        let verdict = judge.judge_in_domain(state, gid, domain, domain_state);
        let marks = match verdict {
            Ok(m) => m,
            Err(v) => {
                inv.risks
                    .push(state_risk("mailing list", &address, v.state));
                inv.left_out
                    .push(judge.left_out(LeftOutKind::MailingList, &address, v, path));
                continue;
            }
        };
        let Some(path) = path else {
            inv.risks.push(Risk::error(
                "panel_invalid",
                &address,
                format!("mailing list `{address}`: the address cannot be a directory name"),
            ));
            continue;
        };
        inv.lists.push(PanelList {
            address,
            gid,
            subscribers,
            archives: format!("{}:{}", source.data_host, path.display()),
            marks,
        });
    }
    let private_groups: HashSet<&str> = tagged("group")
        .into_iter()
        .filter(|g| field(g, 3) == "user")
        .map(|g| field(g, 1))
        .collect();
    for c in tagged("cron") {
        let path = field(c, 0);
        let (uid, gid, state, interval): (u32, u32, i32, u64) =
            (number(c, 1), number(c, 2), number(c, 3), number(c, 4));
        let marks = match judge.judge(state, Some(gid)) {
            Ok(m) => m,
            Err(v) => {
                inv.risks.push(state_risk("cron job", path, v.state));
                inv.left_out
                    .push(judge.left_out(LeftOutKind::Cron, path, v, None));
                continue;
            }
        };
        let user = private_groups.contains(path.split('/').nth(2).unwrap_or_default());
        inv.cron_jobs.push(PanelCron {
            path: path.to_string(),
            uid,
            gid,
            interval,
            script: cron_script_path(&source.datadir, path, user)
                .map(|p| format!("{}:{}", source.data_host, p.display())),
            marks,
        });
    }
    for z in tagged("zone") {
        let zone = field(z, 0).trim_end_matches('.').to_ascii_lowercase();
        let (gid, state): (u32, i32) = (number(z, 2), number(z, 3));
        let marks = match judge.judge(state, Some(gid)) {
            Ok(m) => m,
            Err(v) => {
                inv.risks.push(state_risk("zone", &zone, v.state));
                inv.left_out
                    .push(judge.left_out(LeftOutKind::Zone, &zone, v, None));
                continue;
            }
        };
        inv.zones.push(PanelZone {
            zone,
            serial: number(z, 1),
            records: number(z, 4),
            gid,
            marks,
        });
    }
    units::expand(source, &by_tag, &judge, &mut inv);
    for t in tagged("type") {
        let (kind, count): (i32, u64) = (number(t, 0), number(t, 1));
        if units::covers(&source.units, kind) {
            continue;
        }
        if let Some((_, name)) = TYPES_WITHOUT_UNIT.iter().find(|(k, _)| *k == kind) {
            inv.other_objects.push(KindCount {
                kind: name.to_string(),
                count,
            });
        }
    }
    inv
}

/// Compares the panel with the data directory: a site or Maildir the panel lists but the disk
/// lacks cannot move; a directory the panel does not list is not moved. Two globs, whatever the
/// number of sites.
fn check_on_disk(source: &VhffsSource, connections: &Connections, inv: &mut PanelInventory) {
    let transport = match connections.get(&source.data_host) {
        Ok(t) => t,
        Err(e) => {
            inv.risks.push(Risk::error(
                "unreachable",
                &source.data_host,
                format!("cannot check the data directory: {e}"),
            ));
            return;
        }
    };
    let datadir = source.datadir.display().to_string();
    let datadir = datadir.trim_end_matches('/');
    units::check_on_disk(source, transport.as_ref(), inv);
    let mut listed = |pattern: String| -> Option<HashSet<PathBuf>> {
        match transport.glob_dirs(&pattern) {
            Ok(dirs) => Some(dirs.into_iter().collect()),
            Err(e) => {
                inv.risks.push(Risk::error(
                    "discovery_failed",
                    &source.data_host,
                    format!("cannot list `{pattern}`: {e}"),
                ));
                None
            }
        }
    };
    let web = listed(format!("{datadir}/web/*/*/*/*"));
    let maildirs = listed(format!("{datadir}/mail/boxes/*/*/*/*/*/Maildir"));
    if let Some(on_disk) = web {
        let known: HashSet<&Path> = inv.sites.iter().map(|s| s.source_path.as_path()).collect();
        // Units of other kinds are looked for in their own layouts (`units::check_on_disk`).
        for s in inv.sites.iter().filter(|s| s.kind == UnitKind::Web) {
            if !on_disk.contains(&s.source_path) {
                inv.risks.push(Risk::warning(
                    "missing_source",
                    &s.name,
                    format!(
                        "the panel lists site `{}` but `{}` does not exist on `{}`",
                        s.name,
                        s.source_path.display(),
                        source.data_host
                    ),
                ));
            }
        }
        // A left-out site's directory is listed with its site, not again as a stranger.
        let left_out: HashSet<&Path> = inv
            .left_out
            .iter()
            .filter_map(|l| l.path.as_deref())
            .collect();
        let mut orphans: Vec<&PathBuf> = on_disk
            .iter()
            .filter(|p| !known.contains(p.as_path()) && !left_out.contains(p.as_path()))
            .collect();
        orphans.sort();
        let mut strays = Vec::new();
        for p in orphans {
            inv.risks.push(Risk::warning(
                "not_in_panel",
                p.display().to_string(),
                format!(
                    "`{}` on `{}` belongs to no site of the panel: not moved",
                    p.display(),
                    source.data_host
                ),
            ));
            strays.push(stray(
                source,
                LeftOutKind::Directory,
                p,
                "under the web root, named by no site of the panel",
            ));
        }
        inv.left_out.extend(strays);
    }
    if let Some(on_disk) = maildirs {
        let prefix = format!("{}:", source.data_host);
        let mut known: HashSet<&Path> = HashSet::new();
        for b in &inv.mailboxes {
            let path = Path::new(b.maildir.strip_prefix(&prefix).unwrap_or(&b.maildir));
            known.insert(path);
            if !on_disk.contains(path) {
                inv.risks.push(Risk::warning(
                    "missing_maildir",
                    &b.address,
                    format!(
                        "the panel lists mail box `{}` but its Maildir `{}` does not exist",
                        b.address,
                        path.display()
                    ),
                ));
            }
        }
        // Boxes and domains left out are listed already; their Maildirs are no strangers.
        let left_out: Vec<&Path> = inv
            .left_out
            .iter()
            .filter(|l| matches!(l.kind, LeftOutKind::Mailbox | LeftOutKind::MailDomain))
            .filter_map(|l| l.path.as_deref())
            .collect();
        let mut orphans: Vec<&PathBuf> = on_disk
            .iter()
            .filter(|p| !known.contains(p.as_path()) && !left_out.iter().any(|l| p.starts_with(l)))
            .collect();
        orphans.sort();
        let mut strays = Vec::new();
        for p in orphans {
            let dir = p.parent().unwrap_or(p);
            inv.risks.push(Risk::warning(
                "not_in_panel",
                dir.display().to_string(),
                format!(
                    "`{}` on `{}` is the Maildir of no box of the panel: not moved",
                    p.display(),
                    source.data_host
                ),
            ));
            strays.push(stray(
                source,
                LeftOutKind::Maildir,
                dir,
                "a Maildir of no box of the panel",
            ));
        }
        inv.left_out.extend(strays);
    }
}

/// A directory on disk the panel does not know.
fn stray(source: &VhffsSource, kind: LeftOutKind, path: &Path, reason: &str) -> LeftOut {
    LeftOut {
        kind,
        name: path.display().to_string(),
        state: None,
        state_label: None,
        reason: reason.into(),
        host: Some(source.data_host.clone()),
        path: Some(path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::DbServer;

    fn source() -> VhffsSource {
        VhffsSource {
            panel: DbServer {
                host: "panel".into(),
                socket: None,
                address: None,
                port: None,
                user: None,
                password: None,
                bin_dir: None,
            },
            database: "vhffs".into(),
            datadir: "/data".into(),
            data_host: "web".into(),
            target_host: "new".into(),
            target: VhffsTarget::Datadir("/srv/data".into()),
            exclude: vec![],
            units: Default::default(),
        }
    }

    fn row(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn layout_follows_the_md5_of_the_server_name() {
        // md5("www.example.org") = fd24c3327b7bbfe71fee28bbdbf37350
        assert_eq!(
            web_path(
                Path::new("/data"),
                "www.example.org",
                "fd24c3327b7bbfe71fee28bbdbf37350"
            ),
            Some("/data/web/fd/24/c3/www.example.org".into())
        );
        assert_eq!(
            maildir_path(Path::new("/data"), "example.org", "alice"),
            Some("/data/mail/boxes/e/x/example.org/a/alice/Maildir".into())
        );
        assert_eq!(maildir_path(Path::new("/data"), "example.org", ".."), None);
        assert_eq!(web_path(Path::new("/data"), "../etc", "aabbcc"), None);
    }

    #[test]
    fn states_decide_what_moves_and_databases_follow_the_group_s_first_site() {
        let rows = vec![
            row(&["group", "10001", "alice", "6", "user"]),
            row(&["group", "1001", "alpha", "6", ""]),
            row(&["group", "1002", "beta", "4", ""]),
            row(&["group", "1003", "gamma", "12", ""]),
            row(&[
                "site",
                "b.example.org",
                "0123456789abcdef0123456789abcdef",
                "2001",
                "1001",
                "6",
            ]),
            row(&[
                "site",
                "a.example.org",
                "abcdef0123456789abcdef0123456789",
                "2001",
                "1001",
                "15",
            ]),
            row(&[
                "site",
                "broken.example.org",
                "abcdef0123456789abcdef0123456789",
                "2002",
                "1001",
                "4",
            ]),
            // Activated, but its group is being deleted.
            row(&[
                "site",
                "going.example.org",
                "fedcba9876543210fedcba9876543210",
                "2003",
                "1003",
                "6",
            ]),
            // "s3cret" hex-encoded.
            row(&["mysql", "alpha_wp", "alpha_wp", "733363726574", "1001", "6"]),
            row(&["mysql", "alpha_old", "alpha_old", "", "1001", "12"]),
            row(&["pgsql", "lonely", "lonely", "", "1009", "6"]),
            row(&["box", "example.org", "alice", "6", "6", "1001"]),
            row(&["box", "example.org", "bob", "15", "6", "1001"]),
            row(&["box", "gone.example", "carol", "6", "12", "1001"]),
            row(&["mx", "example.org", "1001", "6", "2"]),
            row(&["mx", "gone.example", "1001", "12", "0"]),
            row(&["zone", "example.org.", "2026112301", "1001", "6", "12"]),
            row(&["type", "10", "1"]),
            row(&["type", "20", "4"]),
            row(&["type", "42", "3"]),
        ];
        let inv = expand(&source(), &rows);
        assert_eq!((inv.groups, inv.users), (3, 1));
        let names: Vec<&str> = inv.sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b.example.org", "a.example.org"]);
        let b = &inv.sites[0];
        assert_eq!(b.source_host, "web");
        assert_eq!(
            b.source_path,
            PathBuf::from("/data/web/01/23/45/b.example.org")
        );
        assert_eq!(
            b.target_path,
            PathBuf::from("/srv/data/web/01/23/45/b.example.org")
        );
        assert_eq!(b.domains, ["b.example.org", "www.b.example.org"]);
        assert_eq!(b.owner, Some((2001, 1001)));
        assert_eq!(b.databases, ["alpha_wp"]);
        assert_eq!(inv.sites[1].marks, ["suspended"]);
        assert!(inv.sites[1].databases.is_empty());
        let kinds: Vec<(&str, &str)> = inv
            .risks
            .iter()
            .map(|r| (r.kind.as_str(), r.subject.as_str()))
            .collect();
        assert!(kinds.contains(&("panel_state", "beta")), "{kinds:?}");
        assert!(
            kinds.contains(&("panel_state", "broken.example.org")),
            "{kinds:?}"
        );
        assert!(kinds.contains(&("panel_no_site", "lonely")), "{kinds:?}");
        // Every object left out, with the state that decided it.
        let left: Vec<(&str, &str, Option<i32>)> = inv
            .left_out
            .iter()
            .map(|l| (l.kind.as_str(), l.name.as_str(), l.state))
            .collect();
        for expected in [
            ("group", "beta", Some(4)),
            ("site", "broken.example.org", Some(4)),
            ("site", "going.example.org", Some(12)),
            ("mysql", "alpha_old", Some(12)),
            ("mailbox", "carol@gone.example", Some(12)),
            ("mail_domain", "gone.example", Some(12)),
        ] {
            assert!(left.contains(&expected), "{expected:?} in {left:?}");
        }
        let carol = inv
            .left_out
            .iter()
            .find(|l| l.name == "carol@gone.example")
            .unwrap();
        assert_eq!(
            carol.path.as_deref(),
            Some(Path::new("/data/mail/boxes/g/o/gone.example/c/carol"))
        );
        assert!(
            carol.reason.contains("mail domain `gone.example`"),
            "{}",
            carol.reason
        );
        let going = inv
            .left_out
            .iter()
            .find(|l| l.name == "going.example.org")
            .unwrap();
        assert!(going.reason.contains("group `gamma`"), "{}", going.reason);
        assert_eq!(going.state_label.as_deref(), Some("will be deleted"));
        let db = &inv.databases[0];
        assert_eq!(db.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{:?}", inv).contains("s3cret"));
        assert!(
            !serde_json::to_string(&inv.export())
                .unwrap()
                .contains("s3cret")
        );
        assert_eq!(inv.mailboxes.len(), 2);
        assert_eq!(inv.mailboxes[1].marks, ["suspended"]);
        assert_eq!(
            inv.mailboxes[0].maildir,
            "web:/data/mail/boxes/e/x/example.org/a/alice/Maildir"
        );
        assert_eq!(
            (inv.mail_domains[0].boxes, inv.mail_domains[0].redirects),
            (2, 2)
        );
        assert_eq!(inv.mail_domains.len(), 1);
        assert_eq!(
            (inv.zones[0].zone.as_str(), inv.zones[0].records),
            ("example.org", 12)
        );
        let other: Vec<(&str, u64)> = inv
            .other_objects
            .iter()
            .map(|k| (k.kind.as_str(), k.count))
            .collect();
        assert_eq!(other, [("user", 1), ("git", 3)]);
    }

    #[test]
    fn cron_scripts_lie_in_the_group_s_directory_or_the_user_s_home() {
        let d = Path::new("/data");
        assert_eq!(
            cron_script_path(d, "/home/lists/bin/backup.sh", false),
            Some("/data/groups/l/i/lists/bin/backup.sh".into())
        );
        assert_eq!(
            cron_script_path(d, "/home/alice/run.sh", true),
            Some("/data/home/a/l/alice/run.sh".into())
        );
        assert_eq!(cron_script_path(d, "/home/lists/../../etc/x", false), None);
        assert_eq!(cron_script_path(d, "/srv/x.sh", false), None);
    }

    #[test]
    fn www_is_served_with_every_server_name() {
        assert_eq!(
            site_domains("example.org"),
            ["example.org", "www.example.org"]
        );
        assert_eq!(
            site_domains("blog.example.org"),
            ["blog.example.org", "www.blog.example.org"]
        );
        assert_eq!(site_domains("www.example.org"), ["www.example.org"]);
    }
}
