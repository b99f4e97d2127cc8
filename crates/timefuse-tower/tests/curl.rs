//! `curl` (a real third-party HTTP peer) against an axum service with the ingress layer: budget
//! headers in, request id out, 504 on expiry, and `ClientGone` when curl gives up.
//!
//! Each test runs under `#[timefuse_leak::test]`: it fails if a request's task outlives it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, Query};
use axum::routing::get;
use axum::{Json, Router};
use timefuse::{Cause, Context};
use timefuse_tower::IngressLayer;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Context>>>);

#[derive(serde::Deserialize)]
struct Work {
    ms: u64,
}

async fn work(
    Extension(ctx): Extension<Context>,
    Extension(seen): Extension<Seen>,
    Query(work): Query<Work>,
) -> Json<serde_json::Value> {
    seen.0.lock().unwrap().push(ctx.clone());
    let remaining_ms = ctx.remaining().map(|d| d.as_millis() as u64);
    let _ = ctx
        .run(tokio::time::sleep(Duration::from_millis(work.ms)))
        .await;
    Json(serde_json::json!({
        "remaining_ms": remaining_ms,
        "request_id": ctx.request_id().map(|id| id.to_string()),
    }))
}

async fn serve() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/work", get(work))
        .layer(Extension(seen.clone()))
        .layer(IngressLayer::http_edge().max(Duration::from_secs(5)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Serves until the runtime shuts down: the one unbound task each test allows
    // (`allow_unbound = 1` in its `#[timefuse_leak::test]`).
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// Runs curl with `args`, returning (status line + headers, body).
async fn curl(args: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn budget_in_request_id_out() {
    let (base, _seen) = serve().await;
    let (head, body) = curl(&[
        "-H",
        "x-deadline-ms: 300",
        "-H",
        "x-request-id: curl-1",
        &format!("{base}/work?ms=0"),
    ])
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-request-id: curl-1"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let remaining = v["remaining_ms"].as_u64().unwrap();
    assert!(
        (250..=300).contains(&remaining),
        "the handler saw the budget curl sent: {remaining}"
    );
    assert_eq!(v["request_id"], "curl-1");
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn bad_request_id_is_replaced_and_no_budget_falls_back() {
    let (base, _seen) = serve().await;
    let (head, body) = curl(&[
        "-H",
        "x-request-id: not valid!",
        &format!("{base}/work?ms=0"),
    ])
    .await;
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an id is echoed");
    assert_eq!(id.len(), 36, "a fresh UUID v7: {id}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["remaining_ms"].as_u64().unwrap() > 4_900,
        "fallback 30 s clamped to the 5 s maximum"
    );
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn expiry_is_504_with_the_request_id() {
    let (base, seen) = serve().await;
    let started = std::time::Instant::now();
    let (head, body) = curl(&[
        "-H",
        "x-deadline-ms: 200",
        "-H",
        "x-request-id: slow-1",
        &format!("{base}/work?ms=5000"),
    ])
    .await;
    let took = started.elapsed();
    assert!(head.starts_with("http/1.1 504"), "{head}");
    assert_eq!(
        body,
        r#"{"error":"deadline_exceeded","request_id":"slow-1"}"#
    );
    assert!(
        took < Duration::from_secs(2),
        "answered at the deadline, not after the work: {took:?}"
    );
    assert_eq!(
        seen.0.lock().unwrap()[0].cause(),
        Some(Cause::DeadlineExceeded)
    );
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn curl_giving_up_cancels_the_request_with_client_gone() {
    let (base, seen) = serve().await;
    let (head, _) = curl(&["--max-time", "0.3", &format!("{base}/work?ms=4000")]).await;
    assert!(head.is_empty(), "curl gave up before any answer");
    // The server notices the closed connection and drops the handler.
    let ctx = seen.0.lock().unwrap()[0].clone();
    let cause = tokio::time::timeout(Duration::from_secs(3), ctx.done())
        .await
        .expect("context ended");
    assert_eq!(cause, Cause::ClientGone);
}
