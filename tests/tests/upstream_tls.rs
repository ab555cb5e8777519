//! `https://` pools through the real gateway: a TLS upstream (tokio-rustls, certificates
//! minted by rcgen) is reached when its certificate verifies against the pool's `ca_file`
//! for the pool's `server_name` (or the endpoint's IP), refused with 502 for a wrong CA or a
//! wrong name, reached unverified only with `insecure_skip_verify`; `h2` falls back to
//! HTTP/1.1; an unreadable `ca_file` refuses the table.

use realmgate_e2e::tls_upstream::{Pki, TlsUpstream};
use realmgate_e2e::{Gateway, GatewayOpts, Table, TempDir};
use serde_json::{json, Value};

/// One tenant `<id>.test` per pool, each routing `/` to its pool.
fn table(pools: &[(&str, Value)]) -> Value {
    let mut t = Table::new(1);
    for (id, _) in pools {
        let host = format!("{id}.test");
        t = t.tenant(id, &[host.as_str()], &[("/", id)]);
    }
    let mut v = t.build();
    for (id, pool) in pools {
        v["upstreams"][*id] = pool.clone();
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn https_pools_verify_their_upstreams() {
    let Pki {
        ca_pem,
        server: key,
    } = Pki::mint();
    let other_ca = Pki::mint().ca_pem;
    let up = TlsUpstream::start(key, "tls-ok").await;
    let addr = up.addr;
    let dir = TempDir::new("upstream-tls");
    let ca = dir.write("ca.pem", &ca_pem);
    let other = dir.write("other-ca.pem", &other_ca);
    let endpoint = format!("https://{addr}");
    let pool = |extra: Value| {
        let mut p = json!({"endpoints": [endpoint]});
        if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p
    };
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(&[
        (
            "good",
            pool(json!({"server_name": "app.test", "ca_file": ca})),
        ),
        ("byip", pool(json!({"ca_file": ca}))),
        (
            "h2",
            pool(json!({"server_name": "app.test", "ca_file": ca, "h2": true})),
        ),
        (
            "wrongca",
            pool(json!({"server_name": "app.test", "ca_file": other})),
        ),
        (
            "wrongname",
            pool(json!({"server_name": "other.test", "ca_file": ca})),
        ),
        ("sysroots", pool(json!({"server_name": "app.test"}))),
        (
            "insecure",
            pool(json!({"server_name": "other.test", "insecure_skip_verify": true})),
        ),
    ]))
    .await;

    for host in ["good.test", "byip.test", "h2.test", "insecure.test"] {
        let r = gw.request(host, "/x").await;
        assert_eq!(r.status, 200, "{host}: {}\n{}", r.text, gw.logs());
        assert_eq!(r.text, "tls-ok", "{host}");
    }
    let seen: Vec<Option<String>> = up.take_hellos().into_iter().map(|(sni, _)| sni).collect();
    assert!(seen.contains(&Some("app.test".to_owned())), "{seen:?}");
    // The pool without a server name verifies the IP and sends no SNI.
    assert!(seen.contains(&None), "{seen:?}");

    // A certificate that does not verify is never talked to: 502 (from the connect, or from
    // the health check that already took the endpoint out).
    for host in ["wrongca.test", "wrongname.test", "sysroots.test"] {
        let r = gw.request(host, "/x").await;
        assert_eq!(r.status, 502, "{host}: {}", r.text);
        let code = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            code == "upstream_error" || code == "no_healthy_upstream",
            "{host}: {code}"
        );
        assert_ne!(r.text, "tls-ok");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_ca_file_refuses_the_table() {
    let gw = Gateway::start(GatewayOpts::default()).await;
    let bad = table(&[(
        "pay",
        json!({"endpoints": ["https://127.0.0.1:9"], "server_name": "pay.internal",
               "ca_file": "/nonexistent/realmgate-ca.pem"}),
    )]);
    let (status, body) = gw.push(&bad).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("pool pay: ca_file"), "{body}");
}
