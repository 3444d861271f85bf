//! Agent endpoints on conversations: list, read, download, reply, state, assignee, notes.
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Caller, JsonBody, PathParams, QueryParams};
use super::error::ApiError;
use super::{ApiState, MAX_PAGE};
use crate::delivery::outbox::{ReplyRequest, enqueue_reply};
use crate::store::conversations::{self as store_conversations, Filter, STATES};
use crate::store::entities::{attachment, conversation, mailbox, message};
use crate::store::{audit, notes, read};
use sea_orm::EntityTrait;

/// Largest note or reply text accepted, in bytes.
const MAX_TEXT_BYTES: usize = 512 * 1024;

fn hidden(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("conversation {id} not found"))
}

/// The conversation if it exists and the caller may see its mailbox; else the same 404 either way.
pub(super) async fn visible(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
) -> Result<(conversation::Model, String), ApiError> {
    let row = store_conversations::by_id(&state.store.db, id)
        .await?
        .ok_or_else(|| hidden(id))?;
    let mailbox_name = mailbox::Entity::find_by_id(row.mailbox_id)
        .one(&state.store.db)
        .await?
        .map(|row| row.name)
        .ok_or_else(|| hidden(id))?;
    if !caller.sees_mailbox(&mailbox_name) {
        return Err(hidden(id));
    }
    Ok((row, mailbox_name))
}

/// Paging parameters shared by the list endpoints.
pub(super) fn page(limit: Option<u64>, offset: Option<u64>) -> Result<(u64, u64), ApiError> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("`limit` must be between 1 and {MAX_PAGE}"),
        });
    }
    Ok((limit, offset.unwrap_or(0)))
}

/// `GET /v1/conversations` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    mailbox: Option<String>,
    state: Option<String>,
    /// A name, or `none` for unassigned conversations.
    assignee: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

/// `GET /v1/conversations`
pub async fn list(
    caller: Caller,
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (limit, offset) = page(query.limit, query.offset)?;
    if let Some(wanted) = &query.state
        && !STATES.contains(&wanted.as_str())
    {
        return Err(ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("`state` must be one of open, pending, closed; got `{wanted}`"),
        });
    }
    let visible = caller.visible_mailboxes(&state).await?;
    let names: std::collections::HashMap<Uuid, String> = visible
        .iter()
        .map(|row| (row.id, row.name.clone()))
        .collect();
    let mut mailbox_ids = caller.mailbox_filter(&state).await?;
    if let Some(name) = &query.mailbox {
        let row = visible
            .iter()
            .find(|row| &row.name == name)
            .ok_or_else(|| ApiError::NotFound(format!("mailbox `{name}` not found")))?;
        mailbox_ids = Some(vec![row.id]);
    }
    let filter = Filter {
        mailbox_ids,
        state: query.state,
        assignee: query
            .assignee
            .map(|name| if name == "none" { String::new() } else { name }),
        limit,
        offset,
    };
    let (total, rows) = store_conversations::list(&state.store.db, &state.master, &filter).await?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| {
            let mut value = serde_json::to_value(&row).unwrap_or_default();
            value["mailbox"] = serde_json::json!(names.get(&row.mailbox_id));
            value
        })
        .collect();
    Ok(Json(serde_json::json!({
        "total": total, "limit": limit, "offset": offset, "conversations": items,
    })))
}

/// `GET /v1/conversations/{id}`: decrypted messages, attachments, delivery events, notes.
pub async fn show(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (row, mailbox_name) = visible(&state, &caller, id).await?;
    let view = read::conversation(&state.store.db, &state.master, id).await?;
    let notes = notes::list(&state.store.db, &state.master, id).await?;
    let mut value =
        serde_json::to_value(&view).map_err(|err| ApiError::Internal(err.to_string()))?;
    value["mailbox"] = serde_json::json!(mailbox_name);
    value["assignee"] = serde_json::json!(row.assignee);
    value["notes"] = serde_json::to_value(&notes).unwrap_or_default();
    Ok(Json(value))
}

/// `PUT /v1/conversations/{id}/state` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    state: String,
}

/// Sends the conversation's messages to the index again (their `is:` state changed).
async fn reindex(state: &ApiState, id: Uuid) {
    match crate::search::indexer::docs_for_conversation(&state.store, &state.master, id).await {
        Ok(docs) => state.index.add(docs).await,
        Err(err) => {
            tracing::warn!(conversation = %id, error = %err, "cannot reindex conversation; the next start does")
        }
    }
}

/// `PUT /v1/conversations/{id}/state`
pub async fn set_state(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
    JsonBody(body): JsonBody<StateBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !STATES.contains(&body.state.as_str()) {
        return Err(ApiError::invalid(format!(
            "`state` must be one of open, pending, closed; got `{}`",
            body.state
        )));
    }
    visible(&state, &caller, id).await?;
    store_conversations::set_state(&state.store.db, id, &body.state).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "conversation.state",
        Some(&id.to_string()),
        serde_json::json!({ "state": body.state }),
    )
    .await?;
    reindex(&state, id).await;
    Ok(Json(serde_json::json!({ "id": id, "state": body.state })))
}

/// `PUT /v1/conversations/{id}/assignee` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The agent's name; `null` unassigns.
    assignee: Option<String>,
}

/// `PUT /v1/conversations/{id}/assignee`
pub async fn assign(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let assignee = body.assignee.map(|name| name.trim().to_string());
    if let Some(name) = &assignee
        && (name.is_empty() || name.len() > 200 || name.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "`assignee` must be 1 to 200 printable characters, or null to unassign",
        ));
    }
    visible(&state, &caller, id).await?;
    store_conversations::set_assignee(&state.store.db, id, assignee.as_deref()).await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "conversation.assign",
        Some(&id.to_string()),
        serde_json::json!({ "assigned": assignee.is_some() }),
    )
    .await?;
    Ok(Json(serde_json::json!({ "id": id, "assignee": assignee })))
}

/// `POST /v1/conversations/{id}/replies` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    body: String,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    cc: Vec<String>,
}

/// `POST /v1/conversations/{id}/replies`: 202 once the reply is committed to the outbox.
pub async fn reply(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
    JsonBody(body): JsonBody<ReplyBody>,
) -> Result<Response, ApiError> {
    if body.body.trim().is_empty() {
        return Err(ApiError::invalid("`body` is empty; write the reply text"));
    }
    if body.body.len() > MAX_TEXT_BYTES {
        return Err(ApiError::invalid(format!(
            "`body` is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    for address in body.to.iter().chain(&body.cc) {
        if !address.contains('@') || address.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ApiError::invalid(
                "every `to`/`cc` entry must be a plain address like `name@example.org`",
            ));
        }
    }
    visible(&state, &caller, id).await?;
    let configs = state.mailbox_configs().await?;
    let recipients_given = body.to.len() + body.cc.len();
    let enqueued = enqueue_reply(
        &state.ingestor,
        &configs,
        ReplyRequest {
            conversation_id: id,
            body: body.body,
            to: body.to,
            cc: body.cc,
        },
    )
    .await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "conversation.reply",
        Some(&id.to_string()),
        serde_json::json!({ "message_id": enqueued.message_id, "recipients": enqueued.recipients, "recipients_given": recipients_given }),
    )
    .await?;
    state.outbox_wake.notify_one();
    reindex(&state, id).await;
    Ok((StatusCode::ACCEPTED, Json(enqueued)).into_response())
}

/// `GET /v1/conversations/{id}/notes`
pub async fn notes(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible(&state, &caller, id).await?;
    let notes = notes::list(&state.store.db, &state.master, id).await?;
    Ok(Json(serde_json::json!({ "notes": notes })))
}

/// `POST /v1/conversations/{id}/notes` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    body: String,
}

/// `POST /v1/conversations/{id}/notes`: sealed like mail, never sent.
pub async fn add_note(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(id): PathParams<Uuid>,
    JsonBody(body): JsonBody<NoteBody>,
) -> Result<Response, ApiError> {
    if body.body.trim().is_empty() || body.body.len() > MAX_TEXT_BYTES {
        return Err(ApiError::invalid(format!(
            "`body` must hold 1 to {MAX_TEXT_BYTES} bytes of text"
        )));
    }
    visible(&state, &caller, id).await?;
    let note = notes::add(
        &state.store.db,
        &state.master,
        id,
        &caller.token.name,
        &body.body,
    )
    .await?;
    audit::record(
        &state.store.db,
        &caller.actor(),
        "conversation.note",
        Some(&id.to_string()),
        serde_json::json!({ "note_id": note.id }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(note)).into_response())
}

/// The message row if it belongs to the (visible) conversation.
async fn message_in(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    message_id: Uuid,
) -> Result<message::Model, ApiError> {
    visible(state, caller, id).await?;
    message::Entity::find_by_id(message_id)
        .one(&state.store.db)
        .await?
        .filter(|row| row.conversation_id == id)
        .ok_or_else(|| ApiError::NotFound(format!("message {message_id} not found")))
}

/// `GET /v1/conversations/{id}/messages/{message_id}/raw`: the original message (`message/rfc822`).
pub async fn raw(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams((id, message_id)): PathParams<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    message_in(&state, &caller, id, message_id).await?;
    let raw = read::raw_message(
        &state.store.db,
        &state.master,
        state.store.blob_dir(),
        message_id,
    )
    .await?;
    Ok(download(
        raw,
        "message/rfc822",
        &format!("{message_id}.eml"),
    ))
}

/// `GET /v1/conversations/{id}/messages/{message_id}/attachments/{attachment_id}`
pub async fn attachment(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams((id, message_id, attachment_id)): PathParams<(Uuid, Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let row = message_in(&state, &caller, id, message_id).await?;
    let item = attachment::Entity::find_by_id(attachment_id)
        .one(&state.store.db)
        .await?
        .filter(|item| item.message_id == row.id)
        .ok_or_else(|| ApiError::NotFound(format!("attachment {attachment_id} not found")))?;
    let view = read::conversation(&state.store.db, &state.master, id).await?;
    let meta = view
        .messages
        .iter()
        .find(|message| message.id == message_id)
        .and_then(|message| message.attachments.iter().find(|a| a.id == attachment_id))
        .ok_or_else(|| ApiError::NotFound(format!("attachment {attachment_id} not found")))?;
    let filename = safe_filename(meta.meta.filename.as_deref(), item.part_index);
    let raw = read::raw_message(
        &state.store.db,
        &state.master,
        state.store.blob_dir(),
        message_id,
    )
    .await?;
    let index = usize::try_from(item.part_index).unwrap_or(usize::MAX);
    let bytes = tokio::task::spawn_blocking(move || crate::parse::extract_part(&raw, index))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .ok_or_else(|| {
            ApiError::NotFound(format!("attachment {attachment_id} content not found"))
        })?;
    Ok(download(bytes, "application/octet-stream", &filename))
}

/// A download response. Attachments are always `application/octet-stream` with `nosniff`: a browser
/// pointed at the API never renders mail-supplied HTML.
pub(super) fn download(bytes: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_fallback(filename),
        percent_encode(filename)
    );
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// A file name that is safe to save: the last path component only, no control characters, no
/// leading dots, at most 150 characters; `attachment-N` when nothing usable is left.
pub fn safe_filename(name: Option<&str>, part_index: i32) -> String {
    let last = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ':' | '*' | '?' | '<' | '>' | '|'))
        .take(150)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() {
        format!("attachment-{part_index}")
    } else {
        cleaned
    }
}

fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| *c != '"' && *c != '\\')
        .collect()
}

fn percent_encode(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_controls_and_leading_dots() {
        assert_eq!(safe_filename(Some("../../etc/passwd"), 1), "passwd");
        assert_eq!(safe_filename(Some("C:\\Windows\\evil.exe"), 1), "evil.exe");
        assert_eq!(safe_filename(Some("..\\..\\.bashrc"), 1), "bashrc");
        assert_eq!(safe_filename(Some("a\r\nb\"c.txt"), 1), "abc.txt");
        assert_eq!(safe_filename(Some("/"), 3), "attachment-3");
        assert_eq!(safe_filename(None, 2), "attachment-2");
        assert_eq!(safe_filename(Some(".."), 2), "attachment-2");
        assert!(safe_filename(Some(&"x".repeat(1000)), 1).len() <= 150);
        assert_eq!(percent_encode("réunion 1.pdf"), "r%C3%A9union%201.pdf");
        assert_eq!(ascii_fallback("réunion.pdf"), "r_union.pdf");
    }
}
