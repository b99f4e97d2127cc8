//! What the two loopback load benches share: knobs, one round's figures, and the report.

// Each bench compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use hdrhistogram::Histogram;

/// A knob from the environment, or its default.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The knobs every load bench takes: (seconds per round, rounds, requests in flight).
pub fn knobs() -> (u64, u64, u64) {
    (
        env("TF_BENCH_SECS", 3),
        env("TF_BENCH_ROUNDS", 4),
        env("TF_BENCH_CONC", 32),
    )
}

/// One round of load against one variant.
pub struct Round {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Round {
    /// The figures of a round whose latencies (ns) are in `hist`, over `elapsed`.
    pub fn from_histogram(hist: &Histogram<u64>, elapsed: Duration) -> Round {
        Round {
            rps: hist.len() as f64 / elapsed.as_secs_f64(),
            p50_us: hist.value_at_quantile(0.50) as f64 / 1e3,
            p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn medians(rs: &[Round]) -> (f64, f64, f64) {
    (
        median(rs.iter().map(|r| r.rps).collect()),
        median(rs.iter().map(|r| r.p50_us).collect()),
        median(rs.iter().map(|r| r.p99_us).collect()),
    )
}

/// Prints the markdown table comparing the bare variant with the layered one, the ratio and
/// added p50 against the targets, and each round's throughput.
pub fn report(title: &str, bare: (&str, &[Round]), layered: (&str, &[Round])) {
    report_many(title, bare, &[layered]);
}

/// Prints the markdown table of `base` and every variant of `others`, each one's throughput
/// ratio and added p50 against `base` (targets ≥ 0.97 and ≤ 5 µs), and each round's
/// throughput.
pub fn report_many(title: &str, base: (&str, &[Round]), others: &[(&str, &[Round])]) {
    let (b_rps, b_p50, b_p99) = medians(base.1);
    println!("{title}, medians:\n");
    println!(
        "| variant | req/s | p50 µs | p99 µs | throughput vs {} | added p50 µs |",
        base.0
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {b_rps:.0} | {b_p50:.1} | {b_p99:.1} | 1 | 0 |",
        base.0
    );
    for (name, rounds) in others {
        let (rps, p50, p99) = medians(rounds);
        println!(
            "| {name} | {rps:.0} | {p50:.1} | {p99:.1} | {:.3} | {:+.1} |",
            rps / b_rps,
            p50 - b_p50
        );
    }
    println!("\ntargets: throughput ratio ≥ 0.97, added p50 ≤ 5 µs");
    for (name, rs) in std::iter::once(&base).chain(others) {
        let rps: Vec<String> = rs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        println!("rounds {name}: {}", rps.join(" "));
    }
}
