//! `temu-sync demo` as a user runs it: without a terminal it prints plain progress lines and its
//! verdict; with no PostgreSQL reachable it runs on a throwaway cluster of its own (removed
//! afterwards), or — told not to — says what to do and exits 69.

use std::process::Command;
use std::time::Duration;

use temu_sync::testkit::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

/// Runs the demo with `url` as `database.url`, stderr and stdout piped (no terminal); a deadline
/// on the whole run.
fn demo(url: &str, args: &[&str]) -> (Option<i32>, String, u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "").expect("write config");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("demo")
        .args(args)
        .env("TEMU_SYNC__DATABASE__URL", url)
        // Each demo its own port: the tests run in parallel (the default is 127.0.0.1:8080).
        .env(
            "TEMU_SYNC__HTTP__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start demo");
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait demo").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("demo did not end within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("demo output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, pid)
}

#[test]
fn demo_without_a_terminal_prints_plain_lines_and_its_verdict() {
    let db = format!("temu_sync_ops_{}", std::process::id());
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (code, text, _) = demo(&url, &["--shops", "1", "--orders", "200", "--seed", "7"]);
    assert_eq!(code, Some(0), "demo ends OK:\n{text}");
    assert!(text.contains("demo: "), "plain progress lines:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escapes without a terminal:\n{text}"
    );
    assert!(text.contains("0 missing, 0 stale, 0 extra"), "{text}");
    assert!(
        !text.contains(" INFO "),
        "the daemon's log stays at warn:\n{text}"
    );
}

#[test]
fn demo_without_postgresql_says_what_to_do() {
    // A free port: nothing listens there.
    let url = format!("postgres://postgres@127.0.0.1:{}/temu_sync", free_port());
    let (code, text, _) = demo(
        &url,
        &["--shops", "1", "--orders", "10", "--no-own-cluster"],
    );
    assert_eq!(code, Some(69), "unreachable database: exit 69\n{text}");
    assert!(text.contains("apt install postgresql"), "{text}");
    assert!(text.contains("TEMU_SYNC__DATABASE__URL"), "{text}");
}

#[test]
fn demo_without_postgresql_runs_on_a_throwaway_cluster_and_removes_it() {
    if temu_sync::pg_cluster::find_bindir().is_err() {
        eprintln!("skipped: no PostgreSQL server binaries (apt install postgresql)");
        return;
    }
    let url = format!("postgres://postgres@127.0.0.1:{}/temu_sync", free_port());
    let (code, text, pid) = demo(&url, &["--shops", "1", "--orders", "100", "--seed", "3"]);
    assert_eq!(
        code,
        Some(0),
        "the demo ends OK on its own cluster:\n{text}"
    );
    assert!(text.contains("throwaway cluster"), "it says so:\n{text}");
    assert!(text.contains("0 missing, 0 stale, 0 extra"), "{text}");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("temu-sync-pg-{pid}-"))
        })
        .collect();
    assert!(left.is_empty(), "the cluster's files are removed: {left:?}");
}
