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
        at: At::Root,
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Where a value is, as a chain of borrowed steps: formatted only when a repeat is found,
/// so a walk over a large valid document allocates nothing per value.
#[derive(Clone, Copy)]
enum At<'p> {
    Root,
    Index(&'p At<'p>, usize),
    Key(&'p At<'p>, &'p str),
}

impl At<'_> {
    fn write(&self, out: &mut String) {
        match *self {
            At::Root => {}
            At::Index(parent, i) => {
                parent.write(out);
                out.push_str(&format!("[{i}]"));
            }
            At::Key(parent, key) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }

    fn path(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// Visits one value at `at`, recording duplicates below it.
struct Walk<'a, 'p> {
    at: At<'p>,
    found: &'a mut Vec<Problem>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A member name: borrowed from the document unless it has escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v))
    }
}

/// Objects with more members than this remember their names in a hash set; smaller ones
/// (nearly all) in a list scanned linearly.
const LINEAR_KEYS: usize = 16;

impl<'de> Visitor<'de> for Walk<'_, '_> {
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
                at: At::Index(&self.at, i),
                found: &mut *self.found,
            };
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            crate::pause::point();
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut few: Vec<Key<'de>> = Vec::new();
        let mut many: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let name = key.as_str();
            let repeated = if many.is_empty() && few.len() < LINEAR_KEYS {
                few.iter().any(|k| k.as_str() == name)
            } else {
                if many.is_empty() {
                    many.extend(few.drain(..).map(|k| k.as_str().to_owned()));
                }
                many.contains(name)
            };
            let at = At::Key(&self.at, name);
            if repeated {
                self.found.push(Problem::new(at.path(), "duplicate key"));
            }
            map.next_value_seed(Walk {
                at,
                found: &mut *self.found,
            })?;
            if !repeated {
                if many.is_empty() && few.len() < LINEAR_KEYS {
                    few.push(key);
                } else {
                    many.insert(name.to_owned());
                }
            }
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
