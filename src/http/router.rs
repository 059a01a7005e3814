//! A small route table: method + path pattern -> handler, plus each route's rate-limit policy.
//!
//! Owns: [`Router`] (registration and matching, `{param}` path segments, automatic `HEAD` for `GET`
//! routes, the `Allow` list for 405), [`Req`] (what a handler gets) and the handler types.
//!
//! Must not: know about any particular route (the built-in ones live in `routes.rs`, the others
//! with the components that add them), do I/O, or log. Matching
//! is exact and case-sensitive; a trailing slash is a different path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::problem::ApiError;
use super::HttpContext;

/// What every handler returns.
pub type HandlerResult = Result<Response<Full<Bytes>>, ApiError>;

/// A type-erased handler.
pub type Handler = Arc<dyn Fn(Req) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// Whether a route counts against the per-client rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// Limited per client IP (the default for every route, and for unknown paths).
    PerClient,
    /// Never limited: the health probes, which monitors poll on their own schedule.
    Exempt,
}

/// One request as a handler sees it.
pub struct Req {
    /// Method, URI, version and headers. Headers may carry credentials: never log them.
    pub parts: http::request::Parts,
    /// Values of the `{name}` segments of the matched pattern, in order.
    pub params: Vec<(String, String)>,
    /// Shared state: health snapshot, liveness probe, configuration.
    pub ctx: Arc<HttpContext>,
    /// The id echoed in `X-Request-Id` and in the request's log line.
    pub request_id: Arc<str>,
    /// The client's address.
    pub peer: SocketAddr,
    /// When `http.request_timeout` runs out; pass it on to anything the handler waits for.
    pub deadline: tokio::time::Instant,
    pub(crate) body: Option<Incoming>,
}

impl Req {
    /// The value of the path parameter `name` (from a `{name}` segment).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Reads the whole request body, at most `limit` bytes (413 beyond). Can be called once; later
    /// calls return an empty body.
    pub async fn body_bytes(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError::PayloadTooLarge { limit })
            }
            Err(err) => Err(ApiError::BadRequest(format!(
                "could not read the request body: {err}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

struct Route {
    pattern: Vec<Segment>,
    methods: Vec<(Method, Handler)>,
    rate_limit: RateLimit,
}

/// The route table.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// The outcome of [`Router::find`].
pub(crate) enum Match {
    Found {
        handler: Handler,
        params: Vec<(String, String)>,
        rate_limit: RateLimit,
    },
    /// The path exists; the method does not. `Allow` lists what does.
    MethodNotAllowed {
        allow: Vec<Method>,
        rate_limit: RateLimit,
    },
    NotFound,
}

impl Router {
    /// An empty table (see [`Router::standard`] for the built-in routes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rate-limited route. `path` is `/literal/{param}/...`. A `GET` route answers `HEAD`
    /// too (same status and headers, no body). Registering the same method and path again replaces
    /// the earlier handler.
    pub fn route<F, Fut>(self, method: Method, path: &str, handler: F) -> Self
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.add(method, path, RateLimit::PerClient, handler)
    }

    /// Adds a route with an explicit rate-limit policy.
    pub fn add<F, Fut>(
        mut self,
        method: Method,
        path: &str,
        rate_limit: RateLimit,
        handler: F,
    ) -> Self
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let pattern = parse_pattern(path);
        match self.routes.iter_mut().find(|r| r.pattern == pattern) {
            Some(route) => {
                route.rate_limit = rate_limit;
                route.methods.retain(|(m, _)| *m != method);
                route.methods.push((method, handler));
            }
            None => self.routes.push(Route {
                pattern,
                methods: vec![(method, handler)],
                rate_limit,
            }),
        }
        self
    }

    /// Finds the handler for `method` and `path`.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Match {
        let mut allow: Vec<Method> = Vec::new();
        let mut allow_policy = RateLimit::PerClient;
        for route in &self.routes {
            let Some(params) = match_pattern(&route.pattern, path) else {
                continue;
            };
            let handler = route.methods.iter().find(|(m, _)| m == method).or_else(|| {
                // HEAD is served by the GET handler; the pipeline drops the body.
                (*method == Method::HEAD)
                    .then(|| route.methods.iter().find(|(m, _)| *m == Method::GET))
                    .flatten()
            });
            if let Some((_, handler)) = handler {
                return Match::Found {
                    handler: handler.clone(),
                    params,
                    rate_limit: route.rate_limit,
                };
            }
            if allow.is_empty() {
                allow_policy = route.rate_limit;
            }
            for (m, _) in &route.methods {
                allow.push(m.clone());
                if *m == Method::GET {
                    allow.push(Method::HEAD);
                }
            }
        }
        if allow.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed {
                allow,
                rate_limit: allow_policy,
            }
        }
    }
}

fn parse_pattern(path: &str) -> Vec<Segment> {
    split_path(path)
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(seg.to_string()),
            },
        )
        .collect()
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    // "/" is the empty sequence; "/a/" is ["a", ""] so a trailing slash never matches "/a".
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    trimmed.split('/').filter({
        let root = trimmed.is_empty();
        move |_| !root
    })
}

fn match_pattern(pattern: &[Segment], path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut segments = split_path(path);
    for expected in pattern {
        let actual = segments.next()?;
        match expected {
            Segment::Literal(lit) => {
                if lit != actual {
                    return None;
                }
            }
            Segment::Param(name) => {
                if actual.is_empty() {
                    return None;
                }
                params.push((name.clone(), actual.to_string()));
            }
        }
    }
    if segments.next().is_some() {
        return None;
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok(_req: Req) -> HandlerResult {
        Ok(Response::new(Full::new(Bytes::new())))
    }

    fn router() -> Router {
        Router::new()
            .add(Method::GET, "/health", RateLimit::Exempt, ok)
            .route(Method::POST, "/sync/{shop}/{stream}", ok)
            .route(Method::GET, "/", ok)
    }

    #[test]
    fn matches_literals_params_and_head() {
        let r = router();
        assert!(matches!(
            r.find(&Method::GET, "/health"),
            Match::Found {
                rate_limit: RateLimit::Exempt,
                ..
            }
        ));
        assert!(matches!(
            r.find(&Method::HEAD, "/health"),
            Match::Found { .. }
        ));
        match r.find(&Method::POST, "/sync/us-main/orders") {
            Match::Found { params, .. } => assert_eq!(
                params,
                vec![
                    ("shop".to_string(), "us-main".to_string()),
                    ("stream".to_string(), "orders".to_string())
                ]
            ),
            _ => panic!("no match"),
        }
        assert!(matches!(r.find(&Method::GET, "/"), Match::Found { .. }));
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        let r = router();
        for path in [
            "/health/",
            "/healthz",
            "/sync/a",
            "/sync/a/b/c",
            "/sync//b",
            "//",
        ] {
            assert!(
                matches!(r.find(&Method::POST, path), Match::NotFound),
                "{path}"
            );
        }
        match r.find(&Method::POST, "/health") {
            Match::MethodNotAllowed { allow, rate_limit } => {
                assert_eq!(allow, vec![Method::GET, Method::HEAD]);
                assert_eq!(rate_limit, RateLimit::Exempt);
            }
            _ => panic!("expected 405"),
        }
        match r.find(&Method::GET, "/sync/a/b") {
            Match::MethodNotAllowed { allow, .. } => assert_eq!(allow, vec![Method::POST]),
            _ => panic!("expected 405"),
        }
    }
}
