//! Repeated member names in JSON objects: parsers disagree on which one wins (serde_json's
//! `Value` and maps keep the last), so a document that repeats one is refused. Both the
//! gateway's table decoder ([`crate::parse`]) and realmctl's request bodies use this one check.

use crate::Problem;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Every repeated member name in `json`, at any depth, each reported at its JSON path
/// (`tenants[0].hosts: duplicate key`), in document order. A syntax error ends the walk: the
/// duplicates found before it are returned, and the parser that follows reports the error.
pub fn duplicate_keys(json: &[u8]) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    // Errors are the caller's parser's to report; what was found until then stands.
    let _ = Walk {
        at: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Visits one value at `at`, recording duplicates below it.
struct Walk<'a> {
    at: String,
    found: &'a mut Vec<Problem>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let child = Walk {
                at: format!("{}[{i}]", self.at),
                found: &mut *self.found,
            };
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = if self.at.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.at)
            };
            if !seen.insert(key) {
                self.found.push(Problem::new(at.clone(), "duplicate key"));
            }
            map.next_value_seed(Walk {
                at,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(json: &str) -> Vec<String> {
        duplicate_keys(json.as_bytes())
            .into_iter()
            .map(|p| {
                assert_eq!(p.message, "duplicate key");
                p.at
            })
            .collect()
    }

    #[test]
    fn duplicates_are_found_at_every_depth_with_their_paths() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"a": 1, "b": 2}"#, &[]),
            (r#"{"a": 1, "a": 2}"#, &["a"]),
            (r#"{"a": 1, "a": 2, "a": 3}"#, &["a", "a"]),
            (
                r#"{"tenants": [{"id": "x"}, {"hosts": [], "hosts": ["h"]}]}"#,
                &["tenants[1].hosts"],
            ),
            (
                r#"{"upstreams": {"app": {"endpoints": []}, "app": {"endpoints": []}}}"#,
                &["upstreams.app"],
            ),
            (r#"{"x": {"y": {"z": 1, "z": 2}}, "x": 0}"#, &["x.y.z", "x"]),
            // Escapes are decoded before comparing: both spell `a`.
            (r#"{"a": 1, "\u0061": 2}"#, &["a"]),
            // Same name in sibling objects is fine.
            (r#"[{"a": 1}, {"a": 2}]"#, &[]),
            (r#"[[{"k": null, "k": true}]]"#, &["[0][0].k"]),
            (r#""just a string""#, &[]),
            (r#"{"n": -1.5e3, "t": false, "s": "x", "u": null}"#, &[]),
        ];
        for (json, want) in cases {
            assert_eq!(at(json), *want, "{json}");
        }
    }

    #[test]
    fn malformed_json_reports_what_was_found_before_the_error() {
        assert_eq!(at(r#"{"a": 1, "a": 2, "b": "#), ["a"]);
        assert!(at("{").is_empty());
        assert!(at("").is_empty());
    }
}
