//! The OpenAPI entries of operator API keys (`/v1/operator-keys`), merged into
//! `openapi::spec` (a file of their own: that one is near its size bound).

use serde_json::{json, Value};

fn error(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// Add the operator keys' paths, schemas and security scheme to `doc`.
pub fn add(doc: &mut Value) {
    let unauthorized = error("Missing or wrong bearer token");
    let people_only = error("Not the operator token or an admin session: a viewer, or an operator key (which may not mint or revoke operator keys)");
    let not_found = error("No such operator key");
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let paths = json!({
        "/v1/operator-keys": {
          "get": {"summary": "Operator API keys (never their secrets), oldest first, revoked and expired ones too",
                  "responses": {"200": ok("The keys", "OperatorKeyList"), "401": unauthorized}},
          "post": {"summary": "Mint an operator API key (`rgo_…`, 256 random bits) with a role; the secret is in this answer only (`Cache-Control: no-store`), realmctl keeps its SHA-256",
                   "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OperatorKeyCreate"}}}},
                   "responses": {"201": ok("Minted; `Location` names it", "CreatedOperatorKey"),
                                 "401": unauthorized, "403": people_only.clone(),
                                 "409": error("As many keys are live as may be (`too_many_operator_keys`): revoke one first"),
                                 "413": error("Body larger than `max_body_bytes`"),
                                 "422": error("Malformed JSON or invalid fields; `problems` lists every one")}}
        },
        "/v1/operator-keys/{id}": {
          "parameters": [id],
          "get": {"summary": "Show an operator key",
                  "responses": {"200": ok("The key", "OperatorKey"), "401": unauthorized, "404": not_found.clone()}},
          "delete": {"summary": "Revoke an operator key: every call presenting it is refused (401) from now on (idempotent)",
                     "responses": {"200": ok("The revoked key", "OperatorKey"), "401": unauthorized,
                                   "403": people_only, "404": not_found}}
        }
    });
    let schemas = json!({
        "OperatorKeyCreate": {"type": "object", "additionalProperties": false, "required": ["name", "role"],
                              "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64, "description": "What it is for, e.g. ci-deploys"},
                                             "role": {"type": "string", "enum": ["viewer", "admin"]},
                                             "expires_at": {"type": "string", "format": "date-time", "description": "RFC 3339 UTC, in the future; absent: never"}}},
        "OperatorKey": {"type": "object", "required": ["id", "name", "role", "prefix", "state", "created_at", "created_by"],
                        "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                       "role": {"type": "string", "enum": ["viewer", "admin"]},
                                       "prefix": {"type": "string", "description": "First characters of the key, e.g. rgo_AbCd"},
                                       "state": {"type": "string", "enum": ["live", "expired", "revoked"]},
                                       "created_at": {"type": "string", "format": "date-time"},
                                       "created_by": {"type": "string", "description": "operator_token, or session:<name>"},
                                       "expires_at": {"type": "string", "format": "date-time"},
                                       "revoked_at": {"type": "string", "format": "date-time"}}},
        "CreatedOperatorKey": {"allOf": [{"$ref": "#/components/schemas/OperatorKey"},
                                         {"type": "object", "required": ["key"],
                                          "properties": {"key": {"type": "string", "description": "The secret (rgo_…), shown only here"}}}]},
        "OperatorKeyList": {"type": "object", "required": ["operator_keys"],
                            "properties": {"operator_keys": {"type": "array", "items": {"$ref": "#/components/schemas/OperatorKey"}}}}
    });
    if let (Some(p), Value::Object(add)) = (doc["paths"].as_object_mut(), paths) {
        p.extend(add);
    }
    if let (Some(s), Value::Object(add)) = (doc["components"]["schemas"].as_object_mut(), schemas) {
        s.extend(add);
    }
    if let Some(s) = doc["components"]["securitySchemes"].as_object_mut() {
        s.insert(
            "operatorKey".into(),
            json!({"type": "http", "scheme": "bearer",
                   "description": "An operator API key (`rgo_…`): the whole API within its role (viewer: reads but secrets; admin: what the operator token may, except minting or revoking operator keys)"}),
        );
    }
}
