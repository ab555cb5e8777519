//! Route match, the second step: longest prefix on the normalised path, with prefixes that
//! do not end in `/` matching only at a segment boundary.

/// Index into the snapshot's pool list.
pub type PoolIdx = u32;

use crate::auth::Policy;

/// One compiled route.
pub struct Route {
    pub prefix: Box<str>,
    pub pool: PoolIdx,
    pub policy: Policy,
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
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
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
