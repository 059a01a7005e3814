//! Token checks (expiry, scopes, the 14-day warning) and shops resolved once, in config order,
//! with no secret in their `Debug`.

use crate::common::*;
use temu_sync::config::{Region, Stream};
use temu_sync::health::{Health, Status};
use temu_sync::metrics::Metrics;
use temu_sync::sim::{SimConfig, Simulator};
use temu_sync::temu::{TemuClient, TemuError, TokenState};

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
