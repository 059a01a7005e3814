//! The documented JSON type of every field the sync decodes into a typed column, and the check
//! that finds a record whose field arrived as something else.
//!
//! Owns: the field-type tables (from `../shared/docs/temu-open-api.md`, which mirrors the public
//! SDK entities, e.g. `hiscaler/temu-go` `entity/order.go`) and [`unexpected_fields`]. The
//! decoders in [`super::model`] are tolerant — a value of another shape becomes `None` in the
//! typed record rather than failing the page — so this check is what keeps such a value from
//! turning into NULL silently: the stream counts each field it names
//! (`temu_sync_unexpected_field_types_total{stream,field}`) and logs it, rate-limited.
//!
//! Must not: decide what to store (the raw JSON keeps every value whatever its shape).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

/// At most one log line per (stream, field) this often; the records in between are counted in
/// the next line (and always in the metric).
pub const DRIFT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The rate limit of the unexpected-type log: per (stream, field), when it was last logged and
/// how many records were seen since.
#[derive(Debug, Default)]
pub struct DriftLog {
    seen: Mutex<HashMap<(String, String), LogState>>,
}

/// When a (stream, field) was last logged, and the records seen since.
type LogState = (Option<Instant>, u64);

impl DriftLog {
    /// Notes one record of `stream` with `field` unexpected; `Some(n)` when a line is due now,
    /// `n` the records (this one included) since the last line.
    pub fn note(&self, stream: &str, field: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock();
        let entry = seen
            .entry((stream.to_string(), field.to_string()))
            .or_insert((None, 0));
        entry.1 += 1;
        let due = entry
            .0
            .is_none_or(|last| now.duration_since(last) >= DRIFT_LOG_EVERY);
        if !due {
            return None;
        }
        let n = entry.1;
        *entry = (Some(now), 0);
        Some(n)
    }
}

/// A field's JSON type as the API documents it. `null` and an absent field are always accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// An integer: a JSON number or a numeric string (the decoders read both).
    Int,
    /// A JSON string.
    Str,
    /// An identifier: a number or a string (kept as text).
    Id,
    /// `true`/`false` (or `0`/`1`).
    Bool,
    /// A JSON array.
    List,
}

impl JsonType {
    fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) => true,
            (JsonType::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (JsonType::Int, Value::String(s)) => s.trim().parse::<i64>().is_ok(),
            (JsonType::Str, Value::String(_)) => true,
            (JsonType::Id, Value::String(_) | Value::Number(_)) => true,
            (JsonType::Bool, Value::Bool(_)) => true,
            (JsonType::Bool, Value::Number(n)) => matches!(n.as_i64(), Some(0 | 1)),
            (JsonType::List, Value::Array(_)) => true,
            _ => false,
        }
    }
}

/// A list record's typed fields: its top level, and those of its nested objects and lists.
pub struct RecordFields {
    pub top: &'static [(&'static str, JsonType)],
    pub nested: &'static [Nested],
}

/// Fields of an object (`parentOrderMap`) or of every element of a list (`orderList`).
pub struct Nested {
    pub key: &'static str,
    /// The metric label of a field is `label.field`.
    pub label: &'static str,
    pub fields: &'static [(&'static str, JsonType)],
    pub nested: &'static [Nested],
}

use JsonType::{Bool, Id, Int, List, Str};

const ORDER_PRODUCT: &[(&str, JsonType)] = &[
    ("productSkuId", Id),
    ("productId", Id),
    ("extCode", Str),
    ("soldFactor", Int),
];

const PARENT_ORDER: &[(&str, JsonType)] = &[
    ("parentOrderSn", Str),
    ("parentOrderStatus", Int),
    ("parentOrderTime", Int),
    ("updateTime", Int),
    ("expectShipLatestTime", Int),
    ("parentShippingTime", Int),
    ("latestDeliveryTime", Int),
    ("regionId", Int),
    ("siteId", Int),
    ("parentOrderLabel", List),
    ("fulfillmentWarning", List),
    ("hasShippingFee", Bool),
];

const CHILD_ORDER: &[(&str, JsonType)] = &[
    ("orderSn", Str),
    ("goodsId", Id),
    ("skuId", Id),
    ("orderStatus", Int),
    ("quantity", Int),
    ("originalOrderQuantity", Int),
    ("canceledQuantityBeforeShipment", Int),
    ("fulfillmentType", Str),
    ("inventoryDeductionWarehouseId", Id),
    ("inventoryDeductionWarehouseName", Str),
    ("orderPaymentType", Str),
    ("orderLabel", List),
    ("orderShippingTime", Int),
    ("goodsName", Str),
    ("productList", List),
];

/// A page item of `bg.order.list.v2.get` (and the result of `bg.order.detail.v2.get`).
pub const ORDER: RecordFields = RecordFields {
    top: &[],
    nested: &[
        Nested {
            key: "parentOrderMap",
            label: "parentOrderMap",
            fields: PARENT_ORDER,
            nested: &[],
        },
        Nested {
            key: "orderList",
            label: "orderList",
            fields: CHILD_ORDER,
            nested: &[Nested {
                key: "productList",
                label: "orderList.productList",
                fields: ORDER_PRODUCT,
                nested: &[],
            }],
        },
    ],
};

/// A `goodsList` element of `bg.local.goods.list.query`.
pub const GOODS: RecordFields = RecordFields {
    top: &[
        ("goodsId", Id),
        ("goodsName", Str),
        ("outGoodsSn", Str),
        ("quantity", Int),
        ("currency", Str),
        ("skuInfoList", List),
    ],
    nested: &[Nested {
        key: "skuInfoList",
        label: "skuInfoList",
        fields: &[("skuId", Id), ("skuSn", Str), ("stock", Int)],
        nested: &[],
    }],
};

/// A `data` element of `bg.aftersales.parentaftersales.list.get`.
pub const AFTERSALES: RecordFields = RecordFields {
    top: &[
        ("parentAfterSalesSn", Str),
        ("parentOrderSn", Str),
        ("afterSalesStatusGroup", Int),
        ("afterSalesType", Int),
        ("createAt", Int),
        ("updateAt", Int),
    ],
    nested: &[],
};

/// The fields of `record` (one list element as received) whose value is not of the documented
/// type, as metric labels (`orderList.fulfillmentType`), each once. A record that is not even a
/// JSON object yields nothing here (the decoder refuses it).
pub fn unexpected_fields(spec: &RecordFields, record: &str) -> Vec<String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(record) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    check(&map, spec.top, "", &mut out);
    for nested in spec.nested {
        check_nested(&map, nested, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn check(
    map: &serde_json::Map<String, Value>,
    fields: &[(&'static str, JsonType)],
    label: &str,
    out: &mut Vec<String>,
) {
    for (name, ty) in fields {
        if let Some(v) = map.get(*name) {
            if !ty.accepts(v) {
                out.push(if label.is_empty() {
                    (*name).to_string()
                } else {
                    format!("{label}.{name}")
                });
            }
        }
    }
}

fn check_nested(map: &serde_json::Map<String, Value>, nested: &Nested, out: &mut Vec<String>) {
    let objects: Vec<&serde_json::Map<String, Value>> = match map.get(nested.key) {
        Some(Value::Object(o)) => vec![o],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    for o in objects {
        check(o, nested.fields, nested.label, out);
        for inner in nested.nested {
            check_nested(o, inner, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_fulfillment_type_is_unexpected() {
        let raw = r#"{"parentOrderMap":{"parentOrderSn":"PO-1","updateTime":"17"},
            "orderList":[{"orderSn":"O-1","fulfillmentType":0,"productList":[{"extCode":5}]},
                         {"orderSn":"O-2","fulfillmentType":"fulfillBySeller","orderLabel":{}}]}"#;
        assert_eq!(
            unexpected_fields(&ORDER, raw),
            vec![
                "orderList.fulfillmentType",
                "orderList.orderLabel",
                "orderList.productList.extCode"
            ]
        );
    }

    #[test]
    fn the_log_is_rate_limited_per_stream_and_field() {
        let log = DriftLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note("orders", "f", t0), Some(1));
        assert_eq!(log.note("orders", "f", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note("orders", "g", t0), Some(1));
        assert_eq!(log.note("orders", "f", t0 + Duration::from_secs(2)), None);
        assert_eq!(log.note("orders", "f", t0 + DRIFT_LOG_EVERY), Some(3));
    }

    #[test]
    fn documented_shapes_and_nulls_pass() {
        let raw = r#"{"parentOrderMap":{"parentOrderSn":"PO-1","updateTime":17,
            "hasShippingFee":null,"parentOrderLabel":[{"name":"past_due","value":1}]},
            "orderList":[{"orderSn":"O-1","goodsId":"601","fulfillmentType":"fulfillBySeller",
            "inventoryDeductionWarehouseId":"WH-1","orderShippingTime":null}]}"#;
        assert!(unexpected_fields(&ORDER, raw).is_empty());
    }
}
