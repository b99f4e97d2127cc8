//! Interop with a third-party gRPC stack: Python `grpcio` (gRPC core, C) as client of the
//! timefuse server (`IngressLayer::grpc()` in front of tonic), and as server for a tonic client
//! wrapped in `EgressLayer::grpc()`. Everything runs on 127.0.0.1 with ephemeral ports.
//!
//! Cases from the gRPC interop spec: `empty_unary`, `timeout_on_sleeping_server`,
//! `cancel_after_begin`, `cancel_after_first_response` and `custom_metadata`; plus the budget
//! cases of timefuse: a client's `timeout=` becomes the handler's deadline, no timeout gives
//! the 800 ms fallback, and the egress budget (`remaining − 150 ms reserve`) is what Python's
//! `context.time_remaining()` sees, or the call is refused locally below the floor; when
//! that budget runs out the caller sees `DEADLINE_EXCEEDED` and the Python call ends too.
//!
//! Each test asserts how the handler's context ended (the server's call log): with the budget
//! (`deadline_exceeded`, or `client_gone` when the client's own timer reset the stream first),
//! with the client's cancel (`client_gone`), or released after a complete call (`canceled`).
//!
//! A note on precision: gRPC core writes `grpc-timeout` rounded *up* to two or three
//! significant digits (seen: `timeout=2.5` arrives as 2510 ms, `timeout=10` as 10100 ms, 1 ms
//! as 2 ms), so a handler may see up to 1 % + 1 ms more than the client's timeout, and less only
//! by the time in transit.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use timefuse::{Context, RequestId};
use timefuse_interop::pb::SimpleRequest;
use timefuse_interop::pb::test_service_client::TestServiceClient;
use timefuse_interop::{CallLog, CallRecord};
use timefuse_tower::EgressLayer;
use tower::ServiceBuilder;

use support::{Peer, Python, python};

/// The longest any single wait on a peer or on the server's log may take.
const STEP: Duration = Duration::from_secs(10);
/// How much less than the budget sent a handler may see: transit and scheduling (a fraction
/// of a millisecond on an idle machine).
const TRANSIT_MS: f64 = 25.0;
/// Timing checks measure the peer's scheduling as well as the budgets: a check that falls
/// short only by time in transit (a starved Python thread, say) is tried again, up to this
/// many times in all. A check that sees *more* budget than was sent fails at once.
const ATTEMPTS: usize = 3;

/// Starts the server on an ephemeral port. Its serve task lives until the test's runtime ends:
/// the tests that call this allow that one unbound task in their leak check.
async fn start_server() -> (SocketAddr, CallLog) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let log = CallLog::new();
    tokio::spawn(timefuse_interop::serve(listener, log.clone()));
    (addr, log)
}

fn client(py: &Python, addr: SocketAddr, args: &[&str]) -> Peer {
    let addr = addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(args);
    Peer::spawn(py, "interop_client.py", &all)
}

async fn finished(log: &CallLog, id: &str) -> CallRecord {
    log.wait_finished(id, STEP)
        .await
        .unwrap_or_else(|| panic!("call {id} did not finish: {:#?}", log.records()))
}

async fn ended(log: &CallLog, id: &str) -> CallRecord {
    log.wait_for(STEP, |r| {
        r.request_id.as_deref() == Some(id) && r.cause.is_some()
    })
    .await
    .unwrap_or_else(|| panic!("the context of {id} did not end: {:#?}", log.records()))
}

fn code(result: &Value) -> &str {
    result["code"].as_str().unwrap_or("<no code>")
}

/// Checks the handler saw the client's timeout: at most what gRPC core's rounding up adds
/// (else panics), at least the timeout less `slack_ms` for the time in transit (else `false`).
fn deadline_seen(rec: &CallRecord, timeout_ms: f64, slack_ms: f64) -> bool {
    let seen = rec
        .remaining_ms
        .expect("the handler's context has a deadline");
    let most = timeout_ms * 1.01 + 2.0;
    assert!(
        seen <= most,
        "timeout {timeout_ms} ms arrived as {seen:.3} ms left, more than {most:.1}: {rec:#?}"
    );
    eprintln!(
        "timeout {timeout_ms} ms: the handler saw {seen:.3} ms left (granted {:?} ms)",
        rec.granted_ms
    );
    seen >= timeout_ms - slack_ms
}

/// A context that ended because its time ran out, seen from either end: the server's own
/// timer (`deadline_exceeded`) or the client's RST_STREAM when the client's timer fired
/// (`client_gone`). Both deadlines are the same instant by construction (the server's is the
/// client's plus transit, rounded up by gRPC core), so which end notices first is a race
/// whose both outcomes are correct. What must hold: the context ended, for one of these two
/// reasons, near the deadline and not when the work would have finished, and work that sleeps
/// on the server did not complete.
///
/// Work that waits for the client's stream (`FullDuplexCall`) may end "ok": hyper reports a
/// client's RST_STREAM(CANCEL) to the handler as a clean end of the request stream, not as an
/// error, so only the context's cause tells the two apart.
fn assert_ended_by_timeout(rec: &CallRecord, sleeps_on_server: bool) {
    let cause = rec.cause.as_deref().expect("ended");
    assert!(
        cause == "deadline_exceeded" || cause == "client_gone",
        "cause {cause}: {rec:#?}"
    );
    if sleeps_on_server {
        assert_ne!(rec.outcome.as_deref(), Some("ok"), "{rec:#?}");
    }
    let budget = rec.remaining_ms.unwrap_or_default();
    let after = rec.ended_after_ms.expect("ended");
    assert!(
        after <= budget + 100.0,
        "the context ended {after:.1} ms after the start, budget {budget:.1} ms: {rec:#?}"
    );
    eprintln!(
        "{} {:?}: context ended after {after:.1} ms ({cause}; budget {budget:.1} ms; work: {:?})",
        rec.method, rec.request_id, rec.outcome
    );
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn client_timeout_becomes_the_handler_deadline() {
    let Some(py) = python("client_timeout_becomes_the_handler_deadline") else {
        return;
    };
    let (addr, log) = start_server().await;
    for timeout in ["0.25", "2.5"] {
        let timeout_ms = timeout.parse::<f64>().expect("a number") * 1e3;
        for attempt in 1..=ATTEMPTS {
            let id = format!("py-deadline-{timeout}-{attempt}");
            let args = ["--case", "unary", "--timeout", timeout, "--request-id", &id];
            let mut peer = client(py, addr, &args);
            let result = peer.wait_key("result", STEP).await;
            assert_eq!(code(&result), "OK", "{result}");
            peer.finish(STEP).await;
            let rec = finished(&log, &id).await;
            assert!(rec.has_context, "{rec:#?}");
            assert_eq!(rec.method, "UnaryCall");
            assert_eq!(rec.outcome.as_deref(), Some("ok"));
            // The call completed: the ingress releases the context when the response body
            // ends.
            assert_eq!(rec.cause.as_deref(), Some("canceled"), "{rec:#?}");
            if deadline_seen(&rec, timeout_ms, TRANSIT_MS) {
                break;
            }
            assert!(
                attempt < ATTEMPTS,
                "timeout {timeout_ms} ms arrived more than {TRANSIT_MS} ms short {ATTEMPTS} \
                 times: {:#?}",
                log.records()
            );
        }
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn no_timeout_gets_the_800ms_fallback() {
    let Some(py) = python("no_timeout_gets_the_800ms_fallback") else {
        return;
    };
    let (addr, log) = start_server().await;
    for case in ["empty_unary", "unary"] {
        let mut peer = client(py, addr, &["--case", case]);
        let result = peer.wait_key("result", STEP).await;
        assert_eq!(code(&result), "OK", "{result}");
        peer.finish(STEP).await;
    }
    let records = log.records();
    assert_eq!(records.len(), 2, "{records:#?}");
    for rec in records {
        assert_eq!(rec.granted_ms, Some(800.0), "{rec:#?}");
        // Less only by the time from the ingress to the handler, in this process.
        assert!(deadline_seen(&rec, 800.0, 100.0), "{rec:#?}");
        // No x-request-id was sent: the ingress generated a UUID.
        let id = rec.request_id.as_deref().expect("a request id");
        assert_eq!(id.len(), 36, "a UUID: {id}");
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn timeout_on_sleeping_server() {
    let Some(py) = python("timeout_on_sleeping_server") else {
        return;
    };
    let (addr, log) = start_server().await;
    // The spec's case: a full-duplex call with a 1 ms timeout that the server never answers.
    let id = "py-sleeping-1ms";
    let mut peer = client(
        py,
        addr,
        &["--case", "timeout_on_sleeping_server", "--request-id", id],
    );
    let result = peer.wait_key("result", STEP).await;
    assert_eq!(code(&result), "DEADLINE_EXCEEDED", "{result}");
    peer.finish(STEP).await;
    // A 1 ms budget may run out before the call leaves the client (gRPC core then fails it
    // locally) or arrive as a zero budget the ingress refuses before any handler runs. If the
    // handler did run, its context must have ended with the budget.
    if log
        .wait_started(id, Duration::from_millis(500))
        .await
        .is_some()
    {
        let rec = ended(&log, id).await;
        assert_ended_by_timeout(&rec, false);
    } else {
        eprintln!(
            "the 1 ms call never reached a handler: {:#?}",
            log.records()
        );
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn timeout_on_sleeping_unary_and_stream() {
    let Some(py) = python("timeout_on_sleeping_unary_and_stream") else {
        return;
    };
    let (addr, log) = start_server().await;
    // Long enough to surely reach the handler: a unary call that would sleep 5 s, and a
    // server stream whose second message would come after 5 s, each with a 300 ms timeout.
    let cases: [(&str, &[&str]); 2] = [
        (
            "py-sleeping-unary",
            &["--case", "unary", "--sleep-ms", "5000"],
        ),
        ("py-sleeping-stream", &["--case", "sleeping_stream"]),
    ];
    for (id, args) in cases {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--timeout", "0.3", "--request-id", id]);
        let mut peer = client(py, addr, &all);
        let result = peer.wait_key("result", STEP).await;
        assert_eq!(code(&result), "DEADLINE_EXCEEDED", "{id}: {result}");
        let elapsed = result["elapsed_ms"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (290.0..1000.0).contains(&elapsed),
            "{id}: the client failed after {elapsed} ms"
        );
        if id == "py-sleeping-stream" {
            assert_eq!(result["received"], 1, "{result}");
        }
        peer.finish(STEP).await;
        let rec = ended(&log, id).await;
        assert!(deadline_seen(&rec, 300.0, 100.0), "{rec:#?}");
        assert_ended_by_timeout(&rec, true);
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn cancel_after_begin() {
    let Some(py) = python("cancel_after_begin") else {
        return;
    };
    let (addr, log) = start_server().await;
    let id = "py-cancel-after-begin";
    // A 10 s timeout, so the cancel and not the budget ends the call.
    let mut peer = client(
        py,
        addr,
        &[
            "--case",
            "cancel_after_begin",
            "--timeout",
            "10",
            "--request-id",
            id,
        ],
    );
    peer.wait_event("started", STEP).await;
    let rec = log
        .wait_started(id, STEP)
        .await
        .unwrap_or_else(|| panic!("the client stream never reached the handler"));
    assert_eq!(rec.method, "StreamingInputCall");
    assert_eq!(rec.cause, None, "live before the cancel: {rec:#?}");
    let cancelled_at = Instant::now();
    peer.send_line("cancel").await;
    let result = peer.wait_key("result", STEP).await;
    assert_eq!(code(&result), "CANCELLED", "{result}");
    let rec = ended(&log, id).await;
    assert_eq!(rec.cause.as_deref(), Some("client_gone"), "{rec:#?}");
    assert!(
        rec.ended_after_ms.unwrap_or(f64::MAX) < 5_000.0,
        "ended by the cancel, long before the 10 s budget: {rec:#?}"
    );
    eprintln!(
        "cancel_after_begin: context ended {:?} after the cancel was sent ({rec:?})",
        cancelled_at.elapsed()
    );
    peer.finish(STEP).await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn cancel_after_first_response() {
    let Some(py) = python("cancel_after_first_response") else {
        return;
    };
    let (addr, log) = start_server().await;
    let id = "py-cancel-after-first";
    let mut peer = client(
        py,
        addr,
        &[
            "--case",
            "cancel_after_first_response",
            "--timeout",
            "10",
            "--request-id",
            id,
        ],
    );
    let first = peer.wait_event("first_response", STEP).await;
    assert_eq!(first["payload_len"], 31415, "{first}");
    let rec = log.wait_started(id, STEP).await.expect("started");
    assert_eq!(rec.method, "FullDuplexCall");
    assert_eq!(rec.cause, None, "live before the cancel: {rec:#?}");
    let cancelled_at = Instant::now();
    peer.send_line("cancel").await;
    let result = peer.wait_key("result", STEP).await;
    assert_eq!(code(&result), "CANCELLED", "{result}");
    let rec = ended(&log, id).await;
    assert_eq!(rec.cause.as_deref(), Some("client_gone"), "{rec:#?}");
    assert!(
        rec.ended_after_ms.unwrap_or(f64::MAX) < 5_000.0,
        "ended by the cancel, long before the 10 s budget: {rec:#?}"
    );
    eprintln!(
        "cancel_after_first_response: context ended {:?} after the cancel was sent ({rec:?})",
        cancelled_at.elapsed()
    );
    peer.finish(STEP).await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn custom_metadata() {
    let Some(py) = python("custom_metadata") else {
        return;
    };
    let (addr, log) = start_server().await;
    let id = "py-custom-metadata";
    let mut peer = client(
        py,
        addr,
        &[
            "--case",
            "custom_metadata",
            "--timeout",
            "5",
            "--request-id",
            id,
        ],
    );
    let result = peer.wait_key("result", STEP).await;
    assert_eq!(code(&result), "OK", "{result}");
    for call in ["unary", "full_duplex"] {
        let r = &result[call];
        assert_eq!(r["payload_len"], 314159, "{call}: {r}");
        assert_eq!(
            r["initial"]["x-grpc-test-echo-initial"], "test_initial_metadata_value",
            "{call}: {r}"
        );
        assert_eq!(
            r["trailing"]["x-grpc-test-echo-trailing-bin"], "0a0b0a0b0a0b",
            "{call}: {r}"
        );
        // The request id the client sent is echoed on the response by the ingress.
        assert_eq!(r["initial"]["x-request-id"], id, "{call}: {r}");
    }
    peer.finish(STEP).await;
    let records = log
        .wait_for(STEP, |r| r.method == "FullDuplexCall" && r.is_finished())
        .await
        .map(|_| log.records())
        .expect("both calls logged");
    for rec in records {
        assert_eq!(rec.request_id.as_deref(), Some(id));
        assert_eq!(rec.outcome.as_deref(), Some("ok"), "{rec:#?}");
    }
}

/// A tonic client behind `EgressLayer::grpc()`.
type PythonClient = TestServiceClient<timefuse_tower::egress::Egress<tonic::transport::Channel>>;

/// The Python server and a tonic client to it behind `EgressLayer::grpc()`.
async fn python_server(py: &Python) -> (Peer, PythonClient) {
    let mut server = Peer::spawn(py, "test_server.py", &[]);
    let port = server.wait_key("port", STEP).await;
    let port = port.as_u64().expect("a port number");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect_timeout(STEP)
        .connect()
        .await
        .expect("connect to the Python server");
    let svc = ServiceBuilder::new()
        .layer(EgressLayer::grpc())
        .service(channel);
    (server, TestServiceClient::new(svc))
}

/// The JSON report the Python server put in the payload.
fn report(resp: tonic::Response<timefuse_interop::pb::SimpleResponse>) -> Value {
    let body = resp.into_inner().payload.expect("a payload").body;
    serde_json::from_slice(&body).expect("a JSON report")
}

fn request_context(timeout: Duration, id: &str) -> (Context, timefuse::CancelGuard) {
    let (ctx, guard) = Context::background().with_timeout(timeout);
    (
        ctx.with_request_id(RequestId::new(id).expect("valid id")),
        guard,
    )
}

/// Checks Python's `time_remaining()` is the budget sent, `remaining − 150 ms` (the reserve):
/// at most that (else panics), less only the time in transit (else `false`).
fn python_saw(report: &Value, expected_ms: f64) -> bool {
    let seen = report["time_remaining_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no deadline reached Python: {report}"));
    assert!(
        seen <= expected_ms + 0.5,
        "Python saw {seen:.3} ms, more than the {expected_ms:.3} ms sent: {report}"
    );
    let header: f64 = report["metadata"]["x-deadline-ms"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("x-deadline-ms");
    assert!(
        header <= expected_ms && header >= expected_ms - TRANSIT_MS,
        "x-deadline-ms {header}, expected {expected_ms:.3}: {report}"
    );
    eprintln!("egress: sent {expected_ms:.3} ms, Python's time_remaining() {seen:.3} ms");
    seen >= expected_ms - TRANSIT_MS
}

/// Calls UnaryCall through the egress under a fresh context of `timeout` (the task-local one,
/// or in the request's extensions if `explicit`), again while Python's `time_remaining()` falls
/// short of the budget sent by more than the time in transit, at most [`ATTEMPTS`] times.
/// Returns Python's report.
async fn call_until_python_saw_budget(
    client: &mut PythonClient,
    timeout: Duration,
    id: &str,
    explicit: bool,
) -> Value {
    for attempt in 1..=ATTEMPTS {
        let (ctx, _guard) = request_context(timeout, id);
        let left = ctx.remaining().expect("a deadline");
        let resp = if explicit {
            let mut req = tonic::Request::new(SimpleRequest::default());
            req.extensions_mut().insert(ctx.clone());
            client.unary_call(req).await
        } else {
            ctx.scope(client.unary_call(SimpleRequest::default())).await
        };
        let seen = report(resp.expect("the call succeeds"));
        assert_eq!(seen["metadata"]["x-request-id"], id, "{seen}");
        if python_saw(&seen, (left.as_secs_f64() - 0.150) * 1e3) {
            return seen;
        }
        assert!(
            attempt < ATTEMPTS,
            "Python's time_remaining() fell short by more than {TRANSIT_MS} ms {ATTEMPTS} times"
        );
    }
    unreachable!("the last attempt returns or fails")
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_budget_is_pythons_time_remaining() {
    let Some(py) = python("egress_budget_is_pythons_time_remaining") else {
        return;
    };
    let (server, mut client) = python_server(py).await;

    // The context as the task-local current one.
    let first = call_until_python_saw_budget(
        &mut client,
        Duration::from_secs(1),
        "rs-egress-current",
        false,
    )
    .await;
    let md = &first["metadata"];
    // A context of our own (not from an ingress): its total is this call's budget.
    assert_eq!(md["x-request-timeout-ms"], md["x-deadline-ms"], "{first}");
    assert_eq!(md["x-upstream-timeout-ms"], "0", "{first}");
    let traceparent = md["traceparent"].as_str().expect("traceparent");
    assert!(
        traceparent.len() == 55 && traceparent.starts_with("00-"),
        "{traceparent}"
    );

    // The context passed explicitly in the request's extensions, outside any scope.
    call_until_python_saw_budget(
        &mut client,
        Duration::from_millis(600),
        "rs-egress-explicit",
        true,
    )
    .await;
    server.finish(STEP).await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_below_the_floor_is_refused_locally() {
    let Some(py) = python("egress_below_the_floor_is_refused_locally") else {
        return;
    };
    let (server, mut client) = python_server(py).await;

    // 180 ms left − 150 ms reserve = 30 ms < the 50 ms floor: refused without sending.
    let (ctx, _guard) = request_context(Duration::from_millis(180), "rs-egress-floor");
    let started = Instant::now();
    let err = ctx
        .scope(client.unary_call(SimpleRequest::default()))
        .await
        .expect_err("refused below the floor");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "refused at once, not after a round trip: {:?}",
        started.elapsed()
    );

    // The next call, with time to spare, is the first one Python ever sees.
    let (ctx, _guard) = request_context(Duration::from_secs(1), "rs-egress-after-floor");
    let resp = ctx
        .scope(client.unary_call(SimpleRequest::default()))
        .await
        .expect("the call succeeds");
    let seen = report(resp);
    assert_eq!(seen["calls"], 1, "the refused call reached Python: {seen}");
    assert_eq!(seen["metadata"]["x-request-id"], "rs-egress-after-floor");
    server.finish(STEP).await;
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_budget_end_is_deadline_exceeded() {
    let Some(py) = python("egress_budget_end_is_deadline_exceeded") else {
        return;
    };
    let (mut server, mut client) = python_server(py).await;
    // 250 ms left − 150 ms reserve: Python gets 100 ms for a call that would sleep 2 s. Both
    // the egress and tonic's channel (which reads the grpc-timeout the egress wrote) time the
    // call; either way the caller must see DEADLINE_EXCEEDED, not CANCELLED.
    for i in 0..5 {
        let id = format!("rs-egress-sleep-{i}");
        let (ctx, _guard) = request_context(Duration::from_millis(250), &id);
        let mut req = tonic::Request::new(SimpleRequest::default());
        req.metadata_mut()
            .insert("x-timefuse-sleep-ms", "2000".parse().expect("ascii"));
        let started = Instant::now();
        let err = ctx
            .scope(client.unary_call(req))
            .await
            .expect_err("the budget ends first");
        let elapsed = started.elapsed();
        assert_eq!(
            err.code(),
            tonic::Code::DeadlineExceeded,
            "call {i} after {elapsed:?}: {err:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(95) && elapsed < Duration::from_millis(400),
            "call {i} failed after {elapsed:?}"
        );
        // The Python side's call ends with the budget too (its own deadline or our RST_STREAM).
        let terminated = loop {
            let line = server.next_json(STEP).await;
            if line["terminated"] == id.as_str() {
                break line;
            }
        };
        let after = terminated["after_ms"].as_f64().unwrap_or(f64::NAN);
        assert!(
            after < 300.0,
            "Python's call ended after {after} ms: {terminated}"
        );
        assert_eq!(terminated["active"], false, "{terminated}");
    }
    server.finish(STEP).await;
}
