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
}

const MYSQL_LIST: &str = "SELECT s.schema_name, COALESCE(SUM(t.data_length + t.index_length), 0), COUNT(t.table_name) \
FROM information_schema.schemata s LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name \
WHERE s.schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
GROUP BY s.schema_name ORDER BY s.schema_name";

const PG_LIST: &str = "SELECT datname, pg_database_size(datname) FROM pg_database \
WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY datname";

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
    let mut req = ExecRequest::new(program, all);
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
                .chain([
                    format!("--dbname={}", database.unwrap_or("postgres")),
                    "-c".into(),
                    sql.into(),
                ])
                .collect::<Vec<_>>();
            tool_request(engine, server, "psql", &args)
        }
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
        req.program = "mysql".into();
        out = transport.exec(&req).map_err(|e| e.to_string())?;
    }
    if !out.success() {
        let tool = &req.program;
        return Err(match out.code {
            None => format!(
                "`{tool}` could not run on host `{}`: {}",
                transport.host(),
                out.stderr_text()
            ),
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
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let name = r.first()?.clone();
            Some(DbInfo {
                name,
                bytes: r.get(1).and_then(|b| b.parse().ok()).unwrap_or(0),
                tables: r.get(2).and_then(|t| t.parse().ok()),
            })
        })
        .collect())
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
