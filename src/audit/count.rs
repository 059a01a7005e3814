//! Temu's side of an audit: one call with `pageSize: 1` per question, read for the listing's
//! total only — orders and after-sales updated within one UTC day, products listed or delisted.
//!
//! The requests are the streams' own (same filters, so the orders call carries the configured
//! `fulfillmentTypeList`), with the smallest page. Must not: write anything.

use crate::config::{Stream, SyncConfig};
use crate::sync::streams::orders;
use crate::sync::window::Window;
use crate::sync::SyncError;
use crate::temu::model::{AfterSalesListRequest, GoodsListRequest};
use crate::temu::{TemuClient, TemuShop};

/// `goodsSearchType` 1: listed and delisted products, the set the products stream keeps.
const LISTED_OR_DELISTED: i64 = 1;

/// The listing's total for `stream`: within `day` for update-time streams, the whole listing for
/// products (`day` ignored). One API call.
pub async fn temu_total(
    client: &TemuClient,
    shop: &TemuShop,
    config: &SyncConfig,
    stream: Stream,
    day: Option<Window>,
) -> Result<i64, SyncError> {
    match stream {
        Stream::Orders => {
            // The stream's own request: its `fulfillmentTypeList` included.
            let req = orders::list_request(config, day, 1, 1);
            let resp = client.list_orders(shop, &req).await?;
            Ok(resp.result.and_then(|r| r.total_item_num).unwrap_or(0))
        }
        Stream::Aftersales => {
            let req = AfterSalesListRequest {
                page_no: 1,
                page_size: 1,
                update_at_start: day.map(|w| w.start_secs()),
                update_at_end: day.map(|w| w.end_secs()),
                ..AfterSalesListRequest::default()
            };
            let resp = client.list_aftersales(shop, &req).await?;
            Ok(resp.result.and_then(|r| r.total).unwrap_or(0))
        }
        Stream::Products => {
            let req = GoodsListRequest {
                page_no: 1,
                page_size: 1,
                goods_search_type: LISTED_OR_DELISTED,
                ..GoodsListRequest::default()
            };
            let resp = client.list_goods(shop, &req).await?;
            Ok(resp.result.and_then(|r| r.total).unwrap_or(0))
        }
    }
}
