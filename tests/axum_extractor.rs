//! The axum extractor against a real server on 127.0.0.1: secret checked before the body is
//! read, body limit enforced without panicking, errors answered as JSON.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::post;
use common::{head, post_json, read_response, send_raw};
use fermion_webhooks::receive::FermionWebhook;
use fermion_webhooks::{EventKind, EventPayload, Receiver, WebhookEvent, WebhookSecret};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "axum-test-secret-5d1c";

#[derive(Clone)]
struct TestState {
    receiver: Receiver,
    handled: Arc<AtomicUsize>,
}

impl FromRef<TestState> for Receiver {
    fn from_ref(state: &TestState) -> Receiver {
        state.receiver.clone()
    }
}

async fn handler(State(state): State<TestState>, FermionWebhook(event): FermionWebhook) -> String {
    state.handled.fetch_add(1, Ordering::SeqCst);
    format!("{} {}", event.event_type(), event.event_unique_id)
}

/// Serves the extractor on 127.0.0.1:0; returns the address and the handler's call counter.
async fn serve(max_body_bytes: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let receiver = Receiver::builder(WebhookSecret::new(SECRET).unwrap())
        .max_body_bytes(max_body_bytes)
        .build();
    let handled = Arc::new(AtomicUsize::new(0));
    let state = TestState {
        receiver,
        handled: handled.clone(),
    };
    let app = Router::new()
        .route("/hook", post(handler))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, handled)
}

fn body(kind: EventKind) -> (WebhookEvent, Vec<u8>) {
    let event = WebhookEvent::new(EventPayload::sample(kind));
    let bytes = event.to_json_bytes();
    (event, bytes)
}

#[tokio::test]
async fn every_kind_is_extracted_with_the_right_secret() {
    let (addr, handled) = serve(4096).await;
    for kind in EventKind::ALL {
        let (event, bytes) = body(kind);
        let response = post_json(
            addr,
            "/hook",
            &[("X-Fermion-Webhook-Secret", SECRET)],
            &bytes,
        )
        .await;
        assert_eq!(response.status, 200, "{kind}: {}", response.body);
        assert_eq!(response.body, format!("{kind} {}", event.event_unique_id));
    }
    assert_eq!(handled.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn wrong_secret_is_rejected_before_the_body_is_read() {
    let (addr, handled) = serve(4096).await;
    // Announce a megabyte and send none of it: the answer must come anyway.
    let request = head(
        "POST",
        "/hook",
        &[
            ("X-Fermion-Webhook-Secret", "wrong"),
            ("Content-Length", "1000000"),
        ],
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let error = response.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("does not match"), "{error}");
    assert!(!response.body.contains(SECRET) && !response.body.contains("wrong\""));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn missing_and_repeated_secrets_are_401_with_distinct_messages() {
    let (addr, _) = serve(4096).await;
    let (_, bytes) = body(EventKind::PaidCourseSale);
    let missing = post_json(addr, "/hook", &[], &bytes).await;
    let repeated = post_json(
        addr,
        "/hook",
        &[
            ("X-Fermion-Webhook-Secret", SECRET),
            ("x-fermion-webhook-secret", SECRET),
        ],
        &bytes,
    )
    .await;
    assert_eq!((missing.status, repeated.status), (401, 401));
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    assert!(
        repeated.json()["error"]
            .as_str()
            .unwrap()
            .contains("more than once")
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_without_reading_the_body() {
    let (addr, handled) = serve(1024).await;
    let request = head(
        "POST",
        "/hook",
        &[
            ("X-Fermion-Webhook-Secret", SECRET),
            ("Content-Length", "5000000"),
        ],
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap()
            .contains("1024-byte limit")
    );
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_413() {
    let (addr, handled) = serve(1024).await;
    let request = head(
        "POST",
        "/hook",
        &[
            ("X-Fermion-Webhook-Secret", SECRET),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    let chunk = format!("400\r\n{}\r\n", "a".repeat(0x400));
    let body = format!("{}0\r\n\r\n", chunk.repeat(4));
    let response = send_raw(addr, request.as_bytes(), body.as_bytes()).await;
    assert_eq!(response.status, 413);
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_bad_body_with_the_right_secret_is_400_naming_the_problem() {
    let (addr, handled) = serve(4096).await;
    let cases: [(&[u8], &str); 3] = [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (br#"{"eventUniqueId":"e","timestampIsoString":"2026-11-28T21:11:17.123Z","isTestEvent":false,"payload":{"eventType":"paid-course-sale"}}"#, "payload.userId"),
    ];
    for (bytes, expected) in cases {
        let response = post_json(
            addr,
            "/hook",
            &[("X-Fermion-Webhook-Secret", SECRET)],
            bytes,
        )
        .await;
        assert_eq!(response.status, 400);
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{error}");
    }
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_accepted() {
    let (_, bytes) = body(EventKind::PaymentFailed);
    let (addr, handled) = serve(bytes.len()).await;
    let response = post_json(
        addr,
        "/hook",
        &[("X-Fermion-Webhook-Secret", SECRET)],
        &bytes,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_oversize_body_sent_slowly_is_cut_off_at_the_limit() {
    let (addr, handled) = serve(2048).await;
    let request = head(
        "POST",
        "/hook",
        &[
            ("X-Fermion-Webhook-Secret", SECRET),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // 256 bytes every 10 ms: the answer must come once the limit is passed, not at the end.
    let mut sent = 0;
    let started = std::time::Instant::now();
    for _ in 0..400 {
        let chunk = format!("100\r\n{}\r\n", "b".repeat(256));
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server answered and closed
        }
        sent += 256;
        if sent > 4096 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn with_a_signing_key_the_extractor_requires_a_valid_signature() {
    use fermion_webhooks::SigningSecret;
    use tower::ServiceExt;
    let key = SigningSecret::generate().unwrap();
    let state = TestState {
        receiver: Receiver::signed(key.clone()).build(),
        handled: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/hook", post(handler))
        .with_state(state.clone());
    let (event, bytes) = body(EventKind::PaidCourseSale);
    let now = chrono::Utc::now().timestamp();
    let request = |signature: &str| {
        axum::http::Request::post("/hook")
            .header("webhook-id", event.event_unique_id.as_str())
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(axum::body::Body::from(bytes.clone()))
            .unwrap()
    };
    let good = fermion_webhooks::signature::sign(
        std::slice::from_ref(&key),
        &event.event_unique_id,
        now,
        &bytes,
    );
    let accepted = app.clone().oneshot(request(&good)).await.unwrap();
    assert_eq!(accepted.status().as_u16(), 200);

    let forged = app.oneshot(request("v1,AAAA")).await.unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let answer = axum::body::to_bytes(forged.into_body(), 4096)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer).contains("no signature in webhook-signature matches"),
        "{answer:?}"
    );
    assert_eq!(state.handled.load(Ordering::SeqCst), 1);
}
