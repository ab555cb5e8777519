//! Snapshots for unit tests: built from table JSON with fresh caches.

use super::build::{parse_newer, Caches, Encoding, Rejected};
use super::Snapshot;
use bytes::Bytes;

/// Build `json` the way the store does, with caches of its own.
pub fn try_snapshot(json: &str) -> Result<Snapshot, Rejected> {
    let caches = Caches::new(16);
    parse_newer(
        &Bytes::copy_from_slice(json.as_bytes()),
        Encoding::Json,
        None,
        crate::auth::unix_now(),
        &caches.deps(),
    )
    .map(|(snapshot, _)| snapshot)
}

/// Like [`try_snapshot`], for tables that must build.
pub fn snapshot(json: &str) -> Snapshot {
    match try_snapshot(json) {
        Ok(s) => s,
        Err(e) => panic!("table does not build: {e:?}"),
    }
}

pub const KEY_SECRET: &str = "rgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Four tenants — namespaces and limits, a suspended one, a session tenant with the built-in
/// shell, one with its own shell upstream — and two API keys: enough for `resolve` and
/// `admit`. Built with the contract's fixtures (`realmgate_table`, feature `test-util`). Key
/// secret of `k1`: [`KEY_SECRET`].
pub fn table() -> String {
    use realmgate_table::{ApiKey, RateLimit, RateLimits, Table, Tenant};
    use sha2::Digest;
    let per_key = RateLimits {
        per_key: Some(RateLimit {
            requests: 50,
            window_s: 10,
        }),
        ..RateLimits::default()
    };
    let mut k1 = ApiKey::test("k1", Some("acme"), &["@acme"]);
    k1.digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(KEY_SECRET.as_bytes()))
    );
    k1.rate_limit = Some(RateLimit {
        requests: 5,
        window_s: 1,
    });
    let mut table = Table::test()
        .version(7)
        .upstream("app", &["127.0.0.1:9001"])
        .upstream("api", &["127.0.0.1:9002", "127.0.0.1:9003"])
        .upstream("shell", &["127.0.0.1:9004"])
        .tenant(
            Tenant::test("acme")
                .host("acme.test")
                .host("*.acme.test")
                .limits(per_key)
                .route("/", "app", "public")
                .route("/api", "api", "api_key")
                .ns_route("/@acme/", "api", "api_key", "@acme")
                .route_any("/mixed/", "api", &["public", "api_key"]),
        )
        .tenant(
            Tenant::test("beta")
                .host("beta.test")
                .suspended()
                .route("/", "app", "public"),
        )
        .tenant(
            Tenant::test("shelly")
                .host("shelly.test")
                .realm("http://127.0.0.1:1/realms/shelly")
                .shell_from(None, &["/api/"])
                .app("Todos", "/todos/")
                .route("/todos/", "app", "session")
                .route("/api/", "api", "public")
                .route_any("/jwt/", "api", &["jwt", "api_key"])
                .route_any("/maybe/", "api", &["jwt", "public"]),
        )
        .tenant(
            Tenant::test("own")
                .host("own.test")
                .shell_from(Some("shell"), &[])
                .app("Todos", "/todos/")
                .route("/todos/", "app", "public"),
        )
        .key(k1)
        .key(ApiKey::test("op", None, &["*"]));
    table.api_keys[1].digest = format!("sha256:{}", "0".repeat(64));
    String::from_utf8(table.to_json()).expect("JSON is UTF-8")
}
