//! The registry database's schema, as versioned migrations (run by `crate::migrate`).
//!
//! Migrations are append-only: a released one is never edited.

use super::RegistryError;
use crate::migrate::{migrate, MigrateError, Migration};
use libsql::Connection;

/// The registry schema, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants, hosts, upstreams, table version",
        sql: r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('table_version', 0);

CREATE TABLE upstreams (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,              -- the pool as it enters the table (JSON)
    table_version INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    routes        TEXT NOT NULL,              -- JSON array of routes
    catalog       TEXT NOT NULL,              -- JSON array of catalog entries
    revision      INTEGER NOT NULL,
    table_version INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- Normalised host patterns; the primary key makes a host belong to one tenant at most.
CREATE TABLE tenant_hosts (
    host      TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL
) STRICT;
CREATE INDEX tenant_hosts_by_tenant ON tenant_hosts (tenant_id, position);
"#,
    },
    Migration {
        version: 2,
        name: "api keys, tenant rate limits",
        sql: r#"
-- Digests only: the secret is shown once and never stored. No foreign key to tenants: a
-- deleted tenant's keys stay, revoked, so its id cannot bring them back to life.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    digest        TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the key text
    prefix        TEXT NOT NULL,
    tenant_id     TEXT,                       -- NULL: operator key
    namespaces    TEXT NOT NULL,              -- JSON array
    expires_at_ms INTEGER,
    rate_limit    TEXT,                       -- JSON object or NULL
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at_ms INTEGER,
    table_version INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);
-- A tenant's rate limits (JSON object, as in the routing table).
ALTER TABLE tenants ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '{}';
"#,
    },
    Migration {
        version: 3,
        name: "provisioning journal",
        sql: r#"
-- Tenants from before provisioning are ready and routed.
ALTER TABLE tenants ADD COLUMN provision_state TEXT NOT NULL DEFAULT 'ready'
    CHECK (provision_state IN ('provisioning', 'ready', 'failed', 'deleting', 'delete_failed'));
ALTER TABLE tenants ADD COLUMN routed INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tenants ADD COLUMN provision_error TEXT;

-- One row per tenant and step: the journal the runner resumes from.
CREATE TABLE provision_steps (
    tenant_id          TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    step               TEXT NOT NULL,         -- identity, database, ingress, dns
    position           INTEGER NOT NULL,
    provider           TEXT NOT NULL,         -- keycloak, libsql, kubernetes, powerdns, none
    state              TEXT NOT NULL CHECK (state IN
                           ('pending', 'running', 'done', 'skipped', 'failed', 'removing', 'removed')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    outputs            TEXT NOT NULL DEFAULT '{}',  -- JSON object, nothing secret
    secrets            TEXT,                  -- AES-256-GCM sealed JSON (base64), or NULL
    input_digest       TEXT,
    next_attempt_at_ms INTEGER,
    duration_ms        INTEGER,
    updated_at_ms      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, step)
) STRICT;
"#,
    },
    Migration {
        version: 4,
        name: "tenant app shell",
        sql: r#"
-- The tenant's app shell settings as they enter the table (JSON object), or NULL: no shell.
ALTER TABLE tenants ADD COLUMN shell TEXT;
"#,
    },
    Migration {
        version: 5,
        name: "tenant https and hsts, certificates",
        sql: r#"
ALTER TABLE tenants ADD COLUMN https TEXT NOT NULL DEFAULT 'off'
    CHECK (https IN ('off', 'redirect', 'only'));
-- The tenant's Strict-Transport-Security settings as they enter the table (JSON), or NULL.
ALTER TABLE tenants ADD COLUMN hsts TEXT;

-- Certificates the gateways serve by SNI. The private key is sealed like the provisioning
-- secrets (AES-256-GCM, bound to the certificate's name); nothing else here is secret.
CREATE TABLE certificates (
    name          TEXT PRIMARY KEY,
    cert_pem      TEXT NOT NULL,              -- the chain, leaf first
    key_sealed    TEXT NOT NULL,
    not_before    INTEGER NOT NULL,           -- seconds since the Unix epoch
    not_after     INTEGER NOT NULL,
    fingerprint   TEXT NOT NULL,              -- sha256:<hex> of the leaf (DER)
    table_version INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
-- The names each certificate is served for; the primary key gives a name one certificate.
CREATE TABLE certificate_hosts (
    host        TEXT PRIMARY KEY,
    certificate TEXT NOT NULL REFERENCES certificates (name) ON DELETE CASCADE,
    position    INTEGER NOT NULL
) STRICT;
CREATE INDEX certificate_hosts_by_certificate ON certificate_hosts (certificate, position);
"#,
    },
    Migration {
        version: 6,
        name: "acme accounts, orders, challenge answers",
        sql: r#"
-- One ACME account per directory; instant-acme's credentials (the account key) sealed.
CREATE TABLE acme_accounts (
    directory_url      TEXT PRIMARY KEY,
    credentials_sealed TEXT NOT NULL,
    created_at_ms      INTEGER NOT NULL
) STRICT;

-- The journal of each certificate's open order: the order URL is written before anything
-- else is asked of the CA (a restart resumes it, never orders twice), the key before
-- finalisation. The row goes once the certificate is installed.
CREATE TABLE acme_orders (
    certificate   TEXT PRIMARY KEY,           -- the certificate record it fills
    tenant_id     TEXT NOT NULL,
    directory_url TEXT NOT NULL,
    hosts         TEXT NOT NULL,              -- JSON array, in order
    order_url     TEXT NOT NULL,
    key_sealed    TEXT,                       -- the certificate's key, sealed, or NULL
    last_error    TEXT,                       -- the CA's last problem (JSON {type, detail})
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- http-01 answers the gateways serve while an order is open (they enter the table).
CREATE TABLE acme_challenges (
    token             TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    hosts             TEXT NOT NULL,          -- JSON array
    expires_at_ms     INTEGER NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 7,
        name: "assertion keys",
        sql: r#"
-- The fleet's identity assertion keys: sealed private key, public JWK, and where each is in
-- its life (pending: published, signs from activate_at_ms; active: signs; published: in the
-- JWKS only, until retire_at_ms).
CREATE TABLE assertion_keys (
    kid            TEXT PRIMARY KEY,
    key_sealed     TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'active', 'published')),
    created_at_ms  INTEGER NOT NULL,
    activate_at_ms INTEGER,
    retire_at_ms   INTEGER,
    table_version  INTEGER NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 8,
        name: "acme certificate status, tenant custom domains",
        sql: r#"
-- Where each ACME-managed certificate stands (the record itself is in `certificates` once
-- issued): pending (first order), valid, renewing (the old one serves meanwhile), failed
-- (with the CA's last problem), and when it is renewed next.
CREATE TABLE acme_certificates (
    name               TEXT PRIMARY KEY,      -- the certificate record it fills
    tenant_id          TEXT NOT NULL,
    hosts              TEXT NOT NULL,         -- JSON array, in order
    state              TEXT NOT NULL CHECK (state IN ('pending', 'valid', 'renewing', 'failed')),
    problem            TEXT,                  -- the CA's last problem (JSON {type, detail})
    error              TEXT,                  -- the last failure, as the API shows it
    attempts           INTEGER NOT NULL,      -- failures in a row
    next_attempt_at_ms INTEGER,               -- after a failure: not retried before
    renew_at_ms        INTEGER,               -- when the scheduler renews it
    renew_source       TEXT,                  -- 'ari' (the CA's window) or 'lifetime'
    ari_next_ms        INTEGER,               -- when the CA's renewal window is read again
    ari_start_ms       INTEGER,               -- the CA's last suggested window (ARI)
    ari_end_ms         INTEGER,
    updated_at_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_certificates_by_tenant ON acme_certificates (tenant_id);

-- Custom domains: a tenant's own names (app.acme-corp.com), proven with a TXT record at
-- _realmgate-challenge.<domain> before they enter the tenant's hosts. The token is what the
-- operator publishes, public by nature; no secret here.
CREATE TABLE tenant_domains (
    domain           TEXT PRIMARY KEY,        -- normalised; one tenant per domain
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'verified', 'failed')),
    token            TEXT NOT NULL,
    reason           TEXT,                    -- why it is still pending, or failed
    attempts         INTEGER NOT NULL,
    next_check_at_ms INTEGER NOT NULL,
    check_until_ms   INTEGER NOT NULL,        -- pending past this: failed
    verified_at_ms   INTEGER,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX tenant_domains_by_tenant ON tenant_domains (tenant_id);
"#,
    },
    Migration {
        version: 9,
        name: "app credentials, tenant tombstones",
        sql: r#"
-- App credentials (`rga_…`): an app (todos) reads the database location of the tenants whose
-- routes forward to its pool, and nothing else. Only the SHA-256 digest of the secret is kept.
CREATE TABLE app_credentials (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    pool          TEXT NOT NULL,              -- the upstream pool it is bound to
    digest        TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the secret
    prefix        TEXT NOT NULL,              -- the secret's first characters, for display
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) STRICT;

-- Tenants deleted (their database archived): an app asking for one learns it is gone (410),
-- if its pool served the tenant. A tenant created again with the same id drops its row.
CREATE TABLE tenant_tombstones (
    tenant_id     TEXT PRIMARY KEY,
    pools         TEXT NOT NULL,              -- JSON array: the pools its routes used
    deleted_at_ms INTEGER NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 10,
        name: "audit log",
        sql: r#"
-- Every change through the API (and every refusal for auth, and sign-in/out): who, what,
-- when, from where, and digests of what was sent and returned. Never a secret: the body
-- itself is not kept, only its SHA-256.
CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,      -- increasing (only the oldest rows are pruned)
    at_ms           INTEGER NOT NULL,
    actor           TEXT NOT NULL,            -- session, operator_token, api_key, ...
    subject         TEXT,                     -- the operator's sub, or the key's id
    name            TEXT,                     -- the operator's name
    role            TEXT,                     -- viewer or admin (sessions)
    action          TEXT NOT NULL,            -- "PATCH /v1/tenants/{id}", "sign-in"
    target          TEXT NOT NULL,            -- the request path
    status          INTEGER NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
    peer            TEXT,                     -- the caller's address
    request_digest  TEXT,                     -- hex SHA-256 of the request body
    response_digest TEXT,                     -- hex SHA-256 of the response body
    detail          TEXT                      -- why it was refused
) STRICT;
"#,
    },
    Migration {
        version: 11,
        name: "operator API keys, the audit log's before and after digests",
        sql: r#"
-- Machine access to the whole API with a role (issue 18). The secret (rgo_...) is shown once
-- and never stored: only its SHA-256. Revoked keys stay listed. Not in the routing table.
CREATE TABLE operator_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'admin')),
    digest        TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the key text
    prefix        TEXT NOT NULL,              -- its first characters, to recognise it
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT NOT NULL,              -- operator_token, or session:<sub>
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
) STRICT;

-- The object a change touched, as GET answered for it just before and just after (hex
-- SHA-256; NULL when there was none: created, deleted, or no GET of its own).
ALTER TABLE audit_log ADD COLUMN before_digest TEXT;
ALTER TABLE audit_log ADD COLUMN after_digest TEXT;
"#,
    },
];

/// Bring the registry's schema up to date; returns the schema version now in force.
pub async fn migrate_registry(conn: &Connection) -> Result<i64, RegistryError> {
    Ok(migrate(conn, MIGRATIONS, "registry").await?)
}

impl From<MigrateError> for RegistryError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Db(e) => RegistryError::Db(e),
            MigrateError::Failed { version, source } => {
                RegistryError::Migration { version, source }
            }
            MigrateError::TooNew { found, known } => RegistryError::SchemaTooNew { found, known },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::test_db::{memory, tables};

    #[tokio::test]
    async fn fresh_database_gets_every_migration_once() {
        let conn = memory().await;
        assert_eq!(migrate_registry(&conn).await.expect("migrate"), 11);
        assert_eq!(
            tables(&conn).await,
            [
                "acme_accounts",
                "acme_certificates",
                "acme_challenges",
                "acme_orders",
                "api_keys",
                "app_credentials",
                "assertion_keys",
                "audit_log",
                "certificate_hosts",
                "certificates",
                "meta",
                "operator_keys",
                "provision_steps",
                "schema_migrations",
                "tenant_domains",
                "tenant_hosts",
                "tenant_tombstones",
                "tenants",
                "upstreams"
            ]
        );
        // Idempotent: a second run applies nothing (the INSERT into meta would fail on the
        // primary key if migration 1 ran again).
        assert_eq!(migrate_registry(&conn).await.expect("again"), 11);
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let conn = memory().await;
        migrate_registry(&conn).await.expect("migrate");
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (99, 'future', 0)",
            (),
        )
        .await
        .expect("insert");
        let err = migrate_registry(&conn).await.expect_err("refused");
        assert!(
            matches!(
                err,
                RegistryError::SchemaTooNew {
                    found: 99,
                    known: 11
                }
            ),
            "{err}"
        );
    }
}
