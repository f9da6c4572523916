//! Issue 14, PostgreSQL: a database arrives with everything a DBA expects around it (roles
//! reached through groups, memberships, roles named only in grants, default privileges, large
//! objects or policies, the database's owner, ACL, settings, comment and extensions), compared
//! by catalog queries on real servers with the target over ssh; re-syncs mirror revocations;
//! a client connected to the target is waited for, refused or ended, never left with a stray
//! copy; a source account that is not a superuser carries what it can and says what it cannot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Postgres, Sshd, wait_until};

/// Catalog views of what surrounds a database, in the shared catalogs and in the database:
/// each must read the same at both ends. Our own `transhumance.*` setting is left out.
const SHARED: [(&str, &str); 5] = [
    (
        "roles",
        "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, \
         rolbypassrls, rolconnlimit, rolvaliduntil, rolconfig, shobj_description(oid, 'pg_authid') \
         FROM pg_roles WHERE rolname !~ '^(pg_|postgres$|stranger)' ORDER BY 1",
    ),
    (
        "passwords",
        "SELECT rolname, rolpassword FROM pg_authid WHERE rolname !~ '^(pg_|postgres$|stranger)' ORDER BY 1",
    ),
    (
        "memberships",
        "SELECT g.rolname, m.rolname, a.admin_option FROM pg_auth_members a \
         JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member ORDER BY 1, 2",
    ),
    (
        "database",
        "SELECT pg_get_userbyid(datdba), datacl, pg_encoding_to_char(encoding), datcollate, datctype, \
         datconnlimit, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'shop'",
    ),
    (
        "settings",
        "SELECT * FROM (SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') AS who, coalesce(d.datname, '*') AS db, \
         array(SELECT c FROM unnest(s.setconfig) c WHERE c NOT LIKE 'transhumance.%' ORDER BY c) AS config \
         FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE s.setdatabase = 0 OR d.datname = 'shop') x WHERE cardinality(config) > 0 ORDER BY 1, 2",
    ),
];

const IN_DATABASE: [(&str, &str); 8] = [
    (
        "default privileges",
        "SELECT pg_get_userbyid(defaclrole), coalesce(n.nspname, '-'), defaclobjtype, defaclacl \
         FROM pg_default_acl a LEFT JOIN pg_namespace n ON n.oid = a.defaclnamespace ORDER BY 1, 2, 3",
    ),
    (
        "large objects",
        "SELECT oid, pg_get_userbyid(lomowner), lomacl FROM pg_largeobject_metadata ORDER BY 1",
    ),
    (
        "policies",
        "SELECT polname, polrelid::regclass, array(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END \
         FROM unnest(polroles) r ORDER BY 1), pg_get_expr(polqual, polrelid) FROM pg_policy ORDER BY 1",
    ),
    (
        "extensions",
        "SELECT extname, n.nspname, extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1",
    ),
    (
        "schemas",
        "SELECT nspname, pg_get_userbyid(nspowner), nspacl FROM pg_namespace WHERE nspname !~ '^pg_' ORDER BY 1",
    ),
    (
        "relations",
        "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl, c.relrowsecurity FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' ORDER BY 1",
    ),
    (
        "columns",
        "SELECT attrelid::regclass, attname, attacl FROM pg_attribute WHERE attacl IS NOT NULL ORDER BY 1, 2",
    ),
    (
        "functions",
        "SELECT p.proname, pg_get_userbyid(p.proowner), p.proacl FROM pg_proc p \
         JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'app' ORDER BY 1",
    ),
];

/// Every catalog view, by name, as one server shows it.
fn catalogs(pg: &Postgres) -> BTreeMap<&'static str, String> {
    SHARED
        .iter()
        .map(|(what, q)| (*what, pg.psql("postgres", q)))
        .chain(
            IN_DATABASE
                .iter()
                .map(|(what, q)| (*what, pg.psql("shop", q))),
        )
        .collect()
}

fn assert_same_catalogs(src: &Postgres, dst: &Postgres, when: &str) {
    let (a, b) = (catalogs(src), catalogs(dst));
    for (what, at_source) in &a {
        assert_eq!(
            at_source, &b[what],
            "{when}: {what} differ (left: source, right: target)"
        );
    }
}

/// A plan moving `names` from `src` (as `user`) to `dst` reached over the real sshd, with
/// `extra` lines added to the rule.
fn write_plan(
    work: &Path,
    sshd: &Sshd,
    (src, dst): (&Postgres, &Postgres),
    user: &str,
    names: &[&str],
    extra: &str,
) -> PathBuf {
    let plan = work.join(format!("plan-{}.yaml", names.join("-")));
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: pg-it\nstate_dir: state\n\
hosts:\n  newdb: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\n\
databases:\n  - engine: postgres\n    from: {{ host: local, address: 127.0.0.1, port: {}, user: {user} }}\n    \
to: {{ host: newdb, address: 127.0.0.1, port: {}, user: postgres }}\n    names: [{}]\n{extra}",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display(),
            work.display(),
            src.port,
            dst.port,
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    plan
}

fn db_sync(plan: &Path, more: &[&str]) -> (Option<i32>, String) {
    let out = crate::cli::bin()
        .args(["db", "sync"])
        .arg(plan)
        .args(more)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn leftovers(dst: &Postgres, name: &str) -> String {
    dst.psql(
        "postgres",
        &format!(
            "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{name}\\_\\_th%'"
        ),
    )
}

#[test]
fn postgres_roles_grants_and_database_properties_arrive_and_revocations_follow() {
    let sshd = Sshd::start();
    let (src, dst) = (Postgres::start(), Postgres::start());
    // Roles: a group with login members (one through a nested group), roles named only in a
    // function grant, a sequence grant, default privileges, a large object (owner and ACL), a
    // policy, a column grant, the database ACL; a member of a predefined role; settings.
    src.psql(
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'Own3r-pw'; \
         CREATE ROLE staff NOLOGIN; COMMENT ON ROLE staff IS 'the staff'; \
         CREATE ROLE alice LOGIN PASSWORD 'Al1ce-pw'; CREATE ROLE bob LOGIN PASSWORD 'B0b-pw' CONNECTION LIMIT 3 VALID UNTIL '2040-01-01'; \
         CREATE ROLE seniors NOLOGIN NOINHERIT; CREATE ROLE dave LOGIN PASSWORD 'Dav3-pw' CREATEDB; \
         GRANT staff TO alice WITH ADMIN OPTION; GRANT staff TO bob; GRANT staff TO seniors; GRANT seniors TO dave; \
         CREATE ROLE fn_user LOGIN; CREATE ROLE seq_user; CREATE ROLE deflt; CREATE ROLE lo_owner; CREATE ROLE lo_reader; \
         CREATE ROLE tenant; CREATE ROLE col_reader; CREATE ROLE reporter LOGIN; GRANT pg_read_all_data TO reporter; \
         CREATE ROLE stranger LOGIN; \
         ALTER ROLE alice SET work_mem = '8MB'; ALTER ROLE dave SET search_path = app, \"$user\";",
    );
    src.psql("postgres", "CREATE DATABASE shop OWNER app_owner");
    src.psql(
        "postgres",
        "REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC; GRANT CONNECT ON DATABASE shop TO staff, reporter; \
         GRANT TEMPORARY ON DATABASE shop TO alice; \
         ALTER DATABASE shop SET search_path = app, public; ALTER ROLE alice IN DATABASE shop SET statement_timeout = '5s'; \
         COMMENT ON DATABASE shop IS 'the shop, as its owners describe it'",
    );
    src.psql(
        "shop",
        "CREATE SCHEMA app AUTHORIZATION app_owner; GRANT USAGE ON SCHEMA app TO staff, fn_user, seq_user, col_reader; \
         CREATE SCHEMA crypto; CREATE EXTENSION pgcrypto WITH SCHEMA crypto; \
         CREATE TABLE app.items (id int PRIMARY KEY, tenant_name text, secret text); ALTER TABLE app.items OWNER TO app_owner; \
         INSERT INTO app.items SELECT g, 'tenant', crypto.crypt('s' || g, crypto.gen_salt('md5')) FROM generate_series(1, 300) g; \
         GRANT SELECT ON app.items TO staff; GRANT SELECT (id) ON app.items TO col_reader; \
         ALTER TABLE app.items ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY by_tenant ON app.items TO tenant USING (tenant_name = current_user); \
         CREATE FUNCTION app.total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM app.items'; \
         ALTER FUNCTION app.total() OWNER TO app_owner; \
         REVOKE EXECUTE ON FUNCTION app.total() FROM PUBLIC; GRANT EXECUTE ON FUNCTION app.total() TO fn_user; \
         CREATE SEQUENCE app.seq; ALTER SEQUENCE app.seq OWNER TO app_owner; GRANT USAGE ON SEQUENCE app.seq TO seq_user; \
         ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO deflt; \
         SELECT lo_from_bytea(4242, 'a large object'); ALTER LARGE OBJECT 4242 OWNER TO lo_owner; \
         GRANT SELECT ON LARGE OBJECT 4242 TO lo_reader;",
    );
    dst.psql("postgres", "CREATE ROLE stranger_at_target LOGIN");
    let work = tempfile::tempdir().unwrap();
    let plan = write_plan(work.path(), &sshd, (&src, &dst), "postgres", &["shop"], "");

    let (code, out) = db_sync(&plan, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("copied    shop"), "{out}");
    assert!(!out.contains("warning"), "{out}");
    assert_same_catalogs(&src, &dst, "first sync");
    assert_eq!(
        dst.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'stranger'"
        ),
        "0",
        "a role the database does not name stays behind"
    );
    assert_eq!(leftovers(&dst, "shop"), "");
    // The settings and the ACL work in a session as they did at the source.
    let settings = "SELECT current_setting('search_path') || ' ' || current_setting('work_mem') || ' ' || current_setting('statement_timeout')";
    assert_eq!(
        psql_as(&dst, "alice", "shop", settings).unwrap(),
        "app, public 8MB 5s"
    );
    let refused = psql_as(&dst, "stranger_at_target", "shop", "SELECT 1").unwrap_err();
    assert!(
        refused.contains("permission denied for database"),
        "{refused}"
    );

    // Revoked at the source, revoked at the target after a re-sync (roles are never dropped).
    src.psql(
        "postgres",
        "REVOKE staff FROM bob; REVOKE ADMIN OPTION FOR staff FROM alice; REVOKE seniors FROM dave; \
         REVOKE CONNECT ON DATABASE shop FROM reporter; ALTER ROLE alice RESET work_mem; \
         ALTER ROLE alice VALID UNTIL 'infinity'; ALTER DATABASE shop RESET search_path; COMMENT ON ROLE staff IS NULL",
    );
    src.psql(
        "shop",
        "REVOKE EXECUTE ON FUNCTION app.total() FROM fn_user; \
         ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app REVOKE SELECT ON TABLES FROM deflt",
    );
    let (code, out) = db_sync(&plan, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_same_catalogs(&src, &dst, "re-sync after revocations");
    assert_eq!(
        dst.psql(
            "postgres",
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('bob', 'dave', 'fn_user', 'deflt')"
        ),
        "bob,dave,deflt,fn_user",
        "roles are never dropped"
    );
    assert_eq!(leftovers(&dst, "shop"), "");

    // A run killed between its two renames left the previous copy aside: the next run puts it
    // back before anything else, and the final name is there again.
    dst.psql("postgres", "ALTER DATABASE shop RENAME TO shop__th_old");
    let (code, out) = db_sync(&plan, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("an interrupted run had left the previous copy as `shop__th_old`"),
        "{out}"
    );
    assert_same_catalogs(&src, &dst, "after an interrupted run");
    assert_eq!(leftovers(&dst, "shop"), "");
}

/// `sql` in `db` as `user` (trust authentication): its output, or psql's complaint.
fn psql_as(pg: &Postgres, user: &str, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(pg.bin.join("psql"))
        .args(["-XAt", "-h", "127.0.0.1", "-p", &pg.port.to_string()])
        .args(["-U", user, "-d", db, "-c", sql])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A psql session held open on `db` at `pg` until dropped.
struct Session(Child);

impl Session {
    fn open(pg: &Postgres, db: &str) -> Session {
        let mut child = Command::new(pg.bin.join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &pg.port.to_string()])
            .args(["-U", "postgres", "-d", db])
            .env("PGAPPNAME", "held-open")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"SELECT 1;\n").unwrap();
        let session = Session(child);
        wait_until(Duration::from_secs(20), "the session to connect", || {
            session.count(pg, db) == 1
        });
        session
    }

    fn count(&self, pg: &Postgres, db: &str) -> usize {
        pg.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'held-open'"),
        )
        .parse()
        .unwrap()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn postgres_resync_with_a_client_connected_and_a_source_account_that_is_not_superuser() {
    let sshd = Sshd::start();
    let (src, dst) = (Postgres::start(), Postgres::start());
    src.psql(
        "postgres",
        "CREATE ROLE webapp LOGIN PASSWORD 'W3b-pw'; CREATE ROLE migrator LOGIN",
    );
    src.psql("postgres", "CREATE DATABASE shop OWNER webapp");
    src.psql(
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO webapp; \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g; GRANT SELECT ON t TO migrator",
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let policy = |p: &str, timeout: &str| {
        let plan = write_plan(
            w,
            &sshd,
            (&src, &dst),
            "postgres",
            &["shop"],
            &format!("    connected_clients: {p}\n    connected_clients_timeout: {timeout}\n"),
        );
        let named = w.join(format!("plan-{p}.yaml"));
        std::fs::rename(plan, &named).unwrap();
        named
    };
    let (wait, refuse, terminate) = (
        policy("wait", "2s"),
        policy("refuse", "1m"),
        policy("terminate", "1s"),
    );
    let (code, out) = db_sync(&wait, &[]);
    assert_eq!(code, Some(0), "{out}");

    // A client holds a session on the target's copy while the source changes.
    let session = Session::open(&dst, "shop");
    src.psql("shop", "INSERT INTO t VALUES (501, 'new at the source')");
    let started = std::time::Instant::now();
    let (code, out) = db_sync(&wait, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert!(
        out.contains("FAILED    shop (conflict):")
            && out.contains("client session(s) connected to `shop` at the target (pid ")
            && out.contains("(held-open)")
            && out.contains("did not leave within")
            && out.contains("`connected_clients: wait`")
            && out.contains("the previous copy was left in place, serving")
            && out.contains("the new copy under `shop__th_new` was dropped"),
        "{out}"
    );
    assert_eq!(leftovers(&dst, "shop"), "");
    assert_eq!(dst.psql("shop", "SELECT count(*) FROM t"), "500");
    assert_eq!(session.count(&dst, "shop"), 1, "the client was left alone");

    // `refuse` says so before copying anything.
    let (code, out) = db_sync(&refuse, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("`connected_clients: refuse`") && out.contains("nothing was written"),
        "{out}"
    );
    assert_eq!(leftovers(&dst, "shop"), "");

    // A new copy that cannot be dropped (a client got onto it) is reported: where, how big,
    // and how to drop it.
    let stuck = std::thread::scope(|s| {
        let run = s.spawn(|| db_sync(&wait, &[]));
        wait_until(Duration::from_secs(60), "the new copy to appear", || {
            leftovers(&dst, "shop") == "shop__th_new"
        });
        let on_new_copy = Session::open(&dst, "shop__th_new");
        let (code, out) = run.join().unwrap();
        drop(on_new_copy);
        assert_eq!(code, Some(1), "{out}");
        out
    });
    assert!(
        stuck.contains("the previous copy was left in place, serving")
            && stuck.contains("the new copy is still at the target as `shop__th_new` (")
            && stuck.contains("drop it with `DROP DATABASE \"shop__th_new\";`"),
        "{stuck}"
    );
    assert_eq!(dst.psql("shop", "SELECT count(*) FROM t"), "500");

    // `terminate` ends the session once the wait is over, and the copy goes in (the stray copy
    // left above is dropped first).
    let (code, out) = db_sync(&terminate, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("copied    shop")
            && out.contains("warning   shop: ended 1 session(s) connected to the previous copy")
            && out.contains("(held-open)"),
        "{out}"
    );
    assert_eq!(dst.psql("shop", "SELECT count(*) FROM t"), "501");
    assert_eq!(session.count(&dst, "shop"), 0);
    assert_eq!(leftovers(&dst, "shop"), "");
    drop(session);

    // A source account without superuser reads: everything but the password hashes moves,
    // and the roles left without theirs are named.
    src.psql("postgres", "CREATE ROLE newcomer LOGIN PASSWORD 'N3w-pw'");
    src.psql(
        "shop",
        "UPDATE t SET v = 'by the migrator run' WHERE id = 1; GRANT SELECT ON t TO newcomer",
    );
    let plan = write_plan(w, &sshd, (&src, &dst), "migrator", &["shop"], "");
    let out = crate::cli::bin()
        .args(["--json", "db", "sync"])
        .arg(&plan)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    let warnings = results[0]["moved"]["warnings"].to_string();
    assert!(
        warnings.contains("passwords not carried for role(s) `migrator`, `newcomer`, `webapp`")
            && warnings.contains("(permission denied for table pg_authid)"),
        "{text}"
    );
    let (code, out) = db_sync(&plan, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "warning   shop: passwords not carried for role(s) `migrator`, `newcomer`, `webapp`"
        ),
        "{out}"
    );
    assert_eq!(
        dst.psql("postgres", "SELECT rolcanlogin::text || ' ' || (rolpassword IS NULL)::text FROM pg_authid WHERE rolname = 'newcomer'"),
        "true true"
    );
    assert_eq!(
        dst.psql("shop", "SELECT pg_get_userbyid(relowner) || ' ' || (SELECT v FROM t WHERE id = 1) FROM pg_class WHERE relname = 't'"),
        "webapp by the migrator run"
    );
    // The password carried by the superuser run before is kept, not wiped.
    assert_eq!(
        src.psql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'webapp'"
        ),
        dst.psql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'webapp'"
        )
    );
}

#[test]
fn split_streams_share_one_snapshot_while_the_source_is_written() {
    // Two tables written in pairs, one transaction per pair, all through the dump: each table
    // moving in a stream of its own (read from a remote source through its agent) must still
    // show the same number of rows at the target, as one snapshot of the source does.
    let sshd = Sshd::start();
    let (src, dst) = (Postgres::start(), Postgres::start());
    src.psql("postgres", "CREATE DATABASE busy");
    src.psql(
        "busy",
        "CREATE TABLE a (id bigserial PRIMARY KEY, v bigint, pad text); \
         CREATE TABLE b (id bigserial PRIMARY KEY, v bigint, pad text); \
         INSERT INTO a (v, pad) SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g; \
         INSERT INTO b (v, pad) SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g;",
    );
    let mut writer = Command::new(src.bin.join("psql"))
        .args(["-XAtq", "-h", "127.0.0.1", "-p", &src.port.to_string()])
        .args(["-U", "postgres", "-d", "busy", "-c"])
        .arg(
            "DO $$ BEGIN FOR i IN 1..100000000 LOOP \
             INSERT INTO a (v) VALUES (i); INSERT INTO b (v) VALUES (i); COMMIT; \
             END LOOP; END $$;",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = src.psql("busy", "SELECT count(*) FROM a");
    wait_until(
        Duration::from_secs(20),
        "the writer's first commits",
        || src.psql("busy", "SELECT count(*) FROM a") != before,
    );
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: pg-snapshot\nstate_dir: state\n\
hosts:\n  oldweb: {{ ssh: \"root@127.0.0.1:{}\", identity_file: \"{}\", known_hosts: \"{}\", agent_dir: \"{}/agent\" }}\n\
databases:\n  - engine: postgres\n    from: {{ host: oldweb, address: 127.0.0.1, port: {}, user: postgres, bin_dir: \"{}\" }}\n    \
to: {{ host: local, address: 127.0.0.1, port: {}, user: postgres, bin_dir: \"{}\" }}\n    names: [busy]\n    split_tables_above: 1B\n",
            sshd.port,
            sshd.client_key.display(),
            sshd.known_hosts.display(),
            work.path().display(),
            src.port,
            src.bin.display(),
            dst.port,
            dst.bin.display(),
        ),
    )
    .unwrap();
    let (code, out) = db_sync(&plan, &[]);
    let _ = writer.kill();
    let _ = writer.wait();
    // Verification ran against a source that kept changing: only the copy is judged here.
    assert!(out.contains("busy"), "{out}");
    assert!(matches!(code, Some(0 | 1)), "{out}");
    let (a, b) = (
        dst.psql("busy", "SELECT count(*) FROM a"),
        dst.psql("busy", "SELECT count(*) FROM b"),
    );
    assert_eq!(
        a, b,
        "the two streams saw different states of the source: {out}"
    );
    assert!(
        a.parse::<u64>().unwrap() > 200_000,
        "{a}: the writer's rows"
    );
    assert_eq!(leftovers(&dst, "busy"), "");
}
