//! After-sales: `bg.aftersales.parentaftersales.list.get` by update time, one record per parent case.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use super::{page_of, StreamSpec, WindowKind};
use crate::config::{Stream, SyncConfig};
use crate::store::{self, AfterSalesRecord, Upserted};
use crate::sync::walk::{Keyed, Page, PAGE_SIZE};
use crate::sync::window::Window;
use crate::sync::SyncError;
use crate::temu::fields::{self, RecordFields};
use crate::temu::model::AfterSalesListRequest;
use crate::temu::{TemuClient, TemuShop};

pub struct Aftersales;

impl Keyed for AfterSalesRecord {
    fn key(&self) -> &str {
        &self.parent_after_sales_sn
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        Some(self.updated_at)
    }
}

impl StreamSpec for Aftersales {
    type Record = AfterSalesRecord;
    const WINDOW: WindowKind = WindowKind::UpdateTime;
    const STREAM: Stream = Stream::Aftersales;
    const FIELDS: &'static RecordFields = &fields::AFTERSALES;

    fn interval(config: &SyncConfig) -> Duration {
        config.intervals.aftersales
    }

    fn fetch<'a>(
        client: &'a TemuClient,
        shop: &'a TemuShop,
        _config: &'a SyncConfig,
        window: Option<Window>,
        page: u32,
    ) -> BoxFuture<'a, Result<Page<AfterSalesRecord>, SyncError>> {
        Box::pin(async move {
            let req = AfterSalesListRequest {
                page_no: page,
                page_size: PAGE_SIZE,
                update_at_start: window.map(|w| w.start_secs()),
                update_at_end: window.map(|w| w.end_secs()),
                ..AfterSalesListRequest::default()
            };
            let resp = client.list_aftersales(shop, &req).await?;
            Ok(match resp.result {
                Some(r) => page_of::<Self, _, _>(
                    (client, shop),
                    &r.data,
                    r.total,
                    AfterSalesRecord::from_api,
                )?,
                None => Page::empty(),
            })
        })
    }

    fn upsert(
        conn: &mut AsyncPgConnection,
        shop_id: i64,
        _run_id: i64,
        rows: Vec<AfterSalesRecord>,
    ) -> BoxFuture<'_, Result<Upserted, SyncError>> {
        Box::pin(async move { Ok(store::upsert_aftersales(conn, shop_id, &rows).await?) })
    }
}
