//! Long-lived verification clients, one per server and worker: each script goes to a client
//! already connected (switched to its database in-band) instead of a new process per stage,
//! database and side. Errors come back in the same stream and are traced to the script's
//! lines by the client's own line counter, which counts from the start of the session.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::db::discover::{ScriptOutput, run_script, tool_request};
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::transport::Transport;
use crate::transport::session::Session;

/// Idle clients by server, handed to one script at a time; all closed when the pool goes.
#[derive(Default)]
pub struct SessionPool {
    idle: Mutex<HashMap<String, Vec<Client>>>,
    /// Servers whose client could not start as a session: their scripts take the old path.
    no_sessions: Mutex<HashSet<String>>,
}

/// One client process and where it stands.
struct Client {
    session: Session,
    /// The database it is connected to.
    database: String,
    /// Lines sent so far: the client numbers errors from the start of its input.
    lines: usize,
}

impl SessionPool {
    pub fn new() -> SessionPool {
        SessionPool::default()
    }

    /// Closes every idle client (one in use is closed when given back to an empty pool's
    /// owner, or when the pool goes).
    pub fn clear(&self) {
        let idle: Vec<Client> = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        for c in idle {
            let _ = c.session.close();
        }
    }

    /// Runs `script` (ending with the row `["end", "~session"]`) against `database`: on an
    /// idle client of the server, else a new one; a client that died or lost its place is
    /// dropped and the script run once more on a new one, then by a process of its own
    /// (`run_script`, whose errors are the ones reported). Error lines in the output name
    /// the script's own lines.
    ///
    /// # Errors
    /// As `run_script`.
    pub(super) fn run(
        &self,
        transport: &dyn Transport,
        engine: DbEngine,
        server: &DbServer,
        database: &str,
        script: &str,
    ) -> Result<ScriptOutput, String> {
        let key = format!(
            "{engine:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
            transport.host(),
            server.socket,
            server.address,
            server.port,
            server.user,
            server.bin_dir
        );
        let usable = !database.contains(['\n', '\r', '\0'])
            && !self
                .no_sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key);
        if usable {
            let reused = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&key)
                .and_then(Vec::pop);
            let tries = match reused {
                Some(c) => vec![Some(c), None],
                None => vec![None],
            };
            for client in tries {
                let mut client = match client {
                    Some(c) => c,
                    None => match open(transport, engine, server, database) {
                        Some(c) => c,
                        None => {
                            self.no_sessions
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(key.clone());
                            break;
                        }
                    },
                };
                if let Some(out) = exchange(&mut client, engine, database, script) {
                    self.idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(key)
                        .or_default()
                        .push(client);
                    return Ok(out);
                }
                // Dropped: its input closes and it exits.
            }
        }
        run_script(transport, engine, server, database, script)
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A client connected to `database`, reading scripts on stdin, errors merged into its output;
/// `None` when it cannot start.
fn open(
    transport: &dyn Transport,
    engine: DbEngine,
    server: &DbServer,
    database: &str,
) -> Option<Client> {
    let (program, args) = crate::db::discover::script_client(engine, database, true);
    let req = tool_request(engine, server, program, &args).ok()?;
    let session = Session::open_merged(transport, &req).ok()?;
    Some(Client {
        session,
        database: database.to_string(),
        lines: 0,
    })
}

/// `dbname='…'` as libpq reads it.
fn conninfo(database: &str) -> String {
    crate::db::discover::pg_conninfo(database)
}

/// The line that moves a client to `database`: psql's `\c` keeping host, port and user (its
/// argument single-quoted for psql, holding a conninfo), or the mariadb client's `use`
/// (backquoted; the client itself unescapes doubled quotes and backslashes).
fn switch_line(engine: DbEngine, database: &str) -> String {
    match engine {
        DbEngine::Postgres => format!(
            "\\c -reuse-previous=on '{}'",
            conninfo(database).replace('\\', "\\\\").replace('\'', "''")
        ),
        _ => format!(
            "USE `{}`;",
            database.replace('\\', "\\\\").replace('`', "``")
        ),
    }
}

/// An error line of the client and the input line it names: `psql:<stdin>:N: …`,
/// `ERROR 1146 (42S02) at line N: …`; `None` for any other line.
fn error_line(line: &str) -> Option<(usize, &str, &str)> {
    if let Some(rest) = line.strip_prefix("psql:<stdin>:") {
        let (n, msg) = rest.split_once(':')?;
        return Some((n.parse().ok()?, "", msg));
    }
    if line.starts_with("ERROR ") {
        let (head, rest) = line.split_once(" at line ")?;
        let (n, msg) = rest.split_once(':')?;
        return Some((n.trim().parse().ok()?, head, msg));
    }
    None
}

/// Feeds `script` to `client` and reads its answer up to the script's last row. Error
/// lines are renumbered from the script's first line. `None`: the client died, could not
/// switch database, or the script's last statement failed (the session did not get through).
fn exchange(
    client: &mut Client,
    engine: DbEngine,
    database: &str,
    script: &str,
) -> Option<ScriptOutput> {
    let mut input = String::new();
    let mut switch = None;
    if client.database != database {
        input.push_str(&switch_line(engine, database));
        input.push('\n');
        switch = Some(client.lines + 1);
    }
    let offset = client.lines + usize::from(switch.is_some());
    let last = offset + script.lines().count();
    input.push_str(script);
    // The scripts' transactions end here, so an idle client holds no snapshot nor lock.
    let epilogue = match engine {
        DbEngine::Postgres => "ROLLBACK;\nDISCARD ALL;\n",
        _ => "ROLLBACK;\n",
    };
    input.push_str(epilogue);
    client.lines = last + epilogue.lines().count();
    client.database = database.to_string();
    client.session.send(&input).ok()?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let mut switched = true;
    // mariadb --force prints a failed statement between dashed lines before its error.
    let mut echo = false;
    let mut after_echo = false;
    loop {
        let line = client.session.read_line().ok()??;
        if engine != DbEngine::Postgres {
            if line == "--------------" {
                echo = !echo;
                after_echo = !echo;
                continue;
            }
            if echo || (after_echo && line.is_empty()) {
                after_echo = false;
                continue;
            }
            after_echo = false;
        }
        if let Some((n, head, msg)) = error_line(&line) {
            if Some(n) == switch {
                switched = false;
            }
            if n > offset && n <= last {
                let rel = n - offset;
                if engine == DbEngine::Postgres {
                    stderr.push_str(&format!("psql:<stdin>:{rel}:{msg}\n"));
                } else {
                    stderr.push_str(&format!("{head} at line {rel}:{msg}\n"));
                }
            }
            if n >= last {
                return None;
            }
            continue;
        }
        if line.starts_with('[') {
            if let Ok(row) = serde_json::from_str::<Vec<serde_json::Value>>(&line)
                && row.len() == 2
                && row[0] == "end"
                && row[1] == "~session"
            {
                stdout.push_str(&line);
                stdout.push('\n');
                return switched.then_some(ScriptOutput { stdout, stderr });
            }
            stdout.push_str(&line);
            stdout.push('\n');
        } else if engine == DbEngine::Postgres {
            // The rest of a psql error (`LINE 1: …`, its caret, a DETAIL).
            stderr.push_str(&line);
            stderr.push('\n');
        } else {
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_quoted_for_each_client() {
        assert_eq!(
            switch_line(DbEngine::Postgres, "b'x\\y"),
            "\\c -reuse-previous=on 'dbname=''b\\\\''x\\\\\\\\y'''"
        );
        assert_eq!(switch_line(DbEngine::Mariadb, "a`b\\c"), "USE `a``b\\\\c`;");
    }

    #[test]
    fn error_lines_name_their_input_line() {
        assert_eq!(
            error_line("psql:<stdin>:12: ERROR:  relation \"t\" does not exist"),
            Some((12, "", " ERROR:  relation \"t\" does not exist"))
        );
        assert_eq!(
            error_line("ERROR 1146 (42S02) at line 7: Table 'd.t' doesn't exist"),
            Some((7, "ERROR 1146 (42S02)", " Table 'd.t' doesn't exist"))
        );
        assert_eq!(error_line("GRANT USAGE ON *.* TO `u`@`%`"), None);
    }
}
