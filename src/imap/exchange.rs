//! One command/response exchange with the server, bounded by the exchange timeout.

use std::time::Duration;

use async_imap::Session;
use async_imap::imap_proto::{MailboxDatum, Outcome, Response, Status};
use async_imap::types::UnsolicitedResponse;
use tokio::io::AsyncWriteExt as _;

use super::client::ImapClient;
use super::transport::Transport;
use super::{ImapError, truncate};

impl ImapClient {
    /// Sends one tagged command and reads responses up to its own tagged completion.
    ///
    /// `on_untagged` sees each untagged response and returns true when it used it. `EXISTS` and
    /// `RECENT` it did not use mark new data as pending. `literal` is sent after the server's
    /// continuation request (RFC 3501 §7.5). On a failure that leaves the stream position unknown
    /// the session is dropped.
    pub(super) async fn run_tagged<F>(
        &mut self,
        operation: &'static str,
        command: &str,
        literal: Option<&[u8]>,
        mut on_untagged: F,
    ) -> Result<(), ImapError>
    where
        F: FnMut(&Response<'_>) -> bool,
    {
        self.absorb_unsolicited();
        let timeout = self.timeout;
        let session = self.session.as_mut().ok_or(ImapError::Disconnected)?;
        let mut new_data = false;
        let result = async {
            let tag = timed(timeout, operation, session.run_command(command)).await?;
            let mut literal = literal;
            loop {
                let response = next_response(session.read_response(), timeout, operation).await?;
                match response.parsed() {
                    Response::Done {
                        tag: done_tag,
                        status,
                        outcome,
                    } if *done_tag == tag => return check_status(operation, status, outcome),
                    Response::Continue(_) => {
                        let Some(bytes) = literal.take() else {
                            return Err(ImapError::Protocol(format!(
                                "{operation}: unexpected continuation request"
                            )));
                        };
                        send_literal(session, timeout, operation, bytes).await?;
                    }
                    other => {
                        if !on_untagged(other) {
                            new_data |= note_untagged(operation, other);
                        }
                    }
                }
            }
        }
        .await;
        self.new_data_pending |= new_data;
        self.settle(result)
    }

    /// Drops the session after errors that leave it out of step with the server.
    pub(super) fn settle<T>(&mut self, result: Result<T, ImapError>) -> Result<T, ImapError> {
        if let Err(error) = &result
            && !error.keeps_session()
            && self.session.is_some()
        {
            tracing::debug!(host = %self.host, error = %error, "dropping imap session");
            self.session = None;
            self.selected = None;
        }
        result
    }

    /// Empties async-imap's channel of unsolicited responses (filled by its own helpers such as
    /// `LOGIN` and `IDLE`'s `DONE`), remembering whether new messages were announced.
    pub(super) fn absorb_unsolicited(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while let Ok(response) = session.unsolicited_responses.try_recv() {
            self.new_data_pending |= announces_new_data(&response);
        }
    }
}

/// Whether an unsolicited response announces new messages (RFC 3501 §7.3.1, §7.3.2).
pub(super) fn announces_new_data(response: &UnsolicitedResponse) -> bool {
    matches!(
        response,
        UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
    )
}

/// Awaits one async-imap operation under the exchange timeout.
pub(super) async fn timed<T>(
    timeout: Duration,
    operation: &'static str,
    future: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(|error| ImapError::from_imap(operation, error)),
        Err(_) => Err(ImapError::Timeout {
            operation,
            after: timeout,
        }),
    }
}

/// Reads the next response (a whole line with its literals) under the exchange timeout.
/// Generic because async-imap does not export the name of its response type.
pub(super) async fn next_response<T>(
    read: impl Future<Output = std::io::Result<Option<T>>>,
    timeout: Duration,
    operation: &'static str,
) -> Result<T, ImapError> {
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Some(response))) => Ok(response),
        Ok(Ok(None)) => Err(ImapError::ConnectionLost { operation }),
        Ok(Err(error)) => Err(ImapError::from_io(operation, error)),
        Err(_) => Err(ImapError::Timeout {
            operation,
            after: timeout,
        }),
    }
}

/// Writes a literal's bytes followed by the CRLF that ends the command line.
async fn send_literal(
    session: &mut Session<Transport>,
    timeout: Duration,
    operation: &'static str,
    bytes: &[u8],
) -> Result<(), ImapError> {
    let stream = session.get_mut();
    let write = async {
        stream.write_all(bytes).await?;
        stream.write_all(b"\r\n").await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ImapError::from_io(operation, error)),
        Err(_) => Err(ImapError::Timeout {
            operation,
            after: timeout,
        }),
    }
}

/// Logs untagged responses no handler used; returns true for `EXISTS`/`RECENT`.
fn note_untagged(operation: &'static str, response: &Response<'_>) -> bool {
    match response {
        Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) => true,
        Response::Data {
            status: Status::Bye,
            outcome,
        } => {
            tracing::info!(operation, detail = %describe(outcome), "imap server is closing the connection");
            false
        }
        Response::Data {
            status: status @ (Status::No | Status::Bad),
            outcome,
        } => {
            tracing::debug!(operation, ?status, detail = %describe(outcome), "imap server warning");
            false
        }
        _ => false,
    }
}

/// Turns a tagged completion into a result (RFC 3501 §7.1).
fn check_status(
    operation: &'static str,
    status: &Status,
    outcome: &Outcome<'_>,
) -> Result<(), ImapError> {
    match status {
        Status::Ok => Ok(()),
        Status::No | Status::Bad => Err(ImapError::Rejected {
            operation,
            detail: describe(outcome),
        }),
        Status::PreAuth | Status::Bye => Err(ImapError::Protocol(format!(
            "{operation}: invalid tagged status {status:?}"
        ))),
    }
}

/// Response code and human text of a status response, shortened.
pub(super) fn describe(outcome: &Outcome<'_>) -> String {
    let text = outcome.information.as_deref().unwrap_or("");
    match &outcome.code {
        Some(code) => truncate(&format!("[{code:?}] {text}")),
        None => truncate(text),
    }
}
