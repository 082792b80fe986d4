//! Re-triggering: resending an event's exact stored body now, one event or every failed one.

use chrono::{DateTime, Utc};

use super::{DispatchError, Dispatcher, Retriggered};
use crate::sender::DeliveryRequest;
use crate::store::{AttemptRecord, AttemptTrigger, DeliveryState, LogFilter};

/// How a re-trigger treats disabled endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetriggerOptions {
    /// Send to a disabled endpoint too (default: refused with
    /// [`DispatchError::EndpointDisabled`], or skipped by a bulk re-trigger). For a creator
    /// checking by hand that a paused endpoint is back before enabling it.
    pub include_disabled: bool,
}

impl RetriggerOptions {
    /// Sends to disabled endpoints too.
    pub fn include_disabled(mut self) -> Self {
        self.include_disabled = true;
        self
    }
}

impl Dispatcher {
    /// Resends an event's exact stored body (same `eventUniqueId`) now, to each of its
    /// endpoints or only to `endpoint_id`, recording a manual attempt for each. A delivery
    /// that succeeds becomes delivered; one that fails keeps its retry schedule if it was still
    /// pending, and is failed otherwise. A disabled endpoint is refused with
    /// [`DispatchError::EndpointDisabled`]; see [`retrigger_with`](Self::retrigger_with).
    pub async fn retrigger(
        &self,
        event_unique_id: &str,
        endpoint_id: Option<&str>,
    ) -> Result<Vec<Retriggered>, DispatchError> {
        self.retrigger_with(event_unique_id, endpoint_id, RetriggerOptions::default())
            .await
    }

    /// [`retrigger`](Self::retrigger), with options.
    pub async fn retrigger_with(
        &self,
        event_unique_id: &str,
        endpoint_id: Option<&str>,
        options: RetriggerOptions,
    ) -> Result<Vec<Retriggered>, DispatchError> {
        let event = self.logged_event(event_unique_id).await?;
        let mut results = Vec::new();
        for delivery in &event.deliveries {
            if endpoint_id.is_some_and(|id| id != delivery.endpoint_id) {
                continue;
            }
            let endpoint = self.endpoint(&delivery.endpoint_id)?;
            if !endpoint.enabled && !options.include_disabled {
                return Err(DispatchError::EndpointDisabled {
                    id: endpoint.id.clone(),
                });
            }
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
                .send(
                    DeliveryRequest::new(
                        &endpoint.url,
                        &endpoint.secret,
                        event.body.as_bytes(),
                        event_unique_id,
                    )
                    .signed(&endpoint.signing_secrets, self.inner.clock.now()),
                )
                .await;
            outcome.redact(&endpoint.secret);
            let delivered = super::worker::succeeded(&outcome);
            self.inner
                .note_outcome(&endpoint, delivered, outcome.started_at)
                .await;
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
                    attempt: outcome
                        .to_attempt(AttemptTrigger::ManualRetrigger)
                        .sent_to(&endpoint.url),
                    state,
                    next_attempt_at,
                    claim: Some(claim),
                })
                .await?;
            self.inner.counters.count(state);
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

    /// Bulk recovery: re-triggers every failed delivery of events in `[from, to)` whose
    /// endpoint is still configured and enabled. Returns the attempts made, by event id.
    pub async fn retrigger_failed(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, Retriggered)>, DispatchError> {
        self.retrigger_failed_with(from, to, RetriggerOptions::default())
            .await
    }

    /// [`retrigger_failed`](Self::retrigger_failed), with options: `include_disabled` sends
    /// to disabled endpoints too.
    pub async fn retrigger_failed_with(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        options: RetriggerOptions,
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
        let endpoints = self.inner.endpoint_list();
        let wanted = |id: &str| {
            endpoints
                .iter()
                .any(|e| e.id == id && (e.enabled || options.include_disabled))
        };
        let mut results = Vec::new();
        for (event_id, endpoint_id) in failed.into_iter().filter(|(_, id)| wanted(id)) {
            let retriggered = self
                .retrigger_with(&event_id, Some(&endpoint_id), options)
                .await?;
            for result in retriggered {
                results.push((event_id.clone(), result));
            }
        }
        Ok(results)
    }
}
