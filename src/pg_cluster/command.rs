//! Running the server's own programs: where they are (`pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`), as whom (the `postgres` user when we are root: PostgreSQL refuses
//! to run as root) and for how long at most (every program is killed at its deadline).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;

/// The folder that holds `initdb`, `pg_ctl` and `postgres`.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_all(d)) {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(ClusterError::BinariesNotFound)
}

/// Whom the server runs as: `None` is ourselves; as root, the `postgres` user's (uid, gid).
pub fn server_user() -> Result<Option<(u32, u32)>, ClusterError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|source| ClusterError::Io {
        what: "read the user database",
        path: "/etc/passwd".into(),
        source,
    })?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or(ClusterError::NoServerUser)
}

/// `program` from `bindir` as `user`, with a clean locale.
pub fn server_command(bindir: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bindir.join(program));
    cmd.env("LC_ALL", "C").env_remove("PGDATA");
    if let Some((uid, gid)) = user {
        // std drops root's supplementary groups when it sets the uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Runs `cmd` to its end, killing it at `deadline`; its output goes to `log` (appended).
pub fn run_bounded(
    mut cmd: Command,
    what: &str,
    deadline: Duration,
    log: &Path,
) -> Result<(), ClusterError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ClusterError::Io {
                what: "open the cluster's log",
                path: log.to_path_buf(),
                source,
            })
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .spawn()
        .map_err(|source| ClusterError::Io {
            what: "start a PostgreSQL program",
            path: PathBuf::from(what),
            source,
        })?;
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(ClusterError::Command {
                    what: what.to_string(),
                    status: status.to_string(),
                    output: tail(log, 12),
                })
            }
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ClusterError::Timeout {
                    what: what.to_string(),
                    deadline,
                    log: log.display().to_string(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => {
                return Err(ClusterError::Io {
                    what: "wait for a PostgreSQL program",
                    path: PathBuf::from(what),
                    source,
                })
            }
        }
    }
}

/// The last `n` lines of `path` (empty when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a plain system command (`mount`, `umount`) with a deadline; its combined output on failure.
pub fn system(program: &str, args: &[&str], deadline: Duration) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {deadline:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{program}: {e}")),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
