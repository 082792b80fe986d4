//! `scale_out`: delivering a backlog from one PostgreSQL log with three dispatcher processes at
//! once, against one process alone (the same backlog, the same receiver). Each process claims
//! with leases, so they share the work without sending anything twice. On two cores no speed-up
//! is expected; a collapse from lock contention would show. Target: ratio ≥ 0.9.

mod support;

use std::process::{Child, Command};
use std::time::Instant;

use support::data::{child_task, runtime};
use support::emit::receiver;
use support::postgres::{Schema, deliver_until_idle, pending_events};

fn spawn(schema: &str) -> Child {
    Command::new(std::env::current_exe().expect("the bench binary"))
        .env("FERMION_BENCH_CHILD", format!("deliver:{schema}"))
        .spawn()
        .expect("a delivering process")
}

fn main() {
    if let Some(task) = child_task() {
        let schema = task.strip_prefix("deliver:").expect("a delivery task");
        runtime().block_on(deliver_until_idle(schema));
        return;
    }
    let total = if support::quick() { 3_000 } else { 15_000 };
    let rounds = if support::quick() { 3 } else { 5 };
    let (mut one, mut three) = (Vec::new(), Vec::new());
    runtime().block_on(async {
        let (url, received) = receiver().await;
        for round in 0..rounds {
            let rate = |processes: usize| {
                let (url, received) = (url.clone(), received.clone());
                async move {
                    let schema = Schema::new(&format!("scale{processes}")).await;
                    pending_events(&schema, &url, total).await;
                    received.store(0, std::sync::atomic::Ordering::Relaxed);
                    let start = Instant::now();
                    let mut children: Vec<Child> =
                        (0..processes).map(|_| spawn(&schema.0)).collect();
                    support::emit::wait_for(&received, total).await;
                    let rate = total as f64 / start.elapsed().as_secs_f64();
                    for child in &mut children {
                        let _ = tokio::task::block_in_place(|| child.wait());
                    }
                    schema.drop_it().await;
                    rate
                }
            };
            // Which side goes first alternates, as in the other benches: the side that runs
            // second inherits the first one's write-back and checkpoint work in PostgreSQL.
            let (single, triple) = if round % 2 == 0 {
                let single = rate(1).await;
                (single, rate(3).await)
            } else {
                let triple = rate(3).await;
                (rate(1).await, triple)
            };
            eprintln!("round {round}: 1 process {single:.0}/s, 3 processes {triple:.0}/s");
            one.push(single);
            three.push(triple);
        }
    });
    let (triple, single) = support::median_round(&three, &one);
    support::summary(
        "scale_out",
        triple,
        "events/s with 3 processes",
        single,
        "events/s with 1",
    );
}
