//! Token endpoint requests (refresh, code exchange) and [`TokenSource`], which hands out access tokens.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sea_orm::DatabaseConnection;
use serde::Deserialize;
use tracing::{info, warn};
use uuid::Uuid;

use super::http::{form_body, post_form};
use super::{OAuthError, REFRESH_MARGIN};
use crate::config::{OAuthConfig, PasswordSource, Secret, read_secret_env, read_secret_file};
use crate::crypto::MasterKey;
use crate::store::oauth::{self as stored, AccessToken, STATE_AUTHORIZED};

/// What a token endpoint granted.
pub struct TokenResponse {
    pub access_token: Secret,
    /// Lifetime of the access token in seconds, if the provider said.
    pub expires_in: Option<u64>,
    /// A new refresh token: the first one (code exchange) or a rotated one (refresh).
    pub refresh_token: Option<Secret>,
}

impl TokenResponse {
    /// The access token with its absolute expiry.
    pub fn access(&self) -> AccessToken {
        AccessToken {
            token: self.access_token.clone(),
            expires_at: self.expires_in.map(|seconds| {
                crate::clock::now()
                    + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 2_000))
            }),
        }
    }
}

/// RFC 6749 §5.1 (success) and §5.2 (error) fields.
#[derive(Deserialize)]
struct RawResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    /// A number, but some providers send a string.
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The client secret of a mailbox's OAuth app, read now so a rotated file is picked up.
pub fn client_secret(mailbox: &str, oauth: &OAuthConfig) -> Result<Option<Secret>, OAuthError> {
    let key = format!("mailbox `{mailbox}` oauth client secret");
    Ok(match &oauth.client_secret {
        Some(PasswordSource::File(path)) => Some(read_secret_file(&key, path)?),
        Some(PasswordSource::Env(variable)) => Some(read_secret_env(&key, variable)?),
        Some(PasswordSource::Stored(secret)) => Some(secret.clone()),
        Some(PasswordSource::OAuth(_)) | None => None,
    })
}

/// Refresh grant (RFC 6749 §6).
pub async fn refresh(
    mailbox: &str,
    oauth: &OAuthConfig,
    refresh_token: &Secret,
) -> Result<TokenResponse, OAuthError> {
    token_request(
        mailbox,
        oauth,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ],
    )
    .await
}

/// Authorization-code grant with the PKCE verifier (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub async fn exchange_code(
    mailbox: &str,
    oauth: &OAuthConfig,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<TokenResponse, OAuthError> {
    token_request(
        mailbox,
        oauth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn token_request(
    mailbox: &str,
    oauth: &OAuthConfig,
    grant: &[(&str, &str)],
) -> Result<TokenResponse, OAuthError> {
    let secret = client_secret(mailbox, oauth)?;
    let mut fields = grant.to_vec();
    fields.push(("client_id", &oauth.client_id));
    // client_secret_post: accepted by Google and Microsoft alike (RFC 6749 §2.3.1).
    if let Some(secret) = &secret {
        fields.push(("client_secret", secret.expose()));
    }
    let body = zeroize::Zeroizing::new(form_body(&fields));
    let (status, bytes) = post_form(&oauth.token_url, body.to_string()).await?;
    parse_response(mailbox, &oauth.token_url, status, &bytes)
}

fn parse_response(
    mailbox: &str,
    url: &str,
    status: u16,
    bytes: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let protocol = |message: String| OAuthError::Protocol {
        url: url.to_string(),
        message,
    };
    let parsed: Result<RawResponse, _> = serde_json::from_slice(bytes);
    if status == 429 || status >= 500 {
        return Err(OAuthError::Unavailable {
            url: url.to_string(),
            message: format!("HTTP {status}"),
        });
    }
    let raw = parsed.map_err(|err| protocol(format!("HTTP {status}, body is not JSON: {err}")))?;
    if let Some(code) = raw.error {
        let description = raw
            .error_description
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect::<String>();
        return Err(match code.as_str() {
            "invalid_grant" => OAuthError::InvalidGrant {
                mailbox: mailbox.to_string(),
                description: if description.is_empty() {
                    code
                } else {
                    description
                },
            },
            _ => OAuthError::Client { code, description },
        });
    }
    if !(200..300).contains(&status) {
        return Err(protocol(format!("HTTP {status} without an error code")));
    }
    let access_token = raw
        .access_token
        .filter(|token| !token.is_empty() && super::sasl::is_clean(token))
        .ok_or_else(|| protocol("no usable access_token".to_string()))?;
    if let Some(kind) = &raw.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(protocol(format!("token_type {kind} is not Bearer")));
    }
    let expires_in = match raw.expires_in {
        Some(serde_json::Value::Number(number)) => number.as_u64(),
        Some(serde_json::Value::String(text)) => text.parse().ok(),
        _ => None,
    };
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        expires_in,
        refresh_token: raw
            .refresh_token
            .filter(|token| !token.is_empty())
            .map(Secret::new),
    })
}

/// One lock per mailbox: the IMAP task and the outbox sender never refresh at the same time, which with
/// rotating refresh tokens would make the second refresh use a token the first one just retired.
static REFRESH_LOCKS: LazyLock<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn refresh_lock(mailbox_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = REFRESH_LOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry(mailbox_id).or_default().clone()
}

/// Hands out access tokens for one mailbox.
pub struct TokenSource<'a> {
    pub db: &'a DatabaseConnection,
    pub key: &'a MasterKey,
    pub mailbox_id: Uuid,
    pub mailbox: &'a str,
    pub oauth: &'a OAuthConfig,
}

impl TokenSource<'_> {
    /// A usable access token: the cached one if it is not `rejected` and has more than
    /// [`REFRESH_MARGIN`] left, else a refreshed one (stored, with a rotated refresh token, first).
    pub async fn access_token(&self, rejected: Option<&Secret>) -> Result<Secret, OAuthError> {
        let lock = refresh_lock(self.mailbox_id);
        let _guard = lock.lock().await;
        let not_authorized = || OAuthError::NotAuthorized {
            mailbox: self.mailbox.to_string(),
        };
        let row = stored::get(self.db, self.mailbox_id)
            .await?
            .ok_or_else(not_authorized)?;
        if row.state != STATE_AUTHORIZED {
            return Err(not_authorized());
        }
        if let Some(cached) = stored::open_access(self.key, &row)? {
            let margin = chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default();
            let fresh = cached
                .expires_at
                .is_none_or(|expires| expires - margin > crate::clock::now());
            if fresh && rejected != Some(&cached.token) {
                return Ok(cached.token);
            }
        }
        let refresh_token = stored::open_refresh(self.key, &row)?;
        match refresh(self.mailbox, self.oauth, &refresh_token).await {
            Ok(response) => {
                let access = response.access();
                let rotated = response
                    .refresh_token
                    .as_ref()
                    .filter(|new| **new != refresh_token);
                let saved = stored::save_refreshed(
                    self.db,
                    self.key,
                    self.mailbox_id,
                    row.generation,
                    rotated,
                    &access,
                )
                .await?;
                crate::metrics::record_oauth_refresh(self.mailbox, "ok");
                info!(mailbox = %self.mailbox, rotated = rotated.is_some(), saved,
                    expires_in = response.expires_in, "oauth access token refreshed");
                Ok(access.token)
            }
            Err(err) if err.needs_reauthorization() => {
                crate::metrics::record_oauth_refresh(self.mailbox, "invalid_grant");
                warn!(mailbox = %self.mailbox, error = %err, "oauth grant refused; mailbox needs reauthorization");
                stored::mark_needs_reauthorization(self.db, self.mailbox_id, row.generation)
                    .await?;
                Err(err)
            }
            Err(err) => {
                crate::metrics::record_oauth_refresh(self.mailbox, "error");
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_are_classified() {
        let url = "https://idp.example/token";
        let ok = parse_response(
            "m",
            url,
            200,
            br#"{"access_token":"at","token_type":"Bearer","expires_in":"3599","refresh_token":"rt2"}"#,
        )
        .expect("ok");
        assert_eq!(ok.access_token.expose(), "at");
        assert_eq!(ok.expires_in, Some(3599));
        assert_eq!(ok.refresh_token.as_ref().map(Secret::expose), Some("rt2"));

        let revoked = parse_response(
            "m",
            url,
            400,
            br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        )
        .err()
        .expect("invalid_grant");
        assert!(revoked.needs_reauthorization());
        assert!(revoked.to_string().contains("inboxd mailbox authorize m"));

        let client = parse_response("m", url, 401, br#"{"error":"invalid_client"}"#)
            .err()
            .expect("invalid_client");
        assert!(!client.needs_reauthorization() && !client.is_transient());

        let down = parse_response("m", url, 503, b"<html>").err().expect("503");
        assert!(down.is_transient());
        let garbage = parse_response("m", url, 200, b"{}")
            .err()
            .expect("no token");
        assert!(matches!(garbage, OAuthError::Protocol { .. }));
    }
}
