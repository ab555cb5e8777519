//! instant-acme's HTTP client, implemented over realmctl's reqwest (rustls with ring, like
//! every other outbound call): the directory's TLS is verified against `directory_ca_file`
//! when given, the system roots otherwise; each call is bounded in time and body size.

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Largest answer read from the CA (a chain is a few KiB; a directory less).
const MAX_BODY: usize = 1 << 20;

pub struct ReqwestHttp {
    client: reqwest::Client,
}

impl ReqwestHttp {
    pub fn new(ca_pem: Option<&[u8]>) -> Result<ReqwestHttp, String> {
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
        })
    }
}

impl HttpClient for ReqwestHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let client = self.client.clone();
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
