//! HTTP: the HTML page (works with or without JavaScript, inside the shell's frame) and the
//! JSON API, under a base path (`/todos` by default), the caller from the gateway's signed
//! assertion (see [`crate::identity`]).

use crate::identity::{self, Caller, Identify};
use crate::store::{Store, Todo};
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

const MAX_TITLE_CHARS: usize = 200;

/// The app never lets another origin frame it; the gateway adds the same policy on top.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

#[derive(Clone)]
struct App {
    store: Arc<Store>,
    base: Arc<str>,
    identify: Identify,
}

/// The whole app under `base` (e.g. `/todos`), plus `/healthz`.
pub fn app(store: Arc<Store>, base: &str, identify: Identify) -> Router {
    let base = base.trim_end_matches('/');
    let state = App {
        store,
        base: base.into(),
        identify,
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(&format!("{base}/healthz"), get(|| async { "ok" }))
        .route(&format!("{base}/"), get(page).post(add_form))
        .route(&format!("{base}/{{id}}/toggle"), post(toggle_form))
        .route(&format!("{base}/api/todos"), get(list_json).post(add_json))
        .route(&format!("{base}/static/todos.js"), get(js))
        .route(&format!("{base}/static/todos.css"), get(css))
        .route(
            if base.is_empty() { "/index.html" } else { base },
            get(|State(app): State<App>| async move {
                Redirect::permanent(&format!("{}/", app.base))
            }),
        )
        .with_state(state)
}

/// Handlers take the caller as an argument; a request without one is refused before them.
impl axum::extract::FromRequestParts<App> for Caller {
    type Rejection = identity::Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &App,
    ) -> Result<Self, Self::Rejection> {
        app.identify.caller(&parts.headers).await
    }
}

/// A request refused before any work: status and a JSON `{"error": …}`.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({"error": message}))).into_response()
}

/// A store failure: the tenant's database could not be had (410 once the tenant is
/// deleted, 403, 503 — the SDK's answer), or a query failed (500, details logged).
fn internal(e: crate::store::Error) -> Response {
    match e {
        crate::store::Error::Database(e) => e.into_response(),
        crate::store::Error::Sql(e) => {
            log::error!("database: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "database error")
        }
    }
}

/// A title as stored: trimmed, 1–200 characters, no control characters.
fn clean_title(raw: &str) -> Result<String, Refusal> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > MAX_TITLE_CHARS || t.chars().any(char::is_control) {
        return Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "title must be 1-200 characters without control characters",
        ));
    }
    Ok(t.to_string())
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

async fn page(State(app): State<App>, who: Caller) -> Response {
    match app.store.list(&who.tenant, &who.subject).await {
        Ok(todos) => html(render(&app.base, &who, &todos)),
        Err(e) => internal(e),
    }
}

async fn add_form(State(app): State<App>, who: Caller, Form(new): Form<NewTodo>) -> Response {
    let title = match clean_title(&new.title) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    match app.store.add(&who.tenant, &who.subject, &title).await {
        Ok(_) => Redirect::to(&format!("{}/", app.base)).into_response(),
        Err(e) => internal(e),
    }
}

async fn toggle_form(State(app): State<App>, who: Caller, Path(id): Path<i64>) -> Response {
    match app.store.toggle(&who.tenant, &who.subject, id).await {
        Ok(true) => Redirect::to(&format!("{}/", app.base)).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such todo"),
        Err(e) => internal(e),
    }
}

async fn list_json(State(app): State<App>, who: Caller) -> Response {
    match app.store.list(&who.tenant, &who.subject).await {
        Ok(todos) => {
            Json(serde_json::json!({"subject": who.subject, "todos": todos})).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn add_json(State(app): State<App>, who: Caller, Json(new): Json<NewTodo>) -> Response {
    let title = match clean_title(&new.title) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    match app.store.add(&who.tenant, &who.subject, &title).await {
        Ok(todo) => (StatusCode::CREATED, Json(todo)).into_response(),
        Err(e) => internal(e),
    }
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/todos.js"),
    )
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/todos.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn html(body: String) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn render(base: &str, who: &Caller, todos: &[Todo]) -> String {
    let mut items = String::new();
    for t in todos {
        items.push_str(&format!(
            "<li class=\"todo{done}\" data-id=\"{id}\"><form method=\"post\" action=\"{base}/{id}/toggle\">\
             <button type=\"submit\" class=\"toggle\" aria-label=\"toggle\">{mark}</button></form>\
             <span class=\"title\">{title}</span></li>\n",
            done = if t.done { " done" } else { "" },
            id = t.id,
            mark = if t.done { "&#10003;" } else { "&nbsp;" },
            title = escape(&t.title),
        ));
    }
    let open = todos.iter().filter(|t| !t.done).count();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Todos</title><link rel=\"stylesheet\" href=\"{base}/static/todos.css\">\
         <script src=\"/.realmgate/shell/app.js\"></script>\
         <script src=\"{base}/static/todos.js\" defer></script></head>\n\
         <body data-open=\"{open}\"><main><h1>Todos</h1>\
         <p class=\"who\">{tenant} · {subject}</p>\
         <form id=\"new-todo\" method=\"post\" action=\"{base}/\">\
         <input id=\"new-title\" name=\"title\" maxlength=\"200\" required placeholder=\"What needs doing?\" autocomplete=\"off\">\
         <button type=\"submit\" id=\"add\">Add</button></form>\n\
         <ul id=\"todos\">\n{items}</ul>{empty}</main></body></html>\n",
        tenant = escape(&who.tenant),
        subject = escape(&who.subject),
        empty = if todos.is_empty() {
            "<p id=\"empty\">Nothing to do yet.</p>"
        } else {
            ""
        },
    )
}

/// Text as HTML: the five characters that matter, escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
