//! Token checks: `bg.open.accesstoken.info.get` for one shop or all, and what a call learns
//! about a token on the way (a refused token marks its shop at once).
//!
//! Owns: turning a check's answer into the shop's [`TokenState`] (a transient failure keeps what
//! was known) and publishing it, with the configured streams its `apiScopeList` leaves out (they
//! are skipped, with one warning). Must not: hold or print a token.

use chrono::Utc;

use super::super::envelope::{ApiResponse, ErrorClass, TemuError};
use super::super::model::{TokenInfo, TokenInfoRequest, API_TOKEN_INFO};
use super::super::shop::TemuShop;
use super::super::token::{TokenReport, TokenState};
use super::TemuClient;

impl TemuClient {
    /// `bg.open.accesstoken.info.get`; also updates the shop's token state and health check.
    pub async fn token_info(&self, shop: &TemuShop) -> Result<ApiResponse<TokenInfo>, TemuError> {
        let res = self
            .call::<_, TokenInfo>(shop, API_TOKEN_INFO, &TokenInfoRequest {}, None)
            .await;
        let now = Utc::now();
        let state = match &res {
            Ok(ApiResponse {
                result: Some(info), ..
            }) => Some(TokenState::from_info(info, now)),
            Ok(_) => Some(TokenState::Refused {
                code: None,
                reason: "the token check returned no result".into(),
                checked_at: now,
            }),
            Err(e) if e.class() == ErrorClass::Fatal => Some(TokenState::Refused {
                code: e.code(),
                reason: e.to_string(),
                checked_at: now,
            }),
            // A transient failure says nothing about the token: keep what we knew.
            Err(_) => None,
        };
        if let Some(state) = state {
            shop.set_token_state(state);
            self.publish_tokens();
            self.publish_scopes(shop);
        }
        res
    }

    /// Checks every shop's token (concurrently) and reports mall id, expiry and scopes, one
    /// report per shop in name order.
    pub async fn check_tokens(&self) -> Vec<TokenReport> {
        let shops = self.shops_by_name();
        let results =
            futures_util::future::join_all(shops.iter().map(|shop| self.token_info(shop))).await;
        let now = Utc::now();
        shops
            .iter()
            .zip(results)
            .map(|(shop, res)| {
                let state = match res {
                    Ok(_) => shop.token_state(),
                    Err(e) => TokenState::Refused {
                        code: e.code(),
                        reason: e.to_string(),
                        checked_at: now,
                    },
                };
                let (status, message) = state.assess(now);
                TokenReport {
                    shop: shop.name().to_string(),
                    state,
                    status,
                    message,
                }
            })
            .collect()
    }

    /// A call was refused for its token (3000030–3000034): the shop's token is refused now.
    pub(super) fn token_refused(&self, shop: &TemuShop, err: &TemuError) {
        shop.set_token_state(TokenState::Refused {
            code: err.code(),
            reason: err.to_string(),
            checked_at: Utc::now(),
        });
        self.publish_tokens();
    }

    /// The shops sorted by name (the order of the token report and its health check).
    pub(super) fn shops_by_name(&self) -> Vec<TemuShop> {
        let mut shops = self.inner.shops.clone();
        shops.sort_by(|a, b| a.name().cmp(b.name()));
        shops
    }
}
