//! OpenTelemetry export (feature `otel`), for services that send traces to a collector.
//!
//! - [`set_parent`] makes the W3C trace context a timefuse [`Context`] carries (from the
//!   `traceparent` header the ingress layer read) the OpenTelemetry parent of a `tracing` span,
//!   so that the spans `tracing-opentelemetry` exports join the caller's distributed trace.
//! - [`export_timeline`] sends a [`Timeline`] (the request, its stages and downstream calls,
//!   its live tasks and held resources) through an OpenTelemetry tracer, with their real start
//!   and end times, as children of the request's remote parent.
//!
//! The exporter, batching and collector address are the application's, configured with
//! `opentelemetry_sdk` and `opentelemetry-otlp` as usual; this module only uses the
//! `opentelemetry` API.
//!
//! # Examples
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use timefuse::{Context, RequestId, TraceContext};
//! use timefuse_leak::{otel, timeline::Timeline};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//!
//! let trace = TraceContext::new([0x4b; 16], [0x01; 8], 1); // from the caller's traceparent
//! let request = Context::background()
//!     .with_request_id(RequestId::new("req-otel").unwrap())
//!     .with_trace(trace);
//! let h = request.spawn_named("stuck-audit", std::future::pending::<()>());
//!
//! otel::export_timeline(&Timeline::capture(&request), &provider.tracer("timefuse"));
//! let spans = exporter.get_finished_spans().unwrap();
//! assert_eq!(spans.len(), 2, "the request and its task");
//! assert!(spans.iter().all(|s| s.span_context.trace_id().to_bytes() == [0x4b; 16]));
//! # h.abort();
//! # }
//! ```

use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind as OtelSpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer,
};
use opentelemetry::{Context as OtelContext, KeyValue};
use timefuse::{Context, TraceContext};
use tokio::time::Instant;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::timeline::{SpanKind, Timeline};

/// The OpenTelemetry span context of a W3C trace context, marked remote.
///
/// ```
/// use timefuse::TraceContext;
/// let sc = timefuse_leak::otel::span_context(&TraceContext::new([1; 16], [2; 8], 1));
/// assert!(sc.is_remote() && sc.is_sampled());
/// assert_eq!(sc.span_id().to_bytes(), [2; 8]);
/// ```
pub fn span_context(trace: &TraceContext) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(trace.trace_id()),
        SpanId::from_bytes(trace.parent_id()),
        TraceFlags::new(trace.flags()),
        true,
        TraceState::default(),
    )
}

/// An OpenTelemetry context whose parent is the trace context `ctx` carries, if any.
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
/// use timefuse::{Context, TraceContext};
///
/// let ctx = Context::background().with_trace(TraceContext::new([7; 16], [8; 8], 1));
/// let otel_cx = timefuse_leak::otel::parent_context(&ctx);
/// assert_eq!(otel_cx.span().span_context().trace_id().to_bytes(), [7; 16]);
/// ```
pub fn parent_context(ctx: &Context) -> OtelContext {
    match ctx.trace() {
        Some(trace) => OtelContext::new().with_remote_span_context(span_context(trace)),
        None => OtelContext::new(),
    }
}

/// Makes the trace context of `ctx` the OpenTelemetry parent of `span`. Call it before the
/// span is first entered (tracing-opentelemetry refuses afterwards). Returns false if `ctx`
/// carries no trace context or the parent could not be set.
///
/// ```
/// use timefuse::{Context, TraceContext};
///
/// let ctx = Context::background().with_trace(TraceContext::new([7; 16], [8; 8], 1));
/// let span = tracing::info_span!("handler");
/// // Without an OpenTelemetry layer in the subscriber there is nothing to attach to.
/// assert!(!timefuse_leak::otel::set_parent(&span, &ctx));
/// ```
pub fn set_parent(span: &tracing::Span, ctx: &Context) -> bool {
    ctx.trace().is_some() && span.set_parent(parent_context(ctx)).is_ok()
}

fn system_time(at: Instant, now: Instant, wall_now: SystemTime) -> SystemTime {
    if at <= now {
        wall_now
            .checked_sub(now.saturating_duration_since(at))
            .unwrap_or(wall_now)
    } else {
        wall_now
            .checked_add(at.saturating_duration_since(now))
            .unwrap_or(wall_now)
    }
}

/// Sends every span of `timeline` through `tracer`: the request span first, as a child of the
/// request's remote parent (the caller's span from the captured trace context, so the spans
/// join the caller's trace), then the others as its children, each with its start and end
/// time (spans still open end now, with an `open` attribute; tasks and resources alive after
/// their context ended get an error status). Attributes are the spans' details plus
/// `timefuse.kind` and `request_id`. Without a trace id, the request span starts a new trace.
///
/// ```
/// use opentelemetry::trace::TracerProvider as _;
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use timefuse_leak::timeline::{SpanKind, Timeline, TimelineSpan};
///
/// let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
/// let mut timeline = Timeline::new(Some("req-1".into()), None);
/// timeline.push(TimelineSpan::new("db", SpanKind::Span, tokio::time::Instant::now()));
/// timefuse_leak::otel::export_timeline(&timeline, &provider.tracer("t"));
/// assert_eq!(exporter.get_finished_spans().unwrap()[0].name, "db");
/// ```
pub fn export_timeline<T>(timeline: &Timeline, tracer: &T)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let now = Instant::now();
    let wall_now = SystemTime::now();
    // The request's remote parent: the caller's span when the timeline was captured from a
    // context with a trace context; with only a trace id (a layer's timeline), a stand-in
    // parent id made from it, since OpenTelemetry keeps a trace id only through a parent.
    let parent = match timeline
        .trace_id()
        .and_then(|t| u128::from_str_radix(t, 16).ok())
    {
        Some(trace_id) => {
            let (span_id, flags) = timeline.trace_parent.unwrap_or_else(|| {
                let low = (trace_id as u64).max(1);
                (low.to_be_bytes(), 1)
            });
            let remote = SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from_bytes(span_id),
                TraceFlags::new(flags),
                true,
                TraceState::default(),
            );
            OtelContext::new().with_remote_span_context(remote)
        }
        None => OtelContext::new(),
    };
    let attributes = |span: &crate::timeline::TimelineSpan| {
        let mut attrs: Vec<KeyValue> = span
            .args
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        attrs.push(KeyValue::new("timefuse.kind", span.kind.to_string()));
        if span.end.is_none() {
            attrs.push(KeyValue::new("open", true));
        }
        if let Some(id) = timeline.request_id() {
            attrs.push(KeyValue::new("request_id", id.to_owned()));
        }
        attrs
    };
    let start = |span: &crate::timeline::TimelineSpan| {
        let start = system_time(span.start, now, wall_now);
        let end = system_time(span.end.unwrap_or(now), now, wall_now).max(start);
        (start, end)
    };

    let spans = timeline.spans();
    let root = spans.iter().position(|s| s.kind == SpanKind::Request);
    let (root_cx, root_end) = match root {
        Some(i) => {
            let span = &spans[i];
            let (begin, end) = start(span);
            let otel = tracer
                .span_builder(span.name.clone())
                .with_kind(OtelSpanKind::Server)
                .with_start_time(begin)
                .with_attributes(attributes(span))
                .start_with_context(tracer, &parent);
            (parent.with_span(otel), Some(end))
        }
        None => (parent, None),
    };
    for (i, span) in spans.iter().enumerate() {
        if Some(i) == root {
            continue;
        }
        let (begin, end) = start(span);
        let kind = match span.kind {
            SpanKind::Downstream => OtelSpanKind::Client,
            _ => OtelSpanKind::Internal,
        };
        let mut otel = tracer
            .span_builder(span.name.clone())
            .with_kind(kind)
            .with_start_time(begin)
            .with_attributes(attributes(span))
            .start_with_context(tracer, &root_cx);
        if span.args.get("context_ended").is_some_and(|v| v == "true") {
            otel.set_status(Status::error("alive after its context ended"));
        }
        otel.end_with_timestamp(end);
    }
    if let Some(end) = root_end {
        root_cx.span().end_with_timestamp(end);
    }
}
