//! The routing-table compiler: a pure function that serialises the registry model into the
//! table document every gateway loads, without copying tenants. The task that runs it when
//! the model moves is `push::publish`; [`delta`] compiles the same parts as a change against
//! the previous version.

pub mod delta;
pub mod full;
pub mod history;

use crate::ids::{TenantId, UpstreamName};
use crate::model::{CertRecord, KeyRecord, Model, TenantRecord, UpstreamRecord};
use crate::provision::identity::{IdentityPublic, IdentitySecrets};
use crate::provision::secrets::SecretBox;
use crate::provision::{StepKind, StepState};
use crate::time::now_ms;
use bytes::Bytes;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

/// A compiled table, ready to push: the deltas to it, and the full document every gateway
/// that cannot take a delta receives (written out when first needed: [`full::Full`]).
#[derive(Debug)]
pub struct Compiled {
    pub version: u64,
    /// The full table document: built, or built on first use.
    pub full: full::Full,
    pub tenants: usize,
    /// Some tenant's realm carries a login client secret, a certificate its key, or the
    /// assertion section its signing keys:
    /// operators see the table redacted, and it travels only over TLS (or loopback).
    pub has_secrets: bool,
    /// The same table as changes against earlier versions (`PATCH /v1/table`): from the
    /// version before, and composed on demand from any version the history still holds; none
    /// from a plain [`compile`], or when realmctl knows no earlier version.
    pub deltas: history::Deltas,
    /// The table's state digest (`realmgate_table::model`), which a gateway that reached
    /// this version by deltas reports; `None` from a plain [`compile`].
    pub state_digest: Option<String>,
}

impl Compiled {
    /// The delta that moves a gateway serving `base` to this version, if `base` is still in
    /// the history (blocking: composed now if it was not yet, O(parts in the range)).
    pub fn delta_from(&self, base: u64) -> Option<delta::DeltaBody> {
        self.deltas.from_base(base)
    }

    /// [`Compiled::delta_from`] from async code: a large composition runs on a blocking
    /// thread, and every caller on the same base waits for the one composition.
    pub async fn delta_from_async(
        self: &std::sync::Arc<Self>,
        base: u64,
    ) -> Option<delta::DeltaBody> {
        if let Some(ready) = self.deltas.ready(base) {
            return ready;
        }
        if self.deltas.parts_from(base)? <= history::INLINE_PARTS {
            return self.deltas.from_base(base);
        }
        let me = std::sync::Arc::clone(self);
        // Only a panic in the composition fails the task: the full table goes instead.
        tokio::task::spawn_blocking(move || me.deltas.from_base(base))
            .await
            .unwrap_or_default()
    }

    /// The full table, written out now if it was not yet (blocking: O(table)).
    pub fn full_table(&self) -> Result<&full::FullTable, full::FullError> {
        self.full.build(self.version)
    }

    /// [`Compiled::full_table`] from async code: built on a blocking thread if need be.
    pub async fn full_table_async(
        self: &std::sync::Arc<Self>,
    ) -> Result<full::FullTable, full::FullError> {
        if let Some(t) = self.full.get() {
            return Ok(t.clone());
        }
        let me = std::sync::Arc::clone(self);
        match tokio::task::spawn_blocking(move || me.full_table().cloned()).await {
            Ok(r) => r,
            // Only a panic in the build ends here; building again here says what it was.
            Err(_) => self.full_table().cloned(),
        }
    }

    /// The full body, for tests.
    #[cfg(test)]
    pub fn body(&self) -> Bytes {
        self.full_table().expect("full table").body.clone()
    }
}

/// Borrowed view of the model with the field names of [`realmgate_table::Table`]; the unit
/// tests check that it parses back into exactly the table the model describes.
#[derive(Serialize)]
struct TableRef<'a> {
    version: u64,
    upstreams: UpstreamsRef<'a>,
    tenants: TenantsRef<'a>,
    api_keys: KeysRef<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<realmgate_table::Certificate>,
    /// Unexpired answers only: an expired one would be refused by no gateway, but answers
    /// nothing either.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    acme_challenges: Vec<&'a realmgate_table::AcmeChallenge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assertion: Option<realmgate_table::assertion::Assertion>,
}

/// The keys gateways accept: live ones (not revoked, not yet expired) of existing tenants,
/// as digests. Revoking a key drops it here, so the next table refuses it everywhere.
struct KeysRef<'a> {
    model: &'a Model,
    now_ms: u64,
    realms: &'a Realms,
}

impl KeysRef<'_> {
    fn live(&self) -> impl Iterator<Item = &KeyRecord> {
        self.model.keys.values().filter(|k| {
            key_enters(k, self.now_ms, |t| {
                self.model
                    .tenants
                    .get(t)
                    .is_some_and(|r| r.provision.routed)
                    && !matches!(self.realms.get(t), Some(Provisioned::Withheld))
            })
        })
    }
}

/// Whether a key enters the table at `now_ms`: live (not revoked, not yet expired), and an
/// operator key or one whose tenant is in the table (`tenant_in`).
fn key_enters(k: &KeyRecord, now_ms: u64, tenant_in: impl FnOnce(&TenantId) -> bool) -> bool {
    k.is_live(now_ms) && k.tenant.as_ref().is_none_or(tenant_in)
}

/// A key as the table carries it: its digest, never the secret.
fn key_entry(k: &KeyRecord) -> realmgate_table::ApiKey {
    realmgate_table::ApiKey {
        id: k.id.clone(),
        digest: format!("sha256:{}", hex::encode(k.digest)),
        tenant: k.tenant.as_ref().map(ToString::to_string),
        namespaces: k.namespaces.clone(),
        expires_at: k.expires_at_ms.map(crate::time::rfc3339_seconds),
        rate_limit: k.rate_limit,
    }
}

impl Serialize for KeysRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for k in self.live() {
            seq.serialize_element(&key_entry(k))?;
        }
        seq.end()
    }
}

struct UpstreamsRef<'a>(&'a BTreeMap<UpstreamName, UpstreamRecord>);

/// An ACME answer enters the table until it expires: an expired one would be refused by no
/// gateway, but answers nothing either.
fn challenge_enters(c: &realmgate_table::AcmeChallenge, now_ms: u64) -> bool {
    realmgate_table::parse_expiry(&c.expires_at).is_some_and(|s| s.saturating_mul(1000) > now_ms)
}

impl Serialize for UpstreamsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, record) in self.0 {
            map.serialize_entry(name, &record.spec)?;
        }
        map.end()
    }
}

/// The realms of provisioned tenants, worked out once per compile (opening a secret is the
/// one costly step), for the tenants and for their keys.
type Realms = HashMap<TenantId, Provisioned>;

fn provisioned_realms(model: &Model, secrets: &SecretBox) -> Realms {
    model
        .tenants
        .iter()
        .filter(|(_, r)| r.provision.routed)
        .filter_map(|(id, r)| match provisioned_realm(r, secrets) {
            Provisioned::No => None,
            p => Some((id.clone(), p)),
        })
        .collect()
}

/// A routed tenant as the table carries it (its provisioned realm filled in), or `None`: not
/// routed, or withheld.
fn tenant_entry<'a>(
    record: &'a TenantRecord,
    realm: Option<&Provisioned>,
) -> Option<Cow<'a, realmgate_table::Tenant>> {
    if !record.provision.routed {
        return None;
    }
    match realm {
        None | Some(Provisioned::No) => Some(Cow::Borrowed(&record.wire)),
        // Only provisioned tenants pay for a copy.
        Some(Provisioned::Realm(realm)) => {
            let mut tenant = record.wire.clone();
            tenant.realm = Some(realm.clone());
            Some(Cow::Owned(tenant))
        }
        Some(Provisioned::Withheld) => None,
    }
}

struct TenantsRef<'a> {
    tenants: &'a BTreeMap<TenantId, TenantRecord>,
    realms: &'a Realms,
    /// How many tenants were written.
    written: Cell<usize>,
}

impl Serialize for TenantsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Only tenants whose provisioning finished are routed.
        let mut seq = s.serialize_seq(None)?;
        let mut written = 0;
        for (id, record) in self.tenants.iter().filter(|(_, r)| r.provision.routed) {
            if let Some(tenant) = tenant_entry(record, self.realms.get(id)) {
                seq.serialize_element(&*tenant)?;
                written += 1;
            }
        }
        self.written.set(written);
        seq.end()
    }
}

enum Provisioned {
    /// Not provisioned by the identity step (or its entry names its own realm): as is.
    No,
    /// The realm the identity step made.
    Realm(realmgate_table::Realm),
    /// Its login client secret cannot be opened and it has `session` routes: the table
    /// would be refused by every gateway with it, so it is left out with its keys (deny on
    /// doubt).
    Withheld,
}

/// The tenant's realm as its identity step made it: issuer, keys URL and audiences (the login
/// and admin clients), so `jwt` routes check the tenant's own tokens, and the login client
/// with its secret opened, so `session` routes log browsers in against the tenant's realm.
/// The table is the only place the secret leaves realmctl: gateways need it at the token
/// endpoint. A tenant whose entry names a realm keeps it.
fn provisioned_realm(record: &TenantRecord, secrets: &SecretBox) -> Provisioned {
    if record.wire.realm.is_some() {
        return Provisioned::No;
    }
    let Some(step) = record
        .provision
        .step(StepKind::Identity)
        .filter(|s| s.state == StepState::Done)
    else {
        return Provisioned::No;
    };
    let Some(public) = IdentityPublic::from_outputs(&step.outputs) else {
        return Provisioned::No;
    };
    let opened = step
        .sealed
        .as_deref()
        .ok_or_else(|| "no sealed secrets".to_owned())
        .and_then(|s| secrets.open(&record.wire.id, step.kind.name(), s));
    let login = match opened {
        Ok(m) => IdentitySecrets::from_outputs(&m)
            .login_client_secret
            .map(|secret| (public.login_client_id.clone(), secret)),
        Err(e) => {
            // The message says why (key, truncation), never what the secret is.
            log::error!(
                "tenant {}: its login client secret cannot be opened ({e}); its realm enters the table without a login client",
                record.wire.id
            );
            None
        }
    };
    if login.is_none()
        && record
            .wire
            .routes
            .iter()
            .any(|r| r.auth.names().iter().any(|n| n == "session"))
    {
        log::error!(
            "tenant {} has session routes but no login client; withheld from the table",
            record.wire.id
        );
        return Provisioned::Withheld;
    }
    let (client_id, client_secret) = login.map_or((None, None), |(i, s)| (Some(i), Some(s)));
    Provisioned::Realm(realmgate_table::Realm {
        issuer: public.issuer,
        jwks_uri: public.jwks_uri,
        audiences: public.audiences,
        client_id,
        client_secret,
    })
}

/// Every certificate with its key opened: the table is the only place a key leaves
/// realmctl. One whose key cannot be opened is left out (its hosts fail the handshake rather
/// than the whole table being refused), and logged without the key.
fn certificates(model: &Model, secrets: &SecretBox) -> Vec<realmgate_table::Certificate> {
    model
        .certificates
        .values()
        .filter_map(|c| certificate_entry(c, secrets))
        .collect()
}

fn certificate_entry(c: &CertRecord, secrets: &SecretBox) -> Option<realmgate_table::Certificate> {
    match secrets.open_certificate_key(&c.name, &c.key_sealed) {
        Ok(key_pem) => Some(realmgate_table::Certificate {
            name: c.name.clone(),
            cert_pem: c.cert_pem.clone(),
            key_pem,
            hosts: c.hosts.iter().map(ToString::to_string).collect(),
            not_after: realmgate_table::validate::rfc3339(c.not_after),
            ocsp_staple: None,
        }),
        Err(e) => {
            log::error!(
                "certificate {:?}: its key cannot be opened ({e}); left out of the table",
                c.name
            );
            None
        }
    }
}

/// Serialise the model as table version `model.version`; `secrets` opens the provisioned
/// tenants' login client secrets and the certificates' keys.
pub fn compile(model: &Model, secrets: &SecretBox) -> Result<Compiled, serde_json::Error> {
    compile_at(model, secrets, now_ms()).map(|(c, _)| c)
}

/// [`compile`] with keys and ACME answers judged live at `now_ms`; also returns the realms
/// it worked out, which say which routed tenants were withheld.
fn compile_at(
    model: &Model,
    secrets: &SecretBox,
    now_ms: u64,
) -> Result<(Compiled, Realms), serde_json::Error> {
    let realms = provisioned_realms(model, secrets);
    let certificates = certificates(model, secrets);
    let assertion = crate::assertion_section::assertion_section(model, secrets);
    let has_secrets = assertion.is_some()
        || !certificates.is_empty()
        || realms
            .values()
            .any(|p| matches!(p, Provisioned::Realm(r) if r.client_secret.is_some()));
    let view = TableRef {
        version: model.version,
        upstreams: UpstreamsRef(&model.upstreams),
        tenants: TenantsRef {
            tenants: &model.tenants,
            realms: &realms,
            written: Cell::new(0),
        },
        api_keys: KeysRef {
            model,
            now_ms,
            realms: &realms,
        },
        certificates,
        acme_challenges: model
            .acme_challenges
            .values()
            .filter(|c| challenge_enters(c, now_ms))
            .collect(),
        assertion,
    };
    // Roughly 100 bytes per tenant; one allocation for typical tables.
    let mut buf = Vec::with_capacity(256 + model.tenants.len() * 128);
    serde_json::to_writer(&mut buf, &view)?;
    let tenants = view.tenants.written.get();
    let compiled = Compiled {
        version: model.version,
        full: full::Full::ready(Bytes::from(buf)),
        tenants,
        has_secrets,
        deltas: history::Deltas::default(),
        state_digest: None,
    };
    drop(view);
    Ok((compiled, realms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use realmgate_table::{Table, TenantStatus};

    fn model() -> Model {
        let mut m = Model::default();
        m.version = 7;
        m.upstreams.insert(
            UpstreamName::parse("app").expect("name"),
            fixtures::upstream(&["127.0.0.1:9001", "127.0.0.1:9002"]),
        );
        let (id, rec, hosts) = fixtures::tenant("acme", &["acme.test", "*.acme.test"], "app");
        m.put_tenant(id, rec, hosts);
        let (id, mut rec, hosts) = fixtures::tenant("beta", &["beta.test"], "app");
        rec.wire.status = TenantStatus::Suspended;
        m.put_tenant(id, rec, hosts);
        m
    }

    #[test]
    fn compiled_table_is_valid_and_matches_the_model() {
        let m = model();
        let compiled = compile(&m, &SecretBox::random()).expect("compile");
        assert_eq!(compiled.version, 7);
        assert_eq!(compiled.tenants, 2);
        assert_eq!(
            compiled.full_table().expect("full").digest,
            realmgate_table::digest(&compiled.body())
        );
        let realmgate_table::CheckedTable { table, hosts, .. } =
            realmgate_table::parse(&compiled.body()).expect("valid table");
        let expected = Table {
            version: 7,
            upstreams: m
                .upstreams
                .iter()
                .map(|(k, v)| (k.to_string(), v.spec.clone()))
                .collect(),
            tenants: m.tenants.values().map(|t| t.wire.clone()).collect(),
            api_keys: Vec::new(),
            certificates: Vec::new(),
            acme_challenges: Vec::new(),
            assertion: None,
        };
        assert_eq!(table, expected);
        assert_eq!(hosts.len(), 2);
        assert!(std::str::from_utf8(&compiled.body())
            .expect("utf8")
            .contains(r#""status":"suspended""#));
    }

    #[test]
    fn empty_registry_compiles_to_an_empty_valid_table() {
        let mut m = Model::default();
        m.version = 1;
        let compiled = compile(&m, &SecretBox::random()).expect("compile");
        let table = realmgate_table::parse(&compiled.body())
            .expect("valid")
            .table;
        assert!(table.tenants.is_empty() && table.upstreams.is_empty());
    }

    #[test]
    fn deleted_tenant_is_absent() {
        let mut m = model();
        m.remove_tenant(&crate::ids::TenantId::parse("acme").expect("id"));
        let compiled = compile(&m, &SecretBox::random()).expect("compile");
        let table = realmgate_table::parse(&compiled.body())
            .expect("valid")
            .table;
        let ids: Vec<&str> = table.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["beta"]);
    }

    /// A routed tenant whose identity step is done, with `secrets` sealed by `sealer`.
    fn provisioned(auth: &str, sealer: &SecretBox) -> Model {
        let mut m = model();
        let (id, mut rec, hosts) = fixtures::tenant("gamma", &["gamma.test"], "app");
        rec.wire.routes[0].auth = realmgate_table::AuthSpec::One(auth.into());
        let mut step = crate::provision::StepRecord::new(StepKind::Identity, "keycloak", 0);
        step.state = StepState::Done;
        step.outputs = IdentityPublic {
            realm: "gamma".into(),
            issuer: "http://kc.test/realms/gamma".into(),
            jwks_uri: Some("http://kc.test/realms/gamma/protocol/openid-connect/certs".into()),
            login_client_id: "realmgate".into(),
            admin_client_id: "tenant-admin".into(),
            audiences: vec!["realmgate".into(), "tenant-admin".into()],
            admin_username: "admin".into(),
            credentials_claimed: false,
        }
        .to_outputs();
        let secrets = IdentitySecrets {
            login_client_secret: Some("login-s3cret".into()),
            admin_client_secret: None,
            admin_password: Some("never-in-the-table".into()),
        };
        step.sealed = sealer.seal("gamma", "identity", &secrets.to_outputs());
        rec.provision = crate::provision::Provision::ready(vec![step]);
        m.put_tenant(id, rec, hosts);
        m
    }

    fn realm_of(compiled: &Compiled, id: &str) -> Option<realmgate_table::Realm> {
        let table = realmgate_table::parse(&compiled.body())
            .expect("valid table")
            .table;
        let t = table.tenants.into_iter().find(|t| t.id == id)?;
        Some(t.realm.expect("a realm"))
    }

    #[test]
    fn a_provisioned_tenant_carries_its_realm_and_login_client() {
        let sealer = SecretBox::random();
        let m = provisioned("session", &sealer);
        let compiled = compile(&m, &sealer).expect("compile");
        assert_eq!(compiled.tenants, 3);
        let realm = realm_of(&compiled, "gamma").expect("gamma routed");
        assert_eq!(realm.issuer, "http://kc.test/realms/gamma");
        assert_eq!(
            realm.jwks_uri.as_deref(),
            Some("http://kc.test/realms/gamma/protocol/openid-connect/certs")
        );
        assert_eq!(realm.audiences, ["realmgate", "tenant-admin"]);
        assert_eq!(realm.client_id.as_deref(), Some("realmgate"));
        assert_eq!(realm.client_secret.as_deref(), Some("login-s3cret"));
        assert!(compiled.has_secrets, "operators get it redacted");
        let body = compiled.body();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("never-in-the-table"),
            "only the login secret"
        );
        // The model itself is untouched: the realm lives only in the compiled copy.
        assert!(m.tenants.values().all(|t| t.wire.realm.is_none()));
    }

    #[test]
    fn a_login_secret_that_cannot_be_opened_leaves_jwt_routes_and_withholds_session_ones() {
        let sealer = SecretBox::random();
        let other_key = SecretBox::random();
        // jwt routes need no login client: the realm goes in without one.
        let compiled = compile(&provisioned("jwt", &sealer), &other_key).expect("compile");
        let realm = realm_of(&compiled, "gamma").expect("gamma routed");
        assert_eq!(realm.issuer, "http://kc.test/realms/gamma");
        assert_eq!((realm.client_id, realm.client_secret), (None, None));
        // session routes would make every gateway refuse the whole table: the tenant alone
        // is left out, the others still route.
        let mut m = provisioned("session", &sealer);
        m.put_key(super::key_tests::key("gk", Some("gamma"), 7));
        let compiled = compile(&m, &other_key).expect("compile");
        assert_eq!(compiled.tenants, 2);
        assert!(realm_of(&compiled, "gamma").is_none());
        let table = realmgate_table::parse(&compiled.body())
            .expect("still a valid table")
            .table;
        assert!(table.api_keys.is_empty(), "its keys are left out too");
        assert!(!compiled.has_secrets);
    }
}

#[cfg(test)]
mod cert_tests;

#[cfg(test)]
mod key_tests;
