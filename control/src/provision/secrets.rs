//! Step secrets at rest: AES-256-GCM with a key from config, a random nonce per seal, and
//! the tenant and step as associated data so a sealed value cannot be moved to another row.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use std::path::Path;

const NONCE_LEN: usize = 12;

/// The sealing key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    /// A key made at start and never written down: what it seals is lost at exit.
    ephemeral: bool,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: Aes256Gcm::new(key.into()),
            ephemeral: false,
        }
    }

    /// A random key for a daemon without `provision.secrets_key_file`: nothing it seals
    /// outlives the process, so what must be kept (certificate keys) is refused.
    pub fn ephemeral() -> SecretBox {
        SecretBox {
            ephemeral: true,
            ..SecretBox::random()
        }
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// A key file holds 32 bytes as base64 or 64 hex characters (whitespace trimmed), e.g.
    /// `head -c 32 /dev/urandom | base64`.
    pub fn from_file(path: &Path) -> Result<SecretBox, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|e| e.to_string())?
        } else {
            STANDARD
                .decode(t)
                .map_err(|_| format!("{}: not base64 or hex", path.display()))?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "{}: the key must be 32 bytes, found {}",
                path.display(),
                b.len()
            )
        })?;
        Ok(SecretBox::new(&key))
    }

    /// A random key, for tests and for a daemon whose steps make no secrets.
    pub fn random() -> SecretBox {
        let mut key = [0u8; 32];
        fill_random(&mut key);
        SecretBox::new(&key)
    }

    /// Seal `secrets` for row (`tenant`, `step`); `None` when there is nothing to seal.
    pub fn seal(&self, tenant: &str, step: &str, secrets: &Map<String, Value>) -> Option<String> {
        if secrets.is_empty() {
            return None;
        }
        self.seal_with(&aad(tenant, step), secrets)
    }

    fn seal_with(&self, aad: &[u8], secrets: &Map<String, Value>) -> Option<String> {
        let plain = serde_json::to_vec(secrets).ok()?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad })
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(STANDARD.encode(out))
    }

    /// Open what [`SecretBox::seal`] made for the same row; an error means a wrong key or a
    /// tampered row.
    pub fn open(
        &self,
        tenant: &str,
        step: &str,
        sealed: &str,
    ) -> Result<Map<String, Value>, String> {
        self.open_with(&aad(tenant, step), sealed)
    }

    fn open_with(&self, aad: &[u8], sealed: &str) -> Result<Map<String, Value>, String> {
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| "sealed secrets are not base64".to_owned())?;
        if raw.len() < NONCE_LEN + 16 {
            return Err("sealed secrets are truncated".into());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| {
                "cannot open sealed secrets (wrong provision.secrets_key_file, or a tampered row)"
                    .to_owned()
            })?;
        serde_json::from_slice(&plain).map_err(|e| format!("sealed secrets: {e}"))
    }
}

impl SecretBox {
    /// Seal a certificate's private key (PEM) for the certificate `name`: the same cipher and
    /// key as the step secrets, bound to the certificate so a sealed key cannot be moved to
    /// another certificate's row (nor to a step's: its associated data has another prefix).
    pub fn seal_certificate_key(&self, name: &str, key_pem: &str) -> Option<String> {
        let mut m = Map::new();
        m.insert("key_pem".into(), Value::String(key_pem.to_owned()));
        self.seal_with(&cert_aad(name), &m)
    }

    /// Open what [`SecretBox::seal_certificate_key`] sealed for the same name.
    pub fn open_certificate_key(&self, name: &str, sealed: &str) -> Result<String, String> {
        let mut m = self.open_with(&cert_aad(name), sealed)?;
        match m.remove("key_pem") {
            Some(Value::String(k)) => Ok(k),
            _ => Err("sealed certificate key: no key_pem".into()),
        }
    }
}

impl SecretBox {
    /// Seal an assertion signing key (PEM) for `kid`, bound to it like a certificate key.
    pub fn seal_assertion_key(&self, kid: &str, key_pem: &str) -> Option<String> {
        let mut m = Map::new();
        m.insert("key_pem".into(), Value::String(key_pem.to_owned()));
        self.seal_with(&assertion_aad(kid), &m)
    }

    /// Open what [`SecretBox::seal_assertion_key`] sealed for the same kid.
    pub fn open_assertion_key(&self, kid: &str, sealed: &str) -> Result<String, String> {
        match self
            .open_with(&assertion_aad(kid), sealed)?
            .remove("key_pem")
        {
            Some(Value::String(k)) => Ok(k),
            _ => Err("sealed assertion key: no key_pem".into()),
        }
    }
}

fn assertion_aad(kid: &str) -> Vec<u8> {
    format!("realmctl-assertion-key/{kid}").into_bytes()
}

fn cert_aad(name: &str) -> Vec<u8> {
    format!("realmctl-certificate/{name}").into_bytes()
}

fn aad(tenant: &str, step: &str) -> Vec<u8> {
    format!("realmctl/{tenant}/{step}").into_bytes()
}

/// OS randomness; getrandom failing means no secure randomness at all, which is fatal.
pub fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the OS random source failed");
}

/// A random password of `n` characters from an unambiguous alphabet.
pub fn random_password(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = vec![0u8; n];
    fill_random(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_and_open() {
        let b = SecretBox::random();
        let mut m = Map::new();
        m.insert("client_secret".into(), json!("s3cret"));
        let sealed = b.seal("acme", "identity", &m).expect("sealed");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(b.open("acme", "identity", &sealed).expect("open"), m);
        assert!(
            b.open("other", "identity", &sealed).is_err(),
            "bound to its row"
        );
        assert!(SecretBox::random()
            .open("acme", "identity", &sealed)
            .is_err());
        assert!(b.seal("acme", "identity", &Map::new()).is_none());
        assert!(!format!("{b:?}").contains('['));
    }

    #[test]
    fn certificate_keys() {
        let b = SecretBox::random();
        let sealed = b
            .seal_certificate_key("acme", "-----BEGIN PRIVATE KEY-----x")
            .expect("sealed");
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(
            b.open_certificate_key("acme", &sealed).expect("open"),
            "-----BEGIN PRIVATE KEY-----x"
        );
        assert!(
            b.open_certificate_key("globex", &sealed).is_err(),
            "bound to its name"
        );
        assert!(
            b.open("certificate", "acme", &sealed).is_err(),
            "not a step's secret"
        );
    }

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("rc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("k");
        std::fs::write(&p, STANDARD.encode([7u8; 32])).expect("write");
        assert!(SecretBox::from_file(&p).is_ok());
        std::fs::write(&p, hex::encode([7u8; 32])).expect("write");
        assert!(SecretBox::from_file(&p).is_ok());
        std::fs::write(&p, STANDARD.encode([7u8; 16])).expect("write");
        assert!(SecretBox::from_file(&p)
            .expect_err("short")
            .contains("32 bytes"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn passwords() {
        let p = random_password(20);
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password(20));
    }
}
