//! Configuration: the model, loading from YAML with environment overrides, secrets by reference.
//!
//! Owns: turning `config.yaml` + the environment into a validated [`Config`], or a [`ConfigError`]
//! that names the key path (and line, or the overriding environment variable) and what was
//! expected. Must not: start anything or touch the network; secrets are resolved here and leave
//! only as [`Secret`] (redacted `Debug`, `Display` and `Serialize`).
//!
//! - `model`: every key and its default (the seed's numbers).
//! - `load`: [`Config::load`] / [`Config::from_yaml_str`], `TEMU_SYNC__…` overrides.
//! - `secret`: [`Secret`] — `{env: NAME}`, `{file: PATH}`, `{credential: NAME}`, inline.
//! - `validate`: rules beyond types; [`DatabaseConfig::pg_config`].
//! - `error`: [`ConfigError`], one actionable line per problem.
//! - `duration`: humantime durations with a clear error.

mod duration;
mod error;
mod load;
mod model;
mod secret;
mod validate;

pub use error::{ConfigError, ConfigIssue, IssueOrigin};
pub use load::{LoadedConfig, ENV_PREFIX};
pub use model::*;
pub use secret::{Secret, SecretSource, CREDENTIALS_DIRECTORY};
