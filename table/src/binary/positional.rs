//! The wire types in positional form, for the binary encoding: every field written, in
//! declaration order, no names. Serde's remote derive reads and writes the wire types
//! themselves (no copies), and its generated constructors name every field, so a field added
//! to a wire type and not here fails to compile rather than drop out of the encoding.
//!
//! Only the types whose JSON form skips fields or guesses variants need a form here; the
//! rest (`RateLimit`, `Assertion`, the unit enums) are positional as they are.

use crate::wire::{
    AcmeChallenge, ApiKey, AuthSpec, CatalogApp, Certificate, HealthCheck, Hsts, HttpsMode,
    RateLimit, RateLimits, Realm, Route, Shell, Tenant, TenantStatus, Upstream,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A wire type with a positional form.
pub(crate) trait Positional: Sized {
    fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Writes a wire value in its positional form.
pub(crate) struct Ref<'a, T>(pub &'a T);

impl<T: Positional> Serialize for Ref<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.ser(s)
    }
}

/// Reads a wire value from its positional form.
pub(crate) struct Own<T>(pub T);

impl<'de, T: Positional> Deserialize<'de> for Own<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::de(d).map(Own)
    }
}

macro_rules! positional {
    ($($wire:ty => $form:ident),* $(,)?) => {$(
        impl Positional for $wire {
            fn ser<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $form::serialize(self, s)
            }
            fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $form::deserialize(d)
            }
        }
    )*};
}

positional! {
    Tenant => TenantForm,
    Route => RouteForm,
    AuthSpec => AuthSpecForm,
    RateLimits => RateLimitsForm,
    Realm => RealmForm,
    CatalogApp => CatalogAppForm,
    Shell => ShellForm,
    Hsts => HstsForm,
    Upstream => UpstreamForm,
    HealthCheck => HealthCheckForm,
    ApiKey => ApiKeyForm,
    Certificate => CertificateForm,
    AcmeChallenge => AcmeChallengeForm,
}

/// `#[serde(with = "vec")]`: a list of positional values.
pub(crate) mod vec {
    use super::{Own, Positional, Ref};
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ptr_arg)]
    pub fn serialize<T: Positional, S: Serializer>(v: &Vec<T>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(Ref))
    }

    pub fn deserialize<'de, T: Positional, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Vec::<Own<T>>::deserialize(d)?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }
}

/// `#[serde(with = "opt")]`: an optional positional value.
pub(crate) mod opt {
    use super::{Own, Positional, Ref};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Positional, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&Ref(v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Positional, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(Option::<Own<T>>::deserialize(d)?.map(|o| o.0))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Tenant")]
struct TenantForm {
    id: String,
    hosts: Vec<String>,
    #[serde(with = "vec")]
    routes: Vec<Route>,
    status: TenantStatus,
    #[serde(with = "RateLimitsForm")]
    rate_limits: RateLimits,
    #[serde(with = "opt")]
    realm: Option<Realm>,
    display_name: Option<String>,
    #[serde(with = "vec")]
    catalog: Vec<CatalogApp>,
    #[serde(with = "opt")]
    shell: Option<Shell>,
    https: HttpsMode,
    #[serde(with = "opt")]
    hsts: Option<Hsts>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Route")]
struct RouteForm {
    prefix: String,
    upstream: String,
    #[serde(with = "AuthSpecForm")]
    auth: AuthSpec,
    namespace: Option<String>,
    forward_token: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "AuthSpec")]
enum AuthSpecForm {
    One(String),
    AnyOf(Vec<String>),
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "RateLimits")]
struct RateLimitsForm {
    tenant: Option<RateLimit>,
    per_key: Option<RateLimit>,
    per_client: Option<RateLimit>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Realm")]
struct RealmForm {
    issuer: String,
    jwks_uri: Option<String>,
    audiences: Vec<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "CatalogApp")]
struct CatalogAppForm {
    title: String,
    path: String,
    icon: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Shell")]
struct ShellForm {
    enabled: bool,
    upstream: Option<String>,
    excludes: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Hsts")]
struct HstsForm {
    max_age: u64,
    include_subdomains: bool,
    preload: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Upstream")]
struct UpstreamForm {
    endpoints: Vec<String>,
    #[serde(with = "opt")]
    health_check: Option<HealthCheck>,
    connect_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    write_timeout_ms: Option<u64>,
    server_name: Option<String>,
    ca_file: Option<String>,
    insecure_skip_verify: bool,
    h2: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "HealthCheck")]
struct HealthCheckForm {
    http_path: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ApiKey")]
struct ApiKeyForm {
    id: String,
    digest: String,
    tenant: Option<String>,
    namespaces: Vec<String>,
    expires_at: Option<String>,
    rate_limit: Option<RateLimit>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Certificate")]
struct CertificateForm {
    name: String,
    cert_pem: String,
    key_pem: String,
    hosts: Vec<String>,
    not_after: String,
    ocsp_staple: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "AcmeChallenge")]
struct AcmeChallengeForm {
    token: String,
    key_authorization: String,
    hosts: Vec<String>,
    expires_at: String,
}
