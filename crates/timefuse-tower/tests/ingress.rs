//! The ingress layer: budgets in, identity in and out, expiry, refusal and client-gone.
//!
//! Each test runs under `#[timefuse_leak::test]`: it fails if a task or a tracked resource
//! outlives it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use timefuse::{Cause, Context};
use timefuse_tower::{IngressLayer, Protocol, WireBudget};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<Context>>>;

/// A handler that records its context and sleeps for `delay`.
fn handler(
    seen: Seen,
    delay: Duration,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |req: Request<Empty<Bytes>>| {
        let seen = seen.clone();
        async move {
            let ctx = req
                .extensions()
                .get::<Context>()
                .cloned()
                .expect("context in extensions");
            assert!(
                ctx.same_as(&Context::current()),
                "the handler runs under the request's context"
            );
            seen.lock().unwrap().push(ctx);
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    })
}

fn req(headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut b = Request::builder().uri("/pay");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

#[timefuse_leak::test(start_paused = true)]
async fn smallest_budget_wins_and_identity_is_echoed() {
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(IngressLayer::grpc().protocol(Protocol::Http))
        .service(handler(seen.clone(), Duration::ZERO));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req(&[
            ("x-deadline-ms", "700"),
            ("grpc-timeout", "2S"),
            ("x-request-timeout-ms", "3000"),
            ("x-upstream-timeout-ms", "1000"),
            ("x-request-id", "order-42"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ]))
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "order-42");
    let ctx = seen.lock().unwrap()[0].clone();
    assert_eq!(ctx.remaining(), Some(Duration::from_millis(700)));
    assert_eq!(ctx.request_id().unwrap().as_str(), "order-42");
    assert_eq!(
        ctx.trace().unwrap().trace_id_hex(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let wire = ctx.value::<WireBudget>().unwrap();
    assert_eq!(wire.original_total, Duration::from_secs(3));
    assert_eq!(wire.upstream_spent, Duration::from_secs(1));
    // The body streams under the context; once it ends, the request's context is over.
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(ctx.cause(), Some(Cause::Canceled));
}

#[timefuse_leak::test(start_paused = true)]
async fn fallback_clamp_and_untrusted_edge() {
    let seen = Seen::default();
    let layer = IngressLayer::grpc()
        .protocol(Protocol::Http)
        .max(Duration::from_secs(5));
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(handler(seen.clone(), Duration::ZERO));
    svc.ready().await.unwrap().call(req(&[])).await.unwrap();
    svc.ready()
        .await
        .unwrap()
        .call(req(&[("x-deadline-ms", "999999")]))
        .await
        .unwrap();
    let edge = IngressLayer::http_edge().trust_incoming(false);
    let mut edge = ServiceBuilder::new()
        .layer(edge)
        .service(handler(seen.clone(), Duration::ZERO));
    edge.ready()
        .await
        .unwrap()
        .call(req(&[("x-deadline-ms", "10")]))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].remaining(),
        Some(Duration::from_millis(800)),
        "gRPC fallback"
    );
    assert_eq!(
        seen[1].remaining(),
        Some(Duration::from_secs(5)),
        "clamped to the maximum"
    );
    assert_eq!(
        seen[2].remaining(),
        Some(Duration::from_secs(30)),
        "edge ignores what clients claim"
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn bad_request_id_is_replaced_and_bad_budget_headers_ignored() {
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(IngressLayer::grpc().protocol(Protocol::Http))
        .service(handler(seen.clone(), Duration::ZERO));
    let long = "x".repeat(200);
    for bad in ["has space", long.as_str(), "quote\"d"] {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(req(&[
                ("x-request-id", bad),
                ("x-deadline-ms", "-5"),
                ("grpc-timeout", "9999999999m"),
            ]))
            .await
            .unwrap();
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert_eq!(echoed.len(), 36, "a generated UUID v7");
    }
    // Bytes that are not visible ASCII (a valid header value, not a valid id) are replaced too.
    let mut opaque = req(&[]);
    opaque.headers_mut().insert(
        "x-request-id",
        http::HeaderValue::from_bytes(&[0xff, b'a']).unwrap(),
    );
    let res = svc.ready().await.unwrap().call(opaque).await.unwrap();
    assert_eq!(res.headers()["x-request-id"].len(), 36);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        last.request_id().unwrap().as_str(),
        res.headers()["x-request-id"].to_str().unwrap(),
        "the handler's context carries the id the response echoes"
    );
    for ctx in seen.lock().unwrap().iter() {
        assert_eq!(
            ctx.remaining(),
            Some(Duration::from_millis(800)),
            "malformed budgets fall back"
        );
    }
}

#[timefuse_leak::test(start_paused = true)]
async fn expiry_answers_504_json_and_cancels_the_handler() {
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(IngressLayer::http_edge())
        .service(handler(seen.clone(), Duration::from_secs(60)));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req(&[("x-deadline-ms", "250"), ("x-request-id", "r-1")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        br#"{"error":"deadline_exceeded","request_id":"r-1"}"#
    );
    assert_eq!(
        seen.lock().unwrap()[0].cause(),
        Some(Cause::DeadlineExceeded)
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn grpc_expiry_is_deadline_exceeded_never_cancelled() {
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(IngressLayer::grpc())
        .service(handler(seen.clone(), Duration::from_secs(60)));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req(&[
            ("content-type", "application/grpc"),
            ("grpc-timeout", "100m"),
        ]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "4");
    assert_eq!(res.headers()["content-type"], "application/grpc");
}

#[timefuse_leak::test(start_paused = true)]
async fn admission_refuses_thin_budgets_without_running_the_handler() {
    let seen = Seen::default();
    let layer = IngressLayer::grpc().min_admit(Duration::from_millis(50));
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(handler(seen.clone(), Duration::ZERO));
    for h in [
        [
            ("content-type", "application/grpc"),
            ("grpc-timeout", "20m"),
        ],
        [("content-type", "application/grpc"), ("grpc-timeout", "0n")],
    ] {
        let res = svc.ready().await.unwrap().call(req(&h)).await.unwrap();
        assert_eq!(res.headers()["grpc-status"], "4");
    }
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(req(&[
            ("content-type", "application/grpc"),
            ("grpc-timeout", "12x"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        res.headers()["grpc-status"],
        "13",
        "malformed grpc-timeout is INTERNAL, as in grpc-go"
    );
    assert!(seen.lock().unwrap().is_empty(), "the handler never ran");
}

#[timefuse_leak::test(start_paused = true)]
async fn caller_going_away_cancels_with_client_gone() {
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(IngressLayer::http_edge())
        .service(handler(seen.clone(), Duration::from_secs(10)));
    let fut = svc.ready().await.unwrap().call(req(&[]));
    // Poll once so the handler starts, then drop the response future, as hyper does when the
    // connection closes.
    let mut fut = Box::pin(fut);
    assert!(futures_poll_once(fut.as_mut()).await.is_none());
    let ctx = seen.lock().unwrap()[0].clone();
    drop(fut);
    assert_eq!(ctx.cause(), Some(Cause::ClientGone));
}

#[timefuse_leak::test(start_paused = true)]
async fn body_dropped_early_is_client_gone() {
    let seen = Seen::default();
    let mut svc = ServiceBuilder::new()
        .layer(IngressLayer::http_edge())
        .service(service_fn({
            let seen = seen.clone();
            move |_req: Request<Empty<Bytes>>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(Context::current());
                    Ok::<_, Infallible>(Response::new(NeverEnding))
                }
            }
        }));
    let res = svc.ready().await.unwrap().call(req(&[])).await.unwrap();
    let ctx = seen.lock().unwrap()[0].clone();
    assert!(!ctx.is_done(), "the context lives while the body streams");
    drop(res);
    assert_eq!(ctx.cause(), Some(Cause::ClientGone));
}

async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// A response body that never ends, like a stalled stream.
struct NeverEnding;

impl http_body::Body for NeverEnding {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Pending
    }
}
