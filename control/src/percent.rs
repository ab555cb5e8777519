//! Percent-encoding of everything but RFC 3986's unreserved characters: safe as a URL path
//! segment, a query value or a form value (the CLI's paths, Keycloak's forms and queries).

/// `acme corp/x` → `acme%20corp%2Fx`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_unreserved_characters_pass() {
        assert_eq!(super::encode("Az09-._~"), "Az09-._~");
        assert_eq!(super::encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }
}
