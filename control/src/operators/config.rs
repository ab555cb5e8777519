//! The `operators:` section of realmctl's configuration: the operators' realm the console
//! signs in against (OIDC) and how long its sessions live. Every bad value names its key.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The path realmctl serves the OIDC callback on; `redirect_url` must end with it.
pub const CALLBACK_PATH: &str = "/auth/callback";

#[derive(Debug, Default, Deserialize)]
pub struct OperatorsFile {
    oidc: Option<OidcFile>,
    sessions: Option<SessionsFile>,
}

#[derive(Debug, Default, Deserialize)]
struct OidcFile {
    issuer_url: Option<String>,
    client_id: Option<String>,
    /// A confidential client's secret; absent: a public client (PKCE alone).
    client_secret_file: Option<PathBuf>,
    redirect_url: Option<String>,
    /// Where the roles are in the ID token, dotted (default `roles`).
    roles_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SessionsFile {
    idle_timeout_s: Option<u64>,
    absolute_timeout_s: Option<u64>,
    max_sessions: Option<usize>,
}

/// The resolved sign-in settings.
#[derive(Clone)]
pub struct OidcSettings {
    /// The operators' realm, e.g. `https://sso.example.com/realms/operators`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// `https://realmctl.example.com/auth/callback`.
    pub redirect_url: Url,
    /// The console's own origin (`https://realmctl.example.com`): state-changing calls
    /// from a session must come from it.
    pub origin: String,
    /// The claim path of the roles, split at dots (`["realm_access", "roles"]`).
    pub roles_claim: Vec<String>,
    pub sessions: SessionLimits,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("confidential", &self.client_secret.is_some())
            .field("redirect_url", &self.redirect_url.as_str())
            .finish_non_exhaustive()
    }
}

/// How long a session lives, and how many there are at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Unused this long: ended.
    pub idle: Duration,
    /// This long after sign-in: ended, used or not.
    pub absolute: Duration,
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(8 * 3600),
            max_sessions: 1000,
        }
    }
}

/// `http://` is accepted only to a loopback host (the local platform, tests).
fn secure_url(key: &str, raw: &str, problems: &mut Vec<String>) -> Option<Url> {
    let url = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("{key}: {raw:?} is not a URL: {e}"));
            return None;
        }
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => {
            problems.push(format!("{key}: {raw:?} has no host"));
            return None;
        }
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            problems.push(format!(
                "{key}: {raw:?} must be https (http only to a loopback host)"
            ));
            return None;
        }
        s => {
            problems.push(format!("{key}: scheme {s:?} is not https"));
            return None;
        }
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        problems.push(format!(
            "{key}: {raw:?} must have no query, fragment or user"
        ));
        return None;
    }
    Some(url)
}

/// Resolve the section; `None` when there is no `operators.oidc` (the console then takes
/// the operator token only).
pub fn resolve(f: Option<OperatorsFile>, problems: &mut Vec<String>) -> Option<OidcSettings> {
    let f = f?;
    let start = problems.len();
    let sessions = sessions(f.sessions.unwrap_or_default(), problems);
    let Some(o) = f.oidc else {
        problems.push("operators.oidc: required in the operators section (issuer_url, client_id, redirect_url)".into());
        return None;
    };
    let issuer = match o.issuer_url.as_deref() {
        None => {
            problems.push("operators.oidc.issuer_url: required (the operators' realm, like https://sso.example.com/realms/operators)".into());
            None
        }
        Some(raw) => secure_url("operators.oidc.issuer_url", raw, problems)
            .map(|u| u.as_str().trim_end_matches('/').to_owned()),
    };
    let client_id = match o.client_id {
        None => {
            problems.push(
                "operators.oidc.client_id: required (the console's client in the operators' realm)"
                    .into(),
            );
            None
        }
        Some(c) if c.is_empty() || c.len() > 255 || c.chars().any(|ch| ch.is_control()) => {
            problems.push(
                "operators.oidc.client_id: must be 1-255 characters without control characters"
                    .into(),
            );
            None
        }
        Some(c) => Some(c),
    };
    let client_secret = o
        .client_secret_file
        .and_then(|p| match std::fs::read_to_string(&p) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Ok(_) => {
                problems.push(format!(
                    "operators.oidc.client_secret_file: {} is empty",
                    p.display()
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "operators.oidc.client_secret_file: cannot read {}: {e}",
                    p.display()
                ));
                None
            }
        });
    let redirect_url = match o.redirect_url.as_deref() {
        None => {
            problems.push(format!("operators.oidc.redirect_url: required (the console's public URL with {CALLBACK_PATH}, like https://realmctl.example.com{CALLBACK_PATH})"));
            None
        }
        Some(raw) => secure_url("operators.oidc.redirect_url", raw, problems).and_then(|u| {
            if u.path() == CALLBACK_PATH {
                Some(u)
            } else {
                problems.push(format!(
                    "operators.oidc.redirect_url: {raw:?} must end with the path {CALLBACK_PATH} (realmctl serves the callback there)"
                ));
                None
            }
        }),
    };
    let claim = o.roles_claim.unwrap_or_else(|| "roles".into());
    let roles_claim: Vec<String> = claim.split('.').map(str::to_owned).collect();
    if roles_claim.iter().any(String::is_empty) {
        problems.push(format!(
            "operators.oidc.roles_claim: {claim:?} is not a dotted claim path like roles or realm_access.roles"
        ));
    }
    if problems.len() > start {
        return None;
    }
    let redirect_url = redirect_url?;
    let origin = redirect_url.origin().ascii_serialization();
    Some(OidcSettings {
        issuer: issuer?,
        client_id: client_id?,
        client_secret,
        redirect_url,
        origin,
        roles_claim,
        sessions,
    })
}

fn sessions(s: SessionsFile, problems: &mut Vec<String>) -> SessionLimits {
    let d = SessionLimits::default();
    let mut limits = d;
    if let Some(v) = s.idle_timeout_s {
        if !(60..=86_400).contains(&v) {
            problems.push("operators.sessions.idle_timeout_s: must be between 60 and 86400".into());
        }
        limits.idle = Duration::from_secs(v);
    }
    if let Some(v) = s.absolute_timeout_s {
        if !(300..=7 * 86_400).contains(&v) {
            problems.push(
                "operators.sessions.absolute_timeout_s: must be between 300 and 604800".into(),
            );
        }
        limits.absolute = Duration::from_secs(v);
    }
    if limits.absolute < limits.idle {
        problems
            .push("operators.sessions.absolute_timeout_s: must not be below idle_timeout_s".into());
    }
    if let Some(v) = s.max_sessions {
        if !(1..=100_000).contains(&v) {
            problems.push("operators.sessions.max_sessions: must be between 1 and 100000".into());
        }
        limits.max_sessions = v;
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<OidcSettings, Vec<String>> {
        let f: OperatorsFile = serde_yaml::from_str(yaml).expect("yaml");
        let mut problems = Vec::new();
        let r = resolve(Some(f), &mut problems);
        match r {
            Some(s) if problems.is_empty() => Ok(s),
            _ => Err(problems),
        }
    }

    #[test]
    fn a_complete_section() {
        let s = parse(
            "oidc:\n  issuer_url: https://sso.example.com/realms/operators/\n  client_id: console\n  redirect_url: https://rc.example.com/auth/callback\n",
        )
        .expect("valid");
        assert_eq!(s.issuer, "https://sso.example.com/realms/operators");
        assert_eq!(s.origin, "https://rc.example.com");
        assert_eq!(s.roles_claim, ["roles"]);
        assert!(s.client_secret.is_none());
        assert_eq!(s.sessions, SessionLimits::default());
        // Loopback may be plain http (the local platform).
        let s = parse("oidc:\n  issuer_url: http://127.0.0.1:8180/realms/ops\n  client_id: c\n  redirect_url: http://localhost:9090/auth/callback\n  roles_claim: realm_access.roles\nsessions:\n  idle_timeout_s: 600\n  absolute_timeout_s: 3600\n  max_sessions: 5\n").expect("valid");
        assert_eq!(s.roles_claim, ["realm_access", "roles"]);
        assert_eq!(s.origin, "http://localhost:9090");
        assert_eq!(s.sessions.max_sessions, 5);
        assert_eq!(s.sessions.idle, Duration::from_secs(600));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("sessions: {}", "operators.oidc: required"),
            ("oidc: {}", "operators.oidc.issuer_url: required"),
            ("oidc: {}", "operators.oidc.client_id: required"),
            ("oidc: {}", "operators.oidc.redirect_url: required"),
            ("oidc: {issuer_url: 'http://sso.example.com/realms/o'}", "operators.oidc.issuer_url: \"http://sso.example.com/realms/o\" must be https"),
            ("oidc: {issuer_url: 'not a url'}", "operators.oidc.issuer_url: \"not a url\" is not a URL"),
            ("oidc: {issuer_url: 'ftp://x/realms/o'}", "operators.oidc.issuer_url: scheme \"ftp\""),
            ("oidc: {issuer_url: 'https://x/realms/o?a=b'}", "operators.oidc.issuer_url: \"https://x/realms/o?a=b\" must have no query"),
            ("oidc: {client_id: ''}", "operators.oidc.client_id: must be 1-255"),
            ("oidc: {redirect_url: 'https://rc.example.com/'}", "operators.oidc.redirect_url: \"https://rc.example.com/\" must end with the path /auth/callback"),
            ("oidc: {redirect_url: 'http://rc.example.com/auth/callback'}", "operators.oidc.redirect_url: \"http://rc.example.com/auth/callback\" must be https"),
            ("oidc: {roles_claim: 'a..b'}", "operators.oidc.roles_claim: \"a..b\""),
            ("oidc: {client_secret_file: /nonexistent/secret}", "operators.oidc.client_secret_file: cannot read /nonexistent/secret"),
            ("sessions: {idle_timeout_s: 5}", "operators.sessions.idle_timeout_s: must be between"),
            ("sessions: {absolute_timeout_s: 99999999}", "operators.sessions.absolute_timeout_s: must be between"),
            ("sessions: {idle_timeout_s: 7200, absolute_timeout_s: 3600}", "operators.sessions.absolute_timeout_s: must not be below"),
            ("sessions: {max_sessions: 0}", "operators.sessions.max_sessions: must be between"),
        ];
        for (yaml, want) in cases {
            let problems = parse(yaml).expect_err(yaml);
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "{yaml}: {problems:?} lacks {want:?}"
            );
        }
    }
}
