//! Failure throttling with explicit answers ("try again in N s"), never silent drops.
//!
//! One [`ThrottleState`] exists per key (an account name, a source address, registrations
//! from an address). The shell loads it, asks [`ThrottleState::check`], records the attempt
//! *before* the slow password check (so parallel guesses cannot all slip through one
//! window) and forgives it on success. The state is plain data so it can live in the
//! database, shared by every login-server process.

/// Milliseconds since the Unix epoch, as read by the shell.
pub type Millis = u64;

/// How one kind of key is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures allowed before any backoff.
    pub free_failures: u32,
    /// Backoff after the first failure beyond the free ones; doubles with each further one.
    pub base_backoff_millis: u64,
    /// The backoff never exceeds this.
    pub max_backoff_millis: u64,
    /// Length of the fixed window that caps failures.
    pub window_millis: u64,
    /// At most this many failures per window, whatever the backoff allows.
    pub max_failures_per_window: u32,
}

impl ThrottlePolicy {
    /// Per account: 5 free failures, then 1 s doubling up to 5 min, never more than 100
    /// failures per hour.
    pub const ACCOUNT: Self = Self {
        free_failures: 5,
        base_backoff_millis: 1_000,
        max_backoff_millis: 300_000,
        window_millis: 3_600_000,
        max_failures_per_window: 100,
    };

    /// Per source address, across accounts (password spraying): 20 free failures, then 1 s
    /// doubling up to 1 min, never more than 300 failures per hour.
    pub const ADDRESS: Self = Self {
        free_failures: 20,
        base_backoff_millis: 1_000,
        max_backoff_millis: 60_000,
        window_millis: 3_600_000,
        max_failures_per_window: 300,
    };

    /// Display-name changes per account: every change counts; 20 per hour is plenty for
    /// a person and bounds how fast one account can churn the search index.
    pub const DISPLAY_NAME_CHANGES: Self = Self::registrations(20);

    /// Registrations per source address: every registration counts; `per_hour` of them.
    pub const fn registrations(per_hour: u32) -> Self {
        Self {
            free_failures: u32::MAX,
            base_backoff_millis: 0,
            max_backoff_millis: 0,
            window_millis: 3_600_000,
            max_failures_per_window: per_hour,
        }
    }
}

/// The throttling record of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    pub consecutive_failures: u32,
    pub last_failure: Millis,
    pub window_start: Millis,
    pub window_failures: u32,
}

/// The attempt is refused; the requester is told when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    pub millis: u64,
}

impl RetryAfter {
    /// Whole seconds, rounded up and at least 1, as told to the requester.
    pub fn secs(self) -> u32 {
        u32::try_from(self.millis.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
    }
}

impl ThrottleState {
    fn window_active(&self, policy: &ThrottlePolicy, now: Millis) -> bool {
        now < self.window_start.saturating_add(policy.window_millis)
    }

    /// Whether an attempt may proceed at `now`.
    pub fn check(&self, policy: &ThrottlePolicy, now: Millis) -> Result<(), RetryAfter> {
        let mut wait: u64 = 0;
        if self.window_active(policy, now) && self.window_failures >= policy.max_failures_per_window
        {
            let until = self.window_start.saturating_add(policy.window_millis);
            wait = wait.max(until - now);
        }
        if self.consecutive_failures >= policy.free_failures {
            let doublings = (self.consecutive_failures - policy.free_failures).min(63);
            let backoff = policy
                .base_backoff_millis
                .saturating_mul(1u64 << doublings)
                .min(policy.max_backoff_millis);
            let until = self.last_failure.saturating_add(backoff);
            if now < until {
                wait = wait.max(until - now);
            }
        }
        if wait > 0 {
            Err(RetryAfter { millis: wait })
        } else {
            Ok(())
        }
    }

    /// Counts a failure (or, pessimistically, an attempt whose outcome is not known yet).
    pub fn record_failure(&mut self, policy: &ThrottlePolicy, now: Millis) {
        if !self.window_active(policy, now) {
            self.window_start = now;
            self.window_failures = 0;
        }
        self.window_failures = self.window_failures.saturating_add(1);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_failure = now;
    }

    /// Undoes the failure recorded for an attempt that turned out to succeed.
    pub fn forgive(&mut self) {
        self.window_failures = self.window_failures.saturating_sub(1);
        self.consecutive_failures = self.consecutive_failures.saturating_sub(1);
    }

    /// A successful login: consecutive failures no longer count against the account.
    pub fn record_success(&mut self) {
        self.forgive();
        self.consecutive_failures = 0;
    }

    /// Whether the record carries no information any more and may be deleted.
    pub fn is_idle(&self, policy: &ThrottlePolicy, now: Millis) -> bool {
        !self.window_active(policy, now)
            && self
                .check(policy, now)
                .is_ok_and(|()| self.last_failure.saturating_add(policy.max_backoff_millis) <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    #[test]
    fn five_failures_are_free_then_backoff_doubles_from_one_second() {
        let p = ThrottlePolicy::ACCOUNT;
        let mut s = ThrottleState::default();
        let mut now = T0;
        for _ in 0..5 {
            assert_eq!(s.check(&p, now), Ok(()));
            s.record_failure(&p, now);
        }
        let mut expected = 1_000;
        for _ in 0..6 {
            assert_eq!(s.check(&p, now), Err(RetryAfter { millis: expected }));
            now += expected - 1;
            assert_eq!(s.check(&p, now), Err(RetryAfter { millis: 1 }));
            now += 1;
            assert_eq!(s.check(&p, now), Ok(()));
            s.record_failure(&p, now);
            expected *= 2;
        }
    }

    #[test]
    fn backoff_is_capped() {
        let p = ThrottlePolicy::ACCOUNT;
        let mut s = ThrottleState::default();
        for _ in 0..60 {
            s.record_failure(&p, T0);
        }
        assert_eq!(
            s.check(&p, T0),
            Err(RetryAfter {
                millis: p.max_backoff_millis
            })
        );
    }

    #[test]
    fn never_more_than_100_failures_per_hour_per_account() {
        let p = ThrottlePolicy::ACCOUNT;
        let mut s = ThrottleState::default();
        let mut now = T0;
        let mut failures = 0;
        // An attacker who retries exactly when allowed, for two hours.
        while now < T0 + 2 * 3_600_000 {
            match s.check(&p, now) {
                Ok(()) => {
                    s.record_failure(&p, now);
                    if now < T0 + 3_600_000 {
                        failures += 1;
                    }
                }
                Err(retry) => now += retry.millis,
            }
        }
        assert!(failures <= 100, "{failures} failures in the first hour");
        assert!(failures >= 5);
    }

    #[test]
    fn a_full_window_refuses_until_it_ends() {
        let p = ThrottlePolicy::registrations(3);
        let mut s = ThrottleState::default();
        for i in 0..3 {
            assert_eq!(s.check(&p, T0 + i), Ok(()));
            s.record_failure(&p, T0 + i);
        }
        let refused = s.check(&p, T0 + 1000).expect_err("window full");
        assert_eq!(refused.millis, 3_600_000 - 1000);
        assert_eq!(refused.secs(), 3599);
        assert_eq!(s.check(&p, T0 + 3_600_000), Ok(()));
    }

    #[test]
    fn success_forgives_the_pessimistic_attempt_and_resets_the_streak() {
        let p = ThrottlePolicy::ACCOUNT;
        let mut s = ThrottleState::default();
        for _ in 0..4 {
            s.record_failure(&p, T0);
        }
        s.record_failure(&p, T0);
        s.record_success();
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.window_failures, 4);
        assert_eq!(s.check(&p, T0), Ok(()));
    }

    #[test]
    fn retry_seconds_round_up() {
        assert_eq!(RetryAfter { millis: 1 }.secs(), 1);
        assert_eq!(RetryAfter { millis: 1000 }.secs(), 1);
        assert_eq!(RetryAfter { millis: 1001 }.secs(), 2);
    }

    #[test]
    fn idle_records_can_be_dropped() {
        let p = ThrottlePolicy::ACCOUNT;
        let mut s = ThrottleState::default();
        s.record_failure(&p, T0);
        assert!(!s.is_idle(&p, T0 + 1));
        assert!(s.is_idle(&p, T0 + 3_600_000));
    }
}
