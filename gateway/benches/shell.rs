//! Micro benches of the app shell's per-request costs: the request-filter decision for tenants
//! without a shell, for app requests of a shell tenant and for shell navigations; the framing
//! policy on an app response; and injection into a 20 KB page.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pingora_http::{RequestHeader, ResponseHeader};
use realmgate::metrics::Metrics;
use realmgate::request::resolve;
use realmgate::shell::frame::guard_app_response;
use realmgate::shell::inject::{Encoding, Injector};
use realmgate::snapshot::{Snapshot, Store};
use std::sync::Arc;

const TABLE: &str = r#"{"version": 1,
 "upstreams": {"app": {"endpoints": ["127.0.0.1:9"]}},
 "tenants": [
   {"id": "plain", "hosts": ["plain.test"],
    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]},
   {"id": "acme", "hosts": ["acme.test"], "display_name": "Acme",
    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}],
    "catalog": [{"name": "Todos", "path": "/todos/"}, {"name": "Notes", "path": "/notes/"}],
    "shell": {"enabled": true, "excludes": ["/api/"]}}]}"#;

fn snapshot() -> Arc<Snapshot> {
    let dir = std::env::temp_dir().join(format!("realmgate-bench-shell-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new(16).expect("metrics"));
    let store = Store::new(dir.clone(), metrics);
    let snap = store
        .apply(Bytes::from_static(TABLE.as_bytes()))
        .unwrap_or_else(|e| panic!("table: {e:?}"));
    let _ = std::fs::remove_dir_all(dir);
    snap
}

fn req(host: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
    r.insert_header("host", host).expect("host");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("header");
    }
    r
}

/// A 20 KB HTML page, like the load suite's.
pub fn page_20k() -> String {
    let mut p = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bench</title>\
         <link rel=\"stylesheet\" href=\"/s.css\"></head><body><main>",
    );
    let mut i = 0;
    while p.len() < 20 * 1024 - 32 {
        p.push_str(&format!(
            "<section class=\"row\"><h2>Item {i}</h2><p>Lorem ipsum dolor sit amet, <a href=\"/x/{i}\">link</a>.</p></section>\n"
        ));
        i += 1;
    }
    p.push_str("</main></body></html>\n");
    p
}

fn decision(c: &mut Criterion) {
    let snap = snapshot();
    let mut g = c.benchmark_group("resolve");
    let plain = req(
        "plain.test",
        "/todos/x",
        &[("sec-fetch-dest", "document"), ("accept", "text/html")],
    );
    g.bench_function("tenant_without_shell", |b| {
        b.iter(|| black_box(resolve(&snap, black_box(&plain), false)))
    });
    let app = req(
        "acme.test",
        "/todos/x",
        &[("sec-fetch-dest", "iframe"), ("accept", "text/html")],
    );
    g.bench_function("shell_tenant_app_request", |b| {
        b.iter(|| black_box(resolve(&snap, black_box(&app), false)))
    });
    let nav = req(
        "acme.test",
        "/todos/x",
        &[("sec-fetch-dest", "document"), ("accept", "text/html")],
    );
    g.bench_function("shell_tenant_navigation", |b| {
        b.iter(|| black_box(resolve(&snap, black_box(&nav), false)))
    });
    g.finish();

    let mut resp = ResponseHeader::build(200, None).expect("response");
    resp.insert_header("content-type", "text/html").expect("ct");
    c.bench_function("frame_guard/app_response_without_csp", |b| {
        b.iter_batched_ref(
            || resp.clone(),
            |r| guard_app_response(r).expect("guard"),
            BatchSize::SmallInput,
        )
    });
}

fn injection(c: &mut Criterion) {
    let page = Bytes::from(page_20k());
    let element = format!(
        "<script type=\"application/json\" id=\"realmgate-context\" nonce=\"{}\">{}</script>",
        "A".repeat(24),
        "{\"tenant\":{\"id\":\"acme\",\"display_name\":\"Acme\"},\"catalog\":[],\"active\":null,\"user\":null}"
    );
    let mut g = c.benchmark_group("inject");
    g.bench_function("new_only", |b| {
        b.iter(|| black_box(Injector::new(element.clone(), None, Encoding::Identity)))
    });
    g.bench_function("context_element_and_nonce", |b| {
        b.iter(|| {
            let nonce = realmgate::shell::context::new_nonce();
            black_box(realmgate::shell::context::upstream_csp(&nonce));
            black_box(element.replace("AAAA", &nonce[..4]))
        })
    });
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("page_20k_in_4k_chunks", |b| {
        b.iter(|| {
            let mut inj = Injector::new(element.clone(), None, Encoding::Identity);
            let mut out = 0;
            let chunks: Vec<Bytes> = (0..page.len())
                .step_by(4096)
                .map(|i| page.slice(i..(i + 4096).min(page.len())))
                .collect();
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let mut body = Some(chunk);
                inj.filter(&mut body, i + 1 == n).expect("injects");
                out += body.map_or(0, |b| b.len());
            }
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, decision, injection);
criterion_main!(benches);
