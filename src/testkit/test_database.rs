//! A throwaway database on the local PostgreSQL, dropped when the value is dropped.
//!
//! The server comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! the machine's local server with trust auth).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;
use crate::db::{migrate, Database};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct TestDatabase {
    name: String,
    admin: tokio_postgres::Config,
}

fn admin_config() -> Result<tokio_postgres::Config, String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("TEST_DATABASE_URL is not a PostgreSQL URL: {e}"))?;
    cfg.connect_timeout(Duration::from_secs(10));
    Ok(cfg)
}

async fn admin_exec(cfg: &tokio_postgres::Config, sql: &str) -> Result<(), String> {
    let work = async {
        let (client, conn) = cfg.connect(NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute(sql).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .map_err(|_| format!("PostgreSQL did not answer within 30s: {sql}"))?
}

impl TestDatabase {
    /// A name for a database that does not exist yet (for tests of database creation).
    pub fn unique_name(prefix: &str) -> String {
        format!(
            "t_{prefix}_{}_{}_{:06x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..0xff_ffff)
        )
    }

    /// Creates an empty database.
    pub async fn create(prefix: &str) -> Result<Self, String> {
        let db = Self::reserve(prefix)?;
        admin_exec(&db.admin, &format!("CREATE DATABASE \"{}\"", db.name)).await?;
        Ok(db)
    }

    /// Creates a database with every migration applied, and a [`Database`] handle on it with a
    /// small pool (2 + 2) and short timeouts, as the store and ledger tests use.
    pub async fn migrated(prefix: &str) -> Result<(Self, Database), String> {
        let test_db = Self::create(prefix).await?;
        let cfg = DatabaseConfig {
            url: test_db.url(),
            pool_size: 2,
            max_overflow: 2,
            pool_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            ..DatabaseConfig::default()
        };
        let db = Database::new(cfg).map_err(|e| e.to_string())?;
        migrate::run_pending(db.connector())
            .await
            .map_err(|e| format!("migrations did not apply: {e}"))?;
        db.rebuild_pool();
        Ok((test_db, db))
    }

    /// A handle that drops the database when dropped, without creating it (the daemon will).
    pub fn reserve(prefix: &str) -> Result<Self, String> {
        Ok(Self {
            name: Self::unique_name(prefix),
            admin: admin_config()?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://user@host:port/name` on the real server.
    pub fn url(&self) -> String {
        self.url_via(None)
    }

    /// The same database reached through another address (e.g. a [`super::FaultProxy`]).
    pub fn url_via(&self, addr: Option<SocketAddr>) -> String {
        let user = self.admin.get_user().unwrap_or("postgres");
        let (host, port) = match addr {
            Some(a) => (a.ip().to_string(), a.port()),
            None => {
                let host = match self.admin.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                    _ => "127.0.0.1".to_string(),
                };
                (
                    host,
                    self.admin.get_ports().first().copied().unwrap_or(5432),
                )
            }
        };
        format!("postgres://{user}@{host}:{port}/{}", self.name)
    }

    /// The real server's address (for pointing a proxy at it).
    pub fn server_addr(&self) -> SocketAddr {
        let host = match self.admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let port = self.admin.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside a runtime; do the blocking cleanup on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(admin_exec(&admin, &sql));
            }
        });
        let _ = cleanup.join();
    }
}
