//! Route match, the second step: longest prefix on the normalised path, with prefixes that
//! do not end in `/` matching only at a segment boundary.

use http::HeaderValue;
use realmgate_table::path::{
    has_other_readings, namespace_segment, other_readings, prefix_matches,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Index into the snapshot's pool list.
pub type PoolIdx = u32;

/// Index into a tenant's routes (as sorted by [`Routes::new`]).
pub type RouteIdx = u32;

/// A route's compiled policy: the policies it accepts ("any of").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    pub public: bool,
    pub jwt: bool,
    pub session: bool,
    pub api_key: bool,
    pub forward_token: bool,
}

impl Policy {
    /// `public` alone: gateway endpoints and the shell's static files.
    pub const PUBLIC: Policy = Policy {
        public: true,
        jwt: false,
        session: false,
        api_key: false,
        forward_token: false,
    };

    pub fn from_route(route: &realmgate_table::Route) -> Policy {
        let has = |n: &str| route.auth.names().iter().any(|x| x == n);
        Policy {
            public: has("public"),
            jwt: has("jwt"),
            session: has("session"),
            api_key: has("api_key"),
            forward_token: route.forward_token,
        }
    }

    /// Does the route verify a realm identity (a bearer JWT or a session)?
    pub fn needs_identity_check(self) -> bool {
        self.jwt || self.session
    }
}

/// One compiled route.
#[derive(Hash, PartialEq, Eq)]
pub struct Route {
    pub prefix: Box<str>,
    pub pool: PoolIdx,
    /// The policies it accepts ("any of"), and whether it forwards the verified token.
    pub policy: Policy,
    /// The namespace it belongs to; its prefix is `/<name>` or under `/<name>/`.
    pub namespace: Option<Namespace>,
}

/// A route's namespace, with its `x-realmgate-namespace` value built once.
#[derive(Hash, PartialEq, Eq)]
pub struct Namespace {
    pub name: Box<str>,
    pub header: HeaderValue,
}

/// A tenant's routes, longest prefix first. Equal when they route every path the same way
/// (same prefixes, pools, policies and namespaces, in the same order).
#[derive(Hash, PartialEq, Eq)]
pub struct Routes {
    routes: Box<[Route]>,
}

impl Routes {
    pub fn new(mut routes: Vec<Route>) -> Routes {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Routes {
            routes: routes.into_boxed_slice(),
        }
    }

    /// `path` must be normalised (see `realmgate_table::path`).
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.find_idx(path).map(|i| self.get(i))
    }

    /// Like [`Routes::find`], as an index the request CTX can keep.
    pub fn find_idx(&self, path: &str) -> Option<RouteIdx> {
        self.routes
            .iter()
            .position(|r| prefix_matches(&r.prefix, path))
            .map(|i| i as RouteIdx)
    }

    /// Would a server upstream read `path` (normalised) as another route, or another
    /// namespace, than `found`, the route the gateway matched? Then the request is refused:
    /// the route whose policy was checked must be the one every common server reaches
    /// (`realmgate_table::path::other_readings`, `docs/routing-table.md`).
    pub fn read_otherwise(&self, path: &str, found: Option<RouteIdx>) -> bool {
        if !has_other_readings(path) {
            return false;
        }
        let Ok(readings) = other_readings(path) else {
            return true;
        };
        let namespace = namespace_segment(path);
        readings
            .iter()
            .any(|r| self.find_idx(r) != found || namespace_segment(r) != namespace)
    }

    pub fn get(&self, idx: RouteIdx) -> &Route {
        &self.routes[idx as usize]
    }
}

/// Route sets shared by the tenants whose routes compile the same: many tenants of a large
/// table share a few route sets, and each holds an `Arc` to one instead of a copy. Kept
/// while a table (or a change) is built; a set shared this way is never changed, so sharing
/// it is invisible to requests.
/// Hashed with ahash: every tenant of a full table is looked up here (SipHash was half of
/// the lookup's cost).
#[derive(Default)]
pub struct RouteSets {
    sets: HashSet<Arc<Routes>, ahash::RandomState>,
}

impl RouteSets {
    /// The shared set equal to `routes` (`routes` itself the first time).
    pub fn intern(&mut self, routes: Routes) -> Arc<Routes> {
        if let Some(shared) = self.sets.get(&routes) {
            return Arc::clone(shared);
        }
        let routes = Arc::new(routes);
        self.sets.insert(Arc::clone(&routes));
        routes
    }

    /// Offer an existing set for later [`RouteSets::intern`]s to share (a changed tenant's
    /// previous routes: most changes keep them).
    pub fn offer(&mut self, routes: &Arc<Routes>) {
        if !self.sets.contains(&**routes) {
            self.sets.insert(Arc::clone(routes));
        }
    }

    /// Distinct sets held.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(prefixes: &[&str]) -> Routes {
        Routes::new(
            prefixes
                .iter()
                .enumerate()
                .map(|(i, p)| Route {
                    prefix: (*p).into(),
                    pool: i as PoolIdx,
                    policy: Policy::default(),
                    namespace: None,
                })
                .collect(),
        )
    }

    fn pool_for(r: &Routes, path: &str) -> Option<PoolIdx> {
        r.find(path).map(|r| r.pool)
    }

    #[test]
    fn longest_prefix_wins() {
        let r = routes(&["/", "/a/", "/a/b/"]);
        assert_eq!(pool_for(&r, "/"), Some(0));
        assert_eq!(pool_for(&r, "/x"), Some(0));
        assert_eq!(pool_for(&r, "/a"), Some(0));
        assert_eq!(pool_for(&r, "/a/"), Some(1));
        assert_eq!(pool_for(&r, "/a/x"), Some(1));
        assert_eq!(pool_for(&r, "/a/b/c"), Some(2));
    }

    #[test]
    fn prefixes_without_slash_match_at_segment_boundaries() {
        let r = routes(&["/", "/api"]);
        assert_eq!(pool_for(&r, "/api"), Some(1));
        assert_eq!(pool_for(&r, "/api/x"), Some(1));
        assert_eq!(pool_for(&r, "/apix"), Some(0));
        assert_eq!(pool_for(&r, "/ap"), Some(0));
    }

    #[test]
    fn no_route() {
        let r = routes(&["/a/", "/b"]);
        assert_eq!(pool_for(&r, "/"), None);
        assert_eq!(pool_for(&r, "/c"), None);
        assert_eq!(pool_for(&r, "/bb"), None);
    }

    fn route(prefix: &str, pool: PoolIdx, public: bool, ns: Option<&str>) -> Route {
        Route {
            prefix: prefix.into(),
            pool,
            policy: Policy {
                public,
                jwt: !public,
                ..Policy::default()
            },
            namespace: ns.map(|n| Namespace {
                name: n.into(),
                header: HeaderValue::from_str(n).expect("a header value"),
            }),
        }
    }

    #[test]
    fn equal_route_sets_are_shared_and_different_ones_are_not() {
        let mut sets = RouteSets::default();
        let set = |pool, public, ns| {
            Routes::new(vec![
                route("/", 0, true, None),
                route("/api/", pool, public, ns),
            ])
        };
        let a = sets.intern(set(1, true, None));
        let b = sets.intern(set(1, true, None));
        assert!(Arc::ptr_eq(&a, &b), "same routes: one shared set");
        // Any difference (pool, policy, namespace, prefix) keeps the sets apart.
        let other_pool = sets.intern(set(2, true, None));
        let other_policy = sets.intern(set(1, false, None));
        let other_ns = sets.intern(set(1, true, Some("@a")));
        let other_prefix = sets.intern(Routes::new(vec![route("/", 0, true, None)]));
        for other in [&other_pool, &other_policy, &other_ns, &other_prefix] {
            assert!(!Arc::ptr_eq(&a, other));
        }
        assert_eq!(sets.len(), 5);
        assert_eq!(pool_for(&other_pool, "/api/x"), Some(2));
        assert_eq!(pool_for(&a, "/api/x"), Some(1));
        // An offered set is shared by the next equal one.
        let mut fresh = RouteSets::default();
        fresh.offer(&a);
        assert!(Arc::ptr_eq(&fresh.intern(set(1, true, None)), &a));
    }
}
