//! Liveness, readiness and metrics.
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::delivery::outbox::state;
use crate::store::entities::outbox;

/// `GET /healthz`: the process answers (no auth).
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` waits for the database before it answers 503.
const READY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: the database answers and the index can be read (no auth).
pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    // Bounded: while the database is down the pool waits for a connection far longer than a health
    // check may take, and a probe that hangs reports nothing.
    let database = tokio::time::timeout(
        READY_PROBE_TIMEOUT,
        state.store.db.execute_unprepared("SELECT 1"),
    )
    .await
    .is_ok_and(|result| result.is_ok());
    let index = state.index.clone();
    let index_ok = tokio::task::spawn_blocking(move || index.index.reload().is_ok())
        .await
        .unwrap_or(false);
    let status = if database && index_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(serde_json::json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": word(database),
            "index": word(index_ok),
        })),
    )
}

/// `GET /metrics`: Prometheus text format (any valid token).
pub async fn metrics(
    _caller: Caller,
    State(state): State<ApiState>,
) -> Result<impl IntoResponse, ApiError> {
    let queued = outbox::Entity::find()
        .filter(outbox::Column::State.is_in([state::QUEUED, state::RETRY]))
        .count(&state.store.db)
        .await?;
    let mailbox_status = crate::store::mailboxes::list(&state.store.db)
        .await?
        .into_iter()
        .map(|row| (row.name, row.status))
        .collect();
    let text = crate::metrics::render(&crate::metrics::Gauges {
        outbox_queued: queued,
        mailbox_status,
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
