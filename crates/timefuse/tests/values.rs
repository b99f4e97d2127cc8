//! Typed values of every size and alignment: the lookup walks the chain through each node's
//! sized header and reads the value at the offset its own type gives (context.rs), so values
//! that are zero-sized, tiny, large, over-aligned or owning must all come back intact, from any
//! depth, from any thread, and be dropped exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use timefuse::Context;

#[derive(Debug, PartialEq)]
struct Zst;

#[derive(Debug, PartialEq)]
#[repr(align(64))]
struct Aligned64(u8);

#[derive(Debug, PartialEq)]
#[repr(align(4096))]
struct PageAligned(u64);

#[derive(Debug, PartialEq)]
struct Big([u64; 64]);

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn layered() -> Context {
    Context::background()
        .with_value(7_u8)
        .with_value(Zst)
        .with_value(Aligned64(64))
        .with_value(u128::MAX - 3)
        .with_value(PageAligned(4096))
        .with_value(Big([9; 64]))
        .with_value(String::from("tenant-acme"))
        .with_value(vec![1_u16, 2, 3])
        .with_value(-5_i64)
}

fn check(ctx: &Context) {
    assert_eq!(ctx.value::<u8>(), Some(&7));
    assert_eq!(ctx.value::<Zst>(), Some(&Zst));
    let a = ctx.value::<Aligned64>().unwrap();
    assert_eq!(a, &Aligned64(64));
    assert_eq!(
        std::ptr::from_ref(a) as usize % 64,
        0,
        "read at its alignment"
    );
    assert_eq!(ctx.value::<u128>(), Some(&(u128::MAX - 3)));
    let p = ctx.value::<PageAligned>().unwrap();
    assert_eq!(p, &PageAligned(4096));
    assert_eq!(std::ptr::from_ref(p) as usize % 4096, 0);
    assert_eq!(ctx.value::<Big>(), Some(&Big([9; 64])));
    assert_eq!(
        ctx.value::<String>().map(String::as_str),
        Some("tenant-acme")
    );
    assert_eq!(ctx.value::<Vec<u16>>(), Some(&vec![1, 2, 3]));
    assert_eq!(ctx.value::<i64>(), Some(&-5));
    assert_eq!(ctx.value::<&str>(), None);
}

#[test]
fn every_size_and_alignment_comes_back() {
    let ctx = layered();
    check(&ctx);
    assert_eq!(ctx.value::<u32>(), None);
    // Through cancel-tree children and a detached copy: the value chain is shared.
    let (child, _guard) = ctx.with_cancel();
    check(&child);
    check(&ctx.without_cancel());
    // Shadowing: the nearest wins, the outer one is still there for the parent.
    let inner = child.with_value(8_u8);
    assert_eq!(inner.value::<u8>(), Some(&8));
    assert_eq!(child.value::<u8>(), Some(&7));
}

#[test]
fn values_read_from_other_threads_while_clones_drop() {
    let ctx = layered();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let mine = ctx.clone();
            s.spawn(move || {
                for i in 0..2_000_u32 {
                    let deeper = mine.with_value(i);
                    check(&deeper);
                    assert_eq!(deeper.value::<u32>(), Some(&i));
                }
            });
        }
    });
    check(&ctx);
}

#[test]
fn owned_values_drop_once_when_the_last_context_goes() {
    let drops = Arc::new(AtomicUsize::new(0));
    let ctx = Context::background()
        .with_value(Counted(Arc::clone(&drops)))
        .with_value(1_u8);
    let a = ctx.with_value(2_u16);
    let b = ctx.clone();
    drop(ctx);
    assert!(a.value::<Counted>().is_some());
    drop(a);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "b still holds the chain");
    assert!(b.value::<Counted>().is_some());
    drop(b);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_long_chain_is_walked_to_its_root() {
    let mut ctx = Context::background().with_value(Zst);
    for i in 0..10_000_u32 {
        ctx = ctx.with_value(i);
    }
    assert_eq!(ctx.value::<u32>(), Some(&9_999));
    assert_eq!(ctx.value::<Zst>(), Some(&Zst), "10 000 hops to the root");
    assert_eq!(ctx.value::<u64>(), None);
}
