//! Request parameters and the Temu request signature.
//!
//! Owns: the flat parameter set of one request ([`Params`]), the signature over it ([`Params::sign`])
//! and the exact body bytes that are sent ([`Params::to_body`]).
//!
//! Why raw JSON values: the signature covers nested arrays/objects as *the compact JSON that is
//! sent*, keys in the order sent. Each value is kept as a [`RawValue`] — serialized once — so the
//! bytes that are hashed and the bytes in the body are the same bytes, whatever key order a
//! nested object has. Must not: log or return anything that contains the app secret.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::value::RawValue;

/// The top-level parameters of one request, common and business side by side, sorted by key
/// (ASCII order, which is what the signature needs). `null` values are never stored.
#[derive(Clone, Default)]
pub struct Params {
    values: BTreeMap<String, Box<RawValue>>,
}

impl std::fmt::Debug for Params {
    /// Only the keys: values include the access token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// The fields of a business request struct (serialized compactly), nulls left out.
    pub fn from_business<T: Serialize>(request: &T) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(request)?;
        let values: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&text)?;
        let values = values
            .into_iter()
            .filter(|(_, v)| v.get() != "null")
            .collect();
        Ok(Self { values })
    }

    /// Sets `key` to `value` serialized as compact JSON; a `null` removes the key.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        self.insert_raw(key, raw);
        Ok(())
    }

    /// Sets `key` to already-serialized JSON, kept byte for byte (used for nested values whose key
    /// order matters, as in the documentation's example). A `null` removes the key.
    pub fn insert_raw(&mut self, key: &str, raw: Box<RawValue>) {
        if raw.get() == "null" {
            self.values.remove(key);
        } else {
            self.values.insert(key.to_string(), raw);
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.values.remove(key);
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The `sign` of these parameters: MD5 over `secret + k1v1k2v2… + secret`, upper-case hex.
    /// A `sign` key, if present, is not part of the signed text.
    pub fn sign(&self, app_secret: &str) -> String {
        let mut md5 = Md5::new();
        md5.update(app_secret.as_bytes());
        for (key, raw) in &self.values {
            if key == "sign" {
                continue;
            }
            md5.update(key.as_bytes());
            md5.update(sign_text(raw).as_bytes());
        }
        md5.update(app_secret.as_bytes());
        upper_hex(&md5.finalize())
    }

    /// The request body: every parameter plus `sign`, as one compact JSON object. The value bytes
    /// are exactly the ones [`Params::sign`] hashed.
    pub fn to_body(&self, sign: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        body.push(b'{');
        let mut first = true;
        let sign_raw = serde_json::value::to_raw_value(sign).ok();
        let entries = self
            .values
            .iter()
            .filter(|(k, _)| k.as_str() != "sign")
            .map(|(k, v)| (k.as_str(), v.get()))
            .chain(sign_raw.as_deref().map(|raw| ("sign", raw.get())));
        for (key, raw) in entries {
            if !first {
                body.push(b',');
            }
            first = false;
            // A key is a plain string: serializing it cannot fail.
            let key_json = serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_string());
            body.extend_from_slice(key_json.as_bytes());
            body.push(b':');
            body.extend_from_slice(raw.as_bytes());
        }
        body.push(b'}');
        body
    }
}

/// How one value enters the signed text: a string raw (unescaped), anything else as its JSON text
/// (numbers in decimal, `true`/`false`, arrays and objects as the compact JSON that is sent).
fn sign_text(raw: &RawValue) -> std::borrow::Cow<'_, str> {
    let text = raw.get();
    if text.starts_with('"') {
        match serde_json::from_str::<String>(text) {
            Ok(s) => std::borrow::Cow::Owned(s),
            Err(_) => std::borrow::Cow::Borrowed(text),
        }
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0x0f) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the partner documentation, "Signature Method for API request"
    /// (api-integration-guide/04-signature-method.md), steps 2–4.
    #[test]
    fn documented_example_signs_to_4ccf() {
        let mut p = Params::new();
        p.insert(
            "access_token",
            "2nifvmpyymvypwmcms5ct4uqqudrwgpmzbcnmkt1jzjkuaf3x56iixym",
        )
        .unwrap();
        p.insert("app_key", "f9d5cc9313893a20d5aa85c654e8f503")
            .unwrap();
        p.insert("data_type", "JSON").unwrap();
        let send = r#"[{"orderSendInfoList":[{"quantity":1,"orderSn":"211-21905473070712792","parentOrderSn":"PO-211-21905452099192792","goodsId":601099548666279,"skuId":17592352673534}],"carrierId":"699272611","trackingNumber":"270324232756"}]"#;
        p.insert_raw(
            "sendRequestList",
            RawValue::from_string(send.to_string()).unwrap(),
        );
        p.insert("sendType", &0).unwrap();
        p.insert("timestamp", &1711009072i64).unwrap();
        p.insert("type", "bg.logistics.shipment.confirm").unwrap();
        let secret = "c7e0a1a63542be4de3cb5488f9fba8149e8fc290";
        assert_eq!(p.sign(secret), "4CCF219942D4180C6DDA3CE36C1B838F");

        // The body carries the nested value byte for byte, plus the sign, and never the secret.
        let body = String::from_utf8(p.to_body(&p.sign(secret))).unwrap();
        assert!(body.contains(send));
        assert!(body.contains(r#""sign":"4CCF219942D4180C6DDA3CE36C1B838F""#));
        assert!(!body.contains(secret));
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["sendType"], 0);
    }

    #[test]
    fn nulls_are_left_out_and_sign_is_not_signed() {
        #[derive(Serialize)]
        struct Req {
            a: Option<i32>,
            b: i32,
        }
        let mut p = Params::from_business(&Req { a: None, b: 2 }).unwrap();
        assert!(!p.contains("a"));
        let before = p.sign("s");
        p.insert("sign", "XYZ").unwrap();
        assert_eq!(p.sign("s"), before);
        let body = String::from_utf8(p.to_body(&before)).unwrap();
        assert_eq!(body, format!(r#"{{"b":2,"sign":"{before}"}}"#));
    }
}
