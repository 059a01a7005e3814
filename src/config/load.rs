//! Loading: YAML file + `TEMU_SYNC__…` environment overrides → secrets resolved → validated.
//!
//! Owns: the load pipeline and the mapping of every failure to a [`ConfigIssue`] that names the
//! key path and its origin (file line/column, or the environment variable that set it).
//!
//! How overrides work: the file is first deserialized straight into [`Config`] (so its errors
//! carry lines). If any `TEMU_SYNC__` variables exist, the file is also read into a generic tree
//! whose scalars keep their source text (so `app_key: 0123` stays `0123`), the overrides are
//! applied to the tree, and the tree is deserialized again; errors of that pass name the variable.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::error::{ConfigError, ConfigIssue, IssueOrigin};
use super::model::Config;
use super::secret::Secret;

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
        let file_origin = |loc: Option<(u64, u64)>| match loc {
            Some((line, column)) => IssueOrigin::File {
                source: source.to_string(),
                line,
                column,
            },
            None => IssueOrigin::FileOnly {
                source: source.to_string(),
            },
        };

        // 1. The file alone, typed: errors carry the file's line and column.
        let typed = parse_typed(text).map_err(|f| {
            ConfigError::Invalid(vec![ConfigIssue {
                origin: file_origin(f.location),
                key: f.path,
                message: f.message,
            }])
        })?;

        // 2. The file as a tree: positions of every key (for later messages) and the base for
        //    overrides.
        let mut tree = parse_tree(text).map_err(|f| {
            ConfigError::Invalid(vec![ConfigIssue {
                origin: file_origin(f.location),
                key: f.path,
                message: f.message,
            }])
        })?;
        let mut positions = HashMap::new();
        collect_positions(&tree, String::new(), &mut positions);

        // 3. Environment overrides.
        let mut overrides = collect_overrides(vars)?;
        let mut config = if overrides.is_empty() {
            typed
        } else {
            for o in &mut overrides {
                let value = env_value_node(&o.value).map_err(|message| {
                    ConfigError::one(IssueOrigin::Env { var: o.var.clone() }, "", message)
                })?;
                o.path = apply_override(&mut tree, &o.segments, value, String::new()).map_err(
                    |message| {
                        ConfigError::one(IssueOrigin::Env { var: o.var.clone() }, "", message)
                    },
                )?;
            }
            let merged = serde_saphyr::to_string(&tree_to_json(&tree)).map_err(|e| {
                ConfigError::one(
                    IssueOrigin::EnvAny {
                        vars: overrides.iter().map(|o| o.var.clone()).collect(),
                    },
                    "",
                    format!("cannot apply the overrides: {e}"),
                )
            })?;
            parse_typed(&merged).map_err(|f| {
                let origin = override_for(&overrides, &f.path)
                    .map(|var| IssueOrigin::Env { var })
                    .unwrap_or_else(|| IssueOrigin::EnvAny {
                        vars: overrides.iter().map(|o| o.var.clone()).collect(),
                    });
                ConfigError::Invalid(vec![ConfigIssue {
                    origin,
                    key: f.path,
                    message: f.message,
                }])
            })?
        };

        let locate = |key: &str| -> IssueOrigin {
            if let Some(var) = override_for(&overrides, key) {
                return IssueOrigin::Env { var };
            }
            file_origin(positions.get(key).copied())
        };

        // 4. Secrets.
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

        // 5. Validation.
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

// ---------------------------------------------------------------------------------------------
// Typed parsing and error wording

/// A deserialization failure, before its origin is known.
struct Failure {
    path: String,
    location: Option<(u64, u64)>,
    message: String,
}

fn parse_typed(text: &str) -> Result<Config, Failure> {
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, Option<Config>>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    match result {
        Ok(config) => Ok(config.unwrap_or_default()),
        Err(e) => Err(Failure {
            path: clean_path(&path),
            location: location_of(&e),
            message: describe(&e, text),
        }),
    }
}

/// `serde_path_to_error` writes `.` for the root and `?` for a key it could not name.
fn clean_path(path: &str) -> String {
    let p = path.trim_end_matches(".?").trim_end_matches('?');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

fn location_of(e: &serde_saphyr::Error) -> Option<(u64, u64)> {
    e.location()
        .filter(|l| *l != serde_saphyr::Location::UNKNOWN && l.line() > 0)
        .map(|l| (l.line(), l.column()))
}

fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            other => return other,
        }
    }
}

/// The message of a YAML error, without its location, with what was expected.
fn describe(e: &serde_saphyr::Error, text: &str) -> String {
    let e = innermost(e);
    let message = match e {
        serde_saphyr::Error::InvalidScalar { ty, location } => {
            let span = location.span();
            let found = span
                .byte_offset()
                .zip(span.byte_len())
                .and_then(|(o, l)| text.get(o as usize..(o + l) as usize))
                .filter(|s| !s.is_empty() && !s.contains('\n'))
                .map(|s| format!(" {s:?}"))
                .unwrap_or_default();
            format!("invalid value{found}: expected {}", expected_for(ty))
        }
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            format!(
                "unknown key `{field}`; expected one of: {}",
                expected.join(", ")
            )
        }
        other => {
            let m = UserMessageFormatter.format_message(other).into_owned();
            if m.contains("invalid socket address syntax") {
                format!("{m}: expected an address like 127.0.0.1:8080 or [::1]:8080")
            } else if m == "expected string scalar" {
                "expected a single value, found a list or a mapping".to_string()
            } else if m == "expected mapping start" {
                "expected a mapping (indented `key: value` lines or `{key: value}`)".to_string()
            } else {
                m
            }
        }
    };
    // Rendering entry points neutralize control characters; do the same.
    let mut clean = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            clean.extend(c.escape_debug());
        } else {
            clean.push(c);
        }
    }
    clean
}

fn expected_for(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
            let max = match ty {
                "u8" => u8::MAX.to_string(),
                "u16" => u16::MAX.to_string(),
                "u32" => u32::MAX.to_string(),
                _ => u64::MAX.to_string(),
            };
            format!("a whole number from 0 to {max}")
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "bool" => "true or false".to_string(),
        "char" => "a single character".to_string(),
        other => format!("a value of type {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The generic tree (scalars keep their source text)

#[derive(Debug, Clone)]
enum Node {
    Null,
    Scalar(String),
    Seq(Vec<Entry>),
    Map(Vec<(String, Entry)>),
}

#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    /// Line and column in the file; `None` for values from the environment.
    position: Option<(u64, u64)>,
}

/// What serde-saphyr hands out; numbers and booleans are replaced by their source text later.
enum RawNode {
    Null,
    Typed(String),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(String, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Typed(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Typed(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Typed(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Typed(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<RawNode, E> {
        Ok(RawNode::Typed(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Typed(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Spanned<RawNode>>()? {
            entries.push(entry);
        }
        Ok(RawNode::Map(entries))
    }
}

fn parse_tree(text: &str) -> Result<Entry, Failure> {
    match serde_saphyr::from_str::<Spanned<RawNode>>(text) {
        Ok(root) => Ok(to_entry(root, text)),
        Err(e) => Err(Failure {
            path: String::new(),
            location: location_of(&e),
            message: describe(&e, text),
        }),
    }
}

fn to_entry(raw: Spanned<RawNode>, text: &str) -> Entry {
    let location = raw.referenced;
    let position = (location != serde_saphyr::Location::UNKNOWN && location.line() > 0)
        .then(|| (location.line(), location.column()));
    let node = match raw.value {
        RawNode::Null => Node::Null,
        RawNode::Str(s) => Node::Scalar(s),
        RawNode::Typed(fallback) => {
            // A number or boolean: keep its text as written (`0123`, `1e3`, `yes`), so the
            // typed pass reads it exactly as it would from the file.
            let span = location.span();
            let source = span
                .byte_offset()
                .zip(span.byte_len())
                .and_then(|(o, l)| text.get(o as usize..(o + l) as usize))
                .filter(|s| !s.is_empty() && !s.starts_with('*') && !s.contains('\n'));
            Node::Scalar(source.map_or(fallback, str::to_string))
        }
        RawNode::Seq(items) => Node::Seq(items.into_iter().map(|i| to_entry(i, text)).collect()),
        RawNode::Map(entries) => Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, to_entry(v, text)))
                .collect(),
        ),
    };
    Entry { node, position }
}

fn collect_positions(entry: &Entry, path: String, out: &mut HashMap<String, (u64, u64)>) {
    if let Some(pos) = entry.position {
        out.insert(path.clone(), pos);
    }
    match &entry.node {
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_positions(item, format!("{path}[{i}]"), out);
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries {
                collect_positions(v, join_key(&path, k), out);
            }
        }
        Node::Null | Node::Scalar(_) => {}
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Scalars become strings: serde-saphyr quotes them where needed and reads quoted numbers,
/// booleans and durations into typed fields, so each value is typed by the field it lands in.
fn tree_to_json(entry: &Entry) -> serde_json::Value {
    match &entry.node {
        Node::Null => serde_json::Value::Null,
        Node::Scalar(s) => serde_json::Value::String(s.clone()),
        Node::Seq(items) => serde_json::Value::Array(items.iter().map(tree_to_json).collect()),
        Node::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), tree_to_json(v)))
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Environment overrides

struct Override {
    var: String,
    value: String,
    /// Lower-cased path segments after the prefix.
    segments: Vec<String>,
    /// The key path it set, e.g. `shops[0].base_url` (filled in when applied).
    path: String,
}

fn collect_overrides(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut out = Vec::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::one(
                IssueOrigin::Env { var },
                "",
                "empty path segment; the form is TEMU_SYNC__SECTION__KEY (double underscores \
                 between segments, list indices as numbers)",
            ));
        }
        out.push(Override {
            var,
            value,
            segments,
            path: String::new(),
        });
    }
    // Deterministic order; list indices compared as numbers so `…__2` is appended before `…__10`.
    out.sort_by(|a, b| sort_key(&a.segments).cmp(&sort_key(&b.segments)));
    Ok(out)
}

fn sort_key(segments: &[String]) -> Vec<(u8, usize, &str)> {
    segments
        .iter()
        .map(|s| match s.parse::<usize>() {
            Ok(n) => (0, n, ""),
            Err(_) => (1, 0, s.as_str()),
        })
        .collect()
}

/// An override's value as a YAML scalar: typed by the field it lands in (`20`, `45s`, `true`);
/// empty, `~` or `null` unset an optional key; a value starting with `{`, `[` or a quote is
/// read as YAML (`{env: PGPASSWORD}`, `[orders, products]`, `"0123"`).
fn env_value_node(raw: &str) -> Result<Node, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || matches!(trimmed, "~" | "null" | "Null" | "NULL") {
        return Ok(Node::Null);
    }
    if trimmed.starts_with(['{', '[', '"', '\'']) {
        return match serde_saphyr::from_str::<Spanned<RawNode>>(trimmed) {
            Ok(node) => {
                let mut entry = to_entry(node, trimmed);
                clear_positions(&mut entry);
                Ok(entry.node)
            }
            Err(e) => Err(format!("the value is not valid YAML: {}", describe(&e, ""))),
        };
    }
    Ok(Node::Scalar(raw.to_string()))
}

fn clear_positions(entry: &mut Entry) {
    entry.position = None;
    match &mut entry.node {
        Node::Seq(items) => items.iter_mut().for_each(clear_positions),
        Node::Map(entries) => entries.iter_mut().for_each(|(_, v)| clear_positions(v)),
        Node::Null | Node::Scalar(_) => {}
    }
}

/// Set `segments` in the tree to `value`, creating maps and list entries on the way; returns the
/// key path it set.
fn apply_override(
    entry: &mut Entry,
    segments: &[String],
    value: Node,
    path: String,
) -> Result<String, String> {
    let Some((segment, rest)) = segments.split_first() else {
        entry.node = value;
        entry.position = None;
        return Ok(path);
    };
    let is_index = segment.parse::<usize>().is_ok();
    if matches!(entry.node, Node::Null | Node::Scalar(_)) {
        entry.node = if is_index {
            Node::Seq(Vec::new())
        } else {
            Node::Map(Vec::new())
        };
    }
    match &mut entry.node {
        Node::Seq(items) => {
            let Ok(index) = segment.parse::<usize>() else {
                return Err(format!(
                    "{} is a list: expected an index (0, 1, …) instead of `{segment}`",
                    display_path(&path)
                ));
            };
            let len = items.len();
            if index > len {
                return Err(format!(
                    "{} has {len} entries: index {index} would leave a gap (use {len} to add one)",
                    display_path(&path)
                ));
            }
            if index == len {
                items.push(Entry {
                    node: Node::Null,
                    position: None,
                });
            }
            let child_path = format!("{path}[{index}]");
            apply_override(&mut items[index], rest, value, child_path)
        }
        Node::Map(entries) => {
            let child_path = join_key(&path, segment);
            let position = match entries.iter().position(|(k, _)| k == segment) {
                Some(p) => p,
                None => {
                    entries.push((
                        segment.clone(),
                        Entry {
                            node: Node::Null,
                            position: None,
                        },
                    ));
                    entries.len() - 1
                }
            };
            apply_override(&mut entries[position].1, rest, value, child_path)
        }
        Node::Null | Node::Scalar(_) => Err("internal: node kind changed".to_string()),
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the configuration"
    } else {
        path
    }
}

/// The override responsible for `key`: one that set `key` or a parent of it, or one below
/// `key` (a missing field in an entry an override created). The most specific wins.
fn override_for(overrides: &[Override], key: &str) -> Option<String> {
    let is_prefix = |parent: &str, child: &str| {
        parent.is_empty()
            || child == parent
            || (child.starts_with(parent)
                && matches!(child.as_bytes().get(parent.len()), Some(b'.' | b'[')))
    };
    overrides
        .iter()
        .filter(|o| !o.path.is_empty() || o.segments.is_empty())
        .filter(|o| is_prefix(&o.path, key) || (!key.is_empty() && is_prefix(key, &o.path)))
        .max_by_key(|o| {
            if is_prefix(&o.path, key) {
                (1, o.path.len())
            } else {
                (0, usize::MAX - o.path.len())
            }
        })
        .map(|o| o.var.clone())
}
