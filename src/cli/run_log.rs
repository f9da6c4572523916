//! The per-run log: one file per run of a command that changes the world, in
//! `<state_dir>/logs/<start time>-<verbs>.log`, each line stamped with its time. It holds what
//! the operator was shown (stdout and stderr lines) and every engine event, so the weekend can be
//! read back afterwards; the journal stays the machine record. Secrets never reach it: only the
//! command's verbs are written, never its arguments, and every value of a secret the plan
//! refers to is replaced by `<redacted>` in any line that would carry it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use crate::event::{Event, Observer};
use crate::plan::Loaded;

/// The open log of this run.
pub struct RunLog {
    path: PathBuf,
    file: Mutex<File>,
    /// Values to keep out, longest first (so one containing another is replaced whole).
    secrets: Vec<String>,
    started: Instant,
}

/// The command's verbs when it changes the world (set before its plan is loaded).
static EXPECTED: OnceLock<String> = OnceLock::new();
/// This process's log, once the plan's state directory is known.
static CURRENT: OnceLock<RunLog> = OnceLock::new();

/// Says that this process runs `verbs`, a command that changes the world: its log is opened
/// as soon as its plan is loaded (`start`).
pub fn expect(verbs: &str) {
    let _ = EXPECTED.set(verbs.to_string());
}

/// Opens the run's log in the plan's state directory, when the command is one that logs
/// (see `expect`). A log that cannot be written is a warning: the run itself is journaled.
pub fn start(loaded: &Loaded) -> Option<String> {
    let verbs = EXPECTED.get()?;
    if CURRENT.get().is_some() {
        return None;
    }
    let dir = loaded.plan.state_dir.join("logs");
    match RunLog::create(&dir, verbs, secrets_of(loaded)) {
        Ok(log) => {
            log.write(
                "start",
                &format!(
                    "{verbs}: transhumance {}, PID {} on {}, plan `{}`",
                    super::VERSION,
                    std::process::id(),
                    crate::journal::host_name(),
                    loaded.plan.file.display()
                ),
            );
            let _ = CURRENT.set(log);
            None
        }
        Err(e) => Some(format!(
            "warning: cannot write this run's log in `{}`: {e}",
            dir.display()
        )),
    }
}

/// One line of the log (a no-op when this run has none).
pub fn record(kind: &str, message: &str) {
    if let Some(log) = CURRENT.get() {
        log.write(kind, message);
    }
}

/// The last line: the exit code and how long the run took.
pub fn finish(code: u8) {
    if let Some(log) = CURRENT.get() {
        let meaning = match code {
            super::exit::OK => "ok",
            super::exit::FAILURES => "finished with failures",
            super::exit::INVALID => "invalid input",
            super::exit::UNSAFE => "refused as unsafe",
            super::exit::LOCKED => "refused: another run holds the lock",
            _ => "",
        };
        log.write(
            "end",
            &format!(
                "exit {code} ({meaning}) after {:.1} s",
                log.started.elapsed().as_secs_f64()
            ),
        );
    }
}

/// The path of this run's log, when it has one.
pub fn path() -> Option<&'static Path> {
    CURRENT.get().map(|l| l.path.as_path())
}

/// Wraps the display's observer so every event is also written to the log.
pub struct Logged(pub Box<dyn Observer>);

impl Observer for Logged {
    fn on_event(&self, event: &Event) {
        self.0.on_event(event);
        if let Some(line) = event_line(event) {
            record("event", &line);
        }
    }

    fn finish(&self) {
        self.0.finish();
    }
}

impl RunLog {
    /// Creates `<dir>/<start time>-<verbs>.log` (never over an existing file).
    fn create(dir: &Path, verbs: &str, mut secrets: Vec<String>) -> std::io::Result<RunLog> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now();
        // `2026-11-23T10-15-02Z`: sorts by time, no `:` (not allowed everywhere).
        let stamp = humantime::format_rfc3339_seconds(now)
            .to_string()
            .replace(':', "-");
        let name = verbs.replace(' ', "-");
        let mut n = 1;
        let (path, file) = loop {
            let path = if n == 1 {
                dir.join(format!("{stamp}-{name}.log"))
            } else {
                dir.join(format!("{stamp}-{name}-{n}.log"))
            };
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        };
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(RunLog {
            path,
            file: Mutex::new(file),
            secrets,
            started: Instant::now(),
        })
    }

    /// Writes `<time> <kind> <message>` for each line of `message`, secrets redacted; written
    /// at once (no buffer), so a run killed mid-way leaves every line before the kill.
    fn write(&self, kind: &str, message: &str) {
        let at = humantime::format_rfc3339_millis(SystemTime::now());
        let mut text = String::new();
        for line in redact(message, &self.secrets).lines() {
            text.push_str(&format!("{at} {kind:<6} {line}\n"));
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = file.write_all(text.as_bytes());
    }
}

/// `text` with every secret value replaced by `<redacted>`.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

/// The values of every secret the plan refers to that can be read now (its own, and the IMAP
/// users files' passwords).
fn secrets_of(loaded: &Loaded) -> Vec<String> {
    let plan = &loaded.plan;
    let mut refs: Vec<crate::plan::secret::SecretRef> =
        plan.secret_refs().into_iter().cloned().collect();
    for rule in &plan.mail {
        if let crate::plan::model::MailRule::Imap { users_file, .. } = rule
            && let Ok(users) = crate::lifecycle::dry_run::read_users(users_file)
        {
            for u in users {
                refs.push(u.source_password);
                refs.push(u.target_password);
            }
        }
    }
    refs.iter()
        .filter_map(|r| r.resolve().ok())
        .map(|s| s.expose().to_string())
        .collect()
}

/// An event in words; byte counts are left out: they move as they go, and in a plan run the
/// total grows as each site announces its own (the report has what moved).
fn event_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::PhaseStarted { phase, total: 0 } => format!("{phase}: started"),
        Event::PhaseStarted { phase, total } => format!("{phase}: started, {total} unit(s)"),
        Event::UnitDone { phase, unit } => format!("{phase}: {unit}: done"),
        Event::UnitFailed { phase, unit, error } => format!("{phase}: {unit}: failed: {error}"),
        Event::BytesTotal { .. } | Event::BytesDone { .. } | Event::UnitStarted { .. } => {
            return None;
        }
        Event::PhaseFinished { phase } => format!("{phase}: finished"),
        Event::CheckOverridden { .. } => super::progress::overridden_line(event)?,
        Event::Info { message } => message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_longest_first() {
        let secrets = vec!["hunter2-long".to_string(), "hunter2".to_string()];
        assert_eq!(
            redact("pw hunter2-long and hunter2.", &secrets),
            "pw <redacted> and <redacted>."
        );
    }

    #[test]
    fn lines_are_stamped_named_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            RunLog::create(dir.path(), "db sync", vec!["s3cret".into(), String::new()]).unwrap();
        log.write("error", "login with s3cret refused\nsecond line");
        let again = RunLog::create(dir.path(), "db sync", vec![]).unwrap();
        assert_ne!(log.path, again.path, "two runs in one second get two files");
        let name = log.path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with("Z-db-sync.log"), "{name}");
        let text = std::fs::read_to_string(&log.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            lines[0].ends_with(" error  login with <redacted> refused"),
            "{text}"
        );
        assert!(lines[1].ends_with(" error  second line"), "{text}");
        // `2026-11-23T10:15:02.123Z`: a time to the millisecond starts every line.
        assert!(
            humantime::parse_rfc3339(lines[0].split(' ').next().unwrap()).is_ok(),
            "{text}"
        );
    }
}
