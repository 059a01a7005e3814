//! Raw JSON as stored: escapes `jsonb` refuses are replaced, the rest is kept as sent.
//!
//! Owns the `raw` column's text cases; must not test conversion (see `conversion`).

use diesel_async::RunQueryDsl;
use serde_json::json;
use temu_sync::store::*;
use temu_sync::temu::model::OrderItem;
use temu_sync::temu::WithRaw;

use crate::fixtures::{counts, database};

/// `jsonb` refuses the escape `\u0000`; the raw text is bound as sent, so it must be rewritten or
/// one odd field would fail the whole batch. (Unpaired surrogates never get this far: the client's
/// decoding rejects them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_with_escapes_postgres_refuses_is_stored_with_replacements() {
    let (_t, db) = database("store_raw_escapes").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let text = r#"{"parentOrderMap": {"parentOrderSn": "PO-E", "updateTime": 1000,
        "note\u0000": "a\u0000b", "pair": "\ud83d\ude00", "path": "C:\\u0000"},
        "orderList": []}"#;
    let item: WithRaw<OrderItem> = serde_json::from_str(text).expect("decodes");
    let record = OrderRecord::from_api(&item).expect("converts");
    let got = upsert_orders(&mut conn, shop, std::slice::from_ref(&record))
        .await
        .expect("stored, not refused by jsonb");
    assert_eq!(got, counts(1, 0, 0));

    #[derive(diesel::QueryableByName)]
    struct Raw {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        raw: serde_json::Value,
    }
    let row: Raw = diesel::sql_query("SELECT raw->'parentOrderMap' AS raw FROM orders")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        row.raw,
        json!({"parentOrderSn": "PO-E", "updateTime": 1000, "note\u{FFFD}": "a\u{FFFD}b",
               "pair": "\u{1F600}", "path": "C:\\u0000"})
    );
}
