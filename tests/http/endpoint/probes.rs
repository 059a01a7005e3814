//! The probes: `/health` (pass, fail with 503, HEAD), `/livez` (the supervisor answers or not)
//! and `/readyz` (follows the health snapshot).

use super::*;

#[tokio::test]
async fn health_passes_with_checks() {
    let server = start(healthy()).await;
    let response = get(&client(), &server, "/health").await;
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
    let response = get(&client(), &server, "/health").await;
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
    let response = get(&client(), &server, "/livez").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/health+json");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "pass"}));
    server.stop().await;

    let says_no: Liveness = Arc::new(|_| async { false }.boxed());
    let server = start_with(config(), healthy(), says_no, None).await;
    let response = get(&client(), &server, "/livez").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;

    let never: Liveness = Arc::new(|_| futures_util::future::pending().boxed());
    let server = start_with(config(), healthy(), never, None).await;
    let started = Instant::now();
    let response = get(&client(), &server, "/livez").await;
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
    let response = get(&client, &server, "/readyz").await;
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
    let response = get(&client, &server, "/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["output"]
            .as_str()
            .is_some_and(|o| o.contains("migrations")),
        "{body}"
    );

    health.update_db(|d| d.migrations_applied = true);
    let response = get(&client, &server, "/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_common_headers(&response);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "pass"}));

    health.set_shutting_down();
    let response = get(&client, &server, "/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}
