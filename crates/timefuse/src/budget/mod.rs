//! Three-layer budgets: a global budget per request, stages within it, downstream calls within
//! those.
//!
//! ```text
//! global (per request: 30 s at an HTTP edge, 800 ms for internal gRPC)
//!   └─ stage  = min(stage cap, parent remaining)                       (caps 3–8 s; default 5 s)
//!        └─ downstream call = min(call cap, parent remaining − reserve)  (reserve 150 ms; caps 1–3 s, default 2 s)
//!             below the floor (50 ms): not started → Err(BudgetExhausted)
//! request-level: less than the degrade threshold (300 ms) left → should_degrade() → fallback path
//! ```
//!
//! - [`TimeoutPolicy`] holds the numbers; [`Context::request`] (or
//!   [`Context::with_request_budget`], for a budget that came with the request) starts a request
//!   with them: a root context with a deadline, the policy and a ledger of records.
//! - [`Context::stage`] and [`Context::downstream`] open a [`BudgetScope`]: a child context with
//!   its own deadline and the guard that cancels it. Dropping the scope cancels the child and
//!   records it; [`Context::budget_records`] lists every stage and call of the request with the
//!   time it was granted and used and whether it ran out of time, refusals included.
//! - [`Context::should_degrade`] tells the request to take its fallback path.
//!
//! # A child never outlives its parent
//!
//! Every budget here only ever shortens a deadline, as in Go, Finagle and Envoy. In particular
//! the **floor is a threshold, never a grant**. The model this module follows writes the call
//! timeout as `max(floor, remaining − reserve)`; taken literally, with 180 ms left that grants
//! the call 50 ms although the reserve leaves it only 30 ms, and with 40 ms left it grants 50 ms:
//! more than the parent has. Here a call whose budget
//! `min(cap, remaining − reserve)` is below the floor is not started at all: it could not finish
//! in time, so [`Context::downstream`] returns [`BudgetExhausted`] and the caller fails fast or
//! degrades. A granted budget is never more than the parent's time left, nor than the cap.
//!
//! # Example: the payment chain
//!
//! ```
//! use std::time::Duration;
//! use timefuse::Context;
//! use timefuse::budget::{BudgetOutcome, TimeoutPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy = TimeoutPolicy::internal_grpc().with_stage_cap("risk", Duration::from_secs(3));
//! let (request, _guard) = Context::request(policy); // 800 ms
//!
//! let risk = request.stage("risk").unwrap();
//! assert_eq!(risk.granted(), Duration::from_millis(800), "capped by the request, not by 3 s");
//! let call = risk.downstream("risk-engine").unwrap();
//! assert_eq!(call.granted(), Duration::from_millis(650), "800 ms less the 150 ms reserve");
//! tokio::time::sleep(Duration::from_millis(620)).await; // a slow answer
//! drop(call);
//! drop(risk);
//!
//! // 180 ms left: the ledger call would get 30 ms, under the 50 ms floor. Not started.
//! let err = request.downstream("ledger").unwrap_err();
//! assert_eq!(err.remaining(), Some(Duration::from_millis(180)));
//! assert!(request.should_degrade(), "under 300 ms: answer from the fallback path");
//!
//! let records = request.budget_records();
//! assert_eq!(records.len(), 3);
//! assert_eq!(records[1].parent.as_deref(), Some("risk"));
//! assert_eq!(records[1].used, Some(Duration::from_millis(620)));
//! assert_eq!(records[2].outcome, BudgetOutcome::Refused);
//! # }
//! ```
//!
//! # Configuration
//!
//! With the `config` feature (on by default) a policy loads from TOML:
//! `TimeoutPolicy::from_toml_str` and `TimeoutPolicy::from_toml_file`; it also implements serde's
//! `Serialize` and `Deserialize`, so it can sit in a larger configuration file.
//!
//! ```toml
//! global = "800ms"
//! reserve = "150ms"
//! floor = "50ms"
//! degrade_below = "300ms"
//!
//! [stage]
//! default = "5s"
//! risk = "3s"
//!
//! [downstream]
//! default = "2s"
//! ledger = "1s"
//! ```
//!
//! Every key is optional and defaults to [`TimeoutPolicy::internal_grpc`]. A duration is a
//! string, a number and a unit (`ns`, `us` or `µs`, `ms`, `s`, `m`, `h`), or a bare TOML integer
//! meaning milliseconds (`reserve = 150`). A decimal such as `"1.5s"` is accepted if it comes to
//! a whole number of nanoseconds; `"0"` alone is zero. Signs, spaces, compound forms (`"1m30s"`)
//! and TOML floats are rejected. An unknown key, a bad value or a policy that fails
//! [`TimeoutPolicy::validate`] gives a [`PolicyError`] naming the key (`downstream.ledger`) and,
//! for a bad value, the value.
//!
//! [`Context::request`]: crate::Context::request
//! [`Context::with_request_budget`]: crate::Context::with_request_budget
//! [`Context::stage`]: crate::Context::stage
//! [`Context::downstream`]: crate::Context::downstream
//! [`Context::budget_records`]: crate::Context::budget_records
//! [`Context::should_degrade`]: crate::Context::should_degrade

#[cfg(feature = "config")]
mod config;
mod policy;
mod scope;

pub use policy::{PolicyError, PolicyErrorKind, TimeoutPolicy};
pub use scope::{
    BudgetExhausted, BudgetKind, BudgetOutcome, BudgetRecord, BudgetScope, MAX_RECORDS,
};
