//! `GET /v1/tenants/{id}/events`: a tenant's provisioning as server-sent events — the
//! current state first, then one `progress` event per change; `ready` or `deleted` ends it.

use super::{tenant_id, ApiError, AppState};
use crate::ids::TenantId;
use crate::provision::TenantState;
use crate::service::Control;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

struct Feed {
    control: Arc<Control>,
    id: TenantId,
    rx: broadcast::Receiver<TenantId>,
    first: bool,
    done: bool,
    last: Option<String>,
}

pub async fn stream(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = tenant_id(&raw)?;
    // Subscribe before reading, so no change between the two is missed.
    let rx = s.control.provision_events();
    s.control.tenant(&id)?;
    let feed = Feed {
        control: Arc::clone(&s.control),
        id,
        rx,
        first: true,
        done: false,
        last: None,
    };
    let events = stream::unfold(feed, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            if !f.first {
                match f.rx.recv().await {
                    Ok(changed) if changed != f.id => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
            f.first = false;
            let Ok(view) = f.control.tenant(&f.id) else {
                f.done = true;
                let e = Event::default()
                    .event("deleted")
                    .data(format!("{{\"id\":\"{}\"}}", f.id));
                return Some((Ok::<_, Infallible>(e), f));
            };
            let data = serde_json::to_string(&view).unwrap_or_default();
            if f.last.as_deref() == Some(data.as_str()) {
                continue;
            }
            f.last = Some(data.clone());
            let name = match view.provisioning.as_ref().map(|p| p.state) {
                Some(TenantState::Ready) | None => {
                    f.done = true;
                    "ready"
                }
                Some(TenantState::Failed | TenantState::DeleteFailed) => "failed",
                _ => "progress",
            };
            return Some((Ok(Event::default().event(name).data(data)), f));
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
