//! Secret values given by reference, resolved at load time, never shown.
//!
//! Owns: the [`Secret`] type and its YAML forms — `{env: NAME}`, `{file: PATH}`,
//! `{credential: NAME}` (systemd `LoadCredential=`), or an inline string (accepted with a
//! warning). `Debug`, `Display` and `Serialize` show only the reference (`*** (env NAME)`), never
//! the value; resolution errors name the reference, never the value. Only [`Secret::expose`]
//! gives the value out.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The systemd variable that points at the unit's credentials directory.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where a secret's value comes from. Holds the reference only, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the configuration itself (discouraged; the loader warns).
    Inline,
    /// `{env: NAME}`: the environment variable `NAME`.
    Env(String),
    /// `{file: PATH}`: the contents of a file, trailing newline trimmed. `$CREDENTIALS_DIRECTORY`
    /// and `${CREDENTIALS_DIRECTORY}` in PATH are expanded; a relative PATH is relative to the
    /// working directory.
    File(String),
    /// `{credential: NAME}`: `$CREDENTIALS_DIRECTORY/NAME` (systemd `LoadCredential=NAME:…`).
    Credential(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline"),
            SecretSource::Env(name) => write!(f, "env {name}"),
            SecretSource::File(path) => write!(f, "file {path}"),
            SecretSource::Credential(name) => write!(f, "credential {name}"),
        }
    }
}

/// A secret string (password, token, app secret). The value is filled in when the configuration
/// is loaded ([`crate::config::Config::load`]); a `Secret` deserialized on its own from a
/// reference is empty until resolved.
#[derive(Clone)]
pub struct Secret {
    source: SecretSource,
    value: String,
}

impl Secret {
    /// A secret with a known value (tests, or values computed at run time).
    pub fn inline(value: impl Into<String>) -> Self {
        Self {
            source: SecretSource::Inline,
            value: value.into(),
        }
    }

    /// An unresolved reference; [`Secret::resolve`] fills in the value.
    pub fn reference(source: SecretSource) -> Self {
        Self {
            source,
            value: String::new(),
        }
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the value comes from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Whether the value was written inline in the configuration.
    pub fn is_inline(&self) -> bool {
        self.source == SecretSource::Inline
    }

    /// Fill in the value from its reference. `lookup` reads environment variables. The error
    /// message names the reference (variable, path, credential), never a value.
    pub fn resolve(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        let value = match &self.source {
            SecretSource::Inline => self.value.clone(),
            SecretSource::Env(name) => match lookup(name) {
                Some(v) => v,
                None => return Err(format!("environment variable {name} is not set")),
            },
            SecretSource::File(path) => {
                let expanded = expand_credentials_directory(path, lookup)?;
                read_secret_file(&expanded)?
            }
            SecretSource::Credential(name) => {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(format!(
                        "invalid credential name {name:?}: a file name without `/` is expected"
                    ));
                }
                let Some(dir) = lookup(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty()) else {
                    return Err(format!(
                        "credential {name}: {CREDENTIALS_DIRECTORY} is not set \
                         (run under systemd with LoadCredential={name}:… or use {{file: PATH}})"
                    ));
                };
                read_secret_file(&format!("{}/{name}", dir.trim_end_matches('/')))?
            }
        };
        if value.is_empty() {
            return Err(format!("secret ({}) is empty", self.source));
        }
        self.value = value;
        Ok(())
    }

    fn masked(&self) -> String {
        format!("*** ({})", self.source)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::inline(value)
    }
}

/// Replace `${CREDENTIALS_DIRECTORY}` and `$CREDENTIALS_DIRECTORY` in a path.
fn expand_credentials_directory(
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let braced = format!("${{{CREDENTIALS_DIRECTORY}}}");
    let bare = format!("${CREDENTIALS_DIRECTORY}");
    if !path.contains(&bare) && !path.contains(&braced) {
        return Ok(path.to_string());
    }
    let Some(dir) = lookup(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty()) else {
        return Err(format!(
            "file {path}: {CREDENTIALS_DIRECTORY} is not set (it is set by systemd for units \
             with LoadCredential=)"
        ));
    };
    let dir = dir.trim_end_matches('/');
    Ok(path.replace(&braced, dir).replace(&bare, dir))
}

/// Read a secret file; one trailing newline (`\n` or `\r\n`) is removed.
fn read_secret_file(path: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read secret file {path}: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("secret file {path} is not valid UTF-8"))?;
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if trimmed.is_empty() {
        return Err(format!("secret file {path} is empty"));
    }
    Ok(trimmed.to_string())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

const EXPECTED: &str = "a secret: {env: NAME}, {file: PATH}, {credential: NAME} or a quoted string";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    /// Wrong-type errors must not echo the value (serde's default `invalid_type` would).
    fn no_echo<E: de::Error>(what: &str) -> E {
        E::custom(format_args!("got {what}; expected {EXPECTED}"))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::inline(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::inline(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::no_echo("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::no_echo("a number (quote it)"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::no_echo("a number (quote it)"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::no_echo("a number (quote it)"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::no_echo("binary data"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
        Err(Self::no_echo("nothing"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Secret, E> {
        Err(Self::no_echo("nothing"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::no_echo("a list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut source: Option<SecretSource> = None;
        while let Some(key) = map.next_key::<String>()? {
            let make: fn(String) -> SecretSource = match key.as_str() {
                "env" => SecretSource::Env,
                "file" => SecretSource::File,
                "credential" => SecretSource::Credential,
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown secret reference `{other}`; expected one of env, file, credential"
                    )))
                }
            };
            if source.is_some() {
                return Err(de::Error::custom(
                    "a secret takes exactly one of env, file, credential",
                ));
            }
            let reference: String = map.next_value()?;
            if reference.trim().is_empty() {
                return Err(de::Error::custom(format_args!(
                    "secret reference `{key}` is empty"
                )));
            }
            source = Some(make(reference));
        }
        match source {
            Some(source) => Ok(Secret::reference(source)),
            None => Err(de::Error::custom(format_args!("expected {EXPECTED}"))),
        }
    }
}
