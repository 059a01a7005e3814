//! The simulator's data: seeded generation, the paged queries, live mutation, the ground truth.
//!
//! Owns: the records of every simulated shop (parent orders with child orders, products with SKUs,
//! after-sales) and the query semantics of the real calls — closed time intervals, sorting by
//! update time descending, page sizes capped at 100, `totalItemNum`/`total`. Mutations move an
//! order's status and `updateTime` forward while a sync pages, so naive offset paging drifts.
//! Must not: know about HTTP, signatures or faults.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

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
}

/// A business error of a query: (errorCode, errorMsg).
pub type QueryError = (i64, String);

#[derive(Debug, Clone)]
struct ChildOrder {
    order_sn: String,
    goods_id: i64,
    sku_id: i64,
    status: i64,
    quantity: i64,
    ext_code: String,
}

#[derive(Debug, Clone)]
struct ParentOrder {
    sn: String,
    status: i64,
    created: i64,
    updated: i64,
    expect_ship_latest: i64,
    children: Vec<ChildOrder>,
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

const COLORS: [&str; 5] = ["Black", "White", "Red", "Blue", "Green"];
const SIZES: [&str; 4] = ["S", "M", "L", "XL"];
const WORDS: [&str; 10] = [
    "Cotton", "Travel", "Kitchen", "Garden", "Desk", "Phone", "Yoga", "Pet", "Café", "Nordic",
];
const NOUNS: [&str; 8] = [
    "Mug",
    "Lamp",
    "Organizer",
    "Case",
    "Mat",
    "Bottle",
    "Towel",
    "Shelf",
];

impl ShopData {
    /// Generates a shop's data from `seed`; times are spread over `history_secs` before `now`.
    pub fn generate(spec: SimShopSpec, seed: u64, now: i64, history_secs: i64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let history = history_secs.max(3600);
        let mut products = Vec::with_capacity(spec.products);
        for i in 0..spec.products {
            let goods_id = 600_000_000_000_000 + spec.mall_id % 1000 * 1_000_000 + i as i64;
            let created_ms = (now - rng.i64(3600..history)) * 1000;
            let skus = (0..rng.usize(1..=3))
                .map(|k| Sku {
                    sku_id: 17_000_000_000_000 + goods_id % 10_000_000 * 10 + k as i64,
                    sku_sn: format!("SKU-{i}-{k}"),
                    stock: rng.i64(0..500),
                    color: COLORS[rng.usize(..COLORS.len())],
                    size: SIZES[rng.usize(..SIZES.len())],
                })
                .collect();
            products.push(Product {
                goods_id,
                name: format!(
                    "{} {} {}",
                    WORDS[rng.usize(..WORDS.len())],
                    NOUNS[rng.usize(..NOUNS.len())],
                    i
                ),
                out_sn: format!("OUT-{i:06}"),
                search_type: [1, 1, 1, 1, 1, 1, 4, 5, 6][rng.usize(..9)],
                price_cents: rng.i64(199..9999),
                created_ms,
                status_changed_ms: created_ms + rng.i64(0..3_600_000),
                skus,
            });
        }
        let mut orders = Vec::with_capacity(spec.orders);
        for i in 0..spec.orders {
            let created = now - rng.i64(600..history);
            let updated = (created + rng.i64(0..86_400 * 3)).min(now - 60);
            let status = [1, 2, 2, 3, 4, 4, 5, 5, 41, 51][rng.usize(..10)];
            let children = (0..rng.usize(1..=3))
                .map(|k| {
                    let (goods_id, sku_id) = match products.get(rng.usize(..products.len().max(1)))
                    {
                        Some(p) => (p.goods_id, p.skus.first().map(|s| s.sku_id).unwrap_or(0)),
                        None => (601_000_000_000 + i as i64, 17_592_000_000_000 + i as i64),
                    };
                    ChildOrder {
                        order_sn: format!(
                            "211-{:014}{k}",
                            spec.mall_id % 1000 * 100_000_000 + i as i64
                        ),
                        goods_id,
                        sku_id,
                        status,
                        quantity: rng.i64(1..4),
                        ext_code: format!("EXT-{i}-{k}"),
                    }
                })
                .collect();
            orders.push(ParentOrder {
                sn: format!(
                    "PO-211-{:014}",
                    spec.mall_id % 1000 * 100_000_000 + i as i64
                ),
                status,
                created,
                updated,
                expect_ship_latest: created + 3 * 86_400,
                children,
            });
        }
        let mut aftersales = Vec::with_capacity(spec.aftersales);
        for i in 0..spec.aftersales {
            let parent = orders
                .get(rng.usize(..orders.len().max(1)))
                .map(|o| (o.sn.clone(), o.created))
                .unwrap_or_else(|| (format!("PO-211-X{i}"), now - history / 2));
            let created = (parent.1 + rng.i64(3600..86_400 * 10)).min(now - 60);
            aftersales.push(AfterSale {
                sn: format!("PAS-{:012}", spec.mall_id % 1000 * 10_000_000 + i as i64),
                parent_order_sn: parent.0,
                status_group: rng.i64(1..6),
                kind: rng.i64(1..3),
                created,
                updated: (created + rng.i64(0..86_400 * 5)).min(now - 60),
            });
        }
        ShopData {
            spec,
            orders,
            products,
            aftersales,
            mutations: 0,
        }
    }

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
        for child in &mut order.children {
            child.status = order.status;
        }
        self.mutations += 1;
        Some(order.sn.clone())
    }

    fn render_order(o: &ParentOrder) -> Value {
        let children: Vec<Value> = o
            .children
            .iter()
            .map(|c| {
                json!({
                    "orderSn": c.order_sn,
                    "goodsId": c.goods_id,
                    "skuId": c.sku_id,
                    "orderStatus": c.status,
                    "quantity": c.quantity,
                    "originalOrderQuantity": c.quantity,
                    "canceledQuantityBeforeShipment": if o.status == 3 { c.quantity } else { 0 },
                    "fulfillmentType": 0,
                    "productList": [{
                        "productSkuId": c.sku_id,
                        "productId": c.goods_id,
                        "extCode": c.ext_code,
                        "soldFactor": 1
                    }],
                    "goodsName": null
                })
            })
            .collect();
        json!({
            "parentOrderMap": {
                "parentOrderSn": o.sn,
                "parentOrderStatus": o.status,
                "parentOrderTime": o.created,
                "updateTime": o.updated,
                "expectShipLatestTime": o.expect_ship_latest,
                "regionId": 211,
                "siteId": 100,
                "parentOrderLabel": [],
                "fulfillmentWarning": null
            },
            "orderList": children
        })
    }

    fn render_product(p: &Product) -> Value {
        let skus: Vec<Value> = p
            .skus
            .iter()
            .map(|s| {
                json!({
                    "skuId": s.sku_id,
                    "skuSn": s.sku_sn,
                    "stock": s.stock,
                    "specList": [
                        {"parentSpecName": "Color", "specName": s.color},
                        {"parentSpecName": "Size", "specName": s.size}
                    ]
                })
            })
            .collect();
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

    /// `bg.order.list.v2.get`.
    pub fn order_list(&self, p: &Map<String, Value>) -> Result<Value, QueryError> {
        let (page, size) = paging(p, "pageNumber")?;
        let update = pair(p, "updateAtStart", "updateAtEnd")?;
        let create = pair(p, "createAfter", "createBefore")?;
        let status = int(p, "parentOrderStatus")?.unwrap_or(0);
        let by_create = p.get("sortby").and_then(Value::as_str) == Some("createTime");
        let mut hits: Vec<&ParentOrder> = self
            .orders
            .iter()
            .filter(|o| update.is_none_or(|(a, b)| a <= o.updated && o.updated <= b))
            .filter(|o| create.is_none_or(|(a, b)| a <= o.created && o.created <= b))
            .filter(|o| status == 0 || o.status == status)
            .collect();
        hits.sort_by(|a, b| {
            let (ka, kb) = if by_create {
                (a.created, b.created)
            } else {
                (a.updated, b.updated)
            };
            kb.cmp(&ka).then_with(|| b.sn.cmp(&a.sn))
        });
        let total = hits.len();
        let items: Vec<Value> = hits
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .map(Self::render_order)
            .collect();
        Ok(json!({ "totalItemNum": total, "pageItems": items }))
    }

    /// `bg.order.detail.v2.get`.
    pub fn order_detail(&self, p: &Map<String, Value>) -> Result<Value, QueryError> {
        let sn = p
            .get("parentOrderSn")
            .and_then(Value::as_str)
            .ok_or((2_000_000, "parentOrderSn is required".to_string()))?;
        self.orders
            .iter()
            .find(|o| o.sn == sn)
            .map(Self::render_order)
            .ok_or((2_000_000, format!("order {sn} not found")))
    }

    /// `bg.local.goods.list.query` (times in milliseconds; sorted by status change time, newest first).
    pub fn goods_list(&self, p: &Map<String, Value>) -> Result<Value, QueryError> {
        let (page, size) = paging(p, "pageNo")?;
        let search = int(p, "goodsSearchType")?
            .ok_or((2_000_000, "goodsSearchType is required".to_string()))?;
        let crt = pair(p, "crtFrom", "crtTo")?;
        let changed = pair(p, "goodsStatusChangeTimeFrom", "goodsStatusChangeTimeTo")?;
        let ids: Option<Vec<i64>> = p
            .get("goodsIdList")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect());
        let mut hits: Vec<&Product> = self
            .products
            .iter()
            .filter(|g| g.search_type == search)
            .filter(|g| crt.is_none_or(|(a, b)| a <= g.created_ms && g.created_ms <= b))
            .filter(|g| {
                changed.is_none_or(|(a, b)| a <= g.status_changed_ms && g.status_changed_ms <= b)
            })
            .filter(|g| ids.as_ref().is_none_or(|ids| ids.contains(&g.goods_id)))
            .collect();
        hits.sort_by(|a, b| {
            b.status_changed_ms
                .cmp(&a.status_changed_ms)
                .then_with(|| b.goods_id.cmp(&a.goods_id))
        });
        let total = hits.len();
        let list: Vec<Value> = hits
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .map(Self::render_product)
            .collect();
        Ok(json!({ "total": total, "goodsList": list }))
    }

    /// `bg.aftersales.parentaftersales.list.get` (one time pair required, else 130010001).
    pub fn aftersales_list(&self, p: &Map<String, Value>) -> Result<Value, QueryError> {
        let (page, size) = paging(p, "pageNo")?;
        let create = pair(p, "createAtStart", "createAtEnd")?;
        let update = pair(p, "updateAtStart", "updateAtEnd")?;
        if create.is_none() && update.is_none() {
            return Err((
                130_010_001,
                "createAtStart/createAtEnd or updateAtStart/updateAtEnd is required".to_string(),
            ));
        }
        let mut hits: Vec<&AfterSale> = self
            .aftersales
            .iter()
            .filter(|a| create.is_none_or(|(x, y)| x <= a.created && a.created <= y))
            .filter(|a| update.is_none_or(|(x, y)| x <= a.updated && a.updated <= y))
            .collect();
        hits.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| b.sn.cmp(&a.sn)));
        let total = hits.len();
        let data: Vec<Value> = hits
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .map(Self::render_aftersale)
            .collect();
        Ok(json!({ "total": total, "data": data }))
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

fn int(p: &Map<String, Value>, key: &str) -> Result<Option<i64>, QueryError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or((2_000_000, format!("{key} must be an integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| (2_000_000, format!("{key} must be an integer"))),
        Some(_) => Err((2_000_000, format!("{key} must be an integer"))),
    }
}

/// A closed interval; both ends or neither.
fn pair(p: &Map<String, Value>, a: &str, b: &str) -> Result<Option<(i64, i64)>, QueryError> {
    match (int(p, a)?, int(p, b)?) {
        (Some(x), Some(y)) => Ok(Some((x, y))),
        (None, None) => Ok(None),
        _ => Err((2_000_000, format!("{a} and {b} must be given together"))),
    }
}

/// (page from 1, size capped at 100; default 10).
fn paging(p: &Map<String, Value>, page_key: &str) -> Result<(usize, usize), QueryError> {
    let page = int(p, page_key)?.unwrap_or(1).max(1) as usize;
    let size = int(p, "pageSize")?.unwrap_or(10).clamp(1, 100) as usize;
    Ok((page, size))
}
