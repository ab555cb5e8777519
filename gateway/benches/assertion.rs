//! Micro bench: the identity assertion's per-request cost — a cache hit (a keyed hash of the
//! subject, one slot load, the identity compared, a header value clone) and inserting the header into the upstream
//! request — and a miss (signing an ES256 token).
//!
//!     cargo bench -p realmgate --bench assertion
//!
//! Results are in `benches/ASSERTION-RESULTS.md`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use realmgate::assertion::{Assertions, Principal, Signer, Subject, Via, HEADER};
use realmgate_table::assertion::{key_pem_from_bytes, Assertion, AssertionKey, KeyState};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let section = Assertion {
        issuer: "realmgate".into(),
        keys: vec![AssertionKey {
            kid: "bench-1".into(),
            alg: "ES256".into(),
            private_key_pem: key_pem_from_bytes(&[3; 32]).expect("scalar"),
            state: KeyState::Active,
        }],
    };
    let signer = Signer::compile(Some(&section)).expect("signer");
    let roles: Vec<Box<str>> = vec!["user".into(), "reader".into()];
    let subject = Subject {
        tenant: "acme",
        pool: "app",
        principal: Principal::Realm {
            via: Via::Jwt,
            sub: "3f1c2a9e-5b7d-4c1e-9a0b-6d2e8f4a1c3b",
            roles: &roles,
        },
    };
    let now = 1_900_000_000;
    let cache = Assertions::new(100_000);
    cache.header(&signer, &subject, now).expect("minted");
    c.bench_function("assertion: cache hit", |b| {
        b.iter(|| black_box(cache.header(&signer, black_box(&subject), now)))
    });
    let mut req = pingora_http::RequestHeader::build("GET", b"/api/x", None).expect("request");
    c.bench_function("assertion: cache hit + insert_header", |b| {
        b.iter(|| {
            if let Some((v, _)) = cache.header(&signer, black_box(&subject), now) {
                req.insert_header(HEADER, v).expect("insert");
            }
        })
    });
    c.bench_function("assertion: sign (a miss)", |b| {
        b.iter(|| black_box(signer.sign(black_box(&subject), now)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
