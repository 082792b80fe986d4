//! Waiting: for an event's deliveries to settle, and for the dispatcher to stop.

use std::time::Duration;

use super::{DispatchError, Dispatcher, lock};
use crate::store::{DeliveryState, StoredEvent};

impl Dispatcher {
    /// Waits until none of the event's deliveries is pending, then returns the event as
    /// logged. Fails after `timeout`.
    pub async fn wait_until_final(
        &self,
        event_unique_id: &str,
        timeout: Duration,
    ) -> Result<StoredEvent, DispatchError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for the next progress signal before looking, so none is missed.
            let progress = self.inner.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let event = self.logged_event(event_unique_id).await?;
            // Not `status()`: an event with one failed and one pending delivery is "failed"
            // overall, but not final.
            if event
                .deliveries
                .iter()
                .all(|d| d.state != DeliveryState::Pending)
            {
                return Ok(event);
            }
            // Also look again now and then: a retry comes due without any signal.
            let nap = self.inner.config.poll_interval;
            if tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + nap), progress)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Err(DispatchError::WaitTimedOut {
                    id: event_unique_id.to_owned(),
                    waited: timeout,
                });
            }
        }
    }

    /// Stops taking work, waits up to `deadline` for attempts in flight, and leaves every
    /// other delivery pending in the log for the next start. Returns how many attempts were
    /// still running at the deadline (their deliveries stay pending).
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.wake.notify_one();
        let worker = lock(&self.inner.worker).take();
        let Some(worker) = worker else {
            return 0;
        };
        let max = self.inner.config.max_in_flight.max(1) as u32;
        // Requests first, then the outcomes they are logging: an attempt takes its record
        // permit before it gives back its request permit, so this order cannot deadlock.
        let drained = tokio::time::timeout(deadline, async {
            let sending = self.inner.permits.acquire_many(max).await;
            let recording = self.inner.record_permits.acquire_many(max).await;
            (sending, recording)
        })
        .await;
        let abandoned = match drained {
            // Nothing is in flight: the claims on what is still queued are given back, so
            // another dispatcher sharing the log need not wait for them to run out.
            Ok(_) => {
                for token in self.inner.ready.drain_tokens() {
                    if let Err(error) = self.inner.store.release(&token).await {
                        tracing::error!(
                            error = %crate::error_chain(&error),
                            "giving back queued claims at shutdown failed; they run out with \
                             their lease"
                        );
                    }
                }
                0
            }
            // Attempts hold permits; queued deliveries do not.
            Err(_) => {
                let held = |permits: &tokio::sync::Semaphore| {
                    (max as usize).saturating_sub(permits.available_permits())
                };
                held(&self.inner.permits) + held(&self.inner.record_permits)
            }
        };
        worker.abort();
        let _ = worker.await;
        abandoned
    }
}
