//! The assertion section: an issuer, and a few P-256 keys of which exactly one signs.

use super::Problem;
use crate::assertion::{
    is_kid, signing_key, Assertion, KeyState, ALG, MAX_ISSUER_CHARS, MAX_KEYS, MAX_KID_LEN,
};

/// Every problem with the section, at paths under `assertion`.
pub(super) fn check_assertion(a: &Assertion, problems: &mut Vec<Problem>) {
    let chars = a.issuer.chars().count();
    if chars == 0 || chars > MAX_ISSUER_CHARS || a.issuer.chars().any(char::is_control) {
        problems.push(Problem::new(
            "assertion.issuer",
            format!("must be 1-{MAX_ISSUER_CHARS} characters without control characters"),
        ));
    }
    if a.keys.is_empty() || a.keys.len() > MAX_KEYS {
        problems.push(Problem::new(
            "assertion.keys",
            format!("needs 1 to {MAX_KEYS} keys"),
        ));
    }
    let active = a
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Active)
        .count();
    if !a.keys.is_empty() && active != 1 {
        problems.push(Problem::new(
            "assertion.keys",
            format!("exactly one key is active (signs), found {active}"),
        ));
    }
    for (i, key) in a.keys.iter().enumerate().take(MAX_KEYS) {
        let at = |field: &str| format!("assertion.keys[{i}].{field}");
        if !is_kid(&key.kid) {
            problems.push(Problem::new(
                at("kid"),
                format!("must be 1-{MAX_KID_LEN} of A-Z, a-z, 0-9, '.', '_', '-'"),
            ));
        } else if a.keys[..i].iter().any(|k| k.kid == key.kid) {
            problems.push(Problem::new(
                at("kid"),
                format!("{:?} listed twice", key.kid),
            ));
        }
        if key.alg != ALG {
            problems.push(Problem::new(at("alg"), format!("only {ALG} is supported")));
        }
        if let Err(e) = signing_key(&key.private_key_pem) {
            problems.push(Problem::new(at("private_key_pem"), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertion::{key_pem_from_bytes, AssertionKey};

    fn key(kid: &str, seed: u8, state: KeyState) -> AssertionKey {
        AssertionKey {
            kid: kid.into(),
            alg: ALG.into(),
            private_key_pem: key_pem_from_bytes(&[seed; 32]).expect("scalar"),
            state,
        }
    }

    fn check(a: &Assertion) -> Vec<String> {
        let mut p = Vec::new();
        check_assertion(a, &mut p);
        p.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_section_passes() {
        let a = Assertion {
            issuer: "realmgate".into(),
            keys: vec![
                key("a", 1, KeyState::Active),
                key("b", 2, KeyState::Published),
            ],
        };
        assert_eq!(check(&a), Vec::<String>::new());
    }

    #[test]
    fn each_bad_input_is_reported_at_its_path() {
        let rsa = include_str!("../test_rsa_key.pem");
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let good = || key("k", 1, KeyState::Active);
        let with = |f: &dyn Fn(&mut Assertion)| {
            let mut a = Assertion {
                issuer: "realmgate".into(),
                keys: vec![good()],
            };
            f(&mut a);
            check(&a)
        };
        let cases: Vec<(&str, Vec<String>, &str)> = vec![
            (
                "empty issuer",
                with(&|a| a.issuer.clear()),
                "assertion.issuer",
            ),
            (
                "long issuer",
                with(&|a| a.issuer = "i".repeat(257)),
                "assertion.issuer",
            ),
            (
                "control char",
                with(&|a| a.issuer = "a\nb".into()),
                "assertion.issuer",
            ),
            (
                "no keys",
                with(&|a| a.keys.clear()),
                "assertion.keys: needs",
            ),
            (
                "too many",
                with(&|a| {
                    a.keys = (0..9u8)
                        .map(|i| key(&format!("k{i}"), i + 1, KeyState::Published))
                        .collect();
                    a.keys[0].state = KeyState::Active;
                }),
                "assertion.keys: needs",
            ),
            (
                "none active",
                with(&|a| a.keys[0].state = KeyState::Published),
                "exactly one",
            ),
            (
                "two active",
                with(&|a| a.keys.push(key("j", 2, KeyState::Active))),
                "exactly one",
            ),
            (
                "bad kid",
                with(&|a| a.keys[0].kid = "a b".into()),
                "keys[0].kid",
            ),
            (
                "long kid",
                with(&|a| a.keys[0].kid = "k".repeat(65)),
                "keys[0].kid",
            ),
            (
                "repeated kid",
                with(&|a| a.keys.push(key("k", 2, KeyState::Published))),
                "keys[1].kid",
            ),
            (
                "alg",
                with(&|a| a.keys[0].alg = "RS256".into()),
                "keys[0].alg",
            ),
            (
                "not pem",
                with(&|a| a.keys[0].private_key_pem = "nope".into()),
                "keys[0].private_key_pem",
            ),
            (
                "rsa key",
                with(&|a| a.keys[0].private_key_pem = rsa.into()),
                "keys[0].private_key_pem",
            ),
            (
                "bad sec1",
                with(&|a| a.keys[0].private_key_pem = sec1.into()),
                "keys[0].private_key_pem",
            ),
            (
                "huge pem",
                with(&|a| a.keys[0].private_key_pem = "A".repeat(5000)),
                "keys[0].private_key_pem",
            ),
        ];
        for (name, problems, needle) in cases {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{name}: {problems:?}"
            );
            assert!(
                problems.iter().all(|p| !p.contains("BEGIN")),
                "{name}: a problem quotes the key: {problems:?}"
            );
        }
    }

    #[test]
    fn old_tables_parse_and_the_section_round_trips() {
        let old = br#"{"version":1}"#;
        assert!(crate::parse(old).expect("valid").table.assertion.is_none());
        let a = Assertion {
            issuer: "realmgate".into(),
            keys: vec![key("a", 1, KeyState::Active)],
        };
        let table = crate::Table {
            version: 2,
            assertion: Some(a),
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&table).expect("json");
        assert_eq!(crate::parse(&bytes).expect("valid").table, table);
        let bad = br#"{"version":1,"assertion":{"issuer":"x","keys":[],"extra":1}}"#;
        let problems = crate::parse(bad).expect_err("refused");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|p| p.contains("assertion.extra")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.contains("assertion.keys")),
            "{text:?}"
        );
    }
}
