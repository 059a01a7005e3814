//! One test per family of series on the same scrape ([`super::scrape`]): the format as a whole
//! (exemption from the rate limit, content type, HEAD, TYPE and HELP for every sample, only the
//! documented labels, `promtool`), then sync, Temu API and tokens, database, health and actors —
//! each checks the TYPE and the values of its own series.

use super::{assert_types, promtool_check, scrape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_is_exempt_typed_documented_and_low_cardinality() {
    let s = scrape().await;
    let (exp, text) = (&s.exp, &s.text);
    assert_eq!(
        s.burst, [200; 5],
        "exempt from the per-client limit (burst 1)"
    );
    assert!(
        s.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        s.content_type
    );
    assert_eq!(s.head, 200, "HEAD /metrics");
    // Every sample belongs to a family with TYPE and HELP.
    for (name, _, _) in &exp.samples {
        let family = exp
            .family(name)
            .unwrap_or_else(|| panic!("sample {name} has no # TYPE"));
        assert!(exp.helps.contains_key(&family), "{family} has no # HELP");
    }
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
        "task",
    ];
    for (name, labels, _) in &exp.samples {
        for key in labels.keys() {
            assert!(allowed.contains(&key.as_str()), "{name} has label {key}");
        }
    }
    promtool_check(text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_series_count_runs_records_pages_and_lag() {
    let s = scrape().await;
    let (exp, text) = (&s.exp, &s.text);
    assert_types(
        &s,
        &[
            ("temu_sync_sync_runs_total", "counter"),
            ("temu_sync_sync_records_total", "counter"),
            ("temu_sync_sync_pages_total", "counter"),
            ("temu_sync_sync_run_duration_seconds", "histogram"),
            ("temu_sync_sync_lag_seconds", "gauge"),
            ("temu_sync_sync_last_success_timestamp_seconds", "gauge"),
            ("temu_sync_audit_differences", "gauge"),
        ],
    );
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
    assert_eq!(
        exp.value("temu_sync_audit_differences", &orders),
        Some(2.0),
        "days still differing after the scheduled audit"
    );
    assert!(exp
        .value("temu_sync_sync_last_success_timestamp_seconds", &orders)
        .is_some_and(|t| t > 1.6e9));
    let _ = text;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_series_count_attempts_retries_errors_and_token_expiry() {
    let s = scrape().await;
    let (exp, text) = (&s.exp, &s.text);
    assert_types(
        &s,
        &[
            ("temu_sync_api_request_duration_seconds", "histogram"),
            ("temu_sync_api_errors_total", "counter"),
            ("temu_sync_api_retries_total", "counter"),
            ("temu_sync_api_rate_limit_wait_seconds", "histogram"),
            ("temu_sync_api_circuit_state", "gauge"),
            ("temu_sync_token_expiry_timestamp_seconds", "gauge"),
        ],
    );
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
    assert!(
        exp.sum("temu_sync_api_errors_total", &[]) >= 1.0,
        "errors counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_series_mirror_the_pool_counters_of_the_health_snapshot() {
    let s = scrape().await;
    let (exp, text) = (&s.exp, &s.text);
    assert_types(
        &s,
        &[
            ("temu_sync_db_up", "gauge"),
            ("temu_sync_db_pool_connections", "gauge"),
            ("temu_sync_db_pool_max_connections", "gauge"),
            ("temu_sync_db_pool_waiting", "gauge"),
            ("temu_sync_db_checkout_wait_seconds", "histogram"),
            ("temu_sync_db_checkout_timeouts_total", "counter"),
            ("temu_sync_db_broken_connections_total", "counter"),
        ],
    );
    // Database, mirrored from the health snapshot.
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
    let _ = text;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_actor_and_build_series() {
    let s = scrape().await;
    let (exp, text) = (&s.exp, &s.text);
    assert_types(
        &s,
        &[
            ("temu_sync_actor_restarts_total", "counter"),
            ("temu_sync_task_panics_total", "counter"),
            ("temu_sync_health_status", "gauge"),
            ("temu_sync_health_check_status", "gauge"),
        ],
    );
    assert_types(&s, &[("temu_sync_build_info", "gauge")]);
    // Supervisor and health checks, mirrored from the health snapshot.
    assert_eq!(
        exp.value("temu_sync_actor_restarts_total", &[("actor", "temu")]),
        Some(2.0)
    );
    assert_eq!(
        exp.value("temu_sync_actor_restarts_total", &[("actor", "db")]),
        Some(0.0)
    );
    for task in ["sync_run", "heartbeat", "notifier", "metrics_upkeep"] {
        assert_eq!(
            exp.value("temu_sync_task_panics_total", &[("task", task)]),
            Some(0.0),
            "{task}: registered at zero, so an alert on its increase sees the first panic"
        );
    }
    assert_eq!(
        exp.value("temu_sync_health_status", &[]),
        Some(0.0),
        "all checks pass\n{text}"
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
}
