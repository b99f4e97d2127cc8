//! CPU cost the layers add to one call, without a network: each layer around a service that
//! answers at once, against the bare service, in the same run (criterion).
//!
//! ```sh
//! cargo bench -p timefuse-tower --bench layer_cost
//! ```

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use timefuse::Context;
use timefuse::budget::TimeoutPolicy;
use timefuse_tower::{EgressLayer, IngressLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn answer()
-> impl Service<Request<Empty<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn grpc_request() -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("http://ledger/ledger.Ledger/Post")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "800m")
        .header("x-request-id", "0192f3c4-7d2a-7b1e-9c4f-3a5b6c7d8e9f")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Empty::new())
        .unwrap()
}

/// One call through `svc` and its whole response body.
async fn round_trip<S, B>(svc: &mut S) -> Bytes
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(grpc_request())
        .await
        .unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("layer_cost");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    g.bench_function("bare service", |b| {
        let mut svc = answer();
        b.iter(|| rt.block_on(round_trip(&mut svc)))
    });
    g.bench_function("ingress", |b| {
        let mut svc = ServiceBuilder::new()
            .layer(IngressLayer::grpc())
            .service(answer());
        b.iter(|| rt.block_on(round_trip(&mut svc)))
    });
    g.bench_function("egress (request context per call)", |b| {
        let mut svc = ServiceBuilder::new()
            .layer(EgressLayer::grpc())
            .service(answer());
        let policy = std::sync::Arc::new(TimeoutPolicy::internal_grpc());
        b.iter(|| {
            rt.block_on(async {
                let (ctx, _guard) = Context::request(policy.clone());
                ctx.scope(round_trip(&mut svc)).await
            })
        })
    });
    g.bench_function("request context alone", |b| {
        let policy = std::sync::Arc::new(TimeoutPolicy::internal_grpc());
        b.iter(|| {
            let (ctx, guard) = Context::request(policy.clone());
            drop(guard);
            ctx
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
