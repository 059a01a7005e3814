//! A private PostgreSQL cluster: `initdb` into a temporary directory, a server on a free port
//! listening on 127.0.0.1 only, driven with `pg_ctl` (start, stop fast/immediate, crash-restart),
//! administered over tokio-postgres, and removed when dropped (immediate stop, unmount, delete).
//!
//! The fault matrix uses it for faults the shared server must never suffer (crash, stop, full
//! disk, read-only database, exhausted connection slots); the quick start could use it to run
//! without an installed database. So it lives in the library, not the test kit, and depends on
//! nothing test-only.
//!
//! Authentication (`pg_hba.conf`): `postgres` and every role are trusted on 127.0.0.1, except
//! members of the role `scram_users`, who must give their password (SCRAM-SHA-256) — see
//! [`PgCluster::create_password_role`].
//!
//! Owns: the cluster's files, processes and mounts. Must not: touch the machine's own server, or
//! wait without a deadline (every program has one; see `command.rs`).

mod command;
mod error;

use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::NoTls;

pub use command::find_bindir;
pub use error::ClusterError;

/// How long `initdb` may take.
const INITDB_DEADLINE: Duration = Duration::from_secs(120);
/// How long a start, stop or restart may take (`pg_ctl -t`, and our kill after that).
const PG_CTL_DEADLINE: Duration = Duration::from_secs(60);
/// The role whose members log in with a password.
pub const SCRAM_GROUP: &str = "scram_users";

/// How the cluster is set up.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `max_connections` (the superuser keeps its 3 reserved slots on top of the others').
    pub max_connections: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            max_connections: 60,
        }
    }
}

/// How to stop the server (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Sessions are terminated, then a clean shutdown checkpoint.
    Fast,
    /// Every process killed at once, no checkpoint: the next start recovers from the WAL, as
    /// after a crash.
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A running (or stopped) private cluster; dropping it stops the server and deletes its files.
pub struct PgCluster {
    bindir: PathBuf,
    user: Option<(u32, u32)>,
    root: PathBuf,
    port: u16,
    options: ClusterOptions,
    mounts: Vec<PathBuf>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("root", &self.root)
            .field("port", &self.port)
            .finish()
    }
}

impl PgCluster {
    /// `initdb` into a new temporary directory and start the server on a free port.
    pub fn start(options: ClusterOptions) -> Result<Self, ClusterError> {
        let bindir = find_bindir()?;
        let user = command::server_user()?;
        let root = std::env::temp_dir().join(format!(
            "temu-sync-pg-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let mut cluster = Self {
            bindir,
            user,
            root,
            port: 0,
            options,
            mounts: Vec::new(),
        };
        cluster.make_dir(&cluster.root.clone())?;
        cluster.initdb()?;
        cluster.port = free_port()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://user@127.0.0.1:port/db` (a password, when the role has one, goes elsewhere:
    /// the daemon's `database.password`).
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// The superuser's URL of the `postgres` database.
    pub fn admin_url(&self) -> String {
        self.url("postgres", "postgres")
    }

    /// The server's log (for test failures).
    pub fn log_tail(&self, lines: usize) -> String {
        command::tail(&self.log_path(), lines)
    }

    /// Starts the stopped server (waits until it accepts connections).
    pub fn start_server(&self) -> Result<(), ClusterError> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c max_connections={} -c fsync=off -c full_page_writes=off -c shared_buffers=16MB",
            self.port,
            self.root.display(),
            self.options.max_connections
        );
        let log = self.log_path();
        self.pg_ctl(
            &["start", "-l", &log.display().to_string(), "-o", &opts],
            "pg_ctl start",
        )
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate`, waiting until it is down).
    pub fn stop(&self, mode: StopMode) -> Result<(), ClusterError> {
        self.pg_ctl(&["stop", "-m", mode.as_str()], "pg_ctl stop")
    }

    /// A crash and recovery: every server process killed at once, then started again (recovery
    /// from the WAL), waiting until it accepts connections.
    pub fn restart_immediate(&self) -> Result<(), ClusterError> {
        self.stop(StopMode::Immediate)?;
        self.start_server()
    }

    /// A superuser session on `db` (connect deadline 10 s).
    pub async fn admin_on(&self, db: &str) -> Result<tokio_postgres::Client, ClusterError> {
        let mut cfg: tokio_postgres::Config = self
            .url("postgres", db)
            .parse()
            .map_err(|e: tokio_postgres::Error| ClusterError::Sql(e.to_string()))?;
        cfg.connect_timeout(Duration::from_secs(10))
            .application_name("pg_cluster-admin");
        let (client, conn) = cfg
            .connect(NoTls)
            .await
            .map_err(|e| ClusterError::Sql(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs `sql` (one or more statements) as the superuser on `db`, within 30 s.
    pub async fn execute(&self, db: &str, sql: &str) -> Result<(), ClusterError> {
        let work = async {
            let client = self.admin_on(db).await?;
            client
                .batch_execute(sql)
                .await
                .map_err(|e| ClusterError::Sql(format!("{e}: {sql}")))
        };
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .map_err(|_| ClusterError::Sql(format!("no answer within 30 s: {sql}")))?
    }

    /// A login role that must authenticate with `password` (SCRAM-SHA-256).
    pub async fn create_password_role(
        &self,
        role: &str,
        password: &str,
    ) -> Result<(), ClusterError> {
        let sql = format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SCRAM_GROUP}') \
             THEN CREATE ROLE {SCRAM_GROUP} NOLOGIN; END IF; END$$; \
             CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {SCRAM_GROUP}",
            quote_ident(role),
            quote_literal(password)
        );
        self.execute("postgres", &sql).await
    }

    /// A tablespace `name` on a tmpfs of `size_mb` MB of its own (for a full disk without filling
    /// the WAL's disk: data files fail to grow, the server stays up). Needs root.
    pub async fn create_small_tablespace(
        &mut self,
        name: &str,
        size_mb: u32,
    ) -> Result<PathBuf, ClusterError> {
        let path = self.root.join(format!("ts-{name}"));
        self.make_dir(&path)?;
        let size = format!("size={size_mb}m,mode=0700");
        command::system(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &size,
                "tmpfs",
                &path.display().to_string(),
            ],
            Duration::from_secs(10),
        )
        .map_err(|output| ClusterError::Mount {
            size_mb,
            path: path.clone(),
            output,
        })?;
        self.mounts.push(path.clone());
        self.give_to_server_user(&path)?;
        let sql = format!(
            "CREATE TABLESPACE {} LOCATION {}",
            quote_ident(name),
            quote_literal(&path.display().to_string())
        );
        self.execute("postgres", &sql).await?;
        Ok(path)
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The output of initdb and pg_ctl (ours; the server's own log is the postgres user's).
    fn tools_log(&self) -> PathBuf {
        self.root.join("tools.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut cmd = command::server_command(&self.bindir, "initdb", self.user);
        cmd.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        command::run_bounded(cmd, "initdb", INITDB_DEADLINE, &self.tools_log())?;
        let hba = format!(
            "# written by temu-sync's pg_cluster\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all +{SCRAM_GROUP} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n\
             local all all trust\n"
        );
        let path = data.join("pg_hba.conf");
        std::fs::write(&path, hba).map_err(|source| ClusterError::Io {
            what: "write pg_hba.conf",
            path,
            source,
        })?;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str], what: &str) -> Result<(), ClusterError> {
        let mut cmd = command::server_command(&self.bindir, "pg_ctl", self.user);
        let secs = PG_CTL_DEADLINE.as_secs().to_string();
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", &secs])
            .args(args);
        // pg_ctl's own -t ends its wait; ours is a little longer, for the process itself.
        let deadline = PG_CTL_DEADLINE + Duration::from_secs(5);
        command::run_bounded(cmd, what, deadline, &self.tools_log()).map_err(|e| match e {
            ClusterError::Command {
                what,
                status,
                output,
            } => ClusterError::Command {
                what,
                status,
                output: format!("{output}\nserver log:\n{}", self.log_tail(12)),
            },
            other => other,
        })
    }

    /// Creates `path` (mode 0700) owned by the server's user.
    fn make_dir(&self, path: &Path) -> Result<(), ClusterError> {
        std::fs::create_dir_all(path).map_err(|source| ClusterError::Io {
            what: "create the cluster's directory",
            path: path.to_path_buf(),
            source,
        })?;
        self.give_to_server_user(path)
    }

    fn give_to_server_user(&self, path: &Path) -> Result<(), ClusterError> {
        let io = |source| ClusterError::Io {
            what: "hand the cluster's directory to the postgres user",
            path: path.to_path_buf(),
            source,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        if let Some((uid, gid)) = self.user {
            chown(path, Some(uid), Some(gid)).map_err(io)?;
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.stop(StopMode::Immediate);
        }
        for mount in self.mounts.drain(..).rev() {
            let path = mount.display().to_string();
            let _ = command::system("umount", &["-l", &path], Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A port nobody listens on right now (the server binds it a moment later).
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| ClusterError::Io {
            what: "find a free port",
            path: "127.0.0.1:0".into(),
            source,
        })
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
