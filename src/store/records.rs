//! Rows as the store writes them, and their conversion from the Temu API's records.
//!
//! Owns: [`OrderRecord`], [`OrderItemRecord`], [`ProductRecord`], [`SkuRecord`],
//! [`AfterSalesRecord`] and [`RecordError`]. Conversion is pure (no database, no clock) and never
//! panics: a record without a usable update time is a [`RecordError`], because an upsert that
//! cannot order versions cannot promise not to move a row backwards.
//!
//! What conversion does to the data: Temu times (seconds; values above 10^11 are taken as
//! milliseconds, as the after-sales units are unconfirmed) become UTC instants, and a zero or
//! negative optional time is "not set"; ids sent as numbers or strings become text; NUL
//! characters, which PostgreSQL cannot store in `text` or `jsonb`, become U+FFFD. The raw JSON of
//! each record is kept whole as text ([`RawJson`]: children live inside their parent's raw),
//! unknown fields included.
//!
//! Must not: touch the database or decide what to sync.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::raw_json::RawJson;
use crate::temu::envelope::WithRaw;
use crate::temu::model::{AfterSales, Goods, Id, Order, OrderItem, Sku};

/// Why an API record cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record's natural key is empty.
    #[error("{kind} record has an empty {field}")]
    MissingKey {
        kind: &'static str,
        field: &'static str,
    },
    /// The update time, needed to order versions, is absent.
    #[error("{kind} {key}: no {field}; cannot tell whether it is newer than the stored copy")]
    MissingUpdateTime {
        kind: &'static str,
        key: String,
        field: &'static str,
    },
    /// A time that is not a usable instant (zero, negative or out of range where required).
    #[error("{kind} {key}: {field} = {value} is not a valid time")]
    InvalidTime {
        kind: &'static str,
        key: String,
        field: &'static str,
        value: i64,
    },
    /// A number that does not fit its column.
    #[error("{kind} {key}: {field} = {value} is out of range")]
    OutOfRange {
        kind: &'static str,
        key: String,
        field: &'static str,
        value: i64,
    },
}

/// A parent order and its child orders, ready for [`super::upsert_orders`].
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub parent_order_sn: String,
    pub status: Option<i32>,
    pub order_time: Option<DateTime<Utc>>,
    /// Temu's `updateTime`: the version of this record.
    pub updated_at: DateTime<Utc>,
    pub expect_ship_latest_time: Option<DateTime<Utc>>,
    pub region_id: Option<i64>,
    pub site_id: Option<i64>,
    pub parent_shipping_time: Option<DateTime<Utc>>,
    pub latest_delivery_time: Option<DateTime<Utc>>,
    /// `parentOrderLabel` (`[{name, value}]`) when it is a list.
    pub labels: Option<Value>,
    pub has_shipping_fee: Option<bool>,
    /// The whole list item (`parentOrderMap` and `orderList`) as received.
    pub raw: RawJson,
    pub items: Vec<OrderItemRecord>,
}

/// A child order with its first product (`productList[0]`; the full list stays in the parent's raw).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItemRecord {
    pub order_sn: String,
    pub goods_id: Option<String>,
    pub sku_id: Option<String>,
    pub status: Option<i32>,
    pub quantity: Option<i64>,
    pub original_quantity: Option<i64>,
    pub canceled_quantity_before_shipment: Option<i64>,
    /// `fulfillBySeller` or `fulfillByCooperativeWarehouse` (other strings kept as sent).
    pub fulfillment_type: Option<String>,
    pub product_sku_id: Option<String>,
    pub product_id: Option<String>,
    pub ext_code: Option<String>,
    pub inventory_deduction_warehouse_id: Option<String>,
    pub inventory_deduction_warehouse_name: Option<String>,
    /// `COD` or `PPD`.
    pub order_payment_type: Option<String>,
    /// `orderLabel` (`[{name, value}]`) when it is a list.
    pub labels: Option<Value>,
    pub shipping_time: Option<DateTime<Utc>>,
}

/// A product (goods) and its SKUs, ready for [`super::upsert_products`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRecord {
    pub goods_id: String,
    pub name: Option<String>,
    pub out_goods_sn: Option<String>,
    pub quantity: Option<i64>,
    /// From a numeric or decimal-string `price`; `None` when absent or of another shape (the raw
    /// JSON keeps whatever was sent).
    pub price: Option<BigDecimal>,
    pub currency: Option<String>,
    pub raw: RawJson,
    pub skus: Vec<SkuRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SkuRecord {
    pub sku_id: String,
    pub sku_sn: Option<String>,
    pub stock: Option<i64>,
    /// `specList` as received (`None` when absent or `null`).
    pub spec: Option<Value>,
}

/// A parent after-sales case, ready for [`super::upsert_aftersales`].
#[derive(Debug, Clone, PartialEq)]
pub struct AfterSalesRecord {
    pub parent_after_sales_sn: String,
    pub parent_order_sn: Option<String>,
    pub status_group: Option<i32>,
    /// `afterSalesType` (1 refund only, 2 return and refund; others kept); the column is `type`.
    pub kind: Option<i32>,
    pub created_at_temu: Option<DateTime<Utc>>,
    /// Temu's `updateAt`: the version of this record.
    pub updated_at: DateTime<Utc>,
    pub raw: RawJson,
}

impl OrderRecord {
    pub fn from_api(item: &WithRaw<OrderItem>) -> Result<Self, RecordError> {
        const KIND: &str = "order";
        let parent = &item.value.parent_order_map;
        let sn = required_key(KIND, "parentOrderSn", &parent.parent_order_sn)?;
        let ctx = Ctx {
            kind: KIND,
            key: &sn,
        };
        let updated_at = ctx.required_time("updateTime", parent.update_time)?;
        let items = item
            .value
            .order_list
            .iter()
            .map(|child| order_item(&ctx, child))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrderRecord {
            status: ctx.int4("parentOrderStatus", parent.parent_order_status)?,
            order_time: ctx.optional_time("parentOrderTime", parent.parent_order_time)?,
            updated_at,
            expect_ship_latest_time: ctx
                .optional_time("expectShipLatestTime", parent.expect_ship_latest_time)?,
            region_id: parent.region_id,
            site_id: parent.site_id,
            parent_shipping_time: ctx
                .optional_time("parentShippingTime", parent.parent_shipping_time)?,
            latest_delivery_time: ctx
                .optional_time("latestDeliveryTime", parent.latest_delivery_time)?,
            labels: json_list(parent.parent_order_label.as_ref()),
            has_shipping_fee: parent.has_shipping_fee,
            raw: RawJson::new(item.raw.clone()),
            items,
            parent_order_sn: sn,
        })
    }
}

fn order_item(ctx: &Ctx<'_>, child: &Order) -> Result<OrderItemRecord, RecordError> {
    let order_sn = required_key(ctx.kind, "orderSn", &child.order_sn)?;
    let product = child.product_list.first();
    Ok(OrderItemRecord {
        goods_id: id_text(child.goods_id.as_ref()),
        sku_id: id_text(child.sku_id.as_ref()),
        status: ctx.int4("orderStatus", child.order_status)?,
        quantity: child.quantity,
        original_quantity: child.original_order_quantity,
        canceled_quantity_before_shipment: child.canceled_quantity_before_shipment,
        fulfillment_type: child.fulfillment_type.as_deref().map(scrub),
        product_sku_id: product.and_then(|p| id_text(p.product_sku_id.as_ref())),
        product_id: product.and_then(|p| id_text(p.product_id.as_ref())),
        ext_code: product.and_then(|p| p.ext_code.as_deref().map(scrub)),
        inventory_deduction_warehouse_id: id_text(child.inventory_deduction_warehouse_id.as_ref()),
        inventory_deduction_warehouse_name: child
            .inventory_deduction_warehouse_name
            .as_deref()
            .map(scrub),
        order_payment_type: child.order_payment_type.as_deref().map(scrub),
        labels: json_list(child.order_label.as_ref()),
        shipping_time: ctx.optional_time("orderShippingTime", child.order_shipping_time)?,
        order_sn,
    })
}

impl ProductRecord {
    pub fn from_api(goods: &WithRaw<Goods>) -> Result<Self, RecordError> {
        const KIND: &str = "product";
        let g = &goods.value;
        let goods_id = required_key(KIND, "goodsId", g.goods_id.as_str())?;
        let ctx = Ctx {
            kind: KIND,
            key: &goods_id,
        };
        let skus = g
            .sku_info_list
            .iter()
            .map(|s| sku(&ctx, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProductRecord {
            name: g.goods_name.as_deref().map(scrub),
            out_goods_sn: g.out_goods_sn.as_deref().map(scrub),
            quantity: g.quantity,
            price: g.price.as_ref().and_then(decimal),
            currency: g.currency.as_deref().map(scrub),
            raw: RawJson::new(goods.raw.clone()),
            skus,
            goods_id,
        })
    }
}

fn sku(ctx: &Ctx<'_>, s: &Sku) -> Result<SkuRecord, RecordError> {
    Ok(SkuRecord {
        sku_id: required_key(ctx.kind, "skuId", s.sku_id.as_str())?,
        sku_sn: s.sku_sn.as_deref().map(scrub),
        stock: s.stock,
        spec: s.spec_list.clone().filter(|v| !v.is_null()).map(scrub_json),
    })
}

impl AfterSalesRecord {
    pub fn from_api(case: &WithRaw<AfterSales>) -> Result<Self, RecordError> {
        const KIND: &str = "after-sales";
        let a = &case.value;
        let sn = required_key(KIND, "parentAfterSalesSn", &a.parent_after_sales_sn)?;
        let ctx = Ctx {
            kind: KIND,
            key: &sn,
        };
        Ok(AfterSalesRecord {
            parent_order_sn: a.parent_order_sn.as_deref().map(scrub),
            status_group: ctx.int4("afterSalesStatusGroup", a.after_sales_status_group)?,
            kind: ctx.int4("afterSalesType", a.after_sales_type)?,
            created_at_temu: ctx.optional_time("createAt", a.create_at)?,
            updated_at: ctx.required_time("updateAt", a.update_at)?,
            raw: RawJson::new(case.raw.clone()),
            parent_after_sales_sn: sn,
        })
    }
}

/// Which record a conversion error is about.
struct Ctx<'a> {
    kind: &'static str,
    key: &'a str,
}

impl Ctx<'_> {
    fn required_time(
        &self,
        field: &'static str,
        value: Option<i64>,
    ) -> Result<DateTime<Utc>, RecordError> {
        let Some(value) = value else {
            return Err(RecordError::MissingUpdateTime {
                kind: self.kind,
                key: self.key.to_string(),
                field,
            });
        };
        temu_time(value).ok_or_else(|| self.invalid_time(field, value))
    }

    fn optional_time(
        &self,
        field: &'static str,
        value: Option<i64>,
    ) -> Result<Option<DateTime<Utc>>, RecordError> {
        match value {
            None => Ok(None),
            // Temu sends 0 for "not set".
            Some(v) if v <= 0 => Ok(None),
            Some(v) => temu_time(v)
                .map(Some)
                .ok_or_else(|| self.invalid_time(field, v)),
        }
    }

    fn invalid_time(&self, field: &'static str, value: i64) -> RecordError {
        RecordError::InvalidTime {
            kind: self.kind,
            key: self.key.to_string(),
            field,
            value,
        }
    }

    fn int4(&self, field: &'static str, value: Option<i64>) -> Result<Option<i32>, RecordError> {
        value
            .map(|v| {
                i32::try_from(v).map_err(|_| RecordError::OutOfRange {
                    kind: self.kind,
                    key: self.key.to_string(),
                    field,
                    value: v,
                })
            })
            .transpose()
    }
}

/// A Temu timestamp: seconds, or milliseconds when above 10^11 (year 5138 in seconds).
/// `None` for zero, negative or unrepresentable values.
pub fn temu_time(value: i64) -> Option<DateTime<Utc>> {
    if value <= 0 {
        None
    } else if value > 100_000_000_000 {
        Utc.timestamp_millis_opt(value).single()
    } else {
        Utc.timestamp_opt(value, 0).single()
    }
}

fn required_key(
    kind: &'static str,
    field: &'static str,
    value: &str,
) -> Result<String, RecordError> {
    if value.trim().is_empty() {
        Err(RecordError::MissingKey { kind, field })
    } else {
        Ok(scrub(value))
    }
}

fn id_text(id: Option<&Id>) -> Option<String> {
    id.map(|id| scrub(id.as_str()))
}

/// A label list kept as JSON when it is a list (another shape is counted by `temu::fields`).
fn json_list(value: Option<&Value>) -> Option<Value> {
    value.filter(|v| v.is_array()).cloned().map(scrub_json)
}

/// A price sent as a JSON number or a decimal string.
fn decimal(value: &Value) -> Option<BigDecimal> {
    match value {
        Value::Number(n) => BigDecimal::from_str(&n.to_string()).ok(),
        Value::String(s) => BigDecimal::from_str(s.trim()).ok(),
        _ => None,
    }
}

/// PostgreSQL rejects NUL in `text` and `jsonb`; one stray NUL must not fail a whole batch.
fn scrub(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn scrub_json(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(scrub(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(scrub_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = if k.contains('\0') { scrub(&k) } else { k };
                    (k, scrub_json(v))
                })
                .collect(),
        ),
        other => other,
    }
}
