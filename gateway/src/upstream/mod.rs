//! Upstream pools, the last step: round-robin over healthy endpoints (pingora-load-balancing),
//! prebuilt peers (TLS to `https://` pools: [`tls`]), one retry on another endpoint after a
//! connect failure. The service that probes the pools runs beside the server
//! (`background.rs`).

mod probe;
pub mod tls;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::HealthObserve;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, LoadBalancer};
use probe::Probe;
use realmgate_table::Upstream;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tls::PoolTls;

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_READ_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_WRITE_TIMEOUT_MS: u64 = 60_000;
/// Pooled upstream connections idle longer than this are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(55);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One upstream pool, shared by every table snapshot that names it with the same spec, so
/// health state and pooled connections survive table swaps.
///
/// pingora-load-balancing runs discovery and the active health checks; its verdicts are
/// mirrored into one flag per endpoint (through the health-change callback), so choosing an
/// endpoint on the request path is an atomic increment and a few atomic loads — no hashing,
/// no allocation besides the boxed peer Pingora asks for.
pub struct Pool {
    pub name: Box<str>,
    spec: Upstream,
    lb: LoadBalancer<RoundRobin>,
    endpoints: Arc<[Endpoint]>,
    next: AtomicUsize,
}

struct Endpoint {
    addr: SocketAddr,
    /// Prebuilt: a request clones it instead of building one.
    peer: HttpPeer,
    healthy: AtomicBool,
}

/// Receives health flips from the health checks and mirrors them into the endpoint flags.
struct HealthMirror(Arc<[Endpoint]>);

#[async_trait]
impl HealthObserve for HealthMirror {
    async fn observe(&self, target: &Backend, healthy: bool) {
        if let Some(ep) = self.0.iter().find(|e| inet(target) == Some(e.addr)) {
            ep.healthy.store(healthy, Ordering::Relaxed);
        }
    }
}

impl Pool {
    /// `spec` has passed table validation, so every endpoint parses and all of them are
    /// `https://` or none. An https pool's `ca_file` is read here.
    fn build(name: &str, spec: &Upstream) -> Result<Pool, String> {
        let tls = PoolTls::from_spec(name, spec)?;
        let addrs = spec
            .endpoints
            .iter()
            .map(|e| {
                tls::https_addr(e)
                    .unwrap_or(e)
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("pool {name}: bad endpoint {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
        let endpoints: Arc<[Endpoint]> = addrs
            .iter()
            .map(|addr| {
                let mut peer = match &tls {
                    Some(t) => t.peer(*addr),
                    None => HttpPeer::new(*addr, false, String::new()),
                };
                let o = &mut peer.options;
                o.connection_timeout =
                    Some(ms(spec.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS));
                o.read_timeout = Some(ms(spec.read_timeout_ms, DEFAULT_READ_TIMEOUT_MS));
                o.write_timeout = Some(ms(spec.write_timeout_ms, DEFAULT_WRITE_TIMEOUT_MS));
                o.idle_timeout = Some(IDLE_TIMEOUT);
                Endpoint {
                    addr: *addr,
                    peer,
                    // Pingora's health state also starts healthy; the first probe corrects it.
                    healthy: AtomicBool::new(true),
                }
            })
            .collect();
        let mirror = Box::new(HealthMirror(Arc::clone(&endpoints)));
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())
            .map_err(|e| format!("pool {name}: {e}"))?;
        let http_path = spec
            .health_check
            .as_ref()
            .and_then(|h| h.http_path.as_deref());
        let host = tls.as_ref().map_or("localhost", PoolTls::host);
        let req = http_path.map(|p| http_request(p, host)).transpose()?;
        lb.set_health_check(Box::new(Probe::new(
            Arc::clone(&endpoints),
            req,
            PROBE_TIMEOUT,
            mirror,
        )));
        lb.parallel_health_check = true;
        Ok(Pool {
            name: name.into(),
            spec: spec.clone(),
            lb,
            endpoints,
            next: AtomicUsize::new(0),
        })
    }

    /// The next healthy endpoint in round-robin order, skipping `avoid` (the endpoint whose
    /// connect just failed). `None` when no healthy endpoint is left.
    pub fn select(&self, avoid: Option<SocketAddr>) -> Option<Box<HttpPeer>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.endpoints[start.wrapping_add(i) % n])
            .find(|ep| ep.healthy.load(Ordering::Relaxed) && avoid != Some(ep.addr))
            .map(|ep| Box::new(ep.peer.clone()))
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Endpoints currently passing their health check.
    pub fn healthy_count(&self) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.healthy.load(Ordering::Relaxed))
            .count()
    }

    /// Run the pool's health checks once (the background health checker calls this).
    pub async fn probe(&self) {
        self.lb.backends().run_health_check(true).await;
    }
}

fn inet(b: &Backend) -> Option<SocketAddr> {
    b.addr.as_inet().copied()
}

/// The health check's `GET path` with `Host: host`.
fn http_request(path: &str, host: &str) -> Result<RequestHeader, String> {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None)
        .map_err(|e| format!("health check path {path}: {e}"))?;
    req.insert_header("host", host)
        .map_err(|e| format!("health check header: {e}"))?;
    req.insert_header("user-agent", "realmgate-health-check")
        .map_err(|e| format!("health check header: {e}"))?;
    Ok(req)
}

/// Pools by name, reused across table builds while their spec is unchanged.
#[derive(Default)]
pub struct PoolCache {
    pools: Mutex<HashMap<Box<str>, Arc<Pool>>>,
}

impl PoolCache {
    /// The pools for a new table, reusing unchanged ones. Pools the table no longer names
    /// are forgotten here; snapshots still in flight keep them alive until they finish.
    pub fn resolve<'a>(
        &self,
        specs: impl Iterator<Item = (&'a String, &'a Upstream)>,
    ) -> Result<Vec<Arc<Pool>>, String> {
        let mut cache = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::new();
        let mut out = Vec::new();
        for (name, spec) in specs {
            let pool = match cache.get(name.as_str()) {
                Some(p) if p.spec == *spec => Arc::clone(p),
                _ => Arc::new(Pool::build(name, spec)?),
            };
            next.insert(Box::from(name.as_str()), Arc::clone(&pool));
            out.push(pool);
        }
        *cache = next;
        Ok(out)
    }

    /// The pool for `name` with `spec` for a table change: the cached one if its spec is the
    /// same, else a new one. The cache itself changes only in [`PoolCache::commit`], once
    /// the change has built.
    pub fn get_or_build(&self, name: &str, spec: &Upstream) -> Result<Arc<Pool>, String> {
        let cached = {
            let cache = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(name).filter(|p| p.spec == *spec).cloned()
        };
        match cached {
            Some(p) => Ok(p),
            None => Pool::build(name, spec).map(Arc::new),
        }
    }

    /// Record a built change: `upserted` pools in, `deleted` names out. O(size of the change).
    pub fn commit<'a>(
        &self,
        upserted: impl Iterator<Item = &'a Arc<Pool>>,
        deleted: impl Iterator<Item = &'a str>,
    ) {
        let mut cache = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for name in deleted {
            cache.remove(name);
        }
        for pool in upserted {
            cache.insert(pool.name.clone(), Arc::clone(pool));
        }
    }
}
