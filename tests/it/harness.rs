//! Real servers for the integration tests (sshd, MariaDB, PostgreSQL, BIND, Knot, PowerDNS,
//! Dovecot), started as plain processes on 127.0.0.1 in temp dirs, so tests exercise transhumance
//! against the real thing.
//!
//! Every server picks a free port at run time, is safe to start from parallel test threads, and is
//! stopped when dropped (TERM, then KILL after 10 s), so a failing test cleans up too. A missing
//! binary panics with the Debian package to install: tests never skip silently.
#![allow(dead_code)] // each test uses only some of the servers and helpers

use std::collections::BTreeSet;
use std::env;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer once spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after TERM before it gets KILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Another process may bind a free port before our server does; each retry takes a new port.
const START_ATTEMPTS: usize = 3;
const POLL: Duration = Duration::from_millis(20);
/// Harness dirs go straight into /tmp, not `$TMPDIR`: Unix socket paths must stay under ~100 bytes.
const TMP: &str = "/tmp";
const DIR_PREFIX: &str = "th-it-";
/// Locked for as long as the owning test process lives; see `sweep_stale_dirs`.
const OWNER_LOCK: &str = ".owner.lock";
/// Dovecot refuses uid 0 for mail; the uid needs no passwd entry.
const MAIL_UID: u32 = 5000;

// ---------------------------------------------------------------------------------------------
// Generic helpers

/// A port on 127.0.0.1 that was free a moment ago and that this process never handed out before.
pub fn free_port() -> u16 {
    pick_port(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        Some(
            listener
                .local_addr()
                .expect("local address of a bound socket")
                .port(),
        )
    })
}

/// Like `free_port`, but free for both TCP and UDP (DNS servers listen on both).
pub fn free_port_udp_tcp() -> u16 {
    pick_port(|| {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = tcp
            .local_addr()
            .expect("local address of a bound socket")
            .port();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, port))
            .ok()
            .map(|_| port)
    })
}

fn pick_port(mut candidate: impl FnMut() -> Option<u16>) -> u16 {
    // The kernel may hand a just-released port out again: never give one to two servers of ours.
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..1000 {
        if let Some(port) = candidate() {
            let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
            if handed_out.insert(port) {
                return port;
            }
        }
    }
    panic!("no free port on 127.0.0.1 after 1000 tries")
}

/// The path of `binary` (absolute, or a name looked up on `PATH`); panics naming the Debian
/// package to install when it is missing.
pub fn require(binary: &str, package: &str) -> PathBuf {
    let found = if binary.contains('/') {
        Some(PathBuf::from(binary)).filter(|p| is_executable(p))
    } else {
        env::var_os("PATH").and_then(|path| {
            env::split_paths(&path)
                .map(|dir| dir.join(binary))
                .find(|p| is_executable(p))
        })
    };
    found.unwrap_or_else(|| {
        panic!("`{binary}` not found: install the Debian package `{package}` (scripts/test installs it)")
    })
}

/// Like `require`, for a file that is not a program (a plugin, a schema).
fn require_file(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "`{}` not found: install the Debian package `{package}` (scripts/test installs it)",
        path.display()
    );
    path
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the tests run as root, which device nodes need; when not, says on stderr which
/// test is skipped and why (CI runs as root, so there it never skips).
#[allow(clippy::print_stderr)] // a skipped test says so, never silently
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED {test}: making device nodes needs root (run the tests as root)");
    }
    root
}

/// Makes a character device node `major:minor` at `path` (mode 0600); the caller is root.
pub fn mknod_char(path: &Path, major: u32, minor: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Polls `f` until it returns true; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}

/// Runs a short command to completion; panics with its output when it fails.
fn run_checked(cmd: &mut Command, what: &str) -> Output {
    run_with_input(cmd, &[], what)
}

fn run_with_input(cmd: &mut Command, input: &[u8], what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Write from another thread: a command that answers before reading all its input must not
    // block on a full stdout pipe while we block on a full stdin pipe.
    let out = thread::scope(|s| {
        s.spawn(move || stdin.write_all(input));
        child.wait_with_output()
    })
    .unwrap_or_else(|e| panic!("{what}: waiting for {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

/// Stdout without its trailing newlines, the way a shell's `$(...)` gives it.
fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_owned()
}

/// Runs a probe quietly; true when it exits 0.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn write_file(path: &Path, contents: impl AsRef<[u8]>) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn create_dir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

/// `chown -R`, without following symlinks.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {uid}:{gid} {}: {e}", path.display()));
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        for entry in fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())) {
            chown_tree(&entry.expect("directory entry").path(), uid, gid);
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    // `cp -a` keeps owners and modes: PostgreSQL insists on its 0700 data dir owned by postgres.
    run_checked(
        Command::new("cp").arg("-a").arg(from).arg(to),
        "copying a server template",
    );
}

// ---------------------------------------------------------------------------------------------
// Harness dirs, and cleaning up after test processes that died without running Drop

/// A fresh dir `/tmp/th-it-<kind>-XXXXXX` with its owner lock held: the lock file must live
/// exactly as long as the dir is in use, so callers keep it next to the `TempDir`.
fn harness_dir(kind: &str) -> (TempDir, File) {
    sweep_stale_dirs();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{kind}-"))
        .tempdir_in(TMP)
        .unwrap_or_else(|e| panic!("creating a temp dir in {TMP}: {e}"));
    let lock_path = dir.path().join(OWNER_LOCK);
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    (dir, lock)
}

/// A dir that lives as long as the test process (server templates).
struct ProcessDir {
    dir: TempDir,
    _owner: File,
}

impl ProcessDir {
    fn new(kind: &str) -> ProcessDir {
        let (dir, _owner) = harness_dir(kind);
        ProcessDir { dir, _owner }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Once per process, removes the harness dirs of test processes that died without running Drop
/// (Ctrl-C, SIGKILL, `std::process::exit`), first stopping the servers still running from them;
/// templates, which live in statics, never run Drop at all. A dir is stale when its owner lock
/// can be taken: the kernel releases an flock when the process holding it dies, even in another
/// PID namespace sharing /tmp.
fn sweep_stale_dirs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(TMP) else {
            return;
        };
        for entry in entries.flatten() {
            let is_ours = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX)
                && entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_ours {
                continue;
            }
            let dir = entry.path();
            let lock_path = dir.join(OWNER_LOCK);
            // A young dir may not be locked yet: its creator may be between create and lock.
            let old = fs::metadata(&lock_path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(60)));
            let Ok(lock) = File::open(&lock_path) else {
                continue;
            };
            if old && lock.try_lock().is_ok() {
                stop_processes_under(&dir);
                let _ = fs::remove_dir_all(&dir);
            }
        }
    });
}

/// Stops the processes whose command line names a path under `dir`: the servers a dead test
/// process started there (every server here gets its config or data path on its command line).
fn stop_processes_under(dir: &Path) {
    let needle = format!("{}/", dir.display());
    let pids: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect();
    for pid in &pids {
        signal(*pid, "TERM");
    }
    let deadline = Instant::now() + STOP_GRACE;
    while pids.iter().any(|p| is_running(*p)) && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    for pid in pids.iter().filter(|p| is_running(**p)) {
        signal(*pid, "KILL");
    }
}

/// True while `pid` exists and is not a zombie (an orphan's zombie may linger if init is slow).
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may itself contain spaces.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn signal(pid: u32, name: &str) -> bool {
    succeeds(
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string()),
    )
}

// ---------------------------------------------------------------------------------------------
// Server processes

/// A server process we spawned; stopped on drop.
struct Proc {
    child: Child,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let err = out.try_clone().expect("duplicating a log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// TERM, wait up to `STOP_GRACE`, then KILL. The child is not reaped before we wait for it,
    /// so its PID cannot have been reused by another process meanwhile.
    fn stop(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        if signal(self.child.id(), "TERM") {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if self.exit_status().is_some() {
                    return;
                }
                thread::sleep(POLL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `ready` until it holds; fails early when the process exits, or after `START_TIMEOUT`.
fn wait_ready(proc: &mut Proc, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = proc.exit_status() {
            return Err(format!("it exited during start-up ({status})"));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("it did not answer within {START_TIMEOUT:?}"));
        }
        thread::sleep(POLL);
    }
}

enum StartError {
    /// Another process bound the port first: worth another try on a new port.
    PortTaken(String),
    Failed(String),
}

/// Turns a start-up failure into a `StartError` carrying the tail of the server's log.
fn start_error(why: &str, log: &Path) -> StartError {
    let text = read_lossy(log);
    let message = format!(
        "{why}\n--- last lines of {} ---\n{}",
        log.display(),
        tail(&text, 40)
    );
    if mentions_port_taken(&text) {
        StartError::PortTaken(message)
    } else {
        StartError::Failed(message)
    }
}

fn mentions_port_taken(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    [
        "address already in use",
        "address in use",
        "unable to listen on any configured interfaces",
    ]
    .iter()
    .any(|needle| log.contains(needle))
}

/// Calls `attempt` until a server starts; only a taken port is worth another attempt.
fn start_with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T, StartError>) -> T {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err(StartError::PortTaken(message)) => last = message,
            Err(StartError::Failed(message)) => panic!("{what} did not start: {message}"),
        }
    }
    panic!("{what} did not start: its port was taken {START_ATTEMPTS} times in a row; last: {last}")
}

// ---------------------------------------------------------------------------------------------
// sshd

/// OpenSSH's sshd, key-only, root login allowed, host key pinned in `known_hosts`.
pub struct Sshd {
    proc: Proc, // first: fields drop in order, so the server stops before its dir goes
    pub port: u16,
    pub dir: TempDir,
    /// Private ed25519 key authorized for root (and for users passed to `authorize`).
    pub client_key: PathBuf,
    /// One line, `[127.0.0.1]:PORT ssh-ed25519 ...`.
    pub known_hosts: PathBuf,
    _owner: File,
}

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = require("/usr/sbin/sshd", "openssh-server"); // sshd refuses a relative path
        let keygen = require("ssh-keygen", "openssh-client");
        require("ssh", "openssh-client");
        // Privilege separation dir compiled into Debian's sshd; it must exist.
        create_dir(Path::new("/run/sshd"));
        start_with_retries("sshd", || Self::try_start(&sshd, &keygen))
    }

    fn try_start(sshd: &Path, keygen: &Path) -> Result<Sshd, StartError> {
        let (dir, owner) = harness_dir("ssh");
        let d = dir.path();
        // sshd reads a user's authorized keys as that user: non-root users must get through.
        set_mode(d, 0o755);
        let host_key = d.join("host_ed25519");
        let client_key = d.join("client_ed25519");
        for key in [&host_key, &client_key] {
            run_checked(
                Command::new(keygen)
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "th-it", "-f"])
                    .arg(key),
                "ssh-keygen",
            );
        }
        create_dir(&d.join("auth"));
        set_mode(&d.join("auth"), 0o755);
        let port = free_port();
        let config = d.join("sshd_config");
        write_file(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host_key}\n\
                 PidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/auth/%u\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 Subsystem sftp internal-sftp\n\
                 LogLevel VERBOSE\n",
                host_key = host_key.display(),
                d = d.display(),
            ),
        );
        run_checked(
            Command::new(sshd).arg("-t").arg("-f").arg(&config),
            "sshd -t (config check)",
        );
        let host_pub = read_lossy(&d.join("host_ed25519.pub"));
        let mut fields = host_pub.split_whitespace();
        let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
            panic!("unexpected host key {host_pub:?}");
        };
        let known_hosts = d.join("known_hosts");
        write_file(
            &known_hosts,
            format!("[127.0.0.1]:{port} {key_type} {key}\n"),
        );
        let log = d.join("sshd.log");
        let mut proc = Proc::spawn(
            Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config),
            &log,
        );
        // sshd logs this once it listens; a mere TCP connect could reach another server.
        let listening = format!("Server listening on 127.0.0.1 port {port}.");
        wait_ready(&mut proc, || read_lossy(&log).contains(&listening))
            .map_err(|why| start_error(&why, &log))?;
        let sshd = Sshd {
            proc,
            port,
            dir,
            client_key,
            known_hosts,
            _owner: owner,
        };
        sshd.authorize("root");
        Ok(sshd)
    }

    /// Lets `user` (an existing account) log in with `client_key`. A user created with
    /// `useradd` also needs `usermod -p '*'`, or sshd counts it as locked (`UsePAM no`).
    pub fn authorize(&self, user: &str) {
        let keys = self.dir.path().join("auth").join(user);
        fs::copy(self.client_key.with_extension("pub"), &keys)
            .unwrap_or_else(|e| panic!("writing {}: {e}", keys.display()));
        set_mode(&keys, 0o644);
    }

    /// Options for the system `ssh` client to reach this server (destination not included).
    pub fn ssh_args(&self) -> Vec<String> {
        [
            // First: no ~/.ssh/config nor /etc/ssh/ssh_config, so a developer's `Host *`
            // (ControlMaster, ProxyJump, other keys) cannot change what the test does. ssh keeps
            // the last -F it is given; tools that add their own -F must add it after these.
            "-F",
            "/dev/null",
            "-p",
            &self.port.to_string(),
            "-i",
            &self.client_key.display().to_string(),
            "-o",
            "IdentitiesOnly=yes", // no keys from an ssh-agent
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes", // fail instead of prompting
            "-o",
            "ConnectTimeout=10",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The `ssh ...` command line as one string, for `rsync -e` (harness paths have no spaces).
    pub fn ssh_command(&self) -> String {
        format!("ssh {}", self.ssh_args().join(" "))
    }

    pub fn destination(&self) -> String {
        "root@127.0.0.1".to_owned()
    }

    /// Runs `cmd` on the server through the system `ssh` client; the caller checks the status.
    pub fn run(&self, cmd: &str) -> Output {
        Command::new("ssh")
            .args(self.ssh_args())
            .arg(self.destination())
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ssh: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/// MariaDB with a passwordless root, over the socket or TCP.
pub struct MariaDb {
    proc: Proc, // first: fields drop in order, so the server stops before its dir goes
    pub port: u16,
    pub socket: PathBuf,
    pub dir: TempDir,
    client: PathBuf,
    _owner: File,
}

/// Small redo log: the default 96 MiB would be copied for every instance. The server must be
/// given the same size, or it resizes the log at start-up.
const MARIADB_LOG_FILE_SIZE: &str = "--innodb-log-file-size=8M";

/// `--tmpdir=<dir>/tmp`, created. Each mariadbd needs its own: at start-up mariadbd deletes every
/// `#sql*` file in its tmpdir, which in a shared /tmp destroys the temporary tables of other
/// instances (seen as `mariadb-install-db` failing with "Unknown table 'mysql.tmp_user_sys'").
fn mariadb_tmpdir(dir: &Path) -> String {
    let tmp = dir.join("tmp");
    create_dir(&tmp);
    format!("--tmpdir={}", tmp.display())
}

/// How a MariaDB starts beyond the defaults every test shares.
#[derive(Default, Clone, Copy)]
pub struct MariaDbOptions {
    /// A replication source: binary log on, row format, this server id (the default server
    /// has id 1 and no binary log).
    pub binlog_server_id: Option<u32>,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        Self::start_with(MariaDbOptions::default())
    }

    pub fn start_with(options: MariaDbOptions) -> MariaDb {
        let mariadbd = require("/usr/sbin/mariadbd", "mariadb-server");
        let admin = require("mariadb-admin", "mariadb-client");
        let client = require("mariadb", "mariadb-client");
        let template = mariadb_template();
        start_with_retries("MariaDB", || {
            Self::try_start(&mariadbd, &admin, &client, template, options)
        })
    }

    fn try_start(
        mariadbd: &Path,
        admin: &Path,
        client: &Path,
        template: &Path,
        options: MariaDbOptions,
    ) -> Result<MariaDb, StartError> {
        let (dir, owner) = harness_dir("my");
        let d = dir.path();
        let data = d.join("data");
        copy_tree(&template.join("data"), &data);
        let port = free_port();
        let socket = d.join("mysqld.sock");
        // Without --log-error the error log goes to stderr, which lands in this file.
        let log = d.join("mariadbd.log");
        let mut proc = Proc::spawn(
            Command::new(mariadbd)
                .arg("--no-defaults") // must come first
                .arg("--user=root")
                .arg(format!("--datadir={}", data.display()))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--socket={}", socket.display()))
                .arg(mariadb_tmpdir(d))
                .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
                .arg("--skip-name-resolve")
                .arg("--innodb-buffer-pool-size=64M")
                .arg(MARIADB_LOG_FILE_SIZE)
                .arg("--innodb-flush-log-at-trx-commit=0")
                .arg("--skip-innodb-doublewrite")
                .arg("--character-set-server=utf8mb4")
                .args(options.binlog_server_id.map_or_else(Vec::new, |id| {
                    vec![
                        format!("--log-bin={}", d.join("binlog").display()),
                        format!("--server-id={id}"),
                        "--binlog-format=ROW".to_string(),
                    ]
                })),
            &log,
        );
        let mut ping = Command::new(admin);
        ping.arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["-uroot", "--connect-timeout=2", "ping"]);
        wait_ready(&mut proc, || succeeds(&mut ping)).map_err(|why| start_error(&why, &log))?;
        Ok(MariaDb {
            proc,
            port,
            socket,
            dir,
            client: client.to_owned(),
            _owner: owner,
        })
    }

    /// Runs `query` as root (`-NB`: tab-separated rows, no header); panics with stderr on failure.
    pub fn sql(&self, query: &str) -> String {
        stdout_text(&run_checked(
            Command::new(&self.client)
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "-NB", "-e", query]),
            &format!("MariaDB query {query:?}"),
        ))
    }
}

/// `mariadb-install-db` takes seconds: run it once per test process, then copy its result.
fn mariadb_template() -> &'static Path {
    static TEMPLATE: OnceLock<ProcessDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let install = require("mariadb-install-db", "mariadb-server");
            let template = ProcessDir::new("my-template");
            run_checked(
                Command::new(install)
                    .arg("--no-defaults") // must come first
                    .arg("--user=root")
                    .arg(format!(
                        "--datadir={}",
                        template.path().join("data").display()
                    ))
                    .arg("--auth-root-authentication-method=normal")
                    .arg("--skip-test-db")
                    .arg(MARIADB_LOG_FILE_SIZE)
                    .arg(mariadb_tmpdir(template.path())),
                "mariadb-install-db",
            );
            template
        })
        .path()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// PostgreSQL with user `postgres`, trust auth, on TCP and a Unix socket in `dir`.
pub struct Postgres {
    pub port: u16,
    /// Also the Unix socket dir (`-k`), owned by postgres.
    pub dir: TempDir,
    /// `/usr/lib/postgresql/<newest>/bin`: initdb, pg_ctl, pg_dump... are not on `PATH`.
    pub bin: PathBuf,
    data: PathBuf,
    _owner: File,
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// `logical`: a logical replication source (`wal_level=logical`, a few slots and senders);
    /// the default server keeps `replica`.
    pub fn start_with(logical: bool) -> Postgres {
        let bin = pg_bin();
        let pg_ctl = require(&bin.join("pg_ctl").to_string_lossy(), "postgresql");
        require(&bin.join("psql").to_string_lossy(), "postgresql");
        let template = postgres_template();
        start_with_retries("PostgreSQL", || {
            Self::try_start(&bin, &pg_ctl, template, logical)
        })
    }

    fn try_start(
        bin: &Path,
        pg_ctl: &Path,
        template: &Path,
        logical: bool,
    ) -> Result<Postgres, StartError> {
        let (dir, owner) = harness_dir("pg");
        let d = dir.path().to_owned();
        let (uid, gid) = postgres_ids();
        lchown(&d, Some(uid), Some(gid)).expect("chown the PostgreSQL dir to postgres");
        let data = d.join("data");
        copy_tree(&template.join("data"), &data);
        let port = free_port();
        // From here, Drop stops whatever pg_ctl may have left running.
        let pg = Postgres {
            port,
            dir,
            bin: bin.to_owned(),
            data,
            _owner: owner,
        };
        let log = d.join("server.log");
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off{}",
            d.display(),
            if logical {
                " -c wal_level=logical -c max_replication_slots=4 -c max_wal_senders=4"
            } else {
                ""
            }
        );
        let started = as_postgres(pg_ctl, &d)
            .arg("-D")
            .arg(&pg.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "-o", &options, "start"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        if !started.status.success() {
            let why = format!(
                "pg_ctl start failed ({}): {}",
                started.status,
                String::from_utf8_lossy(&started.stderr).trim()
            );
            return Err(start_error(&why, &log));
        }
        Ok(pg)
    }

    /// Asks every role but `postgres` for its password over TCP (SCRAM), as a production
    /// server does; `postgres` keeps trust for the harness's own `psql`.
    pub fn require_passwords(&self) {
        self.set_hba("host all all 127.0.0.1/32 scram-sha-256\n");
    }

    /// Replaces pg_hba.conf's rules with `rules` after the harness's own (`postgres` trusted
    /// on the socket and TCP), and reloads.
    pub fn set_hba(&self, rules: &str) {
        let hba = self.data.join("pg_hba.conf");
        let (uid, gid) = postgres_ids();
        fs::write(
            &hba,
            format!("local all all trust\nhost all postgres 127.0.0.1/32 trust\n{rules}"),
        )
        .expect("write pg_hba.conf");
        lchown(&hba, Some(uid), Some(gid)).expect("chown pg_hba.conf");
        assert_eq!(self.psql("postgres", "SELECT pg_reload_conf()"), "t");
    }

    /// Turns TLS on (`ssl = on`, no restart) with this certificate and key; `client_ca`
    /// checks the client certificates of `cert` rules in pg_hba.conf.
    pub fn serve_tls(&self, cert: &Path, key: &Path, client_ca: Option<&Path>) {
        let (uid, gid) = postgres_ids();
        let mut files = vec![("server.crt", cert), ("server.key", key)];
        files.extend(client_ca.map(|ca| ("client-ca.crt", ca)));
        let mut settings = vec!["ssl = on".to_string()];
        for (name, from) in files {
            let to = self.data.join(name);
            fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
            lchown(&to, Some(uid), Some(gid)).expect("chown a TLS file");
            set_mode(&to, 0o600);
            let key = match name {
                "server.crt" => "ssl_cert_file",
                "server.key" => "ssl_key_file",
                _ => "ssl_ca_file",
            };
            settings.push(format!("{key} = '{}'", to.display()));
        }
        for setting in settings {
            self.psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
        }
        assert_eq!(self.psql("postgres", "SELECT pg_reload_conf()"), "t");
        // The reload is asynchronous: wait until new sessions are offered TLS.
        wait_until(Duration::from_secs(10), "ssl = on", || {
            self.psql("postgres", "SHOW ssl") == "on"
        });
    }

    /// Runs `query` in database `db`: unaligned, tuples only (`|` between columns).
    pub fn psql(&self, db: &str, query: &str) -> String {
        stdout_text(&run_checked(
            Command::new(self.bin.join("psql"))
                .args(["-XAt", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", db, "-c", query]),
            &format!("psql {query:?}"),
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let stopped = succeeds(
            as_postgres(&self.bin.join("pg_ctl"), self.dir.path())
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "10", "stop"]),
        );
        if !stopped {
            // pg_ctl made the postmaster a daemon: find it by its pid file, checking that the PID
            // still belongs to this data dir.
            let pid_file = read_lossy(&self.data.join("postmaster.pid"));
            if let Some(pid) = pid_file.lines().next().and_then(|l| l.trim().parse().ok()) {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let data = self.data.display().to_string();
                if String::from_utf8_lossy(&cmdline).contains(&data) {
                    signal(pid, "KILL");
                }
            }
        }
    }
}

/// initdb and postgres refuse to run as root.
fn as_postgres(program: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(require("/usr/sbin/runuser", "util-linux"));
    // A cwd postgres cannot enter (the test's) makes its tools complain.
    cmd.current_dir(cwd)
        .args(["-u", "postgres", "--"])
        .arg(program);
    cmd
}

fn postgres_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("cannot run id");
            assert!(
                out.status.success(),
                "user `postgres` missing: install the Debian package `postgresql` (scripts/test installs it)"
            );
            stdout_text(&out).trim().parse().expect("numeric id")
        };
        (id("-u"), id("-g"))
    })
}

fn pg_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let newest = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .unwrap_or_else(|| {
                panic!(
                    "`/usr/lib/postgresql/<version>/bin` not found: install the Debian package \
                     `postgresql` (scripts/test installs it)"
                )
            });
        PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
    })
    .clone()
}

/// initdb takes seconds: run it once per test process, then copy its result.
fn postgres_template() -> &'static Path {
    static TEMPLATE: OnceLock<ProcessDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let initdb = require(&pg_bin().join("initdb").to_string_lossy(), "postgresql");
            let template = ProcessDir::new("pg-template");
            let (uid, gid) = postgres_ids();
            // initdb, as postgres, creates `data` in here (mode 0700, as postgres wants it).
            lchown(template.path(), Some(uid), Some(gid)).expect("chown the template to postgres");
            run_checked(
                as_postgres(&initdb, template.path())
                    .arg("-D")
                    .arg(template.path().join("data"))
                    .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                    .args(["--locale=C.UTF-8", "--no-sync"]),
                "initdb",
            );
            template
        })
        .path()
}

// ---------------------------------------------------------------------------------------------
// DNS: what BIND, Knot and PowerDNS share (zone files, TSIG key, dig and nsupdate)

/// Every DNS server here accepts updates signed with this key (secret generated per instance).
const TSIG_NAME: &str = "migkey";
const TSIG_ALGORITHM: &str = "hmac-sha256";

/// `$TTL 60`, the SOA (serial 1), the NS `ns1.<zone>.` and `ns1 A 127.0.0.1`, then `records`.
fn zone_file_text(zone: &str, records: &str) -> String {
    format!(
        "$TTL 60\n\
         @   IN SOA ns1.{zone}. hostmaster.{zone}. 1 60 60 600 60\n\
         @   IN NS  ns1.{zone}.\n\
         ns1 IN A   127.0.0.1\n\
         {records}\n"
    )
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("reading /dev/urandom: {e}"));
    bytes
}

/// A fresh hmac-sha256 secret in Base64: 32 bytes, as `tsig-keygen` makes.
fn random_tsig_secret() -> String {
    data_encoding::BASE64.encode(&random_bytes(32))
}

/// The clients every DNS server's `dig` and `nsupdate` methods run.
fn require_dns_clients() {
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
}

/// True when 127.0.0.1:`port` answers the SOA of `zone`: the server is up and has loaded it.
fn serves_soa(port: u16, zone: &str) -> bool {
    let soa = Command::new("dig")
        .args(["+short", "+norecurse", "+time=1", "+tries=1", "@127.0.0.1"])
        .args(["-p", &port.to_string(), zone, "SOA"])
        .stdin(Stdio::null())
        .output();
    soa.is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

fn dig_output(port: u16, options: &[&str], name: &str, rtype: &str) -> String {
    stdout_text(&run_checked(
        Command::new("dig").args(options).args([
            "+norecurse",
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            rtype,
        ]),
        &format!("dig {name} {rtype}"),
    ))
}

/// `dig +short` answers for `name`/`rtype`, sorted.
fn dig_short(port: u16, name: &str, rtype: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig_output(port, &["+short"], name, rtype)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// `(ttl, rdata)` of each answer record for `name`/`rtype`, sorted.
fn dig_answers(port: u16, name: &str, rtype: &str) -> Vec<(u32, String)> {
    let output = dig_output(port, &["+noall", "+answer"], name, rtype);
    let mut records: Vec<(u32, String)> = output
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .map(|line| {
            // owner TTL class type rdata...; rdata keeps its own spacing (TXT strings).
            let mut rest = line;
            let mut fields = Vec::new();
            for _ in 0..4 {
                let trimmed = rest.trim_start();
                let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
                fields.push(&trimmed[..end]);
                rest = &trimmed[end..];
            }
            let ttl = fields[1]
                .parse()
                .unwrap_or_else(|_| panic!("no TTL in dig answer {line:?}"));
            (ttl, rest.trim().to_owned())
        })
        .collect();
    records.sort();
    records
}

/// Sends `script` to 127.0.0.1:`port` as one update signed with `algorithm:name:secret`.
fn send_update(port: u16, (algorithm, name, secret): (&str, &str, &str), script: &str) {
    let key = format!("{algorithm}:{name}:{secret}");
    let input = format!("server 127.0.0.1 {port}\n{script}\nsend\n");
    run_with_input(
        Command::new("nsupdate").args(["-t", "10", "-y", &key]),
        input.as_bytes(),
        &format!("nsupdate\n{input}"),
    );
}

// ---------------------------------------------------------------------------------------------
// BIND

/// BIND 9 serving primary zones that accept RFC 2136 updates signed with the TSIG key.
pub struct Bind {
    proc: Proc, // first: fields drop in order, so the server stops before its dir goes
    pub port: u16,
    pub dir: TempDir,
    pub tsig_name: String,
    pub tsig_algorithm: String,
    /// Base64, as in `tsig-keygen` output.
    pub tsig_secret: String,
    /// Zone names, without the trailing dot.
    pub zones: Vec<String>,
    _owner: File,
}

impl Bind {
    /// Serves each `(zone, records)`: the harness writes `$TTL 60`, the SOA (serial 1), the NS
    /// `ns1.<zone>.` and `ns1 A 127.0.0.1`; `records` follow, e.g. `"www IN A 192.0.2.10\n"`.
    /// Dynamic updates go to `<zone>.zone.jnl`: read them back with `dig`, not from the file.
    pub fn start(zones: &[(&str, &str)]) -> Bind {
        let named = require("/usr/sbin/named", "bind9");
        let keygen = require("/usr/sbin/tsig-keygen", "bind9");
        let checkconf = require("named-checkconf", "bind9");
        require_dns_clients();
        start_with_retries("BIND", || {
            Self::try_start(&named, &keygen, &checkconf, zones, false)
        })
    }

    /// As [`Bind::start`], but zone transfers are allowed only when signed with the TSIG key
    /// (`allow-transfer { key migkey; };`), as production primaries usually do.
    pub fn start_transfer_with_key(zones: &[(&str, &str)]) -> Bind {
        let named = require("/usr/sbin/named", "bind9");
        let keygen = require("/usr/sbin/tsig-keygen", "bind9");
        let checkconf = require("named-checkconf", "bind9");
        require_dns_clients();
        start_with_retries("BIND", || {
            Self::try_start(&named, &keygen, &checkconf, zones, true)
        })
    }

    fn try_start(
        named: &Path,
        keygen: &Path,
        checkconf: &Path,
        zones: &[(&str, &str)],
        transfer_with_key_only: bool,
    ) -> Result<Bind, StartError> {
        let (dir, owner) = harness_dir("dns");
        let d = dir.path();
        let (tsig_name, tsig_algorithm) = (TSIG_NAME, TSIG_ALGORITHM);
        let key_file = d.join("tsig.key");
        let key = stdout_text(&run_checked(
            Command::new(keygen).args(["-a", tsig_algorithm, tsig_name]),
            "tsig-keygen",
        ));
        write_file(&key_file, format!("{key}\n"));
        let tsig_secret = key
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret \"")?.strip_suffix("\";"))
            .unwrap_or_else(|| panic!("no secret in tsig-keygen output {key:?}"))
            .to_owned();
        let port = free_port_udp_tcp();
        let d_str = d.display();
        let mut config = format!(
            "include \"{key_file}\";\n\
             options {{\n\
             \x20 directory \"{d_str}\";\n\
             \x20 pid-file \"{d_str}/named.pid\";\n\
             \x20 session-keyfile \"{d_str}/session.key\"; // the default needs /run/named\n\
             \x20 managed-keys-directory \"{d_str}\";\n\
             \x20 listen-on port {port} {{ 127.0.0.1; }};\n\
             \x20 listen-on-v6 {{ none; }};\n\
             \x20 recursion no;\n\
             \x20 dnssec-validation no;\n\
             \x20 notify no;\n\
             {small_messages}\
             }};\n\
             controls {{ }}; // no rndc channel on 127.0.0.1:953, which instances would share\n",
            key_file = key_file.display(),
            // Small transfer messages: a transfer of a few records spans several signed messages.
            small_messages = if transfer_with_key_only {
                "  transfer-message-size 512;\n"
            } else {
                ""
            },
        );
        let transfer = if transfer_with_key_only {
            format!("  allow-transfer {{ key {tsig_name}; }};\n")
        } else {
            String::new()
        };
        for (zone, records) in zones {
            let zone_file = d.join(format!("{zone}.zone"));
            write_file(&zone_file, zone_file_text(zone, records));
            config.push_str(&format!(
                "zone \"{zone}\" {{\n  type primary;\n  file \"{}\";\n  \
                 allow-update {{ key {tsig_name}; }};\n{transfer}}};\n",
                zone_file.display()
            ));
        }
        let conf = d.join("named.conf");
        write_file(&conf, &config);
        // -z loads the zones too: a typo in a test's records fails here, with named's message.
        run_checked(
            Command::new(checkconf).arg("-z").arg(&conf),
            "named-checkconf -z",
        );
        let log = d.join("named.log");
        // -g: foreground, logging to stderr; named stays root (no -u).
        let mut proc = Proc::spawn(Command::new(named).arg("-g").arg("-c").arg(&conf), &log);
        let ready = wait_ready(&mut proc, || {
            read_lossy(&log).lines().any(|l| l.ends_with(" running"))
                && zones.iter().all(|(zone, _)| serves_soa(port, zone))
        });
        ready.map_err(|why| start_error(&why, &log))?;
        // A port held by another socket with SO_REUSEPORT does not stop named: it logs
        // "address in use" and runs on, sharing the port. Our answers could then come from
        // the other server, so this instance is useless.
        if mentions_port_taken(&read_lossy(&log)) {
            return Err(start_error("named could not bind its whole port", &log));
        }
        Ok(Bind {
            proc,
            port,
            dir,
            tsig_name: tsig_name.to_owned(),
            tsig_algorithm: tsig_algorithm.to_owned(),
            tsig_secret,
            zones: zones.iter().map(|(z, _)| (*z).to_owned()).collect(),
            _owner: owner,
        })
    }

    /// `dig +short` answers for `name`/`rtype`, sorted.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        dig_short(self.port, name, rtype)
    }

    /// `(ttl, rdata)` of each answer record for `name`/`rtype`, sorted.
    pub fn dig_ttl(&self, name: &str, rtype: &str) -> Vec<(u32, String)> {
        dig_answers(self.port, name, rtype)
    }

    /// Sends one signed update: `server` is prepended and `send` appended to `script`
    /// (e.g. `"update delete www.example.test A\nupdate add www.example.test 60 A 192.0.2.20"`).
    pub fn nsupdate(&self, script: &str) {
        let key = (&*self.tsig_algorithm, &*self.tsig_name, &*self.tsig_secret);
        send_update(self.port, key, script);
    }
}

// ---------------------------------------------------------------------------------------------
// Knot DNS

/// Knot DNS serving primary zones that accept RFC 2136 updates signed with the TSIG key, and
/// AXFR from 127.0.0.1 without a key.
pub struct Knot {
    proc: Proc, // first: fields drop in order, so the server stops before its dir goes
    pub port: u16,
    pub dir: TempDir,
    pub tsig_name: String,
    pub tsig_algorithm: String,
    /// Base64.
    pub tsig_secret: String,
    /// Zone names, without the trailing dot.
    pub zones: Vec<String>,
    _owner: File,
}

impl Knot {
    /// Serves each `(zone, records)`, written as for [`Bind::start`]. Knot writes dynamic updates
    /// back to `<dir>/<zone>.zone` at once (`zonefile-sync: 0`).
    pub fn start(zones: &[(&str, &str)]) -> Knot {
        let knotd = require("/usr/sbin/knotd", "knot");
        let knotc = require("/usr/sbin/knotc", "knot");
        require_dns_clients();
        start_with_retries("Knot", || Self::try_start(&knotd, &knotc, zones))
    }

    fn try_start(knotd: &Path, knotc: &Path, zones: &[(&str, &str)]) -> Result<Knot, StartError> {
        let (dir, owner) = harness_dir("knot");
        let d = dir.path();
        // The journal lives here; without the dir every update fails with SERVFAIL.
        create_dir(&d.join("db"));
        let tsig_secret = random_tsig_secret();
        for (zone, records) in zones {
            write_file(
                &d.join(format!("{zone}.zone")),
                zone_file_text(zone, records),
            );
        }
        let port = free_port_udp_tcp();
        let d_str = d.display();
        let mut config = format!(
            "server:\n  \
               rundir: \"{d_str}\"\n  \
               listen: 127.0.0.1@{port}\n\
             control:\n  \
               listen: \"{d_str}/knot.sock\"\n\
             database:\n  \
               storage: \"{d_str}/db\"\n\
             log:\n  \
               - target: stderr\n    \
                 any: info\n\
             key:\n  \
               - id: {TSIG_NAME}\n    \
                 algorithm: {TSIG_ALGORITHM}\n    \
                 secret: {tsig_secret}\n\
             acl:\n  \
               - id: update\n    \
                 key: {TSIG_NAME}\n    \
                 action: update\n  \
               - id: transfer # the tool reads zones by AXFR, unsigned\n    \
                 address: 127.0.0.1\n    \
                 action: transfer\n\
             template:\n  \
               - id: default\n    \
                 storage: \"{d_str}\"\n    \
                 file: \"%s.zone\"\n    \
                 zonefile-sync: 0\n    \
                 acl: [update, transfer]\n\
             zone:\n"
        );
        for (zone, _) in zones {
            config.push_str(&format!("  - domain: {zone}\n"));
        }
        let conf = d.join("knot.conf");
        write_file(&conf, &config);
        // Checks the config and loads the zones offline: a typo in a test's records fails here,
        // with Knot's message, instead of as a zone that never answers.
        run_checked(
            Command::new(knotc).arg("-c").arg(&conf).arg("zone-check"),
            "knotc zone-check",
        );
        let log = d.join("knot.log");
        // Foreground by default; knotd stays root (no `user:`).
        let mut proc = Proc::spawn(Command::new(knotd).arg("-c").arg(&conf), &log);
        // knotd exits when it cannot bind (TCP has no SO_REUSEPORT), and logs this line only
        // once bound: no dig waits on a taken port's owner.
        wait_ready(&mut proc, || {
            read_lossy(&log).contains("server started")
                && zones.iter().all(|(zone, _)| serves_soa(port, zone))
        })
        .map_err(|why| start_error(&why, &log))?;
        Ok(Knot {
            proc,
            port,
            dir,
            tsig_name: TSIG_NAME.to_owned(),
            tsig_algorithm: TSIG_ALGORITHM.to_owned(),
            tsig_secret,
            zones: zones.iter().map(|(z, _)| (*z).to_owned()).collect(),
            _owner: owner,
        })
    }

    /// `dig +short` answers for `name`/`rtype`, sorted.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        dig_short(self.port, name, rtype)
    }

    /// `(ttl, rdata)` of each answer record for `name`/`rtype`, sorted.
    pub fn dig_ttl(&self, name: &str, rtype: &str) -> Vec<(u32, String)> {
        dig_answers(self.port, name, rtype)
    }

    /// Sends one signed update, as [`Bind::nsupdate`].
    pub fn nsupdate(&self, script: &str) {
        let key = (&*self.tsig_algorithm, &*self.tsig_name, &*self.tsig_secret);
        send_update(self.port, key, script);
    }
}

// ---------------------------------------------------------------------------------------------
// PowerDNS

const PDNS_SQLITE_SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";

/// PowerDNS Authoritative with the sqlite backend and the HTTP API, serving native zones that
/// accept RFC 2136 updates signed with the TSIG key, and AXFR from 127.0.0.0/8 without a key.
pub struct PowerDns {
    proc: Proc, // first: fields drop in order, so the server stops before its dir goes
    pub port: u16,
    /// HTTP API on 127.0.0.1, see `api_url`; requests need the header `X-API-Key: <api_key>`.
    pub api_port: u16,
    pub api_key: String,
    pub dir: TempDir,
    pub tsig_name: String,
    pub tsig_algorithm: String,
    /// Base64.
    pub tsig_secret: String,
    /// Zone names, without the trailing dot (the API wants it: `example.test.`).
    pub zones: Vec<String>,
    _owner: File,
}

impl PowerDns {
    /// Serves each `(zone, records)`, written as for [`Bind::start`] and loaded into
    /// `<dir>/pdns.sqlite3` with `pdnsutil load-zone`. An update bumps the SOA serial by one
    /// (SOA-EDIT-DNSUPDATE INCREASE, as BIND and Knot do; PowerDNS's default jumps to a date).
    pub fn start(zones: &[(&str, &str)]) -> PowerDns {
        let server = require("/usr/sbin/pdns_server", "pdns-server");
        let pdnsutil = require("pdnsutil", "pdns-server");
        let sqlite3 = require("sqlite3", "sqlite3");
        // The backend's .so sits in an arch-specific dir; its schema, from the same package, not.
        require_file(PDNS_SQLITE_SCHEMA, "pdns-backend-sqlite3");
        require_dns_clients();
        start_with_retries("PowerDNS", || {
            Self::try_start(&server, &pdnsutil, &sqlite3, zones)
        })
    }

    fn try_start(
        server: &Path,
        pdnsutil: &Path,
        sqlite3: &Path,
        zones: &[(&str, &str)],
    ) -> Result<PowerDns, StartError> {
        let (dir, owner) = harness_dir("pdns");
        let d = dir.path();
        let db = d.join("pdns.sqlite3");
        let schema = fs::read(PDNS_SQLITE_SCHEMA)
            .unwrap_or_else(|e| panic!("reading {PDNS_SQLITE_SCHEMA}: {e}"));
        run_with_input(
            Command::new(sqlite3).arg(&db),
            &schema,
            "sqlite3 (PowerDNS schema)",
        );
        let tsig_secret = random_tsig_secret();
        let api_key = data_encoding::HEXLOWER.encode(&random_bytes(16));
        let port = free_port_udp_tcp();
        let api_port = free_port();
        let d_str = d.display();
        write_file(
            &d.join("pdns.conf"),
            format!(
                "launch=gsqlite3\n\
                 gsqlite3-database={db}\n\
                 gsqlite3-pragma-synchronous=0\n\
                 local-address=127.0.0.1:{port}\n\
                 socket-dir={d_str}\n\
                 daemon=no\n\
                 guardian=no\n\
                 disable-syslog=yes\n\
                 loglevel=4\n\
                 # no version check by DNS query at start-up\n\
                 security-poll-suffix=\n\
                 api=yes\n\
                 api-key={api_key}\n\
                 webserver=yes\n\
                 webserver-address=127.0.0.1\n\
                 webserver-port={api_port}\n\
                 webserver-allow-from=127.0.0.0/8\n\
                 dnsupdate=yes\n\
                 allow-dnsupdate-from=127.0.0.0/8\n\
                 disable-axfr=no\n\
                 allow-axfr-ips=127.0.0.0/8\n\
                 # no caches: answers show the database at once, even after changes made behind pdns\n\
                 cache-ttl=0\n\
                 negquery-cache-ttl=0\n\
                 query-cache-ttl=0\n\
                 # SOA of zones created through the API without one\n\
                 default-soa-content=ns1.@ hostmaster.@ 0 60 60 600 60\n",
                db = db.display(),
            ),
        );
        // The trailing slash puts `<dir>/` on the command line, which `stop_processes_under`
        // looks for.
        let config_dir = format!("--config-dir={d_str}/");
        for (zone, records) in zones {
            let zone_file = d.join(format!("{zone}.zone"));
            write_file(&zone_file, zone_file_text(zone, records));
            // A typo in a test's records fails here, with pdnsutil's message.
            run_checked(
                Command::new(pdnsutil)
                    .arg(&config_dir)
                    .args(["load-zone", zone])
                    .arg(&zone_file),
                "pdnsutil load-zone",
            );
        }
        // What `pdnsutil import-tsig-key` and `set-meta` do, in one process instead of 1 + 2n.
        let sql = format!(
            "INSERT INTO tsigkeys (name, algorithm, secret) \
               VALUES ('{TSIG_NAME}', '{TSIG_ALGORITHM}', '{tsig_secret}');\n\
             INSERT INTO domainmetadata (domain_id, kind, content) \
               SELECT id, 'TSIG-ALLOW-DNSUPDATE', '{TSIG_NAME}' FROM domains;\n\
             INSERT INTO domainmetadata (domain_id, kind, content) \
               SELECT id, 'SOA-EDIT-DNSUPDATE', 'INCREASE' FROM domains;\n"
        );
        run_with_input(
            Command::new(sqlite3).arg(&db),
            sql.as_bytes(),
            "sqlite3 (PowerDNS TSIG key)",
        );
        let log = d.join("pdns.log");
        // Runs as root (no setuid=); it exits when it cannot bind its DNS port.
        let mut proc = Proc::spawn(Command::new(server).arg(&config_dir), &log);
        // Only probe the API once it is ours: a taken port's owner may never answer.
        let listening = format!("Listening for HTTP requests on 127.0.0.1:{api_port}");
        let ready = wait_ready(&mut proc, || {
            let text = read_lossy(&log);
            // A taken API port only gets a log line: stop waiting, fail below.
            mentions_port_taken(&text)
                || (text.contains(&listening)
                    && pdns_api_answers(api_port, &api_key)
                    && zones.iter().all(|(zone, _)| serves_soa(port, zone)))
        });
        ready.map_err(|why| start_error(&why, &log))?;
        if mentions_port_taken(&read_lossy(&log)) {
            return Err(start_error("pdns_server could not bind its API port", &log));
        }
        Ok(PowerDns {
            proc,
            port,
            api_port,
            api_key,
            dir,
            tsig_name: TSIG_NAME.to_owned(),
            tsig_algorithm: TSIG_ALGORITHM.to_owned(),
            tsig_secret,
            zones: zones.iter().map(|(z, _)| (*z).to_owned()).collect(),
            _owner: owner,
        })
    }

    /// `http://127.0.0.1:<api_port>`; the API is under `/api/v1/servers/localhost`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// `dig +short` answers for `name`/`rtype`, sorted.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        dig_short(self.port, name, rtype)
    }

    /// `(ttl, rdata)` of each answer record for `name`/`rtype`, sorted.
    pub fn dig_ttl(&self, name: &str, rtype: &str) -> Vec<(u32, String)> {
        dig_answers(self.port, name, rtype)
    }

    /// Sends one signed update, as [`Bind::nsupdate`].
    pub fn nsupdate(&self, script: &str) {
        let key = (&*self.tsig_algorithm, &*self.tsig_name, &*self.tsig_secret);
        send_update(self.port, key, script);
    }
}

/// True when the PowerDNS API on 127.0.0.1:`port` answers 200 to `api_key`: up, and ours.
fn pdns_api_answers(port: u16, api_key: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let request = format!(
        "GET /api/v1/servers/localhost HTTP/1.0\r\nHost: 127.0.0.1\r\nX-API-Key: {api_key}\r\n\r\n"
    );
    let mut status = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_ok()
        && stream.write_all(request.as_bytes()).is_ok()
        && BufReader::new(stream).read_line(&mut status).is_ok()
        && status.split_whitespace().nth(1) == Some("200")
}

// ---------------------------------------------------------------------------------------------
// Dovecot

/// Dovecot IMAP with passwd-file users whose mail is `maildir:~/Maildir`; plaintext unless
/// `DovecotOptions::tls`.
pub struct Dovecot {
    proc: Proc, // first: fields drop in order, so the server stops before its dir goes
    pub port: u16,
    pub dir: TempDir,
    /// Owner of all mail files (uid and gid); files a test puts in a Maildir must belong to it.
    pub mail_uid: u32,
    /// With TLS: the IMAPS port (STARTTLS is offered on `port`) and the CA that signed the
    /// server's certificate (for 127.0.0.1 and localhost).
    pub imaps_port: Option<u16>,
    pub ca_file: Option<PathBuf>,
    _owner: File,
}

/// Extra server features for mail tests.
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// IMAPS and STARTTLS with a certificate from a CA made for this server.
    pub tls: bool,
    /// The quota plugin: per-user limits come from `Dovecot::set_quota`.
    pub quota: bool,
    /// Messages larger than this are refused (`quota_max_mail_size`, e.g. `100k`).
    pub max_mail_size: Option<String>,
    /// The personal namespace's prefix and hierarchy separator, e.g. (`INBOX.`, '.') as
    /// Courier serves it, or (``, '/').
    pub namespace: Option<(String, char)>,
}

/// A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI.
pub fn make_test_ca(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require("openssl", "openssl");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run_checked(
        Command::new(&openssl)
            .current_dir(d)
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=transhumance test CA",
            ]),
        "openssl CA",
    );
    run_checked(
        Command::new(&openssl)
            .current_dir(d)
            .arg("req")
            .args(ec)
            .args([
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ]),
        "openssl CSR",
    );
    write_file(
        &d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    run_checked(
        Command::new(&openssl).current_dir(d).args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]),
        "openssl sign",
    );
    (d.join("ca.pem"), d.join("server.pem"), d.join("server.key"))
}

impl Dovecot {
    /// Serves `(user, plain password)` accounts; the home of user U is `<dir>/mail/U`.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Self::start_with(users, &DovecotOptions::default())
    }

    /// `start` with TLS, quotas or a message size limit.
    pub fn start_with(users: &[(&str, &str)], options: &DovecotOptions) -> Dovecot {
        let dovecot = require("/usr/sbin/dovecot", "dovecot-imapd");
        require("doveadm", "dovecot-imapd");
        start_with_retries("Dovecot", || Self::try_start(&dovecot, users, options))
    }

    /// Gives `user` a storage quota such as `300K` (needs `DovecotOptions::quota`), in force
    /// from the user's next login.
    pub fn set_quota(&self, user: &str, storage: &str) {
        self.write_users(Some((user, storage)));
        // The auth process keeps the users file it read: a reload makes it read it again.
        self.doveadm(&["reload"]);
        let wanted = format!("storage={storage}");
        wait_until(START_TIMEOUT, "Dovecot to read the new quota", || {
            Command::new("doveadm")
                .arg("-c")
                .arg(self.dir.path().join("dovecot.conf"))
                .args(["user", user])
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&wanted)
                })
        });
    }

    fn write_users(&self, quota: Option<(&str, &str)>) {
        let d = self.dir.path();
        let mut passwd = String::new();
        let old = read_lossy(&d.join("users"));
        for line in old.lines() {
            let name = line.split(':').next().unwrap_or("");
            match quota {
                Some((u, storage)) if u == name => {
                    let fields: Vec<&str> = line.split(':').collect();
                    passwd.push_str(&format!(
                        "{}:userdb_quota_rule=*:storage={storage}\n",
                        fields[..7].join(":")
                    ));
                }
                _ => {
                    passwd.push_str(line);
                    passwd.push('\n');
                }
            }
        }
        write_file(&d.join("users"), passwd);
    }

    fn try_start(
        dovecot: &Path,
        users: &[(&str, &str)],
        options: &DovecotOptions,
    ) -> Result<Dovecot, StartError> {
        let (dir, owner) = harness_dir("imap");
        let d = dir.path();
        // Dovecot's unprivileged processes (auth, login, mail as MAIL_UID) need to get in.
        set_mode(d, 0o755);
        for sub in ["mail", "run", "state"] {
            create_dir(&d.join(sub));
        }
        let mut passwd = String::new();
        for (user, password) in users {
            assert!(
                !user.contains([':', '\n', '/']) && !password.contains([':', '\n']),
                "user {user:?} or its password does not fit a passwd-file"
            );
            let home = d.join("mail").join(user);
            create_dir(&home);
            passwd.push_str(&format!(
                "{user}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_UID}::{}::\n",
                home.display()
            ));
        }
        chown_tree(&d.join("mail"), MAIL_UID, MAIL_UID);
        write_file(&d.join("users"), passwd);
        let port = free_port();
        let d_str = d.display();
        let conf = d.join("dovecot.conf");
        let (ssl, imaps_port, ca_file) = if options.tls {
            let (ca, cert, key) = make_test_ca(d);
            let imaps = free_port();
            (
                format!(
                    "yes\nssl_cert = <{}\nssl_key = <{}",
                    cert.display(),
                    key.display()
                ),
                Some(imaps),
                Some(ca),
            )
        } else {
            ("no".to_string(), None, None)
        };
        let imaps_listener = match imaps_port {
            Some(p) => format!("address = 127.0.0.1\n    port = {p}"),
            None => "port = 0".to_string(),
        };
        let mut plugins = String::new();
        if options.quota {
            plugins.push_str("mail_plugins = $mail_plugins quota\nprotocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}\n");
            plugins.push_str(&format!(
                "plugin {{\n  quota = count:User quota\n  quota_vsizes = yes\n  {}\n}}\n",
                options
                    .max_mail_size
                    .as_ref()
                    .map(|m| format!("quota_max_mail_size = {m}"))
                    .unwrap_or_default()
            ));
        } else if let Some(m) = &options.max_mail_size {
            plugins.push_str(&format!(
                "mail_plugins = $mail_plugins quota\nplugin {{\n  quota = count:User quota\n  quota_vsizes = yes\n  quota_max_mail_size = {m}\n}}\n"
            ));
        }
        if let Some((prefix, sep)) = &options.namespace {
            plugins.push_str(&format!(
                "namespace inbox {{\n  inbox = yes\n  separator = {sep}\n  prefix = {prefix}\n}}\n"
            ));
        }
        write_file(
            &conf,
            format!(
                "base_dir = {d_str}/run\n\
                 state_dir = {d_str}/state\n\
                 instance_name = dovecot-{port}\n\
                 protocols = imap\n\
                 listen = 127.0.0.1\n\
                 ssl = {ssl}\n\
                 {plugins}\
                 disable_plaintext_auth = no\n\
                 auth_mechanisms = plain login\n\
                 log_path = {d_str}/dovecot.log\n\
                 mail_location = maildir:~/Maildir\n\
                 first_valid_uid = 1000\n\
                 passdb {{\n  driver = passwd-file\n  \
                   args = scheme=PLAIN username_format=%u {d_str}/users\n}}\n\
                 userdb {{\n  driver = passwd-file\n  args = username_format=%u {d_str}/users\n}}\n\
                 service imap-login {{\n  \
                   inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  \
                   inet_listener imaps {{\n    {imaps_listener}\n  }}\n}}\n\
                 service stats {{\n  \
                   unix_listener stats-reader {{\n    mode = 0666\n  }}\n  \
                   unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n"
            ),
        );
        let log = d.join("dovecot.log");
        // -F: foreground. The master stays root and starts processes as dovecot, dovenull and
        // MAIL_UID; stopping it stops them.
        let mut proc = Proc::spawn(Command::new(dovecot).arg("-F").arg("-c").arg(&conf), &log);
        wait_ready(&mut proc, || {
            imap_greeting(port).is_some_and(|g| g.starts_with("* OK"))
        })
        .map_err(|why| start_error(&why, &log))?;
        Ok(Dovecot {
            proc,
            port,
            dir,
            mail_uid: MAIL_UID,
            imaps_port,
            ca_file,
            _owner: owner,
        })
    }

    /// `<dir>/mail/<user>/Maildir` (Dovecot creates it when the user's mail is first opened).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user).join("Maildir")
    }

    /// Gives `path` (recursively) to the mail uid, e.g. after a test wrote messages as root.
    pub fn chown_to_mail_user(&self, path: &Path) {
        chown_tree(path, self.mail_uid, self.mail_uid);
    }

    /// Runs `doveadm -c <dir>/dovecot.conf args...` against this instance; panics on failure.
    pub fn doveadm(&self, args: &[&str]) -> String {
        self.doveadm_with_input(args, &[])
    }

    /// `doveadm` with `input` on stdin, e.g. `["save", "-u", user, "-m", "INBOX"]` and a message.
    pub fn doveadm_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let conf = self.dir.path().join("dovecot.conf");
        stdout_text(&run_with_input(
            Command::new("doveadm").arg("-c").arg(&conf).args(args),
            input,
            &format!("doveadm {args:?}"),
        ))
    }
}

/// The first line an IMAP server sends on 127.0.0.1:`port`, if it sends one within a second.
fn imap_greeting(port: u16) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

// ---------------------------------------------------------------------------------------------
// sshd going away and coming back

impl Sshd {
    /// Stops the server and every session it serves (as a reboot or a crash would: clients see
    /// their connections drop), then starts it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Stops the server and every session it serves; `start_again` brings it back.
    pub fn kill(&mut self) {
        let mut tree = vec![self.proc.child.id()];
        let mut i = 0;
        while i < tree.len() {
            tree.extend(children_of(tree[i]));
            i += 1;
        }
        for pid in tree.iter().rev() {
            signal(*pid, "KILL");
        }
        self.proc.stop();
    }

    /// Starts the server again after `kill`, on the same port with the same keys.
    pub fn start_again(&mut self) {
        let d = self.dir.path();
        let log = d.join("sshd.log");
        let listening = format!("Server listening on 127.0.0.1 port {}.", self.port);
        let before = read_lossy(&log).matches(&listening).count();
        self.proc = Proc::spawn(
            Command::new("/usr/sbin/sshd")
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(d.join("sshd_config")),
            &log,
        );
        if let Err(why) = wait_ready(&mut self.proc, || {
            read_lossy(&log).matches(&listening).count() > before
        }) {
            panic!("sshd did not start again on port {}: {why}", self.port);
        }
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .is_some_and(|ppid| ppid == pid.to_string())
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading a whole zone back (the chaos test compares every record before and after)

/// One record of a zone transfer: absolute owner name (lowercase, trailing dot), TTL, type and
/// rdata as `dig` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ZoneRecord {
    pub owner: String,
    pub ttl: u32,
    pub rtype: String,
    pub rdata: String,
}

impl Bind {
    /// Every record of `zone` by AXFR (unsigned, from 127.0.0.1), SOA left out (its serial moves
    /// with every update), sorted.
    pub fn axfr(&self, zone: &str) -> Vec<ZoneRecord> {
        let text = dig_output(self.port, &["+noall", "+answer"], zone, "AXFR");
        let mut records: Vec<ZoneRecord> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
            .map(|line| {
                let mut fields = line.split_whitespace();
                let owner = fields.next().unwrap_or_default().to_ascii_lowercase();
                let ttl = fields
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("no TTL in AXFR line {line:?}"));
                let _class = fields.next();
                let rtype = fields.next().unwrap_or_default().to_ascii_uppercase();
                let rdata = fields.collect::<Vec<_>>().join(" ");
                ZoneRecord {
                    owner,
                    ttl,
                    rtype,
                    rdata,
                }
            })
            .filter(|r| r.rtype != "SOA")
            .collect();
        records.sort();
        records.dedup();
        records
    }
}
