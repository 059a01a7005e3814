//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`), spoken over the datagram socket
//! named by `NOTIFY_SOCKET`.
//!
//! Owns: [`Notifier`] (one message = one datagram of `KEY=value` lines; paths and abstract
//! `@names`; non-blocking sends) and [`Notifier::spawn`], the task that keeps systemd informed:
//! `STATUS=` whenever the one-line summary of the health report changes ([`status_line`]), and
//! `WATCHDOG=1` every `WATCHDOG_USEC / 2` — but only after the supervisor answered a liveness ping
//! within its deadline. A wedged actor system therefore stops the pings and systemd kills and
//! restarts the process (`Restart=on-failure`).
//!
//! Must not: wait without a deadline (the ping is bounded, sends never block), or fail when there
//! is no service manager: without `NOTIFY_SOCKET` every call is a no-op.
//!
//! Written here rather than with the `sd-notify` crate because that crate reads the environment on
//! every call; the notifier takes its socket as a value, so tests can point it at their own socket
//! without touching the process environment.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::health::{Health, HealthReport, Status};
use crate::metrics::{Metrics, TASK_NOTIFIER};
use crate::shutdown::Shutdown;
use crate::supervisor::PingFn;

/// How often the health summary is compared with what systemd was last told.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest `STATUS=` text sent (systemd shows it in `systemctl status`; keep it one line).
const STATUS_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// Linux abstract namespace (`NOTIFY_SOCKET=@name`), without the `@`.
    Abstract(Vec<u8>),
}

/// Sends notifications to the service manager; does nothing when there is none.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd sets: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` (honoured only
    /// when `WATCHDOG_PID` is absent or names this process).
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let pid_ok = match std::env::var("WATCHDOG_PID") {
            Ok(pid) => pid.trim().parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|_| pid_ok)
            .map(Duration::from_micros);
        Self::new(socket, watchdog)
    }

    /// An explicit socket (`None` or empty: disabled) and watchdog timeout (`None` or zero: off).
    pub fn new(socket: Option<OsString>, watchdog: Option<Duration>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let target = socket.filter(|s| !s.is_empty()).map(|s| {
            let bytes = s.as_bytes();
            match bytes.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None => Target::Path(PathBuf::from(s)),
            }
        });
        Self {
            target,
            watchdog: watchdog.filter(|d| !d.is_zero()),
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` was set).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout systemd enforces (`WatchdogSec=`), when there is one.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// How often `WATCHDOG=1` is sent: half the timeout.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_timeout().map(|t| t / 2)
    }

    /// Sends one message (newline-separated `KEY=value` assignments) as one datagram.
    /// Never blocks: a full socket buffer drops the message with an error.
    pub fn send(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let sent = match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notify datagram truncated",
            ));
        }
        Ok(())
    }

    fn send_logged(&self, message: &str) {
        if let Err(e) = self.send(message) {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }

    /// `READY=1` with a first `STATUS=`.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=` only.
    pub fn status(&self, status: &str) {
        self.send_logged(&format!("STATUS={}", one_line(status)));
    }

    /// `STOPPING=1` with a last `STATUS=`.
    pub fn stopping(&self, status: &str) {
        self.send_logged(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with the monotonic clock's `MONOTONIC_USEC=` (systemd 253+ requires both
    /// before a reload counts; older versions ignore them): send [`Notifier::reloaded`] after.
    pub fn reloading(&self) {
        self.send_logged(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// `READY=1` again: the reload is over.
    pub fn reloaded(&self) {
        self.send_logged("READY=1");
    }

    /// `WATCHDOG=1` (the caller has checked liveness).
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// Starts the task that sends `STATUS=` when the health summary changes and `WATCHDOG=1`
    /// every [`watchdog_interval`](Self::watchdog_interval) after `liveness` answered `true`
    /// within `deadline` (capped at half the interval so a slow answer never makes a ping late).
    /// The task is tracked by `shutdown` and ends when it is cancelled (no more pings after
    /// that). Without `NOTIFY_SOCKET` the task ends at once. A panic of the task is logged and
    /// counted in `metrics` (`temu_sync_task_panics_total{task="notifier"}`); the watchdog pings
    /// stop with it, so under `WatchdogSec=` systemd restarts the daemon.
    pub fn spawn(
        &self,
        shutdown: &Shutdown,
        liveness: PingFn,
        health: Health,
        deadline: Duration,
        metrics: &Metrics,
    ) -> JoinHandle<()> {
        let notifying = run(self.clone(), liveness, health, deadline, shutdown.token());
        let metrics = metrics.clone();
        shutdown.spawn(async move {
            metrics.watched(TASK_NOTIFIER, notifying).await;
        })
    }
}

async fn run(
    notifier: Notifier,
    liveness: PingFn,
    health: Health,
    deadline: Duration,
    cancel: CancellationToken,
) {
    if !notifier.is_enabled() {
        return;
    }
    let watchdog = notifier.watchdog_interval();
    // An interval is needed for the select even when the watchdog is off; it is then never polled.
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    watchdog_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    status_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let ping_deadline = match watchdog {
        Some(every) => deadline.min(every / 2),
        None => deadline,
    };
    let mut last_status = String::new();
    let mut answering = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = status_tick.tick() => {
                let line = status_line(&health.report());
                if line != last_status {
                    notifier.status(&line);
                    last_status = line;
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let answer = tokio::time::timeout(ping_deadline, liveness(ping_deadline)).await;
                if answer == Ok(true) {
                    notifier.watchdog();
                    if !answering {
                        tracing::info!("the supervisor answers again; watchdog pings resumed");
                        answering = true;
                    }
                } else if answering {
                    tracing::error!(
                        deadline_ms = ping_deadline.as_millis() as u64,
                        "the supervisor did not answer its liveness ping; withholding the systemd watchdog ping"
                    );
                    answering = false;
                }
            }
        }
    }
}

/// The one-line summary sent as `STATUS=`: `pass: 5 checks pass`, or the status followed by the
/// checks that are not passing, worst first, e.g.
/// `fail: postgres fail (unreachable: connection refused); temu restarting`; the report's notes
/// follow (`pass: 5 checks pass; no shops configured`).
pub fn status_line(report: &HealthReport) -> String {
    if report.notes.iter().any(|n| n == "shutting down") {
        return "stopping".to_string();
    }
    let line = checks_line(report);
    if report.notes.is_empty() {
        return line;
    }
    one_line(&format!("{line}; {}", report.notes.join("; ")))
}

/// [`status_line`] without the notes.
fn checks_line(report: &HealthReport) -> String {
    let mut problems: Vec<(Status, String)> = Vec::new();
    let mut total = 0usize;
    for (name, checks) in &report.checks {
        for check in checks {
            total += 1;
            if check.status == Status::Pass {
                continue;
            }
            let label = check.component_id.as_deref().unwrap_or(name.as_str());
            let detail = check
                .output
                .as_deref()
                .map(short_output)
                .unwrap_or_default();
            let text = if detail.is_empty() {
                format!("{label} {}", status_word(check.status))
            } else {
                format!("{label} {} ({detail})", status_word(check.status))
            };
            problems.push((check.status, text));
        }
    }
    if problems.is_empty() {
        return format!("pass: {total} checks pass");
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    let joined = problems
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("; ");
    one_line(&format!("{}: {joined}", status_word(report.status)))
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
    }
}

/// The first clause of a check's output, without numbers that change every second
/// ("restarting in 431 ms" → "restarting") so that STATUS= changes only when the state does.
fn short_output(output: &str) -> String {
    let first = output.split(';').next().unwrap_or("").trim();
    if first.starts_with("restarting in ") {
        return "restarting".to_string();
    }
    let mut out: String = first.chars().take(80).collect();
    if first.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC=` with.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if rc != 0 {
        return 0;
    }
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

/// No newlines (they would start a new assignment) and at most [`STATUS_MAX`] characters.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() <= STATUS_MAX {
        return flat;
    }
    let mut cut: String = flat.chars().take(STATUS_MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ChildState;

    #[test]
    fn without_a_socket_everything_is_a_no_op() {
        let n = Notifier::new(None, Some(Duration::from_secs(10)));
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None);
        assert!(n.send("READY=1").is_ok());
        let n = Notifier::new(Some(OsString::new()), None);
        assert!(!n.is_enabled());
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        let n = Notifier::new(Some("/run/x".into()), Some(Duration::from_micros(400_000)));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(200)));
        let n = Notifier::new(Some("/run/x".into()), Some(Duration::ZERO));
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn abstract_socket_names_work() {
        let name = format!("temu-sync-test-{}", std::process::id());
        let addr = {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Some(format!("@{name}").into()), None);
        n.send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn status_line_names_the_problems_and_ignores_ticking_numbers() {
        let health = Health::passing("t");
        assert_eq!(status_line(&health.report()), "pass: 3 checks pass");
        health.update_db(|db| {
            db.reachable = false;
            db.last_error = Some("connection refused\nsecond line".into());
        });
        health.update_child("temu", |c| {
            c.state = ChildState::Restarting {
                at: std::time::Instant::now() + Duration::from_millis(700),
            }
        });
        let line = status_line(&health.report());
        assert!(
            line.starts_with("fail: postgres fail (unreachable: connection refused second line)"),
            "{line}"
        );
        assert!(line.contains("temu warn (restarting)"), "{line}");
        assert!(!line.contains('\n'));
        health.set_shutting_down();
        assert_eq!(status_line(&health.report()), "stopping");
    }

    #[test]
    fn status_line_ends_with_the_notes() {
        let health = Health::passing("t");
        health.add_note("no shops configured");
        health.add_note("no shops configured");
        assert_eq!(
            status_line(&health.report()),
            "pass: 3 checks pass; no shops configured"
        );
        assert_eq!(health.report().notes, ["no shops configured"]);
    }

    #[test]
    fn monotonic_usec_counts_forwards_from_boot() {
        let (a, b) = (monotonic_usec(), monotonic_usec());
        assert!(a > 0 && b >= a, "{a} then {b}");
    }
}
