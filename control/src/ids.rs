//! Identifier newtypes, parsed once at the API edge: a value of these types is always valid.

use realmgate_table::{is_name, is_tenant_id};
use serde::{Serialize, Serializer};
use std::fmt;

/// A tenant id: a DNS label (`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`). It also names the
/// tenant's realm and database, so it never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Option<TenantId> {
        is_tenant_id(raw).then(|| TenantId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upstream pool name (`^[a-z0-9][a-z0-9._-]{0,62}$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamName(String);

impl UpstreamName {
    pub fn parse(raw: &str) -> Option<UpstreamName> {
        is_name(raw).then(|| UpstreamName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(TenantId);
string_newtype!(UpstreamName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_dns_labels() {
        assert_eq!(
            TenantId::parse("acme-2").map(|t| t.to_string()),
            Some("acme-2".into())
        );
        for bad in [
            "",
            "Acme",
            "-acme",
            "acme-",
            "ac_me",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn upstream_names() {
        assert!(UpstreamName::parse("app-a.v2_x").is_some());
        for bad in ["", "-x", ".x", "App", "a/b", &"a".repeat(64)] {
            assert!(UpstreamName::parse(bad).is_none(), "{bad:?}");
        }
    }
}
