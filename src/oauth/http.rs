//! The one HTTP exchange OAuth needs: a form-encoded POST to the token endpoint (RFC 6749 §4.1.3, §6),
//! over TLS with the system roots (plain HTTP only to loopback, checked in the config), under a timeout.
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{HTTP_TIMEOUT, OAuthError};

/// Largest token response read; real ones are a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// `application/x-www-form-urlencoded` body.
pub(super) fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encoding of a form or query value (everything but unreserved characters).
pub(super) fn form_encode(value: &str) -> String {
    crate::client::encode(value)
}

/// POSTs a form; returns the status code and the body.
pub(super) async fn post_form(url: &str, body: String) -> Result<(u16, Bytes), OAuthError> {
    let unavailable = |message: String| OAuthError::Unavailable {
        url: url.to_string(),
        message,
    };
    let uri: Uri = url
        .parse()
        .map_err(|err| unavailable(format!("not a URL: {err}")))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if crate::config::endpoint_is_safe(url) => false,
        _ => return Err(unavailable("only https:// (or http:// to loopback)".into())),
    };
    let host = uri
        .host()
        .ok_or_else(|| unavailable("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |authority| authority.to_string());
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |path| path.to_string());
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "inboxd")
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| unavailable(err.to_string()))?;
    let exchange = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        if secure {
            let connector = crate::imap::tls_connector(None)
                .await
                .map_err(|err| unavailable(err.to_string()))?;
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|err| unavailable(format!("bad host name: {err}")))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|err| unavailable(format!("tls: {err}")))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
        .map_err(unavailable)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| unavailable(format!("no answer within {HTTP_TIMEOUT:?}")))?
}

async fn send<T>(io: TokioIo<T>, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| err.to_string())?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(
            form_body(&[("grant_type", "refresh_token"), ("scope", "a b&c=d/")]),
            "grant_type=refresh_token&scope=a%20b%26c%3Dd%2F"
        );
    }
}
