//! Bare tonic against tonic with the timefuse layers on both sides of one hop (egress on the
//! client channel, ingress on the server), with one load generator in the same run. The service
//! is tonic-health's `Check`, so no code generation is needed.
//!
//! ```sh
//! cargo bench -p timefuse-tower --bench grpc_overhead
//! # knobs: TF_BENCH_SECS (per round, default 3), TF_BENCH_ROUNDS (default 4), TF_BENCH_CONC (default 32),
//! # TF_BENCH_SIDES=ingress|egress (the layer on one side only; default both)
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use timefuse::Context;
use timefuse::budget::TimeoutPolicy;
use timefuse_tower::{EgressLayer, IngressLayer};
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

mod support;
use support::Round;

/// Starts a health server (with or without the ingress layer) in its own thread.
fn start(with_layer: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    // Named, so a profile can tell the two servers apart (`perf report --comm`).
    let name = if with_layer {
        "server-layered"
    } else {
        "server-bare"
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (reporter, service) = tonic_health::server::health_reporter();
                reporter
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                if with_layer {
                    Server::builder()
                        .layer(IngressLayer::grpc())
                        .add_service(service)
                        .serve_with_incoming(incoming)
                        .await
                        .unwrap();
                } else {
                    Server::builder()
                        .add_service(service)
                        .serve_with_incoming(incoming)
                        .await
                        .unwrap();
                }
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

/// What the client sends with each call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Nothing but the request.
    Bare,
    /// No timefuse code: the information the layers carry, set by hand as tonic metadata and
    /// tonic's own timeout (which writes `grpc-timeout`).
    Manual,
    /// EgressLayer on the channel and a request context per call.
    Egress,
}

async fn load(addr: SocketAddr, client: Client, secs: u64, concurrency: u64) -> Round {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let channel = channel.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let req = || HealthCheckRequest {
                service: String::new(),
            };
            match client {
                Client::Egress => {
                    let svc = tower::ServiceBuilder::new()
                        .layer(EgressLayer::grpc())
                        .service(channel);
                    let mut client = HealthClient::new(svc);
                    let policy = std::sync::Arc::new(
                        TimeoutPolicy::internal_grpc().with_global(Duration::from_secs(30)),
                    );
                    while Instant::now() < end {
                        let started = Instant::now();
                        // A request context per call, as a handler making one downstream call
                        // has.
                        let (ctx, _guard) = Context::request(policy.clone());
                        ctx.scope(async { client.check(req()).await.expect("check") })
                            .await;
                        hist.record(started.elapsed().as_nanos() as u64).unwrap();
                    }
                }
                Client::Manual => {
                    let mut client = HealthClient::new(channel);
                    let mut n: u64 = 0;
                    while Instant::now() < end {
                        let started = Instant::now();
                        n += 1;
                        let mut request = tonic::Request::new(req());
                        request.set_timeout(Duration::from_millis(29_850 - n % 100));
                        let md = request.metadata_mut();
                        md.insert(
                            "x-deadline-ms",
                            (29_850 - n % 100).to_string().parse().unwrap(),
                        );
                        md.insert("x-request-timeout-ms", "30000".parse().unwrap());
                        md.insert(
                            "x-upstream-timeout-ms",
                            (n % 100).to_string().parse().unwrap(),
                        );
                        let id = uuid::Uuid::now_v7().to_string();
                        md.insert("x-request-id", id.parse().unwrap());
                        let tp = format!("00-{}-{:016x}-01", uuid::Uuid::new_v4().simple(), n | 1);
                        md.insert("traceparent", tp.parse().unwrap());
                        client.check(request).await.expect("check");
                        hist.record(started.elapsed().as_nanos() as u64).unwrap();
                    }
                }
                Client::Bare => {
                    let mut client = HealthClient::new(channel);
                    while Instant::now() < end {
                        let started = Instant::now();
                        client.check(req()).await.expect("check");
                        hist.record(started.elapsed().as_nanos() as u64).unwrap();
                    }
                }
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
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (secs, rounds, concurrency) = support::knobs();
    // Three variants in one run, interleaved round by round: bare tonic; bare tonic carrying
    // the same headers and timeout set by hand (what any deadline propagation costs, with no
    // timefuse code); and the layers. TF_BENCH_SIDES=ingress|egress puts the layer on one side
    // only (default both).
    let sides = std::env::var("TF_BENCH_SIDES").unwrap_or_else(|_| "both".into());
    let (server_layer, client) = match sides.as_str() {
        "ingress" => (true, Client::Manual),
        "egress" => (false, Client::Egress),
        _ => (true, Client::Egress),
    };
    let bare = start(false);
    let layered = start(server_layer);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results: [Vec<Round>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    rt.block_on(async {
        load(bare, Client::Bare, 1, concurrency).await;
        load(bare, Client::Manual, 1, concurrency).await;
        load(layered, client, 1, concurrency).await;
        for _ in 0..rounds {
            results[0].push(load(bare, Client::Bare, secs, concurrency).await);
            results[1].push(load(bare, Client::Manual, secs, concurrency).await);
            results[2].push(load(layered, client, secs, concurrency).await);
        }
    });
    let label = match sides.as_str() {
        "ingress" => "IngressLayer (client sends the headers by hand)",
        "egress" => "EgressLayer (server bare)",
        _ => "EgressLayer → IngressLayer",
    };
    support::report_many(
        &format!(
            "tonic on loopback, one hop, {concurrency} in flight, {rounds} interleaved rounds of {secs} s"
        ),
        ("bare tonic", &results[0]),
        &[
            ("same headers and timeout by hand", &results[1]),
            (label, &results[2]),
        ],
    );
}
