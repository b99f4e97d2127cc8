//! Reconciliation: settling every order whose outcome was unknown when its budget ended.
//!
//! An order is unsettled when its handler ended after the charge was sent but before both
//! deduct and ledger answered (`unknown`), or was cut off mid-flight (`pending`): the charge
//! may or may not exist, and its ledger entry may or may not exist. Guessing either way loses
//! money or charges twice, so each such order is settled from the stores, by its idempotency
//! key, with **query-then-commit**:
//!
//! 1. ask deduct to resolve the key ([`Store::resolve_charge`]): if it was charged, deduct says
//!    so; if not, deduct writes a `void` row in the same transaction, so the key can never be
//!    charged afterwards (a late call still in flight, a retry) — the fence;
//! 2. charged: commit forward — write the ledger entry if it is missing
//!    ([`Store::record_entry`], idempotent) and mark the order `completed`;
//! 3. voided: mark the order `failed` (nothing was charged, nothing ever will be).
//!
//! Committing forward needs no second money movement: a compensation (refund) would be one
//! more call that can itself time out half-way and need reconciling. Every step is idempotent,
//! so running reconciliation twice, or concurrently with a late handler, changes nothing.
//!
//! The demo runs it once per strategy run, after the load has stopped, the faults have healed
//! and every hop's work has ended (so the report counts what it settled); the fence makes it
//! equally safe to run while orders are still in flight.

use serde::Serialize;

use crate::store::{OrderStatus, Store, StoreResult};

/// What reconciliation settled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    /// Unsettled orders examined.
    pub examined: u64,
    /// Found charged: the ledger entry ensured, the order completed.
    pub committed: u64,
    /// Of those, the ledger entries that were missing and written now.
    pub entries_written: u64,
    /// Found not charged: the key voided, the order failed.
    pub voided: u64,
}

/// Settles every pending or unknown order in `store`.
pub fn reconcile(store: &dyn Store) -> StoreResult<Reconciled> {
    let mut out = Reconciled::default();
    let unsettled = [OrderStatus::Pending, OrderStatus::Unknown];
    for order in store.unsettled_orders()? {
        out.examined += 1;
        if store.resolve_charge(&order.idem_key, &order.order_id)? {
            if store.record_entry(
                &order.idem_key,
                &order.order_id,
                &order.account,
                order.amount,
            )? {
                out.entries_written += 1;
            }
            store.set_order_status(&order.order_id, &unsettled, OrderStatus::Completed)?;
            out.committed += 1;
        } else {
            store.set_order_status(&order.order_id, &unsettled, OrderStatus::Failed)?;
            out.voided += 1;
        }
    }
    Ok(out)
}
