//! Mail: Maildir trees and IMAP accounts.
pub mod imap;
pub mod maildir;
