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

    /// A tenant with `hosts` and public `routes` as `(prefix, upstream)` pairs, built with the
    /// contract's own fixtures (`realmgate_table::Tenant::test`).
    pub fn tenant(self, id: &str, hosts: &[&str], routes: &[(&str, &str)]) -> Table {
        let mut t = realmgate_table::Tenant::test(id);
        for h in hosts {
            t = t.host(h);
        }
        for (prefix, upstream) in routes {
            t = t.route(prefix, upstream, "public");
        }
        self.typed_tenant(t)
    }

    /// A tenant built with the contract's fixtures (`Tenant::test("acme").host(..).route(..)`).
    pub fn typed_tenant(mut self, tenant: realmgate_table::Tenant) -> Table {
        self.tenants
            .push(serde_json::to_value(tenant).expect("a tenant serialises"));
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

/// An upstream pool: endpoints plus the optional health check and timeouts (the contract's
/// `Upstream`, from its fixtures).
#[derive(Debug, Clone)]
pub struct Pool {
    v: realmgate_table::Upstream,
}

impl Pool {
    pub fn new<I, E>(endpoints: I) -> Pool
    where
        I: IntoIterator<Item = E>,
        E: ToString,
    {
        let endpoints: Vec<String> = endpoints.into_iter().map(|e| e.to_string()).collect();
        let refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        Pool {
            v: realmgate_table::Upstream::test(&refs),
        }
    }

    /// HTTP health check on `path` instead of the default TCP connect check.
    pub fn http_check(mut self, path: &str) -> Pool {
        self.v.health_check = Some(realmgate_table::HealthCheck {
            http_path: Some(path.to_owned()),
        });
        self
    }

    pub fn connect_timeout_ms(mut self, ms: u64) -> Pool {
        self.v.connect_timeout_ms = Some(ms);
        self
    }

    pub fn read_timeout_ms(mut self, ms: u64) -> Pool {
        self.v.read_timeout_ms = Some(ms);
        self
    }

    pub fn write_timeout_ms(mut self, ms: u64) -> Pool {
        self.v.write_timeout_ms = Some(ms);
        self
    }

    pub fn build(&self) -> Value {
        serde_json::to_value(&self.v).expect("a pool serialises")
    }
}
