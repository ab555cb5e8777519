//! Host → tenant, the first step of every request: normalise the Host, then exact names,
//! then the longest `*.suffix` wildcard. There is no default tenant.

use crate::errors::GatewayError;
use crate::persistent::ShardMap;
use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_http::RequestHeader;
use realmgate_table::host::{normalise_authority, HostBuf, HostPattern};
use smol_str::SmolStr;

/// The request's host, normalised into `buf`: exactly one `Host` header (or, for HTTP/2 without
/// one, the `:authority`), and an absolute-form target must name the same host.
pub fn request_host<'b>(
    req: &RequestHeader,
    buf: &'b mut HostBuf,
) -> Result<&'b str, GatewayError> {
    let mut values = req.headers.get_all(http::header::HOST).iter();
    let raw = match (values.next(), values.next()) {
        (Some(h), None) => h.as_bytes(),
        (None, _) if req.version == http::Version::HTTP_2 => req
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .ok_or(GatewayError::BadHost)?,
        _ => return Err(GatewayError::BadHost),
    };
    let host = normalise_authority(raw, buf).map_err(|_| GatewayError::BadHost)?;
    let target_authority = match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::None => req.uri.authority().map(|a| a.as_str().as_bytes()),
        RawTargetAuthority::Absolute { authority, .. } => Some(authority),
        RawTargetAuthority::AmbiguousAuthority => return Err(GatewayError::HostMismatch),
    };
    if let Some(authority) = target_authority {
        let mut other = HostBuf::default();
        match normalise_authority(authority, &mut other) {
            Ok(h) if h == host => {}
            _ => return Err(GatewayError::HostMismatch),
        }
    }
    Ok(host)
}

/// A tenant's host patterns as its snapshot entry keeps them, for a change to release them
/// from the [`HostIndex`]: one allocation, the normalised patterns as the table writes them
/// (`name`, `*.suffix`), one per line. A million tenants' lists cost a third of a
/// `Box<[HostPattern]>` each (one `String` per pattern).
pub struct HostList(Box<str>);

impl HostList {
    pub fn new(patterns: &[HostPattern]) -> HostList {
        let len = |p: &HostPattern| match p {
            HostPattern::Exact(h) => h.len() + 1,
            HostPattern::Wildcard(suffix) => suffix.len() + 3,
        };
        let mut s = String::with_capacity(patterns.iter().map(len).sum());
        for (i, p) in patterns.iter().enumerate() {
            if i > 0 {
                s.push('\n');
            }
            match p {
                HostPattern::Exact(h) => s.push_str(h),
                HostPattern::Wildcard(suffix) => {
                    s.push_str("*.");
                    s.push_str(suffix);
                }
            }
        }
        HostList(s.into_boxed_str())
    }

    /// The patterns again, as [`HostList::new`] was given them (normalised names hold no
    /// newline, and a name never starts with `*.`).
    pub fn patterns(&self) -> Vec<HostPattern> {
        if self.0.is_empty() {
            return Vec::new();
        }
        self.0
            .split('\n')
            .map(|line| match line.strip_prefix("*.") {
                Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
                None => HostPattern::Exact(line.to_owned()),
            })
            .collect()
    }

    /// Whether these are the patterns, in this order (without allocating: a change that
    /// keeps a tenant's hosts leaves the [`HostIndex`] as it is).
    pub fn is(&self, patterns: &[HostPattern]) -> bool {
        if self.0.is_empty() {
            return patterns.is_empty();
        }
        let mut lines = self.0.split('\n');
        patterns.iter().all(|p| {
            lines.next().is_some_and(|line| match p {
                HostPattern::Exact(h) => line == h,
                HostPattern::Wildcard(suffix) => line.strip_prefix("*.") == Some(suffix),
            })
        }) && lines.next().is_none()
    }

    /// The patterns, one by one.
    pub fn iter(&self) -> impl Iterator<Item = HostPattern> {
        self.patterns().into_iter()
    }
}

impl std::fmt::Debug for HostList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.patterns().fmt(f)
    }
}

/// Index into the snapshot's tenant list.
pub type TenantIdx = u32;

/// Suffix label counts tracked one by one; deeper wildcards share the last counter.
const DEPTHS: usize = 64;

/// Host index of one table snapshot, read by every request. Persistent: the next table's
/// index is this one with a tenant's patterns removed or added, copying one shard per
/// pattern ([`ShardMap`]), and a request holding this index keeps reading it unchanged.
#[derive(Clone)]
pub struct HostIndex {
    exact: ShardMap<SmolStr, TenantIdx>,
    /// Keyed by the suffix after `*.`.
    wildcard: ShardMap<SmolStr, TenantIdx>,
    /// Wildcards by the label count of their suffix: a lookup only tries the suffixes of
    /// `a.b.beta.test` that some wildcard is as long as.
    depths: [u32; DEPTHS],
}

impl Default for HostIndex {
    fn default() -> Self {
        HostIndex {
            exact: ShardMap::default(),
            wildcard: ShardMap::default(),
            depths: [0; DEPTHS],
        }
    }
}

/// A pattern claimed by a tenant while another one holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTaken {
    pub pattern: String,
    pub by: TenantIdx,
}

fn labels(name: &str) -> usize {
    (name.bytes().filter(|&b| b == b'.').count() + 1).min(DEPTHS - 1)
}

/// How many wildcards there are of each suffix depth, counted where they are made (the
/// snapshot's build, each thread its own) rather than in a pass over the finished map.
#[derive(Clone, Copy)]
pub struct Depths([u32; DEPTHS]);

impl Default for Depths {
    fn default() -> Self {
        Depths([0; DEPTHS])
    }
}

impl Depths {
    /// One more wildcard of this suffix (the part after `*.`).
    pub fn count(&mut self, suffix: &str) {
        self.0[labels(suffix)] += 1;
    }

    /// Another thread's counts added to these.
    pub fn add(&mut self, other: &Depths) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl HostIndex {
    /// Build from each tenant's validated, normalised patterns, tenant `i` at index `i`
    /// (validation guarantees no pattern appears twice; were one to, the last would win).
    pub fn build(hosts: &[Vec<HostPattern>]) -> HostIndex {
        let (mut exact, mut wild) = (0, 0);
        let mut depths = Depths::default();
        for p in hosts.iter().flatten() {
            match p {
                HostPattern::Exact(_) => exact += 1,
                HostPattern::Wildcard(s) => {
                    wild += 1;
                    depths.count(s);
                }
            }
        }
        let of_kind = |wildcard: bool| {
            hosts.iter().enumerate().flat_map(move |(t, patterns)| {
                let t = TenantIdx::try_from(t).unwrap_or(TenantIdx::MAX);
                patterns.iter().filter_map(move |p| match p {
                    HostPattern::Exact(h) if !wildcard => Some((SmolStr::new(h.as_str()), t)),
                    HostPattern::Wildcard(s) if wildcard => Some((SmolStr::new(s.as_str()), t)),
                    _ => None,
                })
            })
        };
        HostIndex {
            exact: ShardMap::build(exact, of_kind(false)),
            wildcard: ShardMap::build(wild, of_kind(true)),
            depths: depths.0,
        }
    }

    /// The index of maps built elsewhere (the snapshot's build, on several threads): exact
    /// names, and wildcards by the suffix after `*.`, each to its tenant, with `depths`
    /// counted over the same wildcards. Same rule as [`HostIndex::build`]: no pattern in
    /// both, none twice.
    pub fn from_maps(
        exact: ShardMap<SmolStr, TenantIdx>,
        wildcard: ShardMap<SmolStr, TenantIdx>,
        depths: Depths,
    ) -> HostIndex {
        HostIndex {
            exact,
            wildcard,
            depths: depths.0,
        }
    }

    fn put(&mut self, p: HostPattern, t: TenantIdx) {
        match p {
            HostPattern::Exact(h) => {
                self.exact.insert(SmolStr::new(h.as_str()), t);
            }
            HostPattern::Wildcard(s) => {
                let depth = labels(&s);
                if self.wildcard.insert(SmolStr::new(s.as_str()), t).is_none() {
                    self.depths[depth] += 1;
                }
            }
        }
    }

    /// Add `t`'s patterns. A pattern held by another tenant is refused and nothing is added
    /// (the table's rule: one tenant per pattern); held by `t` already, it stays.
    pub fn claim(&mut self, t: TenantIdx, patterns: &[HostPattern]) -> Result<(), HostTaken> {
        for p in patterns {
            if let Some(by) = self.holder(p).filter(|&by| by != t) {
                return Err(HostTaken {
                    pattern: p.to_string(),
                    by,
                });
            }
        }
        for p in patterns {
            // Held by `t` already: left alone (a put would copy its shard).
            if self.holder(p) != Some(t) {
                self.put(p.clone(), t);
            }
        }
        Ok(())
    }

    /// Remove those of `patterns` that `t` holds (a pattern another tenant holds stays).
    pub fn release(&mut self, t: TenantIdx, patterns: &[HostPattern]) {
        for p in patterns {
            if self.holder(p) != Some(t) {
                continue;
            }
            match p {
                HostPattern::Exact(h) => {
                    self.exact.remove(h.as_str());
                }
                HostPattern::Wildcard(s) => {
                    self.wildcard.remove(s.as_str());
                    self.depths[labels(s)] -= 1;
                }
            }
        }
    }

    /// The tenant holding exactly this pattern.
    pub fn holder(&self, p: &HostPattern) -> Option<TenantIdx> {
        match p {
            HostPattern::Exact(h) => self.exact.get(h.as_str()).copied(),
            HostPattern::Wildcard(s) => self.wildcard.get(s.as_str()).copied(),
        }
    }

    /// Patterns indexed (exact and wildcard).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `host` must already be normalised. An exact name costs one hash; a wildcard match
    /// one more per suffix length that some wildcard has.
    #[inline]
    pub fn lookup(&self, host: &str) -> Option<TenantIdx> {
        if let Some(&t) = self.exact.get(host) {
            return Some(t);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Longest suffix first: for a.b.beta.test try b.beta.test, then beta.test, then test.
        let mut depth = host.bytes().filter(|&b| b == b'.').count() + 1;
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            depth -= 1;
            if self.depths[depth.min(DEPTHS - 1)] == 0 {
                continue;
            }
            if let Some(&t) = self.wildcard.get(rest) {
                return Some(t);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(tenants: &[&[&str]]) -> HostIndex {
        let hosts: Vec<Vec<HostPattern>> = tenants
            .iter()
            .map(|hs| {
                hs.iter()
                    .map(|h| HostPattern::parse(h).expect("pattern"))
                    .collect()
            })
            .collect();
        HostIndex::build(&hosts)
    }

    #[test]
    fn exact_then_longest_wildcard() {
        let idx = index(&[
            &["acme.test"],
            &["beta.test", "*.beta.test"],
            &["*.deep.beta.test"],
            &["x.deep.beta.test"],
        ]);
        assert_eq!(idx.lookup("acme.test"), Some(0));
        assert_eq!(idx.lookup("beta.test"), Some(1));
        assert_eq!(idx.lookup("x.beta.test"), Some(1));
        assert_eq!(idx.lookup("a.b.beta.test"), Some(1));
        assert_eq!(idx.lookup("y.deep.beta.test"), Some(2));
        assert_eq!(idx.lookup("a.y.deep.beta.test"), Some(2));
        assert_eq!(idx.lookup("x.deep.beta.test"), Some(3));
        assert_eq!(idx.lookup("deep.beta.test"), Some(1));
    }

    fn pats(hs: &[&str]) -> Vec<HostPattern> {
        hs.iter()
            .map(|h| HostPattern::parse(h).expect("pattern"))
            .collect()
    }

    #[test]
    fn a_host_list_gives_back_its_patterns() {
        for hosts in [
            &[][..],
            &["a.test"][..],
            &["*.a.test"][..],
            &[
                "a.test",
                "*.a.test",
                "xn--bcher-kva.test",
                "*.deep.er.a.test",
            ][..],
        ] {
            let patterns = pats(hosts);
            let list = HostList::new(&patterns);
            assert_eq!(list.patterns(), patterns, "{hosts:?}");
            assert!(list.is(&patterns), "{hosts:?}");
        }
    }

    #[test]
    fn a_host_list_is_only_its_own_patterns_in_order() {
        let list = HostList::new(&pats(&["a.test", "*.a.test"]));
        for other in [
            &[][..],
            &["a.test"][..],
            &["*.a.test", "a.test"][..],
            &["a.test", "*.a.test", "b.test"][..],
            &["a.test", "a.test"][..],
            &["a.test", "*.b.test"][..],
            &["*.a.test", "*.a.test"][..],
        ] {
            assert!(!list.is(&pats(other)), "{other:?}");
        }
        assert!(HostList::new(&[]).is(&[]));
        assert!(!HostList::new(&[]).is(&pats(&["a.test"])));
    }

    #[test]
    fn claiming_what_a_tenant_holds_copies_nothing() {
        let before = index(&[&["acme.test", "*.acme.test"], &["beta.test"]]);
        let mut next = before.clone();
        next.claim(0, &pats(&["acme.test", "*.acme.test"]))
            .expect("its own");
        assert!(next.exact.same_as(&before.exact));
        assert!(next.wildcard.same_as(&before.wildcard));
        assert_eq!(next.lookup("x.acme.test"), Some(0));
    }

    #[test]
    fn claims_and_releases_leave_the_old_index_unchanged() {
        let before = index(&[&["acme.test", "*.acme.test"], &["beta.test"]]);
        let mut next = before.clone();
        // beta's host moves to a new tenant 2; acme gains a deep wildcard.
        next.release(1, &pats(&["beta.test"]));
        next.claim(2, &pats(&["beta.test", "*.x.y.z.test"]))
            .expect("free now");
        next.claim(0, &pats(&["acme.test", "*.acme.test", "*.deep.acme.test"]))
            .expect("its own patterns stay its own");
        assert_eq!(next.lookup("beta.test"), Some(2));
        assert_eq!(next.lookup("a.b.x.y.z.test"), Some(2));
        assert_eq!(next.lookup("q.deep.acme.test"), Some(0));
        assert_eq!(
            before.lookup("beta.test"),
            Some(1),
            "the old index is as it was"
        );
        assert_eq!(before.lookup("a.b.x.y.z.test"), None);
        // A pattern held by another tenant is refused, and nothing of the claim goes in.
        let taken = next
            .claim(3, &pats(&["new.test", "beta.test"]))
            .expect_err("beta.test is tenant 2's");
        assert_eq!(
            taken,
            HostTaken {
                pattern: "beta.test".into(),
                by: 2
            }
        );
        assert_eq!(next.lookup("new.test"), None);
        // Releasing what another tenant holds does nothing.
        next.release(0, &pats(&["beta.test"]));
        assert_eq!(next.lookup("beta.test"), Some(2));
        // The last wildcard of a depth gone: lookups still answer right.
        next.release(2, &pats(&["*.x.y.z.test"]));
        assert_eq!(next.lookup("a.b.x.y.z.test"), None);
        assert_eq!(next.lookup("x.acme.test"), Some(0));
        assert_eq!(next.len(), 4);
    }

    #[test]
    fn deep_hosts_and_wildcards() {
        let deep = vec!["d"; 70].join(".");
        let wild = format!("*.{deep}");
        let idx = index(&[&[wild.as_str()]]);
        assert_eq!(idx.lookup(&format!("a.b.{deep}")), Some(0));
        assert_eq!(idx.lookup(&format!("a.{deep}")), Some(0));
        assert_eq!(idx.lookup(&deep), None);
    }

    fn req(raw_target: &[u8], hosts: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", raw_target, None).expect("request");
        for h in hosts {
            r.append_header("host", *h).expect("header");
        }
        r
    }

    fn host_of(r: &RequestHeader) -> Result<String, GatewayError> {
        let mut buf = HostBuf::default();
        request_host(r, &mut buf).map(str::to_owned)
    }

    #[test]
    fn host_header_rules() {
        assert_eq!(
            host_of(&req(b"/", &["ACME.test:8080"])),
            Ok("acme.test".into())
        );
        assert_eq!(host_of(&req(b"/", &[])), Err(GatewayError::BadHost));
        assert_eq!(
            host_of(&req(b"/", &["a.test", "a.test"])),
            Err(GatewayError::BadHost)
        );
        assert_eq!(host_of(&req(b"/", &["a b"])), Err(GatewayError::BadHost));
        assert_eq!(host_of(&req(b"/", &[""])), Err(GatewayError::BadHost));
    }

    #[test]
    fn absolute_form_must_match_host() {
        assert_eq!(
            host_of(&req(b"http://Acme.test:80/x", &["acme.test"])),
            Ok("acme.test".into())
        );
        assert_eq!(
            host_of(&req(b"http://other.test/x", &["acme.test"])),
            Err(GatewayError::HostMismatch)
        );
        assert_eq!(
            host_of(&req(b"http://user@acme.test/x", &["acme.test"])),
            Err(GatewayError::HostMismatch)
        );
    }

    #[test]
    fn no_default_tenant() {
        let idx = index(&[&["acme.test"], &["*.beta.test"]]);
        for host in [
            "",
            "test",
            "other.test",
            "beta.test",
            "acme.test.evil",
            "xacme.test",
            "[::1]",
        ] {
            assert_eq!(idx.lookup(host), None, "{host:?}");
        }
        assert_eq!(HostIndex::default().lookup("acme.test"), None);
    }
}
