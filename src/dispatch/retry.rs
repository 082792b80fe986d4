//! When to try again: the retry schedule, and what an attempt's outcome means for a delivery.
//! Pure functions of their inputs (time and randomness are passed in), so they are tested
//! without sleeping.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::sender::{SendOutcome, SendResult};
use crate::store::{DeliveryState, TransportErrorKind};

/// Delays between attempts, with jitter.
///
/// The default, after the first try: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight attempts
/// over about 28 hours), each ±20 %. `Retry-After` on a 429 or 503 replaces the scheduled
/// delay, capped at [`retry_after_cap`](Self::retry_after_cap).
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySchedule {
    /// The delay before each retry; its length is the number of retries.
    pub delays: Vec<Duration>,
    /// The jitter as a fraction of each delay: 0.2 means ±20 %.
    pub jitter: f64,
    /// The longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            jitter: 0.2,
            retry_after_cap: minutes(60),
        }
    }
}

impl RetrySchedule {
    /// A schedule with these delays and no jitter (for CLIs and tests).
    pub fn fixed(delays: impl IntoIterator<Item = Duration>) -> Self {
        Self {
            delays: delays.into_iter().collect(),
            jitter: 0.0,
            ..Self::default()
        }
    }

    /// The delay after attempt number `attempts_made` (1 = after the first try), or `None`
    /// when no retry is left. `random` in `[0, 1)` picks the jitter: 0.5 is the plain delay.
    pub fn delay_after(&self, attempts_made: usize, random: f64) -> Option<Duration> {
        let base = *self.delays.get(attempts_made.checked_sub(1)?)?;
        let factor = 1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        // A nonsensical jitter (NaN, infinite, overflowing) falls back to the plain delay
        // rather than panicking.
        if !factor.is_finite() {
            return Some(base);
        }
        Some(Duration::try_from_secs_f64(base.as_secs_f64() * factor.max(0.0)).unwrap_or(base))
    }
}

/// What an attempt means for its delivery: the new state and, if pending, when to try next.
pub(crate) fn next_step(
    outcome: &SendOutcome,
    attempts_made: usize,
    schedule: &RetrySchedule,
    now: DateTime<Utc>,
    random: f64,
) -> (DeliveryState, Option<DateTime<Utc>>) {
    let retry_after = match &outcome.result {
        SendResult::Response { status, .. } if (200..300).contains(status) => {
            return (DeliveryState::Delivered, None);
        }
        // 410 Gone: the endpoint says it will never want this again.
        SendResult::Response { status: 410, .. } => return (DeliveryState::Failed, None),
        // A blocked address will still be blocked later.
        SendResult::Failed {
            kind: TransportErrorKind::BlockedAddress,
            ..
        } => return (DeliveryState::Failed, None),
        SendResult::Response {
            status: 429 | 503,
            retry_after,
            ..
        } => *retry_after,
        _ => None,
    };
    let Some(scheduled) = schedule.delay_after(attempts_made, random) else {
        return (DeliveryState::Failed, None);
    };
    let delay = retry_after.map_or(scheduled, |asked| asked.min(schedule.retry_after_cap));
    let next = TimeDelta::from_std(delay)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (DeliveryState::Pending, Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: SendResult) -> SendOutcome {
        SendOutcome {
            started_at: now(),
            duration: Duration::from_millis(10),
            result,
        }
    }

    fn status(code: u16, retry_after: Option<u64>) -> SendOutcome {
        outcome(SendResult::Response {
            status: code,
            snippet: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    fn now() -> DateTime<Utc> {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_default_schedule_is_seven_retries_over_about_a_day() {
        let schedule = RetrySchedule::default();
        let plain: Vec<u64> = (1..=7)
            .map(|n| schedule.delay_after(n, 0.5).unwrap().as_secs())
            .collect();
        assert_eq!(plain, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(schedule.delay_after(8, 0.5), None);
        assert_eq!(schedule.delay_after(0, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.delay_after(2, 0.0), Some(Duration::from_secs(240)));
        let high = schedule.delay_after(2, 0.999_999).unwrap().as_secs_f64();
        assert!((359.9..=360.0).contains(&high), "{high}");
        for i in 0..100 {
            let delay = schedule.delay_after(1, f64::from(i) / 100.0).unwrap();
            assert!(delay >= Duration::from_secs(4) && delay <= Duration::from_secs(6));
        }
    }

    #[test]
    fn an_absurd_jitter_falls_back_to_the_plain_delay() {
        for jitter in [f64::NAN, f64::INFINITY, 1e300] {
            let schedule = RetrySchedule {
                jitter,
                ..RetrySchedule::default()
            };
            assert_eq!(
                schedule.delay_after(1, 0.9),
                Some(Duration::from_secs(5)),
                "{jitter}"
            );
        }
    }

    #[test]
    fn success_delivers_and_gone_or_blocked_fail_at_once() {
        let schedule = RetrySchedule::default();
        assert_eq!(
            next_step(&status(204, None), 1, &schedule, now(), 0.5),
            (DeliveryState::Delivered, None)
        );
        assert_eq!(
            next_step(&status(410, None), 1, &schedule, now(), 0.5),
            (DeliveryState::Failed, None)
        );
        let blocked = outcome(SendResult::Failed {
            kind: TransportErrorKind::BlockedAddress,
            message: String::new(),
        });
        assert_eq!(
            next_step(&blocked, 1, &schedule, now(), 0.5),
            (DeliveryState::Failed, None)
        );
    }

    #[test]
    fn other_failures_retry_on_schedule_until_it_runs_out() {
        let schedule = RetrySchedule::default();
        for failure in [
            status(500, None),
            status(404, None),
            status(301, None),
            outcome(SendResult::Failed {
                kind: TransportErrorKind::Timeout,
                message: String::new(),
            }),
        ] {
            let (state, next) = next_step(&failure, 1, &schedule, now(), 0.5);
            assert_eq!(state, DeliveryState::Pending);
            assert_eq!(next, Some(now() + TimeDelta::seconds(5)));
            assert_eq!(
                next_step(&failure, 8, &schedule, now(), 0.5),
                (DeliveryState::Failed, None)
            );
        }
    }

    #[test]
    fn retry_after_on_429_and_503_replaces_the_delay_capped() {
        let schedule = RetrySchedule::default();
        let (_, next) = next_step(&status(429, Some(90)), 1, &schedule, now(), 0.5);
        assert_eq!(next, Some(now() + TimeDelta::seconds(90)));
        let (_, next) = next_step(&status(503, Some(86_400)), 1, &schedule, now(), 0.5);
        assert_eq!(next, Some(now() + TimeDelta::minutes(60)), "capped");
        let (_, next) = next_step(&status(500, Some(90)), 1, &schedule, now(), 0.5);
        assert_eq!(
            next,
            Some(now() + TimeDelta::seconds(5)),
            "only 429 and 503"
        );
        assert_eq!(
            next_step(&status(429, Some(1)), 8, &schedule, now(), 0.5),
            (DeliveryState::Failed, None),
            "Retry-After does not add attempts"
        );
    }
}
