//! The API contract: a recorded-shape answer of each list API (`tests/fixtures/api/`, field
//! names and JSON types from the public SDK entities and the partner docs) decodes with our
//! decoders into the values it carries, no field of it is of an undocumented type, and the
//! simulator serves records of the same shape. A field-type drift — in the decoders, the typed
//! records, the simulator or the documented types — fails here.
//!
//! Owns the contract cases; must not test transport or retries.

use std::collections::BTreeSet;

use serde_json::Value;
use temu_sync::store::{AfterSalesRecord, OrderRecord, ProductRecord};
use temu_sync::temu::fields::{self, unexpected_fields};
use temu_sync::temu::model::*;

use crate::common::{shop_of, sim_and_client};

fn fixture(api: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/api/{api}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture's `result`, decoded as `T`.
fn result<T: serde::de::DeserializeOwned>(api: &str) -> T {
    serde_json::from_value(fixture(api)["result"].clone()).expect("the fixture decodes")
}

#[test]
fn order_list_fixture_decodes_into_typed_columns_as_the_api_sends_them() {
    let r: OrderListResult = result(API_ORDER_LIST);
    assert_eq!(r.total_item_num, Some(2));
    for item in &r.page_items {
        assert_eq!(
            unexpected_fields(&fields::ORDER, item.raw.get()),
            Vec::<String>::new()
        );
    }
    let first = OrderRecord::from_api(&r.page_items[0]).expect("converts");
    assert_eq!(first.status, Some(41));
    assert_eq!(
        first.parent_shipping_time.map(|t| t.timestamp()),
        Some(1_764_633_600)
    );
    assert_eq!(
        first.latest_delivery_time.map(|t| t.timestamp()),
        Some(1_765_411_200)
    );
    assert_eq!(first.has_shipping_fee, Some(false));
    assert_eq!(
        first.labels.as_ref().unwrap()[0]["name"],
        "soon_to_be_overdue"
    );
    let (seller, coop) = (&first.items[0], &first.items[1]);
    assert_eq!(seller.fulfillment_type.as_deref(), Some("fulfillBySeller"));
    assert_eq!(
        coop.fulfillment_type.as_deref(),
        Some("fulfillByCooperativeWarehouse")
    );
    assert_eq!(
        seller.inventory_deduction_warehouse_id.as_deref(),
        Some("WH-5001")
    );
    assert_eq!(
        coop.inventory_deduction_warehouse_name.as_deref(),
        Some("Cooperative warehouse 2")
    );
    assert_eq!(seller.order_payment_type.as_deref(), Some("PPD"));
    assert_eq!(coop.order_payment_type.as_deref(), Some("COD"));
    assert_eq!(
        seller.shipping_time.map(|t| t.timestamp()),
        Some(1_764_633_600)
    );
    assert_eq!(coop.shipping_time, None);
    assert_eq!(
        seller.labels.as_ref().unwrap()[0]["name"],
        "customized_products"
    );
    assert_eq!(seller.goods_id.as_deref(), Some("601099512345678"));
    assert_eq!(seller.product_sku_id.as_deref(), Some("50001"));
    assert_eq!(seller.quantity, Some(2));
    assert_eq!(seller.canceled_quantity_before_shipment, Some(1));
    let second = OrderRecord::from_api(&r.page_items[1]).expect("converts");
    assert_eq!(second.parent_shipping_time, None, "0 is not set");
    assert_eq!(second.has_shipping_fee, None);
}

#[test]
fn goods_and_aftersales_fixtures_decode() {
    let g: GoodsListResult = result(API_GOODS_LIST);
    assert_eq!(g.total, Some(1));
    assert!(unexpected_fields(&fields::GOODS, g.goods_list[0].raw.get()).is_empty());
    let p = ProductRecord::from_api(&g.goods_list[0]).expect("converts");
    assert_eq!(p.goods_id, "601099512345678");
    assert_eq!(p.price.map(|d| d.to_string()).as_deref(), Some("12.99"));
    assert_eq!(p.skus[1].sku_id, "17592186044420");
    assert_eq!(p.skus[0].stock, Some(300));

    let a: AfterSalesListResult = result(API_AFTERSALES_LIST);
    assert!(unexpected_fields(&fields::AFTERSALES, a.data[0].raw.get()).is_empty());
    let case = AfterSalesRecord::from_api(&a.data[0]).expect("converts");
    assert_eq!(case.kind, Some(2));
    assert_eq!(case.updated_at.timestamp(), 1_764_700_000);
}

/// The drift of issue 13 (a numeric `fulfillmentType`) and its kin are found, per field, while
/// the typed value stays empty rather than made up.
#[test]
fn a_drifted_field_type_is_named_not_silently_nulled() {
    let mut doc = fixture(API_ORDER_LIST);
    let child = &mut doc["result"]["pageItems"][0]["orderList"][0];
    child["fulfillmentType"] = Value::from(0);
    child["orderShippingTime"] = Value::from("soon");
    child["orderLabel"] = serde_json::json!({"name": "x"});
    doc["result"]["pageItems"][0]["parentOrderMap"]["hasShippingFee"] = Value::from("yes");
    let r: OrderListResult = serde_json::from_value(doc["result"].clone()).expect("decodes");
    assert_eq!(
        unexpected_fields(&fields::ORDER, r.page_items[0].raw.get()),
        vec![
            "orderList.fulfillmentType",
            "orderList.orderLabel",
            "orderList.orderShippingTime",
            "parentOrderMap.hasShippingFee",
        ]
    );
    let record = OrderRecord::from_api(&r.page_items[0]).expect("still converts");
    assert_eq!(record.items[0].fulfillment_type, None);
    assert_eq!(record.items[0].labels, None);
    assert!(
        record.raw.get().contains("\"soon\""),
        "the raw JSON keeps the value"
    );
}

/// Every key of the objects in `items` under `path` (`parentOrderMap`, `orderList[]`, `` = the item).
fn keys(items: &[Value], path: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for item in items {
        let objects: Vec<&Value> = match path {
            "" => vec![item],
            "orderList" => item[path]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            p => vec![&item[p]],
        };
        for o in objects {
            out.extend(o.as_object().into_iter().flat_map(|m| m.keys().cloned()));
        }
    }
    out
}

fn raw_values<T>(items: &[temu_sync::temu::envelope::WithRaw<T>]) -> Vec<Value> {
    items
        .iter()
        .map(|i| serde_json::from_str(i.raw.get()).expect("raw is JSON"))
        .collect()
}

/// What the simulator serves for each list API: (API, its list key, the records as JSON, their
/// field types), and the child fulfilment types it listed.
async fn served(
    client: &temu_sync::temu::TemuClient,
    shop: &temu_sync::temu::TemuShop,
) -> (
    Vec<(
        &'static str,
        &'static str,
        Vec<Value>,
        &'static fields::RecordFields,
    )>,
    BTreeSet<String>,
) {
    let page = |n| OrderListRequest {
        page_number: n,
        page_size: 100,
        fulfillment_type_list: every_fulfillment_type(),
        ..Default::default()
    };
    let orders = client
        .list_orders(shop, &page(1))
        .await
        .unwrap()
        .result
        .unwrap();
    let goods = GoodsListRequest {
        page_no: 1,
        page_size: 100,
        goods_search_type: 1,
        ..Default::default()
    };
    let goods = client
        .list_goods(shop, &goods)
        .await
        .unwrap()
        .result
        .unwrap();
    let after = AfterSalesListRequest {
        page_no: 1,
        page_size: 100,
        update_at_start: Some(0),
        update_at_end: Some(chrono::Utc::now().timestamp()),
        ..Default::default()
    };
    let after = client
        .list_aftersales(shop, &after)
        .await
        .unwrap()
        .result
        .unwrap();
    let types = orders
        .page_items
        .iter()
        .flat_map(|i| {
            i.order_list
                .iter()
                .filter_map(|c| c.fulfillment_type.clone())
        })
        .collect();
    let served = vec![
        (
            API_ORDER_LIST,
            "pageItems",
            raw_values(&orders.page_items),
            &fields::ORDER,
        ),
        (
            API_GOODS_LIST,
            "goodsList",
            raw_values(&goods.goods_list),
            &fields::GOODS,
        ),
        (
            API_AFTERSALES_LIST,
            "data",
            raw_values(&after.data),
            &fields::AFTERSALES,
        ),
    ];
    (served, types)
}

/// The simulator serves the documented shape: no field of an undocumented type, and no field
/// the recorded shape does not have; both fulfilment types among the children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_serves_the_recorded_shape() {
    let (_sim, _cfg, client) = sim_and_client(31, 120, 1000, |_, _| {}).await;
    let shop = shop_of(&client, "shop-0");
    let (served, types) = served(&client, &shop).await;
    for (api, list, items, spec) in served {
        assert!(!items.is_empty(), "{api} served records");
        for item in &items {
            let unexpected = unexpected_fields(spec, &item.to_string());
            assert!(unexpected.is_empty(), "{api}: {unexpected:?}");
        }
        let recorded = fixture(api)["result"][list].as_array().cloned().unwrap();
        for path in ["", "parentOrderMap", "orderList"] {
            let extra: Vec<String> = keys(&items, path)
                .difference(&keys(&recorded, path))
                .cloned()
                .collect();
            assert!(
                extra.is_empty(),
                "{api} {path}: fields not in the recorded shape: {extra:?}"
            );
        }
    }
    assert_eq!(
        types,
        BTreeSet::from([
            "fulfillBySeller".into(),
            "fulfillByCooperativeWarehouse".into()
        ])
    );
}

/// An optional text of products and after-sales sent as a number does not fail the page (which
/// would stall the stream): the record converts, the field is named.
#[test]
fn a_number_where_text_is_documented_converts_and_is_named() {
    let mut doc = fixture(API_GOODS_LIST);
    doc["result"]["goodsList"][0]["goodsName"] = Value::from(42);
    doc["result"]["goodsList"][0]["skuInfoList"][0]["skuSn"] = Value::from(7);
    let g: GoodsListResult = serde_json::from_value(doc["result"].clone()).expect("decodes");
    assert_eq!(
        unexpected_fields(&fields::GOODS, g.goods_list[0].raw.get()),
        vec!["goodsName", "skuInfoList.skuSn"]
    );
    let p = ProductRecord::from_api(&g.goods_list[0]).expect("converts");
    assert_eq!((p.name, p.skus[0].sku_sn.clone()), (None, None));
    let mut doc = fixture(API_AFTERSALES_LIST);
    doc["result"]["data"][0]["parentOrderSn"] = Value::from(5);
    let a: AfterSalesListResult = serde_json::from_value(doc["result"].clone()).expect("decodes");
    assert_eq!(
        unexpected_fields(&fields::AFTERSALES, a.data[0].raw.get()),
        vec!["parentOrderSn"]
    );
}
