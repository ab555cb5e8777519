//! The last good table survives kill -9: written to the state dir, loaded at start.

use realmgate_e2e::{Gateway, GatewayOpts, Table, Upstream};
use serde_json::Value;

struct Fixture {
    gw: Gateway,
    a: Upstream,
    b: Upstream,
}

async fn fixture() -> Fixture {
    let a = Upstream::start("app-a").await;
    let b = Upstream::start("app-b").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    Fixture { gw, a, b }
}

impl Fixture {
    fn table(&self, v: u64, acme_to: &str) -> Value {
        Table::new(v)
            .upstream("app-a", [self.a.addr()])
            .upstream("app-b", [self.b.addr()])
            .tenant("acme", &["acme.test"], &[("/", acme_to)])
            .tenant(
                "beta",
                &["beta.test", "*.beta.test"],
                &[("/", "app-b"), ("/a/", "app-a")],
            )
            .build()
    }

    async fn acme_upstream(&self) -> String {
        self.gw.echo("acme.test", "/").await.upstream
    }

    fn state_file_version(&self) -> Value {
        let path = self.gw.state_dir().join("table.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
        v["version"].clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_gateway_serves_its_last_table_without_a_push() {
    let mut f = fixture().await;
    f.gw.push_ok(&f.table(5, "app-a")).await;
    let digest = f.gw.table_info().await.1["digest"].clone();
    // kill -9 straight after the 200: the table must already be durable.
    f.gw.kill();
    assert_eq!(f.state_file_version(), 5);
    // Owner-only: a table may hold login client secrets.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(f.gw.state_dir().join("table.json"))
            .expect("state file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "state file mode {mode:o}");

    f.gw.restart().await;
    f.gw.wait_ready().await;
    let (status, info) = f.gw.table_info().await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["version"], 5);
    assert_eq!(
        info["digest"], digest,
        "the reloaded table differs from the pushed one"
    );
    assert_eq!(f.acme_upstream().await, "app-a");
    let e = f.gw.echo("x.beta.test", "/a/1").await;
    assert_eq!(
        (e.upstream.as_str(), e.header("x-realmgate-tenant")),
        ("app-a", Some("beta"))
    );
    assert_eq!(
        f.gw.metrics().await.value("realmgate_table_version", &[]),
        5.0
    );

    // The loaded version is the current one for the version check too.
    let (status, resp) = f.gw.push(&f.table(5, "app-b")).await;
    assert_eq!(status, 409, "{resp}");
    f.gw.push_ok(&f.table(6, "app-b")).await;
    assert_eq!(f.acme_upstream().await, "app-b");

    // And a table pushed after a restart is persisted as well.
    f.gw.kill();
    f.gw.restart().await;
    f.gw.wait_ready().await;
    assert_eq!(f.gw.table_info().await.1["version"], 6);
    assert_eq!(f.acme_upstream().await, "app-b");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_tables_are_not_persisted() {
    let mut f = fixture().await;
    f.gw.push_ok(&f.table(1, "app-a")).await;

    // Invalid (422): a route to an unknown upstream.
    let invalid = f.table(2, "no-such-upstream");
    let (status, resp) = f.gw.push(&invalid).await;
    assert_eq!(status, 422, "{resp}");
    // Not newer (409).
    let (status, resp) = f.gw.push(&f.table(1, "app-b")).await;
    assert_eq!(status, 409, "{resp}");
    assert_eq!(f.state_file_version(), 1);

    f.gw.kill();
    f.gw.restart().await;
    f.gw.wait_ready().await;
    assert_eq!(f.gw.table_info().await.1["version"], 1);
    assert_eq!(f.acme_upstream().await, "app-a");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_without_state_starts_unready() {
    let mut f = fixture().await;
    f.gw.kill();
    f.gw.restart().await;
    assert_eq!(f.gw.admin_get_anon("/readyz").await.status, 503);
    assert_eq!(f.gw.table_info().await.0, 404);
    assert!(!f.gw.state_dir().join("table.json").exists());
    // No table: no tenant is served.
    let r = f.gw.request("acme.test", "/").await;
    assert!(
        r.status >= 400,
        "served without a table: {} {}",
        r.status,
        r.text
    );
    assert_eq!(f.a.hits() + f.b.hits(), 0);
}
