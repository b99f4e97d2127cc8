//! The three timeout strategies compared on the same load.
//!
//! | strategy | a hop's work | an outgoing call | the caller leaves |
//! |---|---|---|---|
//! | `fixed` | its own context, no deadline | its own 800 ms (`tower::timeout`), nothing on the wire | the hop's work goes on |
//! | `nested` | the request's context from the wire (`IngressLayer`) | `remaining − 150 ms` (`EgressLayer`), refused under 50 ms; under 300 ms left the order degrades at once | everything stops |
//! | `none` | its own context, no deadline | no timeout | the hop's work goes on |
//!
//! `fixed` is the document's "every hop 800 ms": each call and each database query gets 800 ms
//! of its own, and nothing (no deadline, no cancellation) crosses a hop.

use std::time::Duration;

use serde::Serialize;
use timefuse::budget::TimeoutPolicy;

/// The fixed timeout of every call and query under [`Strategy::Fixed`], and the request budget
/// under [`Strategy::Nested`].
pub const BUDGET: Duration = Duration::from_millis(800);

/// How the chain handles time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every hop its own 800 ms timeout, nothing propagated.
    Fixed,
    /// Three-layer budgets from the request's deadline: reserve, floor and fast degrade.
    Nested,
    /// No timeouts at all.
    None,
}

impl Strategy {
    /// All three, in report order.
    pub const ALL: [Strategy; 3] = [Strategy::Fixed, Strategy::Nested, Strategy::None];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Fixed => "fixed",
            Strategy::Nested => "nested",
            Strategy::None => "none",
        }
    }

    /// True when budgets, request ids and cancellation cross the wire.
    pub fn propagates(self) -> bool {
        self == Strategy::Nested
    }

    /// The timeout policy of each hop's context.
    ///
    /// - `nested`: the document's numbers ([`TimeoutPolicy::internal_grpc`]: 800 ms, reserve
    ///   150 ms, floor 50 ms, degrade under 300 ms).
    /// - `fixed`: no request deadline; every downstream call and query is capped at 800 ms with
    ///   no reserve, so each gets its own 800 ms.
    /// - `none`: no deadline, and caps of 24 h.
    pub fn hop_policy(self) -> TimeoutPolicy {
        let tiny = Duration::from_micros(1);
        match self {
            Strategy::Nested => TimeoutPolicy::internal_grpc(),
            Strategy::Fixed => TimeoutPolicy::internal_grpc()
                .with_reserve(Duration::ZERO)
                .with_floor(tiny)
                .with_degrade_below(tiny)
                .with_default_stage_cap(TimeoutPolicy::MAX_DURATION)
                .with_default_downstream_cap(BUDGET),
            Strategy::None => TimeoutPolicy::internal_grpc()
                .with_global(TimeoutPolicy::MAX_DURATION)
                .with_reserve(Duration::ZERO)
                .with_floor(tiny)
                .with_degrade_below(tiny)
                .with_default_stage_cap(TimeoutPolicy::MAX_DURATION)
                .with_default_downstream_cap(TimeoutPolicy::MAX_DURATION),
        }
    }

    /// The policy of the load generator's request (the end user's side): under `nested` the
    /// order service is sent the whole 800 ms (no reserve at the edge).
    pub fn client_policy(self) -> TimeoutPolicy {
        TimeoutPolicy::internal_grpc()
            .with_reserve(Duration::ZERO)
            .with_floor(Duration::from_micros(1))
    }

    /// The fixed timeout of every outgoing call (`tower::timeout`), if any.
    pub fn call_timeout(self) -> Option<Duration> {
        match self {
            Strategy::Fixed => Some(BUDGET),
            _ => None,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}
