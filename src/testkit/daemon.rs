//! The daemon binary as a child process, as systemd runs it: a YAML config file, environment
//! variables, stderr (its JSON log) captured to a file, signals, exit status, and a kill when the
//! handle is dropped so no test leaves a daemon behind.
//!
//! The caller says which binary (tests: `env!("CARGO_BIN_EXE_temu-sync")`; the bench: the one
//! beside its own executable) and writes the config; this module knows nothing of its keys except
//! that `http.listen` is on the loopback port it is given, and one shop-less config that several
//! tests share ([`DaemonLaunch::database_only`]). It must not wait unboundedly: every wait takes a
//! limit.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::wait::eventually_some;

/// How often [`DaemonProcess::wait_exit`] looks at the child. Finer than [`super::POLL`]: callers
/// time the exit (the fault matrix's SIGTERM row), and `try_wait` is one syscall, not a query.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// What to start: the binary, its config, its environment, and where its files go.
#[must_use = "a launch does nothing until spawned"]
pub struct DaemonLaunch {
    binary: PathBuf,
    port: u16,
    config: String,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    files: Option<(PathBuf, String)>,
}

impl DaemonLaunch {
    /// `binary --config <file> run`, with `config_yaml` as the file; `port` is the loopback port
    /// the YAML's `http.listen` names (pick it with [`super::free_port`]).
    pub fn new(binary: impl Into<PathBuf>, port: u16, config_yaml: impl Into<String>) -> Self {
        Self {
            binary: binary.into(),
            port,
            config: config_yaml.into(),
            env: Vec::new(),
            env_remove: Vec::new(),
            files: None,
        }
    }

    /// A daemon with a database and no shops, its HTTP endpoint on a free port: fast pings
    /// (every 500 ms, 400 ms deadline) and reconnects (100 ms to 1 s), so a database outage shows
    /// within a second; `info` JSON logs; 5 s to shut down.
    pub fn database_only(binary: impl Into<PathBuf>, database_url: &str) -> Self {
        let port = super::free_port();
        let config = format!(
            "log: {{ format: json, level: info }}\n\
             http: {{ listen: \"127.0.0.1:{port}\" }}\n\
             database:\n  url: \"{database_url}\"\n  connect_timeout: 1s\n  ping_interval: 500ms\n  \
             ping_timeout: 400ms\n  retry_min: 100ms\n  retry_max: 1s\n\
             supervisor: {{ shutdown_timeout: 5s }}\n"
        );
        Self::new(binary, port, config)
    }

    /// One more environment variable for the child (secrets the config names, overrides).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// More environment variables for the child.
    pub fn envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// A variable the child must not inherit.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Keep the config and the log as `<dir>/<name>.yaml` and `<dir>/<name>.log` (the bench's
    /// work directory) instead of a temporary directory removed with the handle.
    pub fn files_in(mut self, dir: impl Into<PathBuf>, name: &str) -> Self {
        self.files = Some((dir.into(), name.to_string()));
        self
    }

    /// Writes the config and starts the process (stdout discarded, stderr to the log file).
    pub fn spawn(self) -> std::io::Result<DaemonProcess> {
        let (temp_dir, dir, name) = match self.files {
            Some((dir, name)) => (None, dir, name),
            None => {
                let temp = tempfile::tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir, "daemon".to_string())
            }
        };
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, &self.config)?;
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .envs(self.env);
        for key in &self.env_remove {
            command.env_remove(key);
        }
        let child = command.spawn()?;
        Ok(DaemonProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
            log,
            _temp_dir: temp_dir,
        })
    }
}

/// A running daemon; killed (SIGKILL) and reaped when dropped.
pub struct DaemonProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Holds the config and the log unless [`DaemonLaunch::files_in`] placed them.
    _temp_dir: Option<tempfile::TempDir>,
}

impl DaemonProcess {
    /// Where its HTTP endpoint listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far (JSON lines; empty when unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Not exited yet.
    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`). Not after [`DaemonProcess::wait_exit`] saw the exit:
    /// a reaped child's pid may belong to another process by then.
    pub fn signal(&self, signal: i32) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to `limit` for the process to exit: `Some(code)` once it has (`Some(None)` when a
    /// signal ended it), `None` while it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// SIGTERM, then [`DaemonProcess::wait_exit`] up to `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<Option<i32>> {
        self.signal(libc::SIGTERM);
        self.wait_exit(limit)
    }

    /// An orderly stop that always ends the process: SIGTERM, up to `limit` for it to exit, then
    /// SIGKILL. The exit as [`DaemonProcess::terminate`] saw it.
    pub fn stop(mut self, limit: Duration) -> Option<Option<i32>> {
        let exit = self.terminate(limit);
        drop(self); // kills and reaps it if it still runs
        exit
    }

    /// Polls `GET /health` until `want(status, body)` holds, up to `limit`: that answer, or None
    /// (after printing the last answer seen and the log tail, for the failure message).
    pub async fn health_until(
        &self,
        limit: Duration,
        want: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> Option<(u16, serde_json::Value)> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with a timeout");
        let url = self.url("/health");
        let last = parking_lot::Mutex::new(None);
        let hit = eventually_some(limit, || async {
            let response = http.get(&url).send().await.ok()?;
            let status = response.status().as_u16();
            let body = response.json::<serde_json::Value>().await.ok()?;
            if want(status, &body) {
                return Some((status, body));
            }
            *last.lock() = Some((status, body));
            None
        })
        .await;
        if hit.is_none() {
            eprintln!(
                "last /health seen: {:?}\ndaemon log:\n{}",
                last.lock(),
                self.log_tail(30)
            );
        }
        hit
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
