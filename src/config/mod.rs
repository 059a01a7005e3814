//! Configuration: the model, loading from YAML with environment overrides, secrets by reference.
//!
//! Owns: turning `config.yaml` + the environment into a validated [`Config`], or a [`ConfigError`]
//! that names the key path (and line) and what was expected. Must not: start anything or touch
//! the network; secrets are resolved here and leave only as [`Secret`] (redacted `Debug`).

mod model;
mod secret;

pub use model::*;
pub use secret::Secret;
