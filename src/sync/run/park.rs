//! What a persisted park carries besides its reason: the digest of the stream's configuration
//! when it was parked (a different one at a later run clears the park: the operator changed
//! something) and whether the daemon re-probes it by itself (a permanent database error: the
//! cause may clear without us, e.g. a privilege granted again, space freed).
//!
//! Both are kept at the end of `sync_state.parked_reason` as ` [park config=… probe=…]`, so the
//! park needs no column of its own; [`Park::parse`] reads it back (a reason without the tag, as
//! written by an older version, has no digest and is not probed).
//!
//! Owns the tag's format and the digest. Must not: decide when to probe (`policy.rs`).

use md5::{Digest as _, Md5};

use crate::config::{DatabaseConfig, Stream, SyncConfig};
use crate::temu::TemuShop;

const OPEN: &str = " [park config=";
/// The store keeps 4000 characters of a reason; the tag needs fewer than 50 of them.
const MAX_REASON_CHARS: usize = 3900;

/// A park as `sync_state` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Park {
    /// The server's or API's message, and what to do.
    pub reason: String,
    /// The configuration digest when parked (`None`: unknown).
    pub config: Option<String>,
    /// Re-probed every `sync.retry_backoff_max` until a run succeeds.
    pub probe: bool,
}

impl Park {
    /// The stored text: the reason (shortened to fit the column's bound with the tag), then the tag.
    pub fn to_stored(&self) -> String {
        let reason: String = self.reason.chars().take(MAX_REASON_CHARS).collect();
        format!(
            "{reason}{OPEN}{} probe={}]",
            self.config.as_deref().unwrap_or("-"),
            if self.probe { "yes" } else { "no" }
        )
    }

    /// Reads a stored park back.
    pub fn parse(stored: &str) -> Self {
        let untagged = || Park {
            reason: stored.to_string(),
            config: None,
            probe: false,
        };
        let Some(at) = stored.rfind(OPEN) else {
            return untagged();
        };
        let tag = &stored[at + OPEN.len()..];
        let Some((config, rest)) = tag.split_once(" probe=") else {
            return untagged();
        };
        let probe = match rest {
            "yes]" => true,
            "no]" => false,
            _ => return untagged(),
        };
        Park {
            reason: stored[..at].to_string(),
            config: (config != "-").then(|| config.to_string()),
            probe,
        }
    }
}

/// The digest (16 hex digits) of what a run of `stream` for `shop` is configured with: the
/// shop (credentials included, hashed), the stream, the sync settings and the database URL.
pub fn config_digest(
    shop: &TemuShop,
    stream: Stream,
    sync: &SyncConfig,
    db: &DatabaseConfig,
) -> String {
    let mut bytes = Vec::new();
    shop.config_for_digest(&mut bytes);
    bytes.extend_from_slice(stream.as_str().as_bytes());
    bytes.extend_from_slice(format!("{sync:?}").as_bytes());
    bytes.extend_from_slice(db.url.as_bytes());
    let digest = Md5::digest(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_park_reads_back_as_stored() {
        let park = Park {
            reason: "database: permission denied for table orders [x]".into(),
            config: Some("0123abcd0123abcd".into()),
            probe: true,
        };
        assert_eq!(Park::parse(&park.to_stored()), park);
        let plain = Park::parse("token expired");
        assert_eq!(
            (plain.reason.as_str(), plain.config, plain.probe),
            ("token expired", None, false)
        );
    }
}
