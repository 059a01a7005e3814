//! The Temu Open Platform API: signing, the envelope, typed calls, the client and its actor.
//!
//! Owns: everything between "list orders of shop X, page N" and HTTP bytes on the wire —
//! [`sign`] (parameters and the MD5 signature), [`envelope`] (response envelope and [`TemuError`]
//! with its actionable [`ErrorClass`]), [`model`] (typed requests/responses that keep unknown
//! fields and raw JSON), [`circuit`] (breaker per router), [`shop`] ([`TemuShop`]: a configured
//! shop resolved once, with its credentials, router, limiter and token state), [`client`]
//! ([`TemuClient`]: the one HTTP client, per-app_key rate limits, connection slots, retries),
//! [`redact`] (scrubbing secrets, URL labels), [`token`] (token state and the `check-token`
//! report) and [`actor`] (the supervised [`TemuActor`]: liveness and the periodic token check).
//!
//! Must not: touch the database, know about sync cursors, or let a secret (app_secret,
//! access_token, proxy password) reach a log line, an error, `Debug` output or `/health`.

pub mod actor;
pub mod budget;
pub mod circuit;
pub mod client;
pub mod envelope;
pub mod fields;
pub mod model;
pub mod redact;
pub mod shop;
pub mod sign;
pub mod token;

pub use actor::{TemuActor, TemuActorArgs, TemuMsg};
pub use circuit::{CircuitSnapshot, CircuitState};
pub use client::{ClientStats, ClientTuning, Observers, TemuClient};
pub use envelope::{ApiResponse, ErrorClass, TemuError, TransportKind, WithRaw};
pub use shop::TemuShop;
pub use token::{TokenReport, TokenState};

use crate::config::Region;

/// The router of a region.
pub fn router_url(region: Region) -> &'static str {
    match region {
        Region::Us => "https://openapi-b-us.temu.com/openapi/router",
        Region::Eu => "https://openapi-b-eu.temu.com/openapi/router",
        Region::Global => "https://openapi-b-global.temu.com/openapi/router",
        Region::Cn => "https://openapi.kuajingmaihuo.com/openapi/router",
    }
}

/// `temu-sync check-token`: checks every shop's token and prints one line per shop.
/// Returns `false` when any shop failed (the caller exits non-zero).
pub async fn run_check_token(
    config: &crate::config::Config,
    out: &mut (dyn std::io::Write + Send),
) -> Result<bool, TemuError> {
    let client = TemuClient::new(&config.temu, &config.apps, &config.shops)?;
    let reports = client.check_tokens().await;
    let mut ok = true;
    for report in &reports {
        ok &= report.status != crate::health::Status::Fail;
        writeln!(out, "{report}").map_err(|e| TemuError::Config(format!("cannot write: {e}")))?;
    }
    Ok(ok)
}
