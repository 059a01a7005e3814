//! The typed pass: YAML straight into [`Config`], and the wording of its errors.
//!
//! Owns: [`Failure`] (a deserialization error before its origin is known), the key path of an
//! error, and messages that say what was expected (`a whole number from 0 to 65535`, `unknown
//! key `x`; expected one of: …`), with control characters escaped. Must not: decide where a
//! value came from (the loader does, from positions and overrides).

use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::super::model::Config;

/// A deserialization failure, before its origin is known.
pub(super) struct Failure {
    pub(super) path: String,
    pub(super) location: Option<(u64, u64)>,
    pub(super) message: String,
}

pub(super) fn parse_typed(text: &str) -> Result<Config, Failure> {
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, Option<Config>>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    match result {
        Ok(config) => Ok(config.unwrap_or_default()),
        Err(e) => Err(Failure {
            path: clean_path(&path),
            location: location_of(&e),
            message: describe(&e, text),
        }),
    }
}

/// `serde_path_to_error` writes `.` for the root and `?` for a key it could not name.
fn clean_path(path: &str) -> String {
    let p = path.trim_end_matches(".?").trim_end_matches('?');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

pub(super) fn location_of(e: &serde_saphyr::Error) -> Option<(u64, u64)> {
    e.location().and_then(position)
}

/// Line and column of a known location.
pub(super) fn position(l: serde_saphyr::Location) -> Option<(u64, u64)> {
    (l != serde_saphyr::Location::UNKNOWN && l.line() > 0).then(|| (l.line(), l.column()))
}

/// The source text under `span` when it is known, on one line and not empty.
pub(super) fn source_text(span: serde_saphyr::Span, text: &str) -> Option<&str> {
    span.byte_offset()
        .zip(span.byte_len())
        .and_then(|(o, l)| text.get(o as usize..(o + l) as usize))
        .filter(|s| !s.is_empty() && !s.contains('\n'))
}

fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            other => return other,
        }
    }
}

/// The message of a YAML error, without its location, with what was expected.
pub(super) fn describe(e: &serde_saphyr::Error, text: &str) -> String {
    let e = innermost(e);
    let message = match e {
        serde_saphyr::Error::InvalidScalar { ty, location } => {
            let found = source_text(location.span(), text)
                .map(|s| format!(" {s:?}"))
                .unwrap_or_default();
            format!("invalid value{found}: expected {}", expected_for(ty))
        }
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            format!(
                "unknown key `{field}`; expected one of: {}",
                expected.join(", ")
            )
        }
        other => {
            let m = UserMessageFormatter.format_message(other).into_owned();
            if m.contains("invalid socket address syntax") {
                format!("{m}: expected an address like 127.0.0.1:8080 or [::1]:8080")
            } else if m == "expected string scalar" {
                "expected a single value, found a list or a mapping".to_string()
            } else if m == "expected mapping start" {
                "expected a mapping (indented `key: value` lines or `{key: value}`)".to_string()
            } else {
                m
            }
        }
    };
    // Rendering entry points neutralize control characters; do the same.
    let mut clean = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            clean.extend(c.escape_debug());
        } else {
            clean.push(c);
        }
    }
    clean
}

fn expected_for(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
            let max = match ty {
                "u8" => u8::MAX.to_string(),
                "u16" => u16::MAX.to_string(),
                "u32" => u32::MAX.to_string(),
                _ => u64::MAX.to_string(),
            };
            format!("a whole number from 0 to {max}")
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "bool" => "true or false".to_string(),
        "char" => "a single character".to_string(),
        other => format!("a value of type {other}"),
    }
}
