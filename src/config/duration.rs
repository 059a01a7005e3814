//! Serde for [`Duration`] fields in humantime form (`30s`, `5m`, `1h`, `90d`, `100ms`).
//!
//! Owns: the one way a configured duration is read — through `humantime_serde` (the project
//! card's crate), then the range limit ([`MAX`]) — and the wording of a bad one: its value,
//! why, and what a valid one looks like (`invalid duration "30 parsecs": unknown time unit
//! "parsecs"; expected a duration like 30s, 5m, 1h or 90d`); the key path and line are added by
//! the loader. Also the compact form `check-config` prints (`90d`, not humantime's
//! `2months 29days 2h 52m 48s`). Used through `#[serde(with = "super::duration")]` in the model,
//! for YAML and `TEMU_SYNC__…` overrides alike (both reach [`deserialize`] as a string).

use std::fmt;
use std::time::Duration;

use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde::Serializer;

/// What a duration looks like, appended to every duration error.
pub(crate) const EXPECTED: &str = "expected a duration like 30s, 5m, 1h or 90d";

/// The longest duration any key accepts: 10 years. Longer ones overflow clocks and timers
/// (`Instant + d`, `chrono::Duration`) somewhere, and mean "never", which no key needs.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*value))
}

/// The duration in the largest unit that holds it exactly: `90d`, `5m`, `100ms`, `1500ms`.
/// (humantime's own formatter, which `humantime_serde::serialize` uses, writes 90 days as
/// `2months 29days 2h 52m 48s`.)
pub(crate) fn format(value: Duration) -> String {
    const UNITS: [(&str, u128); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let nanos = value.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (unit, size) in UNITS {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

/// A configured duration: `humantime_serde` reads it, then the range limit applies. The error
/// is the message the user sees after the key path.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let input: StrDeserializer<'_, ValueError> = trimmed.into_deserializer();
    let d: Duration = humantime_serde::deserialize(input).map_err(|_| invalid(text, trimmed))?;
    if d > MAX {
        return Err(format!(
            "duration {text:?} is out of range: at most 10 years ({})",
            format(MAX)
        ));
    }
    Ok(d)
}

/// humantime-serde's own error says only `invalid value: string "30 parsecs", expected a
/// duration`; the reason (unknown unit, missing number, overflow) is humantime's, asked again
/// only on this error path.
fn invalid(text: &str, trimmed: &str) -> String {
    match humantime::parse_duration(trimmed) {
        Err(reason) => format!("invalid duration {text:?}: {reason}; {EXPECTED}"),
        Ok(_) => format!("invalid duration {text:?}; {EXPECTED}"),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

/// Strings go to [`parse`]; a bare number gets "a unit is needed" rather than a type error.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(no_unit(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(no_unit(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(no_unit(v))
    }
}

fn no_unit<E: de::Error>(v: impl fmt::Display) -> E {
    E::custom(format_args!(
        "invalid duration {v}: a unit is needed; {EXPECTED}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_humantime_forms_and_prints_them_compactly() {
        for (text, secs) in [
            ("30s", 30),
            ("5m", 300),
            ("1h 30m", 5400),
            ("90d", 7_776_000),
        ] {
            let d = parse(text).unwrap();
            assert_eq!(d, Duration::from_secs(secs), "{text}");
        }
        assert_eq!(format(parse("90d").unwrap()), "90d");
        assert_eq!(format(parse(" 100ms ").unwrap()), "100ms");
        assert_eq!(format(parse("1h 30m").unwrap()), "90m");
    }

    #[test]
    fn a_bad_duration_says_why_and_what_is_expected() {
        let e = parse("30 parsecs").unwrap_err();
        assert!(
            e.starts_with("invalid duration \"30 parsecs\": unknown time unit \"parsecs\""),
            "{e}"
        );
        assert!(e.ends_with(EXPECTED), "{e}");
        let e = parse("soon").unwrap_err();
        assert!(e.starts_with("invalid duration \"soon\": "), "{e}");
        assert!(e.ends_with(EXPECTED), "{e}");
    }

    #[test]
    fn the_range_is_at_most_ten_years() {
        assert_eq!(parse("3650d").unwrap(), MAX);
        let e = parse("3651d").unwrap_err();
        assert_eq!(
            e,
            "duration \"3651d\" is out of range: at most 10 years (3650d)"
        );
    }
}
