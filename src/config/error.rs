//! Configuration errors: what went wrong, at which key path, and where it came from.
//!
//! Owns: [`ConfigError`] and its parts. Every message is one line a person can act on
//! (`config.yaml:12:3: database.pool_timeout: invalid duration "30 parsecs": …`); several
//! problems (from validation) are reported together, one per line. Messages never contain the
//! value of a secret — only its reference (env var name, file path, credential name).

use std::fmt;
use std::path::PathBuf;

/// Where the offending value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOrigin {
    /// A position in the configuration file (1-based line and column).
    File {
        source: String,
        line: u64,
        column: u64,
    },
    /// The configuration file, without a known position (e.g. a default that fails validation).
    FileOnly { source: String },
    /// An environment override, named by its variable.
    Env { var: String },
    /// Several environment overrides, any of which may be the cause.
    EnvAny { vars: Vec<String> },
}

impl fmt::Display for IssueOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueOrigin::File {
                source,
                line,
                column,
            } => write!(f, "{source}:{line}:{column}"),
            IssueOrigin::FileOnly { source } => f.write_str(source),
            IssueOrigin::Env { var } => write!(f, "environment variable {var}"),
            IssueOrigin::EnvAny { vars } => {
                write!(f, "after environment overrides {}", vars.join(", "))
            }
        }
    }
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where the value came from.
    pub origin: IssueOrigin,
    /// Key path, e.g. `database.pool_timeout` or `shops[0].base_url`; empty for the whole file.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// Why the configuration could not be loaded. The daemon exits with code 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The file or the environment holds invalid configuration: one issue per line.
    #[error("{}", render_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The individual problems (empty for [`ConfigError::Read`]).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(issues) => issues,
        }
    }

    pub(crate) fn one(
        origin: IssueOrigin,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid(vec![ConfigIssue {
            origin,
            key: key.into(),
            message: message.into(),
        }])
    }
}

fn render_issues(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
