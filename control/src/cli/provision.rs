//! CLI side of provisioning: wait for a tenant's steps with progress on stderr, claim its
//! one-time credentials, `tenant retry`, and the hidden Keycloak bootstrap for tests and
//! the local platform.

use super::client::{CliError, Client};
use crate::provision::TenantState;
use crate::views::{CredentialsView, ProvisionView, TenantView};
use reqwest::Method;
use std::time::{Duration, Instant};

/// Poll the tenant until its provisioning is ready (progress lines on stderr); a failed
/// step ends the wait with its error.
pub async fn wait_ready(c: &Client, id: &str, timeout: Duration) -> Result<TenantView, CliError> {
    let deadline = Instant::now() + timeout;
    let mut shown: Vec<String> = Vec::new();
    // Failed attempts before the wait began (a retry starts from a failed state).
    let mut before: Option<u32> = None;
    loop {
        let t: TenantView = c
            .get(&format!("/v1/tenants/{}", crate::percent::encode(id)))
            .await?;
        let Some(p) = t.provisioning.clone() else {
            return Ok(t);
        };
        for line in progress_lines(&p) {
            if !shown.contains(&line) {
                eprintln!("  {line}");
                shown.push(line);
            }
        }
        let failed_attempts = p
            .steps
            .iter()
            .filter(|s| s.state == "failed")
            .map(|s| s.attempts)
            .max()
            .unwrap_or(0);
        let before = *before.get_or_insert(failed_attempts);
        match p.state {
            TenantState::Ready => return Ok(t),
            // Retried with backoff: a passing hiccup is waited out, a lasting one reported.
            TenantState::Failed if failed_attempts > before && failed_attempts >= 3 => {
                return Err(CliError::Timeout(format!(
                    "provisioning of {id} failed: {}\n  it is retried with backoff; `realmctl tenant retry {id}` retries now",
                    p.error.unwrap_or_default()
                )))
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(CliError::Timeout(format!(
                "tenant {id} is still {} after {timeout:?}; `realmctl tenant show {id}` shows its steps",
                p.state.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until a deleted tenant is gone from realmctl: every provisioned part removed (realm,
/// ingress, DNS; the database archived). A removal that keeps failing is reported with its
/// error, like a failed creation.
pub async fn wait_gone(c: &Client, id: &str, timeout: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let mut shown: Vec<String> = Vec::new();
    loop {
        let path = format!("/v1/tenants/{}", crate::percent::encode(id));
        let t: TenantView = match c.get(&path).await {
            Ok(t) => t,
            Err(CliError::Api { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let Some(p) = t.provisioning.clone() else {
            // Nothing was provisioned: gone with the table version already waited for.
            return Ok(());
        };
        for line in progress_lines(&p) {
            if !shown.contains(&line) {
                eprintln!("  {line}");
                shown.push(line);
            }
        }
        let stuck = p.state == TenantState::DeleteFailed
            && p.steps
                .iter()
                .any(|s| s.state == "failed" && s.attempts >= 3);
        if stuck || Instant::now() >= deadline {
            return Err(CliError::Timeout(format!(
                "tenant {id} is still {} ({}); its removal is retried with backoff, `realmctl tenant show {id}` shows its steps",
                p.state.name(),
                p.error.unwrap_or_else(|| "in progress".into())
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn progress_lines(p: &ProvisionView) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| {
            let mut l = format!("{:<9} {:<10} {}", s.step, s.provider, s.state);
            if let Some(e) = &s.last_error {
                l.push_str(&format!(" ({e})"));
            }
            l
        })
        .collect()
}

/// The one-time credentials, as text; `None` when the tenant has none (identity `none`) or
/// they were handed out already.
pub async fn claim(c: &Client, id: &str) -> Option<String> {
    let path = format!("/v1/tenants/{}/credentials", crate::percent::encode(id));
    let v: CredentialsView = c.send(Method::POST, &path, None, None).await.ok()?;
    let held = "(held by an earlier claim)";
    Some(format!(
        "\nFirst admin of realm {id} (shown once; the password is temporary and must be changed at first login):\n  issuer:    {}\n  username:  {}\n  password:  {}\nTenant API client (service account):\n  client_id:     {}\n  client_secret: {}\n",
        v.issuer,
        v.admin_username,
        v.admin_password.as_deref().unwrap_or(held),
        v.admin_client_id,
        v.admin_client_secret.as_deref().unwrap_or(held),
    ))
}

/// The steps of a tenant, for `tenant show`.
pub fn steps_text(t: &TenantView) -> String {
    let Some(p) = &t.provisioning else {
        return String::new();
    };
    let mut out = format!(
        "  provisioning: {}{}\n",
        p.state.name(),
        if p.routed {
            " (routed)"
        } else {
            " (not routed)"
        }
    );
    if let Some(e) = &p.error {
        out.push_str(&format!("  error:     {e}\n"));
    }
    for s in &p.steps {
        out.push_str(&format!(
            "    {:<9} {:<10} {:<8} attempts {}{}\n",
            s.step,
            s.provider,
            s.state,
            s.attempts,
            s.last_error
                .as_ref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// `realmctl tenant retry ID`.
pub async fn retry(
    c: &Client,
    id: &str,
    wait: Option<Duration>,
    json: bool,
) -> Result<String, CliError> {
    let path = format!("/v1/tenants/{}/retry", crate::percent::encode(id));
    let t: TenantView = c.send(Method::POST, &path, None, None).await?;
    let t = match wait {
        Some(timeout) => wait_ready(c, id, timeout).await?,
        None => t,
    };
    if json {
        return super::pretty(&t);
    }
    Ok(format!(
        "retrying tenant {}: {}\n{}",
        t.id,
        t.provisioning.as_ref().map_or("ready", |p| p.state.name()),
        steps_text(&t)
    ))
}

/// Hidden `realmctl keycloak-bootstrap`: make realmctl's service-account client in the
/// admin realm with the bootstrap admin, and write its secret to a file.
pub async fn bootstrap(
    url: &str,
    realm: &str,
    user: &str,
    password: &str,
    client_id: &str,
    secret_file: &std::path::Path,
) -> Result<String, CliError> {
    let secret = crate::provision::keycloak::bootstrap(url, realm, user, password, client_id)
        .await
        .map_err(|e| CliError::Usage(format!("Keycloak bootstrap: {e}")))?;
    write_secret(secret_file, &secret)?;
    Ok(format!(
        "client {client_id} ready in realm {realm}; its secret is in {}\n",
        secret_file.display()
    ))
}

/// Write a secret to a file readable by its owner only (mode 0600, whatever the umask).
pub fn write_secret(secret_file: &std::path::Path, secret: &str) -> Result<(), CliError> {
    let cannot =
        |e: std::io::Error| CliError::Usage(format!("cannot write {}: {e}", secret_file.display()));
    // A secret: readable by its owner only, whatever the umask.
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let mut file = file.open(secret_file).map_err(cannot)?;
    // A file that existed before keeps its mode at open: narrow it too.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(cannot)?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes()).map_err(cannot)
}
