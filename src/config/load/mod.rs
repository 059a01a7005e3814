//! Loading: YAML file + `TEMU_SYNC__…` environment overrides → secrets resolved → validated.
//!
//! Owns: the load pipeline and the mapping of every failure to a [`ConfigIssue`] that names the
//! key path and its origin (file line/column, or the environment variable that set it).
//!
//! How overrides work: the file is first deserialized straight into [`Config`] (so its errors
//! carry lines). If any `TEMU_SYNC__` variables exist, the file is also read into a generic tree
//! whose scalars keep their source text (so `app_key: 0123` stays `0123`), the overrides are
//! applied to the tree, and the tree is deserialized again; errors of that pass name the variable.
//!
//! - this file: [`Config::load`], [`Config::from_yaml_str`] (the pipeline in its steps),
//!   [`Config::secrets_mut`], [`Config::masked_yaml`];
//! - `typed`: the typed pass and the wording of its errors;
//! - `tree`: the generic tree with source text and positions;
//! - `overrides`: `TEMU_SYNC__…` variables applied to the tree.

mod overrides;
mod tree;
mod typed;

use std::collections::HashMap;
use std::path::Path;

use super::error::{ConfigError, ConfigIssue, IssueOrigin};
use super::model::Config;
use super::secret::Secret;
use overrides::{apply_override, collect_overrides, env_value_node, override_for, Override};
use tree::{collect_positions, parse_tree, tree_to_json, Entry};
use typed::{parse_typed, Failure};

/// Environment variables starting with this override configuration keys:
/// `TEMU_SYNC__DATABASE__POOL_SIZE=20`, `TEMU_SYNC__SHOPS__0__BASE_URL=…`.
pub const ENV_PREFIX: &str = "TEMU_SYNC__";

/// A loaded configuration and the warnings the caller should log once logging is up.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// E.g. `inline secret at apps[0].app_secret; prefer {env: ...}`.
    pub warnings: Vec<String>,
}

impl Config {
    /// Read `path`, apply `TEMU_SYNC__…` overrides from the process environment, resolve
    /// secrets, validate. Warnings are dropped: the daemon should use
    /// [`Config::load_with_warnings`] and log them.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Ok(Self::load_with_warnings(path)?.config)
    }

    /// [`Config::load`], also returning the warnings (inline secrets) for the caller to log.
    pub fn load_with_warnings(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            match value.into_string() {
                Ok(value) => vars.push((name.to_string(), value)),
                Err(_) => {
                    return Err(ConfigError::one(
                        IssueOrigin::Env {
                            var: name.to_string(),
                        },
                        "",
                        "the value is not valid UTF-8",
                    ))
                }
            }
        }
        let lookup = |name: &str| std::env::var(name).ok();
        Self::from_yaml_str(&text, &path.display().to_string(), &lookup, vars)
    }

    /// The testable core of [`Config::load`]: `text` is the file's content and `source` its name
    /// in messages; `lookup` reads environment variables for secrets (`{env: …}`,
    /// `CREDENTIALS_DIRECTORY`); `vars` are candidate overrides — those not starting with
    /// [`ENV_PREFIX`] are ignored, so the whole environment may be passed.
    pub fn from_yaml_str(
        text: &str,
        source: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<LoadedConfig, ConfigError> {
        let from_file =
            |f: Failure| ConfigError::one(file_origin(source, f.location), f.path, f.message);
        // 1. The file alone, typed: errors carry the file's line and column.
        let typed = parse_typed(text).map_err(from_file)?;
        // 2. The file as a tree: positions of every key (for later messages) and the base for
        //    overrides.
        let mut tree = parse_tree(text).map_err(from_file)?;
        let mut positions = HashMap::new();
        collect_positions(&tree, String::new(), &mut positions);
        // 3. Environment overrides.
        let mut overrides = collect_overrides(vars)?;
        let mut config = if overrides.is_empty() {
            typed
        } else {
            apply_overrides(&mut tree, &mut overrides)?
        };
        let locate = |key: &str| -> IssueOrigin {
            if let Some(var) = override_for(&overrides, key) {
                return IssueOrigin::Env { var };
            }
            file_origin(source, positions.get(key).copied())
        };
        // 4. Secrets, 5. validation.
        let (mut issues, warnings) = resolve_secrets(&mut config, lookup, &locate);
        for (key, message) in config.validation_problems() {
            issues.push(ConfigIssue {
                origin: locate(&key),
                key,
                message,
            });
        }
        if issues.is_empty() {
            Ok(LoadedConfig { config, warnings })
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// The effective configuration as YAML, secrets shown as `*** (env NAME)`
    /// (for `temu-sync check-config`).
    pub fn masked_yaml(&self) -> String {
        match serde_saphyr::to_string(self) {
            Ok(yaml) => yaml,
            Err(e) => format!("# cannot render the configuration: {e}\n"),
        }
    }

    /// Every secret in the configuration with its key path.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut Secret)> {
        let mut out = Vec::new();
        if let Some(s) = self.http.admin_token.as_mut() {
            out.push(("http.admin_token".to_string(), s));
        }
        if let Some(s) = self.database.password.as_mut() {
            out.push(("database.password".to_string(), s));
        }
        if let Some(s) = self.temu.proxy.as_mut().and_then(|p| p.password.as_mut()) {
            out.push(("temu.proxy.password".to_string(), s));
        }
        for (i, app) in self.apps.iter_mut().enumerate() {
            out.push((format!("apps[{i}].app_secret"), &mut app.app_secret));
        }
        for (i, shop) in self.shops.iter_mut().enumerate() {
            out.push((format!("shops[{i}].access_token"), &mut shop.access_token));
        }
        out
    }
}

/// A position in the file, or the file alone when the position is unknown.
fn file_origin(source: &str, location: Option<(u64, u64)>) -> IssueOrigin {
    match location {
        Some((line, column)) => IssueOrigin::File {
            source: source.to_string(),
            line,
            column,
        },
        None => IssueOrigin::FileOnly {
            source: source.to_string(),
        },
    }
}

/// Sets every override in the tree (each learns the key path it set) and reads the tree again,
/// typed; errors name the variable responsible, or all of them when none is.
fn apply_overrides(tree: &mut Entry, overrides: &mut [Override]) -> Result<Config, ConfigError> {
    for o in overrides.iter_mut() {
        let env_error = |message: String| {
            ConfigError::one(IssueOrigin::Env { var: o.var.clone() }, "", message)
        };
        let value = env_value_node(&o.value).map_err(env_error)?;
        o.path = apply_override(tree, &o.segments, value, String::new()).map_err(env_error)?;
    }
    let any_of = || IssueOrigin::EnvAny {
        vars: overrides.iter().map(|o| o.var.clone()).collect(),
    };
    let merged = serde_saphyr::to_string(&tree_to_json(tree))
        .map_err(|e| ConfigError::one(any_of(), "", format!("cannot apply the overrides: {e}")))?;
    parse_typed(&merged).map_err(|f| {
        let origin = override_for(overrides, &f.path)
            .map(|var| IssueOrigin::Env { var })
            .unwrap_or_else(any_of);
        ConfigError::one(origin, f.path, f.message)
    })
}

/// Resolves every secret; returns the problems (located by `locate`) and a warning per inline
/// secret.
fn resolve_secrets(
    config: &mut Config,
    lookup: &dyn Fn(&str) -> Option<String>,
    locate: &dyn Fn(&str) -> IssueOrigin,
) -> (Vec<ConfigIssue>, Vec<String>) {
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    for (key, secret) in config.secrets_mut() {
        if secret.is_inline() {
            warnings.push(format!(
                "inline secret at {key}; prefer {{env: ...}}, {{file: ...}} or {{credential: ...}}"
            ));
        }
        if let Err(message) = secret.resolve(lookup) {
            issues.push(ConfigIssue {
                origin: locate(&key),
                key,
                message,
            });
        }
    }
    (issues, warnings)
}
