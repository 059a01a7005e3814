//! End-to-end tests of the HTTP endpoint: each test starts the real server on 127.0.0.1:0 and talks
//! to it with reqwest or a raw TCP stream. Every wait is bounded; negative checks ("not served yet")
//! use a short window and are always followed by the positive outcome.

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

// ---------------------------------------------------------------------------------------------
// /health, /livez, /readyz

#[tokio::test]
async fn health_passes_with_checks() {
    let server = start(healthy()).await;
    let response = client()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/health+json");
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_common_headers(&response);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "pass");
    assert_eq!(body["checks"]["postgres:connections"][0]["status"], "pass");
    server.stop().await;
}

#[tokio::test]
async fn health_fails_with_503_when_the_database_is_unreachable() {
    let health = healthy();
    health.update_db(|d| {
        d.reachable = false;
        d.last_error = Some("connection refused".into());
    });
    let server = start(health).await;
    let response = client()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "content-type"), "application/health+json");
    assert_common_headers(&response);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "fail");
    assert!(body.to_string().contains("connection refused"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn head_health_has_the_status_and_headers_but_no_body() {
    let health = healthy();
    let server = start(health.clone()).await;
    let client = client();
    for (reachable, status) in [(true, 200), (false, 503)] {
        health.update_db(|d| d.reachable = reachable);
        let get = client.get(server.url("/health")).send().await.expect("get");
        let get_type = header(&get, "content-type").to_string();
        let get_len = get.bytes().await.expect("body").len();
        let head = client
            .head(server.url("/health"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status().as_u16(), status);
        assert_eq!(header(&head, "content-type"), get_type);
        assert_eq!(header(&head, "cache-control"), "no-store");
        assert_common_headers(&head);
        let advertised: usize = header(&head, "content-length").parse().expect("length");
        assert!(advertised > 0);
        // The report carries timestamps, so allow for a few bytes of difference.
        assert!(
            advertised.abs_diff(get_len) < 64,
            "{advertised} vs {get_len}"
        );
        assert!(head.bytes().await.expect("body").is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn livez_is_200_when_the_supervisor_answers_and_503_when_it_does_not() {
    let server = start(healthy()).await;
    let response = client()
        .get(server.url("/livez"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/health+json");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "pass"}));
    server.stop().await;

    let says_no: Liveness = Arc::new(|_| async { false }.boxed());
    let server = start_with(config(), healthy(), says_no, None).await;
    let response = client()
        .get(server.url("/livez"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;

    let never: Liveness = Arc::new(|_| futures_util::future::pending().boxed());
    let server = start_with(config(), healthy(), never, None).await;
    let started = Instant::now();
    let response = client()
        .get(server.url("/livez"))
        .send()
        .await
        .expect("request");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_common_headers(&response);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "fail");
    assert!(
        body["output"]
            .as_str()
            .is_some_and(|o| o.contains("did not answer")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn readyz_follows_the_snapshot() {
    let health = Health::new("test");
    let server = start(health.clone()).await;
    let client = client();
    let response = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "fail");
    assert!(
        body["output"]
            .as_str()
            .is_some_and(|o| o.contains("unreachable")),
        "{body}"
    );

    health.update_db(|d| {
        d.reachable = true;
        d.last_error = None;
    });
    let response = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["output"]
            .as_str()
            .is_some_and(|o| o.contains("migrations")),
        "{body}"
    );

    health.update_db(|d| d.migrations_applied = true);
    let response = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_common_headers(&response);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "pass"}));

    health.set_shutting_down();
    let response = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Routing errors and error classes

#[tokio::test]
async fn unknown_route_is_404_problem_json() {
    let server = start(healthy()).await;
    let response = client()
        .get(server.url("/nope?token=secret"))
        .send()
        .await
        .expect("request");
    let body = assert_problem(response, 404).await;
    assert_eq!(body["instance"], "/nope");
    assert_eq!(body["type"], "urn:temu-sync:problem:not-found");
    server.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let server = start(healthy()).await;
    let response = client()
        .post(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(&response, "allow"), "GET, HEAD");
    let body = assert_problem(response, 405).await;
    assert_eq!(body["instance"], "/health");
    server.stop().await;
}

#[tokio::test]
async fn request_id_from_a_proxy_is_echoed() {
    let server = start(healthy()).await;
    let response = client()
        .get(server.url("/health"))
        .header("x-request-id", "edge-42")
        .send()
        .await
        .expect("request");
    assert_eq!(header(&response, "x-request-id"), "edge-42");
    let a = client()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    let b = client()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_ne!(header(&a, "x-request-id"), header(&b, "x-request-id"));
    server.stop().await;
}

fn ok_text(text: &str) -> HandlerResult {
    Ok(Response::new(Full::new(bytes::Bytes::from(
        text.to_string(),
    ))))
}

#[tokio::test]
async fn error_classes_map_to_status_codes() {
    let router = Router::standard()
        .route(Method::GET, "/fail/db", |_req: Req| async {
            Err(ApiError::DatabaseUnavailable("pool timed out".into()))
        })
        .route(Method::GET, "/fail/upstream", |_req: Req| async {
            Err(ApiError::Upstream("Temu timed out".into()))
        })
        .route(Method::GET, "/fail/limited", |_req: Req| async {
            Err(ApiError::RateLimited {
                retry_after: Duration::from_millis(2500),
            })
        })
        .route(Method::GET, "/fail/unauthorized", |_req: Req| async {
            Err(ApiError::Unauthorized("missing bearer token".into()))
        })
        .route(Method::GET, "/fail/forbidden", |_req: Req| async {
            Err(ApiError::Forbidden("control routes disabled".into()))
        })
        .route(Method::GET, "/fail/conflict", |_req: Req| async {
            Err(ApiError::Conflict("already running".into()))
        })
        .route(Method::GET, "/fail/bad", |_req: Req| async {
            Err(ApiError::BadRequest("bad stream".into()))
        })
        .route(Method::GET, "/fail/missing", |_req: Req| async {
            Err(ApiError::NotFound("no such shop".into()))
        })
        .route(Method::GET, "/fail/internal", |_req: Req| async {
            Err(ApiError::Internal(
                "password=hunter2 leaked in a driver error".into(),
            ))
        });
    let server = start_with(config(), healthy(), alive(), Some(router)).await;
    let client = client();
    let cases = [
        (
            "/fail/db",
            503,
            "urn:temu-sync:problem:database-unavailable",
        ),
        ("/fail/upstream", 504, "urn:temu-sync:problem:upstream"),
        ("/fail/limited", 429, "urn:temu-sync:problem:rate-limited"),
        (
            "/fail/unauthorized",
            401,
            "urn:temu-sync:problem:unauthorized",
        ),
        ("/fail/forbidden", 403, "urn:temu-sync:problem:forbidden"),
        ("/fail/conflict", 409, "urn:temu-sync:problem:conflict"),
        ("/fail/bad", 400, "urn:temu-sync:problem:bad-request"),
        ("/fail/missing", 404, "urn:temu-sync:problem:not-found"),
        ("/fail/internal", 500, "urn:temu-sync:problem:internal"),
    ];
    for (path, status, kind) in cases {
        let response = client.get(server.url(path)).send().await.expect("request");
        match status {
            429 => assert_eq!(header(&response, "retry-after"), "3"),
            401 => assert_eq!(header(&response, "www-authenticate"), "Bearer"),
            _ => {}
        }
        let body = assert_problem(response, status).await;
        assert_eq!(body["type"], kind, "{path}");
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn handler_panic_is_a_500_and_the_server_keeps_serving() {
    let router = Router::standard().route(Method::GET, "/boom", |_req: Req| async {
        if std::hint::black_box(true) {
            panic!("handler exploded with secret=abc");
        }
        ok_text("unreachable")
    });
    let server = start_with(config(), healthy(), alive(), Some(router)).await;
    let client = client();
    for _ in 0..3 {
        let response = client
            .get(server.url("/boom"))
            .send()
            .await
            .expect("request");
        let body = assert_problem(response, 500).await;
        assert!(!body.to_string().contains("secret=abc"), "{body}");
        // The same client (and its pooled connection) still gets answers.
        let response = client
            .get(server.url("/health"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_handler_past_the_request_deadline_is_a_504() {
    let router = Router::standard().route(Method::GET, "/hang", |_req: Req| async {
        futures_util::future::pending::<()>().await;
        ok_text("unreachable")
    });
    let mut config = config();
    config.request_timeout = Duration::from_millis(300);
    let server = start_with(config, healthy(), alive(), Some(router)).await;
    let started = Instant::now();
    let response = client()
        .get(server.url("/hang"))
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let body = assert_problem(response, 504).await;
    assert_eq!(body["type"], "urn:temu-sync:problem:deadline-exceeded");
    server.stop().await;
}

#[tokio::test]
async fn path_parameters_and_capped_bodies() {
    let router = Router::standard()
        .route(
            Method::GET,
            "/echo/{shop}/{stream}",
            |req: Req| async move {
                let shop = req.param("shop").unwrap_or_default().to_string();
                let stream = req.param("stream").unwrap_or_default().to_string();
                ok_text(&format!("{shop}:{stream}"))
            },
        )
        .route(Method::POST, "/upload", |mut req: Req| async move {
            let body = req.body_bytes(16).await?;
            ok_text(&body.len().to_string())
        });
    let server = start_with(config(), healthy(), alive(), Some(router)).await;
    let client = client();
    let response = client
        .get(server.url("/echo/us-main/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("text"), "us-main:orders");

    let response = client
        .post(server.url("/upload"))
        .body("small")
        .send()
        .await
        .expect("request");
    assert_eq!(response.text().await.expect("text"), "5");
    let response = client
        .post(server.url("/upload"))
        .body(vec![b'x'; 10_000])
        .send()
        .await
        .expect("request");
    assert_problem(response, 413).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limit

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_but_probes_are_never_limited() {
    let mut config = config();
    config.rate_limit_per_second = 1;
    config.rate_limit_burst = 3;
    let server = start_with(config, healthy(), alive(), None).await;
    let client = client();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..8 {
        let response = client
            .get(server.url("/nope"))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some(response);
        }
    }
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    let retry_after: u64 = header(&limited, "retry-after")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let body = assert_problem(limited, 429).await;
    assert_eq!(body["type"], "urn:temu-sync:problem:rate-limited");

    for path in ["/health", "/livez", "/readyz"] {
        for _ in 0..20 {
            let response = client.get(server.url(path)).send().await.expect("request");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Connection handling (raw TCP)

/// Reads one HTTP/1.1 response (head and Content-Length body) and returns the head and the body.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, buf[head_end..head_end + length].to_vec()))
}

async fn raw_get(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let (head, _) = tokio::time::timeout(BOUND, read_response(stream))
        .await
        .expect("response in time")
        .expect("response");
    head
}

/// Waits until the server closes `stream` (EOF or reset); returns how long that took.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                // hyper may answer 408 before closing; keep reading until the close.
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    started.elapsed()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut config = config();
    config.header_read_timeout = Duration::from_millis(300);
    let server = start_with(config, healthy(), alive(), None).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .expect("write");
    let took = closed_within(&mut stream, BOUND).await;
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // The server is fine.
    let response = client()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut config = config();
    config.header_read_timeout = Duration::from_millis(300);
    let server = start_with(config, healthy(), alive(), None).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = raw_get(&mut stream, "/health").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    closed_within(&mut stream, BOUND).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let mut config = config();
    config.max_connections = 2;
    config.header_read_timeout = Duration::from_secs(30);
    let server = start_with(config, healthy(), alive(), None).await;

    // Two connections, each served once and then held open (keep-alive).
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    assert!(raw_get(&mut first, "/health")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(raw_get(&mut second, "/health")
        .await
        .starts_with("HTTP/1.1 200"));

    // A third connects (the kernel backlog takes it) but is not served while both are open.
    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let early = tokio::time::timeout(Duration::from_millis(500), read_response(&mut third)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    // Closing one frees its slot and the waiting request is answered.
    drop(first);
    let (head, _) = tokio::time::timeout(BOUND, read_response(&mut third))
        .await
        .expect("served once a slot is free")
        .expect("response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The second connection still works.
    assert!(raw_get(&mut second, "/health")
        .await
        .starts_with("HTTP/1.1 200"));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown

/// A route that signals when it starts and finishes only when released.
fn gated_router(started: Arc<Notify>, release: Arc<Notify>) -> Router {
    Router::standard().route(Method::GET, "/slow", move |_req: Req| {
        let started = started.clone();
        let release = release.clone();
        async move {
            started.notify_one();
            release.notified().await;
            ok_text("done")
        }
    })
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_in_flight_requests_finish() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let router = gated_router(started.clone(), release.clone());
    let server = start_with(config(), healthy(), alive(), Some(router)).await;
    let in_flight = tokio::spawn(client().get(server.url("/slow")).send());
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");

    server.shutdown.cancel();
    // New connections are refused once the listener is closed.
    tokio::time::timeout(BOUND, async {
        loop {
            match TcpStream::connect(server.addr).await {
                Err(_) => break,
                Ok(stream) => {
                    drop(stream);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
    .await
    .expect("listener closed");
    assert!(
        !server.handle.is_finished(),
        "serve waits for the in-flight request"
    );

    release.notify_one();
    let response = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("in-flight request finishes")
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("text"), "done");
    server.stop().await;
}

#[tokio::test]
async fn the_drain_is_bounded_by_drain_timeout() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let router = gated_router(started.clone(), release);
    let mut config = config();
    config.request_timeout = Duration::from_secs(60);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx = HttpContext {
        health: healthy(),
        liveness: alive(),
        config,
        metrics: temu_sync::metrics::Metrics::new(),
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve_with_router(
        listener,
        ctx,
        router,
        shutdown.clone(),
        Duration::from_millis(300),
    ));
    let in_flight = tokio::spawn(client().get(format!("http://{addr}/slow")).send());
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");

    let cancelled_at = Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(BOUND, handle)
        .await
        .expect("serve returns despite a request that never finishes")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    let took = cancelled_at.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // The abandoned request fails instead of hanging.
    let outcome = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("client sees the close")
        .expect("task");
    assert!(outcome.is_err(), "{outcome:?}");
}

// ---------------------------------------------------------------------------------------------
// Logs

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// `#[tokio::test]` runs every task of the server on this thread, so a thread-local subscriber
// sees the server's events.
#[tokio::test]
async fn each_request_is_logged_without_headers_or_query_and_probes_stay_quiet() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start(healthy()).await;
    let client = client();
    let response = client
        .get(server.url("/nope?access_token=query-secret"))
        .header("authorization", "Bearer header-secret")
        .send()
        .await
        .expect("request");
    let request_id = header(&response, "x-request-id").to_string();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line for {request_id}: {text}"));
    for field in [
        "method=GET",
        "path=/nope",
        "status=404",
        "duration_ms=",
        "INFO",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(!text.contains("secret"), "{text}");
    assert!(
        !text.contains("path=/health"),
        "probes are logged at debug: {text}"
    );
}
