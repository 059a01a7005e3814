//! Opening one PostgreSQL connection the way every pooled connection must be opened.
//!
//! Owns: the `tokio_postgres::Config` built from [`DatabaseConfig`] (connect timeout, TCP
//! keepalive, application name and the per-session server-side timeouts), TLS when the URL asks
//! for it (`tls.rs`), the whole-handshake deadline, cancelling a running statement, and creating
//! the database when it is missing.
//!
//! Every session gets `statement_timeout`, `lock_timeout` and
//! `idle_in_transaction_session_timeout` as startup options, so the server itself ends work that a
//! cancelled future left behind (invariant 5), whatever code holds the connection.

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsStream};
use tokio_postgres::{CancelToken, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::DbError;
use crate::config::DatabaseConfig;

/// How connections are made: a prepared `tokio_postgres::Config` plus the handshake deadline.
#[derive(Clone)]
pub struct Connector {
    pg: tokio_postgres::Config,
    /// `Some` when the URL says `sslmode=require`: every connection then uses verified TLS.
    tls: Option<MakeRustlsConnect>,
    handshake_deadline: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password; print only what identifies the target.
        f.debug_struct("Connector")
            .field("hosts", &self.pg.get_hosts())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

impl Connector {
    pub fn new(cfg: &DatabaseConfig) -> Result<Self, DbError> {
        let mut pg = cfg
            .pg_config()
            .map_err(|e| DbError::Config(e.to_string()))?;
        pg.connect_timeout(cfg.connect_timeout)
            .keepalives(true)
            .keepalives_idle(cfg.keepalive_idle)
            .application_name("temu-sync")
            .options(format!(
                "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
                millis(cfg.statement_timeout),
                millis(cfg.lock_timeout),
                millis(cfg.idle_in_transaction_timeout),
            ));
        let tls =
            super::tls::connector(&pg, cfg.tls_ca_file.as_deref()).map_err(DbError::Config)?;
        Ok(Self {
            pg,
            tls,
            // The socket connect has its own timeout; the startup handshake (auth, parameter
            // exchange) does not, and a server that accepts but never answers would hang it.
            handshake_deadline: cfg.connect_timeout,
        })
    }

    /// The database name connections go to.
    pub fn dbname(&self) -> &str {
        self.pg.get_dbname().unwrap_or("postgres")
    }

    /// Whether connections use TLS (the URL says `sslmode=require`).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens one diesel-async connection, bounded by the connect timeout end to end.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let deadline = self.handshake_deadline;
        let attempt = async {
            match &self.tls {
                Some(tls) => open(&self.pg, tls.clone()).await,
                None => open(&self.pg, NoTls).await,
            }
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ConnectionError::BadConnection(format!(
                "no answer from the database server within {deadline:?} (connect_timeout)"
            ))),
        }
    }

    /// Asks the server to cancel what the session of `token` is running, over the same kind of
    /// connection (TLS or not) as the session's; bounded by `deadline`. Best effort.
    pub async fn cancel(&self, token: CancelToken, deadline: Duration) {
        let cancelled = async {
            let _ = match &self.tls {
                Some(tls) => token.cancel_query(tls.clone()).await,
                None => token.cancel_query(NoTls).await,
            };
        };
        let _ = tokio::time::timeout(deadline, cancelled).await;
    }

    /// Creates the configured database when it does not exist and the role may.
    ///
    /// Returns `Ok(true)` when it created it, `Ok(false)` when it already existed.
    pub async fn ensure_database(&self) -> Result<bool, DbError> {
        let dbname = self.dbname().to_string();
        // Probe the target database first: the common case needs no maintenance connection.
        match self.raw_connect(&self.pg).await {
            Ok(_) => return Ok(false),
            Err(RawConnectError::Pg(e)) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
            Err(e) => return Err(DbError::Unavailable(e.to_string())),
        }
        let mut maintenance = self.pg.clone();
        maintenance.dbname("postgres");
        let client = self
            .raw_connect(&maintenance)
            .await
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        let sql = format!("CREATE DATABASE \"{}\"", dbname.replace('"', "\"\""));
        let created = tokio::time::timeout(self.handshake_deadline * 3, client.batch_execute(&sql))
            .await
            .map_err(|_| DbError::Unavailable("CREATE DATABASE did not answer in time".into()))?;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
            Err(e) => Err(DbError::Unavailable(format!(
                "database \"{dbname}\" does not exist and could not be created: {}",
                describe_pg_error(&e)
            ))),
        }
    }

    async fn raw_connect(
        &self,
        cfg: &tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, RawConnectError> {
        let fut = async {
            match &self.tls {
                Some(tls) => open_client(cfg, tls.clone()).await,
                None => open_client(cfg, NoTls).await,
            }
        };
        match tokio::time::timeout(self.handshake_deadline, fut).await {
            Ok(r) => r.map_err(RawConnectError::Pg),
            Err(_) => Err(RawConnectError::Timeout(self.handshake_deadline)),
        }
    }
}

/// One diesel-async connection over `tls` (or plain TCP with `NoTls`).
async fn open<T>(pg: &tokio_postgres::Config, tls: T) -> Result<AsyncPgConnection, ConnectionError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: TlsStream + Unpin + Send + 'static,
{
    let (client, connection) = pg
        .connect(tls)
        .await
        .map_err(|e| ConnectionError::BadConnection(describe_pg_error(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// One plain tokio-postgres client; its connection is driven by a task that ends with it.
async fn open_client<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
) -> Result<tokio_postgres::Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error here is the socket closing.
        let _ = connection.await;
    });
    Ok(client)
}

enum RawConnectError {
    Pg(tokio_postgres::Error),
    Timeout(Duration),
}

impl std::fmt::Display for RawConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawConnectError::Pg(e) => f.write_str(&describe_pg_error(e)),
            RawConnectError::Timeout(d) => write!(
                f,
                "no answer from the database server within {d:?} (connect_timeout)"
            ),
        }
    }
}

/// A one-line description of a tokio_postgres error, with the server's message when there is one.
/// Never includes the password (tokio_postgres errors do not carry the config).
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
