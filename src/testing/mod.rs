//! The `LogStore` contract as runnable checks (feature `testing`), for a third party that
//! implements a backend: each check takes a fresh, empty store and panics, naming what went
//! wrong, when the backend breaks the contract written on [`LogStore`]. This crate runs the
//! same checks against its memory, SQLite and PostgreSQL backends.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fermion_webhooks::MemoryLogStore;
//! use fermion_webhooks::store::Store;
//!
//! # async fn check() {
//! // In a #[tokio::test] of your own backend's crate:
//! fermion_webhooks::testing::run_all(|| async { Arc::new(MemoryLogStore::new()) as Arc<dyn Store> }).await;
//! # }
//! ```
#![allow(missing_docs)]

mod claims;
mod documents;
mod events;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use std::time::Duration;

use crate::store::{
    Attempt, AttemptRecord, AttemptTrigger, Delivery, DeliveryState, LogFilter, LogStore, Store,
    StoredEvent,
};
use crate::{EventKind, EventPayload, WebhookEvent};

pub use claims::*;
pub use documents::*;
pub use events::*;

/// Every check, by name.
pub const CHECKS: &[&str] = &[
    "an_appended_event_comes_back_with_its_exact_body_and_deliveries",
    "bodies_are_read_by_event_each_once_and_missing_ones_left_out",
    "a_second_event_with_the_same_id_is_refused",
    "malformed_entries_are_refused_with_a_reason",
    "attempts_are_recorded_with_the_new_delivery_state",
    "attempts_for_unknown_events_or_endpoints_are_refused",
    "claims_hand_out_due_pending_deliveries_earliest_first_each_once_per_lease",
    "a_claim_taken_over_after_its_lease_fences_out_the_old_holder",
    "claims_are_released_on_request_and_held_against_unclaimed_records",
    "concurrent_claimers_never_get_the_same_delivery",
    "claims_take_turns_across_endpoints_and_keep_each_under_its_cap",
    "the_backlog_counts_pending_deliveries_by_endpoint",
    "endpoints_are_stored_secret_included_replaced_listed_by_owner_and_removed",
    "pending_checkouts_are_kept_until_forgotten",
    "queries_page_newest_first_through_every_event_exactly_once",
    "the_time_range_includes_from_and_excludes_to",
    "queries_filter_by_kind_status_and_test_flag",
    "queries_filter_by_the_endpoints_events_went_to",
    "scan_visits_matching_events_oldest_first_and_stops_when_told",
    "retention_deletes_events_of_days_before_the_cutoff",
    "the_overall_status_is_failed_then_pending_then_delivered",
    "unknown_event_types_are_stored_and_excluded_by_a_kind_filter",
    "concurrent_appends_all_land_exactly_once",
    "a_bad_cursor_is_a_typed_error",
    "rows_agree_with_whole_events_under_every_filter",
    "attempts_recorded_at_once_on_one_event_leave_its_status_right",
];

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    an_appended_event_comes_back_with_its_exact_body_and_deliveries(make().await).await;
    bodies_are_read_by_event_each_once_and_missing_ones_left_out(make().await).await;
    a_second_event_with_the_same_id_is_refused(make().await).await;
    malformed_entries_are_refused_with_a_reason(make().await).await;
    attempts_are_recorded_with_the_new_delivery_state(make().await).await;
    attempts_for_unknown_events_or_endpoints_are_refused(make().await).await;
    claims_hand_out_due_pending_deliveries_earliest_first_each_once_per_lease(make().await).await;
    a_claim_taken_over_after_its_lease_fences_out_the_old_holder(make().await).await;
    claims_are_released_on_request_and_held_against_unclaimed_records(make().await).await;
    concurrent_claimers_never_get_the_same_delivery(make().await).await;
    claims_take_turns_across_endpoints_and_keep_each_under_its_cap(make().await).await;
    the_backlog_counts_pending_deliveries_by_endpoint(make().await).await;
    endpoints_are_stored_secret_included_replaced_listed_by_owner_and_removed(make().await).await;
    pending_checkouts_are_kept_until_forgotten(make().await).await;
    queries_page_newest_first_through_every_event_exactly_once(make().await).await;
    the_time_range_includes_from_and_excludes_to(make().await).await;
    queries_filter_by_kind_status_and_test_flag(make().await).await;
    queries_filter_by_the_endpoints_events_went_to(make().await).await;
    scan_visits_matching_events_oldest_first_and_stops_when_told(make().await).await;
    retention_deletes_events_of_days_before_the_cutoff(make().await).await;
    the_overall_status_is_failed_then_pending_then_delivered(make().await).await;
    unknown_event_types_are_stored_and_excluded_by_a_kind_filter(make().await).await;
    concurrent_appends_all_land_exactly_once(make().await).await;
    a_bad_cursor_is_a_typed_error(make().await).await;
    rows_agree_with_whole_events_under_every_filter(make().await).await;
    attempts_recorded_at_once_on_one_event_leave_its_status_right(make().await).await;
}

/// The lease the checks claim for.
const LEASE: Duration = Duration::from_secs(60);

fn at(iso: &str) -> DateTime<Utc> {
    iso.parse().unwrap_or_default()
}

/// A stored event of `kind` at `timestamp`, with pending deliveries to `endpoints`.
fn stored(kind: EventKind, timestamp: &str, endpoints: &[&str]) -> StoredEvent {
    let event = WebhookEvent::at(EventPayload::sample(kind), at(timestamp));
    let deliveries = endpoints
        .iter()
        .map(|id| {
            Delivery::pending(
                *id,
                format!("https://hooks.example.com/{id}"),
                at(timestamp),
            )
        })
        .collect();
    StoredEvent::new(&event, deliveries)
}

/// Every event matching `filter`, newest first.
async fn matching(store: &dyn LogStore, filter: &LogFilter) -> Vec<StoredEvent> {
    store.query(filter, None, 10_000).await.unwrap().events
}

fn attempt(status: u16, trigger: AttemptTrigger, at_iso: &str) -> Attempt {
    Attempt::response(
        at(at_iso),
        Duration::from_millis(42),
        status,
        "{\"ok\":true}",
        trigger,
    )
    .sent_to("https://hooks.example.com/attempted")
}

fn record(
    event: &StoredEvent,
    endpoint: &str,
    attempt: Attempt,
    state: DeliveryState,
) -> AttemptRecord {
    AttemptRecord {
        event_unique_id: event.event_unique_id.clone(),
        endpoint_id: endpoint.into(),
        attempt,
        state,
        next_attempt_at: None,
        claim: None,
    }
}
