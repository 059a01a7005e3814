//! The shared database handle: the bb8 pool, checkouts with leak detection, and the one
//! transaction helper every unit of work goes through.
//!
//! Owns: the pool (built by the database actor and swapped in on a restart), checkout accounting
//! (checkouts, returns, timeouts, connections held past the leak threshold), the pool's last
//! failure to open a connection (so a checkout while the database is down fails at once with the
//! real cause instead of waiting out `pool_timeout`), the idle policy (most recently used first,
//! so connections beyond what the work needs go idle and close after `idle_timeout`) and
//! [`Database::transaction`]. Must not: hold a connection beyond one unit of work, or keep a
//! connection whose transaction was interrupted (invariant 5).

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8::{ErrorSink, PooledConnection, QueueStrategy, RunError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, PoolError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};

use super::connect::{ConnectFailure, Connector};
use super::DbError;
use crate::config::DatabaseConfig;
use crate::health::PoolStats;
use crate::metrics::Metrics;

pub type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;
pub type PgPool = bb8::Pool<Manager>;

/// How often bb8 closes connections idle past `idle_timeout` (and past `pool_recycle`): a quarter
/// of `idle_timeout`, between 250 ms and bb8's default of 30 s. After a burst the pool is back
/// to `pool_size` within `idle_timeout` + this.
pub fn reaper_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

/// Cheap-to-clone handle on the database, shared by every component that needs a connection.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    config: DatabaseConfig,
    connector: Connector,
    pool: RwLock<Option<PgPool>>,
    counters: Arc<Counters>,
    connects: Arc<Connects>,
    /// Where checkout waits are recorded ([`Database::observed`]; none for CLI commands).
    metrics: Option<Metrics>,
    /// A schema newer than this binary, once the database actor found one.
    schema: super::migrate::SchemaGuard,
    /// Where the database actor reports pending one-time backfills (the daemon's sync board).
    backfills: std::sync::OnceLock<super::migrate::BackfillSink>,
}

#[derive(Default)]
struct Counters {
    checkouts: AtomicU64,
    returns: AtomicU64,
    timeouts: AtomicU64,
    /// Callers inside `checkout` right now (bb8's own pending count drifts on failed gets).
    waiting: AtomicU64,
    connect_errors: AtomicU64,
    next_id: AtomicU64,
    held: Mutex<HashMap<u64, Held>>,
}

struct Held {
    label: &'static str,
    since: Instant,
    warned: bool,
}

/// The pool's attempts to open connections: the cause of the last failure (cleared by a
/// success), and a signal that wakes checkouts waiting on an attempt. The cause is noted where
/// the connection is opened; the signal is sent from the error sink, which bb8 calls only after
/// it has written the attempt off, so a checkout woken by it and retrying starts an attempt of
/// its own.
struct Connects {
    last_failure: Mutex<Option<(Instant, String)>>,
    failed: tokio::sync::watch::Sender<u64>,
}

impl Default for Connects {
    fn default() -> Self {
        Self {
            last_failure: Mutex::new(None),
            failed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Connects {
    fn succeeded(&self) {
        *self.last_failure.lock() = None;
    }

    fn failed(&self, failure: &ConnectFailure) {
        *self.last_failure.lock() = Some((Instant::now(), failure.to_string()));
    }

    /// Wakes the checkouts waiting on an attempt: one failed.
    fn signal_failure(&self) {
        self.failed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The cause of the last failed attempt, unless one succeeded since.
    fn cause(&self) -> Option<String> {
        self.last_failure.lock().as_ref().map(|(_, c)| c.clone())
    }

    /// [`Connects::cause`], when that attempt failed at or after `since`.
    fn cause_since(&self, since: Instant) -> Option<String> {
        self.last_failure
            .lock()
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, c)| c.clone())
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("connector", &self.inner.connector)
            .finish_non_exhaustive()
    }
}

/// Logs connection errors raised while the pool opens connections in the background, and wakes
/// the checkouts waiting on a connection that will not come.
#[derive(Clone)]
struct LogSink(Arc<Counters>, Arc<Connects>);

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl ErrorSink<PoolError> for LogSink {
    fn sink(&self, error: PoolError) {
        self.0.connect_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %error, "database pool could not open a connection");
        if matches!(error, PoolError::ConnectionError(_)) {
            self.1.signal_failure();
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

impl Database {
    /// A handle that records no metrics (CLI commands, tests).
    /// Where a refusal of a newer schema is reported and awaited (shared by every clone).
    pub fn schema_guard(&self) -> &super::migrate::SchemaGuard {
        &self.inner.schema
    }

    /// Where pending one-time backfills are reported once the schema is ready (set once, while
    /// the daemon's handles are built; later calls are ignored).
    pub fn report_backfills_to(&self, sink: super::migrate::BackfillSink) {
        let _ = self.inner.backfills.set(sink);
    }

    pub(super) fn backfill_sink(&self) -> Option<&super::migrate::BackfillSink> {
        self.inner.backfills.get()
    }

    pub fn new(config: DatabaseConfig) -> Result<Self, DbError> {
        Self::build(config, None)
    }

    /// A handle that records the wait of every checkout into `metrics` (the daemon).
    pub fn observed(config: DatabaseConfig, metrics: Metrics) -> Result<Self, DbError> {
        Self::build(config, Some(metrics))
    }

    fn build(config: DatabaseConfig, metrics: Option<Metrics>) -> Result<Self, DbError> {
        let connector = Connector::new(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                connector,
                pool: RwLock::new(None),
                counters: Arc::default(),
                connects: Arc::default(),
                metrics,
                schema: Default::default(),
                backfills: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &DatabaseConfig {
        &self.inner.config
    }

    pub fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// Builds a fresh pool and swaps it in. Opens no connection itself (the database may be
    /// down): connections are made on demand and by bb8's replenishment.
    pub fn rebuild_pool(&self) {
        let cfg = &self.inner.config;
        let connector = self.inner.connector.clone();
        let connects = self.inner.connects.clone();
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = Box::new(move |_url| {
            let connector = connector.clone();
            let connects = connects.clone();
            Box::pin(async move {
                match connector.open_session().await {
                    Ok(conn) => {
                        connects.succeeded();
                        Ok(conn)
                    }
                    Err(failure) => {
                        connects.failed(&failure);
                        Err(failure.into())
                    }
                }
            })
        });
        // The URL argument is unused: custom_setup connects with the prepared config.
        let manager = Manager::new_with_config(String::new(), manager_config);
        let pool = bb8::Pool::builder()
            .max_size(cfg.pool_size + cfg.max_overflow)
            .min_idle(Some(cfg.pool_size))
            .connection_timeout(cfg.pool_timeout)
            .max_lifetime(Some(cfg.pool_recycle))
            .idle_timeout(Some(cfg.idle_timeout))
            .reaper_rate(reaper_period(cfg.idle_timeout))
            // The most recently returned connection is lent first, so light work (the pings)
            // keeps reusing the same few and the rest really go idle and close; in bb8's default
            // FIFO order every ping would touch every connection and none would ever be idle.
            .queue_strategy(QueueStrategy::Lifo)
            // Verified recycling: `SELECT 1` on every checkout (the seed's pool_pre_ping).
            .test_on_check_out(true)
            // A failed connect is not retried inside bb8 (its errors never reach the caller);
            // `checkout` watches `Connects` and fails with the real reason instead.
            .retry_connection(false)
            .error_sink(Box::new(LogSink(
                self.inner.counters.clone(),
                self.inner.connects.clone(),
            )))
            .build_unchecked(manager);
        *self.inner.pool.write() = Some(pool);
    }

    fn pool(&self) -> Result<PgPool, DbError> {
        self.inner
            .pool
            .read()
            .clone()
            .ok_or_else(|| DbError::Unavailable("the database pool is not started".into()))
    }

    /// Takes a connection from the pool for one unit of work, waiting at most `pool_timeout`.
    ///
    /// While the pool has no connection and an attempt to open one fails, the checkout fails at
    /// once with that attempt's cause (refused, authentication, missing database, …: within
    /// about `connect_timeout`, not `pool_timeout`). When it times out after a failed attempt,
    /// it names that cause too. `label` names the work in leak warnings.
    pub async fn checkout(&self, label: &'static str) -> Result<Checkout, DbError> {
        let pool = self.pool()?;
        let wait = self.inner.config.pool_timeout;
        // Subscribed before asking, so the failure of the attempt this checkout starts is seen.
        let mut failures = self.inner.connects.failed.subscribe();
        let waiting_since = Instant::now();
        let got = {
            let _waiting = WaitingGuard::enter(&self.inner.counters.waiting);
            // bb8 enforces connection_timeout itself; the outer deadline guards against a
            // connect that ignores it.
            let get = tokio::time::timeout(wait + Duration::from_secs(1), pool.get_owned());
            tokio::select! {
                got = get => Ok(got),
                cause = self.connect_failed_while_empty(&pool, &mut failures) => Err(cause),
            }
        };
        if let Some(metrics) = &self.inner.metrics {
            metrics.record_checkout_wait(waiting_since.elapsed());
        }
        let conn = match got {
            Err(cause) => return Err(DbError::Unavailable(cause)),
            Ok(Ok(Ok(conn))) => conn,
            Ok(Ok(Err(RunError::TimedOut)) | Err(_)) => {
                self.inner.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(match self.inner.connects.cause_since(waiting_since) {
                    Some(cause) => DbError::Unavailable(format!(
                        "{cause} (and no connection came free within {wait:?})"
                    )),
                    None => DbError::PoolTimeout(wait),
                });
            }
            Ok(Ok(Err(RunError::User(e)))) => {
                return Err(match e {
                    PoolError::ConnectionError(c) => DbError::Unavailable(c.to_string()),
                    PoolError::QueryError(q) => {
                        DbError::Unavailable(format!("connection failed its check-out test: {q}"))
                    }
                });
            }
        };
        let counters = &self.inner.counters;
        counters.checkouts.fetch_add(1, Ordering::Relaxed);
        let id = counters.next_id.fetch_add(1, Ordering::Relaxed);
        counters.held.lock().insert(
            id,
            Held {
                label,
                since: Instant::now(),
                warned: false,
            },
        );
        Ok(Checkout {
            conn,
            id,
            counters: counters.clone(),
        })
    }

    /// Resolves with the cause when an attempt to open a connection fails while the pool has
    /// none open (nothing can come back to a waiting checkout); never otherwise.
    async fn connect_failed_while_empty(
        &self,
        pool: &PgPool,
        failures: &mut tokio::sync::watch::Receiver<u64>,
    ) -> String {
        loop {
            if failures.changed().await.is_err() {
                return std::future::pending().await;
            }
            if pool.state().connections == 0 {
                if let Some(cause) = self.inner.connects.cause() {
                    return cause;
                }
            }
        }
    }

    /// Runs `work` in one transaction on a fresh checkout, within `deadline`.
    ///
    /// Commits when `work` returns `Ok`, rolls back on `Err`. On the deadline the future is
    /// dropped: the server is asked to cancel the running statement, the connection (still inside
    /// its transaction) is discarded by the pool instead of being reused, and the server rolls
    /// the transaction back when the session ends. Nothing of it becomes visible.
    pub async fn transaction<'a, R, E, F>(
        &self,
        label: &'static str,
        deadline: Duration,
        work: F,
    ) -> Result<R, E>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> BoxFuture<'r, Result<R, E>> + Send + 'a,
        E: From<diesel::result::Error> + From<DbError> + Send + 'a,
        R: Send + 'a,
    {
        let started = Instant::now();
        let mut checkout = tokio::time::timeout(deadline, self.checkout(label))
            .await
            .map_err(|_| DbError::Deadline { label, deadline })??;
        let remaining = deadline.saturating_sub(started.elapsed());
        let cancel = checkout.cancel_token();
        let outcome = tokio::time::timeout(
            remaining,
            checkout.transaction(async move |conn| work(conn).await),
        )
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                // Dropping `checkout` with its transaction open makes the pool discard it
                // (diesel-async reports the connection broken). Cancel on the server too, so the
                // statement stops now rather than at statement_timeout.
                drop(checkout);
                let connector = self.connector().clone();
                tokio::spawn(async move {
                    connector.cancel(cancel, Duration::from_secs(5)).await;
                });
                tracing::warn!(
                    work = label,
                    ?deadline,
                    "database work exceeded its deadline; rolled back"
                );
                Err(DbError::Deadline { label, deadline }.into())
            }
        }
    }

    /// `SELECT 1` on a pooled connection within `deadline`: the reachability probe.
    pub async fn check_database_connection(&self, deadline: Duration) -> Result<Duration, DbError> {
        use diesel_async::RunQueryDsl;
        let started = Instant::now();
        let probe = async {
            let mut conn = self.checkout("health-ping").await?;
            diesel::sql_query("SELECT 1").execute(&mut *conn).await?;
            Ok::<_, DbError>(())
        };
        match tokio::time::timeout(deadline, probe).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DbError::Unavailable(match self.inner.connects.cause() {
                Some(cause) => format!(
                    "no answer to a ping within {deadline:?}; the last attempt to connect: {cause}"
                ),
                None => format!("no answer to a ping within {deadline:?}"),
            })),
        }
    }

    /// Current pool counters, and a warning for each connection newly held past the leak threshold.
    pub fn stats(&self) -> PoolStats {
        let counters = &self.inner.counters;
        let threshold = self.inner.config.leak_threshold;
        let mut leaked_now = 0;
        for held in counters.held.lock().values_mut() {
            let age = held.since.elapsed();
            if age > threshold {
                leaked_now += 1;
                if !held.warned {
                    held.warned = true;
                    tracing::warn!(
                        work = held.label,
                        held_for = ?age,
                        leak_threshold = ?threshold,
                        "a database connection has been held longer than the leak threshold"
                    );
                }
            }
        }
        let mut stats = PoolStats {
            checkouts: counters.checkouts.load(Ordering::Relaxed),
            returns: counters.returns.load(Ordering::Relaxed),
            checkout_timeouts: counters.timeouts.load(Ordering::Relaxed),
            waiting: counters.waiting.load(Ordering::Relaxed),
            leaked_now,
            max_size: self.inner.config.pool_size + self.inner.config.max_overflow,
            ..PoolStats::default()
        };
        if let Some(pool) = self.inner.pool.read().as_ref() {
            let state = pool.state();
            stats.size = state.connections;
            stats.idle = state.idle_connections;
            stats.in_use = state.connections.saturating_sub(state.idle_connections);
            stats.broken_closed = state.statistics.connections_closed_broken
                + state.statistics.connections_closed_invalid;
        }
        stats
    }
}

/// A pooled connection lent for one unit of work; returned to the pool on drop.
pub struct Checkout {
    conn: PooledConnection<'static, Manager>,
    id: u64,
    counters: Arc<Counters>,
}

impl Checkout {
    pub fn cancel_token(&self) -> tokio_postgres::CancelToken {
        self.conn.cancel_token()
    }
}

impl Deref for Checkout {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.counters.returns.fetch_add(1, Ordering::Relaxed);
        self.counters.held.lock().remove(&self.id);
    }
}

impl Database {
    /// Drops the pool: idle connections close now, lent ones when they are returned.
    pub fn close(&self) {
        self.inner.pool.write().take();
    }
}

/// Counts a caller as waiting for a connection for as long as it is alive (also when the
/// checkout future is dropped midway).
struct WaitingGuard<'a>(&'a AtomicU64);

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
