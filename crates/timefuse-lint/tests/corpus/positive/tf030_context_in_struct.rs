//! TF030: contexts stored in long-lived structs (Go's containedctx).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use timefuse::Context;

/// A server lives for the whole process: whose request is this?
struct Server {
    addr: SocketAddr,
    ctx: Context, // expect: TF030
}

/// A client shared by every request.
pub struct Client {
    inner: Arc<()>,
    ctx: Option<Context>, // expect: TF030
}

/// A pool of contexts, shared.
struct Pool(Arc<Mutex<Vec<Context>>>); // expect: TF030

/// Fully qualified.
#[derive(Clone)]
struct Worker {
    name: String,
    ctx: timefuse::Context, // expect: TF030
}

/// A cache that keeps the context of the request that filled it.
struct Cache {
    entries: std::collections::HashMap<String, (String, Context)>, // expect: TF030
}

impl Server {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}
