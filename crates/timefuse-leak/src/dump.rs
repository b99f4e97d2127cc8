//! The live dump: every live timefuse task and tracked resource in the process, oldest first,
//! with the ones alive after their context ended at the top and totals per spawn location. The
//! analog of Go's `/debug/pprof/goroutine?debug=2`, without stacks but with request identity.
//!
//! - [`text`] and [`json`] render it; [`Dump`] holds it for inspection.
//! - With the `axum` feature, [`router`] serves it: mount it at `/debug/tasks` and
//!   `GET /debug/tasks` answers text, `?format=json` JSON, `?request=<id>` one request's part.
//!
//! The dump shows request and trace ids and code locations; like pprof's, it is for operators:
//! do not expose it publicly.
//!
//! # Examples
//!
//! ```
//! use timefuse::{Context, RequestId};
//! use timefuse_leak::dump::{self, DumpOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (request, guard) = Context::background()
//!     .with_request_id(RequestId::new("req-dump-doc").unwrap())
//!     .with_cancel();
//! let mut scope = timefuse::task::TaskScope::new(&request);
//! scope.spawn("deaf-worker", std::future::pending::<()>()); // ignores its context
//! drop(guard); // the request ends; the worker does not
//!
//! let text = dump::render(&DumpOptions::new().request("req-dump-doc"));
//! assert!(text.contains("== alive after context ended (1) =="));
//! assert!(text.contains("\"deaf-worker\""));
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use timefuse::task::{self, TaskInfo, TaskKind};

use crate::resource::{self, Overdue, ResourceInfo};

/// Text (goroutine `debug=2` style) or JSON.
///
/// ```
/// use timefuse_leak::dump::DumpFormat;
/// assert_eq!("json".parse::<DumpFormat>(), Ok(DumpFormat::Json));
/// assert_eq!(DumpFormat::default(), DumpFormat::Text);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DumpFormat {
    /// One block per task and resource, for people.
    #[default]
    Text,
    /// One JSON document, for tools.
    Json,
}

impl std::str::FromStr for DumpFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "txt" | "" => Ok(DumpFormat::Text),
            "json" => Ok(DumpFormat::Json),
            other => Err(format!("unknown dump format {other:?}: use text or json")),
        }
    }
}

/// What to dump and how.
///
/// ```
/// use timefuse_leak::dump::{DumpFormat, DumpOptions};
/// let options = DumpOptions::new().format(DumpFormat::Json).request("req-1");
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    format: DumpFormat,
    request: Option<String>,
    runtime: Option<tokio::runtime::Id>,
}

impl DumpOptions {
    /// Everything, as text.
    ///
    /// ```
    /// let text = timefuse_leak::dump::render(&timefuse_leak::dump::DumpOptions::new());
    /// assert!(text.starts_with("timefuse dump:"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The output format.
    ///
    /// ```
    /// use timefuse_leak::dump::{self, DumpFormat, DumpOptions};
    /// let json = dump::render(&DumpOptions::new().format(DumpFormat::Json));
    /// assert!(json.starts_with('{'));
    /// ```
    pub fn format(mut self, format: DumpFormat) -> Self {
        self.format = format;
        self
    }

    /// Only the tasks and resources of the request with this id.
    ///
    /// ```
    /// use timefuse_leak::dump::{self, DumpOptions};
    /// let text = dump::render(&DumpOptions::new().request("no-such-request"));
    /// assert!(text.starts_with("timefuse dump: 0 live tasks, 0 held resources"));
    /// ```
    pub fn request(mut self, id: impl Into<String>) -> Self {
        self.request = Some(id.into());
        self
    }

    /// Only the tasks and resources of one tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use timefuse_leak::dump::{Dump, DumpOptions};
    /// let dump = Dump::collect(&DumpOptions::new().runtime(tokio::runtime::Handle::current().id()));
    /// assert!(dump.tasks().is_empty());
    /// # }
    /// ```
    pub fn runtime(mut self, runtime: tokio::runtime::Id) -> Self {
        self.runtime = Some(runtime);
        self
    }
}

/// A snapshot of the live tasks and tracked resources.
///
/// ```
/// use timefuse_leak::dump::{Dump, DumpOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let h = timefuse::Context::background().spawn_named("dumped", std::future::pending::<()>());
/// let dump = Dump::collect(&DumpOptions::new().runtime(tokio::runtime::Handle::current().id()));
/// assert_eq!(dump.tasks()[0].name(), Some("dumped"));
/// assert_eq!(dump.by_location()[0].tasks, 1);
/// # h.abort();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Dump {
    tasks: Vec<TaskInfo>,
    resources: Vec<ResourceInfo>,
    taken_at: SystemTime,
}

/// How many live tasks and held resources one code location accounts for.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use timefuse_leak::dump::{Dump, DumpOptions};
/// let h = timefuse::Context::background().spawn(std::future::pending::<()>());
/// let dump = Dump::collect(&DumpOptions::new().runtime(tokio::runtime::Handle::current().id()));
/// assert!(dump.by_location()[0].location.starts_with(file!()));
/// # h.abort();
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocationTotal {
    /// `file:line:column`.
    pub location: String,
    /// Live tasks spawned there.
    pub tasks: usize,
    /// Resources held that were acquired there.
    pub resources: usize,
}

impl Dump {
    /// Reads the task and resource registries (after a resource [`sweep`](resource::sweep)).
    ///
    /// ```
    /// let dump = timefuse_leak::dump::Dump::collect(&Default::default());
    /// assert!(dump.to_text().starts_with("timefuse dump:"));
    /// ```
    pub fn collect(options: &DumpOptions) -> Dump {
        let request = options.request.as_deref();
        let runtime = options.runtime;
        let tasks = task::snapshot_where(|t| {
            request.is_none_or(|r| t.request_id().map(|id| id.as_str()) == Some(r))
                && runtime.is_none_or(|rt| t.runtime() == Some(rt))
        });
        let resources = resource::snapshot_where(|r| {
            request.is_none_or(|q| r.request_id().map(|id| id.as_str()) == Some(q))
                && runtime.is_none_or(|rt| r.runtime() == Some(rt))
        });
        Dump {
            tasks,
            resources,
            taken_at: SystemTime::now(),
        }
    }

    /// The live tasks, oldest first.
    ///
    /// ```
    /// let dump = timefuse_leak::dump::Dump::collect(&Default::default());
    /// let _oldest = dump.tasks().first();
    /// ```
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// The held resources, oldest first.
    ///
    /// ```
    /// let r = timefuse_leak::ResourceScope::new("dump-doc").track("k", ());
    /// let dump = timefuse_leak::dump::Dump::collect(&Default::default());
    /// assert!(dump.resources().iter().any(|i| i.service() == "dump-doc"));
    /// # drop(r);
    /// ```
    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The tasks alive after their context ended, oldest first: the leak signal.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut scope = timefuse::task::TaskScope::new(&timefuse::Context::background());
    /// scope.spawn("deaf", std::future::pending::<()>());
    /// scope.cancel(timefuse::Cause::Shutdown);
    /// let dump = timefuse_leak::dump::Dump::collect(
    ///     &timefuse_leak::dump::DumpOptions::new().runtime(tokio::runtime::Handle::current().id()));
    /// assert_eq!(dump.tasks_after_context_ended()[0].name(), Some("deaf"));
    /// # }
    /// ```
    pub fn tasks_after_context_ended(&self) -> Vec<&TaskInfo> {
        self.tasks.iter().filter(|t| t.context_ended()).collect()
    }

    /// The resources held after their context ended, oldest first.
    ///
    /// ```
    /// let (ctx, guard) = timefuse::Context::background().with_cancel();
    /// let r = timefuse_leak::ResourceScope::new("dump-ended-doc").track_in(&ctx, "k", ());
    /// drop(guard);
    /// let dump = timefuse_leak::dump::Dump::collect(&Default::default());
    /// assert!(dump.resources_after_context_ended().iter().any(|i| i.service() == "dump-ended-doc"));
    /// # drop(r);
    /// ```
    pub fn resources_after_context_ended(&self) -> Vec<&ResourceInfo> {
        self.resources
            .iter()
            .filter(|r| r.context_ended())
            .collect()
    }

    /// Totals per code location, the largest first (then by location).
    ///
    /// ```
    /// let dump = timefuse_leak::dump::Dump::collect(&Default::default());
    /// let total: usize = dump.by_location().iter().map(|l| l.tasks).sum();
    /// assert_eq!(total, dump.tasks().len());
    /// ```
    pub fn by_location(&self) -> Vec<LocationTotal> {
        let mut totals: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for t in &self.tasks {
            totals.entry(t.location().to_string()).or_default().0 += 1;
        }
        for r in &self.resources {
            totals.entry(r.location().to_string()).or_default().1 += 1;
        }
        let mut totals: Vec<LocationTotal> = totals
            .into_iter()
            .map(|(location, (tasks, resources))| LocationTotal {
                location,
                tasks,
                resources,
            })
            .collect();
        totals.sort_by(|a, b| {
            (b.tasks + b.resources)
                .cmp(&(a.tasks + a.resources))
                .then_with(|| a.location.cmp(&b.location))
        });
        totals
    }

    /// The text form: a summary line, the "alive after context ended" section, every task and
    /// resource as a block, then totals per location.
    ///
    /// ```
    /// let text = timefuse_leak::dump::Dump::collect(&Default::default()).to_text();
    /// assert!(text.contains("== totals by location =="));
    /// ```
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> fmt::Result {
        let ended_tasks = self.tasks_after_context_ended();
        let ended_resources = self.resources_after_context_ended();
        writeln!(
            out,
            "timefuse dump: {} live {}, {} held {}; {} alive after their context ended",
            self.tasks.len(),
            if self.tasks.len() == 1 {
                "task"
            } else {
                "tasks"
            },
            self.resources.len(),
            if self.resources.len() == 1 {
                "resource"
            } else {
                "resources"
            },
            ended_tasks.len() + ended_resources.len()
        )?;
        writeln!(
            out,
            "taken at unix {}",
            unix_millis(self.taken_at) as f64 / 1e3
        )?;
        if !ended_tasks.is_empty() || !ended_resources.is_empty() {
            writeln!(
                out,
                "\n== alive after context ended ({}) ==",
                ended_tasks.len() + ended_resources.len()
            )?;
            for t in ended_tasks {
                writeln!(out)?;
                write_task(out, t)?;
            }
            for r in ended_resources {
                writeln!(out)?;
                write_resource(out, r)?;
            }
        }
        writeln!(out, "\n== tasks, oldest first ({}) ==", self.tasks.len())?;
        for t in &self.tasks {
            writeln!(out)?;
            write_task(out, t)?;
        }
        writeln!(
            out,
            "\n== resources, oldest first ({}) ==",
            self.resources.len()
        )?;
        for r in &self.resources {
            writeln!(out)?;
            write_resource(out, r)?;
        }
        writeln!(out, "\n== totals by location ==")?;
        writeln!(out, "{:>7} {:>9}  location", "tasks", "resources")?;
        for l in self.by_location() {
            writeln!(out, "{:>7} {:>9}  {}", l.tasks, l.resources, l.location)?;
        }
        Ok(())
    }

    /// The JSON form, as a value: `totals`, `alive_after_context_ended` (task and resource
    /// ids), `tasks`, `resources` and `by_location`.
    ///
    /// ```
    /// let value = timefuse_leak::dump::Dump::collect(&Default::default()).to_json_value();
    /// assert!(value["tasks"].is_array());
    /// assert!(value["totals"]["tasks"].is_u64());
    /// ```
    pub fn to_json_value(&self) -> Value {
        let tasks: Vec<Value> = self.tasks.iter().map(task_json).collect();
        let resources: Vec<Value> = self.resources.iter().map(resource_json).collect();
        let ended_tasks: Vec<u64> = self
            .tasks_after_context_ended()
            .iter()
            .map(|t| t.id())
            .collect();
        let ended_resources: Vec<u64> = self
            .resources_after_context_ended()
            .iter()
            .map(|r| r.id())
            .collect();
        let by_location: Vec<Value> = self
            .by_location()
            .into_iter()
            .map(|l| json!({"location": l.location, "tasks": l.tasks, "resources": l.resources}))
            .collect();
        json!({
            "taken_at_unix_ms": unix_millis(self.taken_at),
            "totals": {
                "tasks": self.tasks.len(),
                "resources": self.resources.len(),
                "alive_after_context_ended": ended_tasks.len() + ended_resources.len(),
            },
            "alive_after_context_ended": {
                "tasks": ended_tasks,
                "resources": ended_resources,
            },
            "tasks": tasks,
            "resources": resources,
            "by_location": by_location,
        })
    }

    /// The JSON form, pretty-printed.
    ///
    /// ```
    /// let json = timefuse_leak::dump::Dump::collect(&Default::default()).to_json();
    /// let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    /// assert!(value["resources"].is_array());
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_json_value()).unwrap_or_default()
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn duration_ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn kind_str(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Bound => "bound",
        _ => "cooperative",
    }
}

/// `task #17 "refresh" [bound, 1.2s, context ended: context deadline exceeded]:`
fn write_task(out: &mut String, t: &TaskInfo) -> fmt::Result {
    write!(out, "task #{}", t.id())?;
    if let Some(name) = t.name() {
        write!(out, " {name:?}")?;
    }
    write!(out, " [{}, {:?}, ", kind_str(t.kind()), t.age())?;
    match t.cause() {
        Some(cause) => writeln!(out, "context ended: {cause}]:")?,
        None => writeln!(out, "context live]:")?,
    }
    writeln!(out, "    spawned at {}", t.location())?;
    write!(
        out,
        "    request {}, trace {}",
        t.request_id().map_or("-", |r| r.as_str()),
        t.trace_id().as_deref().unwrap_or("-")
    )?;
    if let Some(rt) = t.runtime() {
        write!(out, ", runtime {rt}")?;
    }
    if let Some(id) = t.tokio_id() {
        write!(out, ", tokio task {id}")?;
    }
    writeln!(out)
}

/// `resource #4 "pg-connection" of billing [held 2.5s, context ended: context canceled]:`
fn write_resource(out: &mut String, r: &ResourceInfo) -> fmt::Result {
    write!(
        out,
        "resource #{} {:?} of {} [held {:?}, ",
        r.id(),
        r.kind(),
        r.service(),
        r.held_for()
    )?;
    match r.overdue() {
        Some(Overdue::ContextEnded(cause)) => write!(out, "context ended: {cause}")?,
        Some(Overdue::PastTimeout(t)) => write!(out, "context live, PAST ITS SCOPE TIMEOUT {t:?}")?,
        None => write!(out, "context live")?,
    }
    writeln!(out, "]:")?;
    writeln!(out, "    acquired at {}", r.location())?;
    write!(
        out,
        "    request {}, trace {}",
        r.request_id().map_or("-", |r| r.as_str()),
        r.trace_id().as_deref().unwrap_or("-")
    )?;
    if let Some(t) = r.timeout() {
        write!(out, ", scope timeout {t:?}")?;
    }
    if let Some(flag) = r.flagged() {
        write!(out, ", flagged: {flag}")?;
    }
    writeln!(out)
}

fn task_json(t: &TaskInfo) -> Value {
    json!({
        "id": t.id(),
        "tokio_id": t.tokio_id().map(|id| id.to_string()),
        "name": t.name(),
        "kind": kind_str(t.kind()),
        "location": t.location().to_string(),
        "file": t.location().file(),
        "line": t.location().line(),
        "runtime": t.runtime().map(|rt| rt.to_string()),
        "age_ms": duration_ms(t.age()),
        "started_at_unix_ms": unix_millis(t.started_at()),
        "request_id": t.request_id().map(|r| r.as_str()),
        "trace_id": t.trace_id(),
        "context_ended": t.context_ended(),
        "cause": t.cause().map(|c| c.to_string()),
    })
}

fn resource_json(r: &ResourceInfo) -> Value {
    let overdue = r.overdue();
    json!({
        "id": r.id(),
        "service": r.service(),
        "kind": r.kind(),
        "location": r.location().to_string(),
        "file": r.location().file(),
        "line": r.location().line(),
        "runtime": r.runtime().map(|rt| rt.to_string()),
        "held_ms": duration_ms(r.held_for()),
        "acquired_at_unix_ms": unix_millis(r.acquired_at()),
        "timeout_ms": r.timeout().map(duration_ms),
        "request_id": r.request_id().map(|id| id.as_str()),
        "trace_id": r.trace_id(),
        "context_ended": r.context_ended(),
        "cause": r.cause().map(|c| c.to_string()),
        "past_timeout": matches!(overdue, Some(Overdue::PastTimeout(_))),
        "flagged": r.flagged().map(ToString::to_string),
    })
}

/// The dump as `options` asks.
///
/// ```
/// use timefuse_leak::dump::{self, DumpFormat, DumpOptions};
/// let json = dump::render(&DumpOptions::new().format(DumpFormat::Json));
/// assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
/// ```
pub fn render(options: &DumpOptions) -> String {
    let dump = Dump::collect(options);
    match options.format {
        DumpFormat::Text => dump.to_text(),
        DumpFormat::Json => dump.to_json(),
    }
}

/// Everything, as text.
///
/// ```
/// assert!(timefuse_leak::dump::text().starts_with("timefuse dump:"));
/// ```
pub fn text() -> String {
    render(&DumpOptions::new())
}

/// Everything, as JSON.
///
/// ```
/// let v: serde_json::Value = serde_json::from_str(&timefuse_leak::dump::json()).unwrap();
/// assert!(v["by_location"].is_array());
/// ```
pub fn json() -> String {
    render(&DumpOptions::new().format(DumpFormat::Json))
}

#[cfg(feature = "axum")]
pub use self::http::{DumpQuery, handler, router};

#[cfg(feature = "axum")]
mod http {
    use axum::Router;
    use axum::extract::Query;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    use super::{DumpFormat, DumpOptions, render};

    /// The query string of the dump endpoint: `?format=json&request=<id>`.
    ///
    /// ```
    /// let q = timefuse_leak::dump::DumpQuery::default();
    /// assert!(q.format.is_none() && q.request.is_none());
    /// ```
    #[derive(Clone, Debug, Default, serde::Deserialize)]
    #[non_exhaustive]
    pub struct DumpQuery {
        /// `text` (the default) or `json`.
        pub format: Option<String>,
        /// Only this request's tasks and resources.
        pub request: Option<String>,
    }

    /// The dump endpoint as an axum handler, for routing it yourself:
    /// `.route("/debug/tasks", get(timefuse_leak::dump::handler))`.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// let app: Router = Router::new().route("/debug/tasks", get(timefuse_leak::dump::handler));
    /// # let _ = app;
    /// ```
    pub async fn handler(Query(query): Query<DumpQuery>) -> Response {
        let format = match query
            .format
            .as_deref()
            .unwrap_or("text")
            .parse::<DumpFormat>()
        {
            Ok(format) => format,
            Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
        };
        let mut options = DumpOptions::new().format(format);
        if let Some(request) = query.request {
            options = options.request(request);
        }
        let content_type = match format {
            DumpFormat::Text => "text/plain; charset=utf-8",
            DumpFormat::Json => "application/json",
        };
        let body = render(&options);
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    }

    /// A router serving the dump at its root, to nest where you want it:
    /// `app.nest("/debug/tasks", timefuse_leak::dump::router())`.
    ///
    /// ```
    /// use axum::Router;
    /// let app: Router = Router::new().nest("/debug/tasks", timefuse_leak::dump::router());
    /// # let _ = app;
    /// ```
    pub fn router<S>() -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new().route("/", get(handler))
    }
}
