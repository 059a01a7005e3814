//! The pieces of opening one session that are not the connector itself: the order hosts are
//! tried in, the TLS connector for one host, driving the connection task, checking
//! `target_session_attrs`, and turning a socket or server failure into a [`ConnectFailure`] that
//! says what to do.
//!
//! Must not: decide by a server message's text, or put the password in a message.

use std::io;
use std::time::Duration;

use tokio_postgres::config::{LoadBalanceHosts, TargetSessionAttrs};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::{ConnectFailure, Socket};

/// The TLS connector for one session to `hostname` (the name the certificate must be for).
pub(super) fn tls_for(
    make: &MakeRustlsConnect,
    hostname: &str,
) -> Result<<MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect, String> {
    MakeTlsConnect::<Socket>::make_tls_connect(&mut make.clone(), hostname)
        .map_err(|e| e.to_string())
}

/// The indices of `cfg`'s hosts in the order to try them.
pub(super) fn host_order(cfg: &tokio_postgres::Config) -> Vec<usize> {
    let count = cfg.get_hosts().len().max(cfg.get_hostaddrs().len());
    let mut order: Vec<usize> = (0..count).collect();
    if cfg.get_load_balance_hosts() == LoadBalanceHosts::Random {
        fastrand::shuffle(&mut order);
    }
    order
}

/// The port for host `i` of `cfg`: its own, else the one for all, else 5432.
pub(super) fn port_of(cfg: &tokio_postgres::Config, i: usize) -> u16 {
    let ports = cfg.get_ports();
    ports.get(i).or(ports.first()).copied().unwrap_or(5432)
}

/// Drives a session's connection until its client is dropped or the socket closes. Notices and
/// notifications are dropped, as diesel-async's own driver does.
pub(super) fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        // An error ends the session; its queries report it to their callers.
        while let Some(Ok(_)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {}
    });
}

/// `target_session_attrs=read-write` / `read-only`: the session must be of that kind.
pub(super) async fn check_session_attrs(
    client: &Client,
    wanted: TargetSessionAttrs,
    target: &str,
) -> Result<(), SessionError> {
    let read_only_wanted = match wanted {
        TargetSessionAttrs::ReadWrite => false,
        TargetSessionAttrs::ReadOnly => true,
        _ => return Ok(()),
    };
    let rows = client.simple_query("SHOW transaction_read_only").await?;
    let read_only = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
        _ => None,
    });
    if read_only == Some(read_only_wanted) {
        Ok(())
    } else {
        let kind = if read_only_wanted {
            "read-only"
        } else {
            "read-write"
        };
        Err(SessionError::Other(format!(
            "the server at {target} is not {kind} (target_session_attrs in database.url)"
        )))
    }
}

/// Why a session did not start: the server's or the driver's error, or one of ours.
pub(super) enum SessionError {
    Pg(tokio_postgres::Error),
    Other(String),
}

impl From<tokio_postgres::Error> for SessionError {
    fn from(e: tokio_postgres::Error) -> Self {
        SessionError::Pg(e)
    }
}

/// Why no session could be opened, and whether the server said the database does not exist
/// (SQLSTATE 3D000).
pub(super) struct OpenFailure {
    pub(super) failure: ConnectFailure,
    pub(super) missing_database: bool,
}

/// No answer from `target` within `after`.
pub(super) fn no_answer(target: &str, after: Duration) -> ConnectFailure {
    ConnectFailure(format!(
        "no answer from the database server at {target} within {after:?} \
         (database.connect_timeout): check the host and port, and any firewall in between"
    ))
}

/// The socket to `target` failed, by the error's kind.
pub(super) fn socket_failure(target: &str, e: &io::Error) -> ConnectFailure {
    ConnectFailure(match e.kind() {
        io::ErrorKind::ConnectionRefused => format!(
            "connection refused by {target}: is PostgreSQL running there and listening on this \
             address and port (listen_addresses, port)?"
        ),
        io::ErrorKind::NotFound => format!(
            "no PostgreSQL socket at {target}: is the server running, with this socket directory \
             and port?"
        ),
        io::ErrorKind::TimedOut => format!(
            "no answer from the database server at {target} (connection timed out): check the \
             host and port, and any firewall in between"
        ),
        _ => format!("cannot connect to the database server at {target}: {e}"),
    })
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
