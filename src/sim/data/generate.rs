//! Seeded generation of a shop's data: products with SKUs, parent orders with child orders
//! that point at those products, after-sales cases of those orders.
//!
//! Owns: [`ShopData::generate`]. The same seed gives the same data: the steps draw from one
//! random generator in a fixed order (products, then orders, then after-sales), so do not
//! reorder the draws. Who fulfils each child (and its warehouse, payment type, labels, shipping
//! time) is drawn from a second generator, so adding those fields left the other data of a seed
//! as it was. Must not: read the clock (`now` is passed in).

use super::{
    is_shipped, AfterSale, ChildOrder, ParentOrder, Product, ShopData, SimShopSpec, Sku,
    FULFIL_BY_COOPERATIVE_WAREHOUSE, FULFIL_BY_SELLER,
};

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
    /// Generates a shop's data from `seed`; times are spread over `history_secs` before `now`:
    /// `spec.products` products, then `spec.orders` orders of those products, then
    /// `spec.aftersales` after-sales cases of those orders.
    pub fn generate(spec: SimShopSpec, seed: u64, now: i64, history_secs: i64) -> Self {
        let mut g = Generator {
            rng: fastrand::Rng::with_seed(seed),
            fulfil: fastrand::Rng::with_seed(seed ^ 0xC0_0B_EA_E5_u64),
            cooperative_share: spec.cooperative_share.clamp(0.0, 1.0),
            mall: spec.mall_id % 1000,
            now,
            history: history_secs.max(3600),
        };
        let products: Vec<Product> = (0..spec.products).map(|i| g.product(i)).collect();
        let orders: Vec<ParentOrder> = (0..spec.orders).map(|i| g.order(i, &products)).collect();
        let aftersales = (0..spec.aftersales)
            .map(|i| g.aftersale(i, &orders))
            .collect();
        ShopData {
            spec,
            orders,
            products,
            aftersales,
            mutations: 0,
        }
    }
}

/// One shop's draws: every record takes from the same generator, in order.
struct Generator {
    rng: fastrand::Rng,
    /// Fulfilment draws (see the module doc).
    fulfil: fastrand::Rng,
    cooperative_share: f64,
    /// The last three digits of the shop's mall id, which make its numbers unique.
    mall: i64,
    /// Unix seconds; everything generated is older.
    now: i64,
    /// Seconds of history before `now` (at least an hour).
    history: i64,
}

impl Generator {
    /// Product `i`, with one to three SKUs; two in three are listed.
    fn product(&mut self, i: usize) -> Product {
        let rng = &mut self.rng;
        let goods_id = 600_000_000_000_000 + self.mall * 1_000_000 + i as i64;
        let created_ms = (self.now - rng.i64(3600..self.history)) * 1000;
        let skus = (0..rng.usize(1..=3))
            .map(|k| Sku {
                sku_id: 17_000_000_000_000 + goods_id % 10_000_000 * 10 + k as i64,
                sku_sn: format!("SKU-{i}-{k}"),
                stock: rng.i64(0..500),
                color: COLORS[rng.usize(..COLORS.len())],
                size: SIZES[rng.usize(..SIZES.len())],
            })
            .collect();
        Product {
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
        }
    }

    /// Parent order `i`, with one to three child orders of random `products`.
    fn order(&mut self, i: usize, products: &[Product]) -> ParentOrder {
        let (rng, now, mall) = (&mut self.rng, self.now, self.mall);
        let created = now - rng.i64(600..self.history);
        let updated = (created + rng.i64(0..86_400 * 3)).min(now - 60);
        let status = [1, 2, 2, 3, 4, 4, 5, 5, 41, 51][rng.usize(..10)];
        let children = (0..rng.usize(1..=3))
            .map(|k| {
                let (goods_id, sku_id) = match products.get(rng.usize(..products.len().max(1))) {
                    Some(p) => (p.goods_id, p.skus.first().map(|s| s.sku_id).unwrap_or(0)),
                    None => (601_000_000_000 + i as i64, 17_592_000_000_000 + i as i64),
                };
                ChildOrder {
                    order_sn: format!("211-{:014}{k}", mall * 100_000_000 + i as i64),
                    goods_id,
                    sku_id,
                    status,
                    quantity: rng.i64(1..4),
                    ext_code: format!("EXT-{i}-{k}"),
                    fulfillment_type: FULFIL_BY_SELLER,
                    warehouse: (format!("WH-{mall}-S"), "Seller warehouse".to_string()),
                    payment_type: "PPD",
                    labels: Vec::new(),
                }
            })
            .collect();
        let mut order = ParentOrder {
            sn: format!("PO-211-{:014}", mall * 100_000_000 + i as i64),
            status,
            created,
            updated,
            expect_ship_latest: created + 3 * 86_400,
            shipped: 0,
            children,
        };
        self.fulfilment(&mut order);
        order
    }

    /// Who fulfils `order`'s children: a `cooperative_share` of parents use a cooperative
    /// warehouse, half of them for every child, half for all but the first; and the other
    /// attributes sellers filter by.
    fn fulfilment(&mut self, order: &mut ParentOrder) {
        let f = &mut self.fulfil;
        if f.f64() < self.cooperative_share {
            let all = order.children.len() == 1 || f.bool();
            let warehouse = f.u32(1..=3);
            for (k, child) in order.children.iter_mut().enumerate() {
                if all || k > 0 {
                    child.fulfillment_type = FULFIL_BY_COOPERATIVE_WAREHOUSE;
                    child.warehouse = (
                        format!("WH-COOP-{warehouse}"),
                        format!("Cooperative warehouse {warehouse}"),
                    );
                }
            }
        }
        for child in &mut order.children {
            if f.u32(..10) == 0 {
                child.payment_type = "COD";
            }
            if f.u32(..8) == 0 {
                child.labels.push("customized_products");
            }
        }
        if is_shipped(order.status) {
            order.shipped = (order.created + f.i64(3600..2 * 86_400)).min(order.updated);
        }
    }

    /// After-sales case `i`, of a random order and created after it.
    fn aftersale(&mut self, i: usize, orders: &[ParentOrder]) -> AfterSale {
        let (rng, now) = (&mut self.rng, self.now);
        let parent = orders
            .get(rng.usize(..orders.len().max(1)))
            .map(|o| (o.sn.clone(), o.created))
            .unwrap_or_else(|| (format!("PO-211-X{i}"), now - self.history / 2));
        let created = (parent.1 + rng.i64(3600..86_400 * 10)).min(now - 60);
        AfterSale {
            sn: format!("PAS-{:012}", self.mall * 10_000_000 + i as i64),
            parent_order_sn: parent.0,
            status_group: rng.i64(1..6),
            kind: rng.i64(1..3),
            created,
            updated: (created + rng.i64(0..86_400 * 5)).min(now - 60),
        }
    }
}
