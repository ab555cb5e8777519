//! The tenant's own database: asked of realmctl (`GET /v1/tenants/{id}/database` with the
//! app credential), cached (bounded, with expiry), opened with libsql and migrated once by
//! the app's own function. A cached database whose file was moved away (the tenant deleted:
//! realmctl archives it) is dropped at the next request, before any query runs on it. A
//! database on a remote libsql server comes with a token for that tenant's namespace alone,
//! which expires: realmctl is asked again at half its life and the database opened anew.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The app's migrations, run once per opened database.
pub type Migrate = Arc<
    dyn Fn(libsql::Connection) -> Pin<Box<dyn Future<Output = Result<(), libsql::Error>> + Send>>
        + Send
        + Sync,
>;

/// Why a tenant's database could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// realmctl: the tenant is deleted (410) or unknown (404 `not_found`).
    Gone(String),
    /// realmctl refused this app credential for the tenant (401/403).
    Refused(String),
    /// realmctl unreachable, the tenant suspended (404 `tenant_suspended`, for now) or not
    /// provisioned (409), the file
    /// missing or locked, or the app's migration failed.
    Unavailable(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Gone(m) | DbError::Refused(m) | DbError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl IntoResponse for DbError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            DbError::Gone(_) => (StatusCode::GONE, "tenant_database_gone"),
            DbError::Refused(_) => (StatusCode::FORBIDDEN, "tenant_database_refused"),
            DbError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_database_unavailable",
            ),
        };
        log::warn!("tenant database: {self}");
        let body = serde_json::json!({"error": code, "message": self.to_string()});
        (status, axum::Json(body)).into_response()
    }
}

/// How to reach realmctl and how long answers are kept.
#[derive(Clone)]
pub struct DatabasesConfig {
    /// realmctl's base URL, e.g. `http://127.0.0.1:7000`.
    pub realmctl_url: String,
    /// The app credential (`rga_…`): never logged.
    pub credential: String,
    /// How long realmctl's answer is kept before it is asked again.
    pub ttl: Duration,
    /// Most tenants' databases held open at once (the least recently asked goes first).
    pub capacity: usize,
}

struct Entry {
    db: Arc<libsql::Database>,
    backing: Backing,
    /// When realmctl is asked again (the answer's ttl, or half a remote token's life).
    refresh: Instant,
    used: Instant,
}

/// What the cached database is: a file (checked before each use), or a remote database
/// (good until `refresh`).
enum Backing {
    File { path: PathBuf, file: FileId },
    Remote,
}

impl Entry {
    fn usable(&self, now: Instant) -> bool {
        now < self.refresh
            && match &self.backing {
                Backing::File { path, file } => file_id(path) == Some(*file),
                Backing::Remote => true,
            }
    }
}

/// Device and inode: the same path holding another file means another database.
type FileId = (u64, u64);

fn file_id(path: &std::path::Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A namespace libsql can send as `x-namespace` (sqld's names here are tenant ids).
fn namespace_ok(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn remote_url_ok(url: &str) -> bool {
    ["libsql://", "https://", "http://"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Tenants' databases for one app.
pub struct TenantDatabases {
    config: DatabasesConfig,
    http: reqwest::Client,
    migrate: Migrate,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(serde::Deserialize)]
struct Location {
    kind: String,
    path: Option<String>,
    url: Option<String>,
    namespace: Option<String>,
    auth_token: Option<String>,
    auth_token_expires_in: Option<u64>,
}

/// realmctl's answer, checked.
enum Located {
    File(PathBuf),
    Remote {
        url: String,
        namespace: Option<String>,
        /// For this tenant's namespace only (realmctl never hands apps the server's own).
        token: String,
        lifetime: Duration,
    },
}

impl TenantDatabases {
    pub fn new(config: DatabasesConfig, migrate: Migrate) -> TenantDatabases {
        TenantDatabases {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            migrate,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to `tenant`'s database (a tenant id from a verified assertion).
    pub async fn connect(&self, tenant: &str) -> Result<libsql::Connection, DbError> {
        // Tenant ids are DNS labels; anything else never reaches realmctl's URL path.
        let label = |b: &[u8]| {
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        };
        if !label(tenant.as_bytes()) {
            return Err(DbError::Refused(format!("{tenant:?} is not a tenant id")));
        }
        let mut entries = self.entries.lock().await;
        let now = Instant::now();
        if let Some(e) = entries.get_mut(tenant).filter(|e| e.usable(now)) {
            e.used = now;
            return e
                .db
                .connect()
                .map_err(|e| DbError::Unavailable(format!("connect: {e}")));
        }
        let located = match self.locate(tenant).await {
            Ok(l) => l,
            Err(err) => {
                entries.remove(tenant);
                return Err(err);
            }
        };
        let (db, backing, refresh) = match located {
            Located::File(path) => {
                let Some(file) = file_id(&path) else {
                    entries.remove(tenant);
                    return Err(DbError::Unavailable(format!(
                        "tenant {tenant}: its database file {} is missing",
                        path.display()
                    )));
                };
                let refresh = now + self.config.ttl;
                let same = |e: &&mut Entry| match &e.backing {
                    Backing::File { path: p, file: f } => *p == path && *f == file,
                    Backing::Remote => false,
                };
                if let Some(e) = entries.get_mut(tenant).filter(same) {
                    e.refresh = refresh;
                    e.used = now;
                    return e
                        .db
                        .connect()
                        .map_err(|e| DbError::Unavailable(format!("connect: {e}")));
                }
                let db = libsql::Builder::new_local(&path)
                    .build()
                    .await
                    .map_err(|e| {
                        DbError::Unavailable(format!(
                            "tenant {tenant}: cannot open {}: {e}",
                            path.display()
                        ))
                    })?;
                (db, Backing::File { path, file }, refresh)
            }
            Located::Remote {
                url,
                namespace,
                token,
                lifetime,
            } => {
                // Opened anew with each token: a connection carries the token it was made with.
                let mut builder = libsql::Builder::new_remote(url, token);
                if let Some(ns) = namespace {
                    builder = builder.namespace(ns);
                }
                let db = builder.build().await.map_err(|e| {
                    DbError::Unavailable(format!(
                        "tenant {tenant}: cannot open its remote database: {e}"
                    ))
                })?;
                let refresh = now + self.config.ttl.min(lifetime / 2);
                (db, Backing::Remote, refresh)
            }
        };
        let unavailable = |what: &str, e: libsql::Error| {
            DbError::Unavailable(format!("tenant {tenant}: {what} its database: {e}"))
        };
        let conn = db
            .connect()
            .map_err(|e| unavailable("cannot connect to", e))?;
        (self.migrate)(conn.clone())
            .await
            .map_err(|e| unavailable("migration failed on", e))?;
        if entries.len() >= self.config.capacity.max(1) && !entries.contains_key(tenant) {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            tenant.to_owned(),
            Entry {
                db: Arc::new(db),
                backing,
                refresh,
                used: now,
            },
        );
        Ok(conn)
    }

    /// How many databases are held open (for tests and metrics).
    pub async fn cached(&self) -> usize {
        self.entries.lock().await.len()
    }

    async fn locate(&self, tenant: &str) -> Result<Located, DbError> {
        let url = format!(
            "{}/v1/tenants/{tenant}/database",
            self.config.realmctl_url.trim_end_matches('/')
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.config.credential)
            .send()
            .await
            .map_err(|e| DbError::Unavailable(format!("realmctl unreachable: {e}")))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let answer = serde_json::from_str::<serde_json::Value>(&body).ok();
        let message = || {
            answer
                .as_ref()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("realmctl answered {status}"))
        };
        let suspended = answer
            .as_ref()
            .is_some_and(|v| v["error"] == "tenant_suspended");
        match status.as_u16() {
            200 => {}
            404 if suspended => return Err(DbError::Unavailable(message())),
            404 | 410 => return Err(DbError::Gone(message())),
            401 | 403 => return Err(DbError::Refused(message())),
            _ => return Err(DbError::Unavailable(message())),
        }
        let loc: Location = serde_json::from_str(&body)
            .map_err(|e| DbError::Unavailable(format!("realmctl's answer: {e}")))?;
        match (loc.kind.as_str(), loc.path, loc.url, loc.auth_token) {
            ("file", Some(p), _, _) => Ok(Located::File(PathBuf::from(p))),
            // libsql would panic on a namespace that is no header value: check it here.
            ("remote", _, _, _) if !loc.namespace.as_deref().is_none_or(namespace_ok) => {
                Err(DbError::Unavailable(format!(
                    "tenant {tenant}: realmctl named a remote database with a malformed namespace"
                )))
            }
            ("remote", _, Some(url), Some(token)) if remote_url_ok(&url) => Ok(Located::Remote {
                url,
                namespace: loc.namespace,
                token,
                // No lifetime said: use it for this request only.
                lifetime: Duration::from_secs(loc.auth_token_expires_in.unwrap_or(0)),
            }),
            ("remote", ..) => Err(DbError::Unavailable(format!(
                "tenant {tenant}: realmctl named a remote database without a libsql://, https:// or http:// url and a token"
            ))),
            (kind, ..) => Err(DbError::Unavailable(format!(
                "tenant {tenant}: a {kind:?} database is not one this SDK opens"
            ))),
        }
    }
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;
