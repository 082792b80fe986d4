//! Standard Webhooks signatures end to end: a dispatcher signs each attempt to a real receiver
//! on 127.0.0.1, a `Receiver` verifies (alone or with the Fermion secret), and each way a
//! signature can be wrong gets its own 401.

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chrono::{TimeDelta, Utc};
use common::receiver::{Reply, TestReceiver};
use fermion_webhooks::clock::{Clock, ManualClock};
use fermion_webhooks::signature::{self, SignatureError};
use fermion_webhooks::{
    DispatchConfig, Endpoint, EventKind, EventPayload, MemoryLogStore, ReceiveError, Receiver,
    RetrySchedule, SECRET_HEADER, SigningSecret, WebhookEvent, WebhookSecret,
};
use http::{HeaderMap, HeaderValue, StatusCode};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers[name].to_str().unwrap()
}

/// A dispatcher delivering to `url` signed with `keys`, retrying once after 50 ms.
fn signing_dispatcher(url: &str, keys: &[SigningSecret]) -> fermion_webhooks::Dispatcher {
    let mut endpoint =
        Endpoint::new("crm", url, WebhookSecret::new("fermion-secret").unwrap()).unwrap();
    for key in keys {
        endpoint = endpoint.signed_with(key.clone());
    }
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed([Duration::from_millis(1100)]);
    config.poll_interval = Duration::from_millis(20);
    support::dispatcher_for(Arc::new(MemoryLogStore::new()), endpoint, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_signed_with_the_event_id_and_its_own_timestamp() {
    // The first attempt fails, so the event is sent twice.
    let receiver = TestReceiver::start(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let key = SigningSecret::generate().unwrap();
    let dispatcher = signing_dispatcher(&receiver.url(), std::slice::from_ref(&key));
    let (emitted, _) = support::emit_until_final(&dispatcher, EventKind::PaidCourseSale).await;

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let verifier = Receiver::builder(WebhookSecret::new("fermion-secret").unwrap())
        .require_signature(key)
        .build();
    let mut timestamps = Vec::new();
    for request in &received {
        assert_eq!(
            header(&request.headers, "webhook-id"),
            emitted.event_unique_id
        );
        let timestamp: i64 = header(&request.headers, "webhook-timestamp")
            .parse()
            .unwrap();
        assert!((Utc::now().timestamp() - timestamp).abs() < 10);
        timestamps.push(timestamp);
        assert!(header(&request.headers, "webhook-signature").starts_with("v1,"));
        assert_eq!(
            header(&request.headers, SECRET_HEADER.as_str()),
            "fermion-secret",
            "the Fermion secret header is still sent"
        );
        let event = verifier.receive(&request.headers, &request.body).unwrap();
        assert_eq!(event.event_unique_id, emitted.event_unique_id);
    }
    assert!(
        timestamps[1] > timestamps[0],
        "the retry carries its own time, 1.1 s later: {timestamps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_each_key_signs_and_a_receiver_holding_either_accepts() {
    let receiver = TestReceiver::ok().await;
    let (new, old) = (
        SigningSecret::generate().unwrap(),
        SigningSecret::generate().unwrap(),
    );
    let dispatcher = signing_dispatcher(&receiver.url(), &[new.clone(), old.clone()]);
    let emitted = dispatcher
        .send_test_event(EventKind::FreeCourseEnrollment, "crm")
        .await
        .unwrap();
    dispatcher
        .wait_until_final(&emitted.event_unique_id, Duration::from_secs(10))
        .await
        .unwrap();
    let request = &receiver.received()[0];
    let signatures = header(&request.headers, "webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for key in [new, old] {
        let receiver = Receiver::signed(key).build();
        assert!(receiver.receive(&request.headers, &request.body).is_ok());
    }
    let stranger = Receiver::signed(SigningSecret::generate().unwrap()).build();
    let refused = stranger
        .receive(&request.headers, &request.body)
        .unwrap_err();
    assert!(matches!(
        refused,
        ReceiveError::Signature(SignatureError::BadSignature)
    ));
}

/// A signed request for `body` at `timestamp`, with the Fermion secret header.
fn signed_headers(key: &SigningSecret, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(SECRET_HEADER, HeaderValue::from_static("fermion-secret"));
    headers.insert("webhook-id", id.parse().unwrap());
    headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
    let signature = signature::sign(std::slice::from_ref(key), id, timestamp, body);
    headers.insert("webhook-signature", signature.parse().unwrap());
    headers
}

#[test]
fn each_way_a_signature_can_be_wrong_is_its_own_401() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let now = clock.now().timestamp();
    let key = SigningSecret::generate().unwrap();
    let receiver = Receiver::signed(key.clone()).clock(clock.clone()).build();
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaymentFailed));
    let body = event.to_json();
    let body = body.as_bytes();
    let id = &event.event_unique_id;
    let refusal = |headers: &HeaderMap, body: &[u8]| match receiver.receive(headers, body) {
        Err(ReceiveError::Signature(error)) => {
            assert_eq!(
                ReceiveError::Signature(error.clone()).status(),
                StatusCode::UNAUTHORIZED
            );
            error
        }
        other => panic!("expected a signature refusal, got {other:?}"),
    };

    assert!(
        receiver
            .receive(&signed_headers(&key, id, now, body), body)
            .is_ok()
    );
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = signed_headers(&key, id, now, body);
        headers.remove(missing);
        assert_eq!(
            refusal(&headers, body),
            SignatureError::MissingHeader { header: missing }
        );
    }
    let stale = signed_headers(&key, id, now - 301, body);
    assert!(matches!(
        refusal(&stale, body),
        SignatureError::StaleTimestamp { seconds: 301, .. }
    ));
    let future = signed_headers(&key, id, now + 301, body);
    assert!(matches!(
        refusal(&future, body),
        SignatureError::FutureTimestamp { seconds: 301, .. }
    ));
    let tampered = br#"{"eventUniqueId":"forged"}"#;
    assert_eq!(
        refusal(&signed_headers(&key, id, now, body), tampered),
        SignatureError::BadSignature
    );
    let mut garbage = signed_headers(&key, id, now, body);
    garbage.insert("webhook-timestamp", HeaderValue::from_static("yesterday"));
    assert_eq!(refusal(&garbage, body), SignatureError::InvalidTimestamp);

    // The tolerance is the receiver's to set.
    let lenient = Receiver::signed(key.clone())
        .clock(clock)
        .signature_tolerance(Duration::from_secs(3600))
        .build();
    assert!(lenient.receive(&stale, body).is_ok());
}

#[test]
fn with_both_schemes_configured_both_must_hold() {
    let key = SigningSecret::generate().unwrap();
    let receiver = Receiver::builder(WebhookSecret::new("fermion-secret").unwrap())
        .require_signature(key.clone())
        .build();
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    let body = event.to_json();
    let now = Utc::now().timestamp();
    let good = signed_headers(&key, &event.event_unique_id, now, body.as_bytes());
    assert!(receiver.receive(&good, body.as_bytes()).is_ok());

    let mut no_secret = good.clone();
    no_secret.remove(SECRET_HEADER);
    assert!(matches!(
        receiver.receive(&no_secret, body.as_bytes()),
        Err(ReceiveError::MissingSecret)
    ));
    let mut unsigned = good.clone();
    unsigned.remove("webhook-signature");
    assert!(matches!(
        receiver.receive(&unsigned, body.as_bytes()),
        Err(ReceiveError::Signature(
            SignatureError::MissingHeader { .. }
        ))
    ));
    // Without a signing key, the headers are ignored: an old receiver keeps working.
    let secret_only = Receiver::new(WebhookSecret::new("fermion-secret").unwrap());
    assert!(secret_only.receive(&unsigned, body.as_bytes()).is_ok());
}

#[test]
fn receive_with_serves_frameworks_without_the_http_crate() {
    let key = SigningSecret::generate().unwrap();
    let receiver = Receiver::signed(key.clone()).build();
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    let body = event.to_json();
    let timestamp = (Utc::now() - TimeDelta::seconds(5)).timestamp().to_string();
    let signature = signature::sign(
        std::slice::from_ref(&key),
        &event.event_unique_id,
        timestamp.parse().unwrap(),
        body.as_bytes(),
    );
    // As an actix-web or Rocket handler would pass them: name → bytes.
    let pairs = [
        ("webhook-id", event.event_unique_id.as_str()),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    };
    let received = receiver.receive_with(lookup, body.as_bytes()).unwrap();
    assert_eq!(received.event_unique_id, event.event_unique_id);
    assert!(matches!(
        receiver.receive_with(|_| None, body.as_bytes()),
        Err(ReceiveError::Signature(
            SignatureError::MissingHeader { .. }
        ))
    ));
}

#[tokio::test]
async fn receive_body_stops_reading_at_the_limit_and_answers_413() {
    let receiver = Receiver::builder(WebhookSecret::new("fermion-secret").unwrap())
        .max_body_bytes(1024)
        .build();
    let mut headers = HeaderMap::new();
    headers.insert(SECRET_HEADER, HeaderValue::from_static("fermion-secret"));

    // An endless body with no Content-Length: refused once 1 KiB has been read.
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let endless = Endless {
        frames_read: pulled.clone(),
        frame: &[b' '; 256],
    };
    let error = receiver.receive_body(&headers, endless).await.unwrap_err();
    assert!(matches!(error, ReceiveError::BodyTooLarge { limit: 1024 }));
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        pulled.load(std::sync::atomic::Ordering::SeqCst) <= 5,
        "it stopped reading"
    );

    // A good body is parsed.
    let body = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json();
    let whole = http_body_util::Full::new(Bytes::from(body));
    let event = receiver.receive_body(&headers, whole).await.unwrap();
    assert_eq!(event.kind(), Some(EventKind::PaidCourseSale));

    // The secret is checked before a byte is read.
    let mut wrong = headers.clone();
    wrong.insert(SECRET_HEADER, HeaderValue::from_static("guess"));
    let untouched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let never = Endless {
        frames_read: untouched.clone(),
        frame: b"x",
    };
    assert!(matches!(
        receiver.receive_body(&wrong, never).await,
        Err(ReceiveError::WrongSecret)
    ));
    assert_eq!(untouched.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_arriving_at_once_are_handled_once() {
    use fermion_webhooks::DuplicateGuard;
    use fermion_webhooks::receive::Duplicate;
    let guard = Arc::new(DuplicateGuard::new(1000, Duration::from_secs(3600)));
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut copies = Vec::new();
    for _ in 0..8 {
        let (guard, handled, barrier) = (guard.clone(), handled.clone(), barrier.clone());
        copies.push(tokio::spawn(async move {
            barrier.wait().await;
            match guard.begin("evt-1") {
                Ok(handling) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    handled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    handling.finish();
                    None
                }
                Err(duplicate) => Some(duplicate),
            }
        }));
    }
    let mut refused = Vec::new();
    for copy in copies {
        refused.extend(copy.await.unwrap());
    }
    assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(refused.len(), 7);
    assert!(refused.iter().all(|d| *d == Duplicate::InProgress));
    assert_eq!(guard.begin("evt-1").unwrap_err(), Duplicate::Handled);

    // A handler that fails (or panics) leaves the id free for the retry.
    let failing = guard.clone();
    let _ = tokio::spawn(async move {
        let _handling = failing.begin("evt-2").unwrap();
        panic!("the handler failed");
    })
    .await;
    assert!(guard.begin("evt-2").is_ok());
}

/// A body that never ends, counting the frames read from it.
struct Endless {
    frames_read: Arc<std::sync::atomic::AtomicUsize>,
    frame: &'static [u8],
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.frames_read
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            self.frame,
        )))))
    }
}
