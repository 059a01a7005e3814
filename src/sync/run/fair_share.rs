//! The hook of fair leases at the claim (issue 15, item 2): a daemon over its fair share of the
//! leases does not take another; the rule itself is `store::fair_share::may_claim`.

use diesel_async::AsyncPgConnection;

use crate::db::DbError;
use crate::temu::budget::coordinator::MEMBER_TTL;

/// `true` when `owner` may claim (shop, stream) now; `false` reads as "held elsewhere", so the
/// actor looks again within one `lease_ttl` (by when a dead daemon's share is free again).
pub async fn within_fair_share(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
) -> Result<bool, DbError> {
    crate::store::fair_share::may_claim(conn, shop_id, stream, owner, MEMBER_TTL).await
}
