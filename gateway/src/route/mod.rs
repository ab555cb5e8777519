//! Route match, the second step: longest prefix on the normalised path, with prefixes that
//! do not end in `/` matching only at a segment boundary.

use http::HeaderValue;
use realmgate_table::path::{
    has_other_readings, namespace_segment, other_readings, prefix_matches,
};

/// Index into the snapshot's pool list.
pub type PoolIdx = u32;

/// Index into a tenant's routes (as sorted by [`Routes::new`]).
pub type RouteIdx = u32;

/// A route's compiled policy: the policies it accepts ("any of").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
pub struct Route {
    pub prefix: Box<str>,
    pub pool: PoolIdx,
    /// The policies it accepts ("any of"), and whether it forwards the verified token.
    pub policy: Policy,
    /// The namespace it belongs to; its prefix is `/<name>` or under `/<name>/`.
    pub namespace: Option<Namespace>,
}

/// A route's namespace, with its `x-realmgate-namespace` value built once.
pub struct Namespace {
    pub name: Box<str>,
    pub header: HeaderValue,
}

/// A tenant's routes, longest prefix first.
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
}
