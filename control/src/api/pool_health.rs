//! `GET /v1/gateways/upstreams`: each upstream pool's endpoints by health as every gateway
//! sees them, read from its admin `/metrics` (the `realmgate_upstream_endpoints` gauge).

use super::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The gauge the gateways export, labelled `upstream` and `state` (`healthy`, `unhealthy`).
pub const GAUGE: &str = "realmgate_upstream_endpoints";
/// A gateway that does not answer within this is shown with its error, not waited for.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// A metrics page larger than this is not read (its pool labels are bounded well below).
const MAX_METRICS_BYTES: usize = 4 << 20;

pub async fn list(State(s): State<AppState>) -> Response {
    let client = s.pusher.client().clone();
    let reads = s.pusher.views().into_iter().map(|g| {
        let client = client.clone();
        async move {
            match scrape(&client, &g.url).await {
                Ok(pools) => json!({"url": g.url, "pools": pools}),
                Err(e) => json!({"url": g.url, "pools": {}, "error": e}),
            }
        }
    });
    let gateways = futures_util::future::join_all(reads).await;
    Json(json!({"gateways": gateways})).into_response()
}

async fn scrape(client: &reqwest::Client, url: &str) -> Result<Map<String, Value>, String> {
    let target = format!("{}/metrics", url.trim_end_matches('/'));
    let resp = client
        .get(&target)
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            format!(
                "no answer from {target}: {}",
                crate::error_text::root_cause(&e)
            )
        })?;
    if !resp.status().is_success() {
        return Err(format!("{target} answered {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_METRICS_BYTES as u64)
    {
        return Err(format!("{target} is larger than {MAX_METRICS_BYTES} bytes"));
    }
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading {target}: {e}"))?;
    Ok(pools(&text))
}

/// `{pool: {healthy, unhealthy}}` from a Prometheus text page.
pub fn pools(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(GAUGE).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Ok(n) = value.trim().parse::<f64>() else {
            continue;
        };
        let (mut pool, mut state) = (None, None);
        for pair in labels.split(',') {
            match pair.split_once('=') {
                Some(("upstream", v)) => pool = Some(v.trim_matches('"').to_owned()),
                Some(("state", v)) => state = Some(v.trim_matches('"').to_owned()),
                _ => {}
            }
        }
        if let (Some(pool), Some(state @ ("healthy" | "unhealthy"))) = (pool, state.as_deref()) {
            let entry = out
                .entry(pool)
                .or_insert_with(|| json!({"healthy": 0, "unhealthy": 0}));
            entry[state] = json!(n as u64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_is_read_per_pool_and_state() {
        let page = "# HELP realmgate_upstream_endpoints Endpoints per pool by health\n\
            # TYPE realmgate_upstream_endpoints gauge\n\
            realmgate_upstream_endpoints{state=\"healthy\",upstream=\"app\"} 2\n\
            realmgate_upstream_endpoints{state=\"unhealthy\",upstream=\"app\"} 1\n\
            realmgate_upstream_endpoints{state=\"healthy\",upstream=\"db.1\"} 0\n\
            realmgate_upstream_endpoints_other{state=\"healthy\",upstream=\"x\"} 9\n\
            realmgate_upstream_endpoints{state=\"odd\",upstream=\"y\"} 9\n\
            realmgate_requests_total{tenant=\"a\"} 5\n";
        let p = pools(page);
        assert_eq!(p["app"], json!({"healthy": 2, "unhealthy": 1}));
        assert_eq!(p["db.1"], json!({"healthy": 0, "unhealthy": 0}));
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
