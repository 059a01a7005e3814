//! Logging: one `tracing` subscriber, in the format the operator's environment wants.
//!
//! Owns: choosing journald / json / pretty output and the level filter. Must not: log secrets —
//! nothing here formats configuration; producers log error kinds and scrubbed messages only.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

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
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => registry
                .with(layer.with_syslog_identifier("temu-sync".into()))
                .try_init(),
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
