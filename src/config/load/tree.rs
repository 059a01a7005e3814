//! The generic pass: the file as a tree whose scalars keep their source text.
//!
//! Owns: [`Entry`] / [`Node`] (so `app_key: 0123` stays `0123` when the tree is written out
//! again), the positions of every key for later messages, and the tree as JSON for the second
//! typed pass. Must not: interpret values — each is typed by the field it lands in.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::typed::{describe, location_of, position, source_text, Failure};

#[derive(Debug, Clone)]
pub(super) enum Node {
    Null,
    Scalar(String),
    Seq(Vec<Entry>),
    Map(Vec<(String, Entry)>),
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) node: Node,
    /// Line and column in the file; `None` for values from the environment.
    pub(super) position: Option<(u64, u64)>,
}

/// What serde-saphyr hands out; numbers and booleans are replaced by their source text later.
pub(super) enum RawNode {
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

/// Numbers and booleans: kept as their value's text until [`to_entry`] finds the source text.
macro_rules! typed_scalars {
    ($($visit:ident: $ty:ty),* $(,)?) => {
        $(fn $visit<E>(self, v: $ty) -> Result<RawNode, E> {
            Ok(RawNode::Typed(v.to_string()))
        })*
    };
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
    typed_scalars! {
        visit_bool: bool,
        visit_i64: i64,
        visit_u64: u64,
        visit_i128: i128,
        visit_u128: u128,
        visit_f64: f64,
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

pub(super) fn parse_tree(text: &str) -> Result<Entry, Failure> {
    match serde_saphyr::from_str::<Spanned<RawNode>>(text) {
        Ok(root) => Ok(to_entry(root, text)),
        Err(e) => Err(Failure {
            path: String::new(),
            location: location_of(&e),
            message: describe(&e, text),
        }),
    }
}

pub(super) fn to_entry(raw: Spanned<RawNode>, text: &str) -> Entry {
    let location = raw.referenced;
    let position = position(location);
    let node = match raw.value {
        RawNode::Null => Node::Null,
        RawNode::Str(s) => Node::Scalar(s),
        RawNode::Typed(fallback) => {
            // A number or boolean: keep its text as written (`0123`, `1e3`, `yes`), so the
            // typed pass reads it exactly as it would from the file.
            let source = source_text(location.span(), text).filter(|s| !s.starts_with('*'));
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

pub(super) fn collect_positions(
    entry: &Entry,
    path: String,
    out: &mut HashMap<String, (u64, u64)>,
) {
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

pub(super) fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Scalars become strings: serde-saphyr quotes them where needed and reads quoted numbers,
/// booleans and durations into typed fields, so each value is typed by the field it lands in.
pub(super) fn tree_to_json(entry: &Entry) -> serde_json::Value {
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
