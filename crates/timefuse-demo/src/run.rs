//! One demo run: for each strategy, a fresh store and a fresh chain, the same load (same seed,
//! same fault draws), then heal, drain, reconcile and audit; then the report.
//!
//! Per strategy:
//!
//! 1. open a fresh store (its own folder) with the scenario's accounts;
//! 2. start the five services (in this process, or as child processes);
//! 3. offer the load ([`load::run`]), checking every order for orphaned work;
//! 4. heal the faults (hangs return, partitions close) and wait until no work of the run is
//!    left in the task and resource registries (in-process; a fixed grace with processes);
//! 5. stop the services, reconcile the unsettled orders, audit the money.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use timefuse::RequestId;
use tokio::time::Instant;

use crate::chain::{self, Chain};
use crate::load::{self, LoadOptions};
use crate::plots;
use crate::reconcile::reconcile;
use crate::report::{self, Params, StrategySummary};
use crate::scenario::Scenario;
use crate::stats::Stats;
use crate::store::{SqliteStore, Store};
use crate::strategy::Strategy;

/// The boxed error of a run.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The scenario (already with any `--duration` applied).
    pub scenario: Scenario,
    /// The strategies, in order.
    pub strategies: Vec<Strategy>,
    /// Orders per second; the scenario's when `None`.
    pub rate: Option<f64>,
    /// Closed loop with this many clients instead of the open loop.
    pub closed_loop: Option<u32>,
    /// How long to wait for answers after the last send.
    pub drain: Duration,
    /// One process per service (`timefuse serve`), from this executable.
    pub processes: Option<PathBuf>,
    /// Where the databases go (one folder per strategy).
    pub workdir: PathBuf,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// Print a line per strategy as it ends.
    pub verbose: bool,
}

impl DemoOptions {
    /// The orders per second offered.
    pub fn rate(&self) -> f64 {
        self.rate.unwrap_or(self.scenario.load.rate)
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// A tag unique in this process (order ids start with it), and valid as a request id.
fn tag(scenario: &str, strategy: Strategy) -> String {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let t = format!("{scenario}-{}-{n}", strategy.name());
    match RequestId::new(&t) {
        Ok(_) => t,
        Err(_) => format!("run-{}-{n}", strategy.name()),
    }
}

/// True while any task or tracked resource of an order whose id starts with `tag` is alive.
fn work_left(tag: &str) -> usize {
    let of_run = |r: Option<&RequestId>| r.is_some_and(|r| r.as_str().starts_with(tag));
    timefuse::task::snapshot_where(|t| of_run(t.request_id())).len()
        + timefuse_leak::resource::snapshot_where(|r| of_run(r.request_id())).len()
}

/// Runs one strategy and returns its summary.
pub async fn run_strategy(
    opts: &DemoOptions,
    strategy: Strategy,
) -> Result<StrategySummary, RunError> {
    let scenario = &opts.scenario;
    let tag = tag(&scenario.name, strategy);
    std::fs::create_dir_all(&opts.workdir)?;
    let db = opts.workdir.join(format!("db-{}", strategy.name()));
    if db.exists() {
        std::fs::remove_dir_all(&db)?;
    }
    let store = Arc::new(SqliteStore::open(&db)?);
    store.open_accounts(scenario.load.accounts, scenario.load.balance)?;
    let stats = Arc::new(Stats::new());
    // The load (and the partition clock) starts once the services are up.
    let lead = Duration::from_millis(if opts.processes.is_some() { 1500 } else { 200 });
    let start = Instant::now() + lead;
    let mut chain = match &opts.processes {
        None => {
            Chain::in_process(
                strategy,
                scenario,
                Arc::clone(&store) as Arc<dyn Store>,
                start,
                Arc::clone(&stats),
            )
            .await?
        }
        Some(exe) => {
            let file = opts.workdir.join("scenario.toml");
            std::fs::write(&file, scenario.to_toml_string())?;
            let start_ms = chain::unix_ms() + lead.as_millis() as u64;
            Chain::processes(exe, strategy, &file, &db, start_ms).await?
        }
    };
    let load_opts = LoadOptions {
        strategy,
        rate: opts.rate(),
        duration: scenario.load.duration.0,
        closed_loop: opts.closed_loop,
        drain: opts.drain,
        accounts: scenario.load.accounts,
        amount_min: scenario.load.amount_min,
        amount_max: scenario.load.amount_max,
        seed: scenario.load.seed,
        tag: tag.clone(),
        progress: opts.progress,
        check_orphans: opts.processes.is_none(),
    };
    let result = load::run(chain.order, &load_opts, start).await;
    chain.heal().await;
    // Let every hop's work of this run end before settling the money.
    let quiet = Instant::now() + Duration::from_secs(15);
    if opts.processes.is_none() {
        while work_left(&tag) > 0 && Instant::now() < quiet {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    chain.stop(Duration::from_secs(5)).await;
    let stages = match opts.processes {
        None => stats.snapshot(),
        Some(_) => chain::read_child_stats(&db),
    };
    let reconciled = reconcile(store.as_ref())?;
    let audit = store.audit()?;
    let summary = report::summarize(
        strategy,
        &result,
        scenario.load.duration.0,
        stages,
        reconciled,
        audit,
    );
    if opts.verbose {
        eprintln!(
            "{:>7}: {} orders, goodput {:.1}/s, P99 {:.0} ms, orphaned {}, money {}",
            strategy.name(),
            summary.sent,
            summary.goodput,
            summary.p99_ms,
            summary
                .orphan_rate
                .map_or("n/a".into(), |r| format!("{:.2} %", r * 100.0)),
            if summary.money_ok() { "ok" } else { "VIOLATED" }
        );
    }
    Ok(summary)
}

/// Runs every strategy of `opts` in turn.
pub async fn run_all(opts: &DemoOptions) -> Result<Vec<StrategySummary>, RunError> {
    let mut out = Vec::new();
    for &s in &opts.strategies {
        out.push(run_strategy(opts, s).await?);
    }
    Ok(out)
}

/// Writes the report folder: `report.md`, `results.json`, `params.json`, `scenario.toml` and
/// the three plots (for the first rate). `sweep`: (offered rate, that rate's results), at least
/// one; with `peak_table` (a `--rates` sweep) the report ends with the peak-load table across
/// the rates. Returns the markdown.
pub fn write_report(
    dir: &Path,
    params: &Params,
    scenario: &Scenario,
    sweep: &[(f64, Vec<StrategySummary>)],
    peak_table: bool,
) -> Result<String, RunError> {
    std::fs::create_dir_all(dir)?;
    let windows = scenario.windows();
    let results: &[StrategySummary] = sweep.first().map_or(&[], |(_, r)| r);
    let label = |rate: f64| {
        if rate == scenario.load.rate {
            format!("{rate} orders/s (the scenario's rate)")
        } else if Some(rate) == scenario.load.stress_rate {
            format!("{rate} orders/s (the scenario's stress rate)")
        } else {
            format!("{rate} orders/s")
        }
    };
    let runs: Vec<(f64, String, &[StrategySummary])> = sweep
        .iter()
        .map(|(rate, rs)| (*rate, label(*rate), &rs[..]))
        .collect();
    let mut md = report::markdown(params, &scenario.description, &windows, &runs);
    if peak_table {
        md.push_str("\n## Load sweep (peak load)\n\nThe same scenario and seed at each offered rate; the plots are for the first rate.\n\n");
        md.push_str(&report::sweep_table(sweep));
    }
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(dir.join("scenario.toml"), scenario.to_toml_string())?;
    std::fs::write(
        dir.join("params.json"),
        serde_json::to_string_pretty(params)?,
    )?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "params": params,
            "results": results,
            "sweep": sweep
                .iter()
                .map(|(rate, rs)| serde_json::json!({ "rate": rate, "results": rs }))
                .collect::<Vec<_>>(),
        }))?,
    )?;
    let plot = |r: Result<(), Box<dyn std::error::Error>>, name: &str| {
        if let Err(e) = r {
            eprintln!("plot {name}: {e}");
        }
    };
    plot(plots::cdf(&dir.join("cdf.svg"), results), "cdf.svg");
    plot(
        plots::goodput(&dir.join("goodput.svg"), results, &windows),
        "goodput.svg",
    );
    let waterfall = report::waterfall_choice(results).and_then(|(strategy, _)| {
        results
            .iter()
            .find(|r| r.strategy == strategy)
            .and_then(|r| r.waterfall.clone())
    });
    if let Some((id, lines)) = waterfall {
        plot(
            plots::waterfall(&dir.join("waterfall.svg"), &id, &lines),
            "waterfall.svg",
        );
    }
    Ok(md)
}
