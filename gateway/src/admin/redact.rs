//! What the admin GETs show of a table: the document with every private key (certificates',
//! the assertion signing keys) and login client secret replaced by a marker.

use bytes::Bytes;
use serde_json::Value;

/// What stands in for a secret.
pub const REDACTED: &str = "<redacted>";

/// The table `raw` with `certificates[].key_pem`, `assertion.keys[].private_key_pem` and
/// `tenants[].realm.client_secret` redacted. A table without either is returned as it was received (same bytes).
pub fn redacted_table(raw: &Bytes) -> Bytes {
    let Ok(mut doc) = serde_json::from_slice::<Value>(raw) else {
        // The table in force parsed when it was applied; never echo what cannot be checked.
        return Bytes::from_static(b"{}");
    };
    let mut changed = false;
    let mut hide = |v: Option<&mut Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            *v = Value::String(REDACTED.to_owned());
            changed = true;
        }
    };
    if let Some(certs) = doc.get_mut("certificates").and_then(Value::as_array_mut) {
        for c in certs {
            hide(c.get_mut("key_pem"));
        }
    }
    let assertion_keys = doc
        .get_mut("assertion")
        .and_then(|a| a.get_mut("keys"))
        .and_then(Value::as_array_mut);
    for k in assertion_keys.into_iter().flatten() {
        hide(k.get_mut("private_key_pem"));
    }
    if let Some(tenants) = doc.get_mut("tenants").and_then(Value::as_array_mut) {
        for t in tenants {
            hide(t.get_mut("realm").and_then(|r| r.get_mut("client_secret")));
        }
    }
    if !changed {
        return raw.clone();
    }
    serde_json::to_vec(&doc).map_or_else(|_| Bytes::from_static(b"{}"), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_secrets_are_redacted_the_rest_kept() {
        let raw = Bytes::from_static(
            br#"{"version":3,"tenants":[{"id":"a","realm":{"issuer":"https://i","client_secret":"s3cret"}},{"id":"b"}],
               "certificates":[{"name":"c","cert_pem":"CERT","key_pem":"-----BEGIN PRIVATE KEY-----x"}],
               "assertion":{"issuer":"rg","keys":[{"kid":"a1","private_key_pem":"-----BEGIN PRIVATE KEY-----y","state":"active"}]}}"#,
        );
        let out = redacted_table(&raw);
        let text = std::str::from_utf8(&out).expect("utf-8");
        assert!(
            !text.contains("s3cret") && !text.contains("PRIVATE KEY"),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["certificates"][0]["key_pem"], REDACTED);
        assert_eq!(v["certificates"][0]["cert_pem"], "CERT");
        assert_eq!(v["assertion"]["keys"][0]["private_key_pem"], REDACTED);
        assert_eq!(v["assertion"]["keys"][0]["kid"], "a1");
        assert_eq!(v["tenants"][0]["realm"]["client_secret"], REDACTED);
        assert_eq!(v["tenants"][0]["realm"]["issuer"], "https://i");
        assert_eq!(v["version"], 3);
        // Nothing secret: the very bytes received.
        let plain = Bytes::from_static(br#"{"version":1,"tenants":[{"id":"a"}]}"#);
        assert_eq!(redacted_table(&plain), plain);
    }
}
