//! `GET /metrics`: scraped from the real HTTP server after Temu API calls (against the simulator,
//! with a retried 503), sync runs recorded through the recording API, and a health snapshot with
//! pool counters and restarts; the text is parsed and every documented series checked. When
//! `promtool` is installed the scrape must also pass `promtool check metrics`.
//!
//! Every test takes the same scrape ([`scrape`]: the same calls, runs and snapshot, in a world of
//! its own) and checks one family of series (`families.rs`): the format as a whole, sync, Temu
//! API and tokens, database, health and actors — so a broken family names itself.

mod exposition;
mod families;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use exposition::Exposition;
use temu_sync::config::HttpConfig;
use temu_sync::health::{ChildState, Health};
use temu_sync::http::{serve, HttpContext, Liveness};
use temu_sync::metrics::{Metrics, RunResult};
use temu_sync::sim::{Fault, SimConfig, Simulator};
use temu_sync::temu::model::OrderListRequest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::temu_common::*;

fn http_config() -> HttpConfig {
    HttpConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        request_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        max_connections: 32,
        // Tiny: /metrics must be exempt like the probes.
        rate_limit_per_second: 1,
        rate_limit_burst: 1,
        admin_token: None,
    }
}

/// One scrape of `/metrics` and what the endpoint said around it.
struct Scrape {
    text: String,
    exp: Exposition,
    content_type: String,
    /// Statuses of five scrapes in a row under a per-client limit of burst 1 (exempt: all 200).
    burst: Vec<u16>,
    /// Status of `HEAD /metrics`.
    head: u16,
}

/// Records the activity every family reports, serves it, and scrapes it.
async fn scrape() -> Scrape {
    let metrics = Metrics::new();
    let health = Health::new("test");
    record_activity(&metrics, &health).await;
    serve_and_scrape(metrics, health).await
}

/// Temu API calls, sync runs and a health snapshot, recorded into `metrics` and `health`.
async fn record_activity(metrics: &Metrics, health: &Health) {
    // Temu API calls against the simulator: one 503 then success (a retry), then a plain success,
    // then a token check. The client publishes circuit and token state into `health`.
    init_log_capture();
    let sim_cfg = SimConfig::demo(41, 1, 20);
    let sim = Simulator::start(sim_cfg.clone()).await.expect("simulator");
    let (apps, shops) = configs_for(&sim, &sim_cfg);
    let client = observed_client(&apps, &shops, observed_by_both(health, metrics));
    let shop0 = client.shop("shop-0").expect("shop-0 is configured");
    let page = OrderListRequest {
        page_number: 1,
        page_size: 20,
        ..Default::default()
    };
    sim.push_faults([Fault::Http(503)]);
    client
        .list_orders(&shop0, &page)
        .await
        .expect("retried call");
    client.list_orders(&shop0, &page).await.expect("call");
    client.token_info(&shop0).await.expect("token check");

    // Sync runs through the recording API the sync engine uses.
    metrics.init_sync_series("shop-0", "orders");
    metrics.init_sync_series("shop-0", "products");
    metrics.record_run(
        "shop-0",
        "orders",
        RunResult::Success,
        Duration::from_millis(2500),
        3,
        10,
        5,
    );
    metrics.record_run(
        "shop-0",
        "orders",
        RunResult::Failure,
        Duration::from_millis(700),
        1,
        0,
        0,
    );
    metrics.set_lag("shop-0", "orders", 42.0);
    metrics.set_audit_differences("shop-0", "orders", 2);
    metrics.record_checkout_wait(Duration::from_millis(3));

    // A health snapshot: database up with pool counters, one actor restarted twice.
    health.update_db(|db| {
        db.reachable = true;
        db.migrations_applied = true;
        db.last_error = None;
        db.pool.size = 4;
        db.pool.idle = 3;
        db.pool.in_use = 1;
        db.pool.max_size = 30;
        db.pool.checkout_timeouts = 2;
        db.pool.broken_closed = 1;
    });
    health.update_child("db", |c| c.state = ChildState::Running);
    health.update_child("temu", |c| {
        c.state = ChildState::Running;
        c.restarts = 2;
    });
}

/// Serves `metrics` and `health` on a free port and scrapes `/metrics` (after a burst of scrapes
/// that the per-client limit must not touch) and `HEAD /metrics`.
async fn serve_and_scrape(metrics: Metrics, health: Health) -> Scrape {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let liveness: Liveness = Arc::new(|_| Box::pin(async { true }));
    let ctx = HttpContext {
        health,
        liveness,
        config: http_config(),
        metrics: metrics.clone(),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        ctx,
        shutdown.clone(),
        Duration::from_secs(2),
    ));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("http://{addr}/metrics");
    // Exempt from the per-client limit (burst 1 here).
    let mut burst = Vec::new();
    for _ in 0..5 {
        let status = http.get(&url).send().await.expect("scrape").status();
        burst.push(status.as_u16());
    }
    let resp = http.get(&url).send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.expect("body");
    let head = http
        .head(&url)
        .send()
        .await
        .expect("HEAD /metrics")
        .status()
        .as_u16();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Scrape {
        exp: Exposition::parse(&text),
        text,
        content_type,
        burst,
        head,
    }
}

/// The TYPE of each `(name, kind)` in the scrape is `kind`.
fn assert_types(scrape: &Scrape, want: &[(&str, &str)]) {
    for (name, kind) in want {
        assert_eq!(
            scrape.exp.types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}\n{}",
            scrape.text
        );
    }
}

/// `promtool check metrics` on the scrape, when promtool is installed (tests/ops/deploy.rs
/// fails when it is not, so CI always has it).
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("promtool not available ({e}); skipping `promtool check metrics`");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write scrape to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
