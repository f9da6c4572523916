//! What each server says about one database, read in one session: its tables with their
//! columns and keys, what verification leaves out and why, and the catalog facts compared as
//! they are (owners, privileges, settings, roles reaching the database and their memberships,
//! character sets, indexes, constraints, triggers, routines).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::session::{Ran, Script, field, run, text};
use super::sql::{self, Col, Enc, Lit};
use super::{Side, Skipped};
use crate::db::discover::{is_admin_account, selected};
use crate::db::{ident, sql_literal};
use crate::plan::raw::DbEngine;

/// A column of a table.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub col: Col,
    pub not_null: bool,
    /// MariaDB: character set and collation (empty for non-strings).
    pub charset: String,
    pub collation: String,
}

/// The key buckets are cut along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    pub columns: Vec<String>,
    /// `primary key` or `unique index NAME`.
    pub by: String,
}

/// A key candidate: (is the primary key, its columns, the index's name).
type Candidate = (bool, Vec<String>, String);

/// A table whose rows are compared.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// What reports call it: `schema.table` (PostgreSQL), `table` (MariaDB).
    pub display: String,
    /// The rows to read, as an SQL `FROM` item.
    pub from: String,
    pub columns: Vec<Column>,
    pub key: Option<Key>,
    /// Rows as the server's statistics estimate them; `None` when unknown.
    pub estimate: Option<u64>,
}

impl Table {
    pub(super) fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.col.name == name)
    }
}

/// A catalog fact: compared as is, shown unless secret (a password hash's digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fact {
    pub value: String,
    pub secret: bool,
    /// The statement that read it: when it failed on either side, its facts are compared
    /// on neither.
    pub origin: String,
}

/// One server's view of the database.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    /// Pinned settings as the server holds them.
    pub pins: Vec<String>,
    pub version_num: u64,
    pub version: String,
    /// `hashtextextended` of a probe string (PostgreSQL 11+).
    pub hashtext_probe: Option<String>,
    pub tables: BTreeMap<String, Table>,
    pub skipped: Vec<Skipped>,
    pub facts: BTreeMap<String, Fact>,
    /// Statements of facts that failed here, by tag: (what they read, why).
    pub unread: BTreeMap<String, (String, String)>,
    /// MariaDB: accounts and roles (`user`, `host`; roles have an empty host) that reach the
    /// database; their grants are read in the hashing session.
    pub accounts: BTreeSet<(String, String)>,
    /// MariaDB: the authentication plugins the server has active (`mysql_native_password`…).
    pub auth_plugins: BTreeSet<String>,
}

/// Reads `side`'s catalog. `schemas` (PostgreSQL): the schemas whose tables are compared
/// (names or globs; empty: every schema).
///
/// # Errors
/// The session could not run or its settings could not be read.
pub(super) fn read(
    pool: &super::pool::SessionPool,
    engine: DbEngine,
    side: &Side<'_>,
    schemas: &[String],
) -> Result<Catalog, String> {
    let mut script = Script::new(engine);
    for p in sql::pins(engine) {
        script.plain(p);
    }
    let labels = match engine {
        DbEngine::Postgres => pg_statements(&mut script),
        _ => my_statements(&mut script, side.database),
    };
    let ran = run(pool, engine, side, &script)?;
    let mut cat = Catalog::default();
    let pins: Vec<String> = ran
        .rows("pins")
        .and_then(|mut r| r.next().cloned())
        .ok_or_else(|| {
            format!(
                "host `{}`, database `{}`: the session settings could not be read: {}",
                side.transport.host(),
                side.database,
                ran.why("pins")
            )
        })?
        .iter()
        .skip(1)
        .map(text)
        .collect();
    cat.version_num = pins
        .get(sql::PINNED_FIELDS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    cat.version = pins
        .get(sql::PINNED_FIELDS + 1)
        .cloned()
        .unwrap_or_default();
    cat.pins = pins.into_iter().take(sql::PINNED_FIELDS).collect();
    for tag in ["rels", "cols", "keys"] {
        if ran.rows(tag).is_none() {
            return Err(format!(
                "host `{}`, database `{}`: its tables could not be listed: {}",
                side.transport.host(),
                side.database,
                ran.why(tag)
            ));
        }
    }
    for (tag, label) in &labels {
        if ran.rows(tag).is_none() {
            cat.unread
                .insert(tag.clone(), (label.clone(), ran.why(tag)));
        }
    }
    match engine {
        DbEngine::Postgres => pg_parse(&ran, &mut cat, schemas),
        _ => my_parse(&ran, &mut cat),
    }
    Ok(cat)
}

/// Schemas that hold users' objects.
const PG_USER_NS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";

/// The privileges of an ACL as sorted `grantee=PRIVILEGE` items (`*`: with grant option),
/// the owner's defaults (object kind `kind`, an SQL `"char"`) filled in when the ACL is NULL,
/// grantors left out (who granted depends on who restored).
fn pg_acl(acl: &str, kind: &str, owner: &str) -> String {
    format!(
        "(SELECT coalesce(string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END || '=' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END || '=' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END), '') \
FROM aclexplode(coalesce({acl}, acldefault({kind}, {owner}))) a)"
    )
}

/// An ACL without owner defaults (columns, default privileges): empty when NULL.
fn pg_acl_raw(acl: &str) -> String {
    format!(
        "(SELECT coalesce(string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END || '=' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END || '=' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END), '') \
FROM aclexplode({acl}) a)"
    )
}

/// Roles that reach the database: owners and grantees of it and of everything in it, roles
/// with settings in it, named in policies, default privileges or large objects; then, again
/// and again, the members of those roles (they inherit or may SET ROLE).
fn pg_reach() -> String {
    let ns = PG_USER_NS;
    format!(
        "WITH RECURSIVE direct(r) AS (\
SELECT datdba FROM pg_database WHERE datname = current_database() \
UNION SELECT a.grantee FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() \
UNION SELECT setrole FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) \
UNION SELECT n.nspowner FROM pg_namespace n WHERE {ns} \
UNION SELECT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a WHERE {ns} \
UNION SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {ns} \
UNION SELECT a.grantee FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a WHERE {ns} \
UNION SELECT a.grantee FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(t.attacl) a WHERE {ns} \
UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {ns} \
UNION SELECT a.grantee FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a WHERE {ns} \
UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {ns} \
UNION SELECT defaclrole FROM pg_default_acl \
UNION SELECT a.grantee FROM pg_default_acl d, aclexplode(d.defaclacl) a \
UNION SELECT lomowner FROM pg_largeobject_metadata \
UNION SELECT a.grantee FROM pg_largeobject_metadata l, aclexplode(l.lomacl) a \
UNION SELECT unnest(polroles) FROM pg_policy\
), reach(r) AS (SELECT r FROM direct WHERE r <> 0 UNION SELECT m.member FROM pg_auth_members m JOIN reach ON m.roleid = reach.r) "
    )
}

/// The PostgreSQL catalog statements; returns `tag → label` of the fact statements (a label
/// names the facts a failed statement leaves uncompared).
fn pg_statements(s: &mut Script) -> Vec<(String, String)> {
    let ns = PG_USER_NS;
    s.tagged("pins", &sql::pins_query(DbEngine::Postgres));
    s.tagged(
        "probe",
        "SELECT json_build_array('probe', hashtextextended('transhumance' COLLATE \"C\", 0)::text)",
    );
    s.tagged(
        "rels",
        &format!(
            "SELECT json_build_array('rel', n.nspname, c.relname, c.relkind::text, c.reltuples::text, c.relpages::text, \
pg_get_userbyid(c.relowner), {acl}, coalesce((SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' LIMIT 1), ''), \
c.relpersistence::text, c.relrowsecurity::text, c.relforcerowsecurity::text) \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {ns}",
            acl = pg_acl(
                "c.relacl",
                "(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\"",
                "c.relowner"
            ),
        ),
    );
    s.tagged(
        "cols",
        &format!(
            "SELECT json_build_array('col', n.nspname, c.relname, a.attnum::text, a.attname, format_type(a.atttypid, a.atttypmod), \
bt.typname, (a.attcollation <> 0)::text, a.attnotnull::text, coalesce(pg_get_expr(d.adbin, d.adrelid), ''), {acl}) \
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_type t ON t.oid = a.atttypid JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'f') AND {ns}",
            acl = pg_acl_raw("a.attacl")
        ),
    );
    s.tagged(
        "keys",
        &format!(
            "SELECT json_build_array('key', n.nspname, c.relname, i.relname, x.indisprimary::text, x.indisunique::text, \
(x.indisvalid AND x.indexprs IS NULL AND x.indpred IS NULL)::text, coalesce(to_jsonb(x)->>'indnkeyatts', x.indnatts::text), \
array_to_json(ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(num, ord) \
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.num ORDER BY k.ord)), pg_get_indexdef(x.indexrelid)) \
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm') AND {ns}"
        ),
    );
    s.tagged(
        "lo",
        "SELECT json_build_array('lo', count(*)::text) FROM pg_largeobject_metadata",
    );
    let mut labels = Vec::new();
    let mut fact = |s: &mut Script, tag: &str, label: &str, query: String| {
        s.tagged(tag, &query);
        labels.push((tag.to_string(), label.to_string()));
    };
    // Settings leave out our ownership mark (`transhumance.plan`, set on every copy we make).
    fact(
        s,
        "f-db",
        "database properties",
        format!(
            "SELECT json_build_array('fact', '', k, v) FROM pg_database d, LATERAL (VALUES \
('database owner', pg_get_userbyid(d.datdba)), ('database encoding', pg_encoding_to_char(d.encoding)), \
('database collation', d.datcollate::text), ('database ctype', d.datctype::text), \
('database locale provider', coalesce(to_jsonb(d)->>'datlocprovider', 'c') || ' ' || coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale', '')), \
('database connection limit', d.datconnlimit::text), ('database privileges', {acl}), \
('database comment', coalesce(shobj_description(d.oid, 'pg_database'), ''))) f(k, v) WHERE d.datname = current_database() \
UNION ALL SELECT json_build_array('fact', '', k, v) FROM (SELECT CASE WHEN s.setrole = 0 THEN 'settings of the database' ELSE 'settings of role ' || pg_get_userbyid(s.setrole) || ' in the database' END AS k, \
array_to_string(ARRAY(SELECT x FROM unnest(s.setconfig) x WHERE x NOT LIKE 'transhumance.%' ORDER BY x), ', ') AS v FROM pg_db_role_setting s \
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())) rs WHERE v <> '' \
UNION ALL SELECT json_build_array('fact', '', 'extension ' || e.extname, 'in schema ' || n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace",
            acl = pg_acl("d.datacl", "'d'", "d.datdba")
        ),
    );
    fact(
        s,
        "f-schemas",
        "schemas' owners and privileges",
        format!(
            "SELECT json_build_array('fact', n.nspname, 'schema ' || n.nspname, 'owner ' || pg_get_userbyid(n.nspowner) || '; privileges ' || {acl}) FROM pg_namespace n WHERE {ns}",
            acl = pg_acl("n.nspacl", "'n'", "n.nspowner")
        ),
    );
    fact(
        s,
        "f-objects",
        "constraints, triggers, policies and functions",
        format!(
            "SELECT json_build_array('fact', n.nspname, 'constraint ' || co.conname || ' on ' || n.nspname || '.' || c.relname, pg_get_constraintdef(co.oid)) \
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {ns} \
UNION ALL SELECT json_build_array('fact', n.nspname, 'trigger ' || t.tgname || ' on ' || n.nspname || '.' || c.relname, pg_get_triggerdef(t.oid)) \
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {ns} \
UNION ALL SELECT json_build_array('fact', n.nspname, 'policy ' || p.polname || ' on ' || n.nspname || '.' || c.relname, \
p.polcmd::text || ' ' || CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END || ' to ' || \
array_to_string(ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) r ORDER BY 1), ',') || \
' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')) \
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {ns} \
UNION ALL SELECT json_build_array('fact', n.nspname, 'function ' || p.oid::regprocedure::text, 'owner ' || pg_get_userbyid(p.proowner) || '; privileges ' || {acl} || '; source md5 ' || md5(coalesce(p.prosrc, ''))) \
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {ns} \
AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')",
            acl = pg_acl("p.proacl", "'f'", "p.proowner")
        ),
    );
    fact(
        s,
        "f-defacl",
        "default privileges",
        format!(
            "SELECT json_build_array('fact', coalesce(n.nspname, ''), 'default privileges of ' || pg_get_userbyid(d.defaclrole) || coalesce(' in schema ' || n.nspname, '') || ' on ' || \
CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' ELSE d.defaclobjtype::text END, {acl}) \
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace",
            acl = pg_acl_raw("d.defaclacl")
        ),
    );
    fact(
        s,
        "f-lo",
        "large objects' owners and privileges",
        "SELECT json_build_array('fact', '', 'large objects', count(*)::text || ' (owners and privileges md5 ' || \
md5(coalesce(string_agg(l.oid::text || ':' || pg_get_userbyid(l.lomowner) || ':' || coalesce(l.lomacl::text, ''), ',' ORDER BY l.oid), '')) || ')') \
FROM pg_largeobject_metadata l HAVING count(*) > 0"
            .into(),
    );
    fact(
        s,
        "f-seq",
        "sequences",
        format!(
            "SELECT json_build_array('fact', n.nspname, 'sequence ' || s.schemaname || '.' || s.sequencename, \
s.data_type::text || ' start ' || s.start_value || ' increment ' || s.increment_by || ' min ' || s.min_value || ' max ' || s.max_value || \
CASE WHEN s.cycle THEN ' cycle' ELSE '' END || '; last value ' || coalesce(s.last_value::text, 'none')) \
FROM pg_sequences s JOIN pg_namespace n ON n.nspname = s.schemaname WHERE {ns}"
        ),
    );
    let reach = pg_reach();
    fact(
        s,
        "f-roles",
        "roles reaching the database, their memberships and settings",
        format!(
            "{reach}SELECT json_build_array('fact', '', 'role ' || r.rolname, concat_ws(' ', CASE WHEN r.rolsuper THEN 'superuser' END, \
CASE WHEN r.rolinherit THEN 'inherit' ELSE 'noinherit' END, CASE WHEN r.rolcreaterole THEN 'createrole' END, \
CASE WHEN r.rolcreatedb THEN 'createdb' END, CASE WHEN r.rolcanlogin THEN 'login' ELSE 'nologin' END, \
CASE WHEN r.rolreplication THEN 'replication' END, CASE WHEN (to_jsonb(r)->>'rolbypassrls')::boolean THEN 'bypassrls' END, \
'connection limit ' || r.rolconnlimit, 'valid until ' || r.rolvaliduntil)) FROM pg_roles r WHERE r.oid IN (SELECT r FROM reach) \
UNION ALL SELECT json_build_array('fact', '', 'membership of ' || pg_get_userbyid(m.member) || ' in ' || pg_get_userbyid(m.roleid), \
concat_ws(' ', CASE WHEN m.admin_option THEN 'with admin option' ELSE 'without admin option' END, \
CASE (to_jsonb(m)->>'inherit_option')::boolean WHEN true THEN 'inherit' WHEN false THEN 'noinherit' END, \
CASE (to_jsonb(m)->>'set_option')::boolean WHEN true THEN 'set' WHEN false THEN 'noset' END)) \
FROM pg_auth_members m WHERE m.member IN (SELECT r FROM reach) OR m.roleid IN (SELECT r FROM reach) \
UNION ALL SELECT json_build_array('fact', '', 'settings of role ' || pg_get_userbyid(s.setrole), \
array_to_string(ARRAY(SELECT x FROM unnest(s.setconfig) x ORDER BY x), ', ')) FROM pg_db_role_setting s \
WHERE s.setdatabase = 0 AND s.setrole IN (SELECT r FROM reach)"
        ),
    );
    // Superusers only (pg_authid): compared when both sides can read it.
    fact(
        s,
        "f-passwords",
        "role passwords",
        format!(
            "{reach}SELECT json_build_array('secret', '', 'password of role ' || a.rolname, coalesce(md5(a.rolpassword), 'none')) \
FROM pg_authid a WHERE a.oid IN (SELECT r FROM reach)"
        ),
    );
    labels
}

/// How a PostgreSQL base type is written in the row encoding.
fn pg_enc(base_type: &str) -> Enc {
    match base_type {
        "float4" => Enc::Float4,
        "float8" => Enc::Float8,
        "int2" | "int4" | "int8" | "oid" | "numeric" | "bool" | "date" | "time" | "timetz"
        | "timestamp" | "timestamptz" | "interval" | "uuid" | "bytea" | "money" | "inet"
        | "cidr" | "macaddr" | "macaddr8" | "bit" | "varbit" | "pg_lsn" => Enc::Plain,
        _ => Enc::Text,
    }
}

fn pg_kind(k: &str) -> &'static str {
    match k {
        "r" => "table",
        "p" => "partitioned table",
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        "S" => "sequence",
        _ => "relation",
    }
}

fn rows<'a>(ran: &'a Ran, tag: &str) -> Vec<&'a Vec<Value>> {
    ran.rows(tag).map(Iterator::collect).unwrap_or_default()
}

fn pg_parse(ran: &Ran, cat: &mut Catalog, schemas: &[String]) {
    cat.hashtext_probe = rows(ran, "probe").first().map(|r| field(r, 1));
    let in_scope = |schema: &str| schemas.is_empty() || selected(schema, schemas, &[]);
    // Columns by table.
    let mut cols: BTreeMap<(String, String), Vec<(i64, Column)>> = BTreeMap::new();
    for r in rows(ran, "cols") {
        let (schema, table, name) = (field(r, 1), field(r, 2), field(r, 4));
        let (typ, base, collatable, not_null, default, acl) = (
            field(r, 5),
            field(r, 6),
            field(r, 7) == "true",
            field(r, 8) == "true",
            field(r, 9),
            field(r, 10),
        );
        if in_scope(&schema) {
            let mut v = format!("{typ}{}", if not_null { " not null" } else { "" });
            if !default.is_empty() {
                v.push_str(&format!(" default {default}"));
            }
            if !acl.is_empty() {
                v.push_str(&format!("; privileges {acl}"));
            }
            cat.facts.insert(
                format!("column {schema}.{table}.{name}"),
                Fact {
                    value: v,
                    secret: false,
                    origin: "cols".into(),
                },
            );
        }
        cols.entry((schema, table)).or_default().push((
            field(r, 3).parse().unwrap_or(0),
            Column {
                col: Col {
                    name,
                    enc: pg_enc(&base),
                    collatable,
                    lit: Lit::Quoted,
                },
                not_null,
                charset: String::new(),
                collation: String::new(),
            },
        ));
    }
    // Candidate keys by table: (primary, columns, index name).
    let mut keys: BTreeMap<(String, String), Vec<Candidate>> = BTreeMap::new();
    for r in rows(ran, "keys") {
        let (schema, table, index) = (field(r, 1), field(r, 2), field(r, 3));
        if in_scope(&schema) {
            cat.facts.insert(
                format!("index {schema}.{index}"),
                Fact {
                    value: field(r, 9),
                    secret: false,
                    origin: "keys".into(),
                },
            );
        }
        let (primary, unique, plain) = (
            field(r, 4) == "true",
            field(r, 5) == "true",
            field(r, 6) == "true",
        );
        let nkey: usize = field(r, 7).parse().unwrap_or(0);
        let columns: Vec<String> = match r.get(8) {
            Some(Value::Array(a)) => a.iter().map(text).take(nkey).collect(),
            _ => Vec::new(),
        };
        if unique && plain && !columns.is_empty() && columns.len() == nkey {
            keys.entry((schema, table))
                .or_default()
                .push((primary, columns, index));
        }
    }
    let lo_count: u64 = rows(ran, "lo")
        .first()
        .and_then(|r| field(r, 1).parse().ok())
        .unwrap_or(0);
    let mut out_of_scope: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows(ran, "rels") {
        let (schema, name, kind) = (field(r, 1), field(r, 2), field(r, 3));
        let display = format!("{schema}.{name}");
        let (tuples, pages) = (
            field(r, 4).parse::<f64>().unwrap_or(-1.0),
            field(r, 5).parse::<f64>().unwrap_or(0.0),
        );
        let (owner, acl, extension) = (field(r, 6), field(r, 7), field(r, 8));
        if !in_scope(&schema) {
            if matches!(kind.as_str(), "r" | "p" | "m" | "f") {
                *out_of_scope.entry(schema).or_default() += 1;
            }
            continue;
        }
        if !extension.is_empty() {
            if kind == "r" {
                cat.skipped.push(Skipped {
                    object: display,
                    why: format!(
                        "belongs to extension {extension}, which creates it at the target"
                    ),
                });
            }
            continue;
        }
        let mut v = format!("{}; owner {owner}; privileges {acl}", pg_kind(&kind));
        if field(r, 9) == "u" {
            v.push_str("; unlogged");
        }
        if field(r, 10) == "true" {
            v.push_str("; row security");
        }
        if field(r, 11) == "true" {
            v.push_str(" (forced)");
        }
        cat.facts.insert(
            format!("{} {display}", pg_kind(&kind)),
            Fact {
                value: v,
                secret: false,
                origin: "rels".into(),
            },
        );
        let why = match kind.as_str() {
            "v" => Some("view: holds no rows of its own (its owner and privileges are compared)"),
            "m" => Some(
                "materialized view: refreshed at the target from the target's rows, so its contents may lawfully differ from a source refreshed earlier",
            ),
            "f" => Some("foreign table: its rows live on another server"),
            "p" => Some("partitioned table: its rows are compared in its partitions"),
            _ => None,
        };
        if let Some(why) = why {
            cat.skipped.push(Skipped {
                object: display,
                why: why.into(),
            });
            continue;
        }
        if kind != "r" {
            continue;
        }
        let k = (schema.clone(), name.clone());
        let mut columns = cols.remove(&k).unwrap_or_default();
        columns.sort_by_key(|(n, _)| *n);
        let columns: Vec<Column> = columns.into_iter().map(|(_, c)| c).collect();
        let key = choose_key(keys.remove(&k).unwrap_or_default(), &columns);
        cat.tables.insert(
            display.clone(),
            Table {
                display,
                from: format!(
                    "ONLY {}.{}",
                    ident(DbEngine::Postgres, &schema),
                    ident(DbEngine::Postgres, &name)
                ),
                columns,
                key,
                // Never analyzed (-1 from 14 on; 0 with pages before): unknown.
                estimate: (tuples >= 0.0 && !(tuples == 0.0 && pages > 0.0))
                    .then_some(tuples as u64),
            },
        );
    }
    for (schema, n) in out_of_scope {
        cat.skipped.push(Skipped {
            object: format!("schema {schema}"),
            why: format!("{n} table(s) not compared: the schema is not in the plan's `schemas`"),
        });
    }
    if lo_count > 0 {
        let col = |name: &str| Column {
            col: Col {
                name: name.into(),
                enc: Enc::Plain,
                collatable: false,
                lit: Lit::Quoted,
            },
            not_null: true,
            charset: String::new(),
            collation: String::new(),
        };
        cat.tables.insert(
            "(large objects)".into(),
            Table {
                display: "(large objects)".into(),
                from: "(SELECT l.oid AS loid, lo_get(l.oid) AS data FROM pg_largeobject_metadata l) lo"
                    .into(),
                columns: vec![col("loid"), col("data")],
                key: Some(Key {
                    columns: vec!["loid".into()],
                    by: "large object id".into(),
                }),
                estimate: Some(lo_count),
            },
        );
    }
    facts_from_rows(
        ran,
        cat,
        &in_scope,
        &[
            "f-db",
            "f-schemas",
            "f-objects",
            "f-defacl",
            "f-lo",
            "f-seq",
            "f-roles",
            "f-passwords",
        ],
    );
}

/// `["fact"|"secret", schema, key, value]` rows into the catalog's facts (objects of schemas
/// out of scope left out).
fn facts_from_rows(ran: &Ran, cat: &mut Catalog, in_scope: &dyn Fn(&str) -> bool, tags: &[&str]) {
    for tag in tags {
        for r in rows(ran, tag) {
            let (kind, schema) = (field(r, 0), field(r, 1));
            if !schema.is_empty() && !in_scope(&schema) {
                continue;
            }
            cat.facts.insert(
                field(r, 2),
                Fact {
                    value: field(r, 3),
                    secret: kind == "secret",
                    origin: (*tag).to_string(),
                },
            );
        }
    }
}

/// The primary key, else the unique index on NOT NULL columns with the fewest columns.
fn choose_key(mut candidates: Vec<Candidate>, columns: &[Column]) -> Option<Key> {
    let not_null = |c: &String| columns.iter().any(|x| &x.col.name == c && x.not_null);
    candidates.retain(|(primary, cols, _)| {
        cols.iter()
            .all(|c| columns.iter().any(|x| &x.col.name == c))
            && (*primary || cols.iter().all(not_null))
    });
    candidates.sort_by(|a, b| (!a.0, a.1.len(), &a.2).cmp(&(!b.0, b.1.len(), &b.2)));
    candidates
        .into_iter()
        .next()
        .map(|(primary, columns, index)| Key {
            columns,
            by: if primary {
                "primary key".into()
            } else {
                format!("unique index {index}")
            },
        })
}

/// The MariaDB/MySQL catalog statements; returns `tag → label` of the fact statements.
fn my_statements(s: &mut Script, database: &str) -> Vec<(String, String)> {
    let db = sql_literal(database);
    s.tagged("pins", &sql::pins_query(DbEngine::Mariadb));
    s.tagged(
        "rels",
        &format!(
            "SELECT JSON_ARRAY('rel', TABLE_NAME, TABLE_TYPE, IFNULL(ENGINE, ''), CAST(IFNULL(TABLE_ROWS, -1) AS CHAR), \
CAST(IFNULL(DATA_LENGTH, 0) AS CHAR), IFNULL(TABLE_COLLATION, '')) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db}"
        ),
    );
    s.tagged(
        "cols",
        &format!(
            "SELECT JSON_ARRAY('col', TABLE_NAME, CAST(ORDINAL_POSITION AS CHAR), COLUMN_NAME, LOWER(DATA_TYPE), COLUMN_TYPE, \
IFNULL(CHARACTER_SET_NAME, ''), IFNULL(COLLATION_NAME, ''), IS_NULLABLE, IFNULL(COLUMN_DEFAULT, '(none)'), EXTRA) \
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {db}"
        ),
    );
    s.tagged(
        "keys",
        &format!(
            "SELECT JSON_ARRAY('key', TABLE_NAME, INDEX_NAME, CAST(NON_UNIQUE AS CHAR), CAST(SEQ_IN_INDEX AS CHAR), IFNULL(COLUMN_NAME, ''), \
IFNULL(CAST(SUB_PART AS CHAR), ''), INDEX_TYPE) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {db}"
        ),
    );
    let mut labels = Vec::new();
    let mut fact = |s: &mut Script, tag: &str, label: &str, query: String| {
        s.tagged(tag, &query);
        labels.push((tag.to_string(), label.to_string()));
    };
    fact(
        s,
        "f-db",
        "database properties",
        format!(
            "SELECT JSON_ARRAY('fact', '', 'database character set', DEFAULT_CHARACTER_SET_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {db} \
UNION ALL SELECT JSON_ARRAY('fact', '', 'database collation', DEFAULT_COLLATION_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {db}"
        ),
    );
    fact(
        s,
        "f-objects",
        "routines, triggers, views and events",
        format!(
            "SELECT JSON_ARRAY('fact', '', CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME), CONCAT('definer ', DEFINER, '; security ', SECURITY_TYPE, \
'; body md5 ', MD5(IFNULL(ROUTINE_DEFINITION, '')))) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} \
UNION ALL SELECT JSON_ARRAY('fact', '', CONCAT('trigger ', TRIGGER_NAME), CONCAT(ACTION_TIMING, ' ', EVENT_MANIPULATION, ' on ', EVENT_OBJECT_TABLE, \
'; definer ', DEFINER, '; body md5 ', MD5(ACTION_STATEMENT))) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db} \
UNION ALL SELECT JSON_ARRAY('fact', '', CONCAT('view ', TABLE_NAME), CONCAT('definer ', DEFINER, '; security ', SECURITY_TYPE, \
'; definition md5 ', MD5(VIEW_DEFINITION))) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db} \
UNION ALL SELECT JSON_ARRAY('fact', '', CONCAT('event ', EVENT_NAME), CONCAT(STATUS, '; definer ', DEFINER, '; body md5 ', MD5(EVENT_DEFINITION))) \
FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db} \
UNION ALL (SELECT JSON_ARRAY('fact', '', 'event scheduler', @@global.event_scheduler) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db} LIMIT 1)"
        ),
    );
    // Accounts with grants on the database (patterns matched as the server does), its
    // tables, columns or routines, and the definers of its objects.
    s.tagged(
        "accounts",
        &format!(
            "SELECT JSON_ARRAY('account', User, Host) FROM mysql.db WHERE {db} LIKE Db \
UNION SELECT JSON_ARRAY('account', User, Host) FROM mysql.tables_priv WHERE Db = {db} \
UNION SELECT JSON_ARRAY('account', User, Host) FROM mysql.columns_priv WHERE Db = {db} \
UNION SELECT JSON_ARRAY('account', User, Host) FROM mysql.procs_priv WHERE Db = {db} \
UNION SELECT JSON_ARRAY('definer', DEFINER) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} \
UNION SELECT JSON_ARRAY('definer', DEFINER) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db} \
UNION SELECT JSON_ARRAY('definer', DEFINER) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db} \
UNION SELECT JSON_ARRAY('definer', DEFINER) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}"
        ),
    );
    labels.push(("accounts".into(), "accounts reaching the database".into()));
    // MariaDB roles: who was granted which role (MySQL has none of this table).
    s.tagged(
        "roles",
        "SELECT JSON_ARRAY('role', User, Host, Role) FROM mysql.roles_mapping",
    );
    // Authentication plugins the server can use: an account whose plugin a side lacks was
    // created locked there, and its credentials cannot be compared.
    s.tagged(
        "plugins",
        "SELECT JSON_ARRAY('plugin', PLUGIN_NAME) FROM information_schema.PLUGINS \
WHERE PLUGIN_TYPE = 'AUTHENTICATION' AND PLUGIN_STATUS = 'ACTIVE'",
    );
    labels
}

/// How a MariaDB column is written in the row encoding and how its key bounds come back.
fn my_kinds(data_type: &str, charset: &str) -> (Enc, Lit) {
    match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
        | "numeric" | "year" => (Enc::Plain, Lit::Number),
        "double" | "real" | "double precision" => (Enc::Float8, Lit::Number),
        "float" => (Enc::Float4, Lit::Number),
        "bit" => (Enc::Bit, Lit::Number),
        "date" | "datetime" | "timestamp" | "time" => (Enc::Plain, Lit::Temporal),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" => (
            Enc::Text,
            Lit::Hex((!charset.is_empty() && charset != "binary").then(|| charset.to_string())),
        ),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            (Enc::Text, Lit::Hex(None))
        }
        // uuid, inet6, geometry…: their text form parses back.
        _ => (Enc::Text, Lit::Quoted),
    }
}

fn my_parse(ran: &Ran, cat: &mut Catalog) {
    let mut cols: BTreeMap<String, Vec<(i64, Column)>> = BTreeMap::new();
    for r in rows(ran, "cols") {
        let (table, name, data_type, column_type, charset, collation) = (
            field(r, 1),
            field(r, 3),
            field(r, 4),
            field(r, 5),
            field(r, 6),
            field(r, 7),
        );
        let not_null = field(r, 8) == "NO";
        let mut v = column_type.clone();
        if !collation.is_empty() {
            v.push_str(&format!(" collate {collation}"));
        }
        v.push_str(if not_null { " not null" } else { " null" });
        v.push_str(&format!(" default {}", field(r, 9)));
        let extra = field(r, 10);
        if !extra.is_empty() {
            v.push_str(&format!(" {extra}"));
        }
        cat.facts.insert(
            format!("column {table}.{name}"),
            Fact {
                value: v,
                secret: false,
                origin: "cols".into(),
            },
        );
        let (enc, lit) = my_kinds(&data_type, &charset);
        cols.entry(table).or_default().push((
            field(r, 2).parse().unwrap_or(0),
            Column {
                col: Col {
                    name,
                    enc,
                    collatable: false,
                    lit,
                },
                not_null,
                charset,
                collation,
            },
        ));
    }
    // Indexes: (table, index) → non-unique, type, [(seq, column, prefix)].
    type Index = (bool, String, Vec<(i64, String, String)>);
    let mut indexes: BTreeMap<(String, String), Index> = BTreeMap::new();
    for r in rows(ran, "keys") {
        let e = indexes
            .entry((field(r, 1), field(r, 2)))
            .or_insert_with(|| (field(r, 3) != "0", field(r, 7), Vec::new()));
        e.2.push((field(r, 4).parse().unwrap_or(0), field(r, 5), field(r, 6)));
    }
    let mut keys: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for ((table, index), (non_unique, kind, mut parts)) in indexes {
        parts.sort();
        let shown: Vec<String> = parts
            .iter()
            .map(|(_, c, p)| {
                if p.is_empty() {
                    c.clone()
                } else {
                    format!("{c}({p})")
                }
            })
            .collect();
        cat.facts.insert(
            format!("index {table}.{index}"),
            Fact {
                value: format!(
                    "{}{kind} ({})",
                    if non_unique { "" } else { "unique " },
                    shown.join(", ")
                ),
                secret: false,
                origin: "keys".into(),
            },
        );
        // A key: unique, on whole columns (no prefix, no expression).
        if !non_unique && parts.iter().all(|(_, c, p)| p.is_empty() && !c.is_empty()) {
            keys.entry(table).or_default().push((
                index == "PRIMARY",
                parts.into_iter().map(|(_, c, _)| c).collect(),
                index,
            ));
        }
    }
    for r in rows(ran, "rels") {
        let (name, kind, engine) = (field(r, 1), field(r, 2), field(r, 3));
        let (estimate, bytes): (i64, u64) = (
            field(r, 4).parse().unwrap_or(-1),
            field(r, 5).parse().unwrap_or(0),
        );
        let collation = field(r, 6);
        let what = match kind.as_str() {
            "VIEW" => "view",
            "SEQUENCE" => "sequence",
            _ => "table",
        };
        if what != "view" {
            cat.facts.insert(
                format!("{what} {name}"),
                Fact {
                    value: format!("engine {engine}; collation {collation}"),
                    secret: false,
                    origin: "rels".into(),
                },
            );
        }
        let why = match (kind.as_str(), engine.to_ascii_uppercase().as_str()) {
            ("VIEW", _) => {
                Some("view: holds no rows of its own (its definition is compared)".to_string())
            }
            (_, e @ ("FEDERATED" | "CONNECT" | "SPIDER")) => {
                Some(format!("ENGINE={e}: its rows live on another server"))
            }
            (_, "BLACKHOLE") => Some("ENGINE=BLACKHOLE: keeps no rows".to_string()),
            _ => None,
        };
        if let Some(why) = why {
            cat.skipped.push(Skipped { object: name, why });
            continue;
        }
        if kind == "SYSTEM VERSIONED" {
            cat.skipped.push(Skipped {
                object: name.clone(),
                why: "system-versioned: its current rows are compared, not its history".into(),
            });
        }
        let mut columns = cols.remove(&name).unwrap_or_default();
        columns.sort_by_key(|(n, _)| *n);
        let columns: Vec<Column> = columns.into_iter().map(|(_, c)| c).collect();
        let key = choose_key(keys.remove(&name).unwrap_or_default(), &columns);
        // A small table's estimate may be off by half; its data size says it is small too.
        let estimate = (estimate >= 0).then(|| (estimate as u64).max(bytes / 8192 * 20));
        cat.tables.insert(
            name.clone(),
            Table {
                display: name.clone(),
                // Unqualified: each session's default database is its own side's.
                from: ident(DbEngine::Mariadb, &name),
                columns,
                key,
                estimate,
            },
        );
    }
    facts_from_rows(ran, cat, &|_| true, &["f-db", "f-objects"]);
    // Accounts reaching the database, then everyone holding one of those roles, transitively.
    let mut reach: BTreeSet<(String, String)> = BTreeSet::new();
    for r in rows(ran, "accounts") {
        match field(r, 0).as_str() {
            "account" => {
                reach.insert((field(r, 1), field(r, 2)));
            }
            "definer" => {
                let d = field(r, 1);
                if let Some((u, h)) = d.rsplit_once('@') {
                    reach.insert((u.to_string(), h.to_string()));
                }
            }
            _ => {}
        }
    }
    let mapping: Vec<(String, String, String)> = rows(ran, "roles")
        .iter()
        .map(|r| (field(r, 1), field(r, 2), field(r, 3)))
        .collect();
    loop {
        let before = reach.len();
        for (u, h, role) in &mapping {
            if reach.contains(&(role.clone(), String::new())) {
                reach.insert((u.clone(), h.clone()));
            }
        }
        if reach.len() == before {
            break;
        }
    }
    reach.retain(|(u, h)| !is_admin_account(&format!("'{u}'@'{h}'")) && !u.is_empty());
    cat.accounts = reach;
    cat.auth_plugins = rows(ran, "plugins").iter().map(|r| field(r, 1)).collect();
}

/// Whether a `SHOW GRANTS` line concerns database `db`: account-wide lines (`ON *.*`, roles
/// granted, default roles, proxies) and grants on `db`, its tables, columns and routines, or on
/// a pattern that matches it. Grants on other databases are theirs to verify.
pub(super) fn grant_concerns(line: &str, db: &str) -> bool {
    if line.starts_with("GRANT PROXY ") {
        return true;
    }
    let Some(i) = line.find(" ON ") else {
        return true;
    };
    let mut spec = &line[i + 4..];
    for kw in [
        "PROCEDURE ",
        "FUNCTION ",
        "PACKAGE BODY ",
        "PACKAGE ",
        "TABLE ",
    ] {
        spec = spec.strip_prefix(kw).unwrap_or(spec);
    }
    if spec.starts_with("*.*") {
        return true;
    }
    // The database part: `name` (backticks doubled inside), or a bare name.
    let pattern = match spec.strip_prefix('`') {
        Some(rest) => {
            let mut name = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '`' {
                    if chars.peek() == Some(&'`') {
                        chars.next();
                    } else {
                        break;
                    }
                }
                name.push(c);
            }
            name
        }
        None => spec.split(['.', ' ']).next().unwrap_or("").to_string(),
    };
    pattern == db || like(db, &pattern)
}

/// SQL `LIKE` with `\` escapes, as MariaDB matches database patterns in grants.
fn like(text: &str, pattern: &str) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = (text.chars().collect(), pattern.chars().collect());
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|k| go(&t[k..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&t[1..], &p[2..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    go(&t, &p)
}

/// `SHOW GRANTS` of one account, split into what is compared apart: the grants themselves,
/// how the account authenticates (secrets cut out: `<secret>`), and the secrets, to be compared
/// but never shown.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct AccountFacts {
    pub grants: String,
    pub authentication: String,
    pub secrets: String,
}

impl AccountFacts {
    /// The plugins the authentication names (`IDENTIFIED BY PASSWORD` is
    /// `mysql_native_password`).
    pub(super) fn plugins(&self) -> Vec<String> {
        let mut out = Vec::new();
        let words: Vec<&str> = self.authentication.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            match *w {
                "VIA" | "OR" => {
                    if let Some(p) = words.get(i + 1) {
                        out.push(p.trim_matches(|c| c == '`' || c == '\'').to_string());
                    }
                }
                "BY" if words.get(i + 1) == Some(&"PASSWORD") => {
                    out.push("mysql_native_password".into());
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

pub(super) fn account_facts(lines: &[String]) -> AccountFacts {
    let mut grants = Vec::new();
    let mut auth = Vec::new();
    let mut secrets = String::new();
    for l in lines {
        let (grant, clause) = split_authentication(l);
        grants.push(grant);
        if let Some(clause) = clause {
            let (shown, secret) = cut_secrets(&clause);
            auth.push(shown);
            secrets.push_str(&secret);
        }
    }
    grants.sort();
    grants.dedup();
    auth.sort();
    AccountFacts {
        grants: grants.join("\n"),
        authentication: auth.join("\n"),
        secrets,
    }
}

/// A `SHOW GRANTS` line without its `IDENTIFIED …` clause, and that clause (up to `WITH`, which
/// begins the grant option and resource limits, outside quotes).
fn split_authentication(line: &str) -> (String, Option<String>) {
    let Some(start) = outside_quotes(line, " IDENTIFIED ", 0) else {
        return (line.to_string(), None);
    };
    let end = outside_quotes(line, " WITH ", start).unwrap_or(line.len());
    (
        format!("{}{}", &line[..start], &line[end..]),
        Some(line[start + 1..end].to_string()),
    )
}

/// Where `needle` first occurs in `line` at or after `from`, outside `'…'` literals.
fn outside_quotes(line: &str, needle: &str, from: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'\'' => quoted = !quoted,
            _ if !quoted && i >= from && line[i..].starts_with(needle) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Cuts the literals after `PASSWORD '`, `USING '` and `AS '` out of `text`: (shown, secrets).
fn cut_secrets(text: &str) -> (String, String) {
    let mut out = String::new();
    let mut secrets = String::new();
    let mut rest = text;
    while let Some(at) = ["PASSWORD '", "USING '", "AS '"]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, m.len())))
        .min()
    {
        let (i, len) = at;
        out.push_str(&rest[..i + len]);
        let body = &rest[i + len..];
        // The literal ends at an unescaped quote that is not doubled.
        let mut end = body.len();
        let bytes = body.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' => j += 2,
                b'\'' if bytes.get(j + 1) == Some(&b'\'') => j += 2,
                b'\'' => {
                    end = j;
                    break;
                }
                _ => j += 1,
            }
        }
        secrets.push_str(&body[..end.min(body.len())]);
        secrets.push('\n');
        out.push_str("<secret>");
        rest = &body[end.min(body.len())..];
    }
    out.push_str(rest);
    (out, secrets)
}

/// The table a table- or column-level grant line names in database `db` (`None` for grants on
/// the database, routines, `*.*`, other databases or proxies).
pub(super) fn granted_table(line: &str, db: &str) -> Option<String> {
    if line.starts_with("GRANT PROXY ") {
        return None;
    }
    let i = line.find(" ON ")?;
    let mut spec = &line[i + 4..];
    if ["PROCEDURE ", "FUNCTION ", "PACKAGE "]
        .iter()
        .any(|k| spec.starts_with(k))
    {
        return None;
    }
    spec = spec.strip_prefix("TABLE ").unwrap_or(spec);
    let (schema, rest) = backticked(spec)?;
    let rest = rest.strip_prefix('.')?;
    if schema != db || rest.starts_with('*') {
        return None;
    }
    backticked(rest).map(|(t, _)| t)
}

/// A leading `` `name` `` (backticks doubled inside) and what follows it.
fn backticked(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('`')?;
    let mut name = String::new();
    let mut iter = rest.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '`' {
            if iter.peek().map(|(_, c)| *c) == Some('`') {
                iter.next();
            } else {
                return Some((name, &rest[i + 1..]));
            }
        }
        name.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_authentication_and_secrets_are_compared_apart() {
        let f = account_facts(&[
            "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*ABC' WITH MAX_USER_CONNECTIONS 7"
                .into(),
            "GRANT SELECT ON `shop`.* TO `u`@`%`".into(),
        ]);
        assert_eq!(
            f.grants,
            "GRANT SELECT ON `shop`.* TO `u`@`%`\nGRANT USAGE ON *.* TO `u`@`%` WITH MAX_USER_CONNECTIONS 7"
        );
        assert_eq!(f.authentication, "IDENTIFIED BY PASSWORD '<secret>'");
        assert_eq!(f.secrets, "*ABC\n");
        assert_eq!(f.plugins(), ["mysql_native_password"]);
        let f = account_facts(&[
            "GRANT USAGE ON *.* TO `v`@`%` IDENTIFIED VIA ed25519 USING 'a''b WITH x' OR unix_socket"
                .into(),
        ]);
        assert_eq!(f.grants, "GRANT USAGE ON *.* TO `v`@`%`");
        assert_eq!(
            f.authentication,
            "IDENTIFIED VIA ed25519 USING '<secret>' OR unix_socket"
        );
        assert_eq!(f.secrets, "a''b WITH x\n");
        assert_eq!(f.plugins(), ["ed25519", "unix_socket"]);
        assert_eq!(account_facts(&[]), AccountFacts::default());
    }

    #[test]
    fn table_grants_name_their_table() {
        let t = |l: &str| granted_table(l, "shop");
        assert_eq!(
            t("GRANT SELECT ON `shop`.`legacy` TO `tab`@`%`").as_deref(),
            Some("legacy")
        );
        assert_eq!(
            t("GRANT SELECT (`a`), UPDATE (`a`) ON `shop`.`o``dd` TO `c`@`localhost`").as_deref(),
            Some("o`dd")
        );
        assert_eq!(t("GRANT SELECT ON `shop`.* TO `u`@`%`"), None);
        assert_eq!(t("GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `e`@`%`"), None);
        assert_eq!(t("GRANT SELECT ON `other`.`t` TO `u`@`%`"), None);
        assert_eq!(t("GRANT PROXY ON `tab`@`%` TO `prx`@`%`"), None);
    }

    #[test]
    fn only_grants_concerning_the_database_count() {
        let on = |l: &str| grant_concerns(l, "site_1");
        assert!(on(
            "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*A'"
        ));
        assert!(on("GRANT SELECT ON `site_1`.* TO `u`@`%`"));
        assert!(on("GRANT SELECT (`a`) ON `site_1`.`t` TO `u`@`%`"));
        assert!(on("GRANT EXECUTE ON PROCEDURE `site_1`.`p` TO `u`@`%`"));
        assert!(on("GRANT `editor` TO `u`@`%`"));
        assert!(on("SET DEFAULT ROLE `editor` FOR `u`@`%`"));
        assert!(on("GRANT PROXY ON `a`@`%` TO `u`@`%`"));
        assert!(on("GRANT ALL PRIVILEGES ON `site\\_%`.* TO `u`@`%`"));
        assert!(!on("GRANT SELECT ON `blog`.* TO `u`@`%`"));
        assert!(!on("GRANT ALL PRIVILEGES ON `site\\_2`.* TO `u`@`%`"));
        assert!(!on("GRANT SELECT ON `site_10`.`t` TO `u`@`%`"));
        assert!(like("site_1", "site_1") && like("site_1", "s%") && !like("site_1", "site\\_2"));
    }

    #[test]
    fn keys_prefer_the_primary_then_the_narrowest_unique_index_on_not_null_columns() {
        let c = |name: &str, not_null: bool| Column {
            col: Col {
                name: name.into(),
                enc: Enc::Plain,
                collatable: false,
                lit: Lit::Quoted,
            },
            not_null,
            charset: String::new(),
            collation: String::new(),
        };
        let columns = [c("a", true), c("b", true), c("n", false)];
        let k = choose_key(
            vec![
                (false, vec!["a".into(), "b".into()], "ab".into()),
                (false, vec!["n".into()], "nullable".into()),
                (false, vec!["b".into()], "b_only".into()),
            ],
            &columns,
        );
        assert_eq!(
            k,
            Some(Key {
                columns: vec!["b".into()],
                by: "unique index b_only".into()
            })
        );
        let k = choose_key(
            vec![
                (false, vec!["b".into()], "b_only".into()),
                (true, vec!["a".into(), "b".into()], "pk".into()),
            ],
            &columns,
        );
        assert_eq!(k.unwrap().by, "primary key");
        assert_eq!(
            choose_key(vec![(false, vec!["n".into()], "x".into())], &columns),
            None
        );
    }
}
