//! Property-based fuzzing of everything the Temu API's bytes go through: the envelope
//! (`temu::envelope::Envelope::parse`), the typed results (`temu::model`), and the conversion to
//! rows (`store::records::*::from_api`). Properties: never a panic; an `Err` always says something;
//! a record that converts has a non-empty key and a timestamp Temu could have sent.
//!
//! `FUZZ_CASES` (default 3000) sets the number of cases per target; each target prints how many
//! executions it ran and how long it took.

use crate::common::run;

use proptest::prelude::*;
use serde_json::{Map, Value};
use temu_sync::store::records::{AfterSalesRecord, OrderRecord, ProductRecord};
use temu_sync::temu::envelope::Envelope;
use temu_sync::temu::model::{AfterSalesListResult, GoodsListResult, OrderListResult};

/// Field names the decoders look at (and a few they don't), so random objects hit real paths.
const KEYS: &[&str] = &[
    "success",
    "errorCode",
    "errorMsg",
    "requestId",
    "result",
    "totalItemNum",
    "pageItems",
    "parentOrderMap",
    "orderList",
    "parentOrderSn",
    "parentOrderStatus",
    "parentOrderTime",
    "updateTime",
    "expectShipLatestTime",
    "regionId",
    "siteId",
    "orderSn",
    "goodsId",
    "skuId",
    "orderStatus",
    "quantity",
    "originalOrderQuantity",
    "canceledQuantityBeforeShipment",
    "fulfillmentType",
    "productList",
    "productSkuId",
    "productId",
    "extCode",
    "soldFactor",
    "total",
    "goodsList",
    "goodsName",
    "outGoodsSn",
    "price",
    "currency",
    "skuInfoList",
    "skuSn",
    "stock",
    "specList",
    "data",
    "parentAfterSalesSn",
    "afterSalesStatusGroup",
    "afterSalesType",
    "createAt",
    "updateAt",
    "x",
    "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(0),
            Just(-1),
            Just(1_700_000_000),
            Just(1_700_000_000_000),
            Just(253_402_300_800),
            Just(-62_135_596_801),
        ]
        .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,12}".prop_map(Value::from),
        "-?[0-9]{1,25}(\\.[0-9]{0,3})?".prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A structurally plausible list result: real shapes with random leaves.
fn plausible_result() -> impl Strategy<Value = Value> {
    let leaf = || json();
    prop_oneof![
        (leaf(), leaf(), leaf(), leaf()).prop_map(|(sn, upd, st, items)| {
            serde_json::json!({"totalItemNum": 1, "pageItems": [
                {"parentOrderMap": {"parentOrderSn": sn, "updateTime": upd, "parentOrderStatus": st},
                 "orderList": items}
            ]})
        }),
        (leaf(), leaf(), leaf()).prop_map(|(id, price, skus)| {
            serde_json::json!({"total": 1, "goodsList": [
                {"goodsId": id, "price": price, "skuInfoList": skus}
            ]})
        }),
        (leaf(), leaf(), leaf()).prop_map(|(sn, upd, ty)| {
            serde_json::json!({"total": 1, "data": [
                {"parentAfterSalesSn": sn, "updateAt": upd, "afterSalesType": ty}
            ]})
        }),
    ]
}

/// Decodes `result` every way the client does and converts every item; panics are the failure.
fn decode_everything(result: &str) {
    if let Ok(list) = serde_json::from_str::<OrderListResult>(result) {
        for item in &list.page_items {
            match OrderRecord::from_api(item) {
                Ok(rec) => assert!(!rec.parent_order_sn.is_empty()),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    if let Ok(list) = serde_json::from_str::<GoodsListResult>(result) {
        for goods in &list.goods_list {
            if let Err(e) = ProductRecord::from_api(goods) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
    if let Ok(list) = serde_json::from_str::<AfterSalesListResult>(result) {
        for case in &list.data {
            match AfterSalesRecord::from_api(case) {
                Ok(rec) => assert!(!rec.parent_after_sales_sn.is_empty()),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}

#[test]
fn envelope_never_panics_on_arbitrary_bytes() {
    run(
        "envelope/bytes",
        prop::collection::vec(any::<u8>(), 0..512),
        |bytes| {
            if let Err(e) = Envelope::parse(&bytes) {
                prop_assert!(!e.is_empty());
            }
            Ok(())
        },
    );
}

#[test]
fn envelope_and_records_never_panic_on_random_json() {
    run(
        "envelope+records/json",
        (json(), prop_oneof![json(), plausible_result()]),
        |(head, result)| {
            // A random envelope head with a random or plausible result.
            let mut env = match head {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            env.insert("result".into(), result);
            let body = serde_json::to_vec(&Value::Object(env)).expect("serialize");
            match Envelope::parse(&body) {
                Ok(envelope) => {
                    if let Some(raw) = envelope.result {
                        decode_everything(raw.get());
                    }
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
            Ok(())
        },
    );
}

#[test]
fn truncated_and_corrupted_envelopes_are_errors_not_panics() {
    run(
        "envelope/truncated+corrupted",
        (
            plausible_result(),
            any::<prop::sample::Index>(),
            any::<u8>(),
        ),
        |(result, cut, byte)| {
            let body = serde_json::to_vec(&serde_json::json!({
                "success": true, "errorCode": 1000000, "result": result
            }))
            .expect("serialize");
            let at = cut.index(body.len());
            let truncated = &body[..at];
            prop_assert!(Envelope::parse(truncated).is_err() || at == body.len());
            let mut corrupted = body.clone();
            corrupted[at.min(body.len() - 1)] = byte;
            if let Ok(envelope) = Envelope::parse(&corrupted) {
                if let Some(raw) = envelope.result {
                    decode_everything(raw.get());
                }
            }
            Ok(())
        },
    );
}

#[test]
fn record_conversion_never_panics_on_plausible_results() {
    run("records/plausible", plausible_result(), |result| {
        decode_everything(&result.to_string());
        Ok(())
    });
}
