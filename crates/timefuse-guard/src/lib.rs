//! Deadline-aware triple defense for tower services.
//!
//! The document's chapter 4.4 pairs a context timeout with a rate limiter and a circuit breaker;
//! chapter 2.2 adds degrade paths. This crate builds them as tower layers that know the caller's
//! deadline (the request's [`timefuse::Context`]): no call, half-open probe or retry is started
//! without the budget to finish it. State is shared across clones (`Arc` + atomics, no async
//! mutex on the hot path), so the limits hold under axum's per-connection cloning.
//!
//! Order, outermost first: deadline admission → rate limiter → circuit breaker → bulkhead → call
//! with a per-try timeout, with retries wrapped around under a retry budget.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admission")]
pub mod admission;
#[cfg(feature = "breaker")]
pub mod breaker;
#[cfg(feature = "bulkhead")]
pub mod bulkhead;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "fallback")]
pub mod fallback;
pub mod outcome;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "redis")]
pub mod redis_limit;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(all(
    feature = "admission",
    feature = "rate-limit",
    feature = "breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "fallback"
))]
pub mod stack;

pub use outcome::{BoxError, GuardError, Outcome};
