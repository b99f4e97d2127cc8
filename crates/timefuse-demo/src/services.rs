//! The five services of the payment chain, as tonic servers of the `payments.Hop` service.
//!
//! The order service orchestrates: it calls risk, then deduct (the charge), then ledger (the
//! entry), then notify (as a bound task), each through a client stack that depends on the
//! [`Strategy`], behind a circuit breaker per callee and a rate limiter on the orders it
//! admits (timefuse-guard). Each of risk, deduct, ledger and notify does its "database work"
//! holding a pooled connection (a tracked resource) under a downstream budget, suffering the
//! scenario's latency, errors, hangs and partitions; deduct also holds a per-account lock.
//!
//! Every hop runs its work as a task bound to its context (`ctx.spawn_named`): under `nested`
//! the request's context built by `IngressLayer` from the wire, which ends at the request's
//! deadline or when the caller leaves; under `fixed` and `none` a context of the hop's own,
//! which does not (nothing is propagated), so work goes on after its caller has given up.
//! The task registry and the resource registry see all of it, keyed by the order's request id.
//!
//! # The order's outcome
//!
//! Anything that fails **before** the charge is sent (risk slow or down, an open breaker, a
//! call refused below the floor, under 300 ms left) ends in the fallback voucher: the order is
//! `degraded` and charged nothing. Once the charge has been sent, the order is only
//! `completed` if deduct and ledger both answered; otherwise it is `unknown` (or stays
//! `pending` if its handler was cut off), and reconciliation settles it from the stores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use timefuse::budget::{BudgetOutcome, TimeoutPolicy};
use timefuse::{CancelGuard, Cause, Context, RequestId};
use timefuse_guard::Outcome;
use timefuse_guard::admission::LatencyEstimator;
use timefuse_guard::breaker::{Breaker, BreakerConfig, CircuitState, SlidingWindow};
use timefuse_guard::rate_limit::{Rate, RateLimiter};
use timefuse_leak::{ResourceScope, Tracked};
use timefuse_tower::{EgressLayer, IngressLayer};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::chaos::Chaos;
use crate::pb::hop_client::HopClient;
use crate::pb::hop_server::{Hop, HopServer};
use crate::pb::{BudgetLine, HopReply, HopRequest, ResolveReply, ResolveRequest, Verdict};
use crate::pool::Pool;
use crate::scenario::GuardSpec;
use crate::stats::Stats;
use crate::store::{ChargeOutcome, OrderRow, OrderStatus, Store};
use crate::strategy::Strategy;

/// The boxed error of the client stacks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of a [`Channel`]: a concrete type (a boxed `dyn Error` as the service error
/// makes rustc unable to prove the tonic client's futures `Send`).
#[derive(Debug)]
pub struct ChannelError(pub BoxError);

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A gRPC channel with the strategy's client layers, type-erased.
pub type Channel = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    ChannelError,
>;

/// A client of one hop.
pub type Client = HopClient<Channel>;

/// The future of one `Handle` call, boxed as `Send + 'static` (so that futures holding it are
/// provably `Send`).
pub type HandleFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<HopReply>, Status>> + Send + 'static>>;

/// Calls `Handle` on `client`.
pub fn send(mut client: Client, request: Request<HopRequest>) -> HandleFuture {
    Box::pin(async move { client.handle(request).await })
}

/// Risk declines orders of at least this many cents (about 0.5 % of the shipped scenarios'
/// orders): the one business refusal of the chain.
pub const RISK_DECLINE_AT: i64 = 19_900;

/// Lock stripes of deduct's per-account locks.
const ACCOUNT_LOCKS: usize = 64;

/// The role of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The entry: orchestrates the chain.
    Order,
    /// The risk check.
    Risk,
    /// The charge.
    Deduct,
    /// The ledger entry.
    Ledger,
    /// The notification.
    Notify,
}

impl Role {
    /// All five, in call order.
    pub const ALL: [Role; 5] = [
        Role::Order,
        Role::Risk,
        Role::Deduct,
        Role::Ledger,
        Role::Notify,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Order => "order",
            Role::Risk => "risk",
            Role::Deduct => "deduct",
            Role::Ledger => "ledger",
            Role::Notify => "notify",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    fn db(self) -> &'static str {
        match self {
            Role::Order => "order-db",
            Role::Risk => "risk-db",
            Role::Deduct => "deduct-db",
            Role::Ledger => "ledger-db",
            Role::Notify => "notify-smtp",
        }
    }

    fn pool(self) -> &'static str {
        match self {
            Role::Order => "order-pool",
            Role::Risk => "risk-pool",
            Role::Deduct => "deduct-pool",
            Role::Ledger => "ledger-pool",
            Role::Notify => "notify-pool",
        }
    }

    fn work_name(self) -> &'static str {
        match self {
            Role::Order => "order.work",
            Role::Risk => "risk.work",
            Role::Deduct => "deduct.work",
            Role::Ledger => "ledger.work",
            Role::Notify => "notify.work",
        }
    }
}

/// A client of the hop at `addr` for `strategy`:
///
/// - `nested`: [`EgressLayer::grpc`] named after the callee: the call gets `remaining − 150 ms`
///   of the caller's context, is refused locally under the 50 ms floor, carries the deadline,
///   request id and trace, and ends with the caller's context;
/// - `fixed`: `tower::timeout` of 800 ms and nothing on the wire;
/// - `none`: the bare channel.
pub fn client(addr: SocketAddr, callee: &'static str, strategy: Strategy) -> Client {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("a valid uri")
        .connect_lazy();
    let svc: Channel = match strategy {
        Strategy::Nested => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(|r: http::Response<_>| r.map(tonic::body::Body::new))
                .map_err(ChannelError)
                .layer(EgressLayer::grpc().named(callee))
                .service(channel),
        ),
        Strategy::Fixed => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_err(ChannelError)
                .layer(tower::timeout::TimeoutLayer::new(
                    strategy.call_timeout().expect("fixed has a timeout"),
                ))
                .service(channel),
        ),
        Strategy::None => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_err(|e| ChannelError(BoxError::from(e)))
                .service(channel),
        ),
    };
    HopClient::new(svc)
}

/// What order needs to call the rest of the chain.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The risk service.
    pub risk: Client,
    /// The deduct service.
    pub deduct: Client,
    /// The ledger service.
    pub ledger: Client,
    /// The notify service.
    pub notify: Client,
}

impl Peers {
    /// Clients of the four downstream services at these addresses.
    pub fn connect(addrs: &[(Role, SocketAddr)], strategy: Strategy) -> Peers {
        let find = |role: Role| {
            let addr = addrs
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, a)| *a)
                .expect("every peer has an address");
            client(addr, role.name(), strategy)
        };
        Peers {
            risk: find(Role::Risk),
            deduct: find(Role::Deduct),
            ledger: find(Role::Ledger),
            notify: find(Role::Notify),
        }
    }
}

/// Order's defenses: a rate limiter on admitted orders, a breaker per callee, and the
/// latency estimates of its calls (timefuse-guard's admission estimator: an EWMA per callee)
/// for the check before the charge.
#[derive(Debug)]
struct Guard {
    limiter: RateLimiter<()>,
    latency: LatencyEstimator<Role>,
    risk: Arc<Breaker>,
    deduct: Arc<Breaker>,
    ledger: Arc<Breaker>,
    notify: Arc<Breaker>,
}

impl Guard {
    fn new(spec: &GuardSpec) -> Guard {
        let breaker = |name: &str| {
            Breaker::new(
                BreakerConfig::new(name.to_owned())
                    .sliding_window(SlidingWindow::CountBased(spec.breaker_window))
                    .minimum_calls(spec.breaker_minimum_calls)
                    .failure_rate_threshold(spec.breaker_failure_rate)
                    .wait_in_open(spec.breaker_open.0)
                    .permitted_calls_in_half_open(5),
            )
        };
        Guard {
            limiter: RateLimiter::direct(
                Rate::per_second(spec.order_rate_limit)
                    .with_burst(spec.order_rate_limit.div_ceil(10).max(1)),
            )
            .named("orders"),
            latency: LatencyEstimator::new(),
            risk: breaker("risk"),
            deduct: breaker("deduct"),
            ledger: breaker("ledger"),
            notify: breaker("notify"),
        }
    }
}

/// One service of the chain: its role, faults, pool, store and (for order) peers.
pub struct Node {
    role: Role,
    strategy: Strategy,
    policy: Arc<TimeoutPolicy>,
    chaos: Arc<Chaos>,
    pool: Pool,
    store: Arc<dyn Store>,
    peers: Option<Peers>,
    guard: Option<Guard>,
    locks: Vec<tokio::sync::Mutex<()>>,
    lock_scope: ResourceScope,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("role", &self.role)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// How a call from order ended.
enum CallError {
    /// Nothing was sent (open breaker, refused below the floor): no effect possible.
    NotSent(String),
    /// Sent, no answer (timeout, error): the effect is unknown.
    Failed(Status),
}

impl Node {
    /// A service. `peers` and `guard` are used by order only.
    pub fn new(
        role: Role,
        strategy: Strategy,
        chaos: Arc<Chaos>,
        store: Arc<dyn Store>,
        peers: Option<Peers>,
        guard: &GuardSpec,
        stats: Arc<Stats>,
    ) -> Arc<Node> {
        let pool = Pool::new(role.name(), role.db(), chaos.pool());
        Arc::new(Node {
            role,
            strategy,
            policy: Arc::new(strategy.hop_policy()),
            chaos,
            pool,
            store,
            guard: (role == Role::Order).then(|| Guard::new(guard)),
            peers,
            locks: (0..ACCOUNT_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            lock_scope: ResourceScope::named("deduct"),
            stats,
        })
    }

    /// The service's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Serves this node on `listener` until `shutdown` resolves. Under `nested` the service
    /// sits behind [`IngressLayer::grpc`] (deadline from `grpc-timeout`, 800 ms when none,
    /// `DEADLINE_EXCEEDED` when it ends, `ClientGone` when the caller leaves).
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let svc = HopServer::new(HopService(Arc::clone(&self)));
        let builder = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(100_000))
            .tcp_nodelay(true);
        if self.strategy.propagates() {
            let mut builder = builder.layer(IngressLayer::grpc().policy(Arc::clone(&self.policy)));
            builder
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        } else {
            let mut builder = builder;
            builder
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }

    /// The context a hop's work runs under, and the guard that ends it when the work is done
    /// (only for contexts the hop made itself).
    fn hop_context(
        &self,
        incoming: Option<Context>,
        order_id: &str,
    ) -> (Context, Option<CancelGuard>) {
        if self.strategy.propagates()
            && let Some(ctx) = incoming
        {
            return (ctx, None);
        }
        // Nothing crossed the wire but the order id (a message field): a context of our own.
        let base = match RequestId::new(order_id) {
            Ok(id) => Context::background().with_request_id(id),
            Err(_) => Context::background(),
        };
        let (ctx, guard) = base.with_request_deadline(Arc::clone(&self.policy), None);
        (ctx, Some(guard))
    }

    /// The database work of a hop: a pooled connection, the scenario's latency (or a hang, or
    /// an error), then `effect` with the connection still held. Returns `None` when a budget
    /// was refused or ran out (nothing was done).
    ///
    /// Under `nested` the wait for a connection and the query share one downstream budget,
    /// `<service>-db` (`remaining − 150 ms`). Under `fixed` and `none` each operation has its
    /// own timeout, as a pool's connection timeout and a driver's query timeout do: the wait
    /// is `<service>-pool` (800 ms under fixed), the query `<service>-db` (800 ms).
    async fn db_work<T>(
        &self,
        ctx: &Context,
        effect: impl FnOnce() -> Result<T, Status>,
    ) -> Result<Option<T>, Status> {
        let draw = self.chaos.draw();
        let (conn, query) = if self.strategy.propagates() {
            let Ok(query) = ctx.downstream(self.role.db()) else {
                return Ok(None);
            };
            let Ok(conn) = self.pool.acquire(&query, ctx).await else {
                return Ok(None);
            };
            (conn, query)
        } else {
            let Ok(wait) = ctx.downstream(self.role.pool()) else {
                return Ok(None);
            };
            let Ok(conn) = self.pool.acquire(&wait, ctx).await else {
                return Ok(None);
            };
            drop(wait);
            let Ok(query) = ctx.downstream(self.role.db()) else {
                return Ok(None);
            };
            (conn, query)
        };
        let work = async {
            if draw.hang {
                self.chaos.hang().await;
            }
            tokio::time::sleep(draw.latency).await;
        };
        if query.run(work).await.is_err() {
            return Ok(None);
        }
        drop(query);
        if draw.error {
            return Err(Status::unavailable(format!("{} failed", self.role.db())));
        }
        let out = effect().map(Some);
        drop(conn);
        out
    }

    async fn handle(self: Arc<Self>, ctx: Context, req: HopRequest) -> Result<HopReply, Status> {
        let _ledger = HopLedgerTask {
            stats: Arc::clone(&self.stats),
            service: self.role.name(),
            ctx: ctx.clone(),
            floor: self.policy.floor(),
        };
        let saw_us = ctx.remaining().map_or(-1, |d| d.as_micros() as i64);
        let reply = |verdict: Verdict, detail: &str| HopReply {
            verdict: verdict as i32,
            detail: detail.to_owned(),
            saw_us,
            ..HopReply::default()
        };
        let store = Arc::clone(&self.store);
        match self.role {
            Role::Order => self.order(ctx, req, saw_us).await,
            Role::Risk => {
                let decline = req.amount >= RISK_DECLINE_AT;
                Ok(match self.db_work(&ctx, || Ok(decline)).await? {
                    None => reply(Verdict::Degraded, "risk check out of time"),
                    Some(true) => reply(Verdict::Rejected, "declined by risk"),
                    Some(false) => reply(Verdict::Ok, "approved"),
                })
            }
            Role::Deduct => {
                // The account's lock, held (and tracked) until the charge is done.
                let stripe = fnv(&req.account) % ACCOUNT_LOCKS;
                let Ok(lock) = ctx.run(self.locks[stripe].lock()).await else {
                    return Ok(reply(Verdict::Degraded, "account lock out of time"));
                };
                let _lock: Tracked<_> = self.lock_scope.track_in(&ctx, "account-lock", lock);
                let charged = self
                    .db_work(&ctx, || {
                        store
                            .charge(&req.idem_key, &req.order_id, &req.account, req.amount)
                            .map_err(|e| Status::internal(e.to_string()))
                    })
                    .await?;
                Ok(match charged {
                    None => reply(Verdict::Degraded, "charge not made: out of time"),
                    Some(ChargeOutcome::Charged | ChargeOutcome::AlreadyCharged) => {
                        reply(Verdict::Ok, "charged")
                    }
                    Some(ChargeOutcome::Voided) => reply(Verdict::Voided, "key voided"),
                    Some(ChargeOutcome::Insufficient) => {
                        reply(Verdict::Rejected, "insufficient funds")
                    }
                })
            }
            Role::Ledger => {
                let written = self
                    .db_work(&ctx, || {
                        store
                            .record_entry(&req.idem_key, &req.order_id, &req.account, req.amount)
                            .map_err(|e| Status::internal(e.to_string()))
                    })
                    .await?;
                match written {
                    // Out of time: the entry is not written; the caller must not count on it.
                    None => Err(Status::deadline_exceeded("ledger entry out of time")),
                    Some(_) => Ok(reply(Verdict::Ok, "recorded")),
                }
            }
            Role::Notify => Ok(match self.db_work(&ctx, || Ok(())).await? {
                None => reply(Verdict::Degraded, "notification out of time"),
                Some(()) => reply(Verdict::Ok, "sent"),
            }),
        }
    }

    /// Calls a peer behind its breaker, under `ctx`.
    fn call<'a>(
        &'a self,
        ctx: &'a Context,
        callee: Role,
        msg: HopRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<HopReply, CallError>> + Send + 'a>> {
        Box::pin(self.call_inner(ctx, callee, msg))
    }

    async fn call_inner(
        &self,
        ctx: &Context,
        callee: Role,
        msg: HopRequest,
    ) -> Result<HopReply, CallError> {
        let (peers, guard) = match (&self.peers, &self.guard) {
            (Some(p), Some(g)) => (p, g),
            _ => return Err(CallError::NotSent("no peers".into())),
        };
        let (client, breaker) = match callee {
            Role::Risk => (peers.risk.clone(), &guard.risk),
            Role::Deduct => (peers.deduct.clone(), &guard.deduct),
            Role::Ledger => (peers.ledger.clone(), &guard.ledger),
            _ => (peers.notify.clone(), &guard.notify),
        };
        let permit = breaker
            .try_acquire(ctx)
            .map_err(|e| CallError::NotSent(e.to_string()))?;
        let start = Instant::now();
        let mut request = Request::new(msg);
        let result = if self.strategy.propagates() {
            // EgressLayer derives the call's budget from this context and records it.
            request.extensions_mut().insert(ctx.clone());
            timefuse::task::track(callee.name(), send(client, request)).await
        } else {
            // The call's own budget (800 ms under fixed), recorded in the ledger; the channel's
            // tower timeout enforces the same 800 ms.
            match ctx.downstream(callee.name()) {
                Ok(scope) => match scope
                    .run(timefuse::task::track(callee.name(), send(client, request)))
                    .await
                {
                    Ok(r) => r,
                    Err(cause) => Err(Status::deadline_exceeded(cause.to_string())),
                },
                Err(e) => Err(Status::deadline_exceeded(e.to_string())),
            }
        };
        let took = start.elapsed();
        match result {
            Ok(reply) => {
                permit.record(Outcome::Success, took);
                guard.latency.record(&callee, took);
                Ok(reply.into_inner())
            }
            Err(status) if status.message().starts_with("call not started") => {
                // Refused locally by the egress layer (budget under the floor): nothing sent.
                drop(permit);
                Err(CallError::NotSent(status.message().to_owned()))
            }
            Err(status) => {
                permit.record(Outcome::Failure, took);
                Err(CallError::Failed(status))
            }
        }
    }

    fn finish(&self, order_id: &str, status: OrderStatus) {
        // A store error leaves the order pending: reconciliation settles it.
        let _ = self
            .store
            .set_order_status(order_id, &[OrderStatus::Pending], status);
    }

    async fn order(
        self: &Arc<Self>,
        ctx: Context,
        req: HopRequest,
        saw_us: i64,
    ) -> Result<HopReply, Status> {
        let guard = self.guard.as_ref().expect("order has its guard");
        let mut out = HopReply {
            saw_us,
            ..HopReply::default()
        };
        let mut calls: Vec<(&'static str, i64)> = Vec::new();
        let verdict = |out: &mut HopReply, v: Verdict, detail: String| {
            out.verdict = v as i32;
            out.detail = detail;
        };
        if let Err(wait) = guard.limiter.check(&()) {
            verdict(
                &mut out,
                Verdict::Rejected,
                format!("shed by the rate limiter (next permit in {wait:?})"),
            );
            return Ok(out);
        }
        let row = OrderRow {
            order_id: req.order_id.clone(),
            idem_key: req.idem_key.clone(),
            account: req.account.clone(),
            amount: req.amount,
            status: OrderStatus::Pending,
        };
        if ctx.should_degrade() {
            let _ = self.store.create_order(&OrderRow {
                status: OrderStatus::Degraded,
                ..row
            });
            verdict(
                &mut out,
                Verdict::Degraded,
                "voucher: under 300 ms left on arrival".into(),
            );
            return Ok(out);
        }
        let store = Arc::clone(&self.store);
        let created = self
            .db_work(&ctx, || {
                store
                    .create_order(&row)
                    .map_err(|e| Status::internal(e.to_string()))
            })
            .await?;
        if created.is_none() {
            return Err(Status::deadline_exceeded("order not created: out of time"));
        }

        let status = {
            let Ok(stage) = ctx.stage("payment") else {
                self.finish(&req.order_id, OrderStatus::Degraded);
                verdict(
                    &mut out,
                    Verdict::Degraded,
                    "voucher: no time for payment".into(),
                );
                return Ok(out);
            };
            self.pay(&stage, &req, &mut out, &mut calls).await
        };
        self.finish(&req.order_id, status);
        out.waterfall = waterfall(&ctx, &calls);
        match status {
            OrderStatus::Completed => Ok(out),
            OrderStatus::Degraded | OrderStatus::Rejected => Ok(out),
            OrderStatus::Failed => Err(Status::aborted(out.detail)),
            _ => Err(Status::unavailable(format!(
                "charge in doubt, left to reconciliation: {}",
                out.detail
            ))),
        }
    }

    /// The payment stage: risk, deduct, ledger, notify. Returns the order's status.
    async fn pay(
        self: &Arc<Self>,
        ctx: &Context,
        req: &HopRequest,
        out: &mut HopReply,
        calls: &mut Vec<(&'static str, i64)>,
    ) -> OrderStatus {
        let set = |out: &mut HopReply, v: Verdict, d: String| {
            out.verdict = v as i32;
            out.detail = d;
        };
        // Risk: any failure here is before the charge: the voucher. Its answer is worth
        // something only while the charge and the entry can still follow, so the risk stage
        // keeps their time (see `after_risk`); the call's own reserve then makes the answer
        // due by the point past which it would be thrown away.
        let keep = self.after_risk(ctx).saturating_sub(ctx.policy().reserve());
        let risk = match ctx.stage_leaving("risk-check", keep) {
            Ok(stage) => self.call(&stage, Role::Risk, req.clone()).await,
            Err(e) => Err(CallError::NotSent(e.to_string())),
        };
        match risk {
            Ok(r) => {
                calls.push(("risk", r.saw_us));
                match r.verdict() {
                    Verdict::Ok => {}
                    Verdict::Rejected => {
                        set(out, Verdict::Rejected, r.detail);
                        return OrderStatus::Rejected;
                    }
                    _ => {
                        set(out, Verdict::Degraded, format!("voucher: {}", r.detail));
                        return OrderStatus::Degraded;
                    }
                }
            }
            Err(CallError::NotSent(why)) => {
                set(
                    out,
                    Verdict::Degraded,
                    format!("voucher: risk not called: {why}"),
                );
                return OrderStatus::Degraded;
            }
            Err(CallError::Failed(s)) => {
                set(
                    out,
                    Verdict::Degraded,
                    format!("voucher: risk failed: {}", s.message()),
                );
                return OrderStatus::Degraded;
            }
        }
        if ctx.should_degrade() {
            set(
                out,
                Verdict::Degraded,
                "voucher: under 300 ms left after risk".into(),
            );
            return OrderStatus::Degraded;
        }
        // No charge while the ledger's breaker is open: the entry could not be written, and
        // the order would end in doubt.
        if let Some(g) = &self.guard
            && matches!(
                g.ledger.state(),
                CircuitState::Open | CircuitState::ForcedOpen
            )
        {
            set(
                out,
                Verdict::Degraded,
                "voucher: the ledger's breaker is open".into(),
            );
            return OrderStatus::Degraded;
        }
        // Admission before the charge: charge only if the budget left also covers the ledger
        // entry after it. A call's query needs the caller's reserve, the callee's reserve and
        // the floor (350 ms with the document's numbers, more than the 300 ms degrade
        // threshold); deduct's own time is its EWMA. Only under a deadline (nested).
        if let Some(left) = ctx.remaining() {
            let needed = self.after_risk(ctx);
            if left < needed {
                set(
                    out,
                    Verdict::Degraded,
                    format!(
                        "voucher: {} ms left cannot cover the charge and its ledger entry ({} ms)",
                        left.as_millis(),
                        needed.as_millis()
                    ),
                );
                return OrderStatus::Degraded;
            }
        }
        // Deduct: once sent, the charge may exist whatever we hear.
        out.charge_attempted = true;
        match self.call(ctx, Role::Deduct, req.clone()).await {
            Ok(r) => {
                calls.push(("deduct", r.saw_us));
                match r.verdict() {
                    Verdict::Ok => {}
                    Verdict::Rejected => {
                        set(out, Verdict::Rejected, r.detail);
                        return OrderStatus::Rejected;
                    }
                    Verdict::Voided => {
                        set(out, Verdict::Voided, r.detail);
                        return OrderStatus::Failed;
                    }
                    Verdict::Degraded => {
                        // Deduct answered that it did not charge.
                        set(out, Verdict::Degraded, format!("voucher: {}", r.detail));
                        return OrderStatus::Degraded;
                    }
                }
            }
            Err(CallError::NotSent(why)) => {
                out.charge_attempted = false;
                set(
                    out,
                    Verdict::Degraded,
                    format!("voucher: deduct not called: {why}"),
                );
                return OrderStatus::Degraded;
            }
            Err(CallError::Failed(s)) => {
                out.detail = format!("deduct: {}", s.message());
                return OrderStatus::Unknown;
            }
        }
        // Ledger: charged; the entry must exist before the order completes.
        match self.call(ctx, Role::Ledger, req.clone()).await {
            Ok(r) if r.verdict() == Verdict::Ok => calls.push(("ledger", r.saw_us)),
            Ok(r) => {
                out.detail = format!("ledger: {}", r.detail);
                return OrderStatus::Unknown;
            }
            Err(CallError::NotSent(why)) => {
                out.detail = format!("ledger not called: {why}");
                return OrderStatus::Unknown;
            }
            Err(CallError::Failed(s)) => {
                out.detail = format!("ledger: {}", s.message());
                return OrderStatus::Unknown;
            }
        }
        // Notify: best effort, as a task bound to the request; its failure changes nothing.
        let me = Arc::clone(self);
        let msg = req.clone();
        let task_ctx = ctx.clone();
        let notify = ctx.spawn_named("order.notify", async move {
            me.call(&task_ctx, Role::Notify, msg).await.ok()
        });
        if let Ok(Some(r)) = notify.await.unwrap_or(Ok(None)) {
            calls.push(("notify", r.saw_us));
        }
        set(out, Verdict::Ok, "paid".into());
        OrderStatus::Completed
    }

    /// What the steps after risk need left when risk answers: the ledger call must still get
    /// its floor after its own reserve and its callee's (`2 × reserve + floor`, 350 ms with the
    /// document's numbers) once the charge is done, and the charge takes deduct's expected
    /// time (an EWMA of its successes). Zero without a deadline.
    fn after_risk(&self, ctx: &Context) -> Duration {
        if ctx.deadline().is_none() {
            return Duration::ZERO;
        }
        let policy = ctx.policy();
        let deduct = self
            .guard
            .as_ref()
            .and_then(|g| g.latency.expected(&Role::Deduct))
            .unwrap_or_default();
        policy.reserve() * 2 + policy.floor() + deduct
    }

    async fn resolve(&self, req: ResolveRequest) -> Result<ResolveReply, Status> {
        let err = |e: crate::store::StoreError| Status::internal(e.to_string());
        match self.role {
            Role::Deduct => Ok(ResolveReply {
                charged: self
                    .store
                    .resolve_charge(&req.idem_key, &req.order_id)
                    .map_err(err)?,
            }),
            Role::Ledger => {
                self.store
                    .record_entry(&req.idem_key, &req.order_id, &req.account, req.amount)
                    .map_err(err)?;
                Ok(ResolveReply { charged: true })
            }
            _ => Err(Status::unimplemented("only deduct and ledger resolve keys")),
        }
    }
}

/// The waterfall of an order from its ledger: every stage and call, with the budget the callee
/// saw on arrival where it answered.
fn waterfall(ctx: &Context, calls: &[(&'static str, i64)]) -> Vec<BudgetLine> {
    ctx.budget_records()
        .into_iter()
        .map(|r| BudgetLine {
            callee_saw_us: calls
                .iter()
                .find(|(n, _)| *n == &*r.name)
                .map_or(-1, |(_, s)| *s),
            name: r.name.to_string(),
            started_us: r.started_at.as_micros() as i64,
            granted_us: r.granted.as_micros() as i64,
            used_us: r.used.map_or(-1, |u| u.as_micros() as i64),
            outcome: outcome_name(r.outcome).to_owned(),
        })
        .collect()
}

/// A budget outcome as a word.
pub fn outcome_name(o: BudgetOutcome) -> &'static str {
    match o {
        BudgetOutcome::Running => "running",
        BudgetOutcome::Finished => "ok",
        BudgetOutcome::TimedOut => "timed_out",
        BudgetOutcome::Canceled => "canceled",
        BudgetOutcome::Refused => "refused",
        BudgetOutcome::Detached => "detached",
        _ => "other",
    }
}

fn fnv(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

/// Hands the hop's ledger to [`Stats`] when the hop's work ends, however it ends. Lives inside
/// one hop's work task, so the context it holds is that request's.
struct HopLedgerTask {
    stats: Arc<Stats>,
    service: &'static str,
    ctx: Context,
    floor: Duration,
}

impl Drop for HopLedgerTask {
    fn drop(&mut self) {
        self.stats
            .record(self.service, &self.ctx.budget_records(), self.floor);
    }
}

/// The tonic service of a node.
#[derive(Debug, Clone)]
pub struct HopService(pub Arc<Node>);

#[tonic::async_trait]
impl Hop for HopService {
    async fn handle(&self, request: Request<HopRequest>) -> Result<Response<HopReply>, Status> {
        let node = Arc::clone(&self.0);
        let incoming = request
            .extensions()
            .get::<Context>()
            .cloned()
            .or_else(Context::try_current);
        let req = request.into_inner();
        // A black-holed service: no answer until the window ends or the caller gives up
        // (which drops this future: nothing was started).
        if let Some(left) = node.chaos.partitioned() {
            node.chaos.black_hole(left).await;
        }
        let (ctx, guard) = node.hop_context(incoming, &req.order_id);
        let name = node.role.work_name();
        let work_ctx = ctx.clone();
        let task = ctx.spawn_named(name, async move {
            let _guard = guard; // ends the hop's own context (fixed, none) with the work
            node.handle(work_ctx, req).await
        });
        match task.await {
            Ok(Ok(reply)) => reply.map(Response::new),
            Ok(Err(cause)) => Err(status_for(&cause)),
            Err(join) => Err(Status::internal(join.to_string())),
        }
    }

    async fn resolve(
        &self,
        request: Request<ResolveRequest>,
    ) -> Result<Response<ResolveReply>, Status> {
        if let Some(left) = self.0.chaos.partitioned() {
            self.0.chaos.black_hole(left).await;
        }
        self.0
            .resolve(request.into_inner())
            .await
            .map(Response::new)
    }
}

/// The gRPC status of a context's end.
pub fn status_for(cause: &Cause) -> Status {
    if cause.is_deadline_exceeded() {
        Status::deadline_exceeded(cause.to_string())
    } else {
        Status::cancelled(cause.to_string())
    }
}
