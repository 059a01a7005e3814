//! Loading the file: YAML errors with key path and line, durations, a missing file, the
//! seed defaults, and the shipped `config.yaml` (it loads, states the defaults, its commented
//! example is valid).
//!
//! Owns the file-to-`Config` cases; secrets, overrides and validation have their own modules.

use std::path::Path;
use std::time::Duration;

use temu_sync::config::{Config, ConfigError};

use crate::{err, load, load_env, SECRET_VALUE};

#[test]
fn empty_file_gives_the_seed_defaults() {
    for text in ["", "# only a comment\n", "database:\nsync:\n"] {
        let c = load(text).unwrap().config;
        let d = &c.database;
        assert_eq!(d.pool_size, 10);
        assert_eq!(d.max_overflow, 20);
        assert_eq!(d.pool_timeout, Duration::from_secs(30));
        assert_eq!(d.pool_recycle, Duration::from_secs(3600));
        assert_eq!(d.connect_timeout, Duration::from_secs(10));
        assert_eq!(d.statement_timeout, Duration::from_secs(30));
        let t = &c.temu;
        assert_eq!(t.timeout, Duration::from_secs(30));
        assert_eq!(t.connect_timeout, Duration::from_secs(10));
        assert_eq!(t.read_timeout, Duration::from_secs(30));
        assert_eq!(t.pool_timeout, Duration::from_secs(5));
        assert_eq!(t.max_connections, 100);
        assert_eq!(t.max_keepalive_connections, 20);
        assert_eq!(c.sync.task_timeout, Duration::from_secs(3600));
        assert_eq!(c.sync.batch_size, 100);
        assert_eq!(c.sync.max_retries, 3);
        assert_eq!(c.http.request_timeout, Duration::from_secs(300));
        assert!(c.apps.is_empty() && c.shops.is_empty());
    }
}

#[test]
fn omitted_keys_keep_defaults_next_to_given_ones() {
    let c = load("database:\n  pool_size: 3\n").unwrap().config;
    assert_eq!(c.database.pool_size, 3);
    assert_eq!(c.database.max_overflow, 20);
    assert_eq!(c.sync.batch_size, 100);
}

#[test]
fn page_concurrency_follows_the_apps_qps_unless_given() {
    let c = load("database:\n  pool_size: 3\n").unwrap().config;
    assert_eq!(c.sync.page_concurrency, None);
    assert_eq!(c.sync.page_concurrency_for(20), 20);
    assert_eq!(c.sync.page_concurrency_for(1), 1);
    assert_eq!(
        c.sync.page_concurrency_for(1000),
        64,
        "the default is capped"
    );
    let c = load("sync:\n  page_concurrency: 5\n").unwrap().config;
    assert_eq!(c.sync.page_concurrency_for(20), 5);
}

#[test]
fn unknown_key_names_path_and_line() {
    let e = err(load(
        "http:\n  listen: 127.0.0.1:8080\ndatabase:\n  pool_size: 3\n  pool_sise: 4\n",
    ));
    let text = e.to_string();
    assert!(
        text.starts_with("config.yaml:5:3: database.pool_sise: "),
        "{text}"
    );
    assert!(text.contains("unknown key `pool_sise`"), "{text}");
    assert!(
        text.contains("pool_size"),
        "lists the expected keys: {text}"
    );
    assert_eq!(e.issues().len(), 1);
}

#[test]
fn unknown_key_in_a_list_entry_names_the_index() {
    let e = err(load(
        "shops:\n  - name: a\n    region: us\n    app: x\n    access_token: t\n    colour: red\n",
    ));
    let text = e.to_string();
    assert!(
        text.starts_with("config.yaml:6:5: shops[0].colour: "),
        "{text}"
    );
}

#[test]
fn bad_duration_names_path_line_and_expectation() {
    let e = err(load(
        "database:\n  pool_size: 3\n  pool_timeout: 30 parsecs\n",
    ));
    let text = e.to_string();
    assert!(
        text.starts_with("config.yaml:3:17: database.pool_timeout: "),
        "{text}"
    );
    assert!(text.contains("invalid duration \"30 parsecs\""), "{text}");
    assert!(text.contains("expected a duration like 30s"), "{text}");
}

#[test]
fn duration_without_unit_is_rejected() {
    let text = err(load("sync:\n  task_timeout: 3600\n")).to_string();
    assert!(text.contains("sync.task_timeout"), "{text}");
    assert!(text.contains("expected a duration like"), "{text}");
}

#[test]
fn wrong_type_names_path_line_and_expectation() {
    let text = err(load("database:\n  pool_size: lots\n")).to_string();
    assert!(
        text.starts_with("config.yaml:2:14: database.pool_size: "),
        "{text}"
    );
    assert!(text.contains("\"lots\""), "{text}");
    assert!(text.contains("expected a whole number"), "{text}");

    let text = err(load("log:\n  format: xml\n")).to_string();
    assert!(text.starts_with("config.yaml:2:11: log.format: "), "{text}");
    assert!(text.contains("json"), "lists the variants: {text}");

    let text = err(load("database:\n  pool_size: [1, 2]\n")).to_string();
    assert!(
        text.starts_with("config.yaml:2:14: database.pool_size: expected a single value"),
        "{text}"
    );

    let text = err(load("http:\n  listen: localhost\n")).to_string();
    assert!(text.contains("http.listen"), "{text}");
    assert!(text.contains("127.0.0.1:8080"), "{text}");
}

#[test]
fn missing_config_file_names_the_path() {
    let path = Path::new("/nonexistent/dir/temu-sync.yaml");
    let e = Config::load(path).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().contains("/nonexistent/dir/temu-sync.yaml"),
        "{e}"
    );
}

#[test]
fn shipped_config_yaml_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let loaded = load(&text).unwrap();
    assert!(loaded.warnings.is_empty());
    let c = loaded.config;
    assert_eq!(
        c.database.url,
        "postgres://postgres@127.0.0.1:5432/temu_sync"
    );
    assert_eq!(c.database.pool_size, 10);
    assert_eq!(c.sync.initial_window, Duration::from_secs(90 * 86400));
    assert_eq!(c.supervisor.backoff_min, Duration::from_millis(100));
    // And through the real entry point, with the process environment.
    Config::load(&path).unwrap();
}

#[test]
fn shipped_config_yaml_states_the_defaults() {
    // The shipped file must not drift from the model: loading it equals loading nothing.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let shipped = load(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .config;
    let defaults = load("").unwrap().config;
    assert_eq!(shipped.masked_yaml(), defaults.masked_yaml());
}

#[test]
fn the_commented_example_in_config_yaml_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    // Uncomment the example apps/shops blocks (lines starting with "# " right after "apps: []"…).
    let mut out = String::new();
    let mut in_example = false;
    for line in text.lines() {
        if line.starts_with("apps: []") || line.starts_with("shops: []") {
            in_example = true;
            continue;
        }
        if in_example && line.starts_with("# ") {
            out.push_str(&line[2..]);
            out.push('\n');
            continue;
        }
        in_example = false;
        out.push_str(line);
        out.push('\n');
    }
    let c = load_env(
        &out,
        &[("TEMU_APP_SECRET", SECRET_VALUE), ("TEMU_US_TOKEN", "tok")],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c.apps.len(), 1);
    assert_eq!(c.shops.len(), 1);
    assert_eq!(c.shops[0].streams.len(), 3);
}
