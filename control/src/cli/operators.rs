//! `realmctl operators bootstrap`: create or converge the operators' realm in Keycloak (the
//! console's sign-in) with Keycloak's bootstrap admin; talks to Keycloak, not to realmctl.

use super::client::CliError;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum OperatorsCmd {
    /// Create (or bring up to date) the operators' realm: the realm, realm roles viewer and
    /// admin, the console's client with its redirect URL, and optionally a first admin.
    /// Prints the `operators:` section for realmctl's configuration.
    Bootstrap {
        /// Keycloak's base URL, like https://sso.example.com.
        #[arg(long)]
        keycloak_url: String,
        /// The bootstrap admin's user name (master realm).
        #[arg(long, env = "KEYCLOAK_ADMIN_USER", default_value = "admin")]
        admin_user: String,
        /// File holding the bootstrap admin's password.
        #[arg(long)]
        admin_password_file: PathBuf,
        /// The operators' realm.
        #[arg(long, default_value = "operators")]
        realm: String,
        /// The console's client id.
        #[arg(long, default_value = "realmctl-console")]
        client_id: String,
        /// The console's public URL (its origin), like https://realmctl.example.com.
        #[arg(long)]
        console_url: String,
        /// Make a confidential client and write its secret to this file (mode 0600);
        /// without it the client is public (PKCE alone).
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
        /// A first operator with the admin role (created if absent).
        #[arg(long, requires = "first_admin_password_file")]
        first_admin: Option<String>,
        /// File holding the first admin's password.
        #[arg(long, requires = "first_admin")]
        first_admin_password_file: Option<PathBuf>,
    },
}

fn read_secret(path: &Path, flag: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {flag} {}: {e}", path.display())))?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(CliError::Usage(format!(
            "{flag} {} is empty",
            path.display()
        )));
    }
    Ok(text)
}

pub async fn run(cmd: OperatorsCmd) -> Result<String, CliError> {
    let OperatorsCmd::Bootstrap {
        keycloak_url,
        admin_user,
        admin_password_file,
        realm,
        client_id,
        console_url,
        client_secret_file,
        first_admin,
        first_admin_password_file,
    } = cmd;
    let console = url::Url::parse(&console_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--console-url {console_url:?} is not an http(s) URL like https://realmctl.example.com"
            ))
        })?;
    let origin = console.origin().ascii_serialization();
    let password = read_secret(&admin_password_file, "--admin-password-file")?;
    let first_admin = match (first_admin, first_admin_password_file) {
        (Some(name), Some(p)) => Some((name, read_secret(&p, "--first-admin-password-file")?)),
        _ => None,
    };
    let plan = crate::operators::bootstrap::Plan {
        realm: realm.clone(),
        client_id: client_id.clone(),
        console_url: origin.clone(),
        confidential: client_secret_file.is_some(),
        first_admin,
    };
    let secret = crate::operators::bootstrap::run(&keycloak_url, &admin_user, &password, &plan)
        .await
        .map_err(|e| CliError::Usage(format!("operators bootstrap: {e}")))?;
    let mut out = format!(
        "realm {realm} ready: roles viewer and admin, client {client_id} (redirect {origin}/auth/callback)\n\n\
         operators:\n  oidc:\n    issuer_url: {}/realms/{realm}\n    client_id: {client_id}\n    redirect_url: {origin}/auth/callback\n",
        keycloak_url.trim_end_matches('/')
    );
    if let (Some(secret), Some(path)) = (secret, client_secret_file) {
        super::provision::write_secret(&path, &secret)?;
        out.push_str(&format!("    client_secret_file: {}\n", path.display()));
    }
    Ok(out)
}
