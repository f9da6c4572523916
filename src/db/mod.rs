//! Databases: talking to MariaDB/MySQL and PostgreSQL through their own client tools on the host.
pub mod discover;
pub mod transfer;
pub mod verify;
