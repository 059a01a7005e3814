//! Redaction: what of a request may reach a log line, an error, `Debug` output or `/health`.
//!
//! Owns: the configured secrets ([`Secrets`]: app secrets, access tokens, the proxy password),
//! blanking them out of any text ([`scrub`]), and [`url_label`] (a URL without userinfo or query).
//! Must not: log, or keep anything but the secrets' text — it is the one place they are listed.

/// Secrets shorter than this are not scrubbed (they would blank out ordinary words).
const MIN_SECRET_LEN: usize = 4;

/// The configured secrets, longest first (so a secret that contains another leaks no part).
#[derive(Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Keeps the texts worth scrubbing, longest first.
    pub fn new(mut texts: Vec<String>) -> Self {
        texts.retain(|s| s.len() >= MIN_SECRET_LEN);
        texts.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self(texts)
    }

    /// `text` with each secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.0)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

/// Replaces each secret in `text` with `***` (in the order given: pass longest first).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// A URL fit for logs and health: scheme, host, port and path only (no userinfo, no query).
pub fn url_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                port,
                u.path()
            )
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_credentials() {
        assert_eq!(
            url_label("http://u:pw@relay.example:8080/openapi/router?t=secret"),
            "http://relay.example:8080/openapi/router"
        );
        assert_eq!(scrub("a tok123 b", &["tok123".into()]), "a *** b");
    }

    #[test]
    fn longest_secret_first_and_short_ones_kept() {
        let secrets = Secrets::new(vec!["abc".into(), "tok1".into(), "tok123".into()]);
        assert_eq!(secrets.scrub("x tok123 y tok1 abc"), "x *** y *** abc");
        assert!(!format!("{secrets:?}").contains("tok"));
    }
}
