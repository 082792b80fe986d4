//! What `PostgresLogStore` promises beyond the contract every log keeps: as many connections
//! as its pool options allow, plus those of its claims, however many callers write at once;
//! and appends made at once written together, one refused entry failing alone.

mod pg;

use std::sync::Arc;

use fermion_webhooks::store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use fermion_webhooks::store::{Delivery, LogError, PostgresLogStore, StoredEvent};
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
