//! What an [`crate::Upstream`] saw: the parsed echo body, to assert on path and headers.

use std::collections::BTreeMap;

use serde_json::Value;

/// The echo an upstream answered with.
#[derive(Debug, Clone)]
pub struct Echo {
    pub upstream: String,
    pub method: String,
    /// The request-target exactly as the upstream received it.
    pub path: String,
    /// Lower-case header names → every value, in order.
    pub headers: BTreeMap<String, Vec<String>>,
}

impl Echo {
    /// Parses an echo body; panics when `v` is not one (e.g. a gateway error page).
    pub fn from_json(v: &Value) -> Echo {
        Echo::try_from_json(v).unwrap_or_else(|| panic!("not an upstream echo: {v}"))
    }

    pub fn try_from_json(v: &Value) -> Option<Echo> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_string);
        let mut headers = BTreeMap::new();
        for (name, values) in v.get("headers")?.as_object()? {
            let values = values
                .as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()?;
            headers.insert(name.clone(), values);
        }
        Some(Echo {
            upstream: s("upstream")?,
            method: s("method")?,
            path: s("path")?,
            headers,
        })
    }

    /// Every value of header `name` (lower-case), empty when absent.
    pub fn header_all(&self, name: &str) -> &[String] {
        self.headers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The single value of header `name`; panics when it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.header_all(name);
        assert!(
            all.len() <= 1,
            "header {name} reached the upstream {} times: {all:?}",
            all.len()
        );
        all.first().map(String::as_str)
    }
}
