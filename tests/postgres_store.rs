//! What `PostgresLogStore` promises beyond the contract every log keeps: as many connections
//! as its pool options allow, plus those of its claims, however many callers write at once;
//! appends and attempts made at once written together, one refused write failing alone; and
//! instances claiming at the same moment each getting a full claim.

mod pg;

use std::sync::Arc;

use fermion_webhooks::store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::time::Duration;

use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, ClaimRequest, Delivery, DeliveryState, LogError,
    LogFilter, PostgresLogStore, StoredEvent,
};
use fermion_webhooks::{EventKind, EventPayload, LogStore, WebhookEvent};

/// An event to one endpoint, pending.
fn entry() -> StoredEvent {
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    let delivery = Delivery::pending("crm", "https://crm.example/hooks", event.timestamp);
    StoredEvent::new(&event, vec![delivery])
}

/// Appends `entries` at once, each from a task of its own; their results, in order.
async fn append_at_once(
    store: &Arc<PostgresLogStore>,
    entries: Vec<StoredEvent>,
) -> Vec<Result<(), LogError>> {
    let tasks: Vec<_> = entries
        .into_iter()
        .map(|entry| {
            let store = store.clone();
            tokio::spawn(async move { store.append(entry).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// How many transactions wrote the events in the log.
async fn transactions(schema: &pg::Schema, store: &PostgresLogStore) -> i64 {
    let sql = format!(
        "SELECT count(DISTINCT xmin::text) FROM \"{}\".fermion_events",
        schema.name
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Connections the server has open for `application`.
async fn open_connections(application: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&pg::url()).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(application)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_log_opens_no_more_connections_than_its_pool_options_allow_plus_its_claims() {
    let Some(schema) = pg::Schema::new("pool").await else {
        return;
    };
    let application = schema.name.clone();
    let options: PgConnectOptions = schema.url().parse().unwrap();
    let store = Arc::new(
        PostgresLogStore::connect_with_pool(
            options.application_name(&application),
            PgPoolOptions::new().max_connections(3),
        )
        .await
        .unwrap(),
    );
    let appends: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store.append(entry()).await.unwrap();
            })
        })
        .collect();
    for append in appends {
        append.await.unwrap();
    }
    let claimed = store
        .claim_due(&fermion_webhooks::store::ClaimRequest::new(
            chrono::Utc::now(),
            100,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 40);
    let open = open_connections(&application).await;
    let most = 3 + i64::from(PostgresLogStore::CLAIM_CONNECTIONS);
    assert!(
        (1..=most).contains(&open),
        "{open} connections open, at most {most} allowed"
    );
}

#[tokio::test]
async fn appends_made_at_once_are_written_together_in_few_transactions() {
    let Some(schema) = pg::Schema::new("group").await else {
        return;
    };
    let store = Arc::new(schema.store().await);
    for appended in append_at_once(&store, (0..64).map(|_| entry()).collect()).await {
        appended.unwrap();
    }
    let page = store.query(&Default::default(), None, 100).await.unwrap();
    assert_eq!(page.events.len(), 64);
    let transactions = transactions(&schema, &store).await;
    assert!(
        transactions <= 4,
        "64 appends at once took {transactions} transactions"
    );
}

#[tokio::test]
async fn an_entry_the_server_refuses_fails_alone_and_the_others_are_appended() {
    let Some(schema) = pg::Schema::new("refused").await else {
        return;
    };
    let store = Arc::new(schema.store().await);
    let mut entries: Vec<StoredEvent> = (0..10).map(|_| entry()).collect();
    // PostgreSQL's text cannot hold a NUL byte.
    entries[3].body = "{\"note\":\"\0\"}".to_owned();
    let refused = entries[3].event_unique_id.clone();
    let ids: Vec<String> = entries.iter().map(|e| e.event_unique_id.clone()).collect();
    let results = append_at_once(&store, entries).await;
    for (id, result) in ids.iter().zip(&results) {
        if *id == refused {
            let error = result.as_ref().unwrap_err().to_string();
            assert!(error.contains(&refused), "{error}");
            assert!(store.get(id).await.unwrap().is_none());
        } else {
            result.as_ref().unwrap();
            assert!(store.get(id).await.unwrap().is_some());
        }
    }
}

#[tokio::test]
async fn the_same_event_appended_twice_at_once_is_stored_once_and_refused_once() {
    let Some(schema) = pg::Schema::new("twice").await else {
        return;
    };
    let store = Arc::new(schema.store().await);
    let event = entry();
    let results = append_at_once(&store, vec![event.clone(), event.clone()]).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    assert!(matches!(refused[0], LogError::DuplicateEvent { .. }));
    let stored = store.get(&event.event_unique_id).await.unwrap().unwrap();
    assert_eq!(stored.deliveries.len(), 1);
}

/// Deadlocks the test database has detected so far.
async fn deadlocks(store: &PostgresLogStore) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_on_the_same_events_recorded_at_once_by_two_instances_leave_right_counts_and_no_deadlock()
 {
    let Some(schema) = pg::Schema::new("locks").await else {
        return;
    };
    // Two instances, each writing two batches at once.
    let instances = [
        Arc::new(schema.store().await),
        Arc::new(schema.store().await),
    ];
    let endpoints = ["crm", "mail", "sheet", "chat"];
    let mut ids = Vec::new();
    for _ in 0..50 {
        let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
        let deliveries = endpoints
            .iter()
            .map(|e| Delivery::pending(*e, "https://hooks.example/x", event.timestamp))
            .collect();
        instances[0]
            .append(StoredEvent::new(&event, deliveries))
            .await
            .unwrap();
        ids.push(event.event_unique_id);
    }
    let now = chrono::Utc::now();
    let claimed = instances[0]
        .claim_due(&ClaimRequest::new(now, 1_000, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 200);
    let before = deadlocks(&instances[0]).await;
    // Each event's deliveries recorded by both instances at once: the first two endpoints'
    // by one, in the order of the events, the other two's by the other, in the reverse order.
    let (mut first, mut second): (Vec<_>, Vec<_>) = claimed
        .into_iter()
        .partition(|due| ["crm", "mail"].contains(&due.endpoint_id.as_str()));
    first.sort_by(|a, b| a.event_unique_id.cmp(&b.event_unique_id));
    second.sort_by(|a, b| b.event_unique_id.cmp(&a.event_unique_id));
    let record = |store: Arc<PostgresLogStore>, due: fermion_webhooks::store::DueDelivery| {
        tokio::spawn(async move {
            let attempt = Attempt::response(
                now,
                Duration::from_millis(3),
                200,
                "ok",
                AttemptTrigger::FirstTry,
            );
            store
                .record_attempt(AttemptRecord {
                    event_unique_id: due.event_unique_id,
                    endpoint_id: due.endpoint_id,
                    attempt,
                    state: DeliveryState::Delivered,
                    next_attempt_at: None,
                    claim: Some(due.claim),
                })
                .await
        })
    };
    let mut tasks = Vec::new();
    for (a, b) in first.into_iter().zip(second) {
        tasks.push(record(instances[0].clone(), a));
        tasks.push(record(instances[1].clone(), b));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(deadlocks(&instances[0]).await, before);
    for id in &ids {
        let event = instances[1].get(id).await.unwrap().unwrap();
        assert!(
            event
                .deliveries
                .iter()
                .all(|d| d.state == DeliveryState::Delivered && d.attempts.len() == 1),
            "{event:?}"
        );
    }
    let delivered = LogFilter::default().status(DeliveryState::Delivered);
    let page = instances[1].query(&delivered, None, 100).await.unwrap();
    assert_eq!(page.events.len(), 50);
    let page = instances[1]
        .query(
            &LogFilter::default().status(DeliveryState::Pending),
            None,
            100,
        )
        .await
        .unwrap();
    assert!(page.events.is_empty());
}

#[tokio::test]
async fn two_attempts_of_one_delivery_recorded_at_once_are_both_kept_in_order() {
    let Some(schema) = pg::Schema::new("twice_recorded").await else {
        return;
    };
    let store = Arc::new(schema.store().await);
    let event = entry();
    let id = event.event_unique_id.clone();
    store.append(event).await.unwrap();
    let started = chrono::Utc::now();
    let tasks: Vec<_> = [
        (500, DeliveryState::Pending),
        (200, DeliveryState::Delivered),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (status, state))| {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let at = started + chrono::TimeDelta::seconds(i as i64);
            let attempt = Attempt::response(
                at,
                Duration::from_millis(3),
                status,
                "",
                AttemptTrigger::ManualRetrigger,
            );
            store
                .record_attempt(AttemptRecord {
                    event_unique_id: id,
                    endpoint_id: "crm".into(),
                    attempt,
                    state,
                    next_attempt_at: (state == DeliveryState::Pending).then_some(at),
                    claim: None,
                })
                .await
        })
    })
    .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stored = store.get(&id).await.unwrap().unwrap();
    let statuses: Vec<_> = stored.deliveries[0]
        .attempts
        .iter()
        .map(|a| match a.outcome {
            fermion_webhooks::store::AttemptOutcome::Response { status, .. } => status,
            _ => 0,
        })
        .collect();
    assert_eq!(statuses, [500, 200]);
    assert_eq!(stored.deliveries[0].state, DeliveryState::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_claiming_at_the_same_moment_each_get_a_full_claim_of_different_deliveries() {
    let Some(schema) = pg::Schema::new("claims").await else {
        return;
    };
    let instances = [
        Arc::new(schema.store().await),
        Arc::new(schema.store().await),
    ];
    let appends = append_at_once(&instances[0], (0..300).map(|_| entry()).collect()).await;
    assert!(appends.iter().all(Result::is_ok));
    let request = ClaimRequest::new(chrono::Utc::now(), 20, Duration::from_secs(60));
    let claims: Vec<_> = (0..10)
        .map(|i| {
            let (store, request) = (instances[i % 2].clone(), request.clone());
            tokio::spawn(async move { store.claim_due(&request).await.unwrap() })
        })
        .collect();
    let mut claimed = std::collections::HashSet::new();
    for claim in claims {
        let claim = claim.await.unwrap();
        // A claim that met another on the same rows skips them and takes the next ones.
        assert_eq!(claim.len(), 20);
        claimed.extend(claim.into_iter().map(|due| due.event_unique_id));
    }
    assert_eq!(claimed.len(), 200);
}
