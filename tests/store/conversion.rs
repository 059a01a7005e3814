//! Record conversion from the API's JSON: nulls, string ids, milliseconds, unknown fields kept
//! in `raw`, and typed errors for a record without a usable key or update time.
//!
//! Owns the `*Record::from_api` cases; must not touch a database.

use serde_json::json;
use temu_sync::store::*;
use temu_sync::temu::model::{AfterSales, Goods, OrderItem};

use crate::fixtures::{order_json, parse, ts};

#[test]
fn order_conversion_handles_nulls_string_ids_and_keeps_unknown_fields() {
    let raw = json!({
        "parentOrderMap": {"parentOrderSn": "PO-211-1", "parentOrderStatus": "2",
                           "parentOrderTime": null, "updateTime": "1700000500",
                           "expectShipLatestTime": 1_700_100_000_000_i64, "regionId": 211,
                           "siteId": null, "brandNewField": {"nested": [1, 2]}},
        "orderList": [
            {"orderSn": "O-1", "goodsId": "601", "skuId": 17, "orderStatus": 2, "quantity": "3",
             "productList": [{"productSkuId": 17, "productId": 601, "extCode": null},
                             {"productSkuId": 99}],
             "mysteryChildField": true},
            {"orderSn": "O-2", "goodsId": null, "productList": null}
        ],
        "itemLevelExtra": "kept"
    });
    let record = OrderRecord::from_api(&parse::<OrderItem>(raw.clone())).unwrap();
    assert_eq!(record.parent_order_sn, "PO-211-1");
    assert_eq!(record.status, Some(2));
    assert_eq!(record.order_time, None);
    assert_eq!(record.updated_at, ts(1_700_000_500));
    // Milliseconds recognised.
    assert_eq!(record.expect_ship_latest_time, Some(ts(1_700_100_000)));
    assert_eq!(record.region_id, Some(211));
    assert_eq!(record.site_id, None);
    assert_eq!(
        record.raw.to_value(),
        raw,
        "raw is the whole record, unknown fields included"
    );
    assert_eq!(record.items.len(), 2);
    let first = &record.items[0];
    assert_eq!(first.goods_id.as_deref(), Some("601"));
    assert_eq!(first.sku_id.as_deref(), Some("17"));
    assert_eq!(first.quantity, Some(3));
    assert_eq!(
        first.product_sku_id.as_deref(),
        Some("17"),
        "productList[0]"
    );
    assert_eq!(first.product_id.as_deref(), Some("601"));
    assert_eq!(first.ext_code, None);
    let second = &record.items[1];
    assert_eq!(second.goods_id, None);
    assert_eq!(second.product_sku_id, None);
}

#[test]
fn conversion_without_a_usable_update_time_is_a_typed_error() {
    let mut raw = order_json("PO-1", 0, 1, &[]);
    raw["parentOrderMap"]["updateTime"] = json!(null);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::MissingUpdateTime { field: "updateTime", ref key, .. }) if key == "PO-1"
    ));
    raw["parentOrderMap"]["updateTime"] = json!(-5);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::InvalidTime { value: -5, .. })
    ));
    raw["parentOrderMap"]["updateTime"] = json!(i64::MAX);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::InvalidTime { .. })
    ));
    raw["parentOrderMap"]["updateTime"] = json!(1_700_000_000);
    raw["parentOrderMap"]["parentOrderStatus"] = json!(1_i64 << 40);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::OutOfRange {
            field: "parentOrderStatus",
            ..
        })
    ));
    raw["parentOrderMap"]["parentOrderStatus"] = json!(1);
    raw["parentOrderMap"]["parentOrderSn"] = json!("  ");
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw)),
        Err(RecordError::MissingKey { .. })
    ));
    let no_update = parse::<AfterSales>(json!({"parentAfterSalesSn": "AS-1", "createAt": 5}));
    assert!(matches!(
        AfterSalesRecord::from_api(&no_update),
        Err(RecordError::MissingUpdateTime {
            field: "updateAt",
            ..
        })
    ));
}

#[test]
fn product_and_aftersales_conversion() {
    let goods = parse::<Goods>(json!({
        "goodsId": 601, "goodsName": "Mug\u{0}", "price": 12.5, "currency": "USD",
        "skuInfoList": [{"skuId": 17, "stock": "4", "specList": null},
                        {"skuId": "18", "specList": [{"specName": "red"}]}],
        "futureField": [1]
    }));
    let p = ProductRecord::from_api(&goods).unwrap();
    assert_eq!(p.goods_id, "601");
    assert_eq!(
        p.name.as_deref(),
        Some("Mug\u{FFFD}"),
        "NUL cannot be stored"
    );
    assert_eq!(p.price, Some("12.5".parse().unwrap()));
    assert_eq!(p.raw.to_value()["futureField"], json!([1]));
    assert_eq!(p.raw.to_value()["goodsName"], json!("Mug\u{FFFD}"));
    assert_eq!(p.skus.len(), 2);
    assert_eq!(p.skus[0].stock, Some(4));
    assert_eq!(p.skus[0].spec, None);
    assert_eq!(p.skus[1].spec, Some(json!([{"specName": "red"}])));
    for (price, expected) in [
        (json!("12.30"), Some("12.30")),
        (json!(" 7 "), Some("7")),
        (json!({"amount": 1}), None),
        (json!("n/a"), None),
        (json!(null), None),
    ] {
        let g = parse::<Goods>(json!({"goodsId": "1", "price": price}));
        let p = ProductRecord::from_api(&g).unwrap();
        assert_eq!(p.price, expected.map(|e| e.parse().unwrap()), "{price}");
    }

    let a = AfterSalesRecord::from_api(&parse::<AfterSales>(json!({
        "parentAfterSalesSn": "AS-1", "parentOrderSn": null, "afterSalesStatusGroup": "3",
        "afterSalesType": 2, "createAt": 1_700_000_000_000_i64, "updateAt": 1_700_000_100,
        "extraThing": "x"
    })))
    .unwrap();
    assert_eq!(a.parent_order_sn, None);
    assert_eq!(a.status_group, Some(3));
    assert_eq!(a.kind, Some(2));
    assert_eq!(a.created_at_temu, Some(ts(1_700_000_000)));
    assert_eq!(a.updated_at, ts(1_700_000_100));
    assert_eq!(a.raw.to_value()["extraThing"], json!("x"));
}
