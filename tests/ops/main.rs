//! Operations: the systemd notify protocol and watchdog (`notify`), the deployment files
//! (`deploy`: systemd unit, alert rules), and the `/metrics` scrape per series family
//! (`metrics`). One test binary; every test has its own sockets, ports and temp dirs, and none
//! sets an environment variable of this process (the daemon's are passed to the child), so they
//! run in parallel.

#[path = "../temu_common/mod.rs"]
mod temu_common;

mod demo;
mod deploy;
mod metrics;
mod notify;
