//! Why a request failed auth, as a closed set: each reason has a fixed status, a fixed
//! description (never anything from the token) and a bounded metrics label.

/// One reason a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AuthError {
    // 401 without an error code: no credential at all.
    Missing,
    // 401 invalid_token.
    TooLarge,
    Malformed,
    BadBase64,
    BadJson,
    DuplicateKey,
    AlgNotAllowed,
    AlgMismatch,
    CritHeader,
    BadTyp,
    NoKid,
    UnknownKid,
    BadSignature,
    NoExpiry,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    IdToken,
    NoSubject,
    WrongNonce,
    SessionInvalid,
    SessionExpired,
    // 400 invalid_request.
    TokenInQuery,
    TokenElsewhere,
    RepeatedAuthorization,
    // 401 without an error code: another scheme than Bearer.
    NotBearer,
    // 503: the realm cannot be reached and no key is cached.
    RealmUnavailable,
    // Login flow.
    LoginState,
    LoginFailed,
    // Logout: 403, a POST not from this origin; 405, another method than GET, HEAD or POST.
    CrossSiteLogout,
    LogoutMethod,
}

impl AuthError {
    pub const ALL: [AuthError; 32] = [
        AuthError::Missing,
        AuthError::TooLarge,
        AuthError::Malformed,
        AuthError::BadBase64,
        AuthError::BadJson,
        AuthError::DuplicateKey,
        AuthError::AlgNotAllowed,
        AuthError::AlgMismatch,
        AuthError::CritHeader,
        AuthError::BadTyp,
        AuthError::NoKid,
        AuthError::UnknownKid,
        AuthError::BadSignature,
        AuthError::NoExpiry,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::IdToken,
        AuthError::NoSubject,
        AuthError::WrongNonce,
        AuthError::SessionInvalid,
        AuthError::SessionExpired,
        AuthError::TokenInQuery,
        AuthError::TokenElsewhere,
        AuthError::RepeatedAuthorization,
        AuthError::NotBearer,
        AuthError::RealmUnavailable,
        AuthError::LoginState,
        AuthError::LoginFailed,
        AuthError::CrossSiteLogout,
        AuthError::LogoutMethod,
    ];

    pub fn status(self) -> u16 {
        match self {
            AuthError::TokenInQuery
            | AuthError::TokenElsewhere
            | AuthError::RepeatedAuthorization
            | AuthError::LoginState => 400,
            AuthError::RealmUnavailable => 503,
            AuthError::CrossSiteLogout => 403,
            AuthError::LogoutMethod => 405,
            _ => 401,
        }
    }

    /// The stable `error` code of the JSON body.
    pub fn code(self) -> &'static str {
        match self.status() {
            400 => "invalid_request",
            503 => "realm_unavailable",
            403 => "forbidden",
            405 => "method_not_allowed",
            _ => "unauthorized",
        }
    }

    /// RFC 6750 `error=` of the `WWW-Authenticate` challenge, if any.
    pub fn bearer_error(self) -> Option<&'static str> {
        match self {
            AuthError::Missing | AuthError::NotBearer | AuthError::RealmUnavailable => None,
            AuthError::SessionInvalid
            | AuthError::SessionExpired
            | AuthError::LoginState
            | AuthError::LoginFailed
            | AuthError::CrossSiteLogout
            | AuthError::LogoutMethod => None,
            e if e.status() == 400 => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }

    /// Short, fixed, safe to show: it never quotes the credential.
    pub fn description(self) -> &'static str {
        match self {
            AuthError::Missing => "authentication required",
            AuthError::TooLarge => "the token is larger than the gateway accepts",
            AuthError::Malformed => "the token is not a compact JWS (three base64url parts)",
            AuthError::BadBase64 => "a token part is not valid base64url",
            AuthError::BadJson => "the token header or claims are not the expected JSON",
            AuthError::DuplicateKey => "the token header or claims repeat a member name",
            AuthError::AlgNotAllowed => {
                "the token algorithm is not accepted (none and HS* never are)"
            }
            AuthError::AlgMismatch => "the token algorithm differs from its key's",
            AuthError::CritHeader => "the token has critical header extensions",
            AuthError::BadTyp => "the token type is not an access token",
            AuthError::NoKid => "the token names no key and the realm has several",
            AuthError::UnknownKid => "the token's key is not one of the realm's keys",
            AuthError::BadSignature => "the token signature does not verify",
            AuthError::NoExpiry => "the token has no exp claim",
            AuthError::Expired => "the token has expired",
            AuthError::NotYetValid => "the token is not valid yet",
            AuthError::WrongIssuer => "the token was issued by another realm",
            AuthError::WrongAudience => "the token is not meant for this site",
            AuthError::IdToken => "an ID token is not an access token",
            AuthError::NoSubject => "the token names no subject",
            AuthError::WrongNonce => "the ID token nonce does not match the login",
            AuthError::SessionInvalid => "the session cookie is not valid here",
            AuthError::SessionExpired => "the session has ended; log in again",
            AuthError::TokenInQuery => {
                "send the token in the Authorization header only, not in the query"
            }
            AuthError::TokenElsewhere => {
                "the request carries a different token besides the Authorization header"
            }
            AuthError::RepeatedAuthorization => "the Authorization header is repeated",
            AuthError::NotBearer => "the Authorization header is not a Bearer token",
            AuthError::RealmUnavailable => {
                "the identity realm cannot be reached; try again shortly"
            }
            AuthError::LoginState => "the login expired or was started in another browser",
            AuthError::LoginFailed => "the login did not complete",
            AuthError::CrossSiteLogout => {
                "sign out with a POST from this site's own pages: the request's Origin (or, \
                 without one, its Referer) is not this site"
            }
            AuthError::LogoutMethod => "sign out with POST (GET shows a confirmation page)",
        }
    }

    /// Metrics label: the variant in snake case.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::BadBase64 => "bad_base64",
            AuthError::BadJson => "bad_json",
            AuthError::DuplicateKey => "duplicate_key",
            AuthError::AlgNotAllowed => "alg_not_allowed",
            AuthError::AlgMismatch => "alg_mismatch",
            AuthError::CritHeader => "crit_header",
            AuthError::BadTyp => "bad_typ",
            AuthError::NoKid => "no_kid",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::BadSignature => "bad_signature",
            AuthError::NoExpiry => "no_expiry",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::IdToken => "id_token",
            AuthError::NoSubject => "no_subject",
            AuthError::WrongNonce => "wrong_nonce",
            AuthError::SessionInvalid => "session_invalid",
            AuthError::SessionExpired => "session_expired",
            AuthError::TokenInQuery => "token_in_query",
            AuthError::TokenElsewhere => "token_elsewhere",
            AuthError::RepeatedAuthorization => "repeated_authorization",
            AuthError::NotBearer => "not_bearer",
            AuthError::RealmUnavailable => "realm_unavailable",
            AuthError::LoginState => "login_state",
            AuthError::LoginFailed => "login_failed",
            AuthError::CrossSiteLogout => "cross_site_logout",
            AuthError::LogoutMethod => "logout_method",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_in_order() {
        for (i, e) in AuthError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}");
        }
        let labels: std::collections::HashSet<_> =
            AuthError::ALL.iter().map(|e| e.label()).collect();
        assert_eq!(labels.len(), AuthError::ALL.len());
    }

    #[test]
    fn descriptions_are_safe_in_a_quoted_header() {
        for e in AuthError::ALL {
            assert!(
                e.description()
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' '),
                "{e:?}"
            );
        }
    }
}
