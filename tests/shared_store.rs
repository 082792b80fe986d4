//! Several instances sharing one store (one SQLite file opened twice, or one PostgreSQL
//! schema): endpoints changed through one reach the others, a delivery is attempted by one
//! instance only, and checkouts are shared.

mod common;
mod pg;
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::checkout::Checkout;
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::dispatch::DispatchConfig;
use fermion_webhooks::store::Store;
use fermion_webhooks::{
    CheckoutTracker, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore, HttpSender,
    WebhookSecret,
};
use support::TempDir;

/// Two handles on one store, as two instances of a platform would have, and what keeps the
/// store alive.
struct Shared {
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
    _dir: Option<TempDir>,
    _schema: Option<pg::Schema>,
}

async fn sqlite() -> Shared {
    let dir = TempDir::new("shared");
    Shared {
        first: Arc::new(FileLogStore::open(dir.path()).await.unwrap()),
        second: Arc::new(FileLogStore::open(dir.path()).await.unwrap()),
        _dir: Some(dir),
        _schema: None,
    }
}

async fn postgres() -> Option<Shared> {
    let schema = pg::Schema::new("shared").await?;
    Some(Shared {
        first: Arc::new(schema.store().await),
        second: Arc::new(schema.store().await),
        _dir: None,
        _schema: Some(schema),
    })
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() {
                if let Some(shared) = super::postgres().await {
                    super::$name(shared).await
                }
            } )*
        }
    };
}

on_both!(
    an_endpoint_added_through_one_instance_reaches_the_others_within_a_second,
    two_dispatchers_sharing_a_store_deliver_each_event_once,
    a_checkout_started_on_one_instance_and_completed_on_another_emits_nothing,
    an_abandoned_checkout_fires_once_across_instances,
);

fn config() -> DispatchConfig {
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(20);
    config.endpoint_refresh = Duration::from_millis(200);
    config
}

async fn dispatcher(store: Arc<dyn Store>) -> Dispatcher {
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .unwrap();
    Dispatcher::start_with_stored_endpoints(
        store,
        Arc::new(sender),
        config(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

fn endpoint(id: &str, receiver: &TestReceiver) -> Endpoint {
    Endpoint::new(
        id,
        receiver.url(),
        WebhookSecret::new("shared-secret").unwrap(),
    )
    .unwrap()
}

async fn an_endpoint_added_through_one_instance_reaches_the_others_within_a_second(shared: Shared) {
    let receiver = TestReceiver::ok().await;
    let second = dispatcher(shared.second.clone()).await;
    assert!(second.endpoints().is_empty());
    shared
        .first
        .put_endpoint(&endpoint("crm", &receiver))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while second.endpoints().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not seen within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let emitted = second
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    assert_eq!(emitted.endpoint_ids, ["crm"]);
    second
        .wait_until_final(&emitted.event_unique_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(receiver.received().len(), 1);
}

async fn two_dispatchers_sharing_a_store_deliver_each_event_once(shared: Shared) {
    let receiver = TestReceiver::ok().await;
    shared
        .first
        .put_endpoint(&endpoint("crm", &receiver))
        .await
        .unwrap();
    let first = dispatcher(shared.first.clone()).await;
    let second = dispatcher(shared.second.clone()).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let via = if i % 2 == 0 { &first } else { &second };
        let kind = EventKind::ALL[i % 4];
        ids.push(
            via.emit(EventPayload::sample(kind))
                .await
                .unwrap()
                .event_unique_id,
        );
    }
    for id in &ids {
        first
            .wait_until_final(id, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let mut delivered: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            let value: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            value["eventUniqueId"].as_str().unwrap().to_owned()
        })
        .collect();
    delivered.sort();
    ids.sort();
    assert_eq!(
        delivered, ids,
        "every event once, by one instance or the other"
    );
}

fn checkout(order: &str) -> Checkout {
    Checkout {
        order_id: order.into(),
        amount_in_smallest_unit: 49_900,
        currency: "INR".into(),
        user_id: "u1".into(),
        user_fullname: "Asha Rao".into(),
        user_email: "asha@example.com".into(),
        user_phone_number: None,
        course_slug: "rust-101".into(),
        course_name: "Rust 101".into(),
        initiated_at: chrono::Utc::now() - chrono::TimeDelta::hours(2),
    }
}

/// An instance's checkout tracker on its handle of the store.
async fn tracker(store: &Arc<dyn Store>) -> CheckoutTracker {
    CheckoutTracker::new(
        store.clone(),
        dispatcher(store.clone()).await,
        Arc::new(SystemClock),
    )
}

async fn a_checkout_started_on_one_instance_and_completed_on_another_emits_nothing(shared: Shared) {
    let (first, second) = (tracker(&shared.first).await, tracker(&shared.second).await);
    first.initiated(checkout("ord_1")).await.unwrap();
    assert!(
        second.completed("ord_1").await.unwrap(),
        "seen by the other"
    );
    assert!(first.fire_due().await.unwrap().is_empty());
    assert!(second.fire_due().await.unwrap().is_empty());
}

async fn an_abandoned_checkout_fires_once_across_instances(shared: Shared) {
    let (first, second) = (tracker(&shared.first).await, tracker(&shared.second).await);
    first.initiated(checkout("ord_2")).await.unwrap();
    let (a, b) = tokio::join!(first.fire_due(), second.fire_due());
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1, "exactly once");
    assert!(first.fire_due().await.unwrap().is_empty());
}
