//! The egress rules for `reqwest`, which has no tower layer for requests: one extension method
//! that grants the call its budget, writes the headers and runs the call under it.

use std::future::Future;

use timefuse::Context;

use crate::egress::{EgressError, write_headers};

/// Why [`ContextRequestExt::send_within`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// Not started (budget below the floor), or ended by the context.
    Budget(EgressError),
    /// reqwest's own error (connection, protocol, its local timeout).
    Reqwest(reqwest::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Budget(e) => e.fmt(f),
            SendError::Reqwest(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Budget(e) => Some(e),
            SendError::Reqwest(e) => Some(e),
        }
    }
}

/// Sends a `reqwest` request within a [`Context`]'s budget.
pub trait ContextRequestExt {
    /// Derives the call's budget with the downstream rule (`min(cap, remaining − reserve)`,
    /// refused below the floor, `name` picks the cap), writes `x-deadline-ms`,
    /// `x-request-timeout-ms`, `x-upstream-timeout-ms`, `x-request-id` and `traceparent`, sets
    /// reqwest's timeout to the budget, and sends — ending the call early if the context ends.
    /// The call is recorded in the request's budget ledger when the response head arrives.
    ///
    /// # Errors
    ///
    /// [`SendError::Budget`] when the budget is too small to start or ends first; nothing is
    /// sent in the first case. [`SendError::Reqwest`] for reqwest's own errors.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request, as with `send()`.
    ///
    /// ```no_run
    /// use timefuse::Context;
    /// use timefuse::budget::TimeoutPolicy;
    /// use timefuse_tower::reqwest_ext::ContextRequestExt;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let (ctx, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    /// let client = reqwest::Client::new();
    /// let res = client.get("http://127.0.0.1:8080/risk").send_within(&ctx, "risk").await?;
    /// println!("{}", res.status());
    /// # Ok(()) }
    /// ```
    fn send_within(
        self,
        ctx: &Context,
        name: &str,
    ) -> impl Future<Output = Result<reqwest::Response, SendError>> + Send;
}

impl ContextRequestExt for reqwest::RequestBuilder {
    fn send_within(
        self,
        ctx: &Context,
        name: &str,
    ) -> impl Future<Output = Result<reqwest::Response, SendError>> + Send {
        let prepared = ctx.downstream(name).map(|scope| {
            let mut headers = http::HeaderMap::new();
            write_headers(&mut headers, ctx, scope.granted(), false);
            let builder = self.headers(headers).timeout(scope.granted());
            (scope, builder)
        });
        async move {
            let (scope, builder) =
                prepared.map_err(|e| SendError::Budget(EgressError::BudgetExhausted(e)))?;
            match scope.run(builder.send()).await {
                Ok(res) => res.map_err(SendError::Reqwest),
                Err(cause) => Err(SendError::Budget(EgressError::Ended(cause))),
            }
        }
    }
}
