//! Request timelines: captured from the budget ledger, the task registry and the resource
//! registry, and recorded from `tracing` spans by `TimelineLayer`; exported as Chrome trace
//! JSON with the expected complete events.

use std::time::Duration;

use serde_json::Value;
use timefuse::budget::TimeoutPolicy;
use timefuse::{Context, RequestId, TraceContext};
use timefuse_leak::ResourceScope;
use timefuse_leak::timeline::{RequestStart, SpanKind, Timeline, TimelineLayer};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn complete_events(trace: &Value) -> Vec<&Value> {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect()
}

fn event<'a>(trace: &'a Value, name: &str) -> &'a Value {
    complete_events(trace)
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no event {name:?} in {trace:#}"))
}

fn lane_name(trace: &Value, tid: &Value) -> String {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && &e["tid"] == tid)
        .map(|e| e["args"]["name"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_leaking_request_as_a_chrome_trace() {
    let (request, _cancel) = Context::request(TimeoutPolicy::internal_grpc());
    let request = request
        .with_request_id(RequestId::new("req-trace").unwrap())
        .with_trace(TraceContext::new([0x11; 16], [2; 8], 1))
        .with_value(RequestStart::now());

    tokio::time::sleep(Duration::from_millis(5)).await;
    let stage = request.stage("risk").unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let call = stage.downstream("risk-db").unwrap();
    let conn = ResourceScope::new("risk")
        .with_timeout(Duration::from_millis(20))
        .track_in(&call, "pg-connection", ());
    tokio::time::sleep(Duration::from_millis(40)).await;
    drop(conn);
    drop(call);
    // A task that outlives its stage (it never looks at its context): the leak to look at.
    let mut scope = timefuse::task::TaskScope::new(&stage);
    scope.spawn("audit", std::future::pending::<()>());
    let held = ResourceScope::new("risk").track_in(&request, "file", ());
    tokio::time::sleep(Duration::from_millis(15)).await;
    drop(stage);
    tokio::time::sleep(Duration::from_millis(30)).await;

    let timeline = Timeline::capture(&request);
    assert!(timeline.anchor_is_exact());
    let kinds: Vec<_> = timeline
        .spans()
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("request req-trace", SpanKind::Request),
            ("risk", SpanKind::Stage),
            ("risk-db", SpanKind::Downstream),
            ("audit", SpanKind::Task),
            ("file (risk)", SpanKind::Resource),
        ]
    );

    let json = timeline.to_chrome_trace();
    std::fs::write(
        std::env::temp_dir().join("timefuse-leak-request-trace.json"),
        &json,
    )
    .unwrap();
    println!("{json}");
    let trace: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(trace["displayTimeUnit"], "ms");
    assert_eq!(trace["otherData"]["request_id"], "req-trace");
    assert_eq!(trace["otherData"]["trace_id"], "11".repeat(16));
    assert_eq!(trace["otherData"]["start"], "exact");
    for e in complete_events(&trace) {
        assert_eq!(e["pid"], 1);
        assert!(e["tid"].as_u64().unwrap() >= 1);
        assert!(e["ts"].as_f64().unwrap() >= 0.0);
        assert!(e["dur"].as_f64().unwrap() >= 0.0);
        assert!(e["cat"].is_string());
    }
    assert_eq!(complete_events(&trace).len(), 5);

    // ts and dur in µs from the request's start.
    let req = event(&trace, "request req-trace");
    assert_eq!(
        (req["ts"].as_f64(), req["dur"].as_f64()),
        (Some(0.0), Some(100_000.0))
    );
    assert_eq!(req["args"]["open"], "true", "the request is still running");
    let risk = event(&trace, "risk");
    assert_eq!(
        (risk["ts"].as_f64(), risk["dur"].as_f64()),
        (Some(5_000.0), Some(65_000.0))
    );
    assert_eq!(risk["cat"], "stage");
    assert_eq!(risk["args"]["outcome"], "Finished");
    let db = event(&trace, "risk-db");
    assert_eq!(
        (db["ts"].as_f64(), db["dur"].as_f64()),
        (Some(15_000.0), Some(40_000.0))
    );
    assert_eq!(db["args"]["stage"], "risk");
    let task = event(&trace, "audit");
    assert_eq!(
        (task["ts"].as_f64(), task["dur"].as_f64()),
        (Some(55_000.0), Some(45_000.0))
    );
    assert_eq!(task["args"]["context_ended"], "true", "its stage ended");
    assert_eq!(task["args"]["open"], "true");
    assert!(
        task["args"]["spawned_at"]
            .as_str()
            .unwrap()
            .starts_with(file!())
    );
    let file = event(&trace, "file (risk)");
    assert_eq!(file["ts"].as_f64(), Some(55_000.0));
    assert!(lane_name(&trace, &task["tid"]).starts_with("task #"));
    assert_eq!(lane_name(&trace, &risk["tid"]), "stage");
    assert_eq!(lane_name(&trace, &db["tid"]), "downstream");
    assert_eq!(
        trace["traceEvents"][0],
        serde_json::json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 0,
                           "args": {"name": "request req-trace"}})
    );

    drop(scope);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn overlapping_calls_get_lanes_of_their_own() {
    let (request, _cancel) = Context::request(TimeoutPolicy::internal_grpc());
    let request = request
        .with_request_id(RequestId::new("req-fanout").unwrap())
        .with_value(RequestStart::now());
    let a = request.downstream("shard-a").unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let b = request.downstream("shard-b").unwrap(); // overlaps a without nesting in it
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(b);
    let trace: Value =
        serde_json::from_str(&Timeline::capture(&request).to_chrome_trace()).unwrap();
    let a = event(&trace, "shard-a");
    let b = event(&trace, "shard-b");
    assert_ne!(a["tid"], b["tid"]);
    assert_eq!(lane_name(&trace, &a["tid"]), "downstream");
    assert_eq!(lane_name(&trace, &b["tid"]), "downstream (2)");
}

#[tokio::test(start_paused = true)]
async fn without_a_request_start_the_anchor_is_estimated() {
    // A request's ledger knows when it started: exact, with no `RequestStart` attached.
    let (request, _cancel) = Context::request(TimeoutPolicy::internal_grpc());
    let request = request.with_request_id(RequestId::new("req-ledger").unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(request.stage("validate").unwrap());
    let timeline = Timeline::capture(&request);
    assert!(timeline.anchor_is_exact());
    let trace = timeline.to_chrome_trace_value();
    assert_eq!(trace["otherData"]["start"], "exact");
    assert_eq!(event(&trace, "validate")["ts"].as_f64().unwrap(), 5_000.0);

    // A context outside any request (no ledger, no `RequestStart`): the start is estimated.
    let loose = Context::background().with_request_id(RequestId::new("req-estimated").unwrap());
    let timeline = Timeline::capture(&loose);
    assert!(!timeline.anchor_is_exact());
    assert_eq!(
        timeline.to_chrome_trace_value()["otherData"]["start"],
        "estimated"
    );
}

#[tokio::test(start_paused = true)]
async fn tracing_layer_records_spans_by_request() {
    let layer = TimelineLayer::new();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(layer.clone()));

    let request = Context::background()
        .with_request_id(RequestId::new("req-spans").unwrap())
        .with_value(RequestStart::now());
    // Not tied to any request: not kept.
    tracing::info_span!("orphan").in_scope(|| ());
    // Spans created under the request's context belong to it, without a field.
    request
        .scope(async {
            async {
                tokio::time::sleep(Duration::from_millis(3)).await;
                tracing::info_span!("charge", amount = 42).in_scope(|| ());
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            .instrument(tracing::info_span!("checkout", user = "u-1"))
            .await;
        })
        .await;
    // A span that names its request.
    tracing::info_span!("explicit", request_id = "req-other").in_scope(|| ());

    assert!(layer.timeline("req-spans").is_some());
    assert!(layer.timeline("req-other").is_some());
    let timeline = layer.timeline_for(&request).unwrap();
    let names: Vec<_> = timeline.spans().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["charge", "checkout"], "in the order they closed");
    assert_eq!(layer.requests(), ["req-spans", "req-other"]);

    // Merged with what timefuse itself recorded about the request.
    let mut whole = Timeline::capture(&request);
    whole.merge(timeline);
    let trace: Value = serde_json::from_str(&whole.to_chrome_trace()).unwrap();
    let checkout = event(&trace, "checkout");
    assert_eq!(checkout["cat"], "span");
    assert_eq!(checkout["args"]["target"], module_path!());
    assert_eq!(checkout["args"]["user"], "u-1");
    assert_eq!(
        (checkout["ts"].as_f64(), checkout["dur"].as_f64()),
        (Some(0.0), Some(10_000.0))
    );
    let charge = event(&trace, "charge");
    assert_eq!(charge["ts"].as_f64(), Some(3_000.0));
    assert_eq!(charge["args"]["amount"], "42");
    assert_eq!(charge["tid"], checkout["tid"], "nested: one lane");
    assert_eq!(event(&trace, "request req-spans")["ts"].as_f64(), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn tracing_layer_inherits_the_request_from_parent_spans() {
    let layer = TimelineLayer::new();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(layer.clone()));
    let root = tracing::info_span!("request", request_id = "req-nested");
    async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        .instrument(tracing::info_span!("db", query = "select 1"))
        .await;
    }
    .instrument(root)
    .await;
    let timeline = layer.timeline("req-nested").unwrap();
    let trace = timeline.to_chrome_trace_value();
    let request = event(&trace, "request");
    let db = event(&trace, "db");
    assert_eq!(request["dur"].as_f64(), Some(7_000.0));
    assert_eq!(
        (db["ts"].as_f64(), db["dur"].as_f64()),
        (Some(2_000.0), Some(5_000.0))
    );
    assert_eq!(db["tid"], request["tid"], "nested spans share a lane");
    assert_eq!(db["args"]["query"], "select 1");
    layer.forget("req-nested");
    assert!(layer.timeline("req-nested").is_none());
}
