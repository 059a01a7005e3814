//! Products: `bg.goods.list.get`, the whole listed/delisted set every run; a complete sweep marks
//! the products it did not see as removed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use super::{page_of, StreamSpec, WindowKind};
use crate::config::{Stream, SyncConfig};
use crate::store::{self, ProductRecord, Upserted};
use crate::sync::walk::{Keyed, Page, PAGE_SIZE};
use crate::sync::window::Window;
use crate::sync::SyncError;
use crate::temu::fields::{self, RecordFields};
use crate::temu::model::GoodsListRequest;
use crate::temu::{TemuClient, TemuShop};

/// `goodsSearchType` 1: listed and delisted products.
const LISTED_OR_DELISTED: i64 = 1;

pub struct Products;

impl Keyed for ProductRecord {
    fn key(&self) -> &str {
        &self.goods_id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        None
    }
}

impl StreamSpec for Products {
    type Record = ProductRecord;
    const WINDOW: WindowKind = WindowKind::FullSweep;
    const STREAM: Stream = Stream::Products;
    const FIELDS: &'static RecordFields = &fields::GOODS;

    fn interval(config: &SyncConfig) -> Duration {
        config.intervals.products
    }

    fn fetch<'a>(
        client: &'a TemuClient,
        shop: &'a TemuShop,
        _config: &'a SyncConfig,
        _window: Option<Window>,
        page: u32,
    ) -> BoxFuture<'a, Result<Page<ProductRecord>, SyncError>> {
        Box::pin(async move {
            let req = GoodsListRequest {
                page_no: page,
                page_size: PAGE_SIZE,
                goods_search_type: LISTED_OR_DELISTED,
                ..GoodsListRequest::default()
            };
            let resp = client.list_goods(shop, &req).await?;
            Ok(match resp.result {
                Some(r) => page_of::<Self, _, _>(
                    (client, shop),
                    &r.goods_list,
                    r.total,
                    ProductRecord::from_api,
                )?,
                None => Page::empty(),
            })
        })
    }

    fn upsert(
        conn: &mut AsyncPgConnection,
        shop_id: i64,
        run_id: i64,
        rows: Vec<ProductRecord>,
    ) -> BoxFuture<'_, Result<Upserted, SyncError>> {
        Box::pin(async move { Ok(store::upsert_products(conn, shop_id, run_id, &rows).await?) })
    }

    fn after_sweep(
        conn: &mut AsyncPgConnection,
        shop_id: i64,
        run_id: i64,
    ) -> BoxFuture<'_, Result<u64, SyncError>> {
        Box::pin(async move { Ok(store::mark_products_removed(conn, shop_id, run_id).await?) })
    }
}
