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
    json!({
      "openapi": "3.1.0",
      "info": {"title": "realmctl API", "version": env!("CARGO_PKG_VERSION"),
               "description": "Realmgate's control plane: tenants, upstream pools, the compiled routing table and its push to every gateway. Every change yields the next table version."},
      "security": [{"bearer": []}],
      "paths": {
        "/v1/tenants": {
          "get": {"summary": "List tenants, in id order, a page at a time",
                  "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "Start after this id (the previous page's `next`)"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}}],
                  "responses": {"200": ok("A page of tenants", "TenantPage"), "400": error("Bad query"), "401": unauthorized}},
          "post": {"summary": "Create a tenant", "requestBody": body("TenantCreate"),
                   "responses": {"201": ok("Created; routed by gateways once they apply `table_version`", "Tenant"),
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
                     "responses": {"200": ok("Deleted", "Deleted"), "401": unauthorized, "404": not_found,
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
        "/v1/table": {
          "get": {"summary": "The compiled routing table (the document gateways load); accepts the operator token or the gateways' token",
                  "parameters": [{"name": "summary", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]},
                                  "description": "Only version, digest, tenant count and size"}],
                  "responses": {"200": {"description": "The table (see realmgate-table), or its summary",
                                        "headers": {"x-realmgate-table-version": {"schema": {"type": "integer"}}},
                                        "content": {"application/json": {"schema": {"type": "object"}}}},
                                "401": unauthorized, "503": error("The compiler has not caught up yet; retry")}}
        },
        "/v1/gateways": {
          "get": {"summary": "Each gateway: URL, applied version, last push result and time",
                  "responses": {"200": {"description": "The gateways", "content": {"application/json": {"schema": {
                      "type": "object", "required": ["gateways"],
                      "properties": {"target_version": {"type": ["integer", "null"]},
                                     "gateways": {"type": "array", "items": {"$ref": "#/components/schemas/Gateway"}}}}}}},
                                "401": unauthorized}}
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
        }
      },
      "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "The operator token (admin_token_file); GET /v1/table also accepts the gateways' token"}},
        "schemas": {
          "Route": {"type": "object", "additionalProperties": false, "required": ["prefix", "upstream", "auth"],
                    "properties": {"prefix": {"type": "string", "description": "Normalised absolute path prefix"},
                                   "upstream": {"type": "string", "description": "Name of an existing pool"},
                                   "auth": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                                            "description": "`public` (the only policy so far)"}}},
          "CatalogEntry": {"type": "object", "additionalProperties": false, "required": ["name", "title", "path"],
                           "properties": {"name": {"type": "string"}, "title": {"type": "string"}, "path": {"type": "string"}}},
          "Status": {"type": "string", "enum": ["active", "suspended"]},
          "TenantCreate": {"type": "object", "additionalProperties": false, "required": ["id", "hosts", "routes"],
                           "properties": {"id": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
                                          "hosts": {"type": "array", "items": {"type": "string"}, "description": "Exact names or *.suffix; normalised (ACME.test is acme.test)"},
                                          "display_name": {"type": "string", "maxLength": 200},
                                          "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                                          "catalog": {"type": "array", "items": {"$ref": "#/components/schemas/CatalogEntry"}},
                                          "status": {"$ref": "#/components/schemas/Status"}}},
          "TenantPatch": {"type": "object", "additionalProperties": false,
                          "properties": {"hosts": {"type": "array", "items": {"type": "string"}},
                                         "display_name": {"type": "string", "maxLength": 200},
                                         "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                                         "catalog": {"type": "array", "items": {"$ref": "#/components/schemas/CatalogEntry"}},
                                         "status": {"$ref": "#/components/schemas/Status"}}},
          "Tenant": {"type": "object",
                     "required": ["id", "display_name", "status", "hosts", "routes", "catalog", "revision", "table_version", "created_at", "updated_at"],
                     "properties": {"id": {"type": "string"}, "display_name": {"type": "string"},
                                    "status": {"$ref": "#/components/schemas/Status"},
                                    "hosts": {"type": "array", "items": {"type": "string"}},
                                    "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                                    "catalog": {"type": "array", "items": {"$ref": "#/components/schemas/CatalogEntry"}},
                                    "revision": {"type": "integer"},
                                    "table_version": {"type": "integer", "description": "The table version carrying the last change"},
                                    "created_at": {"type": "string", "format": "date-time"},
                                    "updated_at": {"type": "string", "format": "date-time"}}},
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
                                     "applied_version": {"type": ["integer", "null"]},
                                     "target_version": {"type": ["integer", "null"]},
                                     "in_sync": {"type": "boolean"},
                                     "last_result": {"type": ["string", "null"], "enum": ["applied", "already_current", "rejected", "unauthorized", "error", "unreachable", null]},
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
    })
}
