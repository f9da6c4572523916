//! Where output goes: data on stdout, everything else on stderr, decided once.

use std::io::IsTerminal;

use super::Cli;

/// Output settings from the global flags.
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub progress: bool,
    /// `--yes`: the confirmation questions are answered yes (scripts).
    pub yes: bool,
}

impl Printer {
    pub fn new(cli: &Cli) -> Printer {
        Printer {
            json: cli.json,
            quiet: cli.quiet,
            verbose: cli.verbose,
            progress: !cli.no_progress
                && !cli.quiet
                && !cli.json
                && std::io::stderr().is_terminal(),
            yes: cli.yes,
        }
    }

    /// A status line on stderr, unless quiet (in the run's log in any case).
    pub fn status(&self, message: impl AsRef<str>) {
        super::run_log::record("status", message.as_ref());
        if !self.quiet {
            eprintln!("{}", message.as_ref());
        }
    }

    /// An error on stderr, always.
    pub fn error(&self, message: impl AsRef<str>) {
        super::run_log::record("error", message.as_ref());
        eprintln!("error: {}", message.as_ref());
    }

    /// A line on stderr even when quiet: what a question or a stop needs the operator to read.
    pub fn notice(&self, message: impl AsRef<str>) {
        super::run_log::record("notice", message.as_ref());
        eprintln!("{}", message.as_ref());
    }

    /// Whether a question can be asked: stdin and stderr are both terminals.
    pub fn interactive(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Shows `summary` and asks `question [y/N]` on stderr, reading the answer from the terminal
    /// (stdin): true only for `y` or `yes`; end of input is no.
    pub fn ask(&self, summary: &str, question: &str) -> bool {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{summary}{question} [y/N] ");
        let _ = err.flush();
        drop(err);
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }
}

/// The width text output fits: `COLUMNS` when set, else the width of the terminal stdout is;
/// none for a file or a pipe (lines stay whole for the tools reading them).
pub fn text_width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(cols.max(40));
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass; stdout is a terminal (checked above).
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then(|| usize::from(size.ws_col).max(40))
}

/// Writes data to stdout; when the reader went away (`| head`), ends quietly with success, as
/// Unix tools do. (SIGPIPE stays ignored: pipes to ssh must fail as errors, not kill us.)
pub fn out(text: &str) {
    use std::io::Write;
    super::run_log::record("out", text);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes data to stdout as `write` produces it (a report of many sites is never held whole),
/// with the same ending as `out` when the reader goes away. A run that keeps a log gets the
/// whole text through `out`, so the log holds it too.
pub fn out_streamed(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) {
    use std::io::Write;
    if super::run_log::path().is_some() {
        let mut bytes = Vec::new();
        if write(&mut bytes).is_ok() {
            out(&String::from_utf8_lossy(&bytes));
        }
        return;
    }
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if let Err(e) = write(&mut stdout).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}
