//! One contract for every `LogStore` backend: each check of `fermion_webhooks::testing` runs
//! against `MemoryLogStore`, `FileLogStore` and `PostgresLogStore` alike, and against a backend
//! that implements only the required methods, as a third party may.

mod pg;
mod support;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fermion_webhooks::checkout::{Checkout, CheckoutStore};
use fermion_webhooks::store::{
    AttemptRecord, ClaimRequest, ClaimToken, Cursor, DueDelivery, EndpointBacklog, EndpointStore,
    LogError, LogFilter, Page, Store, StoredEvent,
};
use fermion_webhooks::{Endpoint, FileLogStore, LogStore, MemoryLogStore};
use support::TempDir;

/// A fresh store, and what keeps it alive.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
    _schema: Option<pg::Schema>,
}

async fn memory_backend() -> Option<Backend> {
    Some(Backend {
        store: Arc::new(MemoryLogStore::new()),
        _dir: None,
        _schema: None,
    })
}

async fn file_backend() -> Option<Backend> {
    let dir = TempDir::new("contract");
    Some(Backend {
        store: Arc::new(FileLogStore::open(dir.path()).await.unwrap()),
        _dir: Some(dir),
        _schema: None,
    })
}

async fn postgres_backend() -> Option<Backend> {
    let schema = pg::Schema::new("contract").await?;
    Some(Backend {
        store: Arc::new(schema.store().await),
        _dir: None,
        _schema: Some(schema),
    })
}

async fn defaults_backend() -> Option<Backend> {
    Some(Backend {
        store: Arc::new(RequiredOnly::default()),
        _dir: None,
        _schema: None,
    })
}

/// A backend that implements only what the traits require (here by handing each call to a
/// `MemoryLogStore`): every method with a default, `append_claimed`, `scan_rows` and `bodies`,
/// keeps it.
#[derive(Debug, Default)]
struct RequiredOnly(MemoryLogStore);

#[async_trait::async_trait]
impl LogStore for RequiredOnly {
    async fn append(&self, event: StoredEvent) -> Result<(), LogError> {
        self.0.append(event).await
    }
    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<DueDelivery>, LogError> {
        self.0.claim_due(request).await
    }
    async fn backlog(&self) -> Result<Vec<EndpointBacklog>, LogError> {
        self.0.backlog().await
    }
    async fn claim(
        &self,
        event_unique_id: &str,
        endpoint_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LogError> {
        self.0.claim(event_unique_id, endpoint_id, now, lease).await
    }
    async fn release(&self, token: &ClaimToken) -> Result<(), LogError> {
        self.0.release(token).await
    }
    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError> {
        self.0.record_attempt(record).await
    }
    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        self.0.get(event_unique_id).await
    }
    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        self.0.query(filter, cursor, limit).await
    }
    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.0.scan(filter, visit).await
    }
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        self.0.delete_before(cutoff).await
    }
}

#[async_trait::async_trait]
impl EndpointStore for RequiredOnly {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), LogError> {
        self.0.put_endpoint(endpoint).await
    }
    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, LogError> {
        self.0.endpoint(id).await
    }
    async fn endpoints(&self, owner: Option<&str>) -> Result<Vec<Endpoint>, LogError> {
        self.0.endpoints(owner).await
    }
    async fn remove_endpoint(&self, id: &str) -> Result<bool, LogError> {
        self.0.remove_endpoint(id).await
    }
}

#[async_trait::async_trait]
impl CheckoutStore for RequiredOnly {
    async fn insert(&self, checkout: Checkout) -> Result<(), LogError> {
        self.0.insert(checkout).await
    }
    async fn remove(&self, order_id: &str) -> Result<bool, LogError> {
        self.0.remove(order_id).await
    }
    async fn pending(&self) -> Result<Vec<Checkout>, LogError> {
        self.0.pending().await
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::check(super::memory_backend().await, fermion_webhooks::testing::$name).await } )*
        }
        mod file {
            $( #[tokio::test] async fn $name() { super::check(super::file_backend().await, fermion_webhooks::testing::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::check(super::postgres_backend().await, fermion_webhooks::testing::$name).await } )*
        }
        mod defaults {
            $( #[tokio::test] async fn $name() { super::check(super::defaults_backend().await, fermion_webhooks::testing::$name).await } )*
        }
        #[test]
        fn every_check_of_the_contract_runs_here() {
            let mut here = [$(stringify!($name)),*];
            let mut all = fermion_webhooks::testing::CHECKS.to_vec();
            here.sort();
            all.sort();
            assert_eq!(here.to_vec(), all);
        }
    };
}

/// Runs `check` on the backend's store, keeping the backend alive meanwhile (nothing when it
/// has no server to run against).
async fn check<F: std::future::Future<Output = ()>>(
    backend: Option<Backend>,
    check: impl FnOnce(Arc<dyn Store>) -> F,
) {
    if let Some(backend) = backend {
        check(backend.store.clone()).await;
    }
}

contract!(
    an_appended_event_comes_back_with_its_exact_body_and_deliveries,
    bodies_are_read_by_event_each_once_and_missing_ones_left_out,
    a_second_event_with_the_same_id_is_refused,
    malformed_entries_are_refused_with_a_reason,
    attempts_are_recorded_with_the_new_delivery_state,
    attempts_for_unknown_events_or_endpoints_are_refused,
    claims_hand_out_due_pending_deliveries_earliest_first_each_once_per_lease,
    a_claim_taken_over_after_its_lease_fences_out_the_old_holder,
    claims_are_released_on_request_and_held_against_unclaimed_records,
    concurrent_claimers_never_get_the_same_delivery,
    claims_take_turns_across_endpoints_and_keep_each_under_its_cap,
    the_backlog_counts_pending_deliveries_by_endpoint,
    endpoints_are_stored_secret_included_replaced_listed_by_owner_and_removed,
    pending_checkouts_are_kept_until_forgotten,
    queries_page_newest_first_through_every_event_exactly_once,
    the_time_range_includes_from_and_excludes_to,
    queries_filter_by_kind_status_and_test_flag,
    queries_filter_by_the_endpoints_events_went_to,
    scan_visits_matching_events_oldest_first_and_stops_when_told,
    retention_deletes_events_of_days_before_the_cutoff,
    the_overall_status_is_failed_then_pending_then_delivered,
    unknown_event_types_are_stored_and_excluded_by_a_kind_filter,
    concurrent_appends_all_land_exactly_once,
    a_bad_cursor_is_a_typed_error,
    rows_agree_with_whole_events_under_every_filter,
    attempts_recorded_at_once_on_one_event_leave_its_status_right,
);
