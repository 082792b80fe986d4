//! The background delivery loop. Long-lived runners take claimed deliveries from the ready
//! queue and attempt them, at most `max_in_flight` requests at once, recording every attempt
//! under its claim; the worker itself only claims more from the log, on its poll ticks and
//! when the queue runs low.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hashbrown::HashMap;
use tokio::sync::SemaphorePermit;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::ready::{ReadyDelivery, ReadyQueue};
use super::retry::next_step;
use super::{Inner, lock};
use crate::sender::{DeliveryRequest, SendOutcome, SendResult};
use crate::store::{
    AttemptRecord, AttemptTrigger, ClaimRequest, DeliveryState, DueDelivery, LogError,
    TransportErrorKind,
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
    match source.endpoints(None).await {
        Ok(endpoints) => {
            let resumed = {
                let mut list = inner.endpoints.write().unwrap_or_else(|p| p.into_inner());
                let resumed = endpoints
                    .iter()
                    .any(|e| e.enabled && !list.iter().any(|old| old.id == e.id && old.enabled));
                *list = endpoints.into();
                resumed
            };
            // An endpoint enabled elsewhere: its paused deliveries are claimable again.
            if resumed {
                inner.ready.claim_more();
            }
        }
        Err(error) => tracing::error!(
            error = %crate::error_chain(&error),
            "reading the endpoints failed; the ones read last stay in use"
        ),
    }
}

/// How long no attempt starts after the log failed to record one.
const LOG_FAILURE_PAUSE: Duration = Duration::from_secs(5);

/// How much longer attempts are paused after a failed log write, if they are.
fn paused_for(inner: &Inner) -> Option<Duration> {
    if !inner.log_failed.load(Ordering::Acquire) {
        return None;
    }
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
        // Asked again once the queue has room: a runner taking work wakes nobody, but the
        // next attempt to end or the next tick does.
        inner.ready.claim_more();
        return;
    }
    // Disabled endpoints are paused: their deliveries stay pending, unclaimed.
    let paused: Vec<String> = inner
        .endpoint_list()
        .iter()
        .filter(|e| !e.enabled)
        .map(|e| e.id.clone())
        .collect();
    let request = ClaimRequest::new(inner.clock.now(), room, inner.config.lease)
        .per_endpoint(inner.claim_cap())
        .skipping(paused);
    match inner.store.claim_due(&request).await {
        Ok(due) => {
            // More may be due: claim again as soon as the queue drains, not at the next tick.
            inner.ready.set_backlog(due.len() == room);
            let ready = with_bodies(inner, due).await;
            inner.ready.extend(ready, inner.claim_cap());
        }
        // The next tick tries again.
        Err(error) => tracing::error!(
            error = %crate::error_chain(&error),
            "claiming due deliveries from the log failed"
        ),
    }
}

/// Claimed deliveries with the bodies they send: kept in memory since their emit, or read
/// from the log for the whole claim at once. A body that could not be read is read again when
/// its delivery is attempted.
async fn with_bodies(inner: &Inner, claimed: Vec<DueDelivery>) -> Vec<ReadyDelivery> {
    let mut ready: Vec<ReadyDelivery> = claimed
        .into_iter()
        .map(|due| {
            let body = inner.waiting_bodies.take(&due.event_unique_id);
            ReadyDelivery { due, body }
        })
        .collect();
    let unread: Vec<&str> = ready
        .iter()
        .filter(|r| r.body.is_none())
        .map(|r| r.due.event_unique_id.as_str())
        .collect();
    if unread.is_empty() {
        return ready;
    }
    let bodies: HashMap<String, (Arc<str>, bool)> = match inner.store.bodies(&unread).await {
        Ok(bodies) => bodies
            .into_iter()
            .map(|b| (b.event_unique_id, (Arc::from(b.body), b.is_test_event)))
            .collect(),
        Err(error) => {
            tracing::warn!(
                error = %crate::error_chain(&error),
                "reading the bodies of claimed deliveries failed; each is read when attempted"
            );
            return ready;
        }
    };
    for delivery in ready.iter_mut().filter(|r| r.body.is_none()) {
        delivery.body = bodies.get(&delivery.due.event_unique_id).cloned();
    }
    ready
}

/// One runner: attempts queued deliveries one after another until the dispatcher stops.
async fn run_attempts(inner: Arc<Inner>) {
    while let Some((ready, endpoint_id)) = next_delivery(&inner).await {
        let Ok(permit) = inner.permits.acquire().await else {
            return;
        };
        let place = Place {
            _permit: permit,
            ready: &inner.ready,
            endpoint_id,
        };
        // Stopping: the delivery stays pending in the log for the next start.
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        attempt(&inner, ready, place).await;
    }
}

/// A request's place: one of the `max_in_flight` requests at once, and one of its endpoint's
/// `max_in_flight_per_endpoint`. Given back as soon as the request is over, before its outcome
/// is logged: the endpoint is no longer busy with it, and the next request to it need not wait
/// for a log write (an fsync, for a durable log).
struct Place<'a> {
    _permit: SemaphorePermit<'a>,
    ready: &'a ReadyQueue,
    endpoint_id: Arc<str>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.ready.finished(&self.endpoint_id);
    }
}

/// The next queued delivery and its endpoint's id, waiting for one; `None` once the
/// dispatcher stops.
async fn next_delivery(inner: &Inner) -> Option<(ReadyDelivery, Arc<str>)> {
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

async fn attempt(inner: &Inner, ready: ReadyDelivery, place: Place<'_>) {
    let endpoint_id = place.endpoint_id.clone();
    // A claim about to run out is not started: another instance may take the delivery over
    // at any moment, and would send it again. It is claimed anew once its lease ends.
    let left = ready.due.claimed_until - inner.clock.now();
    if left.to_std().unwrap_or_default() >= inner.config.lease / 4 {
        match deliver(inner, ready.due, ready.body, place).await {
            // Another caller took the delivery over: its outcome is the one recorded.
            Ok(()) | Err(LogError::ClaimLost { .. }) => {}
            // A failed log write leaves the delivery pending and claimed until the lease
            // ends. It is tried again, but only after a pause: the endpoint got the event, and
            // an at-least-once retry is fine, a flood of them is not.
            Err(error) => {
                tracing::error!(
                    endpoint_id = %endpoint_id,
                    error = %crate::error_chain(&error),
                    "recording an attempt in the log failed; attempts pause for {:?}",
                    LOG_FAILURE_PAUSE
                );
                *lock(&inner.log_failed_at) = Some(tokio::time::Instant::now());
                inner.log_failed.store(true, Ordering::Release);
            }
        }
    } else {
        // Given back before the claim is counted as over below.
        drop(place);
    }
    let capped_with_work_left = inner.ready.settled(&endpoint_id, inner.claim_cap());
    inner.progress.notify_waiters();
    // Under a backlog, the queue is refilled as it drains, and an endpoint that reached its
    // cap with work left claims its next once half its places are free; otherwise the poll
    // tick finds what falls due (a claim per finished attempt would double the log's work).
    let refill = inner.ready.backlog() && inner.ready.len() <= inner.config.max_in_flight / 2;
    if refill || capped_with_work_left {
        inner.ready.claim_more();
        inner.wake.notify_one();
    }
}

async fn deliver(
    inner: &Inner,
    due: DueDelivery,
    body: Option<(Arc<str>, bool)>,
    place: Place<'_>,
) -> Result<(), LogError> {
    let endpoint = match endpoint_for(inner, &due.endpoint_id).await {
        Target::Endpoint(endpoint) => endpoint,
        // Removed: the delivery ends, saying so.
        Target::Removed => {
            let outcome = SendOutcome {
                started_at: inner.clock.now(),
                duration: Duration::ZERO,
                result: SendResult::Failed {
                    kind: TransportErrorKind::Other,
                    message: "endpoint removed".to_owned(),
                },
            };
            let trigger = AttemptTrigger::AutomaticRetry;
            return record(inner, due, outcome, trigger, None, place).await;
        }
        // Not known to be removed: nothing is sent or recorded, and the claim runs out.
        Target::Unreadable => return Ok(()),
    };
    // Disabled since it was claimed: paused, so nothing is sent or recorded. The claim runs
    // out by itself, and the delivery is claimed again once the endpoint is enabled.
    if !endpoint.enabled {
        return Ok(());
    }
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
    let span = tracing::info_span!(
        "webhook_attempt",
        event_id = %due.event_unique_id,
        endpoint_id = %due.endpoint_id,
        attempt = due.attempts_made + 1,
        outcome = tracing::field::Empty,
        http_status = tracing::field::Empty,
        error_kind = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let mut outcome = inner
        .sender
        .send(
            DeliveryRequest::new(
                &endpoint.url,
                &endpoint.secret,
                body.as_bytes(),
                &due.event_unique_id,
            )
            .signed(&endpoint.signing_secrets, inner.clock.now()),
        )
        .instrument(span.clone())
        .await;
    outcome.redact(&endpoint.secret);
    trace_outcome(&span, &outcome);
    inner
        .note_outcome(&endpoint, succeeded(&outcome), outcome.started_at)
        .await;
    record(inner, due, outcome, trigger, Some(&endpoint), place).await
}

/// Where a claimed delivery goes.
enum Target {
    Endpoint(EndpointRef),
    Removed,
    /// The store the endpoints are kept in could not be read.
    Unreadable,
}

/// The endpoint a delivery goes to. One this dispatcher does not know is looked up in the
/// store the endpoints are kept in, if any: it may have been added through another instance
/// since the last refresh.
async fn endpoint_for(inner: &Inner, id: &str) -> Target {
    let listed = inner.endpoint_list();
    if let Some(index) = listed.iter().position(|e| e.id == id) {
        return Target::Endpoint(EndpointRef::Listed(listed, index));
    }
    let Some(source) = &inner.endpoint_source else {
        return Target::Removed;
    };
    match source.endpoint(id).await {
        Ok(Some(endpoint)) => Target::Endpoint(EndpointRef::Fetched(Box::new(endpoint))),
        Ok(None) => Target::Removed,
        Err(error) => {
            tracing::error!(
                endpoint_id = %id,
                error = %crate::error_chain(&error),
                "reading an endpoint failed; its delivery waits"
            );
            Target::Unreadable
        }
    }
}

/// An endpoint from the shared list, without copying it (its secret and switches) for every
/// attempt, or one just read from the store.
enum EndpointRef {
    Listed(Arc<[crate::Endpoint]>, usize),
    Fetched(Box<crate::Endpoint>),
}

impl std::ops::Deref for EndpointRef {
    type Target = crate::Endpoint;

    fn deref(&self) -> &crate::Endpoint {
        match self {
            EndpointRef::Listed(list, index) => &list[*index],
            EndpointRef::Fetched(endpoint) => endpoint,
        }
    }
}

/// Puts what happened on the attempt's span, and warns of a failure.
fn trace_outcome(span: &tracing::Span, outcome: &SendOutcome) {
    let latency = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
    span.record("latency_ms", latency);
    match &outcome.result {
        SendResult::Response { status, .. } => {
            span.record("http_status", status);
            let ok = (200..300).contains(status);
            span.record("outcome", if ok { "delivered" } else { "rejected" });
            if !ok {
                tracing::warn!(parent: span, http_status = status, "webhook attempt failed");
            }
        }
        SendResult::Failed { kind, .. } => {
            span.record("outcome", "unreachable");
            span.record("error_kind", tracing::field::debug(kind));
            tracing::warn!(parent: span, error_kind = ?kind, "webhook attempt failed");
        }
    }
}

/// Logs an attempt's outcome under its claim, once its request is over.
async fn record(
    inner: &Inner,
    due: DueDelivery,
    outcome: SendOutcome,
    trigger: AttemptTrigger,
    endpoint: Option<&crate::Endpoint>,
    place: Place<'_>,
) -> Result<(), LogError> {
    let (state, next_attempt_at) = match endpoint {
        Some(_) => next_step(
            &outcome,
            due.attempts_made + 1,
            &inner.config.retry,
            inner.clock.now(),
            random_unit(),
        ),
        None => (DeliveryState::Failed, None),
    };
    let mut attempt = outcome.into_attempt(trigger);
    if let Some(endpoint) = endpoint {
        attempt = attempt.sent_to(&endpoint.url);
    }
    // The request is over: the next one may start while this outcome is logged. The delivery
    // stays claimed in the log until then, so it is not started twice.
    let recording = inner.record_permits.acquire().await;
    drop(place);
    let recorded = inner
        .store
        .record_attempt(AttemptRecord {
            event_unique_id: due.event_unique_id,
            endpoint_id: due.endpoint_id,
            attempt,
            state,
            next_attempt_at,
            claim: Some(due.claim),
        })
        .await;
    drop(recording);
    if recorded.is_ok() {
        inner.counters.count(state);
    }
    recorded
}

/// Whether the endpoint answered 2xx.
pub(super) fn succeeded(outcome: &SendOutcome) -> bool {
    outcome.status().is_some_and(|s| (200..300).contains(&s))
}

/// A random number in `[0, 1)` for retry jitter.
fn random_unit() -> f64 {
    rand::random::<f64>()
}
