//! Command-line entry point: parse, run, exit with a stable code.
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    report_peak_at_exit();
    let cli = match transhumance::cli::Cli::try_parse_ordered(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap's own codes: 0 for --help/--version, 2 for usage errors, as ours; with
            // `plan --detailed-exitcode`, 2 means changes pending, so a usage error is 1.
            // With `--rsync-exit-codes`, a usage error is rsync's 1 (syntax or usage error).
            let code = match e.exit_code() {
                2 if std::env::args_os()
                    .any(|a| a == "--detailed-exitcode" || a == "--rsync-exit-codes") =>
                {
                    1
                }
                c => c as u8,
            };
            return ExitCode::from(code);
        }
    };
    ExitCode::from(transhumance::cli::run(cli))
}

/// The engine moves data in 256 KiB chunks. glibc serves those from fresh mmaps and gives freed
/// memory straight back, so every chunk paid page faults and zeroing (measured: a tenth of the
/// CPU of a copy). Keeping them on the heap makes each buffer reuse warm memory.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Memory tests set `TRANSHUMANCE_PEAK_FILE`: at exit this process writes its own peak RSS
/// (`VmHWM`, in kB) there. The `ru_maxrss` a parent gets from `wait4` is no substitute: a
/// child started with `vfork` (as std does) inherits its parent's peak at `exec`, so it would
/// measure the test process as much as this one.
fn report_peak_at_exit() {
    extern "C" fn write_peak() {
        let Some(path) = std::env::var_os("TRANSHUMANCE_PEAK_FILE") else {
            return;
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kb) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
            let _ = std::fs::write(path, kb.trim().trim_end_matches(" kB"));
        }
    }
    if std::env::var_os("TRANSHUMANCE_PEAK_FILE").is_some() {
        // SAFETY: registers a plain function with no captured state, run once at exit.
        unsafe { libc::atexit(write_peak) };
    }
}
