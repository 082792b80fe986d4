//! The background delivery loop. Long-lived runners take claimed deliveries from the ready
//! queue and attempt them, at most `max_in_flight` requests at once, recording every attempt
//! under its claim; the worker itself only claims more from the log, on its poll ticks and
//! when the queue runs low.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::SemaphorePermit;
use tokio::task::JoinSet;

use super::ready::ReadyDelivery;
use super::retry::next_step;
use super::{Inner, lock};
use crate::sender::{DeliveryRequest, SendOutcome, SendResult};
use crate::store::{
    AttemptRecord, AttemptTrigger, DeliveryState, DueDelivery, LogError, TransportErrorKind,
};

pub(super) async fn run(inner: Arc<Inner>) {
    // Runners live in this set: if the worker is aborted at a shutdown deadline, so are they,
    // and their deliveries stay pending in the log. Twice `max_in_flight` of them: as many
    // sending as allowed, and as many again logging the outcomes of requests that are over,
    // so the next request need not wait for a log write (an fsync, for a durable log).
    let mut runners = JoinSet::new();
    for _ in 0..inner.config.max_in_flight.max(1) * 2 {
        runners.spawn(run_attempts(inner.clone()));
    }
    // One ticker for the worker's life: a sleep made anew each round would never fire while
    // emits keep waking the worker, and retries would wait for a quiet moment.
    let mut poll = tokio::time::interval(inner.config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(inner.config.endpoint_refresh);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !inner.stopping.load(Ordering::SeqCst) {
        claim_if_asked(&inner).await;
        tokio::select! {
            () = inner.wake.notified() => {}
            _ = poll.tick() => inner.ready.claim_more(),
            _ = refresh.tick(), if inner.endpoint_source.is_some() => refresh_endpoints(&inner).await,
        }
    }
    inner.ready.stop_runners();
    while runners.join_next().await.is_some() {}
}

/// Reads the endpoints again from the store they are kept in. On failure the ones read last
/// stay in use.
async fn refresh_endpoints(inner: &Inner) {
    let Some(source) = &inner.endpoint_source else {
        return;
    };
    if let Ok(endpoints) = source.endpoints(None).await {
        *inner
            .endpoints
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = endpoints.into();
    }
}

/// How long no attempt starts after the log failed to record one.
const LOG_FAILURE_PAUSE: Duration = Duration::from_secs(5);

/// How much longer attempts are paused after a failed log write, if they are.
fn paused_for(inner: &Inner) -> Option<Duration> {
    let failed_at = (*lock(&inner.log_failed_at))?;
    LOG_FAILURE_PAUSE
        .checked_sub(failed_at.elapsed())
        .filter(|left| !left.is_zero())
}

/// How many deliveries the queue holds at most: one more round for every runner that sends.
/// Claimed deliveries wait no longer than that, well within their lease.
fn queue_room(inner: &Inner) -> usize {
    inner
        .config
        .max_in_flight
        .max(1)
        .saturating_sub(inner.ready.len())
}

/// Claims due deliveries from the log, as many as the queue has room for, if asked to.
async fn claim_if_asked(inner: &Inner) {
    if paused_for(inner).is_some() || !inner.ready.take_claim_more() {
        return;
    }
    let room = queue_room(inner);
    if room == 0 {
        return;
    }
    let claimed = inner
        .store
        .claim_due(inner.clock.now(), room, inner.config.lease)
        .await;
    // When the log is unavailable, the next tick tries again.
    if let Ok(due) = claimed {
        // More may be due: claim again as soon as the queue drains, not at the next tick.
        inner.ready.set_backlog(due.len() == room);
        inner
            .ready
            .extend(due.into_iter().map(|due| ReadyDelivery { due, body: None }));
    }
}

/// One runner: attempts queued deliveries one after another until the dispatcher stops.
async fn run_attempts(inner: Arc<Inner>) {
    while let Some(ready) = next_delivery(&inner).await {
        let Ok(permit) = inner.permits.acquire().await else {
            return;
        };
        // Stopping: the delivery stays pending in the log for the next start.
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        attempt(&inner, ready, permit).await;
    }
}

/// The next queued delivery, waiting for one; `None` once the dispatcher stops.
async fn next_delivery(inner: &Inner) -> Option<ReadyDelivery> {
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(left) = paused_for(inner) {
            tokio::time::sleep(left).await;
            continue;
        }
        if let Some(ready) = inner.ready.pop() {
            return Some(ready);
        }
        // Registered before looking again, so a delivery queued in between wakes this runner.
        let work = inner.ready.work.notified();
        tokio::pin!(work);
        work.as_mut().enable();
        if inner.stopping.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(ready) = inner.ready.pop() {
            return Some(ready);
        }
        work.await;
    }
}

async fn attempt(inner: &Inner, ready: ReadyDelivery, permit: SemaphorePermit<'_>) {
    // A claim about to run out is not started: another instance may take the delivery over
    // at any moment, and would send it again. It is claimed anew once its lease ends.
    let left = ready.due.claimed_until - inner.clock.now();
    if left.to_std().unwrap_or_default() < inner.config.lease / 4 {
        return;
    }
    match deliver(inner, ready.due, ready.body, permit).await {
        // Another caller took the delivery over: its outcome is the one recorded.
        Ok(()) | Err(LogError::ClaimLost { .. }) => {}
        // A failed log write leaves the delivery pending and claimed until the lease ends. It
        // is tried again, but only after a pause: the endpoint got the event, and an
        // at-least-once retry is fine, a flood of them is not.
        Err(_) => *lock(&inner.log_failed_at) = Some(std::time::Instant::now()),
    }
    inner.progress.notify_waiters();
    // Under a backlog, the queue is refilled as it drains; otherwise the poll tick finds what
    // falls due (a claim per finished attempt would double the log's work).
    if inner.ready.backlog() && inner.ready.len() <= inner.config.max_in_flight / 2 {
        inner.ready.claim_more();
        inner.wake.notify_one();
    }
}

async fn deliver(
    inner: &Inner,
    due: DueDelivery,
    body: Option<(Arc<str>, bool)>,
    permit: SemaphorePermit<'_>,
) -> Result<(), LogError> {
    let (body, is_test_event) = match body {
        Some(queued) => queued,
        None => match inner.store.get(&due.event_unique_id).await? {
            Some(event) => (Arc::from(event.body), event.is_test_event),
            None => return Ok(()), // removed by retention meanwhile
        },
    };
    let trigger = match (due.attempts_made, is_test_event) {
        (0, true) => AttemptTrigger::Test,
        (0, false) => AttemptTrigger::FirstTry,
        _ => AttemptTrigger::AutomaticRetry,
    };
    let endpoints = inner.endpoint_list();
    let endpoint = endpoints
        .iter()
        .find(|e| e.id == due.endpoint_id && e.enabled);
    let (outcome, state, next_attempt_at) = match endpoint {
        None => {
            let outcome = SendOutcome {
                started_at: inner.clock.now(),
                duration: Duration::ZERO,
                result: SendResult::Failed {
                    kind: TransportErrorKind::Other,
                    message: format!(
                        "endpoint {} is no longer configured, or is disabled",
                        due.endpoint_id
                    ),
                },
            };
            (outcome, DeliveryState::Failed, None)
        }
        Some(endpoint) => {
            let mut outcome = inner
                .sender
                .send(DeliveryRequest {
                    url: &endpoint.url,
                    secret: &endpoint.secret,
                    body: body.as_bytes(),
                    event_unique_id: &due.event_unique_id,
                })
                .await;
            outcome.redact(&endpoint.secret);
            let (state, next) = next_step(
                &outcome,
                due.attempts_made + 1,
                &inner.config.retry,
                inner.clock.now(),
                random_unit(),
            );
            (outcome, state, next)
        }
    };
    // The request is over: the next one may start while this outcome is logged. The delivery
    // stays claimed in the log until then, so it is not started twice.
    let recording = inner.record_permits.acquire().await;
    drop(permit);
    let recorded = inner
        .store
        .record_attempt(AttemptRecord {
            event_unique_id: due.event_unique_id,
            endpoint_id: due.endpoint_id,
            attempt: outcome.into_attempt(trigger),
            state,
            next_attempt_at,
            claim: Some(due.claim),
        })
        .await;
    drop(recording);
    recorded
}

/// A random number in `[0, 1)` for retry jitter.
fn random_unit() -> f64 {
    rand::random::<f64>()
}
