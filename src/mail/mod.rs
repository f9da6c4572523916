//! Mail: Maildir trees and IMAP accounts.
pub mod engine;
pub mod imap;
pub mod imap_move;
pub mod maildir;
pub mod maildir_pass;
