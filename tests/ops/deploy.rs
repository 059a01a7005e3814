//! The deployment files are valid: `systemd-analyze verify` on the unit (ExecStart pointed at the
//! built binary, since verify requires it to exist), `promtool check rules` and `promtool test
//! rules` on the alert rules, and the Debian package `scripts/build-deb.sh` makes holds what
//! docs/OPERATIONS.md says. A missing tool FAILS the test with what to install — CI installs
//! them (`.ci/run`). The unit and the package under a real systemd: tests/systemd.

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
        "User=temu-sync",
        "StateDirectory=temu-sync",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=",
        "SystemCallFilter=",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(needed), "the unit sets {needed}");
    }
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    // A DynamicUser= cannot read the root:temu-sync 0640 config; a LoadCredential= of a file
    // that may not exist fails the start (243/CREDENTIALS): credentials go in a drop-in.
    for absent in ["DynamicUser=", "LoadCredential="] {
        assert!(
            !settings.iter().any(|l| l.starts_with(absent)),
            "the unit must not set {absent}"
        );
    }
    // The user the package creates is the unit's.
    let sysusers =
        std::fs::read_to_string(root().join("packaging/temu-sync.sysusers")).expect("sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with("u temu-sync ")));
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
    let rewritten = unit.replace("ExecStart=/usr/bin/temu-sync", &format!("ExecStart={BIN}"));
    assert_ne!(rewritten, unit, "ExecStart names /usr/bin/temu-sync");
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

/// The paths the package installs (docs/OPERATIONS.md lists them), directories left out.
const PACKAGED: [&str; 12] = [
    "./etc/temu-sync/config.yaml",
    "./lib/systemd/system/temu-sync.service",
    "./usr/bin/temu-sync",
    "./usr/lib/sysusers.d/temu-sync.conf",
    "./usr/share/doc/temu-sync/CONFIGURATION.md",
    "./usr/share/doc/temu-sync/OPERATIONS.md",
    "./usr/share/doc/temu-sync/README.md",
    "./usr/share/doc/temu-sync/changelog.Debian.gz",
    "./usr/share/doc/temu-sync/copyright",
    "./usr/share/doc/temu-sync/examples/credentials.conf",
    "./usr/share/temu-sync/prometheus/alerts.yml",
    "./usr/share/temu-sync/prometheus/scrape.yml",
];

#[test]
fn debian_package_holds_what_the_guide_says() {
    let out = tempfile::tempdir().expect("temp dir");
    let out_dir = out.path().to_str().expect("utf-8 temp path");
    let built = run(
        "scripts/build-deb.sh",
        "apt-get install -y dpkg-dev",
        &["--binary", BIN, "--fast", "--out", out_dir],
        &root(),
    );
    let deb = built
        .lines()
        .rfind(|l| l.ends_with(".deb"))
        .expect("the script names the .deb")
        .to_string();
    let field = |name: &str| {
        run(
            "dpkg-deb",
            "apt-get install -y dpkg",
            &["-f", &deb, name],
            &root(),
        )
    };
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION")),
        "the version is Cargo.toml's"
    );
    let depends = field("Depends");
    for needed in ["adduser", "ca-certificates", "procps", "libc6"] {
        assert!(depends.contains(needed), "Depends has {needed}: {depends}");
    }
    let listing = run(
        "dpkg-deb",
        "apt-get install -y dpkg",
        &["-c", &deb],
        &root(),
    );
    let files: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let mut got = files.clone();
    got.sort();
    assert_eq!(got, PACKAGED, "the package's files:\n{listing}");
    // The config is 0640 from the start; postinst gives it to the group temu-sync.
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r----- root/root")
                && l.ends_with("./etc/temu-sync/config.yaml")),
        "{listing}"
    );
    let control = tempfile::tempdir().expect("temp dir");
    let control_dir = control.path().to_str().expect("utf-8 temp path");
    run(
        "dpkg-deb",
        "apt-get install -y dpkg",
        &["-e", &deb, control_dir],
        &root(),
    );
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/temu-sync/config.yaml");
    for script in ["postinst", "prerm", "postrm"] {
        run(
            "sh",
            "apt-get install -y dash",
            &["-n", &format!("{control_dir}/{script}")],
            &root(),
        );
    }
}
