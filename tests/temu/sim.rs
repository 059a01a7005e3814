//! The simulator on its own terms, and the Temu actor beside the client: deterministic data,
//! paging semantics, drift under mutation, QPS enforcement, and the supervised actor's pings,
//! token checks and re-spawn over the one client.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use temu_sync::health::{Health, Status};
use temu_sync::sim::{FaultConfig, Latency, SimConfig, Simulator};
use temu_sync::temu::client::HEALTH_TOKENS;
use temu_sync::temu::model::*;
use temu_sync::temu::{
    TemuActor, TemuActorArgs, TemuClient, TemuMsg, TemuShop, TokenReport, TokenState,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_data_other_seed_other_data() {
    let a = Simulator::start(SimConfig::demo(7, 2, 50)).await.unwrap();
    let b = Simulator::start(SimConfig::demo(7, 2, 50)).await.unwrap();
    let c = Simulator::start(SimConfig::demo(8, 2, 50)).await.unwrap();
    let (ta, tb, tc) = (a.ground_truth(), b.ground_truth(), c.ground_truth());
    // Times are relative to start, so compare identities and shapes.
    let keys = |t: &temu_sync::sim::GroundTruth| -> Vec<BTreeSet<String>> {
        t.shops
            .values()
            .map(|s| s.orders.keys().cloned().collect())
            .collect()
    };
    assert_eq!(keys(&ta), keys(&tb));
    assert_eq!(ta.shops["shop-0"].orders.len(), 50);
    assert_eq!(ta.shops["shop-0"].products.len(), 25);
    assert_eq!(ta.shops["shop-0"].aftersales.len(), 10);
    let status = |t: &temu_sync::sim::GroundTruth| -> Vec<serde_json::Value> {
        t.shops["shop-0"]
            .orders
            .values()
            .map(|o| o["parentOrderMap"]["parentOrderStatus"].clone())
            .collect()
    };
    assert_eq!(status(&ta), status(&tb));
    assert_ne!(status(&ta), status(&tc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_sorted_capped_and_closed_interval() {
    let (sim, _cfg, client) = sim_and_client(30, 250, 1000, |_, tune| tune.rate_burst = 50).await;
    let shop0 = shop_of(&client, "shop-0");
    let truth = sim.ground_truth().shops["shop-0"].clone();
    // A page size above 100 is capped.
    let big = OrderListRequest {
        page_number: 1,
        page_size: 500,
        fulfillment_type_list: every_fulfillment_type(),
        ..Default::default()
    };
    let r = client
        .list_orders(&shop0, &big)
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(r.page_items.len(), 100);
    assert_eq!(r.total_item_num, Some(250));
    // Walk every page: all orders, each once, update time descending.
    let mut seen = Vec::new();
    for n in 1..=3 {
        let r = order_page(&client, &shop0, n, every_fulfillment_type()).await;
        seen.extend(r.page_items.into_iter().map(|i| i.value.parent_order_map));
    }
    assert_eq!(seen.len(), 250);
    assert!(seen
        .windows(2)
        .all(|w| w[0].update_time >= w[1].update_time));
    let sns: BTreeSet<_> = seen.iter().map(|o| o.parent_order_sn.clone()).collect();
    assert_eq!(sns, truth.orders.keys().cloned().collect());
    // Closed interval: both ends included.
    let t = seen[10].update_time.unwrap();
    let req = OrderListRequest {
        page_number: 1,
        page_size: 100,
        update_at_start: Some(t),
        update_at_end: Some(t),
        fulfillment_type_list: every_fulfillment_type(),
        ..Default::default()
    };
    let r = client
        .list_orders(&shop0, &req)
        .await
        .unwrap()
        .result
        .unwrap();
    let expected = seen.iter().filter(|o| o.update_time == Some(t)).count();
    assert_eq!(r.page_items.len(), expected);
    assert!(expected >= 1);
    // One end only is refused.
    let req = OrderListRequest {
        page_number: 1,
        page_size: 10,
        update_at_start: Some(t),
        fulfillment_type_list: every_fulfillment_type(),
        ..Default::default()
    };
    assert!(client.list_orders(&shop0, &req).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mutation_makes_naive_paging_drift_and_ground_truth_follows() {
    let (sim, _cfg, client) = sim_and_client(31, 300, 1000, |_, tune| tune.rate_burst = 50).await;
    let shop0 = shop_of(&client, "shop-0");
    sim.set_mutation_rate(20.0);
    let mut seen = BTreeSet::new();
    for n in 1..=6 {
        let req = OrderListRequest {
            page_number: n,
            page_size: 50,
            fulfillment_type_list: every_fulfillment_type(),
            ..Default::default()
        };
        let r = client
            .list_orders(&shop0, &req)
            .await
            .unwrap()
            .result
            .unwrap();
        seen.extend(
            r.page_items
                .into_iter()
                .map(|i| i.value.parent_order_map.parent_order_sn),
        );
    }
    let truth = sim.ground_truth().shops["shop-0"].clone();
    assert!(truth.mutations >= 100);
    assert!(
        seen.len() < truth.orders.len(),
        "a naive walk over live data misses orders"
    );
    // The ground truth reflects the mutations: the newest orders were updated during the walk.
    let now = chrono::Utc::now().timestamp();
    let recent = truth
        .orders
        .values()
        .filter(|o| o["parentOrderMap"]["updateTime"].as_i64().unwrap() >= now - 30)
        .count();
    assert!(recent >= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_enforces_qps_per_app_key() {
    // The client allows far more than the simulator: the simulator must refuse the excess.
    init_log_capture();
    let mut cfg = SimConfig::demo(32, 1, 10);
    cfg.apps[0].qps = 5;
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (mut apps, shops) = configs_for(&sim, &cfg);
    apps[0] = app_config("app0", &cfg.apps[0].app_key, &cfg.apps[0].app_secret, 1000);
    let mut t = fast_temu_config();
    t.max_retries = 0;
    let mut tune = fast_tuning();
    tune.rate_burst = 1000;
    let client = client_with(&t, &apps, &shops, tune);
    let shop0 = shop_of(&client, "shop-0");
    let calls = (0..30).map(|_| {
        let c = client.clone();
        let shop = shop0.clone();
        async move {
            c.list_orders(
                &shop,
                &OrderListRequest {
                    page_number: 1,
                    page_size: 5,
                    fulfillment_type_list: every_fulfillment_type(),
                    ..Default::default()
                },
            )
            .await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(4_000_004)))
        .count();
    assert!(limited >= 20, "only {limited} refused");
    assert_eq!(sim.outcome_count(4_000_004) as usize, limited);
}

/// Asks the Temu actor to check every token now (`None`: it did not answer).
async fn check_tokens_via(actor: &ActorRef<TemuMsg>) -> Option<Vec<TokenReport>> {
    match actor
        .call(TemuMsg::CheckTokens, Some(Duration::from_secs(10)))
        .await
    {
        Ok(CallResult::Success(reports)) => Some(reports),
        _ => None,
    }
}

async fn ping(actor: &ActorRef<TemuMsg>, timeout: Duration) -> bool {
    matches!(
        actor.call(TemuMsg::Ping, Some(timeout)).await,
        Ok(CallResult::Success(()))
    )
}

/// The Temu actor in front of the one client: pings are answered while slow calls run, the
/// periodic token check publishes token health, a stop ends that check, and a re-spawn keeps
/// working with the same client (so never a second limiter for an app_key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_answers_pings_during_slow_calls_and_a_respawn_keeps_the_one_client() {
    init_log_capture();
    let cfg = SimConfig::demo(33, 2, 30);
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    sim.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(300)),
        ..FaultConfig::none()
    });
    let (apps, shops) = configs_for(&sim, &cfg);
    let health = Health::new("test");
    let mut tuning = fast_tuning();
    tuning.rate_burst = 20;
    let client = TemuClient::build(
        &fast_temu_config(),
        &apps,
        &shops,
        tuning,
        observed_by(&health),
    )
    .unwrap();
    let args = TemuActorArgs {
        client: client.clone(),
        token_check_interval: Duration::from_secs(1),
    };
    let (actor, join) = Actor::spawn(Some("temu-test".into()), TemuActor, args.clone())
        .await
        .unwrap();
    let shops = [shop_of(&client, "shop-0"), shop_of(&client, "shop-1")];

    slow_calls_leave_pings_answered(&client, &actor, &shops).await;
    token_health_is_published(&health).await;
    let calls_after_stop = stop_ends_the_periodic_check(&client, actor, join).await;
    respawn_checks_through_the_same_client(&client, args, &shops, &cfg, calls_after_stop).await;
    assert_no_secrets_logged(&cfg, &[]);
}

/// Ten 300 ms calls run concurrently while a ping is answered within 200 ms.
async fn slow_calls_leave_pings_answered(
    client: &TemuClient,
    actor: &ActorRef<TemuMsg>,
    shops: &[TemuShop; 2],
) {
    let started = Instant::now();
    let calls = (0..10).map(|i| {
        let c = client.clone();
        let shop = shops[i % 2].clone();
        async move {
            c.list_orders(
                &shop,
                &OrderListRequest {
                    page_number: 1,
                    page_size: 10,
                    fulfillment_type_list: every_fulfillment_type(),
                    ..Default::default()
                },
            )
            .await
        }
    });
    let ping_during = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        assert!(
            ping(actor, Duration::from_millis(200)).await,
            "ping answered during slow calls"
        );
        t.elapsed()
    };
    let (results, ping_took) = tokio::join!(futures_util::future::join_all(calls), ping_during);
    assert!(results.iter().all(|r| r.is_ok()));
    assert!(ping_took < Duration::from_millis(200));
    // 10 calls of 300 ms each ran concurrently.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The actor's token check publishes per-shop health.
async fn token_health_is_published(health: &Health) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = health.report();
        if let Some(checks) = report.checks.get(HEALTH_TOKENS) {
            if checks.iter().all(|c| {
                c.output
                    .as_deref()
                    .is_some_and(|o| o.contains("valid until"))
            }) {
                assert!(checks.iter().all(|c| c.status == Status::Pass));
                break;
            }
        }
        assert!(Instant::now() < deadline, "token health not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stop: the actor answers nothing more and its periodic check (every second) stops with it.
/// Returns the client's call count after the stop.
async fn stop_ends_the_periodic_check(
    client: &TemuClient,
    actor: ActorRef<TemuMsg>,
    join: tokio::task::JoinHandle<()>,
) -> u64 {
    actor.stop(None);
    tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .unwrap()
        .unwrap();
    assert!(check_tokens_via(&actor).await.is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls_after_stop = client.stats().calls;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        client.stats().calls,
        calls_after_stop,
        "no token check after the actor stopped"
    );
    calls_after_stop
}

/// A re-spawn gets the same client: its checks count in that client and update its shops.
async fn respawn_checks_through_the_same_client(
    client: &TemuClient,
    args: TemuActorArgs,
    shops: &[TemuShop; 2],
    cfg: &SimConfig,
    calls_after_stop: u64,
) {
    let (actor2, join2) = Actor::spawn(Some("temu-test".into()), TemuActor, args)
        .await
        .unwrap();
    let reports = check_tokens_via(&actor2)
        .await
        .expect("the re-spawned actor answers");
    let shop0 = reports.iter().find(|r| r.shop == "shop-0").expect("shop-0");
    assert!(
        matches!(&shop0.state, TokenState::Valid { mall_id: Some(m), .. } if *m == cfg.shops[0].mall_id.to_string()),
        "{shop0}"
    );
    assert!(client.stats().calls > calls_after_stop);
    assert_eq!(
        shops[0].mall_id(),
        Some(cfg.shops[0].mall_id.to_string()),
        "the shop values handed out see what the re-spawned actor learned"
    );
    actor2.stop(None);
    tokio::time::timeout(Duration::from_secs(5), join2)
        .await
        .unwrap()
        .unwrap();
}

/// `fulfillmentTypeList` as documented: absent or empty lists seller-fulfilled children only
/// (a parent without one is not listed), one type lists only those children, both list all;
/// the detail call filters the same way; an unknown value is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fulfillment_type_list_selects_children_as_documented() {
    let (sim, _cfg, client) = sim_and_client(41, 300, 1000, |_, tune| tune.rate_burst = 50).await;
    let shop0 = shop_of(&client, "shop-0");
    let truth = sim.ground_truth().shops["shop-0"].clone();
    let list = |types: Option<Vec<String>>| {
        let (client, shop0) = (client.clone(), shop0.clone());
        async move {
            let mut children: BTreeSet<(String, String)> = BTreeSet::new();
            let mut parents = 0;
            for n in 1..=3 {
                let r = order_page(&client, &shop0, n, types.clone()).await;
                parents += r.page_items.len();
                for item in &r.page_items {
                    assert!(
                        !item.order_list.is_empty(),
                        "a listed parent has a listed child"
                    );
                    for c in &item.order_list {
                        let kind = c.fulfillment_type.clone().unwrap();
                        children.insert((c.order_sn.clone(), kind));
                    }
                }
            }
            (parents, children)
        }
    };
    let kinds: Vec<&str> = truth
        .orders
        .values()
        .flat_map(|o| o["orderList"].as_array().unwrap().iter())
        .map(|c| c["fulfillmentType"].as_str().unwrap())
        .collect();
    let sellers = kinds.iter().filter(|k| **k == "fulfillBySeller").count();
    let (p_default, c_default) = list(None).await;
    let (p_empty, c_empty) = list(Some(vec![])).await;
    let (p_coop, c_coop) = list(Some(vec!["fulfillByCooperativeWarehouse".into()])).await;
    let (p_all, c_all) = list(every_fulfillment_type()).await;
    assert_eq!(c_default, c_empty);
    assert_eq!(p_default, p_empty);
    assert_eq!(c_default.len(), sellers);
    assert!(c_default.iter().all(|(_, k)| k == "fulfillBySeller"));
    assert!(c_coop
        .iter()
        .all(|(_, k)| k == "fulfillByCooperativeWarehouse"));
    assert_eq!(c_all.len(), kinds.len());
    assert_eq!(p_all, truth.orders.len());
    assert!(
        p_default < p_all && p_coop < p_all,
        "{p_default} {p_coop} {p_all}"
    );
    assert_eq!(c_default.len() + c_coop.len(), c_all.len());

    // The detail of an all-cooperative parent: not found seller-only, whole with both types.
    let all_coop = truth
        .orders
        .iter()
        .find(|(_, o)| {
            o["orderList"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["fulfillmentType"] == "fulfillByCooperativeWarehouse")
        })
        .map(|(sn, _)| sn.clone())
        .expect("an all-cooperative parent");
    let detail = |types: Option<Vec<String>>| OrderDetailRequest {
        parent_order_sn: all_coop.clone(),
        fulfillment_type_list: types,
    };
    assert!(client.order_detail(&shop0, &detail(None)).await.is_err());
    let whole = client
        .order_detail(&shop0, &detail(every_fulfillment_type()))
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(
        whole.order_list.len(),
        truth.orders[&all_coop]["orderList"]
            .as_array()
            .unwrap()
            .len()
    );
    let bad = OrderListRequest {
        page_number: 1,
        page_size: 10,
        fulfillment_type_list: Some(vec!["fulfillByDrone".into()]),
        ..Default::default()
    };
    let e = client.list_orders(&shop0, &bad).await.unwrap_err();
    assert_eq!(e.code(), Some(2_000_000), "{e:?}");
}

/// A token may call only the APIs of its `apiScopeList` (5000000 otherwise); the token check
/// names the configured streams it leaves out and publishes a `temu:scopes` warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_limit_the_apis_and_the_token_check_names_the_skipped_streams() {
    let mut cfg = SimConfig::demo(43, 1, 20);
    cfg.shops[0].scopes.retain(|s| s != API_GOODS_LIST);
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let (apps, shops) = configs_for(&sim, &cfg);
    let health = Health::new("t");
    let client = TemuClient::build(
        &fast_temu_config(),
        &apps,
        &shops,
        fast_tuning(),
        observed_by(&health),
    )
    .unwrap();
    let shop = shop_of(&client, "shop-0");
    let goods = GoodsListRequest {
        page_no: 1,
        page_size: 10,
        goods_search_type: 1,
        ..Default::default()
    };
    let e = client.list_goods(&shop, &goods).await.unwrap_err();
    assert_eq!(e.code(), Some(5_000_000), "{e:?}");
    assert!(
        shop.unscoped_streams().is_empty(),
        "unknown before a token check"
    );
    client.token_info(&shop).await.unwrap();
    assert_eq!(
        shop.unscoped_streams(),
        vec![(temu_sync::config::Stream::Products, API_GOODS_LIST)]
    );
    let report = serde_json::to_string(&health.report()).unwrap();
    assert!(
        report.contains("temu:scopes") && report.contains("products (needs"),
        "{report}"
    );
}

/// Page `n` (100 a page) of the order listing, asking for the children of `types`.
async fn order_page(
    client: &TemuClient,
    shop: &TemuShop,
    n: u32,
    types: Option<Vec<String>>,
) -> OrderListResult {
    let req = OrderListRequest {
        page_number: n,
        page_size: 100,
        fulfillment_type_list: types,
        ..Default::default()
    };
    client
        .list_orders(shop, &req)
        .await
        .unwrap()
        .result
        .unwrap()
}
