//! Loading the configuration: YAML errors with key path and line, environment overrides,
//! secrets by reference, validation, defaults, and that secret values never leak.

use std::path::Path;
use std::time::Duration;

use temu_sync::config::{Config, ConfigError, IssueOrigin, LoadedConfig, Secret};

const SECRET_VALUE: &str = "s3cr3t-VALUE-do-not-print";

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
    Config::from_yaml_str(text, "config.yaml", &no_env, Vec::new())
}

fn load_env(
    text: &str,
    env: &[(&str, &str)],
    vars: &[(&str, &str)],
) -> Result<LoadedConfig, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_yaml_str(text, "config.yaml", &lookup, vars)
}

fn err(result: Result<LoadedConfig, ConfigError>) -> ConfigError {
    match result {
        Ok(c) => panic!("expected an error, got {:?}", c.config),
        Err(e) => e,
    }
}

const ONE_SHOP: &str = "\
apps:
  - name: main
    app_key: k1
    app_secret: {env: TEMU_APP_SECRET}
shops:
  - name: us-main
    region: us
    app: main
    access_token: {env: TEMU_US_TOKEN}
";

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
fn env_override_index_gap_is_an_error() {
    let text = err(load_env("", &[], &[("TEMU_SYNC__SHOPS__3__NAME", "x")])).to_string();
    assert!(text.contains("TEMU_SYNC__SHOPS__3__NAME"), "{text}");
    assert!(text.contains("gap"), "{text}");
}

#[test]
fn validation_rules() {
    let cases: &[(&str, &str, &str)] = &[
        ("database:\n  pool_size: 0\n", "database.pool_size", "at least 1"),
        (
            "supervisor:\n  backoff_min: 1m\n  backoff_max: 10s\n",
            "supervisor.backoff_min",
            "longer than supervisor.backoff_max",
        ),
        (
            "supervisor:\n  ping_timeout: 5s\n  ping_interval: 5s\n",
            "supervisor.ping_timeout",
            "shorter than supervisor.ping_interval",
        ),
        (
            "database:\n  ping_timeout: 20s\n",
            "database.ping_timeout",
            "shorter than database.ping_interval",
        ),
        (
            "database:\n  url: postgres://u:pw@localhost/db\n",
            "database.url",
            "put the password in database.password",
        ),
        ("database:\n  url: \"not a url at all\"\n", "database.url", "PostgreSQL"),
        (
            "temu:\n  proxy:\n    url: ftp://proxy:21\n",
            "temu.proxy.url",
            "expected http, https, socks5 or socks5h",
        ),
        ("sync:\n  batch_size: 0\n", "sync.batch_size", "at least 1"),
        ("temu:\n  timeout: 0s\n", "temu.timeout", "longer than zero"),
        ("log:\n  level: \"info,=[\"\n", "log.level", "invalid filter"),
        (
            "apps:\n  - {name: a, app_key: k, app_secret: s}\nshops:\n  - {name: s1, region: us, app: b, access_token: t}\n",
            "shops[0].app",
            "no app named \"b\"",
        ),
        (
            "apps:\n  - {name: a, app_key: k, app_secret: s}\n  - {name: a, app_key: k2, app_secret: s}\n",
            "apps[1].name",
            "used twice",
        ),
        (
            "apps:\n  - {name: \"a b\", app_key: k, app_secret: s}\n",
            "apps[0].name",
            "letters, digits",
        ),
        (
            "apps:\n  - {name: a, app_key: k, app_secret: s}\nshops:\n  - {name: s1, region: us, app: a, access_token: t, base_url: \"ftp://x\"}\n",
            "shops[0].base_url",
            "http://",
        ),
    ];
    for (yaml, key, expected) in cases {
        let e = err(load(yaml));
        let found = e
            .issues()
            .iter()
            .any(|i| i.key == *key && i.message.contains(expected));
        assert!(
            found,
            "yaml {yaml:?}: expected `{key}: …{expected}…`, got:\n{e}"
        );
    }
}

#[test]
fn proxy_url_with_credentials_is_rejected_without_echo() {
    let text = err(load(
        "temu:\n  proxy:\n    url: http://user:hunter2@proxy:3128\n",
    ))
    .to_string();
    assert!(text.contains("temu.proxy.url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
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
