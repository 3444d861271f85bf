//! IMAP client layer: one authenticated session per [`ImapClient`], built on async-imap with
//! tokio-rustls (ring provider).
//!
//! Every network exchange (each command and each server response) is bounded by
//! [`ImapSettings::timeout`]. After a timeout, an I/O error or a protocol error the session is
//! dropped (the stream position is unknown) and later calls fail fast with
//! [`ImapError::Disconnected`]: the caller reconnects. A `NO`/`BAD` answer leaves the session usable.
//!
//! Commands that return data are driven by hand (`run_tagged`) instead of async-imap's stream
//! helpers, because those end silently on a tagged `NO`/`BAD` (a failed `UID STORE` would look like a
//! success) and because every command must read up to its own tagged completion (RFC 3501 §2.2.2) so
//! unsolicited responses (RFC 3501 §7) never desynchronise the session.
//!
//! Logging: async-imap writes every protocol line, including `LOGIN` with the password and message
//! bodies, to the `log` crate at TRACE level. The daemon's log filter must keep `async_imap` at
//! DEBUG or lower verbosity (or compile the `log` crate with `max_level_debug`).

mod client;
mod connect;
mod exchange;
mod idle;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use client::ImapClient;
pub(crate) use transport::tls_connector;

/// How the connection to the IMAP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS, RFC 8314), usually port 993.
    Implicit,
    /// Plain TCP upgraded with `STARTTLS` (RFC 3501 §6.2.1) before login, usually port 143.
    StartTls,
    /// No encryption at all; only accepted when [`ImapSettings::insecure`] is set.
    Plain,
}

/// Everything needed to open an authenticated IMAP session.
#[derive(Clone)]
pub struct ImapSettings {
    /// Server host name or IP address; also the name the TLS certificate must match.
    pub host: String,
    /// Server TCP port.
    pub port: u16,
    /// Transport security mode.
    pub tls: TlsMode,
    /// Login user name (may be shown in errors and logs).
    pub username: String,
    /// Login password, or the OAuth2 access token when `auth` is an OAuth mechanism; never logged and
    /// hidden from `Debug`.
    pub password: String,
    /// `LOGIN` with a password, or `AUTHENTICATE XOAUTH2`/`OAUTHBEARER` with an access token.
    pub auth: crate::oauth::sasl::AuthMechanism,
    /// PEM file with the CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Allows [`TlsMode::Plain`]; certificate verification is never switched off.
    pub insecure: bool,
    /// Upper bound for each network exchange (connect, handshake, one command or one response).
    pub timeout: Duration,
}

impl fmt::Debug for ImapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// State of a folder right after `SELECT` (RFC 3501 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderStatus {
    /// UIDVALIDITY: when it changes, every cached UID of the folder is void (RFC 3501 §2.3.1.1).
    pub uid_validity: u32,
    /// Predicted next UID, if the server sent one.
    pub uid_next: Option<u32>,
    /// Number of messages in the folder.
    pub exists: u32,
}

/// One message as fetched from the server.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// The message UID in the selected folder.
    pub uid: u32,
    /// The raw bytes the server returned (whole message or header only, depending on the call).
    pub raw: Vec<u8>,
}

impl fmt::Debug for FetchedMessage {
    // Mail content never goes into logs: show the size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedMessage")
            .field("uid", &self.uid)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// Why [`ImapClient::idle_wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The server announced new messages (`EXISTS`/`RECENT`).
    NewData,
    /// `max` elapsed without new messages.
    Timeout,
    /// The cancellation token fired.
    Cancelled,
}

/// Errors of the IMAP client layer.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The settings cannot work (plain without `insecure`, unreadable CA file, bad characters).
    #[error("invalid imap settings: {0}")]
    Config(String),
    /// The TCP connection could not be opened.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// Underlying socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed, typically because the certificate does not verify.
    #[error("tls with {host} failed: {reason}; set ca_file or fix the certificate")]
    Tls {
        /// Server host.
        host: String,
        /// What rustls reported.
        reason: String,
    },
    /// The server rejected the credentials.
    #[error("login failed for {user}@{host}: check the password")]
    Auth {
        /// Login user name.
        user: String,
        /// Server host.
        host: String,
    },
    /// A network exchange took longer than the configured timeout.
    #[error("imap {operation} timed out after {after:?}")]
    Timeout {
        /// The command or step that timed out.
        operation: &'static str,
        /// The configured limit.
        after: Duration,
    },
    /// The server sent something that is not valid IMAP or not what the command expects.
    #[error("imap protocol error: {0}")]
    Protocol(String),
    /// Reading or writing the connection failed.
    #[error("imap {operation} i/o error: {source}")]
    Io {
        /// The command or step that failed.
        operation: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection (EOF, possibly after `* BYE`).
    #[error("imap connection lost during {operation}")]
    ConnectionLost {
        /// The command or step that was running.
        operation: &'static str,
    },
    /// The server answered `NO` or `BAD`; the session stays usable.
    #[error("imap server rejected {operation}: {detail}")]
    Rejected {
        /// The command that was rejected.
        operation: &'static str,
        /// Server response code and text.
        detail: String,
    },
    /// The folder does not exist (`[NONEXISTENT]`, `[TRYCREATE]`, RFC 5530 / RFC 3501 §7.1).
    #[error("no such imap folder: {0}")]
    NoSuchFolder(String),
    /// An earlier failure dropped the session; reconnect.
    #[error("imap session closed after an earlier failure; reconnect")]
    Disconnected,
}

impl ImapError {
    /// True when retrying later (after reconnecting) may succeed: network trouble, timeouts,
    /// closed connections and server answers marked temporary (RFC 5530 `UNAVAILABLE`, `INUSE`,
    /// `SERVERBUG`, `LIMIT`).
    pub fn is_transient(&self) -> bool {
        match self {
            ImapError::Connect { .. }
            | ImapError::Timeout { .. }
            | ImapError::Io { .. }
            | ImapError::ConnectionLost { .. }
            | ImapError::Disconnected => true,
            ImapError::Rejected { detail, .. } => is_temporary_response(detail),
            ImapError::Config(_)
            | ImapError::Tls { .. }
            | ImapError::Auth { .. }
            | ImapError::Protocol(_)
            | ImapError::NoSuchFolder(_) => false,
        }
    }

    /// True when the credentials were refused.
    pub fn is_auth(&self) -> bool {
        matches!(self, ImapError::Auth { .. })
    }

    /// True when TLS could not be established (certificate, protocol or STARTTLS refusal).
    pub fn is_tls(&self) -> bool {
        matches!(self, ImapError::Tls { .. })
    }

    /// True when a network exchange timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ImapError::Timeout { .. })
    }

    /// Maps an async-imap error without copying server data (which may be mail content) into it.
    fn from_imap(operation: &'static str, error: async_imap::error::Error) -> ImapError {
        use async_imap::error::Error;
        match error {
            Error::Io(source) => ImapError::from_io(operation, source),
            Error::Bad(detail) | Error::No(detail) => ImapError::Rejected {
                operation,
                detail: truncate(&detail),
            },
            Error::ConnectionLost => ImapError::ConnectionLost { operation },
            Error::Validate(_) => {
                ImapError::Config(format!("{operation}: argument contains a line break"))
            }
            other => ImapError::Protocol(format!("{operation}: {}", truncate(&other.to_string()))),
        }
    }

    /// Maps an I/O error; async-imap reports unparseable responses as `io::ErrorKind::Other`
    /// with the whole buffer in the message, which must not reach logs.
    fn from_io(operation: &'static str, source: std::io::Error) -> ImapError {
        let is_parse_failure = source.kind() == std::io::ErrorKind::Other
            && source
                .get_ref()
                .is_some_and(|inner| inner.to_string().contains("during parsing of"));
        if is_parse_failure {
            return ImapError::Protocol(format!("{operation}: unparseable server response"));
        }
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            return ImapError::ConnectionLost { operation };
        }
        ImapError::Io { operation, source }
    }

    /// Whether the session is still in step with the server after this error.
    fn keeps_session(&self) -> bool {
        matches!(
            self,
            ImapError::Rejected { .. } | ImapError::NoSuchFolder(_) | ImapError::Config(_)
        )
    }
}

/// Response codes that announce a temporary condition (RFC 5530 §3).
fn is_temporary_response(detail: &str) -> bool {
    ["UNAVAILABLE", "INUSE", "SERVERBUG", "LIMIT"]
        .iter()
        .any(|code| detail.contains(&format!("[{code}")))
}

/// Caps server text copied into errors so a misbehaving server cannot flood the logs.
fn truncate(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_CHARS).collect();
    short.push('…');
    short
}
