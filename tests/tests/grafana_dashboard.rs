//! `deploy/grafana/realmgate.json` is built on metrics the gateway really exports: every
//! metric name in its PromQL (panels and template variables) is in a real gateway's
//! `/metrics` after it has routed a few requests.

use realmgate_e2e::{eventually, Gateway, GatewayOpts, Table, Upstream};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/realmgate.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression: panel targets' `expr`, and template variables' queries.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                    _ => expressions(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, out)),
        _ => {}
    }
}

/// Text with every `open … close` span removed (not nested: PromQL's `{}`, `[]`, `""`).
fn without(s: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match (inside, c) {
            (false, c) if c == open => inside = true,
            (true, c) if c == close => inside = false,
            (false, c) => out.push(c),
            _ => {}
        }
    }
    out
}

const KEYWORDS: [&str; 12] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
];

/// The metric names an expression reads: identifiers that are not functions (followed by
/// `(`), keywords, label lists of `by (…)`, label matchers, ranges, strings or `$variables`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Grafana's `label_values(metric, label)`: the metric is its first argument.
    let expr = match expr.trim().strip_prefix("label_values(") {
        Some(args) => args.split(',').next().unwrap_or(args),
        None => expr,
    };
    let mut s = without(expr, '"', '"');
    s = without(&s, '{', '}');
    s = without(&s, '[', ']');
    for kw in ["by", "without", "on", "ignoring"] {
        while let Some(i) = find_word(&s, kw) {
            let rest = &s[i + kw.len()..];
            let Some(open) = rest.find('(') else { break };
            let close = rest[open..].find(')').map_or(rest.len(), |c| open + c + 1);
            s = format!("{} {}", &s[..i], &rest[close..]);
        }
    }
    let bytes = s.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'$' {
            while i < bytes.len()
                && (bytes[i] == b'$' || bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
            {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            let word = &s[start..i];
            let call = s[i..].trim_start().starts_with('(');
            if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word.to_owned());
            }
            continue;
        }
        i += 1;
    }
    names
}

fn find_word(s: &str, w: &str) -> Option<usize> {
    let b = s.as_bytes();
    s.match_indices(w).map(|(i, _)| i).find(|&i| {
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let j = i + w.len();
        let after = j >= b.len() || !(b[j].is_ascii_alphanumeric() || b[j] == b'_');
        before && after
    })
}

#[test]
fn the_reader_finds_metric_names_only() {
    let names = metric_names(
        r#"sum by (tenant, le) (rate(realmgate_a_total{class="5xx",tenant=~"$tenant"}[$__rate_interval])) / on (x) time() - max(realmgate_b) > bool 0.5"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["realmgate_a_total", "realmgate_b"]
    );
    let names = metric_names("label_values(realmgate_c{x=\"y\"}, tenant)");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["realmgate_c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_reads_is_exported_by_the_gateway() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "realmgate");
    let mut exprs = Vec::new();
    expressions(&dash, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    let mut wanted = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "reads no metric: {e}");
        wanted.extend(names);
    }
    // The panels the issue names.
    for name in [
        "realmgate_requests_total",
        "realmgate_request_duration_seconds_bucket",
        "realmgate_upstream_latency_seconds_bucket",
        "realmgate_table_version",
        "realmgate_upstream_endpoints",
    ] {
        assert!(wanted.contains(name), "{name} not on the dashboard");
    }

    // A real gateway, a table, a few requests (200s and a 404 for an unknown host).
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(
        &Table::new(1)
            .upstream("app", [up.addr()])
            .tenant("acme", &["acme.test"], &[("/", "app")])
            .build(),
    )
    .await;
    for _ in 0..3 {
        gw.echo("acme.test", "/").await;
    }
    gw.request("nobody.test", "/").await;
    let m = eventually(Duration::from_secs(10), "the requests counted", || async {
        let m = gw.metrics().await;
        (m.sum("realmgate_requests_total", &[("tenant", "acme")]) == Some(3.0)).then_some(m)
    })
    .await;
    let exported: BTreeSet<&str> = m.samples.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard reads metrics the gateway does not export: {missing:?}\nexported: {exported:?}"
    );
}
