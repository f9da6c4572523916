//! The only place that knows indicatif: engine events become progress bars or JSON lines.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::{Event, Observer};

/// Shows one bar per running phase; unit failures are printed above the bars.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Observer for Bars {
    fn on_event(&self, event: &Event) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::PhaseStarted { phase, total } => {
                let bar = if *total > 0 {
                    let b = ProgressBar::new(*total);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({eta})",
                        )
                        .expect("template")
                        .progress_chars("=> "),
                    );
                    b
                } else {
                    ProgressBar::new_spinner()
                };
                bar.set_prefix(phase.clone());
                bars.insert(phase.clone(), self.multi.add(bar));
            }
            Event::UnitDone { phase, unit } => {
                if let Some(b) = bars.get(phase) {
                    b.inc(1);
                    b.set_message(unit.clone());
                }
            }
            Event::UnitFailed { phase, unit, error } => {
                if let Some(b) = bars.get(phase) {
                    b.inc(1);
                }
                let _ = self.multi.println(format!("{phase}: {unit}: {error}"));
            }
            Event::BytesTotal { phase, bytes } => {
                let b = ProgressBar::new(*bytes);
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("{phase} bytes"));
                bars.insert(format!("{phase}#bytes"), self.multi.add(b));
            }
            Event::BytesDone { phase, bytes } => {
                if let Some(b) = bars.get(&format!("{phase}#bytes")) {
                    b.inc(*bytes);
                }
            }
            Event::PhaseFinished { phase } => {
                for key in [phase.clone(), format!("{phase}#bytes")] {
                    if let Some(b) = bars.remove(&key) {
                        b.finish_and_clear();
                    }
                }
            }
            Event::Info { message } => {
                let _ = self.multi.println(message);
            }
            Event::CheckOverridden { .. } => {
                if let Some(line) = overridden_line(event) {
                    let _ = self.multi.println(line);
                }
            }
        }
    }
}

/// The line every overridden check gets, whatever else is shown.
pub fn overridden_line(event: &Event) -> Option<String> {
    match event {
        Event::CheckOverridden {
            check,
            subject,
            reason,
            by,
        } => {
            let how = if by == "--allow" {
                format!("--allow {check}")
            } else {
                by.clone()
            };
            Some(format!(
                "warning: check `{check}` overridden by {how}: {subject}: {reason}"
            ))
        }
        _ => None,
    }
}

/// Without progress bars: only what must always be said (overridden checks).
pub struct Plain;

impl Observer for Plain {
    fn on_event(&self, event: &Event) {
        if let Some(line) = overridden_line(event) {
            eprintln!("{line}");
        }
    }
}

/// Progress without a terminal (`copy --progress`, `-P`): one line per file written, on
/// stderr, with how many of the phase's files are done.
#[derive(Default)]
pub struct FileLines {
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl Observer for FileLines {
    fn on_event(&self, event: &Event) {
        use std::sync::atomic::Ordering::Relaxed;
        match event {
            Event::PhaseStarted { phase, total } if phase == "files" => {
                self.total.store(*total, Relaxed);
                self.done.store(0, Relaxed);
            }
            Event::UnitDone { phase, unit } if phase == "files" => {
                let n = self.done.fetch_add(1, Relaxed) + 1;
                eprintln!("{unit} ({n}/{} files)", self.total.load(Relaxed));
            }
            Event::UnitFailed { phase, unit, error } => {
                eprintln!("{phase}: {unit}: {error}");
            }
            _ => {
                if let Some(line) = overridden_line(event) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Writes every event as one JSON line on stderr (stdout stays for the result).
pub struct JsonLines;

impl Observer for JsonLines {
    fn on_event(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            eprintln!("{line}");
        }
    }
}
