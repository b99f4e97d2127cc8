//! The payment chain end to end, in this process, on short runs: the money invariants under
//! every shipped scenario and strategy, the ledger disappearing mid-order, and the floor.
//!
//! Every test runs under `#[timefuse_leak::test]`: once a run has stopped its services, no task
//! bound to an order and no tracked connection or lock may be left.

use std::time::Duration;

use timefuse_demo::report::Params;
use timefuse_demo::report::StrategySummary;
use timefuse_demo::run::{DemoOptions, run_strategy, write_report};
use timefuse_demo::scenario::{Dur, Partition, SHIPPED, Scenario};
use timefuse_demo::strategy::Strategy;

/// Short runs: 1.5 s of load at no more than 60 orders/s, 1 s of drain.
fn options(scenario: Scenario, dir: &std::path::Path) -> DemoOptions {
    let rate = scenario.load.rate.min(60.0);
    DemoOptions {
        scenario: scenario.with_duration(Duration::from_millis(1500)),
        strategies: Strategy::ALL.to_vec(),
        rate: Some(rate),
        closed_loop: None,
        drain: Duration::from_secs(1),
        processes: None,
        workdir: dir.to_path_buf(),
        progress: false,
        verbose: false,
    }
}

fn assert_money(s: &StrategySummary, scenario: &str) {
    let lines: Vec<String> = s
        .audit
        .lines()
        .into_iter()
        .map(|(l, ok)| format!("[{}] {l}", if ok { "x" } else { " " }))
        .collect();
    assert!(
        s.money_ok(),
        "{scenario}/{}: money invariants violated:\n{}\nclient-degraded charged: {:?}",
        s.strategy,
        lines.join("\n"),
        s.client_degraded_charged
    );
    assert!(s.sent > 0, "{scenario}/{}: nothing sent", s.strategy);
    // Every order the store knows is settled, and the client saw an end for every order sent.
    assert!(s.audit.orders_by_status.values().sum::<u64>() <= s.sent);
}

async fn invariants_under(name: &str) {
    let text = SHIPPED.iter().find(|(n, _)| *n == name).unwrap().1;
    let scenario = Scenario::from_toml_str(text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(scenario, dir.path());
    for strategy in Strategy::ALL {
        let summary = run_strategy(&opts, strategy).await.unwrap();
        assert_money(&summary, name);
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_invariants_steady() {
    invariants_under("steady").await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_invariants_slow_risk() {
    invariants_under("slow-risk").await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_invariants_ledger_partition() {
    invariants_under("ledger-partition").await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_invariants_storm() {
    invariants_under("storm").await;
}

/// The ledger is black-holed for the whole run: every order is charged by deduct, then its
/// ledger call gets no answer until the order's budget ends. No order may complete, and
/// reconciliation must find each charge and write its ledger entry: consistent, never guessed.
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_disappears_mid_order() {
    let mut scenario = Scenario::load("steady").unwrap();
    scenario.name = "ledger-gone".into();
    scenario.load.rate = 20.0;
    scenario.load.duration = Dur(Duration::from_secs(1));
    scenario.services.ledger.partitions = vec![Partition {
        start: Dur(Duration::ZERO),
        duration: Dur(Duration::from_secs(600)),
    }];
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(scenario, dir.path());
    opts.scenario = opts.scenario.with_duration(Duration::from_secs(1));
    for strategy in [Strategy::Nested, Strategy::Fixed] {
        let s = run_strategy(&opts, strategy).await.unwrap();
        assert_money(&s, "ledger-gone");
        assert_eq!(
            s.ok, 0,
            "{strategy}: no order completes without its ledger entry"
        );
        assert!(s.audit.charges > 0, "{strategy}: deduct charged");
        assert!(
            s.reconciled.entries_written > 0,
            "{strategy}: {:?}",
            s.reconciled
        );
        if strategy == Strategy::Nested {
            // Every order's budget ended with its ledger call: all settled by reconciliation.
            assert_eq!(
                s.reconciled.entries_written, s.audit.charges,
                "{strategy}: every entry was written by reconciliation"
            );
            assert_eq!(s.reconciled.committed, s.audit.charges);
        }
        // Under fixed, a ledger call still open when the faults heal (its caller's 800 ms runs
        // on after the client's) may write the entry itself: the key makes it count once.
        // What the client saw: a failure (charge in doubt or timeout), never a voucher for a
        // charged order.
        assert!(s.failed + s.unfinished > 0);
        assert!(s.client_degraded_charged.is_empty());
    }
}

/// Under `nested`, no downstream call or query is started with less than the 50 ms floor,
/// read from every hop's budget ledger.
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_never_starts_a_hop_under_the_floor() {
    // Storm: heavy tails everywhere, so budgets run low and calls get refused.
    let scenario = Scenario::load("storm").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(scenario, dir.path());
    let s = run_strategy(&opts, Strategy::Nested).await.unwrap();
    assert_money(&s, "storm");
    let mut started = 0;
    for (name, c) in &s.stages {
        assert_eq!(c.under_floor, 0, "{name}: started under the floor: {c:?}");
        if let Some(min) = c.min_granted_us {
            assert!(min >= 50_000, "{name}: granted {min} µs");
            started += c.started;
        }
    }
    assert!(started > 0, "the ledgers recorded calls: {:?}", s.stages);
    // Vouchers are answered at once, not at the deadline.
    assert!(s.client_degraded_charged.is_empty());
}

/// The report folder: markdown, JSON, the scenario and the three plots.
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_folder_has_everything() {
    let scenario = Scenario::load("ledger-partition").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(scenario, dir.path());
    let mut results = Vec::new();
    for strategy in [Strategy::Fixed, Strategy::Nested] {
        results.push(run_strategy(&opts, strategy).await.unwrap());
    }
    let params = Params {
        command: "timefuse demo --scenario ledger-partition".into(),
        scenario: opts.scenario.name.clone(),
        strategies: vec![Strategy::Fixed, Strategy::Nested],
        rates: vec![opts.rate()],
        duration_s: 1.5,
        closed_loop: None,
        drain_s: 1.0,
        processes: false,
        seed: opts.scenario.load.seed,
        version: "test".into(),
        cpus: 2,
    };
    let out = dir.path().join("report");
    let md = write_report(
        &out,
        &params,
        &opts.scenario,
        &[(opts.rate(), results.clone())],
        false,
    )
    .unwrap();
    assert!(
        md.contains("| fixed |") && md.contains("| nested |"),
        "{md}"
    );
    assert!(md.contains("## Targets") && md.contains("money conserved"));
    for f in [
        "report.md",
        "results.json",
        "params.json",
        "scenario.toml",
        "cdf.svg",
        "goodput.svg",
        "waterfall.svg",
    ] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f}: {len} bytes");
    }
    let svg = std::fs::read_to_string(out.join("goodput.svg")).unwrap();
    assert!(
        svg.contains("ledger partitioned"),
        "the fault window is marked"
    );
    // The scenario written next to the report loads back as the one that ran.
    let again =
        Scenario::from_toml_str(&std::fs::read_to_string(out.join("scenario.toml")).unwrap())
            .unwrap();
    assert_eq!(again, opts.scenario);

    // Two rates: every section per rate, headed; the peak table only for a `--rates` sweep.
    let rate = opts.rate();
    let sweep = [(rate, results.clone()), (rate * 2.0, results.clone())];
    let two = write_report(
        &dir.path().join("two"),
        &params,
        &opts.scenario,
        &sweep,
        false,
    )
    .unwrap();
    assert_eq!(
        two.matches(&format!("### {rate} orders/s\n")).count(),
        4,
        "{two}"
    );
    assert_eq!(
        two.matches(&format!("### {} orders/s\n", rate * 2.0))
            .count(),
        4
    );
    assert!(!two.contains("## Load sweep"));
    let swept = write_report(
        &dir.path().join("swept"),
        &params,
        &opts.scenario,
        &sweep,
        true,
    )
    .unwrap();
    assert!(swept.contains("## Load sweep") && swept.contains("peak goodput of nested"));
}

/// The reconciliation RPC: deduct's `Resolve` fences an uncharged key for good; ledger's
/// writes the entry once.
#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_rpc_fences_and_records() {
    use std::sync::Arc;
    use timefuse_demo::chain::Chain;
    use timefuse_demo::pb::ResolveRequest;
    use timefuse_demo::services::{Role, client};
    use timefuse_demo::stats::Stats;
    use timefuse_demo::store::{ChargeOutcome, SqliteStore, Store, account_name};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store.open_accounts(2, 10_000).unwrap();
    let scenario = Scenario::load("steady").unwrap();
    let chain = Chain::in_process(
        Strategy::None,
        &scenario,
        Arc::clone(&store) as Arc<dyn Store>,
        tokio::time::Instant::now(),
        Arc::new(Stats::new()),
    )
    .await
    .unwrap();
    let addr = |role: Role| chain.addrs.iter().find(|(r, _)| *r == role).unwrap().1;
    let request = |key: &str| ResolveRequest {
        idem_key: key.into(),
        order_id: format!("order-{key}"),
        account: account_name(0),
        amount: 700,
    };
    let mut deduct = client(addr(Role::Deduct), "deduct", Strategy::None);
    let mut ledger = client(addr(Role::Ledger), "ledger", Strategy::None);

    // Never charged: voided, and a late charge of the key is refused.
    let r = deduct.resolve(request("late")).await.unwrap().into_inner();
    assert!(!r.charged);
    let a = account_name(0);
    assert_eq!(
        store.charge("late", "order-late", &a, 700).unwrap(),
        ChargeOutcome::Voided
    );
    // Charged: resolve says so; the ledger entry is written once however often it is asked.
    assert_eq!(
        store.charge("paid", "order-paid", &a, 700).unwrap(),
        ChargeOutcome::Charged
    );
    assert!(
        deduct
            .resolve(request("paid"))
            .await
            .unwrap()
            .into_inner()
            .charged
    );
    for _ in 0..2 {
        ledger.resolve(request("paid")).await.unwrap();
    }
    let audit = store.audit().unwrap();
    assert_eq!((audit.charges, audit.entries, audit.voided), (1, 1, 1));
    assert!(audit.conserved());
    drop((deduct, ledger));
    chain.stop(Duration::from_secs(5)).await;
}
