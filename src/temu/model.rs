//! Typed requests and responses of the calls the sync uses.
//!
//! Owns: the shapes of `bg.order.list.v2.get`, `bg.order.detail.v2.get`,
//! `bg.local.goods.list.query`, `bg.aftersales.parentaftersales.list.get` and
//! `bg.open.accesstoken.info.get`. Decoding is tolerant on purpose: unknown fields are kept in
//! `extra`, unknown status values are kept as numbers, IDs may be numbers or strings, many fields
//! may be `null`; every record also keeps its raw JSON ([`WithRaw`]) for storage.
//! Must not: know about HTTP, signing or the database.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::envelope::WithRaw;

pub const API_ORDER_LIST: &str = "bg.order.list.v2.get";
pub const API_ORDER_DETAIL: &str = "bg.order.detail.v2.get";
pub const API_GOODS_LIST: &str = "bg.local.goods.list.query";
pub const API_AFTERSALES_LIST: &str = "bg.aftersales.parentaftersales.list.get";
pub const API_TOKEN_INFO: &str = "bg.open.accesstoken.info.get";

/// The API a configured stream lists: the scope (`apiScopeList` entry) its token needs.
pub fn stream_api(stream: crate::config::Stream) -> &'static str {
    use crate::config::Stream;
    match stream {
        Stream::Orders => API_ORDER_LIST,
        Stream::Products => API_GOODS_LIST,
        Stream::Aftersales => API_AFTERSALES_LIST,
    }
}

/// Largest page the API serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// An identifier that Temu sends as a number or as a string; kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Id(s)),
            Value::Number(n) => Ok(Id(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected an id (number or string), got {other}"
            ))),
        }
    }
}

/// An integer that may arrive as a number, a numeric string, or `null`.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A text that must arrive as a string; any other shape is `None` in the typed value (the raw
/// JSON keeps it, and [`super::fields`] counts and logs it: never silently).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        _ => None,
    })
}

/// An id that may arrive as a number or a string; any other shape is `None` (and counted).
fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Id>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(Id(s)),
        Some(Value::Number(n)) => Some(Id(n.to_string())),
        _ => None,
    })
}

/// A boolean that may arrive as `true`/`false` or `0`/`1`; any other shape is `None` (and counted).
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Orders

/// `bg.order.list.v2.get`. Times in **seconds**; each pair is a closed interval, both ends required.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderListRequest {
    /// From 1.
    pub page_number: u32,
    /// At most [`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// 0 all, 1 pending, 2 un-shipping, 3 canceled, 4 shipped, 5 receipted, 41, 51, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_order_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_at_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_at_end: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_before: Option<i64>,
    /// US 211.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<i64>,
    /// `updateTime` or `createTime` (descending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sortby: Option<String>,
    /// Which child orders to list (`fulfillBySeller`, `fulfillByCooperativeWarehouse`). Absent or
    /// empty means seller-fulfilled only: a parent whose children a cooperative warehouse ships
    /// is then not listed at all. The sync always sends `sync.fulfillment_types`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfillment_type_list: Option<Vec<String>>,
}

/// `fulfillmentTypeList` naming `types` (the API's spelling of each).
pub fn fulfillment_type_list(types: &[crate::config::FulfillmentType]) -> Option<Vec<String>> {
    Some(types.iter().map(|t| t.as_str().to_string()).collect())
}

/// `fulfillmentTypeList` naming every type: all child orders, every parent.
pub fn every_fulfillment_type() -> Option<Vec<String>> {
    fulfillment_type_list(&crate::config::FulfillmentType::ALL)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderListResult {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub total_item_num: Option<i64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub page_items: Vec<WithRaw<OrderItem>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One parent order with its child orders.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub parent_order_map: ParentOrder,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub order_list: Vec<Order>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentOrder {
    pub parent_order_sn: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub parent_order_status: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub parent_order_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub update_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub expect_ship_latest_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub region_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub site_id: Option<i64>,
    /// When the parent was shipped (seconds).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub parent_shipping_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub latest_delivery_time: Option<i64>,
    /// `[{name, value}]`, e.g. `soon_to_be_overdue`; kept as JSON.
    #[serde(default)]
    pub parent_order_label: Option<Value>,
    /// List of strings, e.g. `SUGGEST_SIGNATURE_ON_DELIVERY`; kept as JSON.
    #[serde(default)]
    pub fulfillment_warning: Option<Value>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub has_shipping_fee: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_sn: String,
    #[serde(default)]
    pub goods_id: Option<Id>,
    #[serde(default)]
    pub sku_id: Option<Id>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub order_status: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub quantity: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub original_order_quantity: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub canceled_quantity_before_shipment: Option<i64>,
    /// `fulfillBySeller` or `fulfillByCooperativeWarehouse` (a string, not a number).
    #[serde(default, deserialize_with = "lenient_string")]
    pub fulfillment_type: Option<String>,
    /// The warehouse the stock is taken from (a string; numbers are kept as text).
    #[serde(default, deserialize_with = "lenient_id")]
    pub inventory_deduction_warehouse_id: Option<Id>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub inventory_deduction_warehouse_name: Option<String>,
    /// `COD` or `PPD`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub order_payment_type: Option<String>,
    /// `[{name, value}]`, e.g. `customized_products`; kept as JSON.
    #[serde(default)]
    pub order_label: Option<Value>,
    /// When the child was shipped (seconds).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub order_shipping_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub goods_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub product_list: Vec<OrderProduct>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderProduct {
    #[serde(default)]
    pub product_sku_id: Option<Id>,
    #[serde(default)]
    pub product_id: Option<Id>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub ext_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub sold_factor: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `bg.order.detail.v2.get`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDetailRequest {
    pub parent_order_sn: String,
    /// As in [`OrderListRequest::fulfillment_type_list`]: absent means seller-fulfilled children only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfillment_type_list: Option<Vec<String>>,
}

/// The detail of one parent order (same record shape as a list item; extra fields kept).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDetail {
    #[serde(default)]
    pub parent_order_map: Option<ParentOrder>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub order_list: Vec<Order>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Known parent order statuses; other values are kept as numbers.
pub fn parent_order_status_name(status: i64) -> Option<&'static str> {
    Some(match status {
        1 => "pending",
        2 => "un-shipping",
        3 => "canceled",
        4 => "shipped",
        5 => "receipted",
        41 => "partly-shipped",
        51 => "partly-received",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Products

/// `bg.local.goods.list.query`. Times in **milliseconds**. Note `pageNo`, not `pageNumber`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoodsListRequest {
    pub page_no: u32,
    pub page_size: u32,
    /// 1 listed or delisted, 4 unpublished, 5 draft, 6 deleted.
    pub goods_search_type: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crt_from: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crt_to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_status_change_time_from: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_status_change_time_to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_id_list: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoodsListResult {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub total: Option<i64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub goods_list: Vec<WithRaw<Goods>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Goods {
    pub goods_id: Id,
    #[serde(default, deserialize_with = "lenient_string")]
    pub goods_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub out_goods_sn: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub quantity: Option<i64>,
    /// Shape varies (number, string or object): kept as JSON.
    #[serde(default)]
    pub price: Option<Value>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sku_info_list: Vec<Sku>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    pub sku_id: Id,
    #[serde(default, deserialize_with = "lenient_string")]
    pub sku_sn: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub stock: Option<i64>,
    #[serde(default)]
    pub spec_list: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// After-sales

/// `bg.aftersales.parentaftersales.list.get`. At least one time pair is required (else 130010001);
/// units are not confirmed by the documentation (seconds in most examples).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AfterSalesListRequest {
    pub page_no: u32,
    pub page_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_at_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_at_end: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_at_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_at_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AfterSalesListResult {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub total: Option<i64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Vec<WithRaw<AfterSales>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AfterSales {
    pub parent_after_sales_sn: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub parent_order_sn: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub after_sales_status_group: Option<i64>,
    /// 1 refund only, 2 return and refund; others kept.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub after_sales_type: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub create_at: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub update_at: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// Token

/// `bg.open.accesstoken.info.get` (no business parameters).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenInfoRequest {}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    #[serde(default)]
    pub mall_id: Option<Id>,
    /// Seconds or milliseconds since the epoch (the docs do not say; see [`TokenInfo::expires_at`]).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub expired_time: Option<i64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub api_scope_list: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TokenInfo {
    /// The expiry instant; values above 10^11 are taken as milliseconds.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let t = self.expired_time?;
        let secs = if t > 100_000_000_000 { t / 1000 } else { t };
        Utc.timestamp_opt(secs, 0).single()
    }
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_decoding_keeps_unknowns() {
        let json = r#"{"totalItemNum":"1","pageItems":[{"parentOrderMap":{"parentOrderSn":"PO-1",
            "parentOrderStatus":99,"updateTime":null,"newField":{"x":1}},"orderList":null,
            "itemExtra":true}],"future":1}"#;
        let r: OrderListResult = serde_json::from_str(json).unwrap();
        assert_eq!(r.total_item_num, Some(1));
        let item = &r.page_items[0];
        assert_eq!(item.parent_order_map.parent_order_status, Some(99));
        assert!(item.parent_order_map.extra.contains_key("newField"));
        assert!(item.extra.contains_key("itemExtra"));
        assert!(item.raw.get().contains("newField"));
        assert!(r.extra.contains_key("future"));
        let g: Goods =
            serde_json::from_str(r#"{"goodsId":"601","skuInfoList":[{"skuId":17}]}"#).unwrap();
        assert_eq!(g.goods_id.as_i64(), Some(601));
        assert_eq!(g.sku_info_list[0].sku_id.as_str(), "17");
    }

    #[test]
    fn token_expiry_in_seconds_or_millis() {
        let s: TokenInfo = serde_json::from_str(r#"{"expiredTime":1800000000}"#).unwrap();
        let ms: TokenInfo = serde_json::from_str(r#"{"expiredTime":1800000000000}"#).unwrap();
        assert_eq!(s.expires_at(), ms.expires_at());
    }
}
