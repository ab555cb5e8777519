//! Traffic at a glance: realmctl scrapes every gateway's Prometheus `/metrics` each
//! `gateways.traffic.scrape_interval_ms` and keeps the last hour in memory (`ring`): requests
//! per second, the 5xx share and the p95 request duration, for the fleet and per tenant,
//! summed over the gateways. `GET /v1/traffic` shows them; no external time-series database.
//!
//! The p95 comes from the gateways' `realmgate_request_duration_seconds` histogram by tenant
//! (the bucket growth of a round, summed over the gateways). A gateway
//! that does not answer leaves a gap (logged once when it starts failing, once when it is
//! back), never an error of the API.

pub mod config;
pub mod parse;
mod ring;

pub use config::TrafficSettings;

use crate::push::Pusher;
use crate::time::{now_ms, rfc3339};
use crate::tls::GatewayTrust;
use ring::{Rates, Rings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Tenants listed in the fleet's answer, most requests first.
pub const TOP_TENANTS: usize = 100;

/// How realmctl last fared with one gateway's `/metrics`.
#[derive(Debug, Clone, Default)]
struct GatewayScrape {
    last_success_ms: Option<u64>,
    last_error: Option<String>,
    consecutive_failures: u32,
}

/// The scraper's shared state: the rings and each gateway's last scrape.
pub struct Traffic {
    settings: TrafficSettings,
    rings: Mutex<Rings>,
    gateways: Mutex<BTreeMap<String, GatewayScrape>>,
}

impl Traffic {
    pub fn new(settings: TrafficSettings) -> Traffic {
        Traffic {
            rings: Mutex::new(Rings::new(settings.points(), settings.max_tenants)),
            settings,
            gateways: Mutex::new(BTreeMap::new()),
        }
    }

    /// Scrape the pusher's gateways (static and discovered) every interval, from now until
    /// the process ends. Nothing when scraping is off.
    pub fn start(
        self: &Arc<Self>,
        pusher: Arc<Pusher>,
        trust: &GatewayTrust,
    ) -> Result<(), String> {
        let Some(interval) = self.settings.interval else {
            log::info!("traffic: gateways.traffic.scrape_interval_ms is 0: not scraping");
            return Ok(());
        };
        let mut builder = reqwest::Client::builder()
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .pool_idle_timeout(interval * 3);
        if let Some(tls) = trust.client_config()? {
            builder = builder.use_preconfigured_tls(tls);
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        let traffic = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(t) = traffic.upgrade() else { return };
                let urls: Vec<String> = pusher.gateways().iter().map(|g| g.url.clone()).collect();
                t.scrape_round(&client, urls).await;
            }
        });
        Ok(())
    }

    /// Scrape every gateway at once and record the round.
    pub async fn scrape_round(&self, client: &reqwest::Client, urls: Vec<String>) {
        let max = self.settings.max_body_bytes;
        let results =
            futures_util::future::join_all(urls.iter().map(|u| scrape(client, u, max))).await;
        let now = now_ms();
        let mut round = Vec::with_capacity(urls.len());
        {
            let mut gws = self.gateways.lock().unwrap_or_else(PoisonError::into_inner);
            gws.retain(|u, _| urls.contains(u));
            for (url, result) in urls.into_iter().zip(results) {
                let g = gws.entry(url.clone()).or_default();
                match result {
                    Ok(s) => {
                        if g.consecutive_failures > 0 {
                            log::info!(
                                "traffic: {url}/metrics answers again (after {} failed scrape(s))",
                                g.consecutive_failures
                            );
                        }
                        g.last_success_ms = Some(now);
                        g.last_error = None;
                        g.consecutive_failures = 0;
                        round.push((url, Some(s)));
                    }
                    Err(e) => {
                        if g.consecutive_failures == 0 {
                            log::warn!("traffic: cannot scrape {url}/metrics: {e} (a gap in the traffic series until it answers; logged once)");
                        }
                        g.consecutive_failures = g.consecutive_failures.saturating_add(1);
                        g.last_error = Some(e);
                        round.push((url, None));
                    }
                }
            }
        }
        self.rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .round(now, round);
    }

    fn meta(&self, scope: &str) -> Value {
        let gateways: Vec<Value> = self
            .gateways
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(url, g)| {
                json!({"url": url,
                       "state": match (g.consecutive_failures, g.last_success_ms) {
                           (0, Some(_)) => "ok",
                           (0, None) => "pending",
                           _ => "failing",
                       },
                       "last_success_at": g.last_success_ms.map(rfc3339),
                       "last_error": g.last_error,
                       "consecutive_failures": g.consecutive_failures})
            })
            .collect();
        json!({
            "scope": scope,
            "step_seconds": self.settings.interval.map(|i| i.as_secs_f64()),
            "window_seconds": config::WINDOW.as_secs(),
            "gateways": gateways,
        })
    }

    /// The fleet's series, the most active tenants' newest rates, and how each gateway's
    /// scrape went.
    pub fn fleet(&self) -> Value {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let points: Vec<Value> = rings
            .fleet()
            .map(|p| {
                let mut v = point(p.t, p.rates);
                v["p95_ms"] = json!(p.p95_ms.map(|x| round(x, 100.0)));
                v["gateways"] = json!(p.gateways);
                v
            })
            .collect();
        let mut tenants = rings.tenants();
        tenants.sort_by(|a, b| {
            b.requests
                .total_cmp(&a.requests)
                .then_with(|| a.id.cmp(&b.id))
        });
        let listed: Vec<Value> = tenants
            .iter()
            .take(TOP_TENANTS)
            .map(|t| {
                json!({"id": t.id,
                       "rps": t.now.map(|r| round(r.rps, 1000.0)),
                       "error_rate": t.now.map(|r| round(r.error_rate(), 10000.0)),
                       "requests": t.requests.round()})
            })
            .collect();
        let mut v = self.meta("fleet");
        v["points"] = json!(points);
        v["tenants"] = json!(listed);
        v["tenants_tracked"] = json!(rings.tracked());
        v["tenants_dropped"] = json!(rings.dropped);
        v
    }

    /// One tenant's series (every round held; a round without it is a gap).
    pub fn tenant(&self, id: &str) -> Value {
        let series = self
            .rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tenant(id);
        let mut v = self.meta("tenant");
        v["tenant"] = json!(id);
        v["points"] = json!(series
            .into_iter()
            .map(|(t, r)| point(t, r))
            .collect::<Vec<_>>());
        v
    }
}

fn point(t: u64, r: Option<Rates>) -> Value {
    json!({"t": t,
           "rps": r.map(|r| round(r.rps, 1000.0)),
           "error_rate": r.map(|r| round(r.error_rate(), 10000.0)),
           "p95_ms": r.and_then(|r| r.p95_ms).map(|x| round(x, 100.0))})
}

fn round(x: f64, scale: f64) -> f64 {
    (x * scale).round() / scale
}

/// `GET <gateway>/metrics`, at most `max` bytes, parsed.
async fn scrape(client: &reqwest::Client, base: &str, max: usize) -> Result<parse::Scrape, String> {
    let mut resp = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| crate::error_text::root_cause(&e))?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("body over gateways.traffic.max_body_bytes ({max})"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::error_text::root_cause(&e))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("body over gateways.traffic.max_body_bytes ({max})"));
        }
        body.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(&body).map_err(|_| "body is not UTF-8".to_owned())?;
    parse::parse(text).map_err(|e| format!("unreadable metrics: {e}"))
}
