//! Ctrl-C and SIGTERM during a cutover: the first one raises the lifecycle's stop flag (the run
//! finishes or undoes the step each site is in, then says what it left); any second one gets
//! the default action and kills us (what `resume` is for).

use crate::lifecycle::migrate::Interrupt;

/// The process's stop flag, raised by the handler below.
pub static STOP: Interrupt = Interrupt::new();

const SAID: &[u8] = b"\ninterrupt: finishing or undoing the step each site is in (sites not yet switched are unfrozen); press Ctrl-C again to kill\n";

extern "C" fn on_signal(signal: libc::c_int) {
    STOP.raise(signal);
    // SAFETY: `signal` and `write` are async-signal-safe; the message is a static buffer.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::write(2, SAID.as_ptr().cast(), SAID.len());
    }
}

/// Installs the handler for SIGINT and SIGTERM; returns the flag to hand the migration.
pub fn install() -> &'static Interrupt {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a plain sigaction with a handler that only stores an atomic and writes.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler;
            // Interrupted reads and waits go on: the flag is read between steps.
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    &STOP
}
