//! The call log: what each handler saw of its [`Context`] and how that context ended.
//!
//! Tests hold a [`CallLog`] and wait on it; the `interop-server` binary prints each finished
//! record as one JSON line on stdout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timefuse::{Cause, Context};
use timefuse_tower::WireBudget;
use tokio::sync::watch;
use tokio::time::Instant;

/// What one call's handler saw, and how its request [`Context`] ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Order of arrival at the handlers, from 0.
    pub seq: u64,
    /// The method, as in `UnaryCall`.
    pub method: String,
    /// The request id of the call's context (`x-request-id` as sent, or generated).
    pub request_id: Option<String>,
    /// The W3C trace id of the call's context, in hex.
    pub trace_id: Option<String>,
    /// Whether the handler found a [`Context`] in the request's extensions (put there by
    /// `IngressLayer`).
    pub has_context: bool,
    /// Time left before the context's deadline when the handler started, in ms.
    pub remaining_ms: Option<f64>,
    /// The budget the ingress granted the request (after precedence, clamping and fallback), in
    /// ms.
    pub granted_ms: Option<f64>,
    /// How the handler's work ended: `ok`, `error: <status code>`, `interrupted: <cause>` when
    /// the context ended first, or `dropped` when the server dropped the handler before it
    /// finished (the client reset the stream). `None` while it runs.
    pub outcome: Option<String>,
    /// Why the context ended (see [`cause_name`]); `None` while it is live.
    pub cause: Option<String>,
    /// Time from the handler's start to the context's end, in ms.
    pub ended_after_ms: Option<f64>,
}

impl CallRecord {
    /// True once both the handler's work and its context have ended.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some() && self.cause.is_some()
    }
}

/// A short, stable name for a cause: `canceled` (the request completed normally and the
/// ingress released its context), `deadline_exceeded`, `client_gone`, `shutdown` or `other`.
pub fn cause_name(cause: &Cause) -> &'static str {
    match cause {
        Cause::Canceled => "canceled",
        Cause::DeadlineExceeded => "deadline_exceeded",
        Cause::ClientGone => "client_gone",
        Cause::Shutdown => "shutdown",
        _ => "other",
    }
}

/// The shared, test-visible log of every call the interop service handled.
#[derive(Debug, Clone)]
pub struct CallLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    records: Mutex<Vec<CallRecord>>,
    version: watch::Sender<u64>,
    print: bool,
}

impl Default for CallLog {
    fn default() -> Self {
        CallLog::new()
    }
}

impl CallLog {
    /// An empty log.
    pub fn new() -> Self {
        CallLog::with_print(false)
    }

    /// An empty log that also prints each finished record as a JSON line on stdout.
    pub fn printing() -> Self {
        CallLog::with_print(true)
    }

    fn with_print(print: bool) -> Self {
        CallLog {
            inner: Arc::new(Inner {
                records: Mutex::new(Vec::new()),
                version: watch::Sender::new(0),
                print,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<CallRecord>> {
        // A panicking test thread must not hide the records from the others.
        self.inner
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of every record so far, in arrival order.
    pub fn records(&self) -> Vec<CallRecord> {
        self.lock().clone()
    }

    /// The first record whose request id is `id`.
    pub fn by_request_id(&self, id: &str) -> Option<CallRecord> {
        self.lock()
            .iter()
            .find(|r| r.request_id.as_deref() == Some(id))
            .cloned()
    }

    /// Waits at most `timeout` for a record that satisfies `pred`, and returns it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&CallRecord) -> bool,
    ) -> Option<CallRecord> {
        let until = Instant::now() + timeout;
        let mut changed = self.inner.version.subscribe();
        loop {
            if let Some(r) = self.lock().iter().find(|r| pred(r)).cloned() {
                return Some(r);
            }
            match tokio::time::timeout_at(until, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Waits at most `timeout` for the call with request id `id` to have started.
    pub async fn wait_started(&self, id: &str, timeout: Duration) -> Option<CallRecord> {
        self.wait_for(timeout, |r| r.request_id.as_deref() == Some(id))
            .await
    }

    /// Waits at most `timeout` for the call with request id `id` to have finished: its work
    /// and its context both ended.
    pub async fn wait_finished(&self, id: &str, timeout: Duration) -> Option<CallRecord> {
        self.wait_for(timeout, |r| {
            r.request_id.as_deref() == Some(id) && r.is_finished()
        })
        .await
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut CallRecord)) {
        let finished = {
            let mut records = self.lock();
            let record = &mut records[index];
            let was = record.is_finished();
            f(record);
            (!was && record.is_finished()).then(|| record.clone())
        };
        if let (true, Some(record)) = (self.inner.print, finished)
            && let Ok(line) = serde_json::to_string(&record)
        {
            println!("{line}");
        }
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// Records the start of a call and returns its handle. The context is the one the ingress
    /// put in the request's extensions, else the task-local current one. A task watches the
    /// context and records its cause when it ends.
    pub(crate) fn begin<T>(&self, method: &str, req: &tonic::Request<T>) -> Call {
        let start = Instant::now();
        let found = req.extensions().get::<Context>().cloned();
        let has_context = found.is_some();
        let ctx = found.unwrap_or_else(Context::current);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let index = {
            let mut records = self.lock();
            let seq = records.len() as u64;
            records.push(CallRecord {
                seq,
                method: method.to_owned(),
                request_id: ctx.request_id().map(|id| id.as_str().to_owned()),
                trace_id: ctx.trace().map(|t| t.trace_id_hex()),
                has_context,
                remaining_ms: ctx.remaining().map(ms),
                granted_ms: ctx.value::<WireBudget>().map(|w| ms(w.granted)),
                outcome: None,
                cause: None,
                ended_after_ms: None,
            });
            records.len() - 1
        };
        self.inner.version.send_modify(|v| *v += 1);
        if ctx.deadline().is_some() || has_context {
            let log = self.clone();
            let done = ctx.done();
            tokio::spawn(async move {
                let cause = done.await;
                log.update(index, |r| {
                    r.cause = Some(cause_name(&cause).to_owned());
                    r.ended_after_ms = Some(ms(start.elapsed()));
                });
            });
        } else {
            self.update(index, |r| r.cause = Some("no_context".to_owned()));
        }
        Call {
            ctx,
            log: self.clone(),
            index,
            finished: AtomicBool::new(false),
        }
    }
}

/// One call in progress: its context, and where to write its outcome. Dropped before an
/// outcome is recorded (the server dropped the handler, as when the client resets the
/// stream), it records `dropped`.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) ctx: Context,
    log: CallLog,
    index: usize,
    finished: AtomicBool,
}

impl Call {
    /// Records how the handler's work ended.
    pub(crate) fn finish(&self, outcome: impl Into<String>) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let outcome = outcome.into();
        self.log.update(self.index, |r| r.outcome = Some(outcome));
    }

    /// Records that the context ended before the work did, and returns the status to answer.
    pub(crate) fn interrupted(&self, cause: &Cause) -> tonic::Status {
        self.finish(format!("interrupted: {}", cause_name(cause)));
        status_for(cause)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish("dropped");
    }
}

/// The gRPC status for work cut short by `cause`, with the code `timefuse_tower` maps it to.
pub(crate) fn status_for(cause: &Cause) -> tonic::Status {
    let code = tonic::Code::from(i32::from(timefuse_tower::grpc_code_for(cause)));
    tonic::Status::new(code, cause.to_string())
}
