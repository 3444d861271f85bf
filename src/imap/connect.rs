//! Opening a session: TCP, TLS (implicit or STARTTLS), greeting, LOGIN, capabilities.

use std::collections::HashSet;

use async_imap::Client;
use async_imap::imap_proto::{Response, Status};
use async_imap::types::{Capabilities, Capability};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::client::ImapClient;
use super::exchange::{describe, next_response, timed};
use super::transport::{Transport, start_tls, tls_connector};
use super::{ImapError, ImapSettings, TlsMode, is_temporary_response};

impl ImapClient {
    /// Connects, secures the connection, checks the greeting and logs in.
    ///
    /// TLS trusts `ca_file` only when set, else the system roots. Each step (TCP connect, TLS
    /// handshake, greeting, `STARTTLS`, `LOGIN`, `CAPABILITY`) has its own timeout.
    pub async fn connect(settings: &ImapSettings) -> Result<ImapClient, ImapError> {
        validate(settings)?;
        let connector = match settings.tls {
            TlsMode::Plain => None,
            TlsMode::Implicit | TlsMode::StartTls => {
                Some(tls_connector(settings.ca_file.as_deref()).await?)
            }
        };
        let tcp = open_tcp(settings).await?;
        let transport = match (&settings.tls, &connector) {
            (TlsMode::Implicit, Some(connector)) => handshake(settings, connector, tcp).await?,
            _ => Transport::Plain(tcp),
        };
        let mut client = Client::new(transport);
        read_greeting(&mut client, settings).await?;
        if let (TlsMode::StartTls, Some(connector)) = (&settings.tls, &connector) {
            client = upgrade_with_starttls(client, settings, connector).await?;
        }
        let (mut session, capabilities) = login(client, settings).await?;
        let capabilities = match capabilities {
            Some(capabilities) => capabilities,
            None => timed(settings.timeout, "capability", session.capabilities()).await?,
        };
        tracing::debug!(host = %settings.host, port = settings.port, tls = ?settings.tls, "imap session ready");
        Ok(ImapClient {
            session: Some(session),
            capabilities: capability_names(&capabilities),
            timeout: settings.timeout,
            host: settings.host.clone(),
            selected: None,
            new_data_pending: false,
        })
    }
}

/// Rejects settings that cannot work or would be unsafe, before touching the network.
fn validate(settings: &ImapSettings) -> Result<(), ImapError> {
    if settings.host.is_empty() {
        return Err(ImapError::Config("host is empty".to_owned()));
    }
    if settings.timeout.is_zero() {
        return Err(ImapError::Config("timeout must be above zero".to_owned()));
    }
    if settings.tls == TlsMode::Plain && !settings.insecure {
        return Err(ImapError::Config(
            "tls = plain sends the password in clear text; use implicit or starttls, or set insecure = true"
                .to_owned(),
        ));
    }
    let breaks_line = |text: &str| text.contains(['\r', '\n', '\0']);
    if breaks_line(&settings.username) {
        return Err(ImapError::Config(
            "username contains a line break".to_owned(),
        ));
    }
    if breaks_line(&settings.password) {
        return Err(ImapError::Config(
            "password contains a line break".to_owned(),
        ));
    }
    if settings.auth.sasl_name().is_some()
        && !(crate::oauth::sasl::is_clean(&settings.password)
            && crate::oauth::sasl::is_clean(&settings.username))
    {
        return Err(ImapError::Config(
            "access token or username contains a control character".to_owned(),
        ));
    }
    Ok(())
}

async fn open_tcp(settings: &ImapSettings) -> Result<TcpStream, ImapError> {
    let address = (settings.host.as_str(), settings.port);
    let tcp = match tokio::time::timeout(settings.timeout, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(ImapError::Connect {
                host: settings.host.clone(),
                port: settings.port,
                source,
            });
        }
        Err(_) => {
            return Err(ImapError::Timeout {
                operation: "connect",
                after: settings.timeout,
            });
        }
    };
    // Commands are small and sent whole; waiting for Nagle only adds latency.
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(error = %error, "cannot disable nagle on imap socket");
    }
    Ok(tcp)
}

async fn handshake(
    settings: &ImapSettings,
    connector: &TlsConnector,
    tcp: TcpStream,
) -> Result<Transport, ImapError> {
    let handshake = start_tls(connector, &settings.host, settings.port, tcp);
    tokio::time::timeout(settings.timeout, handshake)
        .await
        .map_err(|_| ImapError::Timeout {
            operation: "tls handshake",
            after: settings.timeout,
        })?
}

/// Expects `* OK` (RFC 3501 §7.1.1). `* BYE` means the server refuses us now (often too many
/// connections), `* PREAUTH` would skip LOGIN, which this client does not support.
async fn read_greeting(
    client: &mut Client<Transport>,
    settings: &ImapSettings,
) -> Result<(), ImapError> {
    let operation = "greeting";
    let response = next_response(client.read_response(), settings.timeout, operation).await?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => {
            tracing::warn!(host = %settings.host, detail = %describe(outcome), "imap server refused the connection");
            Err(ImapError::ConnectionLost { operation })
        }
        Response::Data {
            status: Status::PreAuth,
            ..
        } => Err(ImapError::Protocol(
            "server sent a preauth greeting; login-based sessions only".to_owned(),
        )),
        _ => Err(ImapError::Protocol("unexpected imap greeting".to_owned())),
    }
}

/// `STARTTLS` (RFC 3501 §6.2.1, RFC 8314 §4): after the tagged OK the plain socket is handed to
/// rustls. Anything the server sent after the OK is dropped with async-imap's read buffer, so
/// plaintext injected before the handshake cannot be mistaken for protected data.
async fn upgrade_with_starttls(
    mut client: Client<Transport>,
    settings: &ImapSettings,
    connector: &TlsConnector,
) -> Result<Client<Transport>, ImapError> {
    let refused = timed(
        settings.timeout,
        "starttls",
        client.run_command_and_check_ok("STARTTLS", None),
    )
    .await;
    match refused {
        Ok(()) => {}
        Err(ImapError::Rejected { detail, .. }) => {
            return Err(ImapError::Tls {
                host: settings.host.clone(),
                reason: format!("server refused starttls: {detail}"),
            });
        }
        Err(other) => return Err(other),
    }
    let Transport::Plain(tcp) = client.into_inner() else {
        return Err(ImapError::Protocol(
            "starttls on an encrypted connection".to_owned(),
        ));
    };
    let secured = handshake(settings, connector, tcp).await?;
    Ok(Client::new(secured))
}

/// `LOGIN` (RFC 3501 §6.2.3). A `NO` is a credentials problem unless the server marks it as
/// temporary (`[UNAVAILABLE]`, RFC 5530), e.g. its password backend is down.
async fn login(
    client: Client<Transport>,
    settings: &ImapSettings,
) -> Result<(async_imap::Session<Transport>, Option<Capabilities>), ImapError> {
    if let Some(response) = settings.auth.initial_response(
        &settings.username,
        &settings.host,
        settings.port,
        &settings.password,
    ) {
        return authenticate(client, settings, response).await;
    }
    let operation = "login";
    let attempt = client.login_with_capabilities(&settings.username, &settings.password);
    match tokio::time::timeout(settings.timeout, attempt).await {
        Ok(Ok(logged_in)) => Ok(logged_in),
        Ok(Err((async_imap::error::Error::No(detail), _))) if !is_temporary_response(&detail) => {
            Err(ImapError::Auth {
                user: settings.username.clone(),
                host: settings.host.clone(),
            })
        }
        Ok(Err((error, _))) => Err(ImapError::from_imap(operation, error)),
        Err(_) => Err(ImapError::Timeout {
            operation,
            after: settings.timeout,
        }),
    }
}

/// Answers the server's continuation: the first time with the SASL initial response, after that (the
/// server's JSON error challenge, RFC 7628 §3.2.3) with an empty response so it sends its final `NO`.
struct BearerAuthenticator {
    response: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl async_imap::Authenticator for BearerAuthenticator {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Self::Response {
        self.response
            .take()
            .map(|response| response.to_vec())
            .unwrap_or_default()
    }
}

/// `AUTHENTICATE XOAUTH2` / `OAUTHBEARER` (RFC 3501 §6.2.2, RFC 7628) with an access token. A `NO` is an
/// authentication failure (expired or revoked token) unless marked temporary, like for `LOGIN`.
async fn authenticate(
    client: Client<Transport>,
    settings: &ImapSettings,
    response: zeroize::Zeroizing<Vec<u8>>,
) -> Result<(async_imap::Session<Transport>, Option<Capabilities>), ImapError> {
    let operation = "authenticate";
    let mechanism = settings.auth.sasl_name().unwrap_or("XOAUTH2");
    let authenticator = BearerAuthenticator {
        response: Some(response),
    };
    let attempt = client.authenticate(mechanism, authenticator);
    match tokio::time::timeout(settings.timeout, attempt).await {
        Ok(Ok(session)) => Ok((session, None)),
        Ok(Err((async_imap::error::Error::No(detail), _))) if !is_temporary_response(&detail) => {
            Err(ImapError::Auth {
                user: settings.username.clone(),
                host: settings.host.clone(),
            })
        }
        Ok(Err((error, _))) => Err(ImapError::from_imap(operation, error)),
        Err(_) => Err(ImapError::Timeout {
            operation,
            after: settings.timeout,
        }),
    }
}

/// Upper-cased capability names for case-insensitive lookups (RFC 3501 §7.2.1).
fn capability_names(capabilities: &Capabilities) -> HashSet<String> {
    capabilities
        .iter()
        .map(|capability| match capability {
            Capability::Imap4rev1 => "IMAP4REV1".to_owned(),
            Capability::Auth(mechanism) => format!("AUTH={}", mechanism.to_ascii_uppercase()),
            Capability::Atom(atom) => atom.to_ascii_uppercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(tls: TlsMode, insecure: bool) -> ImapSettings {
        ImapSettings {
            host: "127.0.0.1".to_owned(),
            port: 143,
            tls,
            username: "user".to_owned(),
            password: "hunter2".to_owned(),
            auth: crate::oauth::sasl::AuthMechanism::Password,
            ca_file: None,
            insecure,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn plain_needs_insecure() {
        assert!(matches!(
            validate(&settings(TlsMode::Plain, false)),
            Err(ImapError::Config(_))
        ));
        assert!(validate(&settings(TlsMode::Plain, true)).is_ok());
        assert!(validate(&settings(TlsMode::StartTls, false)).is_ok());
    }

    #[test]
    fn password_line_break_is_rejected_without_echoing_it() {
        let mut bad = settings(TlsMode::Implicit, false);
        bad.password = "sec\r\nret".to_owned();
        let error = validate(&bad).err().map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("invalid imap settings: password contains a line break")
        );
    }

    #[test]
    fn settings_debug_hides_password() {
        let shown = format!("{:?}", settings(TlsMode::Implicit, false));
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("<redacted>"));
    }
}
