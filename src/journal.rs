//! Durable append-only storage for the record of every side effect. It knows no entry type:
//! the lifecycle owns those. Two stores keep it (`Store`): JSON lines in a file on this machine
//! (the embedded default: a run lock, group commit, torn-tail repair) and a PostgreSQL table
//! shared by several controllers (`postgres`: leases with fencing tokens instead of one lock).
//!
//! Written *before* a change (intent) and after it (outcome), so a crash at any instant leaves
//! enough to finish or undo. With the file, one run per plan at a time (a lock file): its holder
//! writes who it is into it (PID, host, command, start), so a refused run can name it.

pub mod postgres;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a journal can hold: any entry type that serializes to one JSON line and back.
pub trait Record: Serialize + DeserializeOwned + Clone {}
impl<T: Serialize + DeserializeOwned + Clone> Record for T {}

/// Where a line is in its store, increasing in the store's order: its byte offset in the file,
/// its number in PostgreSQL. Readers keep these, not entries, and read entries back by them.
pub type Pos = u64;

/// What a store's readers are handed: each line with its position; an `Err` is the line's
/// parse error, which the store reports with where the line is.
pub type Visit<'v> = dyn FnMut(Pos, &str) -> Result<(), String> + 'v;

/// An open journal: its store, and where the entries it has not seen yet begin. It keeps no
/// entry: a 50,000-site journal is read back from the store, never held.
pub struct Journal<E> {
    store: Box<dyn Store>,
    /// The position after the last entry read from or written to the store.
    next: Pos,
    _entries: std::marker::PhantomData<fn() -> E>,
}

/// Where a journal's lines are kept. Lines are JSON, each about one unit or none (`unit`, which
/// a shared store checks against the writer's lease before it accepts the line).
pub trait Store: Send {
    /// Writes `lines` after every line already in the store. Returns the lines others wrote
    /// at or after `next` and before these (with their positions, in order), the positions of
    /// these, the position after them, and a ticket for `Syncer::sync_to`.
    ///
    /// # Errors
    /// Nothing was written: I/O, the store unreachable, or a unit's lease no longer ours.
    fn append(&mut self, next: Pos, lines: &[Line<'_>]) -> Result<Appended, JournalError>;

    /// Visits the lines at positions `from..until`, in order, one at a time, and returns the
    /// position after the last one visited. A torn last line of a file is not visited.
    ///
    /// # Errors
    /// The store cannot be read, or a line (not the file's last) is corrupt.
    fn read_range(
        &mut self,
        from: Pos,
        until: Pos,
        visit: &mut Visit<'_>,
    ) -> Result<Pos, JournalError>;

    /// Visits the lines at positions `at` (ascending), in that order.
    ///
    /// # Errors
    /// The store cannot be read, or a line is corrupt or missing.
    fn read_at(&mut self, at: &[Pos], visit: &mut Visit<'_>) -> Result<(), JournalError>;

    /// Makes written lines durable (a no-op where a write is durable when it returns).
    fn syncer(&self) -> Syncer;

    /// The leases of a shared store (none for the file: its lock covers every unit).
    fn leases(&self) -> Option<postgres::Leases> {
        None
    }

    /// Where the journal is, for messages.
    fn describe(&self) -> String;
}

/// One line to append and the unit it is about.
pub struct Line<'a> {
    pub json: String,
    pub unit: Option<&'a str>,
}

/// What an append returns: see `Store::append`.
pub struct Appended {
    pub others: Vec<(Pos, String)>,
    pub ours: Vec<Pos>,
    pub next: Pos,
    pub ticket: u64,
}

/// What a write returns: the ticket for `Syncer::sync_to`, where the written entries are, and
/// the entries others wrote before them that this journal had not seen (to index them).
#[derive(Debug)]
pub struct Written<E> {
    pub ticket: u64,
    pub ours: Vec<Pos>,
    pub others: Vec<(Pos, E)>,
}

/// The embedded store: `journal.jsonl` in the state directory, under the plan's run lock.
struct FileStore {
    path: PathBuf,
    file: File,
    /// The same file, opened for reading entries back.
    reader: File,
    /// The file's length: where the next line goes.
    end: u64,
    lock: File,
    syncer: Syncer,
}

/// Makes written entries durable, one fsync for every entry written so far: threads that wait
/// for their entry while another thread syncs find it already on disk (group commit).
#[derive(Clone)]
pub struct Syncer {
    /// `None` for a store whose writes are durable when they return.
    file: Option<std::sync::Arc<File>>,
    path: PathBuf,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    synced: std::sync::Arc<std::sync::Mutex<u64>>,
}

impl Syncer {
    /// The syncer of a store whose writes are durable when they return.
    pub fn durable() -> Syncer {
        Syncer {
            file: None,
            path: PathBuf::new(),
            written: Default::default(),
            synced: Default::default(),
        }
    }

    /// Returns once entry number `seq` (from `Journal::write`) is on disk.
    ///
    /// # Errors
    /// fsync failed: the entry may not be durable, the caller must not act on it.
    pub fn sync_to(&self, seq: u64) -> Result<(), JournalError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= seq {
            return Ok(());
        }
        let upto = self.written.load(std::sync::atomic::Ordering::Acquire);
        file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        *synced = upto;
        Ok(())
    }
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state directory `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", locked_message(path, holder.as_ref()))]
    Locked {
        path: PathBuf,
        /// Who the lock file says holds it, when it says (and whether that process runs).
        holder: Option<(LockHolder, Liveness)>,
    },
    #[error("journal `{}` {at}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        /// Where the line is (`line 12`, `at 40`).
        at: String,
        message: String,
    },
    /// The shared store cannot be reached or refused a statement.
    #[error("journal {store}: {message}")]
    Store { store: String, message: String },
    /// TLS to the shared store failed: the server refuses it where the settings require it,
    /// or its certificate does not pass the check they ask for (`sslmode`, `sslrootcert`).
    #[error("journal: PostgreSQL server `{host}`: {reason}")]
    Tls { host: String, reason: String },
    /// The store's settings cannot be used (its password cannot be read, its address does not
    /// parse): invalid input.
    #[error("journal: {0}")]
    Invalid(String),
    /// This process no longer holds the lease of `unit` (it expired and another controller took
    /// it, or it was never taken): the entry was refused, and nothing more may change the unit.
    #[error("{}", lease_lost_message(unit, holder.as_deref()))]
    LeaseLost {
        unit: String,
        /// Who holds it now, when someone does.
        holder: Option<String>,
    },
    /// Another controller runs a different command on the plan's shared work queue.
    #[error("{0}")]
    Busy(String),
}

fn lease_lost_message(unit: &str, holder: Option<&str>) -> String {
    match holder {
        Some(h) => format!(
            "the lease on `{unit}` was lost (held now by {h}): this run no longer changes it"
        ),
        None => format!("this run holds no lease on `{unit}`: it does not change it"),
    }
}

/// Who holds a plan's run lock, as the holder wrote it into the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// The command's verbs (`cutover`, `db sync`), never its other arguments.
    pub command: String,
    /// RFC 3339, UTC.
    pub started: String,
}

/// Whether a recorded holder still runs, as far as this host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its PID runs on this host.
    Running,
    /// Its PID runs on no process of this host: the lock is held by another process.
    Gone,
    /// It ran on another host (a shared state directory): not checkable from here.
    ElsewhereUnknown,
}

/// What this process is doing, recorded in the lock as its holder's command.
static COMMAND: OnceLock<String> = OnceLock::new();

/// Names this process's command for the lock record (its verbs, such as `cutover` or
/// `db sync`; never arguments, which may name secrets' files or hosts). Set once, by the CLI.
pub fn set_command(verbs: &str) {
    let _ = COMMAND.set(verbs.to_string());
}

impl LockHolder {
    /// This process.
    pub fn this_process() -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: host_name(),
            // A program using the library names itself, unless it said what it does.
            command: COMMAND.get().cloned().unwrap_or_else(|| {
                std::env::args_os()
                    .next()
                    .map(std::path::PathBuf::from)
                    .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "unknown".into())
            }),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn to_text(&self) -> String {
        format!(
            "pid: {}\nhost: {}\ncommand: {}\nstarted: {}\n",
            self.pid, self.host, self.command, self.started
        )
    }

    /// Reads a lock file's record; `None` when it holds none (an older version, a run that
    /// ended cleanly, or one that is still writing it).
    fn parse(text: &str) -> Option<LockHolder> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
                .map(str::to_string)
        };
        Some(LockHolder {
            pid: field("pid")?.parse().ok()?,
            host: field("host")?,
            command: field("command")?,
            started: field("started")?,
        })
    }

    /// Whether this holder still runs, checked only on its own host.
    pub fn liveness(&self) -> Liveness {
        if self.host != host_name() {
            return Liveness::ElsewhereUnknown;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return Liveness::Gone;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let alive = pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
        if alive {
            Liveness::Running
        } else {
            Liveness::Gone
        }
    }
}

/// This host's name, as `hostname` prints it.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The refusal, naming the holder and what to do.
fn locked_message(path: &Path, holder: Option<&(LockHolder, Liveness)>) -> String {
    let path = path.display();
    match holder {
        None => format!(
            "another transhumance run holds the lock `{path}` (it did not record who it is): wait for it to finish; `fuser -v {path}` names the process"
        ),
        Some((h, Liveness::Running)) => format!(
            "another transhumance run holds the lock `{path}`: PID {} on {} (`{}`, started {}): wait for it to finish",
            h.pid, h.host, h.command, h.started
        ),
        Some((h, Liveness::ElsewhereUnknown)) => format!(
            "another transhumance run holds the lock `{path}`: PID {} on host {} (`{}`, started {}), not this host, so it cannot be checked from here: wait for it to finish",
            h.pid, h.host, h.command, h.started
        ),
        Some((h, Liveness::Gone)) => format!(
            "the lock `{path}` is held, but the run recorded in it, PID {} on this host (`{}`, started {}), is no longer running: another process holds the lock; `fuser -v {path}` names it; let it finish or stop it (deleting the lock file would not free it, only let two runs in)",
            h.pid, h.command, h.started
        ),
    }
}

/// Seconds since the epoch, for journal stamps.
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch (entries whose figures need less than a second).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<E: Record> Journal<E> {
    /// Opens (creating) the journal in `state_dir` and takes the run lock. Nothing is read yet
    /// (`catch_up`).
    ///
    /// # Errors
    /// The directory cannot be created, or another run holds the lock.
    pub fn open(state_dir: &Path) -> Result<Journal<E>, JournalError> {
        Journal::over(Box::new(FileStore::open(state_dir)?))
    }

    /// A journal kept by `store`, nothing read yet (`catch_up`).
    ///
    /// # Errors
    /// None yet; kept for stores that check themselves when opened.
    pub fn over(store: Box<dyn Store>) -> Result<Journal<E>, JournalError> {
        Ok(Journal {
            store,
            next: 0,
            _entries: std::marker::PhantomData,
        })
    }

    fn parse(line: &str) -> Result<E, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    /// Hands `visit` every entry not seen yet, in order, one at a time (the first call: every
    /// entry of the store; later ones: what others appended meanwhile, nothing with the file,
    /// whose lock keeps others out). Returns how many came in.
    ///
    /// # Errors
    /// The store cannot be read, or holds a corrupt entry before its last line.
    pub fn catch_up(&mut self, visit: &mut dyn FnMut(Pos, E)) -> Result<usize, JournalError> {
        let mut count = 0;
        self.next = self
            .store
            .read_range(self.next, Pos::MAX, &mut |at, line| {
                visit(at, Self::parse(line)?);
                count += 1;
                Ok(())
            })?;
        Ok(count)
    }

    /// As `catch_up`, collected (what others appended since: a short list).
    ///
    /// # Errors
    /// As `catch_up`.
    pub fn refresh(&mut self) -> Result<Vec<(Pos, E)>, JournalError> {
        let mut out = Vec::new();
        self.catch_up(&mut |at, e| out.push((at, e)))?;
        Ok(out)
    }

    /// Appends an entry and waits until it is durable.
    ///
    /// # Errors
    /// Write or fsync errors: the caller must not make the change then.
    pub fn append(&mut self, entry: &E) -> Result<Written<E>, JournalError> {
        self.append_all(std::slice::from_ref(entry))
    }

    /// Writes an entry without waiting for the disk; its ticket goes to `Syncer::sync_to`,
    /// which must return before the change the entry announces is made.
    ///
    /// # Errors
    /// Write errors.
    pub fn write(&mut self, entry: &E) -> Result<Written<E>, JournalError> {
        self.write_about(entry, None)
    }

    /// As `write`, for an entry about `unit` (a shared store checks this process's lease on it).
    ///
    /// # Errors
    /// Write errors, or the unit's lease is no longer ours.
    pub fn write_about(
        &mut self,
        entry: &E,
        unit: Option<&str>,
    ) -> Result<Written<E>, JournalError> {
        let line = Line {
            json: serde_json::to_string(entry).expect("journal entries serialize"),
            unit,
        };
        self.write_lines(&[line])
    }

    fn write_lines(&mut self, lines: &[Line<'_>]) -> Result<Written<E>, JournalError> {
        let done = self.store.append(self.next, lines)?;
        let mut others = Vec::with_capacity(done.others.len());
        for (at, line) in done.others {
            let entry = Self::parse(&line).map_err(|message| JournalError::Corrupt {
                path: PathBuf::from(self.store.describe()),
                at: format!("at {at}"),
                message,
            })?;
            others.push((at, entry));
        }
        self.next = done.next;
        Ok(Written {
            ticket: done.ticket,
            ours: done.ours,
            others,
        })
    }

    /// The handle that makes written entries durable, usable without this journal's lock.
    pub fn syncer(&self) -> Syncer {
        self.store.syncer()
    }

    /// The leases of a shared store.
    pub fn leases(&self) -> Option<postgres::Leases> {
        self.store.leases()
    }

    /// Appends several entries with one wait for the disk (a batch sent in one update).
    ///
    /// # Errors
    /// As `append`.
    pub fn append_all(&mut self, entries: &[E]) -> Result<Written<E>, JournalError> {
        let lines: Vec<Line<'_>> = entries
            .iter()
            .map(|e| Line {
                json: serde_json::to_string(e).expect("journal entries serialize"),
                unit: None,
            })
            .collect();
        let written = self.write_lines(&lines)?;
        self.store.syncer().sync_to(written.ticket)?;
        Ok(written)
    }

    /// The entries at `at` (ascending positions this journal handed out), in that order.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn read_at(&mut self, at: &[Pos]) -> Result<Vec<E>, JournalError> {
        let mut out = Vec::with_capacity(at.len());
        self.store.read_at(at, &mut |_, line| {
            out.push(Self::parse(line)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Hands `visit` the entries from position `from` up to the last one this journal has
    /// seen, in order, one at a time (readers of the whole journal: reports, status).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn scan(&mut self, from: Pos, visit: &mut dyn FnMut(Pos, E)) -> Result<(), JournalError> {
        let until = self.next;
        self.store.read_range(from, until, &mut |at, line| {
            visit(at, Self::parse(line)?);
            Ok(())
        })?;
        Ok(())
    }

    /// Every entry so far, in order, collected (tests and small journals; readers of a large
    /// one use `scan`). A torn last line (a crash mid-write) is ignored.
    ///
    /// # Errors
    /// Unreadable store, or a corrupt line that is not the last one.
    pub fn entries(&mut self) -> Result<Vec<E>, JournalError> {
        let mut out = Vec::new();
        self.store.read_range(0, Pos::MAX, &mut |_, line| {
            out.push(Self::parse(line)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Where the journal is, for messages.
    pub fn describe(&self) -> String {
        self.store.describe()
    }
}

impl FileStore {
    fn open(state_dir: &Path) -> Result<FileStore, JournalError> {
        let io = |source| JournalError::Io {
            path: state_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let lock_path = state_dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(JournalError::Locked {
                holder: read_holder(&lock_path).map(|h| {
                    let alive = h.liveness();
                    (h, alive)
                }),
                path: lock_path,
            });
        }
        // The kernel releases a flock when its holder dies, so a record found here is from a
        // run that is gone: it is replaced. The record is informative only (no fsync).
        lock.set_len(0).map_err(io)?;
        lock.write_all_at(LockHolder::this_process().to_text().as_bytes(), 0)
            .map_err(io)?;
        let path = state_dir.join("journal.jsonl");
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let reader = File::open(&path).map_err(io)?;
        let end = cut_torn_tail(&file, &reader).map_err(io)?;
        if !existed {
            // The new file's name must survive a crash too.
            File::open(state_dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        let syncer = Syncer {
            file: Some(std::sync::Arc::new(file.try_clone().map_err(io)?)),
            path: path.clone(),
            written: Default::default(),
            synced: Default::default(),
        };
        Ok(FileStore {
            reader,
            path,
            file,
            end,
            lock,
            syncer,
        })
    }
}

impl Store for FileStore {
    fn append(&mut self, _next: Pos, lines: &[Line<'_>]) -> Result<Appended, JournalError> {
        let mut text = String::new();
        let mut ours = Vec::with_capacity(lines.len());
        for l in lines {
            ours.push(self.end + text.len() as u64);
            text.push_str(&l.json);
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.end += text.len() as u64;
        let ticket = self
            .syncer
            .written
            .fetch_add(lines.len() as u64, std::sync::atomic::Ordering::AcqRel)
            + lines.len() as u64;
        Ok(Appended {
            others: Vec::new(),
            ours,
            next: self.end,
            ticket,
        })
    }

    fn read_range(
        &mut self,
        from: Pos,
        until: Pos,
        visit: &mut Visit<'_>,
    ) -> Result<Pos, JournalError> {
        // Only this process writes while it holds the lock: nothing lies past `end`.
        if from >= self.end {
            return Ok(from);
        }
        visit_file(&self.path, &self.reader, from, until.min(self.end), visit)
    }

    fn read_at(&mut self, at: &[Pos], visit: &mut Visit<'_>) -> Result<(), JournalError> {
        let mut buf = Vec::new();
        for &pos in at {
            read_line_at(&self.reader, pos, &mut buf).map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
            let line = std::str::from_utf8(&buf).map_err(|e| e.to_string());
            line.and_then(|l| visit(pos, l))
                .map_err(|message| JournalError::Corrupt {
                    path: self.path.clone(),
                    at: format!("byte {pos}"),
                    message,
                })?;
        }
        Ok(())
    }

    fn syncer(&self) -> Syncer {
        self.syncer.clone()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // Cleared while still held: a record in a free lock then means a run that died.
        let _ = self.lock.set_len(0);
    }
}

/// The holder recorded in a lock file held by another process. Its holder writes the record
/// right after taking the lock: an empty or partial one is read again a few times first.
fn read_holder(lock_path: &Path) -> Option<LockHolder> {
    for _ in 0..5 {
        if let Some(h) = std::fs::read_to_string(lock_path)
            .ok()
            .and_then(|t| LockHolder::parse(&t))
        {
            return Some(h);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// A crash in the middle of a line leaves it without its newline: cut it, so the next entry
/// starts on a line of its own (the torn change never happened as far as we know). Returns
/// the file's length after. Reads back from the end only as far as the last newline.
fn cut_torn_tail(file: &File, reader: &File) -> std::io::Result<u64> {
    let len = reader.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        reader.read_exact_at(part, start)?;
        if end == len && part.last() == Some(&b'\n') {
            return Ok(len);
        }
        if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(keep)
}

/// Reads the line that starts at byte `pos` into `buf` (without its newline).
fn read_line_at(file: &File, pos: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let mut at = pos;
    loop {
        let n = file.read_at(&mut chunk, at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no whole journal line at byte {pos}"),
            ));
        }
        match chunk[..n].iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&chunk[..i]);
                return Ok(());
            }
            None => buf.extend_from_slice(&chunk[..n]),
        }
        at += n as u64;
    }
}

/// Visits the lines of a journal file that start in `from..until`, one at a time, each with
/// its byte offset; blank lines are skipped. The last line is visited only when it is whole
/// JSON: a torn one (a crash mid-write, or a run writing it now) is ignored. Returns the offset
/// after the last line visited.
fn visit_file(
    path: &Path,
    file: &File,
    from: Pos,
    until: Pos,
    visit: &mut Visit<'_>,
) -> Result<Pos, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::with_capacity(256 * 1024, ReadAt { file, at: from });
    // A line is visited once the next one is read: only then is it known not to be the last.
    let mut pending: Option<(Pos, usize, Vec<u8>)> = None;
    let (mut at, mut number, mut next) = (from, 0usize, from);
    let corrupt = |line: usize, pos: Pos, message: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        // Lines are numbered when read from the start; otherwise the offset says where.
        at: if from == 0 {
            format!("line {line}")
        } else {
            format!("byte {pos}")
        },
        message,
    };
    let mut take = |line: (Pos, usize, Vec<u8>), last: bool, next: &mut Pos| {
        let (pos, number, bytes) = line;
        let end = pos + bytes.len() as u64;
        let whole = bytes.ends_with(b"\n");
        let mut text = &bytes[..];
        while let [rest @ .., b'\n' | b'\r'] = text {
            text = rest;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return if last {
                Ok(())
            } else {
                Err(corrupt(number, pos, "not UTF-8".into()))
            };
        };
        if text.trim().is_empty() {
            *next = end;
            return Ok(());
        }
        if last && (!whole || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()) {
            return Ok(());
        }
        visit(pos, text).map_err(|m| corrupt(number, pos, m))?;
        *next = end;
        Ok(())
    };
    loop {
        if at >= until {
            if let Some(p) = pending.take() {
                // Lines before `until` were whole when their reader was told where it ends.
                take(p, false, &mut next)?;
            }
            break;
        }
        let mut bytes = Vec::new();
        let n = reader.read_until(b'\n', &mut bytes).map_err(io)?;
        if n == 0 {
            if let Some(p) = pending.take() {
                take(p, true, &mut next)?;
            }
            break;
        }
        number += 1;
        if let Some(p) = pending.replace((at, number, bytes)) {
            take(p, false, &mut next)?;
        }
        at += n as u64;
    }
    Ok(next)
}

/// A reader of `file` from offset `at`, by positioned reads (the file's own offset is the
/// writer's).
struct ReadAt<'f> {
    file: &'f File,
    at: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Visits the entries of a journal file without taking the lock (for `status` while a run
/// goes on), one at a time, with their positions.
///
/// # Errors
/// Unreadable file, or a corrupt line that is not the last one.
pub fn visit_entries<E: Record>(
    path: &Path,
    visit: &mut dyn FnMut(Pos, E),
) -> Result<(), JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    visit_file(path, &file, 0, Pos::MAX, &mut |at, line| {
        visit(at, serde_json::from_str(line).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    Ok(())
}

/// Reads a journal file without taking the lock, collected (tests, small journals).
///
/// # Errors
/// As `visit_entries`.
pub fn read_entries<E: Record>(path: &Path) -> Result<Vec<E>, JournalError> {
    let mut out = Vec::new();
    visit_entries(path, &mut |_, e| out.push(e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
    struct Note {
        zone: String,
        n: u64,
    }

    fn note(zone: &str, n: u64) -> Note {
        Note {
            zone: zone.into(),
            n,
        }
    }

    #[test]
    fn entries_written_from_threads_are_durable_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let j = std::sync::Mutex::new(Journal::<Note>::open(dir.path()).unwrap());
        std::thread::scope(|s| {
            for t in 0..4 {
                let j = &j;
                s.spawn(move || {
                    for i in 0..25 {
                        let entry = note(&format!("z{t}.test"), i);
                        let (seq, syncer) = {
                            let mut j = j.lock().unwrap();
                            (j.write(&entry).unwrap().ticket, j.syncer())
                        };
                        syncer.sync_to(seq).unwrap();
                    }
                });
            }
        });
        let on_disk: Vec<Note> = read_entries(&dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(on_disk.len(), 100);
        assert_eq!(j.lock().unwrap().entries().unwrap(), on_disk);
    }

    #[test]
    fn the_lock_names_its_holder_and_tells_a_gone_one() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        let held = Journal::<Note>::open(dir.path()).unwrap();
        let me = LockHolder::parse(&std::fs::read_to_string(&lock).unwrap()).unwrap();
        assert_eq!((me.pid, me.host.clone()), (std::process::id(), host_name()));
        let Err(JournalError::Locked {
            holder: Some((h, Liveness::Running)),
            ..
        }) = Journal::<Note>::open(dir.path())
        else {
            panic!("a second open is refused, naming the running holder");
        };
        assert_eq!(h, me);
        // The record names a process that has exited, yet the lock is held (by us here).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = LockHolder { pid: dead, ..me };
        std::fs::write(&lock, gone.to_text()).unwrap();
        let err = Journal::<Note>::open(dir.path()).err().unwrap();
        assert!(
            matches!(
                &err,
                JournalError::Locked {
                    holder: Some((_, Liveness::Gone)),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("PID {dead} on this host")),
            "{err}"
        );
        assert!(err.to_string().contains("fuser -v"), "{err}");
        // Released: the record is cleared, and a record left by a dead run never blocks.
        drop(held);
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), "");
        std::fs::write(&lock, gone.to_text()).unwrap();
        let _again = Journal::<Note>::open(dir.path()).unwrap();
        let now = LockHolder::parse(&std::fs::read_to_string(&lock).unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id());
    }

    #[test]
    fn entries_survive_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::<Note>::open(dir.path()).unwrap();
            j.append(&note("a", 1)).unwrap();
            assert!(
                matches!(
                    Journal::<Note>::open(dir.path()),
                    Err(JournalError::Locked { .. })
                ),
                "one run at a time"
            );
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap();
        f.write_all(b"{\"zone\":\"b").unwrap(); // a crash in the middle of a line
        let mut j = Journal::<Note>::open(dir.path()).unwrap();
        j.append(&note("c", 2)).unwrap();
        assert_eq!(j.entries().unwrap(), vec![note("a", 1), note("c", 2)]);
    }

    #[test]
    fn entries_are_read_back_by_position_and_a_long_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let long = note(&"z".repeat(100_000), 7);
        let ours = {
            let mut j = Journal::<Note>::open(dir.path()).unwrap();
            let a = j.append(&note("a", 1)).unwrap().ours;
            let b = j.append(&long).unwrap().ours;
            let c = j.append(&note("c", 3)).unwrap().ours;
            assert_eq!(
                j.read_at(&[a[0], c[0]]).unwrap(),
                vec![note("a", 1), note("c", 3)]
            );
            [a[0], b[0], c[0]]
        };
        let path = dir.path().join("journal.jsonl");
        // A torn line longer than one read back from the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(format!("{{\"zone\":\"{}", "t".repeat(70_000)).as_bytes())
            .unwrap();
        // Read without the lock, as `status` does while a run writes: the torn line is left out.
        let mut seen = Vec::new();
        visit_entries::<Note>(&path, &mut |at, e| seen.push((at, e))).unwrap();
        assert_eq!(
            seen,
            vec![
                (ours[0], note("a", 1)),
                (ours[1], long.clone()),
                (ours[2], note("c", 3))
            ]
        );
        let mut j = Journal::<Note>::open(dir.path()).unwrap();
        let mut again = Vec::new();
        assert_eq!(j.catch_up(&mut |at, e| again.push((at, e))).unwrap(), 3);
        assert_eq!(again, seen);
        let d = j.append(&note("d", 4)).unwrap().ours;
        assert_eq!(
            j.read_at(&[ours[1], d[0]]).unwrap(),
            vec![long, note("d", 4)]
        );
    }
}
