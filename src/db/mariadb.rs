//! MariaDB/MySQL side of a database move: the dump is restored into a temporary database and
//! swapped in only once complete, and every account that reaches the database (any grant level,
//! roles, proxies, definers) is mirrored at the target, revocations included.

use std::collections::{BTreeMap, BTreeSet};

mod grants;

use grants::{
    GrantLine, Item, Object, has_words, identified, like, parse_account, parse_grant, revokes,
    tokenize, without,
};

use super::discover::{is_admin_account, query_many, tool_request};
use super::transfer::{
    Endpoint, Moved, Options, TableName, Tools, check, parallel_streams, sql, stream,
};
use super::{ident, sql_literal as lit};
use crate::plan::raw::DbEngine;

/// The dump is restored into `<name>__th_new`; only once the dump and the restore succeeded are
/// its tables swapped in (the previous copy's go to `<name>__th_old`, dropped at the end), so a
/// failed re-sync leaves the previous copy serving.
#[allow(clippy::too_many_arguments)]
pub(super) fn transfer(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    ours: &str,
    tools: &Tools,
    big: &[TableName],
    options: &Options<'_>,
) -> Result<Moved, String> {
    let n = lit(name);
    let facts = rows(
        engine,
        from,
        &[
            format!(
                "SELECT 's', default_character_set_name, default_collation_name FROM information_schema.schemata WHERE schema_name = {n}"
            ),
            "SELECT 'v', @@version".into(),
            format!(
                "SELECT 'e', COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {n} AND STATUS = 'ENABLED'"
            ),
        ],
    )?;
    let field = |tag: &str, i: usize| {
        facts
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(tag))
            .and_then(|r| r.get(i).cloned())
    };
    let cs = field("s", 1).unwrap_or_else(|| "utf8mb4".into());
    let coll = field("s", 2).unwrap_or_else(|| "utf8mb4_general_ci".into());
    let mariadb = field("v", 1).is_some_and(|v| v.contains("MariaDB"));
    let events: u64 = field("e", 1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (tmp, old) = (side_name(name, "new"), side_name(name, "old"));
    let properties = format!("CHARACTER SET {cs} COLLATE {coll} COMMENT {}", lit(ours));
    fresh_database(engine, to, &tmp, ours, &properties)?;

    let moved = restore(engine, from, to, name, &tmp, tools, big, options);
    let dropped = |e: String| {
        let gone = sql(
            engine,
            to,
            &format!("DROP DATABASE IF EXISTS {}", ident(engine, &tmp)),
        );
        match gone {
            Ok(_) => format!("{e}; the copy under `{tmp}` was dropped, `{name}` is untouched"),
            Err(d) => format!(
                "{e}; `{name}` is untouched, but the partial copy `{tmp}` could NOT be dropped ({}): drop it by hand",
                d.lines().last().unwrap_or("")
            ),
        }
    };
    let bytes = moved.map_err(dropped)?;
    let accounts = accounts_before(engine, from, to, name, mariadb, tools).map_err(dropped)?;
    let ddl = objects_ddl(engine, from, to, name, &tmp, tools).map_err(dropped)?;
    let mut notes = swap(engine, to, name, &tmp, &old, ours, &properties, tools, &ddl)?;
    let (users, stale) = mirror_grants(engine, from, to, name, &accounts, tools)?;
    notes.extend(accounts.notes);
    notes.extend(stale);
    if events > 0 {
        let scheduler = sql(engine, to, "SELECT @@event_scheduler")?
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default();
        if !scheduler.eq_ignore_ascii_case("ON") && !scheduler.eq_ignore_ascii_case("1") {
            notes.push(format!(
                "{events} enabled event(s) will not run at the target: its event_scheduler is {scheduler}"
            ));
        }
    }
    Ok(Moved {
        name: name.into(),
        outcome: "copied".into(),
        bytes,
        split_tables: big.iter().map(|(_, t)| t.clone()).collect(),
        users,
        note: None,
        warnings: notes,
        position: None,
    })
}

/// `<name>__th_<what>`, shortened with a hash when that exceeds the 64 characters of a name.
fn side_name(name: &str, what: &str) -> String {
    let full = format!("{name}__th_{what}");
    if full.chars().count() <= 64 {
        return full;
    }
    let hash = blake3::hash(name.as_bytes()).to_hex();
    let head: String = name.chars().take(40).collect();
    format!("{head}__th_{what}_{}", &hash[..8])
}

/// Creates `db` empty with the source's properties, replacing a leftover of ours; a database of
/// that name that is not ours is never dropped.
fn fresh_database(
    engine: DbEngine,
    to: &Endpoint<'_>,
    db: &str,
    ours: &str,
    properties: &str,
) -> Result<(), String> {
    if let Some(c) = super::transfer::comment(engine, to, db)?
        && c != ours
    {
        return Err(format!(
            "`{db}` exists at the target and is not ours: rename or drop it, the move needs that name for its temporary copy"
        ));
    }
    let d = ident(engine, db);
    sql(
        engine,
        to,
        &format!("DROP DATABASE IF EXISTS {d}; CREATE DATABASE {d} {properties}"),
    )
    .map(drop)
}

/// The dump of `name` streamed into `tmp` at the target: one stream, or (with big tables) the
/// tables first without their triggers, the rows in parallel streams, then triggers and
/// routines. Events stay out of the temporary copy, where they could fire: they come with the
/// swap.
#[allow(clippy::too_many_arguments)]
fn restore(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    tmp: &str,
    tools: &Tools,
    big: &[TableName],
    options: &Options<'_>,
) -> Result<u64, String> {
    let args = |extra: &[&str], tail: &[&str]| -> Vec<String> {
        [
            "--single-transaction",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-comments",
        ]
        .iter()
        .chain(extra)
        .chain([&name])
        .chain(tail)
        .map(|s| s.to_string())
        .collect()
    };
    let into = || {
        vec![
            "--default-character-set=utf8mb4".to_string(),
            tmp.to_string(),
        ]
    };
    if big.is_empty() {
        let mut extra = vec!["--routines", "--triggers"];
        if tools.position.is_some() {
            extra.extend(super::replication::DUMP_POSITION_ARGS);
        }
        return stream(engine, from, to, tools, args(&extra, &[]), into());
    }
    let ignored: Vec<String> = big
        .iter()
        .map(|(_, t)| format!("--ignore-table={name}.{t}"))
        .collect();
    let rest: Vec<&str> = ["--no-create-info", "--skip-triggers"]
        .into_iter()
        .chain(ignored.iter().map(String::as_str))
        .collect();
    let mut streams: Vec<Box<dyn Fn() -> Result<u64, String> + Send + Sync + '_>> =
        vec![Box::new(move || {
            stream(engine, from, to, tools, args(&rest, &[]), into())
        })];
    for (_, table) in big {
        streams.push(Box::new(move || {
            stream(
                engine,
                from,
                to,
                tools,
                args(&["--no-create-info", "--skip-triggers"], &[table]),
                into(),
            )
        }));
    }
    let a = stream(
        engine,
        from,
        to,
        tools,
        args(&["--no-data", "--skip-triggers"], &[]),
        into(),
    )?;
    let b = parallel_streams(options.jobs, streams)?;
    let c = stream(
        engine,
        from,
        to,
        tools,
        args(
            &["--no-data", "--no-create-info", "--triggers", "--routines"],
            &[],
        ),
        into(),
    )?;
    Ok(a + b + c)
}

/// What the complete copy in the temporary database holds, and the statements that recreate
/// its views, triggers, routines and events in the final database (`RENAME TABLE` moves
/// neither triggers nor views to another database).
struct ObjectsDdl {
    tables: Vec<String>,
    views: Vec<String>,
    triggers: Vec<String>,
    routines: Vec<(String, String)>,
    events: Vec<String>,
    /// Triggers, routines and events.
    code: Vec<u8>,
    /// Views.
    views_sql: Vec<u8>,
}

/// The objects of database `db` at `end`: `(tables, views, triggers, routines, events)`.
#[allow(clippy::type_complexity)]
fn objects(
    engine: DbEngine,
    end: &Endpoint<'_>,
    db: &str,
) -> Result<
    (
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<(String, String)>,
        Vec<String>,
    ),
    String,
> {
    let d = lit(db);
    let found = rows(
        engine,
        end,
        &[
            format!(
                "SELECT IF(TABLE_TYPE = 'VIEW', 'v', 't'), TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {d}"
            ),
            format!(
                "SELECT 'g', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {d}"
            ),
            format!(
                "SELECT 'r', ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {d}"
            ),
            format!(
                "SELECT 'e', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {d}"
            ),
        ],
    )?;
    let of = |tag: &str| -> Vec<String> {
        found
            .iter()
            .filter(|r| r.first().map(String::as_str) == Some(tag))
            .filter_map(|r| r.get(1).cloned())
            .collect()
    };
    let routines = found
        .iter()
        .filter(|r| r.first().map(String::as_str) == Some("r"))
        .filter_map(|r| Some((r.get(2)?.clone(), r.get(1)?.clone())))
        .collect();
    Ok((of("t"), of("v"), of("g"), routines, of("e")))
}

/// The objects of the copy in `tmp`, and their statements as `mariadb-dump` writes them at the
/// source: read back from the copy, a view whose definer has no rights on `tmp` comes out
/// qualified with `tmp`; from the source its names are relative to `name`, as the final
/// database needs them.
fn objects_ddl(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    tmp: &str,
    tools: &Tools,
) -> Result<ObjectsDdl, String> {
    let (tables, views, triggers, routines, _) = objects(engine, to, tmp)?;
    let (.., events) = objects(engine, from, name)?;
    let run = |extra: &[&str], tail: &[String]| -> Result<Vec<u8>, String> {
        let args: Vec<String> = ["--default-character-set=utf8mb4", "--skip-comments"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .chain([name.to_string()])
            .chain(tail.iter().cloned())
            .collect();
        let req = tool_request(engine, from.server, &tools.dump, &args)?;
        let out = from.transport.exec(&req).map_err(|e| e.to_string())?;
        check(&tools.dump, &out)?;
        Ok(out.stdout)
    };
    let code = if triggers.is_empty() && routines.is_empty() && events.is_empty() {
        Vec::new()
    } else {
        run(
            &[
                "--no-data",
                "--no-create-info",
                "--triggers",
                "--routines",
                "--events",
            ],
            &[],
        )?
    };
    let views_sql = if views.is_empty() {
        Vec::new()
    } else {
        run(&["--no-data", "--skip-triggers"], &views)?
    };
    Ok(ObjectsDdl {
        tables,
        views,
        triggers,
        routines,
        events,
        code,
        views_sql,
    })
}

/// Swaps the complete copy in `tmp` into `name`: the previous tables go to `old` and the new ones
/// come in with one `RENAME TABLE` (atomic), then triggers, routines, events and views are
/// replayed in `name` and what the new copy no longer has is dropped. Notes what could not be
/// cleaned up.
#[allow(clippy::too_many_arguments)]
fn swap(
    engine: DbEngine,
    to: &Endpoint<'_>,
    name: &str,
    tmp: &str,
    old: &str,
    ours: &str,
    properties: &str,
    tools: &Tools,
    ddl: &ObjectsDdl,
) -> Result<Vec<String>, String> {
    let q = |s: &str| ident(engine, s);
    let (db, t, o) = (q(name), q(tmp), q(old));
    let exists = super::transfer::comment(engine, to, name);
    let created = matches!(exists, Ok(None));
    // Before the swap, a failure leaves `name` as it was (not there when this run created it).
    let cleanup = |e: String| {
        let mut drop = format!("DROP DATABASE IF EXISTS {t}; DROP DATABASE IF EXISTS {o}");
        if created {
            drop.push_str(&format!("; DROP DATABASE IF EXISTS {db}"));
        }
        let _ = sql(engine, to, &drop);
        format!("{e}; the copy under `{tmp}` was dropped, `{name}` is untouched")
    };
    let exists = exists.map_err(cleanup)?;
    let (prev_tables, prev_views, prev_triggers, prev_routines, prev_events) =
        objects(engine, to, name).map_err(cleanup)?;
    let mut first = Vec::new();
    match exists {
        None => first.push(format!("CREATE DATABASE {db} {properties}")),
        Some(_) => first.push(format!("ALTER DATABASE {db} {properties}")),
    }
    if !prev_tables.is_empty() {
        fresh_database(engine, to, old, ours, &format!("COMMENT {}", lit(ours)))
            .map_err(cleanup)?;
    }
    // Triggers cannot follow a table to another database: the copy's are replayed after.
    first.extend(
        ddl.triggers
            .iter()
            .map(|g| format!("DROP TRIGGER IF EXISTS {t}.{}", q(g))),
    );
    run_script(engine, to, &tools.restore, &first, |_| None)
        .map_err(|e| cleanup(format!("preparing the swap failed: {e}")))?;
    let mut renames: Vec<String> = prev_tables
        .iter()
        .map(|x| format!("{db}.{} TO {o}.{}", q(x), q(x)))
        .collect();
    renames.extend(
        ddl.tables
            .iter()
            .map(|x| format!("{t}.{} TO {db}.{}", q(x), q(x))),
    );
    let mut commit: Vec<String> = prev_triggers
        .iter()
        .map(|g| format!("DROP TRIGGER IF EXISTS {db}.{}", q(g)))
        .collect();
    if !renames.is_empty() {
        commit.push(format!("RENAME TABLE {}", renames.join(", ")));
    }
    run_script(engine, to, &tools.restore, &commit, |_| None).map_err(|e| {
        cleanup(format!(
            "swapping the new copy in failed ({e}); the previous copy's triggers may need replaying"
        ))
    })?;
    // From here on the new tables serve: what fails is named, nothing is rolled back.
    let after = |what: &str, e: String| {
        format!(
            "the new tables are in `{name}`, but {what} failed: {e}; `{tmp}` and `{old}` (the previous tables) were kept for inspection, the next sync drops them"
        )
    };
    let mut gone: Vec<String> = prev_views
        .iter()
        .filter(|v| !ddl.views.contains(v))
        .map(|v| format!("DROP VIEW IF EXISTS {db}.{}", q(v)))
        .collect();
    gone.extend(
        prev_routines
            .iter()
            .filter(|r| !ddl.routines.contains(r))
            .map(|(kind, r)| format!("DROP {kind} IF EXISTS {db}.{}", q(r))),
    );
    gone.extend(
        prev_events
            .iter()
            .filter(|e| !ddl.events.contains(e))
            .map(|e| format!("DROP EVENT IF EXISTS {db}.{}", q(e))),
    );
    run_script(engine, to, &tools.restore, &gone, |_| None)
        .map_err(|e| after("dropping the previous copy's views and routines", e))?;
    for (what, bytes) in [
        ("replaying triggers, routines and events", &ddl.code),
        ("replaying views", &ddl.views_sql),
    ] {
        if bytes.is_empty() {
            continue;
        }
        let mut req = tool_request(
            engine,
            to.server,
            &tools.restore,
            &[
                "--default-character-set=utf8mb4".to_string(),
                name.to_string(),
            ],
        )?;
        req.stdin = bytes.clone();
        let out = to
            .transport
            .exec(&req)
            .map_err(|e| after(what, e.to_string()))?;
        if !out.success() {
            return Err(after(what, client_error(&out.stderr_text())));
        }
    }
    let mut notes = Vec::new();
    for (db_name, quoted) in [(tmp, &t), (old, &o)] {
        if let Err(e) = sql(engine, to, &format!("DROP DATABASE IF EXISTS {quoted}")) {
            notes.push(format!(
                "`{db_name}` could not be dropped ({}): drop it by hand",
                client_error(&e)
            ));
        }
    }
    Ok(notes)
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// An account as the grant tables name it (a MariaDB role has an empty host and `role` set).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Account {
    user: String,
    host: String,
    role: bool,
}

impl Account {
    /// As SQL names it: `` `u`@`h` ``, `` `r` `` for a role, `PUBLIC`.
    fn sql(&self) -> String {
        let q = |s: &str| format!("`{}`", s.replace('`', "``"));
        if self.role {
            if self.user == "PUBLIC" {
                "PUBLIC".into()
            } else {
                q(&self.user)
            }
        } else {
            format!("{}@{}", q(&self.user), q(&self.host))
        }
    }

    /// As reports name it: `'u'@'h'`, `'r'` for a role.
    fn label(&self) -> String {
        if self.role {
            format!("'{}'", self.user)
        } else {
            format!("'{}'@'{}'", self.user, self.host)
        }
    }

    fn key(&self) -> (String, String) {
        (self.user.clone(), self.host.clone())
    }
}

/// What the grant tables of a source say about one database.
#[derive(Debug, Default)]
struct Catalog {
    /// Accounts holding a privilege that reaches the database (global, database, table,
    /// column, routine level): `(user, host)`.
    grantees: Vec<(String, String)>,
    /// Definers of its views, routines, triggers and events.
    definers: Vec<(String, String)>,
    /// Every account of the server.
    accounts: Vec<Account>,
    /// `(member, role)`: the member holds the role.
    memberships: Vec<((String, String), (String, String))>,
    /// `(proxy, proxied)`: the first may log in as the second.
    proxies: Vec<((String, String), (String, String))>,
    /// The accounts running the move (never touched).
    current: Vec<(String, String)>,
}

/// The accounts a source names for a database.
#[derive(Debug)]
struct Named {
    /// To recreate: those that reach it, and the roles they hold (so `GRANT role TO` works).
    accounts: Vec<Account>,
    /// Those that reach it: grantees, definers, members of roles that reach it, proxies of
    /// accounts that reach it.
    reach: BTreeSet<(String, String)>,
    /// Definers the source does not have.
    orphans: Vec<(String, String)>,
}

fn managed(c: &Catalog) -> Named {
    let known: BTreeMap<(String, String), &Account> =
        c.accounts.iter().map(|a| (a.key(), a)).collect();
    let mut reach: BTreeSet<(String, String)> = c.grantees.iter().cloned().collect();
    let mut orphans = Vec::new();
    for d in &c.definers {
        if known.contains_key(d) {
            reach.insert(d.clone());
        } else if !orphans.contains(d) {
            orphans.push(d.clone());
        }
    }
    loop {
        let before = reach.len();
        for (member, role) in &c.memberships {
            if reach.contains(role) {
                reach.insert(member.clone());
            }
        }
        for (proxy, proxied) in &c.proxies {
            if reach.contains(proxied) {
                reach.insert(proxy.clone());
            }
        }
        if reach.len() == before {
            break;
        }
    }
    let mut all = reach.clone();
    loop {
        let before = all.len();
        for (member, role) in &c.memberships {
            if all.contains(member) {
                all.insert(role.clone());
            }
        }
        if all.len() == before {
            break;
        }
    }
    let accounts = all
        .iter()
        .filter(|k| !c.current.contains(k))
        .filter_map(|k| known.get(k).map(|a| (*a).clone()))
        .filter(|a| !is_admin_account(&a.label()))
        .collect();
    Named {
        accounts,
        reach,
        orphans,
    }
}

/// `user@host` as `information_schema` writes a definer.
fn definer(s: &str) -> (String, String) {
    match s.rsplit_once('@') {
        Some((u, h)) => (u.to_string(), h.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// Privilege columns of `mysql.user` that let an account read or change a database's objects.
const DATA_PRIVILEGES: &str = "Select_priv, Insert_priv, Update_priv, Delete_priv, Create_priv, Drop_priv, \
References_priv, Index_priv, Alter_priv, Create_tmp_table_priv, Lock_tables_priv, Execute_priv, \
Create_view_priv, Show_view_priv, Create_routine_priv, Alter_routine_priv, Event_priv, Trigger_priv";

/// Accounts with a grant on database `n` (an SQL literal) at the database, table, column or
/// routine level; a database-level grant may name it through a pattern (`site\_%`).
fn object_grantees_sql(n: &str) -> String {
    format!(
        "SELECT 'g', User, Host FROM mysql.db WHERE {n} LIKE Db \
         UNION SELECT 'g', User, Host FROM mysql.tables_priv WHERE Db = {n} \
         UNION SELECT 'g', User, Host FROM mysql.columns_priv WHERE Db = {n} \
         UNION SELECT 'g', User, Host FROM mysql.procs_priv WHERE Db = {n}"
    )
}

/// The grant tables and definers of a server, for one database or all of them.
#[derive(Debug, Default)]
struct ServerCatalog {
    /// `(database, is a pattern, account)`: grants at the database (or pattern), table, column
    /// and routine levels.
    grants: Vec<(String, bool, (String, String))>,
    /// Accounts with a global privilege that reaches every database.
    global: Vec<(String, String)>,
    /// `(database, definer)` of views, routines, triggers and events.
    definers: Vec<(String, (String, String))>,
    accounts: Vec<Account>,
    memberships: Vec<((String, String), (String, String))>,
    proxies: Vec<((String, String), (String, String))>,
    current: Vec<(String, String)>,
}

impl ServerCatalog {
    fn for_database(&self, db: &str) -> Catalog {
        Catalog {
            grantees: self
                .grants
                .iter()
                .filter(|(d, pattern, _)| if *pattern { like(db, d) } else { d == db })
                .map(|(_, _, a)| a.clone())
                .chain(self.global.iter().cloned())
                .collect(),
            definers: self
                .definers
                .iter()
                .filter(|(d, _)| d == db)
                .map(|(_, a)| a.clone())
                .collect(),
            accounts: self.accounts.clone(),
            memberships: self.memberships.clone(),
            proxies: self.proxies.clone(),
            current: self.current.clone(),
        }
    }
}

/// Reads the grant tables (for database `only`, or every database) in one client call.
fn read_catalog(
    engine: DbEngine,
    end: &Endpoint<'_>,
    only: Option<&str>,
    mariadb: bool,
) -> Result<ServerCatalog, String> {
    let n = only.map(lit);
    let filter = |condition: &dyn Fn(&str) -> String| {
        n.as_deref()
            .map(|n| format!(" WHERE {}", condition(n)))
            .unwrap_or_default()
    };
    let definers = ["ROUTINES", "VIEWS", "TRIGGERS", "EVENTS"]
        .iter()
        .zip(["ROUTINE", "TABLE", "TRIGGER", "EVENT"])
        .map(|(t, p)| {
            format!(
                "SELECT 'd', {p}_SCHEMA, DEFINER FROM information_schema.{t}{}",
                filter(&|n| format!("{p}_SCHEMA = {n}"))
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ");
    let exact = ["tables_priv", "columns_priv", "procs_priv"]
        .iter()
        .map(|t| {
            format!(
                " UNION SELECT 'g', Db, User, Host, 'N' FROM mysql.{t}{}",
                filter(&|n| format!("Db = {n}"))
            )
        })
        .collect::<String>();
    let mut statements = vec![
        format!(
            "SELECT 'g', Db, User, Host, 'Y' FROM mysql.db{}{exact}",
            filter(&|n| format!("{n} LIKE Db"))
        ),
        format!("SELECT 'G', User, Host FROM mysql.user WHERE 'Y' IN ({DATA_PRIVILEGES})"),
        definers,
        format!(
            "SELECT 'a', User, Host, {} FROM mysql.user",
            if mariadb { "is_role" } else { "'N'" }
        ),
        "SELECT 'p', User, Host, Proxied_user, Proxied_host FROM mysql.proxies_priv".into(),
        "SELECT 'c', CURRENT_USER()".into(),
    ];
    statements.push(if mariadb {
        "SELECT 'm', User, Host, Role, '' FROM mysql.roles_mapping".into()
    } else {
        // MySQL 8 keeps role memberships in role_edges (roles are accounts with a host there).
        "SELECT 'm', TO_USER, TO_HOST, FROM_USER, FROM_HOST FROM mysql.role_edges".into()
    });
    let found = match rows(engine, end, &statements) {
        // MySQL before 8 has no roles.
        Err(e) if !mariadb && e.contains("role_edges") => {
            statements.pop();
            rows(engine, end, &statements)?
        }
        r => r?,
    };
    let mut c = ServerCatalog::default();
    for r in found {
        let f = |i: usize| r.get(i).cloned().unwrap_or_default();
        match r.first().map(String::as_str) {
            Some("g") => c.grants.push((f(1), f(4) == "Y", (f(2), f(3)))),
            Some("G") => c.global.push((f(1), f(2))),
            Some("d") => c.definers.push((f(1), definer(&f(2)))),
            Some("a") => c.accounts.push(Account {
                user: f(1),
                host: f(2),
                role: f(3) == "Y",
            }),
            Some("p") => c.proxies.push(((f(1), f(2)), (f(3), f(4)))),
            Some("m") => c.memberships.push(((f(1), f(2)), (f(3), f(4)))),
            Some("c") => c.current.push(definer(&f(1))),
            _ => {}
        }
    }
    Ok(c)
}

/// Whether the server at `end` is MariaDB (roles in `roles_mapping`) rather than MySQL.
fn is_mariadb(engine: DbEngine, end: &Endpoint<'_>) -> Result<bool, String> {
    Ok(rows(engine, end, &["SELECT @@version".to_string()])?
        .first()
        .and_then(|r| r.first())
        .is_some_and(|v| v.contains("MariaDB")))
}

/// The accounts each database of a server names, as a move would carry them (`'user'@'host'`,
/// `'role'`), for the dry run and inventories: two client calls for the whole server.
///
/// # Errors
/// The server cannot be queried.
pub(super) fn accounts_by_database(
    end: &Endpoint<'_>,
    engine: DbEngine,
    databases: &[String],
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let catalog = read_catalog(engine, end, None, is_mariadb(engine, end)?)?;
    Ok(databases
        .iter()
        .map(|db| {
            let named = managed(&catalog.for_database(db));
            (
                db.clone(),
                named.accounts.iter().map(Account::label).collect(),
            )
        })
        .collect())
}

/// The accounts of one move: created or updated at the target before the swap, their grants
/// mirrored after it.
struct Accounts {
    /// Accounts the source names for the database.
    managed: Vec<Account>,
    /// Accounts that exist on both sides and hold grants on the database at the target only:
    /// their grants are mirrored (revoked), nothing else.
    mirrored: Vec<Account>,
    /// Accounts that exist at the target (after the creations).
    at_target: BTreeSet<(String, String)>,
    /// Accounts that reach the database at the source, as SQL names them.
    reach_sql: BTreeSet<String>,
    notes: Vec<String>,
}

/// Creates at the target the accounts the source names for `name` (users with their
/// authentication, from `SHOW CREATE USER`; roles), updates the ones that exist; no grants yet.
fn accounts_before(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    mariadb: bool,
    tools: &Tools,
) -> Result<Accounts, String> {
    let catalog = read_catalog(engine, from, Some(name), mariadb)?.for_database(name);
    let Named {
        accounts: managed,
        reach,
        orphans,
    } = managed(&catalog);
    let mut asked = vec![
        object_grantees_sql(&lit(name)),
        "SELECT 'a', User, Host FROM mysql.user".into(),
        "SELECT 'c', CURRENT_USER()".into(),
        "SELECT 'l', LOWER(PLUGIN_NAME) FROM information_schema.PLUGINS WHERE PLUGIN_TYPE = 'AUTHENTICATION' AND PLUGIN_STATUS = 'ACTIVE'".into(),
        "SELECT 'p', User, Host, Proxied_user, Proxied_host FROM mysql.proxies_priv".into(),
    ];
    if mariadb {
        asked.push("SELECT 'm', User, Host, Role, '' FROM mysql.roles_mapping".into());
    }
    let target = rows(engine, to, &asked)?;
    let tagged = |tag: &str| -> Vec<(String, String)> {
        target
            .iter()
            .filter(|r| r.first().map(String::as_str) == Some(tag))
            .map(|r| {
                (
                    r.get(1).cloned().unwrap_or_default(),
                    r.get(2).cloned().unwrap_or_default(),
                )
            })
            .collect()
    };
    let mut at_target: BTreeSet<(String, String)> = tagged("a").into_iter().collect();
    let target_current: Vec<(String, String)> =
        tagged("c").iter().map(|(c, _)| definer(c)).collect();
    let plugins: BTreeSet<String> = tagged("l").into_iter().map(|(p, _)| p).collect();
    let managed: Vec<Account> = managed
        .into_iter()
        .filter(|a| !target_current.contains(&a.key()))
        .collect();
    let keys: BTreeSet<(String, String)> = managed.iter().map(Account::key).collect();
    // Accounts reaching the database at the target only (a grant on it, a proxy of or a role
    // of an account that reaches it): mirrored when the source has them, else left alone.
    let mut candidates = tagged("g");
    for r in &target {
        let f = |i: usize| r.get(i).cloned().unwrap_or_default();
        if matches!(r.first().map(String::as_str), Some("p" | "m")) && reach.contains(&(f(3), f(4)))
        {
            candidates.push((f(1), f(2)));
        }
    }
    let mut mirrored: Vec<Account> = Vec::new();
    let mut left_alone: BTreeSet<String> = BTreeSet::new();
    for g in candidates {
        if keys.contains(&g) || target_current.contains(&g) {
            continue;
        }
        match catalog.accounts.iter().find(|a| a.key() == g) {
            Some(a)
                if !catalog.current.contains(&g)
                    && !is_admin_account(&a.label())
                    && !mirrored.contains(a) =>
            {
                mirrored.push(a.clone());
            }
            Some(_) => {}
            None if !is_admin_account(&format!("'{}'@", g.0)) => {
                left_alone.insert(format!("'{}'@'{}'", g.0, g.1));
            }
            None => {}
        }
    }
    let reach_sql: BTreeSet<String> = catalog
        .accounts
        .iter()
        .filter(|a| reach.contains(&a.key()))
        .map(Account::sql)
        .collect();
    let users: Vec<&Account> = managed.iter().filter(|a| !a.role).collect();
    let created = rows(
        engine,
        from,
        &users
            .iter()
            .map(|a| format!("SHOW CREATE USER {}", a.sql()))
            .collect::<Vec<_>>(),
    )?;
    let mut by_account: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in created {
        let Some(statement) = r.into_iter().next() else {
            continue;
        };
        let tokens = tokenize(&statement);
        // `CREATE USER <account> ...`
        if let Some((account, _)) = tokens.get(2..).and_then(parse_account) {
            by_account.insert((account.0, account.1.unwrap_or_default()), statement);
        }
    }
    let mut statements: Vec<(String, usize)> = Vec::new();
    let mut lacking: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, a) in managed.iter().enumerate() {
        let exists = at_target.contains(&a.key());
        if a.role {
            if a.user != "PUBLIC" && !exists {
                statements.push((format!("CREATE ROLE IF NOT EXISTS {}", a.sql()), i));
            }
            continue;
        }
        let Some(create) = by_account.get(&a.key()) else {
            return Err(format!(
                "account {}: SHOW CREATE USER at the source said nothing",
                a.label()
            ));
        };
        let tokens = tokenize(create);
        let auth = identified(&tokens);
        let missing: Vec<String> = auth
            .as_ref()
            .map(|x| x.plugins.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !plugins.contains(p))
            .collect();
        if !missing.is_empty() {
            lacking
                .entry(missing.join(", "))
                .or_default()
                .push(a.label());
            // Its authentication cannot be carried: created locked, left alone if it exists.
            if !exists {
                let mut s = without(create, auth.as_ref().map(|x| x.span));
                if !has_words(&tokens, &["ACCOUNT", "LOCK"]) {
                    s.push_str(" ACCOUNT LOCK");
                }
                statements.push((
                    s.replacen("CREATE USER ", "CREATE USER IF NOT EXISTS ", 1),
                    i,
                ));
            }
            continue;
        }
        if exists {
            let mut s = create.replacen("CREATE USER ", "ALTER USER ", 1);
            if !has_words(&tokens, &["ACCOUNT", "LOCK"])
                && !has_words(&tokens, &["ACCOUNT", "UNLOCK"])
            {
                s.push_str(" ACCOUNT UNLOCK");
            }
            statements.push((s, i));
        } else {
            statements.push((
                create.replacen("CREATE USER ", "CREATE USER IF NOT EXISTS ", 1),
                i,
            ));
        }
    }
    let (texts, owners): (Vec<String>, Vec<usize>) = statements.into_iter().unzip();
    // The statements carry password hashes: an error names the account, never the statement.
    run_script(engine, to, &tools.restore, &texts, |line| {
        owners.get(line).map(|&i| managed[i].label())
    })?;
    // PUBLIC exists wherever something was granted to it; it is never created.
    at_target.extend(
        managed
            .iter()
            .filter(|a| !(a.role && a.user == "PUBLIC"))
            .map(Account::key),
    );
    let mut notes = Vec::new();
    for (plugin, accounts) in lacking {
        notes.push(format!(
            "authentication plugin {plugin} is not active at the target: {} need(s) a new password there (created locked when new)",
            accounts.join(", ")
        ));
    }
    if !orphans.is_empty() {
        notes.push(format!(
            "definer(s) {} do not exist at the source: not created",
            orphans
                .iter()
                .map(|(u, h)| format!("'{u}'@'{h}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !left_alone.is_empty() {
        notes.push(format!(
            "account(s) {} hold grants on it at the target only and do not exist at the source: left alone",
            left_alone.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(Accounts {
        managed,
        mirrored,
        at_target,
        reach_sql,
        notes,
    })
}

/// Makes each account's grants that concern database `name` (global, on the database or a
/// pattern matching it, its tables, columns and routines, proxies, roles held, default role)
/// at the target equal to the source's: what the target has more is revoked, then the source's
/// grants are applied. Grants on other databases are left alone. The accounts, as labels.
fn mirror_grants(
    engine: DbEngine,
    from: &Endpoint<'_>,
    to: &Endpoint<'_>,
    name: &str,
    accounts: &Accounts,
    tools: &Tools,
) -> Result<(Vec<String>, Vec<String>), String> {
    let all: Vec<&Account> = accounts.managed.iter().chain(&accounts.mirrored).collect();
    let grants_of = |end: &Endpoint<'_>, which: &[&Account]| -> Result<Vec<GrantLine>, String> {
        Ok(rows(
            engine,
            end,
            &which
                .iter()
                .map(|a| format!("SHOW GRANTS FOR {}", a.sql()))
                .collect::<Vec<_>>(),
        )?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .filter_map(|l| parse_grant(&l))
        .filter(|g| g.in_scope(name))
        .collect())
    };
    let source = grants_of(from, &all)?;
    let present: Vec<&Account> = all
        .iter()
        .copied()
        .filter(|a| accounts.at_target.contains(&a.key()))
        .collect();
    let target = grants_of(to, &present)?;
    let mut statements: Vec<(String, usize)> = Vec::new();
    for (i, a) in all.iter().enumerate() {
        let mine = |lines: &[GrantLine]| -> Vec<GrantLine> {
            lines
                .iter()
                .filter(|g| g.is_for(&a.user, (!a.role).then_some(a.host.as_str())))
                .cloned()
                .collect()
        };
        let (s, t) = (mine(&source), mine(&target));
        let wanted: BTreeSet<Item> = s.iter().flat_map(|g| g.items.iter().cloned()).collect();
        // An account the source no longer names for the database loses at the target what
        // concerns the database itself, and gets nothing.
        let only_revoke = i >= accounts.managed.len();
        let concerns_it = |x: &Item| match x {
            Item::Privilege(o, ..) | Item::GrantOption(o) => *o != Object::Global,
            Item::Proxy(p) | Item::ProxyGrantOption(p) => accounts.reach_sql.contains(p),
            Item::Role(r) | Item::RoleAdmin(r) | Item::DefaultRole(r) => {
                accounts.reach_sql.contains(r)
            }
        };
        let extra: Vec<Item> = t
            .iter()
            .flat_map(|g| g.items.iter().cloned())
            .filter(|x| !wanted.contains(x) && (!only_revoke || concerns_it(x)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let has_default = wanted.iter().any(|x| matches!(x, Item::DefaultRole(_)));
        for r in revokes(&a.sql(), &extra, has_default) {
            statements.push((r, i));
        }
        if only_revoke {
            continue;
        }
        let mut replay: Vec<&GrantLine> = s.iter().collect();
        replay.sort_by_key(|g| g.order);
        let mut seen = BTreeSet::new();
        for g in replay {
            if seen.insert(g.replay.clone()) {
                statements.push((g.replay.clone(), i));
            }
        }
    }
    let (texts, owners): (Vec<String>, Vec<usize>) = statements.into_iter().unzip();
    let failed = run_statements(engine, to, &tools.restore, &texts, true)?;
    let told = |f: &Failed| {
        format!(
            "{}{}",
            f.index
                .and_then(|n| owners.get(n))
                .map(|&i| format!("account {}: ", all[i].label()))
                .unwrap_or_default(),
            f.message
        )
    };
    // The source keeps grants on tables, columns and routines it dropped since: the copy
    // cannot have them. Said, not fatal.
    let (stale, broken): (Vec<&Failed>, Vec<&Failed>) = failed
        .iter()
        .partition(|f| matches!(f.code, 1054 | 1146 | 1305));
    if !broken.is_empty() {
        return Err(format!(
            "the new copy is in place, but mirroring grants failed: {}",
            broken
                .iter()
                .map(|f| told(f))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let notes = stale
        .iter()
        .map(|f| {
            format!(
                "a grant on an object the source no longer has was not carried ({})",
                told(f)
            )
        })
        .collect();
    Ok((all.iter().map(|a| a.label()).collect(), notes))
}

// ---------------------------------------------------------------------------------------------
// Talking to the server

/// A statement of a script that failed: its index and the client's error (statement left out).
struct Failed {
    index: Option<usize>,
    code: u32,
    message: String,
}

/// Runs `statements` in order in `tool` (the client) at `end`, through its stdin, so statements
/// carrying password hashes never reach a command line. Stops at the first failure, or with
/// `keep_going` runs them all; the failures.
///
/// # Errors
/// The client could not run.
fn run_statements(
    engine: DbEngine,
    end: &Endpoint<'_>,
    tool: &str,
    statements: &[String],
    keep_going: bool,
) -> Result<Vec<Failed>, String> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["-NB".to_string()];
    if keep_going {
        args.push("--force".into());
    }
    let mut req = tool_request(engine, end.server, tool, &args)?;
    // One statement per line: the client's "at line N" finds the statement and its account.
    let script: String = statements
        .iter()
        .map(|s| format!("{};\n", s.replace(['\n', '\r'], " ")))
        .collect();
    req.stdin = script.into_bytes();
    let out = end.transport.exec(&req).map_err(|e| e.to_string())?;
    // The client echoes a failing statement on stderr (and with `--force` exits 0 whatever
    // failed): only its `ERROR` lines are read, never the rest.
    let mut failed: Vec<Failed> = out
        .stderr_text()
        .lines()
        .filter(|l| l.starts_with("ERROR "))
        .map(|l| Failed {
            index: l
                .split(" at line ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.trim().parse::<usize>().ok())
                .map(|n| n.saturating_sub(1)),
            code: l
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            message: client_error(l),
        })
        .collect();
    if failed.is_empty() && !out.success() {
        failed.push(Failed {
            index: None,
            code: 0,
            message: format!(
                "`{tool}` failed ({})",
                out.code.map_or("killed".into(), |c| format!("exit {c}"))
            ),
        });
    }
    Ok(failed)
}

/// Runs `statements`, stopping at the first failure, told with the account `owner` gives for
/// the failing statement (by its index), never with the statement.
fn run_script(
    engine: DbEngine,
    end: &Endpoint<'_>,
    tool: &str,
    statements: &[String],
    owner: impl Fn(usize) -> Option<String>,
) -> Result<(), String> {
    match run_statements(engine, end, tool, statements, false)?
        .into_iter()
        .next()
    {
        None => Ok(()),
        Some(f) => Err(format!(
            "{}{}",
            f.index
                .and_then(owner)
                .map(|a| format!("account {a}: "))
                .unwrap_or_default(),
            f.message
        )),
    }
}

/// The client's error without the statement it quotes (it may carry a password hash).
fn client_error(said: &str) -> String {
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let (code, message) = match last.split_once(" at line ") {
        Some((code, rest)) => (
            code.split(" (").next().unwrap_or(code),
            rest.split_once(": ").map_or(rest, |(_, m)| m),
        ),
        None => ("", last),
    };
    let message = message.split(" near '").next().unwrap_or(message);
    let message: String = message.chars().take(200).collect();
    if code.is_empty() {
        message
    } else {
        format!("{code}: {message}")
    }
}

/// Runs `statements` in one client call; their rows, fields unescaped from the client's batch
/// format (`\\`, `\t`, `\n`, `\0`).
fn rows(
    engine: DbEngine,
    end: &Endpoint<'_>,
    statements: &[String],
) -> Result<Vec<Vec<String>>, String> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        query_many(end.transport, engine, end.server, None, statements)?
            .into_iter()
            .map(|r| r.iter().map(|f| unescape(f)).collect())
            .collect(),
    )
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_reach_through_roles_and_proxies_and_bring_the_roles_they_hold() {
        let k = |u: &str, h: &str| (u.to_string(), h.to_string());
        let a = |u: &str, h: &str, role: bool| Account {
            user: u.into(),
            host: h.into(),
            role,
        };
        let c = Catalog {
            grantees: vec![k("r1", ""), k("tu", "%"), k("root", "localhost")],
            definers: vec![k("gone", "%")],
            accounts: vec![
                a("r1", "", true),
                a("r2", "", true),
                a("r3", "", true),
                a("roleu", "%", false),
                a("tu", "%", false),
                a("pu", "%", false),
                a("other", "%", false),
                a("root", "localhost", false),
            ],
            memberships: vec![
                (k("roleu", "%"), k("r1", "")),
                (k("r1", ""), k("r2", "")),
                (k("tu", "%"), k("r3", "")),
                (k("other", "%"), k("r3", "")),
            ],
            proxies: vec![(k("pu", "%"), k("tu", "%"))],
            current: vec![k("root", "localhost")],
        };
        let named = managed(&c);
        let labels: Vec<String> = named.accounts.iter().map(Account::label).collect();
        assert_eq!(
            labels,
            vec![
                "'pu'@'%'",
                "'r1'",
                "'r2'",
                "'r3'",
                "'roleu'@'%'",
                "'tu'@'%'"
            ]
        );
        assert_eq!(named.orphans, vec![k("gone", "%")]);
        assert!(named.reach.contains(&k("pu", "%")) && !named.reach.contains(&k("r3", "")));
    }

    #[test]
    fn client_errors_never_quote_the_statement() {
        assert_eq!(
            client_error(
                "ERROR 1064 (42000) at line 3: You have an error in your SQL syntax; check the manual near 'IDENTIFIED BY PASSWORD '*AB' at line 1"
            ),
            "ERROR 1064: You have an error in your SQL syntax; check the manual"
        );
        assert_eq!(
            client_error(
                "ERROR 1133 (28000) at line 1: Can't find any matching row in the user table"
            ),
            "ERROR 1133: Can't find any matching row in the user table"
        );
        assert_eq!(side_name("shop", "new"), "shop__th_new");
        assert!(side_name(&"x".repeat(64), "old").chars().count() <= 64);
        assert_eq!(unescape("d\\\\_%"), "d\\_%");
    }
}
