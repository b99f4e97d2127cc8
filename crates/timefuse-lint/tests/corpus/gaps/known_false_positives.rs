//! Correct code the heuristics flag. Each line with a `gap-fp:` marker is flagged although
//! the code is fine; `tests/corpus.rs` checks that it still is and counts it as a false
//! positive in the overall numbers.

use std::sync::OnceLock;

use timefuse::Context;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

async fn metrics_exporter() {}

static EXPORTER: OnceLock<()> = OnceLock::new();

/// A process-wide task started lazily from the first request: detached on purpose.
async fn first_request_starts_the_exporter(ctx: &Context) {
    EXPORTER.get_or_init(|| {
        tokio::spawn(metrics_exporter()); // gap-fp: TF001
    });
    let _ = ctx.remaining();
}

/// Short local writes: a bounded loop, every await quick.
async fn write_chunks(ctx: &Context, file: &mut tokio::fs::File, chunks: &[&[u8]]) {
    let _ = ctx.remaining();
    for chunk in chunks { // gap-fp: TF010
        let _ = file.write_all(chunk).await;
    }
}

/// The sender is owned by a task bound to the same context: when the context ends the task
/// drops the sender and `recv` returns `None`.
async fn structured_channel(ctx: &Context) {
    let (tx, mut rx) = mpsc::channel::<u32>(8);
    let _producer = ctx.spawn(async move {
        let _ = tx.send(1).await;
    });
    let _ = rx.recv().await; // gap-fp: TF011
}
