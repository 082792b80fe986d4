//! `emit_memory`: `emit` → delivered to an axum receiver on 127.0.0.1, 64 in flight, with the
//! in-memory log; baseline: a bare reqwest loop POSTing the same bodies, 64 in flight.
//! Target: throughput ratio ≥ 0.8.

mod support;

fn main() {
    support::emit::run("emit_memory", false);
}
