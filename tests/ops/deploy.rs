//! The deployment files are valid: `systemd-analyze verify` on the unit (ExecStart pointed at the
//! built binary, since verify requires it to exist), `promtool check rules` and `promtool test
//! rules` on the alert rules. A missing tool FAILS the test with what to install — CI installs
//! both (`.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tool args…` in `dir`; panics with its output when it fails or is missing.
fn run(tool: &str, install_hint: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("`{tool}` is not available ({e}): install it with `{install_hint}` (CI does this in .ci/run)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(root().join("deploy/temu-sync.service")).expect("unit");
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=",
        "LoadCredential=",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(needed), "the unit sets {needed}");
    }
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim()
            .to_string()
    };
    let secs = |v: String| humantime::parse_duration(&v).expect("duration").as_secs();
    // Above the default supervisor.shutdown_timeout (30 s).
    assert!(secs(line("TimeoutStopSec=")) > 30);
    // RestartSec × StartLimitBurst must fit in StartLimitIntervalSec, or a crash loop stops early.
    let restart = secs(line("RestartSec="));
    let burst: u64 = line("StartLimitBurst=").parse().expect("burst");
    let interval = secs(format!("{}s", line("StartLimitIntervalSec=")));
    assert!(
        restart >= 1 && restart * burst <= interval,
        "{restart} × {burst} vs {interval}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let rewritten = unit.replace("/usr/local/bin/temu-sync", BIN);
    assert_ne!(rewritten, unit, "ExecStart names /usr/local/bin/temu-sync");
    std::fs::write(dir.path().join("temu-sync.service"), rewritten).expect("write unit");
    let text = run(
        "systemd-analyze",
        "apt-get install -y systemd",
        &["verify", "temu-sync.service"],
        dir.path(),
    );
    assert!(
        !text.contains("temu-sync.service:"),
        "systemd-analyze complains about the unit:\n{text}"
    );
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let dir = root().join("deploy/prometheus");
    run(
        "promtool",
        "apt-get install -y prometheus",
        &["check", "rules", "alerts.yml"],
        &dir,
    );
    run(
        "promtool",
        "apt-get install -y prometheus",
        &["test", "rules", "alerts_test.yml"],
        &dir,
    );
}
