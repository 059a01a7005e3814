//! Orders: `bg.order.list.v2.get` by update time, one record per parent order with its items.
//!
//! Every request names the child orders it wants (`fulfillmentTypeList` from
//! `sync.fulfillment_types`, both types by default): without it the API lists seller-fulfilled
//! children only, and parents shipped by a cooperative warehouse are never seen.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use super::{page_of, StreamSpec, WindowKind};
use crate::config::{Stream, SyncConfig};
use crate::store::{self, OrderRecord, Upserted};
use crate::sync::walk::{Keyed, Page, PAGE_SIZE};
use crate::sync::window::Window;
use crate::sync::SyncError;
use crate::temu::fields::{self, RecordFields};
use crate::temu::model::{fulfillment_type_list, OrderDetailRequest, OrderListRequest};
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

/// Page `page` of size `page_size` of the orders updated in `window` (newest first), asking for
/// the children of every configured fulfilment type. The one request builder of the stream: the
/// sync and any other caller (audit, backfill) list exactly the same orders.
pub fn list_request(
    config: &SyncConfig,
    window: Option<Window>,
    page: u32,
    page_size: u32,
) -> OrderListRequest {
    OrderListRequest {
        page_number: page,
        page_size,
        update_at_start: window.map(|w| w.start_secs()),
        update_at_end: window.map(|w| w.end_secs()),
        sortby: Some("updateTime".to_string()),
        fulfillment_type_list: fulfillment_type_list(&config.fulfillment_types),
        ..OrderListRequest::default()
    }
}

/// The detail request of `parent_order_sn`, with the same fulfilment types as the listing.
pub fn detail_request(config: &SyncConfig, parent_order_sn: &str) -> OrderDetailRequest {
    OrderDetailRequest {
        parent_order_sn: parent_order_sn.to_string(),
        fulfillment_type_list: fulfillment_type_list(&config.fulfillment_types),
    }
}

impl StreamSpec for Orders {
    type Record = OrderRecord;
    const WINDOW: WindowKind = WindowKind::UpdateTime;
    const STREAM: Stream = Stream::Orders;
    const FIELDS: &'static RecordFields = &fields::ORDER;

    fn interval(config: &SyncConfig) -> Duration {
        config.intervals.orders
    }

    fn fetch<'a>(
        client: &'a TemuClient,
        shop: &'a TemuShop,
        config: &'a SyncConfig,
        window: Option<Window>,
        page: u32,
    ) -> BoxFuture<'a, Result<Page<OrderRecord>, SyncError>> {
        Box::pin(async move {
            let req = list_request(config, window, page, PAGE_SIZE);
            let resp = client.list_orders(shop, &req).await?;
            Ok(match resp.result {
                Some(r) => page_of::<Self, _, _>(
                    (client, shop),
                    &r.page_items,
                    r.total_item_num,
                    OrderRecord::from_api,
                )?,
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
