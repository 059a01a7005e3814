//! [`RawJson`]: a record's JSON exactly as the API sent it, bound to a `jsonb` column as text.
//!
//! Owns: keeping the raw body of a record without parsing it into a `serde_json::Value` tree
//! (a tree costs several times the text; the sync holds two chunks of records at once), and the
//! one rewrite PostgreSQL needs: `jsonb` refuses the escape `\u0000` and unpaired UTF-16
//! surrogate escapes, so those become `\ufffd` (U+FFFD) — one odd character must not fail a
//! whole batch, the same rule as NUL in text columns.
//!
//! Must not: reformat, reorder or drop anything else; PostgreSQL normalises `jsonb` itself.

use std::fmt;
use std::io::Write;

use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;
use serde_json::value::RawValue;
use serde_json::Value;

/// Valid JSON text, safe for a `jsonb` column. Built only from a parsed [`RawValue`], so the
/// text is known to be well-formed JSON.
#[derive(Clone, PartialEq, Eq, AsExpression)]
#[diesel(sql_type = Jsonb)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// Takes the raw text of a decoded value, rewriting only the escapes `jsonb` refuses.
    pub fn new(raw: Box<RawValue>) -> Self {
        let text: Box<str> = raw.into();
        if text.contains("\\u") {
            RawJson(scrub_escapes(&text).into_boxed_str())
        } else {
            RawJson(text)
        }
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// The text parsed into a tree (for inspection and tests; the store never needs it).
    pub fn to_value(&self) -> Value {
        // The text came from a RawValue and the rewrite keeps it valid, so this cannot fail;
        // `Null` is the honest fallback rather than a panic.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawJson").field(&&*self.0).finish()
    }
}

impl ToSql<Jsonb, Pg> for RawJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        // The binary `jsonb` format: a version byte (1) and the JSON text.
        out.write_all(&[1])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

const REPLACEMENT: &str = "\\ufffd";

/// Rewrites `\u0000` and unpaired surrogate escapes to `\ufffd`. Backslashes occur only inside
/// strings of valid JSON, and each starts an escape, so a left-to-right scan of escapes is exact.
fn scrub_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // bytes[..copied] are in `out`
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unicode_escape(bytes, i) else {
            i += 2; // a two-character escape such as \" or \\
            continue;
        };
        let keep = match unit {
            0 => 0,
            0xD800..=0xDBFF => match unicode_escape(bytes, i + 6) {
                Some(0xDC00..=0xDFFF) => 12,
                _ => 0,
            },
            0xDC00..=0xDFFF => 0,
            _ => 6,
        };
        if keep == 0 {
            out.push_str(&text[copied..i]);
            out.push_str(REPLACEMENT);
            i += 6;
            copied = i;
        } else {
            i += keep;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<u32> {
    let escape = bytes.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawJson {
        RawJson::new(RawValue::from_string(text.to_string()).expect("valid JSON"))
    }

    #[test]
    fn plain_text_is_kept_byte_for_byte() {
        let text = r#"{"b": 1, "a": [true, null, "x\"y\\z"], "n": 1.50}"#;
        assert_eq!(raw(text).get(), text);
    }

    #[test]
    fn nul_and_lone_surrogates_become_replacement_characters() {
        let r = raw(
            r#"{"k\u0000": "a\u0000b", "hi": "\ud800x", "lo": "\udc00", "ok": "\ud83d\ude00\u00e9"}"#,
        );
        assert_eq!(
            r.get(),
            r#"{"k\ufffd": "a\ufffdb", "hi": "\ufffdx", "lo": "\ufffd", "ok": "\ud83d\ude00\u00e9"}"#
        );
        let v = r.to_value();
        assert_eq!(v["k\u{FFFD}"], "a\u{FFFD}b");
        assert_eq!(v["ok"], "\u{1F600}\u{e9}");
    }

    #[test]
    fn escaped_backslashes_are_not_mistaken_for_escapes() {
        // `\\u0000` is a backslash followed by the text "u0000": nothing to rewrite.
        let text = r#"["\\u0000", "\\\u0000"]"#;
        assert_eq!(raw(text).get(), r#"["\\u0000", "\\\ufffd"]"#);
    }

    #[test]
    fn a_high_surrogate_at_the_end_of_a_string_is_replaced() {
        assert_eq!(raw(r#"["\udbff"]"#).get(), r#"["\ufffd"]"#);
        assert_eq!(raw(r#"["\udbff\u0041"]"#).get(), r#"["\ufffd\u0041"]"#);
    }
}
