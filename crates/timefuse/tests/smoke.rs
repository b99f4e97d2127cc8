//! Smoke tests of the cancel tree: deadlines, deep chains, unlinking.
use std::time::Duration;
use timefuse::{Cause, Context};

#[timefuse_leak::test(start_paused = true)]
async fn deadline_wakes_done() {
    let (ctx, _g) = Context::background().with_timeout(Duration::from_millis(100));
    let (child, _cg) = ctx.with_cancel();
    let t = tokio::spawn(async move { child.done().await });
    assert_eq!(t.await.unwrap(), Cause::DeadlineExceeded);
    assert_eq!(ctx.cause(), Some(Cause::DeadlineExceeded));
}

#[test]
fn deep_chain_cancel_and_drop() {
    let (root, guard) = Context::background().with_cancel();
    let mut cur = root.clone();
    let mut guards = Vec::new();
    for _ in 0..100_000 {
        let (c, g) = cur.with_cancel();
        guards.push(g);
        cur = c;
    }
    for g in guards.drain(..) {
        g.disarm();
    }
    guard.cancel();
    assert!(cur.is_done());
    drop(root);
    drop(cur);
}

#[test]
fn deep_chain_drop_only() {
    let (root, _guard) = Context::background().with_cancel();
    let mut cur = root.clone();
    for _ in 0..100_000 {
        let (c, g) = cur.with_cancel();
        g.disarm();
        cur = c;
    }
    drop(cur);
    assert_eq!(root.live_children(), 0);
}

#[test]
fn children_unlink() {
    let (root, _guard) = Context::background().with_cancel();
    for _ in 0..1000 {
        let (_c, _g) = root.with_cancel();
    }
    let kept: Vec<_> = (0..10).map(|_| root.with_cancel()).collect();
    assert_eq!(root.live_children(), 10);
    drop(kept);
    assert_eq!(root.live_children(), 0);
}
