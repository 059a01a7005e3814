//! Issue 6 — the fault matrix: every fault we can produce on this machine, against the real
//! daemon binary (a separate process), the local PostgreSQL and the in-process simulator, through
//! the fault-injecting TCP proxy where the network is involved.
//!
//! Each scenario asserts: the process stays up (or exits with the documented code and a restart
//! recovers); `/health` reflects the fault (database faults: within one ping interval plus the
//! ping timeout) and passes again after it; the database ends equal to the simulator's ground
//! truth (no record lost, none duplicated); no file-descriptor or PostgreSQL-connection growth;
//! no panic in the log.
//!
//! One test per scenario, named after its row with `_` for `-` (row `pg-blackhole` → test
//! `pg_blackhole`): `cargo test --test fault_matrix pg_blackhole` runs that one. Scenarios take
//! turns, one at a time (`report::take_turn`). Each prints its row (to stderr, also without
//! `--nocapture`); the rows finished so far are written as a table to `target/fault-matrix.md`,
//! and once all of them have run (`cargo test --test fault_matrix`) the whole table is printed.
//! `FAULT_MATRIX_SIGKILLS=20` repeats the SIGKILL scenario 20 times (default 3 in CI).
//!
//! Modules: `report` (rows, table, turns), `observe` (what `/health`, `/proc` and PostgreSQL
//! say), `world` (one scenario's world and the checks every scenario ends with), the families
//! `pg_faults`, `api_faults`, `process_faults`, and `soak` (opt-in, scripts/soak.sh).

#[path = "../sync_common/mod.rs"]
mod sync_common;

mod api_faults;
mod observe;
mod pg_faults;
mod process_faults;
mod report;
mod soak;
mod world;

/// Declares the scenarios in table order: `test_name: "row-name", "injected as" => body;`.
/// Each becomes a `#[tokio::test]` that runs `body` on its turn; `SCENARIOS` lists the row names.
macro_rules! scenarios {
    ($($test:ident: $name:literal, $how:literal => $body:path;)+) => {
        /// Every scenario's row name, in table order.
        pub const SCENARIOS: &[&str] = &[$($name),+];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                report::run_scenario($name, $how, |mut row| async move {
                    $body(&mut row).await;
                    row
                })
                .await;
            }
        )+
    };
}

scenarios! {
    pg_restart: "pg-restart",
        "proxy Refuse + pg_terminate_backend of the daemon's sessions, 3 s, then Pass"
        => pg_faults::pg_restart;
    pg_terminate: "pg-terminate",
        "pg_terminate_backend of every daemon session, 5× in 1.5 s, mid-write"
        => pg_faults::pg_terminate;
    pg_blackhole: "pg-blackhole",
        "proxy Blackhole 4 s (connections open, no bytes)"
        => pg_faults::pg_blackhole;
    pg_reset: "pg-reset",
        "proxy cuts every open connection 8× in 3 s"
        => pg_faults::pg_resets;
    pg_lock: "pg-lock",
        "another session holds ACCESS EXCLUSIVE on orders; lock_timeout 1 s"
        => pg_faults::pg_lock;
    pg_conn_limit: "pg-conn-limit",
        "role CONNECTION LIMIT 4, four other clients hold the slots, 2 s"
        => pg_faults::pg_conn_limit;
    api_slow: "api-slow",
        "every answer stalls 5 s > read_timeout 3 s, for 10 s; breaker_threshold 2"
        => api_faults::api_slow;
    api_reset: "api-reset",
        "every connection reset (RST), 3 s"
        => api_faults::api_reset;
    api_5xx: "api-5xx",
        "every answer 502/503, 3 s"
        => api_faults::api_5xx;
    api_429: "api-429",
        "every answer 429 Retry-After 1, 3 s"
        => api_faults::api_429;
    api_bad_body: "api-bad-body",
        "every body malformed or truncated, 3 s"
        => api_faults::api_bad_body;
    api_4000000_burst: "api-4000000-burst",
        "next 30 answers 4000000"
        => api_faults::api_4000000_burst;
    api_4000004_sustained: "api-4000004-sustained",
        "next 80 answers 4000004"
        => api_faults::api_4000004_sustained;
    api_clock_skew: "api-clock-skew",
        "simulator clock +900 s (3000011 on every call), from boot"
        => api_faults::api_skew;
    api_token_expired: "api-token-expired",
        "the shop's token expired a day ago, from boot"
        => api_faults::api_token;
    sigterm: "sigterm",
        "SIGTERM mid-run, then restart"
        => process_faults::sigterm;
    sigkill: "sigkill",
        "SIGKILL at random points, restart each time (FAULT_MATRIX_SIGKILLS)"
        => process_faults::sigkill;
    two_daemons: "two-daemons",
        "two daemons on one database, SIGKILL one mid-run"
        => process_faults::two_daemons;
}

/// The soak (scripts/soak.sh runs `--ignored --exact soak`); it takes a turn like a scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with scripts/soak.sh"]
async fn soak() {
    let _turn = report::take_turn().await;
    soak::run().await;
}
