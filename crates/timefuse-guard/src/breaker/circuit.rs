//! [`Breaker`]: the shared state machine, its permits and its metrics.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use timefuse::Context;

use super::config::{BreakerConfig, InvalidConfig};
use super::event::{BreakerEvent, TransitionReason};
use super::state::{CircuitState, MS_MASK, Probes, Word};
use super::sync::{AtomicU64, Padded};
use super::window::{CALL, Counts, FAILED, SLOW, Window};
use crate::outcome::call_budget;
use crate::{GuardError, Outcome};

/// No latency sample yet.
const NO_SAMPLE: u64 = u64::MAX;
/// The weight of a new sample in the expected latency.
const EWMA_ALPHA: f64 = 0.2;
/// `half_open_since`: the generation in the top 21 bits, the ms in the low 43.
const SINCE_SHIFT: u32 = 43;

type Hook = Arc<dyn Fn(&BreakerEvent) + Send + Sync>;

/// A circuit breaker with resilience4j's semantics and deadline-aware half-open probes, shared
/// by every clone of the services that use it (`Arc<Breaker>`).
///
/// - **Closed**: calls pass ([`try_acquire`](Breaker::try_acquire) is one atomic load) and
///   their outcomes fill the [sliding window](super::SlidingWindow). Once the window holds the
///   [minimum number of calls](BreakerConfig::minimum_calls), a failure rate or a slow-call
///   rate at or above its threshold opens the breaker.
/// - **Open**: calls are refused with [`GuardError::OpenCircuit`] (its `retry_after` says when
///   probes start) until the [wait](BreakerConfig::wait_in_open) is over; then the next call
///   (or [`state`](Breaker::state) read) moves it to half-open.
/// - **Half-open**: at most [`permitted_calls_in_half_open`](BreakerConfig::permitted_calls_in_half_open)
///   probes are admitted, each reserved by one compare-and-swap on the state word. When all of
///   them are recorded, their failure and slow-call rates close the breaker or open it again.
///   A probe whose permit is dropped unrecorded gives its place back.
/// - **Forced** states: [`force_open`](Breaker::force_open), [`disable`](Breaker::disable) (calls
///   pass, nothing is recorded), [`metrics_only`](Breaker::metrics_only) (recorded, never
///   opens), left by any `transition_to_*` or [`reset`](Breaker::reset).
///
/// # Deadline-aware probes
///
/// A probe is admitted only if the caller can afford it: its call budget under the downstream
/// rule of its context's policy — `min(downstream cap for the breaker's name, remaining −
/// reserve)` — must be at least
///
/// ```text
/// max(floor, min(slow-call duration threshold, expected latency))
/// ```
///
/// where the expected latency is the breaker's EWMA of recent successful, non-slow calls (zero
/// before the first one). A probe cut off by the caller's deadline would count as a failure and
/// re-open the circuit for a reason that says nothing about the callee; a caller with the
/// slow-call threshold in hand can always tell a healthy callee from a slow one, and one with
/// the expected latency in hand will usually see a healthy callee answer. Callers without a
/// deadline always qualify. A caller refused for this reason gets
/// [`GuardError::OpenCircuit`] (with no `retry_after`) and reserves nothing, so a caller with
/// time left can take the probe.
///
/// # What is recorded
///
/// [`Permit::record`] takes an [`Outcome`]: `Success`, `Failure` or `Slow` are recorded (a
/// call longer than the slow-call threshold is slow whatever the outcome says); refusals and
/// `Degraded` release the permit without recording — a refusal further down the stack says
/// nothing about the callee. A permit from before a transition (an older generation) records
/// nothing.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState, SlidingWindow};
/// use timefuse_guard::{GuardError, Outcome};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let breaker = Breaker::new(
///     BreakerConfig::new("ledger")
///         .sliding_window(SlidingWindow::CountBased(4))
///         .minimum_calls(4),
/// );
/// let ctx = Context::background();
/// for outcome in [Outcome::Success, Outcome::Failure, Outcome::Success, Outcome::Failure] {
///     let permit = breaker.try_acquire(&ctx).unwrap();
///     permit.record(outcome, Duration::from_millis(5));
/// }
/// assert_eq!(breaker.state(), CircuitState::Open); // 50 % of 4 calls failed
/// let err = breaker.try_acquire(&ctx).unwrap_err();
/// assert!(matches!(err, GuardError::OpenCircuit { .. }));
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
/// # }
/// ```
pub struct Breaker {
    state: Padded<AtomicU64>,
    window: Window,
    /// The expected latency: f64 nanoseconds, or `NO_SAMPLE`.
    ewma: AtomicU64,
    not_permitted: AtomicU64,
    half_open_since: AtomicU64,
    config: BreakerConfig,
    min_calls: u64,
    wait_ms: u64,
    max_half_open_ms: u64,
    base: Instant,
    events: broadcast::Sender<BreakerEvent>,
    hooks: RwLock<Vec<Hook>>,
}

/// How a permit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Closed or metrics-only: into the window.
    Window,
    /// Half-open: into the probe counters.
    Probe,
    /// Disabled: nowhere.
    Untracked,
}

/// A permit without its breaker: what the tower future keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawPermit {
    generation: u32,
    kind: Kind,
}

impl Breaker {
    /// A breaker with `config`, shared from the start.
    ///
    /// # Panics
    ///
    /// If `config` is invalid (see [`BreakerConfig::validate`]); use
    /// [`try_new`](Breaker::try_new) to get the error instead.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("ledger"));
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// ```
    pub fn new(config: BreakerConfig) -> Arc<Breaker> {
        match Breaker::try_new(config) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// A breaker with `config`, shared from the start.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] if a setting is out of range.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// assert!(Breaker::try_new(BreakerConfig::new("x").failure_rate_threshold(150.0)).is_err());
    /// ```
    pub fn try_new(config: BreakerConfig) -> Result<Arc<Breaker>, InvalidConfig> {
        config.validate()?;
        let base = Instant::now();
        let window = match config.window {
            super::SlidingWindow::CountBased(n) => Window::count(n),
            super::SlidingWindow::TimeBased(s) => Window::time(s, base),
        };
        let (events, _) = broadcast::channel(config.events_capacity);
        Ok(Arc::new(Breaker {
            state: Padded(AtomicU64::new(Word::new(CircuitState::Closed, 0).0)),
            window,
            ewma: AtomicU64::new(NO_SAMPLE),
            not_permitted: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            min_calls: u64::from(config.minimum_calls_effective()),
            wait_ms: duration_ms(config.wait_in_open),
            max_half_open_ms: duration_ms(config.max_wait_in_half_open),
            config,
            base,
            events,
            hooks: RwLock::new(Vec::new()),
        }))
    }

    /// The breaker's name.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// assert_eq!(Breaker::new(BreakerConfig::new("ledger")).name(), "ledger");
    /// ```
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The configuration.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// let breaker = Breaker::new(BreakerConfig::new("ledger").minimum_calls(7));
    /// assert_eq!(breaker.config().get_minimum_calls(), 7);
    /// ```
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to make one call on behalf of a caller on `ctx` (pass `Context::background()`
    /// without one). The permit must be [`record`](Permit::record)ed with the call's outcome
    /// and latency; dropping it unrecorded releases it (a half-open probe gives its place
    /// back).
    ///
    /// Closed, disabled and metrics-only breakers admit with one atomic load; an open breaker
    /// whose wait is over moves to half-open here.
    ///
    /// # Errors
    ///
    /// [`GuardError::OpenCircuit`] when the breaker is open (with `retry_after`, the time left
    /// of the wait), forced open, or half-open with every probe taken or with a caller that
    /// cannot afford a probe (see [Deadline-aware probes](Breaker#deadline-aware-probes)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("ledger"));
    /// let permit = breaker.try_acquire(&Context::background()).unwrap();
    /// permit.record(Outcome::Success, Duration::from_millis(3));
    /// assert_eq!(breaker.metrics().calls, 1);
    /// # }
    /// ```
    #[inline]
    pub fn try_acquire(&self, ctx: &Context) -> Result<Permit<'_>, GuardError> {
        self.acquire_raw(ctx).map(|raw| Permit {
            breaker: self,
            raw,
            armed: true,
        })
    }

    /// As [`try_acquire`](Breaker::try_acquire), for a permit that owns a handle on the
    /// breaker (to move into a `'static` future).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Breaker::try_acquire).
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("ledger"));
    /// let permit = breaker.try_acquire_owned(&Context::background()).unwrap();
    /// tokio::spawn(async move { permit.record(Outcome::Failure, Duration::from_millis(9)) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(breaker.metrics().failed_calls, 1);
    /// # }
    /// ```
    pub fn try_acquire_owned(self: &Arc<Self>, ctx: &Context) -> Result<OwnedPermit, GuardError> {
        self.acquire_raw(ctx).map(|raw| OwnedPermit {
            breaker: Arc::clone(self),
            raw,
            armed: true,
        })
    }

    /// As [`try_acquire_owned`](Breaker::try_acquire_owned), with the context looked up
    /// only if a half-open probe needs it.
    #[inline]
    pub(crate) fn acquire_owned_lazy(
        self: &Arc<Self>,
        ctx: impl FnOnce() -> Option<Context>,
    ) -> Result<OwnedPermit, GuardError> {
        self.acquire_lazy(ctx).map(|raw| OwnedPermit {
            breaker: Arc::clone(self),
            raw,
            armed: true,
        })
    }

    #[inline]
    pub(crate) fn acquire_raw(&self, ctx: &Context) -> Result<RawPermit, GuardError> {
        self.acquire_lazy(|| Some(ctx.clone()))
    }

    /// As [`acquire_raw`](Breaker::acquire_raw), asking for the caller's context only if a
    /// half-open probe needs it (`None`: no deadline).
    #[inline]
    pub(crate) fn acquire_lazy(
        &self,
        ctx: impl FnOnce() -> Option<Context>,
    ) -> Result<RawPermit, GuardError> {
        let w = Word(self.state.load(Acquire));
        match w.state() {
            CircuitState::Closed | CircuitState::MetricsOnly => Ok(RawPermit {
                generation: w.generation(),
                kind: Kind::Window,
            }),
            CircuitState::Disabled => Ok(RawPermit {
                generation: w.generation(),
                kind: Kind::Untracked,
            }),
            _ => self.acquire_slow(w, ctx),
        }
    }

    #[cold]
    fn acquire_slow(
        &self,
        mut w: Word,
        ctx: impl FnOnce() -> Option<Context>,
    ) -> Result<RawPermit, GuardError> {
        let mut ctx = Some(ctx);
        loop {
            match w.state() {
                CircuitState::Closed | CircuitState::MetricsOnly => {
                    return Ok(RawPermit {
                        generation: w.generation(),
                        kind: Kind::Window,
                    });
                }
                CircuitState::Disabled => {
                    return Ok(RawPermit {
                        generation: w.generation(),
                        kind: Kind::Untracked,
                    });
                }
                CircuitState::ForcedOpen => return Err(self.refuse(None)),
                CircuitState::Open => {
                    let now = self.now_ms();
                    let until = w.opened_at().saturating_add(self.wait_ms);
                    if now < until {
                        return Err(self.refuse(Some(Duration::from_millis(until - now))));
                    }
                    let to = w.next(CircuitState::HalfOpen);
                    self.transition(w, to, TransitionReason::WaitElapsed, None);
                }
                CircuitState::HalfOpen => {
                    if self.half_open_expired(w) {
                        let to = w.next(CircuitState::Open).with_opened_at(self.now_ms());
                        self.transition(w, to, TransitionReason::HalfOpenTimedOut, None);
                    } else {
                        if let Some(ctx) = ctx.take()
                            && !self.can_afford_probe(ctx().as_ref())
                        {
                            return Err(self.refuse(None));
                        }
                        let mut p = w.probes();
                        if p.reserved >= self.config.half_open_calls {
                            return Err(self.refuse(None));
                        }
                        p.reserved += 1;
                        let to = w.with_probes(p);
                        if self
                            .state
                            .compare_exchange(w.0, to.0, AcqRel, Acquire)
                            .is_ok()
                        {
                            return Ok(RawPermit {
                                generation: w.generation(),
                                kind: Kind::Probe,
                            });
                        }
                    }
                }
            }
            w = Word(self.state.load(Acquire));
        }
    }

    /// The probe rule: see [Deadline-aware probes](Breaker#deadline-aware-probes).
    fn can_afford_probe(&self, ctx: Option<&Context>) -> bool {
        match ctx.and_then(|ctx| call_budget(ctx, Some(&self.config.name)).map(|b| (ctx, b))) {
            None => true,
            Some((ctx, budget)) => budget >= self.probe_needs(ctx),
        }
    }

    /// What a probe needs: `max(floor, min(slow-call threshold, expected latency))`.
    fn probe_needs(&self, ctx: &Context) -> Duration {
        let expected = self.expected_latency().unwrap_or(Duration::ZERO);
        ctx.policy()
            .floor()
            .max(self.config.slow_threshold.min(expected))
    }

    fn half_open_expired(&self, w: Word) -> bool {
        if self.max_half_open_ms == 0 {
            return false;
        }
        let since = self.half_open_since.load(Acquire);
        if (since >> SINCE_SHIFT) as u32 != w.generation() {
            return false; // its writer has not stored it yet
        }
        let since_ms = since & ((1 << SINCE_SHIFT) - 1);
        self.now_ms() >= since_ms.saturating_add(self.max_half_open_ms)
    }

    fn refuse(&self, retry_after: Option<Duration>) -> GuardError {
        self.not_permitted.fetch_add(1, Relaxed);
        GuardError::OpenCircuit {
            name: Arc::clone(&self.config.name),
            retry_after,
        }
    }

    /// Records a call made under `raw`.
    #[inline]
    pub(crate) fn record_raw(
        &self,
        raw: RawPermit,
        outcome: Outcome,
        latency: Duration,
        now: impl FnOnce() -> Instant,
    ) {
        let mut code = match outcome {
            Outcome::Success => CALL,
            Outcome::Failure => CALL | FAILED,
            Outcome::Slow => CALL | SLOW,
            _ => return self.release_raw(raw),
        };
        if latency > self.config.slow_threshold {
            code |= SLOW;
        }
        match raw.kind {
            Kind::Untracked => {}
            Kind::Window => self.record_window(raw, code, latency, now),
            Kind::Probe => self.record_probe(raw, code, latency),
        }
    }

    #[inline]
    fn record_window(
        &self,
        raw: RawPermit,
        code: u8,
        latency: Duration,
        now: impl FnOnce() -> Instant,
    ) {
        let w = Word(self.state.load(Acquire));
        if w.generation() != raw.generation {
            return; // the breaker moved on since this call started
        }
        let counts = self.window.record(code, now);
        if code == CALL {
            self.sample(latency);
        }
        if w.state() == CircuitState::Closed
            && counts.calls >= self.min_calls
            && counts.consistent()
            && let Some(reason) = self.trips(&counts)
        {
            let to = w.next(CircuitState::Open).with_opened_at(self.now_ms());
            self.transition(w, to, reason, Some(counts));
        }
    }

    fn record_probe(&self, raw: RawPermit, code: u8, latency: Duration) {
        if code == CALL {
            self.sample(latency);
        }
        let mut w = Word(self.state.load(Acquire));
        loop {
            if w.state() != CircuitState::HalfOpen || w.generation() != raw.generation {
                return;
            }
            let mut p = w.probes();
            p.recorded += 1;
            p.failed += u32::from(code & FAILED != 0);
            p.slow += u32::from(code & SLOW != 0);
            if p.recorded >= self.config.half_open_calls {
                let counts = Counts {
                    calls: u64::from(p.recorded),
                    failures: u64::from(p.failed),
                    slow: u64::from(p.slow),
                };
                let (to, reason) = match self.trips(&counts) {
                    Some(reason) => (
                        w.next(CircuitState::Open).with_opened_at(self.now_ms()),
                        reason,
                    ),
                    None => {
                        // The window is idle while half-open: empty it before closing.
                        self.window.clear();
                        (
                            w.next(CircuitState::Closed),
                            TransitionReason::ProbesHealthy,
                        )
                    }
                };
                if self.transition(w, to, reason, Some(counts)) {
                    return;
                }
            } else if self
                .state
                .compare_exchange(w.0, w.with_probes(p).0, AcqRel, Acquire)
                .is_ok()
            {
                return;
            }
            w = Word(self.state.load(Acquire));
        }
    }

    /// Gives back a permit that recorded nothing: a half-open probe frees its place.
    pub(crate) fn release_raw(&self, raw: RawPermit) {
        if raw.kind != Kind::Probe {
            return;
        }
        let mut w = Word(self.state.load(Acquire));
        loop {
            if w.state() != CircuitState::HalfOpen || w.generation() != raw.generation {
                return;
            }
            let mut p = w.probes();
            p.reserved = p.reserved.saturating_sub(1).max(p.recorded);
            match self
                .state
                .compare_exchange(w.0, w.with_probes(p).0, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(actual) => w = Word(actual),
            }
        }
    }

    /// Whether `counts` (at least the minimum) open the breaker, and why.
    fn trips(&self, c: &Counts) -> Option<TransitionReason> {
        let calls = c.calls as f64;
        if c.failures as f64 * 100.0 >= self.config.failure_rate * calls {
            Some(TransitionReason::FailureRate)
        } else if c.slow as f64 * 100.0 >= self.config.slow_rate * calls {
            Some(TransitionReason::SlowCallRate)
        } else {
            None
        }
    }

    /// Updates the expected latency. Load-then-store: under contention a sample may be lost,
    /// which an average does not mind; it is never torn.
    #[inline]
    fn sample(&self, latency: Duration) {
        let x = latency.as_nanos() as f64;
        let old = self.ewma.load(Relaxed);
        let new = if old == NO_SAMPLE {
            x
        } else {
            let old = f64::from_bits(old);
            old + EWMA_ALPHA * (x - old)
        };
        self.ewma.store(new.to_bits(), Relaxed);
    }

    /// Moves from `from` to `to` if the state word is still `from`. Exactly one thread wins
    /// each transition; it alone reports it. Returns whether this thread won.
    fn transition(
        &self,
        from: Word,
        to: Word,
        reason: TransitionReason,
        counts: Option<Counts>,
    ) -> bool {
        if self
            .state
            .compare_exchange(from.0, to.0, AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        if to.state() == CircuitState::HalfOpen {
            let since = (u64::from(to.generation()) << SINCE_SHIFT)
                | (self.now_ms() & ((1 << SINCE_SHIFT) - 1));
            self.half_open_since.store(since, Release);
        }
        let rate = |n: u64| counts.map(|c| n as f64 * 100.0 / c.calls.max(1) as f64);
        let event = BreakerEvent {
            name: Arc::clone(&self.config.name),
            from: from.state(),
            to: to.state(),
            reason,
            at: Instant::now(),
            failure_rate: counts.and_then(|c| rate(c.failures)),
            slow_call_rate: counts.and_then(|c| rate(c.slow)),
        };
        tracing::info!(
            breaker = %event.name,
            from = %event.from,
            to = %event.to,
            reason = %event.reason,
            "circuit breaker state transition"
        );
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner());
        for hook in hooks.iter() {
            hook(&event);
        }
        drop(hooks);
        let _ = self.events.send(event); // no subscriber is fine
        true
    }

    /// A manual transition to `to`; `clear` empties the window (and the not-permitted count).
    fn manual(&self, to: CircuitState, clear: bool) -> bool {
        let mut w = Word(self.state.load(Acquire));
        loop {
            if w.state() == to && !clear {
                return false;
            }
            let mut next = w.next(to);
            if to == CircuitState::Open {
                next = next.with_opened_at(self.now_ms());
            }
            let into_window = matches!(to, CircuitState::Closed | CircuitState::MetricsOnly);
            let from_window = matches!(w.state(), CircuitState::Closed | CircuitState::MetricsOnly);
            if into_window && !from_window {
                self.window.clear(); // idle until the transition
            }
            if self.transition(w, next, TransitionReason::Manual, None) {
                if clear {
                    self.window.clear();
                    self.not_permitted.store(0, Relaxed);
                }
                return true;
            }
            w = Word(self.state.load(Acquire));
        }
    }

    /// Moves to closed with an empty window. Returns false if it was already closed.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.force_open();
    /// assert!(breaker.transition_to_closed());
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// ```
    pub fn transition_to_closed(&self) -> bool {
        self.manual(CircuitState::Closed, false)
    }

    /// Opens the breaker now; it moves to half-open after the wait as usual. Returns false if
    /// it was already open.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// assert!(breaker.transition_to_open());
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// ```
    pub fn transition_to_open(&self) -> bool {
        self.manual(CircuitState::Open, false)
    }

    /// Moves to half-open now, without waiting (resilience4j's
    /// `transitionToHalfOpenState`). Returns false if it was already half-open.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.transition_to_open();
    /// assert!(breaker.transition_to_half_open());
    /// assert_eq!(breaker.state(), CircuitState::HalfOpen);
    /// ```
    pub fn transition_to_half_open(&self) -> bool {
        self.manual(CircuitState::HalfOpen, false)
    }

    /// Refuses every call until another transition. Returns false if it was already forced
    /// open.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.force_open();
    /// assert!(breaker.try_acquire(&timefuse::Context::background()).is_err());
    /// ```
    pub fn force_open(&self) -> bool {
        self.manual(CircuitState::ForcedOpen, false)
    }

    /// Admits every call and records nothing until another transition. Returns false if it was
    /// already disabled.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.disable();
    /// assert_eq!(breaker.state(), CircuitState::Disabled);
    /// ```
    pub fn disable(&self) -> bool {
        self.manual(CircuitState::Disabled, false)
    }

    /// Admits every call and records it, but never opens, until another transition. Returns
    /// false if it already was in this state.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.metrics_only();
    /// assert_eq!(breaker.state(), CircuitState::MetricsOnly);
    /// ```
    pub fn metrics_only(&self) -> bool {
        self.manual(CircuitState::MetricsOnly, false)
    }

    /// Back to closed, forgetting every recorded call and the not-permitted count; permits
    /// taken before the reset record nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// let permit = breaker.try_acquire(&Context::background()).unwrap();
    /// breaker.reset();
    /// permit.record(Outcome::Failure, Duration::ZERO);
    /// assert_eq!(breaker.metrics().calls, 0);
    /// # }
    /// ```
    pub fn reset(&self) {
        self.manual(CircuitState::Closed, true);
    }

    /// The current state. An open breaker whose wait is over moves to half-open here.
    ///
    /// ```
    /// # use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// assert_eq!(Breaker::new(BreakerConfig::new("x")).state(), CircuitState::Closed);
    /// ```
    pub fn state(&self) -> CircuitState {
        let w = Word(self.state.load(Acquire));
        if w.state() == CircuitState::Open
            && self.now_ms() >= w.opened_at().saturating_add(self.wait_ms)
        {
            self.transition(
                w,
                w.next(CircuitState::HalfOpen),
                TransitionReason::WaitElapsed,
                None,
            );
            return Word(self.state.load(Acquire)).state();
        }
        w.state()
    }

    /// The expected latency of the callee: an EWMA (weight 0.2) of recent successful,
    /// non-slow calls; `None` before the first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// assert_eq!(breaker.expected_latency(), None);
    /// breaker.try_acquire(&Context::background()).unwrap().record(Outcome::Success, Duration::from_millis(40));
    /// assert_eq!(breaker.expected_latency(), Some(Duration::from_millis(40)));
    /// # }
    /// ```
    pub fn expected_latency(&self) -> Option<Duration> {
        match self.ewma.load(Relaxed) {
            NO_SAMPLE => None,
            bits => Some(Duration::from_nanos(f64::from_bits(bits) as u64)),
        }
    }

    /// A snapshot of the breaker's metrics (the window is read as of now).
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let m = Breaker::new(BreakerConfig::new("x")).metrics();
    /// assert_eq!(m.state, CircuitState::Closed);
    /// assert_eq!(m.failure_rate, None); // below the minimum number of calls
    /// ```
    pub fn metrics(&self) -> BreakerMetrics {
        let state = self.state();
        let w = Word(self.state.load(Acquire));
        let c = self.window.snapshot(Instant::now());
        let c = if c.consistent() { c } else { Counts::default() };
        let rated = c.calls >= self.min_calls && c.calls > 0;
        let rate = |n: u64| rated.then(|| n as f64 * 100.0 / c.calls as f64);
        let probes = (w.state() == CircuitState::HalfOpen).then(|| w.probes());
        BreakerMetrics {
            state,
            calls: c.calls,
            failed_calls: c.failures,
            slow_calls: c.slow,
            failure_rate: rate(c.failures),
            slow_call_rate: rate(c.slow),
            not_permitted: self.not_permitted.load(Relaxed),
            probes_reserved: probes.map_or(0, |p: Probes| p.reserved),
            probes_recorded: probes.map_or(0, |p| p.recorded),
            expected_latency: self.expected_latency(),
        }
    }

    /// A receiver of every state transition from now on.
    ///
    /// ```
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState};
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// let mut events = breaker.subscribe();
    /// breaker.disable();
    /// assert_eq!(events.try_recv().unwrap().to, CircuitState::Disabled);
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.events.subscribe()
    }

    /// Calls `hook` on every state transition from now on, synchronously, on the thread that
    /// performs it (keep it short; it must not call back into the breaker's transitions).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    ///
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&seen);
    /// breaker.on_transition(move |_event| {
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// });
    /// breaker.force_open();
    /// breaker.reset();
    /// assert_eq!(seen.load(Ordering::Relaxed), 2);
    /// ```
    pub fn on_transition<F>(&self, hook: F)
    where
        F: Fn(&BreakerEvent) + Send + Sync + 'static,
    {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(hook));
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        duration_ms(Instant::now().saturating_duration_since(self.base)) & MS_MASK
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.config.name)
            .field("state", &Word(self.state.load(Acquire)))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a breaker's metrics, from [`Breaker::metrics`].
///
/// ```
/// use timefuse_guard::breaker::{Breaker, BreakerConfig};
/// let m = Breaker::new(BreakerConfig::new("x")).metrics();
/// assert_eq!((m.calls, m.failed_calls, m.slow_calls, m.not_permitted), (0, 0, 0, 0));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state.
    pub state: CircuitState,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u64,
    /// Failed calls in percent of the window; `None` below the minimum number of calls.
    pub failure_rate: Option<f64>,
    /// Slow calls in percent of the window; `None` below the minimum number of calls.
    pub slow_call_rate: Option<f64>,
    /// Calls refused since the breaker was made (or reset).
    pub not_permitted: u64,
    /// Half-open probes reserved in the current half-open state (zero otherwise).
    pub probes_reserved: u32,
    /// Half-open probes recorded in the current half-open state (zero otherwise).
    pub probes_recorded: u32,
    /// The expected latency, see [`Breaker::expected_latency`].
    pub expected_latency: Option<Duration>,
}

/// Permission to make one call, from [`Breaker::try_acquire`]: record its outcome with
/// [`record`](Permit::record). Dropping it unrecorded releases it.
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse_guard::Outcome;
/// use timefuse_guard::breaker::{Breaker, BreakerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Breaker::new(BreakerConfig::new("x"));
/// let permit = breaker.try_acquire(&Context::background()).unwrap();
/// assert!(!permit.is_probe());
/// permit.record(Outcome::Slow, Duration::from_millis(900));
/// assert_eq!(breaker.metrics().slow_calls, 1);
/// # }
/// ```
#[must_use = "record the call's outcome, or drop the permit to release it"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    raw: RawPermit,
    armed: bool,
}

impl Permit<'_> {
    /// Records the call's outcome and latency: `Success`, `Failure` and `Slow` count in the
    /// window (or the half-open probes); a latency above the slow-call threshold makes the
    /// call slow; any other outcome releases the permit without recording.
    ///
    /// A time-based window reads the clock here.
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// let permit = breaker.try_acquire(&Context::background()).unwrap();
    /// permit.record(Outcome::BulkheadFull, Duration::ZERO); // a refusal below: not a call
    /// assert_eq!(breaker.metrics().calls, 0);
    /// # }
    /// ```
    #[inline]
    pub fn record(mut self, outcome: Outcome, latency: Duration) {
        self.armed = false;
        self.breaker
            .record_raw(self.raw, outcome, latency, Instant::now);
    }

    /// True for a half-open probe.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.transition_to_half_open();
    /// assert!(breaker.try_acquire(&Context::background()).unwrap().is_probe());
    /// # }
    /// ```
    pub fn is_probe(&self) -> bool {
        self.raw.kind == Kind::Probe
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.release_raw(self.raw);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name())
            .field("generation", &self.raw.generation)
            .field("kind", &self.raw.kind)
            .finish()
    }
}

/// A [`Permit`] that owns a handle on its breaker, from
/// [`Breaker::try_acquire_owned`].
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse_guard::Outcome;
/// use timefuse_guard::breaker::{Breaker, BreakerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Breaker::new(BreakerConfig::new("x"));
/// let permit = breaker.try_acquire_owned(&Context::background()).unwrap();
/// permit.record(Outcome::Success, Duration::from_millis(1));
/// # }
/// ```
#[must_use = "record the call's outcome, or drop the permit to release it"]
pub struct OwnedPermit {
    breaker: Arc<Breaker>,
    raw: RawPermit,
    armed: bool,
}

impl OwnedPermit {
    /// As [`Permit::record`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use timefuse::Context;
    /// use timefuse_guard::Outcome;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// breaker.try_acquire_owned(&Context::background()).unwrap().record(Outcome::Failure, Duration::ZERO);
    /// assert_eq!(breaker.metrics().failed_calls, 1);
    /// # }
    /// ```
    pub fn record(mut self, outcome: Outcome, latency: Duration) {
        self.armed = false;
        self.breaker
            .record_raw(self.raw, outcome, latency, Instant::now);
    }

    /// As [`record`](OwnedPermit::record), with the time the call ended (read by a time-based
    /// window), so a caller that has just read the clock need not read it again.
    pub(crate) fn record_at(mut self, outcome: Outcome, latency: Duration, now: Instant) {
        self.armed = false;
        self.breaker.record_raw(self.raw, outcome, latency, || now);
    }

    /// True for a half-open probe.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("x"));
    /// assert!(!breaker.try_acquire_owned(&Context::background()).unwrap().is_probe());
    /// # }
    /// ```
    pub fn is_probe(&self) -> bool {
        self.raw.kind == Kind::Probe
    }

    /// The breaker.
    ///
    /// ```
    /// use timefuse::Context;
    /// use timefuse_guard::breaker::{Breaker, BreakerConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::new("db"));
    /// let permit = breaker.try_acquire_owned(&Context::background()).unwrap();
    /// assert_eq!(permit.breaker().name(), "db");
    /// # }
    /// ```
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.release_raw(self.raw);
        }
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("breaker", &self.breaker.name())
            .field("generation", &self.raw.generation)
            .field("kind", &self.raw.kind)
            .finish()
    }
}
