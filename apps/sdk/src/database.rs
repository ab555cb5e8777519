//! The tenant's own database: asked of realmctl (`GET /v1/tenants/{id}/database` with the
//! app credential), cached (bounded, with expiry), opened with libsql and migrated once by
//! the app's own function. A cached database whose file was moved away (the tenant deleted:
//! realmctl archives it) is dropped at the next request, before any query runs on it.

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
    /// realmctl: the tenant is deleted (410) or unknown (404).
    Gone(String),
    /// realmctl refused this app credential for the tenant (401/403).
    Refused(String),
    /// realmctl unreachable, the tenant suspended or not provisioned (409), the file
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
    path: PathBuf,
    file: FileId,
    fetched: Instant,
    used: Instant,
}

/// Device and inode: the same path holding another file means another database.
type FileId = (u64, u64);

fn file_id(path: &std::path::Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
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
        if let Some(e) = entries.get_mut(tenant) {
            let fresh = now.duration_since(e.fetched) < self.config.ttl;
            if fresh && file_id(&e.path) == Some(e.file) {
                e.used = now;
                return e
                    .db
                    .connect()
                    .map_err(|e| DbError::Unavailable(format!("connect: {e}")));
            }
        }
        let path = match self.locate(tenant).await {
            Ok(p) => p,
            Err(err) => {
                entries.remove(tenant);
                return Err(err);
            }
        };
        let Some(file) = file_id(&path) else {
            entries.remove(tenant);
            return Err(DbError::Unavailable(format!(
                "tenant {tenant}: its database file {} is missing",
                path.display()
            )));
        };
        if let Some(e) = entries
            .get_mut(tenant)
            .filter(|e| e.path == path && e.file == file)
        {
            e.fetched = now;
            e.used = now;
            return e
                .db
                .connect()
                .map_err(|e| DbError::Unavailable(format!("connect: {e}")));
        }
        let unavailable = |what: &str, e: libsql::Error| {
            DbError::Unavailable(format!("tenant {tenant}: {what} {}: {e}", path.display()))
        };
        let db = libsql::Builder::new_local(&path)
            .build()
            .await
            .map_err(|e| unavailable("cannot open", e))?;
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
                path,
                file,
                fetched: now,
                used: now,
            },
        );
        Ok(conn)
    }

    /// How many databases are held open (for tests and metrics).
    pub async fn cached(&self) -> usize {
        self.entries.lock().await.len()
    }

    async fn locate(&self, tenant: &str) -> Result<PathBuf, DbError> {
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
        let message = || {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("realmctl answered {status}"))
        };
        match status.as_u16() {
            200 => {}
            404 | 410 => return Err(DbError::Gone(message())),
            401 | 403 => return Err(DbError::Refused(message())),
            _ => return Err(DbError::Unavailable(message())),
        }
        let loc: Location = serde_json::from_str(&body)
            .map_err(|e| DbError::Unavailable(format!("realmctl's answer: {e}")))?;
        match (loc.kind.as_str(), loc.path) {
            ("file", Some(p)) => Ok(PathBuf::from(p)),
            (kind, _) => Err(DbError::Unavailable(format!(
                "tenant {tenant}: a {kind} database is not supported by this SDK yet"
            ))),
        }
    }
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;
