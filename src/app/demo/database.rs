//! The demo's database: where it comes from, and what to tell the user when there is none.
//!
//! Owns: [`demo_database`] (the one place the demo gets a database), [`DemoDb`] and
//! [`DemoDbError`] with its advice. Must not: drop a database whose name does not end in
//! `_demo`, or wait without a deadline (invariant 4).

use std::fmt;
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::config::Config;
use crate::pg_cluster::{find_bindir, ClusterOptions, PgCluster};

/// How long PostgreSQL may take to drop the old demo database.
const RESET_DEADLINE: Duration = Duration::from_secs(30);

/// How long a throwaway cluster may take to `initdb` and start.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(150);

/// The database the demo syncs into.
#[derive(Debug)]
pub struct DemoDb {
    /// `database.url` for the demo's daemon and its verdict (no password: invariant 7).
    pub url: String,
    /// One line for the user: which database on which server.
    pub described: String,
    /// The throwaway cluster the database lives in, when no server answered: held until the
    /// demo ends, stopped and deleted when dropped.
    pub cluster: Option<PgCluster>,
}

/// Why the demo has no database; [`fmt::Display`] is the advice the user reads.
#[derive(Debug)]
pub enum DemoDbError {
    /// Nothing answers at the configured address (refused, no route, timed out).
    Unreachable { server: String, cause: String },
    /// A server answered and said no (login, permission, a missing `postgres` database).
    Refused { server: String, cause: String },
    /// The configured URL names no `_demo` database to reset (a bug of [`demo_url`]).
    NotADemoDatabase(String),
}

impl fmt::Display for DemoDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const POINT_AT_YOURS: &str = "point the demo at a PostgreSQL you have (it uses the \
            database name + `_demo`, and drops and re-creates that one only):\n      \
            TEMU_SYNC__DATABASE__URL=postgres://USER@HOST:5432/temu_sync temu-sync demo";
        match self {
            DemoDbError::Unreachable { server, cause } => write!(
                f,
                "no PostgreSQL answers at {server} ({cause}). The demo needs one. Either\n  \
                 - install one on this machine:  sudo apt install postgresql  (it listens on \
                 127.0.0.1:5432; run the demo again), or\n  - {POINT_AT_YOURS}"
            ),
            DemoDbError::Refused { server, cause } => write!(
                f,
                "PostgreSQL at {server} refused the demo: {cause}. The demo needs a role that \
                 may create and drop its database; {POINT_AT_YOURS}"
            ),
            DemoDbError::NotADemoDatabase(name) => {
                write!(f, "refusing to drop {name:?}: not a demo database")
            }
        }
    }
}

/// The one place the demo gets its database: the configured server, database name + `_demo`,
/// dropped first so that every demo starts from empty (the daemon creates it again). When no
/// server answers there and `own_cluster` allows it, a throwaway cluster of the installed
/// PostgreSQL server binaries ([`crate::pg_cluster`]: `initdb` in a temporary directory, as the
/// `postgres` user when we are root) — held in [`DemoDb::cluster`] and removed when the demo
/// ends. Without the binaries the advice of [`DemoDbError::Unreachable`] stands.
pub async fn demo_database(config: &Config, own_cluster: bool) -> Result<DemoDb, DemoDbError> {
    match configured_database(config).await {
        Err(DemoDbError::Unreachable { server, cause }) if own_cluster => {
            throwaway_cluster(server, cause).await
        }
        other => other,
    }
}

/// A cluster of our own, or the configured server's error (with why no cluster could start).
async fn throwaway_cluster(server: String, cause: String) -> Result<DemoDb, DemoDbError> {
    if find_bindir().is_err() {
        return Err(DemoDbError::Unreachable { server, cause });
    }
    let started = tokio::time::timeout(
        CLUSTER_DEADLINE,
        tokio::task::spawn_blocking(|| PgCluster::start(ClusterOptions::default())),
    )
    .await;
    let failed = |why: String| DemoDbError::Unreachable {
        server: server.clone(),
        cause: format!("{cause}; a throwaway cluster did not start either: {why}"),
    };
    match started {
        Ok(Ok(Ok(cluster))) => Ok(DemoDb {
            url: cluster.url("postgres", "temu_sync_demo"),
            described: format!(
                "no PostgreSQL at {server}, so a throwaway cluster on 127.0.0.1:{} \
                 (initdb in a temporary directory, removed when the demo ends)",
                cluster.port()
            ),
            cluster: Some(cluster),
        }),
        Ok(Ok(Err(e))) => Err(failed(e.to_string())),
        Ok(Err(e)) => Err(failed(format!("its start failed: {e}"))),
        Err(_) => Err(failed(format!(
            "not started within {} s",
            CLUSTER_DEADLINE.as_secs()
        ))),
    }
}

/// The configured server's `_demo` database, dropped so the demo starts from empty.
async fn configured_database(config: &Config) -> Result<DemoDb, DemoDbError> {
    let url = demo_url(&config.database.url);
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|_| DemoDbError::NotADemoDatabase(format!("{url} (not a PostgreSQL URL)")))?;
    if let Some(password) = &config.database.password {
        pg.password(password.expose());
    }
    let name = pg.get_dbname().unwrap_or("temu_sync_demo").to_string();
    if !name.ends_with("_demo") {
        return Err(DemoDbError::NotADemoDatabase(name));
    }
    let server = server_of(&pg);
    pg.dbname("postgres");
    pg.connect_timeout(config.database.connect_timeout);
    drop_database(&pg, &name)
        .await
        .map_err(|e| classify(e, server.clone()))?;
    Ok(DemoDb {
        described: format!("database {name} on {server}"),
        url,
        cluster: None,
    })
}

enum ResetFailure {
    TimedOut,
    Postgres(tokio_postgres::Error),
}

async fn drop_database(pg: &tokio_postgres::Config, name: &str) -> Result<(), ResetFailure> {
    let work = async {
        let (client, conn) = pg.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                name.replace('"', "\"\"")
            ))
            .await
    };
    match tokio::time::timeout(RESET_DEADLINE, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ResetFailure::Postgres(e)),
        Err(_) => Err(ResetFailure::TimedOut),
    }
}

/// A server's answer (it has a SQLSTATE) is a refusal; anything else means nothing answered.
fn classify(failure: ResetFailure, server: String) -> DemoDbError {
    match failure {
        ResetFailure::TimedOut => DemoDbError::Unreachable {
            server,
            cause: format!("no answer within {} s", RESET_DEADLINE.as_secs()),
        },
        ResetFailure::Postgres(e) => match e.as_db_error() {
            Some(db) => DemoDbError::Refused {
                server,
                cause: db.message().to_string(),
            },
            None => DemoDbError::Unreachable {
                server,
                cause: root_cause(&e),
            },
        },
    }
}

/// The innermost error's text (`Connection refused (os error 111)`), not tokio-postgres's
/// wrapper (`error connecting to server`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `host:port` of the first host, or the socket directory.
fn server_of(pg: &tokio_postgres::Config) -> String {
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => format!("{host}:{port}"),
        Some(tokio_postgres::config::Host::Unix(dir)) => format!("{}:{port}", dir.display()),
        None => format!("localhost:{port}"),
    }
}

/// The demo's database: the configured one with `_demo` appended to its name.
pub(super) fn demo_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let with = match base.rsplit_once('/') {
        Some((prefix, name)) if !name.is_empty() && prefix.contains("://") => {
            format!("{prefix}/{name}_demo")
        }
        _ => format!("{base}/temu_sync_demo"),
    };
    match query {
        Some(q) => format!("{with}?{q}"),
        None => with,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_database_gets_its_own_name() {
        assert_eq!(
            demo_url("postgres://postgres@127.0.0.1:5432/temu_sync"),
            "postgres://postgres@127.0.0.1:5432/temu_sync_demo"
        );
        assert_eq!(
            demo_url("postgres://u@h/db?sslmode=disable"),
            "postgres://u@h/db_demo?sslmode=disable"
        );
    }

    #[test]
    fn the_advice_names_both_ways_out() {
        let e = DemoDbError::Unreachable {
            server: "127.0.0.1:5432".into(),
            cause: "Connection refused (os error 111)".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("no PostgreSQL answers at 127.0.0.1:5432"),
            "{text}"
        );
        assert!(text.contains("apt install postgresql"), "{text}");
        assert!(text.contains("TEMU_SYNC__DATABASE__URL="), "{text}");
    }
}
