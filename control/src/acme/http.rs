//! instant-acme's HTTP client, implemented over realmctl's reqwest (rustls with ring, like
//! every other outbound call): the directory's TLS is verified against `directory_ca_file`
//! when given, the system roots otherwise; each call is bounded in time and body size. The
//! `Retry-After` of a refusal is kept for the renewal backoff (instant-acme drops it).

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The longest `Retry-After` honoured: a CA asking for more is retried after a day anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The `Retry-After` of the CA's last refusal (4xx/5xx), shared by the issuer and its client.
#[derive(Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<Duration>>>);

impl RetryAfter {
    /// Take what the last refusal asked for, if anything.
    pub fn take(&self) -> Option<Duration> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn set(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(d.min(MAX_RETRY_AFTER));
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Largest answer read from the CA (a chain is a few KiB; a directory less).
const MAX_BODY: usize = 1 << 20;

pub struct ReqwestHttp {
    client: reqwest::Client,
    retry_after: RetryAfter,
}

impl ReqwestHttp {
    pub fn new(ca_pem: Option<&[u8]>, retry_after: RetryAfter) -> Result<ReqwestHttp, String> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("realmctl/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("directory_ca_file: {e}"))?;
            b = b.tls_built_in_root_certs(false);
            for r in roots {
                b = b.add_root_certificate(r);
            }
        }
        Ok(ReqwestHttp {
            client: b.build().map_err(|e| format!("ACME HTTP client: {e}"))?,
            retry_after,
        })
    }
}

impl HttpClient for ReqwestHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let client = self.client.clone();
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            let url = parts.uri.to_string();
            let rsp = client
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| Error::Other(Box::new(e)))?;
            if rsp.status().as_u16() >= 400 {
                let asked = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                if let Some(d) = asked {
                    retry_after.set(d);
                }
            }
            let mut head = http::Response::builder().status(rsp.status());
            for (k, v) in rsp.headers() {
                head = head.header(k, v);
            }
            if rsp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Err(Error::Str("the CA's answer is too large"));
            }
            let bytes = rsp.bytes().await.map_err(|e| Error::Other(Box::new(e)))?;
            if bytes.len() > MAX_BODY {
                return Err(Error::Str("the CA's answer is too large"));
            }
            let (parts, ()) = head.body(())?.into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(bytes),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        let slot = RetryAfter::default();
        slot.set(Duration::from_secs(10 * 24 * 3600));
        assert_eq!(slot.take(), Some(MAX_RETRY_AFTER), "bounded");
        assert_eq!(slot.take(), None, "taken once");
    }
}
