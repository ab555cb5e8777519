//! The TLS listener serves every feature alike over HTTP/1.1 and HTTP/2: each check below runs
//! once per protocol, on connections to the gateway's TLS listener whose negotiated version is
//! asserted — public routes (x-forwarded-proto, tenant, HSTS), `jwt` and `api_key` routes, the
//! shell injection, per-client rate limits, a table swap seen by an open connection, and 421
//! for a host the connection's certificate does not cover.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use realmgate_e2e::gateway::Reply;
use realmgate_e2e::tls::fixtures::{entry, h2_connect, tls_gateway};
use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{check_error, Gateway, JwksServer, TestKey, Upstream};
use realmgate_table::test_certs::TestCa;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ISS_A: &str = "http://id.test/realms/acme";
const ISS_B: &str = "http://id.test/realms/beta";
const ACME_KEY: &str = "rgk_acmeacmeacmeacmeacmeacmeacmeacmeacmeacmeacm";
const OTHER_KEY: &str = "rgk_otherotherotherotherotherotherotherotherotx";
const SHELL: &str = "shell.matrix.test";
const LIMIT: u64 = 3;
/// Bounds a stuck connection (a failure, reported as such), never a timing assertion.
const IO_LIMIT: Duration = Duration::from_secs(15);

/// The HTTP version a check runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

const BOTH: [Proto; 2] = [Proto::H1, Proto::H2];

impl Proto {
    fn version(self) -> reqwest::Version {
        match self {
            Proto::H1 => reqwest::Version::HTTP_11,
            Proto::H2 => reqwest::Version::HTTP_2,
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Proto::H1 => b"http/1.1",
            Proto::H2 => b"h2",
        }
    }

    /// The tenant host whose rate limit this protocol's check uses up.
    fn limited_host(self) -> &'static str {
        match self {
            Proto::H1 => "limit-h1.matrix.test",
            Proto::H2 => "limit-h2.matrix.test",
        }
    }
}

/// A client configuration trusting only `ca_pem` and offering one ALPN protocol.
fn tls_config(ca_pem: &str, alpn: &[u8]) -> rustls::ClientConfig {
    realmgate_e2e::tls::client_config(ca_pem, &[alpn])
}

/// reqwest for `https://<host>:<port>` names resolved to `addr`: HTTP/1.1 only, or HTTP/2 by ALPN.
fn client(p: Proto, ca_pem: &str, hosts: &[&str], addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .use_preconfigured_tls(tls_config(ca_pem, p.alpn()));
    if p == Proto::H1 {
        b = b.http1_only();
    }
    for h in hosts {
        b = b.resolve(h, addr);
    }
    b.build().expect("https client")
}

fn digest(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// Version `v` of the table: `/` of acme goes to upstream `one` on odd versions, `two` on even.
fn table(v: u64, one: &Upstream, two: &Upstream, jwks: &JwksServer, certs: &[Value]) -> Value {
    let route = |prefix: &str, upstream: &str, auth: &str| json!({"prefix": prefix, "upstream": upstream, "auth": auth});
    let public = |id: &str, host: &str| json!({"id": id, "hosts": [host], "routes": [route("/", "one", "public")]});
    let realm = |iss: &str, path: &str| json!({"issuer": iss, "jwks_uri": jwks.url(path), "audiences": ["acme-api"]});
    let root = if v % 2 == 1 { "one" } else { "two" };
    let mut keys = route("/@acme/", "one", "api_key");
    keys["namespace"] = json!("@acme");
    let mut shell = public("portal", SHELL);
    shell["catalog"] = json!([{"name": "Todos", "path": "/todos/"}]);
    shell["shell"] = json!({"enabled": true});
    let mut tenants = vec![
        json!({"id": "acme", "hosts": ["acme.test"], "realm": realm(ISS_A, "/acme/certs"),
               "hsts": {"max_age": 600},
               "routes": [route("/", root, "public"), route("/api/", "one", "jwt"), keys]}),
        json!({"id": "beta", "hosts": ["beta.test"], "realm": realm(ISS_B, "/beta/certs"),
               "routes": [route("/", "one", "public"), route("/api/", "one", "jwt")]}),
        shell,
    ];
    for (i, p) in BOTH.into_iter().enumerate() {
        let mut t = public(&format!("limited-{i}"), p.limited_host());
        t["rate_limits"] = json!({"per_client": {"requests": LIMIT, "window_s": 60}});
        tenants.push(t);
    }
    json!({
        "version": v,
        "upstreams": {"one": {"endpoints": [one.addr().to_string()]},
                      "two": {"endpoints": [two.addr().to_string()]}},
        "tenants": tenants,
        "api_keys": [
            {"id": "k-acme", "digest": digest(ACME_KEY), "tenant": "acme", "namespaces": ["@acme"]},
            {"id": "k-other", "digest": digest(OTHER_KEY), "tenant": "acme", "namespaces": ["@other"]}],
        "certificates": certs,
    })
}

/// A gateway with a TLS listener serving [`table`] version 1, its upstreams and realms, and
/// one client per protocol.
struct Edge {
    gw: Gateway,
    ca: String,
    one: Upstream,
    two: Upstream,
    jwks: JwksServer,
    key: TestKey,
    certs: Vec<Value>,
    clients: [reqwest::Client; 2],
}

impl Edge {
    async fn start() -> Edge {
        let ca = TestCa::new("realmgate tls matrix CA");
        let certs = vec![
            entry(&ca.leaf(&["acme.test"]), "acme", &["acme.test"]),
            entry(&ca.leaf(&["beta.test"]), "beta", &["beta.test"]),
            entry(&ca.leaf(&["*.matrix.test"]), "matrix", &["*.matrix.test"]),
        ];
        let one = Upstream::start("one").await;
        let two = Upstream::start("two").await;
        let jwks = JwksServer::start().await;
        let key = TestKey::rs256("k1");
        // Both realms publish the same key: only the issuer tells their tokens apart.
        jwks.set_keys("/acme/certs", vec![key.jwk()]);
        jwks.set_keys("/beta/certs", vec![key.jwk()]);
        let gw = tls_gateway("").await;
        gw.push_ok(&table(1, &one, &two, &jwks, &certs)).await;
        let hosts = [
            "acme.test",
            "beta.test",
            SHELL,
            Proto::H1.limited_host(),
            Proto::H2.limited_host(),
        ];
        let addr = gw.tls_addr();
        let clients = BOTH.map(|p| client(p, &ca.pem, &hosts, addr));
        Edge {
            ca: ca.pem.clone(),
            gw,
            one,
            two,
            jwks,
            key,
            certs,
            clients,
        }
    }

    /// GET `https://{host}{path}` over `p` (the version it was answered in is asserted).
    async fn get(&self, p: Proto, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let port = self.gw.tls_addr().port();
        let client = &self.clients[p as usize];
        let mut req = client.get(format!("https://{host}:{port}{path}"));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{p:?} GET {host}{path}: {e:?}\n{}", self.gw.logs()));
        assert_eq!(resp.version(), p.version(), "{p:?} GET {host}{path}");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read response body");
        Reply {
            status,
            headers,
            text,
        }
    }

    fn token(&self, issuer: &str) -> String {
        self.key.sign(&access_claims(issuer, "user-1", "acme-api"))
    }
}

/// A gateway error: status, JSON body with `code`, request id as in `x-request-id`.
fn assert_error(r: &Reply, status: u16, code: &str) -> Value {
    check_error(
        status,
        code,
        r.status,
        r.header("content-type"),
        r.header("x-request-id"),
        &r.text,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn public_routes_are_https_for_the_upstream_with_hsts_over_h1_and_h2() {
    let e = Edge::start().await;
    for p in BOTH {
        // What a client claims about the scheme and tenant is replaced, not passed on.
        let spoof = [
            ("x-forwarded-proto", "http"),
            ("x-realmgate-tenant", "beta"),
        ];
        let r = e.get(p, "acme.test", "/hello?x=1", &spoof).await;
        let echo = r.echo();
        assert_eq!(echo.upstream, "one", "{p:?}");
        assert_eq!(echo.path, "/hello?x=1", "{p:?}");
        assert_eq!(echo.header_all("x-forwarded-proto"), ["https"], "{p:?}");
        assert_eq!(echo.header_all("x-realmgate-tenant"), ["acme"], "{p:?}");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=600"),
            "{p:?}"
        );
        // Another tenant on the same listener is itself, without acme's HSTS.
        let r = e.get(p, "beta.test", "/", &[]).await;
        assert_eq!(r.echo().header_all("x-realmgate-tenant"), ["beta"], "{p:?}");
        assert_eq!(r.header("strict-transport-security"), None, "{p:?}");
    }
    // The plain listener: served as http, and never HSTS.
    let r = e.gw.request("acme.test", "/hello").await;
    assert_eq!(r.echo().header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(r.header("strict-transport-security"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_routes_over_h1_and_h2() {
    let e = Edge::start().await;
    let own = format!("Bearer {}", e.token(ISS_A));
    let foreign = format!("Bearer {}", e.token(ISS_B));
    for p in BOTH {
        let r = e.get(p, "acme.test", "/api/items", &[]).await;
        assert_error(&r, 401, "unauthorized");
        // The gateway's own answers to an https request carry the tenant's HSTS too.
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=600"),
            "{p:?}"
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"acme\""),
            "{p:?}"
        );
        let spoof = [
            ("authorization", own.as_str()),
            ("x-realmgate-subject", "root"),
        ];
        let r = e.get(p, "acme.test", "/api/items", &spoof).await;
        let echo = r.echo();
        assert_eq!(echo.header_all("x-realmgate-subject"), ["user-1"], "{p:?}");
        assert_eq!(echo.header_all("x-realmgate-tenant"), ["acme"], "{p:?}");
        // beta's token verifies with the same key, but acme's realm did not issue it.
        let r = e
            .get(p, "acme.test", "/api/items", &[("authorization", &foreign)])
            .await;
        assert_error(&r, 401, "unauthorized");
        assert!(r.text.contains("another realm"), "{p:?}: {}", r.text);
        // ... while beta takes it.
        let r = e
            .get(p, "beta.test", "/api/items", &[("authorization", &foreign)])
            .await;
        assert_eq!(
            r.echo().header_all("x-realmgate-subject"),
            ["user-1"],
            "{p:?}"
        );
    }
    assert!(e.jwks.hits("/acme/certs") > 0, "acme's keys were fetched");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_routes_over_h1_and_h2() {
    let e = Edge::start().await;
    for p in BOTH {
        let r = e
            .get(p, "acme.test", "/@acme/x", &[("x-api-key", ACME_KEY)])
            .await;
        let echo = r.echo();
        assert_eq!(echo.header("x-realmgate-key-id"), Some("k-acme"), "{p:?}");
        assert_eq!(echo.header("x-realmgate-namespace"), Some("@acme"), "{p:?}");
        assert_eq!(
            echo.header("x-api-key"),
            None,
            "{p:?}: the secret stays at the edge"
        );
        let bearer = format!("Bearer {OTHER_KEY}");
        let r = e
            .get(p, "acme.test", "/@acme/x", &[("authorization", &bearer)])
            .await;
        assert_error(&r, 403, "namespace_denied");
        let r = e.get(p, "acme.test", "/@acme/x", &[]).await;
        assert_error(&r, 401, "missing_api_key");
    }
}

/// The context element's JSON and nonce, from a shell page.
fn context(html: &str) -> (Value, String) {
    let open = r#"<script type="application/json" id="realmgate-context" nonce=""#;
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("no context element in {html}"));
    let (nonce, rest) = html[start + open.len()..]
        .split_once("\">")
        .expect("nonce attribute");
    let json = &rest[..rest.find("</script>").expect("end of the element")];
    (
        serde_json::from_str(json).expect("context is JSON"),
        nonce.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn navigations_get_the_shell_with_its_context_over_h1_and_h2() {
    let e = Edge::start().await;
    let nav = [("sec-fetch-dest", "document"), ("accept", "text/html")];
    for p in BOTH {
        let r = e.get(p, SHELL, "/todos/list", &nav).await;
        assert_eq!(r.status, 200, "{p:?}: {}", r.text);
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{p:?}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{p:?}");
        let (ctx, nonce) = context(&r.text);
        assert_eq!(ctx["tenant"]["id"], "portal", "{p:?}: {ctx}");
        assert_eq!(ctx["catalog"][0]["path"], "/todos/", "{p:?}: {ctx}");
        assert_eq!(ctx["active"]["path"], "/todos/", "{p:?}: {ctx}");
        assert_eq!(ctx["login_url"], "/.realmgate/login", "{p:?}");
        let csp = r.header("content-security-policy").expect("csp");
        assert!(csp.contains(&format!("'nonce-{nonce}'")), "{p:?}: {csp}");
        // Not a navigation: the app itself answers.
        let r = e.get(p, SHELL, "/todos/list", &[]).await;
        assert_eq!(r.echo().upstream, "one", "{p:?}");
    }
    assert_eq!(e.one.hits(), 2, "the built-in shell needs no upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_rate_limits_over_h1_and_h2() {
    let e = Edge::start().await;
    for p in BOTH {
        let host = p.limited_host();
        for i in 0..LIMIT {
            let r = e.get(p, host, &format!("/r{i}"), &[]).await;
            assert_eq!(r.status, 200, "{p:?} request {i}: {}", r.text);
        }
        let hits = e.one.hits();
        let r = e.get(p, host, "/over", &[]).await;
        assert_error(&r, 429, "rate_limited");
        let num = |name: &str| -> u64 {
            r.header(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{p:?}: {name} missing: {:?}", r.headers))
        };
        assert_eq!(num("ratelimit-limit"), LIMIT, "{p:?}");
        assert_eq!(num("ratelimit-remaining"), 0, "{p:?}");
        assert!((1..=60).contains(&num("retry-after")), "{p:?}");
        assert_eq!(
            e.one.hits(),
            hits,
            "{p:?}: a refused request reached the upstream"
        );
    }
}

/// One TLS connection to the gateway, for several requests on it: HTTP/1.1 keep-alive driven
/// by hand, or one HTTP/2 connection (the `h2` crate).
enum Conn {
    H1(Box<BufReader<tokio_rustls::client::TlsStream<TcpStream>>>),
    H2(h2::client::SendRequest<Bytes>),
}

impl Conn {
    /// Connects to `addr` with SNI `sni` and ALPN for `p` only.
    async fn open(p: Proto, addr: SocketAddr, sni: &str, ca: &str) -> Conn {
        match p {
            Proto::H1 => {
                use rustls::pki_types::ServerName;
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca, p.alpn())))
                    .connect(ServerName::try_from(sni.to_owned()).expect("name"), tcp)
                    .await
                    .expect("TLS handshake");
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(p.alpn()));
                Conn::H1(Box::new(BufReader::new(tls)))
            }
            Proto::H2 => Conn::H2(h2_connect(addr, sni, ca).await.0),
        }
    }

    /// GET `path` with this authority (`Host`, or `:authority`) on this connection.
    async fn get(&mut self, authority: &str, path: &str) -> Reply {
        let what = format!("GET {authority}{path}");
        let fut = async {
            match self {
                Conn::H1(s) => {
                    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
                    s.get_mut().write_all(req.as_bytes()).await?;
                    s.get_mut().flush().await?;
                    read_h1(s).await
                }
                Conn::H2(send) => {
                    let req = http::Request::get(format!("https://{authority}{path}"))
                        .body(())
                        .expect("request");
                    let mut send = send.clone().ready().await.map_err(std::io::Error::other)?;
                    let (resp, _) = send
                        .send_request(req, true)
                        .map_err(std::io::Error::other)?;
                    let resp = resp.await.map_err(std::io::Error::other)?;
                    assert_eq!(resp.version(), http::Version::HTTP_2);
                    let (parts, mut body) = resp.into_parts();
                    let mut data = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.map_err(std::io::Error::other)?;
                        let _ = body.flow_control().release_capacity(chunk.len());
                        data.extend_from_slice(&chunk);
                    }
                    Ok(Reply {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        text: String::from_utf8_lossy(&data).into_owned(),
                    })
                }
            }
        };
        match tokio::time::timeout(IO_LIMIT, fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(err)) => panic!("{what} on the open connection failed: {err}"),
            Err(_) => panic!("{what}: no response within {IO_LIMIT:?}"),
        }
    }
}

/// One HTTP/1.1 response (content-length or chunked body); the status line must say HTTP/1.1.
async fn read_h1<S: AsyncBufReadExt + Unpin>(s: &mut S) -> std::io::Result<Reply> {
    async fn line<S: AsyncBufReadExt + Unpin>(s: &mut S) -> std::io::Result<String> {
        let mut l = String::new();
        if s.read_line(&mut l).await? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        Ok(l.trim_end_matches(['\r', '\n']).to_owned())
    }
    let status_line = line(s).await?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3)?.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("status line {status_line:?}")))?;
    let mut headers = HeaderMap::new();
    loop {
        let l = line(s).await?;
        let Some((n, v)) = l.split_once(':') else {
            break;
        };
        let name =
            reqwest::header::HeaderName::try_from(n.trim()).map_err(std::io::Error::other)?;
        let value = v.trim().parse().map_err(std::io::Error::other)?;
        headers.append(name, value);
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        loop {
            let size = line(s).await?;
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                while !line(s).await?.is_empty() {}
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            s.read_exact(&mut body[at..]).await?;
            line(s).await?;
        }
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.to_str().ok().and_then(|l| l.parse().ok()).unwrap_or(0);
        body.resize(len, 0);
        s.read_exact(&mut body).await?;
    }
    Ok(Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_swap_reaches_an_open_connection_over_h1_and_h2() {
    let e = Edge::start().await;
    let addr = e.gw.tls_addr();
    let acme = format!("acme.test:{}", addr.port());
    let mut version = 1;
    for p in BOTH {
        let mut conn = Conn::open(p, addr, "acme.test", &e.ca).await;
        let before = if version % 2 == 1 { "one" } else { "two" };
        let after = if version % 2 == 1 { "two" } else { "one" };
        assert_eq!(
            conn.get(&acme, "/before").await.echo().upstream,
            before,
            "{p:?}"
        );
        version += 1;
        e.gw.push_ok(&table(version, &e.one, &e.two, &e.jwks, &e.certs))
            .await;
        // The same connection, the new table.
        let echo = conn.get(&acme, "/after").await.echo();
        assert_eq!(
            echo.upstream, after,
            "{p:?}: version {version} not in effect"
        );
        assert_eq!(echo.header_all("x-forwarded-proto"), ["https"], "{p:?}");
        assert_eq!(
            conn.get(&acme, "/again").await.echo().upstream,
            after,
            "{p:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_the_connections_certificate_does_not_cover_is_421_over_h1_and_h2() {
    let e = Edge::start().await;
    let addr = e.gw.tls_addr();
    let port = addr.port();
    let (acme, beta) = (format!("acme.test:{port}"), format!("beta.test:{port}"));
    for p in BOTH {
        let mut conn = Conn::open(p, addr, "acme.test", &e.ca).await;
        let r = conn.get(&acme, "/first").await;
        assert_eq!(r.echo().header_all("x-realmgate-tenant"), ["acme"], "{p:?}");
        // beta.test is served (with its own certificate), but not on acme's connection.
        let r = conn.get(&beta, "/coalesced").await;
        assert_error(&r, 421, "misdirected_request");
        let r = conn.get(&acme, "/still").await;
        assert_eq!(r.echo().header_all("x-realmgate-tenant"), ["acme"], "{p:?}");
        // On its own connection beta.test is served.
        let mut own = Conn::open(p, addr, "beta.test", &e.ca).await;
        let r = own.get(&beta, "/own").await;
        assert_eq!(r.echo().header_all("x-realmgate-tenant"), ["beta"], "{p:?}");
    }
    assert_eq!(
        e.one.hits(),
        6,
        "a misdirected request reached the upstream"
    );
}
