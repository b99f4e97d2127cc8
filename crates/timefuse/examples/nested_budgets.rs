//! The main job for now: one request with the document's budgets (800 ms global, 150 ms reserve,
//! 50 ms floor, 300 ms degrade threshold) through a simulated payment chain
//! `order → risk → deduct → ledger → notify`, under four conditions. For each run it prints what
//! every stage and downstream call was granted, what it used and how it ended.
//!
//! ```sh
//! cargo run --release -p timefuse --example nested_budgets
//! ```

use std::sync::Arc;
use std::time::Duration;

use timefuse::budget::{BudgetKind, BudgetRecord, TimeoutPolicy};
use timefuse::{Cause, Context};

/// Simulated latency of each downstream service in one run (`None`: black-holed, never answers).
struct Latencies {
    risk: Option<u64>,
    deduct: Option<u64>,
    ledger: Option<u64>,
    notify: Option<u64>,
}

enum Outcome {
    Paid,
    /// The request took the fallback path: a voucher instead of a charge.
    Degraded(&'static str),
    Failed(String),
}

/// One downstream call: derive its budget, then run the simulated service under it.
async fn call(ctx: &Context, name: &'static str, latency: Option<u64>) -> Result<(), String> {
    let call = ctx.downstream(name).map_err(|e| e.to_string())?;
    let service = async {
        match latency {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    call.run(service)
        .await
        .map_err(|cause: Cause| format!("{name}: {cause}"))
}

async fn order(ctx: &Context, lat: &Latencies) -> Outcome {
    if ctx.should_degrade() {
        return Outcome::Degraded("too little budget on arrival");
    }
    let checks = match ctx.stage("checks") {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if let Err(e) = call(&checks, "risk", lat.risk).await {
        return Outcome::Failed(e);
    }
    drop(checks);
    if ctx.should_degrade() {
        // Not enough left to move money and answer: hand out a voucher instead.
        return Outcome::Degraded("budget below the degrade threshold after risk");
    }
    let pay = match ctx.stage("payment") {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    for (name, latency) in [("deduct", lat.deduct), ("ledger", lat.ledger)] {
        if let Err(e) = call(&pay, name, latency).await {
            return Outcome::Failed(e);
        }
    }
    drop(pay);
    // Notification is best-effort: a refusal or timeout does not fail the order.
    let _ = call(ctx, "notify", lat.notify).await;
    Outcome::Paid
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Paid => f.write_str("paid"),
            Outcome::Degraded(why) => write!(f, "degraded to a voucher ({why})"),
            Outcome::Failed(why) => write!(f, "failed fast ({why})"),
        }
    }
}

fn print_records(records: &[BudgetRecord]) {
    println!(
        "    {:<10} {:<9} {:<8} {:>8} {:>9} {:>8}  outcome",
        "kind", "name", "stage", "start", "granted", "used"
    );
    for r in records {
        let kind = match r.kind {
            BudgetKind::Stage => "stage",
            BudgetKind::Downstream => "call",
        };
        println!(
            "    {:<10} {:<9} {:<8} {:>6}ms {:>7}ms {:>6}ms  {:?}",
            kind,
            &*r.name,
            r.parent.as_deref().unwrap_or("-"),
            r.started_at.as_millis(),
            r.granted.as_millis(),
            r.used.map_or(0, |u| u.as_millis()),
            r.outcome,
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let policy = Arc::new(TimeoutPolicy::internal_grpc());
    println!(
        "policy: global {:?}, reserve {:?}, floor {:?}, degrade below {:?}, downstream cap {:?}\n",
        policy.global(),
        policy.reserve(),
        policy.floor(),
        policy.degrade_below(),
        policy.default_downstream_cap()
    );
    let runs: [(&str, Option<Duration>, Latencies); 4] = [
        (
            "healthy chain",
            None,
            Latencies {
                risk: Some(80),
                deduct: Some(60),
                ledger: Some(50),
                notify: Some(30),
            },
        ),
        (
            "slow risk (600 ms)",
            None,
            Latencies {
                risk: Some(600),
                deduct: Some(60),
                ledger: Some(50),
                notify: Some(30),
            },
        ),
        (
            "ledger black-holed",
            None,
            Latencies {
                risk: Some(80),
                deduct: Some(60),
                ledger: None,
                notify: Some(30),
            },
        ),
        (
            "arrives with 250 ms",
            Some(Duration::from_millis(250)),
            Latencies {
                risk: Some(80),
                deduct: Some(60),
                ledger: Some(50),
                notify: Some(30),
            },
        ),
    ];
    for (title, incoming, lat) in runs {
        let (ctx, _guard) =
            Context::background().with_request_budget(Arc::clone(&policy), incoming);
        let started = tokio::time::Instant::now();
        let outcome = order(&ctx, &lat).await;
        let took = started.elapsed();
        println!("== {title}: {outcome} in {} ms", took.as_millis());
        print_records(&ctx.budget_records());
        println!();
        assert!(
            took <= policy.global() + Duration::from_millis(20),
            "a request never outlives its budget"
        );
    }
}
