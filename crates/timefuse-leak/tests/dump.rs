//! The live dump: a leaking request's tasks and resources appear in the text and the JSON, the
//! "alive after context ended" part first, with totals per location; the axum router serves
//! both.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use timefuse::task::TaskScope;
use timefuse::{Context, RequestId, TraceContext};
use timefuse_leak::ResourceScope;
use timefuse_leak::dump::{self, Dump, DumpFormat, DumpOptions};
use tower::ServiceExt;

/// A request that ended, leaving a deaf task and a held connection behind, plus one healthy
/// task. Returns what must be dropped to clean up.
struct Leaky {
    _scope: TaskScope,
    _conn: timefuse_leak::Tracked<&'static str>,
    healthy: tokio::task::JoinHandle<Result<(), timefuse::Cause>>,
    task_line: u32,
    conn_line: u32,
}

fn leaky_request(id: &str) -> Leaky {
    let (request, cancel) = Context::background()
        .with_request_id(RequestId::new(id).unwrap())
        .with_trace(TraceContext::new([0x0a; 16], [1; 8], 1))
        .with_cancel();
    let mut scope = TaskScope::new(&request);
    let task_line = line!() + 1;
    scope.spawn("deaf-flusher", std::future::pending::<()>());
    let db = ResourceScope::new("billing").with_timeout(Duration::from_secs(2));
    let conn_line = line!() + 1;
    let conn = db.track_in(&request, "pg-connection", "conn#1");
    let healthy = Context::background()
        .with_request_id(RequestId::new(id).unwrap())
        .spawn_named("healthy", std::future::pending::<()>());
    cancel.cancel();
    Leaky {
        _scope: scope,
        _conn: conn,
        healthy,
        task_line,
        conn_line,
    }
}

#[tokio::test(start_paused = true)]
async fn text_dump_lists_the_leaking_request_first() {
    let leaky = leaky_request("req-dump-text");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = dump::render(&DumpOptions::new().request("req-dump-text"));
    println!("{text}");
    assert!(
        text.starts_with(
            "timefuse dump: 2 live tasks, 1 held resource; 2 alive after their context ended\n"
        ),
        "{text}"
    );
    let ended = text.find("== alive after context ended (2) ==").unwrap();
    let all = text.find("== tasks, oldest first (2) ==").unwrap();
    let resources = text.find("== resources, oldest first (1) ==").unwrap();
    let totals = text.find("== totals by location ==").unwrap();
    assert!(ended < all && all < resources && resources < totals);
    let ended_part = &text[ended..all];
    assert!(
        ended_part.contains("\"deaf-flusher\" [cooperative, 3s, context ended: context canceled]:"),
        "{text}"
    );
    assert!(
        ended_part.contains(&format!("    spawned at {}:{}:", file!(), leaky.task_line)),
        "{text}"
    );
    assert!(
        ended_part
            .contains("\"pg-connection\" of billing [held 3s, context ended: context canceled]:"),
        "{text}"
    );
    assert!(
        ended_part.contains(&format!("    acquired at {}:{}:", file!(), leaky.conn_line)),
        "{text}"
    );
    assert!(
        ended_part.contains("request req-dump-text, trace 0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"),
        "{text}"
    );
    assert!(!ended_part.contains("\"healthy\""), "{text}");
    assert!(text[all..].contains("\"healthy\" [bound, 3s, context live]:"));
    assert!(
        text[totals..].contains(&format!(
            "      1         0  {}:{}:",
            file!(),
            leaky.task_line
        )),
        "{text}"
    );
    leaky.healthy.abort();
}

#[tokio::test]
async fn json_dump_has_the_same_content() {
    let leaky = leaky_request("req-dump-json");
    let json = dump::render(
        &DumpOptions::new()
            .format(DumpFormat::Json)
            .request("req-dump-json"),
    );
    println!("{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["totals"]["tasks"], 2);
    assert_eq!(v["totals"]["resources"], 1);
    assert_eq!(v["totals"]["alive_after_context_ended"], 2);
    let deaf = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deaf-flusher")
        .unwrap();
    assert_eq!(deaf["context_ended"], true);
    assert_eq!(deaf["cause"], "context canceled");
    assert_eq!(deaf["kind"], "cooperative");
    assert_eq!(deaf["request_id"], "req-dump-json");
    assert_eq!(deaf["trace_id"], "0a".repeat(16));
    assert_eq!(deaf["file"], file!());
    assert_eq!(deaf["line"], leaky.task_line);
    assert_eq!(
        v["alive_after_context_ended"]["tasks"],
        serde_json::json!([deaf["id"]])
    );
    let conn = &v["resources"][0];
    assert_eq!(conn["kind"], "pg-connection");
    assert_eq!(conn["service"], "billing");
    assert_eq!(conn["line"], leaky.conn_line);
    assert_eq!(conn["timeout_ms"], 2000.0);
    assert_eq!(conn["context_ended"], true);
    assert_eq!(
        v["alive_after_context_ended"]["resources"],
        serde_json::json!([conn["id"]])
    );
    let by_location = v["by_location"].as_array().unwrap();
    assert_eq!(by_location.len(), 3);
    leaky.healthy.abort();
}

#[tokio::test]
async fn dump_struct_orders_oldest_first_and_counts_locations() {
    let ctx = Context::background().with_request_id(RequestId::new("req-order").unwrap());
    let handles: Vec<_> = (0..3)
        .map(|i| ctx.spawn_named(format!("same-place-{i}"), std::future::pending::<()>()))
        .collect();
    let dump = Dump::collect(&DumpOptions::new().request("req-order"));
    let names: Vec<_> = dump.tasks().iter().map(|t| t.name().unwrap()).collect();
    assert_eq!(names, ["same-place-0", "same-place-1", "same-place-2"]);
    let totals = dump.by_location();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].tasks, 3);
    assert!(dump.tasks_after_context_ended().is_empty());
    for h in handles {
        h.abort();
    }
}

async fn get(app: Router, uri: &str) -> (StatusCode, String, String) {
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn axum_router_serves_text_and_json() {
    let leaky = leaky_request("req-dump-http");
    let app = Router::new().nest("/debug/tasks", dump::router());

    let (status, content_type, body) = get(app.clone(), "/debug/tasks?request=req-dump-http").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(
        body.contains("== alive after context ended (2) =="),
        "{body}"
    );
    assert!(body.contains("\"deaf-flusher\""), "{body}");

    let (status, content_type, body) = get(
        app.clone(),
        "/debug/tasks?format=json&request=req-dump-http",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totals"]["alive_after_context_ended"], 2);

    let (status, _, body) = get(app.clone(), "/debug/tasks?format=xml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown dump format \"xml\""), "{body}");

    // The whole process, unfiltered.
    let (status, _, body) = get(app, "/debug/tasks").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"deaf-flusher\""));
    leaky.healthy.abort();
}
