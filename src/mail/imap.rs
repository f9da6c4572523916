//! A small IMAP client: enough to log in, list folders and count messages.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::plan::ImapServer;
use crate::plan::raw::ImapSecurity;
use crate::plan::secret::Secret;

/// An authenticated IMAP session.
pub struct ImapSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
    server: String,
}

/// One folder with its message count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCount {
    pub name: String,
    pub messages: u64,
}

impl ImapSession {
    /// Connects and logs in.
    ///
    /// # Errors
    /// Unreachable server, a refused login (the server's words, never the password), or a
    /// security mode this build does not speak yet.
    pub fn login(
        server: &ImapServer,
        user: &str,
        password: &Secret,
    ) -> Result<ImapSession, String> {
        let addr = format!("{}:{}", server.host, server.port);
        if server.security != ImapSecurity::Plain {
            return Err(format!(
                "{addr}: IMAP over TLS is not supported yet (mail issue); use `security: plain` on loopback only"
            ));
        }
        let stream = TcpStream::connect(&addr)
            .map_err(|e| format!("cannot reach IMAP server {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut session = ImapSession {
            reader: BufReader::new(stream.try_clone().map_err(|e| e.to_string())?),
            writer: stream,
            tag: 0,
            server: addr,
        };
        let greeting = session.line()?;
        if !greeting.starts_with("* OK") && !greeting.starts_with("* PREAUTH") {
            return Err(format!(
                "{}: unexpected greeting `{}`",
                session.server,
                greeting.trim()
            ));
        }
        session
            .command(&format!(
                "LOGIN {} {}",
                quote(user),
                quote(password.expose())
            ))
            .map_err(|e| format!("login of `{user}` refused by {}: {e}", session.server))?;
        Ok(session)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        match self.reader.read_line(&mut l) {
            Ok(0) => Err(format!("{} closed the connection", self.server)),
            Ok(_) => Ok(l),
            Err(e) => Err(format!("{}: {e}", self.server)),
        }
    }

    /// Sends a command and collects its untagged lines; a `NO`/`BAD` is an error with its text.
    fn command(&mut self, cmd: &str) -> Result<Vec<String>, String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .map_err(|e| format!("{}: {e}", self.server))?;
        let mut untagged = Vec::new();
        loop {
            let l = self.line()?;
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                let rest = rest.trim_end();
                return if rest.starts_with("OK") {
                    Ok(untagged)
                } else {
                    Err(rest.to_string())
                };
            }
            untagged.push(l.trim_end().to_string());
        }
    }

    /// Every selectable folder with its message count.
    ///
    /// # Errors
    /// The server refuses LIST or STATUS.
    pub fn folder_counts(&mut self) -> Result<Vec<FolderCount>, String> {
        let listed = self.command("LIST \"\" \"*\"")?;
        let mut out = Vec::new();
        for l in listed {
            if l.contains("\\Noselect") || l.contains("\\NonExistent") {
                continue;
            }
            let Some(name) = list_name(&l) else { continue };
            let status = self.command(&format!("STATUS {} (MESSAGES)", quote(&name)))?;
            let messages = status
                .iter()
                .find_map(|s| {
                    s.split("MESSAGES ").nth(1).and_then(|r| {
                        r.trim_end_matches(')')
                            .split_whitespace()
                            .next()?
                            .trim_end_matches(')')
                            .parse()
                            .ok()
                    })
                })
                .unwrap_or(0);
            out.push(FolderCount { name, messages });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Logs out politely.
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The mailbox name of a `* LIST (...) "sep" name` line.
fn list_name(line: &str) -> Option<String> {
    let after_flags = line.split_once(')')?.1.trim_start();
    let after_sep = if let Some(rest) = after_flags.strip_prefix("NIL") {
        rest
    } else {
        let rest = after_flags.strip_prefix('"')?;
        let end = rest.find('"')?;
        &rest[end + 1..]
    };
    let name = after_sep.trim();
    Some(
        match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => name.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_are_parsed() {
        assert_eq!(
            list_name("* LIST (\\HasNoChildren) \".\" INBOX").as_deref(),
            Some("INBOX")
        );
        assert_eq!(
            list_name("* LIST (\\HasNoChildren) \"/\" \"Sent Items\"").as_deref(),
            Some("Sent Items")
        );
        assert_eq!(
            list_name("* LIST () NIL Archive").as_deref(),
            Some("Archive")
        );
    }
}
