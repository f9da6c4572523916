//! Databases: talking to MariaDB/MySQL and PostgreSQL through their own client tools on the host.
pub mod discover;
pub mod engine;
mod mariadb;
pub mod plan;
mod postgres;
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
