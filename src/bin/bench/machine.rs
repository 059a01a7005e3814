//! The machine the figures were taken on (CPU, cores, RAM, PostgreSQL version), for the table's
//! notes: figures from a shared 2-core machine mean little without it.

use std::process::Command;

/// One line: CPU model, cores, RAM, the local PostgreSQL's version.
pub fn machine_notes() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GB RAM", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let pg = Command::new("psql")
        .args([
            "-X",
            "-tA",
            "-d",
            "postgres://postgres@127.0.0.1:5432/postgres",
            "-c",
            "SHOW server_version",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {total}, PostgreSQL {pg} on the same machine; the simulator runs inside the bench process")
}
