//! Databases: talking to MariaDB/MySQL and PostgreSQL through their own client tools on the host.
pub mod discover;
pub mod engine;
mod mariadb;
pub mod pg_replication;
pub mod plan;
mod postgres;
pub mod replication;
pub mod transfer;
pub mod verify;

use crate::plan::raw::DbEngine;

/// A string as an SQL literal: quotes doubled, backslashes escaped (MariaDB's default mode; a
/// PostgreSQL name holding a backslash would need the `E''` form, not handled yet).
pub(crate) fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// An identifier quoted for the engine (`name` for MariaDB/MySQL, "name" for PostgreSQL).
pub(crate) fn ident(engine: DbEngine, s: &str) -> String {
    match engine {
        DbEngine::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
        _ => format!("`{}`", s.replace('`', "``")),
    }
}

/// What kind of failure a client tool's message reports, read from the server's error codes
/// (MariaDB's numbers, SQLSTATE class 28) and the client's connection messages: a refused
/// login is `authentication`, a server that did not answer `unreachable`, a database or tool
/// that does not exist `missing`, a secret that cannot be read `invalid`; anything else `io`.
pub fn failure_kind(message: &str) -> crate::unit::ErrorKind {
    use crate::unit::ErrorKind;
    let m = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if any(&[
        "error 1045 ",
        "error 1044 ",
        "error 1698 ",
        "(28000)",
        "password authentication failed",
        "authentication failed for user",
        "no pg_hba.conf entry",
        "peer authentication failed",
        "ident authentication failed",
        "access denied for user",
    ]) || (m.contains("role \"") && m.contains("\" does not exist"))
    {
        return ErrorKind::Authentication;
    }
    // A database held by someone else: a foreign copy, clients that would not leave.
    if any(&["not created by this plan", "client session(s) connected to"]) {
        return ErrorKind::Conflict;
    }
    if any(&[
        "error 1049 ",
        "unknown database",
        "not found on host",
        "does not exist",
    ]) {
        return ErrorKind::Missing;
    }
    if any(&[
        "error 2002 ",
        "error 2003 ",
        "error 2005 ",
        "error 2006 ",
        "error 2013 ",
        "can't connect to",
        "could not connect to server",
        "connection refused",
        "could not translate host name",
        "timeout expired",
        "no route to host",
        "connection to server",
        "is the server running",
    ]) {
        return ErrorKind::Unreachable;
    }
    if any(&["environment variable `", "secret file `"]) {
        return ErrorKind::Invalid;
    }
    ErrorKind::Io
}

#[cfg(test)]
mod tests {
    use super::failure_kind;
    use crate::unit::ErrorKind;

    #[test]
    fn client_messages_are_sorted_by_kind() {
        let cases = [
            (
                "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)",
                ErrorKind::Authentication,
            ),
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"app\"",
                ErrorKind::Authentication,
            ),
            (
                "psql: error: connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  role \"ghost\" does not exist",
                ErrorKind::Authentication,
            ),
            (
                "ERROR 2002 (HY000): Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)",
                ErrorKind::Unreachable,
            ),
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5433 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
                ErrorKind::Unreachable,
            ),
            (
                "ERROR 1049 (42000): Unknown database 'shop'",
                ErrorKind::Missing,
            ),
            (
                "database `shop` on host `old`: does not exist",
                ErrorKind::Missing,
            ),
            (
                "database `shop` on host `new`: exists and was not created by this plan (conflict: fail); set `conflict: replace` or `skip`",
                ErrorKind::Conflict,
            ),
            (
                "database `shop` on host `newdb`: 1 client session(s) connected to `shop` at the target (pid 7 app from 10.0.0.2) did not leave within 30s (`connected_clients: wait`, timeout 30s)",
                ErrorKind::Conflict,
            ),
            (
                "psql: error: connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: FATAL:  database \"shop\" does not exist",
                ErrorKind::Missing,
            ),
            (
                "`mariadb` not found on host `db` (looked in the host's PATH); install the server's client tools there or set `bin_dir`",
                ErrorKind::Missing,
            ),
            (
                "environment variable `DB_PASSWORD` is not set",
                ErrorKind::Invalid,
            ),
            (
                "ERROR 1064 (42000): You have an error in your SQL syntax",
                ErrorKind::Io,
            ),
        ];
        for (message, kind) in cases {
            assert_eq!(failure_kind(message), kind, "{message}");
        }
    }
}
