//! `realmctl operators bootstrap`: the operators' realm in Keycloak — the realm, realm roles
//! `viewer` and `admin`, the console's client (its redirect URL, PKCE S256, the realm roles
//! in the ID token's `roles` claim) and optionally a first admin — converged idempotently
//! with Keycloak's bootstrap admin (the local platform, tests; production: docs/operators.md).

use crate::provision::keycloak::{Credentials, Keycloak};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What to make.
pub struct Plan {
    pub realm: String,
    pub client_id: String,
    /// The console's origin, e.g. `https://realmctl.example.com` (no path).
    pub console_url: String,
    /// A confidential client (a secret is returned) rather than a public one.
    pub confidential: bool,
    /// A first operator with the admin role: (user name, password).
    pub first_admin: Option<(String, String)>,
}

/// Converge the realm; returns the client's secret when it is confidential.
pub async fn run(
    keycloak_url: &str,
    admin_user: &str,
    admin_password: &str,
    plan: &Plan,
) -> Result<Option<String>, String> {
    let kc = Keycloak::new(
        keycloak_url,
        "master",
        Credentials::Password {
            user: admin_user.to_owned(),
            password: admin_password.to_owned(),
        },
    )?;
    let e = |e: crate::provision::StepError| e.to_string();
    let realm = &plan.realm;
    if kc.get_opt(&format!("/{realm}")).await.map_err(e)?.is_none() {
        kc.send_ok(
            Method::POST,
            "",
            Some(&json!({"realm": realm, "enabled": true, "displayName": "Realmgate operators"})),
            true,
        )
        .await
        .map_err(e)?;
    }
    for (role, what) in [
        ("viewer", "Reads the Realmgate console; changes nothing"),
        ("admin", "Changes everything in the Realmgate console"),
    ] {
        kc.send_ok(
            Method::POST,
            &format!("/{realm}/roles"),
            Some(&json!({"name": role, "description": what})),
            true,
        )
        .await
        .map_err(e)?;
    }
    let origin = plan.console_url.trim_end_matches('/');
    let mut rep = json!({
        "clientId": plan.client_id, "name": "Realmgate console", "enabled": true,
        "protocol": "openid-connect", "publicClient": !plan.confidential,
        "standardFlowEnabled": true, "directAccessGrantsEnabled": false,
        "implicitFlowEnabled": false, "serviceAccountsEnabled": false,
        "redirectUris": [format!("{origin}{}", super::config::CALLBACK_PATH)],
        "webOrigins": [origin],
        "attributes": {
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": format!("{origin}/"),
        },
    });
    match kc.client_uuid(realm, &plan.client_id).await.map_err(e)? {
        None => {
            rep["protocolMappers"] = json!([{
                "name": "operator roles", "protocol": "openid-connect",
                "protocolMapper": "oidc-usermodel-realm-role-mapper",
                "config": {"claim.name": "roles", "multivalued": "true", "jsonType.label": "String",
                           "id.token.claim": "true", "access.token.claim": "false",
                           "userinfo.token.claim": "true"}
            }]);
            kc.send_ok(Method::POST, &format!("/{realm}/clients"), Some(&rep), true)
                .await
                .map_err(e)?;
        }
        Some((uuid, mut current)) => {
            if let (Some(cur), Some(new)) = (current.as_object_mut(), rep.as_object()) {
                for (k, v) in new {
                    cur.insert(k.clone(), v.clone());
                }
            }
            kc.send_ok(
                Method::PUT,
                &format!("/{realm}/clients/{uuid}"),
                Some(&current),
                false,
            )
            .await
            .map_err(e)?;
        }
    }
    if let Some((name, password)) = &plan.first_admin {
        let id = ensure_user(&kc, realm, name, password).await?;
        kc.ensure_role_mapping(realm, &id, None, "admin")
            .await
            .map_err(e)?;
    }
    if !plan.confidential {
        return Ok(None);
    }
    let (uuid, _) = kc
        .client_uuid(realm, &plan.client_id)
        .await
        .map_err(e)?
        .ok_or("the console's client is missing right after creation")?;
    let secret = kc
        .get_opt(&format!("/{realm}/clients/{uuid}/client-secret"))
        .await
        .map_err(e)?
        .ok_or("the console's client has no secret")?;
    secret["value"]
        .as_str()
        .map(|s| Some(s.to_owned()))
        .ok_or_else(|| "client secret answer without value".into())
}

/// The user `name` (created with `password` when absent); returns its id.
async fn ensure_user(
    kc: &Keycloak,
    realm: &str,
    name: &str,
    password: &str,
) -> Result<String, String> {
    let find = || async {
        let path = format!(
            "/{realm}/users?exact=true&username={}",
            crate::percent::encode(name)
        );
        let list = kc.get_opt(&path).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(list.and_then(|l| {
            l.as_array()?
                .iter()
                .find(|u| u["username"] == name)
                .and_then(|u| u["id"].as_str().map(str::to_owned))
        }))
    };
    if let Some(id) = find().await? {
        return Ok(id);
    }
    let rep = json!({
        "username": name, "enabled": true, "emailVerified": true,
        "email": format!("{name}@operators.invalid"), "firstName": name, "lastName": "Operator",
        "credentials": [{"type": "password", "value": password, "temporary": false}],
    });
    match kc
        .call(Method::POST, &format!("/{realm}/users"), Some(&rep))
        .await
        .map_err(|e| e.to_string())?
    {
        (s, _) if s.is_success() || s == StatusCode::CONFLICT => {}
        (s, v) => return Err(format!("creating user {name}: {s} {}", error_of(&v))),
    }
    find()
        .await?
        .ok_or_else(|| format!("user {name} missing right after creation"))
}

fn error_of(v: &Value) -> &str {
    v["errorMessage"]
        .as_str()
        .or(v["error"].as_str())
        .unwrap_or("")
}
