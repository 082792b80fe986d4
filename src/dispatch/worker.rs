//! The background delivery loop. Long-lived runners take deliveries from the ready queue and
//! attempt them, at most `max_in_flight` requests at once, recording every attempt; the worker
//! itself only refills the queue from the log when asked, on its poll ticks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::SemaphorePermit;
use tokio::task::JoinSet;

use super::ready::{QUERY_WHEN_QUEUED_AT_MOST, READY_LIMIT, ReadyDelivery};
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
    // Long-lived rather than one task per delivery: a spawned task and a hand-over through
    // this loop per attempt cost more CPU than the rest of the dispatcher's bookkeeping.
    let mut runners = JoinSet::new();
    for _ in 0..inner.config.max_in_flight.max(1) * 2 {
        runners.spawn(run_attempts(inner.clone()));
    }
    // One ticker for the worker's life: a sleep made anew each round would never fire while
    // emits keep waking the worker, and retries would wait for a quiet moment.
    let mut poll = tokio::time::interval(inner.config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !inner.stopping.load(Ordering::SeqCst) {
        query_log_if_asked(&inner).await;
        tokio::select! {
            () = inner.wake.notified() => {}
            _ = poll.tick() => inner.ready.on_tick(inner.clock.now()),
        }
    }
    inner.ready.stop_runners();
    while runners.join_next().await.is_some() {}
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

/// Queries the log for due deliveries and queues what nobody holds, if a query was asked for
/// and the queue has room for its answer.
async fn query_log_if_asked(inner: &Inner) {
    if paused_for(inner).is_some() || !inner.ready.take_check_log() {
        return;
    }
    // While plenty is queued, the log waits; a runner wakes the worker once the queue is short.
    let queued = inner.ready.len();
    if queued > QUERY_WHEN_QUEUED_AT_MOST {
        inner.ready.check_log();
        return;
    }
    // What the query finds is claimed under `Claims`, which keeps attempts that finish during
    // the query claimed until it ends: a delivery is never started twice from a stale reading
    // of the log.
    let claimed_before = inner.claims.begin_query();
    // Enough to fill the queue, plus the claimed deliveries the answer will list again.
    let room = READY_LIMIT - queued;
    let wanted = room + claimed_before;
    inner.ready.queried();
    let due = match inner.store.due_deliveries(inner.clock.now(), wanted).await {
        Ok(due) => due,
        Err(_) => {
            inner.claims.end_query(Vec::new(), 0);
            // The log is unavailable; try again on the next round.
            inner.ready.check_log();
            return;
        }
    };
    if due.len() >= wanted {
        // The answer was cut short: more may be due once the queue drains.
        inner.ready.check_log();
    }
    let claimed = inner.claims.end_query(due, room);
    inner.ready.extend(claimed);
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
    let claim = ready.claim;
    // A failed log write leaves the delivery pending and due. It is tried again, but only
    // after a pause: the endpoint got the event, and an at-least-once retry is fine, a flood
    // of them is not.
    if deliver(inner, ready.due, ready.body, permit).await.is_err() {
        *lock(&inner.log_failed_at) = Some(std::time::Instant::now());
        inner.ready.check_log();
    }
    inner.claims.release(claim);
    inner.progress.notify_waiters();
    if inner.ready.log_check_due() {
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
    // stays claimed in the in-flight set until then, so it is not started twice.
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
        })
        .await;
    drop(recording);
    if let (Ok(()), Some(at)) = (&recorded, next_attempt_at) {
        inner.ready.retry_at(at);
    }
    recorded
}

/// A random number in `[0, 1)` for retry jitter.
fn random_unit() -> f64 {
    rand::random::<f64>()
}
