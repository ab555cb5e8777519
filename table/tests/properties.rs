//! Property tests of the table crate's public parsers: host and path normalisation, the
//! route-reading invariant the gateway relies on, and the table decoder and validator.
//!
//! Cases per property: 64 to 256 by default (about 2,000 for the file, seconds in debug);
//! `REALMGATE_PROPTEST_CASES=N` runs N per property (`tests/run --long` sets it high).

// One block of imports from the crate under test, so a module move is fixed in one place.
use realmgate_table::host::{normalise_authority, normalise_host, HostBuf};
use realmgate_table::path::{has_other_readings, normalise_path, other_readings};
use realmgate_table::Table;

use proptest::prelude::*;
use serde_json::{json, Value};

/// The one call into the table decoder. Its result type may change; only success is read.
fn parses(bytes: &[u8]) -> bool {
    realmgate_table::parse(bytes).is_ok()
}

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("REALMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // A failure prints its minimal input; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn norm_authority(raw: &[u8]) -> Option<String> {
    let mut buf = HostBuf::default();
    normalise_authority(raw, &mut buf).ok().map(str::to_owned)
}

fn is_normal_host(h: &str) -> bool {
    h.is_ascii() && !h.bytes().any(|b| b.is_ascii_uppercase()) && !h.is_empty() && h.len() <= 255
}

// ---------------------------------------------------------------------------------------
// Hosts

/// Host-ish text: labels of letters in both cases, digits, `-`, `_`, with dots, ports,
/// brackets, colons, non-ASCII and stray bytes mixed in.
fn hostish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9]{1,8}",
            2 => Just(".".to_owned()),
            1 => Just("-".to_owned()),
            1 => Just("_".to_owned()),
            1 => ":[0-9]{0,6}",
            1 => Just("[".to_owned()),
            1 => Just("]".to_owned()),
            1 => "[0-9a-fA-F:]{1,10}",
            1 => "\\PC{1,3}",
            1 => prop::sample::select(vec!["ü", "ß", "Ⅸ", "\u{200b}", "xn--", "*", "@", " ", "%"])
                .prop_map(str::to_owned),
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid DNS name in random case, and its expected normal form.
fn valid_host() -> impl Strategy<Value = (String, String)> {
    let label = "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?";
    (
        prop::collection::vec(label, 1..5),
        prop::collection::vec(any::<bool>(), 40),
    )
        .prop_map(|(labels, upper)| {
            let lower = labels.join(".");
            let mixed: String = lower
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                .collect();
            (mixed, lower)
        })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn host_never_panics_on_bytes(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Some(h) = norm_authority(&raw) {
            prop_assert!(is_normal_host(&h), "{raw:?} -> {h:?}");
            prop_assert_eq!(norm_authority(h.as_bytes()), Some(h.clone()), "not idempotent: {:?}", raw);
        }
    }

    #[test]
    fn host_normal_form_is_lower_ascii_and_idempotent(raw in hostish()) {
        if let Some(h) = norm_authority(raw.as_bytes()) {
            prop_assert!(is_normal_host(&h), "{raw:?} -> {h:?}");
            // No port survives (an IPv6 literal keeps its colons inside brackets).
            prop_assert!(h.starts_with('[') || !h.contains(':'), "{raw:?} -> {h:?}");
            prop_assert!(!h.ends_with('.'), "{raw:?} -> {h:?}");
            prop_assert_eq!(norm_authority(h.as_bytes()), Some(h.clone()), "authority of {:?}", raw);
            if !h.starts_with('[') {
                prop_assert_eq!(normalise_host(&h).ok(), Some(h.clone()), "bare host of {:?}", raw);
            }
        }
        if let Ok(h) = normalise_host(&raw) {
            prop_assert!(is_normal_host(&h), "{raw:?} -> {h:?}");
            prop_assert_eq!(normalise_host(&h).ok(), Some(h.clone()), "host of {:?}", raw);
        }
    }

    #[test]
    fn host_case_does_not_matter(raw in hostish()) {
        if raw.is_ascii() {
            prop_assert_eq!(
                norm_authority(raw.to_ascii_uppercase().as_bytes()),
                norm_authority(raw.to_ascii_lowercase().as_bytes()),
                "{:?}", raw
            );
        }
    }

    #[test]
    fn valid_hosts_normalise_to_lower_case(
        (mixed, lower) in valid_host(),
        port in prop::option::of(0u32..=65535),
        dot in any::<bool>(),
    ) {
        let mut raw = mixed;
        if dot {
            raw.push('.');
        }
        if let Some(p) = port {
            raw.push_str(&format!(":{p}"));
        }
        prop_assert_eq!(norm_authority(raw.as_bytes()), Some(lower), "{:?}", raw);
    }
}

// ---------------------------------------------------------------------------------------
// Paths

/// Path segments an attacker would combine: traversal in every spelling, encoded slashes and
/// backslashes, `;params`, double encoding, namespaces.
const PIECES: &[&str] = &[
    "",
    ".",
    "..",
    "...",
    "a",
    "B",
    "w",
    "admin",
    "public",
    "secret",
    "x",
    "api",
    "@acme",
    "@other",
    "%40other",
    "%40acme",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "\\",
    ";x",
    ";",
    "..;",
    ".;",
    "%3B",
    "%3b",
    "%252F",
    "%252E%252E",
    "%25",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E.",
    "%41",
    "%7e",
    "%20",
    "%C3%A9",
    "%00",
    "%",
    "%g1",
    "?",
    "#",
    "a%2Fb",
    "x;y=z",
    "*",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => "[a-z0-9@._~;%-]{1,6}",
    ]
}

/// A request path: `/` then segments made of one or more pieces.
fn attack_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(piece(), 1..3), 1..7).prop_map(|segs| {
        let segs: Vec<String> = segs.into_iter().map(|s| s.concat()).collect();
        format!("/{}", segs.join("/"))
    })
}

/// Pieces the gateway's pre-check passes as having no other reading: no `%2F`, `%5C`, `%25`,
/// `%3B`, a raw backslash or `;`. Other escapes (`%40`, `%3A`, ...) stay in.
const QUIET_PIECES: &[&str] = &[
    "", ".", "..", "a", "w", "admin", "public", "x", "api", "b", "@acme", "@other", "%40acme",
    "%40other", "%40", "%2e", "%2E%2E", "%41", "%20", "%3A", "%3F", "%23", "%C3%A9", "%2b",
];

/// A path the pre-check lets through, for the agreement property. Its first segment, where
/// namespaces live, is drawn from namespace-like pieces half the time.
fn quiet_path() -> impl Strategy<Value = String> {
    let piece = || prop::sample::select(QUIET_PIECES).prop_map(str::to_owned);
    let first = prop_oneof![
        prop::sample::select(vec!["@acme", "%40acme", "@other", "%40other", "%40"])
            .prop_map(str::to_owned),
        prop::collection::vec(piece(), 1..3).prop_map(|p| p.concat()),
    ];
    let rest = prop::collection::vec(prop::collection::vec(piece(), 1..3), 0..5);
    (first, rest).prop_map(|(first, rest)| {
        let rest: Vec<String> = rest.into_iter().map(|s| s.concat()).collect();
        if rest.is_empty() {
            format!("/{first}")
        } else {
            format!("/{first}/{}", rest.join("/"))
        }
    })
}

/// The dot-segment resolution every server applies, with the normaliser's trailing-slash rule
/// (a path ending in `/`, `.` or `..` keeps a trailing `/`). `None`: climbs above `/`.
fn model_resolve(path: &str) -> Option<String> {
    let mut segs: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = true;
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop()?;
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    let mut out: String = segs.iter().map(|s| format!("/{s}")).collect();
    if out.is_empty() || trailing {
        out.push('/');
    }
    Some(out)
}

fn check_normal(raw: &str, n: &str) -> Result<(), TestCaseError> {
    prop_assert!(n.starts_with('/'), "{raw:?} -> {n:?}");
    prop_assert!(!n.contains("//"), "{raw:?} -> {n:?}");
    for seg in n.split('/') {
        prop_assert!(
            seg != "." && seg != "..",
            "{raw:?} -> {n:?} has a dot segment"
        );
    }
    // Escapes left are upper-case and never of an unreserved character.
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let hex = b.get(i + 1..i + 3).unwrap_or_default();
        prop_assert!(
            hex.len() == 2
                && hex
                    .iter()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
            "{raw:?} -> {n:?}: escape at {i} not two upper-case hex digits"
        );
        let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("00"), 16).unwrap_or(0);
        prop_assert!(
            !(v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~')),
            "{raw:?} -> {n:?}: unreserved character left encoded"
        );
    }
    let again = normalise_path(n).map(|c| c.into_owned());
    prop_assert_eq!(again.as_deref(), Ok(n), "not idempotent: {:?}", raw);
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn path_never_panics_on_any_string(raw in "\\PC{0,40}|/[ -~]{0,60}") {
        if let Ok(n) = normalise_path(&raw) {
            check_normal(&raw, &n)?;
        }
    }

    #[test]
    fn path_normal_form_is_normal(raw in attack_path()) {
        if let Ok(n) = normalise_path(&raw) {
            check_normal(&raw, &n)?;
        }
    }

    /// Paths without escapes: the normal form is exactly the dot-resolved path (an
    /// independent model), and climbing above `/` is refused.
    #[test]
    fn plain_paths_resolve_like_the_model(
        segs in prop::collection::vec(prop::sample::select(vec!["", ".", "..", "a", "b", "c.d", "..."]), 0..8),
    ) {
        let raw = format!("/{}", segs.join("/"));
        match (model_resolve(&raw), normalise_path(&raw)) {
            (Some(want), Ok(got)) => prop_assert_eq!(got.as_ref(), want.as_str(), "{:?}", raw),
            (None, Err(_)) => {}
            (want, got) => prop_assert!(false, "{raw:?}: model {want:?}, normaliser {got:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Readings: the route the gateway checks is the route every common server reaches

/// Route prefixes a tenant could have: public roots and protected sub-trees, namespaces.
const PREFIXES: &[&str] = &[
    "/",
    "/w/",
    "/w/admin/",
    "/admin",
    "/admin/",
    "/public/",
    "/api",
    "/api/admin/",
    "/@acme/",
    "/@other/",
    "/@acme/admin/",
    "/a/",
    "/a/b",
];

fn prefixes() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(PREFIXES, 1..6)
}

/// Longest-prefix match written here from the contract (`docs/routing-table.md`): a prefix
/// ending in `/` covers everything under it, another one itself and what continues with `/`.
fn longest_prefix<'p>(prefixes: &[&'p str], path: &str) -> Option<&'p str> {
    prefixes
        .iter()
        .filter(|p| {
            path.starts_with(**p)
                && (p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
        })
        .max_by_key(|p| p.len())
        .copied()
}

/// The namespace a path names as a server reads it: its first segment, `%40` read as `@`.
fn namespace_of(path: &str) -> Option<String> {
    let first = path.strip_prefix('/')?.split('/').next()?;
    let first = decode_once(first);
    first.starts_with('@').then_some(first)
}

/// `%2F`, `%5C` and a raw `\` read as `/` (Apache with AllowEncodedSlashes, IIS, Windows).
fn server_decode_slashes(p: &str) -> String {
    let mut out = String::new();
    let mut rest = p;
    while let Some(c) = rest.chars().next() {
        let head = rest.get(..3).map(str::to_ascii_uppercase);
        if c == '\\' {
            out.push('/');
            rest = &rest[1..];
        } else if matches!(head.as_deref(), Some("%2F" | "%5C")) {
            out.push('/');
            rest = &rest[3..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `;params` cut from every segment (servlet containers: `..;` is `..`).
fn server_cut_params(p: &str) -> String {
    p.split('/')
        .map(|s| s.split_once(';').map_or(s, |(a, _)| a))
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `%XX` decoded once, as most frameworks do before routing.
fn decode_once(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How servers of several kinds read a path, each as a sequence of steps; `None`: the server
/// would refuse it (climbs above `/`).
fn server_readings(normal: &str) -> Vec<(&'static str, Option<String>)> {
    type Step = fn(&str) -> String;
    let servers: [(&'static str, &[Step]); 8] = [
        ("decodes once", &[decode_once]),
        ("decodes twice", &[decode_once, decode_once]),
        ("encoded slashes", &[server_decode_slashes]),
        ("servlet ;params", &[server_cut_params]),
        ("servlet after decoding", &[decode_once, server_cut_params]),
        (
            "slashes then params",
            &[server_decode_slashes, server_cut_params],
        ),
        (
            "params then decode twice",
            &[server_cut_params, decode_once, decode_once],
        ),
        (
            "decode, slashes, params",
            &[decode_once, server_decode_slashes, server_cut_params],
        ),
    ];
    servers
        .iter()
        .map(|(name, steps)| {
            let read = steps.iter().fold(normal.to_owned(), |p, step| step(&p));
            (*name, model_resolve(&read))
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    /// When the gateway's pre-check says a path has no other reading, every server reading
    /// written independently here reaches the same route and the same namespace.
    #[test]
    fn no_other_reading_means_every_server_agrees(
        prefixes in prefixes(),
        raw in prop_oneof![1 => attack_path(), 2 => quiet_path()],
    ) {
        let Ok(normal) = normalise_path(&raw) else { return Ok(()) };
        if has_other_readings(&normal) {
            return Ok(());
        }
        let route = longest_prefix(&prefixes, &normal);
        let ns = namespace_of(&normal);
        for (server, reading) in server_readings(&normal) {
            let Some(reading) = reading else {
                prop_assert!(false, "{raw:?} (normal {normal:?}): a server that {server} climbs above /, yet no other reading");
                unreachable!()
            };
            prop_assert_eq!(
                longest_prefix(&prefixes, &reading), route,
                "{:?} (normal {:?}) has no other reading, but a server that {} reads {:?}; routes {:?}",
                raw, normal, server, reading, prefixes
            );
            prop_assert_eq!(
                namespace_of(&reading), ns.clone(),
                "{:?} (normal {:?}): a server that {} reads {:?} in another namespace",
                raw, normal, server, reading
            );
        }
    }

    /// The pre-check and the full list agree: no other reading means the list is empty.
    #[test]
    fn pre_check_agrees_with_the_readings(raw in prop_oneof![attack_path(), quiet_path()]) {
        let Ok(normal) = normalise_path(&raw) else { return Ok(()) };
        if !has_other_readings(&normal) {
            prop_assert_eq!(other_readings(&normal), Ok(Vec::new()), "{:?} (normal {:?})", raw, normal);
        }
    }

    /// Every reading is a resolved absolute path, never the path itself, and never panics.
    #[test]
    fn readings_are_resolved_paths(raw in attack_path()) {
        let Ok(normal) = normalise_path(&raw) else { return Ok(()) };
        if let Ok(readings) = other_readings(&normal) {
            for r in &readings {
                prop_assert!(r.starts_with('/'), "{normal:?} -> {r:?}");
                prop_assert!(r != normal.as_ref(), "{normal:?} lists itself");
                prop_assert!(
                    r.split('/').all(|s| s != "." && s != ".."),
                    "{normal:?} -> {r:?} has a dot segment"
                );
            }
        }
    }

    #[test]
    fn readings_never_panic_on_any_string(raw in "\\PC{0,40}|/[ -~]{0,60}") {
        let _ = has_other_readings(&raw);
        let _ = other_readings(&raw);
    }
}

// ---------------------------------------------------------------------------------------
// The table decoder and validator

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}[a-z0-9]"
}

/// A valid table: pools, tenants with distinct hosts and routes onto those pools, namespaced
/// routes and API keys.
fn valid_table() -> impl Strategy<Value = Value> {
    (
        1u64..1_000_000,
        prop::collection::btree_set(name(), 1..4),
        prop::collection::btree_set(name(), 1..4),
        prop::collection::vec(prop::sample::select(vec!["public", "jwt", "api_key", "session"]), 1..5),
        prop::collection::vec(1024u16..65000, 1..3),
        prop::collection::vec((name(), prop::option::of(0u64..1_000_000)), 0..4),
    )
        .prop_map(|(version, pools, tenants, policies, ports, keys)| {
            let pools: Vec<String> = pools.into_iter().collect();
            let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            let upstreams: serde_json::Map<String, Value> = pools
                .iter()
                .map(|p| (p.clone(), json!({"endpoints": endpoints})))
                .collect();
            let tenants: Vec<Value> = tenants
                .iter()
                .enumerate()
                .map(|(t, id)| {
                    let pool = &pools[t % pools.len()];
                    let mut routes = vec![json!({"prefix": "/", "upstream": pool, "auth": "public"})];
                    for (i, policy) in policies.iter().enumerate() {
                        routes.push(json!({"prefix": format!("/r{i}/"), "upstream": pool, "auth": policy}));
                    }
                    routes.push(json!({"prefix": format!("/@{id}/"), "upstream": pool, "auth": "api_key", "namespace": format!("@{id}")}));
                    let mut tenant = json!({"id": id, "hosts": [format!("{id}.test"), format!("*.{id}.test")], "routes": routes});
                    if policies.iter().any(|p| *p == "jwt" || *p == "session") {
                        tenant["realm"] = json!({
                            "issuer": format!("https://id.test/realms/{id}"),
                            "audiences": ["api"], "client_id": "gw"
                        });
                    }
                    tenant
                })
                .collect();
            let first = tenants[0]["id"].as_str().unwrap_or("x").to_owned();
            let api_keys: Vec<Value> = keys
                .iter()
                .enumerate()
                .map(|(i, (id, seed))| {
                    json!({
                        "id": format!("{id}-{i}"),
                        "digest": format!("sha256:{:064x}", seed.unwrap_or(i as u64)),
                        "tenant": first,
                        "namespaces": [format!("@{first}")],
                    })
                })
                .collect();
            json!({"version": version, "upstreams": upstreams, "tenants": tenants, "api_keys": api_keys})
        })
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Splice(usize, &'static str),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let token = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "null",
        "-1",
        "1e999",
        "18446744073709551616",
        "\"x\":1,",
        "\\u0000",
        "\\ud800",
        "\"version\":",
        "\"tenants\":[{}],",
        "/",
        "*.",
        "..",
    ]);
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Delete),
            (any::<usize>(), token).prop_map(|(i, t)| Edit::Splice(i, t)),
        ],
        1..6,
    )
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match *e {
            Edit::Flip(i, b) if len > 0 => bytes[i % len] ^= b.max(1),
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Splice(i, t) => {
                let at = i % (len + 1);
                bytes.splice(at..at, t.bytes());
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn parse_never_panics_on_bytes(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parses(&raw);
    }

    #[test]
    fn valid_tables_parse_and_round_trip(table in valid_table()) {
        let bytes = serde_json::to_vec(&table).unwrap_or_default();
        prop_assert!(parses(&bytes), "generated table refused: {}", realmgate_table::parse(&bytes).err().map(|p| format!("{p:?}")).unwrap_or_default());
        let decoded: Table = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = serde_json::to_vec(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(parses(&again), "re-encoded table refused: {}", String::from_utf8_lossy(&again));
        let redecoded: Table = serde_json::from_slice(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, redecoded);
    }

    #[test]
    fn parse_never_panics_on_mutated_tables(table in valid_table(), edits in edits()) {
        let bytes = apply(serde_json::to_vec(&table).unwrap_or_default(), &edits);
        let _ = parses(&bytes);
    }

    /// A table stays valid or becomes invalid, but a field set to a value of another type
    /// never panics the validator (mutations at the JSON level rather than the byte level).
    #[test]
    fn parse_never_panics_on_retyped_fields(
        table in valid_table(),
        path in prop::collection::vec(0usize..8, 1..5),
        value in prop::sample::select(vec![
            json!(null), json!(""), json!("/"), json!("*"), json!(-1), json!(1.5),
            json!(u64::MAX), json!([]), json!({}), json!(["@*"]), json!("@"), json!("\u{0}"),
            json!("..".repeat(200)), json!(true),
        ]),
    ) {
        let mut table = table;
        // Walk down immutably to a JSON pointer, then replace what it points at.
        let mut pointer = String::new();
        let mut at = &table;
        for i in path {
            let next = match at {
                Value::Object(m) if !m.is_empty() => m.iter().nth(i % m.len()).map(|(k, v)| (k.clone(), v)),
                Value::Array(a) if !a.is_empty() => Some(((i % a.len()).to_string(), &a[i % a.len()])),
                _ => None,
            };
            let Some((key, v)) = next else { break };
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            at = v;
        }
        if let Some(slot) = table.pointer_mut(&pointer) {
            *slot = value;
        }
        let _ = parses(&serde_json::to_vec(&table).unwrap_or_default());
    }
}
