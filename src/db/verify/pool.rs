//! Long-lived verification clients, one per server and worker: each script goes to a client
//! already connected (switched to its database in-band) instead of a new process per stage,
//! database and side. Errors come back in the same stream and are traced to the script's
//! lines by the client's own line counter, which counts from the start of the session.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::db::discover::{ScriptOutput, run_script, tool_request};
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::transport::Transport;
use crate::transport::session::Session;

use super::session::Script;

/// Idle clients by server, handed to one script at a time; all closed when the pool goes.
#[derive(Default)]
pub struct SessionPool {
    idle: Mutex<HashMap<String, Vec<Client>>>,
    /// Servers whose client could not start as a session: their scripts take the old path.
    no_sessions: Mutex<HashSet<String>>,
    /// A snapshot held on one server: that server's scripts for its database run in it.
    held: Option<Arc<Held>>,
}

/// A transaction held open on one server and database since `Snapshot::take`: scripts run in
/// it read the database as it was then, whatever was written since. MariaDB cannot hand a
/// snapshot to another session (PostgreSQL could, with `pg_export_snapshot`), so the very
/// client that took it runs them, one at a time, for both engines alike.
pub struct Snapshot {
    held: Arc<Held>,
}

struct Held {
    key: String,
    host: String,
    database: String,
    engine: DbEngine,
    /// `None` once the client died: nothing may then read the database in its place.
    client: Mutex<Option<Client>>,
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

    /// A pool whose scripts for the server and database of `snapshot` run inside it; never on
    /// another client (a client that reads the database as it is now would race new writes).
    pub fn within(snapshot: &Snapshot) -> SessionPool {
        SessionPool {
            idle: Mutex::default(),
            no_sessions: Mutex::default(),
            held: Some(snapshot.held.clone()),
        }
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
        let key = server_key(transport, engine, server);
        if let Some(h) = &self.held
            && h.key == key
            && h.database == database
        {
            return h.run(script);
        }
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
                if let Some(out) = exchange(&mut client, engine, database, script, true) {
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

/// What tells one server (and the account we reach it as) from another.
fn server_key(transport: &dyn Transport, engine: DbEngine, server: &DbServer) -> String {
    format!(
        "{engine:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        transport.host(),
        server.socket,
        server.address,
        server.port,
        server.user,
        server.bin_dir
    )
}

impl Snapshot {
    /// Opens a client on `database` and a read-only repeatable-read transaction in it whose
    /// snapshot is taken now (MariaDB `START TRANSACTION WITH CONSISTENT SNAPSHOT`, PostgreSQL
    /// `BEGIN ISOLATION LEVEL REPEATABLE READ` and a first query), held until dropped.
    ///
    /// # Errors
    /// The client could not start, or the server did not confirm the transaction.
    pub fn take(
        transport: &dyn Transport,
        engine: DbEngine,
        server: &DbServer,
        database: &str,
    ) -> Result<Snapshot, String> {
        let whence = format!("host `{}`, database `{database}`", transport.host());
        if database.contains(['\n', '\r', '\0']) {
            return Err(format!("{whence}: a name no client session can hold"));
        }
        let mut client = open(transport, engine, server, database)
            .ok_or_else(|| format!("{whence}: no client session could start"))?;
        let mut script = Script::new(engine);
        for p in super::sql::pins(engine) {
            script.plain(p);
        }
        let (check, want) = match engine {
            DbEngine::Postgres => (
                "SELECT json_build_array('held', current_setting('transaction_isolation'))",
                "repeatable read",
            ),
            _ => ("SELECT JSON_ARRAY('held', @@in_transaction)", "1"),
        };
        script.tagged("held", check);
        let out = exchange(&mut client, engine, database, &script.text(), false)
            .ok_or_else(|| format!("{whence}: the session ended before its snapshot was taken"))?;
        let ran = super::session::parse(&out.stdout, &out.stderr, &script);
        let held = ran
            .rows("held")
            .and_then(|mut r| r.next().map(|row| super::session::field(row, 1)));
        if held.as_deref() != Some(want) {
            let _ = client.session.close();
            return Err(format!(
                "{whence}: the transaction could not be held ({})",
                held.unwrap_or_else(|| ran.why("held"))
            ));
        }
        Ok(Snapshot {
            held: Arc::new(Held {
                key: server_key(transport, engine, server),
                host: transport.host().to_string(),
                database: database.to_string(),
                engine,
                client: Mutex::new(Some(client)),
            }),
        })
    }
}

impl Held {
    /// Runs `script` inside the held transaction (its own `BEGIN` left out: it would end it).
    fn run(&self, script: &str) -> Result<ScriptOutput, String> {
        let begin = super::sql::begin(self.engine);
        let text: String = script
            .lines()
            .map(|l| {
                if l == begin {
                    "-- (in the held snapshot)"
                } else {
                    l
                }
            })
            .fold(String::new(), |mut s, l| {
                s.push_str(l);
                s.push('\n');
                s
            });
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let lost = || {
            format!(
                "host `{}`, database `{}`: the snapshot held since the freeze was lost (its session ended): the rows cannot be read as they were then",
                self.host, self.database
            )
        };
        let client = slot.as_mut().ok_or_else(lost)?;
        match exchange(client, self.engine, &self.database, &text, false) {
            Some(out) => Ok(out),
            None => {
                *slot = None;
                Err(lost())
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let slot = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = slot.take() {
            let _ = c.session.send("ROLLBACK;\n");
            let _ = c.session.close();
        }
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
/// `end`: the script's transaction is ended after it (not for a held snapshot).
fn exchange(
    client: &mut Client,
    engine: DbEngine,
    database: &str,
    script: &str,
    end: bool,
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
        _ if !end => "",
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
