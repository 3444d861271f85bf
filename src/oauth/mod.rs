//! OAuth2 sign-in for mailboxes (Gmail, Microsoft 365, any provider with a token endpoint).
//!
//! A mailbox with `[mailbox.oauth]` keeps a refresh token sealed under the master key (`store::oauth`). Before
//! each IMAP or SMTP login, [`TokenSource`] hands out an access token: the cached one while it has more than
//! [`REFRESH_MARGIN`] left, else a fresh one from the provider's token endpoint (RFC 6749 §6). After a login
//! refused with a token, the caller asks again with that token marked as rejected and gets a new one. A
//! rotated refresh token is written in the same single update as the new access token, before anything
//! uses either. `invalid_grant` (revoked, expired, password changed) marks the mailbox
//! `needs_reauthorization`: no further requests go to the provider until an admin runs
//! `inboxd mailbox authorize NAME` ([`authorize`]), and the other mailboxes are not affected.
//!
//! Tokens never reach logs: [`crate::config::Secret`] hides them from `Debug`, and error messages carry
//! only the provider's error code and description.
pub mod authorize;
mod http;
pub mod sasl;
mod tokens;

use std::time::Duration;

pub use authorize::{AuthorizationRequest, PendingAuthorization};
pub use tokens::{TokenResponse, TokenSource, client_secret, exchange_code, refresh};

use crate::crypto::CryptoError;
use crate::store::StoreError;

/// An access token is renewed when it has less than this left, so it never expires mid-login.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Longest a token endpoint exchange may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Status word of a mailbox whose refresh token the provider no longer accepts.
pub const NEEDS_REAUTHORIZATION: &str = "needs_reauthorization";

/// An OAuth2 failure.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider refused the refresh token or code (`invalid_grant`): revoked, expired, or issued
    /// to another client. Only a new authorization helps.
    #[error(
        "the provider refused the refresh token ({description}); run `inboxd mailbox authorize {mailbox}`"
    )]
    InvalidGrant {
        mailbox: String,
        description: String,
    },
    /// No refresh token stored yet, or one marked unusable earlier.
    #[error(
        "mailbox {mailbox} is not authorized (or its authorization was revoked); run `inboxd mailbox authorize {mailbox}`"
    )]
    NotAuthorized { mailbox: String },
    /// The provider refused the client itself (`invalid_client`, `unauthorized_client`…): fix the
    /// client id or secret in the config.
    #[error(
        "the provider refused the client ({code}: {description}); check oauth.client_id and the client secret"
    )]
    Client { code: String, description: String },
    /// The endpoint could not be reached, timed out or answered 5xx: retried with backoff.
    #[error("token endpoint {url} unavailable: {message}")]
    Unavailable { url: String, message: String },
    /// The endpoint answered something that is not a token response.
    #[error("token endpoint {url} answered unexpectedly: {message}")]
    Protocol { url: String, message: String },
    /// The authorization flow failed (state mismatch, the admin declined, timeout…).
    #[error("authorization failed: {0}")]
    Authorization(String),
    #[error("client secret: {0}")]
    Secret(#[from] crate::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("encryption: {0}")]
    Crypto(#[from] CryptoError),
}

impl OAuthError {
    /// Whether only a new `mailbox authorize` can fix this.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(
            self,
            OAuthError::InvalidGrant { .. } | OAuthError::NotAuthorized { .. }
        )
    }

    /// Whether a later retry may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            OAuthError::Unavailable { .. } | OAuthError::Protocol { .. } => true,
            OAuthError::Store(err) => err.is_transient(),
            _ => false,
        }
    }
}
