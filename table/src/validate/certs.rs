//! Certificates as they enter a table: PEM that parses, a chain in order whose links verify,
//! a key that belongs to the certificate, host names the certificate covers (certificate
//! semantics, RFC 6125), a stated not-after that agrees, bounded sizes. Validity in time is
//! reported, not judged: whether an expired certificate is refused depends on whether it is
//! new (see [`CheckedCert::is_current`]), which only the reader knows.

use super::{is_name, map_with_capacity, rebase, FastMap, Problem};
use crate::host::{normalise_host, HostPattern};
use crate::wire::{Certificate, Table};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Longest `cert_pem`, `key_pem` and decoded `ocsp_staple`, and the most certificates in one
/// chain, in one table, and host names per certificate.
pub const MAX_CERT_PEM_BYTES: usize = 64 * 1024;
pub const MAX_KEY_PEM_BYTES: usize = 16 * 1024;
pub const MAX_OCSP_BYTES: usize = 16 * 1024;
pub const MAX_CHAIN_LEN: usize = 8;
pub const MAX_CERTIFICATES: usize = 1_000_000;
pub const MAX_CERT_HOSTS: usize = 256;

/// A certificate that passed validation, ready to serve.
#[derive(Clone)]
pub struct CheckedCert {
    /// The names it is served for, normalised (a wildcard is certificate-style: one label).
    pub hosts: Vec<HostPattern>,
    /// The leaf's validity, seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// SHA-256 of the leaf certificate (DER): what identifies it across tables.
    pub fingerprint: [u8; 32],
    /// The chain, its signing key and its OCSP staple, as the TLS library serves them.
    pub key: Arc<CertifiedKey>,
}

impl CheckedCert {
    /// Whether `now` (seconds since the Unix epoch) lies in the certificate's validity.
    pub fn is_current(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether the certificate is served for `host` (a normalised request host or SNI).
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| cert_name_covers(p, host))
    }

    /// `sha256:<hex>` of the leaf, as reported to operators.
    pub fn fingerprint_hex(&self) -> String {
        format!("sha256:{}", hex::encode(self.fingerprint))
    }
}

impl fmt::Debug for CheckedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("CheckedCert")
            .field("hosts", &self.hosts)
            .field("not_after", &self.not_after)
            .field("fingerprint", &self.fingerprint_hex())
            .finish_non_exhaustive()
    }
}

impl PartialEq for CheckedCert {
    fn eq(&self, other: &Self) -> bool {
        self.hosts == other.hosts
            && self.fingerprint == other.fingerprint
            && self.key.ocsp == other.key.ocsp
    }
}

/// Whether a certificate name covers `host`, with certificate semantics (RFC 6125 §6.4.3):
/// an exact name itself; `*.beta.test` exactly one label below `beta.test`.
pub fn cert_name_covers(name: &HostPattern, host: &str) -> bool {
    match name {
        HostPattern::Exact(n) => n == host,
        HostPattern::Wildcard(suffix) => host
            .strip_suffix(suffix.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
    }
}

/// One certificate as it would enter a table, at paths relative to it (`hosts[0]`): ready to
/// serve, or every problem. Its name's syntax is checked here; uniqueness is the table's.
pub fn certificate(cert: &Certificate) -> Result<CheckedCert, Vec<Problem>> {
    let mut problems = Vec::new();
    if !is_name(&cert.name) {
        problems.push(Problem::new(
            "name",
            "must be 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        ));
    }
    let hosts = parse_cert_hosts(&cert.hosts, &mut problems);
    let checked = check_material(cert, hosts, &mut problems);
    match checked {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems),
    }
}

fn parse_cert_hosts(raw: &[String], problems: &mut Vec<Problem>) -> Vec<HostPattern> {
    if raw.is_empty() {
        problems.push(Problem::new("hosts", "needs at least one host name"));
    }
    if raw.len() > MAX_CERT_HOSTS {
        problems.push(Problem::new(
            "hosts",
            format!("more than {MAX_CERT_HOSTS} host names"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (h, name) in raw.iter().enumerate().take(MAX_CERT_HOSTS) {
        match parse_cert_name(name) {
            Ok(p) if out.contains(&p) => problems.push(Problem::new(
                format!("hosts[{h}]"),
                format!("{p} listed twice"),
            )),
            Ok(p) => out.push(p),
            Err(e) => problems.push(Problem::new(format!("hosts[{h}]"), e)),
        }
    }
    out
}

/// A certificate host name: an exact DNS name or `*.` and a name of at least two labels; a
/// wildcard stands for exactly one label, so `*.*.x.test` and `a.*.test` are refused.
pub fn parse_cert_name(raw: &str) -> Result<HostPattern, String> {
    let (wild, rest) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if rest.contains('*') {
        return Err(format!(
            "{raw:?}: a wildcard is one leading '*.' label and covers exactly one label"
        ));
    }
    let name = normalise_host(rest).map_err(|e| format!("{raw:?} is not a host name: {e}"))?;
    if name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('[') {
        return Err(format!(
            "{raw:?}: an IP address cannot be asked for by SNI; certificates are chosen by name"
        ));
    }
    if wild {
        if !name.contains('.') {
            return Err(format!(
                "{raw:?}: a wildcard needs at least two labels after '*.'"
            ));
        }
        Ok(HostPattern::Wildcard(name))
    } else {
        Ok(HostPattern::Exact(name))
    }
}

/// The PEM material: chain, key, SANs, validity, OCSP staple.
fn check_material(
    cert: &Certificate,
    hosts: Vec<HostPattern>,
    problems: &mut Vec<Problem>,
) -> Option<CheckedCert> {
    if cert.cert_pem.len() > MAX_CERT_PEM_BYTES {
        problems.push(Problem::new(
            "cert_pem",
            format!("longer than {MAX_CERT_PEM_BYTES} bytes"),
        ));
        return None;
    }
    if cert.key_pem.len() > MAX_KEY_PEM_BYTES {
        problems.push(Problem::new(
            "key_pem",
            format!("longer than {MAX_KEY_PEM_BYTES} bytes"),
        ));
        return None;
    }
    let chain = read_chain(&cert.cert_pem, problems)?;
    let parsed: Vec<X509Certificate<'_>> = {
        let mut out = Vec::with_capacity(chain.len());
        for (i, der) in chain.iter().enumerate() {
            match X509Certificate::from_der(der.as_ref()) {
                Ok(([], c)) => out.push(c),
                _ => {
                    problems.push(Problem::new(
                        "cert_pem",
                        format!(
                            "certificate {} of the chain is not a valid X.509 certificate",
                            i + 1
                        ),
                    ));
                    return None;
                }
            }
        }
        out
    };
    check_chain_order(&parsed, problems);
    let leaf = &parsed[0];
    let names = dns_names(leaf);
    for (h, host) in hosts.iter().enumerate() {
        if !names.iter().any(|n| san_covers(n, host)) {
            problems.push(Problem::new(
                format!("hosts[{h}]"),
                format!(
                    "{host} is not covered by the certificate's DNS names ({})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    }
    let not_before = u64::try_from(leaf.validity().not_before.timestamp()).unwrap_or(0);
    let not_after = u64::try_from(leaf.validity().not_after.timestamp()).unwrap_or(0);
    match crate::parse_expiry(&cert.not_after) {
        Some(stated) if stated == not_after => {}
        Some(_) | None => problems.push(Problem::new(
            "not_after",
            format!(
                "{:?} does not agree with the certificate's not-after {}",
                cert.not_after,
                rfc3339(not_after)
            ),
        )),
    }
    let ocsp = cert.ocsp_staple.as_ref().and_then(|b64| {
        match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(der) if der.is_empty() => {
                problems.push(Problem::new("ocsp_staple", "is empty"));
                None
            }
            Ok(der) if der.len() > MAX_OCSP_BYTES => {
                problems.push(Problem::new(
                    "ocsp_staple",
                    format!("longer than {MAX_OCSP_BYTES} bytes"),
                ));
                None
            }
            Ok(der) => Some(der),
            Err(_) => {
                problems.push(Problem::new(
                    "ocsp_staple",
                    "is not base64 (DER OCSP response)",
                ));
                None
            }
        }
    });
    let key = read_key(&cert.key_pem, problems)?;
    let fingerprint: [u8; 32] = Sha256::digest(chain[0].as_ref()).into();
    let provider = rustls::crypto::ring::default_provider();
    let signing = match provider.key_provider.load_private_key(key) {
        Ok(k) => k,
        Err(e) => {
            problems.push(Problem::new(
                "key_pem",
                format!("not a usable private key (ECDSA P-256/P-384, RSA or Ed25519): {e}"),
            ));
            return None;
        }
    };
    let mut certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            problems.push(Problem::new(
                "key_pem",
                "does not belong to the certificate (public keys differ)",
            ));
        }
        Err(e) => problems.push(Problem::new(
            "key_pem",
            format!("cannot be matched with the certificate: {e}"),
        )),
    }
    certified.ocsp = ocsp;
    Some(CheckedCert {
        hosts,
        not_before,
        not_after,
        fingerprint,
        key: Arc::new(certified),
    })
}

fn read_chain(pem: &str, problems: &mut Vec<Problem>) -> Option<Vec<CertificateDer<'static>>> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        match item {
            Ok(der) => chain.push(der),
            Err(e) => {
                problems.push(Problem::new("cert_pem", format!("malformed PEM: {e}")));
                return None;
            }
        }
        if chain.len() > MAX_CHAIN_LEN {
            problems.push(Problem::new(
                "cert_pem",
                format!("more than {MAX_CHAIN_LEN} certificates in the chain"),
            ));
            return None;
        }
    }
    if chain.is_empty() {
        problems.push(Problem::new(
            "cert_pem",
            "no CERTIFICATE block found (PEM, the certificate first, then its issuers)",
        ));
        return None;
    }
    Some(chain)
}

fn read_key(pem: &str, problems: &mut Vec<Problem>) -> Option<PrivateKeyDer<'static>> {
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        problems.push(Problem::new(
            "key_pem",
            "an encrypted private key: give the key unencrypted (realmctl seals it at rest)",
        ));
        return None;
    }
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(Problem::new(
                "key_pem",
                format!("no private key found (PEM: PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY): {e}"),
            ));
            None
        }
    }
}

/// Leaf first, then each certificate's issuer: names chain and signatures verify.
fn check_chain_order(chain: &[X509Certificate<'_>], problems: &mut Vec<Problem>) {
    for (i, pair) in chain.windows(2).enumerate() {
        let (child, issuer) = (&pair[0], &pair[1]);
        let linked = child.issuer().as_raw() == issuer.subject().as_raw()
            && child.verify_signature(Some(issuer.public_key())).is_ok();
        if !linked {
            problems.push(Problem::new(
                "cert_pem",
                format!(
                    "the chain is not in order: certificate {} did not issue certificate {} (give the certificate first, then each issuer in turn)",
                    i + 2,
                    i + 1
                ),
            ));
            return;
        }
    }
}

/// The leaf's DNS names (subjectAltName), lower-cased.
fn dns_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The leaf's DNS names and not-after (seconds since the Unix epoch), read from PEM: what an
/// operator's certificate file claims, for callers that describe it as a [`Certificate`].
pub fn leaf_names_and_expiry(cert_pem: &str) -> Result<(Vec<String>, u64), String> {
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .ok_or_else(|| "no CERTIFICATE block found".to_owned())?
        .map_err(|e| format!("malformed PEM: {e}"))?;
    let (_, leaf) = X509Certificate::from_der(der.as_ref())
        .map_err(|_| "not a valid X.509 certificate".to_owned())?;
    let not_after = u64::try_from(leaf.validity().not_after.timestamp()).unwrap_or(0);
    Ok((dns_names(&leaf), not_after))
}

/// Whether a certificate's SAN covers a claimed host name (itself possibly a wildcard).
fn san_covers(san: &str, host: &HostPattern) -> bool {
    match (parse_cert_name(san), host) {
        (Ok(s), HostPattern::Exact(h)) => cert_name_covers(&s, h),
        (Ok(HostPattern::Wildcard(s)), HostPattern::Wildcard(h)) => s == *h,
        _ => false,
    }
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2027-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Every certificate of a table checked, names unique, and each host name (exact or
/// wildcard) claimed by one certificate. Returns the checked ones, in table order.
pub(super) fn check_certificates(table: &Table, problems: &mut Vec<Problem>) -> Vec<CheckedCert> {
    if table.certificates.len() > MAX_CERTIFICATES {
        problems.push(Problem::new(
            "certificates",
            format!("more than {MAX_CERTIFICATES} certificates"),
        ));
        return Vec::new();
    }
    let mut names: FastMap<&str, usize> = map_with_capacity(table.certificates.len());
    let mut owners: FastMap<HostPattern, usize> = map_with_capacity(table.certificates.len());
    let mut out = Vec::with_capacity(table.certificates.len());
    for (c, cert) in table.certificates.iter().enumerate() {
        let start = problems.len();
        if let Some(first) = names.insert(&cert.name, c) {
            problems.push(Problem::new(
                "name",
                format!(
                    "certificate name {:?} already used by certificates[{first}]",
                    cert.name
                ),
            ));
        }
        match certificate(cert) {
            Ok(checked) => {
                for (h, host) in checked.hosts.iter().enumerate() {
                    if let Some(&first) = owners.get(host) {
                        problems.push(cert_host_taken(h, host, &table.certificates[first].name));
                    } else {
                        owners.insert(host.clone(), c);
                    }
                }
                out.push(checked);
            }
            Err(mut p) => problems.append(&mut p),
        }
        name_certificate(&cert.name, &mut problems[start..]);
        rebase(&mut problems[start..], || format!("certificates[{c}]"));
    }
    out
}

/// A certificate's host `hosts[h]` is already served by certificate `owner`.
pub(crate) fn cert_host_taken(h: usize, host: &HostPattern, owner: &str) -> Problem {
    Problem::new(
        format!("hosts[{h}]"),
        format!(
            "{host} is already served by certificate {owner:?}: a host name has one certificate"
        ),
    )
}

/// A certificate's problems say which certificate they are about.
pub(crate) fn name_certificate(name: &str, problems: &mut [Problem]) {
    for p in problems {
        p.message = format!("certificate {name:?}: {}", p.message);
    }
}

#[cfg(test)]
mod tests;
