//! The HTTP routes of a syncing daemon: `/status` and `/health` when an expired token parks the
//! streams (and no more calls are made), `POST /sync/<shop>/<stream>` with and without the admin
//! token, `/status` and `/metrics` after a sync, and no secret in the log or the metrics.

use std::time::Duration;

use temu_sync::sim::SimConfig;
use temu_sync::testkit::TestDatabase;

use crate::sync_common::*;
use crate::{setup, wait_for_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_parks_the_streams_without_a_crash_loop() {
    let db = TestDatabase::reserve("e2e_token").expect("test database");
    let mut config = SimConfig::demo(7, 1, 100);
    config.shops[0].token_expires_at = chrono::Utc::now().timestamp() - 86_400;
    let sim = Sim::start(config).await;
    let mut daemon = Daemon::start(&sim, &options(&db, &sim));
    let http = reqwest::Client::new();
    let parked = eventually(Duration::from_secs(60), || async {
        let Ok(resp) = http.get(daemon.url("/status")).send().await else {
            return false;
        };
        let Ok(body) = resp.json::<serde_json::Value>().await else {
            return false;
        };
        body["streams"]
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|v| v["state"] == "parked"))
    })
    .await;
    assert!(parked, "streams parked\n{}", daemon.log_tail(40));
    let status = status_json(&http, &daemon).await;
    let reason = status["streams"][0]["parked_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("3000034"),
        "the reason names the error: {reason}"
    );
    let health = http.get(daemon.url("/health")).send().await.unwrap();
    assert_eq!(
        health.status().as_u16(),
        503,
        "a parked stream fails /health"
    );

    // No hammering: the parked streams make no further calls.
    let before = sim.handle.stats().requests;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = sim.handle.stats().requests;
    assert!(
        after - before <= 1,
        "parked streams kept calling: {before} -> {after}"
    );
    assert!(daemon.still_running(), "no crash loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_and_status_routes() {
    let (db, sim) = setup("e2e_trigger", 200).await;
    let mut opts = options(&db, &sim);
    opts.interval = "1h";
    let daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(wait_for_complete_round(&client, &sim, t0, Duration::from_secs(60)).await);
    let http = reqwest::Client::new();
    let url = daemon.url("/sync/shop-0/orders");
    assert_eq!(post_status(&http, &url, None).await, 401);
    assert_eq!(post_status(&http, &url, Some("wrong")).await, 401);
    let since = db_now(&client).await;
    assert_eq!(post_status(&http, &url, Some(ADMIN_TOKEN)).await, 202);
    let again = post_status(&http, &url, Some(ADMIN_TOKEN)).await;
    assert!(again == 409 || again == 202, "second trigger: {again}");
    let unknown = daemon.url("/sync/nope/orders");
    assert_eq!(post_status(&http, &unknown, Some(ADMIN_TOKEN)).await, 404);
    let triggered = eventually(Duration::from_secs(30), || async {
        succeeded_since(&client, since)
            .await
            .contains_key(&("shop-0".to_string(), "orders".to_string()))
    })
    .await;
    assert!(
        triggered,
        "the triggered run ran although the interval is 1h"
    );
    let status = status_json(&http, &daemon).await;
    let streams = status["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 3);
    for s in streams {
        assert!(s["last_success_at"].is_string(), "{s}");
        assert!(s["lag_seconds"].is_number(), "{s}");
    }
    assert_sync_series_exported(&http, &daemon, &sim).await;

    // The log never shows secrets.
    let log = daemon.log();
    assert!(!log.contains(ADMIN_TOKEN));
    assert!(!log.contains(&sim.config.apps[0].app_secret));
    assert!(!log.contains(&sim.config.shops[0].access_token));
}

/// `POST url`, with `token` as the bearer token when given: the status.
async fn post_status(http: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    let request = http.post(url);
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request
        .send()
        .await
        .expect("POST answered")
        .status()
        .as_u16()
}

/// After a sync, `/metrics` carries the sync series with real values and no secret.
async fn assert_sync_series_exported(http: &reqwest::Client, daemon: &Daemon, sim: &Sim) {
    let metrics = http
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value("temu_sync_sync_runs_total{") >= 3.0,
        "runs counted:\n{metrics}"
    );
    assert!(
        value("temu_sync_sync_records_total{") >= 200.0,
        "records counted"
    );
    assert!(value("temu_sync_sync_pages_total{") >= 3.0, "pages counted");
    assert!(value("temu_sync_sync_run_duration_seconds_count{") >= 3.0);
    assert!(
        metrics.contains("temu_sync_sync_lag_seconds{"),
        "lag exported"
    );
    assert!(value("temu_sync_api_request_duration_seconds_count{") >= 3.0);
    assert!(!metrics.contains(ADMIN_TOKEN) && !metrics.contains(&sim.config.shops[0].access_token));
}

/// `GET /status` of `daemon`, as JSON.
async fn status_json(http: &reqwest::Client, daemon: &Daemon) -> serde_json::Value {
    http.get(daemon.url("/status"))
        .send()
        .await
        .expect("/status answers")
        .json()
        .await
        .expect("/status is JSON")
}
