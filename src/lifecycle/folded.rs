//! The engines' progress under a plan run, folded into one phase per kind of unit (files,
//! databases, mail) whatever the number of sites moving at once: each site's engine announces
//! its bytes and they add up, its bytes done add up, its unit in flight is named with the site.
//! Everything else the engines say (their own phases, each file done) is left out: the
//! lifecycle reports each site itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::event::{Event, Observer};

/// The lifecycle's phases that move bytes.
pub const FILES: &str = "files";
pub const DATABASES: &str = "databases";
pub const MAIL: &str = "mail";

/// Folds the events of many engines into the lifecycle's observer.
pub struct PhaseFold<'a> {
    out: &'a dyn Observer,
    /// Phases started and not finished yet, with the bytes announced so far.
    started: Mutex<BTreeMap<&'static str, u64>>,
}

impl<'a> PhaseFold<'a> {
    pub fn new(out: &'a dyn Observer) -> Self {
        PhaseFold {
            out,
            started: Mutex::new(BTreeMap::new()),
        }
    }

    /// The observer to give an engine that moves units of `phase` for `owner` (a site, or
    /// what no site owns).
    pub fn view<'f>(&'f self, phase: &'static str, owner: &'f str) -> FoldView<'f, 'a> {
        FoldView {
            fold: self,
            phase,
            owner,
        }
    }

    /// Ends every phase started (a step of the run is over); the next bytes start them again.
    pub fn finish(&self) {
        let started = std::mem::take(&mut *self.started.lock().unwrap_or_else(|p| p.into_inner()));
        for phase in started.keys() {
            self.out.on_event(&Event::PhaseFinished {
                phase: (*phase).into(),
            });
        }
    }

    /// Starts `phase` when it is not yet, adding `more` bytes to its total (announced when
    /// any): under the lock, so the total announced never goes back.
    fn announce(&self, phase: &'static str, more: u64) {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let total = match started.get_mut(phase) {
            Some(total) => total,
            None => {
                self.out.on_event(&Event::PhaseStarted {
                    phase: phase.into(),
                    total: 0,
                });
                started.entry(phase).or_insert(0)
            }
        };
        if more > 0 {
            *total += more;
            self.out.on_event(&Event::BytesTotal {
                phase: phase.into(),
                bytes: *total,
            });
        }
    }
}

/// One engine's events, as `PhaseFold` folds them.
pub struct FoldView<'f, 'a> {
    fold: &'f PhaseFold<'a>,
    phase: &'static str,
    owner: &'f str,
}

impl Observer for FoldView<'_, '_> {
    fn on_event(&self, event: &Event) {
        let phase = self.phase;
        match event {
            Event::BytesTotal { bytes, .. } if *bytes > 0 => self.fold.announce(phase, *bytes),
            Event::BytesDone { bytes, .. } => {
                self.fold.announce(phase, 0);
                self.fold.out.on_event(&Event::BytesDone {
                    phase: phase.into(),
                    bytes: *bytes,
                });
            }
            Event::UnitStarted { unit, bytes, .. } => {
                self.fold.announce(phase, 0);
                self.fold.out.on_event(&Event::UnitStarted {
                    phase: phase.into(),
                    unit: format!("{}: {unit}", self.owner),
                    bytes: *bytes,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Recorder;

    fn engine_run(view: &dyn Observer, files: &[(&str, u64)]) {
        let phase = || "files".to_string();
        view.on_event(&Event::PhaseStarted {
            phase: phase(),
            total: files.len() as u64,
        });
        view.on_event(&Event::BytesTotal {
            phase: phase(),
            bytes: files.iter().map(|f| f.1).sum(),
        });
        for (path, size) in files {
            view.on_event(&Event::UnitStarted {
                phase: phase(),
                unit: path.to_string(),
                bytes: *size,
            });
            view.on_event(&Event::BytesDone {
                phase: phase(),
                bytes: *size,
            });
            view.on_event(&Event::UnitDone {
                phase: phase(),
                unit: path.to_string(),
            });
        }
        view.on_event(&Event::PhaseFinished { phase: phase() });
    }

    #[test]
    fn sites_add_up_in_one_phase_and_the_engines_own_phases_are_left_out() {
        let out = Recorder::default();
        let fold = PhaseFold::new(&out);
        engine_run(
            &fold.view(FILES, "a.test"),
            &[("index.html", 10), ("big", 90)],
        );
        engine_run(&fold.view(FILES, "b.test"), &[("x", 50)]);
        engine_run(&fold.view(MAIL, "mail[0]"), &[("alice/cur/1", 7)]);
        fold.finish();
        let events = out.events.into_inner().unwrap();
        let phases = |name: &str| {
            events
                .iter()
                .filter(|e| matches!(e, Event::PhaseStarted { phase, .. } if phase == name))
                .count()
        };
        assert_eq!((phases(FILES), phases(MAIL), phases("scan")), (1, 1, 0));
        let totals: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::BytesTotal { phase, bytes } if phase == FILES => Some(*bytes),
                _ => None,
            })
            .collect();
        assert_eq!(totals, [100, 150]);
        let done: u64 = events
            .iter()
            .filter_map(|e| match e {
                Event::BytesDone { phase, bytes } if phase == FILES => Some(*bytes),
                _ => None,
            })
            .sum();
        assert_eq!(done, 150);
        assert!(events.contains(&Event::UnitStarted {
            phase: FILES.into(),
            unit: "b.test: x".into(),
            bytes: 50,
        }));
        assert!(
            !events.iter().any(|e| matches!(e, Event::UnitDone { .. })),
            "each file done is the engine's business"
        );
        let finished: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::PhaseFinished { .. }))
            .collect();
        assert_eq!(finished.len(), 2);
        assert!(matches!(events.last(), Some(Event::PhaseFinished { .. })));
    }

    #[test]
    fn a_phase_finished_starts_again_with_the_next_bytes() {
        let out = Recorder::default();
        let fold = PhaseFold::new(&out);
        engine_run(&fold.view(DATABASES, "a.test"), &[("wp", 0)]);
        fold.finish();
        fold.finish();
        engine_run(&fold.view(DATABASES, "a.test"), &[("wp", 5)]);
        fold.finish();
        let events = out.events.into_inner().unwrap();
        let starts = events
            .iter()
            .filter(|e| matches!(e, Event::PhaseStarted { .. }))
            .count();
        let ends = events
            .iter()
            .filter(|e| matches!(e, Event::PhaseFinished { .. }))
            .count();
        assert_eq!((starts, ends), (2, 2));
    }
}
