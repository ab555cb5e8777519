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
    /// Each realm's settings by its object's id (what a change releases by).
    by_id: HashMap<u64, Realm>,
    /// Realm ids a change stopped using, with the prunes each has waited through.
    pending: Vec<(u64, u8)>,
}

/// Prunes a released realm waits through before it is let go while still in use.
const PENDING_PRUNES: u8 = 3;

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
                next.by_id.insert(rt.id, realm.clone());
                Some(rt)
            })
            .collect();
        *inner = next;
        out
    }

    /// The runtime realm for a tenant a change adds or replaces: the object already serving
    /// these settings if there is one, else a new one (sharing the JWKS of its URI). Nothing
    /// is dropped here: see [`Realms::release`].
    pub fn compile_one(&self, realm: &Realm) -> Arc<RealmRt> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = inner.by_settings.get(realm) {
            return Arc::clone(rt);
        }
        let uri = realm.jwks_uri();
        let jwks = Arc::clone(
            inner
                .jwks
                .entry(uri.clone())
                .or_insert_with(|| Arc::new(Jwks::new(&uri))),
        );
        let rt = Arc::new(RealmRt {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            issuer: realm.issuer.as_str().into(),
            audiences: realm.audiences.iter().map(|a| a.as_str().into()).collect(),
            client_id: realm.client_id.as_deref().map(Into::into),
            client_secret: realm.client_secret.as_deref().map(Into::into),
            jwks,
            discovery: Discovery::default(),
        });
        inner.by_settings.insert(realm.clone(), Arc::clone(&rt));
        inner.by_id.insert(rt.id, realm.clone());
        rt
    }

    /// Realms (by [`RealmRt::id`]) a change replaced or removed: forgotten by
    /// [`Realms::prune_released`] once no table holds them (their JWKS too, once no realm
    /// does).
    pub fn release(&self, ids: impl IntoIterator<Item = u64>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.pending.extend(ids.into_iter().map(|r| (r, 0)));
    }

    /// O(realms released lately), not O(realms).
    pub fn prune_released(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut inner.pending);
        let mut kept = Vec::new();
        for (id, waited) in pending {
            let Some(realm) = inner.by_id.get(&id).cloned() else {
                continue;
            };
            let unused = inner
                .by_settings
                .get(&realm)
                .is_none_or(|rt| rt.id != id || Arc::strong_count(rt) == 1);
            if !unused {
                if waited + 1 < PENDING_PRUNES {
                    kept.push((id, waited + 1));
                }
                continue;
            }
            inner.by_id.remove(&id);
            if inner.by_settings.get(&realm).is_some_and(|rt| rt.id == id) {
                inner.by_settings.remove(&realm);
            }
            let uri = realm.jwks_uri();
            // Only the map holds the keys: no realm uses them any more.
            if inner
                .jwks
                .get(&uri)
                .is_some_and(|j| Arc::strong_count(j) == 1)
            {
                inner.jwks.remove(&uri);
            }
        }
        inner.pending = kept;
    }

    /// Realms cached (tests and diagnostics).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_settings
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[test]
    fn changes_reuse_realms_and_release_them_once_unused() {
        let realms = Realms::default();
        let a = realm("http://h/realms/a", "x");
        let first = realms.compile([Some(&a)].into_iter());
        let a1 = first[0].clone().expect("a");
        assert!(Arc::ptr_eq(&realms.compile_one(&a), &a1), "same settings");
        let b = realm("http://h/realms/b", "y");
        let b1 = realms.compile_one(&b);
        assert_ne!(a1.id, b1.id);
        assert_eq!(realms.len(), 2);
        // b replaced by new settings: the old object stays while a table holds it.
        let b_changed = realm("http://h/realms/b", "z");
        let b2 = realms.compile_one(&b_changed);
        assert!(Arc::ptr_eq(&b1.jwks, &b2.jwks));
        realms.release([b1.id]);
        realms.prune_released();
        assert_eq!(realms.len(), 3, "still held");
        drop(b1);
        realms.prune_released();
        assert_eq!(realms.len(), 2, "let go once unused");
        assert!(Arc::ptr_eq(&realms.compile_one(&b_changed).jwks, &b2.jwks));
    }
}
