//! The sliding windows: the last `n` calls, or the calls of the last `n` seconds.
//!
//! Both keep running totals in two atomics, `calls | failures << 32` and `slow`, updated by
//! every record with `fetch_add` of a delta. Every change to a slot or a bucket is a `swap`
//! (or an add) whose delta goes into the totals exactly once, so the totals always converge to
//! the sum of the slots, whatever the interleaving. A snapshot taken between a slot change and
//! its total update can be off by a call (or show a transient "negative" field, which reads as a
//! huge number): such a snapshot is rejected by [`Counts::consistent`] and the breaker waits for
//! the next record to judge.

use tokio::time::Instant;

use super::sync::{AtomicU8, AtomicU64, AtomicUsize, Mutex, Padded, lock};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// A call, in a slot: bit 0 a call, bit 1 failed, bit 2 slow. Zero is an empty slot.
pub(crate) const CALL: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const SLOW: u8 = 4;

const ONE_CALL: u64 = 1;
const ONE_FAILURE: u64 = 1 << 32;
/// A field at or above this is a transient negative: the snapshot is rejected.
const SANE: u64 = 1 << 31;

/// A snapshot of a window's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    fn from_words(cf: u64, slow: u64) -> Counts {
        Counts {
            calls: cf & 0xFFFF_FFFF,
            failures: cf >> 32,
            slow,
        }
    }

    /// False for a snapshot caught mid-update (see the module docs).
    pub(crate) fn consistent(&self) -> bool {
        self.calls < SANE && self.failures <= self.calls && self.slow <= self.calls
    }
}

fn cf_of(code: u8) -> u64 {
    u64::from(code & CALL) * ONE_CALL + u64::from((code & FAILED) >> 1) * ONE_FAILURE
}

fn slow_of(code: u8) -> u64 {
    u64::from((code & SLOW) >> 2)
}

#[derive(Debug)]
struct Totals {
    cf: AtomicU64,
    slow: AtomicU64,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            cf: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    /// Applies the change of one slot from `old` to `new`, returning the totals after it.
    #[inline]
    fn apply(&self, old: u8, new: u8) -> Counts {
        let d_cf = cf_of(new).wrapping_sub(cf_of(old));
        let cf = if d_cf == 0 {
            self.cf.load(Relaxed)
        } else {
            self.cf.fetch_add(d_cf, Relaxed).wrapping_add(d_cf)
        };
        let d_slow = slow_of(new).wrapping_sub(slow_of(old));
        let slow = if d_slow == 0 {
            self.slow.load(Relaxed)
        } else {
            self.slow.fetch_add(d_slow, Relaxed).wrapping_add(d_slow)
        };
        Counts::from_words(cf, slow)
    }

    /// Removes counts that left the window.
    fn remove(&self, cf: u64, slow: u64) {
        if cf != 0 {
            self.cf.fetch_sub(cf, Relaxed);
        }
        if slow != 0 {
            self.slow.fetch_sub(slow, Relaxed);
        }
    }

    fn snapshot(&self) -> Counts {
        Counts::from_words(self.cf.load(Relaxed), self.slow.load(Relaxed))
    }
}

/// The last `n` calls: a ring of `n` one-byte slots.
#[derive(Debug)]
pub(crate) struct CountWindow {
    head: Padded<AtomicUsize>,
    totals: Totals,
    slots: Box<[AtomicU8]>,
}

impl CountWindow {
    fn new(size: u32) -> CountWindow {
        CountWindow {
            head: Padded(AtomicUsize::new(0)),
            totals: Totals::new(),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    #[inline]
    fn record(&self, code: u8) -> Counts {
        let i = self.head.fetch_add(1, Relaxed) % self.slots.len();
        let slot = &self.slots[i];
        // In the steady state the outcome leaving the window is the one entering it: nothing to
        // write, and the totals do not change.
        let mut old = slot.load(Relaxed);
        if old != code {
            old = slot.swap(code, Relaxed);
        }
        self.totals.apply(old, code)
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Relaxed);
            if old != 0 {
                self.totals.apply(old, 0);
            }
        }
    }
}

/// The calls of the last `n` seconds: `n` one-second buckets, rotated under a lock when a
/// record or a read finds the current second newer than the window's.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    base: Instant,
    /// The newest second the buckets are rotated to (seconds since `base`).
    epoch: Padded<AtomicU64>,
    totals: Totals,
    buckets: Box<[(AtomicU64, AtomicU64)]>,
    rotation: Mutex<()>,
}

impl TimeWindow {
    fn new(seconds: u32, base: Instant) -> TimeWindow {
        TimeWindow {
            base,
            epoch: Padded(AtomicU64::new(0)),
            totals: Totals::new(),
            buckets: (0..seconds)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            rotation: Mutex::new(()),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_secs()
    }

    /// Moves the window to `sec` if it is behind; returns the second to record into.
    #[inline]
    fn advance(&self, sec: u64) -> u64 {
        let cur = self.epoch.load(Acquire);
        if sec <= cur {
            // A call finishing as the window moved on counts in the newest second.
            return cur;
        }
        let _g = lock(&self.rotation);
        let cur = self.epoch.load(Acquire);
        if sec > cur {
            let n = self.buckets.len() as u64;
            let stale = (sec - cur).min(n);
            for s in (sec - stale + 1)..=sec {
                let (cf, slow) = &self.buckets[(s % n) as usize];
                self.totals.remove(cf.swap(0, AcqRel), slow.swap(0, AcqRel));
            }
            self.epoch.store(sec, Release);
            sec
        } else {
            cur
        }
    }

    #[inline]
    fn record(&self, code: u8, now: Instant) -> Counts {
        let sec = self.advance(self.second(now));
        let (cf, slow) = &self.buckets[(sec % self.buckets.len() as u64) as usize];
        let (d_cf, d_slow) = (cf_of(code), slow_of(code));
        cf.fetch_add(d_cf, Relaxed);
        if d_slow != 0 {
            slow.fetch_add(d_slow, Relaxed);
        }
        self.totals.apply(0, code)
    }

    fn snapshot(&self, now: Instant) -> Counts {
        self.advance(self.second(now));
        self.totals.snapshot()
    }

    fn clear(&self) {
        let _g = lock(&self.rotation);
        for (cf, slow) in self.buckets.iter() {
            self.totals.remove(cf.swap(0, AcqRel), slow.swap(0, AcqRel));
        }
    }
}

/// A count- or time-based window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn count(size: u32) -> Window {
        Window::Count(CountWindow::new(size))
    }

    pub(crate) fn time(seconds: u32, base: Instant) -> Window {
        Window::Time(TimeWindow::new(seconds, base))
    }

    /// Records one call (`code` a combination of [`CALL`], [`FAILED`], [`SLOW`]) finished at
    /// `now` (read only by a time-based window); returns the totals after it.
    #[inline]
    pub(crate) fn record(&self, code: u8, now: impl FnOnce() -> Instant) -> Counts {
        match self {
            Window::Count(w) => w.record(code),
            Window::Time(w) => w.record(code, now()),
        }
    }

    /// The totals as of `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> Counts {
        match self {
            Window::Count(w) => w.totals.snapshot(),
            Window::Time(w) => w.snapshot(now),
        }
    }

    /// Empties the window.
    pub(crate) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

#[cfg(all(test, not(timefuse_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = Window::count(4);
        let now = Instant::now;
        for _ in 0..4 {
            w.record(CALL | FAILED, now);
        }
        assert_eq!(
            w.snapshot(Instant::now()),
            Counts {
                calls: 4,
                failures: 4,
                slow: 0
            }
        );
        w.record(CALL | SLOW, now);
        w.record(CALL, now);
        let c = w.snapshot(Instant::now());
        assert_eq!((c.calls, c.failures, c.slow), (4, 2, 1));
        w.clear();
        assert_eq!(w.snapshot(Instant::now()), Counts::default());
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let base = Instant::now();
        let w = Window::time(3, base);
        w.record(CALL | FAILED, || base);
        w.record(CALL, || base + Duration::from_secs(1));
        assert_eq!(w.snapshot(base + Duration::from_secs(2)).calls, 2);
        assert_eq!(w.snapshot(base + Duration::from_secs(3)).calls, 1);
        assert_eq!(w.snapshot(base + Duration::from_secs(3)).failures, 0);
        assert_eq!(w.snapshot(base + Duration::from_secs(100)).calls, 0);
        // A late record for an old second counts in the newest one.
        w.record(CALL | SLOW, || base);
        assert_eq!(w.snapshot(base + Duration::from_secs(100)).slow, 1);
    }

    #[test]
    fn transient_negatives_are_rejected() {
        let c = Counts::from_words(0u64.wrapping_sub(1), 0);
        assert!(!c.consistent());
        let c = Counts::from_words(ONE_CALL.wrapping_sub(ONE_FAILURE), 0);
        assert!(!c.consistent());
    }
}
