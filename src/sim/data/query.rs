//! The paged queries of the real calls, over one shop's records.
//!
//! Owns: parameter parsing (integers sent as numbers or strings, closed time intervals given
//! by both ends or neither, pages from 1 with sizes capped at 100) and the order of results
//! (newest first). Must not: change the data.

use serde_json::{json, Map, Value};

use super::{
    AfterSale, ChildOrder, ParentOrder, Product, QueryError, ShopData,
    FULFIL_BY_COOPERATIVE_WAREHOUSE, FULFIL_BY_SELLER,
};

/// `fulfillmentTypeList` as documented: the child orders to list; absent or empty means
/// seller-fulfilled only. An unknown value is refused.
fn fulfillment_types(p: &Map<String, Value>) -> Result<Vec<&'static str>, QueryError> {
    let bad = |what: String| (2_000_000, format!("fulfillmentTypeList: {what}"));
    let listed = match p.get("fulfillmentTypeList") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v.as_str() {
                Some(FULFIL_BY_SELLER) => Ok(FULFIL_BY_SELLER),
                Some(FULFIL_BY_COOPERATIVE_WAREHOUSE) => Ok(FULFIL_BY_COOPERATIVE_WAREHOUSE),
                _ => Err(bad(format!("unknown value {v}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad(format!("must be a list of strings, got {other}"))),
    };
    Ok(if listed.is_empty() {
        vec![FULFIL_BY_SELLER]
    } else {
        listed
    })
}

impl ShopData {
    /// `bg.order.list.v2.get`.
    pub fn order_list(&self, p: &Map<String, Value>) -> Result<Value, QueryError> {
        let (page, size) = paging(p, "pageNumber")?;
        let update = pair(p, "updateAtStart", "updateAtEnd")?;
        let create = pair(p, "createAfter", "createBefore")?;
        let status = int(p, "parentOrderStatus")?.unwrap_or(0);
        let by_create = p.get("sortby").and_then(Value::as_str) == Some("createTime");
        let types = fulfillment_types(p)?;
        let listed = |c: &ChildOrder| types.contains(&c.fulfillment_type);
        let mut hits: Vec<&ParentOrder> = self
            .orders
            .iter()
            // A parent none of whose children match is not listed at all.
            .filter(|o| o.children.iter().any(listed))
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
        let (total, items) = one_page(hits, page, size, |o| Self::render_order_with(o, &listed));
        Ok(json!({ "totalItemNum": total, "pageItems": items }))
    }

    /// `bg.order.detail.v2.get`.
    pub fn order_detail(&self, p: &Map<String, Value>) -> Result<Value, QueryError> {
        let sn = p
            .get("parentOrderSn")
            .and_then(Value::as_str)
            .ok_or((2_000_000, "parentOrderSn is required".to_string()))?;
        let types = fulfillment_types(p)?;
        let listed = |c: &ChildOrder| types.contains(&c.fulfillment_type);
        self.orders
            .iter()
            .find(|o| o.sn == sn && o.children.iter().any(listed))
            .map(|o| Self::render_order_with(o, &listed))
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
        let (total, list) = one_page(hits, page, size, Self::render_product);
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
        let (total, data) = one_page(hits, page, size, Self::render_aftersale);
        Ok(json!({ "total": total, "data": data }))
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

/// Page `page` (from 1) of `size` of the sorted `hits`, rendered; with the number of all hits.
fn one_page<T>(
    hits: Vec<&T>,
    page: usize,
    size: usize,
    render: impl Fn(&T) -> Value,
) -> (usize, Vec<Value>) {
    let total = hits.len();
    let items = hits
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .map(render)
        .collect();
    (total, items)
}
