//! The payment chain as the main job: five tonic services (order → risk → deduct → ledger →
//! notify) under three timeout strategies, fault scenarios from TOML, an open-loop load
//! generator, money that must add up, and the fixed-vs-nested report.
//!
//! | module | what it is |
//! |---|---|
//! | [`scenario`] | fault scenarios from TOML: latency tails, errors, hangs, partitions |
//! | [`strategy`] | `fixed`, `nested`, `none` |
//! | [`services`] | the five services (tonic, timefuse-tower layers, timefuse-guard breakers and limiter) |
//! | [`store`] | accounts, charges, ledger and orders behind [`store::Store`]; SQLite by default |
//! | [`reconcile`] | settling orders whose outcome was unknown when their budget ended |
//! | [`load`] | the open-loop load generator and the orphaned-work check |
//! | [`report`], [`plots`] | the comparison table, targets, money check and SVG plots |
//! | [`run`], [`chain`] | one demo run; starting the services in-process or as processes |
//!
//! `docs/demo.md` describes the scenario files, the strategies, reconciliation and how to
//! reproduce the measured table.

pub mod chain;
pub mod chaos;
pub mod load;
pub mod plots;
pub mod pool;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod scenario;
pub mod services;
pub mod stats;
pub mod store;
pub mod strategy;

/// The generated gRPC code of `proto/payments.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("payments");
}
