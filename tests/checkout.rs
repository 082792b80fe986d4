//! Abandoned checkouts: `payment-initiated-not-completed` exactly 60 minutes after an
//! uncompleted purchase, exactly once, across restarts, with a fake clock (no test waits an
//! hour).

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::checkout::Checkout;
use fermion_webhooks::clock::ManualClock;
use fermion_webhooks::store::LogFilter;
use fermion_webhooks::{
    CheckoutTracker, DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore,
    HttpSender, LogStore, MemoryLogStore, WebhookEvent, WebhookSecret,
};
use support::{TempDir, at};

const MINUTE: Duration = Duration::from_secs(60);

fn checkout(order_id: &str) -> Checkout {
    Checkout {
        order_id: order_id.into(),
        amount_in_smallest_unit: 129_900,
        currency: "INR".into(),
        user_id: "usr_9".into(),
        user_fullname: "Meera Iyer".into(),
        user_email: "meera@example.com".into(),
        user_phone_number: None,
        course_slug: "system-design".into(),
        course_name: "System Design".into(),
        initiated_at: at("2026-11-28T10:00:00.250Z"),
    }
}

fn dispatcher(
    store: Arc<dyn LogStore>,
    receiver: &TestReceiver,
    clock: Arc<ManualClock>,
) -> Dispatcher {
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(20);
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .unwrap();
    let endpoint = Endpoint::new("crm", receiver.url(), WebhookSecret::new("s").unwrap()).unwrap();
    Dispatcher::start_with(store, Arc::new(sender), vec![endpoint], config, clock).unwrap()
}

#[tokio::test]
async fn an_uncompleted_checkout_fires_exactly_sixty_minutes_after_it_started() {
    let receiver = TestReceiver::ok().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-28T10:00:00.250Z")));
    let dispatcher = dispatcher(Arc::new(MemoryLogStore::new()), &receiver, clock.clone());
    let tracker = CheckoutTracker::new(
        Arc::new(fermion_webhooks::MemoryLogStore::new()),
        dispatcher.clone(),
        clock.clone(),
    );
    tracker.initiated(checkout("ord_1")).await.unwrap();

    clock.set(at("2026-11-28T11:00:00.249Z"));
    assert!(
        tracker.fire_due().await.unwrap().is_empty(),
        "one millisecond early"
    );
    clock.set(at("2026-11-28T11:00:00.250Z"));
    let fired = tracker.fire_due().await.unwrap();
    assert_eq!(fired.len(), 1);
    assert!(tracker.fire_due().await.unwrap().is_empty(), "only once");
    clock.advance(MINUTE * 600);
    assert!(
        tracker.fire_due().await.unwrap().is_empty(),
        "still only once"
    );

    let logged = dispatcher
        .wait_until_final(&fired[0].event_unique_id, Duration::from_secs(10))
        .await
        .unwrap();
    let event = WebhookEvent::from_json(logged.body.as_bytes()).unwrap();
    assert_eq!(event.kind(), Some(EventKind::PaymentInitiatedNotCompleted));
    assert_eq!(event.timestamp, at("2026-11-28T11:00:00.250Z"));
    let body: serde_json::Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    assert_eq!(
        body["payload"]["initiatedAtIsoString"],
        "2026-11-28T10:00:00.250Z"
    );
    assert_eq!(body["payload"]["orderId"], "ord_1");
    assert_eq!(body["payload"]["amountInSmallestUnit"], 129_900);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn completion_cancels_but_a_failed_payment_does_not() {
    let receiver = TestReceiver::ok().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-28T10:00:00Z")));
    let store = Arc::new(MemoryLogStore::new());
    let dispatcher = dispatcher(store.clone(), &receiver, clock.clone());
    let tracker = CheckoutTracker::new(
        Arc::new(fermion_webhooks::MemoryLogStore::new()),
        dispatcher.clone(),
        clock.clone(),
    );
    tracker.initiated(checkout("paid")).await.unwrap();
    tracker.initiated(checkout("card-declined")).await.unwrap();
    clock.advance(MINUTE * 10);
    assert!(tracker.completed("paid").await.unwrap());
    assert!(!tracker.completed("never-started").await.unwrap());
    // The platform reports the decline itself; the buyer may still retry.
    dispatcher
        .emit(EventPayload::sample(EventKind::PaymentFailed))
        .await
        .unwrap();
    clock.advance(MINUTE * 51);
    let fired = tracker.fire_due().await.unwrap();
    assert_eq!(fired.len(), 1);
    let abandoned = LogFilter::default().kinds([EventKind::PaymentInitiatedNotCompleted]);
    let page = store.query(&abandoned, None, 10).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(
        page.events[0]
            .body
            .contains("\"orderId\":\"card-declined\"")
    );
}

#[tokio::test]
async fn the_window_is_configurable() {
    let receiver = TestReceiver::ok().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-28T10:00:00.250Z")));
    let dispatcher = dispatcher(Arc::new(MemoryLogStore::new()), &receiver, clock.clone());
    let tracker = CheckoutTracker::new(
        Arc::new(fermion_webhooks::MemoryLogStore::new()),
        dispatcher,
        clock.clone(),
    )
    .abandon_after(MINUTE * 15);
    tracker.initiated(checkout("ord_1")).await.unwrap();
    clock.advance(MINUTE * 15);
    assert_eq!(tracker.fire_due().await.unwrap().len(), 1);
}

#[tokio::test]
async fn pending_checkouts_survive_a_restart_and_fire_once() {
    let dir = TempDir::new("checkout-restart");
    let receiver = TestReceiver::ok().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-28T10:00:00.250Z")));
    {
        let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
        let dispatcher = dispatcher(store.clone(), &receiver, clock.clone());
        let tracker = CheckoutTracker::new(store, dispatcher.clone(), clock.clone());
        tracker.initiated(checkout("survives")).await.unwrap();
        tracker
            .initiated(checkout("completed-before-restart"))
            .await
            .unwrap();
        tracker.completed("completed-before-restart").await.unwrap();
        dispatcher.shutdown(Duration::from_secs(1)).await;
    }
    clock.advance(MINUTE * 90); // the process was down past the deadline
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let dispatcher = dispatcher(store.clone(), &receiver, clock.clone());
    let tracker = CheckoutTracker::new(store.clone(), dispatcher.clone(), clock.clone());
    let fired = tracker.fire_due().await.unwrap();
    assert_eq!(fired.len(), 1);
    let logged = dispatcher
        .wait_until_final(&fired[0].event_unique_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(logged.body.contains("\"orderId\":\"survives\""));
    assert!(
        logged
            .body
            .contains("\"timestampIsoString\":\"2026-11-28T11:00:00.250Z\""),
        "fired at the deadline"
    );
    assert!(tracker.fire_due().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_between_emitting_and_forgetting_does_not_fire_twice() {
    let dir = TempDir::new("checkout-crash");
    let receiver = TestReceiver::ok().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-28T11:30:00Z")));
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let dispatcher = dispatcher(store.clone(), &receiver, clock.clone());
    let checkouts = store.clone();
    let tracker = CheckoutTracker::new(checkouts.clone(), dispatcher.clone(), clock.clone());
    tracker.initiated(checkout("ord_7")).await.unwrap();
    let first = tracker.fire_due().await.unwrap();
    assert_eq!(first.len(), 1);
    // As if the process died after the event was logged but before the checkout was forgotten.
    use fermion_webhooks::checkout::CheckoutStore;
    checkouts.insert(checkout("ord_7")).await.unwrap();
    drop(tracker);
    let reopened = store.clone();
    let tracker = CheckoutTracker::new(reopened.clone(), dispatcher.clone(), clock.clone());
    assert!(
        tracker.fire_due().await.unwrap().is_empty(),
        "not emitted a second time"
    );
    assert!(
        reopened.pending().await.unwrap().is_empty(),
        "and forgotten now"
    );
    let abandoned = LogFilter::default().kinds([EventKind::PaymentInitiatedNotCompleted]);
    assert_eq!(
        store
            .query(&abandoned, None, 10)
            .await
            .unwrap()
            .events
            .len(),
        1
    );
}
