//! What an operator's command works with, and how it behaves like a daemon: the configured
//! shops and streams, the database, the one Temu client (its app_key's QPS limiter), and the
//! stream's lease in PostgreSQL, waited for (up to `lease_wait`) while a daemon holds it.
//!
//! Owns: [`Operator`] (built for a CLI command from the configuration, or from the daemon's
//! shared handles for the admin routes and the scheduled audit), refusing a shop or stream that
//! is not configured ([`OpError::Refused`], exit 78), running a body under the lease through the
//! ordinary run protocol ([`Operator::run_body`]: run record, heartbeat, `task_timeout`), and the
//! cursor reset. Must not: move a cursor forwards (that is the sync's) or decide what an audit
//! difference means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Stream};
use crate::db::Database;
use crate::exit;
use crate::store;
use crate::sync::progress::{Progress, ProgressSnapshot};
use crate::sync::run::{
    config_digest, run, ParkRetry, PgLedger, RunBody, RunContext, RunLedger, RunMode, RunOutcome,
};
use crate::sync::SyncError;
use crate::temu::{TemuClient, TemuShop};

/// Why an operator's command did not do its work, by exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Bad arguments: a reversed or future range, a missing confirmation (exit 78).
    #[error("{0}")]
    Refused(String),
    /// A shop or stream that is not configured (exit 78; 404 on a route).
    #[error("{0}")]
    NotConfigured(String),
    /// Temu or the database could not be reached, or the lease stayed held (exit 69).
    #[error("{0}")]
    Unavailable(String),
    /// The work ran and failed for another reason (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl OpError {
    pub fn exit_code(&self) -> i32 {
        match self {
            OpError::Refused(_) | OpError::NotConfigured(_) => exit::CONFIG,
            OpError::Unavailable(_) => exit::UNAVAILABLE,
            OpError::Failed(_) => 1,
        }
    }

    /// Temu and database failures are "unavailable"; anything else failed the work itself.
    pub fn from_sync(context: &str, e: SyncError) -> Self {
        match e {
            SyncError::Temu(_) | SyncError::Db(_) => {
                OpError::Unavailable(format!("{context}: {e}"))
            }
            other => OpError::Failed(format!("{context}: {other}")),
        }
    }
}

/// The handles an operator's command uses.
#[derive(Clone)]
pub struct Operator {
    pub config: Config,
    pub db: Database,
    pub client: TemuClient,
    pub ledger: Arc<PgLedger>,
    /// Deadline of one database transaction.
    pub db_deadline: Duration,
    /// How long to wait for a lease that a daemon holds.
    pub lease_wait: Duration,
    /// Cancels a run in progress (the daemon's shutdown; never for a CLI command).
    pub cancel: CancellationToken,
}

impl Operator {
    /// For a CLI command: its own pool and Temu client; `owner` names it in `sync_state`.
    pub fn for_cli(config: &Config, lease_wait: Duration) -> Result<Self, OpError> {
        let refused = |e: String| OpError::Refused(format!("invalid configuration: {e}"));
        let db = Database::new(config.database.clone()).map_err(|e| refused(e.to_string()))?;
        db.rebuild_pool();
        let client = TemuClient::new(&config.temu, &config.apps, &config.shops)
            .map_err(|e| refused(e.to_string()))?;
        let owner = format!("cli-{}", crate::db::Instance::current().id);
        Ok(Self::with(
            config,
            db,
            client,
            owner,
            lease_wait,
            CancellationToken::new(),
        ))
    }

    /// Built from handles that already exist (the daemon's: its pool, its one Temu client).
    pub fn with(
        config: &Config,
        db: Database,
        client: TemuClient,
        owner: String,
        lease_wait: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let db_deadline = db.config().statement_timeout * 2;
        let ledger = Arc::new(PgLedger::new(db.clone(), owner, db_deadline));
        Self {
            config: config.clone(),
            db,
            client,
            ledger,
            db_deadline,
            lease_wait,
            cancel,
        }
    }

    /// The configured shop named `name`, or a refusal that lists the configured ones.
    pub fn shop(&self, name: &str) -> Result<TemuShop, OpError> {
        self.client.shop(name).ok_or_else(|| {
            let known: Vec<&str> = self.client.shops().iter().map(|s| s.name()).collect();
            OpError::NotConfigured(format!(
                "no shop named {name:?} is configured; configured: {}",
                known.join(", ")
            ))
        })
    }

    /// Refuses a stream the shop does not sync.
    pub fn check_stream(shop: &TemuShop, stream: Stream) -> Result<(), OpError> {
        if shop.streams().contains(&stream) {
            return Ok(());
        }
        let known: Vec<&str> = shop.streams().iter().map(|s| s.as_str()).collect();
        Err(OpError::NotConfigured(format!(
            "stream {} is not configured for shop {}; its streams: {}",
            stream.as_str(),
            shop.name(),
            known.join(", ")
        )))
    }

    /// Runs `body` for (shop, stream) under the stream's lease, through the run protocol,
    /// waiting up to `lease_wait` while another owner (a daemon) holds the lease.
    pub async fn run_body(
        &self,
        shop: &TemuShop,
        stream: Stream,
        body: Arc<dyn RunBody>,
    ) -> Result<ProgressSnapshot, OpError> {
        let ctx = RunContext {
            shop: shop.clone(),
            stream,
            config: self.config.sync.clone(),
            db: self.db.clone(),
            client: self.client.clone(),
            ledger: self.ledger.clone(),
            body,
            db_deadline: self.db_deadline,
            // An operator's run neither clears a park (a trigger does) nor probes one.
            mode: RunMode::Scheduled,
            config_digest: config_digest(shop, stream, &self.config.sync, self.db.config()),
            park_retry: ParkRetry::new(self.cancel.clone()),
        };
        let context = format!("{} {}", shop.name(), stream.as_str());
        let started = Instant::now();
        loop {
            let progress = Arc::new(Progress::default());
            match run(&ctx, self.cancel.child_token(), progress.clone()).await {
                RunOutcome::Succeeded { .. } => return Ok(progress.snapshot()),
                RunOutcome::Failed { error, .. } => {
                    return Err(OpError::from_sync(&context, error))
                }
                RunOutcome::Parked(park) => {
                    let reason = &park.reason;
                    return Err(OpError::Unavailable(format!(
                        "{context} is parked ({reason}); fix the cause, then trigger the stream \
                         (POST /sync/{}/{}) before running this again",
                        shop.name(),
                        stream.as_str()
                    )));
                }
                RunOutcome::HeldElsewhere => self.wait_for_lease(&context, started).await?,
            }
        }
    }

    /// Sleeps a little before the next try for a held lease; gives up after `lease_wait`.
    async fn wait_for_lease(&self, context: &str, started: Instant) -> Result<(), OpError> {
        if started.elapsed() >= self.lease_wait {
            return Err(OpError::Unavailable(format!(
                "{context}: another daemon held the lease for longer than {:?}; try again later",
                self.lease_wait
            )));
        }
        tracing::info!(%context, "the stream's lease is held by another daemon; waiting");
        let pause = (self.config.sync.lease_ttl / 3)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::select! {
            _ = self.cancel.cancelled() => Err(OpError::Unavailable(format!("{context}: cancelled"))),
            _ = tokio::time::sleep(pause.min(self.lease_wait)) => Ok(()),
        }
    }

    /// `reset`: under the lease, clears the cursor of (shop, stream), so that its next run
    /// backfills `initial_window` again. Returns the cursor it had.
    pub async fn reset(
        &self,
        shop: &TemuShop,
        stream: Stream,
    ) -> Result<Option<DateTime<Utc>>, OpError> {
        let context = format!("{} {}", shop.name(), stream.as_str());
        let fail = |e: SyncError| OpError::from_sync(&context, e);
        let ledger = &self.ledger;
        let region = shop.region_name();
        let shop_id = ledger
            .ensure_shop(shop.name(), region, None)
            .await
            .map_err(fail)?;
        let started = Instant::now();
        let ttl = self.config.sync.lease_ttl;
        while ledger
            .take_lease(shop_id, stream, ttl)
            .await
            .map_err(fail)?
            .is_none()
        {
            self.wait_for_lease(&context, started).await?;
        }
        let owner = ledger.owner().to_string();
        let reset = self
            .db
            .transaction("reset-cursor", self.db_deadline, move |c| {
                Box::pin(async move {
                    let reason = "reset by an operator: backfilling initial_window again";
                    let stream = stream.as_str();
                    let before = store::audit::reset_cursor(c, shop_id, stream, &owner, reason);
                    Ok::<_, SyncError>(before.await?)
                })
            })
            .await;
        if let Err(e) = ledger.release(shop_id, stream).await {
            tracing::warn!(%context, error = %e, "could not release the lease; it expires by itself");
        }
        reset.map_err(fail)
    }
}
