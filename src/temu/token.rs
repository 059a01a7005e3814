//! Access-token state per shop, its health check, and the `check-token` report.
//!
//! Owns: turning `bg.open.accesstoken.info.get` answers (and token errors met during calls) into
//! a per-shop [`TokenState`], a `/health` check (warn within [`EXPIRY_WARNING`] of expiry, fail
//! once expired or refused) and a printable [`TokenReport`]. Must not: hold or print the token.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::health::{Check, Status};

use super::model::TokenInfo;

/// Tokens expiring sooner than this make the health report warn.
pub const EXPIRY_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(14);

/// What we know about one shop's token.
#[derive(Debug, Clone)]
pub enum TokenState {
    NotChecked,
    Valid {
        mall_id: Option<String>,
        expires_at: Option<DateTime<Utc>>,
        scopes: Vec<String>,
        checked_at: DateTime<Utc>,
    },
    /// The API refused the token (3000030–3000034) or the check failed.
    Refused {
        code: Option<i64>,
        reason: String,
        checked_at: DateTime<Utc>,
    },
}

impl TokenState {
    pub fn from_info(info: &TokenInfo, now: DateTime<Utc>) -> Self {
        TokenState::Valid {
            mall_id: info.mall_id.as_ref().map(|m| m.as_str().to_string()),
            expires_at: info.expires_at(),
            scopes: info.api_scope_list.clone(),
            checked_at: now,
        }
    }

    /// pass / warn / fail and a sentence for the operator.
    pub fn assess(&self, now: DateTime<Utc>) -> (Status, String) {
        match self {
            TokenState::NotChecked => (Status::Pass, "token not checked yet".to_string()),
            TokenState::Valid {
                expires_at: None, ..
            } => (Status::Warn, "token accepted; expiry unknown".to_string()),
            TokenState::Valid {
                expires_at: Some(at),
                ..
            } => {
                let left = *at - now;
                if left <= chrono::TimeDelta::zero() {
                    (
                        Status::Fail,
                        format!("token expired at {at}: the seller must re-authorize the app and the new token must go into the shop's access_token"),
                    )
                } else if left < EXPIRY_WARNING {
                    (
                        Status::Warn,
                        format!("token expires at {at} (in {} days): ask the seller to re-authorize the app", left.num_days()),
                    )
                } else {
                    (Status::Pass, format!("token valid until {at}"))
                }
            }
            TokenState::Refused { code, reason, .. } => (
                Status::Fail,
                match code {
                    Some(code) => format!("token refused (error {code}): {reason}"),
                    None => format!("token check failed: {reason}"),
                },
            ),
        }
    }

    pub fn check(&self, shop: &str, now: DateTime<Utc>) -> Check {
        let (status, output) = self.assess(now);
        let (observed_value, time) = match self {
            TokenState::Valid {
                expires_at,
                checked_at,
                ..
            } => (
                expires_at.map(|at| serde_json::json!(at.to_rfc3339())),
                *checked_at,
            ),
            TokenState::Refused { checked_at, .. } => (None, *checked_at),
            TokenState::NotChecked => (None, now),
        };
        Check {
            component_id: Some(shop.to_string()),
            component_type: Some("credential"),
            status,
            observed_value,
            observed_unit: None,
            time,
            output: Some(output),
        }
    }
}

/// One line of `temu-sync check-token`.
#[derive(Debug, Clone)]
pub struct TokenReport {
    pub shop: String,
    pub state: TokenState,
    pub status: Status,
    pub message: String,
}

impl fmt::Display for TokenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Pass => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        match &self.state {
            TokenState::Valid {
                mall_id,
                expires_at,
                scopes,
                ..
            } => write!(
                f,
                "{shop}: {status} mall_id={mall} expires={exp} scopes=[{scopes}] — {msg}",
                shop = self.shop,
                mall = mall_id.as_deref().unwrap_or("?"),
                exp = expires_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "?".into()),
                scopes = scopes.join(","),
                msg = self.message
            ),
            _ => write!(f, "{}: {status} — {}", self.shop, self.message),
        }
    }
}
