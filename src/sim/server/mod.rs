//! The simulator's HTTP server (hyper 1): the router endpoint with the real envelope.
//!
//! Owns: starting a simulator ([`Simulator::start`]: data generated, apps' QPS buckets, the
//! listener), the handle tests and the demo steer it with ([`SimHandle`]: ground truth, faults,
//! mutation, counters), accepting connections and serving each one. The checks of a request and
//! its answer are in `router`. Also counts what it saw (in-flight high-water mark, codes) for
//! tests.
//! Must not: block: data sits behind a short `parking_lot` lock, every wait is a tokio timer that
//! shutdown cancels.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::data::{GroundTruth, ShopData};
use super::faults::{Fault, FaultConfig, FaultState};
use super::SimConfig;

mod router;

pub use router::expected_sign_for_tests;

const ROUTER_PATH: &str = "/openapi/router";
const KNOWN_TYPES: [&str; 5] = [
    "bg.order.list.v2.get",
    "bg.order.detail.v2.get",
    "bg.local.goods.list.query",
    "bg.aftersales.parentaftersales.list.get",
    "bg.open.accesstoken.info.get",
];

/// One request as the simulator saw it (no token, no secret).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: Instant,
    pub app_key: Option<String>,
    pub api: Option<String>,
    pub timestamp: Option<i64>,
    pub sign: Option<String>,
    /// The envelope's errorCode, or the HTTP status when no envelope was sent.
    pub outcome: i64,
    pub fault: Option<Fault>,
}

/// Counters.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub requests: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
    /// errorCode (or HTTP status for non-envelope answers) -> count.
    pub outcomes: BTreeMap<i64, u64>,
    pub connections: u64,
}

struct Bucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct AppEntry {
    secret: String,
    bucket: Mutex<Bucket>,
}

struct State {
    apps: HashMap<String, AppEntry>,
    /// access_token -> index into `shops`.
    tokens: HashMap<String, usize>,
    shops: Mutex<Vec<ShopData>>,
    faults: Mutex<FaultState>,
    mutation_rate: Mutex<f64>,
    mutation_rng: Mutex<fastrand::Rng>,
    tolerance: i64,
    clock_offset: i64,
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    connections: AtomicU64,
    outcomes: Mutex<BTreeMap<i64, u64>>,
    records: Mutex<VecDeque<RequestRecord>>,
    cancel: CancellationToken,
}

const MAX_RECORDS: usize = 20_000;

/// Starts simulators.
pub struct Simulator;

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Generates the data, binds `config.listen` and serves until [`SimHandle::shutdown`].
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let now = chrono::Utc::now().timestamp();
        let history = config.history.as_secs() as i64;
        let shops: Vec<ShopData> = config
            .shops
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                ShopData::generate(
                    spec.clone(),
                    config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                    now,
                    history,
                )
            })
            .collect();
        let tokens = config
            .shops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.access_token.clone(), i))
            .collect();
        let apps = config
            .apps
            .iter()
            .map(|a| {
                let qps = f64::from(a.qps.max(1));
                (
                    a.app_key.clone(),
                    AppEntry {
                        secret: a.app_secret.clone(),
                        bucket: Mutex::new(Bucket {
                            tokens: qps,
                            capacity: qps,
                            rate: qps,
                            last: Instant::now(),
                        }),
                    },
                )
            })
            .collect();
        let state = Arc::new(State {
            apps,
            tokens,
            shops: Mutex::new(shops),
            faults: Mutex::new(FaultState::new(config.faults.clone(), config.seed)),
            mutation_rate: Mutex::new(config.mutation_rate),
            mutation_rng: Mutex::new(fastrand::Rng::with_seed(config.seed ^ 0x0d06_f00d)),
            tolerance: config.timestamp_tolerance.as_secs() as i64,
            clock_offset: config.clock_offset_secs,
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            outcomes: Mutex::new(BTreeMap::new()),
            records: Mutex::new(VecDeque::new()),
            cancel: CancellationToken::new(),
        });
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(SimHandle { addr, state, task })
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to put in a shop's `base_url`.
    pub fn router_url(&self) -> String {
        format!("http://{}{}", self.addr, ROUTER_PATH)
    }

    /// Every record as the API would serve it now.
    pub fn ground_truth(&self) -> GroundTruth {
        let shops = self.state.shops.lock();
        GroundTruth {
            shops: shops
                .iter()
                .map(|s| (s.spec.name.clone(), s.truth()))
                .collect(),
        }
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.faults.lock().config = faults;
    }

    /// Forces these faults on the next requests, in order (before any random fault).
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().script.extend(faults);
    }

    pub fn set_mutation_rate(&self, per_request: f64) {
        *self.state.mutation_rate.lock() = per_request.max(0.0);
    }

    /// Applies `n` mutations to `shop` now; returns the changed order numbers.
    pub fn mutate(&self, shop: &str, n: usize) -> Vec<String> {
        let now = chrono::Utc::now().timestamp() + self.state.clock_offset;
        let mut rng = self.state.mutation_rng.lock();
        let mut shops = self.state.shops.lock();
        let Some(data) = shops.iter_mut().find(|s| s.spec.name == shop) else {
            return Vec::new();
        };
        (0..n)
            .filter_map(|_| data.mutate_one(&mut rng, now))
            .collect()
    }

    pub fn stats(&self) -> SimStats {
        SimStats {
            requests: self.state.requests.load(Ordering::SeqCst),
            in_flight: self.state.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.state.max_in_flight.load(Ordering::SeqCst),
            outcomes: self.state.outcomes.lock().clone(),
            connections: self.state.connections.load(Ordering::SeqCst),
        }
    }

    /// Count of answers with this errorCode (or HTTP status).
    pub fn outcome_count(&self, outcome: i64) -> u64 {
        self.state
            .outcomes
            .lock()
            .get(&outcome)
            .copied()
            .unwrap_or(0)
    }

    /// The most recent requests (up to 20 000).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.records.lock().iter().cloned().collect()
    }

    pub fn reset_stats(&self) {
        self.state.requests.store(0, Ordering::SeqCst);
        self.state.max_in_flight.store(0, Ordering::SeqCst);
        self.state.outcomes.lock().clear();
        self.state.records.lock().clear();
    }

    /// Stops accepting, drops every connection and waits for the server task (bounded).
    pub async fn shutdown(mut self) {
        self.state.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.state.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = state.cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "temu-sim accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        state.connections.fetch_add(1, Ordering::Relaxed);
        conns.spawn(serve_connection(stream, state.clone()));
    }
    conns.shutdown().await;
}

/// Serves one connection; a `Reset` fault drops it with SO_LINGER 0 so the peer sees an RST.
async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let kill = Arc::new(Notify::new());
    // A second handle on the same socket, to set SO_LINGER 0 before the last close.
    let dup = stream.into_std().and_then(|std| {
        let dup = std.try_clone()?;
        Ok((TcpStream::from_std(std)?, dup))
    });
    let (stream, dup) = match dup {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "temu-sim cannot prepare connection");
            return;
        }
    };
    let svc_state = state.clone();
    let svc_kill = kill.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = svc_state.clone();
        let kill = svc_kill.clone();
        async move { Ok::<_, Infallible>(router::handle(state, req, kill).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = state.cancel.cancelled() => {}
        _ = kill.notified() => {
            if let Ok(dup) = TcpStream::from_std(dup) {
                let _ = dup.set_zero_linger();
            }
        }
    }
}
