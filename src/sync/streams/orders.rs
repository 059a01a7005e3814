//! Orders: `bg.order.list.v2.get` by update time, one record per parent order with its items.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use super::{page_of, StreamSpec, WindowKind};
use crate::config::SyncConfig;
use crate::store::{self, OrderRecord, Upserted};
use crate::sync::walk::{Keyed, Page, PAGE_SIZE};
use crate::sync::window::Window;
use crate::sync::SyncError;
use crate::temu::model::OrderListRequest;
use crate::temu::{TemuClient, TemuShop};

pub struct Orders;

impl Keyed for OrderRecord {
    fn key(&self) -> &str {
        &self.parent_order_sn
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        Some(self.updated_at)
    }
}

impl StreamSpec for Orders {
    type Record = OrderRecord;
    const WINDOW: WindowKind = WindowKind::UpdateTime;

    fn interval(config: &SyncConfig) -> Duration {
        config.intervals.orders
    }

    fn fetch<'a>(
        client: &'a TemuClient,
        shop: &'a TemuShop,
        window: Option<Window>,
        page: u32,
    ) -> BoxFuture<'a, Result<Page<OrderRecord>, SyncError>> {
        Box::pin(async move {
            let req = OrderListRequest {
                page_number: page,
                page_size: PAGE_SIZE,
                update_at_start: window.map(|w| w.start_secs()),
                update_at_end: window.map(|w| w.end_secs()),
                sortby: Some("updateTime".to_string()),
                ..OrderListRequest::default()
            };
            let resp = client.list_orders(shop, &req).await?;
            Ok(match resp.result {
                Some(r) => page_of(&r.page_items, r.total_item_num, OrderRecord::from_api)?,
                None => Page::empty(),
            })
        })
    }

    fn upsert(
        conn: &mut AsyncPgConnection,
        shop_id: i64,
        _run_id: i64,
        rows: Vec<OrderRecord>,
    ) -> BoxFuture<'_, Result<Upserted, SyncError>> {
        Box::pin(async move { Ok(store::upsert_orders(conn, shop_id, &rows).await?) })
    }
}
