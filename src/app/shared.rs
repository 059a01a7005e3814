//! The handles every part of the daemon shares, built once at start ([`Shared::build`]) and
//! handed to each child at construction (`daemon_children`): no setters afterwards, no lookups
//! by name at run time.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::audit::{AuditBoard, Operator};
use crate::config::Config;
use crate::db::{Database, Instance};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sync::run::PgLedger;
use crate::sync::{SyncBoard, SyncDeps};
use crate::temu::{ClientTuning, Observers, TemuClient};

pub struct Shared {
    pub config: Config,
    /// This process: the lease owner and `daemon_instances` row.
    pub instance: Instance,
    pub health: Health,
    pub metrics: Metrics,
    pub db: Database,
    pub board: SyncBoard,
    /// The process's one Temu client: one limiter per app_key for the process's lifetime,
    /// whatever happens to the Temu actor.
    pub temu: TemuClient,
    pub shutdown: Shutdown,
    /// The scheduled audit's results (`/status`).
    pub audits: AuditBoard,
}

/// A configuration that validated but from which the daemon's parts cannot be built (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid database configuration: {0}")]
    Database(#[from] crate::db::DbError),
    #[error("invalid Temu configuration: {0}")]
    Temu(#[from] crate::temu::TemuError),
}

impl Shared {
    /// Builds every shared handle; nothing connects and no runtime is needed, so `check-config`
    /// builds exactly what `run` builds.
    pub fn build(config: Config, board: SyncBoard) -> Result<Self, BuildError> {
        let instance = Instance::current();
        let health = Health::new(instance.id.clone());
        let metrics = Metrics::new();
        for shop in &config.shops {
            for stream in &shop.streams {
                metrics.init_sync_series(&shop.name, stream.as_str());
            }
        }
        let db = Database::observed(config.database.clone(), metrics.clone())?;
        let backfill_board = board.clone();
        db.report_backfills_to(std::sync::Arc::new(move |pending| {
            let rows = pending
                .iter()
                .map(|p| (p.shop.as_str(), p.stream.as_str(), p.reason.as_str()));
            backfill_board.set_backfills(rows)
        }));
        let scope_board = board.clone();
        let observers = Observers {
            health: Some(health.clone()),
            metrics: Some(metrics.clone()),
            scopes: Some(std::sync::Arc::new(move |shop: &str, unscoped: &[_]| {
                scope_board.set_unscoped(shop, unscoped)
            })),
        };
        let tuning = ClientTuning::from_config(&config.temu);
        let temu = TemuClient::build(&config.temu, &config.apps, &config.shops, tuning, observers)?;
        Ok(Self {
            config,
            instance,
            health,
            metrics,
            db,
            board,
            temu,
            shutdown: Shutdown::new(),
            audits: AuditBoard::default(),
        })
    }

    /// An operator on the daemon's own pool and Temu client, leasing as `{instance}-{role}` (a
    /// different owner from the daemon's sync actors, so it waits for their runs and they for
    /// its), cancelled by the daemon's stop.
    pub fn operator(&self, role: &str) -> Operator {
        let owner = format!("{}-{role}", self.instance.id);
        let wait = self.config.sync.lease_ttl * 10;
        let cancel = self.shutdown.child();
        Operator::with(
            &self.config,
            self.db.clone(),
            self.temu.clone(),
            owner,
            wait,
            cancel,
        )
    }

    /// What every sync actor shares (one run-slot semaphore, one ledger).
    pub fn sync_deps(&self) -> Arc<SyncDeps> {
        let db_deadline = self.db.config().statement_timeout * 2;
        Arc::new(SyncDeps {
            config: self.config.sync.clone(),
            db: self.db.clone(),
            health: self.health.clone(),
            board: self.board.clone(),
            metrics: self.metrics.clone(),
            run_slots: Arc::new(Semaphore::new(self.config.sync.max_concurrent_runs.max(1))),
            temu: self.temu.clone(),
            ledger: Arc::new(PgLedger::new(
                self.db.clone(),
                self.instance.id.clone(),
                db_deadline,
            )),
            stop_timeout: self.config.supervisor.shutdown_timeout / 2,
            shutdown: self.shutdown.clone(),
        })
    }
}
