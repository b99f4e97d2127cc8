//! The load generator: open loop at a target arrival rate (or closed loop), latency measured
//! from each order's **intended** send time, so a stalled chain cannot hide its queueing
//! (no coordinated omission), and the orphaned-work check of every order.
//!
//! # Orphaned work
//!
//! An order is *orphaned* when, more than 10 ms after its request ended for the client
//! (answer, error or timeout), any task bound to it (a hop's work, order's notify task, an
//! in-flight call) or any tracked resource acquired for it (a pooled connection, deduct's
//! account lock) is still alive. The check reads the task registry
//! ([`timefuse::task::snapshot_where`]) and the resource registry
//! ([`timefuse_leak::resource::snapshot_where`]) by the order's request id, in a task started
//! when the request ends and sleeping 10 ms first. It sees this process only: under
//! `--processes` it is not made (the services' registries are in their own processes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use timefuse::{Context, RequestId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Request;

use crate::pb::{BudgetLine, HopReply, HopRequest, Verdict};
use crate::services::{self, Client};
use crate::store::account_name;
use crate::strategy::Strategy;

/// How long after its end an order's work counts as orphaned.
pub const ORPHAN_AFTER: Duration = Duration::from_millis(10);

/// What the client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientOutcome {
    /// Paid.
    Ok,
    /// The fallback voucher.
    Degraded,
    /// Refused (risk declined, insufficient funds, shed by the limiter).
    Rejected,
    /// An error or a timeout.
    Failed,
    /// No answer by the end of the drain window: cut off.
    Unfinished,
}

/// One order as the client saw it.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// The order id (its request id).
    pub order_id: String,
    /// Its intended send time, from the start of the load.
    pub intended: Duration,
    /// When it ended for the client, from the start of the load.
    pub ended: Duration,
    /// `ended − intended`.
    pub latency: Duration,
    /// What the client saw.
    pub outcome: ClientOutcome,
    /// The answer's detail or the error.
    pub detail: String,
    /// Bound work still alive 10 ms after the end (`None`: not checked).
    pub orphaned: Option<bool>,
    /// What was still alive, when orphaned (a few names).
    pub alive: Vec<String>,
    /// The order's budget waterfall (completed orders only).
    #[serde(skip)]
    pub waterfall: Vec<BudgetLine>,
}

/// The load to offer.
#[derive(Clone, Debug, Serialize)]
pub struct LoadOptions {
    /// The strategy (decides the client's timeout and what crosses the wire).
    pub strategy: Strategy,
    /// Orders per second (open loop).
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Closed loop with this many clients instead of the open loop.
    pub closed_loop: Option<u32>,
    /// How long to wait for answers after the last send before cutting the rest off.
    pub drain: Duration,
    /// Accounts to pay from.
    pub accounts: u32,
    /// The smallest order, in cents.
    pub amount_min: i64,
    /// The largest order, in cents.
    pub amount_max: i64,
    /// The seed of the orders' accounts and amounts.
    pub seed: u64,
    /// The prefix of the order ids.
    pub tag: String,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Check every order for orphaned work (in-process chains only).
    pub check_orphans: bool,
}

/// Everything the client saw.
#[derive(Debug)]
pub struct LoadResult {
    /// Every order sent, in send order.
    pub samples: Vec<Sample>,
    /// How long the sending lasted.
    pub sent_for: Duration,
}

struct Order {
    index: u64,
    id: String,
    request: HopRequest,
    intended: Instant,
}

fn make_order(opts: &LoadOptions, rng: &mut fastrand::Rng, index: u64, at: Instant) -> Order {
    let id = format!("{}-{index:06}", opts.tag);
    let account = account_name(rng.u32(0..opts.accounts));
    let amount = rng.i64(opts.amount_min..=opts.amount_max);
    Order {
        index,
        request: HopRequest {
            order_id: id.clone(),
            idem_key: format!("key-{id}"),
            account,
            amount,
        },
        id,
        intended: at,
    }
}

/// Sends one order as the client of `strategy` does, and says what came back.
async fn send_order(
    client: Client,
    strategy: Strategy,
    order: &Order,
) -> (ClientOutcome, String, Vec<BudgetLine>) {
    let id = RequestId::new(&order.id).ok();
    let base = match id {
        Some(id) => Context::background().with_request_id(id),
        None => Context::background(),
    };
    let request = Request::new(order.request.clone());
    let result = if strategy.propagates() {
        // The end user's 800 ms, sent whole to order (EgressLayer: grpc-timeout, request id).
        let (ctx, _guard) = base.with_request_budget(strategy.client_policy(), None);
        ctx.scope(services::send(client, request)).await
    } else {
        // fixed: the channel's own 800 ms timeout; none: no timeout.
        base.scope(services::send(client, request)).await
    };
    match result {
        Ok(reply) => {
            let reply: HopReply = reply.into_inner();
            let outcome = match reply.verdict() {
                Verdict::Ok => ClientOutcome::Ok,
                Verdict::Degraded => ClientOutcome::Degraded,
                Verdict::Rejected => ClientOutcome::Rejected,
                Verdict::Voided => ClientOutcome::Failed,
            };
            (outcome, reply.detail, reply.waterfall)
        }
        Err(status) => (
            ClientOutcome::Failed,
            format!("{:?}: {}", status.code(), status.message()),
            Vec::new(),
        ),
    }
}

/// What is still alive for `order_id`: bound tasks and tracked resources.
pub fn alive_for(order_id: &str) -> Vec<String> {
    let is = |r: Option<&RequestId>| r.is_some_and(|r| r.as_str() == order_id);
    let mut alive: Vec<String> = timefuse::task::snapshot_where(|t| is(t.request_id()))
        .iter()
        .map(|t| format!("task {}", t.name().unwrap_or("?")))
        .collect();
    alive.extend(
        timefuse_leak::resource::snapshot_where(|r| is(r.request_id()))
            .iter()
            .map(|r| format!("{} {}", r.service(), r.kind())),
    );
    alive
}

struct Ended {
    index: u64,
    sample: Sample,
}

fn progress_bar(opts: &LoadOptions, total: u64) -> ProgressBar {
    let visible = opts.progress
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("CI").is_none();
    if !visible {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>7} [{elapsed_precise}] {bar:30} {pos}/{len} orders {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(opts.strategy.name());
    bar
}

/// Offers the load to the order service at `order`, starting at `start`.
pub async fn run(order: SocketAddr, opts: &LoadOptions, start: Instant) -> LoadResult {
    let client = services::client(order, "order", opts.strategy);
    let expected = match opts.closed_loop {
        Some(_) => 0,
        None => (opts.rate * opts.duration.as_secs_f64()).ceil() as u64,
    };
    let bar = progress_bar(opts, expected);
    let in_flight: Arc<Mutex<BTreeMap<u64, (String, Instant)>>> = Arc::default();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
    let mut requests = JoinSet::new();
    let mut checks = JoinSet::new();
    let end_of_sending = start + opts.duration;
    tokio::time::sleep_until(start).await;

    // One order from send to end: records it in flight, frees its closed-loop client's slot
    // (if any) when it ends, and reports its end (with the orphan check 10 ms later, in a task
    // of its own that the drain cutoff does not abort).
    let launch =
        |order: Order, slot: Option<mpsc::UnboundedSender<()>>, requests: &mut JoinSet<()>| {
            let client = client.clone();
            let strategy = opts.strategy;
            let tx = ended_tx.clone();
            let in_flight = Arc::clone(&in_flight);
            let check = opts.check_orphans;
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(order.index, (order.id.clone(), order.intended));
            requests.spawn(async move {
                let (outcome, detail, waterfall) = send_order(client, strategy, &order).await;
                let now = Instant::now();
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&order.index);
                if let Some(slot) = slot {
                    let _ = slot.send(());
                }
                let sample = Sample {
                    order_id: order.id.clone(),
                    intended: order.intended.saturating_duration_since(start),
                    ended: now.saturating_duration_since(start),
                    latency: now.saturating_duration_since(order.intended),
                    outcome,
                    detail,
                    orphaned: None,
                    alive: Vec::new(),
                    waterfall: if outcome == ClientOutcome::Ok {
                        waterfall
                    } else {
                        Vec::new()
                    },
                };
                tokio::spawn(async move {
                    let mut sample = sample;
                    if check {
                        tokio::time::sleep(ORPHAN_AFTER).await;
                        let alive = alive_for(&sample.order_id);
                        sample.orphaned = Some(!alive.is_empty());
                        sample.alive = alive.into_iter().take(4).collect();
                    }
                    let _ = tx.send(Ended {
                        index: order.index,
                        sample,
                    });
                });
            });
        };

    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut sent: u64 = 0;
    match opts.closed_loop {
        None => {
            let interval = Duration::from_secs_f64(1.0 / opts.rate);
            loop {
                let intended = start + interval.mul_f64(sent as f64);
                if intended >= end_of_sending {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                let order = make_order(opts, &mut rng, sent, intended);
                launch(order, None, &mut requests);
                sent += 1;
                while let Some(done) = requests.try_join_next() {
                    let _ = done;
                    bar.inc(1);
                }
            }
        }
        Some(clients) => {
            // Each client sends its next order when the previous one has ended.
            let (slot_tx, mut slot_rx) = mpsc::unbounded_channel::<()>();
            for _ in 0..clients {
                let _ = slot_tx.send(());
            }
            loop {
                let next = tokio::time::timeout_at(end_of_sending, slot_rx.recv()).await;
                if !matches!(next, Ok(Some(()))) {
                    break;
                }
                let order = make_order(opts, &mut rng, sent, Instant::now());
                launch(order, Some(slot_tx.clone()), &mut requests);
                sent += 1;
                bar.inc(1);
            }
        }
    }
    let sent_for = start.elapsed();
    bar.set_message("draining");

    // Wait for the answers, up to the drain cutoff; then cut the rest off.
    let cutoff = Instant::now() + opts.drain;
    while tokio::time::timeout_at(cutoff, requests.join_next())
        .await
        .is_ok_and(|r| r.is_some())
    {
        if opts.closed_loop.is_none() {
            bar.inc(1);
        }
    }
    requests.abort_all();
    while requests.join_next().await.is_some() {}
    let cut_at = Instant::now();
    let unfinished: Vec<(u64, String, Instant)> =
        std::mem::take(&mut *in_flight.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(|(i, (id, at))| (i, id, at))
            .collect();
    for (index, id, intended) in unfinished {
        let tx = ended_tx.clone();
        let check = opts.check_orphans;
        checks.spawn(async move {
            let mut sample = Sample {
                order_id: id,
                intended: intended.saturating_duration_since(start),
                ended: cut_at.saturating_duration_since(start),
                latency: cut_at.saturating_duration_since(intended),
                outcome: ClientOutcome::Unfinished,
                detail: "no answer by the end of the drain window".into(),
                orphaned: None,
                alive: Vec::new(),
                waterfall: Vec::new(),
            };
            if check {
                tokio::time::sleep(ORPHAN_AFTER).await;
                let alive = alive_for(&sample.order_id);
                sample.orphaned = Some(!alive.is_empty());
                sample.alive = alive.into_iter().take(4).collect();
            }
            let _ = tx.send(Ended { index, sample });
        });
    }
    while checks.join_next().await.is_some() {}
    drop(ended_tx);
    bar.finish_and_clear();

    // Every order has reported (the orphan checks are 10 ms sleeps).
    let mut samples: BTreeMap<u64, Sample> = BTreeMap::new();
    let collect = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = ended_rx.recv().await {
            samples.insert(e.index, e.sample);
            if samples.len() as u64 == sent {
                break;
            }
        }
    });
    let _ = collect.await;
    LoadResult {
        samples: samples.into_values().collect(),
        sent_for,
    }
}
