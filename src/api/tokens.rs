//! Admin endpoints: tokens and the audit log; and `whoami` for any token.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::auth::{Caller, JsonBody, PathParams, QueryParams};
use super::error::ApiError;
use crate::store::audit;
use crate::store::tokens::{self, LOCAL_ADMIN, ROLE_ADMIN, ROLE_AGENT};

/// `GET /v1/whoami`: the caller's token name, role and mailboxes.
pub async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": caller.token.name, "role": caller.token.role, "mailboxes": caller.token.mailboxes,
    }))
}

/// `GET /v1/tokens`
pub async fn list(
    caller: Caller,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let tokens = tokens::list(&state.store.db).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

/// `POST /v1/tokens` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    role: String,
    /// Agent tokens only: the mailbox names it may see (absent = all).
    mailboxes: Option<Vec<String>>,
}

/// `POST /v1/tokens`: the secret is in this answer only.
pub async fn create(
    caller: Caller,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    if !crate::config::is_valid_name(&body.name) || body.name.len() > 64 {
        return Err(ApiError::invalid(
            "`name`: use 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    if body.name == LOCAL_ADMIN {
        return Err(ApiError::Conflict(format!(
            "`{LOCAL_ADMIN}` is reserved for the daemon's own CLI token"
        )));
    }
    if body.role != ROLE_ADMIN && body.role != ROLE_AGENT {
        return Err(ApiError::invalid(format!(
            "`role` must be `admin` or `agent`, got `{}`",
            body.role
        )));
    }
    if body.role == ROLE_ADMIN && body.mailboxes.is_some() {
        return Err(ApiError::invalid(
            "admin tokens see every mailbox: drop `mailboxes` or use role `agent`",
        ));
    }
    if let Some(names) = &body.mailboxes {
        let known = crate::store::mailboxes::list(&state.store.db).await?;
        for name in names {
            if !known.iter().any(|row| &row.name == name) {
                return Err(ApiError::invalid(format!(
                    "`mailboxes`: no mailbox named `{name}`; see GET /v1/mailboxes"
                )));
            }
        }
    }
    if tokens::name_in_use(&state.store.db, &body.name).await? {
        return Err(ApiError::Conflict(format!(
            "a token named `{}` exists; revoke it first or pick another name",
            body.name
        )));
    }
    let (info, secret) =
        tokens::create(&state.store.db, &body.name, &body.role, body.mailboxes).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "token.create",
        Some(&info.name),
        serde_json::json!({ "id": info.id, "role": info.role, "mailboxes": info.mailboxes }),
    )
    .await?;
    let mut value = serde_json::to_value(&info).unwrap_or_default();
    value["secret"] = serde_json::json!(secret);
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// `DELETE /v1/tokens/{token}`: by id or name; effective for the next request.
pub async fn revoke(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(token): PathParams<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let revoked = tokens::revoke(&state.store.db, &token).await?;
    if revoked.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no active token with name or id `{token}`"
        )));
    }
    for info in &revoked {
        audit::record(
            &state.store.db,
            &caller.actor(),
            "token.revoke",
            Some(&info.name),
            serde_json::json!({ "id": info.id }),
        )
        .await?;
    }
    Ok(Json(serde_json::json!({ "revoked": revoked })))
}

/// `GET /v1/audit` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u64>,
    offset: Option<u64>,
}

/// `GET /v1/audit`: newest first.
pub async fn audit(
    caller: Caller,
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let (limit, offset) = super::conversations::page(query.limit, query.offset)?;
    let records = audit::list(&state.store.db, limit, offset).await?;
    Ok(Json(serde_json::json!({ "records": records })))
}
