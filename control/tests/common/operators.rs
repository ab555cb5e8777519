//! The operators' realm made the way an operator makes it: `realmctl operators bootstrap`
//! against a real Keycloak, with a first admin.

use super::TempDir;
use std::process::{Command, Output};

/// Run `realmctl operators bootstrap` for `realm` (client `client`, console at `console_url`)
/// with Keycloak's admin password and the first admin `first_admin`/`password`; its output,
/// for the caller to check.
pub fn bootstrap(
    dir: &TempDir,
    keycloak_url: &str,
    kc_admin_password: &str,
    realm: &str,
    client: &str,
    console_url: &str,
    (first_admin, password): (&str, &str),
) -> Output {
    let admin_pw = dir.write("kc-admin-password", &format!("{kc_admin_password}\n"));
    let first_pw = dir.write(&format!("{first_admin}-password"), password);
    Command::new(env!("CARGO_BIN_EXE_realmctl"))
        .args(["operators", "bootstrap", "--keycloak-url", keycloak_url])
        .args(["--realm", realm, "--client-id", client])
        .args(["--console-url", console_url, "--first-admin", first_admin])
        .arg("--admin-password-file")
        .arg(&admin_pw)
        .arg("--first-admin-password-file")
        .arg(&first_pw)
        .output()
        .expect("realmctl operators bootstrap")
}
