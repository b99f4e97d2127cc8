//! Bare axum against axum with the ingress layer, on loopback, with one load generator in the
//! same run: throughput and latency percentiles, rounds interleaved so drift hits both alike.
//!
//! ```sh
//! cargo bench -p timefuse-tower --bench http_overhead
//! # knobs: TF_BENCH_SECS (per round, default 3), TF_BENCH_ROUNDS (default 4), TF_BENCH_CONC (default 32)
//! ```
//!
//! The server runs on its own single-threaded runtime in its own thread and the client on
//! another, so on a 2-core machine each gets one core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use timefuse_tower::IngressLayer;

mod support;
use support::Round;

/// Starts a server in its own thread; returns its address.
fn start(with_layer: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new().route("/", get(|| async { "ok" }));
            let app = if with_layer {
                app.layer(IngressLayer::http_edge())
            } else {
                app
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn load(addr: SocketAddr, secs: u64, concurrency: u64) -> Round {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let uri = uri.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            while Instant::now() < end {
                let started = Instant::now();
                let req = http::Request::get(uri.clone())
                    .header("x-deadline-ms", "5000")
                    .body(Empty::new())
                    .unwrap();
                let res = client.request(req).await.expect("request");
                let _ = res.into_body().collect().await.expect("body");
                hist.record(started.elapsed().as_nanos() as u64).unwrap();
            }
            hist
        }));
    }
    let started = Instant::now();
    let mut all = Histogram::<u64>::new(3).unwrap();
    for w in workers {
        all.add(w.await.unwrap()).unwrap();
    }
    Round::from_histogram(&all, started.elapsed())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need to read.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (secs, rounds, concurrency) = support::knobs();
    let bare = start(false);
    let layered = start(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    rt.block_on(async {
        // Warm both servers and the client's connection pool.
        load(bare, 1, concurrency).await;
        load(layered, 1, concurrency).await;
        for _ in 0..rounds {
            results[0].push(load(bare, secs, concurrency).await);
            results[1].push(load(layered, secs, concurrency).await);
        }
    });
    support::report(
        &format!(
            "axum on loopback, {concurrency} in flight, {rounds} interleaved rounds of {secs} s"
        ),
        ("bare axum", &results[0]),
        ("axum + IngressLayer", &results[1]),
    );
}
