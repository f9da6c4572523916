//! Whether a file system may hold writes of ours that no `syncfs` has made durable yet, so a
//! run that wrote nothing can skip the flush (on a busy server it waits for everyone's dirty
//! pages) without trusting that every earlier writer lived to flush its own.
//!
//! Each writing process leaves a marker in tmpfs (`/dev/shm`, gone with a reboot, as are the
//! page-cache writes it stands for) named by the file system and the process, before its first
//! write there; it removes it once a flush of its own follows its last write. A flush is needed
//! when this process wrote since its last one, or when any marker for that file system exists
//! (another writer, alive or killed). After a flush the markers of dead processes go: what they
//! wrote was written before they died, so it is durable now. Anything unreadable means "flush".

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where markers live: a tmpfs, so none outlives the page cache it speaks for.
const MARKERS: &str = "/dev/shm";
const PREFIX: &str = "transhumance-unsynced-";

/// This process's writes on one file system.
struct Dev {
    /// Bumped by every write call; `synced` is its value when the last flush started.
    written: u64,
    synced: u64,
    marker: Option<PathBuf>,
    /// A descriptor on that file system, to flush it when the process ends.
    fd: Option<OwnedFd>,
}

static DEVS: Mutex<Option<HashMap<u64, Dev>>> = Mutex::new(None);

fn with_devs<R>(f: impl FnOnce(&mut HashMap<u64, Dev>) -> R) -> R {
    let mut guard = DEVS.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// This process's identity in marker names: pid and start time (pids are reused).
fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn marker_name(dev: u64, pid: u32, start: u64) -> String {
    format!("{PREFIX}{dev}-{pid}-{start}")
}

/// `(pid, start)` of a marker of `dev`, from its name.
fn parse_marker(name: &str, dev: u64) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    if parts.next()?.parse::<u64>().ok()? != dev {
        return None;
    }
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Records that this process is about to write on the file system of `fd` (device `dev`).
/// The marker is made before the first write; a marker that cannot be made leaves the
/// process "written" all the same, and the flush then happens as it always did.
pub fn mark(dev: u64, fd: BorrowedFd<'_>) {
    with_devs(|devs| {
        let d = devs.entry(dev).or_insert_with(|| Dev {
            written: 0,
            synced: 0,
            marker: None,
            fd: None,
        });
        d.written += 1;
        if d.fd.is_none() {
            d.fd = fd.try_clone_to_owned().ok();
        }
        if d.marker.is_none() {
            let (pid, start) = me();
            let path = Path::new(MARKERS).join(marker_name(dev, pid, start));
            if std::fs::write(&path, b"").is_ok() {
                d.marker = Some(path);
            }
        }
    });
}

/// Whether some writer (this process since its last flush, or any other process) may have
/// left writes on `dev` that are not durable.
fn pending(dev: u64) -> bool {
    let mine = with_devs(|devs| devs.get(&dev).is_some_and(|d| d.written > d.synced));
    if mine {
        return true;
    }
    let Ok(dir) = std::fs::read_dir(MARKERS) else {
        return true;
    };
    dir.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| parse_marker(n, dev).is_some())
    })
}

/// Flushes the file system of `fd` (device `dev`) when `pending` says it may hold writes of
/// ours, then drops the markers that flush covered. Returns whether it flushed.
///
/// # Errors
/// I/O errors from `syncfs`.
pub fn sync(dev: u64, fd: BorrowedFd<'_>) -> io::Result<bool> {
    if !pending(dev) {
        return Ok(false);
    }
    let started_at = with_devs(|devs| devs.get(&dev).map_or(0, |d| d.written));
    // SAFETY: a valid descriptor.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    with_devs(|devs| {
        if let Some(d) = devs.get_mut(&dev) {
            d.synced = d.synced.max(started_at);
            // A write that began while flushing keeps the marker for the next flush.
            if d.written == d.synced
                && let Some(m) = d.marker.take()
            {
                let _ = std::fs::remove_file(m);
            }
        }
    });
    remove_dead_markers(dev);
    Ok(true)
}

/// Removes the markers of `dev` whose process has ended: everything it wrote came before
/// the flush that just returned.
fn remove_dead_markers(dev: u64) {
    let Ok(dir) = std::fs::read_dir(MARKERS) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some((pid, start)) = name.to_str().and_then(|n| parse_marker(n, dev)) else {
            continue;
        };
        if start_time(pid) != Some(start) {
            // Another user's marker stays (sticky /dev/shm): flushing again later is harmless.
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// At the end of an agent: flushes every file system this process wrote on since its last
/// flush (another process may have run the run's final flush), and removes its markers.
pub fn flush_all() {
    let dirty: Vec<(u64, OwnedFd)> = with_devs(|devs| {
        devs.iter_mut()
            .filter(|(_, d)| d.written > d.synced)
            .filter_map(|(dev, d)| Some((*dev, d.fd.take()?)))
            .collect()
    });
    for (dev, fd) in dirty {
        use std::os::fd::AsFd;
        let _ = sync(dev, fd.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_carry_the_device_and_the_process() {
        let name = marker_name(2049, 4242, 987_654);
        assert_eq!(parse_marker(&name, 2049), Some((4242, 987_654)));
        assert_eq!(parse_marker(&name, 2050), None);
        assert_eq!(parse_marker("transhumance-unsynced-x-1-2", 2049), None);
        assert_eq!(parse_marker("something-else", 2049), None);
    }

    #[test]
    fn this_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn a_write_needs_a_flush_and_the_flush_clears_it_unless_a_dead_writer_left_a_marker() {
        use std::os::fd::AsFd;
        // A device number no real file system here has: the test's state is its own.
        let dev = u64::MAX - u64::from(std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(dir.path()).unwrap();
        assert!(!pending(dev), "nothing written yet");
        mark(dev, file.as_fd());
        assert!(pending(dev));
        assert!(sync(dev, file.as_fd()).unwrap());
        assert!(!pending(dev), "flushed after the last write");
        assert!(!sync(dev, file.as_fd()).unwrap(), "nothing to flush");
        // A killed writer's marker: the next run flushes once, then it is gone.
        let dead = Path::new(MARKERS).join(marker_name(dev, u32::MAX - 1, 1));
        std::fs::write(&dead, b"").unwrap();
        assert!(pending(dev));
        assert!(sync(dev, file.as_fd()).unwrap());
        assert!(!dead.exists());
        assert!(!pending(dev));
    }
}
