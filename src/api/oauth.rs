//! `POST/GET /v1/mailboxes/{name}/authorize`: the OAuth2 authorization flow run by the daemon, so that
//! `inboxd mailbox authorize` works while the daemon holds the database. The daemon listens for the
//! provider's redirect on 127.0.0.1, exchanges the code and stores the tokens sealed; the CLI prints the
//! URL and polls the state.
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::{Caller, JsonBody, PathParams};
use super::error::ApiError;
use crate::store::{audit, mailboxes};

/// Longest wait for the redirect an admin may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Default wait for the redirect.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// Where an authorization of a mailbox stands.
#[derive(Debug, Clone)]
pub enum AuthorizationState {
    /// Waiting for the browser's redirect.
    Pending { url: String, redirect_uri: String },
    /// Tokens stored.
    Authorized,
    /// The flow ended without tokens.
    Failed(String),
}

/// `POST /v1/mailboxes/{name}/authorize` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// Loopback port of the redirect listener (default: the mailbox's `oauth.redirect_port`; 0 = free).
    pub port: Option<u16>,
    /// Seconds to wait for the redirect (default 600).
    pub timeout_secs: Option<u64>,
}

fn state_json(name: &str, state: Option<&AuthorizationState>) -> Value {
    match state {
        None => json!({ "mailbox": name, "state": "none" }),
        Some(AuthorizationState::Pending { url, redirect_uri }) => json!({
            "mailbox": name, "state": "pending", "authorization_url": url, "redirect_uri": redirect_uri,
        }),
        Some(AuthorizationState::Authorized) => json!({ "mailbox": name, "state": "authorized" }),
        Some(AuthorizationState::Failed(error)) => {
            json!({ "mailbox": name, "state": "failed", "error": error })
        }
    }
}

/// Starts an authorization: answers with the URL to open at once, then waits for the redirect in the
/// background.
pub async fn start(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(request): JsonBody<AuthorizeRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let configs = state.mailbox_configs().await?;
    let config = configs
        .into_iter()
        .find(|config| config.name == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!("mailbox `{name}` not found; see GET /v1/mailboxes"))
        })?;
    let oauth = config.oauth().cloned().ok_or_else(|| ApiError::BadRequest {
        code: "not_oauth",
        message: format!(
            "mailbox `{name}` signs in with a password; add a [mailbox.oauth] table to authorize it"
        ),
    })?;
    if let Some(AuthorizationState::Pending { .. }) = state.authorizations(&name) {
        return Err(ApiError::Conflict(format!(
            "an authorization of `{name}` is already waiting; open its URL (GET this route) or wait for its timeout"
        )));
    }
    let mailbox_id = match mailboxes::by_name(&state.store.db, &name).await? {
        Some(row) => row.id,
        None => mailboxes::upsert_from_config(&state.store.db, &config).await?,
    };
    let wait = request
        .timeout_secs
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT);
    let (authorization, pending) = crate::oauth::authorize::start(&name, &oauth, request.port)
        .await
        .map_err(|err| ApiError::Conflict(err.to_string()))?;
    let pending_state = AuthorizationState::Pending {
        url: authorization.url.clone(),
        redirect_uri: authorization.redirect_uri.clone(),
    };
    state.set_authorization(&name, pending_state.clone());
    audit::record(
        &state.store.db,
        &caller.actor(),
        "mailbox.authorize",
        Some(&name),
        json!({ "redirect_uri": authorization.redirect_uri }),
    )
    .await?;
    let task_state = state.clone();
    let task_name = name.clone();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            () = task_state.cancel.cancelled() => Err("the daemon is shutting down".to_string()),
            result = pending.finish(wait) => match result {
                Ok(tokens) => crate::oauth::authorize::store(
                    &task_state.store.db, &task_state.master, mailbox_id, &tokens,
                )
                .await
                .map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            },
        };
        let next = match outcome {
            Ok(generation) => {
                tracing::info!(mailbox = %task_name, generation, "mailbox authorized");
                AuthorizationState::Authorized
            }
            Err(error) => {
                tracing::warn!(mailbox = %task_name, error = %error, "mailbox authorization failed");
                AuthorizationState::Failed(error)
            }
        };
        task_state.set_authorization(&task_name, next);
    });
    Ok(Json(state_json(&name, Some(&pending_state))))
}

/// Where the last authorization of a mailbox stands.
pub async fn status(
    caller: Caller,
    State(state): State<ApiState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if mailboxes::by_name(&state.store.db, &name).await?.is_none()
        && !state
            .mailbox_configs()
            .await?
            .iter()
            .any(|config| config.name == name)
    {
        return Err(ApiError::NotFound(format!(
            "mailbox `{name}` not found; see GET /v1/mailboxes"
        )));
    }
    Ok(Json(state_json(
        &name,
        state.authorizations(&name).as_ref(),
    )))
}
