//! `receive`: the secret check plus the typed parse of a ~480-byte event, against
//! `serde_json::from_slice::<serde_json::Value>` of the same bytes. Target: ratio ≤ 0.9.

mod support;

use std::hint::black_box;

use fermion_webhooks::{
    EventKind, EventPayload, Receiver, SECRET_HEADER, WebhookEvent, WebhookSecret,
};
use http::HeaderMap;

fn main() {
    let secret = "whsec-bench-0123456789abcdef0123456789";
    let receiver = Receiver::new(WebhookSecret::new(secret).unwrap());
    let mut headers = HeaderMap::new();
    headers.insert(SECRET_HEADER, secret.parse().unwrap());
    let body = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json_bytes();
    assert!(receiver.receive(&headers, &body).is_ok());

    let mut baseline = || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
    };
    let mut receive = || {
        black_box(
            receiver
                .receive(black_box(&headers), black_box(&body))
                .unwrap(),
        );
    };

    let mut criterion = support::criterion();
    let mut group = criterion.benchmark_group("receive");
    group.bench_function("value_parse_baseline", |b| b.iter(&mut baseline));
    group.bench_function("secret_check_and_typed_parse", |b| b.iter(&mut receive));
    group.finish();
    criterion.final_summary();

    let medians =
        support::interleaved_medians(&mut [("baseline", &mut baseline), ("receive", &mut receive)]);
    support::summary(
        "receive",
        medians[1],
        &format!("ns/event ({} bytes)", body.len()),
        medians[0],
        "ns/event",
    );
}
