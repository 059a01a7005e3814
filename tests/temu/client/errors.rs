//! Every error class of the client: retryable errors retried, transport errors classified,
//! re-signing on timestamp errors, fatal errors not retried and explained, malformed bodies,
//! the retry budget and the call's deadline.

use std::time::{Duration, Instant};

use super::page;
use crate::common::*;
use serde_json::json;
use temu_sync::health::{Health, Status};
use temu_sync::sim::{Fault, FaultConfig, SimConfig, Simulator};
use temu_sync::temu::client::HEALTH_TOKENS;
use temu_sync::temu::model::*;
use temu_sync::temu::{ErrorClass, TemuClient, TemuError, TokenState, TransportKind};

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
        // Long enough that some attempt has failed before the deadline, even when a loaded
        // machine makes the first attempt slow (then the deadline has no last cause to carry).
        t.call_deadline = Duration::from_secs(2);
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
        took < Duration::from_millis(5000),
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
