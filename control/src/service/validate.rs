//! Request validation: decode a body into typed input, then check it the way a gateway
//! would, with the table crate's own checks (`realmgate_table::validate::tenant`,
//! `::upstream`). The table crate stays the single source of truth for what a host, route,
//! pool or label may be.

use crate::body::Fields;
use crate::ids::{TenantId, UpstreamName};
use crate::model::{CatalogEntry, Model};
use realmgate_table::host::HostPattern;
use realmgate_table::validate::{
    self, LabelProblem, Skip, TenantContext, MAX_APP_TITLE_CHARS, MAX_DISPLAY_NAME_CHARS,
};
use realmgate_table::{
    is_name, Hsts, HttpsMode, Problem, RateLimits, Route, Shell, Tenant, TenantStatus, Upstream,
};
use std::collections::HashSet;

/// Tenant fields from a create or patch body; `None` is "not given" (or undecodable).
#[derive(Debug, Default)]
pub struct TenantInput {
    pub display_name: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub routes: Option<Vec<Route>>,
    pub catalog: Option<Vec<CatalogEntry>>,
    pub status: Option<TenantStatus>,
    pub rate_limits: Option<RateLimits>,
    /// `Some(None)`: `"shell": null`, no shell.
    pub shell: Option<Option<Shell>>,
    /// `off`, `redirect` (plain HTTP gets a 308 to https) or `only` (plain HTTP gets 403).
    pub https: Option<HttpsMode>,
    /// `Some(None)`: `"hsts": null`, no Strict-Transport-Security header.
    pub hsts: Option<Option<Hsts>>,
}

impl TenantInput {
    fn take(f: &mut Fields, required: bool) -> TenantInput {
        TenantInput {
            hosts: if required {
                f.require_list("hosts")
            } else {
                f.take_list("hosts")
            },
            routes: if required {
                f.require_list("routes")
            } else {
                f.take_list("routes")
            },
            display_name: f.take("display_name"),
            catalog: f.take_list("catalog"),
            status: f.take("status"),
            rate_limits: f.take("rate_limits"),
            shell: f.take("shell"),
            https: f.take("https"),
            hsts: f.take("hsts"),
        }
    }
}

/// `POST /v1/tenants`: the id (when valid), the fields, and every problem found so far.
pub fn decode_create(
    body: &[u8],
) -> Result<(Option<TenantId>, TenantInput, Vec<Problem>), Vec<Problem>> {
    let mut f = Fields::parse(body)?;
    let raw_id: Option<String> = f.require("id");
    let input = TenantInput::take(&mut f, true);
    let mut problems = f.finish();
    let id = raw_id.and_then(|raw| {
        let id = TenantId::parse(&raw);
        if id.is_none() {
            problems.insert(0, Problem::new("id", format!(
                "{raw:?} is not a tenant id (1-63 of a-z, 0-9, '-'; starts and ends with a letter or digit)"
            )));
        }
        id
    });
    Ok((id, input, problems))
}

/// `PATCH /v1/tenants/{id}`: the fields to change and the problems found so far.
pub fn decode_patch(body: &[u8]) -> Result<(TenantInput, Vec<Problem>), Vec<Problem>> {
    let mut f = Fields::parse(body)?;
    if f.take::<serde_json::Value>("id").is_some() {
        f.problems
            .push(Problem::new("id", "a tenant id cannot be changed"));
    }
    let input = TenantInput::take(&mut f, false);
    Ok((input, f.finish()))
}

/// What [`check_tenant`] checks: a tenant as it would enter the table (hosts, routes against
/// the pools that exist), plus the registry-only fields.
pub struct TenantCheck<'a> {
    pub hosts: Option<&'a [String]>,
    pub routes: Option<&'a [Route]>,
    pub rate_limits: RateLimits,
    pub display_name: &'a str,
    pub catalog: &'a [CatalogEntry],
    pub shell: Option<&'a Shell>,
    pub https: HttpsMode,
    pub hsts: Option<&'a Hsts>,
    /// The identity step will give the tenant a realm (issuer, keys, audiences, login
    /// client), so `jwt` and `session` routes are allowed.
    pub provisions_realm: bool,
}

/// Check a tenant; returns the normalised host patterns, in order.
pub fn check_tenant(
    model: &Model,
    t: &TenantCheck<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<HostPattern> {
    // Labels are checked here, in the API's words and at the API's paths (`title`).
    check_display_name(
        t.display_name,
        "display_name",
        MAX_DISPLAY_NAME_CHARS,
        problems,
    );
    check_catalog(t.catalog, problems);
    let tenant = Tenant {
        https: t.https,
        hsts: t.hsts.copied(),
        // The id is checked where it is decoded; a tenant alone is judged without it.
        id: String::new(),
        hosts: t.hosts.map(<[String]>::to_vec).unwrap_or_default(),
        routes: t.routes.map(<[Route]>::to_vec).unwrap_or_default(),
        status: TenantStatus::Active,
        rate_limits: t.rate_limits,
        realm: None,
        display_name: Some(t.display_name.to_owned()),
        catalog: t.catalog.iter().map(CatalogEntry::table_app).collect(),
        shell: t.shell.cloned(),
    };
    let has_upstream = |name: &str| {
        UpstreamName::parse(name).is_some_and(|name| model.upstreams.contains_key(&name))
    };
    let ctx = TenantContext {
        has_upstream: &has_upstream,
        realm_supplied: t.provisions_realm,
        // Parts that did not decode are already reported: no noise from their absence.
        skip: Skip {
            hosts: t.hosts.is_none(),
            routes: t.routes.is_none(),
            labels: true,
        },
    };
    let found = validate::tenant(&tenant, &ctx);
    if found.is_empty() {
        validate::hosts(&tenant)
    } else {
        problems.extend(found);
        Vec::new()
    }
}

/// `PUT /v1/upstreams/{name}`: the pool, checked as it would enter the table.
pub fn decode_upstream(
    raw_name: &str,
    body: &[u8],
) -> Result<(UpstreamName, Upstream), Vec<Problem>> {
    let (value, mut problems) = crate::body::parse_json(body)?;
    let name = UpstreamName::parse(raw_name);
    if name.is_none() {
        problems.push(Problem::new("name", format!(
            "{raw_name:?} is not an upstream name (1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"
        )));
    }
    let spec: Option<Upstream> = crate::body::decode(value, "", &mut problems);
    if let Some(spec) = &spec {
        problems.extend(validate::upstream(spec));
    }
    match (name, spec) {
        (Some(name), Some(spec)) if problems.is_empty() => Ok((name, spec)),
        _ => Err(problems),
    }
}

/// Whether `s` is a good label; a problem at `at` if not.
fn check_display_name(s: &str, at: &str, max: usize, problems: &mut Vec<Problem>) -> bool {
    let why = match validate::label(s, max) {
        Ok(()) => return true,
        Err(LabelProblem::Blank | LabelProblem::TooLong(_)) => {
            format!("must be 1-{max} characters, not blank")
        }
        Err(LabelProblem::Control) => "must not contain control characters".into(),
    };
    problems.push(Problem::new(at, why));
    false
}

/// The registry-only parts of catalog entries (names, titles); the count, paths and icons are
/// the table validator's.
fn check_catalog(catalog: &[CatalogEntry], problems: &mut Vec<Problem>) {
    let mut names = HashSet::new();
    for (i, entry) in catalog.iter().enumerate() {
        let at = format!("catalog[{i}]");
        if !is_name(&entry.name) {
            problems.push(Problem::new(
                format!("{at}.name"),
                format!(
                    "{:?} is not an app name (1-63 of a-z, 0-9, '.', '_', '-')",
                    entry.name
                ),
            ));
        } else if !names.insert(entry.name.as_str()) {
            problems.push(Problem::new(
                format!("{at}.name"),
                format!("{:?} listed twice", entry.name),
            ));
        }
        check_display_name(
            &entry.title,
            &format!("{at}.title"),
            MAX_APP_TITLE_CHARS,
            problems,
        );
    }
}

/// 409 when another tenant holds any of `hosts` (already normalised, so `ACME.test` and
/// `acme.test` are the same host).
pub(super) fn check_host_conflicts(
    model: &super::batch::View<'_>,
    id: &TenantId,
    hosts: &[HostPattern],
) -> Result<(), super::ServiceError> {
    let taken: Vec<serde_json::Value> = hosts
        .iter()
        .filter_map(|h| match model.host_owner(h) {
            Some(owner) if owner != id => {
                Some(serde_json::json!({"host": h.to_string(), "tenant": owner}))
            }
            _ => None,
        })
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = taken
        .iter()
        .map(|t| {
            format!(
                "{} (tenant {})",
                t["host"].as_str().unwrap_or(""),
                t["tenant"]
            )
        })
        .collect();
    Err(super::ServiceError::Conflict {
        code: "host_conflict",
        message: format!("host already held by another tenant: {}", list.join(", ")),
        details: serde_json::json!({"hosts": taken}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn model_with_app() -> Model {
        let mut m = Model::default();
        m.upstreams.insert(
            UpstreamName::parse("app").expect("name"),
            fixtures::upstream(&["127.0.0.1:9001"]),
        );
        m
    }

    fn check(
        model: &Model,
        hosts: Option<&[String]>,
        routes: Option<&[Route]>,
        rate_limits: RateLimits,
        display_name: &str,
        catalog: &[CatalogEntry],
        problems: &mut Vec<Problem>,
    ) -> Vec<HostPattern> {
        let t = TenantCheck {
            hosts,
            routes,
            rate_limits,
            display_name,
            catalog,
            shell: None,
            https: HttpsMode::Off,
            hsts: None,
            provisions_realm: false,
        };
        check_tenant(model, &t, problems)
    }

    fn ats(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.at.as_str()).collect()
    }

    #[test]
    fn good_create_decodes_and_normalises_hosts() {
        let body =
            br#"{"id": "acme", "hosts": ["ACME.test.", "*.Acme.test"], "display_name": "Acme",
            "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}"#;
        let (id, input, mut problems) = decode_create(body).expect("object");
        assert_eq!(id.map(|i| i.to_string()).as_deref(), Some("acme"));
        let hosts = check(
            &model_with_app(),
            input.hosts.as_deref(),
            input.routes.as_deref(),
            RateLimits::default(),
            "Acme",
            &[],
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["acme.test", "*.acme.test"]);
    }

    #[test]
    fn every_problem_of_a_bad_create_is_listed() {
        let body = br#"{"id": "Bad_Id", "hosts": ["ok.test", "bad host", "OK.test"],
            "routes": [{"prefix": "nope", "upstream": "missing", "auth": "public"},
                       {"prefix": "/x", "upstream": "app", "auth": "magic"}],
            "catalog": [{"name": "crm", "title": "", "path": "/a/../b"}],
            "colour": "blue"}"#;
        let (id, input, mut problems) = decode_create(body).expect("object");
        assert!(id.is_none());
        check(
            &model_with_app(),
            input.hosts.as_deref(),
            input.routes.as_deref(),
            RateLimits::default(),
            "x",
            input.catalog.as_deref().unwrap_or_default(),
            &mut problems,
        );
        let mut at = ats(&problems);
        at.sort_unstable();
        assert_eq!(
            at,
            [
                "catalog[0].path",
                "catalog[0].title",
                "colour",
                "hosts[1]",
                "hosts[2]",
                "id",
                "routes[0].prefix",
                "routes[0].upstream",
                "routes[1].auth"
            ],
            "{problems:#?}"
        );
        let unknown = problems
            .iter()
            .find(|p| p.at == "routes[0].upstream")
            .expect("upstream");
        assert!(
            unknown.message.contains("unknown upstream \"missing\""),
            "{unknown}"
        );
        let dup = problems.iter().find(|p| p.at == "hosts[2]").expect("dup");
        assert!(dup.message.contains("listed twice"), "{dup}");
    }

    #[test]
    fn missing_required_fields() {
        let (id, input, mut problems) = decode_create(b"{}").expect("object");
        assert!(id.is_none());
        check(
            &Model::default(),
            input.hosts.as_deref(),
            input.routes.as_deref(),
            RateLimits::default(),
            "x",
            &[],
            &mut problems,
        );
        assert_eq!(
            ats(&problems),
            ["id", "hosts", "routes"],
            "no noise from stand-ins"
        );
    }

    #[test]
    fn patch_rejects_id_and_bad_status() {
        let (input, problems) =
            decode_patch(br#"{"id": "other", "status": "paused", "display_name": "X"}"#)
                .expect("object");
        assert_eq!(ats(&problems), ["id", "status"]);
        assert_eq!(input.display_name.as_deref(), Some("X"));
        let (input, problems) = decode_patch(br#"{"status": "suspended"}"#).expect("object");
        assert!(problems.is_empty());
        assert_eq!(input.status, Some(TenantStatus::Suspended));
    }

    #[test]
    fn display_names() {
        let mut p = Vec::new();
        let max = MAX_DISPLAY_NAME_CHARS;
        assert!(check_display_name("Acme Ltd", "d", max, &mut p));
        assert!(check_display_name(&"é".repeat(max), "d", max, &mut p));
        assert!(p.is_empty());
        assert!(!check_display_name("", "d", max, &mut p));
        assert!(!check_display_name("   ", "d", max, &mut p));
        assert!(!check_display_name("a\nb", "d", max, &mut p));
        assert!(!check_display_name(&"x".repeat(max + 1), "d", max, &mut p));
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn upstreams_are_checked_like_the_table() {
        let (name, spec) =
            decode_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#).expect("ok");
        assert_eq!(name.as_str(), "app");
        assert_eq!(spec.endpoints, ["127.0.0.1:9001"]);
        let problems = decode_upstream(
            "Bad Name",
            br#"{"endpoints": ["localhost:80", "127.0.0.1:0"], "read_timeout_ms": 0, "x": 1}"#,
        )
        .expect_err("bad");
        let mut at = ats(&problems);
        at.sort_unstable();
        assert_eq!(
            at,
            [
                "endpoints[0]",
                "endpoints[1]",
                "name",
                "read_timeout_ms",
                "x"
            ],
            "{problems:#?}"
        );
        let problems = decode_upstream("app", b"{\"endpoints\": [").expect_err("malformed");
        assert!(problems[0].message.starts_with("malformed JSON"));
    }

    #[test]
    fn jwt_and_session_routes_need_the_realm_that_provisioning_gives() {
        let routes = |auth: &str| -> Vec<Route> {
            serde_json::from_value(serde_json::json!(
                [{"prefix": "/", "upstream": "app", "auth": auth}]))
            .expect("routes")
        };
        let hosts = vec!["acme.test".to_owned()];
        let run = |auth: &str, provisions_realm: bool| {
            let routes = routes(auth);
            let t = TenantCheck {
                hosts: Some(&hosts),
                routes: Some(&routes),
                rate_limits: RateLimits::default(),
                display_name: "Acme",
                catalog: &[],
                shell: None,
                https: HttpsMode::Off,
                hsts: None,
                provisions_realm,
            };
            let mut problems = Vec::new();
            check_tenant(&model_with_app(), &t, &mut problems);
            problems
        };
        assert!(run("public", false).is_empty());
        assert!(run("jwt", true).is_empty(), "{:?}", run("jwt", true));
        let no_realm = run("jwt", false);
        assert_eq!(ats(&no_realm), ["routes[0].auth"], "{no_realm:?}");
        assert!(
            run("session", true).is_empty(),
            "{:?}",
            run("session", true)
        );
        let no_realm = run("session", false);
        assert_eq!(ats(&no_realm), ["routes[0].auth"], "{no_realm:?}");
    }
}
