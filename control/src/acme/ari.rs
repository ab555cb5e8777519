//! ACME Renewal Information (RFC 9773): the CA's suggested window for renewing an installed
//! certificate, read through instant-acme with the certificate's ARI id (its authority key
//! identifier and serial). A CA without the extension leaves the lifetime schedule in force.

use super::{AcmeError, Issuer};
use instant_acme::CertificateIdentifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::time::Duration;

/// The CA's suggested renewal window, and when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    /// The CA's `Retry-After` on the answer: when the window may have moved.
    pub recheck: Duration,
}

/// The ARI id (`base64url(AKI).base64url(serial)`) of a chain's leaf.
pub fn certificate_id(chain_pem: &str) -> Result<CertificateIdentifier<'static>, String> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or("the stored chain has no certificate")?;
    CertificateIdentifier::try_from(&leaf).map(CertificateIdentifier::into_owned)
}

impl Issuer {
    /// The CA's renewal window for this chain; `None` when the CA does not offer ARI.
    pub async fn renewal_window(&self, chain_pem: &str) -> Result<Option<Window>, AcmeError> {
        let id = certificate_id(chain_pem).map_err(AcmeError::Local)?;
        let account = self.account().await?;
        match account.renewal_info(&id).await {
            Ok((info, recheck)) => {
                let w = info.suggested_window;
                let ms = |secs: i64, nanos: u32| {
                    u64::try_from(secs).unwrap_or(0) * 1000 + u64::from(nanos / 1_000_000)
                };
                Ok(Some(Window {
                    start_ms: ms(w.start.unix_timestamp(), w.start.nanosecond()),
                    end_ms: ms(w.end.unix_timestamp(), w.end.nanosecond()),
                    recheck,
                }))
            }
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(self.map(e)),
        }
    }
}
