//! `Context` here is `std::task::Context`, not timefuse's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

struct Poller<'a> {
    cx: Context<'a>,
}

struct Wrapper<F> {
    inner: F,
}

impl<F: Future + Unpin> Future for Wrapper<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

fn waker_loop(cx: &mut Context<'_>) {
    loop {
        cx.waker().wake_by_ref();
        break;
    }
}

struct Holder {
    cx_ptr: *const Context<'static>,
}
