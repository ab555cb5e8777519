//! Gateway discovery against the real API server: the test writes EndpointSlices the way the
//! EndpointSlice controller would, pointing at real gateways, and watches realmctl follow
//! them. The API server refuses loopback endpoint addresses, so that test runs in a network
//! namespace of its own (a veth pair carries the gateways' addresses, 10.203.0.11-13); it
//! needs root (CI runs as root) and is skipped loudly without, unless
//! REALMGATE_REQUIRE_NETNS=1 makes that a failure.

mod common;

use common::{eventually, Api, Proc, TempDir, Upstream, GATEWAY_TOKEN, OPERATOR_TOKEN};
use realmgate_e2e::kube::Kube;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NS: &str = "edge";
const SERVICE: &str = "realmgate-admin";
const WAIT: Duration = Duration::from_secs(30);

fn url(i: u8) -> String {
    format!("https://10.203.0.1{i}:9080")
}

/// The gateways' admin certificate (every test address) and its CA: tables carry secrets
/// (the assertion keys), so they travel to a non-loopback gateway over TLS only.
fn pki() -> &'static (String, common::pki::Leaf) {
    static PKI: std::sync::OnceLock<(String, common::pki::Leaf)> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let ca = common::pki::Pki::new("discovery test CA");
        let leaf = ca.leaf(&["10.203.0.11", "10.203.0.12", "10.203.0.13", "10.203.0.14"]);
        (ca.ca_pem.clone(), leaf)
    })
}

/// A client that trusts the gateways' admin certificate.
fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki().0.as_bytes()).expect("CA"))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

fn slice_path(name: &str) -> String {
    format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices/{name}")
}

/// An EndpointSlice of the gateways' Service: `(n, ready)` is 10.203.0.1n, `ready` unset
/// when `None`.
fn slice(name: &str, endpoints: &[(u8, Option<bool>)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(n, ready)| {
            json!({"addresses": [format!("10.203.0.1{n}")],
                   "conditions": ready.map_or_else(|| json!({}), |r| json!({"ready": r}))})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": NS,
                        "labels": {"kubernetes.io/service-name": SERVICE}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                     {"name": "admin", "port": 9080, "protocol": "TCP"}],
           "endpoints": endpoints})
}

async fn put_slice(kube: &Kube, name: &str, endpoints: &[(u8, Option<bool>)]) {
    let (st, v) = kube.apply(&slice_path(name), &slice(name, endpoints)).await;
    assert!(st.is_success(), "apply EndpointSlice {name}: {st} {v}");
}

async fn delete_slice(kube: &Kube, name: &str) {
    let (st, v) = kube.admin(Method::DELETE, &slice_path(name), None).await;
    assert!(st.is_success(), "delete EndpointSlice {name}: {st} {v}");
}

/// `realmctl serve` with `args`, its configuration `conf` (YAML lines after the basics).
async fn realmctl(
    dir: &TempDir,
    gateways_yaml: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Proc, Api) {
    let addr = common::free_addrs(1)[0];
    let admin = dir.write("operator-token", OPERATOR_TOKEN);
    let gw_token = dir.write("gateway-token", GATEWAY_TOKEN);
    let conf = dir.write(
        "realmctl.yaml",
        &format!(
            "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\ngateways:\n  token_file: {}\n  push: {{initial_backoff_ms: 50, max_backoff_ms: 250, resync_interval_ms: 1000, timeout_ms: 10000}}\n{gateways_yaml}",
            dir.path().join("data").display(),
            admin.display(),
            gw_token.display()
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realmctl"));
    cmd.arg("serve")
        .arg("--conf")
        .arg(&conf)
        .args(args)
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(cmd, dir.path().join("realmctl.log"));
    let api = Api {
        base: format!("http://{addr}"),
        token: OPERATOR_TOKEN.into(),
        http: reqwest::Client::new(),
    };
    let http = reqwest::Client::new();
    for _ in 0..800 {
        assert!(
            proc.exited().is_none(),
            "realmctl exited:\n{}",
            proc.log_text()
        );
        if http
            .get(format!("{}/healthz", api.base))
            .send()
            .await
            .is_ok()
        {
            return (proc, api);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("realmctl never answered:\n{}", proc.log_text());
}

/// `GET /v1/gateways`: the gateways (url → applied version, source) and the discovery.
async fn gateways(api: &Api) -> (Vec<(String, Option<u64>, String)>, Value) {
    let (st, v) = api.call(Method::GET, "/v1/gateways", None).await;
    assert!(st.is_success(), "{v}");
    let list = v["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .map(|g| {
            (
                g["url"].as_str().unwrap_or_default().to_owned(),
                g["applied_version"].as_u64(),
                g["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (list, v["discovery"].clone())
}

/// Wait until the gateways shown are exactly `want` (once each, all discovered), every one
/// at `version` or newer.
async fn until_gateways(api: &Api, want: &[u8], version: u64) {
    let want: Vec<String> = want.iter().map(|n| url(*n)).collect();
    eventually(
        WAIT,
        &format!("gateways exactly {want:?} at v{version}"),
        || async {
            let (list, _) = gateways(api).await;
            let mut urls: Vec<String> = list.iter().map(|g| g.0.clone()).collect();
            urls.sort();
            (urls == want
                && list.iter().all(|(_, applied, source)| {
                    source == "kubernetes" && applied.is_some_and(|a| a >= version)
                }))
            .then_some(())
        },
    )
    .await;
}

/// A value of realmctl's `/metrics`.
async fn metric(api: &Api, name: &str) -> Option<i64> {
    let (_, v) = api.call(Method::GET, "/metrics", None).await;
    v.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A realmgate whose listeners bind 10.203.0.1n (data 8080, admin 9080), with no table.
fn gateway(dir: &TempDir, n: u8) -> Proc {
    let token = dir.write(&format!("gw{n}-token"), GATEWAY_TOKEN);
    // Files of its own: a gateway starting reads them while the next one is being set up.
    let cert = dir.write(&format!("gw{n}-admin.crt"), &pki().1.cert_pem);
    let key = dir.write(&format!("gw{n}-admin.key"), &pki().1.key_pem);
    let conf = dir.write(
        &format!("gw{n}.yaml"),
        &format!(
            "pingora: {{threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}}\n\
             gateway:\n  listen: 10.203.0.1{n}:8080\n  admin_listen: 10.203.0.1{n}:9080\n  admin_token_file: {}\n  state_dir: {}\n  admin_tls: {{cert_file: {}, key_file: {}}}\n",
            token.display(),
            dir.path().join(format!("gw{n}-state")).display(),
            cert.display(),
            key.display()
        ),
    );
    let mut cmd = Command::new(common::realmgate_bin());
    cmd.arg("--conf").arg(conf).env("RUST_LOG", "info");
    Proc::spawn(cmd, dir.path().join(format!("gw{n}.log")))
}

/// The version gateway `n` serves, asked on its admin API.
async fn served(n: u8) -> Option<u64> {
    let r = admin_client()
        .get(format!("{}/v1/table", url(n)))
        .bearer_auth(GATEWAY_TOKEN)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()?["version"].as_u64()
}

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args}");
}

/// Move this thread into a new network namespace with `lo` up and a veth pair carrying
/// 10.203.0.1/24 and the gateways' 10.203.0.11-14. Threads and processes started from here
/// on inherit it; the namespace goes when the last of them ends. `false`: not root, skipped.
fn enter_network_namespace() -> bool {
    if !nix::unistd::geteuid().is_root() {
        let msg = "the discovery test needs root for a network namespace of its own";
        assert!(
            std::env::var_os("REALMGATE_REQUIRE_NETNS").is_none_or(|v| v != "1"),
            "{msg} (REALMGATE_REQUIRE_NETNS=1)"
        );
        eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
        return false;
    }
    // Only the calling thread moves: it is ours alone.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    ip("link set lo up");
    ip("link add rgd0 type veth peer name rgd1");
    ip("link set rgd0 up");
    ip("link set rgd1 up");
    ip("addr add 10.203.0.1/24 dev rgd0");
    for n in 11..=14 {
        ip(&format!("addr add 10.203.0.{n}/32 dev rgd0"));
    }
    true
}

/// Builds what needs the network (or cargo) before the namespace is entered.
fn build_before_entering() {
    let _ = common::realmgate_bin();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/setup/kubernetes.sh");
    let status = Command::new(script)
        .arg("build")
        .status()
        .expect("kubernetes.sh");
    assert!(status.success(), "kubernetes.sh build");
}

#[test]
fn discovery_follows_endpointslices() {
    build_before_entering();
    // A thread of our own enters the namespace, so the test harness's threads never do.
    let outcome = std::thread::spawn(|| {
        if !enter_network_namespace() {
            return;
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(follows_endpointslices());
    })
    .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn follows_endpointslices() {
    let dir = TempDir::new("discovery");
    let kube = Kube::start(&[NS]).await;
    let _gateways: Vec<Proc> = (1..=3).map(|n| gateway(&dir, n)).collect();
    for n in 1..=3 {
        eventually(WAIT, &format!("gateway {n} up"), || async {
            admin_client()
                .get(format!("{}/healthz", url(n)))
                .send()
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }
    let kubeconfig = dir.write("kubeconfig", &kube.kubeconfig());
    let ca = dir.write("admin-ca.crt", &pki().0);
    let upstream = Upstream::start("app").await;

    // Two endpoints, ready and ready-unset: both get the current table.
    put_slice(&kube, "gw-a", &[(1, Some(true)), (2, None)]).await;
    let (ctl, api) = realmctl(
        &dir,
        &format!(
            "  ca_file: {}\n  discovery:\n    kubernetes: {{service: {SERVICE}, namespace: {NS}, port: admin, scheme: https, kubeconfig: {}}}\n",
            ca.display(),
            kubeconfig.display()
        ),
        &[],
        &[],
    )
    .await;
    let v1 = api.put_pool("app", upstream.addr).await;
    until_gateways(&api, &[1, 2], v1).await;
    let (_, discovery) = gateways(&api).await;
    assert_eq!(
        (
            discovery["state"].as_str(),
            discovery["service"].as_str(),
            discovery["namespace"].as_str()
        ),
        (Some("watching"), Some(SERVICE), Some(NS)),
        "{discovery}"
    );

    // A tenant change reaches both, and they serve it.
    let (st, t) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(common::tenant_body("acme", &["acme.test"], "app")),
        )
        .await;
    assert!(st.is_success(), "{t}");
    let v2 = t["table_version"].as_u64().expect("version");
    until_gateways(&api, &[1, 2], v2).await;
    for n in 1..=2 {
        eventually(WAIT, &format!("gateway {n} serving acme"), || async {
            let r = reqwest::Client::new()
                .get(format!("http://10.203.0.1{n}:8080/"))
                .header("host", "acme.test")
                .send()
                .await
                .ok()?;
            (r.status() == 200 && r.text().await.ok()?.contains("upstream app")).then_some(())
        })
        .await;
    }

    // A third endpoint, not ready: seen, not pushed to.
    put_slice(&kube, "gw-b", &[(3, Some(false))]).await;
    eventually(WAIT, "discovery to read gw-b", || async {
        (gateways(&api).await.1["slices"].as_u64() == Some(2)).then_some(())
    })
    .await;
    until_gateways(&api, &[1, 2], v2).await;
    assert_eq!(served(3).await, None, "a not-ready endpoint got a table");

    // Ready: it gets the current table.
    put_slice(&kube, "gw-b", &[(3, Some(true))]).await;
    until_gateways(&api, &[1, 2, 3], v2).await;
    assert!(served(3).await.is_some_and(|v| v >= v2));

    // An endpoint removed: gone from the gateways, and from the metric.
    put_slice(&kube, "gw-a", &[(1, Some(true))]).await;
    until_gateways(&api, &[1, 3], v2).await;
    eventually(WAIT, "2 discovered gateways and 2 workers", || async {
        (metric(&api, "realmctl_discovered_gateways").await == Some(2)
            && metric(&api, "realmctl_push_workers").await == Some(2))
        .then_some(())
    })
    .await;

    // Flapping, with no pause: the final set, one worker per gateway.
    put_slice(&kube, "gw-b", &[(3, Some(false))]).await;
    put_slice(&kube, "gw-b", &[(3, Some(true))]).await;
    delete_slice(&kube, "gw-a").await;
    put_slice(&kube, "gw-a", &[(1, Some(true)), (2, Some(true))]).await;
    put_slice(&kube, "gw-a", &[(1, Some(true)), (2, Some(false))]).await;
    put_slice(&kube, "gw-a", &[(1, None), (2, None)]).await;
    delete_slice(&kube, "gw-b").await;
    put_slice(&kube, "gw-b", &[(3, Some(true))]).await;
    let v3 = api.put_pool("app", upstream.addr).await;
    until_gateways(&api, &[1, 2, 3], v3).await;
    for n in 1..=3 {
        eventually(WAIT, &format!("gateway {n} at v{v3}"), || async {
            served(n).await.filter(|v| *v >= v3).map(|_| ())
        })
        .await;
    }
    eventually(
        WAIT,
        "3 discovered gateways and exactly 3 workers",
        || async {
            (metric(&api, "realmctl_discovered_gateways").await == Some(3)
                && metric(&api, "realmctl_push_workers").await == Some(3))
            .then_some(())
        },
    )
    .await;

    // The watch is cut and its resume answered 410 Gone: discovery lists again and keeps
    // following changes made after it.
    let lists = |kube: &Kube| {
        kube.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/endpointslices") && !r.is_watch())
            .count()
    };
    let before = lists(&kube);
    let lists_shown = gateways(&api).await.1["lists"].as_u64().expect("lists");
    kube.expire_watches(1);
    eventually(WAIT, "a new list after the 410", || async {
        let shown = gateways(&api).await.1["lists"].as_u64()?;
        (lists(&kube) > before && shown > lists_shown).then_some(())
    })
    .await;
    put_slice(&kube, "gw-a", &[(1, None)]).await;
    until_gateways(&api, &[1, 3], v3).await;
    put_slice(&kube, "gw-a", &[(1, None), (2, None)]).await;
    let v4 = api.put_pool("app", upstream.addr).await;
    until_gateways(&api, &[1, 2, 3], v4).await;
    let urls: BTreeSet<String> = gateways(&api).await.0.into_iter().map(|g| g.0).collect();
    assert_eq!(urls.len(), 3);
    eventually(WAIT, "exactly 3 workers after the re-list", || async {
        (metric(&api, "realmctl_push_workers").await == Some(3)).then_some(())
    })
    .await;
    assert!(
        ctl.log_text().contains("watch expired (410 Gone"),
        "the 410 was not seen as an expired watch:\n{}",
        ctl.log_text()
    );
}

/// A ServiceAccount token with no RBAC rule for EndpointSlices: discovery says which rule is
/// missing, in `GET /v1/gateways` and the log. Started with the flags, the kubeconfig from
/// `$KUBECONFIG`. No endpoint is needed, so no network namespace.
#[tokio::test]
async fn forbidden_discovery_names_the_missing_rule() {
    let dir = TempDir::new("discovery-403");
    let kube = Kube::start(&[NS]).await;
    let (st, v) = kube
        .admin(
            Method::POST,
            &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
            Some(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "realmctl-discovery-limited"}})),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (st, v) = kube
        .admin(
            Method::POST,
            &format!("/api/v1/namespaces/{NS}/serviceaccounts/realmctl-discovery-limited/token"),
            Some(
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 3600}}),
            ),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let token = v["status"]["token"].as_str().expect("token");
    let kubeconfig = dir.write("kubeconfig", &kube.kubeconfig_with_token(token));
    let kubeconfig = kubeconfig.to_str().expect("path");
    let (ctl, api) = realmctl(
        &dir,
        "",
        &[
            "--gateway-discovery",
            "kubernetes",
            "--gateway-service",
            SERVICE,
            "--gateway-namespace",
            NS,
        ],
        &[("KUBECONFIG", kubeconfig)],
    )
    .await;
    let discovery = eventually(WAIT, "discovery to report the 403", || async {
        let (_, d) = gateways(&api).await;
        (d["state"] == "error").then_some(d)
    })
    .await;
    let error = discovery["error"].as_str().expect("error");
    for want in [
        "403",
        "\"list\"",
        "\"endpointslices.discovery.k8s.io\"",
        "namespace edge",
    ] {
        assert!(error.contains(want), "{want} not in {error}");
    }
    assert!(!error.contains(token), "the token leaked: {error}");
    assert!(ctl.log_text().contains("endpointslices.discovery.k8s.io"));
    assert!(
        !ctl.log_text().contains(token),
        "the token leaked into the log"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_realmctl"))
        .args(["gateways", "--url", &api.base])
        .env("REALMCTL_TOKEN", OPERATOR_TOKEN)
        .output()
        .expect("realmctl gateways");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("discovery: kubernetes Service edge/realmgate-admin: error"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
