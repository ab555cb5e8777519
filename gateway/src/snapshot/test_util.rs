//! Snapshots for unit tests: built from table JSON with fresh caches.

use super::build::{parse_newer, BuildDeps, Rejected};
use super::Snapshot;
use crate::auth::Realms;
use crate::limits::Limiters;
use crate::metrics::Metrics;
use crate::upstream::PoolCache;
use bytes::Bytes;

/// Build `json` the way the store does, with caches of its own.
pub fn try_snapshot(json: &str) -> Result<Snapshot, Rejected> {
    let metrics = Metrics::new(16).expect("metrics");
    let (pools, limiters, realms) = (PoolCache::default(), Limiters::default(), Realms::default());
    let deps = BuildDeps {
        pools: &pools,
        limiters: &limiters,
        metrics: &metrics,
        realms: &realms,
    };
    parse_newer(&Bytes::copy_from_slice(json.as_bytes()), None, &deps)
}

/// Like [`try_snapshot`], for tables that must build.
pub fn snapshot(json: &str) -> Snapshot {
    match try_snapshot(json) {
        Ok(s) => s,
        Err(e) => panic!("table does not build: {e:?}"),
    }
}

/// Two tenants, a shell, a realm, namespaces and an API key: enough for `resolve` and
/// `admit`. Key secret: [`KEY_SECRET`].
pub const TABLE: &str = r#"{"version": 7,
 "upstreams": {"app": {"endpoints": ["127.0.0.1:9001"]},
               "api": {"endpoints": ["127.0.0.1:9002", "127.0.0.1:9003"]},
               "shell": {"endpoints": ["127.0.0.1:9004"]}},
 "tenants": [
   {"id": "acme", "hosts": ["acme.test", "*.acme.test"],
    "rate_limits": {"per_key": {"requests": 50, "window_s": 10}},
    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"},
               {"prefix": "/api", "upstream": "api", "auth": "api_key"},
               {"prefix": "/@acme/", "upstream": "api", "auth": "api_key", "namespace": "@acme"},
               {"prefix": "/mixed/", "upstream": "api", "auth": ["public", "api_key"]}]},
   {"id": "beta", "hosts": ["beta.test"], "status": "suspended",
    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]},
   {"id": "shelly", "hosts": ["shelly.test"],
    "realm": {"issuer": "http://127.0.0.1:1/realms/shelly", "audiences": ["shelly"],
              "client_id": "gateway"},
    "shell": {"enabled": true, "excludes": ["/api/"]},
    "catalog": [{"name": "Todos", "path": "/todos/"}],
    "routes": [{"prefix": "/todos/", "upstream": "app", "auth": "session"},
               {"prefix": "/api/", "upstream": "api", "auth": "public"},
               {"prefix": "/jwt/", "upstream": "api", "auth": ["jwt", "api_key"]},
               {"prefix": "/maybe/", "upstream": "api", "auth": ["jwt", "public"]}]},
   {"id": "own", "hosts": ["own.test"],
    "shell": {"enabled": true, "upstream": "shell"},
    "catalog": [{"name": "Todos", "path": "/todos/"}],
    "routes": [{"prefix": "/todos/", "upstream": "app", "auth": "public"}]}],
 "api_keys": [{"id": "k1", "digest": "sha256:DIGEST", "tenant": "acme", "namespaces": ["@acme"],
               "rate_limit": {"requests": 5, "window_s": 1}},
              {"id": "op", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "namespaces": ["*"]}]}"#;

pub const KEY_SECRET: &str = "rgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// [`TABLE`] with the key digest filled in.
pub fn table() -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(KEY_SECRET.as_bytes()));
    TABLE.replace("DIGEST", &digest)
}
