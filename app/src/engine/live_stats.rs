//! Periodic [`Event::CallStats`] while a call's audio runs: the figures so far (MOS, loss,
//! jitter, round trip) and the peak microphone and speaker levels since the last event,
//! for the desktop app's quality indicator and level meters.
//!
//! Off unless [`super::EngineConfig::live_call_stats`] asks for it, so the CLI's event
//! stream stays as CONTRACT.md lists it.

use super::Actor;
use crate::events::Event;
use std::time::{Duration, Instant};

/// The shortest period accepted: faster meters would only load the event channel.
const MIN_PERIOD: Duration = Duration::from_millis(50);

/// When the next figures are due.
#[derive(Debug)]
pub(super) struct LiveStats {
    period: Option<Duration>,
    next: Instant,
}

impl LiveStats {
    pub(super) fn new(period: Option<Duration>, now: Instant) -> Self {
        let period = period.map(|p| p.max(MIN_PERIOD));
        Self {
            period,
            next: now + period.unwrap_or_default(),
        }
    }

    /// When the engine should wake for the next figures.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.period.map(|_| self.next)
    }

    /// Whether figures are due at `now`; if so, schedules the next ones.
    fn due(&mut self, now: Instant) -> bool {
        let Some(period) = self.period else {
            return false;
        };
        if now < self.next {
            return false;
        }
        // After a stall, the next event comes one period from now, not in a burst.
        self.next = (self.next + period).max(now + period / 2);
        true
    }
}

impl Actor {
    /// Emits the figures of every call whose audio runs, when they are due.
    pub(super) fn emit_live_stats(&mut self, now: Instant) {
        if !self.live_stats.due(now) {
            return;
        }
        for (call_id, stats, levels) in self.calls.live_media_stats() {
            self.emit(Event::CallStats {
                call_id: call_id.to_string(),
                stats,
                input_level: levels.input_peak,
                output_level: levels.output_peak,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_due_once_per_period_and_never_in_a_burst() {
        let start = Instant::now();
        let period = Duration::from_millis(200);
        let mut live = LiveStats::new(Some(period), start);
        assert!(!live.due(start));
        assert_eq!(live.deadline(), Some(start + period));
        assert!(live.due(start + period));
        assert!(!live.due(start + period));
        // Woken 2 s late: one event, then the next a period later rather than ten at once.
        let late = start + Duration::from_secs(2);
        assert!(live.due(late));
        assert!(!live.due(late + Duration::from_millis(50)));
        assert!(live.deadline().is_some_and(|d| d > late));
    }

    #[test]
    fn off_unless_asked_for() {
        let start = Instant::now();
        let mut live = LiveStats::new(None, start);
        assert_eq!(live.deadline(), None);
        assert!(!live.due(start + Duration::from_secs(60)));
    }
}
