//! Starting and stopping the five services: all in this process (the default), or each as a
//! `timefuse serve <service>` child process (`--processes`).
//!
//! Services bind `127.0.0.1:0` (loopback, ephemeral ports). The four callees start first, then
//! order with their addresses. A child process prints `listening <addr>` on stdout once bound,
//! heals its faults when it reads `heal` on stdin, and shuts down when stdin closes, writing
//! its per-stage counters to `<db>/stats-<service>.json` for the parent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::chaos::Chaos;
use crate::scenario::Scenario;
use crate::services::{Node, Peers, Role};
use crate::stats::{StageCounts, Stats};
use crate::store::{SqliteStore, Store};
use crate::strategy::Strategy;

/// The seed of a service's fault draws: the scenario's seed mixed with the role, so every
/// strategy sees the same draws in the same order.
pub fn chaos_seed(scenario: &Scenario, role: Role) -> u64 {
    let r = Role::ALL.iter().position(|x| *x == role).unwrap_or(0) as u64;
    scenario
        .load
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(r + 1)
}

/// The chaos of one service, whose partition clock starts at `start`.
pub fn chaos_for(scenario: &Scenario, role: Role, start: Instant) -> Arc<Chaos> {
    let faults = scenario
        .services
        .get(role.name())
        .cloned()
        .unwrap_or_default();
    Chaos::new(faults, start, chaos_seed(scenario, role))
}

/// A running chain.
#[derive(Debug)]
pub struct Chain {
    /// The order service's address: where the load goes.
    pub order: SocketAddr,
    /// Every service's address.
    pub addrs: Vec<(Role, SocketAddr)>,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    InProcess {
        chaos: Vec<Arc<Chaos>>,
        stops: Vec<oneshot::Sender<()>>,
        servers: Vec<JoinHandle<()>>,
    },
    Processes {
        children: Vec<(Role, Child, Option<ChildStdin>)>,
    },
}

async fn bind() -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Starts one node on `listener`, stopping when the sender is dropped or fired.
fn spawn_node(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = node.serve(listener, shutdown).await {
            eprintln!("server error: {e}");
        }
    });
    (tx, handle)
}

impl Chain {
    /// Starts the five services in this process over `store`; their partition clocks start
    /// at `start`.
    pub async fn in_process(
        strategy: Strategy,
        scenario: &Scenario,
        store: Arc<dyn Store>,
        start: Instant,
        stats: Arc<Stats>,
    ) -> std::io::Result<Chain> {
        let mut addrs = Vec::new();
        let mut chaos = Vec::new();
        let mut stops = Vec::new();
        let mut servers = Vec::new();
        for role in [Role::Notify, Role::Ledger, Role::Deduct, Role::Risk] {
            let (listener, addr) = bind().await?;
            let c = chaos_for(scenario, role, start);
            let node = Node::new(
                role,
                strategy,
                Arc::clone(&c),
                Arc::clone(&store),
                None,
                &scenario.guard,
                Arc::clone(&stats),
            );
            let (stop, server) = spawn_node(node, listener);
            addrs.push((role, addr));
            chaos.push(c);
            stops.push(stop);
            servers.push(server);
        }
        let (listener, order) = bind().await?;
        let c = chaos_for(scenario, Role::Order, start);
        let node = Node::new(
            Role::Order,
            strategy,
            Arc::clone(&c),
            store,
            Some(Peers::connect(&addrs, strategy)),
            &scenario.guard,
            stats,
        );
        let (stop, server) = spawn_node(node, listener);
        addrs.push((Role::Order, order));
        chaos.push(c);
        stops.push(stop);
        servers.push(server);
        Ok(Chain {
            order,
            addrs,
            inner: Inner::InProcess {
                chaos,
                stops,
                servers,
            },
        })
    }

    /// Starts the five services as `exe serve <service>` child processes sharing the store in
    /// `db`. `scenario_file` is the scenario as TOML; `start_unix_ms` the load's start.
    pub async fn processes(
        exe: &Path,
        strategy: Strategy,
        scenario_file: &Path,
        db: &Path,
        start_unix_ms: u64,
    ) -> std::io::Result<Chain> {
        let mut addrs: Vec<(Role, SocketAddr)> = Vec::new();
        let mut children = Vec::new();
        for role in [
            Role::Notify,
            Role::Ledger,
            Role::Deduct,
            Role::Risk,
            Role::Order,
        ] {
            let mut cmd = tokio::process::Command::new(exe);
            cmd.arg("serve")
                .arg(role.name())
                .arg("--strategy")
                .arg(strategy.name())
                .arg("--scenario")
                .arg(scenario_file)
                .arg("--db")
                .arg(db)
                .arg("--start-unix-ms")
                .arg(start_unix_ms.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if role == Role::Order {
                for (r, a) in &addrs {
                    cmd.arg("--peer").arg(format!("{}={a}", r.name()));
                }
            }
            let mut child = cmd.spawn()?;
            let stdout = child.stdout.take().expect("piped");
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .map_err(|_| std::io::Error::other(format!("{} did not start", role.name())))??
                .unwrap_or_default();
            let addr: SocketAddr = line
                .strip_prefix("listening ")
                .and_then(|a| a.trim().parse().ok())
                .ok_or_else(|| {
                    std::io::Error::other(format!("{}: unexpected `{line}`", role.name()))
                })?;
            // Keep draining its stdout so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let stdin = child.stdin.take();
            addrs.push((role, addr));
            children.push((role, child, stdin));
        }
        let order = addrs
            .iter()
            .find(|(r, _)| *r == Role::Order)
            .map(|(_, a)| *a)
            .expect("order started");
        Ok(Chain {
            order,
            addrs,
            inner: Inner::Processes { children },
        })
    }

    /// Ends every fault: hangs return, partitions close.
    pub async fn heal(&mut self) {
        match &mut self.inner {
            Inner::InProcess { chaos, .. } => chaos.iter().for_each(|c| c.heal()),
            Inner::Processes { children } => {
                for (_, _, stdin) in children.iter_mut() {
                    if let Some(s) = stdin {
                        let _ = s.write_all(b"heal\n").await;
                        let _ = s.flush().await;
                    }
                }
            }
        }
    }

    /// Stops every service (waiting up to `grace` for each).
    pub async fn stop(self, grace: Duration) {
        match self.inner {
            Inner::InProcess { stops, servers, .. } => {
                drop(stops);
                for s in servers {
                    let abort = s.abort_handle();
                    if tokio::time::timeout(grace, s).await.is_err() {
                        abort.abort();
                    }
                }
            }
            Inner::Processes { children } => {
                for (_, mut child, stdin) in children {
                    drop(stdin); // EOF: the child shuts down
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        let _ = child.kill().await;
                    }
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `Instant` of a Unix-epoch time in milliseconds (for a load start shared across
/// processes).
pub fn instant_of_unix_ms(ms: u64) -> Instant {
    let now_ms = unix_ms();
    let now = Instant::now();
    if ms >= now_ms {
        now + Duration::from_millis(ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - ms))
            .unwrap_or(now)
    }
}

/// The options of `timefuse serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Which service.
    pub role: Role,
    /// The strategy.
    pub strategy: Strategy,
    /// The scenario.
    pub scenario: Scenario,
    /// The store's folder.
    pub db: PathBuf,
    /// The load's start, for the partition clock.
    pub start_unix_ms: Option<u64>,
    /// The callees' addresses (order only).
    pub peers: Vec<(Role, SocketAddr)>,
    /// Where to listen.
    pub listen: SocketAddr,
}

/// `timefuse serve`: one service in this process until stdin closes (or ctrl-c). Prints
/// `listening <addr>` once bound; `heal` on stdin ends its faults.
pub async fn serve_one(opts: ServeOptions) -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&opts.db)?);
    let start = opts
        .start_unix_ms
        .map_or_else(Instant::now, instant_of_unix_ms);
    let chaos = chaos_for(&opts.scenario, opts.role, start);
    let peers = (opts.role == Role::Order).then(|| Peers::connect(&opts.peers, opts.strategy));
    if opts.role == Role::Order && opts.peers.len() < 4 {
        return Err("order needs --peer risk=…, deduct=…, ledger=…, notify=…".into());
    }
    let stats = Arc::new(Stats::new());
    let node = Node::new(
        opts.role,
        opts.strategy,
        Arc::clone(&chaos),
        store,
        peers,
        &opts.scenario.guard,
        Arc::clone(&stats),
    );
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    println!("listening {}", listener.local_addr()?);
    let (stop, server) = spawn_node(node, listener);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) if l.trim() == "heal" => chaos.heal(),
                Ok(Some(_)) => {}
                _ => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    chaos.heal();
    drop(stop);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    // The budget ledgers' counters, for the parent's per-stage table.
    let file = opts.db.join(format!("stats-{}.json", opts.role.name()));
    std::fs::write(file, serde_json::to_string(&stats.snapshot())?)?;
    Ok(())
}

/// Reads the per-stage counters the `timefuse serve` children wrote to `db` at shutdown.
pub fn read_child_stats(db: &Path) -> BTreeMap<String, StageCounts> {
    let mut out = BTreeMap::new();
    for role in Role::ALL {
        let file = db.join(format!("stats-{}.json", role.name()));
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(map) = serde_json::from_str::<BTreeMap<String, StageCounts>>(&text)
        {
            out.extend(map);
        }
    }
    out
}
