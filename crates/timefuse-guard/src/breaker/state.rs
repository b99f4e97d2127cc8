//! [`CircuitState`] and the packed state word every call reads.
//!
//! One `AtomicU64` holds the whole state machine, so every transition and every half-open
//! probe reservation is a single compare-and-swap, won by exactly one thread:
//!
//! | bits | field |
//! |---|---|
//! | 0..3 | the [`CircuitState`] |
//! | 3..24 | the generation, bumped by every transition (a permit from an older generation records nothing) |
//! | 24..64, open | when it opened, in ms since the breaker was made |
//! | 24..34, half-open | probes reserved |
//! | 34..44, half-open | probes recorded |
//! | 44..54, half-open | probes that failed |
//! | 54..64, half-open | probes that were slow |

use std::fmt;

/// The state of a circuit breaker (resilience4j's states).
///
/// ```
/// use timefuse_guard::breaker::CircuitState;
///
/// assert!(CircuitState::Closed.permits_calls());
/// assert!(!CircuitState::ForcedOpen.permits_calls());
/// assert_eq!(CircuitState::HalfOpen.to_string(), "half_open");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass; their outcomes fill the sliding window, which may open the breaker.
    Closed,
    /// Calls are refused until the wait in the open state is over.
    Open,
    /// A bounded number of probes pass; their outcomes close or re-open the breaker.
    HalfOpen,
    /// Calls pass and nothing is recorded (until a transition out of it).
    Disabled,
    /// Calls are refused (until a transition out of it).
    ForcedOpen,
    /// Calls pass and their outcomes are recorded, but the breaker never opens.
    MetricsOnly,
}

impl CircuitState {
    /// True when calls pass without a probe reservation: closed, disabled, metrics-only.
    ///
    /// ```
    /// assert!(timefuse_guard::breaker::CircuitState::MetricsOnly.permits_calls());
    /// ```
    pub fn permits_calls(self) -> bool {
        matches!(
            self,
            CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly
        )
    }

    /// A stable `snake_case` name, for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(timefuse_guard::breaker::CircuitState::ForcedOpen.as_str(), "forced_open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Disabled => "disabled",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::Disabled => 3,
            CircuitState::ForcedOpen => 4,
            CircuitState::MetricsOnly => 5,
        }
    }

    const fn from_code(code: u64) -> CircuitState {
        match code {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::Disabled,
            4 => CircuitState::ForcedOpen,
            _ => CircuitState::MetricsOnly,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATE_BITS: u32 = 3;
const GEN_BITS: u32 = 21;
const GEN_SHIFT: u32 = STATE_BITS;
const PAYLOAD_SHIFT: u32 = STATE_BITS + GEN_BITS;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
/// Open: the instant it opened, in ms since the breaker was made (40 bits: 34 years).
pub(crate) const MS_MASK: u64 = (1 << 40) - 1;
const FIELD_BITS: u32 = 10;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// A decoded state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

/// The half-open counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Probes {
    pub(crate) reserved: u32,
    pub(crate) recorded: u32,
    pub(crate) failed: u32,
    pub(crate) slow: u32,
}

impl Word {
    /// A word in `state`, generation `generation`, payload zero.
    pub(crate) const fn new(state: CircuitState, generation: u32) -> Word {
        Word(state.code() | ((generation as u64 & GEN_MASK) << GEN_SHIFT))
    }

    pub(crate) const fn state(self) -> CircuitState {
        CircuitState::from_code(self.0 & ((1 << STATE_BITS) - 1))
    }

    pub(crate) const fn generation(self) -> u32 {
        ((self.0 >> GEN_SHIFT) & GEN_MASK) as u32
    }

    /// The word a transition to `state` leads to: next generation, empty payload.
    pub(crate) const fn next(self, state: CircuitState) -> Word {
        Word::new(state, self.generation().wrapping_add(1))
    }

    pub(crate) const fn with_opened_at(self, ms: u64) -> Word {
        Word((self.0 & ((1 << PAYLOAD_SHIFT) - 1)) | ((ms & MS_MASK) << PAYLOAD_SHIFT))
    }

    pub(crate) const fn opened_at(self) -> u64 {
        (self.0 >> PAYLOAD_SHIFT) & MS_MASK
    }

    pub(crate) const fn probes(self) -> Probes {
        let p = self.0 >> PAYLOAD_SHIFT;
        Probes {
            reserved: (p & FIELD_MASK) as u32,
            recorded: ((p >> FIELD_BITS) & FIELD_MASK) as u32,
            failed: ((p >> (2 * FIELD_BITS)) & FIELD_MASK) as u32,
            slow: ((p >> (3 * FIELD_BITS)) & FIELD_MASK) as u32,
        }
    }

    pub(crate) const fn with_probes(self, p: Probes) -> Word {
        let payload = (p.reserved as u64 & FIELD_MASK)
            | ((p.recorded as u64 & FIELD_MASK) << FIELD_BITS)
            | ((p.failed as u64 & FIELD_MASK) << (2 * FIELD_BITS))
            | ((p.slow as u64 & FIELD_MASK) << (3 * FIELD_BITS));
        Word((self.0 & ((1 << PAYLOAD_SHIFT) - 1)) | (payload << PAYLOAD_SHIFT))
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Word");
        d.field("state", &self.state())
            .field("generation", &self.generation());
        match self.state() {
            CircuitState::Open => d.field("opened_at_ms", &self.opened_at()),
            CircuitState::HalfOpen => d.field("probes", &self.probes()),
            _ => &mut d,
        };
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        let w = Word::new(CircuitState::HalfOpen, 7).with_probes(Probes {
            reserved: 1023,
            recorded: 5,
            failed: 3,
            slow: 1023,
        });
        assert_eq!(w.state(), CircuitState::HalfOpen);
        assert_eq!(w.generation(), 7);
        assert_eq!(w.probes().reserved, 1023);
        assert_eq!(w.probes().slow, 1023);
        let o = w.next(CircuitState::Open).with_opened_at(MS_MASK);
        assert_eq!(o.generation(), 8);
        assert_eq!(o.opened_at(), MS_MASK);
        assert_eq!(o.state(), CircuitState::Open);
        let wrap = Word::new(CircuitState::Closed, GEN_MASK as u32).next(CircuitState::Open);
        assert_eq!(wrap.generation(), 0);
        assert_eq!(wrap.state(), CircuitState::Open);
    }
}
