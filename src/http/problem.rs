//! Error classes of the HTTP endpoint and their rendering as `application/problem+json` (RFC 9457).
//!
//! Owns: [`ApiError`], the one error type every handler returns, and the mapping from each class to
//! a status code, a problem `type`, a `title` and the extra headers the class needs (`Allow`,
//! `Retry-After`, `WWW-Authenticate`).
//!
//! Must not: put anything in a response that the producer did not mark as client-safe. The detail of
//! [`ApiError::Internal`] goes to the log only; the client sees a generic sentence and the request
//! id. Nothing here logs request headers or reads secrets.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// Media type of problem details (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every way a request can fail, by class. Handlers return these; the pipeline renders them.
///
/// The `String` in each client-facing variant is the problem's `detail` and is sent to the client
/// as is: producers must keep secrets and internal error text out of it. [`ApiError::Internal`]
/// is the exception: its text is logged with the request id and never sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no or wrong credentials (adds `WWW-Authenticate: Bearer`).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: credentials are fine but the action is not allowed (or control routes are disabled).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such route or resource.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the route exists but not with this method (adds `Allow`).
    #[error("method not allowed; allowed: {allow:?}")]
    MethodNotAllowed { allow: Vec<Method> },
    /// 409: conflicts with the current state (e.g. a sync run is already in progress).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413: the request body is larger than the route accepts.
    #[error("payload too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    /// 429: the client is over its rate limit (adds `Retry-After`, whole seconds, at least 1).
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// 503: PostgreSQL is unreachable or the pool timed out.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// 504: the Temu API failed or timed out.
    #[error("upstream failure: {0}")]
    Upstream(String),
    /// 504: the request ran past `http.request_timeout`.
    #[error("request deadline of {0:?} exceeded")]
    DeadlineExceeded(Duration),
    /// 500: anything else, including a handler panic. Logged, never shown to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Database errors reaching a handler: unreachable or saturated → 503, anything else → 500
/// (its text goes to the log only).
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_unavailable() {
            ApiError::DatabaseUnavailable(
                "the database is unreachable or saturated; try again later".into(),
            )
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

/// The JSON body of a problem response.
#[derive(Debug, Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    instance: &'a str,
    request_id: &'a str,
}

impl ApiError {
    /// The status code of this class.
    pub fn status(&self) -> StatusCode {
        self.class().0
    }

    /// The problem `type` URI of this class (stable; clients may switch on it).
    pub fn problem_type(&self) -> &'static str {
        self.class().1
    }

    /// The short, fixed `title` of this class.
    pub fn title(&self) -> &'static str {
        self.class().2
    }

    /// One row per class: its status code, problem `type` URI and `title`.
    #[rustfmt::skip]
    fn class(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "urn:temu-sync:problem:bad-request", "Bad request"),
            ApiError::Unauthorized(_) => (S::UNAUTHORIZED, "urn:temu-sync:problem:unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (S::FORBIDDEN, "urn:temu-sync:problem:forbidden", "Forbidden"),
            ApiError::NotFound(_) => (S::NOT_FOUND, "urn:temu-sync:problem:not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "urn:temu-sync:problem:method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => (S::CONFLICT, "urn:temu-sync:problem:conflict", "Conflict"),
            ApiError::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "urn:temu-sync:problem:payload-too-large", "Payload too large"),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "urn:temu-sync:problem:rate-limited", "Too many requests"),
            ApiError::DatabaseUnavailable(_) => (S::SERVICE_UNAVAILABLE, "urn:temu-sync:problem:database-unavailable", "Database unavailable"),
            ApiError::Upstream(_) => (S::GATEWAY_TIMEOUT, "urn:temu-sync:problem:upstream", "Upstream failure"),
            ApiError::DeadlineExceeded(_) => (S::GATEWAY_TIMEOUT, "urn:temu-sync:problem:deadline-exceeded", "Request deadline exceeded"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "urn:temu-sync:problem:internal", "Internal server error"),
        }
    }

    /// The `detail` sent to the client. Never the text of [`ApiError::Internal`].
    pub fn client_detail(&self) -> String {
        match self {
            ApiError::BadRequest(d)
            | ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::DatabaseUnavailable(d)
            | ApiError::Upstream(d) => d.clone(),
            ApiError::MethodNotAllowed { allow } => {
                format!("allowed methods: {}", allow_value(allow))
            }
            ApiError::PayloadTooLarge { limit } => {
                format!("the request body exceeds {limit} bytes")
            }
            ApiError::RateLimited { retry_after } => format!(
                "too many requests from this client; retry after {} s",
                retry_after_secs(*retry_after)
            ),
            ApiError::DeadlineExceeded(d) => {
                format!("the request did not complete within {} ms", d.as_millis())
            }
            ApiError::Internal(_) => {
                "an internal error occurred; quote the request id when reporting it".to_string()
            }
        }
    }

    /// Renders this error as an `application/problem+json` response.
    ///
    /// `instance` is the request path; `request_id` is echoed so an operator can find the log line.
    pub fn to_response(&self, instance: &str, request_id: &str) -> Response<Full<Bytes>> {
        let status = self.status();
        let body = ProblemBody {
            kind: self.problem_type(),
            title: self.title(),
            status: status.as_u16(),
            detail: self.client_detail(),
            instance,
            request_id,
        };
        // Serializing this struct of strings and integers cannot fail; fall back to a fixed body anyway.
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"type":"urn:temu-sync:problem:internal","title":"Internal server error","status":500}"#
                .to_vec()
        });
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(&allow_value(allow)) {
                    headers.insert(ALLOW, value);
                }
            }
            ApiError::RateLimited { retry_after } => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            ApiError::Unauthorized(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The value of an `Allow` header: methods in the given order, without duplicates.
pub fn allow_value(allow: &[Method]) -> String {
    let mut seen: Vec<&str> = Vec::with_capacity(allow.len());
    for method in allow {
        if !seen.contains(&method.as_str()) {
            seen.push(method.as_str());
        }
    }
    seen.join(", ")
}

#[cfg(test)]
mod db_error_tests {
    use super::*;
    use crate::db::DbError;

    #[test]
    fn database_errors_map_to_503_or_500() {
        let down: ApiError = DbError::Unavailable("connection refused".into()).into();
        assert_eq!(down.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let timeout: ApiError = DbError::PoolTimeout(Duration::from_secs(30)).into();
        assert_eq!(timeout.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let broken: ApiError = DbError::Migration("bad".into()).into();
        assert_eq!(broken.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[test]
    fn classes_map_to_their_status() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::MethodNotAllowed { allow: vec![] }, 405),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::PayloadTooLarge { limit: 1 }, 413),
            (
                ApiError::RateLimited {
                    retry_after: Duration::from_millis(10),
                },
                429,
            ),
            (ApiError::DatabaseUnavailable("x".into()), 503),
            (ApiError::Upstream("x".into()), 504),
            (ApiError::DeadlineExceeded(Duration::from_secs(1)), 504),
            (ApiError::Internal("x".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.to_response("/p", "id").status().as_u16(), status);
        }
    }

    #[tokio::test]
    async fn internal_detail_never_reaches_the_client() {
        let err = ApiError::Internal("password=hunter2 in connection string".into());
        let response = err.to_response("/x", "abc123");
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(response).await;
        let text = body.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(body["request_id"], "abc123");
        assert_eq!(body["instance"], "/x");
        assert_eq!(body["status"], 500);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        let response = ApiError::RateLimited {
            retry_after: Duration::from_millis(1500),
        }
        .to_response("/", "id");
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn method_not_allowed_lists_allow() {
        let response = ApiError::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD, Method::GET],
        }
        .to_response("/health", "id");
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
    }
}
