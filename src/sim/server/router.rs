//! The router endpoint: one request checked as the real router checks it, then answered.
//!
//! Owns: the order of the checks — body, injected latency and transport faults, then app key
//! (3000024), QPS per app key (4000004), timestamp ±tolerance (3000011), signature (3000001), API
//! type (3000003), injected API errors, token (3000031 unknown, 3000033 other app's, 3000034
//! expired) — the query, live mutation while orders are paged, and the record of each request.
//! Must not: share the client's signing code (the signature is computed here from the
//! documentation), or wait without a timer that shutdown cancels.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use md5::{Digest, Md5};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use super::super::data::ShopData;
use super::super::faults::Fault;
use super::{RequestRecord, State, KNOWN_TYPES, MAX_RECORDS, ROUTER_PATH};

pub(super) type Resp = Response<Full<Bytes>>;

/// An envelope answer: (errorCode, envelope).
type Answer = (i64, Value);

/// The largest request body read, and how long reading it may take.
const MAX_BODY: usize = 1 << 20;
const BODY_DEADLINE: Duration = Duration::from_secs(10);

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

fn envelope(success: bool, code: i64, msg: &str, result: Value) -> Value {
    json!({
        "success": success,
        "errorCode": code,
        "errorMsg": msg,
        "requestId": format!("us-sim-{}", fastrand::u64(..)),
        "result": result
    })
}

fn envelope_err(code: i64, msg: &str) -> Value {
    envelope(false, code, msg, Value::Null)
}

/// An error answer of the router.
fn refuse(code: i64, msg: &str) -> Answer {
    (code, envelope_err(code, msg))
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

/// Answers one HTTP request; `kill` asks the connection task to drop the socket with an RST.
pub(super) async fn handle(state: Arc<State>, req: Request<Incoming>, kill: Arc<Notify>) -> Resp {
    if req.method() != hyper::Method::POST || req.uri().path() != ROUTER_PATH {
        return respond(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#);
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let now_in = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now_in, Ordering::SeqCst);
    let _guard = InFlightGuard(&state);

    let Some(body) = read_body(req).await else {
        let resp = respond(StatusCode::BAD_REQUEST, "");
        return finish(&state, Seen::default(), None, 400, resp);
    };
    let (fault, latency) = state.faults.lock().draw();
    if !latency.is_zero() && !sleep_or_cancel(&state, latency).await {
        return respond(StatusCode::SERVICE_UNAVAILABLE, "");
    }
    if let Some(resp) = answer_with_fault(&state, fault.as_ref(), &kill).await {
        return resp;
    }
    let mut seen = Seen::default();
    let (code, value) = match process(&state, &body, &mut seen, fault.as_ref()) {
        Ok(result) => (1_000_000, envelope(true, 1_000_000, "", result)),
        Err(answer) => answer,
    };
    let text = value.to_string();
    let text = match fault {
        Some(Fault::Truncated) => text[..text.len() / 2].to_string(),
        Some(Fault::Malformed) => "<html><body>Bad Gateway</body></html>".to_string(),
        _ => text,
    };
    finish(&state, seen, fault, code, respond(StatusCode::OK, text))
}

/// The whole body, at most [`MAX_BODY`] bytes within [`BODY_DEADLINE`]; `None` otherwise.
async fn read_body(req: Request<Incoming>) -> Option<Bytes> {
    let body = tokio::time::timeout(
        BODY_DEADLINE,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await;
    match body {
        Ok(Ok(collected)) => Some(collected.to_bytes()),
        _ => None,
    }
}

/// The answer of a fault that replaces the router's: a gateway error page, a 429, a reset
/// connection, or a stall that shutdown cut short. `None`: the request goes on to the checks.
async fn answer_with_fault(state: &State, fault: Option<&Fault>, kill: &Notify) -> Option<Resp> {
    let seen = Seen::default();
    match fault {
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
            Some(finish(state, seen, fault.cloned(), i64::from(*status), r))
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = respond(
                StatusCode::TOO_MANY_REQUESTS,
                envelope_err(4_000_004, "RATE_LIMIT_EXCEED_EXCEPTION").to_string(),
            );
            if let Ok(v) = hyper::header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            Some(finish(state, seen, fault.cloned(), 429, r))
        }
        Some(Fault::Reset) => {
            finish(state, seen, fault.cloned(), 0, respond(StatusCode::OK, ""));
            kill.notify_one();
            // Never answer: the connection task drops the socket with an RST.
            std::future::pending::<()>().await;
            Some(respond(StatusCode::OK, ""))
        }
        Some(Fault::Stall(d)) if !sleep_or_cancel(state, *d).await => {
            Some(respond(StatusCode::SERVICE_UNAVAILABLE, ""))
        }
        _ => None,
    }
}

async fn sleep_or_cancel(state: &State, d: Duration) -> bool {
    tokio::select! {
        _ = state.cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Counts the outcome and keeps the record of the request (the last [`MAX_RECORDS`]).
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

/// A request that passed the checks up to the shop: its API, its shop and the server's clock.
struct Checked {
    api: String,
    shop_idx: usize,
    now: i64,
}

/// Checks a request like the router does and runs its query: the result, or the error answer.
fn process(
    state: &State,
    body: &[u8],
    seen: &mut Seen,
    fault: Option<&Fault>,
) -> Result<Value, Answer> {
    let raw = parse_request(body, seen)?;
    let Checked { api, shop_idx, now } = check(state, &raw, seen, fault)?;
    let params: Map<String, Value> = raw
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v.get()).ok()?)))
        .collect();
    let mut shops = state.shops.lock();
    let Some(shop) = shops.get_mut(shop_idx) else {
        return Err(refuse(3_000_031, "access_token is invalid"));
    };
    if seen.app_key.as_deref() != Some(shop.spec.app_key.as_str()) {
        return Err(refuse(
            3_000_033,
            "access_token does not belong to this app",
        ));
    }
    if shop.spec.token_expires_at <= now {
        return Err(refuse(3_000_034, "access_token is expired"));
    }
    // The token may call only the APIs of its apiScopeList (the token check itself always).
    if api != "bg.open.accesstoken.info.get" && !shop.spec.scopes.contains(&api) {
        return Err(refuse(
            5_000_000,
            &format!("not authorized: the access token has no permission for {api}"),
        ));
    }
    let result = query(shop, &api, &params);
    if api == "bg.order.list.v2.get" {
        mutate_while_paging(state, shop, now);
    }
    result.map_err(|(code, msg)| refuse(code, &msg))
}

/// The body as a JSON object of raw values; fills `seen` with the fields it names.
fn parse_request<'b>(
    body: &'b [u8],
    seen: &mut Seen,
) -> Result<BTreeMap<String, &'b RawValue>, Answer> {
    let raw: BTreeMap<String, &RawValue> = serde_json::from_slice(body)
        .map_err(|_| refuse(2_000_000, "request body is not a JSON object"))?;
    seen.app_key = text_field(&raw, "app_key");
    seen.api = text_field(&raw, "type");
    seen.sign = text_field(&raw, "sign");
    seen.timestamp = raw.get("timestamp").and_then(|v| {
        serde_json::from_str::<i64>(v.get())
            .ok()
            .or_else(|| serde_json::from_str::<String>(v.get()).ok()?.parse().ok())
    });
    Ok(raw)
}

fn text_field(raw: &BTreeMap<String, &RawValue>, key: &str) -> Option<String> {
    raw.get(key)
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
}

/// App key, QPS, timestamp, signature, API type, injected API error, token — in the router's
/// order.
fn check(
    state: &State,
    raw: &BTreeMap<String, &RawValue>,
    seen: &Seen,
    fault: Option<&Fault>,
) -> Result<Checked, Answer> {
    let Some(app) = seen.app_key.as_deref().and_then(|k| state.apps.get(k)) else {
        return Err(refuse(3_000_024, "app_key is invalid"));
    };
    if !app.bucket.lock().take() {
        return Err(refuse(4_000_004, "RATE_LIMIT_EXCEED_EXCEPTION"));
    }
    let now = chrono::Utc::now().timestamp() + state.clock_offset;
    match seen.timestamp {
        Some(ts) if (now - ts).abs() <= state.tolerance => {}
        _ => return Err(refuse(3_000_011, "timestamp is invalid or expired")),
    }
    match &seen.sign {
        Some(sign) if *sign == expected_sign(raw, &app.secret) => {}
        _ => return Err(refuse(3_000_001, "sign is invalid")),
    }
    let api = seen.api.clone().unwrap_or_default();
    if !KNOWN_TYPES.contains(&api.as_str()) {
        return Err(refuse(3_000_003, "type is not exist"));
    }
    if let Some(Fault::ApiError(code)) = fault {
        return Err(refuse(*code, "injected error"));
    }
    let Some(&shop_idx) = text_field(raw, "access_token")
        .as_deref()
        .and_then(|t| state.tokens.get(t))
    else {
        return Err(refuse(3_000_031, "access_token is invalid"));
    };
    Ok(Checked { api, shop_idx, now })
}

fn query(
    shop: &ShopData,
    api: &str,
    params: &Map<String, Value>,
) -> Result<Value, super::super::data::QueryError> {
    match api {
        "bg.order.list.v2.get" => shop.order_list(params),
        "bg.order.detail.v2.get" => shop.order_detail(params),
        "bg.local.goods.list.query" => shop.goods_list(params),
        "bg.aftersales.parentaftersales.list.get" => shop.aftersales_list(params),
        _ => Ok(shop.token_info()),
    }
}

/// Live changes while a sync pages: on average `mutation_rate` per order-list request.
fn mutate_while_paging(state: &State, shop: &mut ShopData, now: i64) {
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
