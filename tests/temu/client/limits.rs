//! The client's limits: the app's QPS budget, `max_connections` in flight, and the circuit
//! breaker (open, fail fast, recover, shown in health).

use std::time::{Duration, Instant};

use super::page;
use crate::common::*;
use temu_sync::health::{Health, Status};
use temu_sync::sim::{Fault, FaultConfig, Latency, SimConfig, Simulator};
use temu_sync::temu::client::HEALTH_CIRCUIT;
use temu_sync::temu::{CircuitState, ErrorClass, TemuClient, TemuError};

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
