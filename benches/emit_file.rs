//! `emit_file`: as `emit_memory`, with `FileLogStore` in its durable mode (every event and
//! attempt fsynced before it is acknowledged). Target: throughput ratio ≥ 0.65.

mod support;

fn main() {
    support::emit::run("emit_file", true);
}
