//! Environment overrides (`TEMU_SYNC__…`): typed by their field, building list entries and
//! secret references, and errors naming the variable.
//!
//! Owns the override cases; the environment is a lookup passed in, never the process's.

use std::time::Duration;

use temu_sync::config::IssueOrigin;

use crate::{err, load_env, SECRET_VALUE};

#[test]
fn env_override_changes_values_typed_by_their_field() {
    let c = load_env(
        "database:\n  pool_size: 3\napps:\n  - name: main\n    app_key: \"0123\"\n    app_secret: x\n",
        &[],
        &[
            ("TEMU_SYNC__DATABASE__POOL_SIZE", "20"),
            ("TEMU_SYNC__DATABASE__POOL_TIMEOUT", "45s"),
            ("TEMU_SYNC__DATABASE__CREATE_DATABASE", "false"),
            ("TEMU_SYNC__LOG__LEVEL", "debug"),
            ("TEMU_SYNC__APPS__0__QPS", "5"),
            ("PATH", "/usr/bin"),
            ("TEMU_SYNC_ADMIN_TOKEN", "not an override (single underscore)"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.database.pool_size, 20);
    assert_eq!(c.database.pool_timeout, Duration::from_secs(45));
    assert!(!c.database.create_database);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.apps[0].qps, 5);
    // Values from the file keep their text through the override pass.
    assert_eq!(c.apps[0].app_key, "0123");
    assert_eq!(c.apps[0].app_secret.expose(), "x");
}

#[test]
fn env_override_can_build_list_entries_and_secret_references() {
    let c = load_env(
        "",
        &[("TOKEN_A", "tok-a"), ("APP_SECRET", SECRET_VALUE)],
        &[
            ("TEMU_SYNC__APPS__0__NAME", "main"),
            ("TEMU_SYNC__APPS__0__APP_KEY", "00123"),
            ("TEMU_SYNC__APPS__0__APP_SECRET", "{env: APP_SECRET}"),
            ("TEMU_SYNC__SHOPS__0__NAME", "us-main"),
            ("TEMU_SYNC__SHOPS__0__REGION", "us"),
            ("TEMU_SYNC__SHOPS__0__APP", "main"),
            ("TEMU_SYNC__SHOPS__0__ACCESS_TOKEN__ENV", "TOKEN_A"),
            ("TEMU_SYNC__SHOPS__0__STREAMS", "[orders]"),
            ("TEMU_SYNC__SHOPS__0__BASE_URL", "http://127.0.0.1:9000"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.apps[0].app_key, "00123");
    assert_eq!(c.apps[0].app_secret.expose(), SECRET_VALUE);
    assert_eq!(c.shops[0].access_token.expose(), "tok-a");
    assert_eq!(c.shops[0].streams.len(), 1);
    assert_eq!(
        c.shops[0].base_url.as_deref(),
        Some("http://127.0.0.1:9000")
    );
}

#[test]
fn env_override_of_unknown_key_names_the_variable() {
    let e = err(load_env(
        "database:\n  pool_size: 3\n",
        &[],
        &[("TEMU_SYNC__DATABASE__POOL_SIZ", "20")],
    ));
    let text = e.to_string();
    assert!(text.contains("TEMU_SYNC__DATABASE__POOL_SIZ"), "{text}");
    assert!(text.contains("database.pool_siz"), "{text}");
    assert!(text.contains("unknown key"), "{text}");
    assert_eq!(
        e.issues()[0].origin,
        IssueOrigin::Env {
            var: "TEMU_SYNC__DATABASE__POOL_SIZ".to_string()
        }
    );

    let text = err(load_env("", &[], &[("TEMU_SYNC__NOPE__X", "1")])).to_string();
    assert!(text.contains("TEMU_SYNC__NOPE__X"), "{text}");
}

#[test]
fn env_override_with_bad_value_names_the_variable() {
    let text = err(load_env(
        "",
        &[],
        &[("TEMU_SYNC__DATABASE__POOL_TIMEOUT", "soon")],
    ))
    .to_string();
    assert!(
        text.starts_with("environment variable TEMU_SYNC__DATABASE__POOL_TIMEOUT: database.pool_timeout: invalid duration \"soon\""),
        "{text}"
    );
    // A validation failure of an overridden value also names the variable.
    let text = err(load_env(
        "",
        &[],
        &[("TEMU_SYNC__DATABASE__POOL_SIZE", "0")],
    ))
    .to_string();
    assert!(
        text.contains("TEMU_SYNC__DATABASE__POOL_SIZE: database.pool_size: must be at least 1"),
        "{text}"
    );
}

#[test]
fn env_override_of_a_duration_is_range_checked_naming_the_variable() {
    let text = err(load_env("", &[], &[("TEMU_SYNC__SYNC__LOOKBACK", "11y")])).to_string();
    assert!(
        text.starts_with(
            "environment variable TEMU_SYNC__SYNC__LOOKBACK: sync.lookback: duration \"11y\" \
             is out of range: at most 10 years (3650d)"
        ),
        "{text}"
    );
    let c = load_env("", &[], &[("TEMU_SYNC__SYNC__LOOKBACK", "2h 30m")])
        .unwrap()
        .config;
    assert_eq!(c.sync.lookback, Duration::from_secs(9000));
}

#[test]
fn env_override_index_gap_is_an_error() {
    let text = err(load_env("", &[], &[("TEMU_SYNC__SHOPS__3__NAME", "x")])).to_string();
    assert!(text.contains("TEMU_SYNC__SHOPS__3__NAME"), "{text}");
    assert!(text.contains("gap"), "{text}");
}
