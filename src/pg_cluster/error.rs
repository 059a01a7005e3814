//! Why a private PostgreSQL cluster could not be made or driven, each with what to do.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries not found (looked in `pg_config --bindir` and \
         /usr/lib/postgresql/*/bin for initdb, pg_ctl and postgres): apt install postgresql"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but there is no `postgres` user to run the server as \
         (PostgreSQL refuses to run as root): apt install postgresql creates it, or run as a normal user"
    )]
    NoServerUser,
    #[error("{what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}); its output ends:\n{output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
    #[error("{what} did not finish within {deadline:?} (killed); see {log}")]
    Timeout {
        what: String,
        deadline: Duration,
        log: String,
    },
    #[error(
        "could not mount a {size_mb} MB tmpfs at {path}: {output} \
         (needs root or CAP_SYS_ADMIN; without it, use a cluster without a small tablespace)"
    )]
    Mount {
        size_mb: u32,
        path: PathBuf,
        output: String,
    },
    #[error("admin SQL on the private cluster failed: {0}")]
    Sql(String),
}
