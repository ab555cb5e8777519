//! Host → tenant, the first step of every request: normalise the Host, then exact names,
//! then the longest `*.suffix` wildcard. There is no default tenant.

use crate::errors::GatewayError;
use ahash::RandomState;
use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_http::RequestHeader;
use realmgate_table::host::{normalise_authority, HostBuf, HostPattern};
use std::collections::HashMap;

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

/// Index into the snapshot's tenant list.
pub type TenantIdx = u32;

/// Host index of one table snapshot; built once per table, read by every request.
#[derive(Default)]
pub struct HostIndex {
    exact: HashMap<Box<str>, TenantIdx, RandomState>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, TenantIdx, RandomState>,
}

impl HostIndex {
    /// Build from each tenant's validated, normalised patterns (validation guarantees no
    /// pattern appears twice).
    pub fn build(hosts: Vec<Vec<HostPattern>>) -> HostIndex {
        let total: usize = hosts.iter().map(Vec::len).sum();
        let mut index = HostIndex {
            exact: HashMap::with_capacity_and_hasher(total, RandomState::new()),
            wildcard: HashMap::default(),
        };
        for (t, patterns) in hosts.into_iter().enumerate() {
            let t = TenantIdx::try_from(t).unwrap_or(TenantIdx::MAX);
            for p in patterns {
                match p {
                    HostPattern::Exact(h) => index.exact.insert(h.into_boxed_str(), t),
                    HostPattern::Wildcard(s) => index.wildcard.insert(s.into_boxed_str(), t),
                };
            }
        }
        index
    }

    /// `host` must already be normalised.
    pub fn lookup(&self, host: &str) -> Option<TenantIdx> {
        if let Some(&t) = self.exact.get(host) {
            return Some(t);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Longest suffix first: for a.b.beta.test try b.beta.test, then beta.test, then test.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
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
        HostIndex::build(hosts)
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
