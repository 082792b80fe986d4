//! Where "now" comes from, so time-dependent logic is tested without sleeping.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of the current time.
///
/// Everything in this crate that depends on "now" (duplicate-guard expiry, timestamp tolerance,
/// and later retry schedules and the 60-minute checkout deadline) asks a `Clock` instead of
/// reading the system time itself, so tests can move time forward instantly with
/// [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests.
///
/// ```
/// use std::time::Duration;
/// use fermion_webhooks::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-11-28T10:00:00Z".parse().unwrap());
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now().to_rfc3339(), "2026-11-28T11:00:00+00:00");
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing still at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        // A duration too large for chrono saturates instead of panicking.
        let delta = chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        *now = now
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the clock to `to` (which may be in the past).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.lock() = to;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // The guarded value is a plain timestamp, always valid, so a poisoned lock is harmless.
        self.now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

/// Wall-clock time that moves with tokio's clock: it starts at the system time and then
/// advances as `tokio::time::Instant` does. Under paused time (`#[tokio::test(start_paused =
/// true)]`) a dispatcher on this clock sees retries and leases fall due as the test advances
/// time, without sleeping.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use fermion_webhooks::clock::{Clock, TokioClock};
///
/// let clock = TokioClock::new();
/// let before = clock.now();
/// tokio::time::advance(Duration::from_secs(300)).await;
/// assert_eq!((clock.now() - before).num_seconds(), 300);
/// # }
/// ```
#[cfg(feature = "emit")]
#[derive(Debug)]
pub struct TokioClock {
    start: DateTime<Utc>,
    started: tokio::time::Instant,
}

#[cfg(feature = "emit")]
impl TokioClock {
    /// A clock at the system time now, following tokio's clock from here.
    pub fn new() -> Self {
        Self {
            start: Utc::now(),
            started: tokio::time::Instant::now(),
        }
    }
}

#[cfg(feature = "emit")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "emit")]
impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::TimeDelta::from_std(self.started.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
        self.start
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
