//! Requests, stages and downstream calls: the budget arithmetic, [`BudgetScope`] and the ledger
//! of [`BudgetRecord`]s.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::policy::TimeoutPolicy;
use crate::{CancelGuard, Cause, Context};

/// The most records one request's ledger keeps; later stages and calls still run, unrecorded.
///
/// ```
/// assert_eq!(timefuse::budget::MAX_RECORDS, 1024);
/// ```
pub const MAX_RECORDS: usize = 1024;

/// Which layer a [`BudgetScope`] or a [`BudgetRecord`] belongs to.
///
/// ```
/// use timefuse::Context;
/// use timefuse::budget::BudgetKind;
///
/// let stage = Context::background().stage("risk").unwrap();
/// assert_eq!(stage.kind(), BudgetKind::Stage);
/// assert_eq!(BudgetKind::Downstream.to_string(), "downstream call");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetKind {
    /// A stage of the request ("validate → query → assemble → push"): capped by the stage cap.
    Stage,
    /// A call to another service: capped by the call cap, less the reserve, and refused below
    /// the floor.
    Downstream,
}

impl fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            BudgetKind::Stage => "stage",
            BudgetKind::Downstream => "downstream call",
        })
    }
}

/// How a stage or downstream call ended, as recorded in its [`BudgetRecord`].
///
/// ```
/// use timefuse::Context;
/// use timefuse::budget::{BudgetOutcome, TimeoutPolicy};
///
/// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
/// let record = request.stage("validate").unwrap().finish();
/// assert_eq!(record.outcome, BudgetOutcome::Finished);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetOutcome {
    /// Still open: its [`BudgetScope`] has not been dropped yet.
    Running,
    /// Finished (its scope dropped or [`finish`](BudgetScope::finish)ed) while its context was
    /// still live.
    Finished,
    /// Ran out of time: its context had ended with [`Cause::DeadlineExceeded`] when it finished.
    TimedOut,
    /// Its context had been cancelled for another reason (the request's caller went away, the
    /// service is shutting down, ...) when it finished.
    Canceled,
    /// Never started: [`Context::stage`] or [`Context::downstream`] returned
    /// [`BudgetExhausted`].
    Refused,
    /// Handed over with [`BudgetScope::into_parts`]: its end was not recorded.
    Detached,
}

/// One stage or downstream call of a request, as kept in the request's ledger and returned by
/// [`Context::budget_records`] and [`BudgetScope::finish`].
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::{BudgetKind, TimeoutPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
/// let stage = request.stage("charge").unwrap();
/// let call = stage.downstream("ledger").unwrap();
/// tokio::time::sleep(Duration::from_millis(40)).await;
/// drop(call);
/// drop(stage);
///
/// let records = request.budget_records();
/// let ledger = &records[1];
/// assert_eq!(ledger.kind, BudgetKind::Downstream);
/// assert_eq!(&*ledger.name, "ledger");
/// assert_eq!(ledger.parent.as_deref(), Some("charge"));
/// assert_eq!(ledger.granted, Duration::from_millis(650));
/// assert_eq!(ledger.used, Some(Duration::from_millis(40)));
/// assert!(!ledger.timed_out());
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetRecord {
    /// Stage or downstream call.
    pub kind: BudgetKind,
    /// The name it was opened with.
    pub name: Arc<str>,
    /// The innermost stage it was opened in, if any.
    pub parent: Option<Arc<str>>,
    /// The time it was given; zero when it was refused.
    pub granted: Duration,
    /// The time its parent context had left when it was asked for; `None` if that context had
    /// no deadline.
    pub remaining: Option<Duration>,
    /// When it was opened, measured from the start of the request.
    pub started_at: Duration,
    /// How long it was open; `None` while [`Running`](BudgetOutcome::Running) or once
    /// [`Detached`](BudgetOutcome::Detached), zero when [`Refused`](BudgetOutcome::Refused).
    pub used: Option<Duration>,
    /// How it ended.
    pub outcome: BudgetOutcome,
}

impl BudgetRecord {
    /// True if it ran out of time ([`BudgetOutcome::TimedOut`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    /// let call = request.downstream("slow").unwrap();
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// assert!(call.finish().timed_out());
    /// # }
    /// ```
    pub fn timed_out(&self) -> bool {
        self.outcome == BudgetOutcome::TimedOut
    }
}

/// A stage or downstream call was not started: the context had ended, or (for a downstream
/// call) the budget it would get is below the policy's floor.
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::{BudgetKind, TimeoutPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
/// tokio::time::advance(Duration::from_millis(620)).await; // 180 ms left
/// let err = request.downstream("ledger").unwrap_err();
/// assert_eq!(err.kind(), BudgetKind::Downstream);
/// assert_eq!(err.remaining(), Some(Duration::from_millis(180)));
/// assert_eq!(err.needed(), Duration::from_millis(200)); // reserve + floor
/// assert_eq!(
///     err.to_string(),
///     "downstream call `ledger` not started: 180ms left, its budget of 30ms is under the 50ms floor (it needs 200ms left)",
/// );
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetExhausted {
    kind: BudgetKind,
    name: Arc<str>,
    remaining: Option<Duration>,
    offered: Duration,
    floor: Duration,
    needed: Duration,
    cause: Option<Cause>,
}

impl BudgetExhausted {
    /// Stage or downstream call.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse::budget::BudgetKind;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// drop(guard);
    /// assert_eq!(ctx.stage("risk").unwrap_err().kind(), BudgetKind::Stage);
    /// ```
    pub fn kind(&self) -> BudgetKind {
        self.kind
    }

    /// The name of the stage or call.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// drop(guard);
    /// assert_eq!(ctx.downstream("ledger").unwrap_err().name(), "ledger");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time the context had left: `None` if it has no deadline, zero if it has passed.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// drop(guard);
    /// assert_eq!(ctx.stage("risk").unwrap_err().remaining(), None);
    /// ```
    pub fn remaining(&self) -> Option<Duration> {
        self.remaining
    }

    /// The least time the context must have left for the call to start: the policy's floor plus
    /// its reserve. Zero for a stage, which is refused only once its context has ended.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// drop(guard);
    /// assert_eq!(ctx.downstream("ledger").unwrap_err().needed(), Duration::from_millis(200));
    /// ```
    pub fn needed(&self) -> Duration {
        self.needed
    }

    /// The budget the call would have had: the cap, or the time left less the reserve if that
    /// is smaller. Below the floor, hence the refusal (zero once the context has ended).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let tiny = TimeoutPolicy::internal_grpc().with_downstream_cap("cache", Duration::from_millis(10));
    /// let ctx = Context::background().with_policy(tiny);
    /// let err = ctx.downstream("cache").unwrap_err(); // a cap under the floor: never worth it
    /// assert_eq!(err.offered(), Duration::from_millis(10));
    /// ```
    pub fn offered(&self) -> Duration {
        self.offered
    }

    /// Why the context had ended, if it had: then nothing was worth starting.
    ///
    /// ```
    /// use timefuse::{Cause, Context};
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// guard.cancel_with(Cause::ClientGone);
    /// assert_eq!(ctx.stage("risk").unwrap_err().cause(), Some(&Cause::ClientGone));
    /// ```
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` not started: ", self.kind, self.name)?;
        if let Some(cause) = &self.cause {
            return write!(f, "the context has ended ({cause})");
        }
        match self.remaining {
            Some(left) => write!(f, "{left:?} left, ")?,
            None => f.write_str("no deadline, ")?,
        }
        if self.kind == BudgetKind::Stage {
            // Only `stage_leaving` refuses a live context: nothing beyond what it keeps.
            return write!(
                f,
                "no more than the {:?} kept for what follows",
                self.needed
            );
        }
        write!(
            f,
            "its budget of {:?} is under the {:?} floor (it needs {:?} left)",
            self.offered, self.floor, self.needed
        )
    }
}

impl std::error::Error for BudgetExhausted {}

/// The records of one request, shared by every context derived from its root.
struct Ledger {
    start: Instant,
    records: Mutex<Vec<BudgetRecord>>,
}

impl Ledger {
    fn records(&self) -> std::sync::MutexGuard<'_, Vec<BudgetRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `record`; its index, or `None` once the ledger is full.
    fn push(&self, record: BudgetRecord) -> Option<usize> {
        let mut records = self.records();
        if records.len() >= MAX_RECORDS {
            return None;
        }
        records.push(record);
        Some(records.len() - 1)
    }
}

/// Context values; private types, so only this module reads or writes them.
struct LedgerValue(Arc<Ledger>);
struct StageMark(Option<Arc<str>>);

impl Context {
    /// The root of a request: a background context carrying `policy`, a fresh ledger for
    /// [`budget_records`](Context::budget_records), and a deadline `policy.global()` from now.
    ///
    /// To start a request below an existing context (a server's shutdown context, say) or from
    /// a budget that came with the request, use
    /// [`with_request_budget`](Context::with_request_budget).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    /// assert_eq!(request.remaining(), Some(Duration::from_millis(800)));
    /// # }
    /// ```
    pub fn request(policy: impl Into<Arc<TimeoutPolicy>>) -> (Context, CancelGuard) {
        Context::background().with_request_budget(policy, None)
    }

    /// A request root below this context: a child carrying `policy` and a fresh ledger, ending
    /// `min(incoming, policy.global())` from now. `incoming` is the budget the caller sent with
    /// the request (a gRPC `grpc-timeout`, say); `None` means the caller set none and the
    /// policy's global budget applies. The child still ends with this context.
    ///
    /// The child starts a new ledger and is outside any stage, even if this context belongs to
    /// another request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (server, _shutdown) = Context::background().with_cancel();
    /// let policy = std::sync::Arc::new(TimeoutPolicy::internal_grpc());
    ///
    /// let (tight, _g1) = server.with_request_budget(policy.clone(), Some(Duration::from_millis(250)));
    /// assert_eq!(tight.remaining(), Some(Duration::from_millis(250)));
    ///
    /// let (capped, _g2) = server.with_request_budget(policy, Some(Duration::from_secs(60)));
    /// assert_eq!(capped.remaining(), Some(Duration::from_millis(800)), "never more than global");
    /// # }
    /// ```
    pub fn with_request_budget(
        &self,
        policy: impl Into<Arc<TimeoutPolicy>>,
        incoming: Option<Duration>,
    ) -> (Context, CancelGuard) {
        let policy = policy.into();
        let budget = incoming.map_or(policy.global(), |incoming| incoming.min(policy.global()));
        let deadline = Instant::now().checked_add(budget);
        self.with_request_deadline(policy, deadline)
    }

    /// A request root below this context ending at `deadline` exactly (`None`: no deadline of
    /// its own), carrying `policy` and a fresh ledger. For servers that have already decided
    /// the request's deadline from what arrived (the timefuse-tower ingress layer does, from
    /// the arrival instant, so queueing time counts); the policy's global budget is not applied.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// let (request, _guard) =
    ///     Context::background().with_request_deadline(TimeoutPolicy::internal_grpc(), Some(deadline));
    /// assert_eq!(request.deadline(), Some(deadline), "5 s, though the policy's global is 800 ms");
    /// assert_eq!(request.downstream("ledger").unwrap().granted(), Duration::from_secs(2));
    /// # }
    /// ```
    pub fn with_request_deadline(
        &self,
        policy: impl Into<Arc<TimeoutPolicy>>,
        deadline: Option<Instant>,
    ) -> (Context, CancelGuard) {
        let ledger = Ledger {
            start: Instant::now(),
            records: Mutex::new(Vec::new()),
        };
        let ctx = self
            .with_policy(policy)
            .with_value(LedgerValue(Arc::new(ledger)))
            .with_value(StageMark(None));
        match deadline {
            Some(deadline) => ctx.with_deadline(deadline),
            None => ctx.with_cancel(),
        }
    }

    /// Opens the stage `name`: a child ending `min(stage cap, time left)` from now, so it never
    /// outlives this context. The cap is the policy's
    /// [`stage_cap(name)`](TimeoutPolicy::stage_cap); without a deadline here the stage gets
    /// the whole cap. Stages may nest.
    ///
    /// The returned scope derefs to the stage's context; dropping it (or
    /// [`finish`](BudgetScope::finish)) cancels that context and records the stage.
    ///
    /// # Errors
    ///
    /// [`BudgetExhausted`] if this context has already ended (cancelled, or no time left); the
    /// refusal is recorded.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy = TimeoutPolicy::http_edge().with_stage_cap("risk", Duration::from_secs(3));
    /// let (request, _guard) = Context::request(policy);
    /// let risk = request.stage("risk").unwrap();
    /// assert_eq!(risk.granted(), Duration::from_secs(3));
    /// assert_eq!(risk.remaining(), Some(Duration::from_secs(3)));
    ///
    /// tokio::time::advance(Duration::from_secs(28)).await; // 2 s left in the request
    /// let late = request.stage("notify").unwrap();
    /// assert_eq!(late.granted(), Duration::from_secs(2), "never more than the parent has");
    /// # }
    /// ```
    pub fn stage(&self, name: impl Into<Arc<str>>) -> Result<BudgetScope, BudgetExhausted> {
        self.open_stage(name.into(), Duration::ZERO)
    }

    /// Opens the stage `name` ending `keep` before this context does (and never later than
    /// the stage cap): for the first steps of a sequence, so that the steps after them still
    /// have `keep` when it ends. Without a deadline here the stage gets the whole cap and
    /// `keep` plays no part.
    ///
    /// A stage that must hand its result to later steps is useless past the point where those
    /// steps can no longer start; ending it there stops work (and held resources) that could
    /// only be thrown away, and makes the request's fallback come sooner.
    ///
    /// # Errors
    ///
    /// [`BudgetExhausted`] if this context has already ended or has no more than `keep` left
    /// (`needed` is `keep`); the refusal is recorded.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
    /// // Risk's answer is worth something only if the charge and its entry can still follow.
    /// let risk = request.stage_leaving("risk", Duration::from_millis(365)).unwrap();
    /// assert_eq!(risk.granted(), Duration::from_millis(435));
    /// drop(risk);
    ///
    /// tokio::time::advance(Duration::from_millis(500)).await; // 300 ms left
    /// let err = request.stage_leaving("risk", Duration::from_millis(365)).unwrap_err();
    /// assert_eq!(err.needed(), Duration::from_millis(365));
    /// # }
    /// ```
    pub fn stage_leaving(
        &self,
        name: impl Into<Arc<str>>,
        keep: Duration,
    ) -> Result<BudgetScope, BudgetExhausted> {
        self.open_stage(name.into(), keep)
    }

    fn open_stage(&self, name: Arc<str>, keep: Duration) -> Result<BudgetScope, BudgetExhausted> {
        let cap = self.policy().stage_cap(&name);
        let cause = self.cause();
        let now = Instant::now();
        let remaining = self.deadline().map(|d| d.saturating_duration_since(now));
        let cause = cause
            .or_else(|| (remaining == Some(Duration::ZERO)).then_some(Cause::DeadlineExceeded));
        let offered = match (&cause, remaining) {
            (Some(_), _) => Duration::ZERO,
            (None, None) => cap,
            (None, Some(left)) => cap.min(left.saturating_sub(keep)),
        };
        if cause.is_some() || offered.is_zero() {
            let err = BudgetExhausted {
                kind: BudgetKind::Stage,
                name,
                remaining,
                offered,
                floor: Duration::ZERO,
                needed: keep,
                cause,
            };
            return Err(self.refuse(err, now));
        }
        Ok(self.open(BudgetKind::Stage, name, offered, remaining, now))
    }

    /// Opens the downstream call `name`: a child ending
    /// `min(call cap, time left − reserve)` from now, or after the whole cap if this context has
    /// no deadline. The cap is the policy's
    /// [`downstream_cap(name)`](TimeoutPolicy::downstream_cap). The reserve keeps time back for
    /// the answer to travel home, so the call ends before its parent does.
    ///
    /// The returned scope derefs to the call's context: pass it (or its
    /// [`remaining`](Context::remaining)) to the client. Dropping the scope (or
    /// [`finish`](BudgetScope::finish)) cancels that context and records the call.
    ///
    /// # Errors
    ///
    /// [`BudgetExhausted`] without starting anything, and recorded as a refusal, if that budget
    /// is below the policy's [floor](TimeoutPolicy::floor) (a call that cannot finish is not
    /// worth starting: fail fast or degrade instead), or if this context has already ended.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
    /// let call = request.downstream("ledger").unwrap();
    /// assert_eq!(call.granted(), Duration::from_millis(650)); // 800 − 150 reserve
    /// drop(call);
    ///
    /// tokio::time::advance(Duration::from_millis(620)).await; // 180 ms left: 30 ms < 50 ms floor
    /// assert!(request.downstream("ledger").is_err());
    /// # }
    /// ```
    pub fn downstream(&self, name: impl Into<Arc<str>>) -> Result<BudgetScope, BudgetExhausted> {
        let name = name.into();
        let policy = self.policy();
        let (cap, reserve, floor) = (
            policy.downstream_cap(&name),
            policy.reserve(),
            policy.floor(),
        );
        let cause = self.cause();
        let now = Instant::now();
        let remaining = self.deadline().map(|d| d.saturating_duration_since(now));
        let cause = cause
            .or_else(|| (remaining == Some(Duration::ZERO)).then_some(Cause::DeadlineExceeded));
        let offered = match (&cause, remaining) {
            (Some(_), _) => Duration::ZERO,
            (None, None) => cap,
            (None, Some(left)) => cap.min(left.saturating_sub(reserve)),
        };
        if cause.is_some() || offered < floor {
            let needed = floor.saturating_add(reserve);
            let err = BudgetExhausted {
                kind: BudgetKind::Downstream,
                name,
                remaining,
                offered,
                floor,
                needed,
                cause,
            };
            return Err(self.refuse(err, now));
        }
        Ok(self.open(BudgetKind::Downstream, name, offered, remaining, now))
    }

    /// True if the request should take its fallback path now: this context has a deadline and
    /// less than the policy's [`degrade_below`](TimeoutPolicy::degrade_below) left. Always false
    /// without a deadline. It measures this context: asked on a stage, it answers for the
    /// stage's own (possibly capped) time left; ask the request's root for the request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // 800 ms
    /// tokio::time::advance(Duration::from_millis(500)).await; // 300 ms left
    /// assert!(!request.should_degrade());
    /// tokio::time::advance(Duration::from_millis(1)).await; // 299 ms left
    /// assert!(request.should_degrade(), "serve the cached answer instead");
    /// assert!(!Context::background().should_degrade());
    /// # }
    /// ```
    pub fn should_degrade(&self) -> bool {
        self.remaining()
            .is_some_and(|left| left < self.policy().degrade_below())
    }

    /// The records of the request this context belongs to (every stage and downstream call
    /// opened so far, refusals included), in the order they were opened. Empty outside a
    /// request made by [`Context::request`] or [`with_request_budget`](Context::with_request_budget).
    /// At most [`MAX_RECORDS`] are kept.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse::budget::{BudgetOutcome, TimeoutPolicy};
    ///
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    /// let stage = request.stage("risk").unwrap();
    /// assert_eq!(request.budget_records()[0].outcome, BudgetOutcome::Running);
    /// drop(stage);
    /// assert_eq!(request.budget_records()[0].outcome, BudgetOutcome::Finished);
    /// assert!(Context::background().budget_records().is_empty());
    /// ```
    pub fn budget_records(&self) -> Vec<BudgetRecord> {
        self.ledger()
            .map(|l| l.records().clone())
            .unwrap_or_default()
    }

    /// When the request this context belongs to started: the instant its ledger was opened by
    /// [`Context::request`], [`with_request_budget`](Context::with_request_budget) or
    /// [`with_request_deadline`](Context::with_request_deadline). `None` outside a request.
    /// [`BudgetRecord::started_at`] offsets count from here.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    ///
    /// let before = tokio::time::Instant::now();
    /// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    /// assert!(request.request_start().unwrap() >= before);
    /// assert_eq!(Context::background().request_start(), None);
    /// ```
    pub fn request_start(&self) -> Option<Instant> {
        self.ledger().map(|l| l.start)
    }

    fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.value::<LedgerValue>().map(|v| &v.0)
    }

    fn stage_name(&self) -> Option<Arc<str>> {
        self.value::<StageMark>().and_then(|m| m.0.clone())
    }

    fn refuse(&self, err: BudgetExhausted, now: Instant) -> BudgetExhausted {
        if let Some(ledger) = self.ledger() {
            ledger.push(BudgetRecord {
                kind: err.kind,
                name: err.name.clone(),
                parent: self.stage_name(),
                granted: Duration::ZERO,
                remaining: err.remaining,
                started_at: now.saturating_duration_since(ledger.start),
                used: Some(Duration::ZERO),
                outcome: BudgetOutcome::Refused,
            });
        }
        err
    }

    fn open(
        &self,
        kind: BudgetKind,
        name: Arc<str>,
        granted: Duration,
        remaining: Option<Duration>,
        now: Instant,
    ) -> BudgetScope {
        let (ctx, guard) = match now.checked_add(granted) {
            Some(deadline) => self.with_deadline(deadline),
            None => self.with_cancel(),
        };
        let ctx = match kind {
            BudgetKind::Stage => ctx.with_value(StageMark(Some(name.clone()))),
            BudgetKind::Downstream => ctx,
        };
        let ledger = self.ledger();
        let record = BudgetRecord {
            kind,
            name,
            parent: self.stage_name(),
            granted,
            remaining,
            started_at: ledger.map_or(Duration::ZERO, |l| now.saturating_duration_since(l.start)),
            used: None,
            outcome: BudgetOutcome::Running,
        };
        let slot = ledger.and_then(|l| Some((Arc::clone(l), l.push(record.clone())?)));
        BudgetScope {
            ctx,
            guard: Some(guard),
            record,
            start: now,
            slot,
            closed: false,
        }
    }
}

/// An open stage or downstream call, from [`Context::stage`] or [`Context::downstream`].
///
/// It owns the child [`Context`] (it derefs to it) and that context's [`CancelGuard`]. Dropping
/// the scope, or [`finish`](BudgetScope::finish), cancels the context, so nothing started under
/// it outlives it, and records how long it took and whether it ran out of time.
///
/// ```
/// use std::time::Duration;
/// use timefuse::{Cause, Context};
/// use timefuse::budget::TimeoutPolicy;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
/// let call = request.downstream("ledger").expect("800 ms is plenty");
/// let slow = tokio::time::sleep(Duration::from_secs(5));
/// assert_eq!(call.run(slow).await, Err(Cause::DeadlineExceeded)); // after 650 ms
/// assert!(!request.is_done(), "the request still has 150 ms to answer");
/// assert!(call.finish().timed_out());
/// # }
/// ```
#[must_use = "dropping the scope cancels its context at once"]
pub struct BudgetScope {
    ctx: Context,
    guard: Option<CancelGuard>,
    /// The record as opened; completed when the scope ends.
    record: BudgetRecord,
    start: Instant,
    /// The ledger and the record's index in it, if it is recorded.
    slot: Option<(Arc<Ledger>, usize)>,
    closed: bool,
}

impl BudgetScope {
    /// The stage's or call's context.
    ///
    /// ```
    /// let stage = timefuse::Context::background().stage("risk").unwrap();
    /// assert!(!stage.context().is_done());
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The time it was given: its context's deadline is this long after it was opened.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let call = timefuse::Context::background().downstream("ledger").unwrap();
    /// assert_eq!(call.granted(), Duration::from_secs(2), "the default call cap");
    /// ```
    pub fn granted(&self) -> Duration {
        self.record.granted
    }

    /// Stage or downstream call.
    ///
    /// ```
    /// use timefuse::budget::BudgetKind;
    ///
    /// let call = timefuse::Context::background().downstream("ledger").unwrap();
    /// assert_eq!(call.kind(), BudgetKind::Downstream);
    /// ```
    pub fn kind(&self) -> BudgetKind {
        self.record.kind
    }

    /// The name it was opened with.
    ///
    /// ```
    /// let stage = timefuse::Context::background().stage("risk").unwrap();
    /// assert_eq!(stage.name(), "risk");
    /// ```
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Ends the scope: cancels its context, records it, and returns the record (also when the
    /// request keeps no ledger). The same as dropping it, but with the record in hand.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse::budget::BudgetOutcome;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let stage = Context::background().stage("risk").unwrap();
    /// let ctx = stage.context().clone();
    /// tokio::time::sleep(Duration::from_millis(30)).await;
    /// let record = stage.finish();
    /// assert_eq!(record.used, Some(Duration::from_millis(30)));
    /// assert_eq!(record.outcome, BudgetOutcome::Finished);
    /// assert!(ctx.is_done(), "finishing cancels the stage's context");
    /// # }
    /// ```
    pub fn finish(mut self) -> BudgetRecord {
        self.close()
    }

    /// Takes the context and its guard out of the scope, which then records nothing more: its
    /// record stays [`Detached`](BudgetOutcome::Detached). For handing the guard to code that
    /// manages it itself; prefer keeping the scope.
    ///
    /// ```
    /// use timefuse::Context;
    ///
    /// let (ctx, guard) = Context::background().stage("risk").unwrap().into_parts();
    /// assert!(!ctx.is_done());
    /// drop(guard);
    /// assert!(ctx.is_done());
    /// ```
    pub fn into_parts(mut self) -> (Context, CancelGuard) {
        self.closed = true;
        self.update(BudgetOutcome::Detached, None);
        let guard = self
            .guard
            .take()
            .expect("the guard stays in the scope until it is closed");
        (self.ctx.clone(), guard)
    }

    fn close(&mut self) -> BudgetRecord {
        if !self.closed {
            self.closed = true;
            let outcome = match self.ctx.cause() {
                None => BudgetOutcome::Finished,
                Some(Cause::DeadlineExceeded) => BudgetOutcome::TimedOut,
                Some(_) => BudgetOutcome::Canceled,
            };
            drop(self.guard.take());
            self.update(
                outcome,
                Some(Instant::now().saturating_duration_since(self.start)),
            );
        }
        self.record.clone()
    }

    fn update(&mut self, outcome: BudgetOutcome, used: Option<Duration>) {
        self.record.outcome = outcome;
        self.record.used = used;
        if let Some((ledger, index)) = &self.slot
            && let Some(slot) = ledger.records().get_mut(*index)
        {
            slot.outcome = outcome;
            slot.used = used;
        }
    }
}

impl Deref for BudgetScope {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetScope")
            .field("kind", &self.record.kind)
            .field("name", &self.record.name)
            .field("granted", &self.record.granted)
            .field("context", &self.ctx)
            .finish_non_exhaustive()
    }
}
