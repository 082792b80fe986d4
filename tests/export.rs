//! CSV and JSON Lines export: the exact header and columns, quoting, formula neutralising, and
//! filters at the boundaries of the time range.

mod support;

use std::time::Duration;

use fermion_webhooks::event::{Course, FreeCourseEnrollment, PaidCourseSale, PaymentFailed, User};
use fermion_webhooks::export::{CSV_COLUMNS, ExportOptions, export_jsonl};
use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, Delivery, DeliveryState, LogFilter, StoredEvent,
};
use fermion_webhooks::{
    EventKind, EventPayload, FileLogStore, LogStore, MemoryLogStore, WebhookEvent, export_csv,
};
use support::{TempDir, at};

fn user(fullname: &str, email: &str, phone: Option<&str>) -> User {
    User {
        id: "usr_1".into(),
        fullname: fullname.into(),
        email: email.into(),
        phone_number: phone.map(Into::into),
    }
}

fn entry(id: &str, timestamp: &str, payload: EventPayload, test: bool) -> StoredEvent {
    let mut event = WebhookEvent::at(payload, at(timestamp));
    event.event_unique_id = id.into();
    event.is_test_event = test;
    StoredEvent::new(
        &event,
        vec![Delivery::pending(
            "crm",
            "https://crm.example.com/hook",
            at(timestamp),
        )],
    )
}

/// Five events: awkward text in every column, one outside the exported day.
fn golden_events() -> Vec<StoredEvent> {
    let course = Course {
        slug: "rust-101".into(),
        name: "Rust, \"Advanced\" Edition".into(),
    };
    let order = fermion_webhooks::event::Order {
        id: "ord_1".into(),
        amount_in_smallest_unit: 499_900,
        currency: "INR".into(),
    };
    let unknown = WebhookEvent::from_json(
        br#"{"eventUniqueId":"evt-4","timestampIsoString":"2026-11-28T10:03:00.000Z","isTestEvent":false,"payload":{"eventType":"lab-session-started","labId":"l1","userId":"=cmd"}}"#,
    )
    .unwrap();
    vec![
        entry(
            "evt-1",
            "2026-11-28T00:00:00.000Z",
            EventPayload::FreeCourseEnrollment(FreeCourseEnrollment {
                user: user("Zoë, \"the\" Learner", "zoe@example.com", None),
                course: Course {
                    slug: "intro".into(),
                    name: "Line one\nLine two".into(),
                },
            }),
            false,
        ),
        entry(
            "evt-2",
            "2026-11-28T10:01:00.000Z",
            EventPayload::PaidCourseSale(PaidCourseSale {
                user: user("=1+2", "@SUM(A1)", Some("+919876543210")),
                course: course.clone(),
                order: order.clone(),
            }),
            false,
        ),
        entry(
            "evt-3",
            "2026-11-28T10:02:00.000Z",
            EventPayload::PaymentFailed(PaymentFailed {
                user: user("\tTabbed", "t@example.com", None),
                course,
                order,
                failure_reason: Some("-cmd|' /C calc'!A0".into()),
            }),
            true,
        ),
        StoredEvent::new(
            &unknown,
            vec![Delivery::pending(
                "crm",
                "https://crm.example.com/hook",
                at("2026-11-28T10:03:00Z"),
            )],
        ),
        entry(
            "evt-5",
            "2026-11-29T00:00:00.000Z",
            EventPayload::sample(EventKind::PaidCourseSale),
            false,
        ),
    ]
}

async fn fill(store: &dyn LogStore) {
    for event in golden_events() {
        store.append(event).await.unwrap();
    }
    let attempt = |status| {
        Attempt::response(
            at("2026-11-28T10:01:01Z"),
            Duration::from_millis(30),
            status,
            "",
            AttemptTrigger::FirstTry,
        )
    };
    for (id, status, state) in [
        ("evt-1", 200, DeliveryState::Delivered),
        ("evt-2", 500, DeliveryState::Failed),
    ] {
        store
            .record_attempt(AttemptRecord {
                event_unique_id: id.into(),
                endpoint_id: "crm".into(),
                attempt: attempt(status),
                state,
                next_attempt_at: None,
                claim: None,
            })
            .await
            .unwrap();
    }
}

fn the_day() -> LogFilter {
    LogFilter::default().between(at("2026-11-28T00:00:00Z"), at("2026-11-29T00:00:00Z"))
}

async fn csv_of(store: &dyn LogStore, filter: &LogFilter, options: &ExportOptions) -> String {
    let mut out = Vec::new();
    let mut last_progress = 0;
    let rows = export_csv(store, filter, &mut out, options, &mut |n| last_progress = n)
        .await
        .unwrap();
    assert_eq!(rows, last_progress);
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_csv_matches_the_golden_file() {
    let store = MemoryLogStore::new();
    fill(&store).await;
    let csv = csv_of(&store, &the_day(), &ExportOptions::default()).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/export.csv");
    // FERMION_BLESS=1 rewrites the golden file after a deliberate format change; review the diff.
    if std::env::var_os("FERMION_BLESS").is_some() {
        std::fs::write(path, &csv).unwrap();
    }
    assert_eq!(csv, std::fs::read_to_string(path).unwrap());
}

#[tokio::test]
async fn both_backends_export_the_same_bytes() {
    let memory = MemoryLogStore::new();
    fill(&memory).await;
    let dir = TempDir::new("export");
    let file = FileLogStore::open(dir.path()).await.unwrap();
    fill(&file).await;
    for options in [
        ExportOptions::default(),
        ExportOptions::default().escape_formulas(false),
    ] {
        assert_eq!(
            csv_of(&memory, &the_day(), &options).await,
            csv_of(&file, &the_day(), &options).await
        );
    }
}

#[tokio::test]
async fn the_header_row_is_exact_and_rows_parse_back() {
    let store = MemoryLogStore::new();
    fill(&store).await;
    let csv = csv_of(&store, &LogFilter::default(), &ExportOptions::default()).await;
    assert!(csv.starts_with(
        "eventUniqueId,timestampIsoString,eventType,isTestEvent,deliveryStatus,attempts,\
         lastResponseStatus,userId,userFullname,userEmail,userPhoneNumber,courseSlug,courseName,\
         orderId,amountInSmallestUnit,currency,failureReason,initiatedAtIsoString,payloadJson\n"
    ));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        CSV_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    let first = &rows[0];
    assert_eq!(
        &first[8], "Zoë, \"the\" Learner",
        "quotes and commas survive"
    );
    assert_eq!(&first[12], "Line one\nLine two", "newlines survive");
    assert_eq!(&first[10], "", "null is an empty cell");
    assert_eq!(&first[13], "", "absent fields are empty cells");
    let payload: serde_json::Value = serde_json::from_str(&first[18]).unwrap();
    assert_eq!(payload["eventType"], "free-course-enrollment");
    assert!(!first[18].contains(": "), "payloadJson is compact");
}

#[tokio::test]
async fn formulas_are_neutralised_in_every_text_column_unless_turned_off() {
    let store = MemoryLogStore::new();
    fill(&store).await;
    for (escape, expect_prefix) in [(true, "'"), (false, "")] {
        let csv = csv_of(
            &store,
            &the_day(),
            &ExportOptions::default().escape_formulas(escape),
        )
        .await;
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows[1][8], format!("{expect_prefix}=1+2"));
        assert_eq!(rows[1][9], format!("{expect_prefix}@SUM(A1)"));
        assert_eq!(rows[1][10], format!("{expect_prefix}+919876543210"));
        assert_eq!(rows[2][8], format!("{expect_prefix}\tTabbed"));
        assert_eq!(rows[2][16], format!("{expect_prefix}-cmd|' /C calc'!A0"));
        assert_eq!(
            rows[3][7],
            format!("{expect_prefix}=cmd"),
            "unknown types too"
        );
        if escape {
            for row in &rows {
                for cell in row {
                    assert!(
                        !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                        "{cell:?}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn filters_select_rows_at_the_range_boundaries_and_by_kind_status_and_test_flag() {
    let store = MemoryLogStore::new();
    fill(&store).await;
    let ids = |csv: String| -> Vec<String> {
        csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(|r| r.unwrap()[0].to_owned())
            .collect()
    };
    let options = ExportOptions::default();
    assert_eq!(
        ids(csv_of(&store, &the_day(), &options).await),
        ["evt-1", "evt-2", "evt-3", "evt-4"]
    );
    let next_day =
        LogFilter::default().between(at("2026-11-29T00:00:00Z"), at("2026-11-30T00:00:00Z"));
    assert_eq!(ids(csv_of(&store, &next_day, &options).await), ["evt-5"]);
    let sales = the_day().kinds([EventKind::PaidCourseSale, EventKind::PaymentFailed]);
    assert_eq!(
        ids(csv_of(&store, &sales, &options).await),
        ["evt-2", "evt-3"]
    );
    let failed = the_day().status(DeliveryState::Failed);
    assert_eq!(ids(csv_of(&store, &failed, &options).await), ["evt-2"]);
    let tests = the_day().test_events(true);
    assert_eq!(ids(csv_of(&store, &tests, &options).await), ["evt-3"]);
}

#[tokio::test]
async fn jsonl_export_writes_the_exact_bodies_one_per_line() {
    let store = MemoryLogStore::new();
    fill(&store).await;
    let mut out = Vec::new();
    let lines = export_jsonl(&store, &the_day(), &mut out, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(lines, 4);
    let text = String::from_utf8(out).unwrap();
    let expected: Vec<String> = golden_events()
        .into_iter()
        .take(4)
        .map(|e| e.body)
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn the_payload_json_cell_is_compact_whatever_the_spacing_of_the_stored_body() {
    let compact = WebhookEvent::at(
        EventPayload::sample(EventKind::PaidCourseSale),
        at("2026-11-28T09:00:00Z"),
    );
    let spaced = compact
        .to_json()
        .replace("\":", "\": ")
        .replace(",\"", ", \"");
    let pretty = compact
        .to_json()
        .replace("{\"", "{\n  \"")
        .replace(",\"", ",\n  \"")
        .replace("\":", "\" : ");
    let mut cells = Vec::new();
    for (n, body) in [compact.to_json(), spaced, pretty].into_iter().enumerate() {
        let mut event = WebhookEvent::from_json(body.as_bytes()).unwrap();
        event.event_unique_id = format!("evt-{n}");
        let mut stored = StoredEvent::new(
            &event,
            vec![Delivery::pending(
                "crm",
                "https://crm.example.com/hook",
                at("2026-11-28T09:00:00Z"),
            )],
        );
        stored.body = body.replace(&compact.event_unique_id, &event.event_unique_id);
        let store = MemoryLogStore::new();
        store.append(stored).await.unwrap();
        let csv = csv_of(&store, &the_day(), &ExportOptions::default()).await;
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let row = reader.records().next().unwrap().unwrap();
        cells.push(row[CSV_COLUMNS.len() - 1].to_owned());
    }
    let wire = compact.to_json();
    let (_, payload) = wire.split_once(",\"payload\":").unwrap();
    let payload = payload.strip_suffix('}').unwrap();
    assert_eq!(cells, [payload, payload, payload]);
}
