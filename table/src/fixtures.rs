//! Table fixtures for tests, here and in the crates that import the contract (feature
//! `test-util`): `Table::test().upstream("app", &["127.0.0.1:9001"])
//! .tenant(Tenant::test("acme").host("acme.test").route("/", "app", "public"))`.

use crate::wire::{
    ApiKey, AuthSpec, CatalogApp, RateLimits, Realm, Route, Shell, Table, Tenant, TenantStatus,
    Upstream,
};

impl Table {
    /// The scale benches' table: pools `pool-0` … `pool-3` and `n` tenants of the shape of
    /// [`Tenant::bench`].
    pub fn bench(n: usize) -> Table {
        let mut table = Table::test();
        for p in 0..4 {
            table = table.upstream(&format!("pool-{p}"), &[&format!("127.0.0.1:{}", 9000 + p)]);
        }
        table.tenants = (0..n).map(Tenant::bench).collect();
        table
    }

    /// An empty table at version 1.
    pub fn test() -> Table {
        Table {
            version: 1,
            upstreams: Default::default(),
            ..Table::default()
        }
    }

    pub fn version(mut self, version: u64) -> Table {
        self.version = version;
        self
    }

    /// A pool of these endpoints, no health check, default timeouts.
    pub fn upstream(mut self, name: &str, endpoints: &[&str]) -> Table {
        self.upstreams
            .insert(name.to_owned(), Upstream::test(endpoints));
        self
    }

    pub fn tenant(mut self, tenant: Tenant) -> Table {
        self.tenants.push(tenant);
        self
    }

    pub fn key(mut self, key: ApiKey) -> Table {
        self.api_keys.push(key);
        self
    }

    /// The table as the JSON a gateway is sent.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a table serialises")
    }
}

impl Upstream {
    pub fn test(endpoints: &[&str]) -> Upstream {
        Upstream {
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            health_check: None,
            connect_timeout_ms: None,
            ..Upstream::default()
        }
    }
}

impl Tenant {
    /// Tenant `t` of the scale benches: `t{t}.bench.test`, the wildcard `*.t{t}.apps.test`,
    /// and two public routes on two of the four bench pools.
    pub fn bench(t: usize) -> Tenant {
        Tenant::test(&format!("t{t}"))
            .host(&format!("t{t}.bench.test"))
            .host(&format!("*.t{t}.apps.test"))
            .route("/", &format!("pool-{}", t % 4), "public")
            .route("/api/", &format!("pool-{}", (t + 1) % 4), "public")
    }

    /// An active tenant with this id and nothing else: no hosts, no routes yet.
    pub fn test(id: &str) -> Tenant {
        Tenant {
            id: id.to_owned(),
            hosts: Vec::new(),
            routes: Vec::new(),
            status: TenantStatus::Active,
            rate_limits: Default::default(),
            realm: None,
            display_name: None,
            ..Tenant::default()
        }
    }

    pub fn host(mut self, host: &str) -> Tenant {
        self.hosts.push(host.to_owned());
        self
    }

    /// A route to `upstream` under one policy (`"public"`, `"jwt"`…).
    pub fn route(mut self, prefix: &str, upstream: &str, auth: &str) -> Tenant {
        self.routes.push(Route {
            prefix: prefix.to_owned(),
            upstream: upstream.to_owned(),
            auth: AuthSpec::One(auth.to_owned()),
            namespace: None,
            forward_token: false,
        });
        self
    }

    /// A route that admits any of several policies (`["public", "api_key"]`).
    pub fn route_any(mut self, prefix: &str, upstream: &str, auth: &[&str]) -> Tenant {
        self = self.route(prefix, upstream, "public");
        if let Some(route) = self.routes.last_mut() {
            route.auth = AuthSpec::AnyOf(auth.iter().map(|a| (*a).to_owned()).collect());
        }
        self
    }

    /// A route in a namespace (`/@acme/...` with `"@acme"`).
    pub fn ns_route(mut self, prefix: &str, upstream: &str, auth: &str, ns: &str) -> Tenant {
        self = self.route(prefix, upstream, auth);
        if let Some(route) = self.routes.last_mut() {
            route.namespace = Some(ns.to_owned());
        }
        self
    }

    /// A realm at `issuer` with one audience (`<id>-api`) and the login client `realmgate`.
    pub fn realm(mut self, issuer: &str) -> Tenant {
        self.realm = Some(Realm {
            issuer: issuer.to_owned(),
            jwks_uri: None,
            audiences: vec![format!("{}-api", self.id)],
            client_id: Some("realmgate".into()),
            client_secret: None,
        });
        self
    }

    pub fn limits(mut self, limits: RateLimits) -> Tenant {
        self.rate_limits = limits;
        self
    }

    /// The shell from `upstream` (`None`: the built-in one), never on paths under `excludes`.
    pub fn shell_from(mut self, upstream: Option<&str>, excludes: &[&str]) -> Tenant {
        self.shell = Some(Shell {
            enabled: true,
            upstream: upstream.map(str::to_owned),
            excludes: excludes.iter().map(|e| (*e).to_owned()).collect(),
        });
        self
    }

    pub fn suspended(mut self) -> Tenant {
        self.status = TenantStatus::Suspended;
        self
    }

    pub fn display_name(mut self, name: &str) -> Tenant {
        self.display_name = Some(name.to_owned());
        self
    }

    /// A catalog app without an icon.
    pub fn app(mut self, title: &str, path: &str) -> Tenant {
        self.catalog.push(CatalogApp {
            title: title.to_owned(),
            path: path.to_owned(),
            icon: None,
        });
        self
    }

    /// The built-in shell, enabled.
    pub fn shell(mut self) -> Tenant {
        self.shell = Some(Shell {
            enabled: true,
            upstream: None,
            excludes: Vec::new(),
        });
        self
    }
}

impl ApiKey {
    /// A key of `tenant` (or an operator key) for these namespaces, with a digest made from
    /// its id so keys in one table differ.
    pub fn test(id: &str, tenant: Option<&str>, namespaces: &[&str]) -> ApiKey {
        use sha2::{Digest, Sha256};
        ApiKey {
            id: id.to_owned(),
            digest: format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes()))),
            tenant: tenant.map(str::to_owned),
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            expires_at: None,
            rate_limit: None,
        }
    }
}
