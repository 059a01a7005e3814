//! Secrets by reference (`env`, `file`, `credential`, inline) and that a secret value never
//! leaks: not in errors, not in the masked YAML, not in `Debug`/`Display`.
//!
//! Owns the secret cases; must not test other keys' parsing.

use std::path::Path;

use temu_sync::config::{Config, Secret};

use crate::{err, load, load_env, ONE_SHOP, SECRET_VALUE};

#[test]
fn env_secret_resolves() {
    let c = load_env(
        ONE_SHOP,
        &[("TEMU_APP_SECRET", SECRET_VALUE), ("TEMU_US_TOKEN", "tok")],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c.apps[0].app_secret.expose(), SECRET_VALUE);
    assert_eq!(c.shops[0].access_token.expose(), "tok");
}

#[test]
fn missing_secret_env_names_path_and_variable_not_value() {
    let e = err(load_env(ONE_SHOP, &[("TEMU_US_TOKEN", SECRET_VALUE)], &[]));
    let text = e.to_string();
    assert!(text.contains("apps[0].app_secret"), "{text}");
    assert!(text.contains("TEMU_APP_SECRET"), "{text}");
    assert!(
        text.starts_with("config.yaml:4:"),
        "points at the line: {text}"
    );
    assert!(!text.contains(SECRET_VALUE), "{text}");
    assert_eq!(e.issues().len(), 1, "the token resolved: {text}");
}

#[test]
fn all_problems_are_reported_together() {
    let e = err(load_env(
        "database:\n  pool_size: 0\nsupervisor:\n  backoff_min: 1m\n  backoff_max: 1s\n",
        &[],
        &[],
    ));
    let text = e.to_string();
    assert_eq!(e.issues().len(), 2, "{text}");
    assert!(
        text.contains("config.yaml:2:14: database.pool_size: must be at least 1"),
        "{text}"
    );
    assert!(text.contains("supervisor.backoff_min"), "{text}");
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn empty_secret_is_an_error() {
    let text = err(load_env(
        ONE_SHOP,
        &[("TEMU_APP_SECRET", ""), ("TEMU_US_TOKEN", "t")],
        &[],
    ))
    .to_string();
    assert!(text.contains("apps[0].app_secret"), "{text}");
    assert!(text.contains("empty"), "{text}");
}

#[test]
fn file_secret_resolves_and_trims_one_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg");
    std::fs::write(&file, format!("{SECRET_VALUE}\n")).unwrap();
    let yaml = format!("database:\n  password: {{file: {}}}\n", file.display());
    let c = load(&yaml).unwrap().config;
    assert_eq!(c.database.password.as_ref().unwrap().expose(), SECRET_VALUE);
    let pg = c.database.pg_config().unwrap();
    assert_eq!(pg.get_password(), Some(SECRET_VALUE.as_bytes()));
    assert_eq!(pg.get_dbname(), Some("temu_sync"));
}

#[test]
fn file_secret_expands_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "abc\n").unwrap();
    let dir_s = dir.path().to_str().unwrap();
    for form in [
        "$CREDENTIALS_DIRECTORY/token",
        "${CREDENTIALS_DIRECTORY}/token",
    ] {
        let yaml = format!("http:\n  admin_token: {{file: \"{form}\"}}\n");
        let c = load_env(&yaml, &[("CREDENTIALS_DIRECTORY", dir_s)], &[])
            .unwrap()
            .config;
        assert_eq!(c.http.admin_token.unwrap().expose(), "abc");
    }
}

#[test]
fn unreadable_secret_file_names_path() {
    let text = err(load(
        "http:\n  admin_token: {file: /nonexistent/admin-token}\n",
    ))
    .to_string();
    assert!(text.contains("http.admin_token"), "{text}");
    assert!(text.contains("/nonexistent/admin-token"), "{text}");
}

#[test]
fn credential_secret_resolves_from_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app_secret"), SECRET_VALUE).unwrap();
    let yaml = ONE_SHOP
        .replace("{env: TEMU_APP_SECRET}", "{credential: app_secret}")
        .replace("{env: TEMU_US_TOKEN}", "\"inline-token\"");
    let loaded = load_env(
        &yaml,
        &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
        &[],
    )
    .unwrap();
    assert_eq!(loaded.config.apps[0].app_secret.expose(), SECRET_VALUE);
    // The inline token is accepted with a warning naming its path.
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with("inline secret at shops[0].access_token; prefer {env: ...}"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn credential_without_credentials_directory_is_a_clear_error() {
    let yaml = "http:\n  admin_token: {credential: admin}\n";
    let text = err(load(yaml)).to_string();
    assert!(text.contains("http.admin_token"), "{text}");
    assert!(text.contains("CREDENTIALS_DIRECTORY is not set"), "{text}");
}

#[test]
fn secret_reference_with_unknown_form_is_an_error() {
    let text = err(load("http:\n  admin_token: {vault: x}\n")).to_string();
    assert!(text.contains("http.admin_token"), "{text}");
    assert!(
        text.contains("expected one of env, file, credential"),
        "{text}"
    );
}

#[test]
fn numeric_inline_secret_is_rejected_without_echoing_it() {
    let text = err(load("http:\n  admin_token: 987654321\n")).to_string();
    assert!(text.contains("http.admin_token"), "{text}");
    assert!(!text.contains("987654321"), "{text}");
}

fn config_with_every_secret(dir: &Path) -> Config {
    std::fs::write(dir.join("pg"), SECRET_VALUE).unwrap();
    let yaml = format!(
        "http:\n  admin_token: {{env: ADMIN}}\n\
         database:\n  password: {{file: {}}}\n\
         temu:\n  proxy:\n    url: socks5h://10.0.0.2:1080\n    username: u\n    password: {{credential: proxy}}\n\
         apps:\n  - name: main\n    app_key: k\n    app_secret: \"{SECRET_VALUE}\"\n\
         shops:\n  - name: s\n    region: eu\n    app: main\n    access_token: {{env: TOKEN}}\n",
        dir.join("pg").display()
    );
    std::fs::write(dir.join("proxy"), SECRET_VALUE).unwrap();
    let dir_s = dir.to_str().unwrap();
    load_env(
        &yaml,
        &[
            ("ADMIN", SECRET_VALUE),
            ("TOKEN", SECRET_VALUE),
            ("CREDENTIALS_DIRECTORY", dir_s),
        ],
        &[],
    )
    .unwrap()
    .config
}

#[test]
fn masked_yaml_never_contains_a_secret_value() {
    let dir = tempfile::tempdir().unwrap();
    let c = config_with_every_secret(dir.path());
    assert_eq!(c.http.admin_token.as_ref().unwrap().expose(), SECRET_VALUE);
    let yaml = c.masked_yaml();
    assert!(!yaml.contains(SECRET_VALUE), "{yaml}");
    assert!(yaml.contains("*** (env ADMIN)"), "{yaml}");
    assert!(yaml.contains("*** (credential proxy)"), "{yaml}");
    assert!(yaml.contains("*** (inline)"), "{yaml}");
    assert!(
        yaml.contains("pool_timeout: 30s"),
        "durations in humantime form: {yaml}"
    );
    assert!(yaml.contains("initial_window: 90d"), "{yaml}");
    // The masked output is itself valid configuration syntax (secrets aside).
    assert!(yaml.contains("backoff_min: 100ms"), "{yaml}");
}

#[test]
fn debug_and_display_never_contain_a_secret_value() {
    let dir = tempfile::tempdir().unwrap();
    let c = config_with_every_secret(dir.path());
    let debug = format!("{c:?}");
    assert!(!debug.contains(SECRET_VALUE), "{debug}");
    assert!(debug.contains("env ADMIN"), "{debug}");
    let pretty = format!("{c:#?}");
    assert!(!pretty.contains(SECRET_VALUE));
    let s = Secret::inline(SECRET_VALUE);
    assert!(!format!("{s}").contains(SECRET_VALUE));
    assert!(!format!("{s:?}").contains(SECRET_VALUE));
    assert_eq!(s.expose(), SECRET_VALUE);
}

#[test]
fn pg_config_has_url_and_password_only() {
    let mut c = Config::default();
    c.database.password = Some(Secret::from("pw"));
    let pg = c.database.pg_config().unwrap();
    assert_eq!(pg.get_user(), Some("postgres"));
    assert_eq!(pg.get_ports(), &[5432]);
    assert_eq!(pg.get_password(), Some(&b"pw"[..]));
    assert_eq!(pg.get_connect_timeout(), None);
}
