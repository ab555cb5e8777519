//! The minted assertions, shared by every table version: a direct-mapped table of slots,
//! each holding one assertion and the identity it was minted for (signer, tenant, pool,
//! policy, principal), compared field by field on a hit. The slot comes from a hash keyed
//! per process, so nobody can aim a flood at one slot; the size never grows (a flood of
//! distinct callers only overwrites slots, each costing its own signature).

use super::{Principal, Signer, Subject, Via, REUSE_S};
use arc_swap::ArcSwapOption;
use http::HeaderValue;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

pub struct Assertions {
    slots: Box<[ArcSwapOption<Minted>]>,
    hasher: RandomState,
}

struct Minted {
    identity: Identity,
    value: HeaderValue,
    /// Reused until then (unix seconds).
    until: u64,
}

/// What an assertion was minted for, owned.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    signer: [u8; 32],
    tenant: Box<str>,
    pool: Box<str>,
    principal: Owned,
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Public,
    Realm {
        via: Via,
        sub: Box<str>,
        roles: Box<[Box<str>]>,
    },
    ApiKey {
        key_id: Box<str>,
        namespace: Option<Box<str>>,
    },
}

impl Identity {
    fn of(signer: &Signer, s: &Subject<'_>) -> Identity {
        Identity {
            signer: signer.id,
            tenant: s.tenant.into(),
            pool: s.pool.into(),
            principal: match s.principal {
                Principal::Public => Owned::Public,
                Principal::Realm { via, sub, roles } => Owned::Realm {
                    via,
                    sub: sub.into(),
                    roles: roles.into(),
                },
                Principal::ApiKey { key_id, namespace } => Owned::ApiKey {
                    key_id: key_id.into(),
                    namespace: namespace.map(Into::into),
                },
            },
        }
    }

    /// Whether `s`, under `signer`, is this identity (no allocation).
    fn is(&self, signer: &Signer, s: &Subject<'_>) -> bool {
        self.signer == signer.id
            && *self.tenant == *s.tenant
            && *self.pool == *s.pool
            && match (&self.principal, &s.principal) {
                (Owned::Public, Principal::Public) => true,
                (
                    Owned::Realm { via, sub, roles },
                    Principal::Realm {
                        via: v,
                        sub: s,
                        roles: r,
                    },
                ) => via == v && **sub == **s && **roles == **r,
                (
                    Owned::ApiKey { key_id, namespace },
                    Principal::ApiKey {
                        key_id: k,
                        namespace: n,
                    },
                ) => **key_id == **k && namespace.as_deref() == *n,
                _ => false,
            }
    }
}

/// Most slots, whatever the configuration says (16 M pointers: 128 MiB).
const MAX_SLOTS: u64 = 1 << 24;

impl Assertions {
    /// At most `capacity` assertions kept, rounded up to a power of two (0: none, every
    /// request signs).
    pub fn new(capacity: u64) -> Assertions {
        let n = if capacity == 0 {
            0
        } else {
            capacity.min(MAX_SLOTS).next_power_of_two()
        };
        Assertions {
            slots: (0..n).map(|_| ArcSwapOption::const_empty()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The header value for `s` at `now`: a cached assertion with at least
    /// [`super::MIN_REMAINING_S`] left, or a fresh one. `(value, fresh)`.
    pub fn header(
        &self,
        signer: &Signer,
        s: &Subject<'_>,
        now: u64,
    ) -> Option<(HeaderValue, bool)> {
        let slot = self.slot(signer, s);
        if let Some(slot) = slot {
            let guard = slot.load();
            if let Some(hit) = guard.as_deref() {
                if now < hit.until && hit.identity.is(signer, s) {
                    return Some((hit.value.clone(), false));
                }
            }
        }
        let token = signer.sign(s, now)?;
        let value = HeaderValue::from_str(&token).ok()?;
        if let Some(slot) = slot {
            slot.store(Some(Arc::new(Minted {
                identity: Identity::of(signer, s),
                value: value.clone(),
                until: now + REUSE_S,
            })));
        }
        Some((value, true))
    }

    fn slot(&self, signer: &Signer, s: &Subject<'_>) -> Option<&ArcSwapOption<Minted>> {
        if self.slots.is_empty() {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        signer.id.hash(&mut h);
        s.tenant.hash(&mut h);
        s.pool.hash(&mut h);
        match &s.principal {
            Principal::Public => 0u8.hash(&mut h),
            Principal::Realm { via, sub, roles } => {
                (1u8, *via as u8, sub).hash(&mut h);
                roles.hash(&mut h);
            }
            Principal::ApiKey { key_id, namespace } => (2u8, key_id, namespace).hash(&mut h),
        }
        let i = (h.finish() as usize) & (self.slots.len() - 1);
        self.slots.get(i)
    }

    /// Assertions held, for tests and metrics.
    pub fn entries(&self) -> u64 {
        self.slots.iter().filter(|s| s.load().is_some()).count() as u64
    }
}
