//! The only place that knows indicatif: engine events become progress bars or JSON lines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::{Event, Observer};
use crate::plan::units::{human_bytes, human_duration};
use crate::progress::{Meters, PhaseProgress};

/// A bar is redrawn at most this often while bytes stream (indicatif draws at 20 Hz anyway).
const REDRAW: Duration = Duration::from_millis(100);

/// JSON `progress` records of a phase come at most this often, plus one as it ends.
const RECORD_EVERY: Duration = Duration::from_millis(200);

/// Shows one bar per running phase: units, or for a phase that moves bytes, bytes of the
/// total, rate, time left and the unit in flight. Unit failures are printed above the bars;
/// nothing stays on screen once the run is over (`finish`, or when dropped).
pub struct Bars {
    multi: MultiProgress,
    shown: Mutex<Shown>,
}

#[derive(Default)]
struct Shown {
    bars: HashMap<String, Bar>,
    meters: Meters,
}

struct Bar {
    bar: ProgressBar,
    /// Whether it is drawn as a bar with a length now (else as a spinner).
    with_length: bool,
    drawn: Option<Instant>,
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
            shown: Mutex::new(Shown::default()),
        }
    }

    fn clear(&self) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        for (_, b) in shown.bars.drain() {
            b.bar.finish_and_clear();
            self.multi.remove(&b.bar);
        }
        shown.meters.clear();
        let _ = self.multi.clear();
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.clear();
    }
}

impl Observer for Bars {
    fn on_event(&self, event: &Event) {
        let now = Instant::now();
        let mut guard = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let shown = &mut *guard;
        if let Event::PhaseStarted { phase, .. } = event
            && let Some(old) = shown.bars.remove(phase)
        {
            old.bar.finish_and_clear();
            self.multi.remove(&old.bar);
        }
        let Some(phase) = shown.meters.apply(event, now) else {
            match event {
                Event::Info { message } => {
                    let _ = self.multi.println(message);
                }
                _ => {
                    if let Some(line) = overridden_line(event) {
                        let _ = self.multi.println(line);
                    }
                }
            }
            return;
        };
        if let Event::PhaseFinished { .. } = event {
            shown.meters.remove(&phase);
            if let Some(b) = shown.bars.remove(&phase) {
                b.bar.finish_and_clear();
                self.multi.remove(&b.bar);
            }
            return;
        }
        if let Event::UnitFailed { unit, error, .. } = event {
            let _ = self.multi.println(format!("{phase}: {unit}: {error}"));
        }
        let b = shown.bars.entry(phase.clone()).or_insert_with(|| {
            // Styled before it is shown: the default style would flash first.
            let bar = ProgressBar::no_length();
            bar.set_style(style(false));
            bar.set_prefix(phase.clone());
            Bar {
                bar: self.multi.add(bar),
                with_length: false,
                drawn: None,
            }
        });
        // Bytes stream in small steps: those are drawn now and then, everything else at once.
        if matches!(event, Event::BytesDone { .. })
            && b.drawn
                .is_some_and(|t| now.saturating_duration_since(t) < REDRAW)
        {
            return;
        }
        b.drawn = Some(now);
        if let Some(p) = shown.meters.phase(&phase) {
            draw(b, p, event, now);
        }
    }

    fn finish(&self) {
        self.clear();
    }
}

/// A bar with a length, or a spinner; the message says the rest.
fn style(with_length: bool) -> ProgressStyle {
    let template = if with_length {
        "{prefix:>12} [{bar:20}] {wide_msg}"
    } else {
        "{prefix:>12} {spinner} {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .expect("template")
        .progress_chars("=> ")
}

/// Draws one phase's bar as its progress stands.
fn draw(b: &mut Bar, p: &PhaseProgress, event: &Event, now: Instant) {
    let by_bytes = p.counts_bytes();
    let (len, pos) = if by_bytes {
        (p.total_bytes, p.bytes.min(p.total_bytes))
    } else {
        (p.total_units, p.units.min(p.total_units))
    };
    if b.with_length != (len > 0) {
        b.with_length = len > 0;
        b.bar.set_style(style(b.with_length));
    }
    b.bar.set_length(len);
    b.bar.set_position(pos);
    let units = match p.total_units {
        0 => format!("{}", p.units),
        n => format!("{}/{n}", p.units),
    };
    let msg = if by_bytes {
        let mut m = match p.total_bytes {
            0 => human_bytes(p.bytes),
            t => format!("{}/{}", human_bytes(p.bytes), human_bytes(t)),
        };
        if let Some(rate) = p.bytes_per_sec(now) {
            m.push_str(&format!(" {}/s", human_bytes(rate)));
        }
        if let Some(eta) = p.eta_secs(now).filter(|s| *s > 0) {
            m.push_str(&format!(
                " ETA {}",
                human_duration(Duration::from_secs(eta))
            ));
        }
        if let Some(unit) = p.in_flight() {
            m.push_str(&format!(" {unit}"));
        }
        m
    } else {
        // A phase of units names the last one done (or started).
        let last = match event {
            Event::UnitDone { unit, .. }
            | Event::UnitFailed { unit, .. }
            | Event::UnitStarted { unit, .. } => unit.as_str(),
            _ => "",
        };
        if p.units == 0 && p.total_units == 0 {
            last.to_string()
        } else {
            format!("{units} {last}")
        }
    };
    b.bar.set_message(msg);
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

/// Writes events as JSON lines on stderr (stdout stays for the result). Bytes as they stream
/// and the unit in flight are folded into `progress` records (at most five a second per
/// phase, and one as the phase ends); every other event is written as it is.
#[derive(Default)]
pub struct JsonLines {
    meters: Mutex<Meters>,
}

impl JsonLines {
    fn write(line: impl serde::Serialize) {
        if let Ok(line) = serde_json::to_string(&line) {
            eprintln!("{line}");
        }
    }
}

impl Observer for JsonLines {
    fn on_event(&self, event: &Event) {
        let now = Instant::now();
        let mut meters = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        let phase = meters.apply(event, now);
        match (event, phase) {
            (Event::BytesDone { .. } | Event::UnitStarted { .. }, Some(phase)) => {
                if meters.due(&phase, now, RECORD_EVERY)
                    && let Some(r) = meters.record(&phase, now)
                {
                    Self::write(r);
                }
            }
            (Event::PhaseFinished { .. }, Some(phase)) => {
                if let Some(r) = meters
                    .record(&phase, now)
                    .filter(|r| r.bytes > 0 || r.total_bytes > 0)
                {
                    Self::write(r);
                }
                meters.remove(&phase);
                Self::write(event);
            }
            _ => Self::write(event),
        }
    }
}
