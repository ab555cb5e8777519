//! The sharded parse of a large table ([`crate::parse`]'s fast path): the `tenants` array is
//! cut into its elements by a structural scan, each shard of them decoded and checked on its
//! own core, and the rules across tenants run once over the merged result.
//!
//! It only ever answers "valid, and here is the checked table": on any problem at all (or a
//! document it does not cut cleanly) it gives up, and the one-pass parse runs instead, so
//! every refusal reads exactly as before — paths, order, serde's line and column included.

use crate::claims;
use crate::host::HostPattern;
use crate::validate::{self, CheckedTable, Skip, TenantContext};
use crate::wire::{Table, Tenant};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// Fewer tenants than this are parsed in one pass: threads would cost more than they save.
pub(crate) const MIN_TENANTS: usize = 4096;

/// The checked table, if `bytes` is a valid table that the sharded parse takes (see the
/// module docs); `None` means "parse it the one-pass way", not "invalid".
pub(crate) fn parse(bytes: &[u8]) -> Option<CheckedTable> {
    if cores() < 2 || bytes.len() < MIN_TENANTS * 64 {
        return None;
    }
    let (array, elements) = tenants_array(bytes)?;
    if elements.len() < MIN_TENANTS {
        return None;
    }
    // The rest of the document, its tenants array emptied: decoded the one-pass way (it
    // holds the pools the tenants' routes name).
    let mut rest = Vec::with_capacity(bytes.len() - array.len() + 2);
    rest.extend_from_slice(&bytes[..array.start]);
    rest.extend_from_slice(b"[]");
    rest.extend_from_slice(&bytes[array.end..]);
    let mut found = Vec::new();
    let table = crate::decode::<Table>(&rest, "table", &mut found)?;
    if !found.is_empty() || !table.tenants.is_empty() {
        return None;
    }
    check(table, &elements, |span| {
        let mut found = Vec::new();
        crate::decode::<Tenant>(&bytes[span.clone()], "tenant", &mut found)
            .filter(|_| found.is_empty())
    })
    .ok()
}

/// How many shards a large table is cut into.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `table` (its tenants empty) with the tenants that `decode` makes of `elements`, checked:
/// each tenant on the core of its shard, then the rules across tenants ([`crate::claims`],
/// on every core too) and the rest of the table once. At the first element that does not
/// decode, or any problem at all, the table comes back (its tenants empty): the caller's
/// one-pass parse then says what is wrong. Fewer than [`MIN_TENANTS`] elements, or one core:
/// one shard, on this thread.
pub(crate) fn check<E: Sync>(
    mut table: Table,
    elements: &[E],
    decode: impl Fn(&E) -> Option<Tenant> + Sync,
) -> Result<CheckedTable, Box<Table>> {
    let threads = if elements.len() < MIN_TENANTS {
        1
    } else {
        cores()
    };
    let failed = AtomicBool::new(false);
    let per = elements.len().div_ceil(threads).max(1);
    // Each shard decodes into its own run of the table's tenants and hosts: nothing is
    // moved or copied after.
    table.tenants.clear();
    table.tenants.resize_with(elements.len(), Tenant::default);
    let mut hosts: Vec<Vec<HostPattern>> = Vec::new();
    hosts.resize_with(elements.len(), Vec::new);
    // Each shard also hashes its tenants' claims (the rules across tenants) while their
    // data is in cache.
    let hasher = ahash::RandomState::new();
    let runs = elements
        .chunks(per)
        .zip(table.tenants.chunks_mut(per).zip(hosts.chunks_mut(per)))
        .enumerate()
        .map(|(k, (e, out))| (k * per, e, out));
    let upstreams = &table.upstreams;
    let shard = |(from, e, out): (usize, &[E], _)| {
        let mut sort = claims::Sort::new(&hasher, threads, e.len());
        let ok = tenants(from, e, out, &mut sort, &decode, upstreams, &failed);
        ok.then_some(sort)
    };
    let sorts: Option<Vec<claims::Sort>> = if threads == 1 {
        runs.map(shard).collect()
    } else {
        std::thread::scope(|scope| {
            let shard = &shard;
            let handles: Vec<_> = runs.map(|run| scope.spawn(move || shard(run))).collect();
            // Every handle is joined, whatever the others answer.
            let answers: Vec<Option<claims::Sort>> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or(None))
                .collect();
            answers.into_iter().collect()
        })
    };
    let claims =
        sorts.and_then(|sorts| claims::unique_sorted(&table.tenants, &hosts, &hasher, sorts));
    let n = claims.and_then(|claims| {
        let has_tenant = |id: &str| claims.has_tenant(&table.tenants, id);
        validate::with_tenants_checked(&table, hosts, &has_tenant).ok()
    });
    match n {
        Some(n) => Ok(n.with(table)),
        None => {
            table.tenants = Vec::new();
            Err(Box::new(table))
        }
    }
}

/// Decode and check the tenants of `elements` (from tenant `from` on) into `out`: each one's id
/// syntax and every check of [`validate::tenant`]; their claims go into `sort`. `false` at the
/// first problem (and `failed` set, so the other shards stop too).
fn tenants<E>(
    from: usize,
    elements: &[E],
    (out, hosts): (&mut [Tenant], &mut [Vec<HostPattern>]),
    sort: &mut claims::Sort,
    decode: &(impl Fn(&E) -> Option<Tenant> + Sync),
    upstreams: &std::collections::BTreeMap<String, crate::wire::Upstream>,
    failed: &AtomicBool,
) -> bool {
    let ctx = TenantContext {
        has_upstream: &|name| upstreams.contains_key(name),
        realm_supplied: false,
        skip: Skip::default(),
    };
    let slots = out.iter_mut().zip(hosts.iter_mut());
    for (i, (element, (slot, hosts_slot))) in elements.iter().zip(slots).enumerate() {
        if i % 256 == 0 && failed.load(Ordering::Relaxed) {
            return false;
        }
        let checked = decode(element).and_then(|t| {
            if validate::tenant_id(&t.id).is_some() {
                return None;
            }
            let (hosts, problems) = validate::tenant_and_hosts(&t, &ctx);
            problems.is_empty().then_some((t, hosts))
        });
        match checked {
            Some((t, h)) => {
                sort.tenant(from + i, &t, &h);
                *slot = t;
                *hosts_slot = h;
            }
            None => {
                failed.store(true, Ordering::Relaxed);
                return false;
            }
        }
    }
    true
}

/// The span of the top-level `"tenants"` member's array, and the span of each element in
/// it. `None` unless the document is an object with one such member, written plainly (no
/// escapes in its name), whose value is an array this scan cuts cleanly. The scan only
/// finds boundaries; every byte is then read by serde, which refuses what JSON does not
/// allow.
fn tenants_array(b: &[u8]) -> Option<(Range<usize>, Vec<Range<usize>>)> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let key_end = skip_string(b, i)?;
        let key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if key == b"tenants" {
            if found.is_some() {
                return None;
            }
            let (span, elements) = array_elements(b, i)?;
            i = span.end;
            found = Some((span, elements));
        } else {
            i = skip_value(b, i)?;
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if skip_ws(b, i + 1) != b.len() {
        return None;
    }
    found
}

/// The array starting at `start` (its span) and its elements' spans, whitespace trimmed.
fn array_elements(b: &[u8], start: usize) -> Option<(Range<usize>, Vec<Range<usize>>)> {
    if b.get(start) != Some(&b'[') {
        return None;
    }
    let mut elements = Vec::new();
    let mut i = skip_ws(b, start + 1);
    if b.get(i) == Some(&b']') {
        return Some((start..i + 1, elements));
    }
    loop {
        let end = skip_value(b, i)?;
        elements.push(i..end);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some((start..i + 1, elements)),
            _ => return None,
        }
    }
}

/// JSON's four whitespace bytes.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string starting at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The end of the value starting at `i`: a string, an object or array (to its matching
/// close, strings inside skipped), or a scalar (to the next delimiter).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_cuts_the_tenants_array_into_its_elements() {
        let doc =
            br#" {"version": 1, "x": {"tenants": [1]}, "tenants" : [ {"a":"]"} , [2,"\"]"],3 ] } "#;
        let (array, elements) = tenants_array(doc).expect("cut");
        let text = |r: &Range<usize>| std::str::from_utf8(&doc[r.clone()]).expect("utf-8");
        assert_eq!(text(&array), r#"[ {"a":"]"} , [2,"\"]"],3 ]"#);
        let parts: Vec<_> = elements.iter().map(text).collect();
        assert_eq!(parts, [r#"{"a":"]"}"#, r#"[2,"\"]"]"#, "3"]);
        for doc in [
            &br#"{"tenants": [], "tenants": []}"#[..],
            br#"{"\u0074enants": [1]}"#,
            br#"{"tenants": [1,]}"#,
            br#"{"tenants": [1] "#,
            br#"{"tenants": {}}"#,
            br#"[{"tenants": [1]}]"#,
            br#"{"tenants": [1]} x"#,
        ] {
            let cut = tenants_array(doc).filter(|(_, e)| !e.is_empty());
            assert!(cut.is_none(), "{}", String::from_utf8_lossy(doc));
        }
    }

    /// A table of `n` tenants of a few shapes (realms, keys, a shell), one pool per route.
    fn big(n: usize) -> Table {
        use crate::wire::ApiKey;
        let mut t = Table::test()
            .upstream("a", &["127.0.0.1:9001"])
            .upstream("b", &["127.0.0.1:9002"]);
        t.tenants = (0..n)
            .map(|i| {
                let tenant = Tenant::test(&format!("t{i}"))
                    .host(&format!("T{i}.Bench.test."))
                    .host(&format!("*.t{i}.apps.test"))
                    .route("/", if i % 2 == 0 { "a" } else { "b" }, "public")
                    .route("/api/", "b", "public");
                if i % 3 == 0 {
                    tenant.suspended()
                } else {
                    tenant
                }
            })
            .collect();
        t.api_keys = vec![ApiKey {
            id: "k1".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            tenant: Some("t7".into()),
            namespaces: vec!["*".into()],
            expires_at: None,
            rate_limit: None,
        }];
        t
    }

    #[test]
    fn a_large_valid_table_parses_sharded_to_what_one_pass_gives() {
        let raw = big(MIN_TENANTS + 3).to_json();
        let sharded = parse(&raw).expect("taken by the sharded parse");
        assert_eq!(Ok(sharded), crate::parse_one_pass(&raw));
        // Pretty-printed: other whitespace between the elements.
        let pretty = serde_json::to_vec_pretty(&big(MIN_TENANTS)).expect("json");
        assert_eq!(parse(&pretty).map(Ok), Some(crate::parse_one_pass(&pretty)));
    }

    #[test]
    fn any_problem_leaves_the_table_to_the_one_pass_parse_and_its_report() {
        let raw = String::from_utf8(big(MIN_TENANTS + 3).to_json()).expect("utf-8");
        let n = MIN_TENANTS;
        let broken = [
            // A tenant's own check, an unknown field, a repeated name, a host of two
            // tenants, a repeated id, an unknown pool, a syntax error late in the array, a key of
            // no tenant, a realm issuer of two tenants.
            raw.replace(&format!("\"T{n}.Bench.test.\""), "\"bad host!\""),
            raw.replace(
                &format!("\"id\":\"t{n}\""),
                &format!("\"id\":\"t{n}\",\"colour\":1"),
            ),
            raw.replace(
                &format!("\"id\":\"t{n}\""),
                &format!("\"id\":\"t{n}\",\"id\":\"t{n}\""),
            ),
            raw.replace(&format!("\"T{n}.Bench.test.\""), "\"t5.bench.test\""),
            raw.replace(&format!("\"id\":\"t{n}\""), "\"id\":\"t5\""),
            raw.replace("\"upstream\":\"b\"", "\"upstream\":\"c\""),
            raw.replace(&format!("\"id\":\"t{n}\""), &format!("\"id\":\"t{n}\",")),
            raw.replace("\"tenant\":\"t7\"", "\"tenant\":\"nobody\""),
            // One realm issuer for two tenants.
            [5, n].iter().fold(raw.clone(), |doc, t| {
                doc.replace(
                    &format!("\"id\":\"t{t}\""),
                    &format!("\"id\":\"t{t}\",\"realm\":{{\"issuer\":\"https://id.test/realms/x\",\"audiences\":[\"a\"]}}"),
                )
            }),
        ];
        for doc in broken {
            assert_ne!(doc, raw, "each case changes the table");
            assert!(parse(doc.as_bytes()).is_none());
            let problems = crate::parse(doc.as_bytes()).expect_err("refused");
            assert_eq!(Err(problems), crate::parse_one_pass(doc.as_bytes()));
        }
    }
}
