//! Realms over https: the gateway fetches a realm's keys over TLS (rustls, system trust store;
//! here `SSL_CERT_FILE` names a test CA), and refuses a server whose certificate it does not
//! trust. The TLS server is `openssl s_server -WWW` with certificates made for this test.

use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{free_addrs, Gateway, GatewayOpts, Table, TempDir, TestKey, Upstream};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf for 127.0.0.1/localhost signed by it, in `dir` as `<name>-ca.pem`,
/// `<name>.pem`, `<name>.key`.
fn make_certs(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN=realmgate test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// `openssl s_server -WWW`: serves the files of `dir` over TLS. Killed on drop.
struct TlsServer(Child, SocketAddr);

impl TlsServer {
    fn start(dir: &Path, name: &str) -> TlsServer {
        let addr = free_addrs(1)[0];
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &addr.to_string(),
                "-cert",
                &format!("{name}.pem"),
                "-key",
                &format!("{name}.key"),
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "s_server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsServer(child, addr)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn realm_keys_are_fetched_over_verified_tls() {
    let dir = TempDir::new("tls");
    make_certs(dir.path(), "trusted");
    make_certs(dir.path(), "untrusted");
    let key = TestKey::rs256("k1");
    std::fs::write(
        dir.join("certs.json"),
        json!({"keys": [key.jwk()]}).to_string(),
    )
    .expect("jwks file");
    let trusted = TlsServer::start(dir.path(), "trusted");
    let untrusted = TlsServer::start(dir.path(), "untrusted");
    // The gateway (a child process) trusts only the "trusted" CA. This test binary holds no
    // other test, so setting the variable here affects nothing else.
    std::env::set_var("SSL_CERT_FILE", dir.join("trusted-ca.pem"));

    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let tenant = |id: &str, addr: SocketAddr| {
        json!({"id": id, "hosts": [format!("{id}.test")],
               "realm": {"issuer": format!("https://id.test/realms/{id}"),
                         "jwks_uri": format!("https://{addr}/certs.json"),
                         "audiences": ["api"]},
               "routes": [{"prefix": "/", "upstream": "app", "auth": "jwt"}]})
    };
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant_json(tenant("good", trusted.1))
        .tenant_json(tenant("bad", untrusted.1))
        .build();
    gw.push_ok(&table).await;

    let call = |host: &str, iss: &str| {
        gw.fetch(gw.get(host, "/").header(
            "authorization",
            format!("Bearer {}", key.sign(&access_claims(iss, "u1", "api"))),
        ))
    };
    let r = call("good.test", "https://id.test/realms/good").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text, gw.logs());
    assert_eq!(r.echo().header_all("x-realmgate-subject"), ["u1"]);
    let r = call("bad.test", "https://id.test/realms/bad").await;
    r.assert_error(503, "realm_unavailable");
    assert!(
        gw.logs().contains("jwks https://") && gw.logs().contains("fetch failed"),
        "the TLS failure is logged: {}",
        gw.logs()
    );
}
