//! Configuration: the model, loading from YAML with environment overrides, secrets by reference.
//!
//! Owns: turning `config.yaml` + the environment into a validated [`Config`], or a [`ConfigError`]
//! that names the key path (and line) and what was expected. Must not: start anything or touch
//! the network; secrets are resolved here and leave only as [`Secret`] (redacted `Debug`).

mod model;
mod secret;

pub use model::*;
pub use secret::Secret;

// (temporary loader; replaced by the config module's real one)
impl Config {
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())
    }
}
