//! Lists the databases of a server, with sizes, through `mariadb -NB` or `psql -XAt` on its host.

use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::transport::{ExecRequest, Transport};

/// One database as its server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    pub name: String,
    pub bytes: u64,
    pub tables: Option<u64>,
    /// Character set (MariaDB) or encoding (PostgreSQL).
    pub charset: Option<String>,
    /// Default collation (MariaDB) or `datcollate` (PostgreSQL).
    pub collation: Option<String>,
    /// Storage engines of the tables (MariaDB), sorted.
    pub engines: Vec<String>,
    /// Accounts that reach the database: for MariaDB/MySQL those a move carries (grantees at
    /// every level, members and proxies of them, definers, the roles they hold: `'user'@'host'`,
    /// `'role'`), PostgreSQL owner and roles granted on the database.
    pub users: Vec<String>,
}

const MYSQL_LIST: &str = "SELECT s.schema_name, COALESCE(SUM(t.data_length + t.index_length), 0), COUNT(t.table_name), \
s.default_character_set_name, s.default_collation_name, COALESCE(GROUP_CONCAT(DISTINCT t.engine ORDER BY t.engine), '') \
FROM information_schema.schemata s LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name \
WHERE s.schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
GROUP BY s.schema_name ORDER BY s.schema_name";

const PG_LIST: &str = "SELECT datname, pg_database_size(datname), '', pg_encoding_to_char(encoding), datcollate, '', \
concat_ws(',', VARIADIC ARRAY(SELECT DISTINCT r FROM (SELECT pg_get_userbyid(datdba) AS r UNION \
SELECT pg_get_userbyid(a.grantee) FROM aclexplode(datacl) a WHERE a.grantee <> 0) g ORDER BY r)) \
FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY datname";

/// A tool of the engine (`mariadb`, `mariadb-dump`, `psql`, `pg_dump`, `pg_restore`) with the
/// server's connection options first; the password goes in the environment, never in `args`.
///
/// # Errors
/// A password reference that cannot be resolved.
pub fn tool_request(
    engine: DbEngine,
    server: &DbServer,
    program: &str,
    args: &[String],
) -> Result<ExecRequest, String> {
    let mut all = Vec::new();
    match engine {
        DbEngine::Mysql | DbEngine::Mariadb => {
            if let Some(s) = &server.socket {
                all.push(format!("--socket={s}"));
            }
            if let Some(a) = &server.address {
                all.push(format!("--host={a}"));
            }
            if let Some(p) = server.port {
                all.push(format!("--port={p}"));
                if server.address.is_none() && server.socket.is_none() {
                    all.push("--host=127.0.0.1".into());
                }
            }
            if let Some(u) = &server.user {
                all.push(format!("--user={u}"));
            }
        }
        DbEngine::Postgres => {
            if let Some(h) = server.socket.as_ref().or(server.address.as_ref()) {
                all.push(format!("--host={h}"));
            }
            if let Some(p) = server.port {
                all.push(format!("--port={p}"));
            }
            if let Some(u) = &server.user {
                all.push(format!("--username={u}"));
            }
        }
    }
    all.extend(args.iter().cloned());
    let program = match &server.bin_dir {
        Some(dir) if !program.contains('/') => format!("{}/{program}", dir.trim_end_matches('/')),
        _ => program.to_string(),
    };
    let mut req = ExecRequest::new(&program, all);
    if engine == DbEngine::Postgres {
        req = req.env("PGCONNECT_TIMEOUT", "10");
    }
    if let Some(secret) = &server.password {
        let value = secret.resolve()?;
        let var = if engine == DbEngine::Postgres {
            "PGPASSWORD"
        } else {
            "MYSQL_PWD"
        };
        req = req.env(var, value.expose());
    }
    Ok(req)
}

/// The name of `program` that runs on the host: MariaDB's tools go by their MySQL names
/// (`mysqldump`, `mysql`) on older hosts.
///
/// # Errors
/// Neither name runs: the error names the tool, the host and where it looked.
pub fn find_tool(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
    program: &str,
) -> Result<String, String> {
    let mut names = vec![program.to_string()];
    if engine != DbEngine::Postgres && program.starts_with("mariadb") {
        names.push(program.replace("mariadb", "mysql"));
    }
    for name in &names {
        let req = tool_request(engine, server, name, &[])?;
        let probe = ExecRequest::new(&req.program, vec!["--version".to_string()]);
        if transport.exec(&probe).map(|o| o.success()).unwrap_or(false) {
            return Ok(name.clone());
        }
    }
    Err(missing_tool(program, transport.host(), server))
}

/// Why a tool did not run, and what to do about it.
fn missing_tool(program: &str, host: &str, server: &DbServer) -> String {
    let program = program.rsplit('/').next().unwrap_or(program);
    match &server.bin_dir {
        Some(dir) => format!(
            "`{program}` not found on host `{host}` (looked in `{dir}`); install the server's client tools there or fix `bin_dir`"
        ),
        None => format!(
            "`{program}` not found on host `{host}` (looked in the host's PATH); install the server's client tools there or set `bin_dir`"
        ),
    }
}

/// The client command that runs `sql` against `server`; the password goes in the environment.
///
/// # Errors
/// A password reference that cannot be resolved.
pub fn client_request(
    engine: DbEngine,
    server: &DbServer,
    database: Option<&str>,
    sql: &str,
) -> Result<ExecRequest, String> {
    match engine {
        DbEngine::Mysql | DbEngine::Mariadb => {
            let mut args = vec!["-NB".to_string(), "-e".into(), sql.into()];
            if let Some(db) = database {
                args.push(db.into());
            }
            tool_request(engine, server, "mariadb", &args)
        }
        DbEngine::Postgres => {
            let args = ["-XAt", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
                .iter()
                .map(|a| a.to_string())
                .chain([format!("--dbname={}", database.unwrap_or("postgres"))])
                // `query_many` separates statements with NUL, which SQL text never holds.
                .chain(
                    sql.split('\0')
                        .flat_map(|s| ["-c".to_string(), s.to_string()]),
                )
                .collect::<Vec<_>>();
            tool_request(engine, server, "psql", &args)
        }
    }
}

/// Runs several statements in one client process (one round trip over the transport) and
/// returns the rows of all of them, in order; each statement should tag its rows.
///
/// # Errors
/// As `query`.
pub fn query_many(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
    database: Option<&str>,
    statements: &[String],
) -> Result<Vec<Vec<String>>, String> {
    match engine {
        // psql prints the result of every `-c`; one `-c` with several statements shows the last.
        DbEngine::Postgres => {
            let Some((first, rest)) = statements.split_first() else {
                return Ok(Vec::new());
            };
            let mut sql = first.clone();
            for s in rest {
                sql.push('\u{0}');
                sql.push_str(s);
            }
            query(transport, engine, server, database, &sql)
        }
        _ => query(transport, engine, server, database, &statements.join(";\n")),
    }
}

/// Runs `sql` and returns the rows as tab-separated fields.
///
/// # Errors
/// The client cannot run, or the server refused (its message included, never the password).
pub fn query(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
    database: Option<&str>,
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    let mut req = client_request(engine, server, database, sql)?;
    let mut out = transport.exec(&req).map_err(|e| e.to_string())?;
    if out.code.is_none() && matches!(engine, DbEngine::Mysql | DbEngine::Mariadb) {
        // Older hosts ship only the `mysql` name of the client.
        req.program = req.program.replace("mariadb", "mysql");
        out = transport.exec(&req).map_err(|e| e.to_string())?;
    }
    if !out.success() {
        let tool = &req.program;
        return Err(match out.code {
            None => missing_tool(tool, transport.host(), server),
            Some(_) => format!(
                "`{tool}` on host `{}`: {}",
                transport.host(),
                out.stderr_text()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// What one client session printed: its rows (stdout) and its errors (stderr), for the caller
/// to attribute; a statement that failed does not stop the ones after it.
#[derive(Debug, Default)]
pub struct ScriptOutput {
    pub stdout: String,
    pub stderr: String,
}

/// The client that reads a script on stdin, and its arguments: errors carry their script line
/// (`psql:<stdin>:N:`, `at line N`), a failing statement does not stop the rest. `unbuffered`
/// makes the mariadb client flush after every statement (a reader waiting for its rows).
pub fn script_client(
    engine: DbEngine,
    database: &str,
    unbuffered: bool,
) -> (&'static str, Vec<String>) {
    match engine {
        DbEngine::Postgres => (
            "psql",
            [
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=0",
                "-v",
                "ON_ERROR_ROLLBACK=on",
                "-f",
                "-",
            ]
            .iter()
            .map(|a| a.to_string())
            // A conninfo string: a database name holding `=` is still a name.
            .chain([format!("--dbname={}", pg_conninfo(database))])
            .collect(),
        ),
        _ => (
            "mariadb",
            ["-N", "-B", "-r"]
                .iter()
                .chain(unbuffered.then_some(&"-n"))
                .chain(&["--force", "--default-character-set=utf8mb4"])
                .map(|a| a.to_string())
                .chain([database.to_string()])
                .collect(),
        ),
    }
}

/// `dbname='<name>'`, quoted for libpq.
pub fn pg_conninfo(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// Runs `script` (statements separated by `;` and newlines) in ONE client session, fed on
/// stdin (no argument length limit, one connection, one round trip over the transport).
/// Errors do not stop the session (psql `ON_ERROR_STOP=0` with `ON_ERROR_ROLLBACK`, so a
/// failed statement inside a transaction leaves it usable; mariadb `--force`); output is raw
/// (`-At` / `-NBr`): statements should print one self-delimiting field per row (JSON).
///
/// # Errors
/// The client cannot run at all (missing tool, unreachable host).
pub fn run_script(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
    database: &str,
    script: &str,
) -> Result<ScriptOutput, String> {
    let (program, args) = script_client(engine, database, false);
    let mut req = tool_request(engine, server, program, &args)?;
    req.stdin = script.as_bytes().to_vec();
    let mut out = transport.exec(&req).map_err(|e| e.to_string())?;
    if out.code.is_none() && engine != DbEngine::Postgres {
        // Older hosts ship only the `mysql` name of the client.
        req.program = req.program.replace("mariadb", "mysql");
        out = transport.exec(&req).map_err(|e| e.to_string())?;
    }
    if out.code.is_none() {
        return Err(missing_tool(&req.program, transport.host(), server));
    }
    Ok(ScriptOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: out.stderr_text(),
    })
}

/// Every user database of the server.
///
/// # Errors
/// As `query`.
pub fn list_databases(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
) -> Result<Vec<DbInfo>, String> {
    let sql = if engine == DbEngine::Postgres {
        PG_LIST
    } else {
        MYSQL_LIST
    };
    let rows = query(transport, engine, server, None, sql)?;
    let field = |r: &[String], i: usize| r.get(i).filter(|v| !v.is_empty()).cloned();
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut found: Vec<DbInfo> = rows
        .into_iter()
        .filter_map(|r| {
            Some(DbInfo {
                name: r.first()?.clone(),
                bytes: r.get(1).and_then(|b| b.parse().ok()).unwrap_or(0),
                tables: r.get(2).and_then(|t| t.parse().ok()),
                charset: field(&r, 3),
                collation: field(&r, 4),
                engines: list(field(&r, 5)),
                users: list(field(&r, 6)),
            })
        })
        .collect();
    if engine != DbEngine::Postgres {
        // The accounts a move would carry: every grant level, roles, proxies, definers. An
        // account that may not read the grant tables lists none (a move would say why).
        let names: Vec<String> = found.iter().map(|d| d.name.clone()).collect();
        let end = super::transfer::Endpoint { transport, server };
        if let Ok(mut by_db) = super::mariadb::accounts_by_database(&end, engine, &names) {
            for d in &mut found {
                d.users = by_db.remove(&d.name).unwrap_or_default();
            }
        }
    }
    Ok(found)
}

/// The ownership mark of every database of the server (as `transfer::comment` reads it: the
/// comment, or PostgreSQL's `transhumance.plan` setting), by name: what `db::plan::decide`
/// reads to tell our own earlier copies from someone else's databases.
///
/// # Errors
/// As `query`.
pub fn database_comments(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
) -> Result<std::collections::HashMap<String, String>, String> {
    // A `=` in front, so an empty comment is still a field.
    let sql = if engine == DbEngine::Postgres {
        format!(
            "SELECT datname, '=' || {} FROM pg_database d WHERE NOT datistemplate",
            super::postgres::mark_sql()
        )
    } else {
        "SELECT schema_name, CONCAT('=', COALESCE(schema_comment, '')) FROM information_schema.schemata".into()
    };
    Ok(query(transport, engine, server, None, &sql)?
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [name, comment, ..] => {
                Some((name.clone(), comment.trim_start_matches('=').to_string()))
            }
            [name] => Some((name.clone(), String::new())),
            _ => None,
        })
        .collect())
}

/// Accounts that exist on every server already and never move with a database.
pub fn is_admin_account(account: &str) -> bool {
    [
        "'root'@",
        "'mariadb.sys'@",
        "'mysql.sys'@",
        "'mysql.session'@",
    ]
    .iter()
    .any(|p| account.starts_with(p))
}

/// Tables of a PostgreSQL database (ordinary and partitioned), which `pg_database` cannot say.
///
/// # Errors
/// As `query`.
pub fn postgres_table_count(
    transport: &dyn Transport,
    server: &DbServer,
    database: &str,
) -> Result<u64, String> {
    let rows = query(
        transport,
        DbEngine::Postgres,
        server,
        Some(database),
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%'",
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Whether `name` is selected by the rule's `names` (empty = all) and not by `exclude`.
pub fn selected(name: &str, names: &[String], exclude: &[String]) -> bool {
    let matches = |pats: &[String]| {
        pats.iter().any(|p| {
            globset::Glob::new(p)
                .map(|g| g.compile_matcher().is_match(name))
                .unwrap_or(false)
        })
    };
    (names.is_empty() || matches(names)) && !matches(exclude)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::secret::SecretRef;

    #[test]
    fn selection_by_patterns() {
        assert!(selected("site_a", &["site_*".into()], &[]));
        assert!(!selected("other", &["site_*".into()], &[]));
        assert!(!selected("site_tmp", &["site_*".into()], &["*_tmp".into()]));
        assert!(selected("x", &[], &[]));
    }

    #[test]
    fn passwords_never_reach_the_command_line() {
        // SAFETY: test-only variable with a unique name, read back in this thread.
        unsafe { std::env::set_var("TRANSHUMANCE_TEST_DB_PW", "s3cret") };
        let server = DbServer {
            host: "local".into(),
            socket: None,
            address: None,
            port: Some(3306),
            user: Some("root".into()),
            password: Some(SecretRef::Env("TRANSHUMANCE_TEST_DB_PW".into())),
            bin_dir: None,
        };
        let req = client_request(DbEngine::Mariadb, &server, None, "SELECT 1").unwrap();
        assert!(!req.args.iter().any(|a| a.contains("s3cret")));
        assert!(
            req.env
                .iter()
                .any(|(k, v)| k == "MYSQL_PWD" && v == "s3cret")
        );
        assert!(!format!("{req:?}").contains("s3cret"));
    }
}
