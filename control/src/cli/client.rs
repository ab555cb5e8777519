//! The CLI's HTTP client for realmctl's API, and the errors it turns failures into: each
//! says what went wrong and what to do.

use crate::views::{ErrorBody, ProblemView};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Entries asked for per page when a list is followed to its end (the API's most).
const LIST_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach realmctl at {url}: {detail}\n  is `realmctl serve` running? point --url (or REALMCTL_URL) at it")]
    Unreachable { url: String, detail: String },
    #[error("realmctl refused the token (401): set REALMCTL_TOKEN, or --token-file, to the operator token (or, for `realmctl key`, a live API key)")]
    Unauthorized,
    #[error("{}", invalid_text(.0))]
    Invalid(Vec<ProblemView>),
    #[error("{}", api_text(*.status, .body))]
    Api { status: StatusCode, body: ErrorBody },
    #[error("unexpected answer from realmctl: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Timeout(String),
}

fn invalid_text(problems: &[ProblemView]) -> String {
    let mut out = format!("invalid request ({} problem(s)):", problems.len());
    for p in problems {
        out.push_str(&format!("\n  - {p}"));
    }
    out
}

fn api_text(status: StatusCode, body: &ErrorBody) -> String {
    let mut out = format!("{} ({}): {}", body.error, status.as_u16(), body.message);
    if let Some(d) = &body.details {
        out.push_str(&format!("\n  details: {d}"));
    }
    out
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `ca_file`: a PEM CA that realmctl's https certificate chains to (besides the system
    /// roots), e.g. the local platform's.
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Client, CliError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        if let Some(p) = ca_file {
            let pem = std::fs::read(p).map_err(|e| {
                CliError::Usage(format!("cannot read --ca-file {}: {e}", p.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CliError::Usage(format!(
                    "--ca-file {}: not PEM certificates: {e}",
                    p.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(CliError::Usage(format!(
                    "--ca-file {}: no certificate in it",
                    p.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build HTTP client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(Method::GET, path, None, None).await
    }

    /// GET a paged list (`?after=&limit=`), following `next` to the last page: one answer
    /// with every entry under `field`, the other fields as the first page had them. A
    /// realmctl without paging answers one page, without `next`.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
    ) -> Result<T, CliError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut first: Option<Map<String, Value>> = None;
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!(
                    "{path}{sep}limit={LIST_PAGE}&after={}",
                    crate::percent::encode(a)
                ),
                None => format!("{path}{sep}limit={LIST_PAGE}"),
            };
            let mut page: Map<String, Value> = self.get(&url).await?;
            match page.remove(field) {
                Some(Value::Array(list)) => items.extend(list),
                _ => {
                    return Err(CliError::BadResponse(format!(
                        "{path}: the answer has no {field:?} list"
                    )))
                }
            }
            let next = page.remove("next");
            first.get_or_insert(page);
            match next {
                // A cursor that does not move would loop: the list ends there.
                Some(Value::String(n)) if after.as_ref() != Some(&n) => after = Some(n),
                _ => break,
            }
        }
        let mut all = first.unwrap_or_default();
        all.insert(field.to_owned(), Value::Array(items));
        serde_json::from_value(Value::Object(all))
            .map_err(|e| CliError::BadResponse(format!("{path}: {e}")))
    }

    /// Send a request; a non-2xx answer becomes the matching [`CliError`].
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<u64>,
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(rev) = if_match {
            req = req.header(reqwest::header::IF_MATCH, format!("\"{rev}\""));
        }
        let resp = req.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            detail: root_cause(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            detail: root_cause(&e),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| CliError::BadResponse(format!("{status}: {e}")));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(CliError::Unauthorized);
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) if status == StatusCode::UNPROCESSABLE_ENTITY && !body.problems.is_empty() => {
                Err(CliError::Invalid(body.problems))
            }
            Ok(body) => Err(CliError::Api { status, body }),
            Err(_) => Err(CliError::BadResponse(format!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ))),
        }
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
