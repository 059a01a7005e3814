//! The response envelope and the one error type of the Temu client.
//!
//! Owns: parsing `{success, errorCode, errorMsg, requestId, result}` (code as number or string,
//! `result: null` allowed), and [`TemuError`] with its [`ErrorClass`] — what a caller should do.
//! The class is decided from error *codes*, HTTP statuses and error *types*, never from message text.
//!
//! Must not: carry secrets. Messages and body excerpts are scrubbed by the client before they are
//! put into an error; `Display` and `Debug` show only what is stored here.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The success code of the envelope.
pub const CODE_OK: i64 = 1_000_000;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient: retry later with backoff (the client already did, within its bounds).
    Retryable,
    /// The timestamp was refused (clock skew): sign again with a fresh timestamp, once.
    Resign,
    /// Will not succeed until the configuration (or the seller's authorization) changes.
    Fatal,
    /// The body could not be read as the expected JSON.
    Decode,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Resign => "resign",
            ErrorClass::Fatal => "fatal",
            ErrorClass::Decode => "decode",
        }
    }
}

/// What went wrong at the transport level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// Reading the response body failed.
    Read,
    Other,
}

/// Every error of the Temu client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemuError {
    /// The API answered with `success: false`.
    #[error("{api}: Temu error {code}: {message}{hint} (requestId {request_id})", hint = hint_suffix(*.code), request_id = .request_id.as_deref().unwrap_or("-"))]
    Api {
        api: String,
        code: i64,
        message: String,
        request_id: Option<String>,
    },
    /// An HTTP status other than 200.
    #[error("{api}: HTTP {status}{}", retry_after.map(|d| format!(" (Retry-After {} s)", d.as_secs())).unwrap_or_default())]
    Http {
        api: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{api}: transport error ({kind:?}) calling {target}: {detail}")]
    Transport {
        api: String,
        kind: TransportKind,
        target: String,
        detail: String,
    },
    /// Malformed, truncated or unexpected body. `excerpt` is short and scrubbed of secrets.
    #[error("{api}: cannot decode the response ({detail}); body starts: {excerpt:?}")]
    Decode {
        api: String,
        detail: String,
        excerpt: String,
        /// The envelope itself was unreadable (often transport truncation: worth a retry),
        /// as opposed to a well-formed envelope whose `result` does not fit our types.
        body_unreadable: bool,
    },
    /// The circuit breaker for this router is open: failing fast.
    #[error("circuit open for {target} after repeated transport failures; next probe in {} ms", retry_in.as_millis())]
    CircuitOpen { target: String, retry_in: Duration },
    /// No connection slot became free within `temu.pool_timeout`.
    #[error("no free connection slot within {} ms (temu.max_connections reached)", waited.as_millis())]
    PoolTimeout { waited: Duration },
    /// The call's overall deadline passed.
    #[error("{api}: deadline of {} ms exceeded after {attempts} attempt(s){}", deadline.as_millis(), last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Deadline {
        api: String,
        deadline: Duration,
        attempts: u32,
        last: Option<Box<TemuError>>,
    },
    /// Configuration problem found by the client (unknown app, bad proxy URL, …).
    #[error("temu client configuration: {0}")]
    Config(String),
    /// The client cannot take the call (its connection slots are closed).
    #[error("temu client unavailable: {0}")]
    Unavailable(String),
}

impl TemuError {
    /// What the caller should do.
    pub fn class(&self) -> ErrorClass {
        match self {
            TemuError::Api { code, .. } => classify_code(*code),
            TemuError::Http { status, .. } => {
                if *status == 429 || *status >= 500 {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Fatal
                }
            }
            TemuError::Transport { .. }
            | TemuError::CircuitOpen { .. }
            | TemuError::PoolTimeout { .. }
            | TemuError::Deadline { .. }
            | TemuError::Unavailable(_) => ErrorClass::Retryable,
            TemuError::Decode { .. } => ErrorClass::Decode,
            TemuError::Config(_) => ErrorClass::Fatal,
        }
    }

    /// The API error code, when the API answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            TemuError::Api { code, .. } => Some(*code),
            TemuError::Deadline {
                last: Some(last), ..
            } => last.code(),
            _ => None,
        }
    }

    /// The wait the server asked for (`Retry-After`), or the breaker's remaining cool-off.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TemuError::Http { retry_after, .. } => *retry_after,
            TemuError::CircuitOpen { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// Whether the client's retry loop tries again after this error.
    pub(crate) fn worth_retrying(&self) -> bool {
        match self {
            TemuError::Decode {
                body_unreadable, ..
            } => *body_unreadable,
            TemuError::Deadline { .. } | TemuError::Unavailable(_) => false,
            other => other.class() == ErrorClass::Retryable,
        }
    }

    /// Whether this error means the shop's access token is unusable.
    pub fn is_token_problem(&self) -> bool {
        matches!(self.code(), Some(3_000_030..=3_000_034))
    }

    /// Counts toward the circuit breaker (the router did not answer properly).
    pub(crate) fn is_transport_failure(&self) -> bool {
        match self {
            TemuError::Transport { .. } => true,
            TemuError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The class of an API error code (the table of `temu-open-api.md`).
pub fn classify_code(code: i64) -> ErrorClass {
    match code {
        4_000_000 | 4_000_004 | 7_000_000 | 150_010_002 | 150_010_005 | 140_020_009
        | 110_020_001 => ErrorClass::Retryable,
        3_000_011 | 3_000_012 => ErrorClass::Resign,
        _ => ErrorClass::Fatal,
    }
}

/// What the operator should change for a fatal code.
pub fn operator_hint(code: i64) -> Option<&'static str> {
    Some(match code {
        3_000_001 => "the signature was refused: check the app's app_secret in `apps` (it must belong to the app_key)",
        3_000_003 | 3_000_004 => "the API type is unknown or retired for this app: upgrade temu-sync or enable the API for the app in the Temu partner console",
        3_000_019..=3_000_028 => "the app_key is missing, unknown or suspended: check `apps[].app_key` and the app's status in the Temu partner console",
        3_000_034 => "the shop's access token has expired: the seller must re-authorize the app and you must put the new token in the shop's `access_token`",
        3_000_030..=3_000_033 => "the shop's access token is missing, unknown, lacks the scope for this API, or belongs to another app: re-authorize the shop and check `shops[].access_token` and `shops[].app`",
        5_000_000 => "the app is not authorized for this API: request the permission in the Temu partner console",
        5_000_003 => "the calling IP is not whitelisted: add this server's public IP to the app's whitelist, or set `temu.proxy` / the shop's `base_url` to a whitelisted relay",
        2_000_000 => "Temu reported a business error: see the message",
        _ => return None,
    })
}

fn hint_suffix(code: i64) -> String {
    match classify_code(code) {
        ErrorClass::Fatal => match operator_hint(code) {
            Some(hint) => format!(" — fix: {hint}"),
            None => " — unrecognised error code; not retried".to_string(),
        },
        _ => String::new(),
    }
}

/// An `errorCode` that arrives as a number or as a string.
fn lenient_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Num(i64),
        Text(String),
        Float(f64),
    }
    Ok(match Option::<Code>::deserialize(d)? {
        None => None,
        Some(Code::Num(n)) => Some(n),
        Some(Code::Float(f)) => Some(f as i64),
        Some(Code::Text(s)) => s.trim().parse().ok(),
    })
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default, rename = "errorCode", deserialize_with = "lenient_code")]
    error_code: Option<i64>,
    #[serde(default, rename = "errorMsg")]
    error_msg: Option<String>,
    #[serde(default, rename = "requestId")]
    request_id: Option<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

/// A decoded envelope, before the `result` is typed.
#[derive(Debug)]
pub struct Envelope {
    pub success: bool,
    pub code: i64,
    pub message: String,
    pub request_id: Option<String>,
    /// `None` when absent or `null`.
    pub result: Option<Box<RawValue>>,
}

impl Envelope {
    /// Parses an envelope. `Err` carries a short description of why (never the body).
    pub fn parse(body: &[u8]) -> Result<Envelope, String> {
        let raw: RawEnvelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let code = match (raw.error_code, raw.success) {
            (Some(code), _) => code,
            (None, Some(true)) => CODE_OK,
            (None, _) => return Err("envelope has neither errorCode nor success".to_string()),
        };
        let result = raw.result.filter(|r| r.get() != "null");
        Ok(Envelope {
            success: code == CODE_OK && raw.success != Some(false),
            code,
            message: raw.error_msg.unwrap_or_default(),
            request_id: raw.request_id,
            result,
        })
    }
}

/// A successful call: the typed `result`, its raw JSON, and the request id.
#[derive(Debug, Clone)]
pub struct ApiResponse<T> {
    /// `None` when the API answered `result: null`.
    pub result: Option<T>,
    /// The `result` exactly as received (`None` for `null`), for storage.
    pub raw: Option<Box<RawValue>>,
    pub request_id: Option<String>,
}

/// A value together with the JSON it was decoded from (for storing records as received).
#[derive(Debug, Clone)]
pub struct WithRaw<T> {
    pub value: T,
    pub raw: Box<RawValue>,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for WithRaw<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let value = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        Ok(WithRaw { value, raw })
    }
}

impl<T> std::ops::Deref for WithRaw<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A short excerpt of a body for error messages: at most `max` characters, control characters
/// replaced; the caller scrubs secrets.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_as_number_or_string_and_null_result() {
        let e =
            Envelope::parse(br#"{"success":true,"errorCode":"1000000","result":null}"#).unwrap();
        assert!(e.success && e.result.is_none());
        let e =
            Envelope::parse(br#"{"success":false,"errorCode":4000004,"errorMsg":"x"}"#).unwrap();
        assert_eq!(e.code, 4_000_004);
        assert!(!e.success);
        assert!(Envelope::parse(b"<html>").is_err());
        assert!(Envelope::parse(br#"{"success":true,"errorCode":1000000,"res"#).is_err());
    }

    #[test]
    fn classes_follow_the_table() {
        assert_eq!(classify_code(4_000_000), ErrorClass::Retryable);
        assert_eq!(classify_code(4_000_004), ErrorClass::Retryable);
        assert_eq!(classify_code(3_000_011), ErrorClass::Resign);
        for code in [
            3_000_001, 3_000_024, 3_000_031, 3_000_034, 5_000_003, 3_000_003, 2_000_000,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Fatal, "{code}");
        }
        let e = TemuError::Api {
            api: "t".into(),
            code: 5_000_003,
            message: "ip".into(),
            request_id: None,
        };
        assert!(e.to_string().contains("whitelist"));
        let http = |status| TemuError::Http {
            api: "t".into(),
            status,
            retry_after: None,
        };
        assert_eq!(http(429).class(), ErrorClass::Retryable);
        assert_eq!(http(503).class(), ErrorClass::Retryable);
        assert_eq!(http(404).class(), ErrorClass::Fatal);
    }
}
