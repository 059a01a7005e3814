//! Property-based fuzzing of the configuration loader (`Config::from_yaml_str`) and its
//! `TEMU_SYNC__…` overrides. Properties: never a panic; an error names at least one issue and
//! renders as text; an accepted configuration is valid (re-validated invariants below) and builds
//! everything `run` builds (`app::check_buildable`: the database connector, the Temu client, the
//! sync actors' dependencies — a value that validates but cannot be built, or panics while
//! building, fails the property); a secret value never appears in an error message.
//!
//! `FUZZ_CASES` (default 3000) sets the number of cases per target.

use crate::common::run;

use proptest::prelude::*;
use temu_sync::config::{Config, ConfigError};

const SECRET: &str = "fuzz-secret-value-do-not-print";

fn lookup(name: &str) -> Option<String> {
    name.starts_with("FUZZ_").then(|| SECRET.to_string())
}

fn check(text: &str, vars: Vec<(String, String)>) -> Result<(), TestCaseError> {
    match Config::from_yaml_str(text, "fuzz.yaml", &lookup, vars) {
        Ok(loaded) => {
            let c = &loaded.config;
            prop_assert!(c.database.pool_size >= 1);
            prop_assert!(!c.database.url.contains(SECRET));
            if let Err(e) = temu_sync::app::check_buildable(c) {
                prop_assert!(false, "accepted but cannot be built: {e}");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            prop_assert!(!msg.contains(SECRET), "a secret in an error: {msg}");
            if let ConfigError::Invalid(issues) = &e {
                prop_assert!(!issues.is_empty());
            }
        }
    }
    Ok(())
}

/// Keys of the real configuration, so generated documents reach validation, not just parsing.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "database",
        &[
            "url",
            "pool_size",
            "max_overflow",
            "pool_timeout",
            "connect_timeout",
            "statement_timeout",
            "lock_timeout",
            "ping_interval",
            "ping_timeout",
            "password",
            "create_database",
            "retry_min",
            "retry_max",
            "idle_timeout",
        ],
    ),
    (
        "http",
        &[
            "listen",
            "request_timeout",
            "header_read_timeout",
            "max_connections",
            "rate_limit_per_second",
            "rate_limit_burst",
            "admin_token",
        ],
    ),
    (
        "temu",
        &[
            "timeout",
            "read_timeout",
            "max_retries",
            "call_deadline",
            "breaker_threshold",
            "max_connections",
            "max_keepalive_connections",
            "proxy",
        ],
    ),
    (
        "sync",
        &[
            "task_timeout",
            "batch_size",
            "max_concurrent_runs",
            "settle",
            "chunk",
            "lease_ttl",
            "initial_window",
            "intervals",
        ],
    ),
    (
        "supervisor",
        &[
            "max_restarts",
            "max_missed_pings",
            "restart_window",
            "backoff_min",
            "ping_interval",
            "shutdown_timeout",
        ],
    ),
    ("log", &["format", "level"]),
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1s".to_string()),
        Just("0s".to_string()),
        Just("584942417355y".to_string()),
        Just("300000y".to_string()),
        Just("3650d".to_string()),
        Just("4294967295".to_string()),
        Just("18446744073709551615".to_string()),
        Just("\"http://a b/x\"".to_string()),
        Just("10ms".to_string()),
        Just("~".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("{env: FUZZ_X}".to_string()),
        Just("{credential: ../../etc/passwd}".to_string()),
        Just("\"postgres://u@h:5432/d\"".to_string()),
        Just("\"127.0.0.1:99999\"".to_string()),
        Just("json".to_string()),
        Just("*a".to_string()),
        Just("&a x".to_string()),
        Just("!!binary aGVsbG8=".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9 :./{}\\[\\],\"'-]{0,16}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    let section = (0..SECTIONS.len()).prop_flat_map(|i| {
        let (name, keys) = SECTIONS[i];
        prop::collection::vec((prop::sample::select(keys), value()), 0..5).prop_map(move |kv| {
            let mut s = format!("{name}:\n");
            for (k, v) in kv {
                s.push_str(&format!("  {k}: {v}\n"));
            }
            s
        })
    });
    let shops = (value(), value(), value(), value()).prop_map(|(region, token, app, base_url)| {
        format!(
            "apps:\n  - {{ name: main, app_key: k, app_secret: {{ env: FUZZ_SECRET }} }}\n\
             shops:\n  - {{ name: s, region: {region}, app: {app}, access_token: {token}, \
             base_url: {base_url} }}\n"
        )
    });
    (
        prop::collection::vec(section, 0..5),
        prop::option::of(shops),
    )
        .prop_map(|(secs, shops)| {
            let mut doc = secs.concat();
            if let Some(s) = shops {
                doc.push_str(&s);
            }
            doc
        })
}

#[test]
fn arbitrary_text_never_panics() {
    run("config/arbitrary-text", "(?s).{0,400}", |text| {
        check(&text, Vec::new())
    });
}

#[test]
fn yaml_shaped_documents_never_panic_and_errors_are_clear() {
    run("config/structured", document(), |doc| {
        check(&doc, Vec::new())
    });
}

#[test]
fn environment_overrides_never_panic() {
    let var = (
        prop::sample::select(
            &[
                "TEMU_SYNC__DATABASE__POOL_SIZE",
                "TEMU_SYNC__DATABASE__URL",
                "TEMU_SYNC__HTTP__LISTEN",
                "TEMU_SYNC__SHOPS__0__BASE_URL",
                "TEMU_SYNC__SHOPS__99999999999999999999__NAME",
                "TEMU_SYNC__APPS__0__APP_SECRET",
                "TEMU_SYNC__SYNC__INTERVALS__ORDERS",
                "TEMU_SYNC__",
                "TEMU_SYNC____",
                "TEMU_SYNC__NOPE",
            ][..],
        ),
        value(),
    );
    run(
        "config/env-overrides",
        (document(), prop::collection::vec(var, 0..4)),
        |(doc, vars)| {
            let vars = vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            check(&doc, vars)
        },
    );
}
