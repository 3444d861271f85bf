//! Admin endpoints of retention, legal hold, purge and data-subject requests. The work is done by
//! `crate::purge`; these handlers check the role, translate, and audit what `purge` does not audit itself.
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::ApiState;
use super::auth::{Caller, JsonBody, PathParams, QueryParams};
use super::error::ApiError;
use crate::purge::hold::{self, HoldTarget};
use crate::purge::{retention, subject};
use crate::store::audit;

/// `PUT /v1/mailboxes/{name}/retention` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Days after a conversation's last activity; `null` keeps conversations forever.
    days: Option<u32>,
}

/// `PUT /v1/mailboxes/{name}/retention`: takes effect at the next purge run.
pub async fn set_retention(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<RetentionBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    if body.days == Some(0) {
        return Err(ApiError::invalid(
            "`days` must be at least 1 (or null to keep conversations forever)",
        ));
    }
    if hold::retention_from_file(&state.mailboxes.from_config.read().await, &name) {
        return Err(ApiError::Conflict(format!(
            "mailbox `{name}` takes retention_days from the config file; change it there and reload the daemon"
        )));
    }
    let previous = hold::set_retention(&state.store, &name, body.days).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "retention.set",
        Some(&format!("mailbox:{name}")),
        serde_json::json!({ "retention_days": body.days, "previous": previous }),
    )
    .await?;
    Ok(Json(
        serde_json::json!({ "mailbox": name, "retention_days": body.days }),
    ))
}

/// A hold's reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    reason: String,
}

async fn place(
    caller: &Caller,
    state: &ApiState,
    target: HoldTarget,
    reason: Option<&str>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    if reason.is_some_and(|text| text.trim().is_empty() || text.len() > 2000) {
        return Err(ApiError::invalid(
            "`reason` must say why the hold is placed (1 to 2000 characters)",
        ));
    }
    hold::set_hold(&state.store, &state.master, &target, reason).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        if reason.is_some() {
            "hold.set"
        } else {
            "hold.release"
        },
        Some(&target.to_string()),
        serde_json::json!({}),
    )
    .await?;
    Ok(Json(
        serde_json::json!({ "target": target, "legal_hold": reason.is_some() }),
    ))
}

/// `PUT /v1/conversations/{id}/hold`
pub async fn hold_conversation(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
    JsonBody(body): JsonBody<HoldBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    place(
        &caller,
        &state,
        HoldTarget::Conversation(id),
        Some(&body.reason),
    )
    .await
}

/// `DELETE /v1/conversations/{id}/hold`
pub async fn release_conversation(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    place(&caller, &state, HoldTarget::Conversation(id), None).await
}

/// `PUT /v1/mailboxes/{name}/hold`
pub async fn hold_mailbox(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<HoldBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    place(
        &caller,
        &state,
        HoldTarget::Mailbox(name),
        Some(&body.reason),
    )
    .await
}

/// `DELETE /v1/mailboxes/{name}/hold`
pub async fn release_mailbox(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    place(&caller, &state, HoldTarget::Mailbox(name), None).await
}

/// `GET /v1/holds`
pub async fn holds(
    caller: Caller,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let holds = hold::list_holds(&state.store, &state.master).await?;
    Ok(Json(serde_json::json!({ "holds": holds })))
}

/// `POST /v1/purge` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/purge`: one retention run now (or, with `dry_run=true`, what it would delete).
pub async fn purge(
    caller: Caller,
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<PurgeQuery>,
) -> Result<Json<retention::PurgeReport>, ApiError> {
    caller.require_admin()?;
    let options = retention::PurgeOptions {
        dry_run: query.dry_run,
        actor: caller.actor(),
        ..retention::PurgeOptions::default()
    };
    let report = retention::run(&state.store, &state.master, Some(&state.index), &options).await?;
    if !query.dry_run {
        let total = report.total();
        crate::metrics::record_purge(total.conversations, total.messages);
    }
    Ok(Json(report))
}

/// A data-subject request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectBody {
    address: String,
}

/// `POST /v1/subjects/export`: a tar archive (original .eml files, attachments, `manifest.json`).
pub async fn export(
    caller: Caller,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<SubjectBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    subject::validate_address(&body.address).map_err(ApiError::invalid)?;
    let (archive, _) =
        subject::export_archive(&state.store, &state.master, &body.address, &caller.actor())
            .await?;
    Ok(super::conversations::download(
        archive,
        "application/x-tar",
        "subject-export.tar",
    ))
}

/// `POST /v1/subjects/erase`: erases every message involving the address, except under legal hold.
pub async fn erase(
    caller: Caller,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<SubjectBody>,
) -> Result<Json<subject::EraseReport>, ApiError> {
    caller.require_admin()?;
    subject::validate_address(&body.address).map_err(ApiError::invalid)?;
    let report = subject::erase(
        &state.store,
        &state.master,
        Some(&state.index),
        &body.address,
        &caller.actor(),
    )
    .await?;
    crate::metrics::record_purge(report.erased.conversations, report.erased.messages);
    Ok(Json(report))
}
