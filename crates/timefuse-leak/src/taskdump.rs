//! Where leaked tasks are stuck, from tokio's task dumps (`Handle::dump`). Compiled only with
//! `--cfg tokio_unstable`, the `taskdump` feature, on Linux.

use std::time::Duration;

use tokio::runtime::Handle;

/// One trace per task of the current runtime, or nothing if the dump does not finish within
/// two seconds (tokio's doc: it may never finish while a worker is blocked).
pub(crate) async fn traces() -> Vec<(tokio::task::Id, String)> {
    let handle = Handle::current();
    match tokio::time::timeout(Duration::from_secs(2), handle.dump()).await {
        Ok(dump) => dump
            .tasks()
            .iter()
            .map(|task| (task.id(), task.trace().to_string()))
            .collect(),
        Err(_) => Vec::new(),
    }
}
