//! An IMAP client on blocking sockets: TLS (IMAPS or STARTTLS, certificates checked by rustls),
//! literals both ways and pipelined APPENDs; what moving and verifying mailboxes needs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::plan::ImapServer;
use crate::plan::raw::ImapSecurity;
use crate::plan::secret::Secret;

const READ_CHUNK: usize = 64 * 1024;

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A parsed piece of a server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Atom(String),
    /// A quoted string or a literal.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Nil,
}

impl Value {
    fn text(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.clone()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// One response line with its literals, parsed.
#[derive(Debug, Clone)]
struct Response {
    /// The line's text with literals left out (enough to read status words).
    text: String,
    values: Vec<Value>,
}

/// A message as listed by `summaries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    pub uid: u32,
    pub flags: Vec<String>,
    /// INTERNALDATE as the server wrote it, e.g. `17-Jul-1996 02:44:25 -0700`.
    pub internal_date: String,
    /// INTERNALDATE in seconds since the epoch (UTC), for comparisons across servers.
    pub date_epoch: i64,
    pub size: u64,
    pub message_id: Option<String>,
}

/// A folder from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    pub separator: Option<char>,
    pub attributes: Vec<String>,
}

impl ListEntry {
    /// Whether the folder can hold messages.
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
}

/// One folder with its message count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCount {
    pub name: String,
    pub messages: u64,
}

/// A message to append: flags, INTERNALDATE and the raw RFC 822 bytes.
pub struct Append<'a> {
    pub flags: &'a [String],
    pub internal_date: &'a str,
    pub body: &'a [u8],
}

/// An authenticated IMAP session.
pub struct ImapSession {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    tag: u32,
    server: String,
    /// Capabilities, upper case.
    caps: Vec<String>,
}

/// The TLS settings for a server: its CA file, or the public web roots.
fn tls_config(server: &ImapServer) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &server.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file `{}`: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("CA file `{}`: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file `{}`: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file `{}` holds no certificate", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn wrap_tls(server: &ImapServer, tcp: TcpStream, addr: &str) -> Result<Stream, String> {
    let name = rustls::pki_types::ServerName::try_from(server.host.clone())
        .map_err(|e| format!("{addr}: `{}` is not a valid TLS name: {e}", server.host))?;
    let conn = rustls::ClientConnection::new(tls_config(server)?, name)
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Handshake now, so a bad certificate is reported as such and not as a read error later.
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("{addr}: TLS handshake failed: {e}"))?;
    }
    Ok(Stream::Tls(Box::new(tls)))
}

impl ImapSession {
    /// Connects (TLS as the plan says) and logs in.
    ///
    /// # Errors
    /// Unreachable server, a certificate that does not check out, a refused login (the
    /// server's words, never the password).
    pub fn login(
        server: &ImapServer,
        user: &str,
        password: &Secret,
    ) -> Result<ImapSession, String> {
        let addr = format!("{}:{}", server.host, server.port);
        let tcp = TcpStream::connect(&addr)
            .map_err(|e| format!("cannot reach IMAP server {addr}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let stream = match server.security {
            ImapSecurity::Tls => {
                wrap_tls(server, tcp.try_clone().map_err(|e| e.to_string())?, &addr)?
            }
            ImapSecurity::Starttls | ImapSecurity::Plain => Stream::Plain(tcp),
        };
        let mut session = ImapSession {
            stream,
            buf: Vec::new(),
            pos: 0,
            tag: 0,
            server: addr,
            caps: Vec::new(),
        };
        let greeting = session.response()?;
        if !greeting.text.starts_with("* OK") && !greeting.text.starts_with("* PREAUTH") {
            return Err(format!(
                "{}: unexpected greeting `{}`",
                session.server,
                greeting.text.trim()
            ));
        }
        if server.security == ImapSecurity::Starttls {
            session
                .command("STARTTLS")
                .map_err(|e| format!("{}: STARTTLS refused: {e}", session.server))?;
            let tcp = match &session.stream {
                Stream::Plain(tcp) => tcp.try_clone().map_err(|e| e.to_string())?,
                Stream::Tls(_) => unreachable!("STARTTLS starts from a plain stream"),
            };
            if session.pos < session.buf.len() {
                return Err(format!(
                    "{}: data after STARTTLS before the handshake (refused)",
                    session.server
                ));
            }
            session.stream = wrap_tls(server, tcp, &session.server)?;
        }
        session.refresh_capabilities()?;
        if session.has("LOGINDISABLED") {
            return Err(format!(
                "{}: the server refuses LOGIN on this connection (LOGINDISABLED)",
                session.server
            ));
        }
        session
            .command(&format!(
                "LOGIN {} {}",
                quote(user),
                quote(password.expose())
            ))
            .map_err(|e| format!("login of `{user}` refused by {}: {e}", session.server))?;
        // Servers often announce more once logged in (LITERAL+, MULTIAPPEND, NAMESPACE).
        session.refresh_capabilities()?;
        Ok(session)
    }

    /// The server's `host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    fn refresh_capabilities(&mut self) -> Result<(), String> {
        let lines = self.command("CAPABILITY")?;
        self.caps = lines
            .iter()
            .filter(|r| r.text.starts_with("* CAPABILITY"))
            .flat_map(|r| {
                r.text
                    .split_whitespace()
                    .skip(2)
                    .map(str::to_uppercase)
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(())
    }

    fn fill(&mut self) -> Result<(), String> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(format!("{}: {e}", self.server));
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            return Err(format!("{} closed the connection", self.server));
        }
        Ok(())
    }

    /// One line without its CRLF.
    fn line(&mut self) -> Result<Vec<u8>, String> {
        // Bytes after `pos` already searched; `fill` may move the buffer, never `pos`'s data.
        let mut searched = 0;
        loop {
            let from = self.pos + searched;
            if let Some(i) = self.buf[from..].iter().position(|b| *b == b'\n') {
                let end = from + i;
                let mut line = self.buf[self.pos..end].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.pos = end + 1;
                return Ok(line);
            }
            searched = self.buf.len() - self.pos;
            self.fill()?;
        }
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() - self.pos < n {
            self.fill()?;
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    /// A whole response: a line, plus the literals it announces and the lines that follow them.
    fn response(&mut self) -> Result<Response, String> {
        let mut text = Vec::new();
        let mut literals = Vec::new();
        let mut raw = Vec::new();
        loop {
            let line = self.line()?;
            match literal_len(&line) {
                Some((n, start)) => {
                    text.extend_from_slice(&line[..start]);
                    raw.extend_from_slice(&line);
                    literals.push(self.take(n)?);
                }
                None => {
                    text.extend_from_slice(&line);
                    raw.extend_from_slice(&line);
                    break;
                }
            }
        }
        let values = parse_values(&raw, &mut literals.into_iter());
        Ok(Response {
            text: String::from_utf8_lossy(&text).into_owned(),
            values,
        })
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("t{}", self.tag)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("{}: {e}", self.server))
    }

    /// Reads until the tagged reply of `tag`; a `NO`/`BAD` is an error with the server's text.
    fn finish(&mut self, tag: &str) -> Result<Vec<Response>, String> {
        let mut untagged = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let r = self.response()?;
            if let Some(rest) = r.text.strip_prefix(&prefix) {
                return if rest.starts_with("OK") {
                    Ok(untagged)
                } else {
                    Err(rest.trim_end().to_string())
                };
            }
            if r.text.starts_with("* BYE") {
                return Err(format!("{} ended the session: {}", self.server, r.text));
            }
            untagged.push(r);
        }
    }

    /// Sends a command and collects its untagged responses.
    fn command(&mut self, cmd: &str) -> Result<Vec<Response>, String> {
        let tag = self.next_tag();
        self.send(format!("{tag} {cmd}\r\n").as_bytes())?;
        self.finish(&tag)
    }

    /// The personal namespace: (prefix, separator), such as `("INBOX.", '.')` or `("", '/')`.
    ///
    /// # Errors
    /// The server refuses NAMESPACE and LIST.
    pub fn namespace(&mut self) -> Result<(String, Option<char>), String> {
        if self.has("NAMESPACE") {
            let lines = self.command("NAMESPACE")?;
            for r in &lines {
                if let [
                    Value::Atom(star),
                    Value::Atom(kw),
                    Value::List(personal),
                    ..,
                ] = r.values.as_slice()
                    && star == "*"
                    && kw.eq_ignore_ascii_case("NAMESPACE")
                    && let Some(Value::List(first)) = personal.first()
                {
                    let prefix = first.first().and_then(Value::text).unwrap_or_default();
                    let sep = first
                        .get(1)
                        .and_then(Value::text)
                        .and_then(|s| s.chars().next());
                    return Ok((prefix, sep));
                }
            }
        }
        let lines = self.command("LIST \"\" \"\"")?;
        let sep = lines.iter().find_map(list_entry).and_then(|e| e.separator);
        Ok((String::new(), sep))
    }

    /// Prefixes of the other users' and shared namespaces (`NAMESPACE`'s second and third
    /// lists): folders under them are not this account's own mail.
    ///
    /// # Errors
    /// The server refuses NAMESPACE.
    pub fn other_namespaces(&mut self) -> Result<Vec<String>, String> {
        if !self.has("NAMESPACE") {
            return Ok(Vec::new());
        }
        let lines = self.command("NAMESPACE")?;
        Ok(lines
            .iter()
            .filter(|r| r.text.starts_with("* NAMESPACE"))
            .flat_map(|r| foreign_prefixes(&r.values))
            .collect())
    }

    /// Every folder (`LIST "" "*"`), or the subscribed ones (`LSUB`).
    ///
    /// # Errors
    /// The server refuses the command.
    pub fn list(&mut self, subscribed: bool) -> Result<Vec<ListEntry>, String> {
        let verb = if subscribed { "LSUB" } else { "LIST" };
        let lines = self.command(&format!("{verb} \"\" \"*\""))?;
        let mut out: Vec<ListEntry> = lines.iter().filter_map(list_entry).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens a folder read-only (`EXAMINE`: flags never change, not even `\Recent`) or
    /// read-write; answers its message count.
    ///
    /// # Errors
    /// The folder does not exist or cannot be opened.
    pub fn open(&mut self, folder: &str, writable: bool) -> Result<u64, String> {
        let verb = if writable { "SELECT" } else { "EXAMINE" };
        let lines = self.command(&format!("{verb} {}", quote(folder)))?;
        Ok(lines
            .iter()
            .find_map(|r| {
                let mut w = r.text.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("*"), Some(n), Some(kw)) if kw.eq_ignore_ascii_case("EXISTS") => {
                        n.parse().ok()
                    }
                    _ => None,
                }
            })
            .unwrap_or(0))
    }

    /// Leaves the open folder without expunging anything (`UNSELECT`; without it, nothing).
    ///
    /// # Errors
    /// The server refuses.
    pub fn close_folder(&mut self) -> Result<(), String> {
        if self.has("UNSELECT") {
            self.command("UNSELECT")?;
        }
        Ok(())
    }

    /// UIDVALIDITY and the message count of a folder, without opening it.
    ///
    /// # Errors
    /// The folder does not exist.
    pub fn status(&mut self, folder: &str) -> Result<(u64, u64), String> {
        let lines = self.command(&format!("STATUS {} (MESSAGES UIDVALIDITY)", quote(folder)))?;
        let mut messages = 0;
        let mut validity = 0;
        for r in &lines {
            if let Some(Value::List(items)) = r.values.last() {
                for pair in items.chunks(2) {
                    if let [Value::Atom(k), Value::Atom(v)] = pair {
                        match k.to_ascii_uppercase().as_str() {
                            "MESSAGES" => messages = v.parse().unwrap_or(0),
                            "UIDVALIDITY" => validity = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok((messages, validity))
    }

    /// Every message of the open folder: UID, flags, internal date, size and, when asked
    /// (the server then reads each message's header), Message-ID.
    ///
    /// # Errors
    /// The server refuses the FETCH.
    pub fn summaries(&mut self, with_message_id: bool) -> Result<Vec<MessageSummary>, String> {
        let lines = self.command(if with_message_id {
            "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
        } else {
            "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)"
        })?;
        let mut out = Vec::new();
        for r in &lines {
            let Some(items) = fetch_items(r) else {
                continue;
            };
            let mut m = MessageSummary {
                uid: 0,
                flags: Vec::new(),
                internal_date: String::new(),
                date_epoch: 0,
                size: 0,
                message_id: None,
            };
            for pair in items.chunks(2) {
                let [Value::Atom(key), value] = pair else {
                    continue;
                };
                match key.to_ascii_uppercase().as_str() {
                    "UID" => m.uid = value.text().and_then(|v| v.parse().ok()).unwrap_or(0),
                    "FLAGS" => {
                        if let Value::List(flags) = value {
                            m.flags = flags.iter().filter_map(Value::text).collect();
                        }
                    }
                    "INTERNALDATE" => {
                        m.internal_date = value.text().unwrap_or_default();
                        m.date_epoch = parse_internal_date(&m.internal_date).unwrap_or(0);
                    }
                    "RFC822.SIZE" => {
                        m.size = value.text().and_then(|v| v.parse().ok()).unwrap_or(0)
                    }
                    k if k.starts_with("BODY[") => {
                        if let Value::Bytes(b) = value {
                            m.message_id = header_value(b, "message-id");
                        }
                    }
                    _ => {}
                }
            }
            if m.uid != 0 {
                out.push(m);
            }
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// The raw bytes of messages of the open folder, by UID (messages gone meanwhile are absent).
    ///
    /// # Errors
    /// The server refuses the FETCH.
    pub fn bodies(&mut self, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>, String> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let lines = self.command(&format!("UID FETCH {set} (UID BODY.PEEK[])"))?;
        let mut out = Vec::new();
        for r in lines {
            let Some(items) = fetch_items(&r) else {
                continue;
            };
            let mut uid = None;
            let mut body = None;
            for pair in items.chunks(2) {
                match pair {
                    [Value::Atom(k), v] if k.eq_ignore_ascii_case("UID") => {
                        uid = v.text().and_then(|t| t.parse().ok())
                    }
                    [Value::Atom(k), Value::Bytes(b)] if k.eq_ignore_ascii_case("BODY[]") => {
                        body = Some(b.clone())
                    }
                    _ => {}
                }
            }
            if let (Some(u), Some(b)) = (uid, body) {
                out.push((u, b));
            }
        }
        Ok(out)
    }

    /// Creates a folder; one that exists already is fine.
    ///
    /// # Errors
    /// The server refuses the name (its words).
    pub fn create(&mut self, folder: &str) -> Result<(), String> {
        match self.command(&format!("CREATE {}", quote(folder))) {
            Ok(_) => Ok(()),
            Err(e) if e.to_ascii_uppercase().contains("[ALREADYEXISTS]") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Subscribes to a folder.
    ///
    /// # Errors
    /// The server refuses.
    pub fn subscribe(&mut self, folder: &str) -> Result<(), String> {
        self.command(&format!("SUBSCRIBE {}", quote(folder)))
            .map(|_| ())
    }

    /// Appends messages to `folder`: all in one MULTIAPPEND transaction when the server offers
    /// it (one commit at the server instead of one per message); when that is refused, or
    /// without MULTIAPPEND, one APPEND each, pipelined with LITERAL+. One result per message.
    ///
    /// # Errors
    /// The connection fails (a refused message is an `Err` inside the list).
    pub fn append_many(
        &mut self,
        folder: &str,
        messages: &[Append<'_>],
    ) -> Result<Vec<Result<(), String>>, String> {
        if messages.len() > 1 && self.has("MULTIAPPEND") && self.has("LITERAL+") {
            let tag = self.next_tag();
            let mut bytes = format!("{tag} APPEND {}", quote(folder)).into_bytes();
            for m in messages {
                bytes.extend_from_slice(
                    format!(
                        " ({}) {} {{{}+}}\r\n",
                        append_flags(m.flags),
                        quote(m.internal_date),
                        m.body.len()
                    )
                    .as_bytes(),
                );
                bytes.extend_from_slice(m.body);
            }
            bytes.extend_from_slice(b"\r\n");
            self.send(&bytes)?;
            // All or nothing: a refusal (one message too large, a quota) is retried one by one
            // below, so every message gets its own verdict.
            if self.finish(&tag).is_ok() {
                return Ok(messages.iter().map(|_| Ok(())).collect());
            }
        }
        self.append_each(folder, messages)
    }

    fn append_each(
        &mut self,
        folder: &str,
        messages: &[Append<'_>],
    ) -> Result<Vec<Result<(), String>>, String> {
        let pipelined = self.has("LITERAL+");
        let mut tags = Vec::with_capacity(messages.len());
        let mut results = Vec::with_capacity(messages.len());
        for m in messages {
            let tag = self.next_tag();
            let flags = append_flags(m.flags);
            let head = format!(
                "{tag} APPEND {} ({flags}) {} {{{}{}}}\r\n",
                quote(folder),
                quote(m.internal_date),
                m.body.len(),
                if pipelined { "+" } else { "" }
            );
            if pipelined {
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(m.body);
                bytes.extend_from_slice(b"\r\n");
                self.stream
                    .write_all(&bytes)
                    .map_err(|e| format!("{}: {e}", self.server))?;
                tags.push(tag);
            } else {
                self.send(head.as_bytes())?;
                // Wait for the go-ahead; a tagged NO here refuses the message before its bytes.
                let go = loop {
                    let r = self.response()?;
                    if r.text.starts_with('+') {
                        break Ok(());
                    }
                    if let Some(rest) = r.text.strip_prefix(&format!("{tag} ")) {
                        break Err(rest.trim_end().to_string());
                    }
                };
                match go {
                    Ok(()) => {
                        let mut bytes = m.body.to_vec();
                        bytes.extend_from_slice(b"\r\n");
                        self.send(&bytes)?;
                        results.push(self.finish(&tag).map(|_| ()));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
        }
        if pipelined {
            self.stream
                .flush()
                .map_err(|e| format!("{}: {e}", self.server))?;
            for tag in tags {
                results.push(self.finish(&tag).map(|_| ()));
            }
        }
        Ok(results)
    }

    /// Sets the flags of messages of the open (writable) folder: (UID, flags) pairs, pipelined.
    ///
    /// # Errors
    /// The connection fails or the server refuses a change.
    pub fn set_flags(&mut self, changes: &[(u32, Vec<String>)]) -> Result<(), String> {
        let mut tags = Vec::new();
        let mut bytes = Vec::new();
        for (uid, flags) in changes {
            let tag = self.next_tag();
            let flags = append_flags(flags);
            bytes.extend_from_slice(
                format!("{tag} UID STORE {uid} FLAGS.SILENT ({flags})\r\n").as_bytes(),
            );
            tags.push(tag);
        }
        self.send(&bytes)?;
        let mut first_error = None;
        for tag in tags {
            if let Err(e) = self.finish(&tag) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Every selectable folder with its message count.
    ///
    /// # Errors
    /// The server refuses LIST or STATUS.
    pub fn folder_counts(&mut self) -> Result<Vec<FolderCount>, String> {
        let mut out = Vec::new();
        for entry in self.list(false)? {
            if !entry.selectable() {
                continue;
            }
            let (messages, _) = self.status(&entry.name)?;
            out.push(FolderCount {
                name: entry.name,
                messages,
            });
        }
        Ok(out)
    }

    /// Whether the session still answers (`NOOP`), after a command failed.
    pub fn alive(&mut self) -> bool {
        self.command("NOOP").is_ok()
    }

    /// Logs out politely.
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

/// Flags as APPEND and STORE take them (`\Recent` is the server's own, never set by a client).
fn append_flags(flags: &[String]) -> String {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A quoted string; names and passwords with CR, LF or NUL cannot be quoted (IMAP forbids them).
fn quote(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `{123}` or `{123+}` ending a line: the literal's length and where the marker starts.
fn literal_len(line: &[u8]) -> Option<(usize, usize)> {
    if line.last() != Some(&b'}') {
        return None;
    }
    let start = line.iter().rposition(|b| *b == b'{')?;
    let digits = std::str::from_utf8(&line[start + 1..line.len() - 1]).ok()?;
    let n = digits.trim_end_matches('+').parse().ok()?;
    Some((n, start))
}

/// The list of a `* n FETCH (...)` response.
fn fetch_items(r: &Response) -> Option<&Vec<Value>> {
    match r.values.as_slice() {
        [
            Value::Atom(star),
            Value::Atom(_),
            Value::Atom(kw),
            Value::List(items),
            ..,
        ] if star == "*" && kw.eq_ignore_ascii_case("FETCH") => Some(items),
        _ => None,
    }
}

/// The non-empty prefixes of the other users' and shared namespaces of a NAMESPACE response.
fn foreign_prefixes(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .skip(3)
        .take(2)
        .filter_map(|v| match v {
            Value::List(spaces) => Some(spaces),
            _ => None,
        })
        .flatten()
        .filter_map(|space| match space {
            Value::List(parts) => parts.first().and_then(Value::text),
            _ => None,
        })
        .filter(|prefix| !prefix.is_empty())
        .collect()
}

/// A `* LIST (attrs) "sep" name` response (or LSUB).
fn list_entry(r: &Response) -> Option<ListEntry> {
    match r.values.as_slice() {
        [
            Value::Atom(star),
            Value::Atom(kw),
            Value::List(attrs),
            sep,
            name,
        ] if star == "*"
            && (kw.eq_ignore_ascii_case("LIST") || kw.eq_ignore_ascii_case("LSUB")) =>
        {
            Some(ListEntry {
                name: name.text()?,
                separator: sep.text().and_then(|s| s.chars().next()),
                attributes: attrs.iter().filter_map(Value::text).collect(),
            })
        }
        _ => None,
    }
}

/// Parses a response into values; `{n}` markers take the next literal.
fn parse_values(raw: &[u8], literals: &mut impl Iterator<Item = Vec<u8>>) -> Vec<Value> {
    let mut pos = 0;
    let mut stack: Vec<Vec<Value>> = vec![Vec::new()];
    while pos < raw.len() {
        let c = raw[pos];
        match c {
            b' ' => pos += 1,
            b'(' => {
                stack.push(Vec::new());
                pos += 1;
            }
            b')' => {
                pos += 1;
                if stack.len() > 1 {
                    let done = stack.pop().unwrap_or_default();
                    stack
                        .last_mut()
                        .expect("outer list")
                        .push(Value::List(done));
                }
            }
            b'"' => {
                let mut s = Vec::new();
                pos += 1;
                while pos < raw.len() && raw[pos] != b'"' {
                    if raw[pos] == b'\\' && pos + 1 < raw.len() {
                        pos += 1;
                    }
                    s.push(raw[pos]);
                    pos += 1;
                }
                pos += 1;
                stack.last_mut().expect("a list").push(Value::Bytes(s));
            }
            b'{' if literal_len(
                &raw[..raw[pos..]
                    .iter()
                    .position(|b| *b == b'}')
                    .map_or(raw.len(), |i| pos + i + 1)],
            )
            .is_some() =>
            {
                let end = raw[pos..]
                    .iter()
                    .position(|b| *b == b'}')
                    .map_or(raw.len(), |i| pos + i + 1);
                pos = end;
                stack
                    .last_mut()
                    .expect("a list")
                    .push(Value::Bytes(literals.next().unwrap_or_default()));
            }
            _ => {
                let start = pos;
                let mut depth = 0;
                while pos < raw.len() {
                    match raw[pos] {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        b' ' | b'(' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    pos += 1;
                }
                let atom = String::from_utf8_lossy(&raw[start..pos]).into_owned();
                let v = if atom.eq_ignore_ascii_case("NIL") {
                    Value::Nil
                } else {
                    Value::Atom(atom)
                };
                stack.last_mut().expect("a list").push(v);
            }
        }
    }
    while stack.len() > 1 {
        let done = stack.pop().unwrap_or_default();
        stack
            .last_mut()
            .expect("outer list")
            .push(Value::List(done));
    }
    stack.pop().unwrap_or_default()
}

/// The value of a header field (unfolded, trimmed) from a header block.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut found: Option<String> = None;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if let Some(v) = found.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_string());
        }
    }
    found
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `17-Jul-1996 02:44:25 -0700` → seconds since the epoch (UTC).
pub fn parse_internal_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let mut d = date.trim().split('-');
    let day: i64 = d.next()?.trim().parse().ok()?;
    let month_name = d.next()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(month_name))? as i64
        + 1;
    let year: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (h, m, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let z: i64 = zone.trim_start_matches(['+', '-']).parse().ok()?;
    let offset = sign * ((z / 100) * 3600 + (z % 100) * 60);
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str, literals: &[&[u8]]) -> Vec<Value> {
        parse_values(line.as_bytes(), &mut literals.iter().map(|l| l.to_vec()))
    }

    #[test]
    fn list_lines_are_parsed() {
        let r = |t: &str| Response {
            text: t.into(),
            values: parse(t, &[]),
        };
        let e = list_entry(&r("* LIST (\\HasNoChildren) \".\" INBOX")).unwrap();
        assert_eq!((e.name.as_str(), e.separator), ("INBOX", Some('.')));
        let e = list_entry(&r("* LIST (\\HasNoChildren) \"/\" \"Sent Items\"")).unwrap();
        assert_eq!(e.name, "Sent Items");
        let e = list_entry(&r("* LIST (\\Noselect) NIL Archive")).unwrap();
        assert_eq!(
            (e.name.as_str(), e.separator, e.selectable()),
            ("Archive", None, false)
        );
    }

    #[test]
    fn fetch_responses_with_literals_are_parsed() {
        let v = parse(
            "* 3 FETCH (UID 7 FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 44 BODY[HEADER.FIELDS (MESSAGE-ID)] {30})",
            &[b"Message-ID:\r\n <a@b>\r\n\r\n"],
        );
        let r = Response {
            text: String::new(),
            values: v,
        };
        let items = fetch_items(&r).unwrap();
        assert_eq!(items[0], Value::Atom("UID".into()));
        assert_eq!(
            items[8],
            Value::Atom("BODY[HEADER.FIELDS (MESSAGE-ID)]".into())
        );
        let Value::Bytes(h) = &items[9] else { panic!() };
        assert_eq!(header_value(h, "message-id").as_deref(), Some("<a@b>"));
    }

    #[test]
    fn shared_and_other_users_namespaces_are_found() {
        let v = parse(
            "* NAMESPACE ((\"\" \"/\")) ((\"Users/\" \"/\")) ((\"Shared/\" \"/\") (\"Public/\" \"/\"))",
            &[],
        );
        assert_eq!(foreign_prefixes(&v), vec!["Users/", "Shared/", "Public/"]);
        let v = parse("* NAMESPACE ((\"\" \".\")) NIL NIL", &[]);
        assert!(foreign_prefixes(&v).is_empty());
    }

    #[test]
    fn internal_dates_become_utc_seconds() {
        assert_eq!(parse_internal_date("01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_internal_date("17-Jul-1996 02:44:25 -0700"),
            parse_internal_date(" 17-Jul-1996 09:44:25 +0000")
        );
        assert_eq!(
            parse_internal_date("24-Nov-2026 01:00:00 +0000"),
            Some(1795482000)
        );
        assert_eq!(parse_internal_date("garbage"), None);
    }

    #[test]
    fn literal_markers_are_recognized() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}"), Some((12, 18)));
        assert_eq!(literal_len(b"a {5+}"), Some((5, 2)));
        assert_eq!(literal_len(b"* OK {not}"), None);
    }
}
