//! Serde for [`Duration`] fields in humantime form (`30s`, `5m`, `1h`, `90d`, `100ms`).
//!
//! Owns: the wording of a bad duration (`invalid duration "30 parsecs": unknown time unit
//! "parsecs"; expected e.g. 30s, 5m, 1h, 90d`). Used through `#[serde(with = "…")]` in the model.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
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
/// (humantime's own formatter writes 90 days as `2months 29days 2h 52m 48s`.)
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

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        let d = humantime::parse_duration(v.trim())
            .map_err(|e| E::custom(format_args!("invalid duration {v:?}: {e}; {EXPECTED}")))?;
        if d > MAX {
            return Err(E::custom(format_args!(
                "duration {v:?} is too long: at most 10 years ({})",
                format(MAX)
            )));
        }
        Ok(d)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration {v}: a unit is needed; {EXPECTED}"
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration {v}: a unit is needed; {EXPECTED}"
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration {v}: a unit is needed; {EXPECTED}"
        )))
    }
}
