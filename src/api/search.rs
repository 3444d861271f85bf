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

/// Longest query accepted, in bytes.
const MAX_QUERY_BYTES: usize = 2048;
/// Deepest nesting of `(` groups and `-` negations accepted (the parser enforces it too).
use crate::search::query::MAX_NESTING;

/// Refuses queries too long or too deeply nested to parse safely.
pub fn check_shape(query: &str) -> Result<(), ApiError> {
    let refuse = |message: String| ApiError::BadRequest {
        code: "invalid_query",
        message,
    };
    if query.len() > MAX_QUERY_BYTES {
        return Err(refuse(format!(
            "the query is longer than {MAX_QUERY_BYTES} bytes; shorten it"
        )));
    }
    let (mut depth, mut negations, mut quoted) = (0usize, 0usize, false);
    for character in query.chars() {
        match character {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '-' => negations += 1,
            c if c.is_whitespace() => {}
            _ => negations = 0,
        }
        if depth > MAX_NESTING || negations > MAX_NESTING {
            return Err(refuse(format!(
                "the query nests more than {MAX_NESTING} levels of `(` or `-`; simplify it"
            )));
        }
    }
    Ok(())
}

/// `GET /v1/search`
pub async fn search(
    caller: Caller,
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_shape(&query.q)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_long_queries_are_refused_before_parsing() {
        assert!(check_shape("from:alice (order OR invoice) -is:closed \"a - - b\"").is_ok());
        assert!(check_shape("e-mail re-send x-y-z").is_ok());
        assert!(check_shape(&"(".repeat(33)).is_err());
        assert!(check_shape(&"- ".repeat(40)).is_err());
        assert!(check_shape(&"a".repeat(3000)).is_err());
        assert!(
            check_shape(&format!("\"{}\"", "(".repeat(100))).is_ok(),
            "quoted text is not nesting"
        );
    }
}
