//! The API's one error type. Every error leaves as `{"error":{"code":"...","message":"..."}}`: the code
//! is stable (scripts match on it), the message says what to fix. Internal details go to the log only.
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use crate::delivery::DeliveryError;
use crate::search::SearchError;
use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, an unknown one or a revoked one (never says which).
    #[error("send a valid, unrevoked API token as `Authorization: Bearer <token>`")]
    Unauthorized,
    /// The token's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist or is outside the token's mailboxes (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed; `code` names the kind (`invalid_json`, `invalid_request`…).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The request conflicts with what is stored (a name in use, a config-file mailbox…).
    #[error("{0}")]
    Conflict(String),
    /// The request body is larger than the API accepts.
    #[error("the request body is larger than {0} bytes; send less")]
    TooLarge(usize),
    /// The endpoint exists but not with this method.
    #[error("this endpoint does not take that method; see /openapi.json")]
    MethodNotAllowed,
    /// The body is not JSON (`Content-Type: application/json` missing).
    #[error("send the body as JSON with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// A dependency (database, index) is not available right now; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a failure the client cannot fix; details are in the daemon's log.
    #[error("internal error; the daemon's log has the details")]
    Internal(String),
}

impl ApiError {
    /// A 400 with the generic `invalid_request` code.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_request",
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            warn!(error = %detail, "api request failed");
        }
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"inboxd\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            err if err.is_transient() => ApiError::Unavailable(format!(
                "the database is busy or unreachable ({err}); retry"
            )),
            err => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::from(StoreError::from(err))
    }
}

impl From<SearchError> for ApiError {
    fn from(err: SearchError) -> Self {
        match err {
            SearchError::Query(query) => ApiError::BadRequest {
                code: "invalid_query",
                message: query.to_string(),
            },
            err if err.is_transient() => ApiError::Unavailable(err.to_string()),
            err => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<DeliveryError> for ApiError {
    fn from(err: DeliveryError) -> Self {
        match err {
            DeliveryError::Invalid(message) => ApiError::invalid(message),
            DeliveryError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            err @ DeliveryError::NoSmtp(_) => ApiError::Conflict(err.to_string()),
            DeliveryError::Store(err) => ApiError::from(err),
            err => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection;
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::JsonDataError(err) => ApiError::BadRequest {
                code: "invalid_body",
                message: format!(
                    "{}; see /openapi.json for the expected fields",
                    err.body_text()
                ),
            },
            JsonRejection::JsonSyntaxError(err) => ApiError::BadRequest {
                code: "invalid_json",
                message: format!("the body is not valid UTF-8 JSON: {}", err.body_text()),
            },
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge(super::MAX_BODY_BYTES)
            }
            other => ApiError::BadRequest {
                code: "invalid_body",
                message: other.body_text(),
            },
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!(
                "{}; see /openapi.json for the parameters",
                rejection.body_text()
            ),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest {
            code: "invalid_path",
            message: format!("{}; ids are UUIDs", rejection.body_text()),
        }
    }
}
