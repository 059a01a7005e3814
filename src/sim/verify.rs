//! Checking a database against the simulator's ground truth: every record present, at its
//! latest version, with exactly its child rows (for an order: the same child order numbers, each
//! with the same `fulfillmentType`), and nothing extra. Used by `temu-sync demo`, the
//! end-to-end tests and the benchmarks.
//!
//! Owns: [`compare`] and [`Diff`], one step per stream. Must not: write to the database.

use std::collections::{BTreeMap, BTreeSet};

use super::{GroundTruth, ShopTruth};

/// Differences between the database and the simulator's ground truth.
#[derive(Debug, Default)]
pub struct Diff {
    pub missing: Vec<String>,
    pub stale: Vec<String>,
    pub extra: Vec<String>,
    pub item_mismatch: Vec<String>,
    pub checked: usize,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.stale.is_empty()
            && self.extra.is_empty()
            && self.item_mismatch.is_empty()
    }

    pub fn summary(&self) -> String {
        format!(
            "checked {}, missing {} {:?}, stale {} {:?}, extra {} {:?}, item mismatches {} {:?}",
            self.checked,
            self.missing.len(),
            self.missing.iter().take(5).collect::<Vec<_>>(),
            self.stale.len(),
            self.stale.iter().take(5).collect::<Vec<_>>(),
            self.extra.len(),
            self.extra.iter().take(5).collect::<Vec<_>>(),
            self.item_mismatch.len(),
            self.item_mismatch.iter().take(5).collect::<Vec<_>>(),
        )
    }
}

/// Compares every shop's orders (with items), listed products and after-sales with the truth.
pub async fn compare(
    client: &tokio_postgres::Client,
    truth: &GroundTruth,
) -> Result<Diff, tokio_postgres::Error> {
    let mut diff = Diff::default();
    for (shop, t) in &truth.shops {
        let mut check = ShopCheck {
            client,
            shop,
            diff: &mut diff,
        };
        check.orders(t).await?;
        check.products(t).await?;
        check.aftersales(t).await?;
    }
    Ok(diff)
}

/// A truth order's children as `orderSn:fulfillmentType`.
fn truth_children(item: &serde_json::Value) -> BTreeSet<String> {
    item["orderList"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| {
                    let sn = c["orderSn"].as_str().unwrap_or_default();
                    let kind = c["fulfillmentType"].as_str().unwrap_or("NULL");
                    format!("{sn}:{kind}")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One shop's comparison, adding to the [`Diff`] of all shops.
struct ShopCheck<'a> {
    client: &'a tokio_postgres::Client,
    shop: &'a str,
    diff: &'a mut Diff,
}

impl ShopCheck<'_> {
    /// The rows of `sql`, whose one parameter is the shop's name.
    async fn rows(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.client.query(sql, &[&self.shop]).await
    }

    /// What the database holds and the truth does not (`kind` as in `shop/order/sn`).
    fn extra<'k>(&mut self, kind: &str, keys: impl Iterator<Item = &'k String>) {
        let shop = self.shop;
        self.diff
            .extra
            .extend(keys.map(|k| format!("{shop}/{kind}/{k}")));
    }

    /// Orders: every one present, at its latest update time and status, with exactly its
    /// child orders (`orderSn:fulfillmentType`, so a missing, extra or mistyped child shows).
    async fn orders(&mut self, t: &ShopTruth) -> Result<(), tokio_postgres::Error> {
        let rows = self
            .rows(
                "SELECT o.parent_order_sn, extract(epoch from o.updated_at)::bigint, o.status, \
                 ARRAY(SELECT i.order_sn || ':' || coalesce(i.fulfillment_type, 'NULL') \
                       FROM order_items i WHERE i.order_id = o.id) \
                 FROM orders o JOIN shops s ON s.id = o.shop_id WHERE s.name = $1",
            )
            .await?;
        let mut db_orders: BTreeMap<String, (i64, Option<i32>, BTreeSet<String>)> = BTreeMap::new();
        for r in &rows {
            let children: Vec<String> = r.get(3);
            db_orders.insert(
                r.get(0),
                (r.get(1), r.get(2), children.into_iter().collect()),
            );
        }
        let (shop, diff) = (self.shop, &mut *self.diff);
        for (sn, item) in &t.orders {
            diff.checked += 1;
            let parent = &item["parentOrderMap"];
            let updated = parent["updateTime"].as_i64().unwrap_or_default();
            let status = parent["parentOrderStatus"].as_i64().map(|s| s as i32);
            let children = truth_children(item);
            match db_orders.remove(sn) {
                None => diff.missing.push(format!("{shop}/order/{sn}")),
                Some((u, s, db_children)) => {
                    if u != updated || s != status {
                        diff.stale.push(format!(
                            "{shop}/order/{sn}: db {u}/{s:?} truth {updated}/{status:?}"
                        ));
                    }
                    if db_children != children {
                        diff.item_mismatch.push(format!(
                            "{shop}/order/{sn}: db {db_children:?} truth {children:?}"
                        ));
                    }
                }
            }
        }
        self.extra("order", db_orders.keys());
        Ok(())
    }

    /// Products: the listed/delisted set, not soft-removed.
    async fn products(&mut self, t: &ShopTruth) -> Result<(), tokio_postgres::Error> {
        let rows = self
            .rows(
                "SELECT p.goods_id FROM products p JOIN shops s ON s.id = p.shop_id \
                 WHERE s.name = $1 AND p.removed_at IS NULL",
            )
            .await?;
        let mut db_products: BTreeSet<String> =
            rows.iter().map(|r| r.get::<_, String>(0)).collect();
        for (id, p) in &t.products {
            if p["goodsStatus"].as_i64() != Some(1) {
                continue;
            }
            self.diff.checked += 1;
            if !db_products.remove(id) {
                let missing = format!("{}/product/{id}", self.shop);
                self.diff.missing.push(missing);
            }
        }
        self.extra("product", db_products.iter());
        Ok(())
    }

    /// After-sales: every case present at its latest update time.
    async fn aftersales(&mut self, t: &ShopTruth) -> Result<(), tokio_postgres::Error> {
        let rows = self
            .rows(
                "SELECT a.parent_after_sales_sn, extract(epoch from a.updated_at)::bigint \
                 FROM aftersales a JOIN shops s ON s.id = a.shop_id WHERE s.name = $1",
            )
            .await?;
        let mut db_after: BTreeMap<String, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let (shop, diff) = (self.shop, &mut *self.diff);
        for (sn, a) in &t.aftersales {
            diff.checked += 1;
            let updated = a["updateAt"].as_i64().unwrap_or_default();
            match db_after.remove(sn) {
                None => diff.missing.push(format!("{shop}/aftersale/{sn}")),
                Some(u) if u != updated => diff.stale.push(format!("{shop}/aftersale/{sn}")),
                Some(_) => {}
            }
        }
        self.extra("aftersale", db_after.keys());
        Ok(())
    }
}
