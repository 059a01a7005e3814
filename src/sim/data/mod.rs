//! The simulator's data: seeded generation, the paged queries, live mutation, the ground truth.
//!
//! Owns: the records of every simulated shop (parent orders with child orders, products with SKUs,
//! after-sales) and the query semantics of the real calls — closed time intervals, sorting by
//! update time descending, page sizes capped at 100, `totalItemNum`/`total`. Mutations move an
//! order's status and `updateTime` forward while a sync pages, so naive offset paging drifts.
//! Must not: know about HTTP, signatures or faults.
//!
//! - this file: the records, [`ShopData::mutate_one`], rendering as the API serves them, the
//!   ground truth;
//! - `generate`: [`ShopData::generate`], the seeded data;
//! - `query`: the paged queries of the real calls.

mod generate;
mod query;

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One simulated app (what a seller configures as `apps[]`).
#[derive(Debug, Clone)]
pub struct SimApp {
    pub app_key: String,
    pub app_secret: String,
    pub qps: u32,
}

/// One simulated shop and how much data it has.
#[derive(Debug, Clone)]
pub struct SimShopSpec {
    pub name: String,
    pub app_key: String,
    pub access_token: String,
    pub mall_id: i64,
    /// Token expiry, Unix seconds.
    pub token_expires_at: i64,
    pub scopes: Vec<String>,
    pub orders: usize,
    pub products: usize,
    pub aftersales: usize,
    /// Share of parent orders (0.0 to 1.0) with children a cooperative warehouse fulfils: half of
    /// them entirely (the API does not list such a parent unless asked for
    /// `fulfillByCooperativeWarehouse`), half mixed with seller-fulfilled children.
    pub cooperative_share: f64,
}

/// A business error of a query: (errorCode, errorMsg).
pub type QueryError = (i64, String);

/// `fulfillmentType` of a child fulfilled by the seller.
pub const FULFIL_BY_SELLER: &str = "fulfillBySeller";
/// `fulfillmentType` of a child fulfilled by a cooperative warehouse.
pub const FULFIL_BY_COOPERATIVE_WAREHOUSE: &str = "fulfillByCooperativeWarehouse";

#[derive(Debug, Clone)]
struct ChildOrder {
    order_sn: String,
    goods_id: i64,
    sku_id: i64,
    status: i64,
    quantity: i64,
    ext_code: String,
    /// [`FULFIL_BY_SELLER`] or [`FULFIL_BY_COOPERATIVE_WAREHOUSE`].
    fulfillment_type: &'static str,
    /// (`inventoryDeductionWarehouseId`, `inventoryDeductionWarehouseName`).
    warehouse: (String, String),
    /// `COD` or `PPD`.
    payment_type: &'static str,
    /// `orderLabel` names whose value is 1 (e.g. `customized_products`).
    labels: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct ParentOrder {
    sn: String,
    status: i64,
    created: i64,
    updated: i64,
    expect_ship_latest: i64,
    /// When the parent was shipped (0: not yet); children shipped with it.
    shipped: i64,
    children: Vec<ChildOrder>,
}

/// Statuses at which an order has been shipped.
fn is_shipped(status: i64) -> bool {
    matches!(status, 4 | 5 | 41 | 51)
}

#[derive(Debug, Clone)]
struct Sku {
    sku_id: i64,
    sku_sn: String,
    stock: i64,
    color: &'static str,
    size: &'static str,
}

#[derive(Debug, Clone)]
struct Product {
    goods_id: i64,
    name: String,
    out_sn: String,
    /// 1 listed/delisted, 4 unpublished, 5 draft, 6 deleted.
    search_type: i64,
    price_cents: i64,
    created_ms: i64,
    status_changed_ms: i64,
    skus: Vec<Sku>,
}

#[derive(Debug, Clone)]
struct AfterSale {
    sn: String,
    parent_order_sn: String,
    status_group: i64,
    kind: i64,
    created: i64,
    updated: i64,
}

/// One shop's records.
#[derive(Debug, Clone)]
pub struct ShopData {
    pub spec: SimShopSpec,
    orders: Vec<ParentOrder>,
    products: Vec<Product>,
    aftersales: Vec<AfterSale>,
    mutations: u64,
}

/// What a perfect sync must end with, per shop: every record as the API serves it now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruth {
    pub shops: BTreeMap<String, ShopTruth>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShopTruth {
    /// parentOrderSn -> the page item (`{parentOrderMap, orderList}`).
    pub orders: BTreeMap<String, Value>,
    /// goodsId -> the goods record.
    pub products: BTreeMap<String, Value>,
    /// parentAfterSalesSn -> the after-sales record.
    pub aftersales: BTreeMap<String, Value>,
    /// Mutations applied so far.
    pub mutations: u64,
}

impl ShopData {
    /// Moves one random order forward (status and `updateTime = now`). Returns its sn.
    pub fn mutate_one(&mut self, rng: &mut fastrand::Rng, now: i64) -> Option<String> {
        if self.orders.is_empty() {
            return None;
        }
        let idx = rng.usize(..self.orders.len());
        let order = &mut self.orders[idx];
        order.status = match order.status {
            1 => 2,
            2 => [4, 41, 3][rng.usize(..3)],
            41 => 4,
            4 => [5, 51][rng.usize(..2)],
            51 => 5,
            other => other,
        };
        order.updated = now.max(order.updated + 1);
        if is_shipped(order.status) && order.shipped == 0 {
            order.shipped = order.updated;
        }
        for child in &mut order.children {
            child.status = order.status;
        }
        self.mutations += 1;
        Some(order.sn.clone())
    }

    /// A parent with every child (the ground truth, and a query asking for both types).
    fn render_order(o: &ParentOrder) -> Value {
        Self::render_order_with(o, &|_| true)
    }

    /// A page item as `bg.order.list.v2.get` serves it (field names and types of the public SDK
    /// entity `hiscaler/temu-go` entity/order.go), listing the children `listed` keeps.
    fn render_order_with(o: &ParentOrder, listed: &dyn Fn(&ChildOrder) -> bool) -> Value {
        let children: Vec<Value> = o
            .children
            .iter()
            .filter(|c| listed(c))
            .map(|c| Self::render_child(o, c))
            .collect();
        let overdue = o.status == 2 && o.expect_ship_latest < o.updated;
        json!({
            "parentOrderMap": {
                "parentOrderSn": o.sn,
                "parentOrderStatus": o.status,
                "parentOrderTime": o.created,
                "updateTime": o.updated,
                "expectShipLatestTime": o.expect_ship_latest,
                "parentShippingTime": o.shipped,
                "latestDeliveryTime": o.expect_ship_latest + 7 * 86_400,
                "regionId": 211,
                "siteId": 100,
                "parentOrderLabel": [{"name": "past_due", "value": i64::from(overdue)}],
                "fulfillmentWarning": [],
                "hasShippingFee": false
            },
            "orderList": children
        })
    }

    fn render_product(p: &Product) -> Value {
        let skus: Vec<Value> = p.skus.iter().map(Self::render_sku).collect();
        json!({
            "goodsId": p.goods_id,
            "goodsName": p.name,
            "outGoodsSn": p.out_sn,
            "quantity": p.skus.iter().map(|s| s.stock).sum::<i64>(),
            "price": format!("{}.{:02}", p.price_cents / 100, p.price_cents % 100),
            "currency": "USD",
            "goodsStatus": p.search_type,
            "crtTime": p.created_ms,
            "goodsStatusChangeTime": p.status_changed_ms,
            "skuInfoList": skus
        })
    }

    /// A child order as listed in its parent's `orderList`.
    fn render_child(o: &ParentOrder, c: &ChildOrder) -> Value {
        json!({
            "orderSn": c.order_sn,
            "goodsId": c.goods_id,
            "skuId": c.sku_id,
            "orderStatus": c.status,
            "quantity": c.quantity,
            "originalOrderQuantity": c.quantity,
            "canceledQuantityBeforeShipment": if o.status == 3 { c.quantity } else { 0 },
            "fulfillmentType": c.fulfillment_type,
            "inventoryDeductionWarehouseId": c.warehouse.0,
            "inventoryDeductionWarehouseName": c.warehouse.1,
            "orderPaymentType": c.payment_type,
            "orderLabel": c.labels.iter().map(|l| json!({"name": l, "value": 1})).collect::<Vec<_>>(),
            "orderShippingTime": if o.shipped > 0 { Value::from(o.shipped) } else { Value::Null },
            "fulfillmentWarning": [],
            "productList": [{
                "productSkuId": c.sku_id,
                "productId": c.goods_id,
                "extCode": c.ext_code,
                "soldFactor": 1
            }],
            "goodsName": null,
            "spec": null,
            "thumbUrl": null
        })
    }

    fn render_sku(s: &Sku) -> Value {
        json!({
            "skuId": s.sku_id,
            "skuSn": s.sku_sn,
            "stock": s.stock,
            "specList": [
                {"parentSpecName": "Color", "specName": s.color},
                {"parentSpecName": "Size", "specName": s.size}
            ]
        })
    }

    fn render_aftersale(a: &AfterSale) -> Value {
        json!({
            "parentAfterSalesSn": a.sn,
            "parentOrderSn": a.parent_order_sn,
            "afterSalesStatusGroup": a.status_group,
            "afterSalesType": a.kind,
            "createAt": a.created,
            "updateAt": a.updated
        })
    }

    pub fn truth(&self) -> ShopTruth {
        ShopTruth {
            orders: self
                .orders
                .iter()
                .map(|o| (o.sn.clone(), Self::render_order(o)))
                .collect(),
            products: self
                .products
                .iter()
                .map(|p| (p.goods_id.to_string(), Self::render_product(p)))
                .collect(),
            aftersales: self
                .aftersales
                .iter()
                .map(|a| (a.sn.clone(), Self::render_aftersale(a)))
                .collect(),
            mutations: self.mutations,
        }
    }

    /// `bg.open.accesstoken.info.get`.
    pub fn token_info(&self) -> Value {
        json!({
            "mallId": self.spec.mall_id,
            "expiredTime": self.spec.token_expires_at,
            "apiScopeList": self.spec.scopes,
            "mallType": 1,
            "regionId": 211
        })
    }
}
