//! Progress as a display shows it, phase by phase: bytes done of the total, the rate over the
//! last seconds, the time left, the unit in flight. Pure bookkeeping over events and instants
//! the caller gives; the CLI only renders it (bars, JSON `progress` records).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::event::Event;

/// The rate is measured over about this much of the recent past.
const WINDOW: Duration = Duration::from_secs(10);
/// Units in flight remembered at most (engines under a plan run do not say when each is done).
const IN_FLIGHT: usize = 64;
/// Rate samples are kept at least this far apart.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Under this much measured time no rate is given: it would jump about.
const MIN_SPAN: Duration = Duration::from_millis(500);

/// Where one phase stands.
#[derive(Debug, Clone, Default)]
pub struct PhaseProgress {
    /// Units done (or failed) of `total_units` (0 when unknown).
    pub units: u64,
    pub total_units: u64,
    /// Bytes done of `total_bytes` (0 when unknown).
    pub bytes: u64,
    pub total_bytes: u64,
    /// Units started and not done yet, oldest first.
    in_flight: VecDeque<String>,
    /// `(when, bytes done then)`, oldest first.
    samples: VecDeque<(Instant, u64)>,
    last_record: Option<Instant>,
}

impl PhaseProgress {
    /// The unit that started last and is not done yet.
    pub fn in_flight(&self) -> Option<&str> {
        self.in_flight.back().map(String::as_str)
    }

    fn started(&mut self, unit: &str) {
        if self.in_flight.len() == IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(unit.to_string());
    }

    fn ended(&mut self, unit: &str) {
        if let Some(i) = self.in_flight.iter().rposition(|u| u == unit) {
            self.in_flight.remove(i);
        }
    }

    /// Whether the phase moves bytes (a display then shows bytes, rate and time left).
    pub fn counts_bytes(&self) -> bool {
        self.total_bytes > 0 || self.bytes > 0
    }

    /// Bytes per second over the last `WINDOW`, once at least `MIN_SPAN` was measured.
    pub fn bytes_per_sec(&self, now: Instant) -> Option<u64> {
        let start = now.checked_sub(WINDOW);
        // The newest sample at or before the window's start, else the oldest there is.
        let (t0, b0) = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| start.is_some_and(|s| *t <= s))
            .or_else(|| self.samples.front())
            .copied()?;
        let span = now.checked_duration_since(t0)?;
        if span < MIN_SPAN {
            return None;
        }
        Some(((self.bytes - b0.min(self.bytes)) as f64 / span.as_secs_f64()) as u64)
    }

    /// Seconds left at the current rate (rounded up): 0 once the total is reached, `None`
    /// while the total or the rate is unknown, or nothing moves.
    pub fn eta_secs(&self, now: Instant) -> Option<u64> {
        if self.total_bytes == 0 {
            return None;
        }
        let left = self.total_bytes.saturating_sub(self.bytes);
        if left == 0 {
            return Some(0);
        }
        let rate = self.bytes_per_sec(now).filter(|r| *r > 0)?;
        Some(left.div_ceil(rate))
    }

    fn add_bytes(&mut self, n: u64, now: Instant) {
        if self.samples.is_empty() {
            // The rate counts from the first bytes, not from a scan that came before them.
            self.samples.push_back((now, self.bytes));
        }
        self.bytes += n;
        // The newest sample is always the latest bytes; the ones before are spaced out.
        let len = self.samples.len();
        if len >= 2 && now.saturating_duration_since(self.samples[len - 2].0) < SAMPLE_EVERY {
            self.samples[len - 1] = (now, self.bytes);
        } else {
            self.samples.push_back((now, self.bytes));
        }
        let start = now.checked_sub(WINDOW);
        while self.samples.len() > 2 && start.is_some_and(|s| self.samples[1].0 <= s) {
            self.samples.pop_front();
        }
    }
}

/// The JSON `progress` record: what a bar shows, for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "progress")]
pub struct ProgressRecord {
    pub phase: String,
    /// Bytes done so far, and of how many (0: unknown).
    pub bytes: u64,
    pub total_bytes: u64,
    /// Over the last seconds; `null` until measured.
    pub bytes_per_sec: Option<u64>,
    /// Seconds left at that rate; `null` while unknown.
    pub eta_s: Option<u64>,
    /// The unit in flight: a file's path (after its site in a plan), a database's name.
    pub file: Option<String>,
    /// Units done, and of how many (0: unknown).
    pub units: u64,
    pub total_units: u64,
}

/// Every phase's progress, fed with events as they come.
#[derive(Debug, Default)]
pub struct Meters {
    phases: HashMap<String, PhaseProgress>,
}

impl Meters {
    /// Takes one event in at `now`; the phase it concerns, if any. A phase that starts again
    /// starts from zero; a finished one is kept until `remove`.
    pub fn apply(&mut self, event: &Event, now: Instant) -> Option<String> {
        let phase = match event {
            Event::PhaseStarted { phase, total } => {
                self.phases.insert(
                    phase.clone(),
                    PhaseProgress {
                        total_units: *total,
                        ..PhaseProgress::default()
                    },
                );
                phase
            }
            Event::UnitStarted { phase, unit, .. } => {
                self.entry(phase).started(unit);
                phase
            }
            Event::UnitDone { phase, unit } | Event::UnitFailed { phase, unit, .. } => {
                let p = self.entry(phase);
                p.units += 1;
                p.ended(unit);
                phase
            }
            Event::BytesTotal { phase, bytes } => {
                self.entry(phase).total_bytes = *bytes;
                phase
            }
            Event::BytesDone { phase, bytes } => {
                self.entry(phase).add_bytes(*bytes, now);
                phase
            }
            Event::PhaseFinished { phase } => {
                self.entry(phase).in_flight.clear();
                phase
            }
            Event::CheckOverridden { .. } | Event::Info { .. } => return None,
        };
        Some(phase.clone())
    }

    fn entry(&mut self, phase: &str) -> &mut PhaseProgress {
        self.phases.entry(phase.to_string()).or_default()
    }

    pub fn phase(&self, phase: &str) -> Option<&PhaseProgress> {
        self.phases.get(phase)
    }

    /// Forgets a phase (it finished and was shown).
    pub fn remove(&mut self, phase: &str) -> Option<PhaseProgress> {
        self.phases.remove(phase)
    }

    /// Forgets every phase.
    pub fn clear(&mut self) {
        self.phases.clear();
    }

    /// The phase as a `progress` record at `now`.
    pub fn record(&self, phase: &str, now: Instant) -> Option<ProgressRecord> {
        let p = self.phases.get(phase)?;
        Some(ProgressRecord {
            phase: phase.to_string(),
            bytes: p.bytes,
            total_bytes: p.total_bytes,
            bytes_per_sec: p.bytes_per_sec(now),
            eta_s: p.eta_secs(now),
            file: p.in_flight().map(str::to_string),
            units: p.units,
            total_units: p.total_units,
        })
    }

    /// Whether a record of `phase` is due at `now`, at most one per `every`; one due is
    /// counted as made.
    pub fn due(&mut self, phase: &str, now: Instant, every: Duration) -> bool {
        let Some(p) = self.phases.get_mut(phase) else {
            return false;
        };
        let due = p
            .last_record
            .is_none_or(|t| now.saturating_duration_since(t) >= every);
        if due {
            p.last_record = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(bytes: u64) -> Event {
        Event::BytesDone {
            phase: "files".into(),
            bytes,
        }
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn rate_and_time_left_follow_the_bytes() {
        let t0 = Instant::now();
        let mut m = Meters::default();
        m.apply(
            &Event::BytesTotal {
                phase: "files".into(),
                bytes: 400 << 20,
            },
            t0,
        );
        // 20 MiB/s for 5 s, one chunk every 50 ms.
        for i in 1..=100 {
            m.apply(&done(1 << 20), secs(t0, 0.05 * f64::from(i)));
        }
        let p = m.phase("files").unwrap();
        let now = secs(t0, 5.0);
        let rate = p.bytes_per_sec(now).unwrap();
        assert!((19 << 20..=21 << 20).contains(&rate), "{rate}");
        // 300 MiB left at 20 MiB/s.
        let eta = p.eta_secs(now).unwrap();
        assert!((14..=16).contains(&eta), "{eta}");
        // Nothing for a while: the rate falls, the time left grows; stalled, it is unknown.
        let later = secs(t0, 12.0);
        assert!(p.bytes_per_sec(later).unwrap() < rate / 2);
        assert!(p.eta_secs(later).unwrap() > eta);
        assert_eq!(p.bytes_per_sec(secs(t0, 16.0)), Some(0));
        assert_eq!(p.eta_secs(secs(t0, 16.0)), None);
    }

    #[test]
    fn the_rate_forgets_the_distant_past() {
        let t0 = Instant::now();
        let mut m = Meters::default();
        // 100 MiB/s for 10 s, then 1 MiB/s for 20 s.
        for i in 1..=100 {
            m.apply(&done(10 << 20), secs(t0, 0.1 * f64::from(i)));
        }
        for i in 1..=200 {
            m.apply(&done(100 << 10), secs(t0, 10.0 + 0.1 * f64::from(i)));
        }
        let rate = m.phase("files").unwrap().bytes_per_sec(secs(t0, 30.0));
        let rate = rate.unwrap();
        assert!((900 << 10..=1200 << 10).contains(&rate), "{rate}");
    }

    #[test]
    fn unknowns_stay_unknown() {
        let t0 = Instant::now();
        let mut m = Meters::default();
        m.apply(&done(1000), t0);
        let p = m.phase("files").unwrap();
        // Too soon for a rate; no total, no time left.
        assert_eq!(p.bytes_per_sec(secs(t0, 0.1)), None);
        assert_eq!(p.eta_secs(secs(t0, 3.0)), None);
        assert!(p.bytes_per_sec(secs(t0, 3.0)).is_some());
        m.apply(
            &Event::BytesTotal {
                phase: "files".into(),
                bytes: 1000,
            },
            t0,
        );
        assert_eq!(m.phase("files").unwrap().eta_secs(secs(t0, 0.1)), Some(0));
    }

    #[test]
    fn the_unit_in_flight_is_named_until_done_and_a_restart_resets() {
        let t0 = Instant::now();
        let mut m = Meters::default();
        let started = |unit: &str| Event::UnitStarted {
            phase: "files".into(),
            unit: unit.into(),
            bytes: 10,
        };
        let finished = |unit: &str| Event::UnitDone {
            phase: "files".into(),
            unit: unit.into(),
        };
        m.apply(&started("a"), t0);
        m.apply(&started("b"), t0);
        m.apply(&finished("a"), t0);
        let r = m.record("files", t0).unwrap();
        assert_eq!((r.file.as_deref(), r.units), (Some("b"), 1));
        // The last one started ends first: the one still in flight is named again.
        m.apply(&started("c"), t0);
        m.apply(&finished("c"), t0);
        assert_eq!(m.record("files", t0).unwrap().file.as_deref(), Some("b"));
        for i in 0..1000 {
            m.apply(&started(&i.to_string()), t0);
        }
        assert_eq!(m.phase("files").unwrap().in_flight.len(), IN_FLIGHT);
        m.apply(
            &Event::PhaseStarted {
                phase: "files".into(),
                total: 3,
            },
            t0,
        );
        let r = m.record("files", t0).unwrap();
        assert_eq!((r.file, r.units, r.total_units), (None, 0, 3));
    }

    #[test]
    fn records_are_throttled_per_phase() {
        let t0 = Instant::now();
        let mut m = Meters::default();
        m.apply(&done(1), t0);
        let every = Duration::from_millis(200);
        assert!(m.due("files", t0, every));
        assert!(!m.due("files", secs(t0, 0.1), every));
        assert!(m.due("files", secs(t0, 0.2), every));
        assert!(!m.due("mail", t0, every), "no such phase");
    }

    #[test]
    fn a_record_is_tagged_as_progress() {
        let t0 = Instant::now();
        let mut m = Meters::default();
        m.apply(&done(5), t0);
        let json = serde_json::to_value(m.record("files", t0).unwrap()).unwrap();
        assert_eq!(json["event"], "progress");
        assert_eq!(json["phase"], "files");
        assert_eq!(json["bytes"], 5);
        assert!(json["eta_s"].is_null());
    }
}
