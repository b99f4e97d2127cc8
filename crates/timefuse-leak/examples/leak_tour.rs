//! A leaking request, seen through every tool of timefuse-leak: the resource warning, the live
//! dump (text and JSON), the request's Chrome trace, and the leak check's report.
//!
//! ```sh
//! cargo run -p timefuse-leak --example leak_tour
//! ```
//!
//! The request `req-checkout-17` runs a stage and a downstream call, then its client goes away.
//! Two things outlive it: a cooperative task that never looks at its context, and a database
//! connection parked in a cache. Time is paused (tokio's test clock), so the ages printed are
//! exact. The Chrome trace is written to `leak_tour_trace.json` in the system's temp folder;
//! open it in ui.perfetto.dev or chrome://tracing.

use std::time::Duration;

use timefuse::budget::TimeoutPolicy;
use timefuse::task::TaskScope;
use timefuse::{Cause, Context, RequestId, TraceContext};
use timefuse_leak::dump::{self, DumpFormat, DumpOptions};
use timefuse_leak::timeline::{RequestStart, Timeline};
use timefuse_leak::{LeakGuard, LeakOptions, ResourceScope, resource};

const CHECKOUT_DB: ResourceScope =
    ResourceScope::new("checkout").with_timeout(Duration::from_secs(2));

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    tracing_subscriber::fmt()
        .without_time()
        .with_ansi(false)
        .with_target(true)
        .init();
    let guard = LeakGuard::with_options(LeakOptions::new().with_retries(5));

    let trace = TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    )
    .expect("a valid traceparent");
    let (request, client) = Context::request(TimeoutPolicy::internal_grpc());
    let request = request
        .with_request_id(RequestId::new("req-checkout-17").unwrap())
        .with_trace(trace)
        .with_value(RequestStart::now());

    let mut parked = Vec::new(); // a cache that keeps what it is given
    let mut background = TaskScope::new(&request);
    {
        let risk = request.stage("risk").unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let call = risk.downstream("risk-db").unwrap();
        let conn = CHECKOUT_DB.track_in(&call, "pg-connection", "conn#3");
        tokio::time::sleep(Duration::from_millis(40)).await;
        parked.push(conn); // should have been returned to the pool
        background.spawn("audit-log", async {
            // Never looks at its context.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
    }
    let assemble = request.stage("assemble").unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(assemble);
    client.cancel_with(Cause::ClientGone);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    println!("--- resource sweep (tracing::warn!, once per resource) ---");
    let flagged = resource::sweep();
    println!("flagged: {}", flagged.len());
    println!("metrics: {:?}", resource::metrics());

    println!("\n--- dump::render(text) ---");
    print!(
        "{}",
        dump::render(&DumpOptions::new().request("req-checkout-17"))
    );

    println!("\n--- dump::render(json) ---");
    println!(
        "{}",
        dump::render(
            &DumpOptions::new()
                .format(DumpFormat::Json)
                .request("req-checkout-17")
        )
    );

    println!("\n--- Timeline::capture(&request).to_chrome_trace() ---");
    let chrome = Timeline::capture(&request).to_chrome_trace();
    let path = std::env::temp_dir().join("leak_tour_trace.json");
    std::fs::write(&path, &chrome).expect("write the trace");
    println!("{chrome}");
    println!("(written to {})", path.display());

    println!("\n--- LeakGuard::verify() ---");
    let report = guard.verify().await.expect_err("the request leaked");
    print!("{report}");

    drop(parked); // released: logged once more, as HikariCP does
    drop(background);
}
