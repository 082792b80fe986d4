//! `PostgresLogStore`'s connections: as many as its pool options allow, plus those of its
//! claims, however many callers write at once.

mod pg;

use std::sync::Arc;

use fermion_webhooks::store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use fermion_webhooks::store::{Delivery, PostgresLogStore, StoredEvent};
use fermion_webhooks::{EventKind, EventPayload, LogStore, WebhookEvent};

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
                let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
                let delivery =
                    Delivery::pending("crm", "https://crm.example/hooks", event.timestamp);
                store
                    .append(StoredEvent::new(&event, vec![delivery]))
                    .await
                    .unwrap();
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
