//! The configuration as the library loads it and as an operator meets it on the command line:
//! YAML errors with key path and line, environment overrides, secrets by reference, validation,
//! defaults, that secret values never leak, and the CLI's exit codes and messages.
//!
//! Modules: `loading` (file, defaults, shipped config.yaml), `secrets`, `overrides`,
//! `validation`, `cli` (the real binary), `edges` (edge values through the real binary: exit 78
//! naming the key and the range, never a panic). The helpers below load YAML with an explicit
//! environment lookup, so no test reads or changes the process environment.

mod cli;
mod edges;
mod loading;
mod overrides;
mod secrets;
mod validation;

use temu_sync::config::{Config, ConfigError, LoadedConfig};

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
