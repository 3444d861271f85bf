//! One SMTP session: TCP, TLS (implicit or STARTTLS), EHLO, AUTH, commands under a timeout.

use std::error::Error as StdError;
use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

use lettre::transport::smtp::Error as LettreError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use tokio_rustls::rustls;

use super::transport::{Transport, TrustAnchors, implicit_tls, open_tcp, tls_error_in_io};
use super::wire::{Capabilities, join_lines};
use super::{SmtpError, SmtpSettings, SmtpTls};

/// A server reply, positive or negative, to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    /// Three-digit reply code.
    pub(super) code: u16,
    /// Reply lines joined with spaces, enhanced status code included.
    pub(super) text: String,
}

/// An open, secured and (if configured) authenticated connection.
pub(super) struct Session {
    connection: AsyncSmtpConnection,
    capabilities: Capabilities,
    client_id: ClientId,
    timeout: Duration,
}

impl Session {
    /// Connects, secures the connection as configured, reads the extensions with EHLO and
    /// authenticates when credentials are set. Each step has its own timeout.
    pub(super) async fn open(settings: &SmtpSettings) -> Result<Session, SmtpError> {
        validate(settings)?;
        let client_id = client_id(&settings.helo_name);
        let anchors = match settings.tls {
            SmtpTls::Plain => None,
            SmtpTls::Implicit | SmtpTls::StartTls => {
                Some(TrustAnchors::load(settings.ca_file.as_deref()).await?)
            }
        };
        let tcp = open_tcp(settings).await?;
        let transport = match (&settings.tls, &anchors) {
            (SmtpTls::Implicit, Some(anchors)) => {
                implicit_tls(&anchors.rustls_connector()?, settings, tcp).await?
            }
            _ => Transport::Plain(tcp),
        };
        // lettre reads the greeting and sends a first EHLO here.
        let connect = AsyncSmtpConnection::connect_with_transport(Box::new(transport), &client_id);
        let mut connection = timed(settings.timeout, "greeting", connect)
            .await?
            .map_err(|error| greeting_error(error, settings))?;
        if let (SmtpTls::StartTls, Some(anchors)) = (&settings.tls, &anchors) {
            let parameters = anchors.lettre_parameters(&settings.host)?;
            if !connection.can_starttls() {
                connection.abort().await;
                return Err(SmtpError::Unsupported("STARTTLS"));
            }
            timed(
                settings.timeout,
                "starttls",
                connection.starttls(parameters, &client_id),
            )
            .await?
            .map_err(|error| match tls_reason(&error) {
                Some(reason) => SmtpError::Tls {
                    host: settings.host.clone(),
                    reason,
                },
                None => session_error(error, "STARTTLS"),
            })?;
        }
        let mut session = Session {
            connection,
            capabilities: Capabilities::default(),
            client_id,
            timeout: settings.timeout,
        };
        session.capabilities = session.ehlo().await?;
        if let Err(error) = session.authenticate(settings).await {
            if error.is_auth() {
                session.quit().await;
            }
            return Err(error);
        }
        Ok(session)
    }

    /// The extensions the server announced after TLS was set up.
    pub(super) fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Sends EHLO again to read the extension lines: lettre keeps only the ones it knows, and
    /// DSN (RFC 3461) is not among them. A repeated EHLO is allowed at any time (RFC 5321
    /// §4.1.4).
    async fn ehlo(&mut self) -> Result<Capabilities, SmtpError> {
        let command = Ehlo::new(self.client_id.clone());
        let response = timed(self.timeout, "ehlo", self.connection.command(command))
            .await?
            .map_err(|error| session_error(error, "EHLO"))?;
        Ok(Capabilities::from_ehlo_lines(response.message()))
    }

    /// AUTH PLAIN or LOGIN (RFC 4954) when both user name and password are set; XOAUTH2 or
    /// OAUTHBEARER with an access token for OAuth mailboxes.
    async fn authenticate(&mut self, settings: &SmtpSettings) -> Result<(), SmtpError> {
        let (Some(username), Some(password)) = (&settings.username, &settings.password) else {
            return Ok(());
        };
        if let Some(mechanism) = settings.auth.sasl_name() {
            return self
                .authenticate_bearer(settings, mechanism, username, password)
                .await;
        }
        let credentials = Credentials::new(username.clone(), password.clone());
        let mechanisms = [Mechanism::Plain, Mechanism::Login];
        let result = timed(
            self.timeout,
            "auth",
            self.connection.auth(&mechanisms, &credentials),
        )
        .await?;
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(match error.status() {
                Some(code) => SmtpError::Auth {
                    code: Some(u16::from(code)),
                    message: reply_text(&error),
                    permanent: error.is_permanent(),
                },
                // lettre's own errors: no PLAIN/LOGIN offered, or a challenge it cannot read.
                None if error.is_client() => SmtpError::Auth {
                    code: None,
                    message: format!(
                        "no usable mechanism (PLAIN, LOGIN) or bad challenge: {}",
                        reply_text(&error)
                    ),
                    permanent: true,
                },
                None => session_error(error, "AUTH"),
            }),
        }
    }

    /// `AUTH XOAUTH2|OAUTHBEARER <initial response>` (RFC 4954 §4, RFC 7628 §3.2). A refused token gets
    /// a 334 challenge with a JSON error; the empty reply to it ends the exchange with the final 5xx.
    async fn authenticate_bearer(
        &mut self,
        settings: &SmtpSettings,
        mechanism: &'static str,
        username: &str,
        token: &str,
    ) -> Result<(), SmtpError> {
        if !self
            .capabilities
            .auth
            .iter()
            .any(|offered| offered == mechanism)
        {
            return Err(SmtpError::Auth {
                code: None,
                message: format!(
                    "the server does not offer AUTH {mechanism} (offers: {})",
                    self.capabilities.auth.join(" ")
                ),
                permanent: true,
            });
        }
        let initial = settings
            .auth
            .initial_response(username, &settings.host, settings.port, token)
            .unwrap_or_default();
        let command = zeroize::Zeroizing::new(format!(
            "AUTH {mechanism} {}\r\n",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                initial.as_slice()
            )
        ));
        let mut reply = self.exchange(command.as_str(), "auth").await?;
        if reply.code == 334 {
            reply = self.exchange("\r\n", "auth").await?;
        }
        match reply.code {
            235 => Ok(()),
            code => Err(SmtpError::Auth {
                code: Some(code),
                message: reply.text,
                permanent: code >= 500,
            }),
        }
    }

    /// Sends one command and returns the server's reply, negative replies included; errors
    /// are only for timeouts, broken connections and unreadable replies.
    pub(super) async fn exchange(
        &mut self,
        command: impl Display,
        operation: &'static str,
    ) -> Result<Reply, SmtpError> {
        let result = timed(self.timeout, operation, self.connection.command(command)).await?;
        reply_or_error(result, operation)
    }

    /// Sends the message data (lettre dot-stuffs it and adds `CRLF . CRLF`) and returns the
    /// final reply. The limit grows with the size: the configured timeout plus one second per
    /// 64 KiB, so a large message on a slow link is not cut off.
    pub(super) async fn send_data(&mut self, data: &[u8]) -> Result<Reply, SmtpError> {
        let allowance = u64::try_from(data.len() / 65_536).unwrap_or(u64::MAX);
        let limit = self.timeout.saturating_add(Duration::from_secs(allowance));
        let result = timed(limit, "message data", self.connection.message(data)).await?;
        reply_or_error(result, "message data")
    }

    /// Says goodbye; failures do not matter any more.
    pub(super) async fn quit(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.connection.quit()).await;
    }
}

/// Runs `future` under `limit`; the outer error is the timeout.
async fn timed<T>(
    limit: Duration,
    operation: &'static str,
    future: impl Future<Output = Result<T, LettreError>>,
) -> Result<Result<T, LettreError>, SmtpError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| SmtpError::Timeout {
            operation,
            after: limit,
        })
}

fn reply_or_error(
    result: Result<lettre::transport::smtp::response::Response, LettreError>,
    operation: &'static str,
) -> Result<Reply, SmtpError> {
    match result {
        Ok(response) => Ok(Reply {
            code: u16::from(response.code()),
            text: join_lines(response.message()),
        }),
        Err(error) => match error.status() {
            Some(code) => Ok(Reply {
                code: u16::from(code),
                text: reply_text(&error),
            }),
            None => Err(session_error(error, operation)),
        },
    }
}

/// Rejects settings that cannot work or would be unsafe, before touching the network.
fn validate(settings: &SmtpSettings) -> Result<(), SmtpError> {
    let config = |message: &str| Err(SmtpError::Config(message.to_owned()));
    let bad_text = |text: &str| text.chars().any(char::is_control);
    if settings.host.is_empty() || settings.host.contains(char::is_whitespace) {
        return config("host is empty or contains spaces");
    }
    if settings.timeout.is_zero() {
        return config("timeout must be above zero");
    }
    if settings.tls == SmtpTls::Plain && !settings.insecure {
        return config(
            "tls = plain sends mail and passwords in clear text; use implicit or starttls, or set insecure = true",
        );
    }
    if settings.helo_name.is_empty()
        || settings.helo_name.contains(char::is_whitespace)
        || bad_text(&settings.helo_name)
    {
        return config("helo_name is empty or contains spaces or control characters");
    }
    match (&settings.username, &settings.password) {
        (None, None) => Ok(()),
        (Some(username), Some(password)) => {
            if username.is_empty() || bad_text(username) {
                return config("username is empty or contains control characters");
            }
            if bad_text(password) {
                return config("password contains control characters");
            }
            if settings.auth.sasl_name().is_some() && password.is_empty() {
                return config("no access token for an oauth mechanism");
            }
            Ok(())
        }
        _ => config("username and password must be set together"),
    }
}

/// EHLO argument: an address literal for an IP (RFC 5321 §4.1.3), else a domain.
fn client_id(helo_name: &str) -> ClientId {
    match helo_name.parse::<IpAddr>() {
        Ok(IpAddr::V4(address)) => ClientId::Ipv4(address),
        Ok(IpAddr::V6(address)) => ClientId::Ipv6(address),
        Err(_) => ClientId::Domain(helo_name.to_owned()),
    }
}

/// The text a lettre error carries: the server's reply for a negative reply, else the
/// underlying error's message.
fn reply_text(error: &LettreError) -> String {
    error
        .source()
        .map_or_else(|| error.to_string(), ToString::to_string)
}

/// The innermost useful description of a lettre error (the socket or TLS error).
fn reason(error: &LettreError) -> String {
    tls_reason(error).unwrap_or_else(|| reply_text(error))
}

/// The rustls error inside a lettre error, if STARTTLS failed in TLS. lettre reports
/// handshake failures as connection errors wrapping the `io::Error` that tokio-rustls
/// builds around the rustls error, and `io::Error::source` skips that inner error, so each
/// `io::Error` is opened with `get_ref`.
fn tls_reason(error: &LettreError) -> Option<String> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(tls_error_in_io)
        {
            return Some(tls.to_string());
        }
        current = error.source();
    }
    error.is_tls().then(|| reply_text(error))
}

/// Maps a failure while reading the greeting or answering the first EHLO.
fn greeting_error(error: LettreError, settings: &SmtpSettings) -> SmtpError {
    if is_closed(&error) {
        return SmtpError::Connect {
            host: settings.host.clone(),
            port: settings.port,
            reason: "server closed the connection before its greeting".to_owned(),
        };
    }
    session_error(error, "greeting or EHLO")
}

/// True for lettre's "incomplete response": the server closed the connection mid-reply.
fn is_closed(error: &LettreError) -> bool {
    error.is_response() && reply_text(error) == "incomplete response"
}

/// Maps a lettre error during the session; negative replies become `Rejected`.
fn session_error(error: LettreError, operation: &'static str) -> SmtpError {
    if let Some(code) = error.status() {
        return SmtpError::Rejected {
            command: operation,
            code: u16::from(code),
            message: reply_text(&error),
            permanent: error.is_permanent(),
        };
    }
    if is_closed(&error) {
        return SmtpError::ConnectionLost {
            operation,
            reason: "server closed the connection".to_owned(),
        };
    }
    if error.is_response() || error.is_client() {
        return SmtpError::Protocol(format!("{operation}: {}", reason(&error)));
    }
    SmtpError::ConnectionLost {
        operation,
        reason: reason(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tls: SmtpTls, insecure: bool) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: 25,
            tls,
            username: None,
            password: None,
            auth: crate::oauth::sasl::AuthMechanism::Password,
            ca_file: None,
            insecure,
            timeout: Duration::from_secs(5),
            helo_name: "client.inboxd.test".to_owned(),
        }
    }

    #[test]
    fn plain_needs_insecure() {
        assert!(matches!(
            validate(&settings(SmtpTls::Plain, false)),
            Err(SmtpError::Config(_))
        ));
        assert!(validate(&settings(SmtpTls::Plain, true)).is_ok());
        assert!(validate(&settings(SmtpTls::StartTls, false)).is_ok());
    }

    #[test]
    fn credentials_must_come_in_pairs_without_line_breaks() {
        let mut only_user = settings(SmtpTls::Implicit, false);
        only_user.username = Some("user".to_owned());
        assert!(matches!(validate(&only_user), Err(SmtpError::Config(_))));

        let mut broken = only_user.clone();
        broken.password = Some("s3cr3t\r\nMAIL FROM:<x@y>".to_owned());
        let error = validate(&broken).expect_err("line break in password");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");

        let mut good = only_user;
        good.password = Some("secret".to_owned());
        assert!(validate(&good).is_ok());
    }

    #[test]
    fn bad_host_timeout_and_helo_are_refused() {
        let mut empty_host = settings(SmtpTls::Implicit, false);
        empty_host.host = String::new();
        assert!(validate(&empty_host).is_err());
        let mut no_timeout = settings(SmtpTls::Implicit, false);
        no_timeout.timeout = Duration::ZERO;
        assert!(validate(&no_timeout).is_err());
        let mut bad_helo = settings(SmtpTls::Implicit, false);
        bad_helo.helo_name = "a b".to_owned();
        assert!(validate(&bad_helo).is_err());
    }

    #[test]
    fn helo_name_becomes_address_literal_for_ips() {
        assert_eq!(client_id("192.0.2.1").to_string(), "[192.0.2.1]");
        assert_eq!(client_id("2001:db8::1").to_string(), "[IPv6:2001:db8::1]");
        assert_eq!(client_id("mx.example.org").to_string(), "mx.example.org");
    }

    #[test]
    fn debug_hides_password() {
        let mut with_password = settings(SmtpTls::Implicit, false);
        with_password.username = Some("user".to_owned());
        with_password.password = Some("hunter2-secret".to_owned());
        let shown = format!("{with_password:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("<hidden>"), "{shown}");
    }
}
