//! `emit_postgres`: `emit` → delivered to an axum receiver on 127.0.0.1, 64 in flight, with the
//! PostgreSQL log; baseline: the least durable outbox on the same database (64 tasks each
//! inserting a body, POSTing it with reqwest, marking it done). Target: ratio ≥ 0.6.

mod support;

use std::sync::Arc;

use fermion_webhooks::{EventKind, EventPayload, WebhookEvent};
use support::data::runtime;
use support::emit::receiver;
use support::postgres::{Schema, outbox_baseline};

fn main() {
    let total = if support::quick() { 2_000 } else { 10_000 };
    let rounds = if support::quick() { 3 } else { 5 };
    runtime().block_on(async {
        let (url, received) = receiver().await;
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..total)
                .map(|i| WebhookEvent::new(EventPayload::sample(EventKind::ALL[i % 4])).to_json())
                .collect(),
        );
        let (mut base, mut subject) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let schema = Schema::new("emit").await;
            let run_baseline =
                async || outbox_baseline(&schema, &url, bodies.clone(), &received).await;
            let run_subject = async || {
                let store = Arc::new(schema.store().await);
                support::emit::through_dispatcher(&url, total, store, &received).await
            };
            // Which side goes first alternates, as in the other benches: the side that runs
            // second inherits the first one's write-back and checkpoint work in PostgreSQL.
            let (b, s) = if round % 2 == 0 {
                let b = run_baseline().await;
                (b, run_subject().await)
            } else {
                let s = run_subject().await;
                (run_baseline().await, s)
            };
            schema.drop_it().await;
            eprintln!("round {round}: baseline {b:.0}/s, emit_postgres {s:.0}/s");
            base.push(b);
            subject.push(s);
        }
        let (subject, base) = support::median_round(&subject, &base);
        support::summary("emit_postgres", subject, "events/s", base, "events/s");
    });
}
