//! Reading a gateway's `/metrics` (the Prometheus text format, version 0.0.4): only the two
//! families traffic needs — requests by tenant and status class, and request durations by
//! tenant (a histogram) — are kept; every other line is skipped unread.
//!
//! A small parser rather than the `prometheus-parse` crate: that one splits label pairs on
//! `,` and `=` without regard to quoting or escapes, and brings regex, chrono and itertools
//! for two metric families.

use std::collections::HashMap;

/// `realmgate_requests_total{tenant, class}` (gateway/src/metrics.rs).
pub const REQUESTS: &str = "realmgate_requests_total";
/// `realmgate_request_duration_seconds` (a histogram by tenant: `_bucket{tenant,le}`).
pub const DURATION_BUCKET: &str = "realmgate_request_duration_seconds_bucket";
/// At most this many buckets are read per tenant (the gateway writes 14).
const MAX_BUCKETS: usize = 64;
/// The status classes of [`REQUESTS`], in the order of [`Counts`].
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// At most this many tenant series are read from one gateway (the gateway's own label budget
/// keeps far fewer); the rest of the body is still parsed for the histogram.
pub const MAX_TENANT_SERIES: usize = 100_000;

/// One tenant's request counters by status class (index as [`CLASSES`]).
pub type Counts = [f64; 5];

/// What one scrape of one gateway says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// By the `tenant` label as the gateway writes it (`""`: no tenant; `_other`: past the
    /// gateway's label budget).
    pub requests: HashMap<String, Counts>,
    /// Request durations by the same `tenant` label: `(le, cumulative count)`, sorted by
    /// `le`; the last is `+Inf`.
    pub durations: HashMap<String, Vec<(f64, f64)>>,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parse a `/metrics` body.
pub fn parse(body: &str) -> Result<Scrape, ParseError> {
    let mut out = Scrape::default();
    for (i, raw) in body.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_ascii_whitespace())
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name != REQUESTS && name != DURATION_BUCKET {
            continue;
        }
        let err = |reason: String| ParseError {
            line: i + 1,
            reason,
        };
        let (labels, rest) = labels(&line[name_end..]).map_err(err)?;
        let value = sample_value(rest).map_err(err)?;
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if name == REQUESTS {
            let (Some(tenant), Some(class)) = (label("tenant"), label("class")) else {
                return Err(err("requests without tenant and class labels".into()));
            };
            let Some(c) = CLASSES.iter().position(|k| *k == class) else {
                return Err(err(format!("unknown status class {class:?}")));
            };
            if out.requests.len() >= MAX_TENANT_SERIES && !out.requests.contains_key(tenant) {
                continue;
            }
            out.requests.entry(tenant.to_owned()).or_default()[c] = value;
        } else {
            let (Some(tenant), Some(le)) = (label("tenant"), label("le")) else {
                return Err(err("duration bucket without tenant and le labels".into()));
            };
            let le = float(le).map_err(|e| err(format!("le: {e}")))?;
            if out.durations.len() >= MAX_TENANT_SERIES && !out.durations.contains_key(tenant) {
                continue;
            }
            let buckets = out.durations.entry(tenant.to_owned()).or_default();
            if buckets.len() < MAX_BUCKETS {
                buckets.push((le, value));
            }
        }
    }
    for buckets in out.durations.values_mut() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets.dedup_by(|a, b| a.0 == b.0);
    }
    Ok(out)
}

/// A sample's label pairs, as written.
type Labels = Vec<(String, String)>;

/// `{a="x",b="y"}` (or nothing) at the start of `s`: the pairs and what follows.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((Vec::new(), s));
    };
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim();
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("bad label name {name:?}"));
        }
        let after = rest[eq + 1..].trim_start();
        let body = after.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = body[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// ` 12.5` or ` 12.5 1700000000000`: the value (a timestamp is allowed and ignored).
fn sample_value(s: &str) -> Result<f64, String> {
    let mut parts = s.split_ascii_whitespace();
    let v = parts.next().ok_or("no value")?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the value".into());
    }
    let v = float(v)?;
    if v.is_nan() || v < 0.0 {
        return Err(format!("a counter cannot be {v}"));
    }
    Ok(v)
}

fn float(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("not a number: {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"# HELP realmgate_requests_total Requests answered, by tenant and status class
# TYPE realmgate_requests_total counter
realmgate_requests_total{class="2xx",tenant="acme"} 10
realmgate_requests_total{class="5xx",tenant="acme"} 3
realmgate_requests_total{class="2xx",tenant=""} 1
realmgate_requests_total{tenant="we\"ird,=}",class="4xx"} 2
# HELP realmgate_request_duration_seconds Time from a request's head read to the end of its answer, by tenant
# TYPE realmgate_request_duration_seconds histogram
realmgate_request_duration_seconds_bucket{tenant="acme",le="0.01"} 4
realmgate_request_duration_seconds_bucket{tenant="acme",le="+Inf"} 13
realmgate_request_duration_seconds_bucket{tenant="acme",le="0.1"} 12
realmgate_request_duration_seconds_sum{tenant="acme"} 0.5
realmgate_request_duration_seconds_count{tenant="acme"} 13
realmgate_request_duration_seconds_bucket{tenant="",le="+Inf"} 1
realmgate_upstream_latency_seconds_bucket{le="0.01"} 4
realmgate_table_version 7
realmgate_upstream_endpoints{state="healthy",upstream="app"} 1
"#;

    #[test]
    fn reads_the_requests_and_the_histogram_and_skips_the_rest() {
        let s = parse(BODY).expect("parses");
        assert_eq!(s.requests["acme"], [0.0, 10.0, 0.0, 0.0, 3.0]);
        assert_eq!(s.requests[""], [0.0, 1.0, 0.0, 0.0, 0.0]);
        // Quoted commas, equals signs, braces and escaped quotes stay in the value.
        assert_eq!(s.requests["we\"ird,=}"], [0.0, 0.0, 0.0, 2.0, 0.0]);
        assert_eq!(s.requests.len(), 3);
        assert_eq!(
            s.durations["acme"],
            [(0.01, 4.0), (0.1, 12.0), (f64::INFINITY, 13.0)],
            "sorted by le"
        );
        assert_eq!(s.durations[""], [(f64::INFINITY, 1.0)]);
        assert_eq!(s.durations.len(), 2);
    }

    #[test]
    fn accepts_the_format_s_variations() {
        for line in [
            r#"realmgate_requests_total{tenant="a",class="2xx"} 5"#,
            r#"realmgate_requests_total{tenant="a",class="2xx",} 5"#,
            r#"realmgate_requests_total{ tenant = "a" , class="2xx" } 5"#,
            r#"realmgate_requests_total{tenant="a",class="2xx"} 5 1700000000000"#,
            r#"realmgate_requests_total{tenant="a",class="2xx"} 5e0"#,
            "  realmgate_requests_total{tenant=\"a\",class=\"2xx\"}\t5.0  ",
        ] {
            let s = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(s.requests["a"][1], 5.0, "{line}");
        }
        // Names that only start like ours are other metrics.
        let s = parse(r#"realmgate_requests_total_other{x="y"} 1"#).expect("parses");
        assert!(s.requests.is_empty());
        assert_eq!(parse("").expect("empty"), Scrape::default());
    }

    #[test]
    fn refuses_malformed_lines_of_its_metrics_with_the_line() {
        for (bad, why) in [
            (
                r#"realmgate_requests_total{tenant="a",class="2xx"}"#,
                "no value",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="2xx"} x"#,
                "not a number",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="2xx"} -1"#,
                "cannot be",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="2xx"} NaN"#,
                "cannot be",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="2xx"} 1 2 3"#,
                "trailing",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="2xx"} 1 soon"#,
                "timestamp",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="2xx" 1"#,
                "expected , or }",
            ),
            (r#"realmgate_requests_total{tenant="a} 1"#, "unterminated"),
            (
                r#"realmgate_requests_total{tenant=a,class="2xx"} 1"#,
                "not quoted",
            ),
            (
                r#"realmgate_requests_total{tenant="\a",class="2xx"} 1"#,
                "bad escape",
            ),
            (r#"realmgate_requests_total{9x="a"} 1"#, "bad label name"),
            (
                r#"realmgate_requests_total{tenant="a"} 1"#,
                "without tenant and class",
            ),
            (
                r#"realmgate_requests_total{tenant="a",class="6xx"} 1"#,
                "unknown status class",
            ),
            (
                r#"realmgate_request_duration_seconds_bucket{le="1"} 1"#,
                "without tenant and le",
            ),
            (
                r#"realmgate_request_duration_seconds_bucket{tenant="a",le="fast"} 1"#,
                "le: not a number",
            ),
        ] {
            let body = format!("# first\n{bad}\n");
            let e = parse(&body).expect_err(bad);
            assert_eq!(e.line, 2, "{bad}");
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
    }
}
