//! A recognisable secret goes through every path (configuration, delivery, failures, echoing
//! endpoints, the file log, exports, errors) and is searched for everywhere it must not be.

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::receiver::{Reply, TestReceiver};
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::export::{ExportOptions, export_jsonl};
use fermion_webhooks::store::LogFilter;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore, HttpSender,
    LogStore, Receiver, RetrySchedule, SECRET_HEADER, WebhookSecret, export_csv,
};
use http::HeaderMap;
use support::TempDir;

const SECRET: &str = "XYZZY-canary-secret-7f3e1b";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the secret leaked into {what}: {text}"
    );
    assert!(
        !text.contains("XYZZY"),
        "part of the secret leaked into {what}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_appears_in_no_debug_output_error_log_file_or_export() {
    let secret = WebhookSecret::new(SECRET).unwrap();
    assert_clean("Debug of the secret", &format!("{secret:?}"));
    assert_clean("Display of the secret", &format!("{secret}"));

    let good = TestReceiver::ok().await;
    let echo = TestReceiver::start(|_| Reply::EchoHeaders).await;
    let dir = TempDir::new("secrets");
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    // Every request of this test goes to 127.0.0.1 or is refused before connecting.
    let endpoints = vec![
        Endpoint::new("good", good.url(), secret.clone()).unwrap(),
        Endpoint::new("echo", echo.url(), secret.clone()).unwrap(),
        Endpoint::new("nowhere", "http://127.0.0.1:9/refused", secret.clone()).unwrap(),
    ];
    let blocked_endpoint =
        Endpoint::new("blocked", "http://blocked.example/hook", secret.clone()).unwrap();
    for endpoint in endpoints.iter().chain([&blocked_endpoint]) {
        assert_clean("Debug of an endpoint", &format!("{endpoint:?}"));
    }
    // The SSRF guard refuses this name's private address before any connection is made.
    let sender = Arc::new(
        HttpSender::builder()
            .resolve("blocked.example", &["10.0.0.1".parse().unwrap()])
            .build()
            .unwrap(),
    );
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed([Duration::from_millis(20)]);
    config.poll_interval = Duration::from_millis(20);
    let loopback = Arc::new(
        HttpSender::builder()
            .allow_private_networks(true)
            .build()
            .unwrap(),
    );
    let dispatcher = Dispatcher::start_with(
        store.clone(),
        loopback,
        endpoints.clone(),
        config.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_clean("Debug of the dispatcher", &format!("{dispatcher:?}"));
    assert_clean("Debug of the sender", &format!("{sender:?}"));
    let mut ids = Vec::new();
    for kind in EventKind::ALL {
        ids.push(
            dispatcher
                .emit(EventPayload::sample(kind))
                .await
                .unwrap()
                .event_unique_id,
        );
    }
    for id in &ids {
        dispatcher
            .wait_until_final(id, Duration::from_secs(20))
            .await
            .unwrap();
    }
    dispatcher.retrigger(&ids[0], Some("echo")).await.unwrap();
    let blocked = Dispatcher::start_with(
        store.clone(),
        sender,
        vec![blocked_endpoint],
        config,
        Arc::new(SystemClock),
    )
    .unwrap();
    let emitted = blocked
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    let refused = blocked
        .wait_until_final(&emitted.event_unique_id, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(format!("{:?}", refused.deliveries[0].attempts[0]).contains("BlockedAddress"));
    let error = dispatcher
        .retrigger("no-such-event", None)
        .await
        .unwrap_err();
    assert_clean("a dispatch error", &format!("{error} {error:?}"));

    // The echoing endpoint really did send the secret back; the log must not keep it.
    assert!(
        echo.received()
            .iter()
            .all(|r| r.headers[SECRET_HEADER.as_str()] == SECRET)
    );
    let logged = store.get(&ids[0]).await.unwrap().unwrap();
    let echoed = &logged
        .deliveries
        .iter()
        .find(|d| d.endpoint_id == "echo")
        .unwrap()
        .attempts[0];
    assert_clean("a recorded response snippet", &format!("{echoed:?}"));
    assert!(format!("{echoed:?}").contains("<redacted>"), "{echoed:?}");

    // Pending checkouts live in the same database.
    let checkouts = store.clone();
    let tracker = fermion_webhooks::CheckoutTracker::new(
        checkouts,
        dispatcher.clone(),
        Arc::new(SystemClock),
    );
    let mut checkout = fermion_webhooks::checkout::Checkout {
        order_id: "ord".into(),
        amount_in_smallest_unit: 1,
        currency: "INR".into(),
        user_id: "u".into(),
        user_fullname: "U".into(),
        user_email: "u@example.com".into(),
        user_phone_number: None,
        course_slug: "c".into(),
        course_name: "C".into(),
        initiated_at: chrono::Utc::now() - chrono::TimeDelta::hours(2),
    };
    tracker.initiated(checkout.clone()).await.unwrap();
    checkout.order_id = "pending".into();
    checkout.initiated_at = chrono::Utc::now();
    tracker.initiated(checkout).await.unwrap();
    for fired in tracker.fire_due().await.unwrap() {
        dispatcher
            .wait_until_final(&fired.event_unique_id, Duration::from_secs(20))
            .await
            .unwrap();
    }

    drop(blocked);
    drop(dispatcher);
    drop(store);
    // What an operator sees with the `logs` tool.
    let log_dir = dir.path().to_str().unwrap();
    for args in [
        vec!["list"],
        vec!["attempts", ids[0].as_str()],
        vec!["show", ids[0].as_str()],
    ] {
        let output = std::process::Command::new(support::example_binary("logs"))
            .args(["--log-dir", log_dir])
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success(), "logs {args:?}");
        assert_clean(
            &format!("logs {args:?}"),
            &String::from_utf8_lossy(&output.stdout),
        );
        assert_clean(
            &format!("logs {args:?} stderr"),
            &String::from_utf8_lossy(&output.stderr),
        );
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert_clean(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
    let store = FileLogStore::open_read_only(dir.path()).await.unwrap();
    let mut csv = Vec::new();
    export_csv(
        &store,
        &LogFilter::default(),
        &mut csv,
        &ExportOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_clean("the CSV export", &String::from_utf8_lossy(&csv));
    let mut jsonl = Vec::new();
    export_jsonl(&store, &LogFilter::default(), &mut jsonl, &mut |_| {})
        .await
        .unwrap();
    assert_clean("the JSON Lines export", &String::from_utf8_lossy(&jsonl));

    let receiver = Receiver::builder(secret.clone())
        .also_accept(WebhookSecret::new("XYZZY-old").unwrap())
        .build();
    assert_clean("Debug of a receiver", &format!("{receiver:?}"));
    let mut headers = HeaderMap::new();
    headers.insert(SECRET_HEADER, "XYZZY-canary-secret-7f3e1c".parse().unwrap());
    let error = receiver.receive(&headers, b"{}").unwrap_err();
    assert_clean("a receive error", &format!("{error} {error:?}"));
}
