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
