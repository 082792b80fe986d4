//! Appending, recording attempts, reading back, paging, filtering, scanning and retention.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use super::{at, attempt, matching, record, stored};
use crate::EventKind;
use crate::store::{
    Attempt, AttemptTrigger, Cursor, Delivery, DeliveryState, EventBody, EventRow, LogError,
    LogFilter, LogStore, Store, StoredEvent, TransportErrorKind,
};

/// A contract check; panics when the backend breaks the contract.
pub async fn an_appended_event_comes_back_with_its_exact_body_and_deliveries(
    store: Arc<dyn Store>,
) {
    let event = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00.123Z",
        &["crm", "accounting"],
    );
    store.append(event.clone()).await.unwrap();
    let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back, event);
    assert_eq!(
        back.body.as_bytes(),
        event.body.as_bytes(),
        "byte-identical body"
    );
    assert_eq!(
        back.event().unwrap().kind(),
        Some(EventKind::PaidCourseSale)
    );
    assert!(store.get("no-such-event").await.unwrap().is_none());
}

/// A contract check; panics when the backend breaks the contract.
pub async fn bodies_are_read_by_event_each_once_and_missing_ones_left_out(store: Arc<dyn Store>) {
    let sale = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00.123Z",
        &["crm", "accounting"],
    );
    let mut test = stored(
        EventKind::PaymentFailed,
        "2026-11-28T10:00:01.000Z",
        &["crm"],
    );
    test.is_test_event = true;
    store.append(sale.clone()).await.unwrap();
    store.append(test.clone()).await.unwrap();
    // As a claim names them: an event once per delivery claimed, and one retention removed.
    let named = [
        sale.event_unique_id.as_str(),
        "no-such-event",
        test.event_unique_id.as_str(),
        sale.event_unique_id.as_str(),
    ];
    let mut bodies = store.bodies(&named).await.unwrap();
    bodies.sort_by(|a, b| a.body.cmp(&b.body));
    let mut expected = [&sale, &test].map(|event| EventBody {
        event_unique_id: event.event_unique_id.clone(),
        body: event.body.clone(),
        is_test_event: event.is_test_event,
    });
    expected.sort_by(|a, b| a.body.cmp(&b.body));
    assert_eq!(
        bodies, expected,
        "each event named once, byte-identical bodies"
    );
    assert!(store.bodies(&[]).await.unwrap().is_empty());
}

/// A contract check; panics when the backend breaks the contract.
pub async fn a_second_event_with_the_same_id_is_refused(store: Arc<dyn Store>) {
    let event = stored(
        EventKind::FreeCourseEnrollment,
        "2026-11-28T10:00:00Z",
        &["crm"],
    );
    store.append(event.clone()).await.unwrap();
    let mut again = event.clone();
    again.body = again.body.replace("Aarav", "Someone else");
    let error = store.append(again).await.unwrap_err();
    assert!(matches!(error, LogError::DuplicateEvent { ref id } if *id == event.event_unique_id));
    assert_eq!(
        store
            .get(&event.event_unique_id)
            .await
            .unwrap()
            .unwrap()
            .body,
        event.body
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn malformed_entries_are_refused_with_a_reason(store: Arc<dyn Store>) {
    let mut twice = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00Z",
        &["crm", "crm"],
    );
    let error = store.append(twice.clone()).await.unwrap_err();
    assert!(matches!(error, LogError::InvalidEntry { .. }), "{error:?}");
    assert!(error.to_string().contains("crm"));
    twice.deliveries.pop();
    twice.deliveries[0].attempts.push(attempt(
        200,
        AttemptTrigger::FirstTry,
        "2026-11-28T10:00:01Z",
    ));
    assert!(matches!(
        store.append(twice).await,
        Err(LogError::InvalidEntry { .. })
    ));
    let mut no_id = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    no_id.event_unique_id.clear();
    assert!(matches!(
        store.append(no_id).await,
        Err(LogError::InvalidEntry { .. })
    ));
}

/// A contract check; panics when the backend breaks the contract.
pub async fn attempts_are_recorded_with_the_new_delivery_state(store: Arc<dyn Store>) {
    let event = stored(
        EventKind::PaymentFailed,
        "2026-11-28T10:00:00Z",
        &["crm", "accounting"],
    );
    store.append(event.clone()).await.unwrap();
    let failed = Attempt::transport_error(
        at("2026-11-28T10:00:00.500Z"),
        Duration::from_secs(15),
        TransportErrorKind::Timeout,
        "no answer within 15 s",
        AttemptTrigger::FirstTry,
    );
    let mut retry_later = record(&event, "crm", failed.clone(), DeliveryState::Pending);
    retry_later.next_attempt_at = Some(at("2026-11-28T10:00:05Z"));
    store.record_attempt(retry_later).await.unwrap();
    let delivered = attempt(200, AttemptTrigger::AutomaticRetry, "2026-11-28T10:00:05Z");
    store
        .record_attempt(record(
            &event,
            "crm",
            delivered.clone(),
            DeliveryState::Delivered,
        ))
        .await
        .unwrap();
    let gone = attempt(410, AttemptTrigger::FirstTry, "2026-11-28T10:00:00.600Z");
    store
        .record_attempt(record(
            &event,
            "accounting",
            gone.clone(),
            DeliveryState::Failed,
        ))
        .await
        .unwrap();

    let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
    let crm = &back.deliveries[0];
    assert_eq!(
        (crm.state, crm.next_attempt_at),
        (DeliveryState::Delivered, None)
    );
    assert_eq!(crm.attempts, vec![failed, delivered]);
    let accounting = &back.deliveries[1];
    assert_eq!(accounting.state, DeliveryState::Failed);
    assert_eq!(accounting.attempts, vec![gone]);
    assert_eq!(back.attempt_count(), 3);
    assert_eq!(back.last_response_status(), Some(200));
    assert_eq!(back.status(), DeliveryState::Failed);
    assert_eq!(back.body, event.body, "attempts never change the body");
}

/// A contract check; panics when the backend breaks the contract.
pub async fn attempts_for_unknown_events_or_endpoints_are_refused(store: Arc<dyn Store>) {
    let event = stored(EventKind::PaymentFailed, "2026-11-28T10:00:00Z", &["crm"]);
    let ok = attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z");
    let error = store
        .record_attempt(record(&event, "crm", ok.clone(), DeliveryState::Delivered))
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::UnknownEvent { .. }), "{error:?}");
    store.append(event.clone()).await.unwrap();
    let error = store
        .record_attempt(record(&event, "billing", ok, DeliveryState::Delivered))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::UnknownDelivery { .. }),
        "{error:?}"
    );
    assert_eq!(
        store
            .get(&event.event_unique_id)
            .await
            .unwrap()
            .unwrap()
            .attempt_count(),
        0
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn queries_page_newest_first_through_every_event_exactly_once(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..25 {
        // Two events share each timestamp, across three days, appended out of order.
        let minute = (i * 7) % 13;
        let day = 26 + i % 3;
        let event = stored(
            EventKind::PaidCourseSale,
            &format!("2026-11-{day}T10:{minute:02}:00Z"),
            &["crm"],
        );
        ids.push((event.timestamp, event.event_unique_id.clone()));
        store.append(event).await.unwrap();
    }
    let mut sorted_ids: Vec<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    sorted_ids.sort();
    // Every event is pending: a status filter pages through the same events, in the same order.
    for filter in [
        LogFilter::default(),
        LogFilter::default().status(DeliveryState::Pending),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = store.query(&filter, cursor.as_ref(), 4).await.unwrap();
            assert!(page.events.len() <= 4);
            seen.extend(
                page.events
                    .iter()
                    .map(|e| (e.timestamp, e.event_unique_id.clone())),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25, "every event exactly once, {filter:?}");
        assert!(
            seen.windows(2).all(|w| w[0].0 >= w[1].0),
            "newest first, {filter:?}"
        );
        let mut sorted_seen: Vec<_> = seen.iter().map(|(_, id)| id.clone()).collect();
        sorted_seen.sort();
        assert_eq!(sorted_seen, sorted_ids, "{filter:?}");
    }
    let last_page = store.query(&LogFilter::default(), None, 25).await.unwrap();
    assert_eq!((last_page.events.len(), last_page.next_cursor), (25, None));
}

/// A contract check; panics when the backend breaks the contract.
pub async fn the_time_range_includes_from_and_excludes_to(store: Arc<dyn Store>) {
    for timestamp in [
        "2026-11-27T23:59:59.999Z",
        "2026-11-28T00:00:00.000Z",
        "2026-11-28T12:00:00.000Z",
        "2026-11-28T23:59:59.999Z",
        "2026-11-29T00:00:00.000Z",
    ] {
        store
            .append(stored(EventKind::PaidCourseSale, timestamp, &["crm"]))
            .await
            .unwrap();
    }
    let day = LogFilter::default().between(at("2026-11-28T00:00:00Z"), at("2026-11-29T00:00:00Z"));
    let page = store.query(&day, None, 100).await.unwrap();
    let stamps: Vec<String> = page
        .events
        .iter()
        .map(|e| e.timestamp.to_rfc3339())
        .collect();
    assert_eq!(
        stamps,
        [
            "2026-11-28T23:59:59.999+00:00",
            "2026-11-28T12:00:00+00:00",
            "2026-11-28T00:00:00+00:00"
        ]
    );
    let mut scanned = 0;
    store
        .scan(&day, &mut |_| {
            scanned += 1;
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(scanned, 3);
    let empty =
        LogFilter::default().between(at("2026-11-28T12:00:00Z"), at("2026-11-28T12:00:00Z"));
    assert!(matching(&*store, &empty).await.is_empty());
}

/// A contract check; panics when the backend breaks the contract.
pub async fn queries_filter_by_kind_status_and_test_flag(store: Arc<dyn Store>) {
    let sale = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    let failed_payment = stored(EventKind::PaymentFailed, "2026-11-28T10:01:00Z", &["crm"]);
    let mut test = stored(
        EventKind::FreeCourseEnrollment,
        "2026-11-28T10:02:00Z",
        &["crm"],
    );
    test.is_test_event = true;
    for event in [&sale, &failed_payment, &test] {
        store.append(event.clone()).await.unwrap();
    }
    store
        .record_attempt(record(
            &sale,
            "crm",
            attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z"),
            DeliveryState::Delivered,
        ))
        .await
        .unwrap();
    store
        .record_attempt(record(
            &failed_payment,
            "crm",
            attempt(500, AttemptTrigger::FirstTry, "2026-11-28T10:01:01Z"),
            DeliveryState::Failed,
        ))
        .await
        .unwrap();
    let ids = |filter: LogFilter| {
        let store = store.clone();
        async move {
            let page = store.query(&filter, None, 100).await.unwrap();
            page.events
                .into_iter()
                .map(|e| e.event_unique_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(LogFilter::default().kinds([EventKind::PaidCourseSale, EventKind::PaymentFailed]))
            .await,
        [
            failed_payment.event_unique_id.clone(),
            sale.event_unique_id.clone()
        ]
    );
    assert_eq!(
        ids(LogFilter::default().status(DeliveryState::Delivered)).await,
        [sale.event_unique_id.as_str()]
    );
    assert_eq!(
        ids(LogFilter::default().status(DeliveryState::Failed)).await,
        [failed_payment.event_unique_id.as_str()]
    );
    assert_eq!(
        ids(LogFilter::default().status(DeliveryState::Pending)).await,
        [test.event_unique_id.clone()]
    );
    assert_eq!(
        ids(LogFilter::default().test_events(true)).await,
        [test.event_unique_id.clone()]
    );
    assert_eq!(ids(LogFilter::default().test_events(false)).await.len(), 2);
}

/// A contract check; panics when the backend breaks the contract.
pub async fn scan_visits_matching_events_oldest_first_and_stops_when_told(store: Arc<dyn Store>) {
    for i in 0..1200 {
        let kind = if i % 3 == 0 {
            EventKind::PaymentFailed
        } else {
            EventKind::PaidCourseSale
        };
        let timestamp = format!("2026-11-{:02}T{:02}:{:02}:00Z", 20 + i % 5, i % 24, i % 60);
        store
            .append(stored(kind, &timestamp, &["crm"]))
            .await
            .unwrap();
    }
    let mut stamps = Vec::new();
    let visited = store
        .scan(
            &LogFilter::default().kinds([EventKind::PaymentFailed]),
            &mut |event| {
                stamps.push(event.timestamp);
                ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    assert_eq!(visited, 400);
    assert_eq!(stamps.len(), 400);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let mut taken = 0;
    let visited = store
        .scan(&LogFilter::default(), &mut |_| {
            taken += 1;
            if taken == 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
    assert_eq!((visited, taken), (10, 10));
}

/// A contract check; panics when the backend breaks the contract.
pub async fn retention_deletes_events_of_days_before_the_cutoff(store: Arc<dyn Store>) {
    let old = stored(EventKind::PaidCourseSale, "2026-10-01T12:00:00Z", &["crm"]);
    let older = stored(EventKind::PaidCourseSale, "2026-09-15T12:00:00Z", &["crm"]);
    let recent = stored(EventKind::PaidCourseSale, "2026-11-28T12:00:00Z", &["crm"]);
    for event in [&old, &older, &recent] {
        store.append(event.clone()).await.unwrap();
    }
    let deleted = store
        .delete_before(at("2026-10-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert!(store.get(&old.event_unique_id).await.unwrap().is_none());
    assert!(store.get(&older.event_unique_id).await.unwrap().is_none());
    assert!(store.get(&recent.event_unique_id).await.unwrap().is_some());
    assert!(
        store
            .claim_due(&crate::store::ClaimRequest::new(
                at("2026-12-01T00:00:00Z"),
                10,
                std::time::Duration::from_secs(60)
            ))
            .await
            .unwrap()
            .len()
            == 1
    );
    assert_eq!(matching(&*store, &LogFilter::default()).await.len(), 1);
    assert_eq!(
        store
            .delete_before(at("2026-10-02T00:00:00Z"))
            .await
            .unwrap(),
        0
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn the_overall_status_is_failed_then_pending_then_delivered(store: Arc<dyn Store>) {
    let event = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00Z",
        &["a", "b", "c"],
    );
    store.append(event.clone()).await.unwrap();
    // The status the event reads back with, and the status filters that find it: the filter
    // follows every change of status, not only the status stored with the event.
    let status = || {
        let store = store.clone();
        let id = event.event_unique_id.clone();
        async move {
            let read = store.get(&id).await.unwrap().unwrap().status();
            let mut found_by = Vec::new();
            for filter in [
                DeliveryState::Pending,
                DeliveryState::Delivered,
                DeliveryState::Failed,
            ] {
                let found = matching(&*store, &LogFilter::default().status(filter)).await;
                if found.iter().any(|e| e.event_unique_id == id) {
                    found_by.push(filter);
                }
            }
            assert_eq!(found_by, [read], "found by the filters of {found_by:?}");
            read
        }
    };
    assert_eq!(status().await, DeliveryState::Pending);
    for endpoint in ["a", "b"] {
        let ok = attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z");
        store
            .record_attempt(record(&event, endpoint, ok, DeliveryState::Delivered))
            .await
            .unwrap();
    }
    assert_eq!(status().await, DeliveryState::Pending);
    let bad = attempt(404, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z");
    store
        .record_attempt(record(&event, "c", bad, DeliveryState::Failed))
        .await
        .unwrap();
    assert_eq!(status().await, DeliveryState::Failed);
    let retried = attempt(200, AttemptTrigger::ManualRetrigger, "2026-11-29T09:00:00Z");
    store
        .record_attempt(record(&event, "c", retried, DeliveryState::Delivered))
        .await
        .unwrap();
    assert_eq!(status().await, DeliveryState::Delivered);
}

/// A contract check; panics when the backend breaks the contract.
pub async fn unknown_event_types_are_stored_and_excluded_by_a_kind_filter(store: Arc<dyn Store>) {
    let body = r#"{"eventUniqueId":"lab-1","timestampIsoString":"2026-11-28T10:00:00.000Z","isTestEvent":false,"payload":{"eventType":"lab-session-started","labId":"l-9"}}"#;
    let event = crate::WebhookEvent::from_json(body.as_bytes()).unwrap();
    let entry = StoredEvent::new(
        &event,
        vec![Delivery::pending(
            "crm",
            "https://x.example/h",
            at("2026-11-28T10:00:00Z"),
        )],
    );
    assert_eq!(entry.body, body);
    store.append(entry).await.unwrap();
    let back = store.get("lab-1").await.unwrap().unwrap();
    assert_eq!(
        (back.event_type.as_str(), back.body.as_str()),
        ("lab-session-started", body)
    );
    assert_eq!(matching(&*store, &LogFilter::default()).await.len(), 1);
    let known = LogFilter::default().kinds(EventKind::ALL);
    assert!(matching(&*store, &known).await.is_empty());
}

/// A contract check; panics when the backend breaks the contract.
pub async fn concurrent_appends_all_land_exactly_once(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for task in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let timestamp = format!("2026-11-28T{:02}:{:02}:00Z", task % 24, i);
                let event = stored(EventKind::FreeCourseEnrollment, &timestamp, &["crm"]);
                ids.push(event.event_unique_id.clone());
                store.append(event).await.unwrap();
            }
            ids
        }));
    }
    let mut expected = Vec::new();
    for task in tasks {
        expected.extend(task.await.unwrap());
    }
    let mut found = Vec::new();
    store
        .scan(&LogFilter::default(), &mut |event| {
            found.push(event.event_unique_id);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
}

/// A contract check; panics when the backend breaks the contract.
pub async fn a_bad_cursor_is_a_typed_error(store: Arc<dyn Store>) {
    let cursor = Cursor::from("not-a-cursor".to_owned());
    let error = store
        .query(&LogFilter::default(), Some(&cursor), 10)
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::InvalidCursor { .. }), "{error:?}");
}

/// A log with several deliveries per event, every state, retries, a transport error, an event
/// appended out of time order, a test event, an unknown type and a body kept as text: what
/// `scan_rows` must summarise exactly as `scan` would.
async fn varied_log(store: &dyn LogStore) {
    let sale = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00Z",
        &["a", "b"],
    );
    store.append(sale.clone()).await.unwrap();
    let mut retry = record(
        &sale,
        "a",
        attempt(500, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z"),
        DeliveryState::Pending,
    );
    retry.next_attempt_at = Some(at("2026-11-28T10:05:00Z"));
    store.record_attempt(retry).await.unwrap();
    let ok = attempt(200, AttemptTrigger::AutomaticRetry, "2026-11-28T10:05:00Z");
    store
        .record_attempt(record(&sale, "a", ok, DeliveryState::Delivered))
        .await
        .unwrap();
    let gone = attempt(410, AttemptTrigger::FirstTry, "2026-11-28T10:00:02Z");
    store
        .record_attempt(record(&sale, "b", gone, DeliveryState::Failed))
        .await
        .unwrap();
    let refused = Attempt::transport_error(
        at("2026-11-28T10:09:00Z"),
        Duration::from_millis(3),
        TransportErrorKind::Connect,
        "connection refused",
        AttemptTrigger::ManualRetrigger,
    );
    store
        .record_attempt(record(&sale, "b", refused, DeliveryState::Failed))
        .await
        .unwrap();

    let mut earlier = stored(
        EventKind::FreeCourseEnrollment,
        "2026-11-28T09:00:00Z",
        &["a"],
    );
    earlier.is_test_event = true;
    store.append(earlier).await.unwrap();

    let body = r#"{"eventUniqueId":"lab-2","timestampIsoString":"2026-11-28T11:00:00.000Z","isTestEvent":false,"payload":{"eventType":"lab-session-started"}}"#;
    let lab = crate::WebhookEvent::from_json(body.as_bytes()).unwrap();
    let lab = StoredEvent::new(
        &lab,
        vec![Delivery::pending(
            "a",
            "https://x.example/h",
            at("2026-11-28T11:00:00Z"),
        )],
    );
    store.append(lab).await.unwrap();

    let mut pretty = stored(
        EventKind::PaymentFailed,
        "2026-11-29T08:00:00Z",
        &["a", "b"],
    );
    pretty.body = "{\n  \"pretty\": true\n}".to_owned();
    // Appended already settled, as an import of old events would be.
    pretty.deliveries[1].state = DeliveryState::Delivered;
    pretty.deliveries[1].next_attempt_at = None;
    store.append(pretty.clone()).await.unwrap();
    let failed = attempt(503, AttemptTrigger::FirstTry, "2026-11-29T08:00:01Z");
    store
        .record_attempt(record(&pretty, "a", failed, DeliveryState::Failed))
        .await
        .unwrap();
}

/// A contract check; panics when the backend breaks the contract.
pub async fn rows_agree_with_whole_events_under_every_filter(store: Arc<dyn Store>) {
    varied_log(&*store).await;
    let filters = [
        LogFilter::default(),
        LogFilter::default().kinds([EventKind::PaidCourseSale, EventKind::PaymentFailed]),
        LogFilter::default().status(DeliveryState::Failed),
        LogFilter::default().status(DeliveryState::Pending),
        LogFilter::default().status(DeliveryState::Delivered),
        LogFilter::default().test_events(true),
        LogFilter::default().between(at("2026-11-28T09:30:00Z"), at("2026-11-29T00:00:00Z")),
    ];
    for filter in filters {
        let mut whole = Vec::new();
        store
            .scan(&filter, &mut |event| {
                whole.push(EventRow::from(&event));
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        let mut rows = Vec::new();
        let visited = store
            .scan_rows(&filter, &mut |row| {
                rows.push(row);
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        assert_eq!(rows, whole, "{filter:?}");
        assert_eq!(visited as usize, rows.len());
    }
    let mut all = Vec::new();
    store
        .scan_rows(&LogFilter::default(), &mut |row| {
            all.push(row);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    let summary: Vec<(&str, DeliveryState, usize, Option<u16>)> = all
        .iter()
        .map(|r| {
            (
                r.event_type.as_str(),
                r.status,
                r.attempts,
                r.last_response_status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("free-course-enrollment", DeliveryState::Pending, 0, None),
            ("paid-course-sale", DeliveryState::Failed, 4, Some(200)),
            ("lab-session-started", DeliveryState::Pending, 0, None),
            ("payment-failed", DeliveryState::Failed, 1, Some(503)),
        ],
        "oldest first, with status, attempts and the latest HTTP status"
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn attempts_recorded_at_once_on_one_event_leave_its_status_right(store: Arc<dyn Store>) {
    let endpoints: Vec<String> = (0..8).map(|i| format!("endpoint-{i}")).collect();
    let names: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let event = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &names);
    store.append(event.clone()).await.unwrap();
    let tasks: Vec<_> = endpoints
        .iter()
        .map(|endpoint| {
            let (store, event, endpoint) = (store.clone(), event.clone(), endpoint.clone());
            tokio::spawn(async move {
                let ok = attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z");
                let done = record(&event, &endpoint, ok, DeliveryState::Delivered);
                store.record_attempt(done).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back.attempt_count(), 8);
    assert_eq!(
        back.status(),
        DeliveryState::Delivered,
        "every delivery delivered: {back:?}"
    );
    let rows = matching(
        &*store,
        &LogFilter::default().status(DeliveryState::Delivered),
    )
    .await;
    assert_eq!(
        rows.len(),
        1,
        "the stored status agrees with the deliveries"
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn queries_filter_by_the_endpoints_events_went_to(store: Arc<dyn Store>) {
    let crm = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    let both = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:01:00Z",
        &["crm", "books"],
    );
    let books = stored(EventKind::PaymentFailed, "2026-11-28T10:02:00Z", &["books"]);
    for event in [&crm, &both, &books] {
        store.append(event.clone()).await.unwrap();
    }
    let newest_first = |events: &[&StoredEvent]| -> Vec<String> {
        events
            .iter()
            .rev()
            .map(|e| e.event_unique_id.clone())
            .collect()
    };
    let to_books = LogFilter::default().to_endpoints(["books"]);
    let ids = |events: Vec<StoredEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.event_unique_id).collect()
    };
    assert_eq!(
        ids(matching(&*store, &to_books).await),
        newest_first(&[&both, &books])
    );
    let mut rows = Vec::new();
    store
        .scan_rows(&to_books, &mut |row| {
            rows.push(row.event_unique_id);
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(
        rows,
        [both.event_unique_id.clone(), books.event_unique_id.clone()]
    );
    let either = LogFilter::default()
        .to_endpoints(["crm", "books"])
        .kinds([EventKind::PaidCourseSale]);
    assert_eq!(
        ids(matching(&*store, &either).await),
        newest_first(&[&crm, &both])
    );
    let nobody = LogFilter::default().to_endpoints(["nobody"]);
    assert!(matching(&*store, &nobody).await.is_empty());
}
