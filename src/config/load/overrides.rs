//! Environment overrides: `TEMU_SYNC__SECTION__KEY=value` applied to the generic tree.
//!
//! Owns: which variables are overrides (and their order: list indices compared as numbers),
//! reading a value as a YAML scalar or flow value, setting it in the tree (creating maps and list
//! entries on the way, refusing gaps), and finding the override responsible for a key path.
//! Must not: read the process environment (the variables are passed in).

use super::tree::{join_key, to_entry, Entry, Node, RawNode};
use super::typed::describe;
use super::ENV_PREFIX;
use crate::config::error::{ConfigError, IssueOrigin};
use serde_saphyr::Spanned;

pub(super) struct Override {
    pub(super) var: String,
    pub(super) value: String,
    /// Lower-cased path segments after the prefix.
    pub(super) segments: Vec<String>,
    /// The key path it set, e.g. `shops[0].base_url` (filled in when applied).
    pub(super) path: String,
}

pub(super) fn collect_overrides(
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
pub(super) fn env_value_node(raw: &str) -> Result<Node, String> {
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
pub(super) fn apply_override(
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
pub(super) fn override_for(overrides: &[Override], key: &str) -> Option<String> {
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
