//! The exact JSON on the wire: golden bytes per kind, round trips, lenient reading, unknown types.

use fermion_webhooks::event::{
    Course, FreeCourseEnrollment, Order, PaidCourseSale, ParseError, PaymentFailed,
    PaymentInitiatedNotCompleted, User,
};
use fermion_webhooks::{EventKind, EventPayload, WebhookEvent};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn at(iso: &str) -> chrono::DateTime<chrono::Utc> {
    iso.parse().unwrap()
}

fn user(id: &str, fullname: &str, email: &str, phone: Option<&str>) -> User {
    User {
        id: id.into(),
        fullname: fullname.into(),
        email: email.into(),
        phone_number: phone.map(Into::into),
    }
}

fn course(slug: &str, name: &str) -> Course {
    Course {
        slug: slug.into(),
        name: name.into(),
    }
}

fn order(id: &str, amount: u64, currency: &str) -> Order {
    Order {
        id: id.into(),
        amount_in_smallest_unit: amount,
        currency: currency.into(),
    }
}

/// The events the fixture files hold, built field by field.
fn golden_events() -> Vec<(&'static str, WebhookEvent)> {
    vec![
        (
            "free-course-enrollment",
            WebhookEvent {
                event_unique_id: "0b7e3c55-1d2a-4c39-8f7e-5a4b3c2d1e0f".into(),
                timestamp: at("2026-11-28T21:11:17.123Z"),
                is_test_event: false,
                payload: EventPayload::FreeCourseEnrollment(FreeCourseEnrollment {
                    user: user("usr_01", "Zoë Ødegaard", "zoe@example.com", None),
                    course: course("intro-to-rust", "Intro to Rust, \"the hard way\""),
                }),
            },
        ),
        (
            "paid-course-sale",
            WebhookEvent {
                event_unique_id: "1c8f4d66-2e3b-4d4a-9f8f-6b5c4d3e2f10".into(),
                timestamp: at("2026-01-02T03:04:05.006Z"),
                is_test_event: true,
                payload: EventPayload::PaidCourseSale(PaidCourseSale {
                    user: user(
                        "usr_02",
                        "Priya Natarajan",
                        "priya@example.com",
                        Some("+919812345678"),
                    ),
                    course: course("dsa-in-cpp", "DSA in C++"),
                    order: order("ord_9f8e7d", 129_900, "INR"),
                }),
            },
        ),
        (
            "payment-failed",
            WebhookEvent {
                event_unique_id: "2d9a5e77-3f4c-4e5b-8a9a-7c6d5e4f3a21".into(),
                timestamp: at("2026-11-28T23:59:59.999Z"),
                is_test_event: false,
                payload: EventPayload::PaymentFailed(PaymentFailed {
                    user: user(
                        "usr_03",
                        "John O'Neil",
                        "john@example.com",
                        Some("+14155550123"),
                    ),
                    course: course("system-design", "System Design"),
                    order: order("ord_abc123", 4999, "USD"),
                    failure_reason: None,
                }),
            },
        ),
        (
            "payment-initiated-not-completed",
            WebhookEvent {
                event_unique_id: "3e0b6f88-4a5d-4f6c-9b0b-8d7e6f5a4b32".into(),
                timestamp: at("2026-11-28T22:11:17Z"),
                is_test_event: false,
                payload: EventPayload::PaymentInitiatedNotCompleted(PaymentInitiatedNotCompleted {
                    user: user("usr_04", "अनन्या गुप्ता", "ananya@example.com", None),
                    course: course("ml-bootcamp", "ML Bootcamp"),
                    order: order("ord_def456", 0, "INR"),
                    initiated_at: at("2026-11-28T21:11:17Z"),
                }),
            },
        ),
    ]
}

#[test]
fn every_kind_serialises_to_the_golden_bytes() {
    for (name, event) in golden_events() {
        assert_eq!(event.to_json(), fixture(name), "emitted JSON for {name}");
        assert_eq!(event.to_json_bytes(), fixture(name).into_bytes());
    }
}

#[test]
fn golden_bytes_parse_back_into_the_same_event() {
    for (name, event) in golden_events() {
        let parsed = WebhookEvent::from_json(fixture(name).as_bytes()).unwrap();
        assert_eq!(parsed, event, "parsed {name}");
        assert_eq!(parsed.event_type(), name);
        assert_eq!(parsed.kind().map(|k| k.as_str()), Some(name));
    }
}

#[test]
fn emitted_events_have_exactly_the_typescript_keys_in_order() {
    for kind in EventKind::ALL {
        let json = WebhookEvent::new(EventPayload::sample(kind)).to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let top: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected_top = vec![
            "eventUniqueId",
            "isTestEvent",
            "payload",
            "timestampIsoString",
        ];
        expected_top.sort();
        let mut top_sorted = top.clone();
        top_sorted.sort();
        assert_eq!(top_sorted, expected_top);
        // Key order in the text follows the TypeScript type.
        let typescript = kind.typescript_schema();
        let ts_keys: Vec<&str> = typescript
            .lines()
            .filter_map(|line| line.trim().split_once(':').map(|(key, _)| key))
            .filter(|key| !key.starts_with("type "))
            .collect();
        let mut positions = ts_keys
            .iter()
            .map(|key| json.find(&format!("\"{key}\":")).expect(key));
        let mut previous = positions.next().unwrap();
        for position in positions {
            assert!(position > previous, "{kind}: keys out of order in {json}");
            previous = position;
        }
        let payload = value["payload"].as_object().unwrap();
        assert_eq!(payload.len() + 4, ts_keys.len(), "{kind}: no extra keys");
    }
}

#[test]
fn absent_phone_number_and_failure_reason_are_null_not_omitted() {
    let json = fixture("payment-failed");
    assert!(json.contains(r#""failureReason":null"#));
    let json = fixture("free-course-enrollment");
    assert!(json.contains(r#""userPhoneNumber":null"#));
    for (_, event) in golden_events() {
        assert_eq!(
            event.to_json(),
            WebhookEvent::from_json(event.to_json().as_bytes())
                .unwrap()
                .to_json()
        );
    }
}

#[test]
fn timestamps_are_emitted_in_utc_with_milliseconds_like_to_iso_string() {
    let event = WebhookEvent::at(
        EventPayload::sample(EventKind::FreeCourseEnrollment),
        at("2026-11-28T21:11:17.123987654Z"),
    );
    assert!(
        event
            .to_json()
            .contains(r#""timestampIsoString":"2026-11-28T21:11:17.123Z""#)
    );
    let whole_second = WebhookEvent::at(
        EventPayload::sample(EventKind::FreeCourseEnrollment),
        at("2026-11-28T21:11:17Z"),
    );
    assert!(
        whole_second
            .to_json()
            .contains(r#""2026-11-28T21:11:17.000Z""#)
    );
}

#[test]
fn new_events_get_unique_uuid_ids_and_are_live_while_test_events_are_marked() {
    let a = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    let b = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    assert_ne!(a.event_unique_id, b.event_unique_id);
    assert!(uuid::Uuid::parse_str(&a.event_unique_id).is_ok());
    assert!(!a.is_test_event);
    assert_eq!(a.timestamp.timestamp_subsec_nanos() % 1_000_000, 0);
    let test = WebhookEvent::test(EventPayload::sample(EventKind::PaidCourseSale));
    assert!(test.is_test_event);
    assert!(test.to_json().contains(r#""isTestEvent":true"#));
}

#[test]
fn new_event_ids_are_uuid_v7_and_sort_in_the_order_they_were_made() {
    let ids: Vec<String> = (0..1_000)
        .map(|_| WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).event_unique_id)
        .collect();
    for id in &ids {
        let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7, "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids made later sort later");
}

#[test]
fn unknown_event_types_keep_their_name_and_raw_payload_and_serialise_back_unchanged() {
    let body = fixture("unknown-lab-session-started");
    let event = WebhookEvent::from_json(body.as_bytes()).unwrap();
    assert_eq!(event.kind(), None);
    assert_eq!(event.event_type(), "lab-session-started");
    let EventPayload::Unknown(unknown) = &event.payload else {
        panic!("expected Unknown, got {:?}", event.payload);
    };
    assert_eq!(unknown.event_type, "lab-session-started");
    assert!(
        unknown
            .raw_json()
            .starts_with(r#"{"courseSlug":"k8s-labs""#)
    );
    assert_eq!(unknown.to_value()["labId"], "lab_77");
    assert_eq!(event.to_json(), body, "byte-identical round trip");
}

#[test]
fn unknown_event_types_are_not_type_checked() {
    let body = br#"{"eventUniqueId":"e","timestampIsoString":"2026-11-28T21:11:17.123Z","isTestEvent":false,
        "payload":{"eventType":"video-watched","userId":42,"amountInSmallestUnit":"lots"}}"#;
    let event = WebhookEvent::from_json(body).unwrap();
    assert_eq!(event.event_type(), "video-watched");
}

#[test]
fn extra_fields_are_ignored_and_any_rfc3339_timestamp_is_read() {
    let body = r#"{"futureEnvelopeField":{"x":[1,2]},"eventUniqueId":"e-1",
        "timestampIsoString":"2026-11-29T02:41:17.5+05:30","isTestEvent":false,
        "payload":{"couponCode":"DIWALI","eventType":"paid-course-sale","userId":"u","userFullname":"F",
        "userEmail":"e@example.com","userPhoneNumber":null,"courseSlug":"s","courseName":"n",
        "orderId":"o","amountInSmallestUnit":100,"currency":"INR","gst":{"rate":18}}}"#;
    let event: WebhookEvent = body.parse().unwrap();
    assert_eq!(event.timestamp, at("2026-11-28T21:11:17.500Z"));
    let EventPayload::PaidCourseSale(sale) = event.payload else {
        panic!("wrong kind")
    };
    assert_eq!(sale.order.amount_in_smallest_unit, 100);
    assert_eq!(sale.user.phone_number, None);
}

#[test]
fn key_order_does_not_matter_and_event_type_may_come_last() {
    let body =
        br#"{"payload":{"courseName":"n","courseSlug":"s","userPhoneNumber":"+1","userEmail":"e",
        "userFullname":"f","userId":"u","eventType":"free-course-enrollment"},"isTestEvent":true,
        "timestampIsoString":"2026-11-28T21:11:17.123Z","eventUniqueId":"e-2"}"#;
    let event = WebhookEvent::from_json(body).unwrap();
    assert_eq!(event.kind(), Some(EventKind::FreeCourseEnrollment));
    assert_eq!(
        event.payload.user().unwrap().phone_number.as_deref(),
        Some("+1")
    );
    assert!(event.is_test_event);
}

#[test]
fn serde_deserialize_works_and_reports_the_field_by_name() {
    let event: WebhookEvent = serde_json::from_str(&fixture("paid-course-sale")).unwrap();
    assert_eq!(event.kind(), Some(EventKind::PaidCourseSale));
    let broken = fixture("paid-course-sale").replace(r#""currency":"INR""#, r#""currency":356"#);
    let error = serde_json::from_str::<WebhookEvent>(&broken).unwrap_err();
    assert!(error.to_string().contains("payload.currency"), "{error}");
    // And through a Value, as frameworks often do.
    let value = serde_json::to_value(&event).unwrap();
    assert_eq!(value["payload"]["amountInSmallestUnit"], 129_900);
}

/// Removing or retyping any required field of a known kind gives an error naming that field.
#[test]
fn every_missing_or_mistyped_field_is_named() {
    for kind in EventKind::ALL {
        let good: serde_json::Value =
            serde_json::from_str(&WebhookEvent::new(EventPayload::sample(kind)).to_json()).unwrap();
        let payload_keys: Vec<String> = good["payload"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for key in payload_keys {
            let path = format!("payload.{key}");
            let nullable = key == "userPhoneNumber" || key == "failureReason";
            if key == "eventType" {
                continue; // Without it the event is simply not of this kind.
            }
            let mut removed = good.clone();
            removed["payload"].as_object_mut().unwrap().remove(&key);
            match WebhookEvent::from_json(removed.to_string().as_bytes()) {
                Ok(_) if nullable => {}
                Err(ParseError::MissingField { field, .. }) if !nullable => assert_eq!(field, path),
                other => panic!("{kind} without {key}: {other:?}"),
            }
            let mut retyped = good.clone();
            retyped["payload"][&key] = serde_json::json!([true]);
            match WebhookEvent::from_json(retyped.to_string().as_bytes()) {
                Err(error @ ParseError::InvalidField { field, .. }) => {
                    assert_eq!(field, path);
                    assert!(error.to_string().contains(&path), "{error}");
                }
                other => panic!("{kind} with {key} = [true]: {other:?}"),
            }
        }
        for key in [
            "eventUniqueId",
            "timestampIsoString",
            "isTestEvent",
            "payload",
        ] {
            let mut removed = good.clone();
            removed.as_object_mut().unwrap().remove(key);
            match WebhookEvent::from_json(removed.to_string().as_bytes()) {
                Err(ParseError::MissingField { field, .. }) => assert_eq!(field, key),
                other => panic!("{kind} without {key}: {other:?}"),
            }
        }
    }
}

#[test]
fn amounts_must_be_non_negative_integers() {
    for bad in [
        "-1",
        "499.5",
        "1e400",
        "\"499\"",
        "null",
        "18446744073709551616",
    ] {
        let body = fixture("paid-course-sale").replace("129900", bad);
        let error = WebhookEvent::from_json(body.as_bytes()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("amountInSmallestUnit") || matches!(error, ParseError::NotJson { .. }),
            "{bad}: {message}"
        );
    }
    let body = fixture("paid-course-sale").replace("129900", "18446744073709551615");
    let event = WebhookEvent::from_json(body.as_bytes()).unwrap();
    assert_eq!(
        event.payload.order().unwrap().amount_in_smallest_unit,
        u64::MAX
    );
}

#[test]
fn unreadable_timestamps_and_empty_ids_are_refused_with_the_field_named() {
    let body = fixture("payment-initiated-not-completed")
        .replace("2026-11-28T21:11:17.000Z", "yesterday at noon");
    let error = WebhookEvent::from_json(body.as_bytes()).unwrap_err();
    assert!(
        matches!(
            error,
            ParseError::InvalidField {
                field: "payload.initiatedAtIsoString",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"yesterday at noon\""));
    let body = fixture("paid-course-sale").replace("1c8f4d66-2e3b-4d4a-9f8f-6b5c4d3e2f10", "");
    let error = WebhookEvent::from_json(body.as_bytes()).unwrap_err();
    assert!(
        matches!(
            error,
            ParseError::InvalidField {
                field: "eventUniqueId",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_repeated_key_is_refused_rather_than_guessed() {
    let body = fixture("paid-course-sale").replace(
        r#""amountInSmallestUnit":129900"#,
        r#""amountInSmallestUnit":129900,"amountInSmallestUnit":1"#,
    );
    let error = WebhookEvent::from_json(body.as_bytes()).unwrap_err();
    assert!(
        matches!(
            error,
            ParseError::DuplicateField {
                field: "payload.amountInSmallestUnit"
            }
        ),
        "{error:?}"
    );
}

#[test]
fn the_kind_enum_parses_displays_lists_and_titles_the_four_wire_names() {
    let names: Vec<String> = EventKind::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "free-course-enrollment",
            "paid-course-sale",
            "payment-failed",
            "payment-initiated-not-completed"
        ]
    );
    for kind in EventKind::ALL {
        assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        assert_eq!(
            serde_json::from_str::<EventKind>(&format!("\"{kind}\"")).unwrap(),
            kind
        );
    }
    assert_eq!(
        EventKind::FreeCourseEnrollment.title(),
        "Free Course Enrollment"
    );
    assert_eq!(
        EventKind::PaymentInitiatedNotCompleted.title(),
        "Payment Initiated But Never Completed"
    );
    let error = "paid-course-sales".parse::<EventKind>().unwrap_err();
    assert!(error.to_string().contains("paid-course-sales"));
    assert!(
        error.to_string().contains("free-course-enrollment"),
        "lists the valid names"
    );
}

#[test]
fn samples_are_realistic_and_of_their_kind() {
    for kind in EventKind::ALL {
        let sample = EventPayload::sample(kind);
        assert_eq!(sample.kind(), Some(kind));
        let user = sample.user().unwrap();
        assert!(user.email.ends_with("@example.com"));
        assert!(!user.fullname.is_empty() && !sample.course().unwrap().name.is_empty());
        if let Some(order) = sample.order() {
            assert!(order.amount_in_smallest_unit > 0);
            assert_eq!(order.currency.len(), 3);
        }
    }
    assert!(
        EventPayload::sample(EventKind::FreeCourseEnrollment)
            .order()
            .is_none()
    );
}
