//! Request bodies decoded field by field, so a 422 lists every problem at once: malformed
//! JSON, repeated member names, unknown fields (nested ones too), wrong types and missing
//! fields.

use realmgate_table::{field_path, Problem};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A JSON object being taken apart. Each `take*` removes a field; [`Fields::finish`] reports
/// what is left as unknown.
pub struct Fields {
    map: Map<String, Value>,
    pub problems: Vec<Problem>,
}

impl Fields {
    /// Parse a body that must be one JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Fields, Vec<Problem>> {
        let (value, problems) = parse_json(bytes)?;
        match value {
            Value::Object(map) => Ok(Fields { map, problems }),
            other => Err(vec![Problem::new(
                "",
                format!("expected a JSON object, found {}", kind(&other)),
            )]),
        }
    }

    /// An optional field; `None` when absent or when it does not decode (a problem is noted).
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.map.remove(key)?;
        decode(value, key, &mut self.problems)
    }

    /// A required field.
    pub fn require<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.map.contains_key(key) {
            self.problems.push(Problem::new(key, "required"));
            return None;
        }
        self.take(key)
    }

    /// An optional list, decoded element by element so each bad element is reported with its
    /// index. `None` when absent or when any element is bad.
    pub fn take_list<T: DeserializeOwned>(&mut self, key: &str) -> Option<Vec<T>> {
        let value = self.map.remove(key)?;
        let Value::Array(items) = value else {
            self.problems.push(Problem::new(
                key,
                format!("expected a list, found {}", kind(&value)),
            ));
            return None;
        };
        let before = self.problems.len();
        let out: Vec<T> = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| decode(item, &format!("{key}[{i}]"), &mut self.problems))
            .collect();
        (self.problems.len() == before).then_some(out)
    }

    /// A required list.
    pub fn require_list<T: DeserializeOwned>(&mut self, key: &str) -> Option<Vec<T>> {
        if !self.map.contains_key(key) {
            self.problems.push(Problem::new(key, "required"));
            return None;
        }
        self.take_list(key)
    }

    /// Every problem found, unknown fields included.
    pub fn finish(mut self) -> Vec<Problem> {
        let mut unknown: Vec<String> = self.map.keys().cloned().collect();
        unknown.sort();
        self.problems.extend(
            unknown
                .into_iter()
                .map(|k| Problem::new(k, "unknown field")),
        );
        self.problems
    }
}

/// Parse a request body as JSON: the value, and a problem for each repeated member name (at
/// its path; the value keeps the last one, so later checks still run), or the syntax error
/// after those. Every body realmctl's API reads goes through here.
pub fn parse_json(bytes: &[u8]) -> Result<(Value, Vec<Problem>), Vec<Problem>> {
    let mut problems = realmgate_table::duplicate_keys(bytes);
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok((value, problems)),
        Err(e) => {
            problems.push(Problem::new("", format!("malformed JSON: {e}")));
            Err(problems)
        }
    }
}

/// Decode `value` as `T`, reporting unknown nested fields and type errors under `at`. A value
/// with unknown fields is still returned, so the checks that follow report their problems too.
pub fn decode<T: DeserializeOwned>(
    value: Value,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let decoded: Result<T, _> = serde_ignored::deserialize(value, |path| {
        unknown.push(Problem::new(join(at, &field_path(&path)), "unknown field"));
    });
    match decoded {
        // Unknown fields are reported, and the value still takes part in later checks.
        Ok(v) => {
            problems.append(&mut unknown);
            Some(v)
        }
        Err(e) => {
            problems.append(&mut unknown);
            problems.push(Problem::new(at, e.to_string()));
            None
        }
    }
}

/// `hosts` + `[0]` → `hosts[0]`; `routes[0]` + `auth` → `routes[0].auth`.
pub fn join(at: &str, rest: &str) -> String {
    match (at.is_empty(), rest.is_empty()) {
        (_, true) => at.to_owned(),
        (true, false) => rest.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{at}{rest}"),
        (false, false) => format!("{at}.{rest}"),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realmgate_table::Route;

    fn at(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.at.as_str()).collect()
    }

    #[test]
    fn malformed_json_and_non_objects() {
        let e = Fields::parse(b"{\"id\": ").err().expect("malformed");
        assert!(e[0].message.starts_with("malformed JSON"), "{e:?}");
        let e = Fields::parse(b"[1]").err().expect("list");
        assert_eq!(e[0].message, "expected a JSON object, found a list");
    }

    #[test]
    fn every_problem_is_reported() {
        let body = br#"{"id": 5, "hosts": "x", "extra": 1, "routes": [
            {"prefix": "/", "upstream": "a", "auth": "public", "weight": 2},
            {"prefix": 7, "upstream": "a", "auth": "public"},
            {"prefix": "/ok", "upstream": "a", "auth": "public"}]}"#;
        let mut f = Fields::parse(body).expect("object");
        assert_eq!(f.require::<String>("id"), None);
        assert_eq!(f.require_list::<String>("hosts"), None);
        assert!(f.require_list::<Route>("routes").is_none());
        assert_eq!(f.require::<String>("display_name"), None);
        let problems = f.finish();
        assert_eq!(
            at(&problems),
            [
                "id",
                "hosts",
                "routes[0].weight",
                "routes[1]",
                "display_name",
                "extra"
            ]
        );
        assert!(
            problems[1].message.contains("expected a list"),
            "{problems:?}"
        );
    }

    #[test]
    fn repeated_member_names_are_reported_with_every_other_problem() {
        let body = br#"{"id": "acme", "id": "other", "extra": 1,
            "routes": [{"prefix": "/", "prefix": "/x", "upstream": "a", "auth": "public"}],
            "rate_limits": {"per_key": {"requests": 1}, "per_key": {"requests": 9}}}"#;
        let mut f = Fields::parse(body).expect("object");
        assert_eq!(f.require::<String>("id").as_deref(), Some("other"));
        assert!(f.require_list::<Route>("routes").is_some());
        let _ = f.take::<Value>("rate_limits");
        let problems = f.finish();
        assert_eq!(
            at(&problems),
            ["id", "routes[0].prefix", "rate_limits.per_key", "extra"]
        );
        assert!(problems[..3].iter().all(|p| p.message == "duplicate key"));
        // Before a syntax error, repeats are still listed; then the error.
        let e = Fields::parse(br#"{"a": 1, "a": 2, "#)
            .err()
            .expect("malformed");
        assert_eq!(at(&e), ["a", ""]);
        assert!(e[1].message.starts_with("malformed JSON"), "{e:?}");
    }

    #[test]
    fn good_fields_decode() {
        let mut f = Fields::parse(br#"{"id": "acme", "hosts": ["a.test"]}"#).expect("object");
        assert_eq!(f.require::<String>("id").as_deref(), Some("acme"));
        assert_eq!(
            f.take_list::<String>("hosts"),
            Some(vec!["a.test".to_owned()])
        );
        assert_eq!(f.take::<String>("absent"), None);
        assert!(f.finish().is_empty());
    }

    #[test]
    fn join_paths() {
        assert_eq!(join("hosts", "[0]"), "hosts[0]");
        assert_eq!(join("routes[0]", "auth"), "routes[0].auth");
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("x", ""), "x");
    }
}
