//! `GET /v1/search`: the query language of `crate::search::query` over the daemon's open index, scoped
//! to the caller's mailboxes; hits are resolved against the database.
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::auth::{Caller, QueryParams};
use super::error::ApiError;
use super::{ApiState, MAX_PAGE};
use crate::search::{Order, SearchOptions};
use crate::store::conversations as store_conversations;

/// `GET /v1/search` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    q: String,
    limit: Option<usize>,
    offset: Option<usize>,
    /// `newest` (default) or `relevance`.
    order: Option<String>,
}

/// `GET /v1/search`
pub async fn search(
    caller: Caller,
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || u64::try_from(limit).unwrap_or(u64::MAX) > MAX_PAGE {
        return Err(ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("`limit` must be between 1 and {MAX_PAGE}"),
        });
    }
    let order = match query.order.as_deref() {
        None | Some("newest") => Order::Newest,
        Some("relevance") => Order::Relevance,
        Some(other) => {
            return Err(ApiError::BadRequest {
                code: "invalid_parameter",
                message: format!("`order` must be `newest` or `relevance`, got `{other}`"),
            });
        }
    };
    let visible = caller.visible_mailboxes(&state).await?;
    let scope = (!caller.is_admin() && caller.token.mailboxes.is_some()).then(|| {
        visible
            .iter()
            .map(|row| row.name.clone())
            .collect::<Vec<_>>()
    });
    let options = SearchOptions {
        limit,
        offset: query.offset.unwrap_or(0),
        order,
        mailboxes: scope,
    };
    let index = state.index.index.clone();
    let text = query.q;
    let started = std::time::Instant::now();
    let results = tokio::task::spawn_blocking(move || index.search(&text, &options))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))??;
    crate::metrics::record_search(started.elapsed());
    let names: std::collections::HashMap<uuid::Uuid, String> =
        visible.into_iter().map(|row| (row.id, row.name)).collect();
    let mut hits = Vec::with_capacity(results.hits.len());
    for hit in &results.hits {
        // The index may lag a deletion by a moment: the database decides what exists.
        let Some(row) = store_conversations::by_id(&state.store.db, hit.conversation_id).await?
        else {
            continue;
        };
        let Some(mailbox) = names.get(&row.mailbox_id) else {
            continue;
        };
        let subject = store_conversations::subject_of(&state.store.db, &state.master, &row).await?;
        hits.push(serde_json::json!({
            "conversation_id": hit.conversation_id, "mailbox": mailbox, "state": row.state,
            "subject": subject, "newest": hit.newest, "matched_messages": hit.matched_messages,
            "score": hit.score, "snippet": hit.snippet,
        }));
    }
    Ok(Json(
        serde_json::json!({ "total": results.total_conversations, "hits": hits }),
    ))
}
