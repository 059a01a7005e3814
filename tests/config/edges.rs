//! Edge values from outside (issue 12 item 3): every value `check-config` accepts, `run` can start
//! with, and every value out of its documented range is exit 78 naming the key and the range —
//! for `check-config` and `run` alike, never a panic (101) or a restart loop (69).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli::{run_with, stderr};

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

/// `temu-sync run` with `yaml`, killed if it has not exited within 30 s (a `run` that accepted
/// the configuration would run on): the output, with no exit code when it had to be killed.
fn run_bounded(yaml: &str, env: &[(&str, &str)]) -> Output {
    let mut file = tempfile::NamedTempFile::new().expect("temp config");
    file.write_all(yaml.as_bytes()).expect("write config");
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(file.path()).arg("run");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("child output")
}

const SHOP: &str = "\
apps:
  - name: main
    app_key: k1
    app_secret: app-secret-for-tests
shops:
  - name: us-main
    region: us
    app: main
    access_token: token-for-tests
";

/// `extra` merged in front of one app and one shop.
fn config(extra: &str) -> String {
    format!("{extra}{SHOP}")
}

fn both(yaml: &str) -> [Output; 2] {
    // `run` must refuse before it binds or connects: an unusable database URL proves it never got
    // that far (it would exit 69 or hang on the database, not 78).
    let env = [(
        "TEMU_SYNC__DATABASE__URL",
        "postgres://nobody@127.0.0.1:1/none",
    )];
    [
        run_with(yaml, &["check-config"], &env),
        run_bounded(yaml, &env),
    ]
}

/// Both commands exit 78 and name every one of `needles` on stderr.
fn refused(yaml: &str, needles: &[&str]) {
    for (out, command) in both(yaml).iter().zip(["check-config", "run"]) {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(78), "{command}: {err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{command} must name {needle:?}: {err}"
            );
        }
        assert!(!err.contains("panicked"), "{command} panicked: {err}");
    }
}

#[test]
fn a_duration_longer_than_ten_years_is_refused_naming_the_key() {
    refused(
        &config("sync:\n  settle: 300000y\n"),
        &["sync.settle", "\"300000y\"", "at most 10 years (3650d)"],
    );
    refused(
        &config("http:\n  request_timeout: 20000y\n"),
        &["http.request_timeout", "\"20000y\"", "at most 10 years"],
    );
}

#[test]
fn huge_counts_are_refused_naming_the_key_and_the_range() {
    refused(
        &config("database:\n  pool_size: 4294967295\n  max_overflow: 1\n"),
        &["database.pool_size", "1 to 1000"],
    );
    refused(
        &config("temu:\n  max_connections: 18446744073709551615\n"),
        &["temu.max_connections", "1 to 1024"],
    );
    refused(
        &config("sync:\n  max_concurrent_runs: 18446744073709551615\n"),
        &["sync.max_concurrent_runs", "1 to 1024"],
    );
    refused(
        &config("supervisor:\n  max_missed_pings: 4294967295\n"),
        &["supervisor.max_missed_pings", "1 to 100"],
    );
}

#[test]
fn a_batch_too_large_for_postgresqls_bind_parameters_is_refused() {
    refused(
        &config("sync:\n  batch_size: 100000\n"),
        &["sync.batch_size", "1 to 1000"],
    );
}

#[test]
fn pool_size_and_overflow_together_are_bounded() {
    refused(
        &config("database:\n  pool_size: 600\n  max_overflow: 600\n"),
        &["database.max_overflow", "at most 1000"],
    );
}

#[test]
fn a_base_url_the_http_client_cannot_use_is_refused_without_echoing_it() {
    let yaml = SHOP.replace(
        "    access_token: token-for-tests\n",
        "    access_token: token-for-tests\n    base_url: \"http://user:pa55word@a b/x\"\n",
    );
    refused(&yaml, &["shops[0].base_url", "not a valid URL"]);
    for out in both(&yaml) {
        assert!(!stderr(&out).contains("pa55word"), "{}", stderr(&out));
    }
}

#[test]
fn one_app_key_with_two_budgets_is_refused() {
    let yaml = "\
apps:
  - name: main
    app_key: same-key
    app_secret: app-secret-for-tests
    qps: 20
  - name: second
    app_key: same-key
    app_secret: app-secret-for-tests
    qps: 10
shops:
  - name: us-main
    region: us
    app: main
    access_token: token-for-tests
";
    refused(yaml, &["apps[1].qps", "same app_key"]);
}

#[test]
fn the_largest_accepted_values_check_out() {
    let yaml = config(
        "database:\n  pool_size: 500\n  max_overflow: 500\nsync:\n  batch_size: 1000\n  \
         max_concurrent_runs: 1024\n  settle: 3650d\ntemu:\n  max_connections: 1024\n",
    );
    let out = run_with(&yaml, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
