//! `/v1/openapi.json`: the OpenAPI 3.1 document of the API, written by hand next to the
//! routers it describes (a unit test checks that every route is in it).

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub async fn document() -> Response {
    Json(spec()).into_response()
}

fn error(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn body(schema: &str) -> Value {
    json!({"required": true,
           "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

pub fn spec() -> Value {
    let unauthorized = error("Missing or wrong bearer token");
    let invalid = error("Malformed JSON or invalid fields; `problems` lists every one");
    let too_large = error("Body larger than `max_body_bytes` (1 MiB by default)");
    let not_found = error("No such tenant or upstream");
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let name =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    let if_match = json!({"name": "If-Match", "in": "header", "required": false,
        "description": "A tenant revision (`\"3\"`): the change applies only if it is still current",
        "schema": {"type": "string"}});
    let mut doc = json!({
      "openapi": "3.1.0",
      "info": {"title": "realmctl API", "version": env!("CARGO_PKG_VERSION"),
               "description": "Realmgate's control plane: tenants, upstream pools, the compiled routing table and its push to every gateway. Every change yields the next table version."},
      "security": [{"bearer": []}],
      "paths": {
        "/v1/tenants": {
          "get": {"summary": "List tenants",
                  "responses": {"200": ok("A page of tenants", "TenantPage"), "401": unauthorized}},
          "post": {"summary": "Create a tenant", "requestBody": body("TenantCreate"),
                   "responses": {"201": ok("Created; routed by gateways once they apply `table_version` (every provisioning provider `none`)", "Tenant"),
                                 "202": ok("Accepted: provisioning runs (`provisioning.state`); the tenant is routed once every step is done — follow `/v1/tenants/{id}/events`", "Tenant"),
                                 "401": unauthorized, "409": error("Tenant exists (`tenant_exists`) or a host is held by another tenant (`host_conflict`)"),
                                 "413": too_large, "422": invalid}}
        },
        "/v1/tenants/{id}": {
          "parameters": [id],
          "get": {"summary": "Show a tenant (ETag: its revision)",
                  "responses": {"200": ok("The tenant", "Tenant"), "401": unauthorized, "404": not_found}},
          "patch": {"summary": "Change some fields; `status: suspended` makes its hosts answer 503",
                    "parameters": [if_match], "requestBody": body("TenantPatch"),
                    "responses": {"200": ok("The tenant after the change", "Tenant"), "400": error("Bad If-Match"),
                                  "401": unauthorized, "404": not_found, "409": error("A host is held by another tenant"),
                                  "412": error("If-Match does not match the current revision"), "413": too_large, "422": invalid}},
          "delete": {"summary": "Delete a tenant; its hosts answer 404 at every gateway",
                     "parameters": [if_match],
                     "responses": {"200": ok("Deleted", "Deleted"),
                                   "202": ok("Out of the table at `table_version`; the steps' removes run in reverse, then the tenant is gone (404)", "Deleted"),
                                   "401": unauthorized, "404": not_found,
                                   "409": error("The tenant is being deleted (on PATCH: `tenant_deleting`)"),
                                   "412": error("If-Match does not match the current revision")}}
        },
        "/v1/upstreams": {
          "get": {"summary": "List upstream pools",
                  "responses": {"200": {"description": "Every pool", "content": {"application/json": {"schema": {
                      "type": "object", "required": ["upstreams"],
                      "properties": {"upstreams": {"type": "array", "items": {"$ref": "#/components/schemas/UpstreamView"}}}}}}},
                                "401": unauthorized}}
        },
        "/v1/upstreams/{name}": {
          "parameters": [name],
          "get": {"summary": "Show a pool", "responses": {"200": ok("The pool", "UpstreamView"), "401": unauthorized, "404": not_found}},
          "put": {"summary": "Create or replace a pool", "requestBody": body("Upstream"),
                  "responses": {"200": ok("Replaced (or unchanged)", "UpstreamView"), "201": ok("Created", "UpstreamView"),
                                "401": unauthorized, "413": too_large, "422": invalid}},
          "delete": {"summary": "Delete a pool no route uses",
                     "responses": {"200": ok("Deleted", "Deleted"), "401": unauthorized, "404": not_found,
                                   "409": error("Routes still use it (`upstream_in_use`; `details.tenants` names them)")}}
        },
        "/v1/keys": {
          "get": {"summary": "The API keys the caller may see (the operator: all; a key: those it could have minted). Never secrets",
                  "security": [{"bearer": []}, {"apiKey": []}],
                  "responses": {"200": ok("The keys", "KeyList"), "401": unauthorized}},
          "post": {"summary": "Mint a key; the answer holds its secret, shown this once (only a SHA-256 digest is kept). A key may mint only within its own tenant, namespaces and lifetime",
                   "security": [{"bearer": []}, {"apiKey": []}],
                   "requestBody": body("KeyCreate"),
                   "responses": {"201": ok("Created; gateways accept it once they apply `table_version`", "CreatedKey"),
                                 "401": unauthorized, "403": error("The calling key may not mint this key (`forbidden`)"),
                                 "413": too_large, "422": invalid}}
        },
        "/v1/keys/{id}": {
          "parameters": [id],
          "get": {"summary": "Show a key", "security": [{"bearer": []}, {"apiKey": []}],
                  "responses": {"200": ok("The key", "Key"), "401": unauthorized, "404": error("No such key, or not one the caller may see")}},
          "delete": {"summary": "Revoke a key; gateways refuse it once they apply `table_version` (idempotent)",
                     "security": [{"bearer": []}, {"apiKey": []}],
                     "responses": {"200": ok("The revoked key", "Key"), "401": unauthorized, "404": error("No such key, or not one the caller may see")}}
        },
        "/v1/table": {
          "get": {"summary": "The compiled routing table (the document gateways load); accepts the operator token or the gateways' token. Only the gateways' token gets provisioned tenants' login client secrets; with the operator token each `realm.client_secret` and each certificate's `key_pem` reads `(redacted)` (header `x-realmgate-redacted`, weak ETag)",
                  "parameters": [{"name": "summary", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]},
                                  "description": "Only version, digest, tenant count and size"},
                                 {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
                                  "description": "Long poll: answer once the table's version is greater than this, or 204 after wait_s"},
                                 {"name": "wait_s", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 60},
                                  "description": "With after: the longest wait in seconds (default 25)"},
                                 {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
                                  "description": "Gateways' token only: the version the gateway serves. Answered with the delta from it (`application/vnd.realmgate.delta+json`, header `x-realmgate-table-base`) when realmctl keeps one, 204 when nothing is newer, else the full table"}],
                  "responses": {"200": {"description": "The table (see realmgate-table), or its summary; with `since`, the delta from that version when realmctl keeps one",
                                        "headers": {"x-realmgate-table-version": {"schema": {"type": "integer"}},
                                                    "x-realmgate-table-base": {"schema": {"type": "integer"}, "description": "With `since`: the version the delta applies to"}},
                                        "content": {"application/json": {"schema": {"type": "object"}},
                                                    "application/vnd.realmgate.delta+json": {"schema": {"type": "object"}}}},
                                "401": unauthorized,
                                "204": {"description": "Long poll: no newer table within wait_s; with `since`: the gateway serves the newest version"},
                                "403": error("The table carries secrets and realmctl serves plain http to a non-loopback peer (`insecure_channel`): serve realmctl over TLS"),
                                "503": error("The compiler has not caught up yet, or too many long polls wait; retry")}}
        },
        "/v1/gateways": {
          "get": {"summary": "Each gateway: URL, applied version, last push result and time",
                  "responses": {"200": {"description": "The gateways", "content": {"application/json": {"schema": {
                      "type": "object", "required": ["gateways"],
                      "properties": {"target_version": {"type": ["integer", "null"]},
                                     "gateways": {"type": "array", "items": {"$ref": "#/components/schemas/Gateway"}},
                                     "discovery": {"type": "object", "description": "Present when gateways are discovered: provider, service, namespace, state (starting, watching, error), error, warnings, slices, gateways, lists, last_change_at"}}}}}},
                                "401": unauthorized}}
        },
        "/v1/gateways/upstreams": {
          "get": {"summary": "Each gateway's view of the upstream pools: endpoints by health, read from its admin /metrics (realmgate_upstream_endpoints)",
                  "responses": {"200": {"description": "`{gateways: [{url, pools: {<pool>: {healthy, unhealthy}}, error}]}`; `error` when the gateway's metrics could not be read (then `pools` is empty)", "content": {"application/json": {}}},
                                "401": unauthorized}}
        },
        "/v1/audit": {
          "get": {"summary": "The audit log: every change and every refusal for auth (who, what, when, from where, SHA-256 of the request and response bodies and of the changed object before and after); `?after=<seq>&limit=<1-500>` pages oldest first, no `after`: the newest page. A console session needs the viewer role",
                  "responses": {"200": {"description": "`{entries: [{seq, at, actor, subject, name, role, action, target, status, outcome, peer, request_digest, response_digest, before_digest, after_digest, detail}], next_after}`; `before_digest`/`after_digest`: what GET of the changed path answered just before/after (a POST: its answer after), null when there was none (created, deleted, no GET)", "content": {"application/json": {}}},
                                "400": error("A bad `after` or `limit`"), "401": unauthorized}}
        },
        "/v1/openapi.json": {
          "get": {"summary": "This document", "security": [],
                  "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}
        },
        "/metrics": {
          "get": {"summary": "Prometheus metrics", "security": [],
                  "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}}}
        },
        "/healthz": {
          "get": {"summary": "Liveness", "security": [],
                  "responses": {"200": {"description": "ok", "content": {"text/plain": {}}}}}
        },
        "/readyz": {
          "get": {"summary": "Readiness: whether this realmctl may write (holds the Lease, or none is configured)", "security": [],
                  "responses": {"200": {"description": "ready", "content": {"text/plain": {}}},
                                "503": {"description": "Not leading: `{\"ready\": false, \"error\": \"not_leader\", \"reason\": …}`", "content": {"application/json": {}}}}}
        }
      },
      "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "The operator token (admin_token_file); GET /v1/table also accepts the gateways' token"},
                            "apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "An API key (`rgk_…`), accepted on /v1/keys only, within its tenant and namespaces"}},
        "schemas": {
          "Route": {"type": "object", "additionalProperties": false, "required": ["prefix", "upstream", "auth"],
                    "properties": {"prefix": {"type": "string", "description": "Normalised absolute path prefix"},
                                   "upstream": {"type": "string", "description": "Name of an existing pool"},
                                   "auth": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                                            "description": "`public`, `api_key`, or a list meaning any of them"},
                                   "namespace": {"type": "string", "pattern": "^@[a-z0-9][a-z0-9._-]*$",
                                                 "description": "The namespace the route serves; its prefix must be /@name or under /@name/"}}},
          "RateLimit": {"type": "object", "additionalProperties": false, "required": ["requests"],
                        "properties": {"requests": {"type": "integer", "minimum": 1, "maximum": 1000000000},
                                       "window_s": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 1}}},
          "RateLimits": {"type": "object", "additionalProperties": false,
                         "properties": {"tenant": {"$ref": "#/components/schemas/RateLimit"},
                                        "per_key": {"$ref": "#/components/schemas/RateLimit"},
                                        "per_client": {"$ref": "#/components/schemas/RateLimit"}}},
          "KeyCreate": {"type": "object", "additionalProperties": false, "required": ["namespaces"],
                        "properties": {"tenant": {"type": "string", "description": "Absent: an operator key (or, for a key caller, its own tenant)"},
                                       "namespaces": {"type": "array", "items": {"type": "string"}, "description": "[\"*\"] or namespaces like @acme"},
                                       "expires_at": {"type": "string", "format": "date-time", "description": "RFC 3339 UTC; a key caller's expiry by default and at most"},
                                       "rate_limit": {"$ref": "#/components/schemas/RateLimit"}}},
          "Key": {"type": "object", "required": ["id", "prefix", "namespaces", "created_at", "created_by", "table_version"],
                  "properties": {"id": {"type": "string"}, "prefix": {"type": "string", "description": "First characters of the key, e.g. rgk_AbCd"},
                                 "tenant": {"type": "string"}, "namespaces": {"type": "array", "items": {"type": "string"}},
                                 "expires_at": {"type": "string", "format": "date-time"},
                                 "rate_limit": {"$ref": "#/components/schemas/RateLimit"},
                                 "created_at": {"type": "string", "format": "date-time"},
                                 "created_by": {"type": "string", "description": "operator, or key:<id>"},
                                 "revoked_at": {"type": "string", "format": "date-time"},
                                 "table_version": {"type": "integer", "description": "The table version carrying the key's last change"}}},
          "CreatedKey": {"allOf": [{"$ref": "#/components/schemas/Key"},
                                   {"type": "object", "required": ["key"],
                                    "properties": {"key": {"type": "string", "description": "The secret (rgk_…), shown only here"}}}]},
          "KeyList": {"type": "object", "required": ["keys"],
                      "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}},
          "CatalogEntry": {"type": "object", "additionalProperties": false, "required": ["name", "title", "path"],
                           "description": "An app the shell lists; enters the table as {name: title, path, icon}. Its path must be matched by one of the tenant's routes",
                           "properties": {"name": {"type": "string"}, "title": {"type": "string", "maxLength": 64}, "path": {"type": "string"},
                                          "icon": {"type": "string", "description": "e.g. lucide:check-square"}}},
          "Shell": {"type": "object", "additionalProperties": false, "required": ["enabled"],
                    "description": "The app shell browsers get on / and in catalog apps (see docs/app-shell.md)",
                    "properties": {"enabled": {"type": "boolean"},
                                   "upstream": {"type": "string", "description": "A pool serving the tenant's own shell page; absent: the built-in shell"},
                                   "excludes": {"type": "array", "items": {"type": "string"}, "description": "Path prefixes that never get the shell"}}},
          "Status": {"type": "string", "enum": ["active", "suspended"]},
          "TenantCreate": {"type": "object", "additionalProperties": false, "required": ["id", "hosts", "routes"],
                           "properties": {"id": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
                                          "hosts": {"type": "array", "items": {"type": "string"}, "description": "Exact names or *.suffix; normalised (ACME.test is acme.test)"},
                                          "display_name": {"type": "string", "maxLength": 100},
                                          "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                                          "catalog": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/CatalogEntry"}},
                                          "shell": {"$ref": "#/components/schemas/Shell"},
                                          "status": {"$ref": "#/components/schemas/Status"},
                                          "rate_limits": {"$ref": "#/components/schemas/RateLimits"}}},
          "TenantPatch": {"type": "object", "additionalProperties": false,
                          "properties": {"hosts": {"type": "array", "items": {"type": "string"}},
                                         "display_name": {"type": "string", "maxLength": 100},
                                         "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                                         "catalog": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/CatalogEntry"}},
                                         "shell": {"oneOf": [{"$ref": "#/components/schemas/Shell"}, {"type": "null"}], "description": "null removes the shell"},
                                         "status": {"$ref": "#/components/schemas/Status"},
                                         "rate_limits": {"$ref": "#/components/schemas/RateLimits"}}},
          "Tenant": {"type": "object",
                     "required": ["id", "display_name", "status", "hosts", "routes", "catalog", "revision", "table_version", "created_at", "updated_at"],
                     "properties": {"id": {"type": "string"}, "display_name": {"type": "string"},
                                    "status": {"$ref": "#/components/schemas/Status"},
                                    "hosts": {"type": "array", "items": {"type": "string"}},
                                    "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                                    "catalog": {"type": "array", "items": {"$ref": "#/components/schemas/CatalogEntry"}},
                                    "shell": {"$ref": "#/components/schemas/Shell"},
                                    "rate_limits": {"$ref": "#/components/schemas/RateLimits"},
                                    "revision": {"type": "integer"},
                                    "table_version": {"type": "integer", "description": "The table version carrying the last change"},
                                    "created_at": {"type": "string", "format": "date-time"},
                                    "updated_at": {"type": "string", "format": "date-time"},
                                    "provisioning": {"$ref": "#/components/schemas/Provisioning"}}},
          "TenantPage": {"type": "object", "required": ["tenants"],
                         "properties": {"tenants": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}},
                                        "next": {"type": "string"}}},
          "Upstream": {"type": "object", "additionalProperties": false, "required": ["endpoints"],
                       "properties": {"endpoints": {"type": "array", "items": {"type": "string"}, "description": "IP:port addresses"},
                                      "health_check": {"type": "object", "properties": {"http_path": {"type": "string"}}},
                                      "connect_timeout_ms": {"type": "integer"}, "read_timeout_ms": {"type": "integer"},
                                      "write_timeout_ms": {"type": "integer"}}},
          "UpstreamView": {"allOf": [{"$ref": "#/components/schemas/Upstream"},
                                     {"type": "object", "required": ["name", "tenants_using", "table_version", "updated_at"],
                                      "properties": {"name": {"type": "string"}, "tenants_using": {"type": "integer"},
                                                     "table_version": {"type": "integer"}, "updated_at": {"type": "string", "format": "date-time"}}}]},
          "Gateway": {"type": "object", "required": ["url", "in_sync", "consecutive_failures"],
                      "properties": {"url": {"type": "string"},
                                     "source": {"type": "string", "enum": ["static", "kubernetes"]},
                                     "applied_version": {"type": ["integer", "null"]},
                                     "target_version": {"type": ["integer", "null"]},
                                     "in_sync": {"type": "boolean"},
                                     "last_result": {"type": ["string", "null"], "enum": ["applied", "already_current", "version_not_newer", "rejected", "unauthorized", "error", "unreachable", "refused_insecure", null]},
                                     "last_error": {"type": "string"},
                                     "last_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                                     "last_success_at": {"type": ["string", "null"], "format": "date-time"},
                                     "consecutive_failures": {"type": "integer"}}},
          "Deleted": {"type": "object", "required": ["deleted", "table_version"],
                      "properties": {"deleted": {"type": "string"}, "table_version": {"type": "integer"}}},
          "Problem": {"type": "object", "required": ["at", "message"],
                      "properties": {"at": {"type": "string", "description": "Where in the body, e.g. hosts[1] or routes[0].upstream"},
                                     "message": {"type": "string"}}},
          "Error": {"type": "object", "required": ["error", "message"],
                    "properties": {"error": {"type": "string", "description": "Machine-readable code"},
                                   "message": {"type": "string"},
                                   "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
                                   "details": {"type": "object"}}}
        }
      }
    });
    provisioning(&mut doc, &id, &unauthorized, &not_found);
    certificates(&mut doc, &name, &unauthorized);
    assertion_keys(&mut doc, &unauthorized);
    apps(&mut doc, &unauthorized);
    domains(&mut doc, &unauthorized);
    super::openapi_operators::add(&mut doc);
    super::traffic::document(&mut doc);
    bounded(&mut doc);
    super::paging::document(&mut doc);
    doc
}

/// What every `/v1` operation may answer when realmctl is at its concurrent-request bound,
/// and minting's own quota.
fn bounded(doc: &mut Value) {
    let busy = error("Too many API requests at once (`busy`); retry after `Retry-After` seconds");
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
            continue;
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            if let Some(r) = op["responses"].as_object_mut() {
                r.entry("503").or_insert_with(|| busy.clone());
            }
        }
    }
    if let Some(r) = doc["paths"]["/v1/keys"]["post"]["responses"].as_object_mut() {
        r.insert(
            "429".into(),
            error("The caller minted too many keys lately (`too_many_requests`); retry after `Retry-After` seconds"),
        );
    }
}

/// The provisioning endpoints and schema (a separate `json!`: one macro call of the whole
/// document would pass the macro recursion limit).
fn provisioning(doc: &mut Value, id: &Value, unauthorized: &Value, not_found: &Value) {
    let paths = json!({
        "/v1/tenants/{id}/retry": {
          "parameters": [id],
          "post": {"summary": "Run a failed provisioning step now instead of after its backoff; on a ready tenant, run every step again (each converges; nothing changes if nothing drifted)",
                   "responses": {"202": ok("The tenant; follow its provisioning", "Tenant"), "401": unauthorized, "404": not_found}}
        },
        "/v1/tenants/{id}/events": {
          "parameters": [id],
          "get": {"summary": "Provisioning as server-sent events: the tenant now, then one event per change (`progress`, `failed`); `ready` or `deleted` ends the stream",
                  "responses": {"200": {"description": "text/event-stream; each `data` is a Tenant", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                                "401": unauthorized, "404": not_found}}
        },
        "/v1/tenants/{id}/credentials": {
          "parameters": [id],
          "post": {"summary": "The new tenant's first admin (temporary password) and its API client secret — once; realmctl then forgets them",
                   "responses": {"200": {"description": "`issuer`, `admin_username`, `admin_password`, `admin_client_id`, `admin_client_secret`",
                                         "content": {"application/json": {"schema": {"type": "object"}}}},
                                 "401": unauthorized, "404": not_found,
                                 "409": error("Identity provisioning is off (`no_identity`) or not done yet (`not_ready`)"),
                                 "410": error("Already handed out")}}
        }
    });
    let schema = json!({
          "Provisioning": {"type": "object", "required": ["state", "routed", "steps"],
                           "properties": {"state": {"enum": ["provisioning", "ready", "failed", "deleting", "delete_failed"]},
                                          "routed": {"type": "boolean", "description": "In the routing table"},
                                          "error": {"type": "string", "description": "`<step>: <error>` of the failed step"},
                                          "steps": {"type": "array", "items": {"type": "object",
                                              "required": ["step", "provider", "state", "attempts", "updated_at"],
                                              "properties": {"step": {"enum": ["identity", "database", "ingress", "dns"]},
                                                             "provider": {"type": "string"},
                                                             "state": {"enum": ["pending", "running", "done", "skipped", "failed", "removing", "removed"]},
                                                             "attempts": {"type": "integer"}, "last_error": {"type": "string"},
                                                             "outputs": {"type": "object", "description": "What the step made; never secrets"},
                                                             "next_attempt_at": {"type": "string", "format": "date-time"},
                                                             "duration_ms": {"type": "integer"},
                                                             "updated_at": {"type": "string", "format": "date-time"}}}}}}
    });
    if let (Some(p), Some(Value::Object(add))) = (doc["paths"].as_object_mut(), Some(paths)) {
        p.extend(add);
    }
    if let (Some(s), Value::Object(add)) = (doc["components"]["schemas"].as_object_mut(), schema) {
        s.extend(add);
    }
}

/// The certificate endpoints, and the tenant's https/hsts fields and certificate expiry.
fn domains(doc: &mut Value, unauthorized: &Value) {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let domain =
        json!({"name": "domain", "in": "path", "required": true, "schema": {"type": "string"}});
    let paths = json!({
        "/v1/domains": {
          "get": {"summary": "Every tenant's custom domains and their ownership checks",
                  "responses": {"200": ok("The domains", "DomainList"), "401": unauthorized}}
        },
        "/v1/tenants/{id}/domains": {
          "parameters": [id],
          "get": {"summary": "The tenant's custom domains",
                  "responses": {"200": ok("The domains", "DomainList"), "401": unauthorized, "404": error("No such tenant")}},
          "post": {"summary": "Add a custom domain: pending until the TXT record in the answer (`txt`) is seen by realmctl's resolver, then one of the tenant's hosts with a certificate of its own",
                   "requestBody": body("DomainAdd"),
                   "responses": {"201": ok("Added (or checked anew after failing)", "Domain"), "200": ok("Already there", "Domain"),
                                 "401": unauthorized, "404": error("No such tenant"),
                                 "409": error("Another tenant has the domain (`domain_taken`), it is already one of the tenant's hosts (`domain_is_a_host`), or `domains.resolver` is not configured (`domains_not_configured`)"),
                                 "422": error("Not one exact domain name, or under the platform's own zone")}}
        },
        "/v1/tenants/{id}/domains/{domain}": {
          "parameters": [id, domain],
          "delete": {"summary": "Remove a custom domain: its host leaves the table first, then its certificate is revoked (best effort) and deleted",
                     "responses": {"200": ok("Removed", "Deleted"), "401": unauthorized, "404": error("No such tenant or domain")}}
        }
    });
    let schemas = json!({
        "DomainAdd": {"type": "object", "additionalProperties": false, "required": ["domain"],
                      "properties": {"domain": {"type": "string", "description": "One exact name outside the platform's zone"}}},
        "Domain": {"type": "object", "required": ["domain", "tenant", "state", "txt", "attempts", "check_until", "certificate", "created_at", "updated_at"],
                   "properties": {"domain": {"type": "string"}, "tenant": {"type": "string"},
                                  "state": {"enum": ["pending", "verified", "failed"]},
                                  "txt": {"type": "object", "required": ["name", "type", "value"],
                                          "properties": {"name": {"type": "string", "description": "_realmgate-challenge.<domain>"},
                                                         "type": {"const": "TXT"}, "value": {"type": "string"}}},
                                  "reason": {"type": "string", "description": "What the resolver answered, while pending or failed"},
                                  "attempts": {"type": "integer"},
                                  "next_check_at": {"type": "string", "format": "date-time"},
                                  "check_until": {"type": "string", "format": "date-time"},
                                  "verified_at": {"type": "string", "format": "date-time"},
                                  "certificate": {"type": "string", "description": "The certificate record its certificate fills"},
                                  "created_at": {"type": "string", "format": "date-time"},
                                  "updated_at": {"type": "string", "format": "date-time"}}},
        "DomainList": {"type": "object", "required": ["domains"],
                       "properties": {"domains": {"type": "array", "items": {"$ref": "#/components/schemas/Domain"}}}}
    });
    if let (Some(p), Value::Object(add)) = (doc["paths"].as_object_mut(), paths) {
        p.extend(add);
    }
    if let (Some(s), Value::Object(add)) = (doc["components"]["schemas"].as_object_mut(), schemas) {
        s.extend(add);
    }
}

fn certificates(doc: &mut Value, name: &Value, unauthorized: &Value) {
    let not_found = error("No such certificate");
    let paths = json!({
        "/v1/certificates": {
          "get": {"summary": "Every certificate: names, not-after, fingerprint, the tenants whose hosts it covers. Never a key",
                  "responses": {"200": ok("The certificates", "CertificateList"), "401": unauthorized}}
        },
        "/v1/certificates/{name}": {
          "parameters": [name],
          "get": {"summary": "Show a certificate (never its key)",
                  "responses": {"200": ok("The certificate", "Certificate"), "401": unauthorized, "404": not_found}},
          "put": {"summary": "Add or replace a certificate and its private key (sealed at rest; sent only to gateways, in the table). Validated as every gateway validates it; an expired or not-yet-valid certificate is refused",
                  "requestBody": body("CertificatePut"),
                  "responses": {"200": ok("Replaced (or unchanged)", "Certificate"), "201": ok("Added", "Certificate"),
                                "401": unauthorized,
                                "409": error("A host is already served by another certificate (`certificate_host_conflict`; `details.hosts` names them)"),
                                "413": error("Body larger than `max_body_bytes`"),
                                "422": error("Malformed PEM, a chain out of order, a key that does not match, a host the certificate does not cover, a wildcard of two labels, an expired or not-yet-valid certificate: `problems` lists every one, each naming the certificate")}},
          "delete": {"summary": "Remove a certificate; gateways stop serving it with the next table",
                     "responses": {"200": ok("Removed", "Deleted"), "401": unauthorized, "404": not_found}}
        }
    });
    let schemas = json!({
        "CertificatePut": {"type": "object", "additionalProperties": false, "required": ["cert_pem", "key_pem"],
                           "properties": {"cert_pem": {"type": "string", "description": "The chain in PEM: the certificate first, then each issuer (at most 64 KiB, 8 certificates)"},
                                          "key_pem": {"type": "string", "description": "Its unencrypted private key in PEM (ECDSA P-256/P-384, RSA or Ed25519)"},
                                          "hosts": {"type": "array", "items": {"type": "string"},
                                                    "description": "The names it is served for (exact, or `*.` and one label); default: the certificate's DNS names"}}},
        "Certificate": {"type": "object",
                        "required": ["name", "hosts", "not_before", "not_after", "days_left", "state", "fingerprint", "tenants", "table_version", "created_at", "updated_at"],
                        "properties": {"name": {"type": "string"},
                                       "hosts": {"type": "array", "items": {"type": "string"}},
                                       "not_before": {"type": "string", "format": "date-time"},
                                       "not_after": {"type": "string", "format": "date-time"},
                                       "days_left": {"type": "integer", "description": "Negative once expired"},
                                       "state": {"enum": ["valid", "expired", "not_yet_valid"]},
                                       "fingerprint": {"type": "string", "description": "sha256:<hex> of the leaf (DER)"},
                                       "tenants": {"type": "array", "items": {"type": "string"}, "description": "Tenants with a host it covers"},
                                       "table_version": {"type": "integer"},
                                       "created_at": {"type": "string", "format": "date-time"},
                                       "updated_at": {"type": "string", "format": "date-time"}}},
        "CertificateList": {"type": "object", "required": ["certificates"],
                            "properties": {"certificates": {"type": "array", "items": {"$ref": "#/components/schemas/Certificate"}}}},
        "Https": {"type": "string", "enum": ["off", "redirect", "only"], "default": "off",
                  "description": "Plain HTTP to the tenant's hosts: served (`off`), 308 to https (`redirect`) or 403 (`only`)"},
        "Hsts": {"type": "object", "additionalProperties": false, "required": ["max_age"],
                 "description": "Strict-Transport-Security, sent over TLS only",
                 "properties": {"max_age": {"type": "integer", "minimum": 0, "maximum": 63072000},
                                "include_subdomains": {"type": "boolean"},
                                "preload": {"type": "boolean", "description": "Needs include_subdomains and max_age of at least 31536000"}}}
    });
    if let (Some(p), Value::Object(add)) = (doc["paths"].as_object_mut(), paths) {
        p.extend(add);
    }
    let https = json!({"$ref": "#/components/schemas/Https"});
    let hsts = json!({"$ref": "#/components/schemas/Hsts"});
    let s = &mut doc["components"]["schemas"];
    for schema in ["TenantCreate", "TenantPatch", "Tenant"] {
        if let Some(props) = s[schema]["properties"].as_object_mut() {
            props.insert("https".into(), https.clone());
            props.insert("hsts".into(), hsts.clone());
        }
    }
    if let Some(props) = s["TenantPatch"]["properties"].as_object_mut() {
        props.insert(
            "hsts".into(),
            json!({"oneOf": [hsts, {"type": "null"}], "description": "null removes it"}),
        );
    }
    if let Some(props) = s["Tenant"]["properties"].as_object_mut() {
        props.insert("certificates".into(), json!({"type": "array", "description": "Certificates covering the tenant's hosts",
            "items": {"type": "object", "required": ["name", "hosts", "not_after", "days_left", "state"],
                      "properties": {"name": {"type": "string"}, "hosts": {"type": "array", "items": {"type": "string"}},
                                     "not_after": {"type": "string", "format": "date-time"},
                                     "days_left": {"type": "integer"},
                                     "state": {"enum": ["valid", "expired", "not_yet_valid"]}}}}));
        props.insert("hosts_without_certificate".into(), json!({"type": "array", "items": {"type": "string"},
            "description": "Hosts no certificate covers (their TLS handshakes fail unless the gateway has a fallback certificate)"}));
    }
    if let (Some(s), Value::Object(add)) = (s.as_object_mut(), schemas) {
        s.extend(add);
    }
}

/// App credentials and the tenant database location they read.
fn apps(doc: &mut Value, unauthorized: &Value) {
    let view = json!({"type": "object", "required": ["id", "name", "pool", "prefix", "created_at"],
                      "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                     "pool": {"type": "string", "description": "The upstream pool it is bound to"},
                                     "prefix": {"type": "string"},
                                     "created_at": {"type": "string", "format": "date-time"},
                                     "revoked_at": {"type": "string", "format": "date-time"}}});
    let forbidden = error("An app credential on an endpoint other than `GET /v1/tenants/{id}/database`, or for a tenant whose routes do not forward to its pool (`forbidden`)");
    let paths = json!({
        "/v1/apps": {
          "get": {"summary": "App credentials (never their secrets)",
                  "responses": {"200": {"description": "The credentials", "content": {"application/json": {"schema": {"type": "object", "properties": {"apps": {"type": "array", "items": view.clone()}}}}}},
                                "401": unauthorized, "403": forbidden.clone()}},
          "post": {"summary": "Mint an app credential (`rga_…`) bound to a pool; the secret is in the answer, once (`credential`)",
                   "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "pool"],
                       "properties": {"name": {"type": "string"}, "pool": {"type": "string"}}}}}},
                   "responses": {"201": {"description": "The credential and its view"}, "401": unauthorized,
                                 "403": forbidden.clone(), "422": error("Invalid name or pool")}}
        },
        "/v1/apps/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
          "delete": {"summary": "Revoke an app credential (at once: realmctl checks it on every request)",
                     "responses": {"200": {"description": "The revoked credential", "content": {"application/json": {"schema": view}}},
                                   "401": unauthorized, "403": forbidden.clone(), "404": error("No such credential")}}
        },
        "/v1/tenants/{id}/database": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
          "get": {"summary": "Where the tenant's provisioned database lives: `kind` `file` with `path`, or `remote` with `url`, `namespace` and `auth_token` (an operator gets the server's token; an app a token for this tenant's namespace only, living `auth_token_expires_in` seconds, or 403 when realmctl cannot mint one). The operator token, or an app credential of a pool the tenant's routes forward to",
                  "responses": {"200": {"description": "The location (`Cache-Control: no-store`)",
                                        "content": {"application/json": {"schema": {"type": "object", "required": ["tenant", "kind"],
                                          "properties": {"tenant": {"type": "string"}, "kind": {"enum": ["file", "remote"]},
                                                         "path": {"type": "string"}, "url": {"type": "string"},
                                                         "namespace": {"type": "string"}, "auth_token": {"type": "string"},
                                                         "auth_token_expires_in": {"type": "integer"}}}}}},
                                "401": unauthorized, "403": forbidden,
                                "404": error("No such tenant (`not_found`; operator only, an app gets 403), or the tenant is suspended (`tenant_suspended`: handed out again once it is active)"),
                                "409": error("Its database step is not done (`not_provisioned`)"),
                                "410": error("The tenant was deleted (or is being deleted): its database is archived")}}
        }
    });
    if let (Some(p), Value::Object(add)) = (doc["paths"].as_object_mut(), paths) {
        p.extend(add);
    }
}

/// The fleet's identity assertion keys.
fn assertion_keys(doc: &mut Value, unauthorized: &Value) {
    let keys = json!({"description": "The keys and their states (never a private part)",
                      "content": {"application/json": {"schema": {"type": "object",
                        "properties": {"issuer": {"type": ["string", "null"]},
                                       "keys": {"type": "array", "items": {"type": "object",
                                         "required": ["kid", "state", "created_at", "table_version"],
                                         "properties": {"kid": {"type": "string"},
                                                        "state": {"enum": ["pending", "active", "published"]},
                                                        "created_at": {"type": "string", "format": "date-time"},
                                                        "activate_at": {"type": "string", "format": "date-time"},
                                                        "retire_at": {"type": "string", "format": "date-time"},
                                                        "table_version": {"type": "integer"}}}}}}}}});
    let paths = json!({
        "/v1/assertion-keys": {
          "get": {"summary": "The fleet's public assertion keys as a JWKS (no auth: apps verify `x-realmgate-assertion` with it). `Cache-Control: max-age=300`",
                  "security": [],
                  "responses": {"200": {"description": "JWK Set (`kty` EC, `crv` P-256, `alg` ES256)"}}}
        },
        "/v1/assertion-keys/status": {
          "get": {"summary": "Every key: which signs (active), which is published before signing (pending) or after (published), and when each changes",
                  "responses": {"200": keys.clone(), "401": unauthorized}}
        },
        "/v1/assertion-keys/rotate": {
          "post": {"summary": "A new key: published now, signing after `assertion.activation_delay_s`; the key it replaces stays published for `assertion.retire_after_s`",
                   "responses": {"200": keys.clone(), "401": unauthorized,
                                 "409": error("A rotation is in progress (`rotation_in_progress`)")}}
        },
        "/v1/assertion-keys/{kid}/retire": {
          "parameters": [{"name": "kid", "in": "path", "required": true, "schema": {"type": "string"}}],
          "post": {"summary": "Take a rotated-out (published) key out of the table now",
                   "responses": {"200": keys, "401": unauthorized, "404": error("No such key"),
                                 "409": error("The key signs or is about to (`assertion_key_in_use`)")}}
        }
    });
    if let (Some(p), Value::Object(add)) = (doc["paths"].as_object_mut(), paths) {
        p.extend(add);
    }
}
