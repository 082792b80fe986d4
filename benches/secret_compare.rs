//! `secret_compare`: validation time for a candidate that is equal, differs in its first byte,
//! differs in its last byte, is shorter, or is longer. Each is reported against the fastest of
//! the five; target: every ratio ≤ 1.05 (the time does not depend on the candidate).

mod support;

use std::hint::black_box;

use fermion_webhooks::{Receiver, SECRET_HEADER, WebhookSecret};
use http::HeaderMap;

fn main() {
    let secret = "whsec-bench-0123456789abcdef0123456789abcdef";
    let receiver = Receiver::new(WebhookSecret::new(secret).unwrap());
    let first_differs = format!("X{}", &secret[1..]);
    let last_differs = format!("{}X", &secret[..secret.len() - 1]);
    let shorter = secret[..secret.len() / 2].to_owned();
    let longer = format!("{secret}{secret}");
    let cases = [
        ("equal", secret.to_owned()),
        ("first_byte_differs", first_differs),
        ("last_byte_differs", last_differs),
        ("shorter", shorter),
        ("longer", longer),
    ];

    let headers: Vec<HeaderMap> = cases
        .iter()
        .map(|(name, candidate)| {
            let mut headers = HeaderMap::new();
            headers.insert(SECRET_HEADER, candidate.parse().unwrap());
            assert_eq!(receiver.verify_secret(&headers).is_ok(), *name == "equal");
            headers
        })
        .collect();
    let mut routines: Vec<Box<dyn FnMut()>> = headers
        .iter()
        .map(|headers| {
            let receiver = &receiver;
            Box::new(move || {
                let _ = black_box(receiver.verify_secret(black_box(headers)));
            }) as Box<dyn FnMut()>
        })
        .collect();

    let mut criterion = support::criterion();
    let mut group = criterion.benchmark_group("secret_compare");
    for ((name, _), routine) in cases.iter().zip(routines.iter_mut()) {
        group.bench_function(*name, |b| b.iter(&mut *routine));
    }
    group.finish();
    criterion.final_summary();

    let mut labelled: Vec<(&str, &mut dyn FnMut())> = cases
        .iter()
        .zip(routines.iter_mut())
        .map(|((name, _), routine)| (*name, &mut **routine as &mut dyn FnMut()))
        .collect();
    // The ratios come from round-by-round comparisons (see `relative_medians`); the times
    // shown are the fastest case's median scaled by them.
    let rounds = support::interleaved_rounds(&mut labelled);
    let medians = support::medians(&rounds);
    let relative = support::relative_medians(&rounds);
    let fastest = relative.iter().copied().fold(f64::INFINITY, f64::min);
    let fastest_time = medians.iter().copied().fold(f64::INFINITY, f64::min);
    for ((name, _), share) in cases.iter().zip(relative) {
        support::summary(
            &format!("secret_compare/{name}"),
            fastest_time * share / fastest,
            "ns",
            fastest_time,
            "ns (fastest case)",
        );
    }
}
