//! What a metrics exporter reads off a dispatcher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{DispatchError, Dispatcher};
use crate::store::{DeliveryState, EndpointBacklog};

/// A dispatcher's figures at one moment, for metrics and dashboards: what it is doing now,
/// what it has done since it started, and the backlog in the log (shared by every instance).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchStats {
    /// Requests being sent right now.
    pub in_flight: usize,
    /// Deliveries this dispatcher has claimed, waiting for a runner or in flight.
    pub claimed: usize,
    /// Deliveries this dispatcher delivered since it started.
    pub delivered: u64,
    /// Deliveries this dispatcher failed for good since it started.
    pub failed: u64,
    /// Failed attempts this dispatcher scheduled a retry for since it started.
    pub retried: u64,
    /// Pending deliveries in the log, by endpoint.
    pub pending: Vec<EndpointBacklog>,
    /// How old the oldest event with a pending delivery is, if any.
    pub oldest_pending_age: Option<Duration>,
}

/// The running counts behind [`DispatchStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    /// Counts an attempt that left its delivery in `state`.
    pub(super) fn count(&self, state: DeliveryState) {
        let counter = match state {
            DeliveryState::Delivered => &self.delivered,
            DeliveryState::Failed => &self.failed,
            DeliveryState::Pending => &self.retried,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Dispatcher {
    /// The dispatcher's figures now. Reads the backlog from the log.
    pub async fn stats(&self) -> Result<DispatchStats, DispatchError> {
        let inner = &self.inner;
        let pending = inner.store.backlog().await?;
        let now = inner.clock.now();
        let oldest_pending_age = pending
            .iter()
            .map(|backlog| backlog.oldest)
            .min()
            .map(|oldest| (now - oldest).to_std().unwrap_or_default());
        let max = inner.config.max_in_flight.max(1);
        Ok(DispatchStats {
            in_flight: max.saturating_sub(inner.permits.available_permits()),
            claimed: inner.ready.held(),
            delivered: inner.counters.delivered.load(Ordering::Relaxed),
            failed: inner.counters.failed.load(Ordering::Relaxed),
            retried: inner.counters.retried.load(Ordering::Relaxed),
            pending,
            oldest_pending_age,
        })
    }
}
