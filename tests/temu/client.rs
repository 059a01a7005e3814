//! The Temu client against the simulator: signing, every error class, retries, limits, breaker,
//! proxy, and no secret in any log line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use temu_sync::config::{ProxyConfig, Region, Stream};
use temu_sync::health::{Health, Status};
use temu_sync::metrics::Metrics;
use temu_sync::sim::{Fault, FaultConfig, Latency, SimConfig, Simulator};
use temu_sync::temu::client::{HEALTH_CIRCUIT, HEALTH_TOKENS};
use temu_sync::temu::model::*;
use temu_sync::temu::sign::Params;
use temu_sync::temu::{CircuitState, ErrorClass, TemuClient, TemuError, TokenState, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn page(n: u32) -> OrderListRequest {
    OrderListRequest {
        page_number: n,
        page_size: 20,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_unicode_and_number_params_sign_like_the_simulator_checks() {
    let (sim, cfg, client) = sim_and_client(11, 20, 100, |_, _| {}).await;
    let shop0 = shop_of(&client, "shop-0");
    let secret = &cfg.apps[0].app_secret;
    let mut p = Params::new();
    p.insert("type", "bg.order.list.v2.get").unwrap();
    p.insert("goodsName", "Café ☕ 日本語 \"quoted\" \\ back")
        .unwrap();
    p.insert(
        "nested",
        &json!({"b": [1, 2.5, -3, 1e20], "a": {"z": true, "y": null, "ü": "ö"}}),
    )
    .unwrap();
    p.insert("list", &json!([{"orderSn": "211-1", "qty": 0}, "x", false]))
        .unwrap();
    p.insert("big", &601099548666279i64).unwrap();
    p.insert("ratio", &0.25f64).unwrap();
    p.insert("flag", &true).unwrap();
    p.insert("timestamp", &1711009072i64).unwrap();
    let sign = p.sign(secret);
    let body = p.to_body(&sign);
    assert_eq!(
        temu_sync::sim::server::expected_sign_for_tests(&body, secret).unwrap(),
        sign
    );

    // Over the wire: the same kinds of values, signed by the client, accepted by the simulator.
    let req = json!({
        "pageNumber": 1, "pageSize": 5,
        "extraNested": {"k": ["ä", 1.5, {"x": -1}]},
        "note": "naïve — ✓", "skip": null
    });
    let res = client
        .call::<_, OrderListResult>(&shop0, API_ORDER_LIST, &req, None)
        .await
        .unwrap();
    assert_eq!(res.result.unwrap().page_items.len(), 5);
    assert_eq!(sim.outcome_count(3_000_001), 0);
    assert_no_secrets_logged(&cfg, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_decode_and_keep_raw_json() {
    let (_sim, cfg, client) = sim_and_client(12, 150, 100, |_, _| {}).await;
    let shop0 = shop_of(&client, "shop-0");
    let orders = client.list_orders(&shop0, &page(1)).await.unwrap();
    let r = orders.result.unwrap();
    assert_eq!(r.total_item_num, Some(150));
    assert_eq!(r.page_items.len(), 20);
    let first = &r.page_items[0];
    assert!(first
        .raw
        .get()
        .contains(&first.parent_order_map.parent_order_sn));
    assert!(first
        .parent_order_map
        .extra
        .contains_key("parentOrderLabel"));
    let sn = first.parent_order_map.parent_order_sn.clone();
    let detail = client
        .order_detail(
            &shop0,
            &OrderDetailRequest {
                parent_order_sn: sn.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        detail
            .result
            .unwrap()
            .parent_order_map
            .unwrap()
            .parent_order_sn,
        sn
    );
    let goods = client
        .list_goods(
            &shop0,
            &GoodsListRequest {
                page_no: 1,
                page_size: 10,
                goods_search_type: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!goods.result.unwrap().goods_list.is_empty());
    let after = client
        .list_aftersales(
            &shop0,
            &AfterSalesListRequest {
                page_no: 1,
                page_size: 10,
                update_at_start: Some(0),
                update_at_end: Some(i64::from(i32::MAX)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(after.result.unwrap().total, Some(30));
    let token = client
        .token_info(&shop_of(&client, "shop-1"))
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(
        token.mall_id.as_ref().unwrap().as_i64(),
        Some(cfg.shops[1].mall_id)
    );
    assert!(token.expires_at().unwrap() > chrono::Utc::now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_are_retried_and_succeed() {
    let (sim, cfg, client) = sim_and_client(13, 20, 100, |t, _| {
        t.read_timeout = Duration::from_millis(400);
    })
    .await;
    let shop0 = shop_of(&client, "shop-0");
    let cases: Vec<(Fault, i64)> = vec![
        (Fault::ApiError(4_000_000), 4_000_000),
        (Fault::Http(502), 502),
        (Fault::Http(503), 503),
        (Fault::Reset, 0),
        (Fault::Stall(Duration::from_secs(5)), 1_000_000),
    ];
    for (fault, outcome) in cases {
        sim.reset_stats();
        sim.push_faults([fault.clone()]);
        let started = Instant::now();
        let res = client.list_orders(&shop0, &page(1)).await;
        assert!(res.is_ok(), "{fault:?}: {:?}", res.err());
        assert_eq!(
            sim.stats().requests,
            2,
            "{fault:?}: one failure, one success"
        );
        if outcome != 1_000_000 {
            assert_eq!(sim.outcome_count(outcome), 1, "{fault:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{fault:?} took too long"
        );
    }
    // 429 + Retry-After: the retry waits at least that long, and is signed afresh.
    sim.reset_stats();
    sim.push_faults([Fault::TooManyRequests {
        retry_after_secs: 1,
    }]);
    let started = Instant::now();
    client.list_orders(&shop0, &page(1)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let recs = sim.requests();
    assert_eq!(recs.len(), 2);
    assert!(recs[1].at.duration_since(recs[0].at) >= Duration::from_millis(990));
    assert_ne!(
        recs[0].timestamp, recs[1].timestamp,
        "fresh timestamp per attempt"
    );
    assert_ne!(recs[0].sign, recs[1].sign, "fresh signature per attempt");
    // The capture really sees the client's (and hyper's) log lines — and no secret in them.
    assert!(captured_logs().contains("temu attempt failed"));
    assert_no_secrets_logged(&cfg, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_errors_are_classified_by_type() {
    let (sim, cfg, client) = sim_and_client(14, 20, 100, |t, _| {
        t.max_retries = 0;
        t.read_timeout = Duration::from_millis(300);
    })
    .await;
    let shop0 = shop_of(&client, "shop-0");
    sim.push_faults([Fault::Reset]);
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(
        matches!(
            e,
            TemuError::Transport {
                kind: TransportKind::Reset,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Retryable);
    sim.push_faults([Fault::Stall(Duration::from_secs(5))]);
    let started = Instant::now();
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(
        matches!(
            e,
            TemuError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    sim.push_faults([Fault::Http(503)]);
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(matches!(e, TemuError::Http { status: 503, .. }));
    assert_eq!(e.class(), ErrorClass::Retryable);
    // Nothing listens here: a connect error.
    let (apps, mut shops) = configs_for(&sim, &cfg);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/openapi/router", dead.local_addr().unwrap());
    drop(dead);
    shops[0].base_url = Some(dead_url);
    let mut t = fast_temu_config();
    t.max_retries = 0;
    let c2 = client_with(&t, &apps, &shops, fast_tuning());
    let e = c2
        .list_orders(&shop_of(&c2, "shop-0"), &page(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TemuError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert_no_secrets_in(&format!("{e} {e:?}"), &cfg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_once_on_timestamp_errors() {
    let (sim, cfg, client) = sim_and_client(15, 20, 100, |_, _| {}).await;
    let shop0 = shop_of(&client, "shop-0");
    sim.push_faults([Fault::ApiError(3_000_011)]);
    client.list_orders(&shop0, &page(1)).await.unwrap();
    assert_eq!(sim.stats().requests, 2);

    // A server whose clock is far off: re-signed once, then reported as Resign.
    let mut skewed = SimConfig::demo(16, 1, 10);
    skewed.clock_offset_secs = 3600;
    let sim2 = Simulator::start(skewed.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim2, &skewed);
    let c2 = client_with(&fast_temu_config(), &apps, &shops, fast_tuning());
    let e = c2
        .list_orders(&shop_of(&c2, "shop-0"), &page(1))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Resign);
    assert_eq!(e.code(), Some(3_000_011));
    assert_eq!(sim2.stats().requests, 2, "original + one re-signed attempt");
    assert_no_secrets_logged(&cfg, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_errors_are_not_retried_and_say_what_to_fix() {
    init_log_capture();
    let mut cfg = SimConfig::demo(17, 2, 10);
    cfg.shops[1].token_expires_at = chrono::Utc::now().timestamp() - 10;
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let url = sim.router_url();
    let health = Health::new("test");
    let mk = |apps: Vec<_>, shops: Vec<_>| observed_client(&apps, &shops, observed_by(&health));
    let check = |client: &TemuClient, shop: &str, code: i64, hint: &str| {
        let client = client.clone();
        let shop = shop.to_string();
        let hint = hint.to_string();
        let sim = &sim;
        async move {
            sim.reset_stats();
            let e = client
                .list_orders(&shop_of(&client, &shop), &page(1))
                .await
                .unwrap_err();
            assert_eq!(e.class(), ErrorClass::Fatal, "{e}");
            assert_eq!(e.code(), Some(code), "{e}");
            assert!(e.to_string().contains(&hint), "{e}");
            assert_eq!(sim.stats().requests, 1, "fatal errors are not retried");
            e
        }
    };
    // Bad secret -> 3000001.
    let wrong = vec![app_config(
        "app0",
        &cfg.apps[0].app_key,
        "wrong-secret-value",
        20,
    )];
    check(&mk(wrong, shops.clone()), "shop-0", 3_000_001, "app_secret").await;
    // Unknown app key -> 3000024.
    let unknown = vec![app_config(
        "app0",
        "no-such-key",
        &cfg.apps[0].app_secret,
        20,
    )];
    check(&mk(unknown, shops.clone()), "shop-0", 3_000_024, "app_key").await;
    // Unknown token -> 3000031, and the shop's token check fails.
    let bad_tok = vec![shop_config("shop-0", "app0", "not-a-real-token-xyz", &url)];
    let c = mk(apps.clone(), bad_tok);
    check(&c, "shop-0", 3_000_031, "access_token").await;
    assert!(matches!(
        shop_of(&c, "shop-0").token_state(),
        TokenState::Refused {
            code: Some(3_000_031),
            ..
        }
    ));
    // Expired token -> 3000034, and /health fails that shop.
    let c = mk(apps.clone(), shops.clone());
    check(&c, "shop-1", 3_000_034, "re-authorize").await;
    let report = health.report();
    assert_eq!(report.status, Status::Fail);
    let tokens = &report.checks[HEALTH_TOKENS];
    assert!(tokens
        .iter()
        .any(|c| c.component_id.as_deref() == Some("shop-1") && c.status == Status::Fail));
    // Unknown API type -> 3000003.
    sim.reset_stats();
    let e = c
        .call::<_, serde_json::Value>(&shop_of(&c, "shop-0"), "bg.no.such.api", &json!({}), None)
        .await
        .unwrap_err();
    assert_eq!((e.class(), e.code()), (ErrorClass::Fatal, Some(3_000_003)));
    // After-sales without a time pair -> 130010001, a business error: not retried.
    sim.reset_stats();
    let e = c
        .list_aftersales(
            &shop_of(&c, "shop-0"),
            &AfterSalesListRequest {
                page_no: 1,
                page_size: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(130_010_001));
    assert_eq!(sim.stats().requests, 1);
    // Unknown shop: it does not resolve, so no call can name it.
    assert!(c.shop("nope").is_none());
    assert_no_secrets_logged(&cfg, &["wrong-secret-value", "not-a-real-token-xyz"]);
    assert_no_secrets_in(&format!("{:?}", health.report()), &cfg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_malformed_bodies_are_decode_errors_with_a_clean_excerpt() {
    let (sim, cfg, client) = sim_and_client(18, 20, 100, |t, _| t.max_retries = 1).await;
    let shop0 = shop_of(&client, "shop-0");
    for fault in [Fault::Truncated, Fault::Malformed] {
        sim.reset_stats();
        sim.push_faults([fault.clone(), fault.clone()]);
        let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Decode, "{fault:?}");
        let TemuError::Decode { excerpt, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(!excerpt.is_empty() && excerpt.chars().count() <= 121);
        assert_eq!(
            sim.stats().requests,
            2,
            "an unreadable body is retried within max_retries"
        );
        assert_no_secrets_in(&format!("{e} {e:?}"), &cfg);
        // One bad body, then a good one: the retry recovers.
        sim.push_faults([fault]);
        client.list_orders(&shop0, &page(1)).await.unwrap();
    }
    // A well-formed envelope whose result does not fit the type: Decode, not retried.
    sim.reset_stats();
    let e = client
        .call::<_, Vec<u8>>(&shop0, API_ORDER_LIST, &page(1), None)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Decode);
    assert_eq!(sim.stats().requests, 1);
    assert_no_secrets_logged(&cfg, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_max_retries_and_at_the_deadline() {
    let (sim, _cfg, client) = sim_and_client(19, 20, 1000, |t, _| t.max_retries = 2).await;
    let shop0 = shop_of(&client, "shop-0");
    sim.set_faults(FaultConfig {
        system_error: 1.0,
        ..FaultConfig::none()
    });
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Retryable, Some(4_000_000))
    );
    assert_eq!(sim.stats().requests, 3, "1 attempt + max_retries 2");

    let (sim, _cfg, client) = sim_and_client(20, 20, 1000, |t, tune| {
        t.max_retries = 1000;
        t.call_deadline = Duration::from_millis(800);
        tune.backoff_base = Duration::from_millis(50);
        tune.backoff_max = Duration::from_millis(100);
    })
    .await;
    let shop0 = shop_of(&client, "shop-0");
    sim.set_faults(FaultConfig {
        system_error: 1.0,
        ..FaultConfig::none()
    });
    let started = Instant::now();
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, TemuError::Deadline { .. }), "{e:?}");
    assert_eq!(
        e.code(),
        Some(4_000_000),
        "the deadline error carries the last cause"
    );
    // Generous bound (2 cores, parallel tests); without the deadline it would retry 1000 times.
    assert!(
        took < Duration::from_millis(2500),
        "stopped at the deadline, took {took:?}"
    );
    assert!(sim.stats().requests >= 3);

    // A stalled answer cannot outlive the call deadline either.
    let (sim, _cfg, client) = sim_and_client(21, 20, 1000, |t, _| {
        t.call_deadline = Duration::from_millis(500);
        t.read_timeout = Duration::from_secs(30);
    })
    .await;
    let shop0 = shop_of(&client, "shop-0");
    sim.push_faults([Fault::Stall(Duration::from_secs(30))]);
    let started = Instant::now();
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(matches!(e, TemuError::Deadline { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_200_calls_stays_under_the_qps_limit() {
    const QPS: u32 = 50;
    let (sim, cfg, client) = sim_and_client(22, 50, QPS, |t, _| {
        t.max_retries = 0;
        t.max_connections = 64;
    })
    .await;
    let shops = [shop_of(&client, "shop-0"), shop_of(&client, "shop-1")];
    let started = Instant::now();
    let calls = (0..200).map(|i| {
        let client = client.clone();
        let shop = shops[i % 2].clone();
        async move { client.list_orders(&shop, &page(1)).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let took = started.elapsed();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(sim.outcome_count(4_000_004), 0, "no rate-limit answers");
    assert_eq!(sim.outcome_count(1_000_000), 200);
    // Both shops share one app budget: 200 calls at 50 QPS need about 4 s.
    assert!(
        took >= Duration::from_millis(3800),
        "took {took:?}: limiter not applied"
    );
    assert_no_secrets_logged(&cfg, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_never_exceed_max_connections() {
    let (sim, _cfg, client) = sim_and_client(23, 20, 10_000, |t, tune| {
        t.max_connections = 4;
        tune.rate_burst = 100;
    })
    .await;
    let shop0 = shop_of(&client, "shop-0");
    sim.set_faults(FaultConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(20),
            max: Duration::from_millis(60),
        },
        ..FaultConfig::none()
    });
    let calls = (0..40).map(|_| {
        let client = client.clone();
        let shop = shop0.clone();
        async move { client.list_orders(&shop, &page(1)).await }
    });
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let seen = sim.stats().max_in_flight;
    assert!(seen <= 4, "server saw {seen} in flight");
    assert!(seen >= 2, "requests did run concurrently");
    assert!(client.stats().max_in_flight <= 4);

    // Waiting for a slot is bounded by pool_timeout.
    let (sim, _cfg, client) = sim_and_client(24, 20, 10_000, |t, _| {
        t.max_connections = 1;
        t.pool_timeout = Duration::from_millis(50);
        t.max_retries = 0;
    })
    .await;
    let shop0 = shop_of(&client, "shop-0");
    sim.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(400)),
        ..FaultConfig::none()
    });
    let first = page(1);
    let (a, b) = tokio::join!(client.list_orders(&shop0, &first), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.list_orders(&shop0, &page(1)).await
    });
    assert!(a.is_ok());
    assert!(matches!(b, Err(TemuError::PoolTimeout { .. })), "{b:?}");
    assert_eq!(client.stats().pool_timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_fails_fast_and_recovers_and_shows_in_health() {
    init_log_capture();
    let cfg = SimConfig::demo(25, 1, 10);
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let health = Health::new("test");
    let mut t = fast_temu_config();
    t.max_retries = 0;
    let mut tune = fast_tuning();
    tune.breaker_threshold = 3;
    tune.breaker_cool_off = Duration::from_millis(300);
    let client = TemuClient::build(&t, &apps, &shops, tune, observed_by(&health)).unwrap();
    let shop0 = shop_of(&client, "shop-0");
    sim.push_faults([Fault::Http(502), Fault::Http(502), Fault::Http(502)]);
    for _ in 0..3 {
        let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
        assert!(matches!(e, TemuError::Http { status: 502, .. }));
    }
    assert_eq!(client.circuits()[0].state, CircuitState::Open);
    let circuit = &health.report().checks[HEALTH_CIRCUIT];
    assert_eq!(circuit[0].status, Status::Warn);
    assert!(circuit[0].output.as_deref().unwrap().contains("open"));
    let before = sim.stats().requests;
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(matches!(e, TemuError::CircuitOpen { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(sim.stats().requests, before, "failed fast, nothing sent");
    tokio::time::sleep(Duration::from_millis(350)).await;
    client.list_orders(&shop0, &page(1)).await.unwrap();
    assert_eq!(client.circuits()[0].state, CircuitState::Closed);
    assert_eq!(
        health.report().checks[HEALTH_CIRCUIT][0].status,
        Status::Pass
    );

    // A failed probe re-opens it.
    sim.push_faults([
        Fault::Http(503),
        Fault::Http(503),
        Fault::Http(503),
        Fault::Http(503),
    ]);
    for _ in 0..3 {
        let _ = client.list_orders(&shop0, &page(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(client.list_orders(&shop0, &page(1)).await.is_err());
    assert_eq!(client.circuits()[0].state, CircuitState::Open);
    assert_eq!(client.circuits()[0].opened_total, 3);
}

/// A minimal HTTP forward proxy with Basic proxy authentication; counts the requests it relayed.
async fn start_http_proxy(user: &str, pass: &str) -> (String, Arc<AtomicU64>) {
    use base64_like::encode;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expected = format!("Basic {}", encode(&format!("{user}:{pass}")));
    let relayed = Arc::new(AtomicU64::new(0));
    let count = relayed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let expected = expected.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n =
                        match tokio::time::timeout(Duration::from_secs(5), inbound.read(&mut buf))
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return,
                        };
                    head.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let authorized = text.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("proxy-authorization:")
                        && l[20..].trim() == expected
                });
                if !authorized {
                    let _ = inbound
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                // "POST http://host:port/path HTTP/1.1": relay the connection to host:port as is.
                let target = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|u| u.strip_prefix("http://"))
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_default()
                    .to_string();
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if outbound.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound),
                )
                .await;
            });
        }
    });
    (format!("http://{addr}"), relayed)
}

mod base64_like {
    /// Standard base64 (enough for a Basic header in a test).
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            out.push(T[(n >> 18) as usize & 63] as char);
            out.push(T[(n >> 12) as usize & 63] as char);
            out.push(if chunk.len() > 1 {
                T[(n >> 6) as usize & 63] as char
            } else {
                '='
            });
            out.push(if chunk.len() > 2 {
                T[n as usize & 63] as char
            } else {
                '='
            });
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_an_authenticated_http_proxy() {
    init_log_capture();
    let cfg = SimConfig::demo(26, 1, 10);
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let proxy_pass = "proxy-pass-s3cr3t";
    let (proxy_url, relayed) = start_http_proxy("seller", proxy_pass).await;
    let mut t = fast_temu_config();
    t.max_retries = 0;
    t.proxy = Some(ProxyConfig {
        url: proxy_url.clone(),
        username: Some("seller".into()),
        password: Some(secret(proxy_pass)),
    });
    let client = client_with(&t, &apps, &shops, fast_tuning());
    let shop0 = shop_of(&client, "shop-0");
    client.list_orders(&shop0, &page(1)).await.unwrap();
    assert!(
        relayed.load(Ordering::SeqCst) >= 1,
        "the call went through the proxy"
    );
    assert_eq!(sim.outcome_count(1_000_000), 1);

    // Wrong proxy password: 407, fatal (configuration), and the password is nowhere.
    t.proxy = Some(ProxyConfig {
        url: proxy_url,
        username: Some("seller".into()),
        password: Some(secret("wrong-proxy-pass")),
    });
    let client = client_with(&t, &apps, &shops, fast_tuning());
    let shop0 = shop_of(&client, "shop-0");
    let e = client.list_orders(&shop0, &page(1)).await.unwrap_err();
    assert!(matches!(e, TemuError::Http { status: 407, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Fatal);
    let shown = format!("{e} {e:?} {client:?}");
    assert!(!shown.contains(proxy_pass) && !shown.contains("wrong-proxy-pass"));
    assert_no_secrets_logged(&cfg, &[proxy_pass, "wrong-proxy-pass"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_check_reports_expiry_scopes_and_warns_within_14_days() {
    init_log_capture();
    let now = chrono::Utc::now().timestamp();
    let mut cfg = SimConfig::demo(27, 3, 5);
    cfg.shops[1].token_expires_at = now + 5 * 86_400;
    cfg.shops[2].token_expires_at = now - 60;
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let health = Health::new("test");
    let client = observed_client(&apps, &shops, observed_by(&health));
    let reports = client.check_tokens().await;
    let by_shop: std::collections::BTreeMap<_, _> =
        reports.iter().map(|r| (r.shop.as_str(), r)).collect();
    assert_eq!(by_shop["shop-0"].status, Status::Pass);
    assert_eq!(by_shop["shop-1"].status, Status::Warn);
    assert_eq!(by_shop["shop-2"].status, Status::Fail);
    let line = by_shop["shop-0"].to_string();
    assert!(line.contains(&cfg.shops[0].mall_id.to_string()), "{line}");
    assert!(line.contains("bg.order.list.v2.get"), "{line}");
    assert!(by_shop["shop-2"].to_string().contains("re-authorize"));
    assert_eq!(health.report().status, Status::Fail);
    for r in &reports {
        assert_no_secrets_in(&format!("{r} {r:?}"), &cfg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shops_are_resolved_once_in_config_order_and_show_no_secret() {
    init_log_capture();
    let mut cfg = SimConfig::demo(28, 3, 5);
    cfg.shops.reverse();
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, mut shops) = configs_for(&sim, &cfg);
    shops[0].streams = vec![Stream::Orders];
    let metrics = Metrics::new();
    let health = Health::new("test");
    let client = observed_client(&apps, &shops, observed_by_both(&health, &metrics));
    let names: Vec<&str> = client.shops().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["shop-2", "shop-1", "shop-0"], "configuration order");
    let first = &client.shops()[0];
    assert_eq!(first.streams(), [Stream::Orders]);
    assert_eq!((first.region(), first.region_name()), (Region::Us, "us"));
    assert!(matches!(first.token_state(), TokenState::NotChecked));
    assert_eq!(first.mall_id(), None);

    // A check through the client updates the very value the caller holds (and every clone).
    let held = first.clone();
    client.token_info(first).await.unwrap();
    assert_eq!(held.mall_id(), Some(cfg.shops[0].mall_id.to_string()));
    assert!(matches!(held.token_state(), TokenState::Valid { .. }));
    let text = metrics.render(&health);
    assert!(
        text.contains("temu_sync_token_expiry_timestamp_seconds{shop=\"shop-2\"}"),
        "{text}"
    );
    assert!(
        text.contains("temu_sync_api_circuit_state{target="),
        "{text}"
    );

    let shown = format!("{client:?} {:?}", client.shops());
    assert!(shown.contains("shop-2"), "{shown}");
    assert_no_secrets_in(&shown, &cfg);
    assert!(client.shop("shop-1").is_some_and(|s| s.name() == "shop-1"));

    // A shop given twice cannot be resolved to one value: refused when the client is built.
    let twice = vec![shops[0].clone(), shops[0].clone()];
    assert!(matches!(
        TemuClient::new(&fast_temu_config(), &apps, &twice),
        Err(TemuError::Config(_))
    ));
}
