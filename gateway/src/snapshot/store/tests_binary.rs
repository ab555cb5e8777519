//! Full tables in the binary encoding: the same snapshot and model as the JSON document, the
//! same refusals, a malformed encoding refused without changing anything, and the stored
//! table (`table.bin` or `table.json`, whichever came last) loaded again at start.

use super::*;
use crate::snapshot::test_util::table;
use realmgate_table::{binary, Table};

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "realmgate-store-bin-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn store(dir: &std::path::Path) -> Store {
    Store::new(
        dir.to_path_buf(),
        Arc::new(Metrics::new(16).expect("metrics")),
    )
}

/// The unit-test table (four tenants, keys, a shell, limits) at `version`.
fn wire(version: u64) -> Table {
    let mut t: Table = serde_json::from_str(&table()).expect("table");
    t.version = version;
    t
}

fn json(t: &Table) -> Bytes {
    Bytes::from(t.to_json())
}

fn bin(t: &Table) -> Bytes {
    Bytes::from(binary::encode(t))
}

/// What requests see of a snapshot, written out: tenants, their hosts and routes, pools,
/// keys, certificates, and where each host lands.
fn seen(s: &Snapshot) -> String {
    let mut out = format!(
        "v{} tenants {} pools {}\n",
        s.version,
        s.tenant_count(),
        s.pool_count()
    );
    for t in s.tenants.iter() {
        out += &format!(
            "{} {:?} pools {:?} suspended {} https {:?} hsts {:?} header {:?} shell {} realm {} limits {:?}\n",
            t.id, t.hosts, t.pools, t.suspended, t.https, t.hsts, t.header,
            t.shell.is_some(), t.realm.is_some(), t.limits.tenant.is_some(),
        );
        for path in ["/", "/api/x", "/@acme/x", "/@beta/x", "/nothing"] {
            if let Some(r) = t.routes.find(path) {
                out += &format!(
                    "  {path} -> {} pool {} {:?} ns {:?}\n",
                    r.prefix,
                    r.pool,
                    r.policy,
                    r.namespace.as_ref().map(|n| &n.name)
                );
            }
        }
        for h in t.hosts.iter() {
            let name = h.to_string().replace('*', "x");
            out += &format!("  host {name} -> {:?}\n", s.hosts.lookup(&name));
        }
    }
    for p in s.pools.iter() {
        out += &format!("pool {} {}\n", p.name, p.endpoint_count());
    }
    for (idx, k) in s.keys.iter() {
        out += &format!("key {idx} {:?} {:?}\n", k.id, k.expires_at);
    }
    out += &format!(
        "certs {} acme {} assertion {}\n",
        s.certs.len(),
        s.acme.len(),
        s.assertion.is_some()
    );
    out
}

#[test]
fn both_encodings_give_the_same_snapshot_and_model() {
    let (a, b) = (state_dir("same-json"), state_dir("same-bin"));
    let (by_json, by_bin) = (store(&a), store(&b));
    let t = wire(7);
    let from_json = by_json.apply(json(&t)).expect("JSON applies");
    let from_bin = by_bin.apply_binary(bin(&t)).expect("binary applies");
    assert_eq!(seen(&from_bin), seen(&from_json));
    assert_eq!(
        from_bin.digest,
        realmgate_table::digest(&binary::encode(&t))
    );
    assert!(
        from_bin.raw.is_none(),
        "no JSON document to show as received"
    );
    // The model (for deltas) is made from the same parse, whichever the encoding.
    let digest = by_json.state_digest().expect("modelled");
    assert_eq!(by_bin.state_digest(), Some(digest.clone()));
    assert_eq!(digest, realmgate_table::state_digest(&t));
    // GET ?full=1 writes the table out from the model: the same table.
    let doc = by_bin.document().expect("a document");
    let back: Table = serde_json::from_slice(&doc).expect("JSON");
    assert_eq!(realmgate_table::state_digest(&back), digest);
    for dir in [a, b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_bad_table_is_refused_alike_and_a_malformed_one_changes_nothing() {
    let dir = state_dir("refused");
    let s = store(&dir);
    s.apply_binary(bin(&wire(7))).expect("applies");
    let stored = std::fs::read(dir.join(BINARY_STATE_FILE)).expect("stored");
    let problems = |r: Result<Arc<Snapshot>, ApplyError>| match r {
        Err(ApplyError::Invalid(p)) => p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("not refused as invalid: {:?}", other.map(|s| s.version)),
    };
    // A valid encoding of an invalid table: the problems JSON gets.
    let mut bad = wire(8);
    bad.tenants[1].hosts[0] = bad.tenants[0].hosts[0].clone();
    bad.tenants[2].routes[0].upstream = "nowhere".into();
    let by_json = problems(store(&state_dir("refused-json")).apply(json(&bad)));
    assert_eq!(problems(s.apply_binary(bin(&bad))), by_json);
    assert_eq!(by_json.len(), 2, "{by_json:?}");
    // Malformed encodings: truncated, garbage, a JSON body, another format, trailing bytes.
    let good = binary::encode(&wire(9));
    let mut other_format = good.clone();
    other_format[4] = binary::FORMAT + 1;
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: [(&[u8], &str); 6] = [
        (&good[..good.len() / 2], "malformed binary"),
        (&good[..5], "malformed binary table"),
        (b"\x00\x01\x02garbage", "not a binary routing table"),
        (&wire(9).to_json(), "not a binary routing table"),
        (&other_format, "binary table format 2"),
        (&trailing, "1 bytes after its end"),
    ];
    for (doc, says) in cases {
        let p = problems(s.apply_binary(Bytes::copy_from_slice(doc))).join("; ");
        assert!(p.contains(says), "{says}: {p}");
        assert_eq!(s.current().map(|c| c.version), Some(7), "{says}");
    }
    // Nothing of it reached the disk, and the version check still holds for binary.
    assert_eq!(
        std::fs::read(dir.join(BINARY_STATE_FILE)).expect("stored"),
        stored
    );
    assert!(!dir.join(STATE_FILE).exists());
    assert!(matches!(
        s.apply_binary(bin(&wire(7))),
        Err(ApplyError::NotNewer {
            current: 7,
            offered: 7
        })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_table_stored_last_is_loaded_whichever_its_encoding() {
    let dir = state_dir("stored");
    let s = store(&dir);
    s.apply(json(&wire(7))).expect("JSON applies");
    s.apply_binary(bin(&wire(8))).expect("binary applies");
    assert!(!dir.join(STATE_FILE).exists(), "the older table.json goes");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(BINARY_STATE_FILE))
        .expect("table.bin")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "a table may hold secrets");
    let restarted = store(&dir);
    assert_eq!(restarted.load_state(), Ok(Some(8)));
    assert_eq!(restarted.state_digest(), s.state_digest());
    // Back to JSON: table.bin goes.
    s.apply(json(&wire(9))).expect("JSON applies");
    assert!(!dir.join(BINARY_STATE_FILE).exists());
    assert_eq!(store(&dir).load_state(), Ok(Some(9)));
    // A crash between storing one and removing the other: the newer version is loaded.
    std::fs::write(dir.join(BINARY_STATE_FILE), binary::encode(&wire(10))).expect("write");
    assert_eq!(store(&dir).load_state(), Ok(Some(10)));
    std::fs::write(dir.join(BINARY_STATE_FILE), binary::encode(&wire(3))).expect("write");
    assert_eq!(store(&dir).load_state(), Ok(Some(9)));
    let _ = std::fs::remove_dir_all(&dir);
}
