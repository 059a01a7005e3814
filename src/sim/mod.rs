//! A faithful simulator of the Temu Open Platform router, for tests, benchmarks and local runs.
//!
//! Owns: [`data`] (seeded shops, orders, products, after-sales; paging semantics; live mutation;
//! ground truth), [`faults`] (injected latency and failures) and [`server`] (the hyper server that
//! checks app keys, QPS, timestamps, signatures and tokens exactly as documented and answers with
//! the real envelope). Used in-process by tests ([`Simulator::start`]) and by the `temu-sim` binary.
//! Must not: share code with the client's signing — its signature check is written separately
//! from the documentation, so a client bug cannot hide behind a shared helper.

pub mod data;
pub mod faults;
pub mod server;
pub mod verify;

use std::net::SocketAddr;
use std::time::Duration;

pub use data::{GroundTruth, ShopTruth, SimApp, SimShopSpec};
pub use faults::{Fault, FaultConfig, Latency};
pub use server::{RequestRecord, SimHandle, SimStats, Simulator};

/// Share of demo parent orders with cooperative-warehouse children (see
/// [`SimShopSpec::cooperative_share`]).
pub const DEMO_COOPERATIVE_SHARE: f64 = 0.3;

/// Everything the simulator needs to start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub seed: u64,
    pub apps: Vec<SimApp>,
    pub shops: Vec<SimShopSpec>,
    pub faults: FaultConfig,
    /// Expected order mutations per order-list request served (0 = data stands still).
    pub mutation_rate: f64,
    /// Accepted clock difference of a request's `timestamp` (the real API: ±300 s).
    pub timestamp_tolerance: Duration,
    /// Span of generated history before start.
    pub history: Duration,
    /// The server's clock offset (simulates skew: requests then fail with 3000011).
    pub clock_offset_secs: i64,
}

impl SimConfig {
    /// One app (`sim-app-key` / `sim-app-secret`, 20 QPS) and `shops` shops with `orders` orders,
    /// `orders / 2` products and `orders / 5` after-sales each; tokens valid for a year.
    pub fn demo(seed: u64, shops: usize, orders: usize) -> Self {
        let now = chrono::Utc::now().timestamp();
        let app = SimApp {
            app_key: "sim-app-key".to_string(),
            app_secret: "sim-app-secret-0123456789".to_string(),
            qps: 20,
        };
        let shops = (0..shops)
            .map(|i| SimShopSpec {
                name: format!("shop-{i}"),
                app_key: app.app_key.clone(),
                access_token: format!("sim-token-{seed}-{i}-abcdefghijklmnop"),
                mall_id: 634_418_210_000_000 + i as i64,
                token_expires_at: now + 365 * 86_400,
                scopes: vec![
                    "bg.order.list.v2.get".into(),
                    "bg.order.detail.v2.get".into(),
                    "bg.local.goods.list.query".into(),
                    "bg.aftersales.parentaftersales.list.get".into(),
                ],
                orders,
                products: (orders / 2).max(1),
                aftersales: orders / 5,
                cooperative_share: DEMO_COOPERATIVE_SHARE,
            })
            .collect();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed,
            apps: vec![app],
            shops,
            faults: FaultConfig::none(),
            mutation_rate: 0.0,
            timestamp_tolerance: Duration::from_secs(300),
            history: Duration::from_secs(90 * 86_400),
            clock_offset_secs: 0,
        }
    }
}
