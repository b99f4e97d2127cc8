//! [`KeyFn`]: which limit a request counts against.

use std::hash::Hash;

/// Picks the key a request counts against in a keyed limiter: a tenant, a route, a peer.
///
/// Any `Fn(&Req) -> K` is a `KeyFn`; [`Global`] puts every request under the one key `()`.
///
/// # Examples
///
/// ```
/// use timefuse_guard::rate_limit::{Global, KeyFn};
///
/// struct Call { tenant: &'static str }
///
/// let by_tenant = |call: &Call| call.tenant;
/// assert_eq!(by_tenant.key(&Call { tenant: "acme" }), "acme");
/// assert_eq!(KeyFn::<Call>::key(&Global, &Call { tenant: "acme" }), ());
/// ```
pub trait KeyFn<Req> {
    /// The key type.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of `req`.
    fn key(&self, req: &Req) -> Self::Key;
}

/// Every request under one key: a global limit.
///
/// ```
/// use timefuse_guard::rate_limit::{Global, KeyFn};
/// assert_eq!(KeyFn::<u32>::key(&Global, &7), ());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Global;

impl<Req> KeyFn<Req> for Global {
    type Key = ();

    #[inline]
    fn key(&self, _: &Req) {}
}

impl<Req, K, F> KeyFn<Req> for F
where
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    #[inline]
    fn key(&self, req: &Req) -> K {
        self(req)
    }
}

/// A tenant, as a value of the request's [`Context`](timefuse::Context), for limits keyed by
/// tenant ([`ByContext::Tenant`]): `ctx.with_value(Tenant::new("acme"))`.
///
/// ```
/// use timefuse::Context;
/// use timefuse_guard::rate_limit::Tenant;
/// let ctx = Context::background().with_value(Tenant::new("acme"));
/// assert_eq!(&*ctx.value::<Tenant>().unwrap().0, "acme");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tenant(pub std::sync::Arc<str>);

impl Tenant {
    /// The tenant `name`.
    ///
    /// ```
    /// let tenant = timefuse_guard::rate_limit::Tenant::new("acme");
    /// assert_eq!(&*tenant.0, "acme");
    /// ```
    pub fn new(name: impl Into<std::sync::Arc<str>>) -> Self {
        Tenant(name.into())
    }
}

/// The caller's address, as a value of the request's [`Context`](timefuse::Context), for
/// limits keyed by peer ([`ByContext::Peer`]).
///
/// ```
/// use timefuse::Context;
/// use timefuse_guard::rate_limit::Peer;
/// let ctx = Context::background().with_value(Peer([127, 0, 0, 1].into()));
/// assert!(ctx.value::<Peer>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer(pub std::net::IpAddr);

/// The key [`ByContext`] finds: the route's one limit, a tenant's or a peer's. A request whose
/// context lacks the value counts against [`ContextKey::Global`].
///
/// ```
/// use timefuse_guard::rate_limit::ContextKey;
/// assert_eq!(ContextKey::Global.to_string(), "global");
/// assert_eq!(ContextKey::Tenant("acme".into()).to_string(), "tenant:acme");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ContextKey {
    /// No key: the route's one limit.
    Global,
    /// A tenant's limit.
    Tenant(std::sync::Arc<str>),
    /// A peer's limit.
    Peer(std::net::IpAddr),
}

impl std::fmt::Display for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextKey::Global => f.write_str("global"),
            ContextKey::Tenant(t) => write!(f, "tenant:{t}"),
            ContextKey::Peer(p) => write!(f, "peer:{p}"),
        }
    }
}

/// Keys requests by a value of the task-local request context: its [`Tenant`] or [`Peer`]
/// (what the configuration's `rate.key` names), or not at all.
///
/// ```
/// use timefuse::Context;
/// use timefuse_guard::rate_limit::{ByContext, ContextKey, KeyFn, Tenant};
///
/// let ctx = Context::background().with_value(Tenant::new("acme"));
/// let key = ctx.sync_scope(|| KeyFn::<()>::key(&ByContext::Tenant, &()));
/// assert_eq!(key, ContextKey::Tenant("acme".into()));
/// assert_eq!(KeyFn::<()>::key(&ByContext::Tenant, &()), ContextKey::Global, "no context");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ByContext {
    /// One limit.
    #[default]
    Global,
    /// Per [`Tenant`].
    Tenant,
    /// Per [`Peer`].
    Peer,
}

impl ByContext {
    /// The key of the current task's request.
    ///
    /// ```
    /// use timefuse_guard::rate_limit::{ByContext, ContextKey};
    /// assert_eq!(ByContext::Peer.current_key(), ContextKey::Global, "no context: the one limit");
    /// ```
    pub fn current_key(self) -> ContextKey {
        let from = |f: fn(&timefuse::Context) -> Option<ContextKey>| {
            timefuse::Context::try_current()
                .and_then(|ctx| f(&ctx))
                .unwrap_or(ContextKey::Global)
        };
        match self {
            ByContext::Global => ContextKey::Global,
            ByContext::Tenant => {
                from(|c| c.value::<Tenant>().map(|t| ContextKey::Tenant(t.0.clone())))
            }
            ByContext::Peer => from(|c| c.value::<Peer>().map(|p| ContextKey::Peer(p.0))),
        }
    }
}

impl<Req> KeyFn<Req> for ByContext {
    type Key = ContextKey;

    #[inline]
    fn key(&self, _: &Req) -> ContextKey {
        self.current_key()
    }
}
