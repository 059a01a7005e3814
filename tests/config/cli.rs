//! The command line as an operator meets it: exit codes and messages for bad configuration,
//! `check-config`, `migrate` and `--help`.

use std::io::Write;
use std::process::{Command, Output};

use temu_sync::testkit::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

pub(super) fn run_with(yaml: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut file = tempfile::NamedTempFile::new().expect("temp config");
    file.write_all(yaml.as_bytes()).expect("write config");
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(file.path()).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_key_exits_78_naming_key_and_line() {
    let out = run_with(
        "http:\n  listen: 127.0.0.1:8080\ndatabase:\n  pool_sise: 10\n",
        &["run"],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("pool_sise"), "{err}");
    assert!(err.contains(":4:"), "names line 4: {err}");
}

#[test]
fn bad_duration_exits_78_with_what_was_expected() {
    let out = run_with("database:\n  pool_timeout: 30 parsecs\n", &["run"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("database.pool_timeout"), "{err}");
    assert!(err.contains(":2:"), "{err}");
    assert!(err.contains("expected a duration like 30s"), "{err}");
}

#[test]
fn missing_secret_exits_78_naming_the_variable() {
    let yaml = "apps:\n  - name: main\n    app_key: k\n    app_secret: {env: TEMU_SYNC_TEST_UNSET_SECRET}\n";
    let out = run_with(yaml, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("apps[0].app_secret"), "{err}");
    assert!(err.contains("TEMU_SYNC_TEST_UNSET_SECRET"), "{err}");
}

#[test]
fn check_config_reads_the_tls_ca_file() {
    let mut not_pem = tempfile::NamedTempFile::new().expect("temp file");
    not_pem.write_all(b"not a certificate\n").expect("write");
    let yaml = format!(
        "database:\n  url: \"postgres://postgres@db.internal:5432/temu?sslmode=require\"\n  \
         tls_ca_file: {}\n",
        not_pem.path().display()
    );
    let out = run_with(&yaml, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("database.tls_ca_file"), "{err}");
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn bad_environment_override_exits_78_naming_the_variable() {
    let out = run_with(
        "",
        &["check-config"],
        &[("TEMU_SYNC__DATABASE__POOL_SIZE", "lots")],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("TEMU_SYNC__DATABASE__POOL_SIZE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_prints_effective_config_with_secrets_masked() {
    let yaml =
        "apps:\n  - name: main\n    app_key: k\n    app_secret: {env: TEMU_SYNC_TEST_SECRET}\n";
    let out = run_with(
        yaml,
        &["check-config"],
        &[
            ("TEMU_SYNC_TEST_SECRET", "s3cr3t-value-never-printed"),
            ("TEMU_SYNC__DATABASE__POOL_SIZE", "12"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("pool_size: 12"), "{printed}");
    assert!(
        printed.contains("TEMU_SYNC_TEST_SECRET"),
        "names the reference: {printed}"
    );
    assert!(!printed.contains("s3cr3t-value-never-printed"));
    assert!(!stderr(&out).contains("s3cr3t-value-never-printed"));
}

#[test]
fn shipped_config_checks_out() {
    let out = Command::new(BIN)
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"),
            "check-config",
        ])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn missing_config_file_exits_78() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/temu-sync.yaml", "check-config"])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("/nonexistent/temu-sync.yaml"));
}

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check-config", "migrate", "--config", "78"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let db = TestDatabase::reserve("cli_migrate").expect("test database name");
    let yaml = format!(
        "log: {{ format: json }}\ndatabase:\n  url: \"{}\"\n",
        db.url()
    );
    let first = run_with(&yaml, &["migrate"], &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let printed = String::from_utf8_lossy(&first.stdout);
    let all = temu_sync::db::migrate::known_versions().len();
    assert!(
        printed.contains(&format!("applied {all} migration")),
        "{printed}"
    );
    let second = run_with(&yaml, &["migrate"], &[]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("applied 0 migration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_schema_newer_than_it_knows_with_78() {
    let (db, handle) = TestDatabase::migrated("cli_newer")
        .await
        .expect("test database");
    {
        use diesel_async::RunQueryDsl;
        let mut conn = handle.checkout("t").await.expect("checkout");
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000001')",
        )
        .execute(&mut *conn)
        .await
        .expect("insert");
    }
    handle.close();
    let yaml = format!(
        "log: {{ format: json }}\ndatabase:\n  url: \"{}\"\n",
        db.url()
    );
    let out = run_with(&yaml, &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    let known = temu_sync::db::migrate::known_versions();
    assert!(
        err.contains("29991231000001") && err.contains(known.last().unwrap()),
        "{err}"
    );
}

#[test]
fn migrate_against_an_unreachable_database_exits_69() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let yaml = "log: { format: json }\ndatabase:\n  url: \"postgres://postgres@127.0.0.1:1/x\"\n  connect_timeout: 2s\n";
    let out = run_with(yaml, &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(stderr(&out).contains("unavailable"), "{}", stderr(&out));
}

#[test]
fn unknown_fulfillment_type_exits_78_naming_key_value_and_allowed_values() {
    let yaml = "sync:\n  fulfillment_types: [fulfillBySeller, fulfillByDrone]\n";
    let out = run_with(yaml, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("sync.fulfillment_types"), "{err}");
    assert!(err.contains("fulfillByDrone"), "{err}");
    assert!(
        err.contains("fulfillBySeller") && err.contains("fulfillByCooperativeWarehouse"),
        "names the allowed values: {err}"
    );
    let out = run_with("sync:\n  fulfillment_types: []\n", &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("at least one"), "{}", stderr(&out));
}
