//! Synchronisation primitives of the breaker, swapped for loom's under `--cfg timefuse_loom`
//! (tokio reserves `--cfg loom` for its own tests and does not build under it).

#[cfg(timefuse_loom)]
pub(crate) use loom::sync::{
    Mutex,
    atomic::{AtomicU8, AtomicU64, AtomicUsize},
};
#[cfg(not(timefuse_loom))]
pub(crate) use std::sync::{
    Mutex,
    atomic::{AtomicU8, AtomicU64, AtomicUsize},
};

/// Locks `m`, ignoring poisoning: no code in the breaker panics while holding its lock.
#[cfg(not(timefuse_loom))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(timefuse_loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

/// Keeps `T` on its own cache line(s), so the state word read by every call does not share a
/// line with the window's write-hot counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
