//! A child process emits through the dispatcher into a file log while its receiver is down, and
//! is killed with SIGKILL at random moments, many times. After each kill: a second writer is
//! refused while the child lives, the log reopens without repair, and every acknowledged event
//! is there exactly once. At the end a receiver comes up: every acknowledged event is
//! delivered, and the abandoned checkout started in the first round fired exactly once.

mod common;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::checkout::Checkout;
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::{DeliveryState, LogFilter};
use fermion_webhooks::{
    CheckoutTracker, DispatchConfig, Dispatcher, EventKind, EventPayload, FileLogStore, LogStore,
    RetrySchedule, WebhookEvent,
};
use support::{TempDir, ids_in_log};

const ORDER: &str = "order-abandoned-in-round-0";

fn dispatcher(store: Arc<FileLogStore>, url: &str) -> Dispatcher {
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed([Duration::from_millis(300); 50]);
    config.poll_interval = Duration::from_millis(20);
    support::loopback_dispatcher(store, url, "crash", config)
}

/// The child: emits until killed, printing each id once `emit` returned `Ok`; the checkout
/// tracker runs beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by emitted_events_survive_repeated_kill_9 in a child process"]
async fn child_emits_until_killed() {
    let dir = std::env::var("FERMION_CRASH_DIR").expect("FERMION_CRASH_DIR");
    let store = Arc::new(FileLogStore::open(&dir).await.unwrap());
    // Nothing listens on port 9 of loopback: every attempt fails and stays pending.
    let dispatcher = dispatcher(store.clone(), "http://127.0.0.1:9/down");
    let tracker = CheckoutTracker::new(store, dispatcher.clone(), Arc::new(SystemClock));
    if std::env::var("FERMION_CRASH_ROUND").as_deref() == Ok("0") {
        // Started 59 min 59.5 s ago: abandoned half a second into this round.
        let initiated_at = chrono::Utc::now() - chrono::TimeDelta::milliseconds(3_599_500);
        tracker
            .initiated(Checkout {
                order_id: ORDER.into(),
                amount_in_smallest_unit: 49_900,
                currency: "INR".into(),
                user_id: "u".into(),
                user_fullname: "Crash Test".into(),
                user_email: "crash@example.com".into(),
                user_phone_number: None,
                course_slug: "c".into(),
                course_name: "C".into(),
                initiated_at,
            })
            .await
            .unwrap();
    }
    tokio::spawn(tracker.run(Duration::from_millis(25)));
    let mut stdout = std::io::stdout();
    for i in 0usize.. {
        // Built here, so the parent learns the exact bytes `emit` accepted.
        let body = WebhookEvent::new(EventPayload::sample(EventKind::ALL[i % 4])).to_json();
        let emitted = dispatcher.emit_json(body.clone()).await.unwrap();
        writeln!(stdout, "acked {} {body}", emitted.event_unique_id).unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitted_events_survive_repeated_kill_9_and_are_delivered_after() {
    let dir = TempDir::new("crash-restart");
    // (id, exact body) of every event whose `emit` returned Ok.
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_emits_until_killed",
                "--nocapture",
            ])
            .env("FERMION_CRASH_DIR", dir.path())
            .env("FERMION_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wanted = 20 + (round * 53) % 170;
        let mut seen = 0;
        while seen < wanted {
            let line = lines.next().expect("the child runs until killed").unwrap();
            if let Some(ack) = parse_ack(&line) {
                acknowledged.push(ack);
                seen += 1;
            }
        }
        if round == 0 {
            // Past the checkout's deadline while the child still runs.
            std::thread::sleep(Duration::from_millis(700));
        }
        // A reader beside the child sees what it acknowledged, and the child carries on.
        let reader = FileLogStore::open_read_only(dir.path()).await.unwrap();
        assert!(ids_in_log(&reader).await.len() >= acknowledged.len());
        drop(reader);
        for _ in 0..5 {
            let line = lines.next().expect("the writer is unharmed").unwrap();
            acknowledged.extend(parse_ack(&line));
        }
        child.kill().unwrap(); // SIGKILL, mid-stride
        child.wait().unwrap();
        acknowledged.extend(lines.map_while(Result::ok).filter_map(|l| parse_ack(&l)));
        let store = FileLogStore::open(dir.path()).await.unwrap();
        let mut in_log = ids_in_log(&store).await;
        let total = in_log.len();
        in_log.sort();
        in_log.dedup();
        assert_eq!(
            in_log.len(),
            total,
            "round {round}: an event is in the log twice"
        );
        for (id, body) in &acknowledged {
            assert!(
                in_log.binary_search(id).is_ok(),
                "round {round}: acknowledged {id} lost"
            );
            let logged = store.get(id).await.unwrap().unwrap();
            assert_eq!(
                &logged.body, body,
                "round {round}: {id} is not byte-identical"
            );
        }
    }

    // The receiver comes up; a fresh dispatcher delivers everything left pending.
    let receiver = TestReceiver::ok().await;
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let dispatcher = dispatcher(store.clone(), &receiver.url());
    for (id, body) in &acknowledged {
        let event = dispatcher
            .wait_until_final(id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(event.status(), DeliveryState::Delivered, "{id}");
        assert_eq!(&event.body, body, "{id}: not byte-identical");
    }
    let delivered: std::collections::HashSet<Vec<u8>> =
        receiver.received().into_iter().map(|r| r.body).collect();
    for (id, body) in &acknowledged {
        assert!(
            delivered.contains(body.as_bytes()),
            "{id}: the receiver never got these bytes"
        );
    }
    let abandoned = LogFilter::default().kinds([EventKind::PaymentInitiatedNotCompleted]);
    let mut fired = Vec::new();
    store
        .scan(&abandoned, &mut |event| {
            if event.body.contains(ORDER) {
                fired.push(event);
            }
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(
        fired.len(),
        1,
        "the abandoned checkout fired exactly once across restarts"
    );
    let event = dispatcher
        .wait_until_final(&fired[0].event_unique_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(event.status(), DeliveryState::Delivered);
    let deliveries_of_checkout = receiver
        .received()
        .iter()
        .filter(|r| {
            WebhookEvent::from_json(&r.body).unwrap().event_unique_id == fired[0].event_unique_id
        })
        .count();
    assert_eq!(deliveries_of_checkout, 1);
    assert!(acknowledged.len() >= 300);
}

/// `acked <id> <body>` from the child.
fn parse_ack(line: &str) -> Option<(String, String)> {
    let (id, body) = line.strip_prefix("acked ")?.split_once(' ')?;
    Some((id.to_owned(), body.to_owned()))
}
