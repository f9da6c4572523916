//! Reads a Maildir tree's listing as mailboxes, folders and messages.

use std::collections::BTreeMap;

use crate::tree::{EntryKind, ScanSummary};

/// One mailbox (a `Maildir` with its `.Folder` subfolders) found in a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Path of the mailbox relative to the tree's root.
    pub path: String,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Unique parts of message file names (before `:2,`), to match messages across renames.
    pub unique_names: Vec<String>,
}

/// The unique part of a Maildir file name: `1700000000.M1P2.host,S=123:2,RS` → `1700000000.M1P2.host,S=123`.
pub fn unique_part(file_name: &str) -> &str {
    file_name.split_once(":2,").map_or(file_name, |(u, _)| u)
}

/// Groups a scanned tree into mailboxes. A message is a file in a `cur/` or `new/` directory;
/// its mailbox is the directory holding that `cur`/`new`, or its parent for `.Folder`s.
pub fn mailboxes(scan: &ScanSummary) -> Vec<MailboxStats> {
    let mut boxes: BTreeMap<String, (MailboxStats, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for e in &scan.entries {
        let path = String::from_utf8_lossy(&e.path);
        let parts: Vec<&str> = path.split('/').collect();
        let (is_message, folder_end) = match e.kind {
            // Message file names never start with a dot; `.keep` and the like are not mail.
            EntryKind::File
                if parts.len() >= 2
                    && matches!(parts[parts.len() - 2], "cur" | "new")
                    && !parts[parts.len() - 1].starts_with('.') =>
            {
                (true, parts.len() - 2)
            }
            EntryKind::Dir if matches!(parts.last(), Some(&"cur")) => (false, parts.len() - 1),
            _ => continue,
        };
        let folder = &parts[..folder_end];
        let (mailbox, folder_name) = match folder.last() {
            Some(f) if f.starts_with('.') => {
                (folder[..folder.len() - 1].join("/"), (*f).to_string())
            }
            _ => (folder.join("/"), "INBOX".to_string()),
        };
        let (stats, folders) = boxes.entry(mailbox.clone()).or_insert_with(|| {
            (
                MailboxStats {
                    path: mailbox,
                    ..Default::default()
                },
                Default::default(),
            )
        });
        folders.insert(folder_name);
        if is_message {
            stats.messages += 1;
            stats.bytes += e.size;
            stats
                .unique_names
                .push(unique_part(parts[parts.len() - 1]).to_string());
        }
    }
    boxes
        .into_values()
        .map(|(mut s, folders)| {
            s.folders = folders.len() as u64;
            s.unique_names.sort();
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_messages_by_mailbox_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "example.org/alice/Maildir/cur",
            "example.org/alice/Maildir/new",
            "example.org/alice/Maildir/tmp",
            "example.org/alice/Maildir/.Sent/cur",
            "example.org/bob/Maildir/cur",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(
            r.join("example.org/alice/Maildir/cur/1.M1.h,S=5:2,S"),
            b"hello",
        )
        .unwrap();
        std::fs::write(r.join("example.org/alice/Maildir/new/2.M2.h,S=3"), b"abc").unwrap();
        std::fs::write(
            r.join("example.org/alice/Maildir/.Sent/cur/3.M3.h:2,RS"),
            b"x",
        )
        .unwrap();
        std::fs::write(
            r.join("example.org/alice/Maildir/dovecot-uidlist"),
            b"3 V1 N4",
        )
        .unwrap();
        let boxes = mailboxes(&crate::tree::scan(r, &[]).unwrap());
        assert_eq!(boxes.len(), 2);
        assert_eq!(
            (
                boxes[0].path.as_str(),
                boxes[0].folders,
                boxes[0].messages,
                boxes[0].bytes
            ),
            ("example.org/alice/Maildir", 2, 3, 9)
        );
        assert_eq!(
            boxes[0].unique_names,
            vec!["1.M1.h,S=5", "2.M2.h,S=3", "3.M3.h"]
        );
        assert_eq!((boxes[1].messages, boxes[1].folders), (0, 1));
    }
}
