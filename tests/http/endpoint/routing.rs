//! Routing and handler outcomes: unknown route 404 and wrong method 405 as problem+json, the
//! proxy's request id echoed, each error class to its status, a panicking handler (500, the server
//! keeps serving), a handler past the request deadline (504), path parameters and capped bodies.

use super::*;

#[tokio::test]
async fn unknown_route_is_404_problem_json() {
    let server = start(healthy()).await;
    let response = get(&client(), &server, "/nope?token=secret").await;
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
    let a = get(&client(), &server, "/health").await;
    let b = get(&client(), &server, "/health").await;
    assert_ne!(header(&a, "x-request-id"), header(&b, "x-request-id"));
    server.stop().await;
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
        let response = get(&client, &server, "/boom").await;
        let body = assert_problem(response, 500).await;
        assert!(!body.to_string().contains("secret=abc"), "{body}");
        // The same client (and its pooled connection) still gets answers.
        let response = get(&client, &server, "/health").await;
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
    let response = get(&client(), &server, "/hang").await;
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
    let response = get(&client, &server, "/echo/us-main/orders").await;
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
