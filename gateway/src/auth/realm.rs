//! Tenants' realms at run time: compiled with each table, and reused across table versions
//! (same settings → same object) so keys, discovery and verified tokens stay warm.

use super::jwks::Jwks;
use super::oidc::{Discovery, LoginClient};
use realmgate_table::Realm;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One realm as the request path needs it.
pub struct RealmRt {
    /// Unique per object: verified tokens remember it, so a realm whose settings change (a new
    /// object) never honours tokens checked under the old settings.
    pub id: u64,
    pub issuer: Box<str>,
    pub audiences: Box<[Box<str>]>,
    pub client_id: Option<Box<str>>,
    pub client_secret: Option<Box<str>>,
    pub jwks: Arc<Jwks>,
    pub discovery: Discovery,
}

/// Every realm of the current table, by settings, and their JWKS by URI.
#[derive(Default)]
pub struct Realms {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_settings: HashMap<Realm, Arc<RealmRt>>,
    jwks: HashMap<String, Arc<Jwks>>,
}

impl RealmRt {
    /// The login client, for the token endpoint.
    pub fn login_client(&self) -> LoginClient<'_> {
        LoginClient {
            id: self.client_id.as_deref(),
            secret: self.client_secret.as_deref(),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Realms {
    /// The runtime realm of each tenant of a new table, reusing objects whose settings did not
    /// change; realms no longer named are dropped.
    pub fn compile<'a>(
        &self,
        realms: impl Iterator<Item = Option<&'a Realm>>,
    ) -> Vec<Option<Arc<RealmRt>>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Inner::default();
        let out = realms
            .map(|realm| {
                let realm = realm?;
                if let Some(rt) = next.by_settings.get(realm) {
                    return Some(Arc::clone(rt));
                }
                let uri = realm.jwks_uri();
                let jwks = next
                    .jwks
                    .get(&uri)
                    .or_else(|| inner.jwks.get(&uri))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Jwks::new(&uri)));
                next.jwks.insert(uri, Arc::clone(&jwks));
                let rt = inner.by_settings.get(realm).cloned().unwrap_or_else(|| {
                    Arc::new(RealmRt {
                        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                        issuer: realm.issuer.as_str().into(),
                        audiences: realm.audiences.iter().map(|a| a.as_str().into()).collect(),
                        client_id: realm.client_id.as_deref().map(Into::into),
                        client_secret: realm.client_secret.as_deref().map(Into::into),
                        jwks,
                        discovery: Discovery::default(),
                    })
                });
                next.by_settings.insert(realm.clone(), Arc::clone(&rt));
                Some(rt)
            })
            .collect();
        *inner = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm(issuer: &str, aud: &str) -> Realm {
        Realm {
            issuer: issuer.into(),
            jwks_uri: None,
            audiences: vec![aud.into()],
            client_id: None,
            client_secret: None,
        }
    }

    #[test]
    fn unchanged_realms_are_reused_and_changed_ones_renewed() {
        let realms = Realms::default();
        let a = realm("http://h/realms/a", "x");
        let b = realm("http://h/realms/b", "y");
        let first = realms.compile([Some(&a), None, Some(&b)].into_iter());
        assert!(first[1].is_none());
        let (a1, b1) = (first[0].clone().expect("a"), first[2].clone().expect("b"));
        assert_ne!(a1.id, b1.id);

        let b_changed = realm("http://h/realms/b", "z");
        let second = realms.compile([Some(&a), Some(&b_changed)].into_iter());
        let (a2, b2) = (second[0].clone().expect("a"), second[1].clone().expect("b"));
        assert!(Arc::ptr_eq(&a1, &a2), "same settings, same realm object");
        assert_ne!(b1.id, b2.id, "new audience, new realm object");
        assert!(
            Arc::ptr_eq(&b1.jwks, &b2.jwks),
            "same JWKS URI keeps its keys"
        );
    }
}
