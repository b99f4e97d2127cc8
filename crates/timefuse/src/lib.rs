//! Go-style request contexts for tokio.
//!
//! Every request carries a **deadline budget, a cancel signal, a cause and its identity**:
//!
//! - [`Context`]: a cancel tree with lazy deadlines, typed values and a cancel [`Cause`] — Go's
//!   `WithCancel`, `WithDeadline`, `WithTimeout`, `WithValue`, `WithoutCancel`, `AfterFunc` and
//!   `Cause`, with a lock-free [`is_done`](Context::is_done) and no timer until someone waits.
//! - [`budget`]: the three-layer timeout model (global → stage → downstream call) with a reserve,
//!   a floor and a degrade threshold.
//! - [`task`]: tasks bound to a context, recorded in a process-wide registry that the leak check
//!   and the task dump read, and a [`TaskScope`](task::TaskScope) that drains with a grace period.
//!
//! ```
//! use std::time::Duration;
//! use timefuse::{Cause, Context};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A request with an 800 ms budget...
//! let (request, _guard) = Context::background().with_timeout(Duration::from_millis(800));
//! // ...whose spawned work stops when the budget is gone.
//! let task = request.spawn(async { tokio::time::sleep(Duration::from_secs(5)).await });
//! assert_eq!(task.await.unwrap(), Err(Cause::DeadlineExceeded));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod budget;
mod cause;
mod context;
mod current;
mod done;
mod identity;
mod loom;
mod node;
mod slab;
pub mod task;

pub use budget::{BudgetExhausted, BudgetScope, TimeoutPolicy};
pub use cause::Cause;
pub use context::{AfterHandle, CancelGuard, Context};
pub use done::{Done, Run};
pub use identity::{
    IdentityError, MAX_REQUEST_ID_LEN, MAX_TRACESTATE_LEN, RequestId, TraceContext,
};
