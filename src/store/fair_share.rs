//! Fair leases (issue 15, item 2): how many (shop, stream) leases one daemon may hold while others
//! are alive.
//!
//! Owns: [`may_claim`]. Live daemons are the members of the QPS budget (`app_budget_members`,
//! refreshed every second by `temu::budget::coordinator`); a daemon holds at most
//! `ceil(pairs ÷ live daemons)` unexpired
//! (pairs: the rows of `sync_state`, plus this one if it has none yet) leases, so the work spreads, and when one dies its
//! expired leases are free to the others as before (the cap only ever grows when a member goes).
//!
//! Must not: open transactions (the caller's lease transaction holds this).

use std::time::Duration;

use diesel::sql_types::{Bool, Double, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::DbError;

#[derive(QueryableByName)]
struct Verdict {
    #[diesel(sql_type = Bool)]
    allowed: bool,
}

/// Whether `owner` may take the lease of (shop, stream): it holds it already, or it holds fewer
/// than its fair share of unexpired leases. Members are live while refreshed within `member_ttl`.
pub async fn may_claim(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
    member_ttl: Duration,
) -> Result<bool, DbError> {
    let v: Verdict = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM sync_state WHERE shop_id = $1 AND stream = $2 \
                          AND lease_owner = $3) \
             OR (SELECT count(*) FROM sync_state WHERE lease_owner = $3 \
                   AND lease_expires_at > clock_timestamp()) \
                < ceil(((SELECT count(*) FROM sync_state) \
                        + CASE WHEN EXISTS (SELECT 1 FROM sync_state \
                                            WHERE shop_id = $1 AND stream = $2) \
                               THEN 0 ELSE 1 END)::float8 \
                       / greatest(1, (SELECT count(DISTINCT instance_id) FROM app_budget_members \
                                       WHERE last_seen > now() - make_interval(secs => $4)))) \
           AS allowed",
    )
    .bind::<diesel::sql_types::BigInt, _>(shop_id)
    .bind::<Text, _>(stream)
    .bind::<Text, _>(owner)
    .bind::<Double, _>(member_ttl.as_secs_f64())
    .get_result(conn)
    .await?;
    Ok(v.allowed)
}
