//! A service's database connection pool: a fixed number of connections, each held as a
//! tracked resource ([`timefuse_leak::Tracked`]) for as long as a hop uses it, so the
//! resource registry shows every connection still held after its request ended.

use std::sync::Arc;

use timefuse::{Cause, Context};
use timefuse_leak::{ResourceScope, Tracked};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One pooled connection; back in the pool when dropped.
#[derive(Debug)]
pub struct Conn {
    _permit: OwnedSemaphorePermit,
}

/// A pool of `size` connections.
#[derive(Clone, Debug)]
pub struct Pool {
    sem: Arc<Semaphore>,
    scope: ResourceScope,
    kind: &'static str,
}

impl Pool {
    /// A pool of `size` connections owned by `service`.
    pub fn new(service: &'static str, kind: &'static str, size: u32) -> Pool {
        Pool {
            sem: Arc::new(Semaphore::new(size as usize)),
            scope: ResourceScope::named(service),
            kind,
        }
    }

    /// Waits for a connection for no longer than `wait` lives; the connection is tracked
    /// under `owner` (its request id and trace).
    pub async fn acquire(&self, wait: &Context, owner: &Context) -> Result<Tracked<Conn>, Cause> {
        let permit = wait
            .run(Arc::clone(&self.sem).acquire_owned())
            .await?
            .map_err(|_| Cause::Canceled)?;
        Ok(self
            .scope
            .track_in(owner, self.kind, Conn { _permit: permit }))
    }

    /// Connections in use now.
    pub fn in_use(&self, size: u32) -> u32 {
        size.saturating_sub(self.sem.available_permits() as u32)
    }
}
