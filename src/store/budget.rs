//! The members of each app_key's QPS budget (`app_budget_members`): join/refresh, count, leave.
//!
//! Owns: [`refresh_member`] and [`leave`]. The protocol that uses them is in
//! `temu::budget::coordinator`.
//!
//! Must not: open transactions (one statement each).

use diesel::sql_types::{BigInt, Bool, Double, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::DbError;

/// What one refresh saw, on the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Membership {
    /// Live members of the app_key, this daemon included.
    #[diesel(sql_type = BigInt)]
    pub live: i64,
    /// This daemon joined at least `settle` ago (every other member has seen it since).
    #[diesel(sql_type = Bool)]
    pub settled: bool,
}

/// Marks `instance` alive for `app_key` (joining anew when its row is missing or expired, older
/// than `ttl_secs`) and counts the live members.
pub async fn refresh_member(
    conn: &mut AsyncPgConnection,
    app_key: &str,
    instance: &str,
    ttl_secs: f64,
    settle_secs: f64,
) -> Result<Membership, DbError> {
    let row: Membership = diesel::sql_query(
        "WITH me AS ( \
           INSERT INTO app_budget_members AS m (app_key, instance_id) VALUES ($1, $2) \
           ON CONFLICT (app_key, instance_id) DO UPDATE SET last_seen = now(), \
             joined_at = CASE WHEN m.last_seen <= now() - make_interval(secs => $3) \
                              THEN now() ELSE m.joined_at END \
           RETURNING joined_at) \
         SELECT 1 + (SELECT count(*) FROM app_budget_members \
                     WHERE app_key = $1 AND instance_id <> $2 \
                       AND last_seen > now() - make_interval(secs => $3)) AS live, \
                (SELECT joined_at <= now() - make_interval(secs => $4) FROM me) AS settled",
    )
    .bind::<Text, _>(app_key)
    .bind::<Text, _>(instance)
    .bind::<Double, _>(ttl_secs)
    .bind::<Double, _>(settle_secs)
    .get_result(conn)
    .await?;
    Ok(row)
}

/// `instance` stops sharing every app_key (after its last call).
pub async fn leave(conn: &mut AsyncPgConnection, instance: &str) -> Result<usize, DbError> {
    Ok(
        diesel::sql_query("DELETE FROM app_budget_members WHERE instance_id = $1")
            .bind::<Text, _>(instance)
            .execute(conn)
            .await?,
    )
}
