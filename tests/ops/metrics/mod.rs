//! `GET /metrics`: scraped from the real HTTP server after Temu API calls (against the simulator,
//! with a retried 503), sync runs recorded through the recording API, and a health snapshot with
//! pool counters and restarts; the text is parsed and every documented series checked. When
//! `promtool` is installed the scrape must also pass `promtool check metrics`.

mod temu_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use temu_common::*;
use temu_sync::config::HttpConfig;
use temu_sync::health::{ChildState, Health};
use temu_sync::http::{serve, HttpContext, Liveness};
use temu_sync::metrics::{Metrics, RunOutcome};
use temu_sync::sim::{Fault, SimConfig, Simulator};
use temu_sync::temu::model::OrderListRequest;
use temu_sync::temu::TemuClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One parsed exposition: family → TYPE, family → HELP, and samples.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut out = Exposition::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    out.types.insert(name.into(), kind.into()).is_none(),
                    "duplicate TYPE for {name}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                out.helps.insert(name.into(), help.into());
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let mut labels = BTreeMap::new();
                    // Our label values contain no `",` sequences; split on them.
                    for pair in body.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect("label k=\"v\"");
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            out.samples.push((name, labels, value));
        }
        out
    }

    /// The family a sample belongs to (histogram samples carry suffixes).
    fn family(&self, sample: &str) -> Option<String> {
        if self.types.contains_key(sample) {
            return Some(sample.to_string());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return Some(base.to_string());
                }
            }
        }
        None
    }

    /// The value of the sample `name` whose labels include all of `want`.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_every_documented_series() {
    let metrics = Metrics::new();
    let health = Health::new("test");

    // Temu API calls against the simulator: one 503 then success (a retry), then a plain success,
    // then a token check. The client publishes circuit and token state into `health`.
    init_log_capture();
    let sim_cfg = SimConfig::demo(41, 1, 20);
    let sim = Simulator::start(sim_cfg.clone()).await.expect("simulator");
    let (apps, shops) = configs_for(&sim, &sim_cfg);
    let client = TemuClient::with_tuning(
        &fast_temu_config(),
        &apps,
        &shops,
        fast_tuning(),
        Some(health.clone()),
    )
    .expect("client")
    .with_metrics(metrics.clone());
    let page = OrderListRequest {
        page_number: 1,
        page_size: 20,
        ..Default::default()
    };
    sim.push_faults([Fault::Http(503)]);
    client
        .list_orders("shop-0", &page)
        .await
        .expect("retried call");
    client.list_orders("shop-0", &page).await.expect("call");
    client.token_info("shop-0").await.expect("token check");

    // Sync runs through the recording API the sync engine uses.
    metrics.init_sync_series("shop-0", "orders");
    metrics.init_sync_series("shop-0", "products");
    metrics.record_run(
        "shop-0",
        "orders",
        RunOutcome::Success,
        Duration::from_millis(2500),
        3,
        10,
        5,
    );
    metrics.record_run(
        "shop-0",
        "orders",
        RunOutcome::Failure,
        Duration::from_millis(700),
        1,
        0,
        0,
    );
    metrics.set_lag("shop-0", "orders", 42.0);
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
    for _ in 0..5 {
        let status = http.get(&url).send().await.expect("scrape").status();
        assert_eq!(status, 200);
    }
    let resp = http.get(&url).send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.expect("body");
    let head = http
        .head(&url)
        .send()
        .await
        .expect("HEAD /metrics")
        .status();
    assert_eq!(head, 200);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;

    let exp = Exposition::parse(&text);
    // Every sample belongs to a family with TYPE and HELP.
    for (name, _, _) in &exp.samples {
        let family = exp
            .family(name)
            .unwrap_or_else(|| panic!("sample {name} has no # TYPE"));
        assert!(exp.helps.contains_key(&family), "{family} has no # HELP");
    }
    let expect_type = |name: &str, kind: &str| {
        assert_eq!(
            exp.types.get(name).map(String::as_str),
            Some(kind),
            "TYPE of {name}\n{text}"
        );
    };
    for (name, kind) in [
        ("temu_sync_build_info", "gauge"),
        ("temu_sync_sync_runs_total", "counter"),
        ("temu_sync_sync_records_total", "counter"),
        ("temu_sync_sync_pages_total", "counter"),
        ("temu_sync_sync_run_duration_seconds", "histogram"),
        ("temu_sync_sync_lag_seconds", "gauge"),
        ("temu_sync_sync_last_success_timestamp_seconds", "gauge"),
        ("temu_sync_api_request_duration_seconds", "histogram"),
        ("temu_sync_api_errors_total", "counter"),
        ("temu_sync_api_retries_total", "counter"),
        ("temu_sync_api_rate_limit_wait_seconds", "histogram"),
        ("temu_sync_api_circuit_state", "gauge"),
        ("temu_sync_token_expiry_timestamp_seconds", "gauge"),
        ("temu_sync_db_up", "gauge"),
        ("temu_sync_db_pool_connections", "gauge"),
        ("temu_sync_db_pool_max_connections", "gauge"),
        ("temu_sync_db_pool_waiting", "gauge"),
        ("temu_sync_db_checkout_wait_seconds", "histogram"),
        ("temu_sync_db_checkout_timeouts_total", "counter"),
        ("temu_sync_db_broken_connections_total", "counter"),
        ("temu_sync_actor_restarts_total", "counter"),
        ("temu_sync_health_status", "gauge"),
        ("temu_sync_health_check_status", "gauge"),
    ] {
        expect_type(name, kind);
    }

    // Sync.
    let orders = [("shop", "shop-0"), ("stream", "orders")];
    let with = |extra: (&'static str, &'static str)| {
        let mut v = orders.to_vec();
        v.push(extra);
        v
    };
    assert_eq!(
        exp.value("temu_sync_sync_runs_total", &with(("outcome", "success"))),
        Some(1.0)
    );
    assert_eq!(
        exp.value("temu_sync_sync_runs_total", &with(("outcome", "failure"))),
        Some(1.0)
    );
    assert_eq!(
        exp.value("temu_sync_sync_runs_total", &with(("outcome", "timeout"))),
        Some(0.0)
    );
    assert_eq!(
        exp.value(
            "temu_sync_sync_runs_total",
            &[
                ("shop", "shop-0"),
                ("stream", "products"),
                ("outcome", "success")
            ]
        ),
        Some(0.0),
        "initialised streams show zero before their first run"
    );
    assert_eq!(
        exp.value(
            "temu_sync_sync_records_total",
            &with(("action", "inserted"))
        ),
        Some(10.0)
    );
    assert_eq!(
        exp.value("temu_sync_sync_records_total", &with(("action", "updated"))),
        Some(5.0)
    );
    assert_eq!(exp.value("temu_sync_sync_pages_total", &orders), Some(4.0));
    assert_eq!(
        exp.value("temu_sync_sync_run_duration_seconds_count", &orders),
        Some(2.0)
    );
    let sum = exp
        .value("temu_sync_sync_run_duration_seconds_sum", &orders)
        .unwrap();
    assert!((sum - 3.2).abs() < 0.01, "{sum}");
    assert_eq!(
        exp.value(
            "temu_sync_sync_run_duration_seconds_bucket",
            &with(("le", "+Inf"))
        ),
        Some(2.0)
    );
    assert_eq!(exp.value("temu_sync_sync_lag_seconds", &orders), Some(42.0));
    assert!(exp
        .value("temu_sync_sync_last_success_timestamp_seconds", &orders)
        .is_some_and(|t| t > 1.6e9));

    // Temu API: three attempts (503, ok, ok), one retry, one error code.
    let api = "bg.order.list.v2.get";
    let list_type = exp
        .samples
        .iter()
        .find(|(n, _, _)| n == "temu_sync_api_retries_total")
        .and_then(|(_, l, _)| l.get("type").cloned())
        .expect("a retry was counted");
    assert!(
        list_type.contains("order"),
        "type label is the API name: {list_type} ({api}?)"
    );
    let t = [("type", list_type.as_str())];
    assert_eq!(exp.value("temu_sync_api_retries_total", &t), Some(1.0));
    assert_eq!(
        exp.value(
            "temu_sync_api_errors_total",
            &[("type", list_type.as_str()), ("code", "http_503")]
        ),
        Some(1.0)
    );
    assert_eq!(
        exp.value(
            "temu_sync_api_request_duration_seconds_count",
            &[("type", list_type.as_str()), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(
        exp.value(
            "temu_sync_api_request_duration_seconds_count",
            &[("type", list_type.as_str()), ("outcome", "http_error")]
        ),
        Some(1.0)
    );

    // Database and supervisor, mirrored from the health snapshot.
    assert_eq!(exp.value("temu_sync_db_up", &[]), Some(1.0));
    assert_eq!(
        exp.value("temu_sync_db_pool_connections", &[("state", "idle")]),
        Some(3.0)
    );
    assert_eq!(
        exp.value("temu_sync_db_pool_connections", &[("state", "in_use")]),
        Some(1.0)
    );
    assert_eq!(
        exp.value("temu_sync_db_pool_max_connections", &[]),
        Some(30.0)
    );
    assert_eq!(exp.value("temu_sync_db_pool_waiting", &[]), Some(0.0));
    assert_eq!(
        exp.value("temu_sync_db_checkout_timeouts_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        exp.value("temu_sync_db_broken_connections_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        exp.value("temu_sync_db_checkout_wait_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        exp.value("temu_sync_actor_restarts_total", &[("actor", "temu")]),
        Some(2.0)
    );
    assert_eq!(
        exp.value("temu_sync_actor_restarts_total", &[("actor", "db")]),
        Some(0.0)
    );
    assert_eq!(
        exp.value("temu_sync_health_status", &[]),
        Some(0.0),
        "all checks pass\n{text}"
    );
    assert_eq!(
        exp.sum("temu_sync_api_circuit_state", &[]),
        0.0,
        "circuits closed"
    );
    assert!(
        exp.value("temu_sync_api_circuit_state", &[]).is_some(),
        "one series per router"
    );
    assert!(
        exp.value(
            "temu_sync_token_expiry_timestamp_seconds",
            &[("shop", "shop-0")]
        )
        .is_some_and(|t| t > 1.6e9),
        "token expiry from the token check\n{text}"
    );
    assert_eq!(
        exp.value(
            "temu_sync_health_check_status",
            &[("check", "postgres:connections"), ("component", "postgres")]
        ),
        Some(0.0)
    );
    assert_eq!(
        exp.value(
            "temu_sync_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Low cardinality: only the documented label names appear.
    let allowed = [
        "shop",
        "stream",
        "outcome",
        "action",
        "type",
        "code",
        "le",
        "target",
        "state",
        "actor",
        "check",
        "component",
        "version",
    ];
    for (name, labels, _) in &exp.samples {
        for key in labels.keys() {
            assert!(allowed.contains(&key.as_str()), "{name} has label {key}");
        }
    }
    assert!(
        exp.sum("temu_sync_api_errors_total", &[]) >= 1.0,
        "errors counted"
    );

    promtool_check(&text);
}

/// `promtool check metrics` on the scrape, when promtool is installed (tests/ops_deploy.rs
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
