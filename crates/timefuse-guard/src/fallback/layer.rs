use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tower_layer::Layer;

use super::{Fallback, FallbackStats, Shared, Triggers};

/// Answers with a [`FallbackHook`](super::FallbackHook)'s degraded response when the guards
/// inside refuse a call, when the budget runs out, or up front when the request should
/// degrade. See the [module docs](super).
///
/// Every service made by one layer shares the hook and the counters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use timefuse::Context;
/// use timefuse::budget::TimeoutPolicy;
/// use timefuse_guard::fallback::{self, FallbackLayer, Marked, Why};
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(Marked::new("cached"))))
///     .named("recommendations");
/// let mut svc = layer.layer(tower::service_fn(|_: ()| async { Ok::<_, std::io::Error>(Marked::new("fresh")) }));
///
/// let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc()); // degrade below 300 ms
/// tokio::time::advance(Duration::from_millis(600)).await;
/// let res = ctx.scope(async { svc.ready().await.unwrap().call(()).await }).await.unwrap();
/// assert_eq!(*res, "cached", "200 ms left: answered up front, no call");
/// assert_eq!(res.degraded.unwrap().route(), Some("recommendations"));
/// # }
/// ```
#[derive(Debug)]
pub struct FallbackLayer<H> {
    shared: Arc<Shared<H>>,
}

impl<H> FallbackLayer<H> {
    /// Falls back to `hook` on the default [`Triggers`].
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Triggers, Why};
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new("later"))));
    /// assert_eq!(layer.triggers(), Triggers::default());
    /// ```
    pub fn new(hook: H) -> Self {
        FallbackLayer::with_triggers(hook, Triggers::default())
    }

    /// Falls back to `hook` on `triggers`.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Triggers, Why};
    /// let mut triggers = Triggers::default();
    /// triggers.failures = true;
    /// let layer = FallbackLayer::with_triggers(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))), triggers);
    /// assert!(layer.triggers().failures);
    /// ```
    pub fn with_triggers(hook: H, triggers: Triggers) -> Self {
        FallbackLayer {
            shared: Arc::new(Shared {
                hook,
                triggers,
                route: None,
                served: AtomicU64::new(0),
                up_front: AtomicU64::new(0),
                declined: AtomicU64::new(0),
            }),
        }
    }

    /// Names the route: the name goes on the [`Degraded`](super::Degraded) marker and the
    /// log events.
    ///
    /// # Panics
    ///
    /// If the layer has already been cloned or has made a service (name it first).
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(())))).named("search");
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn named(mut self, route: impl Into<Arc<str>>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("name a FallbackLayer before cloning it or making services")
            .route = Some(route.into());
        self
    }

    /// The triggers.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
    /// assert!(layer.triggers().refusals);
    /// ```
    pub fn triggers(&self) -> Triggers {
        self.shared.triggers
    }

    /// The hook.
    ///
    /// ```
    /// use timefuse_guard::fallback::{FallbackHook, FallbackLayer, StaleCache};
    /// let layer = FallbackLayer::new(StaleCache::<u64, String, _>::new(|k: &u64| *k, std::time::Duration::from_secs(5)));
    /// assert!(layer.hook().is_empty());
    /// ```
    pub fn hook(&self) -> &H {
        &self.shared.hook
    }

    /// Counters so far, for every service of this layer.
    ///
    /// ```
    /// use timefuse_guard::fallback::{self, FallbackLayer, Why};
    /// let layer = FallbackLayer::new(fallback::default_response(|_: &Why<'_>| Some(http::Response::new(()))));
    /// assert_eq!(layer.stats().served, 0);
    /// ```
    pub fn stats(&self) -> FallbackStats {
        self.shared.stats()
    }
}

impl<H> Clone for FallbackLayer<H> {
    fn clone(&self) -> Self {
        FallbackLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, H> Layer<S> for FallbackLayer<H> {
    type Service = Fallback<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
