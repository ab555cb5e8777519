//! Validation of a tenant's auth: each route's policies and the tenant's realm.

use super::{Problem, KNOWN_AUTH};
use crate::wire::{Realm, Route};

/// Most audiences in one realm.
pub const MAX_AUDIENCES: usize = 32;
const MAX_URL_LEN: usize = 2048;
const MAX_CLIENT_FIELD_LEN: usize = 255;

/// What a route's policies need to know of the tenant's realm.
#[derive(Debug, Clone, Copy)]
pub(super) struct RealmFacts {
    /// The realm names the gateway's login client (`client_id`).
    pub login_client: bool,
}

/// The route's policies: known, each once, and what they need (a realm, a login client).
/// Allocates nothing unless there is a problem: it runs for every route of every tenant.
pub(super) fn check_auth(
    rat: &dyn Fn() -> String,
    route: &Route,
    realm: Option<RealmFacts>,
    problems: &mut Vec<Problem>,
) {
    let names = route.auth.names();
    if names.is_empty() {
        problems.push(Problem::new(
            format!("{}.auth", rat()),
            "needs at least one policy",
        ));
    }
    let mut seen = [false; KNOWN_AUTH.len()];
    for name in names {
        match KNOWN_AUTH.iter().position(|k| *k == name) {
            Some(i) if seen[i] => problems.push(Problem::new(
                format!("{}.auth", rat()),
                format!("policy {name:?} listed twice"),
            )),
            Some(i) => seen[i] = true,
            None => problems.push(Problem::new(
                format!("{}.auth", rat()),
                format!(
                    "unknown auth policy {name:?} (known: {})",
                    KNOWN_AUTH.join(", ")
                ),
            )),
        }
    }
    let [_, jwt, session, _] = seen;
    if (jwt || session) && realm.is_none() {
        problems.push(Problem::new(
            format!("{}.auth", rat()),
            "jwt and session need the tenant to have a realm (tenant field \"realm\")",
        ));
    }
    if session && realm.is_some_and(|r| !r.login_client) {
        problems.push(Problem::new(
            format!("{}.auth", rat()),
            "session needs the realm's login client (realm.client_id)",
        ));
    }
    if route.forward_token && !(jwt || session) {
        problems.push(Problem::new(
            format!("{}.forward_token", rat()),
            "needs a jwt or session policy: a public route has no verified token to forward",
        ));
    }
}

/// The realm's fields, at paths under `realm`.
pub(super) fn check_realm(realm: &Realm, problems: &mut Vec<Problem>) {
    let at = "realm";
    if let Err(why) = check_url(&realm.issuer) {
        problems.push(Problem::new(
            format!("{at}.issuer"),
            format!("{:?} {why}", realm.issuer),
        ));
    } else if realm.issuer.ends_with('/') {
        problems.push(Problem::new(
            format!("{at}.issuer"),
            format!("{:?} ends with '/': an issuer is compared byte for byte with the tokens' iss, write it as the realm publishes it (no trailing slash)", realm.issuer),
        ));
    }
    if let Some(uri) = &realm.jwks_uri {
        if let Err(why) = check_url(uri) {
            problems.push(Problem::new(
                format!("{at}.jwks_uri"),
                format!("{uri:?} {why}"),
            ));
        }
    }
    if realm.audiences.is_empty() {
        problems.push(Problem::new(
            format!("{at}.audiences"),
            "needs at least one audience: a token must be meant for this tenant",
        ));
    }
    if realm.audiences.len() > MAX_AUDIENCES {
        problems.push(Problem::new(
            format!("{at}.audiences"),
            format!("more than {MAX_AUDIENCES} audiences"),
        ));
    }
    for (i, aud) in realm.audiences.iter().enumerate() {
        if aud.is_empty() || aud.len() > MAX_CLIENT_FIELD_LEN || aud.chars().any(char::is_control) {
            problems.push(Problem::new(
                format!("{at}.audiences[{i}]"),
                format!("{aud:?} must be 1-{MAX_CLIENT_FIELD_LEN} characters without control characters"),
            ));
        }
    }
    for (field, value) in [
        ("client_id", &realm.client_id),
        ("client_secret", &realm.client_secret),
    ] {
        if let Some(v) = value {
            if v.is_empty()
                || v.len() > MAX_CLIENT_FIELD_LEN
                || !v.bytes().all(|b| b.is_ascii_graphic())
            {
                problems.push(Problem::new(
                    format!("{at}.{field}"),
                    format!("must be 1-{MAX_CLIENT_FIELD_LEN} visible ASCII characters"),
                ));
            }
        }
    }
    if realm.client_secret.is_some() && realm.client_id.is_none() {
        problems.push(Problem::new(
            format!("{at}.client_secret"),
            "a client secret without client_id has no client to belong to",
        ));
    }
}

/// An absolute `http`/`https` URL with a host and no userinfo, query or fragment.
fn check_url(raw: &str) -> Result<(), &'static str> {
    if raw.len() > MAX_URL_LEN {
        return Err("is too long");
    }
    let url = url::Url::parse(raw).map_err(|_| "is not an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    if url.as_str().trim_end_matches('/') != raw.trim_end_matches('/') {
        return Err(
            "is not in normal form (lower-case scheme and host, no default port, no dot segments)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
