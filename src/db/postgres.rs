//! PostgreSQL side of a database move: the roles that reach a database (owners, grantees,
//! policies, settings, and the roles reached through membership) with their memberships, the
//! dump restored under a temporary name, the database's own properties (owner, ACL, settings,
//! comment) put back, then swapped in under its name without ever leaving the name missing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::discover::{query, tool_request};
use super::ident;
use super::transfer::{
    Endpoint, Moved, Options, TableName, Tools, check, comment, marker, parallel_streams, sql,
    stream,
};
use crate::plan::raw::{ConnectedClients, DbEngine};
use crate::transport::session::Session;

const PG: DbEngine = DbEngine::Postgres;

/// The setting that marks a database as ours (`ALTER DATABASE … SET transhumance.plan`): it
/// leaves the database's own comment alone.
const MARK_SETTING: &str = "transhumance.plan";

/// SQL giving the ownership mark of row `d` of `pg_database`, spelled as `marker` spells it:
/// from our setting, else the comment (copies made before the setting held the marker there),
/// else ''. What `db::plan::decide` reads, at the transfer and in the dry run alike.
pub(super) fn mark_sql() -> String {
    format!(
        "coalesce((SELECT {} || substr(c, {}) FROM pg_db_role_setting s, unnest(s.setconfig) c \
         WHERE s.setdatabase = d.oid AND s.setrole = 0 AND c LIKE {} LIMIT 1), \
         shobj_description(d.oid, 'pg_database'), '')",
        lit(&marker("")),
        MARK_SETTING.len() + 2,
        lit(&format!("{MARK_SETTING}=%"))
    )
}

/// A string literal in the `E''` form, right whatever `standard_conforming_strings` says.
fn lit(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn id(s: &str) -> String {
    ident(PG, s)
}

/// `ARRAY[...]::text[]` of `names`.
fn text_array(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = names.into_iter().map(|n| lit(n.as_ref())).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

/// One JSON value from a query that returns one (jsonb prints on one line).
fn json<T: serde::de::DeserializeOwned>(
    end: &Endpoint<'_>,
    database: Option<&str>,
    statement: &str,
) -> Result<T, String> {
    let rows = query(end.transport, PG, end.server, database, statement)?;
    let text = rows.first().map(|r| r.join("\t")).unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the server ({e})"))
}

/// Runs `script` with psql on `end` in one transaction, fed on stdin (never on a command line).
fn script(end: &Endpoint<'_>, database: &str, script: &str) -> Result<(), String> {
    let args: Vec<String> = ["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", "-"]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--dbname={database}")])
        .collect();
    let mut req = tool_request(PG, end.server, "psql", &args)?;
    req.stdin = format!("\\set VERBOSITY terse\n{script}").into_bytes();
    let out = end.transport.exec(&req).map_err(|e| e.to_string())?;
    check("psql", &out)
}

// ---------------------------------------------------------------------------------------------
// Roles

/// Every role a database names: owners of anything in it, grantees and grantors of every ACL
/// (tables, columns, sequences, functions, types, schemas, languages, large objects, default
/// privileges, foreign servers, the database itself), policy roles, per-role settings in it;
/// then, through `pg_auth_members`, their members (transitively: login roles that get their
/// rights through a group) and the groups of all of those (so memberships are carried whole).
/// Neither the bootstrap superuser nor the predefined `pg_*` roles, which every server has.
const CARRIED_CTE: &str = "WITH RECURSIVE this AS (SELECT oid, datdba, datacl FROM pg_database WHERE datname = current_database()), \
acls(acl) AS (SELECT datacl FROM this UNION ALL SELECT relacl FROM pg_class UNION ALL SELECT nspacl FROM pg_namespace \
  UNION ALL SELECT proacl FROM pg_proc UNION ALL SELECT typacl FROM pg_type UNION ALL SELECT lomacl FROM pg_largeobject_metadata \
  UNION ALL SELECT defaclacl FROM pg_default_acl UNION ALL SELECT attacl FROM pg_attribute WHERE attacl IS NOT NULL \
  UNION ALL SELECT lanacl FROM pg_language UNION ALL SELECT fdwacl FROM pg_foreign_data_wrapper UNION ALL SELECT srvacl FROM pg_foreign_server), \
named(oid) AS (SELECT datdba FROM this UNION SELECT a.grantee FROM acls, aclexplode(acls.acl) a UNION SELECT a.grantor FROM acls, aclexplode(acls.acl) a \
  UNION SELECT relowner FROM pg_class UNION SELECT nspowner FROM pg_namespace UNION SELECT proowner FROM pg_proc \
  UNION SELECT typowner FROM pg_type UNION SELECT lomowner FROM pg_largeobject_metadata UNION SELECT defaclrole FROM pg_default_acl \
  UNION SELECT lanowner FROM pg_language UNION SELECT fdwowner FROM pg_foreign_data_wrapper UNION SELECT srvowner FROM pg_foreign_server \
  UNION SELECT umuser FROM pg_user_mappings UNION SELECT collowner FROM pg_collation UNION SELECT conowner FROM pg_conversion \
  UNION SELECT oprowner FROM pg_operator UNION SELECT opcowner FROM pg_opclass UNION SELECT opfowner FROM pg_opfamily \
  UNION SELECT cfgowner FROM pg_ts_config UNION SELECT dictowner FROM pg_ts_dict UNION SELECT stxowner FROM pg_statistic_ext \
  UNION SELECT evtowner FROM pg_event_trigger UNION SELECT pubowner FROM pg_publication UNION SELECT unnest(polroles) FROM pg_policy \
  UNION SELECT setrole FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM this)), \
down(oid) AS (SELECT oid FROM named WHERE oid NOT IN (0, 10) UNION SELECT m.member FROM pg_auth_members m JOIN down ON m.roleid = down.oid), \
up(oid) AS (SELECT oid FROM down UNION SELECT m.roleid FROM pg_auth_members m JOIN up ON m.member = up.oid), \
carried AS (SELECT r.* FROM pg_roles r WHERE r.oid IN (SELECT oid FROM up) AND r.oid <> 10 AND r.rolname !~ '^pg_') ";

/// A role as `pg_roles` shows it (readable without superuser; no password).
#[derive(Debug, Clone, Deserialize)]
struct Role {
    name: String,
    #[serde(rename = "super")]
    superuser: bool,
    inherit: bool,
    createrole: bool,
    createdb: bool,
    login: bool,
    replication: bool,
    bypassrls: bool,
    connlimit: i64,
    valid_until: Option<String>,
    config: Option<Vec<String>>,
    comment: Option<String>,
}

/// `GRANT group TO member [WITH ADMIN OPTION]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Membership {
    group: String,
    member: String,
    admin: bool,
}

#[derive(Debug, Deserialize)]
struct SourceRoles {
    roles: Vec<Role>,
    members: Vec<Membership>,
}

/// A role that already exists at the target, as far as carrying roles cares.
#[derive(Debug, Deserialize)]
struct TargetRole {
    name: String,
    /// A superuser there, or the account we connect as: never altered.
    protected: bool,
    valid_until: Option<String>,
    replication: bool,
    bypassrls: bool,
}

#[derive(Debug, Deserialize)]
struct TargetRoles {
    roles: Vec<TargetRole>,
    members: Vec<Membership>,
}

/// The roles of database `name` at the source, with their memberships.
fn source_roles(from: &Endpoint<'_>, name: &str) -> Result<SourceRoles, String> {
    let q = format!(
        "{CARRIED_CTE}SELECT jsonb_build_object(\
         'roles', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', rolname, 'super', rolsuper, 'inherit', rolinherit, \
           'createrole', rolcreaterole, 'createdb', rolcreatedb, 'login', rolcanlogin, 'replication', rolreplication, \
           'bypassrls', rolbypassrls, 'connlimit', rolconnlimit, 'valid_until', rolvaliduntil, 'config', rolconfig, \
           'comment', shobj_description(oid, 'pg_authid')) ORDER BY rolname), '[]') FROM carried), \
         'members', (SELECT coalesce(jsonb_agg(jsonb_build_object('group', g.rolname, 'member', m.rolname, 'admin', x.admin) \
           ORDER BY g.rolname, m.rolname), '[]') \
           FROM (SELECT roleid, member, bool_or(admin_option) AS admin FROM pg_auth_members GROUP BY 1, 2) x \
           JOIN pg_roles g ON g.oid = x.roleid JOIN pg_roles m ON m.oid = x.member \
           WHERE x.member IN (SELECT oid FROM carried) AND (x.roleid IN (SELECT oid FROM carried) OR g.rolname ~ '^pg_')))"
    );
    json(from, Some(name), &q)
}

/// Password hashes of `roles` from `pg_authid`, or why they cannot be read (a source account
/// that is not a superuser).
fn source_passwords(
    from: &Endpoint<'_>,
    roles: &[Role],
) -> Result<BTreeMap<String, Option<String>>, String> {
    json(
        from,
        None,
        &format!(
            "SELECT coalesce(jsonb_object_agg(rolname, rolpassword), '{{}}') FROM pg_authid WHERE rolname = ANY({})",
            text_array(roles.iter().map(|r| &r.name))
        ),
    )
}

/// The target's side of `names`: which exist (and may not be touched), and their memberships.
fn target_roles(to: &Endpoint<'_>, names: &[&str]) -> Result<TargetRoles, String> {
    let arr = text_array(names);
    json(
        to,
        None,
        &format!(
            "SELECT jsonb_build_object(\
             'roles', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', rolname, \
               'protected', rolsuper OR rolname = session_user OR rolname = current_user OR oid = 10, \
               'valid_until', rolvaliduntil, 'replication', rolreplication, 'bypassrls', rolbypassrls)), '[]') \
               FROM pg_roles WHERE rolname = ANY({arr})), \
             'members', (SELECT coalesce(jsonb_agg(jsonb_build_object('group', g.rolname, 'member', m.rolname, 'admin', x.admin)), '[]') \
               FROM (SELECT roleid, member, bool_or(admin_option) AS admin FROM pg_auth_members GROUP BY 1, 2) x \
               JOIN pg_roles g ON g.oid = x.roleid JOIN pg_roles m ON m.oid = x.member \
               WHERE g.rolname = ANY({arr}) OR m.rolname = ANY({arr})))"
        ),
    )
}

/// `ALTER … SET` values: list settings (`search_path` …) element by element, as pg_dump does,
/// anything else as one literal.
fn setting_clause(entry: &str) -> Option<String> {
    let (key, value) = entry.split_once('=')?;
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return None;
    }
    const LISTS: [&str; 6] = [
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    ];
    let value = if LISTS.contains(&key.to_ascii_lowercase().as_str()) {
        let items = split_guc_list(value);
        if items.is_empty() {
            "''".to_string()
        } else {
            items.iter().map(|i| lit(i)).collect::<Vec<_>>().join(", ")
        }
    } else {
        lit(value)
    };
    Some(format!("SET {key} TO {value}"))
}

/// The elements of a list setting as the server stored it (`"$user", public`): quoted names
/// with `""` for a quote, or bare ones, separated by commas.
fn split_guc_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut item = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_string();
        }
        items.push(item);
        if chars.next().is_none() {
            break;
        }
    }
    items
}

/// What carrying the roles did.
struct CarriedRoles {
    names: Vec<String>,
    warnings: Vec<String>,
}

/// Creates or updates at the target every role database `name` needs (attributes, per-role
/// settings, comments, password hashes when the source lets us read them), grants the
/// memberships the source has among them and revokes those it no longer has. Roles are never
/// dropped; a role that is a superuser at the target, or the account we connect as, is left
/// as it is.
fn carry_roles(from: &Endpoint<'_>, to: &Endpoint<'_>, name: &str) -> Result<CarriedRoles, String> {
    let source = source_roles(from, name)?;
    let mut warnings = Vec::new();
    if source.roles.is_empty() {
        return Ok(CarriedRoles {
            names: Vec::new(),
            warnings,
        });
    }
    let passwords = match source_passwords(from, &source.roles) {
        Ok(p) => Some(p),
        Err(e) => {
            let logins: Vec<&str> = source
                .roles
                .iter()
                .filter(|r| r.login)
                .map(|r| r.name.as_str())
                .collect();
            if !logins.is_empty() {
                let why = e
                    .lines()
                    .find_map(|l| l.split_once("ERROR:"))
                    .map(|(_, why)| why.trim().to_string())
                    .unwrap_or(e);
                warnings.push(format!(
                    "passwords not carried for role(s) {}: the source account cannot read `pg_authid` ({why}); \
                     set them at the target (`ALTER ROLE … PASSWORD`) or sync as a superuser",
                    logins
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            None
        }
    };
    let names: Vec<&str> = source.roles.iter().map(|r| r.name.as_str()).collect();
    let target = target_roles(to, &names)?;
    let existing: BTreeMap<&str, &TargetRole> =
        target.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    let protected = |n: &str| existing.get(n).is_some_and(|r| r.protected);

    let mut out = String::new();
    for r in &source.roles {
        if protected(&r.name) {
            continue;
        }
        let role = id(&r.name);
        let there = existing.get(r.name.as_str());
        if there.is_none() {
            out += &format!("CREATE ROLE {role};\n");
        }
        let flag = |on: bool, what: &str| format!(" {}{what}", if on { "" } else { "NO" });
        // Attributes only a superuser may set are named only when they change, so a target
        // account with CREATEROLE alone can carry ordinary roles.
        let (replication, bypassrls) =
            there.map_or((false, false), |t| (t.replication, t.bypassrls));
        out += &format!(
            "ALTER ROLE {role} WITH{}{}{}{}{}{}{} CONNECTION LIMIT {}",
            if r.superuser { " SUPERUSER" } else { "" },
            flag(r.inherit, "INHERIT"),
            flag(r.createrole, "CREATEROLE"),
            flag(r.createdb, "CREATEDB"),
            flag(r.login, "LOGIN"),
            if r.replication != replication {
                flag(r.replication, "REPLICATION")
            } else {
                String::new()
            },
            if r.bypassrls != bypassrls {
                flag(r.bypassrls, "BYPASSRLS")
            } else {
                String::new()
            },
            r.connlimit
        );
        match (&r.valid_until, there) {
            (Some(v), _) => out += &format!(" VALID UNTIL {}", lit(v)),
            (None, Some(t)) if t.valid_until.is_some() => out += " VALID UNTIL 'infinity'",
            _ => {}
        }
        out += ";\n";
        out += &format!("ALTER ROLE {role} RESET ALL;\n");
        for s in r.config.iter().flatten() {
            if let Some(set) = setting_clause(s) {
                out += &format!("ALTER ROLE {role} {set};\n");
            }
        }
        out += &format!(
            "COMMENT ON ROLE {role} IS {};\n",
            r.comment.as_deref().map_or("NULL".into(), lit)
        );
    }
    // Memberships: what the source has among the carried roles, and nothing more among roles
    // the source knows.
    let at_source: BTreeMap<(&str, &str), bool> = source
        .members
        .iter()
        .map(|m| ((m.group.as_str(), m.member.as_str()), m.admin))
        .collect();
    let at_target: BTreeMap<(&str, &str), bool> = target
        .members
        .iter()
        .map(|m| ((m.group.as_str(), m.member.as_str()), m.admin))
        .collect();
    for (&(group, member), &admin) in &at_source {
        if protected(member) || protected(group) {
            continue;
        }
        let grant = format!("{} TO {}", id(group), id(member));
        match at_target.get(&(group, member)) {
            None => {
                out += &format!(
                    "GRANT {grant}{};\n",
                    if admin { " WITH ADMIN OPTION" } else { "" }
                )
            }
            Some(&had) if had != admin => {
                out += &if admin {
                    format!("GRANT {grant} WITH ADMIN OPTION;\n")
                } else {
                    format!(
                        "REVOKE ADMIN OPTION FOR {} FROM {};\n",
                        id(group),
                        id(member)
                    )
                }
            }
            Some(_) => {}
        }
    }
    let gone: Vec<(&str, &str)> = at_target
        .keys()
        .filter(|k| !at_source.contains_key(*k) && !protected(k.0) && !protected(k.1))
        .copied()
        .collect();
    if !gone.is_empty() {
        // Only between roles the source has: a role made at the target alone is not ours.
        let mut unknown: BTreeSet<&str> = gone.iter().flat_map(|(g, m)| [*g, *m]).collect();
        unknown.retain(|n| !names.contains(n) && !n.starts_with("pg_"));
        let known: BTreeSet<String> = if unknown.is_empty() {
            BTreeSet::new()
        } else {
            query(
                from.transport,
                PG,
                from.server,
                None,
                &format!(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY({})",
                    text_array(&unknown)
                ),
            )?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect()
        };
        let at_source_too =
            |n: &str| names.contains(&n) || n.starts_with("pg_") || known.contains(n);
        for (g, m) in gone {
            if at_source_too(g) && at_source_too(m) {
                out += &format!("REVOKE {} FROM {};\n", id(g), id(m));
            }
        }
    }
    script(to, "postgres", &out).map_err(|e| format!("carrying roles: {e}"))?;
    if let Some(passwords) = passwords {
        let mut secret = String::new();
        for r in &source.roles {
            if protected(&r.name) {
                continue;
            }
            if let Some(hash) = passwords.get(&r.name) {
                secret += &format!(
                    "ALTER ROLE {} PASSWORD {};\n",
                    id(&r.name),
                    hash.as_deref().map_or("NULL".into(), lit)
                );
            }
        }
        // The statements carry password hashes: an error never repeats them.
        if !secret.is_empty() {
            script(to, "postgres", &secret)
                .map_err(|_| "setting the roles' passwords at the target failed".to_string())?;
        }
    }
    Ok(CarriedRoles {
        names: source.roles.into_iter().map(|r| r.name).collect(),
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// The database's own properties

/// One entry of the database ACL (`aclexplode`); `grantee` `None` is PUBLIC.
#[derive(Debug, Clone, Deserialize)]
struct AclEntry {
    grantor: String,
    grantee: Option<String>,
    privilege: String,
    grantable: bool,
}

#[derive(Debug, Deserialize)]
struct RoleSetting {
    role: String,
    config: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Extension {
    name: String,
    schema: String,
}

/// What `pg_database` and `pg_db_role_setting` say of the database at the source.
#[derive(Debug, Deserialize)]
struct Database {
    /// The whole `pg_database` row: columns differ between versions (locale providers).
    row: serde_json::Map<String, serde_json::Value>,
    encoding: String,
    owner: String,
    /// Owned by the bootstrap superuser, whose name the target may spell differently.
    owner_is_bootstrap: bool,
    comment: Option<String>,
    /// `None`: the default ACL (PUBLIC may connect).
    acl: Option<Vec<AclEntry>>,
    settings: Option<Vec<String>>,
    role_settings: Vec<RoleSetting>,
    extensions: Vec<Extension>,
}

impl Database {
    fn field(&self, key: &str) -> Option<&str> {
        self.row.get(key).and_then(|v| v.as_str())
    }
}

fn source_database(from: &Endpoint<'_>, name: &str) -> Result<Database, String> {
    json(
        from,
        Some(name),
        "SELECT jsonb_build_object('row', to_jsonb(d) - 'datacl', 'encoding', pg_encoding_to_char(d.encoding), \
         'owner', pg_get_userbyid(d.datdba), 'owner_is_bootstrap', d.datdba = 10, \
         'comment', shobj_description(d.oid, 'pg_database'), \
         'acl', CASE WHEN d.datacl IS NULL THEN NULL ELSE (SELECT coalesce(jsonb_agg(jsonb_build_object(\
           'grantor', pg_get_userbyid(a.grantor), 'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, \
           'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY n), '[]') FROM aclexplode(d.datacl) WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n)) END, \
         'settings', (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0), \
         'role_settings', (SELECT coalesce(jsonb_agg(jsonb_build_object('role', pg_get_userbyid(s.setrole), 'config', s.setconfig) \
           ORDER BY pg_get_userbyid(s.setrole)), '[]') FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole <> 0), \
         'extensions', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', e.extname, 'schema', n.nspname) ORDER BY e.extname), '[]') \
           FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace)) \
         FROM pg_database d WHERE d.datname = current_database()",
    )
}

/// `CREATE DATABASE` with the source's encoding, collation, ctype and locale provider.
fn create_statement(db: &Database, tmp: &str) -> String {
    let mut s = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        id(tmp),
        lit(&db.encoding),
        lit(db.field("datcollate").unwrap_or("C")),
        lit(db.field("datctype").unwrap_or("C"))
    );
    let icu = db.field("daticulocale").or(db.field("datlocale"));
    match (db.field("datlocprovider"), icu) {
        (Some("i"), Some(l)) => s += &format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", lit(l)),
        (Some("b"), Some(l)) => s += &format!(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", lit(l)),
        _ => {}
    }
    s
}

/// Owner, connection limit, ACL, comment, settings (the database's and its roles'), then our
/// mark, on the restored copy `tmp`.
fn properties_script(db: &Database, tmp: &str, plan: &str) -> String {
    let target = id(tmp);
    let mut out = String::new();
    if !db.owner_is_bootstrap {
        out += &format!("ALTER DATABASE {target} OWNER TO {};\n", id(&db.owner));
    }
    let limit = db
        .row
        .get("datconnlimit")
        .and_then(|v| v.as_i64())
        .unwrap_or(-1);
    if limit != -1 {
        out += &format!("ALTER DATABASE {target} CONNECTION LIMIT {limit};\n");
    }
    if let Some(acl) = &db.acl {
        // From nothing, then each grant in the source's order: the same ACL, entry for entry.
        let owner = if db.owner_is_bootstrap {
            "CURRENT_USER".to_string()
        } else {
            id(&db.owner)
        };
        out += &format!(
            "REVOKE ALL ON DATABASE {target} FROM PUBLIC;\nREVOKE ALL ON DATABASE {target} FROM {owner};\n"
        );
        // (grantor, grantee, with grant option) → privileges, in order of first appearance.
        type Grant<'a> = ((&'a str, Option<&'a str>, bool), Vec<&'a str>);
        let mut grants: Vec<Grant<'_>> = Vec::new();
        for e in acl {
            let key = (e.grantor.as_str(), e.grantee.as_deref(), e.grantable);
            match grants.iter_mut().find(|(k, _)| *k == key) {
                Some((_, privs)) => privs.push(&e.privilege),
                None => grants.push((key, vec![&e.privilege])),
            }
        }
        for ((grantor, grantee, grantable), privs) in grants {
            let grant = format!(
                "GRANT {} ON DATABASE {target} TO {}{};\n",
                privs.join(", "),
                grantee.map_or("PUBLIC".into(), id),
                if grantable { " WITH GRANT OPTION" } else { "" }
            );
            if grantor == db.owner || db.owner_is_bootstrap {
                out += &grant;
            } else {
                out += &format!("SET ROLE {};\n{grant}RESET ROLE;\n", id(grantor));
            }
        }
    }
    if let Some(c) = &db.comment {
        out += &format!("COMMENT ON DATABASE {target} IS {};\n", lit(c));
    }
    for s in db.settings.iter().flatten() {
        if let Some(set) = setting_clause(s) {
            out += &format!("ALTER DATABASE {target} {set};\n");
        }
    }
    for r in &db.role_settings {
        for s in &r.config {
            if let Some(set) = setting_clause(s) {
                out += &format!("ALTER ROLE {} IN DATABASE {target} {set};\n", id(&r.role));
            }
        }
    }
    out += &format!(
        "ALTER DATABASE {target} SET {MARK_SETTING} TO {};\n",
        lit(plan)
    );
    out
}

/// Extensions the database uses that the target server cannot install, named before anything
/// is written there.
fn check_extensions(to: &Endpoint<'_>, db: &Database) -> Result<(), String> {
    if db.extensions.is_empty() {
        return Ok(());
    }
    let available: BTreeSet<String> = query(
        to.transport,
        PG,
        to.server,
        None,
        &format!(
            "SELECT name FROM pg_available_extensions WHERE name = ANY({})",
            text_array(db.extensions.iter().map(|e| &e.name))
        ),
    )?
    .into_iter()
    .filter_map(|r| r.into_iter().next())
    .collect();
    let missing: Vec<String> = db
        .extensions
        .iter()
        .filter(|e| !available.contains(&e.name))
        .map(|e| format!("`{}` (schema `{}`)", e.name, e.schema))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "extension(s) {} not available on the target server; install their package there (such as postgresql-contrib); nothing was written",
            missing.join(", ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary copies, connected clients, the swap

fn database_exists(to: &Endpoint<'_>, name: &str) -> Result<bool, String> {
    Ok(!sql(
        PG,
        to,
        &format!("SELECT 1 FROM pg_database WHERE datname = {}", lit(name)),
    )?
    .is_empty())
}

/// Client sessions connected to `name` (not ours, not the server's own workers), described.
fn clients(to: &Endpoint<'_>, name: &str) -> Result<Vec<(String, String)>, String> {
    Ok(sql(
        PG,
        to,
        &format!(
            "SELECT pid, 'pid ' || pid || ' ' || coalesce(usename, '?') || coalesce(' (' || nullif(application_name, '') || ')', '') \
             || ' from ' || coalesce(host(client_addr), 'local socket') FROM pg_stat_activity \
             WHERE datname = {} AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY pid",
            lit(name)
        ),
    )?
    .into_iter()
    .filter_map(|r| match r.as_slice() {
        [pid, what, ..] => Some((pid.clone(), what.clone())),
        _ => None,
    })
    .collect())
}

/// Drops the temporary copy `db`; when it cannot be, what is left, its size, and how to drop it.
fn drop_copy(to: &Endpoint<'_>, db: &str) -> String {
    let size = sql(
        PG,
        to,
        &format!(
            "SELECT pg_size_pretty(pg_database_size(datname)) FROM pg_database WHERE datname = {}",
            lit(db)
        ),
    )
    .ok()
    .and_then(|r| r.into_iter().next())
    .and_then(|r| r.into_iter().next());
    match sql(PG, to, &format!("DROP DATABASE IF EXISTS {}", id(db))) {
        Ok(_) => format!("the new copy under `{db}` was dropped"),
        Err(e) => format!(
            "the new copy is still at the target as `{db}` ({}), it could not be dropped ({}); drop it with `DROP DATABASE {};`",
            size.unwrap_or_else(|| "size unknown".into()),
            e.lines().last().unwrap_or_default().trim(),
            id(db)
        ),
    }
}

/// Renames `name` aside to `old` once no client is connected to it, under the plan's policy.
/// `Ok`: sessions ended on the way (under `terminate`); `Err`: why the swap is refused.
fn rename_aside(
    to: &Endpoint<'_>,
    name: &str,
    old: &str,
    policy: ConnectedClients,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let start = Instant::now();
    let mut ended: Vec<String> = Vec::new();
    let policy_name = match policy {
        ConnectedClients::Wait => "wait",
        ConnectedClients::Terminate => "terminate",
        ConnectedClients::Refuse => "refuse",
    };
    loop {
        let connected = clients(to, name)?;
        if connected.is_empty() {
            match sql(
                PG,
                to,
                &format!("ALTER DATABASE {} RENAME TO {}", id(name), id(old)),
            ) {
                Ok(_) => return Ok(ended),
                // A client came in between: go round again.
                Err(e) if e.contains("is being accessed by other users") => {}
                Err(e) => return Err(e),
            }
        }
        let waited = start.elapsed();
        let over = waited >= timeout;
        // Sessions that reconnect as fast as they are ended: give up after a second round.
        let hopeless = waited >= timeout + Duration::from_secs(10);
        match policy {
            ConnectedClients::Terminate if over && !hopeless => {
                for (pid, what) in &connected {
                    sql(PG, to, &format!("SELECT pg_terminate_backend({pid})"))
                        .map_err(|e| format!("ending session {what}: {e}"))?;
                    if !ended.contains(what) {
                        ended.push(what.clone());
                    }
                }
            }
            ConnectedClients::Refuse | ConnectedClients::Wait | ConnectedClients::Terminate
                if over || policy == ConnectedClients::Refuse =>
            {
                let list: Vec<&str> = connected.iter().map(|(_, w)| w.as_str()).collect();
                return Err(format!(
                    "{} client session(s) connected to `{name}` at the target ({}) {} (`connected_clients: {policy_name}`, timeout {}); \
                     the previous copy was left in place, serving",
                    list.len().max(1),
                    if list.is_empty() {
                        "arriving as others leave".to_string()
                    } else {
                        list.join(", ")
                    },
                    if policy == ConnectedClients::Refuse {
                        "refuse the swap".to_string()
                    } else {
                        format!("did not leave within {}s", waited.as_secs())
                    },
                    humantime::format_duration(timeout)
                ));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Puts the restored copy `tmp` under `name`, the previous copy (when `exists`) going aside as
/// `old` and then dropped. The final name is never left missing: when `tmp` cannot take it, the
/// previous copy is renamed back. Returns what to report (sessions ended, leftovers).
fn swap(
    to: &Endpoint<'_>,
    name: &str,
    tmp: &str,
    old: &str,
    exists: bool,
    options: &Options<'_>,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    if exists {
        if database_exists(to, old)? {
            sql(PG, to, &format!("DROP DATABASE {}", id(old))).map_err(|e| {
                format!(
                    "`{old}` (left by an earlier run) could not be dropped: {e}; {}",
                    drop_copy(to, tmp)
                )
            })?;
        }
        let ended = rename_aside(
            to,
            name,
            old,
            options.connected_clients,
            options.connected_clients_timeout,
        )
        .map_err(|e| format!("{e}; {}", drop_copy(to, tmp)))?;
        if !ended.is_empty() {
            notes.push(format!(
                "ended {} session(s) connected to the previous copy (`connected_clients: terminate`): {}",
                ended.len(),
                ended.join(", ")
            ));
        }
    }
    if let Err(e) = sql(
        PG,
        to,
        &format!("ALTER DATABASE {} RENAME TO {}", id(tmp), id(name)),
    ) {
        if !exists {
            return Err(format!(
                "renaming `{tmp}` to `{name}`: {e}; {}",
                drop_copy(to, tmp)
            ));
        }
        let mut back = Err(String::new());
        for _ in 0..5 {
            back = sql(
                PG,
                to,
                &format!("ALTER DATABASE {} RENAME TO {}", id(old), id(name)),
            );
            if back.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        return Err(match back {
            Ok(_) => format!(
                "renaming `{tmp}` to `{name}`: {e}; the previous copy was put back under `{name}`; {}",
                drop_copy(to, tmp)
            ),
            Err(b) => format!(
                "renaming `{tmp}` to `{name}`: {e}; putting the previous copy back failed too ({b}): \
                 it is `{old}` and the new one `{tmp}`; rename one of them to `{name}` (`ALTER DATABASE … RENAME TO {}`)",
                id(name)
            ),
        });
    }
    if exists && let Err(e) = sql(PG, to, &format!("DROP DATABASE {}", id(old))) {
        let size = sql(
            PG,
            to,
            &format!("SELECT pg_size_pretty(pg_database_size({}))", lit(old)),
        )
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.into_iter().next())
        .unwrap_or_else(|| "size unknown".into());
        notes.push(format!(
            "the previous copy is still at the target as `{old}` ({size}), it could not be dropped ({}); drop it with `DROP DATABASE {};`",
            e.lines().last().unwrap_or_default().trim(),
            id(old)
        ));
    }
    Ok(notes)
}

/// A `pg_dump --table` pattern that matches exactly `schema.table`, whatever their characters.
fn pg_table_pattern((schema, table): &TableName) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", quote(schema), quote(table))
}

/// A read-only transaction opened on the source and its exported snapshot id, for
/// `pg_dump --snapshot`; the transaction lasts as long as the session.
fn exported_snapshot(from: &Endpoint<'_>, name: &str) -> Result<(Session, String), String> {
    let req = tool_request(
        PG,
        from.server,
        "psql",
        &[
            "-XAtq".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            format!("--dbname={name}"),
        ],
    )?;
    let failed = |e: String| format!("exporting a snapshot of `{name}` on the source: {e}");
    let mut session = Session::open(from.transport, &req).map_err(|e| failed(e.to_string()))?;
    session
        .send(
            "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n",
        )
        .map_err(|e| failed(e.to_string()))?;
    match session.read_line().map_err(|e| failed(e.to_string()))? {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => {
            Ok((session, id))
        }
        Some(other) => Err(failed(format!("unexpected answer `{other}`"))),
        None => {
            let out = session.close().map_err(|e| failed(e.to_string()))?;
            Err(failed(out.stderr_text().trim().to_string()))
        }
    }
}

/// PostgreSQL restores into `<name>__th_new`, sets the database's properties there, then swaps
/// it in: the final name only ever holds a complete copy.
pub(super) fn transfer(
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    mut exists: bool,
    tools: &Tools,
    big: &[TableName],
    options: &Options<'_>,
) -> Result<Moved, String> {
    let engine = PG;
    let (tmp, old) = (format!("{name}__th_new"), format!("{name}__th_old"));
    let mut warnings = Vec::new();
    // A run killed between its two renames left the previous copy aside: put it back first.
    if !exists && database_exists(to, &old)? {
        sql(
            PG,
            to,
            &format!("ALTER DATABASE {} RENAME TO {}", id(&old), id(name)),
        )
        .map_err(|e| {
            format!(
                "`{old}` (left by an interrupted run) could not be renamed back to `{name}`: {e}"
            )
        })?;
        if comment(PG, to, name)?.as_deref() != Some(marker(options.plan).as_str()) {
            return Err(format!(
                "an interrupted run had left `{name}` renamed to `{old}`: it was put back; it is not this plan's copy, run again to apply `conflict`"
            ));
        }
        warnings.push(format!(
            "an interrupted run had left the previous copy as `{old}`: it was put back under `{name}` first"
        ));
        exists = true;
    }
    let db = source_database(from, name)?;
    check_extensions(to, &db)?;
    if exists && options.connected_clients == ConnectedClients::Refuse {
        // Refused at the swap anyway: say so before the copy rather than after.
        let connected = clients(to, name)?;
        if !connected.is_empty() {
            return Err(format!(
                "{} client session(s) connected to `{name}` at the target ({}) (`connected_clients: refuse`); nothing was written",
                connected.len(),
                connected
                    .iter()
                    .map(|(_, w)| w.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // Owners, grants, policies and memberships are restored as they were: the roles come first.
    let roles = carry_roles(from, to, name)?;
    warnings.extend(roles.warnings);
    sql(engine, to, &format!("DROP DATABASE IF EXISTS {}", id(&tmp)))?;
    sql(engine, to, &create_statement(&db, &tmp))?;
    // Split streams share one snapshot of the source, held open until the last has run, so
    // they see one state of the database even while it is written (a pre-sync).
    // `mode: replicate`: the slot's own exported snapshot, so the slot's changes start where
    // the dump stands.
    let mut slot_note = None;
    let snapshot = if let Some(slot) = &options.pg_slot {
        let (session, snapshot, lsn) = super::pg_replication::slot_with_snapshot(from, name, slot)?;
        slot_note = Some(format!("replication slot `{slot}` from {lsn}"));
        Some((session, snapshot))
    } else if big.is_empty() {
        None
    } else {
        Some(exported_snapshot(from, name)?)
    };
    // Our own publication is not the copy's (nor a subscription of the source's).
    let replica_args: Vec<String> = if options.pg_slot.is_some() {
        vec!["--no-publications".into(), "--no-subscriptions".into()]
    } else {
        Vec::new()
    };
    let snapshot_arg = snapshot.as_ref().map(|(_, id)| format!("--snapshot={id}"));
    // Uncompressed: the dump never lands on disk, and a stream crossing hosts is compressed
    // on the wire with zstd, several times cheaper than pg_dump's gzip.
    let dump = |extra: &[String]| -> Vec<String> {
        ["-Fc".to_string(), "-Z0".into(), format!("--dbname={name}")]
            .into_iter()
            .chain(snapshot_arg.clone())
            .chain(replica_args.iter().cloned())
            .chain(extra.iter().cloned())
            .collect()
    };
    let restore = || vec!["--exit-on-error".to_string(), format!("--dbname={tmp}")];
    let moved = if big.is_empty() {
        stream(engine, from, to, tools, dump(&[]), restore())
    } else {
        // Definitions, then rows in parallel streams (big tables alone, the rest together with
        // sequences and large objects), then indexes and constraints.
        let rest: Vec<String> = std::iter::once("--section=data".to_string())
            .chain(
                big.iter()
                    .map(|t| format!("--exclude-table-data={}", pg_table_pattern(t))),
            )
            .collect();
        let mut streams: Vec<Box<dyn Fn() -> Result<u64, String> + Send + Sync + '_>> =
            vec![Box::new(move || {
                stream(engine, from, to, tools, dump(&rest), restore())
            })];
        for t in big {
            streams.push(Box::new(move || {
                stream(
                    engine,
                    from,
                    to,
                    tools,
                    dump(&[
                        "--section=data".into(),
                        format!("--table={}", pg_table_pattern(t)),
                    ]),
                    restore(),
                )
            }));
        }
        stream(
            engine,
            from,
            to,
            tools,
            dump(&["--section=pre-data".into()]),
            restore(),
        )
        .and_then(|a| parallel_streams(options.jobs, streams).map(|b| a + b))
        .and_then(|ab| {
            stream(
                engine,
                from,
                to,
                tools,
                dump(&["--section=post-data".into()]),
                restore(),
            )
            .map(|c| ab + c)
        })
    };
    if let Some((session, _)) = snapshot {
        // Its end changes nothing: the transaction only read.
        let _ = session.close();
    }
    let bytes = moved
        .and_then(|bytes| {
            script(to, "postgres", &properties_script(&db, &tmp, options.plan))
                .map_err(|e| format!("setting the database's properties: {e}"))?;
            Ok(bytes)
        })
        .map_err(|e| format!("{e}; {}, `{name}` is untouched", drop_copy(to, &tmp)))?;
    warnings.extend(swap(to, name, &tmp, &old, exists, options)?);
    Ok(Moved {
        name: name.into(),
        outcome: "copied".into(),
        bytes,
        split_tables: big.iter().map(|(s, t)| format!("{s}.{t}")).collect(),
        users: roles.names,
        note: slot_note,
        warnings,
        position: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_split_as_the_server_stored_them() {
        assert_eq!(split_guc_list("app, public"), vec!["app", "public"]);
        assert_eq!(
            split_guc_list("\"$user\", \"My \"\"Schema\"\"\",x"),
            vec!["$user", "My \"Schema\"", "x"]
        );
        assert!(split_guc_list("").is_empty());
        assert_eq!(
            setting_clause("search_path=app, \"$user\"").unwrap(),
            "SET search_path TO E'app', E'$user'"
        );
        assert_eq!(
            setting_clause("statement_timeout=5s").unwrap(),
            "SET statement_timeout TO E'5s'"
        );
        assert_eq!(
            setting_clause("app.note=it's a\\b").unwrap(),
            "SET app.note TO E'it''s a\\\\b'"
        );
        assert_eq!(setting_clause("bad key;=1"), None);
    }

    #[test]
    fn the_database_acl_is_rebuilt_entry_by_entry() {
        let db: Database = serde_json::from_str(
            r#"{"row": {"datconnlimit": 5}, "encoding": "UTF8", "owner": "app", "owner_is_bootstrap": false,
                "comment": "the shop", "acl": [
                  {"grantor": "app", "grantee": null, "privilege": "TEMPORARY", "grantable": false},
                  {"grantor": "app", "grantee": "app", "privilege": "CREATE", "grantable": false},
                  {"grantor": "app", "grantee": "app", "privilege": "CONNECT", "grantable": false},
                  {"grantor": "app", "grantee": "staff", "privilege": "CONNECT", "grantable": true}],
                "settings": ["search_path=app, public"],
                "role_settings": [{"role": "alice", "config": ["statement_timeout=5s"]}],
                "extensions": []}"#,
        )
        .unwrap();
        let s = properties_script(&db, "shop__th_new", "p");
        let expected = "ALTER DATABASE \"shop__th_new\" OWNER TO \"app\";\n\
            ALTER DATABASE \"shop__th_new\" CONNECTION LIMIT 5;\n\
            REVOKE ALL ON DATABASE \"shop__th_new\" FROM PUBLIC;\n\
            REVOKE ALL ON DATABASE \"shop__th_new\" FROM \"app\";\n\
            GRANT TEMPORARY ON DATABASE \"shop__th_new\" TO PUBLIC;\n\
            GRANT CREATE, CONNECT ON DATABASE \"shop__th_new\" TO \"app\";\n\
            GRANT CONNECT ON DATABASE \"shop__th_new\" TO \"staff\" WITH GRANT OPTION;\n\
            COMMENT ON DATABASE \"shop__th_new\" IS E'the shop';\n\
            ALTER DATABASE \"shop__th_new\" SET search_path TO E'app', E'public';\n\
            ALTER ROLE \"alice\" IN DATABASE \"shop__th_new\" SET statement_timeout TO E'5s';\n\
            ALTER DATABASE \"shop__th_new\" SET transhumance.plan TO E'p';\n";
        assert_eq!(s, expected);
    }
}
