//! [`BreakerEvent`]: the breaker's state transitions, broadcast to subscribers and hooks.

use std::sync::Arc;

use tokio::time::Instant;

use super::CircuitState;

/// Why the breaker changed state.
///
/// ```
/// use timefuse_guard::breaker::TransitionReason;
/// assert_eq!(TransitionReason::FailureRate.as_str(), "failure_rate");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate reached its threshold (closed → open, or half-open → open).
    FailureRate,
    /// The slow-call rate reached its threshold (closed → open, or half-open → open).
    SlowCallRate,
    /// The wait in the open state is over (open → half-open).
    WaitElapsed,
    /// The half-open probes were healthy (half-open → closed).
    ProbesHealthy,
    /// The half-open state lasted longer than its maximum (half-open → open).
    HalfOpenTimedOut,
    /// A manual transition (`transition_to_*`, `force_open`, `disable`, `metrics_only`,
    /// `reset`).
    Manual,
}

impl TransitionReason {
    /// A stable `snake_case` name.
    ///
    /// ```
    /// use timefuse_guard::breaker::TransitionReason;
    /// assert_eq!(TransitionReason::WaitElapsed.as_str(), "wait_elapsed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::FailureRate => "failure_rate",
            TransitionReason::SlowCallRate => "slow_call_rate",
            TransitionReason::WaitElapsed => "wait_elapsed",
            TransitionReason::ProbesHealthy => "probes_healthy",
            TransitionReason::HalfOpenTimedOut => "half_open_timed_out",
            TransitionReason::Manual => "manual",
        }
    }
}

impl std::fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state transition of a breaker, as [`Breaker::subscribe`](super::Breaker::subscribe)rs
/// and the [`on_transition`](super::Breaker::on_transition) hook see it. Each transition is
/// performed, and reported, by exactly one thread.
///
/// ```
/// use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState, TransitionReason};
///
/// let breaker = Breaker::new(BreakerConfig::new("ledger"));
/// let mut events = breaker.subscribe();
/// breaker.force_open();
/// let event = events.try_recv().unwrap();
/// assert_eq!((event.from, event.to), (CircuitState::Closed, CircuitState::ForcedOpen));
/// assert_eq!(event.reason, TransitionReason::Manual);
/// assert_eq!(&*event.name, "ledger");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerEvent {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state it left.
    pub from: CircuitState,
    /// The state it entered.
    pub to: CircuitState,
    /// Why.
    pub reason: TransitionReason,
    /// When.
    pub at: Instant,
    /// The failure rate (percent) that tripped it, when the reason is a rate.
    pub failure_rate: Option<f64>,
    /// The slow-call rate (percent) that tripped it, when the reason is a rate.
    pub slow_call_rate: Option<f64>,
}
