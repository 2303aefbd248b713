//! Absolute-deadline ticking for virtual devices (sans-IO: the caller supplies `now`).

use std::time::{Duration, Instant};

/// Ticks due after a stall beyond which the pacer gives up catching up and restarts
/// its schedule from `now` (a suspended machine should not burst minutes of frames).
const MAX_CATCH_UP_TICKS: u64 = 500;

/// Computes when a periodic device should tick, from absolute deadlines
/// `start + n * period`, so lateness of one wake-up never shifts the later ones and no
/// drift accumulates.
///
/// Sans-IO: never reads the clock. Sleep until [`next_deadline`](Self::next_deadline),
/// then call [`handle_timeout`](Self::handle_timeout) with the current time and run as
/// many ticks as it returns.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    period: Duration,
    ticks_done: u64,
}

impl Pacer {
    /// A pacer whose first tick is due at `start + period`.
    pub fn new(start: Instant, period: Duration) -> Self {
        Self {
            start,
            period: period.max(Duration::from_micros(1)),
            ticks_done: 0,
        }
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline_of(self.ticks_done + 1)
    }

    /// Ticks run so far.
    pub fn ticks_done(&self) -> u64 {
        self.ticks_done
    }

    /// How many ticks are due at `now` (0 when early); counts them as done. After a
    /// stall longer than 500 periods it restarts the schedule at `now` and returns 1.
    pub fn handle_timeout(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        let due_total = (elapsed.as_nanos() / self.period.as_nanos()) as u64;
        let due = due_total.saturating_sub(self.ticks_done);
        if due > MAX_CATCH_UP_TICKS {
            self.start = now;
            self.ticks_done = 0;
            return 1;
        }
        self.ticks_done += due;
        due
    }

    fn deadline_of(&self, tick: u64) -> Instant {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(tick));
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.start + Duration::from_nanos(nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_wakeups_do_not_shift_later_deadlines() {
        let start = Instant::now();
        let period = Duration::from_millis(20);
        let mut p = Pacer::new(start, period);
        // Every wake-up is 7 ms late; deadlines stay on the 20 ms grid.
        for n in 1..=1000u32 {
            let deadline = p.next_deadline();
            assert_eq!(deadline, start + period * n);
            assert_eq!(p.handle_timeout(deadline + Duration::from_millis(7)), 1);
        }
        assert_eq!(p.ticks_done(), 1000);
    }

    #[test]
    fn a_stall_is_caught_up_with_several_ticks() {
        let start = Instant::now();
        let mut p = Pacer::new(start, Duration::from_millis(20));
        assert_eq!(p.handle_timeout(start + Duration::from_millis(10)), 0);
        assert_eq!(p.handle_timeout(start + Duration::from_millis(105)), 5);
        assert_eq!(p.next_deadline(), start + Duration::from_millis(120));
    }

    #[test]
    fn a_very_long_stall_restarts_the_schedule() {
        let start = Instant::now();
        let mut p = Pacer::new(start, Duration::from_millis(20));
        let later = start + Duration::from_secs(3600);
        assert_eq!(p.handle_timeout(later), 1);
        assert_eq!(p.next_deadline(), later + Duration::from_millis(20));
    }
}
