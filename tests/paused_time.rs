//! Where time is the subject, on paused tokio time: the default retry schedule, auto-disable
//! after days of failures, and the checkout tracker's hour, all played out in virtual time with
//! a scripted sender instead of real sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fermion_webhooks::checkout::Checkout;
use fermion_webhooks::clock::{Clock, TokioClock};
use fermion_webhooks::dispatch::DispatchConfig;
use fermion_webhooks::sender::{DeliveryRequest, SendOutcome, SendResult};
use fermion_webhooks::store::{DeliveryState, LogStore};
use fermion_webhooks::{
    CheckoutTracker, Dispatcher, Endpoint, EventKind, EventPayload, MemoryLogStore, Sender,
    WebhookSecret,
};

/// Answers each request with the next status of its script (the last one from then on) and
/// notes the bodies it was sent.
#[derive(Debug)]
struct Scripted {
    statuses: Vec<u16>,
    sent: Mutex<Vec<String>>,
    clock: Arc<TokioClock>,
}

impl Scripted {
    fn new(statuses: &[u16], clock: Arc<TokioClock>) -> Arc<Self> {
        Arc::new(Self {
            statuses: statuses.to_vec(),
            sent: Mutex::new(Vec::new()),
            clock,
        })
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Sender for Scripted {
    async fn send(&self, request: DeliveryRequest<'_>) -> SendOutcome {
        let mut sent = self.sent.lock().unwrap();
        let status = self.statuses[sent.len().min(self.statuses.len() - 1)];
        sent.push(String::from_utf8_lossy(request.body).into_owned());
        SendOutcome {
            started_at: self.clock.now(),
            duration: Duration::from_millis(5),
            result: SendResult::Response {
                status,
                snippet: String::new(),
                retry_after: None,
            },
        }
    }
}

fn start(sender: Arc<Scripted>, clock: Arc<TokioClock>, config: DispatchConfig) -> Dispatcher {
    let endpoint = Endpoint::new(
        "crm",
        "https://crm.example.com/hooks",
        WebhookSecret::new("paused-secret").unwrap(),
    )
    .unwrap();
    Dispatcher::start_with(
        Arc::new(MemoryLogStore::new()),
        sender,
        vec![endpoint],
        config,
        clock,
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_default_retry_schedule_plays_out_in_virtual_time() {
    let clock = Arc::new(TokioClock::new());
    let sender = Scripted::new(&[503, 503, 503, 200], clock.clone());
    let dispatcher = start(sender.clone(), clock, DispatchConfig::default());
    let emitted = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    let logged = dispatcher
        .wait_until_final(&emitted.event_unique_id, Duration::from_secs(3 * 3600))
        .await
        .unwrap();
    let delivery = &logged.deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Delivered);
    let started: Vec<_> = delivery.attempts.iter().map(|a| a.started_at).collect();
    assert_eq!(started.len(), 4);
    // 5 s, 5 min and 30 min apart, each ±20 % (and up to a poll interval late).
    for (gap, nominal) in started.windows(2).zip([5, 300, 1800]) {
        let gap = (gap[1] - gap[0]).to_std().unwrap().as_secs_f64();
        let nominal = f64::from(nominal);
        assert!(
            (nominal * 0.8..=nominal * 1.2 + 0.5).contains(&gap),
            "{gap} s for a nominal {nominal} s"
        );
    }
    assert_eq!(sender.sent().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_for_five_days_is_disabled_and_its_deliveries_wait() {
    let clock = Arc::new(TokioClock::new());
    let sender = Scripted::new(&[500], clock.clone());
    let mut config = DispatchConfig::default();
    // A retry may start up to a minute late: fewer ticks to play through six days.
    config.poll_interval = Duration::from_secs(60);
    let dispatcher = start(sender.clone(), clock.clone(), config);
    let told = Arc::new(Mutex::new(Vec::new()));
    let heard = told.clone();
    let when = clock.clone();
    dispatcher.on_auto_disable(move |endpoint| {
        heard
            .lock()
            .unwrap()
            .push((endpoint.disabled_reason.clone(), when.now()))
    });
    let started = clock.now();
    let mut last = None;
    // An event every six hours, for six days, to an endpoint that always fails.
    for _ in 0..24 {
        if dispatcher.endpoints()[0].enabled {
            last = Some(
                dispatcher
                    .emit(EventPayload::sample(EventKind::PaidCourseSale))
                    .await
                    .unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
    }
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "told once");
    let endpoint = &dispatcher.endpoints()[0];
    assert!(!endpoint.enabled);
    assert!(
        endpoint
            .disabled_reason
            .as_deref()
            .unwrap()
            .contains("every attempt failed"),
        "{endpoint:?}"
    );
    // Disabled after five days of failures, not before.
    let attempts_before_disabling = sender.sent().len();
    assert!(
        attempts_before_disabling >= 10,
        "{attempts_before_disabling}"
    );
    let failing_for = told[0].1 - started;
    assert!(
        failing_for >= chrono::TimeDelta::days(5) && failing_for < chrono::TimeDelta::days(6),
        "disabled after {failing_for}"
    );
    // What was pending when it was disabled waits, paused: nothing more is sent.
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(sender.sent().len(), attempts_before_disabling);
    let logged = dispatcher
        .stats()
        .await
        .unwrap()
        .pending
        .iter()
        .map(|b| b.pending)
        .sum::<u64>();
    assert!(logged > 0, "paused deliveries stay pending");
    assert!(last.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_checkout_fires_an_hour_after_it_started_and_only_once() {
    let clock = Arc::new(TokioClock::new());
    let sender = Scripted::new(&[200], clock.clone());
    let store = Arc::new(MemoryLogStore::new());
    let endpoint = Endpoint::new(
        "crm",
        "https://crm.example.com/hooks",
        WebhookSecret::new("paused-secret").unwrap(),
    )
    .unwrap();
    let dispatcher = Dispatcher::start_with(
        store.clone(),
        sender.clone(),
        vec![endpoint],
        DispatchConfig::default(),
        clock.clone(),
    )
    .unwrap();
    let tracker = CheckoutTracker::new(store.clone(), dispatcher, clock.clone());
    let checkout = Checkout {
        order_id: "order-1".into(),
        amount_in_smallest_unit: 49_900,
        currency: "INR".into(),
        user_id: "u1".into(),
        user_fullname: "Asha Rao".into(),
        user_email: "asha@example.com".into(),
        user_phone_number: None,
        course_slug: "rust-101".into(),
        course_name: "Rust 101".into(),
        initiated_at: clock.now(),
    };
    tracker.initiated(checkout).await.unwrap();
    tokio::spawn(tracker.run(Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_secs(59 * 60)).await;
    assert!(sender.sent().is_empty(), "not abandoned before the hour");
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    assert_eq!(sender.sent().len(), 1);
    assert!(sender.sent()[0].contains("payment-initiated-not-completed"));
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    assert_eq!(sender.sent().len(), 1, "once");
    let logged = store
        .query(&Default::default(), None, 10)
        .await
        .unwrap()
        .events;
    assert_eq!(logged.len(), 1);
}
