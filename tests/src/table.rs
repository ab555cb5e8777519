//! Builders for routing-table fixtures, producing the v1 wire JSON the gateway is pushed.

use serde_json::{json, Map, Value};

/// A table under construction. Routes are `public` (the only policy of the spine).
///
/// ```
/// # use realmgate_e2e::{Pool, Table};
/// let t = Table::new(1)
///     .upstream("app-a", &["127.0.0.1:9001"])
///     .pool("slow", Pool::new(&["127.0.0.1:9002"]).read_timeout_ms(300))
///     .tenant("acme", &["acme.test"], &[("/", "app-a")])
///     .build();
/// assert_eq!(t["tenants"][0]["routes"][0]["auth"], "public");
/// ```
#[derive(Debug, Clone)]
pub struct Table {
    version: u64,
    upstreams: Map<String, Value>,
    tenants: Vec<Value>,
}

impl Table {
    pub fn new(version: u64) -> Table {
        Table {
            version,
            upstreams: Map::new(),
            tenants: Vec::new(),
        }
    }

    pub fn version(mut self, version: u64) -> Table {
        self.version = version;
        self
    }

    /// A pool with these endpoints and default settings (TCP health check).
    pub fn upstream<I, E>(self, name: &str, endpoints: I) -> Table
    where
        I: IntoIterator<Item = E>,
        E: ToString,
    {
        self.pool(name, Pool::new(endpoints))
    }

    pub fn pool(mut self, name: &str, pool: Pool) -> Table {
        self.upstreams.insert(name.to_string(), pool.build());
        self
    }

    /// A tenant with `hosts` and `routes` as `(prefix, upstream)` pairs.
    pub fn tenant(mut self, id: &str, hosts: &[&str], routes: &[(&str, &str)]) -> Table {
        let routes: Vec<Value> = routes
            .iter()
            .map(|(prefix, upstream)| json!({"prefix": prefix, "upstream": upstream, "auth": "public"}))
            .collect();
        self.tenants
            .push(json!({"id": id, "hosts": hosts, "routes": routes}));
        self
    }

    /// Set fields of the last tenant added (`display_name`, `catalog`, `shell`, …).
    pub fn with(mut self, field: &str, value: Value) -> Table {
        if let Some(Value::Object(t)) = self.tenants.last_mut() {
            t.insert(field.to_string(), value);
        }
        self
    }

    /// A tenant given as raw JSON, for fixtures the typed builder cannot express (bad ones).
    pub fn tenant_json(mut self, tenant: Value) -> Table {
        self.tenants.push(tenant);
        self
    }

    pub fn build(&self) -> Value {
        json!({
            "version": self.version,
            "upstreams": Value::Object(self.upstreams.clone()),
            "tenants": self.tenants,
        })
    }
}

impl From<Table> for Value {
    fn from(t: Table) -> Value {
        t.build()
    }
}

/// An upstream pool: endpoints plus the optional health check and timeouts.
#[derive(Debug, Clone)]
pub struct Pool {
    v: Map<String, Value>,
}

impl Pool {
    pub fn new<I, E>(endpoints: I) -> Pool
    where
        I: IntoIterator<Item = E>,
        E: ToString,
    {
        let endpoints: Vec<Value> = endpoints
            .into_iter()
            .map(|e| Value::String(e.to_string()))
            .collect();
        let mut v = Map::new();
        v.insert("endpoints".into(), Value::Array(endpoints));
        Pool { v }
    }

    /// HTTP health check on `path` instead of the default TCP connect check.
    pub fn http_check(mut self, path: &str) -> Pool {
        self.v
            .insert("health_check".into(), json!({"http_path": path}));
        self
    }

    pub fn connect_timeout_ms(mut self, ms: u64) -> Pool {
        self.v.insert("connect_timeout_ms".into(), json!(ms));
        self
    }

    pub fn read_timeout_ms(mut self, ms: u64) -> Pool {
        self.v.insert("read_timeout_ms".into(), json!(ms));
        self
    }

    pub fn write_timeout_ms(mut self, ms: u64) -> Pool {
        self.v.insert("write_timeout_ms".into(), json!(ms));
        self
    }

    pub fn build(&self) -> Value {
        Value::Object(self.v.clone())
    }
}
