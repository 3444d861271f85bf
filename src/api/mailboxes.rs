//! Admin endpoints on mailboxes: list, add (IMAP or Maildir, with reply settings), status, change,
//! remove, test the connection, and a one-off sync pass.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::auth::{Caller, JsonBody, PathParams, QueryParams};
use super::error::ApiError;
pub(crate) use super::mailbox_body::{MailboxBody, config_from};
use crate::config::{MailboxConfig, MailboxSource};
use crate::store::entities::mailbox;
use crate::store::mailboxes::{self, ORIGIN_ADMIN, status_json};
use crate::store::{audit, messages};

/// `GET /v1/mailboxes`
pub async fn list(
    caller: Caller,
    State(state): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let rows = mailboxes::list(&state.store.db).await?;
    Ok(Json(
        serde_json::json!({ "mailboxes": rows.iter().map(status_json).collect::<Vec<_>>() }),
    ))
}

async fn existing(state: &ApiState, name: &str) -> Result<mailbox::Model, ApiError> {
    mailboxes::by_name(&state.store.db, name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("mailbox `{name}` not found; see GET /v1/mailboxes"))
        })
}

/// `GET /v1/mailboxes/{name}`: status and last error.
pub async fn status(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let row = existing(&state, &name).await?;
    Ok(Json(status_json(&row)))
}

/// `POST /v1/mailboxes`: 201; a running daemon starts syncing it within seconds.
pub async fn add(
    caller: Caller,
    State(state): State<ApiState>,
    JsonBody(mut body): JsonBody<MailboxBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let name = body
        .name
        .take()
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("`name` is required"))?;
    if !crate::config::is_valid_name(&name) {
        return Err(ApiError::invalid(format!(
            "`name` `{name}`: use letters, digits, `-`, `_` or `.`"
        )));
    }
    if state
        .mailboxes
        .from_config
        .read()
        .await
        .iter()
        .any(|m| m.name == name)
        || mailboxes::by_name(&state.store.db, &name).await?.is_some()
    {
        return Err(ApiError::Conflict(format!(
            "a mailbox named `{name}` exists; pick another name or PUT to change it"
        )));
    }
    let (config, password) = config_from(name.clone(), body, None)?;
    mailboxes::save_admin(&state.store.db, &state.master, &config, password.as_ref()).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "mailbox.add",
        Some(&name),
        serde_json::json!({ "kind": mailbox_kind(&config), "replies": config.outgoing.is_some() }),
    )
    .await?;
    state.mailboxes.changed.notify_one();
    let row = existing(&state, &name).await?;
    Ok((StatusCode::CREATED, Json(status_json(&row))).into_response())
}

fn mailbox_kind(config: &MailboxConfig) -> &'static str {
    match config.source {
        MailboxSource::Imap(_) => "imap",
        MailboxSource::Maildir { .. } => "maildir",
    }
}

async fn admin_row(state: &ApiState, name: &str) -> Result<mailbox::Model, ApiError> {
    let row = existing(state, name).await?;
    if row.origin != ORIGIN_ADMIN {
        return Err(ApiError::Conflict(format!(
            "mailbox `{name}` comes from the config file; change it there and reload (SIGHUP)"
        )));
    }
    Ok(row)
}

/// `PUT /v1/mailboxes/{name}`: replaces the settings (passwords left out are kept).
pub async fn change(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(mut body): JsonBody<MailboxBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    if body.name.take().is_some_and(|given| given != name) {
        return Err(ApiError::invalid(
            "`name` cannot change; remove and add the mailbox instead",
        ));
    }
    let row = admin_row(&state, &name).await?;
    let previous = mailboxes::admin_config(&state.master, &row)?;
    let (config, password) = config_from(name.clone(), body, Some(&previous))?;
    mailboxes::save_admin(&state.store.db, &state.master, &config, password.as_ref()).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "mailbox.change",
        Some(&name),
        serde_json::json!({ "kind": mailbox_kind(&config), "enabled": config.enabled, "replies": config.outgoing.is_some() }),
    )
    .await?;
    state.mailboxes.changed.notify_one();
    let row = existing(&state, &name).await?;
    Ok(Json(status_json(&row)))
}

/// `DELETE /v1/mailboxes/{name}` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    #[serde(default)]
    delete_messages: bool,
}

/// `DELETE /v1/mailboxes/{name}`: refuses while messages are stored unless `delete_messages=true`.
pub async fn remove(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
    QueryParams(query): QueryParams<RemoveQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let row = admin_row(&state, &name).await?;
    let stored = messages::count_for_mailbox(&state.store.db, row.id).await?;
    if stored > 0 && !query.delete_messages {
        return Err(ApiError::Conflict(format!(
            "mailbox `{name}` has {stored} stored messages; add `delete_messages=true` (CLI: --delete-messages) to remove them too"
        )));
    }
    // Through the purge path: rows, blob files, index entries and data keys; audited per batch.
    let erased = crate::purge::erase::remove_mailbox(
        &state.store,
        Some(&state.index),
        &name,
        &caller.actor(),
    )
    .await
    .map_err(|err| match err {
        crate::purge::erase::RemoveError::NotFound(_) => {
            ApiError::NotFound(format!("mailbox `{name}` not found; see GET /v1/mailboxes"))
        }
        crate::purge::erase::RemoveError::Store(err) => ApiError::from(err),
        held => ApiError::Conflict(held.to_string()),
    })?;
    tracing::info!(mailbox = %name, conversations = erased.conversations, messages = erased.messages, "mailbox removed");
    state.mailboxes.changed.notify_one();
    Ok(Json(
        serde_json::json!({ "removed": name, "messages_deleted": stored }),
    ))
}

/// `POST /v1/mailboxes/{name}/test`: connects (IMAP login and folders, or the Maildir; SMTP if set).
pub async fn test(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<crate::ingest::once::ConnectionTest>, ApiError> {
    caller.require_admin()?;
    let configs = state.mailbox_configs().await?;
    let config = configs
        .into_iter()
        .find(|config| config.name == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!("mailbox `{name}` not found; see GET /v1/mailboxes"))
        })?;
    let timeout = state.ingest_config().await.network_timeout;
    let row = mailboxes::by_name(&state.store.db, &name).await?;
    let context = row.map(|row| crate::ingest::imap_sync::OAuthContext {
        db: &state.store.db,
        key: &state.master,
        mailbox_id: row.id,
    });
    let result = crate::ingest::once::test_connection(&config, timeout, context.as_ref()).await;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "mailbox.test",
        Some(&name),
        serde_json::json!({ "ok": result.ok }),
    )
    .await?;
    Ok(Json(result))
}

/// `POST /v1/sync` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    /// Only this mailbox (default: every enabled one).
    mailbox: Option<String>,
}

/// `POST /v1/sync`: one pass now, through the daemon (its index sees the new mail at once).
pub async fn sync(
    caller: Caller,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<SyncBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let mut targets = state.mailbox_configs().await?;
    targets.retain(|m| m.enabled && body.mailbox.as_ref().is_none_or(|name| &m.name == name));
    if let (Some(name), true) = (&body.mailbox, targets.is_empty()) {
        return Err(ApiError::NotFound(format!(
            "no enabled mailbox named `{name}`; see GET /v1/mailboxes"
        )));
    }
    let _running = state.sync_running.lock().await;
    let ingest = state.ingest_config().await;
    let cancel = state.cancel.child_token();
    let reports =
        crate::ingest::once::sync_mailboxes(&state.ingestor, &targets, &ingest, &cancel).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "sync.run",
        body.mailbox.as_deref(),
        serde_json::json!({
            "mailboxes": reports.len(),
            "stored": reports.iter().map(|r| r.stored).sum::<u64>(),
            "failed": reports.iter().filter(|r| r.error.is_some()).count(),
        }),
    )
    .await?;
    Ok(Json(serde_json::json!({ "reports": reports })))
}
