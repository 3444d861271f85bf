//! Bearer-token authentication, roles and mailbox scope; and the extractors that turn axum's
//! rejections into [`ApiError`]s.
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use uuid::Uuid;

use super::ApiState;
use super::error::ApiError;
use crate::store::entities::mailbox;
use crate::store::tokens::{self, ROLE_ADMIN, ValidToken};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: ValidToken,
}

impl Caller {
    /// The audit actor: `token:<name>`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token.name)
    }

    /// Whether this is an admin token.
    pub fn is_admin(&self) -> bool {
        self.token.role == ROLE_ADMIN
    }

    /// Refuses (403) unless this is an admin token.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs an admin token; agent tokens read and answer conversations only"
                    .to_string(),
            ))
        }
    }

    /// Whether the token may see a mailbox (admins and unscoped agents see every mailbox).
    pub fn sees_mailbox(&self, mailbox_name: &str) -> bool {
        self.is_admin()
            || self
                .token
                .mailboxes
                .as_ref()
                .is_none_or(|names| names.iter().any(|name| name == mailbox_name))
    }

    /// The mailbox rows this token may see.
    pub async fn visible_mailboxes(
        &self,
        state: &ApiState,
    ) -> Result<Vec<mailbox::Model>, ApiError> {
        let mut rows = crate::store::mailboxes::list(&state.store.db).await?;
        rows.retain(|row| self.sees_mailbox(&row.name));
        Ok(rows)
    }

    /// Ids of the visible mailboxes, or `None` when every mailbox is visible.
    pub async fn mailbox_filter(&self, state: &ApiState) -> Result<Option<Vec<Uuid>>, ApiError> {
        if self.is_admin() || self.token.mailboxes.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.visible_mailboxes(state)
                .await?
                .into_iter()
                .map(|row| row.id)
                .collect(),
        ))
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?;
        let text = header.to_str().map_err(|_| ApiError::Unauthorized)?;
        let (scheme, secret) = text.split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        // Looked up on every request: revoking a token takes effect at once.
        let token = tokens::authenticate(&state.store.db, secret.trim())
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if let Err(err) = tokens::touch(&state.store.db, token.id).await {
            tracing::debug!(error = %err, "cannot record token use");
        }
        Ok(Caller { token })
    }
}

/// A JSON body; malformed ones become clean 4xx [`ApiError`]s.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(JsonBody(value))
    }
}

/// Path parameters; malformed ones become clean 4xx [`ApiError`]s.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(PathParams(value))
    }
}

/// Query parameters; malformed ones become clean 4xx [`ApiError`]s.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(QueryParams(value))
    }
}
