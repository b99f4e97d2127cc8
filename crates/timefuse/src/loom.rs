//! Synchronisation primitives, swapped for loom's under `--cfg timefuse_loom` (tokio reserves `--cfg loom` for its own tests and does not build under it).
//!
//! loom has no `Weak`, so the reference counts stay std's under loom too (as in several
//! loom-tested crates); every ordering that matters for the cancel tree goes through the
//! node lock and the state atomic, which loom does permute.

#[cfg(timefuse_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU8, AtomicU32},
};
#[cfg(not(timefuse_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU8, AtomicU32},
};

pub(crate) use std::sync::{Arc, Weak};

/// Locks `m`, ignoring poisoning: no code in this crate panics while holding a node lock, and a
/// user panic elsewhere must not make a context unusable.
#[cfg(not(timefuse_loom))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(timefuse_loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap()
}
