//! Opening one PostgreSQL connection the way every pooled connection must be opened.
//!
//! Owns: the `tokio_postgres::Config` built from [`DatabaseConfig`] (connect timeout, TCP
//! keepalive, application name and the per-session server-side timeouts), the socket to the
//! server (hosts in order, `hostaddr`, TCP or Unix socket, keepalive), TLS when the URL asks for it
//! (`tls.rs`), the wire tap on every session (`wire.rs`: the SQLSTATE of each server error), the
//! whole-handshake deadline, cancelling a running statement, creating the database when it is
//! missing, and [`ConnectFailure`]: why a connection could not be opened, in words that say what
//! to do. Must not: decide by a server message's text, or put the password in a message.
//!
//! Every session gets `statement_timeout`, `lock_timeout` and
//! `idle_in_transaction_session_timeout` as startup options, so the server itself ends work that a
//! cancelled future left behind (invariant 5), whatever code holds the connection.
//!
//! The socket is opened here rather than by tokio-postgres so that the session's stream can be
//! tapped (tokio-postgres's own socket type cannot be wrapped); `target_session_attrs` and
//! `load_balance_hosts` from the URL are honoured the way tokio-postgres does.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::either::Either;

use super::session::*;
use super::wire::{TapTls, Tapped};
use super::DbError;
use crate::config::DatabaseConfig;

/// A socket to the server: TCP, or a Unix socket for a `host` that is a directory.
pub(super) type Socket = Either<TcpStream, UnixStream>;

/// How connections are made: a prepared `tokio_postgres::Config` plus the handshake deadline.
#[derive(Clone)]
pub struct Connector {
    pg: tokio_postgres::Config,
    /// `Some` when the URL says `sslmode=require`: every connection then uses verified TLS.
    tls: Option<MakeRustlsConnect>,
    handshake_deadline: Duration,
    /// `database.create_database`, for the advice when the database is missing.
    creates_database: bool,
}

/// Why one connection could not be opened: the cause and what to do, chosen by the socket
/// error's kind or the server's SQLSTATE (the server's own message is quoted, never parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure(pub(super) String);

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ConnectFailure> for ConnectionError {
    fn from(f: ConnectFailure) -> Self {
        ConnectionError::BadConnection(f.0)
    }
}

impl From<ConnectFailure> for DbError {
    fn from(f: ConnectFailure) -> Self {
        DbError::Unavailable(f.0)
    }
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
            // The whole of opening a session: socket, TLS, startup (auth, parameter exchange).
            handshake_deadline: cfg.connect_timeout,
            creates_database: cfg.create_database,
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
        Ok(self.open_session().await?)
    }

    /// [`Connector::connect`], with the reason in the operator's terms on failure.
    pub async fn open_session(&self) -> Result<AsyncPgConnection, ConnectFailure> {
        let deadline = self.handshake_deadline;
        let attempt = async {
            let client = self.open_client(&self.pg).await.map_err(|e| e.failure)?;
            AsyncPgConnection::try_from(client)
                .await
                .map_err(|e| ConnectFailure(format!("the new session could not be set up: {e}")))
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(no_answer(&self.targets(&self.pg), deadline)),
        }
    }

    /// Asks the server to cancel what the session of `token` is running, over the same kind of
    /// connection (TLS or not) as the session's; bounded by `deadline`. Best effort.
    pub async fn cancel(&self, token: CancelToken, deadline: Duration) {
        let cancelled = async {
            let Ok((socket, _target, hostname)) = self.open_socket(&self.pg).await else {
                return;
            };
            let _ = match &self.tls {
                Some(make) => match tls_for(make, &hostname) {
                    Ok(tls) => token.cancel_query_raw(socket, tls).await,
                    Err(_) => return,
                },
                None => token.cancel_query_raw(socket, NoTls).await,
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
            Err(e) if e.missing_database => {}
            Err(e) => return Err(e.failure.into()),
        }
        let mut maintenance = self.pg.clone();
        maintenance.dbname("postgres");
        let client = self
            .raw_connect(&maintenance)
            .await
            .map_err(|e| DbError::from(e.failure))?;
        let sql = format!("CREATE DATABASE \"{}\"", dbname.replace('"', "\"\""));
        let created = tokio::time::timeout(self.handshake_deadline * 3, client.batch_execute(&sql))
            .await
            .map_err(|_| DbError::Unavailable("CREATE DATABASE did not answer in time".into()))?;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
            Err(e) => Err(DbError::Unavailable(format!(
                "database \"{dbname}\" does not exist and could not be created: {}; give the role \
                 CREATEDB or create the database (CREATE DATABASE)",
                describe_pg_error(&e)
            ))),
        }
    }

    /// A plain tokio-postgres client to `cfg`'s database within the handshake deadline; a
    /// missing database is told apart.
    async fn raw_connect(&self, cfg: &tokio_postgres::Config) -> Result<Client, OpenFailure> {
        match tokio::time::timeout(self.handshake_deadline, self.open_client(cfg)).await {
            Ok(result) => result,
            Err(_) => Err(OpenFailure {
                failure: no_answer(&self.targets(cfg), self.handshake_deadline),
                missing_database: false,
            }),
        }
    }

    /// A started session (tapped, TLS if asked for, `target_session_attrs` checked) on the first
    /// host of `cfg` that gives one, trying them in the URL's order (shuffled with
    /// `load_balance_hosts=random`), as libpq and tokio-postgres do; the last host's failure
    /// otherwise. Not bounded here: callers hold the handshake deadline.
    async fn open_client(&self, cfg: &tokio_postgres::Config) -> Result<Client, OpenFailure> {
        let mut last = OpenFailure {
            failure: ConnectFailure("the URL names no host: check database.url".to_string()),
            missing_database: false,
        };
        for i in host_order(cfg) {
            let (socket, target, hostname) = match self.socket_to(cfg, i).await {
                None => continue,
                Some(Err(failure)) => {
                    last.failure = failure;
                    last.missing_database = false;
                    continue;
                }
                Some(Ok(opened)) => opened,
            };
            match self.start_session(cfg, socket, &target, &hostname).await {
                Ok(client) => return Ok(client),
                Err(e) => {
                    last.missing_database = matches!(&e, SessionError::Pg(pg)
                        if pg.code() == Some(&SqlState::INVALID_CATALOG_NAME));
                    last.failure = self.session_failure(&e, cfg, &target);
                }
            }
        }
        Err(last)
    }

    async fn start_session(
        &self,
        cfg: &tokio_postgres::Config,
        socket: Socket,
        target: &str,
        hostname: &str,
    ) -> Result<Client, SessionError> {
        let client = match &self.tls {
            None => {
                let (client, connection) = cfg.connect_raw(Tapped::new(socket), NoTls).await?;
                drive(connection);
                client
            }
            Some(make) => {
                let tls = tls_for(make, hostname).map_err(|e| {
                    SessionError::Other(format!("TLS to \"{hostname}\" cannot start: {e}"))
                })?;
                let (client, connection) = cfg.connect_raw(socket, TapTls(tls)).await?;
                drive(connection);
                client
            }
        };
        check_session_attrs(&client, cfg.get_target_session_attrs(), target).await?;
        Ok(client)
    }

    /// The first socket to a host of `cfg` that connects (for a cancel request).
    async fn open_socket(
        &self,
        cfg: &tokio_postgres::Config,
    ) -> Result<(Socket, String, String), ConnectFailure> {
        let mut last = ConnectFailure("the URL names no host: check database.url".to_string());
        for i in host_order(cfg) {
            match self.socket_to(cfg, i).await {
                Some(Ok(opened)) => return Ok(opened),
                Some(Err(failure)) => last = failure,
                None => {}
            }
        }
        Err(last)
    }

    /// A socket to host `i` of `cfg` (its `hostaddr` when given), with where it goes (for
    /// messages) and the host's name (for TLS); `None` when there is no host `i`.
    async fn socket_to(
        &self,
        cfg: &tokio_postgres::Config,
        i: usize,
    ) -> Option<Result<(Socket, String, String), ConnectFailure>> {
        let port = port_of(cfg, i);
        let host = cfg.get_hosts().get(i);
        let hostname = match host {
            Some(Host::Tcp(name)) => name.clone(),
            _ => String::new(),
        };
        let opened = match (cfg.get_hostaddrs().get(i), host) {
            (Some(ip), _) => {
                let target = format!("{ip}:{port}");
                self.tcp(SocketAddr::new(*ip, port), &target)
                    .await
                    .map(|s| (s, target))
            }
            (None, Some(Host::Tcp(name))) => self.tcp_by_name(name, port).await,
            (None, Some(Host::Unix(dir))) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let target = path.display().to_string();
                UnixStream::connect(&path)
                    .await
                    .map(|s| (Either::Right(s), target.clone()))
                    .map_err(|e| socket_failure(&target, &e))
            }
            (None, None) => return None,
        };
        Some(opened.map(|(socket, target)| (socket, target, hostname)))
    }

    async fn tcp_by_name(&self, name: &str, port: u16) -> Result<(Socket, String), ConnectFailure> {
        let target = format!("{name}:{port}");
        let resolved = tokio::net::lookup_host((name, port)).await.map_err(|e| {
            ConnectFailure(format!(
                "cannot resolve the database host \"{name}\" ({e}): check database.url"
            ))
        })?;
        let mut last = ConnectFailure(format!(
            "the database host \"{name}\" resolves to no address: check database.url"
        ));
        for addr in resolved {
            match self.tcp(addr, &target).await {
                Ok(socket) => return Ok((socket, target)),
                Err(failure) => last = failure,
            }
        }
        Err(last)
    }

    /// One TCP connection with no delay and the configured keepalive (as tokio-postgres sets
    /// them up).
    async fn tcp(&self, addr: SocketAddr, target: &str) -> Result<Socket, ConnectFailure> {
        let stream =
            match tokio::time::timeout(self.handshake_deadline, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(socket_failure(target, &e)),
                Err(_) => return Err(no_answer(target, self.handshake_deadline)),
            };
        let tune = || -> io::Result<()> {
            stream.set_nodelay(true)?;
            let sock = SockRef::from(&stream);
            if let Some(timeout) = self.pg.get_tcp_user_timeout() {
                sock.set_tcp_user_timeout(Some(*timeout))?;
            }
            if self.pg.get_keepalives() {
                let mut keepalive = TcpKeepalive::new().with_time(self.pg.get_keepalives_idle());
                if let Some(interval) = self.pg.get_keepalives_interval() {
                    keepalive = keepalive.with_interval(interval);
                }
                if let Some(retries) = self.pg.get_keepalives_retries() {
                    keepalive = keepalive.with_retries(retries);
                }
                sock.set_tcp_keepalive(&keepalive)?;
            }
            Ok(())
        };
        tune().map_err(|e| socket_failure(target, &e))?;
        Ok(Either::Left(stream))
    }

    /// Every host of `cfg`, for messages.
    fn targets(&self, cfg: &tokio_postgres::Config) -> String {
        let hosts = cfg.get_hosts();
        let addrs = cfg.get_hostaddrs();
        let count = hosts.len().max(addrs.len());
        (0..count)
            .map(|i| {
                let port = port_of(cfg, i);
                match (hosts.get(i), addrs.get(i)) {
                    (Some(Host::Tcp(name)), _) => format!("{name}:{port}"),
                    (Some(Host::Unix(dir)), _) => {
                        dir.join(format!(".s.PGSQL.{port}")).display().to_string()
                    }
                    (None, Some(ip)) => format!("{ip}:{port}"),
                    (None, None) => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Why the session at `target` did not start, by the server's SQLSTATE.
    fn session_failure(
        &self,
        e: &SessionError,
        cfg: &tokio_postgres::Config,
        target: &str,
    ) -> ConnectFailure {
        let e = match e {
            SessionError::Pg(e) => e,
            SessionError::Other(text) => return ConnectFailure(text.clone()),
        };
        let Some(db) = e.as_db_error() else {
            return ConnectFailure(format!(
                "cannot open a session with {target}: {}",
                describe_pg_error(e)
            ));
        };
        let user = cfg.get_user().unwrap_or("postgres");
        let dbname = cfg.get_dbname().unwrap_or(user);
        let code = db.code();
        let cause = if *code == SqlState::INVALID_PASSWORD {
            format!("password authentication failed for user \"{user}\": check database.password")
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            format!(
                "the server at {target} refused role \"{user}\": check that the role exists and \
                 may log in, and that pg_hba.conf admits this host"
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            if self.creates_database {
                format!(
                    "database \"{dbname}\" does not exist: the daemon creates it at start \
                     (database.create_database) when the role has CREATEDB; or create it"
                )
            } else {
                format!(
                    "database \"{dbname}\" does not exist: create it, or set \
                     database.create_database: true"
                )
            }
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            format!(
                "the server at {target} has no connection slot left: lower database.pool_size + \
                 database.max_overflow, or raise the server's max_connections (or the role's \
                 CONNECTION LIMIT)"
            )
        } else if *code == SqlState::CANNOT_CONNECT_NOW {
            format!("the server at {target} is starting, stopping or recovering: wait for it")
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            format!(
                "role \"{user}\" may not connect to database \"{dbname}\": GRANT CONNECT ON \
                 DATABASE to it"
            )
        } else {
            format!("the server at {target} refused the session")
        };
        ConnectFailure(format!(
            "{cause} (server: {} [SQLSTATE {}])",
            db.message(),
            code.code()
        ))
    }
}
