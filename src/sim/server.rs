//! The simulator's HTTP server (hyper 1): the router endpoint with the real envelope.
//!
//! Owns: accepting connections, checking each request as the real router does — app key
//! (3000024), QPS per app key (4000004), timestamp ±tolerance (3000011), signature (3000001),
//! API type (3000003), token (3000031 unknown, 3000033 other app's, 3000034 expired) — then faults,
//! then the query. Also counts what it saw (in-flight high-water mark, codes) for tests.
//! Must not: block: data sits behind a short `parking_lot` lock, every wait is a tokio timer that
//! shutdown cancels.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use md5::{Digest, Md5};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::data::{GroundTruth, ShopData};
use super::faults::{Fault, FaultConfig, FaultState};
use super::SimConfig;

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
        async move { Ok::<_, Infallible>(handle(state, req, kill).await) }
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

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

fn envelope_ok(result: Value) -> Value {
    json!({
        "success": true,
        "errorCode": 1_000_000,
        "errorMsg": "",
        "requestId": format!("us-sim-{}", fastrand::u64(..)),
        "result": result
    })
}

fn envelope_err(code: i64, msg: &str) -> Value {
    json!({
        "success": false,
        "errorCode": code,
        "errorMsg": msg,
        "requestId": format!("us-sim-{}", fastrand::u64(..)),
        "result": null
    })
}

struct InFlightGuard<'a>(&'a State);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What was parsed out of a request, for the record.
#[derive(Default)]
struct Seen {
    app_key: Option<String>,
    api: Option<String>,
    timestamp: Option<i64>,
    sign: Option<String>,
}

async fn handle(state: Arc<State>, req: Request<Incoming>, kill: Arc<Notify>) -> Resp {
    if req.method() != hyper::Method::POST || req.uri().path() != ROUTER_PATH {
        return respond(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#);
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let now_in = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now_in, Ordering::SeqCst);
    let _guard = InFlightGuard(&state);

    let body = tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(req.into_body(), 1 << 20).collect(),
    )
    .await;
    let body = match body {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => {
            return finish(
                &state,
                Seen::default(),
                None,
                400,
                respond(StatusCode::BAD_REQUEST, ""),
            )
        }
    };

    let (fault, latency) = state.faults.lock().draw();
    if !latency.is_zero() && !sleep_or_cancel(&state, latency).await {
        return respond(StatusCode::SERVICE_UNAVAILABLE, "");
    }
    let mut seen = Seen::default();
    match &fault {
        Some(Fault::Http(status)) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut r = respond(
                code,
                format!("<html><body><h1>{status}</h1>gateway error</body></html>"),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html"),
            );
            return finish(&state, seen, fault.clone(), i64::from(*status), r);
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = respond(
                StatusCode::TOO_MANY_REQUESTS,
                envelope_err(4_000_004, "RATE_LIMIT_EXCEED_EXCEPTION").to_string(),
            );
            if let Ok(v) = hyper::header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            return finish(&state, seen, fault.clone(), 429, r);
        }
        Some(Fault::Reset) => {
            finish(&state, seen, fault.clone(), 0, respond(StatusCode::OK, ""));
            kill.notify_one();
            // Never answer: the connection task drops the socket with an RST.
            std::future::pending::<()>().await;
            return respond(StatusCode::OK, "");
        }
        Some(Fault::Stall(d)) if !sleep_or_cancel(&state, *d).await => {
            return respond(StatusCode::SERVICE_UNAVAILABLE, "");
        }
        _ => {}
    }

    let (code, value) = process(&state, &body, &mut seen, fault.as_ref());
    let text = value.to_string();
    let text = match fault {
        Some(Fault::Truncated) => text[..text.len() / 2].to_string(),
        Some(Fault::Malformed) => "<html><body>Bad Gateway</body></html>".to_string(),
        _ => text,
    };
    finish(&state, seen, fault, code, respond(StatusCode::OK, text))
}

async fn sleep_or_cancel(state: &State, d: Duration) -> bool {
    tokio::select! {
        _ = state.cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

fn finish(state: &State, seen: Seen, fault: Option<Fault>, outcome: i64, resp: Resp) -> Resp {
    *state.outcomes.lock().entry(outcome).or_insert(0) += 1;
    let mut records = state.records.lock();
    if records.len() >= MAX_RECORDS {
        records.pop_front();
    }
    records.push_back(RequestRecord {
        at: Instant::now(),
        app_key: seen.app_key,
        api: seen.api,
        timestamp: seen.timestamp,
        sign: seen.sign,
        outcome,
        fault,
    });
    resp
}

/// Checks a request like the router does and answers it: (errorCode, envelope).
fn process(state: &State, body: &[u8], seen: &mut Seen, fault: Option<&Fault>) -> (i64, Value) {
    let err = |code: i64, msg: &str| (code, envelope_err(code, msg));
    let raw: BTreeMap<String, &RawValue> = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(_) => return err(2_000_000, "request body is not a JSON object"),
    };
    let text = |k: &str| -> Option<String> {
        raw.get(k)
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    };
    seen.app_key = text("app_key");
    seen.api = text("type");
    seen.sign = text("sign");
    seen.timestamp = raw.get("timestamp").and_then(|v| {
        serde_json::from_str::<i64>(v.get())
            .ok()
            .or_else(|| serde_json::from_str::<String>(v.get()).ok()?.parse().ok())
    });

    let Some(app) = seen.app_key.as_deref().and_then(|k| state.apps.get(k)) else {
        return err(3_000_024, "app_key is invalid");
    };
    if !app.bucket.lock().take() {
        return err(4_000_004, "RATE_LIMIT_EXCEED_EXCEPTION");
    }
    let now = chrono::Utc::now().timestamp() + state.clock_offset;
    match seen.timestamp {
        Some(ts) if (now - ts).abs() <= state.tolerance => {}
        _ => return err(3_000_011, "timestamp is invalid or expired"),
    }
    match &seen.sign {
        Some(sign) if *sign == expected_sign(&raw, &app.secret) => {}
        _ => return err(3_000_001, "sign is invalid"),
    }
    let api = seen.api.clone().unwrap_or_default();
    if !KNOWN_TYPES.contains(&api.as_str()) {
        return err(3_000_003, "type is not exist");
    }
    if let Some(Fault::ApiError(code)) = fault {
        return err(*code, "injected error");
    }
    let Some(&shop_idx) = text("access_token")
        .as_deref()
        .and_then(|t| state.tokens.get(t))
    else {
        return err(3_000_031, "access_token is invalid");
    };

    let params: Map<String, Value> = raw
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v.get()).ok()?)))
        .collect();
    let mut shops = state.shops.lock();
    let Some(shop) = shops.get_mut(shop_idx) else {
        return err(3_000_031, "access_token is invalid");
    };
    if seen.app_key.as_deref() != Some(shop.spec.app_key.as_str()) {
        return err(3_000_033, "access_token does not belong to this app");
    }
    if shop.spec.token_expires_at <= now {
        return err(3_000_034, "access_token is expired");
    }
    let result = match api.as_str() {
        "bg.order.list.v2.get" => shop.order_list(&params),
        "bg.order.detail.v2.get" => shop.order_detail(&params),
        "bg.local.goods.list.query" => shop.goods_list(&params),
        "bg.aftersales.parentaftersales.list.get" => shop.aftersales_list(&params),
        _ => Ok(shop.token_info()),
    };
    if api == "bg.order.list.v2.get" {
        // Live changes while a sync pages: on average `mutation_rate` per order-list request.
        let rate = *state.mutation_rate.lock();
        if rate > 0.0 {
            let mut rng = state.mutation_rng.lock();
            let mut n = rate.floor() as usize;
            if rng.f64() < rate.fract() {
                n += 1;
            }
            for _ in 0..n {
                shop.mutate_one(&mut rng, now);
            }
        }
    }
    match result {
        Ok(value) => (1_000_000, envelope_ok(value)),
        Err((code, msg)) => err(code, &msg),
    }
}

/// The documented signature, computed from the bytes received: keys sorted, `sign` left out,
/// strings unescaped, everything else (numbers, booleans, arrays, objects) as sent.
fn expected_sign(raw: &BTreeMap<String, &RawValue>, secret: &str) -> String {
    let mut text = String::from(secret);
    for (key, value) in raw {
        if key == "sign" || value.get() == "null" {
            continue;
        }
        text.push_str(key);
        match serde_json::from_str::<String>(value.get()) {
            Ok(s) => text.push_str(&s),
            Err(_) => text.push_str(value.get()),
        }
    }
    text.push_str(secret);
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[doc(hidden)]
pub fn expected_sign_for_tests(body: &[u8], secret: &str) -> Option<String> {
    let raw: BTreeMap<String, &RawValue> = serde_json::from_slice(body).ok()?;
    Some(expected_sign(&raw, secret))
}
