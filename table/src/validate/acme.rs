//! ACME http-01 challenge answers as they enter a table: tokens and key authorizations of the
//! base64url alphabet and bounded length (a token becomes a path segment the gateway matches
//! byte for byte), exact host names, a parseable expiry, unique tokens, a bounded count.

use super::keys::parse_expiry;
use super::{map_with_capacity, rebase, FastMap, Problem};
use crate::host::HostPattern;
use crate::wire::AcmeChallenge;

/// Most challenges in one table, and hosts per challenge. realmctl keeps one per pending
/// authorization for minutes; a thousand is far above a burst of new tenants.
pub const MAX_ACME_CHALLENGES: usize = 1000;
pub const MAX_ACME_CHALLENGE_HOSTS: usize = 100;
/// RFC 8555 §8.3: a token has at least 128 bits of entropy (22 base64url characters); the
/// lower bound here only keeps out the trivially guessable.
pub const MIN_ACME_TOKEN_LEN: usize = 16;
pub const MAX_ACME_TOKEN_LEN: usize = 256;
/// The thumbprint part of a key authorization (a SHA-256 is 43 characters).
const MAX_THUMBPRINT_LEN: usize = 256;

/// A challenge that passed validation, with what the gateway matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedChallenge {
    /// Normalised exact host names; empty: any host.
    pub hosts: Vec<String>,
    /// `expires_at` as seconds since the Unix epoch.
    pub expires_at: u64,
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` can be an ACME token: base64url without padding, 16–256 characters. The
/// gateway checks a request's path segment with this before any lookup.
pub fn is_acme_token(s: &str) -> bool {
    (MIN_ACME_TOKEN_LEN..=MAX_ACME_TOKEN_LEN).contains(&s.len()) && is_base64url(s)
}

/// Every challenge well-formed and tokens unique; returns each one's parsed hosts and expiry.
pub(super) fn check_challenges(
    challenges: &[AcmeChallenge],
    problems: &mut Vec<Problem>,
) -> Vec<CheckedChallenge> {
    if challenges.len() > MAX_ACME_CHALLENGES {
        problems.push(Problem::new(
            "acme_challenges",
            format!("more than {MAX_ACME_CHALLENGES} challenges"),
        ));
    }
    let mut tokens: FastMap<&str, usize> = map_with_capacity(challenges.len());
    let mut out = Vec::with_capacity(challenges.len());
    for (i, c) in challenges.iter().enumerate() {
        let start = problems.len();
        let checked = check_challenge(c, problems);
        if is_acme_token(&c.token) {
            if let Some(first) = tokens.insert(&c.token, i) {
                problems.push(Problem::new(
                    "token",
                    format!("token already used by acme_challenges[{first}]"),
                ));
            }
        }
        rebase(&mut problems[start..], || format!("acme_challenges[{i}]"));
        out.push(checked);
    }
    out
}

pub(super) fn check_challenge(c: &AcmeChallenge, problems: &mut Vec<Problem>) -> CheckedChallenge {
    if !is_acme_token(&c.token) {
        problems.push(Problem::new(
            "token",
            format!(
                "must be {MIN_ACME_TOKEN_LEN}-{MAX_ACME_TOKEN_LEN} characters of base64url (A-Z, a-z, 0-9, '-', '_')"
            ),
        ));
    }
    let thumbprint = c
        .key_authorization
        .strip_prefix(c.token.as_str())
        .and_then(|rest| rest.strip_prefix('.'));
    match thumbprint {
        Some(t) if !t.is_empty() && t.len() <= MAX_THUMBPRINT_LEN && is_base64url(t) => {}
        // The value itself is left out of the message: it names the ACME account.
        _ => problems.push(Problem::new(
            "key_authorization",
            format!(
                "must be the token, '.', and the account key's thumbprint (1-{MAX_THUMBPRINT_LEN} characters of base64url)"
            ),
        )),
    }
    if c.hosts.len() > MAX_ACME_CHALLENGE_HOSTS {
        problems.push(Problem::new(
            "hosts",
            format!("more than {MAX_ACME_CHALLENGE_HOSTS} hosts"),
        ));
    }
    let mut hosts = Vec::with_capacity(c.hosts.len());
    for (h, raw) in c.hosts.iter().enumerate() {
        match HostPattern::parse(raw) {
            Ok(HostPattern::Exact(host)) => hosts.push(host),
            Ok(HostPattern::Wildcard(_)) => problems.push(Problem::new(
                format!("hosts[{h}]"),
                "an http-01 challenge is for one exact host name, not a wildcard",
            )),
            Err(e) => problems.push(Problem::new(format!("hosts[{h}]"), e.to_string())),
        }
    }
    let expires_at = parse_expiry(&c.expires_at).unwrap_or_else(|| {
        problems.push(Problem::new(
            "expires_at",
            format!(
                "{:?} is not an RFC 3339 time (like 2026-03-01T00:10:00Z)",
                c.expires_at
            ),
        ));
        0
    });
    CheckedChallenge { hosts, expires_at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Table;

    const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    const THUMB: &str = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

    fn challenge(token: &str) -> AcmeChallenge {
        AcmeChallenge {
            token: token.into(),
            key_authorization: format!("{token}.{THUMB}"),
            hosts: vec!["acme.test".into()],
            expires_at: "2030-01-01T00:00:00Z".into(),
        }
    }

    fn table(challenges: Vec<AcmeChallenge>) -> Table {
        Table {
            version: 1,
            acme_challenges: challenges,
            ..Table::default()
        }
    }

    fn problems(challenges: Vec<AcmeChallenge>) -> Vec<String> {
        match crate::validate::table(&table(challenges)) {
            Ok(_) => Vec::new(),
            Err(ps) => ps
                .iter()
                .map(|p| format!("{}: {}", p.at, p.message))
                .collect(),
        }
    }

    #[test]
    fn a_well_formed_challenge_passes_with_its_hosts_and_expiry() {
        let mut c = challenge(TOKEN);
        c.hosts = vec!["ACME.test.".into(), "b.acme.test".into()];
        let n = crate::validate::table(&table(vec![c])).expect("valid");
        assert_eq!(
            n.acme_challenges,
            [CheckedChallenge {
                hosts: vec!["acme.test".into(), "b.acme.test".into()],
                expires_at: 1_893_456_000,
            }]
        );
    }

    #[test]
    fn absent_section_parses_as_empty() {
        let checked = crate::parse(br#"{"version": 3}"#).expect("an old table still parses");
        assert!(checked.table.acme_challenges.is_empty() && checked.acme_challenges.is_empty());
        let text = serde_json::to_string(&checked.table).expect("json");
        assert!(!text.contains("acme_challenges"), "{text}");
    }

    #[test]
    fn tokens_must_be_base64url_of_bounded_length() {
        for bad in [
            "",
            "short",
            "has/slash/xxxxxxxxxxxxx",
            "dots..xxxxxxxxxxxxxxxxx",
            "padded==xxxxxxxxxxxxxxx",
            "percent%2Fxxxxxxxxxxxxx",
            "space xxxxxxxxxxxxxxxxx",
            "ünïcödexxxxxxxxxxxxxxxx",
            &"a".repeat(MAX_ACME_TOKEN_LEN + 1),
        ] {
            let ps = problems(vec![challenge(bad)]);
            assert!(
                ps.iter()
                    .any(|p| p.starts_with("acme_challenges[0].token:")),
                "{bad:?}: {ps:?}"
            );
        }
        assert!(problems(vec![challenge(&"a".repeat(MAX_ACME_TOKEN_LEN))]).is_empty());
        assert!(problems(vec![challenge(&"-_".repeat(8))]).is_empty());
    }

    #[test]
    fn key_authorization_is_the_token_and_a_thumbprint() {
        for bad in [
            String::new(),
            THUMB.to_owned(),
            format!("{TOKEN}."),
            format!("{TOKEN}{THUMB}"),
            format!("other-token-xxxxxxxx.{THUMB}"),
            format!("{TOKEN}.{THUMB}.extra"),
            format!("{TOKEN}.{}", "a".repeat(257)),
            format!("{TOKEN}.with space"),
        ] {
            let mut c = challenge(TOKEN);
            c.key_authorization = bad.clone();
            let ps = problems(vec![c]);
            assert_eq!(ps.len(), 1, "{bad:?}: {ps:?}");
            assert!(ps[0].starts_with("acme_challenges[0].key_authorization:"));
            assert!(!ps[0].contains(THUMB), "the value is not echoed: {}", ps[0]);
        }
    }

    #[test]
    fn hosts_are_exact_names_bounded_in_number() {
        let mut c = challenge(TOKEN);
        c.hosts = vec!["*.acme.test".into(), "bad host".into(), "ok.test".into()];
        let ps = problems(vec![c]);
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert!(ps[0].starts_with("acme_challenges[0].hosts[0]:") && ps[0].contains("wildcard"));
        assert!(ps[1].starts_with("acme_challenges[0].hosts[1]:"));
        let mut c = challenge(TOKEN);
        c.hosts = (0..=MAX_ACME_CHALLENGE_HOSTS)
            .map(|i| format!("h{i}.test"))
            .collect();
        assert_eq!(
            problems(vec![c]),
            [format!(
                "acme_challenges[0].hosts: more than {MAX_ACME_CHALLENGE_HOSTS} hosts"
            )]
        );
        let mut c = challenge(TOKEN);
        c.hosts.clear();
        assert!(problems(vec![c]).is_empty(), "no hosts: any host");
    }

    #[test]
    fn expiry_must_parse_and_tokens_be_unique_and_count_bounded() {
        let mut c = challenge(TOKEN);
        c.expires_at = "tomorrow".into();
        let ps = problems(vec![c, challenge(TOKEN)]);
        assert_eq!(
            ps,
            [
                "acme_challenges[0].expires_at: \"tomorrow\" is not an RFC 3339 time (like 2026-03-01T00:10:00Z)",
                "acme_challenges[1].token: token already used by acme_challenges[0]",
            ]
        );
        let many = (0..=MAX_ACME_CHALLENGES)
            .map(|i| challenge(&format!("token-number-{i:06}")))
            .collect();
        assert_eq!(
            problems(many),
            [format!(
                "acme_challenges: more than {MAX_ACME_CHALLENGES} challenges"
            )]
        );
    }

    #[test]
    fn every_problem_of_every_challenge_is_reported() {
        let bad = AcmeChallenge {
            token: "x".into(),
            key_authorization: "y".into(),
            hosts: vec!["*.w.test".into()],
            expires_at: "never".into(),
        };
        let ps = problems(vec![bad.clone(), bad]);
        assert_eq!(ps.len(), 8, "{ps:?}");
    }
}
