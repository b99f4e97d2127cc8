//! OpenTelemetry export (feature `otel`): a leaking request's timeline joins the caller's
//! trace, with the request as parent of its stages, calls, tasks and resources; `set_parent`
//! puts `tracing` spans under the caller's span.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use timefuse::budget::TimeoutPolicy;
use timefuse::{Context, RequestId, TraceContext};
use timefuse_leak::timeline::{RequestStart, Timeline};
use timefuse_leak::{ResourceScope, otel};
use tracing_subscriber::layer::SubscriberExt;

fn provider() -> (InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (exporter, provider)
}

#[tokio::test(start_paused = true)]
async fn a_timeline_joins_the_callers_trace() {
    let (exporter, provider) = provider();
    let caller = TraceContext::new([0x4b; 16], [0x33; 8], 1);
    let (request, _cancel) = Context::request(TimeoutPolicy::internal_grpc());
    let request = request
        .with_request_id(RequestId::new("req-otel-test").unwrap())
        .with_trace(caller)
        .with_value(RequestStart::now());
    let stage = request.stage("risk").unwrap();
    drop(stage.downstream("risk-db").unwrap());
    let mut scope = timefuse::task::TaskScope::new(&stage);
    scope.spawn("audit", std::future::pending::<()>());
    let conn = ResourceScope::new("risk").track_in(&request, "pg-connection", ());
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(stage); // the audit task outlives its stage

    otel::export_timeline(&Timeline::capture(&request), &provider.tracer("timefuse"));
    let spans = exporter.get_finished_spans().unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "risk",
            "risk-db",
            "audit",
            "pg-connection (risk)",
            "request req-otel-test"
        ]
    );
    let root = spans.last().unwrap();
    assert_eq!(root.span_context.trace_id().to_bytes(), [0x4b; 16]);
    assert_eq!(
        root.parent_span_id.to_bytes(),
        [0x33; 8],
        "the caller's span"
    );
    assert_eq!(root.span_kind, SpanKind::Server);
    for child in &spans[..4] {
        assert_eq!(child.span_context.trace_id().to_bytes(), [0x4b; 16]);
        assert_eq!(child.parent_span_id, root.span_context.span_id());
    }
    assert_eq!(spans[1].span_kind, SpanKind::Client);
    assert_eq!(
        spans[2].status,
        Status::error("alive after its context ended")
    );
    assert!(
        spans[2]
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "request_id" && kv.value.as_str() == "req-otel-test")
    );
    drop(conn);
    drop(scope);
}

#[test]
fn set_parent_puts_tracing_spans_under_the_callers_span() {
    let (exporter, provider) = provider();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("timefuse")));
    let ctx = Context::background().with_trace(TraceContext::new([0x21; 16], [0x42; 8], 1));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("handler");
        assert!(otel::set_parent(&span, &ctx));
        span.in_scope(|| tracing::info_span!("db").in_scope(|| ()));
        assert!(!otel::set_parent(
            &tracing::info_span!("no-trace"),
            &Context::background()
        ));
    });
    // The simple exporter exports each span as it ends (shutting the provider down would
    // clear the in-memory exporter).
    let spans = exporter.get_finished_spans().unwrap();
    let handler = spans.iter().find(|s| s.name == "handler").unwrap();
    let db = spans.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(handler.span_context.trace_id().to_bytes(), [0x21; 16]);
    assert_eq!(handler.parent_span_id.to_bytes(), [0x42; 8]);
    assert_eq!(db.parent_span_id, handler.span_context.span_id());
}
