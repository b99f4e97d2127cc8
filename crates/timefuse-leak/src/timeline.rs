//! Request timelines: request → stage → downstream call → task → resource, exported as Chrome
//! trace JSON (the Trace Event Format that `chrome://tracing`, Perfetto and speedscope open),
//! so that a slow or leaking request can be looked at in a trace viewer: `go tool trace` for
//! one request.
//!
//! Two sources, which can be merged:
//!
//! - [`Timeline::capture`] reads what timefuse already records about one request: the budget
//!   ledger of its stages and downstream calls ([`Context::budget_records`]), its live tasks
//!   (the task registry) and its held resources (the resource registry). Nothing to
//!   instrument; finished tasks and released resources are not in it.
//! - [`TimelineLayer`], a [`tracing_subscriber::Layer`], records every closed `tracing` span
//!   under the request id (a `request_id` field on the span or a parent, or the request id of
//!   the [current](Context::current) timefuse context when the span was created), for code
//!   instrumented with spans.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use timefuse::{Context, RequestId};
//! use timefuse::budget::TimeoutPolicy;
//! use timefuse_leak::timeline::{RequestStart, Timeline};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
//! let request = request
//!     .with_request_id(RequestId::new("req-tl").unwrap())
//!     .with_value(RequestStart::now()); // lines the ledger up with tasks exactly
//! let stage = request.stage("risk").unwrap();
//! let call = stage.downstream("risk-db").unwrap();
//! tokio::time::sleep(Duration::from_millis(40)).await;
//! drop(call);
//! drop(stage);
//!
//! let timeline = Timeline::capture(&request);
//! let names: Vec<&str> = timeline.spans().iter().map(|s| s.name.as_str()).collect();
//! assert_eq!(names, ["request req-tl", "risk", "risk-db"]);
//! let json: serde_json::Value = serde_json::from_str(&timeline.to_chrome_trace()).unwrap();
//! assert_eq!(json["traceEvents"][0]["ph"], "M");
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use timefuse::Context;
use timefuse::budget::{BudgetKind, BudgetOutcome};
use timefuse::task::{self, TaskInfo};
use tokio::time::Instant;
use tracing::span;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::resource::{self, ResourceInfo};

/// When a request started, as a [context value](Context::with_value): lets
/// [`Timeline::capture`] place the budget ledger (whose offsets count from the request's start)
/// exactly next to tasks and resources. Attach it where the request is created.
///
/// ```
/// use timefuse::Context;
/// use timefuse_leak::timeline::RequestStart;
///
/// let request = Context::background().with_value(RequestStart::now());
/// assert!(request.value::<RequestStart>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestStart(pub Instant);

impl RequestStart {
    /// Now, on tokio's clock.
    ///
    /// ```
    /// let start = timefuse_leak::timeline::RequestStart::now();
    /// assert!(start.0 <= tokio::time::Instant::now());
    /// ```
    pub fn now() -> RequestStart {
        RequestStart(Instant::now())
    }
}

/// What a [`TimelineSpan`] stands for.
///
/// ```
/// assert_eq!(timefuse_leak::timeline::SpanKind::Downstream.to_string(), "downstream");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpanKind {
    /// The whole request.
    Request,
    /// A stage, from the budget ledger.
    Stage,
    /// A downstream call, from the budget ledger.
    Downstream,
    /// A live task of the request, from the task registry.
    Task,
    /// A held resource of the request, from the resource registry.
    Resource,
    /// A `tracing` span recorded by [`TimelineLayer`].
    Span,
}

impl fmt::Display for SpanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            SpanKind::Request => "request",
            SpanKind::Stage => "stage",
            SpanKind::Downstream => "downstream",
            SpanKind::Task => "task",
            SpanKind::Resource => "resource",
            SpanKind::Span => "span",
        })
    }
}

/// One interval of a timeline.
///
/// ```
/// use timefuse_leak::timeline::{SpanKind, TimelineSpan};
///
/// let start = tokio::time::Instant::now();
/// let span = TimelineSpan::new("charge", SpanKind::Stage, start)
///     .ended(start + std::time::Duration::from_millis(5))
///     .with_arg("granted", "650ms");
/// assert_eq!(span.duration(start), std::time::Duration::from_millis(5));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TimelineSpan {
    /// What to show on the bar.
    pub name: String,
    /// What it stands for.
    pub kind: SpanKind,
    /// When it began.
    pub start: Instant,
    /// When it ended; `None` if it was still open when the timeline was taken.
    pub end: Option<Instant>,
    /// The lane it goes on: spans of one lane share a row (a trace viewer's "thread").
    pub lane: String,
    /// Details shown when the span is selected.
    pub args: BTreeMap<String, String>,
}

impl TimelineSpan {
    /// A span of `kind` named `name` from `start`, still open, on the lane named after its
    /// kind.
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, TimelineSpan};
    /// let span = TimelineSpan::new("audit", SpanKind::Task, tokio::time::Instant::now());
    /// assert!(span.end.is_none());
    /// assert_eq!(span.lane, "task");
    /// ```
    pub fn new(name: impl Into<String>, kind: SpanKind, start: Instant) -> TimelineSpan {
        TimelineSpan {
            name: name.into(),
            kind,
            start,
            end: None,
            lane: kind.to_string(),
            args: BTreeMap::new(),
        }
    }

    /// This span, ended at `end`.
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, TimelineSpan};
    /// let now = tokio::time::Instant::now();
    /// assert_eq!(TimelineSpan::new("x", SpanKind::Span, now).ended(now).end, Some(now));
    /// ```
    pub fn ended(mut self, end: Instant) -> TimelineSpan {
        self.end = Some(end);
        self
    }

    /// This span on the lane `lane`.
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, TimelineSpan};
    /// let span = TimelineSpan::new("x", SpanKind::Span, tokio::time::Instant::now()).on_lane("io");
    /// assert_eq!(span.lane, "io");
    /// ```
    pub fn on_lane(mut self, lane: impl Into<String>) -> TimelineSpan {
        self.lane = lane.into();
        self
    }

    /// This span with one more detail.
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, TimelineSpan};
    /// let span = TimelineSpan::new("x", SpanKind::Span, tokio::time::Instant::now()).with_arg("k", "v");
    /// assert_eq!(span.args["k"], "v");
    /// ```
    pub fn with_arg(mut self, key: impl Into<String>, value: impl ToString) -> TimelineSpan {
        self.args.insert(key.into(), value.to_string());
        self
    }

    /// How long it lasted, or, if still open, how long until `now`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse_leak::timeline::{SpanKind, TimelineSpan};
    /// let t0 = tokio::time::Instant::now();
    /// let open = TimelineSpan::new("x", SpanKind::Span, t0);
    /// assert_eq!(open.duration(t0 + Duration::from_secs(1)), Duration::from_secs(1));
    /// ```
    pub fn duration(&self, now: Instant) -> Duration {
        self.end
            .unwrap_or(now)
            .saturating_duration_since(self.start)
    }
}

/// The spans of one request, exportable as Chrome trace JSON.
///
/// # Examples
///
/// ```
/// use timefuse::{Context, RequestId};
/// use timefuse_leak::timeline::Timeline;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = Context::background().with_request_id(RequestId::new("req-tl-doc").unwrap());
/// let h = ctx.spawn_named("slow-audit", std::future::pending::<()>());
/// let timeline = Timeline::capture(&ctx);
/// assert!(timeline.spans().iter().any(|s| s.name == "slow-audit"));
/// # h.abort();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Timeline {
    request_id: Option<String>,
    trace_id: Option<String>,
    spans: Vec<TimelineSpan>,
    taken: Instant,
    anchor: Instant,
    anchor_exact: bool,
    /// The W3C parent span id and flags of the request's trace context, when captured from one.
    pub(crate) trace_parent: Option<([u8; 8], u8)>,
}

/// Which requests' tasks and resources belong to a context.
fn request_key(ctx: &Context) -> (Option<String>, Option<String>) {
    (
        ctx.request_id().map(|r| r.as_str().to_owned()),
        ctx.trace().map(|t| t.trace_id_hex()),
    )
}

fn task_matches(t: &TaskInfo, request: Option<&str>, trace: Option<&str>) -> bool {
    match (request, trace) {
        (Some(r), _) => t.request_id().map(|id| id.as_str()) == Some(r),
        (None, Some(tr)) => t.trace_id().as_deref() == Some(tr),
        (None, None) => false,
    }
}

fn resource_matches(r: &ResourceInfo, request: Option<&str>, trace: Option<&str>) -> bool {
    match (request, trace) {
        (Some(q), _) => r.request_id().map(|id| id.as_str()) == Some(q),
        (None, Some(tr)) => r.trace_id().as_deref() == Some(tr),
        (None, None) => false,
    }
}

impl Timeline {
    /// An empty timeline for the request `request_id`.
    ///
    /// ```
    /// let timeline = timefuse_leak::timeline::Timeline::new(Some("req-1".into()), None);
    /// assert!(timeline.spans().is_empty());
    /// assert_eq!(timeline.request_id(), Some("req-1"));
    /// ```
    pub fn new(request_id: Option<String>, trace_id: Option<String>) -> Timeline {
        let now = Instant::now();
        Timeline {
            request_id,
            trace_id,
            spans: Vec::new(),
            taken: now,
            anchor: now,
            anchor_exact: false,
            trace_parent: None,
        }
    }

    /// The timeline of the request `ctx` belongs to: the request itself, its stages and
    /// downstream calls from the budget ledger, and its live tasks and held resources (those
    /// whose context carries the same request id, or, without one, the same trace id).
    ///
    /// The ledger counts from the request's start, which is exact when `ctx` carries a
    /// [`RequestStart`] or belongs to a request with a budget ledger
    /// ([`Context::request_start`]); otherwise it is estimated as the earliest of the request's
    /// live tasks and resources and the end of its last ledger entry (see [`anchor_is_exact`]).
    ///
    /// [`anchor_is_exact`]: Timeline::anchor_is_exact
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    /// use timefuse_leak::timeline::Timeline;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    /// drop(request.stage("validate").unwrap());
    /// let timeline = Timeline::capture(&request);
    /// assert!(timeline.anchor_is_exact(), "the ledger knows when the request started");
    /// assert_eq!(timeline.spans()[1].name, "validate");
    /// # }
    /// ```
    pub fn capture(ctx: &Context) -> Timeline {
        let start = ctx
            .value::<RequestStart>()
            .map(|s| s.0)
            .or_else(|| ctx.request_start());
        Self::capture_inner(ctx, start)
    }

    /// [`capture`](Timeline::capture) with the request's start given.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    /// use timefuse_leak::timeline::Timeline;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let started = tokio::time::Instant::now();
    /// let (request, _g) = Context::request(TimeoutPolicy::internal_grpc());
    /// let timeline = Timeline::capture_since(&request, started);
    /// assert!(timeline.anchor_is_exact());
    /// # }
    /// ```
    pub fn capture_since(ctx: &Context, request_start: Instant) -> Timeline {
        Self::capture_inner(ctx, Some(request_start))
    }

    fn capture_inner(ctx: &Context, start: Option<Instant>) -> Timeline {
        let now = Instant::now();
        let (request_id, trace_id) = request_key(ctx);
        let (rq, tr) = (request_id.as_deref(), trace_id.as_deref());
        let records = ctx.budget_records();
        let tasks = if rq.is_some() || tr.is_some() {
            task::snapshot_where(|t| task_matches(t, rq, tr))
        } else {
            Vec::new()
        };
        let resources = if rq.is_some() || tr.is_some() {
            resource::snapshot_where(|r| resource_matches(r, rq, tr))
        } else {
            Vec::new()
        };

        let anchor_exact = start.is_some();
        let anchor = start.unwrap_or_else(|| {
            let ledger_end = records
                .iter()
                .map(|r| r.started_at + r.used.unwrap_or_default())
                .max()
                .unwrap_or_default();
            let mut anchor = now.checked_sub(ledger_end).unwrap_or(now);
            for t in &tasks {
                anchor = anchor.min(t.started());
            }
            for r in &resources {
                anchor = anchor.min(r.acquired());
            }
            anchor
        });

        let mut spans = Vec::new();
        let label = match (rq, tr) {
            (Some(r), _) => format!("request {r}"),
            (None, Some(t)) => format!("trace {t}"),
            (None, None) => "request".to_owned(),
        };
        let mut request_span = TimelineSpan::new(label, SpanKind::Request, anchor);
        if let Some(cause) = ctx.cause() {
            // A deadline is the one end whose time is known.
            if cause.is_deadline_exceeded()
                && let Some(deadline) = ctx.deadline()
            {
                request_span = request_span.ended(deadline.min(now));
            }
            request_span = request_span.with_arg("cause", cause);
        }
        if let Some(r) = rq {
            request_span = request_span.with_arg("request_id", r);
        }
        if let Some(t) = tr {
            request_span = request_span.with_arg("trace_id", t);
        }
        if let Some(deadline) = ctx.deadline() {
            request_span = request_span.with_arg(
                "deadline",
                format!(
                    "{:?} after start",
                    deadline.saturating_duration_since(anchor)
                ),
            );
        }
        spans.push(request_span);

        for record in records {
            let kind = match record.kind {
                BudgetKind::Stage => SpanKind::Stage,
                BudgetKind::Downstream => SpanKind::Downstream,
            };
            let begin = anchor + record.started_at;
            let mut span = TimelineSpan::new(record.name.to_string(), kind, begin)
                .with_arg("granted", format!("{:?}", record.granted))
                .with_arg("outcome", format!("{:?}", record.outcome));
            if let Some(parent) = &record.parent {
                span = span.with_arg("stage", parent);
            }
            if let Some(remaining) = record.remaining {
                span = span.with_arg("remaining_at_start", format!("{remaining:?}"));
            }
            if record.outcome != BudgetOutcome::Running
                && let Some(used) = record.used
            {
                span = span.ended(begin + used);
            }
            spans.push(span);
        }

        for t in &tasks {
            let name = t
                .name()
                .map_or_else(|| format!("task #{}", t.id()), str::to_owned);
            let mut span = TimelineSpan::new(name, SpanKind::Task, t.started())
                .on_lane(format!("task #{}", t.id()))
                .with_arg("spawned_at", t.location())
                .with_arg("context_ended", t.context_ended());
            if let Some(cause) = t.cause() {
                span = span.with_arg("cause", cause);
            }
            if let Some(id) = t.tokio_id() {
                span = span.with_arg("tokio_id", id);
            }
            spans.push(span);
        }
        for r in &resources {
            let mut span = TimelineSpan::new(
                format!("{} ({})", r.kind(), r.service()),
                SpanKind::Resource,
                r.acquired(),
            )
            .on_lane(format!("resource #{}", r.id()))
            .with_arg("acquired_at", r.location())
            .with_arg("context_ended", r.context_ended());
            if let Some(t) = r.timeout() {
                span = span.with_arg("scope_timeout", format!("{t:?}"));
            }
            if let Some(overdue) = r.overdue() {
                span = span.with_arg("overdue", overdue);
            }
            spans.push(span);
        }

        Timeline {
            request_id,
            trace_id,
            spans,
            taken: now,
            anchor,
            anchor_exact,
            trace_parent: ctx.trace().map(|t| (t.parent_id(), t.flags())),
        }
    }

    /// The request id, if known.
    ///
    /// ```
    /// let t = timefuse_leak::timeline::Timeline::new(Some("r".into()), None);
    /// assert_eq!(t.request_id(), Some("r"));
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The trace id, if known.
    ///
    /// ```
    /// let t = timefuse_leak::timeline::Timeline::new(None, Some("ab".repeat(16)));
    /// assert_eq!(t.trace_id().map(str::len), Some(32));
    /// ```
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// The spans: the request, then the ledger's stages and calls in the order they were
    /// opened, then tasks and resources oldest first (then merged spans).
    ///
    /// ```
    /// let t = timefuse_leak::timeline::Timeline::new(None, None);
    /// assert!(t.spans().is_empty());
    /// ```
    pub fn spans(&self) -> &[TimelineSpan] {
        &self.spans
    }

    /// Adds a span.
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, Timeline, TimelineSpan};
    /// let mut t = Timeline::new(None, None);
    /// t.push(TimelineSpan::new("custom", SpanKind::Span, tokio::time::Instant::now()));
    /// assert_eq!(t.spans().len(), 1);
    /// ```
    pub fn push(&mut self, span: TimelineSpan) {
        if span.start < self.anchor {
            self.anchor = span.start;
        }
        self.spans.push(span);
    }

    /// Adds every span of `other` (a [`TimelineLayer`]'s spans for the same request, say).
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, Timeline, TimelineSpan};
    /// let mut a = Timeline::new(Some("r".into()), None);
    /// let mut b = Timeline::new(Some("r".into()), None);
    /// b.push(TimelineSpan::new("db", SpanKind::Span, tokio::time::Instant::now()));
    /// a.merge(b);
    /// assert_eq!(a.spans()[0].name, "db");
    /// ```
    pub fn merge(&mut self, other: Timeline) {
        for span in other.spans {
            self.push(span);
        }
        self.taken = self.taken.max(other.taken);
        if self.request_id.is_none() {
            self.request_id = other.request_id;
        }
        if self.trace_id.is_none() {
            self.trace_id = other.trace_id;
        }
        if self.trace_parent.is_none() {
            self.trace_parent = other.trace_parent;
        }
    }

    /// True if the request's start was known ([`RequestStart`] or
    /// [`capture_since`](Timeline::capture_since)), false if estimated.
    ///
    /// ```
    /// let t = timefuse_leak::timeline::Timeline::new(None, None);
    /// assert!(!t.anchor_is_exact());
    /// ```
    pub fn anchor_is_exact(&self) -> bool {
        self.anchor_exact
    }

    /// The Chrome trace (Trace Event Format) as a JSON value: `{"traceEvents": [...]}` with
    /// one complete (`"ph": "X"`) event per span, `ts` and `dur` in microseconds from the
    /// request's start, `pid` 1 and one `tid` per lane, plus metadata (`"ph": "M"`) events
    /// naming the process and the lanes. Spans still open end at the time the timeline was
    /// taken and carry `"open": "true"`.
    ///
    /// ```
    /// use timefuse_leak::timeline::{SpanKind, Timeline, TimelineSpan};
    /// use std::time::Duration;
    ///
    /// let mut t = Timeline::new(Some("r".into()), None);
    /// let t0 = tokio::time::Instant::now();
    /// t.push(TimelineSpan::new("db", SpanKind::Span, t0).ended(t0 + Duration::from_micros(1500)));
    /// let v = t.to_chrome_trace_value();
    /// let x = v["traceEvents"].as_array().unwrap().iter().find(|e| e["ph"] == "X").unwrap();
    /// assert_eq!(x["dur"], 1500.0);
    /// ```
    pub fn to_chrome_trace_value(&self) -> Value {
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let process = match (&self.request_id, &self.trace_id) {
            (Some(r), _) => format!("request {r}"),
            (None, Some(t)) => format!("trace {t}"),
            (None, None) => "timefuse request".to_owned(),
        };
        let mut events = vec![json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
            "args": {"name": process},
        })];
        // Lanes, in order of first use; spans that overlap without nesting get a lane of
        // their own ("risk-db (2)"), since a trace viewer draws one row per thread.
        struct Lane<'a> {
            base: &'a str,
            name: String,
            open: Vec<(Instant, Instant)>,
        }
        let mut lanes: Vec<Lane<'_>> = Vec::new();
        let mut order: Vec<usize> = (0..self.spans.len()).collect();
        let end_of = |s: &TimelineSpan| s.end.unwrap_or(self.taken).max(s.start);
        order.sort_by_key(|&i| {
            let s = &self.spans[i];
            (s.start, std::cmp::Reverse(end_of(s)))
        });
        let mut placed: Vec<(usize, usize)> = Vec::with_capacity(self.spans.len());
        for i in order {
            let span = &self.spans[i];
            let (start, end) = (span.start, end_of(span));
            let lane = lanes
                .iter()
                .position(|l| l.base == span.lane && fits(&l.open, start, end));
            let lane = lane.unwrap_or_else(|| {
                let copies = lanes.iter().filter(|l| l.base == span.lane).count();
                let name = if copies == 0 {
                    span.lane.clone()
                } else {
                    format!("{} ({})", span.lane, copies + 1)
                };
                lanes.push(Lane {
                    base: &span.lane,
                    name,
                    open: Vec::new(),
                });
                lanes.len() - 1
            });
            push_interval(&mut lanes[lane].open, start, end);
            placed.push((i, lane));
        }
        for (tid, lane) in lanes.iter().enumerate() {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid + 1,
                "args": {"name": lane.name},
            }));
            events.push(json!({
                "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid + 1,
                "args": {"sort_index": tid + 1},
            }));
        }
        for (i, lane) in placed {
            let span = &self.spans[i];
            let mut args: serde_json::Map<String, Value> = span
                .args
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            if span.end.is_none() {
                args.insert("open".into(), Value::String("true".into()));
            }
            events.push(json!({
                "name": span.name,
                "cat": span.kind.to_string(),
                "ph": "X",
                "ts": micros(span.start.saturating_duration_since(self.anchor)),
                "dur": micros(span.duration(self.taken)),
                "pid": 1,
                "tid": lane + 1,
                "args": args,
            }));
        }
        json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": {
                "request_id": self.request_id,
                "trace_id": self.trace_id,
                "start": if self.anchor_exact { "exact" } else { "estimated" },
                "generator": "timefuse-leak",
            },
        })
    }

    /// [`to_chrome_trace_value`](Timeline::to_chrome_trace_value) as a string: save it as
    /// `request.json` and open it in Perfetto (ui.perfetto.dev) or `chrome://tracing`.
    ///
    /// ```
    /// let t = timefuse_leak::timeline::Timeline::new(Some("r".into()), None);
    /// let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
    /// assert!(v["traceEvents"].is_array());
    /// ```
    pub fn to_chrome_trace(&self) -> String {
        serde_json::to_string(&self.to_chrome_trace_value()).unwrap_or_default()
    }
}

/// True if `[start, end]` can go on a lane whose open intervals are `stack` (outermost first):
/// after the last one ends, or nested inside the innermost one still open at `start`.
fn fits(stack: &[(Instant, Instant)], start: Instant, end: Instant) -> bool {
    match stack.iter().rev().find(|(_, e)| *e > start) {
        None => true,
        Some(&(s, e)) => start >= s && end <= e,
    }
}

fn push_interval(stack: &mut Vec<(Instant, Instant)>, start: Instant, end: Instant) {
    stack.retain(|(_, e)| *e > start);
    stack.push((start, end));
}

/// Per-span data the layer keeps in the span's extensions while it is open.
struct OpenSpan {
    name: String,
    target: String,
    start: Instant,
    request: Option<String>,
    trace: Option<String>,
    fields: BTreeMap<String, String>,
    thread: String,
}

#[derive(Default)]
struct FieldVisitor {
    fields: BTreeMap<String, String>,
}

impl tracing::field::Visit for FieldVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }
}

struct Store {
    by_key: HashMap<String, Vec<TimelineSpan>>,
    order: VecDeque<String>,
    max_requests: usize,
    max_spans: usize,
}

/// A [`tracing_subscriber::Layer`] that keeps the closed spans of the most recent requests,
/// keyed by request id (or trace id), to export one request as a [`Timeline`].
///
/// A span's request is the `request_id` field of the span or its nearest parent that has one;
/// failing that, the request id of the [current](Context::current) timefuse context when the
/// span was created; failing that, the same with `trace_id`. Spans of no request are not
/// kept. It keeps the last 1024 requests and 10 000 spans per request by default.
///
/// # Examples
///
/// ```
/// use timefuse::{Context, RequestId};
/// use timefuse_leak::timeline::TimelineLayer;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let layer = TimelineLayer::new();
/// let subscriber = tracing_subscriber::registry().with(layer.clone());
/// tracing::subscriber::with_default(subscriber, || {
///     let request = Context::background().with_request_id(RequestId::new("req-span").unwrap());
///     request.sync_scope(|| {
///         let _checkout = tracing::info_span!("checkout").entered();
///         let _charge = tracing::info_span!("charge", amount = 42).entered();
///     });
/// });
/// let timeline = layer.timeline("req-span").unwrap();
/// let names: Vec<&str> = timeline.spans().iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(names, ["charge", "checkout"], "in the order they closed");
/// assert_eq!(timeline.spans()[0].args["amount"], "42");
/// ```
#[derive(Clone)]
pub struct TimelineLayer {
    store: Arc<Mutex<Store>>,
}

impl Default for TimelineLayer {
    fn default() -> Self {
        TimelineLayer::with_limits(1024, 10_000)
    }
}

impl fmt::Debug for TimelineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.lock();
        f.debug_struct("TimelineLayer")
            .field("requests", &store.by_key.len())
            .field("max_requests", &store.max_requests)
            .field("max_spans", &store.max_spans)
            .finish()
    }
}

impl TimelineLayer {
    /// A layer keeping the last 1024 requests, up to 10 000 spans each. Clones share the
    /// store: keep one to read timelines from, give the other to the subscriber.
    ///
    /// ```
    /// let layer = timefuse_leak::timeline::TimelineLayer::new();
    /// assert!(layer.requests().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer keeping the last `max_requests` requests, up to `max_spans` spans each.
    ///
    /// ```
    /// let layer = timefuse_leak::timeline::TimelineLayer::with_limits(16, 100);
    /// # let _ = layer;
    /// ```
    pub fn with_limits(max_requests: usize, max_spans: usize) -> Self {
        TimelineLayer {
            store: Arc::new(Mutex::new(Store {
                by_key: HashMap::new(),
                order: VecDeque::new(),
                max_requests: max_requests.max(1),
                max_spans,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys (request or trace ids) with spans kept, oldest first.
    ///
    /// ```
    /// assert!(timefuse_leak::timeline::TimelineLayer::new().requests().is_empty());
    /// ```
    pub fn requests(&self) -> Vec<String> {
        self.lock().order.iter().cloned().collect()
    }

    /// The spans kept for the request or trace id `key`, as a timeline.
    ///
    /// ```
    /// assert!(timefuse_leak::timeline::TimelineLayer::new().timeline("none").is_none());
    /// ```
    pub fn timeline(&self, key: &str) -> Option<Timeline> {
        let spans = self.lock().by_key.get(key).cloned()?;
        let mut timeline = Timeline::new(Some(key.to_owned()), None);
        if let Some(trace) = spans.iter().find_map(|s| s.args.get("trace_id")) {
            timeline.trace_id = Some(trace.clone());
        }
        for span in spans {
            timeline.push(span);
        }
        Some(timeline)
    }

    /// The spans kept for the request of `ctx` (by request id, else trace id).
    ///
    /// ```
    /// let ctx = timefuse::Context::background();
    /// assert!(timefuse_leak::timeline::TimelineLayer::new().timeline_for(&ctx).is_none());
    /// ```
    pub fn timeline_for(&self, ctx: &Context) -> Option<Timeline> {
        let (request, trace) = request_key(ctx);
        request
            .and_then(|r| self.timeline(&r))
            .or_else(|| trace.and_then(|t| self.timeline(&t)))
    }

    /// Forgets the spans of `key`.
    ///
    /// ```
    /// timefuse_leak::timeline::TimelineLayer::new().forget("req-1");
    /// ```
    pub fn forget(&self, key: &str) {
        let mut store = self.lock();
        store.by_key.remove(key);
        store.order.retain(|k| k != key);
    }

    fn keep(&self, key: String, span: TimelineSpan) {
        let mut store = self.lock();
        let max_spans = store.max_spans;
        if let Some(spans) = store.by_key.get_mut(&key) {
            if spans.len() < max_spans {
                spans.push(span);
            }
            return;
        }
        while store.order.len() >= store.max_requests {
            if let Some(old) = store.order.pop_front() {
                store.by_key.remove(&old);
            }
        }
        store.order.push_back(key.clone());
        if max_spans > 0 {
            store.by_key.insert(key, vec![span]);
        } else {
            store.by_key.insert(key, Vec::new());
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for TimelineLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut visitor = FieldVisitor::default();
        attrs.record(&mut visitor);
        let mut request = visitor.fields.get("request_id").cloned();
        let mut trace = visitor.fields.get("trace_id").cloned();
        if (request.is_none() || trace.is_none())
            && let Some(parent) = span.parent()
            && let Some(open) = parent.extensions().get::<OpenSpan>()
        {
            request = request.or_else(|| open.request.clone());
            trace = trace.or_else(|| open.trace.clone());
        }
        if (request.is_none() || trace.is_none())
            && let Some(current) = Context::try_current()
        {
            let (r, t) = request_key(&current);
            request = request.or(r);
            trace = trace.or(t);
        }
        let thread = std::thread::current();
        let thread = thread
            .name()
            .map_or_else(|| format!("{:?}", thread.id()), str::to_owned);
        span.extensions_mut().insert(OpenSpan {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            start: Instant::now(),
            request,
            trace,
            fields: visitor.fields,
            thread,
        });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut visitor = FieldVisitor::default();
        values.record(&mut visitor);
        if let Some(open) = span.extensions_mut().get_mut::<OpenSpan>() {
            if let Some(r) = visitor.fields.get("request_id") {
                open.request = Some(r.clone());
            }
            if let Some(t) = visitor.fields.get("trace_id") {
                open.trace = Some(t.clone());
            }
            open.fields.extend(visitor.fields);
        }
    }

    fn on_close(&self, id: span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let Some(key) = open.request.clone().or_else(|| open.trace.clone()) else {
            return;
        };
        let mut timeline_span = TimelineSpan::new(open.name, SpanKind::Span, open.start)
            .ended(Instant::now())
            .on_lane(format!("spans: {}", open.target))
            .with_arg("target", &open.target)
            .with_arg("thread", &open.thread);
        for (k, v) in open.fields {
            timeline_span.args.insert(k, v);
        }
        if let Some(trace) = open.trace {
            timeline_span.args.insert("trace_id".into(), trace);
        }
        self.keep(key, timeline_span);
    }
}
