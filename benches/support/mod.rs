//! Shared by the benches: criterion settings, a quick mode, and the one-line summaries.
//!
//! Every figure is a ratio to a baseline measured in the same run on the same data, because
//! absolute times on a shared 2-core machine say little.

#![allow(dead_code)] // Each bench uses a different part.

use std::time::{Duration, Instant};

use criterion::Criterion;

pub mod data;
pub mod emit;
pub mod floor;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod threads;

/// Quick mode (`FERMION_BENCH_QUICK=1`): fewer, shorter samples; the same ratios.
pub fn quick() -> bool {
    std::env::var_os("FERMION_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Criterion configured for this machine, honouring quick mode and command-line arguments.
pub fn criterion() -> Criterion {
    let criterion = Criterion::default();
    let criterion = if quick() {
        criterion
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
    } else {
        criterion
            .sample_size(60)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
    };
    criterion.configure_from_args()
}

/// Median nanoseconds per call of each routine over [`interleaved_rounds`].
pub fn interleaved_medians(routines: &mut [(&str, &mut dyn FnMut())]) -> Vec<f64> {
    medians(&interleaved_rounds(routines))
}

/// Each routine's median over its rounds.
pub fn medians(rounds: &[Vec<f64>]) -> Vec<f64> {
    rounds.iter().map(|values| median(values.clone())).collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Each routine's time relative to the others, paired by round: in every round, each routine's
/// time over the mean of all of them in that round; per routine, the median of those over the
/// rounds. For routines that do the same work (the secret check's cases), this is the steady
/// figure on this machine, whose speed moves between a quiet mode and one about 45 % slower
/// while another tenant is busy. A round's batches run within about 10 ms of each other, so
/// they share a mode and dividing by their mean cancels it; a median or a minimum over all the
/// rounds of one routine does not: the five cases' medians spread by up to 11.5 %, and their
/// minimums by up to 19.7 %, where these ratios stay within a few percent.
pub fn relative_medians(rounds: &[Vec<f64>]) -> Vec<f64> {
    let count = rounds.first().map_or(0, Vec::len);
    let mut relative: Vec<Vec<f64>> = vec![Vec::with_capacity(count); rounds.len()];
    for round in 0..count {
        let mean = rounds.iter().map(|times| times[round]).sum::<f64>() / rounds.len() as f64;
        for (routine, times) in rounds.iter().enumerate() {
            relative[routine].push(times[round] / mean);
        }
    }
    relative.into_iter().map(median).collect()
}

/// Nanoseconds per call of each routine in each round, measured interleaved: every round times
/// a batch of each routine, in a shuffled order, so a burst of load from elsewhere on the
/// machine hits all of them alike instead of skewing one. Criterion's own report gives the
/// detailed statistics; these feed the summary ratios.
pub fn interleaved_rounds(routines: &mut [(&str, &mut dyn FnMut())]) -> Vec<Vec<f64>> {
    let rounds = if quick() { 15 } else { 101 };
    // Size each batch to take about 2 ms, so timer resolution does not matter.
    let batches: Vec<u64> = routines
        .iter_mut()
        .map(|(_, routine)| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < Duration::from_millis(20) {
                routine();
                calls += 1;
            }
            (calls / 10).max(1)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); routines.len()];
    // Each round runs the routines in a fresh shuffled order: in a fixed order, a disturbance
    // that recurs with the round's period (a 10 ms round against a 100 Hz timer, say) lands on
    // the same routine every time and skews its median.
    let mut order: Vec<usize> = (0..routines.len()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..rounds {
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &index in &order {
            let routine = &mut routines[index].1;
            let start = Instant::now();
            for _ in 0..batches[index] {
                routine();
            }
            samples[index].push(start.elapsed().as_nanos() as f64 / batches[index] as f64);
        }
    }
    samples
}

/// Of rounds that each measured the subject and the baseline back to back, the round
/// whose ratio is the median: `(subject, baseline)`. Pairing keeps each ratio to one moment of
/// the machine; sorting the two lists apart would set a subject from a quiet moment against a
/// baseline from a noisy one, or the reverse.
pub fn median_round(subject: &[f64], baseline: &[f64]) -> (f64, f64) {
    let mut rounds: Vec<(f64, f64)> = subject
        .iter()
        .copied()
        .zip(baseline.iter().copied())
        .collect();
    rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    rounds[rounds.len() / 2]
}

/// Prints `bench <name>: <value> <unit>; baseline <value> <unit>; ratio <r>`.
pub fn summary(name: &str, value: f64, unit: &str, baseline: f64, baseline_unit: &str) {
    println!(
        "bench {name}: {value:.1} {unit}; baseline {baseline:.1} {baseline_unit}; ratio {:.3}",
        value / baseline
    );
}
