//! Operators signing in to the console through the operators' realm (OIDC code flow with
//! PKCE), their server-side sessions, and their roles (`viewer`, `admin`); the HTTP side is
//! `api::signin`, the check on every API call `api::access`.

pub mod bootstrap;
pub mod config;
pub mod keys;
pub mod oidc;
pub mod session;

use std::sync::Arc;

/// What a signed-in operator may do. Realm roles of the operators' realm (see
/// `docs/operators.md`): `admin` wins over `viewer`; an account with neither cannot sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets, changes nothing.
    Viewer,
    /// Everything.
    Admin,
}

impl Role {
    pub fn from_roles(roles: &[String]) -> Option<Role> {
        if roles.iter().any(|r| r == "admin") {
            Some(Role::Admin)
        } else if roles.iter().any(|r| r == "viewer") {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// The console's sign-in: the realm's client, the sessions, the sign-ins in flight.
pub struct Operators {
    pub oidc: oidc::Oidc,
    pub sessions: session::Sessions,
    pub pending: session::PendingLogins,
}

impl Operators {
    pub fn new(settings: config::OidcSettings) -> Arc<Operators> {
        let sessions = session::Sessions::new(settings.sessions);
        Arc::new(Operators {
            oidc: oidc::Oidc::new(settings),
            sessions,
            pending: session::PendingLogins::default(),
        })
    }

    /// The console's origin: state-changing calls from a session must come from it.
    pub fn origin(&self) -> &str {
        &self.oidc.settings().origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_wins_and_neither_role_is_none() {
        let r = |v: &[&str]| Role::from_roles(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(r(&["viewer", "admin"]), Some(Role::Admin));
        assert_eq!(r(&["viewer"]), Some(Role::Viewer));
        assert_eq!(r(&["Admin", "offline_access"]), None);
        assert_eq!(r(&[]), None);
    }
}
