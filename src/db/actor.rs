//! The database actor: keeps the pool alive and tells the health snapshot the truth about it.
//!
//! Its mailbox never waits on PostgreSQL: setup (create database, migrate, register this daemon
//! instance) and each ping run in spawned tasks bounded by deadlines, and report back by message.
//! So a hung or absent database never makes this actor miss the supervisor's pings, and a database
//! that is down at boot or later is a `fail` in `/health`, not a crash.
//!
//! Owns: [`DbActor`] (setup with backoff, the ping on `database.ping_interval`, this daemon's row
//! in `daemon_instances`) and [`Instance`]. Must not: await the database in a message handler, or
//! start a wait without a deadline (invariant 4).

use std::time::Duration;

use chrono::Utc;
use diesel_async::RunQueryDsl;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{migrate, Database, DbError};
use crate::health::Health;
use crate::supervisor::Backoff;

/// Who this daemon process is, as recorded in `daemon_instances`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub hostname: String,
    pub pid: i32,
}

impl Instance {
    pub fn current() -> Self {
        let hostname = hostname();
        let pid = std::process::id() as i32;
        let id = format!("{hostname}-{pid}-{:08x}", fastrand::u32(..));
        Self { id, hostname, pid }
    }
}

/// The kernel's host name from `gethostname(2)` — not `/proc/sys/kernel/hostname`, which the
/// shipped unit's `ProcSubset=pid` hides. `"unknown"` only if the call itself fails.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; gethostname writes
    // at most `len` bytes into it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    // Truncated names may lack the terminating NUL: take everything up to the first NUL, if any.
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..len]).trim() {
        "" => "unknown".to_string(),
        name => name.to_string(),
    }
}

#[derive(Clone)]
pub struct DbActorArgs {
    pub db: Database,
    pub health: Health,
    pub instance: Instance,
}

pub enum DbMsg {
    /// Supervisor liveness ping.
    Ping(RpcReplyPort<()>),
    /// Create the database if needed and apply migrations.
    Setup,
    SetupDone(Result<Vec<String>, DbError>),
    /// Ping the database and publish pool stats.
    Probe,
    ProbeDone(Result<Duration, DbError>),
}

pub struct DbActor;

pub struct DbState {
    args: DbActorArgs,
    setup_failures: u32,
    setup_running: bool,
    ready: bool,
    probe_running: bool,
    was_reachable: Option<bool>,
}

impl Actor for DbActor {
    type Msg = DbMsg;
    type State = DbState;
    type Arguments = DbActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DbMsg>,
        args: DbActorArgs,
    ) -> Result<DbState, ActorProcessingErr> {
        // Fresh pool on every (re)start; it opens connections lazily, so this cannot fail on a
        // database that is down.
        args.db.rebuild_pool();
        args.health.update_db(|h| {
            h.reachable = false;
            h.migrations_applied = false;
            h.last_error = Some("connecting".into());
        });
        myself.send_message(DbMsg::Setup)?;
        let interval = args.db.config().ping_interval;
        myself.send_interval(interval, || DbMsg::Probe);
        Ok(DbState {
            args,
            setup_failures: 0,
            setup_running: false,
            ready: false,
            probe_running: false,
            was_reachable: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DbMsg>,
        msg: DbMsg,
        state: &mut DbState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DbMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            DbMsg::Setup => state.start_setup(myself),
            DbMsg::SetupDone(result) => state.setup_done(myself, result)?,
            DbMsg::Probe => state.start_probe(myself),
            DbMsg::ProbeDone(result) => state.probe_done(myself, result)?,
        }
        Ok(())
    }
}

impl DbState {
    /// Runs [`setup`] in a task that reports back with [`DbMsg::SetupDone`]; not while one runs
    /// or once it succeeded.
    fn start_setup(&mut self, myself: ActorRef<DbMsg>) {
        if self.setup_running || self.ready {
            return;
        }
        self.setup_running = true;
        let args = self.args.clone();
        tokio::spawn(async move {
            let result = setup(&args).await;
            let _ = myself.send_message(DbMsg::SetupDone(result));
        });
    }

    /// Success: ready, migrations marked applied, reachability published at once. Failure: the
    /// error in the health snapshot and another setup after a backoff.
    fn setup_done(
        &mut self,
        myself: ActorRef<DbMsg>,
        result: Result<Vec<String>, DbError>,
    ) -> Result<(), ActorProcessingErr> {
        self.setup_running = false;
        match result {
            Ok(applied) => {
                self.ready = true;
                self.setup_failures = 0;
                if applied.is_empty() {
                    tracing::info!("database schema is up to date");
                } else {
                    tracing::info!(migrations = ?applied, "applied database migrations");
                }
                self.args.health.update_db(|h| h.migrations_applied = true);
                // Publish reachability now rather than at the next interval.
                myself.send_message(DbMsg::Probe)?;
            }
            Err(e @ DbError::SchemaNewer { .. }) => {
                // Not retried: no migration ran, and sync runs wait for migrations_applied.
                tracing::error!(error = %e, "database schema is newer than this binary");
                self.args.health.update_db(|h| {
                    h.last_error = Some(e.to_string());
                    h.checked_at = Utc::now();
                });
                self.args.db.schema_guard().refuse(e.to_string());
            }
            Err(e) => {
                self.setup_failures += 1;
                let cfg = self.args.db.config();
                let delay = Backoff::new(cfg.retry_min, cfg.retry_max).delay(self.setup_failures);
                tracing::warn!(error = %e, retry_in = ?delay, "database setup failed; will retry");
                self.args.health.update_db(|h| {
                    h.reachable = false;
                    h.last_error = Some(e.to_string());
                    h.checked_at = Utc::now();
                });
                myself.send_after(delay, || DbMsg::Setup);
            }
        }
        Ok(())
    }

    /// Runs [`probe`] in a task that reports back with [`DbMsg::ProbeDone`]; not while one runs.
    fn start_probe(&mut self, myself: ActorRef<DbMsg>) {
        if self.probe_running {
            return;
        }
        self.probe_running = true;
        let args = self.args.clone();
        let ready = self.ready;
        tokio::spawn(async move {
            let result = probe(&args, ready).await;
            let _ = myself.send_message(DbMsg::ProbeDone(result));
        });
    }

    /// Publishes the ping's outcome and the pool stats, logs changes of reachability, and
    /// retries a pending setup once the database answers.
    fn probe_done(
        &mut self,
        myself: ActorRef<DbMsg>,
        result: Result<Duration, DbError>,
    ) -> Result<(), ActorProcessingErr> {
        self.probe_running = false;
        let stats = self.args.db.stats();
        let reachable = result.is_ok();
        match (&result, self.was_reachable) {
            (Ok(_), Some(false)) => tracing::info!("database reachable again"),
            (Err(e), Some(true) | None) => {
                tracing::warn!(error = %e, "database unreachable")
            }
            _ => {}
        }
        self.was_reachable = Some(reachable);
        self.args.health.update_db(|h| {
            h.checked_at = Utc::now();
            h.pool = stats;
            match result {
                Ok(latency) => {
                    h.reachable = true;
                    h.ping_latency = Some(latency);
                    h.last_error = None;
                }
                Err(e) => {
                    h.reachable = false;
                    h.ping_latency = None;
                    h.last_error = Some(e.to_string());
                }
            }
        });
        // The setup may have been waiting for the database; retry it now it answers.
        if reachable && !self.ready && !self.setup_running {
            myself.send_message(DbMsg::Setup)?;
        }
        Ok(())
    }
}

/// Creates the database if needed, applies migrations and registers this daemon instance.
async fn setup(args: &DbActorArgs) -> Result<Vec<String>, DbError> {
    let cfg = args.db.config();
    // Generous but finite: the whole setup, connects included.
    let deadline = cfg.connect_timeout * 3 + cfg.statement_timeout * 2;
    let work = async {
        if cfg.create_database && args.db.connector().ensure_database().await? {
            tracing::info!(
                database = args.db.connector().dbname(),
                "created the database"
            );
        }
        let applied = migrate::run_pending(args.db.connector()).await?;
        register_instance(args).await?;
        report_pending_backfills(args).await;
        Ok(applied)
    };
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(DbError::Unavailable(format!(
                "database setup did not finish within {deadline:?}"
            )))
        })
}

/// Logs each stream with a pending one-time backfill (an upgrade's) and hands them to the
/// daemon's sink (the sync board). Best effort: a failure is logged, setup goes on.
async fn report_pending_backfills(args: &DbActorArgs) {
    let pending = async {
        let mut conn = args.db.checkout("pending-backfills").await?;
        migrate::pending_backfills(&mut conn).await
    };
    match pending.await {
        Ok(rows) => {
            for r in &rows {
                tracing::warn!(shop = %r.shop, stream = %r.stream, reason = %r.reason,
                    "this stream backfills sync.initial_window once (until its next successful run)");
            }
            if let Some(sink) = args.db.backfill_sink() {
                sink(&rows);
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not read pending backfills"),
    }
}

async fn register_instance(args: &DbActorArgs) -> Result<(), DbError> {
    let mut conn = args.db.checkout("register-instance").await?;
    diesel::sql_query(
        "INSERT INTO daemon_instances (instance_id, hostname, pid, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (instance_id) DO UPDATE SET last_seen = now()",
    )
    .bind::<diesel::sql_types::Text, _>(&args.instance.id)
    .bind::<diesel::sql_types::Text, _>(&args.instance.hostname)
    .bind::<diesel::sql_types::Integer, _>(args.instance.pid)
    .bind::<diesel::sql_types::Text, _>(env!("CARGO_PKG_VERSION"))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Pings the database; once set up, also refreshes this instance's `last_seen`.
async fn probe(args: &DbActorArgs, ready: bool) -> Result<Duration, DbError> {
    let deadline = args.db.config().ping_timeout;
    let latency = args.db.check_database_connection(deadline).await?;
    if ready {
        let heartbeat = async {
            let mut conn = args.db.checkout("instance-heartbeat").await?;
            diesel::sql_query(
                "UPDATE daemon_instances SET last_seen = now() WHERE instance_id = $1",
            )
            .bind::<diesel::sql_types::Text, _>(&args.instance.id)
            .execute(&mut *conn)
            .await?;
            Ok::<_, DbError>(())
        };
        match tokio::time::timeout(deadline, heartbeat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "instance heartbeat failed"),
            Err(_) => tracing::debug!("instance heartbeat timed out"),
        }
    }
    Ok(latency)
}

#[cfg(test)]
mod hostname_tests {
    use super::hostname;

    /// `hostname` (coreutils/inetutils) prints the kernel's nodename, as `uname -n` does.
    fn nodename() -> String {
        let out = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .expect("uname runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn the_hostname_is_the_kernels_nodename() {
        let name = hostname();
        assert_ne!(name, "unknown");
        assert_eq!(name, nodename());
    }

    /// Run inside the child of the next test (a mount namespace whose /proc has `subset=pid`).
    #[test]
    fn hostname_under_proc_subset_pid_child() {
        if std::env::var_os("TEMU_SYNC_HOSTNAME_CHILD").is_none() {
            return;
        }
        assert!(
            !std::path::Path::new("/proc/sys/kernel/hostname").exists(),
            "the child sees /proc as ProcSubset=pid shows it"
        );
        println!("hostname=[{}]", hostname());
    }

    /// Under `ProcSubset=pid` (here: `unshare` + a `/proc` mounted with `subset=pid`, needs root)
    /// the host name is still the real one.
    #[test]
    fn the_hostname_is_known_under_proc_subset_pid() {
        let exe = std::env::current_exe().expect("the test binary");
        let script = "mount -t proc -o subset=pid proc /proc && exec \"$0\" --exact --nocapture \
                      db::actor::hostname_tests::hostname_under_proc_subset_pid_child";
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "sh", "-c", script])
            .arg(&exe)
            .env("TEMU_SYNC_HOSTNAME_CHILD", "1")
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) if String::from_utf8_lossy(&out.stderr).contains("Operation not permitted") => {
                eprintln!("skipped: unshare/mount not permitted here (needs root)");
                return;
            }
            Ok(out) => panic!(
                "the child failed: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => {
                eprintln!("skipped: unshare is not available ({e})");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let expected = format!("hostname=[{}]", nodename());
        assert!(stdout.contains(&expected), "want {expected}\n{stdout}");
    }
}
