//! `realmctl cert add|list|show|rm`: the certificates gateways serve, over `/v1/certificates`.

use super::client::{CliError, Client};
use super::output::{columns, expiry};
use super::pretty;
use crate::views::{CertList, CertView, Deleted};
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
    /// List certificates: names, expiry, the tenants they cover.
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
            let v: CertList = c.get("/v1/certificates").await?;
            if json {
                return pretty(&v);
            }
            Ok(list(&v.certificates))
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

fn list(certs: &[CertView]) -> String {
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.hosts.join(","),
                c.not_after.clone(),
                expiry(&c.state, c.days_left),
                if c.tenants.is_empty() {
                    "-".to_owned()
                } else {
                    c.tenants.join(",")
                },
            ]
        })
        .collect();
    columns(&["NAME", "HOSTS", "NOT AFTER", "EXPIRY", "TENANTS"], &rows)
}

fn show(c: &CertView) -> String {
    format!(
        "certificate {}\n  hosts:       {}\n  not before:  {}\n  not after:   {} ({})\n  fingerprint: {}\n  tenants:     {}\n  version:     {}\n",
        c.name,
        c.hosts.join(", "),
        c.not_before,
        c.not_after,
        expiry(&c.state, c.days_left),
        c.fingerprint,
        if c.tenants.is_empty() { "-".to_owned() } else { c.tenants.join(", ") },
        c.table_version
    )
}
