//! `realmctl cert add|list|show|rm`: the certificates gateways serve, over `/v1/certificates`.

use super::client::{CliError, Client};
use super::output::{columns, expiry};
use super::pretty;
use crate::views::{AcmeCertView, CertList, CertView, Deleted};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Longest PEM file read (the API refuses larger bodies anyway).
const MAX_PEM_FILE: u64 = 1 << 20;

#[derive(Subcommand)]
pub enum CertCmd {
    /// Add or replace a certificate and its private key.
    ///
    /// It is checked as every gateway checks it (chain order, key, names, validity);
    /// gateways serve it for its hosts with the next table. The key is sealed at rest and
    /// never shown again.
    Add {
        /// The certificate's name (1-63 of a-z, 0-9, '.', '_', '-').
        name: String,
        /// PEM file: the certificate, then each issuer in turn (a full chain file).
        #[arg(long = "cert")]
        cert: PathBuf,
        /// PEM file: its unencrypted private key.
        #[arg(long = "key")]
        key: PathBuf,
        /// A host name it is served for (exact, or *.suffix for one label); repeatable.
        /// Default: the certificate's own DNS names.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// List certificates: names, expiry, issuer, the tenants they cover, and for those
    /// ordered from the ACME CA their state (pending, valid, renewing, failed) and the CA's
    /// last problem.
    List,
    /// Show one certificate (never its key).
    Show {
        /// The certificate's name.
        name: String,
    },
    /// Remove a certificate; gateways stop serving it with the next table.
    Rm {
        /// The certificate's name.
        name: String,
    },
}

pub(super) async fn cert(c: &Client, cmd: CertCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        CertCmd::Add {
            name,
            cert,
            key,
            hosts,
        } => {
            let mut body = json!({
                "cert_pem": read_pem(&cert, "--cert")?,
                "key_pem": read_pem(&key, "--key")?,
            });
            if !hosts.is_empty() {
                body["hosts"] = json!(hosts);
            }
            let v: CertView = c.send(Method::PUT, &path(&name), Some(&body), None).await?;
            if json {
                return pretty(&v);
            }
            Ok(format!(
                "certificate {} set (table version {})\n{}",
                v.name,
                v.table_version,
                show(&v)
            ))
        }
        CertCmd::List => {
            let v: CertList = c.get_all("/v1/certificates", "certificates").await?;
            if json {
                return pretty(&v);
            }
            Ok(list(&v))
        }
        CertCmd::Show { name } => {
            let v: CertView = c.get(&path(&name)).await?;
            if json {
                return pretty(&v);
            }
            Ok(show(&v))
        }
        CertCmd::Rm { name } => {
            let d: Deleted = c.send(Method::DELETE, &path(&name), None, None).await?;
            if json {
                return pretty(&d);
            }
            Ok(format!(
                "removed certificate {} (table version {})\n",
                d.deleted, d.table_version
            ))
        }
    }
}

fn path(name: &str) -> String {
    format!("/v1/certificates/{}", crate::percent::encode(name))
}

fn read_pem(p: &Path, flag: &str) -> Result<Value, CliError> {
    let bad = |e: String| CliError::Usage(format!("{flag} {}: {e}", p.display()));
    let file = std::fs::File::open(p).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("not a PEM text file ({e})")))?;
    if text.len() as u64 > MAX_PEM_FILE {
        return Err(bad(format!("larger than {MAX_PEM_FILE} bytes")));
    }
    Ok(Value::String(text))
}

fn list(v: &CertList) -> String {
    let mut rows: Vec<Vec<String>> = v
        .certificates
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.hosts.join(","),
                c.acme
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |a| a.state.clone()),
                c.not_after.clone(),
                expiry(&c.state, c.days_left),
                if c.issuer.is_empty() {
                    "-".to_owned()
                } else {
                    c.issuer.clone()
                },
                if c.tenants.is_empty() {
                    "-".to_owned()
                } else {
                    c.tenants.join(",")
                },
            ]
        })
        .collect();
    rows.extend(v.ordering.iter().map(|a| {
        vec![
            a.certificate.clone(),
            a.hosts.join(","),
            a.state.clone(),
            "-".to_owned(),
            "not issued yet".to_owned(),
            "-".to_owned(),
            a.tenant.clone(),
        ]
    }));
    let mut out = columns(
        &[
            "NAME",
            "HOSTS",
            "ACME",
            "NOT AFTER",
            "EXPIRY",
            "ISSUER",
            "TENANTS",
        ],
        &rows,
    );
    let troubled = v
        .certificates
        .iter()
        .filter_map(|c| c.acme.as_ref())
        .chain(&v.ordering)
        .filter(|a| a.state == "failed");
    for a in troubled {
        out.push_str(&format!("{}: {}\n", a.certificate, problem_line(a)));
    }
    out
}

/// The CA's problem (type and detail), or the failure, and when it is retried.
fn problem_line(a: &AcmeCertView) -> String {
    let what = match (&a.problem, &a.error) {
        (Some(p), _) => format!("{} ({})", p.detail, p.kind),
        (None, Some(e)) => e.clone(),
        (None, None) => "failed".to_owned(),
    };
    match &a.next_attempt_at {
        Some(at) => format!("{what}; next attempt {at}"),
        None => what,
    }
}

fn show(c: &CertView) -> String {
    let mut out = format!(
        "certificate {}\n  hosts:       {}\n  not before:  {}\n  not after:   {} ({})\n  issuer:      {}\n  fingerprint: {}\n  tenants:     {}\n  version:     {}\n",
        c.name,
        c.hosts.join(", "),
        c.not_before,
        c.not_after,
        expiry(&c.state, c.days_left),
        if c.issuer.is_empty() { "-" } else { &c.issuer },
        c.fingerprint,
        if c.tenants.is_empty() { "-".to_owned() } else { c.tenants.join(", ") },
        c.table_version
    );
    if let Some(a) = &c.acme {
        out.push_str(&format!("  acme:        {}", a.state));
        if let Some(at) = &a.renew_at {
            out.push_str(&format!(
                ", renews at {at} ({})",
                a.renew_source.as_deref().unwrap_or("lifetime")
            ));
        }
        out.push('\n');
        if a.state == "failed" {
            out.push_str(&format!("  problem:     {}\n", problem_line(a)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::Problem;

    fn acme(state: &str) -> AcmeCertView {
        AcmeCertView {
            certificate: "acme".into(),
            tenant: "acme".into(),
            state: state.into(),
            hosts: vec!["acme.example.dev".into()],
            problem: None,
            error: None,
            attempts: 0,
            next_attempt_at: None,
            renew_at: None,
            renew_source: None,
            ari_window: None,
            updated_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_list_shows_acme_states_and_the_cas_problem() {
        let mut failed = acme("failed");
        failed.certificate = "other".into();
        failed.problem = Some(Problem {
            kind: "urn:ietf:params:acme:error:rateLimited".into(),
            detail: "too many certificates".into(),
        });
        failed.next_attempt_at = Some("2025-01-01T01:00:00Z".into());
        let out = list(&CertList {
            certificates: vec![],
            ordering: vec![acme("pending"), failed],
        });
        assert!(out.contains("ACME"), "{out}");
        assert!(
            out.contains("pending") && out.contains("not issued yet"),
            "{out}"
        );
        assert!(
            out.contains("other: too many certificates (urn:ietf:params:acme:error:rateLimited); next attempt 2025-01-01T01:00:00Z"),
            "{out}"
        );
    }
}
