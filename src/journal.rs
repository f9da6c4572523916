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

/// An open journal: its store, and every entry read or written so far, in the store's order.
pub struct Journal<E> {
    store: Box<dyn Store>,
    /// Every entry up to the last one read from or written to the store: readers need not
    /// parse the store again. With the file only this process writes while the lock is held;
    /// a shared store is read again (`refresh`) before deciding on what others may have written.
    cache: Vec<E>,
    /// The store's number of the last entry in `cache`.
    seen: u64,
}

/// Where a journal's lines are kept. Lines are JSON, each about one unit or none (`unit`, which
/// a shared store checks against the writer's lease before it accepts the line).
pub trait Store: Send {
    /// Writes `lines` after every line already in the store. Returns the lines others wrote
    /// after number `seen` and before these (with their numbers, in order), the number of the
    /// last of these, and a ticket for `Syncer::sync_to`.
    ///
    /// # Errors
    /// Nothing was written: I/O, the store unreachable, or a unit's lease no longer ours.
    fn append(&mut self, seen: u64, lines: &[Line<'_>]) -> Result<Appended, JournalError>;

    /// The lines written after number `seen`, in order (by others: ours are known).
    ///
    /// # Errors
    /// The store cannot be read.
    fn read_since(&mut self, seen: u64) -> Result<Vec<(u64, String)>, JournalError>;

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
    pub others: Vec<(u64, String)>,
    pub last: u64,
    pub ticket: u64,
}

/// The embedded store: `journal.jsonl` in the state directory, under the plan's run lock.
struct FileStore {
    path: PathBuf,
    file: File,
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
    #[error("journal `{}` line {line}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The shared store cannot be reached or refused a statement.
    #[error("journal {store}: {message}")]
    Store { store: String, message: String },
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
    /// Opens (creating) the journal in `state_dir` and takes the run lock.
    ///
    /// # Errors
    /// The directory cannot be created, or another run holds the lock.
    pub fn open(state_dir: &Path) -> Result<Journal<E>, JournalError> {
        Journal::over(Box::new(FileStore::open(state_dir)?))
    }

    /// A journal kept by `store`, every entry so far read.
    ///
    /// # Errors
    /// The store cannot be read, or holds a corrupt entry.
    pub fn over(mut store: Box<dyn Store>) -> Result<Journal<E>, JournalError> {
        let mut journal = Journal {
            cache: Vec::new(),
            seen: 0,
            store: Box::new(NoStore),
        };
        let lines = store.read_since(0)?;
        journal.store = store;
        journal.take_lines(lines)?;
        Ok(journal)
    }

    fn take_lines(&mut self, lines: Vec<(u64, String)>) -> Result<(), JournalError> {
        for (seq, line) in lines {
            let entry = serde_json::from_str(&line).map_err(|e| JournalError::Corrupt {
                path: PathBuf::from(self.store.describe()),
                line: seq as usize,
                message: e.to_string(),
            })?;
            self.cache.push(entry);
            self.seen = seq;
        }
        Ok(())
    }

    /// Appends an entry and waits until it is durable.
    ///
    /// # Errors
    /// Write or fsync errors: the caller must not make the change then.
    pub fn append(&mut self, entry: &E) -> Result<(), JournalError> {
        self.append_all(std::slice::from_ref(entry))
    }

    /// Writes an entry without waiting for the disk; its number goes to `Syncer::sync_to`,
    /// which must return before the change the entry announces is made.
    ///
    /// # Errors
    /// Write errors.
    pub fn write(&mut self, entry: &E) -> Result<u64, JournalError> {
        self.write_about(entry, None)
    }

    /// As `write`, for an entry about `unit` (a shared store checks this process's lease on it).
    ///
    /// # Errors
    /// Write errors, or the unit's lease is no longer ours.
    pub fn write_about(&mut self, entry: &E, unit: Option<&str>) -> Result<u64, JournalError> {
        let line = Line {
            json: serde_json::to_string(entry).expect("journal entries serialize"),
            unit,
        };
        let done = self.store.append(self.seen, &[line])?;
        self.take_lines(done.others)?;
        self.cache.push(entry.clone());
        self.seen = done.last;
        Ok(done.ticket)
    }

    /// Reads what others appended since this process last read or wrote (nothing with the file:
    /// its lock keeps others out). Returns how many entries came in.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn refresh(&mut self) -> Result<usize, JournalError> {
        let before = self.cache.len();
        let lines = self.store.read_since(self.seen)?;
        self.take_lines(lines)?;
        Ok(self.cache.len() - before)
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
    pub fn append_all(&mut self, entries: &[E]) -> Result<(), JournalError> {
        let lines: Vec<Line<'_>> = entries
            .iter()
            .map(|e| Line {
                json: serde_json::to_string(e).expect("journal entries serialize"),
                unit: None,
            })
            .collect();
        let done = self.store.append(self.seen, &lines)?;
        self.store.syncer().sync_to(done.ticket)?;
        self.take_lines(done.others)?;
        self.cache.extend_from_slice(entries);
        self.seen = done.last;
        Ok(())
    }

    /// Every entry so far, in order. A torn last line (a crash mid-write) is ignored.
    ///
    /// # Errors
    /// Unreadable file, or a corrupt line that is not the last one.
    pub fn entries(&self) -> Result<Vec<E>, JournalError> {
        Ok(self.cache.clone())
    }

    /// Every entry so far, borrowed (no copy of the whole journal).
    pub fn all(&self) -> &[E] {
        &self.cache
    }

    /// Where the journal is, for messages.
    pub fn describe(&self) -> String {
        self.store.describe()
    }
}

/// The store of a journal being opened (never written to).
struct NoStore;

impl Store for NoStore {
    fn append(&mut self, _: u64, _: &[Line<'_>]) -> Result<Appended, JournalError> {
        unreachable!("a journal is opened before it is written")
    }
    fn read_since(&mut self, _: u64) -> Result<Vec<(u64, String)>, JournalError> {
        Ok(Vec::new())
    }
    fn syncer(&self) -> Syncer {
        Syncer::durable()
    }
    fn describe(&self) -> String {
        String::new()
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
        cut_torn_tail(&path).map_err(io)?;
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
            path,
            file,
            lock,
            syncer,
        })
    }
}

impl Store for FileStore {
    fn append(&mut self, seen: u64, lines: &[Line<'_>]) -> Result<Appended, JournalError> {
        let mut text = String::new();
        for l in lines {
            text.push_str(&l.json);
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        let ticket = self
            .syncer
            .written
            .fetch_add(lines.len() as u64, std::sync::atomic::Ordering::AcqRel)
            + lines.len() as u64;
        Ok(Appended {
            others: Vec::new(),
            last: seen + lines.len() as u64,
            ticket,
        })
    }

    fn read_since(&mut self, seen: u64) -> Result<Vec<(u64, String)>, JournalError> {
        if seen > 0 {
            // Only this process writes while it holds the lock.
            return Ok(Vec::new());
        }
        read_lines(&self.path)
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
/// starts on a line of its own (the torn change never happened as far as we know).
fn cut_torn_tail(path: &Path) -> std::io::Result<()> {
    let data = std::fs::read(path)?;
    if data.is_empty() || data.ends_with(b"\n") {
        return Ok(());
    }
    let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    f.sync_all()
}

/// Reads a journal file without taking the lock (for `status`).
///
/// # Errors
/// As `Journal::entries`.
pub fn read_entries<E: Record>(path: &Path) -> Result<Vec<E>, JournalError> {
    read_lines(path)?
        .into_iter()
        .map(|(n, line)| {
            serde_json::from_str(&line).map_err(|e| JournalError::Corrupt {
                path: path.to_path_buf(),
                line: n as usize,
                message: e.to_string(),
            })
        })
        .collect()
}

/// The lines of a journal file, numbered from 1 (blank lines skipped, their numbers kept out),
/// checked to be JSON; a torn last line is ignored.
fn read_lines(path: &Path) -> Result<Vec<(u64, String)>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = Vec::with_capacity(lines.len());
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(&line) {
            Ok(_) => out.push((out.len() as u64 + 1, line)),
            Err(_) if i + 1 == count => {}
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
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
                            (j.write(&entry).unwrap(), j.syncer())
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
}
