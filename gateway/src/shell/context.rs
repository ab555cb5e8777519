//! The tenant context injected into the shell (JSON, escaped for a `<script>` element), the
//! per-request nonce, and the shell's Content-Security-Policy.

use base64::Engine;
use serde_json::{json, Value};

/// Where the gateway's session login (issue 3) starts and ends; in the context as they are:
/// path-absolute, so a browser resolves them against the page's own origin and they carry the
/// request's scheme (https over TLS or behind a trusted proxy) without the gateway naming it.
pub const LOGIN_URL: &str = "/.realmgate/login";
pub const LOGOUT_URL: &str = "/.realmgate/logout";

/// The signed-in user, once session login exists; `None` on public routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User<'a> {
    pub subject: &'a str,
    pub name: Option<&'a str>,
}

/// A tenant's context, pre-serialised when the table is compiled: a request only joins the
/// pieces (`head`, the active app, the user) and never runs serde.
#[derive(Debug)]
pub struct Context {
    /// `{"tenant":…,"catalog":[…],"login_url":…,"logout_url":…,"active":` — escaped.
    head: Box<str>,
    /// The `active` value per catalog index — escaped.
    active: Box<[Box<str>]>,
}

/// One catalog entry as the context shows it.
pub struct App<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub icon: Option<&'a str>,
}

impl Context {
    pub fn new(id: &str, display_name: &str, apps: &[App<'_>]) -> Context {
        let catalog: Vec<Value> = apps
            .iter()
            .map(|a| json!({"name": a.name, "path": a.path, "icon": a.icon}))
            .collect();
        let tenant = json!({"id": id, "display_name": display_name});
        let head = format!(
            "{{\"tenant\":{},\"catalog\":{},\"login_url\":{},\"logout_url\":{},\"active\":",
            script_safe(&tenant),
            script_safe(&Value::Array(catalog.clone())),
            script_safe(&json!(LOGIN_URL)),
            script_safe(&json!(LOGOUT_URL)),
        );
        let active = catalog
            .into_iter()
            .enumerate()
            .map(|(i, mut app)| {
                app["index"] = json!(i);
                script_safe(&app).into_boxed_str()
            })
            .collect();
        Context {
            head: head.into_boxed_str(),
            active,
        }
    }

    /// The whole `<script type="application/json" id="realmgate-context" nonce="…">` element.
    pub fn element(&self, nonce: &str, active: Option<u16>, user: Option<&User<'_>>) -> String {
        let active = active
            .and_then(|i| self.active.get(usize::from(i)))
            .map_or("null", |a| a);
        let user = match user {
            Some(u) => script_safe(&json!({"subject": u.subject, "name": u.name})),
            None => "null".to_string(),
        };
        let mut out = String::with_capacity(self.head.len() + active.len() + user.len() + 128);
        out.push_str(r#"<script type="application/json" id="realmgate-context" nonce=""#);
        out.push_str(nonce);
        out.push_str("\">");
        out.push_str(&self.head);
        out.push_str(active);
        out.push_str(",\"user\":");
        out.push_str(&user);
        out.push_str("}</script>");
        out
    }
}

/// JSON that can sit inside a `<script>` element: `<`, `>` and `&` become `\u003c`, `\u003e`,
/// `\u0026` (so neither `</script>` nor `<!--` can appear), and U+2028/U+2029 become escapes
/// (old JavaScript parsers end a string literal there). `JSON.parse` reads it unchanged.
pub fn script_safe(v: &Value) -> String {
    let raw = v.to_string();
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// 128 bits from the operating system's CSPRNG, base64: a CSP nonce must not be guessable.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness left: still unique, though not secret. Never seen on Linux.
        bytes = fastrand::u128(..).to_le_bytes();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The built-in shell's policy: only its own nonce'd script, its own styles, same-origin frames,
/// forms to itself (and the realm, see [`form_action`]), never framed itself.
pub fn builtin_csp(nonce: &str, form_action: &str) -> String {
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; \
         frame-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action {form_action}; frame-ancestors 'none'"
    )
}

/// `form-action` sources of the built-in shell: `'self'`, plus the realm issuer's origin — the
/// shell's Sign out form POSTs to `/.realmgate/logout`, which redirects to the realm's
/// end-session endpoint, and browsers hold that redirect to `form-action` as well.
pub fn form_action(issuer: Option<&str>) -> Box<str> {
    let realm = issuer
        .and_then(|i| url::Url::parse(i).ok())
        .map(|u| u.origin())
        .filter(url::Origin::is_tuple)
        .map(|o| o.ascii_serialization());
    match realm {
        Some(origin) => format!("'self' {origin}").into(),
        None => "'self'".into(),
    }
}

/// A tenant shell upstream's policy, added beside any policy the upstream sent (browsers enforce
/// every policy, so this one can only narrow theirs): same-origin or nonce'd scripts, never
/// framed.
pub fn upstream_csp(nonce: &str) -> String {
    format!(
        "script-src 'self' 'nonce-{nonce}'; object-src 'none'; base-uri 'self'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::new(
            "acme",
            "Acme </script><!-- \u{2028}\u{2029} & co",
            &[
                App {
                    name: "To</script>dos",
                    path: "/todos/",
                    icon: Some("lucide:check-square"),
                },
                App {
                    name: "Notes <!--",
                    path: "/notes",
                    icon: None,
                },
            ],
        )
    }

    fn json_of(element: &str) -> Value {
        let start = element.find('>').expect("open tag") + 1;
        let end = element.rfind("</script>").expect("close tag");
        serde_json::from_str(&element[start..end]).expect("valid JSON")
    }

    #[test]
    fn form_actions_allow_the_realm_origin_only() {
        // (issuer, form-action sources)
        let cases = [
            (Some("http://id.test/realms/acme"), "'self' http://id.test"),
            (
                Some("https://ID.test:8443/realms/a"),
                "'self' https://id.test:8443",
            ),
            (
                Some("https://id.test:443/realms/a"),
                "'self' https://id.test",
            ),
            (Some("not a url"), "'self'"),
            (None, "'self'"),
        ];
        for (issuer, sources) in cases {
            assert_eq!(&*form_action(issuer), sources, "{issuer:?}");
        }
    }

    #[test]
    fn values_cannot_break_out_of_the_script_element() {
        let user = User {
            subject: "u-1</SCRIPT>",
            name: Some("Eve <!-- \u{2028}"),
        };
        let el = ctx().element("bm9uY2U=", Some(0), Some(&user));
        let inner = &el[..el.len() - "</script>".len()];
        let lower = inner.to_ascii_lowercase();
        assert!(!lower.contains("</script"), "{el}");
        assert!(!inner.contains("<!--"), "{el}");
        assert_eq!(inner.matches('<').count(), 1, "only the opening tag: {el}");
        assert!(
            !inner.contains('\u{2028}') && !inner.contains('\u{2029}'),
            "{el}"
        );
        assert!(el.starts_with(
            r#"<script type="application/json" id="realmgate-context" nonce="bm9uY2U=">"#
        ));
        // JSON.parse sees the original values.
        let v = json_of(&el);
        assert_eq!(
            v["tenant"]["display_name"],
            "Acme </script><!-- \u{2028}\u{2029} & co"
        );
        assert_eq!(v["user"]["subject"], "u-1</SCRIPT>");
        assert_eq!(v["user"]["name"], "Eve <!-- \u{2028}");
        assert_eq!(v["catalog"][0]["name"], "To</script>dos");
    }

    #[test]
    fn context_fields() {
        let v = json_of(&ctx().element("n", Some(1), None));
        assert_eq!(v["tenant"]["id"], "acme");
        assert_eq!(v["user"], Value::Null);
        assert_eq!(v["login_url"], "/.realmgate/login");
        assert_eq!(v["logout_url"], "/.realmgate/logout");
        assert_eq!(v["catalog"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["catalog"][1]["icon"], Value::Null);
        assert_eq!(v["active"]["index"], 1);
        assert_eq!(v["active"]["path"], "/notes");
        let home = json_of(&ctx().element("n", None, None));
        assert_eq!(home["active"], Value::Null);
        let out_of_range = json_of(&ctx().element("n", Some(9), None));
        assert_eq!(out_of_range["active"], Value::Null);
    }

    #[test]
    fn nonces_are_fresh_and_header_safe() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')));
        assert!(builtin_csp(&a, "'self'").contains(&format!("script-src 'nonce-{a}'")));
        assert!(builtin_csp(&a, "'self'").ends_with("form-action 'self'; frame-ancestors 'none'"));
        assert!(upstream_csp(&a).contains("frame-ancestors 'none'"));
    }
}
