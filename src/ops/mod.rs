//! Operations glue: what the daemon tells its service manager.
//!
//! Owns: the systemd notify protocol ([`notify`]: `READY=1`, `STATUS=`, `STOPPING=1`, the
//! watchdog). Metrics live in [`crate::metrics`], journald fields in [`crate::telemetry`].
//!
//! Must not: block the runtime (datagrams are sent non-blocking) or fail the daemon when there is
//! no service manager — everything here is a no-op without `NOTIFY_SOCKET`.

pub mod notify;

pub use notify::{status_line, Notifier};
