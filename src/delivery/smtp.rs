//! Outbound SMTP submission with per-recipient results and DSN parameters.
//!
//! lettre's high-level transport cannot pass Delivery Status Notification parameters
//! (RFC 3461: `RET`/`ENVID` on `MAIL`, `NOTIFY`/`ORCPT` on `RCPT`), which inboxd needs to match
//! bounces to the messages it sent. This module drives lettre's lower-level
//! `AsyncSmtpConnection` itself: it opens the connection (implicit TLS, STARTTLS or, for tests,
//! plain text), authenticates, runs one mail transaction and reports what the server said to
//! each command. lettre still does the wire work: reply parsing, AUTH PLAIN/LOGIN encoding and
//! dot-stuffing (RFC 5321 §4.5.2).
//!
//! Every exchange runs under [`SmtpSettings::timeout`]. The password never appears in logs,
//! errors or `Debug` output. Server reply texts are kept in results and errors for the caller,
//! but error `Display` output replaces anything that looks like a mail address.

mod session;
mod transaction;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use self::session::Session;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (submissions over TLS, RFC 8314, usually port 465).
    Implicit,
    /// Plain TCP upgraded with `STARTTLS` (RFC 3207, usually port 587); refused if the server
    /// does not offer it, never silently skipped.
    StartTls,
    /// No encryption at all. Only accepted with [`SmtpSettings::insecure`] (loopback tests).
    Plain,
}

/// Where and how to submit mail.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Server host name or IP address; also the name the TLS certificate must match.
    pub host: String,
    /// Server TCP port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// SASL user name; AUTH is used only when both this and `password` are set.
    pub username: Option<String>,
    /// SASL password, or the OAuth2 access token when `auth` is an OAuth mechanism; hidden from `Debug`.
    pub password: Option<String>,
    /// `AUTH PLAIN`/`LOGIN` with a password, or `AUTH XOAUTH2`/`OAUTHBEARER` with an access token.
    pub auth: crate::oauth::sasl::AuthMechanism,
    /// PEM file with the CA certificate(s) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Allows [`SmtpTls::Plain`] (and with it AUTH in clear text). Certificates are still
    /// verified on TLS connections.
    pub insecure: bool,
    /// Limit for each network exchange (connect, each command, the message transfer).
    pub timeout: Duration,
    /// Name sent in `EHLO` (RFC 5321 §4.1.1.1): a domain, or an IP address.
    pub helo_name: String,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .field("timeout", &self.timeout)
            .field("helo_name", &self.helo_name)
            .finish()
    }
}

/// The SMTP envelope of one message (RFC 5321 §2.3.1), independent of its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Return path for bounces, e.g. the VERP-style `bounces+<tag>@domain`; empty for the
    /// null reverse path `<>`.
    pub mail_from: String,
    /// Recipients, each sent in its own `RCPT TO`.
    pub recipients: Vec<String>,
    /// DSN envelope identifier (RFC 3461 §4.4), returned in `Original-Envelope-Id` of every
    /// DSN. Printable US-ASCII, at most 100 characters once xtext-encoded; empty for none.
    /// Pass it unencoded: the xtext encoding is done here.
    pub envelope_id: String,
}

/// A condition under which the server should send a DSN (RFC 3461 §4.1 `NOTIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// Report successful delivery (or relay to a non-DSN system).
    Success,
    /// Report failed delivery (a bounce).
    Failure,
    /// Report delayed delivery.
    Delay,
}

/// Which DSNs to ask for; sent only when the server announces the `DSN` extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRequest {
    /// Conditions for `NOTIFY`; empty leaves `NOTIFY` out (the server default, failures and
    /// delays).
    pub notify: Vec<Notify>,
    /// `RET=HDRS` (return only the headers in a DSN) when true, `RET=FULL` otherwise.
    pub ret_headers_only: bool,
}

/// What the server answered to one `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    /// 2xx: the server takes responsibility once the message data is accepted.
    Accepted,
    /// 4xx: try this recipient again later.
    TemporaryFailure {
        /// Reply code.
        code: u16,
        /// Enhanced status code (RFC 3463), e.g. `4.2.2`.
        enhanced: Option<String>,
        /// Reply text as sent (lines joined with spaces), enhanced code included.
        message: String,
    },
    /// 5xx: this recipient will not work. Also used, with code 501 and `5.1.3`, for an address
    /// that is not valid syntax and so was never sent.
    PermanentFailure {
        /// Reply code.
        code: u16,
        /// Enhanced status code (RFC 3463), e.g. `5.1.1`.
        enhanced: Option<String>,
        /// Reply text as sent (lines joined with spaces), enhanced code included.
        message: String,
    },
}

impl RecipientResult {
    /// True for [`RecipientResult::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, RecipientResult::Accepted)
    }
}

/// The server's final answer to the message data (or to `DATA` itself when it refused it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataResult {
    /// Reply code.
    pub code: u16,
    /// Reply text as sent (lines joined with spaces), enhanced code included.
    pub message: String,
    /// Server queue id parsed from the reply (Postfix `queued as ABC123` and common variants);
    /// it appears in the server's logs and in the DSNs it sends.
    pub queue_id: Option<String>,
    /// 2xx: the server took responsibility for the accepted recipients.
    pub accepted: bool,
    /// 5xx: sending the same message again will fail again.
    pub permanent: bool,
}

/// Everything the server said in one mail transaction. A recipient has the message only if
/// its result is [`RecipientResult::Accepted`] and `data` is accepted (RFC 5321 §3.3: the
/// reply to the data covers every accepted recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// One entry per envelope recipient, in envelope order.
    pub recipients: Vec<(String, RecipientResult)>,
    /// The data result; `None` when no recipient was accepted, so no `DATA` was sent.
    pub data: Option<DataResult>,
    /// Whether the server announced DSN, i.e. whether the DSN parameters were sent.
    pub dsn_supported: bool,
}

/// Errors that end a send or check before the server gave per-recipient answers.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The settings or the envelope cannot work (plain without `insecure`, bad CA file,
    /// invalid return path or ENVID...).
    #[error("invalid smtp settings or envelope: {0}")]
    Config(String),
    /// The server could not be reached, or closed the connection before its greeting.
    #[error("cannot connect to smtp server {host}:{port}: {reason}")]
    Connect {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What the socket reported.
        reason: String,
    },
    /// The TLS handshake failed, typically because the certificate does not verify.
    #[error("tls with smtp server {host} failed: {reason}; set ca_file or fix the certificate")]
    Tls {
        /// Server host.
        host: String,
        /// What rustls reported.
        reason: String,
    },
    /// Authentication failed or no usable mechanism (PLAIN, LOGIN) is offered.
    #[error("smtp authentication failed: {}", redact_addresses(message))]
    Auth {
        /// Reply code, if the server answered with one.
        code: Option<u16>,
        /// Server reply text, or why no attempt was made.
        message: String,
        /// False for 4xx answers (RFC 4954 §6: e.g. 454 temporary failure).
        permanent: bool,
    },
    /// A network exchange took longer than [`SmtpSettings::timeout`].
    #[error("smtp {operation} timed out after {after:?}")]
    Timeout {
        /// The step that timed out.
        operation: &'static str,
        /// The configured limit.
        after: Duration,
    },
    /// The connection broke in the middle of the session.
    #[error("smtp connection lost during {operation}: {reason}")]
    ConnectionLost {
        /// The step that was running.
        operation: &'static str,
        /// What the socket reported.
        reason: String,
    },
    /// The server sent something that is not a valid SMTP reply.
    #[error("smtp protocol error: {0}")]
    Protocol(String),
    /// The server lacks an extension this send needs (STARTTLS, 8BITMIME, SMTPUTF8).
    #[error("smtp server does not support {0}")]
    Unsupported(&'static str),
    /// The server refused a command for the whole transaction (greeting, `MAIL FROM`,
    /// `STARTTLS`, `EHLO`).
    #[error("smtp server rejected {command}: {code} {}", redact_addresses(message))]
    Rejected {
        /// The command that was refused.
        command: &'static str,
        /// Reply code.
        code: u16,
        /// Reply text.
        message: String,
        /// 5xx (true) or 4xx (false).
        permanent: bool,
    },
}

impl SmtpError {
    /// True when the same send may succeed later: 4xx answers, connection trouble, timeouts.
    ///
    /// A timeout after the message data was sent may mean the server did accept it; a
    /// retry can then deliver twice (RFC 1047).
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Connect { .. }
            | SmtpError::Timeout { .. }
            | SmtpError::ConnectionLost { .. } => true,
            SmtpError::Rejected { permanent, .. } | SmtpError::Auth { permanent, .. } => !permanent,
            SmtpError::Config(_)
            | SmtpError::Tls { .. }
            | SmtpError::Protocol(_)
            | SmtpError::Unsupported(_) => false,
        }
    }

    /// True when retrying without changing settings or the message cannot help: 5xx answers,
    /// bad settings, TLS verification failures, missing extensions. [`SmtpError::Protocol`]
    /// is neither transient nor permanent: retry a bounded number of times.
    pub fn is_permanent(&self) -> bool {
        match self {
            SmtpError::Config(_) | SmtpError::Tls { .. } | SmtpError::Unsupported(_) => true,
            SmtpError::Rejected { permanent, .. } | SmtpError::Auth { permanent, .. } => *permanent,
            SmtpError::Connect { .. }
            | SmtpError::Timeout { .. }
            | SmtpError::ConnectionLost { .. }
            | SmtpError::Protocol(_) => false,
        }
    }

    /// True for authentication failures (wrong credentials or no usable mechanism).
    pub fn is_auth(&self) -> bool {
        matches!(self, SmtpError::Auth { .. })
    }
}

/// Replaces every word containing `@` (a mail address in a server reply) so that error
/// messages can go to the logs without addresses.
pub fn redact_addresses(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('@') {
                "<address>"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Submits one message: connects, authenticates if credentials are set, runs `MAIL FROM`,
/// one `RCPT TO` per recipient and, if any recipient was accepted, `DATA`.
///
/// A refused recipient does not stop the others; its answer is in the outcome. Recipients
/// that are not valid addresses are refused locally; if no recipient is valid, no connection
/// is made (and `dsn_supported` is false). DSN
/// parameters from `dsn` and `envelope.envelope_id` are sent only when the server announces
/// DSN (see [`SendOutcome::dsn_supported`]). `raw_message` is sent unchanged except that bare
/// CR or LF line ends become CRLF (RFC 5321 §2.3.8); lettre adds the dot-stuffing.
pub async fn send(
    settings: &SmtpSettings,
    envelope: &Envelope,
    dsn: &DsnRequest,
    raw_message: &[u8],
) -> Result<SendOutcome, SmtpError> {
    let plan = transaction::Plan::new(envelope, dsn, raw_message)?;
    if !plan.has_valid_recipient() {
        // Nothing the server could accept: skip the connection.
        return Ok(plan.outcome_without_connection());
    }
    let mut session = Session::open(settings).await?;
    let result = transaction::run(&mut session, &plan).await;
    if let Ok(outcome) = &result {
        log_outcome(settings, outcome);
    }
    // After a timeout or a broken exchange the connection state is unknown: just drop it.
    let unusable = matches!(
        result,
        Err(SmtpError::Timeout { .. } | SmtpError::ConnectionLost { .. } | SmtpError::Protocol(_))
    );
    if !unusable {
        session.quit().await;
    }
    result
}

/// Counts and ids only: addresses and reply texts stay out of the logs.
fn log_outcome(settings: &SmtpSettings, outcome: &SendOutcome) {
    let accepted = outcome
        .recipients
        .iter()
        .filter(|(_, result)| result.is_accepted())
        .count();
    tracing::debug!(
        host = %settings.host,
        recipients = outcome.recipients.len(),
        accepted,
        dsn = outcome.dsn_supported,
        queue_id = outcome.data.as_ref().and_then(|data| data.queue_id.as_deref()),
        data_code = outcome.data.as_ref().map(|data| data.code),
        "smtp transaction done"
    );
}

/// Tests the settings: connects, secures the connection, sends `EHLO`, authenticates if
/// credentials are set and quits. Sends no mail.
pub async fn check(settings: &SmtpSettings) -> Result<(), SmtpError> {
    let mut session = Session::open(settings).await?;
    tracing::debug!(
        host = %settings.host,
        port = settings.port,
        tls = ?settings.tls,
        dsn = session.capabilities().dsn,
        "smtp check passed"
    );
    session.quit().await;
    Ok(())
}
