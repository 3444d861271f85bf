//! Admin endpoints on mailboxes: list, add (IMAP or Maildir, with reply settings), status, change,
//! remove, test the connection, and a one-off sync pass.
use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::auth::{Caller, JsonBody, PathParams, QueryParams};
use super::error::ApiError;
use crate::config::{
    AfterFetch, ImapMailbox, MailboxConfig, MailboxSource, Outgoing, PasswordSource, Secret,
    SmtpConfig, TlsSetting,
};
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

/// Reply settings of a mailbox (`[mailbox.smtp]` in the config file).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpBody {
    host: String,
    port: Option<u16>,
    /// `implicit` (default, port 465) or `starttls` (port 587).
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    verp: Option<bool>,
}

/// `POST /v1/mailboxes` and `PUT /v1/mailboxes/{name}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MailboxBody {
    /// Required when adding; must match the path when changing.
    pub(crate) name: Option<String>,
    /// `imap` or `maildir`.
    kind: String,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    /// Required for a new IMAP mailbox; when changing, absent keeps the stored one.
    password: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    folders: Option<Vec<String>>,
    /// `leave` (default) or `mark_seen`.
    after_fetch: Option<String>,
    path: Option<PathBuf>,
    enabled: Option<bool>,
    /// The mailbox's own address (From of replies); needed with `smtp`.
    address: Option<String>,
    display_name: Option<String>,
    smtp: Option<SmtpBody>,
}

fn tls(value: Option<&str>, key: &str) -> Result<TlsSetting, ApiError> {
    match value.unwrap_or("implicit") {
        "implicit" => Ok(TlsSetting::Implicit),
        "starttls" => Ok(TlsSetting::StartTls),
        other => Err(ApiError::invalid(format!(
            "`{key}` must be `implicit` or `starttls`, got `{other}`"
        ))),
    }
}

fn required(value: Option<String>, key: &str) -> Result<String, ApiError> {
    value
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| ApiError::invalid(format!("`{key}` is required")))
}

/// Builds the mailbox config from a body; `previous` supplies passwords the body leaves out.
pub(crate) fn config_from(
    name: String,
    body: MailboxBody,
    previous: Option<&MailboxConfig>,
) -> Result<(MailboxConfig, Option<Secret>), ApiError> {
    let mut imap_password = None;
    let source = match body.kind.as_str() {
        "maildir" => {
            let path = body
                .path
                .ok_or_else(|| ApiError::invalid("`path` is required for a maildir mailbox"))?;
            if !path.is_absolute() {
                return Err(ApiError::invalid(
                    "`path` must be absolute (it is read by the daemon)",
                ));
            }
            MailboxSource::Maildir { path }
        }
        "imap" => {
            let tls = tls(body.tls.as_deref(), "tls")?;
            let password = match (body.password, previous.map(|p| &p.source)) {
                (Some(password), _) if !password.is_empty() => Secret::new(password),
                (
                    _,
                    Some(MailboxSource::Imap(ImapMailbox {
                        password: PasswordSource::Stored(secret),
                        ..
                    })),
                ) => secret.clone(),
                _ => {
                    return Err(ApiError::invalid(
                        "`password` is required for an imap mailbox",
                    ));
                }
            };
            imap_password = Some(password.clone());
            let after_fetch = match body.after_fetch.as_deref() {
                None | Some("leave") => AfterFetch::Leave,
                Some("mark_seen") => AfterFetch::MarkSeen,
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "`after_fetch` must be `leave` or `mark_seen`, got `{other}`"
                    )));
                }
            };
            MailboxSource::Imap(ImapMailbox {
                host: required(body.host, "host")?,
                port: body
                    .port
                    .unwrap_or(if body.insecure || tls == TlsSetting::StartTls {
                        143
                    } else {
                        993
                    }),
                tls,
                username: required(body.username, "username")?,
                password: PasswordSource::Stored(password),
                ca_file: body.ca_file,
                insecure: body.insecure,
                folders: body
                    .folders
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| vec!["INBOX".to_string()]),
                after_fetch,
            })
        }
        other => {
            return Err(ApiError::invalid(format!(
                "`kind` must be `imap` or `maildir`, got `{other}`"
            )));
        }
    };
    let outgoing = match body.smtp {
        None => None,
        Some(smtp) => {
            let address = required(body.address, "address")?;
            if !address.contains('@') {
                return Err(ApiError::invalid(
                    "`address` must be the mailbox's email address",
                ));
            }
            let tls = tls(smtp.tls.as_deref(), "smtp.tls")?;
            let previous_password = previous
                .and_then(|p| p.outgoing.as_ref())
                .and_then(|o| o.smtp.password.clone());
            Some(Outgoing {
                address,
                display_name: body.display_name,
                smtp: SmtpConfig {
                    host: smtp.host,
                    port: smtp.port.unwrap_or(if smtp.insecure {
                        25
                    } else if tls == TlsSetting::StartTls {
                        587
                    } else {
                        465
                    }),
                    tls,
                    password: match smtp.password {
                        Some(password) => Some(PasswordSource::Stored(Secret::new(password))),
                        None if smtp.username.is_some() => previous_password,
                        None => None,
                    },
                    username: smtp.username,
                    ca_file: smtp.ca_file,
                    insecure: smtp.insecure,
                    verp: smtp.verp.unwrap_or(true),
                },
            })
        }
    };
    let config = MailboxConfig {
        name,
        source,
        retention_days: previous.and_then(|p| p.retention_days),
        enabled: body.enabled.unwrap_or(true),
        outgoing,
    };
    Ok((config, imap_password))
}

/// `POST /v1/mailboxes`: 201; a running daemon starts syncing it within seconds.
pub async fn add(
    caller: Caller,
    State(state): State<ApiState>,
    JsonBody(mut body): JsonBody<MailboxBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let name = required(body.name.take(), "name")?;
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
