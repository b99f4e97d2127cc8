//! The report: the document's comparison table regenerated from a run, per-stage timeouts from
//! the budget ledgers, the money check, and how the issue's targets came out — printed, and
//! written as `report.md` and `results.json` next to the plots, the scenario and the parameters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{ClientOutcome, LoadResult, Sample};
use crate::pb::BudgetLine;
use crate::reconcile::Reconciled;
use crate::stats::StageCounts;
use crate::store::Audit;
use crate::strategy::Strategy;

/// Width of a bucket of the goodput timeline.
pub const BUCKET: Duration = Duration::from_millis(500);

/// One bucket of the timeline: answers by outcome, per second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Bucket {
    /// The bucket's start, in seconds from the start of the load.
    pub t: f64,
    /// Paid orders per second (goodput).
    pub ok: f64,
    /// Vouchers per second.
    pub degraded: f64,
    /// Failures (errors, timeouts, cut off) per second.
    pub failed: f64,
}

/// One strategy's results.
#[derive(Clone, Debug, Serialize)]
pub struct StrategySummary {
    /// The strategy.
    pub strategy: Strategy,
    /// Orders per second offered (open loop; for closed loop, sent / duration).
    pub offered_rate: f64,
    /// Orders sent.
    pub sent: u64,
    /// How long the load was sent, in seconds.
    pub duration_s: f64,
    /// Orders answered (paid, voucher or refused) per second.
    pub throughput: f64,
    /// Paid orders (not degraded) per second.
    pub goodput: f64,
    /// Paid.
    pub ok: u64,
    /// Vouchers.
    pub degraded: u64,
    /// Refused (risk, funds, limiter).
    pub rejected: u64,
    /// Errors and timeouts.
    pub failed: u64,
    /// Cut off at the end of the drain window.
    pub unfinished: u64,
    /// Latency percentiles of every order, from its intended send time, in ms.
    pub p50_ms: f64,
    /// P99.
    pub p99_ms: f64,
    /// P99.9.
    pub p999_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// Orders checked for orphaned work.
    pub orphan_checked: u64,
    /// Orders with work still alive 10 ms after their end.
    pub orphaned: u64,
    /// `orphaned / orphan_checked`, or `None` when not checked.
    pub orphan_rate: Option<f64>,
    /// What was alive, for the first orphaned orders.
    pub orphan_examples: Vec<String>,
    /// Per-stage counters from the budget ledgers (`service/name`).
    pub stages: BTreeMap<String, StageCounts>,
    /// What reconciliation settled.
    pub reconciled: Reconciled,
    /// The money check.
    pub audit: Audit,
    /// Orders the client saw degraded that were charged anyway (must be empty).
    pub client_degraded_charged: Vec<String>,
    /// Goodput and the rest over time.
    pub timeline: Vec<Bucket>,
    /// Sorted latencies in ms, thinned to at most 400 points (for the CDF).
    pub cdf_ms: Vec<f64>,
    /// One completed order's budget waterfall.
    #[serde(skip)]
    pub waterfall: Option<(String, Vec<BudgetLine>)>,
}

impl StrategySummary {
    /// Every money invariant held.
    pub fn money_ok(&self) -> bool {
        self.audit.ok() && self.client_degraded_charged.is_empty()
    }

    /// Timeouts per stage name summed over services: `(name, timed_out, refused)`.
    pub fn stage_timeouts(&self) -> Vec<(String, u64, u64)> {
        self.stages
            .iter()
            .filter(|(_, c)| c.timed_out + c.refused > 0)
            .map(|(k, c)| (k.clone(), c.timed_out, c.refused))
            .collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Summarizes one strategy's run.
pub fn summarize(
    strategy: Strategy,
    load: &LoadResult,
    duration: Duration,
    stages: BTreeMap<String, StageCounts>,
    reconciled: Reconciled,
    mut audit: Audit,
) -> StrategySummary {
    let samples = &load.samples;
    let count = |o: ClientOutcome| samples.iter().filter(|s| s.outcome == o).count() as u64;
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    for s in samples {
        let _ = hist.record(s.latency.as_micros().max(1) as u64);
    }
    let pct = |q: f64| {
        if hist.is_empty() {
            0.0
        } else {
            hist.value_at_quantile(q) as f64 / 1e3
        }
    };
    let secs = duration.as_secs_f64().max(1e-9);
    let (ok, degraded, rejected) = (
        count(ClientOutcome::Ok),
        count(ClientOutcome::Degraded),
        count(ClientOutcome::Rejected),
    );
    let checked: Vec<&Sample> = samples.iter().filter(|s| s.orphaned.is_some()).collect();
    let orphaned: Vec<&&Sample> = checked
        .iter()
        .filter(|s| s.orphaned == Some(true))
        .collect();
    let client_degraded_charged: Vec<String> = samples
        .iter()
        .filter(|s| s.outcome == ClientOutcome::Degraded)
        .filter(|s| audit.charged_orders.contains(&s.order_id))
        .map(|s| s.order_id.clone())
        .collect();
    // The timeline, by the time each order ended.
    let horizon = samples
        .iter()
        .map(|s| s.ended)
        .max()
        .unwrap_or_default()
        .max(duration);
    let n = (horizon.as_secs_f64() / BUCKET.as_secs_f64()).ceil() as usize + 1;
    let mut timeline: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            t: i as f64 * BUCKET.as_secs_f64(),
            ..Bucket::default()
        })
        .collect();
    let per_s = 1.0 / BUCKET.as_secs_f64();
    for s in samples {
        let i = (s.ended.as_secs_f64() / BUCKET.as_secs_f64()) as usize;
        if let Some(b) = timeline.get_mut(i) {
            match s.outcome {
                ClientOutcome::Ok => b.ok += per_s,
                ClientOutcome::Degraded => b.degraded += per_s,
                ClientOutcome::Failed | ClientOutcome::Unfinished => b.failed += per_s,
                ClientOutcome::Rejected => {}
            }
        }
    }
    let mut sorted: Vec<f64> = samples.iter().map(|s| ms(s.latency)).collect();
    sorted.sort_by(f64::total_cmp);
    let step = (sorted.len() / 400).max(1);
    let mut cdf_ms: Vec<f64> = sorted.iter().step_by(step).copied().collect();
    if let Some(last) = sorted.last()
        && cdf_ms.last() != Some(last)
    {
        cdf_ms.push(*last);
    }
    // The waterfall: the completed order whose risk call took longest (the budgets left for
    // the later hops are then visibly smaller).
    let waterfall = samples
        .iter()
        .filter(|s| s.outcome == ClientOutcome::Ok && !s.waterfall.is_empty())
        .max_by_key(|s| {
            s.waterfall
                .iter()
                .find(|l| l.name == "risk")
                .map_or(0, |l| l.used_us)
        })
        .map(|s| (s.order_id.clone(), s.waterfall.clone()));
    audit.charged_orders.clear();
    StrategySummary {
        strategy,
        offered_rate: samples.len() as f64 / secs,
        sent: samples.len() as u64,
        duration_s: secs,
        throughput: (ok + degraded + rejected) as f64 / secs,
        goodput: ok as f64 / secs,
        ok,
        degraded,
        rejected,
        failed: count(ClientOutcome::Failed),
        unfinished: count(ClientOutcome::Unfinished),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: hist.max() as f64 / 1e3,
        orphan_checked: checked.len() as u64,
        orphaned: orphaned.len() as u64,
        orphan_rate: (!checked.is_empty()).then(|| orphaned.len() as f64 / checked.len() as f64),
        orphan_examples: orphaned
            .iter()
            .take(3)
            .map(|s| format!("{}: {}", s.order_id, s.alive.join(", ")))
            .collect(),
        stages,
        reconciled,
        audit,
        client_degraded_charged,
        timeline,
        cdf_ms,
        waterfall,
    }
}

/// A run's parameters, written with the report so any figure can be re-run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// The command that reproduces the run.
    pub command: String,
    /// The scenario's name.
    pub scenario: String,
    /// The strategies, in order.
    pub strategies: Vec<Strategy>,
    /// Orders per second offered, one run of every strategy at each (the plots show the first).
    pub rates: Vec<f64>,
    /// Seconds of load per strategy.
    pub duration_s: f64,
    /// Closed loop with this many clients, if so.
    pub closed_loop: Option<u32>,
    /// Seconds to wait for answers after the last send.
    pub drain_s: f64,
    /// One process per service.
    pub processes: bool,
    /// The seed.
    pub seed: u64,
    /// The timefuse-demo version.
    pub version: String,
    /// Logical CPUs of the machine.
    pub cpus: usize,
}

fn pct_text(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{:.2} %", r * 100.0))
}

/// The comparison table, as markdown.
pub fn table(results: &[StrategySummary]) -> String {
    let mut t = String::new();
    t.push_str("| strategy | offered/s | throughput/s | goodput/s | paid | degraded | rejected | failed | cut off | P50 ms | P99 ms | P99.9 ms | orphaned work | money |\n");
    t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in results {
        let _ = writeln!(
            t,
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
            r.strategy,
            r.offered_rate,
            r.throughput,
            r.goodput,
            r.ok,
            r.degraded,
            r.rejected,
            r.failed,
            r.unfinished,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            pct_text(r.orphan_rate),
            if r.money_ok() { "ok" } else { "VIOLATED" }
        );
    }
    t
}

/// Per-stage timeouts and refusals from the ledgers, one column per strategy.
pub fn stage_table(results: &[StrategySummary]) -> String {
    let mut names: Vec<String> = results
        .iter()
        .flat_map(|r| r.stages.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let mut t = String::from("| service/stage or call |");
    for r in results {
        let _ = write!(t, " {} started / timed out / refused |", r.strategy);
    }
    t.push_str("\n|---|");
    for _ in results {
        t.push_str("---:|");
    }
    t.push('\n');
    for name in names {
        let _ = write!(t, "| {name} |");
        for r in results {
            match r.stages.get(&name) {
                Some(c) => {
                    let _ = write!(t, " {} / {} / {} |", c.started, c.timed_out, c.refused);
                }
                None => t.push_str(" – |"),
            }
        }
        t.push('\n');
    }
    t
}

/// How the issue's targets came out, from the measured figures.
pub fn targets(results: &[StrategySummary]) -> String {
    let find = |s: Strategy| results.iter().find(|r| r.strategy == s);
    let mut t = String::new();
    match (find(Strategy::Fixed), find(Strategy::Nested)) {
        (Some(f), Some(n)) => {
            let ratio = if f.goodput > 0.0 {
                n.goodput / f.goodput
            } else {
                f64::INFINITY
            };
            let p99 = if f.p99_ms > 0.0 {
                n.p99_ms / f.p99_ms
            } else {
                f64::INFINITY
            };
            let mark = |ok: bool| if ok { "met" } else { "NOT met" };
            // 2.3× fixed's goodput can exceed what was offered: then no strategy could meet
            // the target at this rate, and the report says so.
            let unreachable = if ratio < 2.3 && 2.3 * f.goodput > n.offered_rate {
                format!(
                    " (unreachable at this rate: 2.3 × {:.1}/s is more than the {:.1}/s offered)",
                    f.goodput, n.offered_rate
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "- nested goodput ≥ 2.3× fixed: {:.1}/s vs {:.1}/s = {:.2}× — {}{unreachable}",
                n.goodput,
                f.goodput,
                ratio,
                mark(ratio >= 2.3)
            );
            let _ = writeln!(
                t,
                "- nested P99 ≤ 0.5× fixed: {:.0} ms vs {:.0} ms = {:.2}× — {}",
                n.p99_ms,
                f.p99_ms,
                p99,
                mark(p99 <= 0.5)
            );
            match n.orphan_rate {
                Some(r) => {
                    let _ = writeln!(
                        t,
                        "- nested orphaned-work rate ≤ 0.1 %: {} ({} of {}; fixed {}) — {}",
                        pct_text(Some(r)),
                        n.orphaned,
                        n.orphan_checked,
                        pct_text(f.orphan_rate),
                        mark(r <= 0.001)
                    );
                }
                None => {
                    let _ = writeln!(
                        t,
                        "- nested orphaned-work rate: not measured (services in other processes)"
                    );
                }
            }
        }
        _ => t.push_str(
            "- the goodput, P99 and orphan targets compare fixed with nested: run both\n",
        ),
    }
    let all_ok = results.iter().all(StrategySummary::money_ok);
    let _ = writeln!(
        t,
        "- money invariants in every strategy: {}",
        if all_ok { "held" } else { "VIOLATED" }
    );
    t
}

/// The full markdown report. `runs`: (offered rate, label, that rate's results), the first
/// being the rate the plots show.
pub fn markdown(
    params: &Params,
    description: &str,
    windows: &[(&str, Duration, Duration)],
    runs: &[(f64, String, &[StrategySummary])],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# timefuse demo: scenario `{}`\n", params.scenario);
    let _ = writeln!(md, "{description}\n");
    let _ = writeln!(md, "Reproduce with:\n\n```sh\n{}\n```\n", params.command);
    let rates: Vec<String> = runs.iter().map(|(rate, _, _)| format!("{rate}")).collect();
    let _ = writeln!(
        md,
        "Load: {} orders/s{} for {:.0} s per strategy, drain {:.0} s, seed {}, {} ({} CPUs). Scenario and parameters: `scenario.toml`, `params.json`; every number: `results.json`.\n",
        rates.join(" and "),
        params.closed_loop.map_or(" open loop".into(), |c| format!(
            " (closed loop, {c} clients)"
        )),
        params.duration_s,
        params.drain_s,
        params.seed,
        if params.processes {
            "one process per service"
        } else {
            "all services in one process"
        },
        params.cpus,
    );
    let headed = runs.len() > 1;
    let heading = |md: &mut String, label: &str| {
        if headed {
            let _ = writeln!(md, "### {label}\n");
        }
    };
    md.push_str("## Comparison\n\n");
    for (_, label, results) in runs {
        heading(&mut md, label);
        md.push_str(&table(results));
        md.push('\n');
    }
    md.push_str(
        "throughput: orders answered (paid, voucher or refused) per second; goodput: paid \
         orders per second; latency from each order's intended send time (open loop, no \
         coordinated omission), over every order; orphaned work: orders with a bound task, \
         call or tracked resource still alive 10 ms after the client saw the end.\n\n",
    );
    md.push_str("## Targets\n\n");
    for (_, label, results) in runs {
        heading(&mut md, label);
        md.push_str(&targets(results));
        md.push('\n');
    }
    md.push_str("## Money\n\n");
    for (_, label, results) in runs {
        heading(&mut md, label);
        for r in *results {
            let _ = writeln!(
                md,
                "**{}** — reconciliation examined {} unsettled orders: {} charged (ledger entries written: {}), {} voided.\n",
                r.strategy,
                r.reconciled.examined,
                r.reconciled.committed,
                r.reconciled.entries_written,
                r.reconciled.voided
            );
            for (line, ok) in r.audit.lines() {
                let _ = writeln!(md, "- [{}] {line}", if ok { "x" } else { " " });
            }
            let _ = writeln!(
                md,
                "- [{}] no order the client saw degraded was charged: {} found\n",
                if r.client_degraded_charged.is_empty() {
                    "x"
                } else {
                    " "
                },
                r.client_degraded_charged.len()
            );
        }
    }
    md.push_str("## Per-stage timeouts (budget ledgers)\n\n");
    for (_, label, results) in runs {
        heading(&mut md, label);
        md.push_str(&stage_table(results));
        md.push('\n');
    }
    let first: &[StrategySummary] = runs.first().map_or(&[], |(_, _, r)| r);
    md.push_str("## Plots\n\n");
    if headed {
        let _ = writeln!(md, "For the first rate, {}.\n", runs[0].1);
    }
    md.push_str("- `cdf.svg`: latency CDF per strategy (x: ms, log scale; y: share of orders).\n");
    if windows.is_empty() {
        md.push_str("- `goodput.svg`: paid orders per second over time, per strategy (no timed fault windows in this scenario).\n");
    } else {
        let w: Vec<String> = windows
            .iter()
            .map(|(s, a, b)| format!("{s} {:.1}–{:.1} s", a.as_secs_f64(), b.as_secs_f64()))
            .collect();
        let _ = writeln!(
            md,
            "- `goodput.svg`: paid orders per second over time, per strategy; shaded: {}.",
            w.join(", ")
        );
    }
    if let Some((strategy, id)) = waterfall_choice(first) {
        let _ = writeln!(
            md,
            "- `waterfall.svg`: the budget waterfall of order `{id}` ({strategy}): for each stage and call of the order's ledger, the budget granted (light) and the time used (dark), from the order's arrival."
        );
    }
    if first.iter().any(|r| !r.orphan_examples.is_empty()) {
        md.push_str("\n## Orphaned work, first examples\n\n");
        for r in first {
            for e in &r.orphan_examples {
                let _ = writeln!(md, "- {}: {e}", r.strategy);
            }
        }
    }
    md
}

/// The order whose waterfall is drawn: from `nested` if it completed one, else the first
/// strategy that did. `(strategy, order id)`.
pub fn waterfall_choice(results: &[StrategySummary]) -> Option<(Strategy, String)> {
    let pick = |r: &StrategySummary| r.waterfall.as_ref().map(|(id, _)| (r.strategy, id.clone()));
    results
        .iter()
        .filter(|r| r.strategy == Strategy::Nested)
        .find_map(pick)
        .or_else(|| results.iter().find_map(pick))
}

/// Goodput, P99 and orphaned work per offered rate and strategy: the document's "peak load"
/// comparison, found by sweeping the rate. `rows`: (rate, that rate's results).
pub fn sweep_table(rows: &[(f64, Vec<StrategySummary>)]) -> String {
    let mut strategies: Vec<Strategy> = rows
        .iter()
        .flat_map(|(_, rs)| rs.iter().map(|r| r.strategy))
        .collect();
    strategies.sort();
    strategies.dedup();
    let mut t = String::from("| offered/s |");
    for s in &strategies {
        let _ = write!(t, " {s} goodput/s | {s} P99 ms | {s} orphaned |");
    }
    t.push_str("\n|---:|");
    for _ in &strategies {
        t.push_str("---:|---:|---:|");
    }
    t.push('\n');
    for (rate, results) in rows {
        let _ = write!(t, "| {rate} |");
        for s in &strategies {
            match results.iter().find(|r| r.strategy == *s) {
                Some(r) => {
                    let _ = write!(
                        t,
                        " {:.1} | {:.0} | {} |",
                        r.goodput,
                        r.p99_ms,
                        pct_text(r.orphan_rate)
                    );
                }
                None => t.push_str(" – | – | – |"),
            }
        }
        t.push('\n');
    }
    t.push('\n');
    for s in &strategies {
        let peak = rows
            .iter()
            .filter_map(|(rate, rs)| {
                rs.iter()
                    .find(|r| r.strategy == *s)
                    .map(|r| (*rate, r.goodput))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((rate, g)) = peak {
            let _ = writeln!(t, "- peak goodput of {s}: {g:.1}/s (offered {rate}/s)");
        }
    }
    let peak_of = |s: Strategy| {
        rows.iter()
            .filter_map(|(_, rs)| rs.iter().find(|r| r.strategy == s).map(|r| r.goodput))
            .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))))
    };
    if let (Some(f), Some(n)) = (peak_of(Strategy::Fixed), peak_of(Strategy::Nested))
        && f > 0.0
    {
        let _ = writeln!(
            t,
            "- peak goodput, nested / fixed: {:.2}× (target ≥ 2.3×: {})",
            n / f,
            if n / f >= 2.3 { "met" } else { "NOT met" }
        );
    }
    t
}
