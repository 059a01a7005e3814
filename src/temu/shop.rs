//! A shop resolved once: everything a call for it needs, in one value.
//!
//! Owns: [`TemuShop`] — the shop's name, region and streams, its app's key and secret, its access
//! token, the router it calls, the QPS budget (bucket) of its app_key and the circuit breaker of its
//! router (both shared with the other shops of that app / router), and what is known about its
//! token ([`TokenState`]). The client builds each shop once, from the configuration; callers hand
//! the value back on every call, so nothing joins shops by name afterwards.
//!
//! Must not: show a secret — `Debug` prints the name, region, streams and router label only.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{AppConfig, Region, Secret, ShopConfig, Stream};

use super::budget::Bucket;
use super::circuit::CircuitBreaker;
use super::redact::url_label;
use super::token::TokenState;

/// One configured shop, resolved. Cheap to clone (one shared inner); clones share token state.
///
/// A shop value belongs to the [`TemuClient`](super::TemuClient) that built it: its limiter and
/// breaker are that client's, and that client publishes its token state.
#[derive(Clone)]
pub struct TemuShop {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    region: Region,
    streams: Vec<Stream>,
    app_key: String,
    app_secret: Secret,
    app_qps: u32,
    access_token: Secret,
    url: String,
    limiter: Arc<Bucket>,
    breaker: Arc<CircuitBreaker>,
    token: Mutex<TokenState>,
    /// The configured streams the token's scopes leave out, as last reported.
    unscoped: Mutex<Vec<Stream>>,
}

impl TemuShop {
    /// The shop of `shop` using `app`, calling `url`, sharing `limiter` and `breaker`.
    pub(super) fn new(
        shop: &ShopConfig,
        app: &AppConfig,
        url: String,
        limiter: Arc<Bucket>,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: shop.name.clone(),
                region: shop.region,
                streams: shop.streams.clone(),
                app_key: app.app_key.clone(),
                app_secret: app.app_secret.clone(),
                app_qps: app.qps,
                access_token: shop.access_token.clone(),
                url,
                limiter,
                breaker,
                token: Mutex::new(TokenState::NotChecked),
                unscoped: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The calls a second its app's limiter allows (`apps[].qps`, shared with the app's other shops).
    pub fn app_qps(&self) -> u32 {
        self.inner.app_qps
    }

    /// Our name for the shop (logs, metrics, the database).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn region(&self) -> Region {
        self.inner.region
    }

    /// The region as stored and shown: `us`, `eu`, `global` or `cn`.
    pub fn region_name(&self) -> &'static str {
        match self.inner.region {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Global => "global",
            Region::Cn => "cn",
        }
    }

    /// What is synced for this shop, as configured.
    pub fn streams(&self) -> &[Stream] {
        &self.inner.streams
    }

    /// What is known about the shop's token now.
    pub fn token_state(&self) -> TokenState {
        self.inner.token.lock().clone()
    }

    /// The mall id, once a token check has learned it.
    pub fn mall_id(&self) -> Option<String> {
        match &*self.inner.token.lock() {
            TokenState::Valid { mall_id, .. } => mall_id.clone(),
            _ => None,
        }
    }

    /// The API `stream` needs when the checked token's `apiScopeList` does not include it; `None`
    /// when it does, when the token was not checked (yet) or was refused, or when the list is
    /// empty (an answer without scopes says nothing: the stream runs).
    pub fn missing_scope(&self, stream: Stream) -> Option<&'static str> {
        let api = super::model::stream_api(stream);
        match &*self.inner.token.lock() {
            TokenState::Valid { scopes, .. } if !scopes.is_empty() => {
                (!scopes.iter().any(|s| s == api)).then_some(api)
            }
            _ => None,
        }
    }

    /// The configured streams the token's scopes leave out, each with the API it lacks.
    pub fn unscoped_streams(&self) -> Vec<(Stream, &'static str)> {
        self.streams()
            .iter()
            .filter_map(|&s| self.missing_scope(s).map(|api| (s, api)))
            .collect()
    }

    /// Records `now` as the unscoped streams; returns the previous list.
    pub(super) fn swap_unscoped(&self, now: Vec<Stream>) -> Vec<Stream> {
        std::mem::replace(&mut *self.inner.unscoped.lock(), now)
    }

    pub(super) fn set_token_state(&self, state: TokenState) {
        *self.inner.token.lock() = state;
    }

    /// What the shop is configured with (name, region, router, app key, and the app secret and
    /// token, so a new token counts as a change), fed into `bytes` for a digest: the sync engine
    /// hashes it to notice a configuration change (a park is cleared by one). Never logged.
    pub fn config_for_digest(&self, bytes: &mut Vec<u8>) {
        let i = &self.inner;
        for part in [
            i.name.as_str(),
            self.region_name(),
            i.url.as_str(),
            i.app_key.as_str(),
            i.app_secret.expose(),
            i.access_token.expose(),
        ] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
    }

    pub(super) fn app_key(&self) -> &str {
        &self.inner.app_key
    }

    pub(super) fn app_secret(&self) -> &Secret {
        &self.inner.app_secret
    }

    pub(super) fn access_token(&self) -> &Secret {
        &self.inner.access_token
    }

    /// The router this shop calls (may carry credentials: log [`url_label`] of it only).
    pub(super) fn url(&self) -> &str {
        &self.inner.url
    }

    pub(super) fn limiter(&self) -> &Bucket {
        &self.inner.limiter
    }

    pub(super) fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }
}

impl std::fmt::Debug for TemuShop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemuShop")
            .field("name", &self.inner.name)
            .field("region", &self.inner.region)
            .field("streams", &self.inner.streams)
            .field("router", &url_label(&self.inner.url))
            .finish_non_exhaustive()
    }
}
