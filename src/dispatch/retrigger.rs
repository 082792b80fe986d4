//! Re-triggering: resending an event's exact stored body now, one event or every failed one.

use chrono::{DateTime, Utc};

use super::{DispatchError, Dispatcher, Retriggered};
use crate::sender::DeliveryRequest;
use crate::store::{AttemptRecord, AttemptTrigger, DeliveryState, LogFilter};

impl Dispatcher {
    /// Resends an event's exact stored body (same `eventUniqueId`) now, to each of its
    /// endpoints or only to `endpoint_id`, recording a manual attempt for each. A delivery
    /// that succeeds becomes delivered; one that fails keeps its retry schedule if it was still
    /// pending, and is failed otherwise.
    pub async fn retrigger(
        &self,
        event_unique_id: &str,
        endpoint_id: Option<&str>,
    ) -> Result<Vec<Retriggered>, DispatchError> {
        let event = self.logged_event(event_unique_id).await?;
        let mut results = Vec::new();
        for delivery in &event.deliveries {
            if endpoint_id.is_some_and(|id| id != delivery.endpoint_id) {
                continue;
            }
            let endpoint = self.endpoint(&delivery.endpoint_id)?;
            // Claimed like any attempt, so a background retry cannot run beside it and record
            // over its outcome.
            let claim = self
                .inner
                .store
                .claim(
                    event_unique_id,
                    &delivery.endpoint_id,
                    self.inner.clock.now(),
                    self.inner.config.lease,
                )
                .await?
                .ok_or_else(|| DispatchError::DeliveryInFlight {
                    event_id: event_unique_id.to_owned(),
                    endpoint_id: delivery.endpoint_id.clone(),
                })?;
            let mut outcome = self
                .inner
                .sender
                .send(DeliveryRequest {
                    url: &endpoint.url,
                    secret: &endpoint.secret,
                    body: event.body.as_bytes(),
                    event_unique_id,
                })
                .await;
            outcome.redact(&endpoint.secret);
            let delivered = outcome.status().is_some_and(|s| (200..300).contains(&s));
            let (state, next_attempt_at) = match (delivered, delivery.state) {
                (true, _) => (DeliveryState::Delivered, None),
                (false, DeliveryState::Pending) => {
                    (DeliveryState::Pending, delivery.next_attempt_at)
                }
                (false, _) => (DeliveryState::Failed, None),
            };
            self.inner
                .store
                .record_attempt(AttemptRecord {
                    event_unique_id: event_unique_id.to_owned(),
                    endpoint_id: delivery.endpoint_id.clone(),
                    attempt: outcome.to_attempt(AttemptTrigger::ManualRetrigger),
                    state,
                    next_attempt_at,
                    claim: Some(claim),
                })
                .await?;
            self.inner.progress.notify_waiters();
            results.push(Retriggered {
                endpoint_id: delivery.endpoint_id.clone(),
                outcome,
                state,
            });
        }
        if let Some(id) = endpoint_id.filter(|_| results.is_empty()) {
            return Err(DispatchError::UnknownEndpoint { id: id.to_owned() });
        }
        Ok(results)
    }

    /// Bulk recovery: re-triggers every failed delivery of events in `[from, to)`. Returns the
    /// attempts made, by event id.
    pub async fn retrigger_failed(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, Retriggered)>, DispatchError> {
        let filter = LogFilter::default()
            .between(from, to)
            .status(DeliveryState::Failed);
        let mut failed = Vec::new();
        self.inner
            .store
            .scan(&filter, &mut |event| {
                for delivery in event
                    .deliveries
                    .iter()
                    .filter(|d| d.state == DeliveryState::Failed)
                {
                    failed.push((event.event_unique_id.clone(), delivery.endpoint_id.clone()));
                }
                std::ops::ControlFlow::Continue(())
            })
            .await?;
        let mut results = Vec::new();
        for (event_id, endpoint_id) in failed {
            for result in self.retrigger(&event_id, Some(&endpoint_id)).await? {
                results.push((event_id.clone(), result));
            }
        }
        Ok(results)
    }
}
