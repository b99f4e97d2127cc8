//! A peer that sends `grpc-timeout` but does not time the call itself (a proxy, a load
//! balancer, a hand-written HTTP/2 client): the server alone enforces the budget, so its answer
//! is what the caller sees. Speaks raw HTTP/2 with hyper, so no client-side timer interferes.
//!
//! tonic's `Server` times every call by `grpc-timeout` too, outside all user layers, and
//! answers CANCELLED ("Timeout expired") when its timer wins. Its timer starts a few
//! microseconds before the ingress's and fires in the same millisecond tick almost always;
//! then the ingress, polled first, sees its own deadline passed and answers
//! DEADLINE_EXCEEDED. When the two deadlines straddle a tick boundary, tonic's answer wins:
//! seen about once in 6,000 calls. The test pins both facts.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

const CALLS: u64 = 300;

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn server_enforces_grpc_timeout_with_deadline_exceeded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let log = timefuse_interop::CallLog::new();
    tokio::spawn(timefuse_interop::serve(listener, log.clone()));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);

    let mut calls = Vec::new();
    for i in 0..CALLS {
        let mut sender = sender.clone();
        calls.push(tokio::spawn(async move {
            sender.ready().await.expect("connection ready");
            // 3 to 4 ms budgets, for a handler that would sleep 1 s.
            let req =
                http::Request::post(format!("http://{addr}/grpc.testing.TestService/UnaryCall"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .header("grpc-timeout", format!("{}u", 3000 + (i * 37) % 1000))
                    .header(timefuse_interop::SLEEP_MS_KEY, "1000")
                    .header("x-request-id", format!("raw-{i}"))
                    // One empty SimpleRequest: uncompressed, length 0.
                    .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
                    .expect("request");
            let res = sender.send_request(req).await.expect("response");
            let (parts, body) = res.into_parts();
            let trailers = body
                .collect()
                .await
                .expect("body")
                .trailers()
                .cloned()
                .unwrap_or_default();
            let get = |k: &str| {
                parts
                    .headers
                    .get(k)
                    .or_else(|| trailers.get(k))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            (get("grpc-status"), get("grpc-message"))
        }));
    }
    let mut answers = BTreeMap::<(String, String), u64>::new();
    for call in calls {
        let answer = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("every call is answered in time")
            .expect("no panic");
        *answers.entry(answer).or_default() += 1;
    }
    let deadline = answers
        .iter()
        .filter(|((code, _), _)| code == "4")
        .map(|(_, n)| n)
        .sum::<u64>();
    for ((code, message), n) in &answers {
        // The only other answer allowed is tonic's own timer winning the tick race.
        assert!(
            code == "4" || (code == "1" && message == "Timeout%20expired"),
            "{n} calls answered {code} {message:?}: {answers:#?}"
        );
    }
    assert!(
        deadline * 100 >= CALLS * 99,
        "DEADLINE_EXCEEDED for only {deadline} of {CALLS}: {answers:#?}"
    );
    // No handler outlived its budget: each one's context ended before its work did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for rec in log.records() {
        assert_ne!(rec.outcome.as_deref(), Some("ok"), "{rec:#?}");
        assert!(rec.cause.is_some(), "{rec:#?}");
    }
}
