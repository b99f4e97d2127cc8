//! `timefuse`: the payment-chain demo (`demo`), one service of it (`serve`), and the static
//! audit (`lint`).
//!
//! ```sh
//! cargo run --release --bin timefuse -- demo                 # slow-risk, all strategies
//! cargo run --release --bin timefuse -- demo --scenario storm --duration 10s
//! cargo run --release --bin timefuse -- lint crates/
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use timefuse_demo::chain::{self, ServeOptions};
use timefuse_demo::report::Params;
use timefuse_demo::run::{self, DemoOptions};
use timefuse_demo::scenario::{DEFAULT_SCENARIO, Dur, Scenario};
use timefuse_demo::services::Role;
use timefuse_demo::strategy::Strategy;

/// Go-style request contexts for tokio: the payment chain, measured.
#[derive(Debug, Parser)]
#[command(name = "timefuse", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the payment chain under load for each strategy and write the report.
    Demo(DemoArgs),
    /// Run one service of the chain in this process (used by `demo --processes`).
    Serve(ServeArgs),
    /// Static audit of timefuse context misuse (the timefuse-lint library).
    Lint(LintArgs),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// A shipped scenario (steady, slow-risk, ledger-partition, storm) or a TOML file.
    #[arg(long, short, default_value = DEFAULT_SCENARIO)]
    scenario: String,
    /// Strategies to compare, in order.
    #[arg(long, value_delimiter = ',', default_value = "fixed,nested,none")]
    strategies: Vec<Strategy>,
    /// Orders per second (default: the scenario's).
    #[arg(long, conflicts_with = "rates")]
    rate: Option<f64>,
    /// Sweep these rates (all strategies at each), e.g. 110,150,190: adds the peak-load
    /// table; the main table and plots are for the first rate.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Load duration per strategy, e.g. 20s (default: the scenario's; partition windows
    /// scale with it).
    #[arg(long, value_parser = parse_dur)]
    duration: Option<Dur>,
    /// Closed loop with this many clients instead of the open loop.
    #[arg(long)]
    closed_loop: Option<u32>,
    /// How long to wait for answers after the last send before cutting the rest off.
    #[arg(long, value_parser = parse_dur, default_value = "3s")]
    drain: Dur,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Start each service as its own `timefuse serve` process.
    #[arg(long)]
    processes: bool,
    /// The report folder (default: report/<scenario>-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name the report folder report/<NAME> instead of the time.
    #[arg(long)]
    name: Option<String>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// order, risk, deduct, ledger or notify.
    service: String,
    /// The strategy.
    #[arg(long, default_value = "nested")]
    strategy: Strategy,
    /// A shipped scenario or a TOML file.
    #[arg(long, default_value = DEFAULT_SCENARIO)]
    scenario: String,
    /// The store's folder.
    #[arg(long)]
    db: PathBuf,
    /// The load's start (Unix ms), for the partition clock.
    #[arg(long)]
    start_unix_ms: Option<u64>,
    /// A callee's address, `risk=127.0.0.1:4001` (order only; repeat for each).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(Role, SocketAddr)>,
    /// Where to listen (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
struct LintArgs {
    /// Files and directories to lint.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Output format: human, json or sarif.
    #[arg(long, short = 'f', default_value = "human")]
    format: String,
    /// Also lint test code.
    #[arg(long)]
    include_tests: bool,
}

fn parse_dur(s: &str) -> Result<Dur, String> {
    Dur::parse(s)
}

fn parse_peer(s: &str) -> Result<(Role, SocketAddr), String> {
    let (role, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected service=address"))?;
    let role = Role::parse(role).ok_or_else(|| format!("unknown service `{role}`"))?;
    let addr = addr.parse().map_err(|e| format!("`{addr}`: {e}"))?;
    Ok((role, addr))
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp() -> String {
    let secs = chain::unix_ms() / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn demo(args: DemoArgs) -> ExitCode {
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: scenario {}: {e}", args.scenario);
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.seed {
        scenario.load.seed = seed;
    }
    if let Some(d) = args.duration {
        if d.0.is_zero() {
            eprintln!("error: --duration must be > 0");
            return ExitCode::from(2);
        }
        scenario = scenario.with_duration(d.0);
    }
    if args
        .rate
        .iter()
        .chain(&args.rates)
        .any(|r| !(*r > 0.0 && *r <= 20_000.0))
    {
        eprintln!("error: rates must be > 0 and at most 20000");
        return ExitCode::from(2);
    }
    let dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("report").join(
            args.name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", scenario.name, utc_stamp())),
        )
    });
    let exe = if args.processes {
        match std::env::current_exe() {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("error: cannot find this executable for --processes: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let mut command = format!(
        "cargo run --release --bin timefuse -- demo --scenario {} --strategies {} --duration {} --drain {}",
        args.scenario,
        args.strategies
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(","),
        scenario.load.duration,
        args.drain,
    );
    if let Some(r) = args.rate {
        command.push_str(&format!(" --rate {r}"));
    }
    if !args.rates.is_empty() {
        let rates: Vec<String> = args.rates.iter().map(f64::to_string).collect();
        command.push_str(&format!(" --rates {}", rates.join(",")));
    }
    if let Some(s) = args.seed {
        command.push_str(&format!(" --seed {s}"));
    }
    if let Some(c) = args.closed_loop {
        command.push_str(&format!(" --closed-loop {c}"));
    }
    if args.processes {
        command.push_str(" --processes");
    }
    // No rate given: the scenario's rate, then its stress rate if it has one.
    let rates = match (args.rate, args.rates.is_empty()) {
        (None, true) => std::iter::once(scenario.load.rate)
            .chain(scenario.load.stress_rate)
            .collect(),
        (Some(r), _) => vec![r],
        (None, false) => args.rates.clone(),
    };
    let sweeping = rates.len() > 1;
    let opts = DemoOptions {
        scenario: scenario.clone(),
        strategies: args.strategies.clone(),
        rate: rates.first().copied(),
        closed_loop: args.closed_loop,
        drain: args.drain.0,
        processes: exe,
        workdir: dir.clone(),
        progress: !args.no_progress,
        verbose: true,
    };
    let params = Params {
        command,
        scenario: scenario.name.clone(),
        strategies: args.strategies.clone(),
        rates: rates.clone(),
        duration_s: scenario.load.duration.0.as_secs_f64(),
        closed_loop: args.closed_loop,
        drain_s: args.drain.0.as_secs_f64(),
        processes: args.processes,
        seed: scenario.load.seed,
        version: env!("CARGO_PKG_VERSION").into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    eprintln!(
        "timefuse demo: scenario {} ({}), {} orders/s for {} per strategy: {}",
        scenario.name,
        scenario.description,
        rates
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        scenario.load.duration,
        params.command
    );
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    if args.out.is_none() {
        // Reports (and their databases) are outputs, never sources: keep `report/` out of git.
        let ignore = PathBuf::from("report").join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(
                ignore,
                "# written by `timefuse demo`: reports are outputs\n*\n",
            );
        }
    }
    let rt = runtime();
    let mut sweep = Vec::new();
    for rate in rates {
        let mut o = opts.clone();
        o.rate = Some(rate);
        o.workdir = if sweep.is_empty() {
            dir.clone()
        } else {
            dir.join(format!("rate-{rate}"))
        };
        if sweeping {
            eprintln!("rate {rate}/s:");
        }
        match rt.block_on(run::run_all(&o)) {
            Ok(r) => sweep.push((rate, r)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let all_ok = sweep.iter().all(|(_, rs)| rs.iter().all(|r| r.money_ok()));
    match run::write_report(&dir, &params, &scenario, &sweep, args.rates.len() > 1) {
        Ok(md) => {
            println!("{md}");
            println!("report written to {}/", dir.display());
        }
        Err(e) => {
            eprintln!("error: writing the report: {e}");
            return ExitCode::FAILURE;
        }
    }
    // The databases stay next to the report for inspection.
    if all_ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: a money invariant was violated (see the report)");
        ExitCode::FAILURE
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let Some(role) = Role::parse(&args.service) else {
        eprintln!(
            "error: unknown service `{}` (order, risk, deduct, ledger, notify)",
            args.service
        );
        return ExitCode::from(2);
    };
    let scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: scenario {}: {e}", args.scenario);
            return ExitCode::from(2);
        }
    };
    if !args.listen.ip().is_loopback() {
        eprintln!("error: --listen must be a loopback address");
        return ExitCode::from(2);
    }
    let opts = ServeOptions {
        role,
        strategy: args.strategy,
        scenario,
        db: args.db,
        start_unix_ms: args.start_unix_ms,
        peers: args.peers,
        listen: args.listen,
    };
    match runtime().block_on(chain::serve_one(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lint(args: LintArgs) -> ExitCode {
    let format: timefuse_lint::Format = match args.format.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = timefuse_lint::Options::default().with_tests(args.include_tests);
    let report = timefuse_lint::lint_paths(&args.paths, &options);
    print!("{}", timefuse_lint::render(&report, format));
    ExitCode::from(report.exit_code() as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(a) => demo(a),
        Command::Serve(a) => serve(a),
        Command::Lint(a) => lint(a),
    }
}
