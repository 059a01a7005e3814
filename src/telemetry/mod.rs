//! Logging: one `tracing` subscriber, in the format the operator's environment wants.
//!
//! Owns: choosing journald / json / pretty output and the level filter, and how events look in
//! the journal. Must not: log secrets — nothing here formats configuration; producers log error
//! kinds and scrubbed messages only.
//!
//! Journal entries are native structured records (not text on stderr): `MESSAGE`, `PRIORITY` from
//! the level ([`journald_priority`]), `SYSLOG_IDENTIFIER=temu-sync`, `CODE_FILE`/`CODE_LINE`,
//! `TARGET`, and every event and span field under its upper-cased name with no prefix
//! ([`journald_field_name`]), so the context fields of [`fields`] become `SHOP`, `STREAM`,
//! `RUN_ID`, `ERROR_CLASS`, `TEMU_TYPE` and `REQUEST_ID` and `journalctl -u temu-sync SHOP=us-main`
//! works. Without a prefix a field could shadow a journal field of the same name, so producers
//! must not name a field `priority`, `message_id`, `syslog_identifier`, `code_file`, `code_line`
//! or `target` (fields starting with `_` cannot forge trusted fields: the leading `_` is dropped).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// `SYSLOG_IDENTIFIER` of every journal entry (what `journalctl -t` filters on).
pub const SYSLOG_IDENTIFIER: &str = "temu-sync";

/// The names of the structured context fields, as producers write them
/// (`tracing::info!(shop = %name, stream = "orders", ...)`); the journal shows them upper-cased.
pub mod fields {
    /// Our name of the shop (`shops[].name`).
    pub const SHOP: &str = "shop";
    /// `orders`, `products` or `aftersales`.
    pub const STREAM: &str = "stream";
    /// One sync run of one shop and stream.
    pub const RUN_ID: &str = "run_id";
    /// What a caller should do about an error: `retryable`, `resign`, `fatal`, `decode`.
    pub const ERROR_CLASS: &str = "error_class";
    /// The Temu API called (its `type`, e.g. `bg.order.list.v2.get`).
    pub const TEMU_TYPE: &str = "temu_type";
    /// The id of an HTTP request to our endpoint (`X-Request-Id`).
    pub const REQUEST_ID: &str = "request_id";

    pub const ALL: [&str; 6] = [SHOP, STREAM, RUN_ID, ERROR_CLASS, TEMU_TYPE, REQUEST_ID];
}

/// The journal field a `tracing` field name becomes: `.` → `_`, leading `_` dropped, characters
/// other than ASCII letters, digits and `_` dropped, upper-cased. This is what tracing-journald
/// does with its field prefix turned off (which [`journald_layer`] does).
pub fn journald_field_name(name: &str) -> String {
    name.bytes()
        .map(|c| if c == b'.' { b'_' } else { c })
        .skip_while(|&c| c == b'_')
        .filter(|&c| c == b'_' || c.is_ascii_alphanumeric())
        .map(|c| char::from(c.to_ascii_uppercase()))
        .collect()
}

/// `PRIORITY` for a level, as syslog means them: error 3, warn 4, info 6, debug and trace 7 —
/// so `journalctl -p warning` shows warnings and errors, `-p info` hides debug output.
pub fn journald_priority(level: &tracing::Level) -> tracing_journald::Priority {
    use tracing_journald::Priority;
    match *level {
        tracing::Level::ERROR => Priority::Error,
        tracing::Level::WARN => Priority::Warning,
        tracing::Level::INFO => Priority::Informational,
        tracing::Level::DEBUG | tracing::Level::TRACE => Priority::Debug,
    }
}

/// The journald layer as the daemon uses it: no field prefix, our priorities, our identifier.
/// Fails when the journal socket cannot be reached.
pub fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    let mut priorities = tracing_journald::PriorityMappings::new();
    priorities.error = journald_priority(&tracing::Level::ERROR);
    priorities.warn = journald_priority(&tracing::Level::WARN);
    priorities.info = journald_priority(&tracing::Level::INFO);
    priorities.debug = journald_priority(&tracing::Level::DEBUG);
    priorities.trace = journald_priority(&tracing::Level::TRACE);
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string())
        .with_priority_mappings(priorities))
}

/// Which output `auto` resolves to here.
pub fn resolve_format(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` for a service whose stderr goes to the journal;
/// it counts only when that still describes our stderr (a child process may inherit the variable).
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 with a zeroed out-parameter of the right type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&config.level),
    }
    .map_err(|e| format!("log.level is not a valid filter: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match resolve_format(config.format) {
        LogFormat::Journald => match journald_layer() {
            Ok(layer) => registry.with(layer).try_init(),
            Err(e) => {
                let r = registry
                    .with(
                        tracing_subscriber::fmt::layer()
                            .json()
                            .with_writer(std::io::stderr),
                    )
                    .try_init();
                tracing::warn!(error = %e, "journald not reachable; logging JSON to stderr");
                r
            }
        },
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty | LogFormat::Auto => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| format!("could not install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_fields_map_to_the_documented_journal_names() {
        let mapped: Vec<String> = fields::ALL.iter().map(|f| journald_field_name(f)).collect();
        assert_eq!(
            mapped,
            [
                "SHOP",
                "STREAM",
                "RUN_ID",
                "ERROR_CLASS",
                "TEMU_TYPE",
                "REQUEST_ID"
            ]
        );
    }

    #[test]
    fn field_names_are_sanitized_like_tracing_journald() {
        assert_eq!(journald_field_name("http.status"), "HTTP_STATUS");
        assert_eq!(journald_field_name("__forged"), "FORGED");
        assert_eq!(journald_field_name("r#type"), "RTYPE");
        assert_eq!(journald_field_name("duration_ms"), "DURATION_MS");
    }

    #[test]
    fn priorities_follow_syslog() {
        use tracing::Level;
        let p = |l: Level| journald_priority(&l) as u8 - b'0';
        assert_eq!(p(Level::ERROR), 3);
        assert_eq!(p(Level::WARN), 4);
        assert_eq!(p(Level::INFO), 6);
        assert_eq!(p(Level::DEBUG), 7);
        assert_eq!(p(Level::TRACE), 7);
    }
}
