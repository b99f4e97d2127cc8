//! `reqwest` calls through `send_within`: the budget and identity reach the server, a budget
//! below the floor sends nothing, and the context's end stops the call.
#![cfg(feature = "reqwest")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use timefuse::budget::TimeoutPolicy;
use timefuse::{Cause, Context, RequestId};
use timefuse_tower::EgressError;
use timefuse_tower::reqwest_ext::{ContextRequestExt, SendError};

/// Starts the server; its serve task lives until the runtime ends (each test allows it).
async fn serve(hits: Arc<AtomicUsize>) -> String {
    let app = Router::new()
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                format!(
                    "{} {} {}",
                    h("x-deadline-ms"),
                    h("x-request-id"),
                    h("traceparent").len()
                )
            }),
        )
        .route(
            "/slow",
            get(|| async { tokio::time::sleep(Duration::from_secs(10)).await }),
        )
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[timefuse_leak::test(allow_unbound = 1)]
async fn budget_and_identity_reach_the_server() {
    let base = serve(Arc::default()).await;
    let (ctx, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let ctx = ctx.with_request_id(RequestId::new("rq-7").unwrap());
    let client = reqwest::Client::new();
    let body = client
        .get(format!("{base}/echo"))
        .send_within(&ctx, "echo")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parts: Vec<&str> = body.split(' ').collect();
    let granted: u64 = parts[0].parse().unwrap();
    assert!(
        (600..=650).contains(&granted),
        "800 ms − 150 ms reserve, less a little: {granted}"
    );
    assert_eq!(parts[1], "rq-7");
    assert_eq!(parts[2], "55", "a traceparent was sent");
    assert_eq!(ctx.budget_records()[0].name.as_ref(), "echo");
}

#[timefuse_leak::test(allow_unbound = 1)]
async fn below_the_floor_nothing_is_sent() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = serve(hits.clone()).await;
    let (ctx, _g) = Context::background().with_request_budget(
        TimeoutPolicy::internal_grpc(),
        Some(Duration::from_millis(180)),
    );
    let err = reqwest::Client::new()
        .get(format!("{base}/echo"))
        .send_within(&ctx, "echo")
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::Budget(EgressError::BudgetExhausted(_))),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[timefuse_leak::test(allow_unbound = 1)]
async fn the_call_stops_when_the_context_ends() {
    let base = serve(Arc::default()).await;
    let (ctx, guard) = Context::request(TimeoutPolicy::http_edge());
    let call = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/slow"))
                .send_within(&ctx, "slow")
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    guard.cancel_with(Cause::ClientGone);
    let err = tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            SendError::Budget(EgressError::Ended(Cause::ClientGone))
        ),
        "{err}"
    );
}
