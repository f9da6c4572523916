//! Mail: Maildir trees and IMAP accounts.
pub mod courier;
pub mod courier_pass;
pub mod engine;
pub mod imap;
pub mod imap_move;
pub mod maildir;
pub mod maildir_pass;
