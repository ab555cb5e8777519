//! Certificates minted for tests (feature `test-util`): a CA, and leaf certificates it
//! issues for given names and validity, ready to put in a table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::wire::Certificate;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SignatureAlgorithm,
};

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM), for clients to trust.
    pub pem: String,
}

/// When a minted certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// 2025-01-01 to 2099-01-01.
    Current,
    /// 2020-01-01 to 2021-01-01.
    Expired,
    /// 2098-01-01 to 2099-01-01.
    NotYet,
}

/// Which key a minted certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    /// RSA 2048 (PKCS#1 v1.5 SHA-256): one fixed test key, as ring cannot generate RSA keys.
    Rsa2048,
}

/// The RSA key every `KeyKind::Rsa2048` certificate gets (test use only).
const TEST_RSA_KEY: &str = include_str!("test_rsa_key.pem");

impl KeyKind {
    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// A minted leaf: its chain and key in PEM, and its not-after (Unix seconds).
#[derive(Clone)]
pub struct Minted {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: u64,
}

impl Minted {
    /// The table entry serving this certificate for `hosts`.
    pub fn entry(&self, name: &str, hosts: &[&str]) -> Certificate {
        Certificate {
            name: name.to_owned(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            not_after: crate::validate::rfc3339(self.not_after),
            ocsp_staple: None,
        }
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A current ECDSA P-256 certificate for `names` (DNS names, wildcards allowed).
    pub fn leaf(&self, names: &[&str]) -> Minted {
        self.leaf_with(names, Validity::Current, KeyKind::EcdsaP256)
    }

    /// A certificate for `names`, valid when said, with a key of the given kind. The chain
    /// is the leaf alone (clients trust the CA).
    pub fn leaf_with(&self, names: &[&str], validity: Validity, key: KeyKind) -> Minted {
        let key = match key {
            KeyKind::Rsa2048 => KeyPair::from_pem_and_sign_algo(TEST_RSA_KEY, key.alg()).unwrap(),
            _ => KeyPair::generate_for(key.alg()).unwrap(),
        };
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        let (from, to) = match validity {
            Validity::Current => ((2025, 1, 1), (2099, 1, 1)),
            Validity::Expired => ((2020, 1, 1), (2021, 1, 1)),
            Validity::NotYet => ((2098, 1, 1), (2099, 1, 1)),
        };
        params.not_before = date_time_ymd(from.0, from.1, from.2);
        params.not_after = date_time_ymd(to.0, to.1, to.2);
        let not_after = u64::try_from(params.not_after.unix_timestamp()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Minted {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        }
    }
}
