//! The client's calls against the simulator: the signature the simulator checks, typed
//! responses that keep their raw JSON.

use super::page;
use crate::common::*;
use serde_json::json;
use temu_sync::temu::model::*;
use temu_sync::temu::sign::Params;

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
    assert!(first.parent_order_map.parent_order_label.is_some());
    let sn = first.parent_order_map.parent_order_sn.clone();
    let detail = client
        .order_detail(
            &shop0,
            &OrderDetailRequest {
                parent_order_sn: sn.clone(),
                fulfillment_type_list: None,
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
