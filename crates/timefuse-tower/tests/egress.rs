//! The egress layer: budgets and identity out, local refusal below the floor, cancellation.
//!
//! Each test runs under `#[timefuse_leak::test]`: it fails if a task or a tracked resource
//! outlives it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{Empty, Full};
use timefuse::budget::TimeoutPolicy;
use timefuse::{Context, RequestId, TraceContext};
use timefuse_tower::{EgressError, EgressLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Sent = Arc<Mutex<Vec<HeaderMap>>>;

fn downstream(
    sent: Sent,
    delay: Duration,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send {
    service_fn(move |req: Request<Empty<Bytes>>| {
        let sent = sent.clone();
        async move {
            sent.lock().unwrap().push(req.headers().clone());
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
        }
    })
}

fn grpc_req(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(format!("http://ledger.internal{path}"))
        .header("content-type", "application/grpc")
        .body(Empty::new())
        .unwrap()
}

#[timefuse_leak::test(start_paused = true)]
async fn writes_remaining_minus_reserve_and_identity() {
    let sent = Sent::default();
    let mut svc = ServiceBuilder::new()
        .layer(EgressLayer::new())
        .service(downstream(sent.clone(), Duration::ZERO));
    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let tc = TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    )
    .unwrap();
    let request = request
        .with_request_id(RequestId::new("order-9").unwrap())
        .with_trace(tc);
    tokio::time::advance(Duration::from_millis(100)).await; // 700 ms left
    // `call` reads the current context, so it must run inside the scope, as in a handler.
    let res = request
        .scope(async {
            svc.ready()
                .await
                .unwrap()
                .call(grpc_req("/ledger.Ledger/Post"))
                .await
        })
        .await;
    assert!(res.is_ok());
    let h = &sent.lock().unwrap()[0];
    assert_eq!(h["grpc-timeout"], "550000u", "700 ms − 150 ms reserve");
    assert_eq!(h["x-deadline-ms"], "550");
    assert_eq!(h["x-request-id"], "order-9");
    let tp = h["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "a new span id for the call"
    );
    let records = request.budget_records();
    assert_eq!(records.len(), 1);
    assert_eq!(&*records[0].name, "ledger.Ledger");
}

#[timefuse_leak::test(start_paused = true)]
async fn explicit_context_in_extensions_wins_over_current() {
    let sent = Sent::default();
    let mut svc = ServiceBuilder::new()
        .layer(EgressLayer::http())
        .service(downstream(sent.clone(), Duration::ZERO));
    let (current, _g1) = Context::request(TimeoutPolicy::internal_grpc());
    let (explicit, _g2) = Context::request(TimeoutPolicy::http_edge());
    let mut req = Request::builder()
        .uri("http://risk/score")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(explicit.clone());
    current
        .scope(async { svc.ready().await.unwrap().call(req).await })
        .await
        .unwrap();
    let h = &sent.lock().unwrap()[0];
    assert!(
        h.get("grpc-timeout").is_none(),
        "plain HTTP carries no grpc-timeout"
    );
    // http_edge: 30 s left, downstream cap 2 s by default.
    assert_eq!(h["x-deadline-ms"], "2000");
}

#[timefuse_leak::test(start_paused = true)]
async fn below_the_floor_fails_locally_and_sends_nothing() {
    let sent = Sent::default();
    let mut svc = ServiceBuilder::new()
        .layer(EgressLayer::grpc())
        .service(downstream(sent.clone(), Duration::ZERO));
    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    tokio::time::advance(Duration::from_millis(620)).await; // 180 ms left: 30 ms after the reserve
    let err = request
        .scope(async {
            svc.ready()
                .await
                .unwrap()
                .call(grpc_req("/risk.Risk/Score"))
                .await
        })
        .await
        .unwrap_err();
    let status = err
        .downcast::<tonic::Status>()
        .expect("a tonic::Status for gRPC calls");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(sent.lock().unwrap().is_empty(), "nothing was sent");
}

#[timefuse_leak::test(start_paused = true)]
async fn the_call_ends_with_its_budget() {
    let sent = Sent::default();
    let mut svc = ServiceBuilder::new()
        .layer(EgressLayer::http())
        .service(downstream(sent.clone(), Duration::from_secs(5)));
    let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let started = tokio::time::Instant::now();
    let req = Request::builder()
        .uri("http://slow/")
        .body(Empty::new())
        .unwrap();
    let err = request
        .scope(async { svc.ready().await.unwrap().call(req).await })
        .await
        .unwrap_err();
    let err = err.downcast::<EgressError>().unwrap();
    assert!(err.is_deadline());
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(650),
        "800 ms − 150 ms reserve"
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn the_call_ends_when_the_request_is_cancelled() {
    let sent = Sent::default();
    let mut svc = ServiceBuilder::new()
        .layer(EgressLayer::http())
        .service(downstream(sent.clone(), Duration::from_secs(5)));
    let (request, guard) = Context::request(TimeoutPolicy::internal_grpc());
    let req = Request::builder()
        .uri("http://slow/")
        .body(Empty::new())
        .unwrap();
    let task =
        tokio::spawn(request.scope(async move { svc.ready().await.unwrap().call(req).await }));
    tokio::time::sleep(Duration::from_millis(10)).await;
    guard.cancel_with(timefuse::Cause::ClientGone);
    let err = task
        .await
        .unwrap()
        .unwrap_err()
        .downcast::<EgressError>()
        .unwrap();
    assert!(!err.is_deadline());
    assert!(matches!(
        *err,
        EgressError::Ended(timefuse::Cause::ClientGone)
    ));
}

#[timefuse_leak::test(start_paused = true)]
async fn without_a_context_the_request_passes_untouched() {
    let sent = Sent::default();
    let mut svc = ServiceBuilder::new()
        .layer(EgressLayer::new())
        .service(downstream(sent.clone(), Duration::ZERO));
    svc.ready()
        .await
        .unwrap()
        .call(grpc_req("/a.B/C"))
        .await
        .unwrap();
    let h = &sent.lock().unwrap()[0];
    assert!(h.get("grpc-timeout").is_none() && h.get("x-deadline-ms").is_none());
}
