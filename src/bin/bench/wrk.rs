//! Load generation with `wrk` (an external tool on the PATH): one run's figures parsed from its
//! `--latency` output, and runs alternating between the daemon and the bare baseline so both see
//! the same machine. Knows nothing of what is behind the URLs.

use std::process::Command;

#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    pub errors: u64,
}

impl Load {
    /// Equal-length runs combined: mean rate and median, worst p99, summed counts.
    fn mean(runs: &[Load]) -> Load {
        let n = runs.len().max(1) as f64;
        Load {
            rps: runs.iter().map(|l| l.rps).sum::<f64>() / n,
            p50_ms: runs.iter().map(|l| l.p50_ms).sum::<f64>() / n,
            p99_ms: runs.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
            non_2xx: runs.iter().map(|l| l.non_2xx).sum(),
            errors: runs.iter().map(|l| l.errors).sum(),
        }
    }
}

fn parse_latency_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

fn wrk(url: &str, secs: u64, connections: u32) -> Load {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = Load::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            load.p50_ms = parse_latency_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            load.p99_ms = parse_latency_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            load.non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            load.errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    load
}

/// wrk against the daemon and the bare server alternately, `rounds` × `slice` s each, so both see
/// the same machine (other work, the phase of a sync). Returns (daemon, bare).
pub fn alternate(daemon_url: &str, bare_url: &str, slice: u64, conns: u32) -> (Load, Load) {
    let (mut daemon, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        daemon.push(wrk(daemon_url, slice, conns));
        bare.push(wrk(bare_url, slice, conns));
    }
    (Load::mean(&daemon), Load::mean(&bare))
}
