//! `inboxd mailbox authorize NAME`: the authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636 S256)
//! and a loopback redirect (RFC 8252 §7.3). The admin opens the printed URL, signs in as the mailbox's
//! account, and the provider redirects the browser to `http://127.0.0.1:PORT` where [`PendingAuthorization`]
//! waits; the `state` must match, then the code is exchanged for tokens that are stored sealed.
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::http::form_encode;
use super::{OAuthError, TokenResponse, exchange_code};
use crate::config::{OAuthConfig, Secret};
use crate::crypto::MasterKey;

/// Largest redirect request read (a browser's GET with a code and a state).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// What the admin must open.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The provider's sign-in page with every parameter set.
    pub url: String,
    /// Where the provider sends the browser back (must be registered with the app).
    pub redirect_uri: String,
}

/// A started flow, waiting for the browser's redirect.
pub struct PendingAuthorization {
    listener: TcpListener,
    state: String,
    verifier: Zeroizing<String>,
    redirect_uri: String,
    mailbox: String,
    oauth: OAuthConfig,
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Binds the loopback listener (`port`, else the config's `redirect_port`; 0 picks a free one) and
/// builds the URL to open.
pub async fn start(
    mailbox: &str,
    oauth: &OAuthConfig,
    port: Option<u16>,
) -> Result<(AuthorizationRequest, PendingAuthorization), OAuthError> {
    let port = port.unwrap_or(oauth.redirect_port);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|err| {
            OAuthError::Authorization(format!(
                "cannot listen on 127.0.0.1:{port} for the redirect: {err}; pick another port"
            ))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|err| OAuthError::Authorization(err.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{bound}");
    // 32 random bytes: a 43-character verifier, the minimum RFC 7636 §4.1 allows and 256 bits strong.
    let verifier = Zeroizing::new(random_token(32));
    let state = random_token(16);
    let mut query = vec![
        ("response_type", "code".to_string()),
        ("client_id", oauth.client_id.clone()),
        ("redirect_uri", redirect_uri.clone()),
        ("scope", oauth.scopes.join(" ")),
        ("state", state.clone()),
        ("code_challenge", pkce_challenge(&verifier)),
        ("code_challenge_method", "S256".to_string()),
    ];
    for (name, value) in &oauth.authorize_params {
        query.push((name.as_str(), value.clone()));
    }
    let separator = if oauth.authorization_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}{}",
        oauth.authorization_url,
        query
            .iter()
            .map(|(name, value)| format!("{name}={}", form_encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    );
    Ok((
        AuthorizationRequest {
            url,
            redirect_uri: redirect_uri.clone(),
        },
        PendingAuthorization {
            listener,
            state,
            verifier,
            redirect_uri,
            mailbox: mailbox.to_string(),
            oauth: oauth.clone(),
        },
    ))
}

/// What the browser brought back.
enum Redirect {
    Code(Zeroizing<String>),
    Refused(String),
    /// Not the redirect (favicon, a wrong state, a stray request): answered and ignored.
    Other(&'static str),
}

impl PendingAuthorization {
    /// Waits up to `timeout` for the redirect, checks `state`, exchanges the code. Requests with a wrong
    /// state (another tab, a forged link) are refused and the wait goes on.
    pub async fn finish(self, timeout: Duration) -> Result<TokenResponse, OAuthError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept())
                .await
                .map_err(|_| {
                    OAuthError::Authorization(format!(
                        "no redirect reached {} within {timeout:?}",
                        self.redirect_uri
                    ))
                })?;
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let redirect = match read_redirect(&mut stream, &self.state).await {
                Ok(redirect) => redirect,
                Err(_) => continue,
            };
            match redirect {
                Redirect::Other(why) => {
                    respond(&mut stream, 400, why).await;
                }
                Redirect::Refused(reason) => {
                    respond(&mut stream, 400, "authorization refused; see the terminal").await;
                    return Err(OAuthError::Authorization(format!(
                        "the provider redirected with an error: {reason}"
                    )));
                }
                Redirect::Code(code) => {
                    let result = exchange_code(
                        &self.mailbox,
                        &self.oauth,
                        &code,
                        &self.redirect_uri,
                        &self.verifier,
                    )
                    .await;
                    let page = match &result {
                        Ok(_) => "inboxd: mailbox authorized; you can close this tab",
                        Err(_) => "inboxd: the code exchange failed; see the terminal",
                    };
                    respond(&mut stream, if result.is_ok() { 200 } else { 502 }, page).await;
                    return result;
                }
            }
        }
    }
}

async fn read_redirect(stream: &mut TcpStream, state: &str) -> std::io::Result<Redirect> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        if buffer.len() > MAX_REQUEST_BYTES {
            return Ok(Redirect::Other("request too large"));
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    let head = String::from_utf8_lossy(&buffer);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("GET "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default();
    let Some(query) = target.strip_prefix("/?") else {
        return Ok(Redirect::Other("not the authorization redirect"));
    };
    Ok(parse_redirect(query, state))
}

fn parse_redirect(query: &str, state: &str) -> Redirect {
    let mut code = None;
    let mut error = None;
    let mut description = None;
    let mut returned_state = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match name {
            "code" => code = Some(Zeroizing::new(value)),
            "state" => returned_state = Some(value),
            "error" => error = Some(value),
            "error_description" => description = Some(value),
            _ => {}
        }
    }
    // RFC 6749 §10.12: a redirect without our state is not the answer to our request.
    if returned_state.as_deref() != Some(state) {
        return Redirect::Other("state does not match this authorization request");
    }
    match (code, error) {
        (_, Some(error)) => Redirect::Refused(match description {
            Some(description) => format!("{error}: {description}"),
            None => error,
        }),
        (Some(code), None) if !code.is_empty() => Redirect::Code(code),
        _ => Redirect::Other("no code in the redirect"),
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                if let Some(decoded) = hex {
                    out.push(decoded);
                    index += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn respond(stream: &mut TcpStream, status: u16, text: &str) {
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Stores the tokens of a finished authorization; refuses a response without a refresh token, which
/// would stop working within the hour.
pub async fn store(
    db: &sea_orm::DatabaseConnection,
    key: &MasterKey,
    mailbox_id: Uuid,
    response: &TokenResponse,
) -> Result<i64, OAuthError> {
    let Some(refresh_token) = &response.refresh_token else {
        return Err(OAuthError::Authorization(
            "the provider returned no refresh token (Google: consent must be prompted with access_type=offline; Microsoft: the offline_access scope is needed)".to_string(),
        ));
    };
    let refresh_token: &Secret = refresh_token;
    Ok(crate::store::oauth::save_authorization(
        db,
        key,
        mailbox_id,
        refresh_token,
        Some(&response.access()),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn redirect_needs_our_state() {
        assert!(matches!(
            parse_redirect("code=abc&state=s1", "s1"),
            Redirect::Code(code) if code.as_str() == "abc"
        ));
        assert!(matches!(
            parse_redirect("code=abc&state=other", "s1"),
            Redirect::Other(_)
        ));
        assert!(matches!(
            parse_redirect("code=abc", "s1"),
            Redirect::Other(_)
        ));
        assert!(matches!(
            parse_redirect("error=access_denied&error_description=user+said+no&state=s1", "s1"),
            Redirect::Refused(reason) if reason == "access_denied: user said no"
        ));
        assert_eq!(percent_decode("a%2Fb%3D+c%zz"), "a/b= c%zz");
    }

    #[tokio::test]
    async fn the_url_carries_pkce_state_scopes_and_preset_parameters() {
        let oauth = OAuthConfig {
            provider: crate::config::OAuthProvider::Google,
            authorization_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            scopes: vec!["https://mail.google.com/".into()],
            authorize_params: vec![("access_type".into(), "offline".into())],
            client_id: "id.apps".into(),
            client_secret: None,
            mechanism: crate::config::SaslMechanism::XOAuth2,
            redirect_port: 0,
        };
        let (request, pending) = start("m", &oauth, None).await.expect("start");
        assert!(request.redirect_uri.starts_with("http://127.0.0.1:"));
        assert!(request.url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?response_type=code&client_id=id.apps&redirect_uri=http%3A%2F%2F127.0.0.1%3A"));
        assert!(
            request
                .url
                .contains("&scope=https%3A%2F%2Fmail.google.com%2F&")
        );
        assert!(request.url.contains(&format!(
            "&code_challenge={}&code_challenge_method=S256",
            pkce_challenge(&pending.verifier)
        )));
        assert!(request.url.contains(&format!("&state={}", pending.state)));
        assert!(request.url.ends_with("&access_type=offline"));
    }
}
