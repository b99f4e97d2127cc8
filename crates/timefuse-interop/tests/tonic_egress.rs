//! A tonic client behind `EgressLayer::grpc()` calling the interop server behind
//! `IngressLayer::grpc()`: the whole budget chain on the wire, in-process, with no Python
//! needed. The budget a caller grants (`remaining − 150 ms reserve`) is the deadline the
//! handler sees; the request and trace ids arrive; and when the budget runs out the caller
//! sees `DEADLINE_EXCEEDED` (not tonic's own CANCELLED "Timeout expired") while the handler's
//! context ends with it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use timefuse::{CancelGuard, Context, RequestId, TraceContext};
use timefuse_interop::pb::test_service_client::TestServiceClient;
use timefuse_interop::pb::{ResponseParameters, SimpleRequest, StreamingOutputCallRequest};
use timefuse_interop::{CallLog, CallRecord, SLEEP_MS_KEY};
use timefuse_tower::EgressLayer;
use timefuse_tower::egress::Egress;
use tonic::transport::Channel;
use tower::ServiceBuilder;

const STEP: Duration = Duration::from_secs(10);
const RESERVE_MS: f64 = 150.0;

async fn start() -> (CallLog, TestServiceClient<Egress<Channel>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    let log = CallLog::new();
    tokio::spawn(timefuse_interop::serve(listener, log.clone()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(STEP)
        .connect()
        .await
        .expect("connect");
    let svc = ServiceBuilder::new()
        .layer(EgressLayer::grpc())
        .service(channel);
    (log, TestServiceClient::new(svc))
}

fn request_context(timeout: Duration, id: &str) -> (Context, CancelGuard) {
    let (ctx, guard) = Context::background().with_timeout(timeout);
    (
        ctx.with_request_id(RequestId::new(id).expect("valid id")),
        guard,
    )
}

async fn ended(log: &CallLog, id: &str) -> CallRecord {
    log.wait_for(STEP, |r| {
        r.request_id.as_deref() == Some(id) && r.cause.is_some()
    })
    .await
    .unwrap_or_else(|| panic!("the context of {id} did not end: {:#?}", log.records()))
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn granted_budget_and_identity_reach_the_handler() {
    let (log, mut client) = start().await;
    let trace = TraceContext::new([0xab; 16], [0x01; 8], 0x01);
    let (ctx, _guard) = request_context(Duration::from_secs(1), "rs-chain-1");
    let ctx = ctx.with_trace(trace.clone());
    let left = ctx.remaining().expect("a deadline");
    let resp = ctx
        .scope(client.unary_call(SimpleRequest {
            response_size: 64,
            ..SimpleRequest::default()
        }))
        .await
        .expect("the call succeeds");
    assert_eq!(resp.into_inner().payload.expect("payload").body.len(), 64);
    let rec = log
        .wait_finished("rs-chain-1", STEP)
        .await
        .expect("finished");
    let sent = left.as_secs_f64() * 1e3 - RESERVE_MS;
    let seen = rec.remaining_ms.expect("a deadline");
    assert!(
        seen <= sent && seen >= sent - 25.0,
        "sent {sent:.3} ms, the handler saw {seen:.3} ms: {rec:#?}"
    );
    assert_eq!(rec.trace_id, Some(trace.trace_id_hex()), "{rec:#?}");
    assert_eq!(rec.outcome.as_deref(), Some("ok"));
    assert_eq!(rec.cause.as_deref(), Some("canceled"), "{rec:#?}");
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn budget_end_is_deadline_exceeded_on_both_sides() {
    let (log, mut client) = start().await;
    // 250 ms left − 150 ms reserve = 100 ms for a call the server would spend 2 s on. tonic's
    // channel also times the call by the grpc-timeout the egress wrote, in the same timer tick;
    // the caller must still see DEADLINE_EXCEEDED.
    for i in 0..5 {
        let id = format!("rs-sleep-{i}");
        let (ctx, _guard) = request_context(Duration::from_millis(250), &id);
        let mut req = tonic::Request::new(SimpleRequest::default());
        req.metadata_mut()
            .insert(SLEEP_MS_KEY, "2000".parse().expect("ascii"));
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
        let rec = ended(&log, &id).await;
        let cause = rec.cause.as_deref().unwrap_or_default();
        // The server's deadline is the caller's plus transit: its own timer or the caller's
        // RST_STREAM ends the context, whichever comes first.
        assert!(
            cause == "deadline_exceeded" || cause == "client_gone",
            "{rec:#?}"
        );
        assert_ne!(rec.outcome.as_deref(), Some("ok"), "{rec:#?}");
        assert!(rec.ended_after_ms.unwrap_or(f64::MAX) < 200.0, "{rec:#?}");
    }
}

#[timefuse_leak::test(flavor = "multi_thread", worker_threads = 2, allow_unbound = 1)]
async fn budget_end_cuts_a_server_stream() {
    let (log, mut client) = start().await;
    let (ctx, _guard) = request_context(Duration::from_millis(250), "rs-stream");
    let req = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 8,
                interval_us: 0,
            },
            ResponseParameters {
                size: 8,
                interval_us: 5_000_000,
            },
        ],
        ..StreamingOutputCallRequest::default()
    };
    let started = Instant::now();
    let result = ctx
        .scope(async {
            let mut stream = client.streaming_output_call(req).await?.into_inner();
            let first = stream.message().await?;
            assert!(first.is_some(), "the first message arrives at once");
            stream.message().await
        })
        .await;
    let err = result.expect_err("the budget cuts the stream");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(400));
    let rec = ended(&log, "rs-stream").await;
    let cause = rec.cause.as_deref().unwrap_or_default();
    assert!(
        cause == "deadline_exceeded" || cause == "client_gone",
        "{rec:#?}"
    );
}
