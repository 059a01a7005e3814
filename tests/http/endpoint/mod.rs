//! End-to-end tests of the HTTP endpoint: each test starts the real server on 127.0.0.1:0 and talks
//! to it with reqwest or a raw TCP stream. Every wait is bounded; negative checks ("not served yet")
//! use a short window and are always followed by the positive outcome.
//!
//! This file holds the shared server harness; the tests are by concern: `probes`, `routing`,
//! `limits`, `shutdown`, `logs`.

mod limits;
mod logs;
mod probes;
mod routing;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use temu_sync::config::HttpConfig;
use temu_sync::health::Health;
use temu_sync::http::{
    serve, serve_with_router, ApiError, HandlerResult, HttpContext, Liveness, Req, Router,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything that should happen "promptly".
const BOUND: Duration = Duration::from_secs(10);

struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Cancels and waits for `serve` to return (bounded).
    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(BOUND, self.handle)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task did not panic");
        assert!(result.is_ok(), "serve failed: {result:?}");
    }
}

fn config() -> HttpConfig {
    HttpConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        request_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        max_connections: 32,
        rate_limit_per_second: 1000,
        rate_limit_burst: 1000,
        admin_token: None,
    }
}

fn healthy() -> Health {
    let health = Health::new("test");
    health.update_db(|d| {
        d.reachable = true;
        d.migrations_applied = true;
        d.last_error = None;
    });
    health
}

fn alive() -> Liveness {
    Arc::new(|_deadline| async { true }.boxed())
}

async fn start_with(
    config: HttpConfig,
    health: Health,
    liveness: Liveness,
    router: Option<Router>,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx = HttpContext {
        health,
        liveness,
        config,
        metrics: temu_sync::metrics::Metrics::new(),
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let drain = Duration::from_secs(5);
    let handle = match router {
        Some(router) => tokio::spawn(serve_with_router(listener, ctx, router, token, drain)),
        None => tokio::spawn(serve(listener, ctx, token, drain)),
    };
    TestServer {
        addr,
        shutdown,
        handle,
    }
}

async fn start(health: Health) -> TestServer {
    start_with(config(), health, alive(), None).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(BOUND)
        .build()
        .expect("client")
}

/// `GET path` on `server` with `http`.
async fn get(http: &reqwest::Client, server: &TestServer, path: &str) -> reqwest::Response {
    http.get(server.url(path)).send().await.expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ascii header")
}

fn assert_common_headers(response: &reqwest::Response) {
    let process_time: f64 = header(response, "x-process-time")
        .parse()
        .expect("X-Process-Time is a number of seconds");
    assert!((0.0..5.0).contains(&process_time), "{process_time}");
    let request_id = header(response, "x-request-id");
    assert!(!request_id.is_empty());
}

/// Checks an RFC 9457 body and returns it.
async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    assert_common_headers(&response);
    let request_id = header(&response, "x-request-id").to_string();
    let body: serde_json::Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(body["detail"].as_str().is_some(), "{body}");
    assert!(body["instance"].as_str().is_some(), "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

/// A handler result: 200 with `text` as the body.
fn ok_text(text: &str) -> HandlerResult {
    Ok(Response::new(Full::new(bytes::Bytes::from(
        text.to_string(),
    ))))
}
