//! The framework-agnostic receiver: secret first, then size, then a typed parse; every refusal
//! is a typed error with its HTTP status, and nothing panics.

use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::clock::ManualClock;
use fermion_webhooks::event::ParseError;
use fermion_webhooks::secret::SecretError;
use fermion_webhooks::{
    DuplicateGuard, EventKind, EventPayload, ReceiveError, Receiver, SECRET_HEADER, WebhookEvent,
    WebhookSecret,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;

const SECRET: &str = "whsec-Fermion-Test-9f8e7d6c5b4a";

fn receiver() -> Receiver {
    Receiver::new(WebhookSecret::new(SECRET).unwrap())
}

fn headers_with(values: &[&[u8]]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(SECRET_HEADER, HeaderValue::from_bytes(value).unwrap());
    }
    headers
}

fn good_headers() -> HeaderMap {
    headers_with(&[SECRET.as_bytes()])
}

fn good_body() -> Vec<u8> {
    WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json_bytes()
}

#[derive(Debug)]
enum Expect {
    MissingSecret,
    EmptySecret,
    RepeatedSecret,
    WrongSecret,
    TooLarge,
    NotJson,
    NotAnObject,
    Missing(&'static str),
    Invalid(&'static str),
}

fn check(expect: &Expect, error: &ReceiveError) -> bool {
    match (expect, error) {
        (Expect::MissingSecret, ReceiveError::MissingSecret)
        | (Expect::EmptySecret, ReceiveError::EmptySecret)
        | (Expect::RepeatedSecret, ReceiveError::RepeatedSecret)
        | (Expect::WrongSecret, ReceiveError::WrongSecret)
        | (Expect::TooLarge, ReceiveError::BodyTooLarge { .. })
        | (Expect::NotJson, ReceiveError::InvalidBody(ParseError::NotJson { .. }))
        | (Expect::NotAnObject, ReceiveError::InvalidBody(ParseError::NotAnObject { .. })) => true,
        (
            Expect::Missing(want),
            ReceiveError::InvalidBody(ParseError::MissingField { field, .. }),
        ) => want == field,
        (
            Expect::Invalid(want),
            ReceiveError::InvalidBody(ParseError::InvalidField { field, .. }),
        ) => want == field,
        _ => false,
    }
}

#[test]
fn a_table_of_bad_requests_each_gets_its_typed_error_and_status() {
    let body = good_body();
    let good = String::from_utf8(body.clone()).unwrap();
    let nested = "[".repeat(10_000) + &"]".repeat(10_000);
    let deep_in_a_field = good.replacen(
        r#""userId":"6650f1c2a3b4c5d6e7f80912""#,
        &format!(r#""userId":{nested}"#),
        1,
    );
    let deep_objects = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
    let mut oversize = body.clone();
    oversize.resize(300 * 1024, b' ');
    let long_secret = "x".repeat(10_000);
    let non_utf8: Vec<u8> = good
        .replace("Aarav", "A@rav")
        .bytes()
        .map(|b| if b == b'@' { 0xff } else { b })
        .collect();
    let cases: Vec<(&str, HeaderMap, Vec<u8>, Expect, u16)> = vec![
        (
            "no secret header",
            HeaderMap::new(),
            body.clone(),
            Expect::MissingSecret,
            401,
        ),
        (
            "empty secret",
            headers_with(&[b""]),
            body.clone(),
            Expect::EmptySecret,
            401,
        ),
        (
            "repeated secret, both right",
            headers_with(&[SECRET.as_bytes(), SECRET.as_bytes()]),
            body.clone(),
            Expect::RepeatedSecret,
            401,
        ),
        (
            "repeated secret, one wrong",
            headers_with(&[b"nope", SECRET.as_bytes()]),
            body.clone(),
            Expect::RepeatedSecret,
            401,
        ),
        (
            "wrong secret",
            headers_with(&[b"whsec-Fermion-Test-9f8e7d6c5b4b"]),
            body.clone(),
            Expect::WrongSecret,
            401,
        ),
        (
            "secret prefix",
            headers_with(&[&SECRET.as_bytes()[..SECRET.len() - 1]]),
            body.clone(),
            Expect::WrongSecret,
            401,
        ),
        (
            "secret with extra byte",
            headers_with(&[format!("{SECRET}x").as_bytes()]),
            body.clone(),
            Expect::WrongSecret,
            401,
        ),
        (
            "secret in other case",
            headers_with(&[SECRET.to_uppercase().as_bytes()]),
            body.clone(),
            Expect::WrongSecret,
            401,
        ),
        (
            "too-long secret",
            headers_with(&[long_secret.as_bytes()]),
            body.clone(),
            Expect::WrongSecret,
            401,
        ),
        (
            "non-ASCII secret",
            headers_with(&["whsec-Fërmion".as_bytes()]),
            body.clone(),
            Expect::WrongSecret,
            401,
        ),
        (
            "wrong secret, garbage body",
            headers_with(&[b"nope"]),
            b"\xff\xfe".to_vec(),
            Expect::WrongSecret,
            401,
        ),
        (
            "no secret, oversize body",
            HeaderMap::new(),
            oversize.clone(),
            Expect::MissingSecret,
            401,
        ),
        (
            "oversize body",
            good_headers(),
            oversize,
            Expect::TooLarge,
            413,
        ),
        (
            "empty body",
            good_headers(),
            Vec::new(),
            Expect::NotJson,
            400,
        ),
        (
            "not JSON",
            good_headers(),
            b"eventUniqueId=1&x=2".to_vec(),
            Expect::NotJson,
            400,
        ),
        (
            "truncated JSON",
            good_headers(),
            body[..body.len() - 2].to_vec(),
            Expect::NotJson,
            400,
        ),
        (
            "trailing garbage",
            good_headers(),
            [body.as_slice(), b"}"].concat(),
            Expect::NotJson,
            400,
        ),
        (
            "non-UTF-8 in a string",
            good_headers(),
            non_utf8,
            Expect::NotJson,
            400,
        ),
        (
            "a JSON array",
            good_headers(),
            b"[1,2,3]".to_vec(),
            Expect::NotAnObject,
            400,
        ),
        (
            "a JSON string",
            good_headers(),
            b"\"hello\"".to_vec(),
            Expect::NotAnObject,
            400,
        ),
        (
            "JSON null",
            good_headers(),
            b"null".to_vec(),
            Expect::NotAnObject,
            400,
        ),
        (
            "10,000 nested arrays",
            good_headers(),
            nested.clone().into_bytes(),
            Expect::NotAnObject,
            400,
        ),
        (
            "10,000 nested objects",
            good_headers(),
            deep_objects.into_bytes(),
            Expect::Missing("eventUniqueId"),
            400,
        ),
        (
            "10,000 levels inside a field",
            good_headers(),
            deep_in_a_field.into_bytes(),
            Expect::Invalid("payload.userId"),
            400,
        ),
        (
            "empty object",
            good_headers(),
            b"{}".to_vec(),
            Expect::Missing("eventUniqueId"),
            400,
        ),
        (
            "payload is a string",
            good_headers(),
            good.replacen(r#""payload":{"#, r#""payload":"x","p":{"#, 1)
                .into_bytes(),
            Expect::Invalid("payload"),
            400,
        ),
        (
            "numeric isTestEvent",
            good_headers(),
            good.replace(r#""isTestEvent":false"#, r#""isTestEvent":0"#)
                .into_bytes(),
            Expect::Invalid("isTestEvent"),
            400,
        ),
        (
            "string amount",
            good_headers(),
            good.replace("499900", "\"499900\"").into_bytes(),
            Expect::Invalid("payload.amountInSmallestUnit"),
            400,
        ),
        (
            "huge amount",
            good_headers(),
            good.replace("499900", "1234567890123456789012345678901234567890")
                .into_bytes(),
            Expect::Invalid("payload.amountInSmallestUnit"),
            400,
        ),
        (
            "missing email",
            good_headers(),
            good.replace(r#""userEmail":"aarav.sharma@example.com","#, "")
                .into_bytes(),
            Expect::Missing("payload.userEmail"),
            400,
        ),
        (
            "null course name",
            good_headers(),
            good.replace(r#""Full-Stack Web Development Bootcamp""#, "null")
                .into_bytes(),
            Expect::Invalid("payload.courseName"),
            400,
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, headers, body, expect, status) in cases {
        let error = receiver().receive(&headers, &body).expect_err(name);
        assert!(
            check(&expect, &error),
            "{name}: expected {expect:?}, got {error:?}"
        );
        assert_eq!(
            error.status().as_u16(),
            status,
            "{name}: status for {error}"
        );
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn a_valid_event_with_the_right_secret_is_accepted_whatever_the_header_name_case() {
    let body = good_body();
    for name in [
        "X-Fermion-Webhook-Secret",
        "x-fermion-webhook-secret",
        "X-FERMION-WEBHOOK-SECRET",
    ] {
        // HeaderMap normalises names, as every HTTP server library does when it builds one.
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            SECRET.parse().unwrap(),
        );
        let event = receiver().receive(&headers, &body).unwrap();
        assert_eq!(event.kind(), Some(EventKind::PaidCourseSale));
    }
}

#[test]
fn wrong_secret_is_rejected_before_the_body_is_read() {
    // A body that would be a 413 and a 400 is still a 401: the body is never looked at.
    let huge_garbage = vec![0xffu8; 1024 * 1024];
    let error = receiver()
        .receive(&headers_with(&[b"guess"]), &huge_garbage)
        .unwrap_err();
    assert!(matches!(error, ReceiveError::WrongSecret));
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    assert!(receiver().verify_secret(&good_headers()).is_ok());
}

#[test]
fn old_and_new_secrets_are_both_accepted_during_rotation() {
    let receiver = Receiver::builder(WebhookSecret::new("new-secret").unwrap())
        .also_accept(WebhookSecret::new("old-secret").unwrap())
        .build();
    assert!(
        receiver
            .verify_secret(&headers_with(&[b"new-secret"]))
            .is_ok()
    );
    assert!(
        receiver
            .verify_secret(&headers_with(&[b"old-secret"]))
            .is_ok()
    );
    assert!(matches!(
        receiver.verify_secret(&headers_with(&[b"older-secret"])),
        Err(ReceiveError::WrongSecret)
    ));
}

#[test]
fn the_body_limit_is_configurable_and_inclusive() {
    let body = good_body();
    let exact = Receiver::builder(WebhookSecret::new(SECRET).unwrap())
        .max_body_bytes(body.len())
        .build();
    assert!(exact.receive(&good_headers(), &body).is_ok());
    let smaller = Receiver::builder(WebhookSecret::new(SECRET).unwrap())
        .max_body_bytes(body.len() - 1)
        .build();
    let error = smaller.receive(&good_headers(), &body).unwrap_err();
    assert!(matches!(error, ReceiveError::BodyTooLarge { limit } if limit == body.len() - 1));
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn timestamp_tolerance_is_off_by_default_and_enforced_when_set() {
    let event = WebhookEvent::at(
        EventPayload::sample(EventKind::PaymentFailed),
        "2026-01-01T00:00:00Z".parse().unwrap(),
    );
    let body = event.to_json_bytes();
    // A re-triggered event keeps its months-old timestamp, and is accepted by default.
    assert!(receiver().receive(&good_headers(), &body).is_ok());
    let clock = Arc::new(ManualClock::new("2026-01-01T00:04:00Z".parse().unwrap()));
    let strict = Receiver::builder(WebhookSecret::new(SECRET).unwrap())
        .timestamp_tolerance(Duration::from_secs(300))
        .clock(clock.clone())
        .build();
    assert!(strict.receive(&good_headers(), &body).is_ok());
    clock.advance(Duration::from_secs(120));
    let error = strict.receive(&good_headers(), &body).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiveError::TimestampOutOfTolerance {
                seconds_off: 360,
                tolerance_seconds: 300
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    // A timestamp in the future is as suspicious as one in the past.
    clock.set("2025-12-31T23:50:00Z".parse().unwrap());
    assert!(strict.receive(&good_headers(), &body).is_err());
}

#[test]
fn secrets_never_show_in_debug_display_or_errors() {
    let secret = WebhookSecret::new(SECRET).unwrap();
    assert!(!format!("{secret:?}").contains(SECRET));
    assert!(!format!("{secret}").contains(SECRET));
    let receiver = Receiver::builder(secret.clone())
        .also_accept(WebhookSecret::new("old-Fermion-secret").unwrap())
        .build();
    let debug = format!("{receiver:?}");
    assert!(
        !debug.contains(SECRET) && !debug.contains("old-Fermion-secret"),
        "{debug}"
    );
    for headers in [
        headers_with(&[b"whsec-Fermion-Test-9f8e7d6c5b4"]),
        headers_with(&[SECRET.as_bytes(), b"x"]),
    ] {
        let error = receiver.receive(&headers, b"{}").unwrap_err();
        assert!(
            !format!("{error} {error:?}").contains("whsec-Fermion"),
            "{error:?}"
        );
    }
    for bad in [
        "",
        " Xq7-lead",
        "Xq7\tinside",
        "naïveXq7",
        &"Xq7".repeat(100),
    ] {
        let error = WebhookSecret::new(bad).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(
            bad.trim().is_empty() || !shown.contains(bad.trim()),
            "{shown}"
        );
    }
}

#[test]
fn secrets_refuse_empty_too_long_and_header_unsafe_values() {
    assert!(matches!(WebhookSecret::new(""), Err(SecretError::Empty)));
    assert!(matches!(WebhookSecret::new("   "), Err(SecretError::Empty)));
    assert!(matches!(
        WebhookSecret::new("x".repeat(257)),
        Err(SecretError::TooLong { len: 257, max: 256 })
    ));
    assert!(WebhookSecret::new("x".repeat(256)).is_ok());
    assert!(matches!(
        WebhookSecret::new("ab\ncd"),
        Err(SecretError::NotHeaderSafe { position: 2 })
    ));
    assert!(matches!(
        WebhookSecret::new("trailing "),
        Err(SecretError::NotHeaderSafe { position: 8 })
    ));
    assert!(WebhookSecret::new("inner space ok").is_ok());
}

#[test]
fn generated_secrets_are_long_random_and_usable() {
    let a = WebhookSecret::generate().unwrap();
    let b = WebhookSecret::generate().unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(a.expose_secret().len(), 64);
    assert!(a.expose_secret().bytes().all(|c| c.is_ascii_hexdigit()));
    let receiver = Receiver::new(a.clone());
    assert!(
        receiver
            .verify_secret(&headers_with(&[a.expose_secret().as_bytes()]))
            .is_ok()
    );
    assert!(
        receiver
            .verify_secret(&headers_with(&[b.expose_secret().as_bytes()]))
            .is_err()
    );
}

#[test]
fn the_duplicate_guard_spots_a_second_delivery_of_the_same_event() {
    let guard = DuplicateGuard::new(100, Duration::from_secs(3600));
    let event = receiver().receive(&good_headers(), &good_body()).unwrap();
    assert!(!guard.check_and_record(&event.event_unique_id));
    assert!(guard.check_and_record(&event.event_unique_id));
    assert!(guard.is_duplicate(&event.event_unique_id));
    // Handling failed: forget it so Fermion's retry is processed.
    guard.forget(&event.event_unique_id);
    assert!(!guard.is_duplicate(&event.event_unique_id));
    guard.record(&event.event_unique_id);
    assert!(guard.is_duplicate(&event.event_unique_id));
}

#[test]
fn the_duplicate_guard_is_bounded_by_capacity_and_age() {
    let clock = Arc::new(ManualClock::new("2026-11-28T00:00:00Z".parse().unwrap()));
    let guard = DuplicateGuard::with_clock(3, Duration::from_secs(60), clock.clone());
    for id in ["a", "b", "c", "d"] {
        assert!(!guard.check_and_record(id));
    }
    assert_eq!(guard.len(), 3);
    assert!(
        !guard.is_duplicate("a"),
        "the oldest id is evicted past capacity"
    );
    assert!(guard.is_duplicate("d"));
    clock.advance(Duration::from_secs(30));
    assert!(!guard.check_and_record("e"));
    clock.advance(Duration::from_secs(31));
    assert!(
        !guard.is_duplicate("b"),
        "ids older than max_age are forgotten"
    );
    assert!(guard.is_duplicate("e"));
    assert_eq!(guard.len(), 1);
}

#[test]
fn forgetting_and_re_recording_an_id_keeps_it_for_a_full_period() {
    let clock = Arc::new(ManualClock::new("2026-11-28T00:00:00Z".parse().unwrap()));
    let guard = DuplicateGuard::with_clock(10, Duration::from_secs(60), clock.clone());
    guard.record("a");
    guard.forget("a");
    clock.advance(Duration::from_secs(30));
    guard.record("a");
    clock.advance(Duration::from_secs(45));
    assert!(
        guard.is_duplicate("a"),
        "the first recording's expiry must not drop the second"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn receive_never_panics_on_arbitrary_headers_and_bytes(
        header_values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
        use_real_secret in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut headers = HeaderMap::new();
        for value in &header_values {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(SECRET_HEADER, value);
            }
        }
        if use_real_secret {
            headers.insert(SECRET_HEADER, SECRET.parse().unwrap());
        }
        if let Err(error) = receiver().receive(&headers, &body) {
            prop_assert!(matches!(error.status().as_u16(), 400 | 401 | 413));
        }
    }

    #[test]
    fn receive_never_panics_on_mutated_valid_events(
        position in any::<prop::sample::Index>(),
        replacement in "[\\[\\]{}\",:0-9a-z\\\\ -]{0,8}",
    ) {
        let body = String::from_utf8(good_body()).unwrap();
        let at = position.index(body.len());
        let mutated = format!("{}{}{}", &body[..at], replacement, &body[at..]);
        match receiver().receive(&good_headers(), mutated.as_bytes()) {
            Ok(event) => prop_assert!(!event.event_unique_id.is_empty()),
            Err(error) => prop_assert_eq!(error.status(), StatusCode::BAD_REQUEST),
        }
    }
}
